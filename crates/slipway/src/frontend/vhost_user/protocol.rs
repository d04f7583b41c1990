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
use std::time::Duration;

use rustix::event::{PollFd, PollFlags};
use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendFlags};

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
/// How long the rest of a message, or room for a reply, may take.
const IO_LIMIT: Duration = Duration::from_secs(2);

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
    /// Nothing to read yet.
    Empty,
    /// The frontend closed the connection.
    Closed,
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

/// Reads the next message if one has begun to arrive; does not wait for
/// one that has not.
pub(super) fn receive(conn: &UnixStream) -> io::Result<Received> {
    let mut header = [0u8; HEADER_LEN];
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let flags = RecvFlags::DONTWAIT | RecvFlags::CMSG_CLOEXEC;
    let received = {
        let mut iov = [io::IoSliceMut::new(&mut header)];
        rustix::net::recvmsg(conn, &mut iov, &mut control, flags)
    };
    let received = match received {
        Ok(msg) => msg.bytes,
        Err(rustix::io::Errno::AGAIN | rustix::io::Errno::INTR) => return Ok(Received::Empty),
        Err(rustix::io::Errno::CONNRESET) => return Ok(Received::Closed),
        Err(e) => return Err(e.into()),
    };
    let mut fds = Vec::new();
    for message in control.drain() {
        if let RecvAncillaryMessage::ScmRights(rights) = message {
            fds.extend(rights);
        }
    }
    if received == 0 {
        return Ok(Received::Closed);
    }
    read_exact(conn, &mut header[received..])?;
    let word =
        |i: usize| u32::from_ne_bytes([header[i], header[i + 1], header[i + 2], header[i + 3]]);
    let (request, flags, size) = (word(0), word(4), word(8));
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
    if fds.len() > MAX_FDS {
        return Err(invalid(format!(
            "request {request}: {} descriptors",
            fds.len()
        )));
    }
    let mut payload = vec![0u8; size];
    read_exact(conn, &mut payload)?;
    Ok(Received::Message(Message {
        request,
        payload,
        fds,
    }))
}

/// Sends the reply to `request` with `payload`.
pub(super) fn reply(conn: &UnixStream, request: u32, payload: &[u8]) -> io::Result<()> {
    let size = u32::try_from(payload.len()).map_err(|_| invalid("reply too long".to_owned()))?;
    let mut message = Vec::with_capacity(HEADER_LEN + payload.len());
    message.extend_from_slice(&request.to_ne_bytes());
    message.extend_from_slice(&(VERSION | FLAG_REPLY).to_ne_bytes());
    message.extend_from_slice(&size.to_ne_bytes());
    message.extend_from_slice(payload);
    let mut rest = &message[..];
    while !rest.is_empty() {
        match rustix::net::send(conn, rest, SendFlags::DONTWAIT | SendFlags::NOSIGNAL) {
            Ok(n) => rest = &rest[n..],
            Err(rustix::io::Errno::AGAIN) => wait(conn, PollFlags::OUT)?,
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Fills `buf` from the connection, waiting at most [`IO_LIMIT`] for each
/// part: the frontend sends a message in one piece.
fn read_exact(conn: &UnixStream, mut buf: &mut [u8]) -> io::Result<()> {
    while !buf.is_empty() {
        match rustix::net::recv(conn, &mut *buf, RecvFlags::DONTWAIT) {
            Ok((0, _)) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the frontend closed the connection inside a message",
                ));
            }
            Ok((n, _)) => buf = &mut buf[n..],
            Err(rustix::io::Errno::AGAIN) => wait(conn, PollFlags::IN)?,
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

fn wait(conn: &UnixStream, flags: PollFlags) -> io::Result<()> {
    let mut fds = [PollFd::new(conn, flags)];
    let limit = rustix::event::Timespec {
        tv_sec: i64::try_from(IO_LIMIT.as_secs()).unwrap_or(i64::MAX),
        tv_nsec: 0,
    };
    match rustix::event::poll(&mut fds, Some(&limit)) {
        Ok(0) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "the frontend stalled inside a message",
        )),
        Ok(_) | Err(rustix::io::Errno::INTR) => Ok(()),
        Err(e) => Err(e.into()),
    }
}
