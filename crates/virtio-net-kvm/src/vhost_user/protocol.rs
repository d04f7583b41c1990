//! The vhost-user wire format (QEMU's docs/interop/vhost-user.rst): a
//! 12-byte header (request, flags, payload size; native endian), the
//! payload, and descriptors passed with the header as `SCM_RIGHTS`.
//!
//! The frontend is the VMM, trusted to run the guest but not to send
//! well-formed messages: sizes, descriptor counts and fields are checked
//! here, and a bad message is an error that ends the connection.

use std::io;
use std::mem::MaybeUninit;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;

use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, ReturnFlags, SendFlags};

pub(super) const GET_FEATURES: u32 = 1;
pub(super) const SET_FEATURES: u32 = 2;
pub(super) const SET_OWNER: u32 = 3;
pub(super) const RESET_OWNER: u32 = 4;
pub(super) const SET_MEM_TABLE: u32 = 5;
pub(super) const SET_VRING_NUM: u32 = 8;
pub(super) const SET_VRING_ADDR: u32 = 9;
pub(super) const SET_VRING_BASE: u32 = 10;
pub(super) const GET_VRING_BASE: u32 = 11;
pub(super) const SET_VRING_KICK: u32 = 12;
pub(super) const SET_VRING_CALL: u32 = 13;
pub(super) const SET_VRING_ERR: u32 = 14;
pub(super) const GET_PROTOCOL_FEATURES: u32 = 15;
pub(super) const SET_PROTOCOL_FEATURES: u32 = 16;
pub(super) const GET_QUEUE_NUM: u32 = 17;
pub(super) const SET_VRING_ENABLE: u32 = 18;
pub(super) const SEND_RARP: u32 = 19;

/// `VHOST_USER_F_PROTOCOL_FEATURES`: a virtio feature bit that only the
/// vhost-user layer sees.
pub(super) const F_PROTOCOL_FEATURES: u64 = 1 << 30;

/// In a `SET_VRING_KICK`/`CALL`/`ERR` payload: no descriptor comes.
pub(super) const VRING_NOFD: u64 = 1 << 8;

const HEADER_LEN: usize = 12;
/// Version 1 in the low two bits of the flags.
const VERSION: u32 = 1;
const VERSION_MASK: u32 = 0x3;
const FLAG_REPLY: u32 = 1 << 2;
/// The largest payload accepted: a memory table of eight regions is 200
/// bytes; nothing this backend handles is larger.
const MAX_PAYLOAD: usize = 4096;
/// The most descriptors one message carries (a memory table's regions).
pub(super) const MAX_FDS: usize = 8;

/// One message from the frontend.
#[derive(Debug)]
pub(super) struct Message {
    pub(super) request: u32,
    pub(super) payload: Vec<u8>,
    pub(super) fds: Vec<OwnedFd>,
}

impl Message {
    /// The `u32` at `offset` of the payload.
    pub(super) fn u32_at(&self, offset: usize) -> io::Result<u32> {
        let bytes = self
            .payload
            .get(offset..offset.saturating_add(4))
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .ok_or_else(|| self.short())?;
        Ok(u32::from_ne_bytes(bytes))
    }

    /// The `u64` at `offset` of the payload.
    pub(super) fn u64_at(&self, offset: usize) -> io::Result<u64> {
        let bytes = self
            .payload
            .get(offset..offset.saturating_add(8))
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .ok_or_else(|| self.short())?;
        Ok(u64::from_ne_bytes(bytes))
    }

    fn short(&self) -> io::Error {
        invalid(format!(
            "request {}: payload of {} bytes too short",
            self.request,
            self.payload.len()
        ))
    }
}

/// What a read of the connection found.
#[derive(Debug)]
pub(super) enum Received {
    /// A whole message.
    Message(Message),
    /// Nothing more to read yet; part of a message may be buffered.
    Empty,
    /// The frontend closed the connection between messages.
    Closed,
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

/// The connection to the frontend, read and written without waiting: a
/// message is assembled from whatever parts arrive, and a reply the
/// frontend does not read yet waits here.
///
/// A frontend that stalls inside a message leaves it buffered, for as long
/// as it takes (nothing times it out: a partial message costs this buffer
/// and no more than an idle connection does, and the rings run meanwhile).
/// No further message is read while a reply waits, so one reply is the
/// most that waits.
#[derive(Debug)]
pub(super) struct Connection {
    stream: UnixStream,
    header: [u8; HEADER_LEN],
    /// How much of the header has arrived.
    header_len: usize,
    /// Once the header is whole: the payload, sized from it, and how much
    /// of it has arrived.
    payload: Option<(Vec<u8>, usize)>,
    /// The descriptors received with any part of the message.
    fds: Vec<OwnedFd>,
    /// Replies not yet sent.
    out: Vec<u8>,
}

impl Connection {
    /// The connection on `stream`, which must be non-blocking.
    pub(super) fn new(stream: UnixStream) -> Self {
        Self {
            stream,
            header: [0; HEADER_LEN],
            header_len: 0,
            payload: None,
            fds: Vec::new(),
            out: Vec::new(),
        }
    }

