//! The state the vhost-user messages build: the guest memory table and the
//! two vrings (queue layout, kick and call eventfds, started and enabled).

use std::fs::File;
use std::io;
use std::os::fd::OwnedFd;

use crate::Notifier;
use epoll_dispatch::{Interest, Poller, Token};
use rustix::fs::SealFlags;
use virtio_queue::{Queue, QueueT};
use vm_memory::{FileOffset, GuestAddress, GuestMemoryMmap};

use super::protocol::{MAX_FDS, Message};

/// The largest queue the VMM may choose; QEMU's default is 256.
pub const MAX_QUEUE_SIZE: u16 = 1024;

/// Where the frontend's process maps each region of guest memory: vring
/// addresses arrive as addresses in that process.
#[derive(Debug, Default)]
pub(super) struct MemoryTable {
    /// (guest physical address, size, frontend's address) per region.
    regions: Vec<(u64, u64, u64)>,
}

impl MemoryTable {
    /// The guest physical address of the frontend's address `user`.
    fn translate(&self, user: u64) -> Option<u64> {
        self.regions.iter().find_map(|&(gpa, size, start)| {
            let offset = user.checked_sub(start)?;
            (offset < size).then(|| gpa.checked_add(offset)).flatten()
        })
    }
}

/// Maps the regions of a `SET_MEM_TABLE` message: `u32` count, padding,
/// then per region `guest_phys_addr`, `memory_size`, `userspace_addr`,
/// `mmap_offset` (all `u64`), with one descriptor per region.
pub(super) fn map_memory(message: &Message) -> io::Result<(GuestMemoryMmap, MemoryTable)> {
    let count = usize::try_from(message.u32_at(0)?).unwrap_or(usize::MAX);
    if count == 0 || count > MAX_FDS || count != message.fds.len() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "memory table of {count} regions with {} descriptors",
                message.fds.len()
            ),
        ));
    }
    let mut ranges = Vec::with_capacity(count);
    let mut table = MemoryTable::default();
    for (i, fd) in message.fds.iter().enumerate() {
        let at = 8 + i * 32;
        let gpa = message.u64_at(at)?;
        let size = message.u64_at(at + 8)?;
        let user = message.u64_at(at + 16)?;
        let offset = message.u64_at(at + 24)?;
        let len = usize::try_from(size)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "region too large"))?;
        check_sealed(fd, i)?;
        let file = File::from(fd.try_clone()?);
        // Pages past the end of the file would fault (SIGBUS) when touched;
        // sealed, the file cannot shrink below this size afterwards.
        let end = offset.checked_add(size);
        let file_len = file.metadata()?.len();
        if end.is_none_or(|end| end > file_len) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("memory region {i} extends past the end of its file"),
            ));
        }
        ranges.push((GuestAddress(gpa), len, Some(FileOffset::new(file, offset))));
        table.regions.push((gpa, size, user));
    }
    ranges.sort_by_key(|range| range.0);
    let memory = GuestMemoryMmap::from_ranges_with_files(ranges)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("memory table: {e}")))?;
    tracing::debug!(regions = count, "guest memory mapped");
    Ok((memory, table))
}

/// Refuses region `i`'s descriptor unless it is sealed against shrinking:
/// a file the VMM truncates under the mapping turns slipway's next access
/// of the region into SIGBUS, which would kill it. QEMU's
/// `memory-backend-memfd` seals its memfd so (`seal=on`, the default);
/// files of `memory-backend-file` (on /dev/shm or hugetlbfs) cannot be
/// sealed and are refused.
fn check_sealed(fd: &OwnedFd, i: usize) -> io::Result<()> {
    let seals = match rustix::fs::fcntl_get_seals(fd) {
        Ok(seals) => seals,
        // Not a file that takes seals.
        Err(rustix::io::Errno::INVAL) => SealFlags::empty(),
        Err(e) => return Err(e.into()),
    };
    if seals.contains(SealFlags::SHRINK) {
        return Ok(());
    }
    Err(io::Error::new(
        io::ErrorKind::InvalidData,
        format!(
            "memory region {i} is not sealed against shrinking (F_SEAL_SHRINK), so the VMM \
             could truncate it under slipway; give the guest sealed RAM, e.g. QEMU's \
             -object memory-backend-memfd,share=on (seal=on is its default)"
        ),
    ))
}

/// The vring's call eventfd: how the driver is told of used buffers.
#[derive(Debug, Default)]
pub(super) struct CallFd(Option<OwnedFd>);

impl Notifier for CallFd {
    fn notify_used(&self) -> io::Result<()> {
        match &self.0 {
            Some(fd) => match rustix::io::write(fd, &1u64.to_ne_bytes()) {
                // A full counter is signalled already.
                Ok(_) | Err(rustix::io::Errno::AGAIN) => Ok(()),
                Err(e) => Err(e.into()),
            },
            None => Ok(()),
        }
    }
}

