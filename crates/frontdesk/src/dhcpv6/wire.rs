//! The DHCPv6 message format (RFC 8415, sections 8 and 21): a bounded
//! parser of client messages and a writer of server messages.
//!
//! The parser borrows the message and allocates nothing: it keeps at most
//! [`MAX_IA_NA`] IA_NA options with at most [`MAX_IA_ADDRS`] addresses each,
//! and stops at [`MAX_OPTIONS`] options; every option length is checked
//! against what is left of the message.

use std::cell::Cell;
use std::net::Ipv6Addr;

/// Message types (RFC 8415, section 7.3).
pub(crate) mod msg {
    pub(crate) const SOLICIT: u8 = 1;
    pub(crate) const ADVERTISE: u8 = 2;
    pub(crate) const REQUEST: u8 = 3;
    pub(crate) const CONFIRM: u8 = 4;
    pub(crate) const RENEW: u8 = 5;
    pub(crate) const REBIND: u8 = 6;
    pub(crate) const REPLY: u8 = 7;
    pub(crate) const RELEASE: u8 = 8;
    pub(crate) const DECLINE: u8 = 9;
    pub(crate) const INFORMATION_REQUEST: u8 = 11;
}

/// Option codes (RFC 8415, section 21; RFC 3646 for 23 and 24).
pub(crate) mod opt {
    pub(crate) const CLIENTID: u16 = 1;
    pub(crate) const SERVERID: u16 = 2;
    pub(crate) const IA_NA: u16 = 3;
    pub(crate) const IA_TA: u16 = 4;
    pub(crate) const IAADDR: u16 = 5;
    pub(crate) const STATUS_CODE: u16 = 13;
    pub(crate) const RAPID_COMMIT: u16 = 14;
    pub(crate) const DNS_SERVERS: u16 = 23;
    pub(crate) const DOMAIN_LIST: u16 = 24;
    pub(crate) const IA_PD: u16 = 25;
}

/// Status codes (RFC 8415, section 21.13).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u16)]
pub(crate) enum Status {
    Success = 0,
    NoAddrsAvail = 2,
    NoBinding = 3,
    NotOnLink = 4,
    UseMulticast = 5,
}

impl Status {
    /// The status message sent with the code.
    pub(crate) fn message(self) -> &'static str {
        match self {
            Status::Success => "success",
            Status::NoAddrsAvail => "no addresses available",
            Status::NoBinding => "no binding for this client",
            Status::NotOnLink => "address not on this link",
            Status::UseMulticast => "send to ff02::1:2",
        }
    }
}

/// The most options a message may carry, sub-options of each IA_NA
/// included.
pub const MAX_OPTIONS: usize = 64;
/// The most IA_NA options a message may carry.
pub const MAX_IA_NA: usize = 4;
/// The most addresses an IA_NA may list.
pub const MAX_IA_ADDRS: usize = 4;
/// The longest DUID (RFC 8415, section 11.1: 128 octets after its type).
pub const MAX_DUID_LEN: usize = 130;

const HEADER_LEN: usize = 4;
const OPTION_HEADER_LEN: usize = 4;
const IA_NA_FIXED_LEN: usize = 12;
const IAADDR_FIXED_LEN: usize = 24;

/// Why a message did not parse.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Malformed;

/// One IA_NA of a client message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct IaNa {
    pub(crate) iaid: u32,
    addrs: [Ipv6Addr; MAX_IA_ADDRS],
    addr_count: usize,
}

impl Default for IaNa {
    fn default() -> Self {
        Self {
            iaid: 0,
            addrs: [Ipv6Addr::UNSPECIFIED; MAX_IA_ADDRS],
            addr_count: 0,
        }
    }
}

impl IaNa {
    /// The addresses the client lists in this IA.
    pub(crate) fn addrs(&self) -> &[Ipv6Addr] {
        &self.addrs[..self.addr_count]
    }
}

/// A client message, parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Message<'a> {
    pub(crate) msg_type: u8,
    pub(crate) xid: [u8; 3],
    pub(crate) client_id: Option<&'a [u8]>,
    pub(crate) server_id: Option<&'a [u8]>,
    pub(crate) rapid_commit: bool,
    /// Whether the message has IA_TA or IA_PD options (no addresses of
    /// those kinds are given).
    pub(crate) other_ia: bool,
    ia_na: [IaNa; MAX_IA_NA],
    ia_na_count: usize,
}