    /// The socket, for the epoll set.
    pub(super) fn stream(&self) -> &UnixStream {
        &self.stream
    }

    /// Whether a reply waits for room in the socket; no message is read
    /// until it is sent.
    pub(super) fn is_sending(&self) -> bool {
        !self.out.is_empty()
    }

    /// Reads what has arrived of the next message, without waiting; a
    /// message is returned once it is whole. Nothing is read while a reply
    /// waits.
    pub(super) fn receive(&mut self) -> io::Result<Received> {
        if self.is_sending() {
            return Ok(Received::Empty);
        }
        loop {
            let part = if self.header_len < HEADER_LEN {
                Part::Header
            } else if self.payload.is_none() {
                self.payload = Some((vec![0; self.parse_header()?], 0));
                continue;
            } else if self
                .payload
                .as_ref()
                .is_some_and(|(payload, filled)| *filled < payload.len())
            {
                Part::Payload
            } else {
                break;
            };
            match self.receive_part(part)? {
                Progress::Read => {}
                Progress::Nothing => return Ok(Received::Empty),
                Progress::Closed if self.header_len == 0 && self.fds.is_empty() => {
                    return Ok(Received::Closed);
                }
                Progress::Closed => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the frontend closed the connection inside a message",
                    ));
                }
            }
        }
        let request = self.word(0);
        let (payload, _) = self.payload.take().unwrap_or_default();
        self.header_len = 0;
        Ok(Received::Message(Message {
            request,
            payload,
            fds: std::mem::take(&mut self.fds),
        }))
    }

    /// Reads into the rest of the header or payload, never past the
    /// message.
    fn receive_part(&mut self, part: Part) -> io::Result<Progress> {
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
        let mut control = RecvAncillaryBuffer::new(&mut space);
        let flags = RecvFlags::DONTWAIT | RecvFlags::CMSG_CLOEXEC;
        let buf = match part {
            Part::Header => self.header.get_mut(self.header_len..),
            Part::Payload => self
                .payload
                .as_mut()
                .and_then(|(payload, filled)| payload.get_mut(*filled..)),
        };
        let received = {
            let mut iov = [io::IoSliceMut::new(buf.unwrap_or_default())];
            rustix::net::recvmsg(&self.stream, &mut iov, &mut control, flags)
        };
        let received = match received {
            Ok(msg) => {
                if msg.flags.contains(ReturnFlags::CTRUNC) {
                    return Err(invalid(format!(
                        "a message with more than {MAX_FDS} descriptors"
                    )));
                }
                msg.bytes
            }
            Err(rustix::io::Errno::AGAIN | rustix::io::Errno::INTR) => {
                return Ok(Progress::Nothing);
            }
            Err(rustix::io::Errno::CONNRESET) => return Ok(Progress::Closed),
            Err(e) => return Err(e.into()),
        };
        for message in control.drain() {
            if let RecvAncillaryMessage::ScmRights(rights) = message {
                self.fds.extend(rights);
            }
        }
        if self.fds.len() > MAX_FDS {
            return Err(invalid(format!(
                "a message with {} descriptors",
                self.fds.len()
            )));
        }
        if received == 0 {
            return Ok(Progress::Closed);
        }
        match part {
            Part::Header => self.header_len += received,
            Part::Payload => {
                if let Some((_, filled)) = &mut self.payload {
                    *filled += received;
                }
            }
        }
        Ok(Progress::Read)
    }

    fn word(&self, at: usize) -> u32 {
        let bytes = self
            .header
            .get(at..at + 4)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .unwrap_or_default();
        u32::from_ne_bytes(bytes)
    }

    /// Checks the whole header; returns the payload's size.
    fn parse_header(&self) -> io::Result<usize> {
        let (request, flags, size) = (self.word(0), self.word(4), self.word(8));
        if flags & VERSION_MASK != VERSION {
            return Err(invalid(format!(
                "request {request}: unknown version in flags {flags:#x}"
            )));
        }
        let size = usize::try_from(size).unwrap_or(usize::MAX);
        if size > MAX_PAYLOAD {
            return Err(invalid(format!(
                "request {request}: payload of {size} bytes"
            )));
        }
        Ok(size)
    }

    /// Queues the reply to `request` with `payload` and sends what the
    /// socket takes.
    pub(super) fn reply(&mut self, request: u32, payload: &[u8]) -> io::Result<()> {
        let size =
            u32::try_from(payload.len()).map_err(|_| invalid("reply too long".to_owned()))?;
        self.out.extend_from_slice(&request.to_ne_bytes());
        self.out
            .extend_from_slice(&(VERSION | FLAG_REPLY).to_ne_bytes());
        self.out.extend_from_slice(&size.to_ne_bytes());
        self.out.extend_from_slice(payload);
        self.flush()
    }

    /// Sends what the socket takes of the waiting replies.
    pub(super) fn flush(&mut self) -> io::Result<()> {
        while !self.out.is_empty() {
            match rustix::net::send(
                &self.stream,
                &self.out,
                SendFlags::DONTWAIT | SendFlags::NOSIGNAL,
            ) {
                Ok(n) => {
                    self.out.drain(..n.min(self.out.len()));
                }
                Err(rustix::io::Errno::AGAIN) => return Ok(()),
                Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }
}

/// Which part of a message a read fills.
#[derive(Clone, Copy, Debug)]
enum Part {
    Header,
    Payload,
}

/// What one read of the socket did.
#[derive(Clone, Copy, Debug)]
enum Progress {
    /// Some bytes of the message arrived.
    Read,
    /// Nothing has arrived.
    Nothing,
    /// The frontend closed the connection.
    Closed,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::io::Read;
    use std::os::fd::AsFd;

    use rustix::net::{SendAncillaryBuffer, SendAncillaryMessage};

    use super::*;

    fn pair() -> (Connection, UnixStream) {
        let (ours, theirs) = UnixStream::pair().unwrap();
        ours.set_nonblocking(true).unwrap();
        (Connection::new(ours), theirs)
    }

    fn header(request: u32, flags: u32, size: u32) -> Vec<u8> {
        [request, flags, size]
            .iter()
            .flat_map(|word| word.to_ne_bytes())
            .collect()
    }

    #[test]
    fn a_message_sent_a_byte_at_a_time_is_assembled_with_its_descriptor() {
        let (mut conn, vmm) = pair();
        let mut message = header(SET_VRING_KICK, VERSION, 8);
        message.extend_from_slice(&1u64.to_ne_bytes());
        let (kick, _) = UnixStream::pair().unwrap();
        let fds = [kick.as_fd()];
        for (i, byte) in message.iter().enumerate() {
            assert!(matches!(conn.receive().unwrap(), Received::Empty), "{i}");
            let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
            let mut control = SendAncillaryBuffer::new(&mut space);
            if i == 0 {
                assert!(control.push(SendAncillaryMessage::ScmRights(&fds)));
            }
            let iov = [io::IoSlice::new(std::slice::from_ref(byte))];
            rustix::net::sendmsg(&vmm, &iov, &mut control, SendFlags::empty()).unwrap();
        }
        let Received::Message(received) = conn.receive().unwrap() else {
            panic!("the whole message is received");
        };
        assert_eq!(received.request, SET_VRING_KICK);
        assert_eq!(received.u64_at(0).unwrap(), 1);
        assert_eq!(received.fds.len(), 1);
        assert!(matches!(conn.receive().unwrap(), Received::Empty));
        drop(vmm);
        assert!(matches!(conn.receive().unwrap(), Received::Closed));
    }

    #[test]
    fn a_message_cut_short_by_the_frontend_is_an_error_not_a_close() {
        let (mut conn, mut vmm) = pair();
        std::io::Write::write_all(&mut vmm, &header(GET_FEATURES, VERSION, 0)[..5]).unwrap();
        assert!(matches!(conn.receive().unwrap(), Received::Empty));
        drop(vmm);
        let error = conn.receive().unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn a_header_with_an_oversized_payload_is_refused_before_any_allocation() {
        let (mut conn, mut vmm) = pair();
        std::io::Write::write_all(&mut vmm, &header(SET_MEM_TABLE, VERSION, u32::MAX)).unwrap();
        let error = conn.receive().unwrap_err();
        assert!(error.to_string().contains("payload of"), "{error}");
    }

    #[test]
    fn a_reply_the_frontend_does_not_read_waits_and_holds_back_the_next_message() {
        let (mut conn, mut vmm) = pair();
        // Fill the socket towards the frontend.
        let filler = vec![0u8; 4096];
        while rustix::net::send(conn.stream(), &filler, SendFlags::DONTWAIT).is_ok() {}
        conn.reply(GET_FEATURES, &7u64.to_ne_bytes()).unwrap();
        assert!(conn.is_sending());
        std::io::Write::write_all(&mut vmm, &header(GET_FEATURES, VERSION, 0)).unwrap();
        assert!(matches!(conn.receive().unwrap(), Received::Empty));
        // The frontend reads what was queued; the reply goes out whole.
        vmm.set_nonblocking(true).unwrap();
        let mut sink = vec![0u8; 1 << 16];
        let mut received = Vec::new();
        let mut drain = |received: &mut Vec<u8>| {
            loop {
                match vmm.read(&mut sink) {
                    Ok(n) if n > 0 => received.extend_from_slice(&sink[..n]),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                    other => panic!("{other:?}"),
                }
            }
        };
        for _ in 0..10_000 {
            drain(&mut received);
            conn.flush().unwrap();
            if !conn.is_sending() {
                break;
            }
        }
        drain(&mut received);
        assert!(!conn.is_sending());
        let reply = &received[received.len() - 20..];
        assert_eq!(
            reply[..12],
            header(GET_FEATURES, VERSION | FLAG_REPLY, 8)[..]
        );
        assert_eq!(reply[12..], 7u64.to_ne_bytes());
        assert!(matches!(conn.receive().unwrap(), Received::Message(_)));
    }
}
