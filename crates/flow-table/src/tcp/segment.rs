//! What crosses the boundary of the state machine: segments from the guest,
//! segments to the guest, and operations on the host socket.

use super::seq::SeqNum;

/// The control bits of a segment that the state machine acts on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Flags {
    /// SYN: synchronize sequence numbers.
    pub syn: bool,
    /// FIN: no more data from the sender.
    pub fin: bool,
    /// RST: reset the connection.
    pub rst: bool,
    /// PSH: push buffered data to the application.
    pub psh: bool,
}

/// The header of a segment the guest sent, already parsed and checksummed.
///
/// The payload stays in the guest's frame; it is passed next to this header
/// as a borrowed slice.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Segment {
    /// Sequence number of the first octet (of the SYN when `flags.syn`).
    pub seq: SeqNum,
    /// Acknowledgment number, present when the ACK bit is set.
    pub ack: Option<SeqNum>,
    /// Control bits.
    pub flags: Flags,
    /// The window field as sent, before scaling.
    pub window: u16,
    /// The MSS option (SYN only).
    pub mss: Option<u16>,
    /// The window scale option (SYN only).
    pub window_scale: Option<u8>,
}

impl Segment {
    /// The sequence space the segment occupies: payload plus SYN and FIN.
    #[must_use]
    pub fn seq_len(&self, payload_len: usize) -> u32 {
        let payload = u32::try_from(payload_len).unwrap_or(u32::MAX);
        payload
            .saturating_add(u32::from(self.flags.syn))
            .saturating_add(u32::from(self.flags.fin))
    }
}

/// A range of the host socket's receive queue to peek as a segment's payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeekRange {
    /// Offset from the head of the receive queue, once every
    /// [`SocketOp::Consume`] polled so far has been carried out.
    pub offset: usize,
    /// Number of bytes to peek; the state machine only asks for bytes the
    /// relay has reported as queued.
    pub len: usize,
}

/// A segment for the guest: headers the caller builds in place, and the part
/// of the host receive queue to peek as its payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// Sequence number.
    pub seq: SeqNum,
    /// Acknowledgment number; `None` only for an RST without ACK.
    pub ack: Option<SeqNum>,
    /// Control bits.
    pub flags: Flags,
    /// Window field, already scaled down for the wire.
    pub window: u16,
    /// MSS option (SYN segments).
    pub mss: Option<u16>,
    /// Window scale option (SYN segments, only when the guest offered one or
    /// slipway is the initiator).
    pub window_scale: Option<u8>,
    /// Payload to peek from the host socket, if any.
    pub payload: Option<PeekRange>,
}

impl Transmit {
    /// A bare segment with no options and no payload.
    pub(crate) fn bare(seq: SeqNum, ack: Option<SeqNum>, flags: Flags, window: u16) -> Self {
        Self {
            seq,
            ack,
            flags,
            window,
            mss: None,
            window_scale: None,
            payload: None,
        }
    }
}

/// An operation for the relay to carry out on the host socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SocketOp {
    /// Discard this many acknowledged bytes from the head of the receive
    /// queue (`recv(MSG_TRUNC)`).
    Consume(usize),
    /// The guest closed its sending side: `shutdown(SHUT_WR)`.
    ShutdownWrite,
    /// Both directions are done: close the socket gracefully.
    Close,
    /// Abort: close with `SO_LINGER` 0 so the host peer sees an RST.
    Reset,
}

/// Why the relay could not write guest data to the host socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostError {
    /// The host peer reset the connection.
    Reset,
    /// Any other socket error; the flow ends with an RST to the guest.
    Failed,
}

/// The relay side of a guest-to-host write: the state machine hands it the
/// in-order bytes of a segment, straight from the guest's frame.
pub trait HostWriter {
    /// Writes as much of `data` as the host socket accepts now and returns
    /// the count, which is 0 when the socket is full.
    ///
    /// # Errors
    /// [`HostError`] when the socket has failed; the flow is then reset.
    fn write(&mut self, data: &[u8]) -> Result<usize, HostError>;
}

impl<F> HostWriter for F
where
    F: FnMut(&[u8]) -> Result<usize, HostError>,
{
    fn write(&mut self, data: &[u8]) -> Result<usize, HostError> {
        self(data)
    }
}

/// The readiness a flow needs from its host socket to make progress.
///
/// Interest is narrowed when nothing can happen: no readable interest while
/// bytes wait for the guest's ACK or after EOF, no writable interest unless
/// the guest is held back by a full host send buffer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Interest {
    /// Tell the state machine when new bytes arrive from the host peer.
    pub readable: bool,
    /// Tell the state machine when the host send buffer has room again.
    pub writable: bool,
}

/// The answer to a segment of a flow that does not exist (RFC 9293 §3.10.7.1).
///
/// Returns `None` for an RST, which is never answered.
#[must_use]
pub fn rst_for_unknown(seg: &Segment, payload_len: usize) -> Option<Transmit> {
    if seg.flags.rst {
        return None;
    }
    let rst = Flags {
        rst: true,
        ..Flags::default()
    };
    Some(match seg.ack {
        Some(ack) => Transmit::bare(ack, None, rst, 0),
        None => Transmit::bare(
            SeqNum::new(0),
            Some(seg.seq + seg.seq_len(payload_len)),
            rst,
            0,
        ),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn unknown_segment_with_ack_gets_rst_at_that_ack() {
        let seg = Segment {
            seq: SeqNum::new(100),
            ack: Some(SeqNum::new(7000)),
            ..Segment::default()
        };
        let rst = rst_for_unknown(&seg, 10).unwrap();
        assert_eq!(rst.seq, SeqNum::new(7000));
        assert_eq!(rst.ack, None);
        assert!(rst.flags.rst);
    }

    #[test]
    fn unknown_syn_gets_rst_ack_covering_the_syn() {
        let seg = Segment {
            seq: SeqNum::new(u32::MAX),
            flags: Flags {
                syn: true,
                ..Flags::default()
            },
            ..Segment::default()
        };
        let rst = rst_for_unknown(&seg, 0).unwrap();
        assert_eq!(rst.ack, Some(SeqNum::new(0)));
    }

    #[test]
    fn rst_is_never_answered() {
        let seg = Segment {
            flags: Flags {
                rst: true,
                ..Flags::default()
            },
            ..Segment::default()
        };
        assert!(rst_for_unknown(&seg, 0).is_none());
    }
}
