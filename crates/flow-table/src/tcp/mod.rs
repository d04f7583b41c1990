//! The TCP sequence-mirroring state machine (after passt).
//!
//! slipway keeps no TCP payload buffers of its own. Bytes from the guest go
//! to the host socket straight from the guest's frame, and the guest's
//! segment is acknowledged only for what the kernel accepted. Bytes from the
//! host stay in the host socket's receive queue until the guest acknowledges
//! them: segments to the guest name the range to peek, an ACK turns into a
//! `recv(MSG_TRUNC)` of the acknowledged bytes, and a retransmission is a
//! fresh peek from the acknowledged offset.
//!
//! The machine is sans-IO: [`TcpConn`] takes guest segments, host socket
//! events and timeouts through `handle_*` methods with `now` passed in, and
//! hands out socket operations, segments for the guest, events and its next
//! deadline through `poll_*` methods.

mod conn;
mod input;
mod output;
mod segment;
mod seq;
mod timers;

pub use conn::{CloseReason, Event, Phase, TcpConn, TcpStats};
pub use input::{DropReason, SegmentOutcome};
pub use segment::{
    Flags, HostError, HostWriter, Interest, PeekRange, Segment, SocketOp, Transmit, rst_for_unknown,
};
pub use seq::SeqNum;
pub use timers::TcpConfig;

#[cfg(test)]
mod tests {
    /// User-space bytes of one TCP flow's state machine: no payload buffers,
    /// only sequence state, timers and the configuration.
    #[test]
    fn tcp_state_machine_bytes_per_flow() {
        let size = std::mem::size_of::<super::TcpConn>();
        println!("TcpConn: {size} B per flow, no payload buffers");
        assert!(size <= 640, "TcpConn grew to {size} bytes");
    }
}
