//! Walking descriptor chains the driver offered, with every fault a driver
//! can put in one turned into a [`ChainFault`].
//!
//! virtio-queue's chain iterator ends a chain early, silently, on a bad
//! `next` index, a loop longer than the queue, an unreadable descriptor or
//! a total length past 4 GiB. A chain whose last yielded descriptor still
//! has `VIRTQ_DESC_F_NEXT` therefore did not end where the driver said, and
//! is refused as truncated.

use std::ops::Deref;

use virtio_queue::DescriptorChain;
use vm_memory::{Bytes, GuestAddress, GuestMemory, Permissions};

/// What was wrong with a descriptor chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ChainFault {
    /// A bad head or `next` index, a loop, or an unreadable descriptor.
    Truncated,
    /// A device-writable descriptor on the transmit queue, or a
    /// device-readable one on the receive queue.
    WrongDirection,
    /// A buffer outside guest memory.
    BadAddress,
    /// More bytes than the largest frame plus its header.
    TooLong,
    /// A receive chain with room for less than a `virtio_net_hdr_v1`.
    Short,
}

/// Copies a transmit chain into `buf`, once, and returns its length.
pub(crate) fn read_tx_chain<M, D>(
    mem: &M,
    chain: DescriptorChain<D>,
    buf: &mut [u8],
) -> Result<usize, ChainFault>
where
    M: GuestMemory,
    D: Deref<Target = M>,
{
    let mut len = 0usize;
    let mut ended = false;
    for desc in chain {
        if desc.is_write_only() {
            return Err(ChainFault::WrongDirection);
        }
        let end = usize::try_from(desc.len())
            .ok()
            .and_then(|n| len.checked_add(n))
            .filter(|&end| end <= buf.len())
            .ok_or(ChainFault::TooLong)?;
        mem.read_slice(&mut buf[len..end], desc.addr())
            .map_err(|_| ChainFault::BadAddress)?;
        len = end;
        ended = !desc.has_next();
    }
    if ended {
        Ok(len)
    } else {
        Err(ChainFault::Truncated)
    }
}

/// A piece of a receive buffer: where it is and how much of it the device
/// may fill.
pub(crate) type Segment = (GuestAddress, usize);

/// The room a receive chain offers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RxRoom {
    /// Bytes recorded in segments, at most the limit asked for.
    pub(crate) usable: usize,
}

/// Checks a receive chain and appends its buffers to `segments`, recording
/// no more than `limit` bytes. On a fault, what was appended is the
/// caller's to discard.
pub(crate) fn gather_rx_chain<M, D>(
    mem: &M,
    chain: DescriptorChain<D>,
    segments: &mut Vec<Segment>,
    limit: usize,
) -> Result<RxRoom, ChainFault>
where
    M: GuestMemory,
    D: Deref<Target = M>,
{
    let mut total: u64 = 0;
    let mut usable = 0usize;
    let mut ended = false;
    for desc in chain {
        if !desc.is_write_only() {
            return Err(ChainFault::WrongDirection);
        }
        ended = !desc.has_next();
        let len = usize::try_from(desc.len()).map_err(|_| ChainFault::TooLong)?;
        if len == 0 {
            continue;
        }
        if !mem.check_range(desc.addr(), len, Permissions::Write) {
            return Err(ChainFault::BadAddress);
        }
        total += u64::from(desc.len());
        let take = len.min(limit - usable);
        if take > 0 {
            segments.push((desc.addr(), take));
            usable += take;
        }
    }
    if !ended {
        return Err(ChainFault::Truncated);
    }
    if total < crate::header::NET_HDR_LEN as u64 {
        return Err(ChainFault::Short);
    }
    Ok(RxRoom { usable })
}

/// Writes `data` across `segments` in order.
pub(crate) fn write_segments<M: GuestMemory>(
    mem: &M,
    segments: &[Segment],
    data: &[u8],
) -> Result<(), vm_memory::GuestMemoryError> {
    let mut pos = 0;
    for &(addr, len) in segments {
        if pos == data.len() {
            break;
        }
        let n = len.min(data.len() - pos);
        mem.write_slice(&data[pos..pos + n], addr)?;
        pos += n;
    }
    Ok(())
}