/// One virtqueue as the frontend configured it.
#[derive(Debug)]
pub(super) struct Vring {
    queue: Queue,
    kick: Option<OwnedFd>,
    call: CallFd,
    /// Started by `SET_VRING_KICK`, stopped by `GET_VRING_BASE`.
    started: bool,
    /// `SET_VRING_ENABLE`, which QEMU may send before the ring starts.
    enabled: bool,
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_owned())
}

impl Vring {
    pub(super) fn new() -> io::Result<Self> {
        let queue = Queue::new(MAX_QUEUE_SIZE)
            .map_err(|e| io::Error::other(format!("virtqueue of {MAX_QUEUE_SIZE}: {e}")))?;
        Ok(Self {
            queue,
            kick: None,
            call: CallFd::default(),
            started: false,
            enabled: false,
        })
    }

    pub(super) fn set_size(&mut self, num: u32) -> io::Result<()> {
        let size = u16::try_from(num).map_err(|_| invalid("vring size above 65535"))?;
        self.queue
            .try_set_size(size)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("vring size: {e}")))
    }

    /// `vhost_vring_addr`: index, flags, then the descriptor table, used
    /// ring and available ring as frontend addresses.
    pub(super) fn set_addresses(
        &mut self,
        message: &Message,
        table: Option<&MemoryTable>,
    ) -> io::Result<()> {
        let table = table.ok_or_else(|| invalid("vring address before the memory table"))?;
        let translate = |at: usize| -> io::Result<GuestAddress> {
            let user = message.u64_at(at)?;
            table
                .translate(user)
                .map(GuestAddress)
                .ok_or_else(|| invalid("vring address outside guest memory"))
        };
        let (desc, used, avail) = (translate(8)?, translate(16)?, translate(24)?);
        let bad = |e: virtio_queue::Error| {
            io::Error::new(io::ErrorKind::InvalidData, format!("vring address: {e}"))
        };
        self.queue.try_set_desc_table_address(desc).map_err(bad)?;
        self.queue.try_set_used_ring_address(used).map_err(bad)?;
        self.queue.try_set_avail_ring_address(avail).map_err(bad)?;
        Ok(())
    }

    pub(super) fn set_base(&mut self, num: u32) -> io::Result<()> {
        let base = u16::try_from(num).map_err(|_| invalid("vring base above 65535"))?;
        self.queue.set_next_avail(base);
        self.queue.set_next_used(base);
        Ok(())
    }

    /// Starts the ring with its kick descriptor (polled ring without one is
    /// not supported: the ring then only runs on other events).
    pub(super) fn start(
        &mut self,
        kick: Option<OwnedFd>,
        poller: &Poller,
        token: Token,
    ) -> io::Result<()> {
        if let Some(old) = self.kick.take() {
            let _ = poller.unregister(&old);
        }
        if let Some(fd) = &kick {
            poller.register(fd, token, Interest::READABLE)?;
        }
        self.kick = kick;
        self.queue.set_ready(true);
        self.started = true;
        Ok(())
    }

    /// Stops the ring and returns where the driver's next chain is, as
    /// `GET_VRING_BASE` answers.
    pub(super) fn stop(&mut self, poller: &Poller) -> u16 {
        if let Some(old) = self.kick.take() {
            let _ = poller.unregister(&old);
        }
        self.started = false;
        self.queue.set_ready(false);
        self.queue.next_avail()
    }

    /// Between `SET_VRING_KICK` and `GET_VRING_BASE`.
    pub(super) fn is_started(&self) -> bool {
        self.started
    }

    pub(super) fn set_call(&mut self, fd: Option<OwnedFd>) {
        self.call = CallFd(fd);
    }

    pub(super) fn set_enabled(&mut self, enabled: bool) {
        self.enabled = enabled;
    }

    /// Reads the kick eventfd so that it stops polling readable; it is
    /// non-blocking, and nothing to read is no kick.
    ///
    /// # Errors
    /// A descriptor that reads as ended or fails, which is no eventfd and
    /// would poll readable forever.
    pub(super) fn drain_kick(&self) -> io::Result<()> {
        let Some(fd) = &self.kick else {
            return Ok(());
        };
        let mut count = [0u8; 8];
        match rustix::io::read(fd, &mut count) {
            Ok(8) | Err(rustix::io::Errno::AGAIN | rustix::io::Errno::INTR) => Ok(()),
            Ok(n) => Err(invalid(&format!(
                "the kick descriptor read {n} bytes, not an eventfd's 8"
            ))),
            Err(e) => Err(io::Error::new(
                io::Error::from(e).kind(),
                format!("the kick descriptor cannot be read: {e}"),
            )),
        }
    }

    /// The queue and its notifier, if the ring is started and enabled.
    pub(super) fn running(&mut self) -> Option<(&mut Queue, &CallFd)> {
        (self.started && self.enabled && self.queue.ready())
            .then_some((&mut self.queue, &self.call))
    }
}