impl<'a> Message<'a> {
    /// Parses a client message: the header and every option, each within
    /// what is left of the message.
    pub(crate) fn parse(bytes: &'a [u8]) -> Result<Self, Malformed> {
        let header = bytes.get(..HEADER_LEN).ok_or(Malformed)?;
        let mut message = Message {
            msg_type: header[0],
            xid: [header[1], header[2], header[3]],
            client_id: None,
            server_id: None,
            rapid_commit: false,
            other_ia: false,
            ia_na: [IaNa::default(); MAX_IA_NA],
            ia_na_count: 0,
        };
        let budget = Cell::new(MAX_OPTIONS);
        for option in Options::new(&bytes[HEADER_LEN..], &budget) {
            let (code, data) = option?;
            message.take_option(code, data, &budget)?;
        }
        Ok(message)
    }

    /// The IA_NA options, in message order.
    pub(crate) fn ia_na(&self) -> &[IaNa] {
        &self.ia_na[..self.ia_na_count]
    }

    fn take_option(
        &mut self,
        code: u16,
        data: &'a [u8],
        budget: &Cell<usize>,
    ) -> Result<(), Malformed> {
        match code {
            opt::CLIENTID => self.client_id = Some(duid(data, self.client_id)?),
            opt::SERVERID => self.server_id = Some(duid(data, self.server_id)?),
            opt::RAPID_COMMIT => self.rapid_commit = true,
            opt::IA_TA | opt::IA_PD => self.other_ia = true,
            opt::IA_NA => {
                let ia = parse_ia_na(data, budget)?;
                let slot = self.ia_na.get_mut(self.ia_na_count).ok_or(Malformed)?;
                *slot = ia;
                self.ia_na_count += 1;
            }
            // Elapsed time, the option request option and the rest carry
            // nothing the server's answer depends on.
            _ => {}
        }
        Ok(())
    }
}

/// A client or server identifier: a DUID of a sane length, given once.
fn duid<'a>(data: &'a [u8], before: Option<&[u8]>) -> Result<&'a [u8], Malformed> {
    if before.is_some() || data.len() < 2 || data.len() > MAX_DUID_LEN {
        return Err(Malformed);
    }
    Ok(data)
}

fn parse_ia_na(data: &[u8], budget: &Cell<usize>) -> Result<IaNa, Malformed> {
    let fixed = data.get(..IA_NA_FIXED_LEN).ok_or(Malformed)?;
    let mut ia = IaNa {
        iaid: u32::from_be_bytes([fixed[0], fixed[1], fixed[2], fixed[3]]),
        ..IaNa::default()
    };
    for option in Options::new(&data[IA_NA_FIXED_LEN..], budget) {
        let (code, data) = option?;
        if code != opt::IAADDR {
            continue;
        }
        let fixed = data.get(..IAADDR_FIXED_LEN).ok_or(Malformed)?;
        let mut octets = [0; 16];
        octets.copy_from_slice(&fixed[..16]);
        let slot = ia.addrs.get_mut(ia.addr_count).ok_or(Malformed)?;
        *slot = Ipv6Addr::from(octets);
        ia.addr_count += 1;
    }
    Ok(ia)
}

/// The options in `bytes`, each as its code and data, drawing on a budget
/// shared by a message's nested options: when it runs out, or an option
/// runs past the end, the next item is an error and the iteration ends.
struct Options<'a, 'b> {
    rest: &'a [u8],
    budget: &'b Cell<usize>,
    failed: bool,
}

impl<'a, 'b> Options<'a, 'b> {
    fn new(rest: &'a [u8], budget: &'b Cell<usize>) -> Self {
        Self {
            rest,
            budget,
            failed: false,
        }
    }
}

impl<'a> Iterator for Options<'a, '_> {
    type Item = Result<(u16, &'a [u8]), Malformed>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.rest.is_empty() {
            return None;
        }
        let item = self.take();
        self.failed = item.is_err();
        Some(item)
    }
}

impl<'a> Options<'a, '_> {
    fn take(&mut self) -> Result<(u16, &'a [u8]), Malformed> {
        self.budget
            .set(self.budget.get().checked_sub(1).ok_or(Malformed)?);
        let header = self.rest.get(..OPTION_HEADER_LEN).ok_or(Malformed)?;
        let code = u16::from_be_bytes([header[0], header[1]]);
        let len = usize::from(u16::from_be_bytes([header[2], header[3]]));
        let end = OPTION_HEADER_LEN + len;
        let data = self.rest.get(OPTION_HEADER_LEN..end).ok_or(Malformed)?;
        self.rest = &self.rest[end..];
        Ok((code, data))
    }
}

