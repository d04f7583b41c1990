//! A 16550A UART at COM1 (I/O ports 0x3f8 to 0x3ff), enough for Linux's
//! 8250 driver: the console's output goes to a writer, input is queued by
//! the VMM, and the transmit-empty and data-ready interrupts are raised
//! through a callback (the VMM's irqfd on IRQ 4).
//!
//! The guest can write any value to any register: nothing here panics,
//! and the input queue is bounded ([`INPUT_MAX`]).

use std::collections::VecDeque;
use std::io::Write;

/// The first port of COM1.
pub const COM1: u16 = 0x3f8;
/// Ports the UART decodes from [`COM1`].
pub const PORTS: u16 = 8;
/// Bytes of input held before more is refused.
pub const INPUT_MAX: usize = 4096;

const DATA: u16 = 0; // RBR (read), THR (write), DLL when DLAB
const IER: u16 = 1; // DLM when DLAB
const IIR_FCR: u16 = 2;
const LCR: u16 = 3;
const MCR: u16 = 4;
const LSR: u16 = 5;
const MSR: u16 = 6;
const SCR: u16 = 7;

const IER_RDA: u8 = 0x01;
const IER_THRE: u8 = 0x02;
const IIR_NONE: u8 = 0x01;
const IIR_THRE: u8 = 0x02;
const IIR_RDA: u8 = 0x04;
/// IIR bits 7:6 with the FIFOs enabled: what marks a 16550A.
const IIR_FIFO: u8 = 0xc0;
const LCR_DLAB: u8 = 0x80;
const MCR_LOOP: u8 = 0x10;
const LSR_DR: u8 = 0x01;
const LSR_THRE: u8 = 0x20;
const LSR_TEMT: u8 = 0x40;
/// Modem status with carrier, data set ready and clear to send.
const MSR_CONNECTED: u8 = 0xb0;

/// The UART's registers and the input queue.
#[derive(Debug)]
pub struct Serial<W> {
    out: W,
    input: VecDeque<u8>,
    ier: u8,
    lcr: u8,
    mcr: u8,
    scr: u8,
    divisor: u16,
    fifo_enabled: bool,
    /// A transmit-empty interrupt is pending (cleared by reading IIR or
    /// writing THR).
    thre_pending: bool,
}

impl<W: Write> Serial<W> {
    /// A UART whose transmitted bytes go to `out`.
    pub fn new(out: W) -> Self {
        Self {
            out,
            input: VecDeque::new(),
            ier: 0,
            lcr: 0x03,
            mcr: 0x08,
            scr: 0,
            divisor: 12,
            fifo_enabled: false,
            thre_pending: false,
        }
    }

    /// The writer the output goes to.
    pub fn output(&self) -> &W {
        &self.out
    }

    /// Queues `bytes` as received input, up to [`INPUT_MAX`] held; returns
    /// how many were taken and whether the interrupt line should fire.
    pub fn push_input(&mut self, bytes: &[u8]) -> (usize, bool) {
        let room = INPUT_MAX.saturating_sub(self.input.len());
        let taken = bytes.len().min(room);
        self.input.extend(&bytes[..taken]);
        (taken, taken > 0 && self.ier & IER_RDA != 0)
    }

    /// A guest read of register `offset` (0 to 7). Returns the value.
    pub fn read(&mut self, offset: u16) -> u8 {
        match offset {
            DATA if self.lcr & LCR_DLAB != 0 => self.divisor.to_le_bytes()[0],
            DATA => self.input.pop_front().unwrap_or(0),
            IER if self.lcr & LCR_DLAB != 0 => self.divisor.to_le_bytes()[1],
            IER => self.ier,
            IIR_FCR => {
                let fifo = if self.fifo_enabled { IIR_FIFO } else { 0 };
                fifo | self.take_interrupt_id()
            }
            LCR => self.lcr,
            MCR => self.mcr,
            LSR => {
                let ready = if self.input.is_empty() { 0 } else { LSR_DR };
                LSR_THRE | LSR_TEMT | ready
            }
            MSR if self.mcr & MCR_LOOP != 0 => {
                // Loopback: the modem outputs (DTR, RTS, OUT1, OUT2) read
                // back as DSR, CTS, RI, DCD, as the 8250 driver's probe
                // checks.
                (self.mcr & 0x0f) << 4
            }
            MSR => MSR_CONNECTED,
            SCR => self.scr,
            _ => 0xff,
        }
    }

    /// The interrupt identification, by priority; reading a transmit-empty
    /// identification clears it.
    fn take_interrupt_id(&mut self) -> u8 {
        if self.ier & IER_RDA != 0 && !self.input.is_empty() {
            IIR_RDA
        } else if self.ier & IER_THRE != 0 && self.thre_pending {
            self.thre_pending = false;
            IIR_THRE
        } else {
            IIR_NONE
        }
    }