/// The buffer ran out while writing a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Full;

/// Writes a server message into a buffer, checking every write's bounds.
pub(crate) struct Writer<'a> {
    buf: &'a mut [u8],
    len: usize,
}

impl<'a> Writer<'a> {
    /// A message of `msg_type` answering transaction `xid`.
    pub(crate) fn new(buf: &'a mut [u8], msg_type: u8, xid: [u8; 3]) -> Result<Self, Full> {
        let mut writer = Self { buf, len: 0 };
        writer.bytes(&[msg_type, xid[0], xid[1], xid[2]])?;
        Ok(writer)
    }

    /// The length written so far.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    fn bytes(&mut self, data: &[u8]) -> Result<(), Full> {
        let end = self.len.checked_add(data.len()).ok_or(Full)?;
        self.buf
            .get_mut(self.len..end)
            .ok_or(Full)?
            .copy_from_slice(data);
        self.len = end;
        Ok(())
    }

    /// An option with `data`, written whole or not at all.
    pub(crate) fn option(&mut self, code: u16, data: &[u8]) -> Result<(), Full> {
        let len = u16::try_from(data.len()).map_err(|_| Full)?;
        if self.len + OPTION_HEADER_LEN + data.len() > self.buf.len() {
            return Err(Full);
        }
        self.bytes(&code.to_be_bytes())?;
        self.bytes(&len.to_be_bytes())?;
        self.bytes(data)
    }

    /// Opens an option whose data is written next; [`close`](Self::close)
    /// with the returned mark fills in its length.
    pub(crate) fn open(&mut self, code: u16) -> Result<usize, Full> {
        let mark = self.len;
        self.bytes(&code.to_be_bytes())?;
        self.bytes(&[0, 0])?;
        Ok(mark)
    }

    /// Closes the option opened at `mark`.
    pub(crate) fn close(&mut self, mark: usize) -> Result<(), Full> {
        let len = self.len - mark - OPTION_HEADER_LEN;
        let len = u16::try_from(len).map_err(|_| Full)?;
        self.buf
            .get_mut(mark + 2..mark + OPTION_HEADER_LEN)
            .ok_or(Full)?
            .copy_from_slice(&len.to_be_bytes());
        Ok(())
    }

    /// A Status Code option.
    pub(crate) fn status(&mut self, status: Status) -> Result<(), Full> {
        let mark = self.open(opt::STATUS_CODE)?;
        self.bytes(&(status as u16).to_be_bytes())?;
        self.bytes(status.message().as_bytes())?;
        self.close(mark)
    }

    /// An IA_NA with `t1`/`t2`, holding `addrs` (each with its preferred
    /// and valid lifetimes) and a status if one is given.
    pub(crate) fn ia_na(
        &mut self,
        iaid: u32,
        (t1, t2): (u32, u32),
        addrs: &[(Ipv6Addr, u32, u32)],
        status: Option<Status>,
    ) -> Result<(), Full> {
        let mark = self.open(opt::IA_NA)?;
        self.bytes(&iaid.to_be_bytes())?;
        self.bytes(&t1.to_be_bytes())?;
        self.bytes(&t2.to_be_bytes())?;
        for &(addr, preferred, valid) in addrs {
            let inner = self.open(opt::IAADDR)?;
            self.bytes(&addr.octets())?;
            self.bytes(&preferred.to_be_bytes())?;
            self.bytes(&valid.to_be_bytes())?;
            self.close(inner)?;
        }
        if let Some(status) = status {
            self.status(status)?;
        }
        self.close(mark)
    }
}