    /// A guest write of `value` to register `offset` (0 to 7). Returns
    /// whether the interrupt line should fire.
    pub fn write(&mut self, offset: u16, value: u8) -> bool {
        match offset {
            DATA if self.lcr & LCR_DLAB != 0 => {
                self.divisor = u16::from_le_bytes([value, self.divisor.to_le_bytes()[1]]);
            }
            DATA => {
                if self.mcr & MCR_LOOP != 0 {
                    if self.input.len() < INPUT_MAX {
                        self.input.push_back(value);
                    }
                    return self.ier & IER_RDA != 0;
                }
                // The console is best effort: a closed stdout must not
                // stop the guest.
                let _ = self.out.write_all(&[value]);
                // The byte left at once: the holding register is empty
                // again.
                self.thre_pending = true;
                return self.ier & IER_THRE != 0;
            }
            IER if self.lcr & LCR_DLAB != 0 => {
                self.divisor = u16::from_le_bytes([self.divisor.to_le_bytes()[0], value]);
            }
            IER => {
                let enabling_thre = value & IER_THRE != 0 && self.ier & IER_THRE == 0;
                self.ier = value & 0x0f;
                // The holding register is always empty: enabling its
                // interrupt raises it, as on the real part.
                if enabling_thre {
                    self.thre_pending = true;
                }
                return enabling_thre || (self.ier & IER_RDA != 0 && !self.input.is_empty());
            }
            IIR_FCR => {
                self.fifo_enabled = value & 0x01 != 0;
                if value & 0x02 != 0 {
                    self.input.clear();
                }
            }
            LCR => self.lcr = value,
            MCR => self.mcr = value & 0x1f,
            SCR => self.scr = value,
            _ => {}
        }
        false
    }

    /// Flushes the output writer.
    pub fn flush(&mut self) {
        let _ = self.out.flush();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn serial() -> Serial<Vec<u8>> {
        Serial::new(Vec::new())
    }

    #[test]
    fn transmitted_bytes_reach_the_writer() {
        let mut uart = serial();
        for byte in b"Linux version" {
            assert!(!uart.write(DATA, *byte), "no interrupt while IER is 0");
        }
        assert_eq!(uart.output(), b"Linux version");
        assert_eq!(uart.read(LSR) & (LSR_THRE | LSR_TEMT), LSR_THRE | LSR_TEMT);
    }

    #[test]
    fn divisor_latch_hides_data_and_ier() {
        let mut uart = serial();
        uart.write(LCR, LCR_DLAB | 0x03);
        uart.write(DATA, 0x01);
        uart.write(IER, 0x00);
        assert_eq!(uart.read(DATA), 0x01);
        assert_eq!(uart.read(IER), 0x00);
        uart.write(LCR, 0x03);
        assert!(uart.output().is_empty(), "divisor writes are not output");
        assert_eq!(uart.divisor, 1);
    }

    #[test]
    fn enabling_the_transmit_interrupt_raises_it_until_iir_is_read() {
        let mut uart = serial();
        assert_eq!(uart.read(IIR_FCR), IIR_NONE);
        assert!(uart.write(IER, IER_THRE), "raised on enable");
        assert_eq!(uart.read(IIR_FCR), IIR_THRE);
        assert_eq!(uart.read(IIR_FCR), IIR_NONE, "reading IIR cleared it");
        assert!(uart.write(DATA, b'x'), "each sent byte raises it again");
        assert_eq!(uart.read(IIR_FCR), IIR_THRE);
    }

    #[test]
    fn fifo_control_makes_it_identify_as_a_16550a() {
        let mut uart = serial();
        uart.write(IIR_FCR, 0x07);
        assert_eq!(uart.read(IIR_FCR) & IIR_FIFO, IIR_FIFO);
        uart.write(IIR_FCR, 0x00);
        assert_eq!(uart.read(IIR_FCR) & IIR_FIFO, 0);
    }

    #[test]
    fn input_is_read_in_order_and_signalled() {
        let mut uart = serial();
        assert_eq!(uart.push_input(b"ok"), (2, false), "no interrupt: RDA off");
        uart.write(IER, IER_RDA);
        assert_eq!(uart.read(LSR) & LSR_DR, LSR_DR);
        assert_eq!(uart.read(IIR_FCR), IIR_RDA);
        assert_eq!(uart.read(DATA), b'o');
        assert_eq!(uart.read(DATA), b'k');
        assert_eq!(uart.read(LSR) & LSR_DR, 0);
        assert_eq!(uart.read(IIR_FCR), IIR_NONE);
        assert_eq!(uart.push_input(b"!"), (1, true));
    }

    #[test]
    fn input_is_bounded() {
        let mut uart = serial();
        let big = vec![b'a'; INPUT_MAX + 100];
        assert_eq!(uart.push_input(&big).0, INPUT_MAX);
        assert_eq!(uart.push_input(b"b").0, 0);
    }

    #[test]
    fn loopback_echoes_data_and_modem_lines_as_the_8250_probe_expects() {
        let mut uart = serial();
        uart.write(MCR, MCR_LOOP | 0x0a);
        assert_eq!(uart.read(MSR) & 0xf0, 0xa0);
        uart.write(DATA, 0x5a);
        assert_eq!(uart.read(DATA), 0x5a);
        assert!(uart.output().is_empty(), "loopback bytes are not output");
    }

    #[test]
    fn scratch_register_holds_what_was_written() {
        let mut uart = serial();
        for value in [0x00, 0x55, 0xaa, 0xff] {
            uart.write(SCR, value);
            assert_eq!(uart.read(SCR), value);
        }
        assert_eq!(uart.read(9), 0xff, "outside the UART");
    }
}