/// Encodes `domains` as a DNS domain list (RFC 1035 labels, uncompressed)
/// into `out`, skipping names that are not valid: empty labels, labels over
/// 63 bytes, names over 255 bytes.
pub(crate) fn encode_domain_list(domains: &[String], out: &mut Vec<u8>) {
    for domain in domains {
        let name = domain.trim_end_matches('.');
        let valid = !name.is_empty()
            && name.len() < 254
            && name
                .split('.')
                .all(|label| !label.is_empty() && label.len() <= 63);
        if !valid {
            continue;
        }
        for label in name.split('.') {
            out.push(label.len() as u8);
            out.extend_from_slice(label.as_bytes());
        }
        out.push(0);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn option(code: u16, data: &[u8]) -> Vec<u8> {
        let mut bytes = code.to_be_bytes().to_vec();
        bytes.extend_from_slice(&(data.len() as u16).to_be_bytes());
        bytes.extend_from_slice(data);
        bytes
    }

    fn ia_na(iaid: u32, addrs: &[Ipv6Addr]) -> Vec<u8> {
        let mut data = iaid.to_be_bytes().to_vec();
        data.extend_from_slice(&[0; 8]);
        for addr in addrs {
            let mut inner = addr.octets().to_vec();
            inner.extend_from_slice(&[0; 8]);
            data.extend(option(opt::IAADDR, &inner));
        }
        option(opt::IA_NA, &data)
    }

    #[test]
    fn parse_reads_ids_ias_and_flags() {
        let addr = Ipv6Addr::new(0xfd00, 0, 0, 2, 0, 0, 0, 0x15);
        let mut bytes = vec![msg::RENEW, 1, 2, 3];
        bytes.extend(option(opt::CLIENTID, &[0, 3, 0, 1, 1, 2, 3, 4, 5, 6]));
        bytes.extend(option(opt::SERVERID, &[0, 3, 0, 1, 6, 5, 4, 3, 2, 1]));
        bytes.extend(ia_na(9, &[addr]));
        bytes.extend(option(opt::IA_PD, &[0; 12]));
        bytes.extend(option(opt::RAPID_COMMIT, &[]));
        let message = Message::parse(&bytes).unwrap();
        assert_eq!((message.msg_type, message.xid), (msg::RENEW, [1, 2, 3]));
        assert_eq!(message.client_id.unwrap()[4..], [1, 2, 3, 4, 5, 6]);
        assert_eq!(message.server_id.unwrap()[4..], [6, 5, 4, 3, 2, 1]);
        assert_eq!(message.ia_na().len(), 1);
        assert_eq!(
            (message.ia_na()[0].iaid, message.ia_na()[0].addrs()),
            (9, &[addr][..])
        );
        assert!(message.rapid_commit && message.other_ia);
    }

    #[test]
    fn nested_options_share_the_budget() {
        // One IA_NA holding more sub-options than the whole budget.
        let mut data = vec![0; 12];
        for _ in 0..MAX_OPTIONS {
            data.extend(option(opt::STATUS_CODE, &[0, 0]));
        }
        let mut bytes = vec![msg::SOLICIT, 0, 0, 0];
        bytes.extend(option(opt::IA_NA, &data));
        assert_eq!(Message::parse(&bytes), Err(Malformed));
    }

    #[test]
    fn options_stop_at_the_first_malformed_one() {
        let budget = Cell::new(MAX_OPTIONS);
        let bytes = [0, 8, 0, 9, 0, 0];
        let items: Vec<_> = Options::new(&bytes, &budget).collect();
        assert_eq!(items, vec![Err(Malformed)]);
    }

    #[test]
    fn writer_reports_a_full_buffer() {
        let mut buf = [0; 10];
        let mut writer = Writer::new(&mut buf, msg::REPLY, [0; 3]).unwrap();
        assert_eq!(writer.option(opt::SERVERID, &[0; 10]), Err(Full));
        assert_eq!(writer.len(), 4, "a failed option writes nothing");
        assert_eq!(writer.status(Status::Success), Err(Full));
    }

    #[test]
    fn writer_nests_options_with_their_lengths() {
        let mut buf = [0; 128];
        let mut writer = Writer::new(&mut buf, msg::REPLY, [7, 8, 9]).unwrap();
        let addr = Ipv6Addr::LOCALHOST;
        writer
            .ia_na(1, (2, 3), &[(addr, 4, 5)], Some(Status::Success))
            .unwrap();
        let len = writer.len();
        let budget = Cell::new(MAX_OPTIONS);
        let options: Vec<_> = Options::new(&buf[4..len], &budget).collect();
        let Ok((code, data)) = options[0] else {
            panic!("{options:?}");
        };
        assert_eq!(code, opt::IA_NA);
        assert_eq!(data.len(), 12 + 4 + 24 + 4 + 2 + "success".len());
        let message = Message::parse(&buf[..len]).unwrap();
        assert_eq!(message.ia_na()[0].addrs(), &[addr]);
    }

    #[test]
    fn domain_list_skips_invalid_names() {
        let long_label = "a".repeat(64);
        let domains = [
            "corp.internal".to_string(),
            String::new(),
            "a..b".into(),
            long_label,
            "x.".into(),
        ];
        let mut out = Vec::new();
        encode_domain_list(&domains, &mut out);
        assert_eq!(out, b"\x04corp\x08internal\x00\x01x\x00");
    }
}
