//! `slipway vhost-user` as a VMM meets it, without a VMM: the real binary
//! listens on a UNIX socket in a temporary directory, and the test plays
//! QEMU: it shares a memfd as guest memory, sends the vhost-user messages
//! in QEMU's order (`SET_VRING_ENABLE` before `SET_FEATURES`), lays out
//! the two split rings with virtio-queue's mock driver, and kicks and waits
//! on the eventfds.
//!
//! No root needed. slipway is killed if a test fails, every wait is
//! bounded, and no traffic leaves the test: the DHCP exchange is answered
//! by slipway itself.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use test_support::common;
use test_support::e2e;
use test_support::harness;
use test_support::virtq;

use std::fs::File;
use std::io::Read;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use e2e::{Proc, TempDir, wait_until};
use harness::Frame;
use harness::frames::{check_dhcp_reply, dhcp_message};
use rustix::event::{EventfdFlags, PollFd, PollFlags, eventfd};
use rustix::fs::{MemfdFlags, SealFlags};
use rustix::net::{SendAncillaryBuffer, SendAncillaryMessage, SendFlags};
use rustix::process::{Pid, Signal};
use smoltcp::wire::DhcpMessageType;
use virtio_net_kvm::{F_MRG_RXBUF, F_VERSION_1, NET_HDR_LEN};
use virtq::{Driver, MEM_SIZE};
use vm_memory::{FileOffset, GuestAddress, GuestMemoryMmap};

/// The longest a test waits for slipway to start, answer or exit.
const LIMIT: Duration = Duration::from_secs(20);

/// Where the test pretends to have mapped guest memory: vring addresses
/// are sent as addresses in the VMM's process, as QEMU sends them.
const VMM_BASE: u64 = 0x7f00_0000_0000;

const GET_FEATURES: u32 = 1;
const SET_FEATURES: u32 = 2;
const SET_OWNER: u32 = 3;
const SET_MEM_TABLE: u32 = 5;
const SET_VRING_NUM: u32 = 8;
const SET_VRING_ADDR: u32 = 9;
const SET_VRING_BASE: u32 = 10;
const GET_VRING_BASE: u32 = 11;
const SET_VRING_KICK: u32 = 12;
const SET_VRING_CALL: u32 = 13;
const SET_VRING_ENABLE: u32 = 18;
const F_PROTOCOL_FEATURES: u64 = 1 << 30;

/// A running `slipway vhost-user --stats --pcap FILE`, killed on drop if
/// it runs.
struct Slipway {
    proc: Proc,
    socket: PathBuf,
    pcap: PathBuf,
    _dir: TempDir,
}

/// What slipway left when it exited.
struct Finished {
    code: Option<i32>,
    stderr: String,
    socket_removed: bool,
    /// The frames of its capture, in order.
    frames: Vec<Vec<u8>>,
}

impl Slipway {
    /// Starts slipway and waits for the line that says it listens.
    fn start(name: &str) -> Self {
        let dir = TempDir::new(&format!("vhost-{name}"));
        let socket = dir.path().join("vhost.sock");
        let pcap = dir.path().join("guest.pcap");
        let (path, pcap_path) = (socket.to_string_lossy(), pcap.to_string_lossy());
        let args = [
            "vhost-user",
            "--socket",
            &path,
            "--stats",
            "--pcap",
            &pcap_path,
        ];
        let mut proc = Proc::spawn(&mut e2e::slipway(&args));
        proc.wait_for_line("-netdev vhost-user", LIMIT);
        Self {
            proc,
            socket,
            pcap,
            _dir: dir,
        }
    }

    /// Sends `signal` to slipway.
    fn signal(&self, signal: Signal) {
        let pid = Pid::from_raw(i32::try_from(self.proc.id()).unwrap()).unwrap();
        rustix::process::kill_process(pid, signal).unwrap();
    }

    /// Stops slipway (SIGSTOP) and waits until it is stopped.
    fn pause(&self) {
        self.signal(Signal::STOP);
        let stat = format!("/proc/{}/stat", self.proc.id());
        wait_until("slipway stops", LIMIT, || {
            let text = std::fs::read_to_string(&stat).unwrap_or_default();
            // The state follows the command's closing parenthesis.
            text.rsplit_once(") ")
                .is_some_and(|(_, rest)| rest.starts_with('T'))
        });
    }

    /// Sends SIGTERM and waits for slipway to exit; returns how long that
    /// took with what it left.
    fn terminate(self) -> (Duration, Finished) {
        let asked = Instant::now();
        self.signal(Signal::TERM);
        let proc = &self.proc;
        wait_until("slipway exits on SIGTERM", LIMIT, || proc.exited());
        let took = asked.elapsed();
        (took, self.finish())
    }

    /// Waits for slipway to exit, which it must within [`LIMIT`].
    fn finish(self) -> Finished {
        let out = self.proc.finish(LIMIT);
        let capture = std::fs::read(&self.pcap).unwrap_or_default();
        // Records follow the 24-byte file header: 16 bytes (the captured
        // length, little endian, at 8), then the frame.
        let mut frames = Vec::new();
        let mut rest = capture.get(24..).unwrap_or_default();
        while rest.len() >= 16 {
            let len = u32::from_le_bytes(rest[8..12].try_into().unwrap()) as usize;
            frames.push(rest[16..16 + len].to_vec());
            rest = &rest[16 + len..];
        }
        Finished {
            code: out.status.code(),
            stderr: out.stderr,
            socket_removed: !self.socket.exists(),
            frames,
        }
    }
}

/// The VMM's end of the vhost-user connection.
struct Vmm(UnixStream);

impl Vmm {
    fn send(&self, request: u32, payload: &[u8], fds: &[BorrowedFd<'_>]) {
        let message = encode(request, payload);
        match self.send_bytes(&message, fds) {
            Ok(sent) => assert_eq!(sent, message.len()),
            // slipway ended the connection; the test's next read says so.
            Err(rustix::io::Errno::PIPE | rustix::io::Errno::CONNRESET) => {}
            Err(e) => panic!("send request {request}: {e}"),
        }
    }

    /// Sends `message` (or part of one) with `fds`; returns the bytes sent.
    fn send_bytes(&self, message: &[u8], fds: &[BorrowedFd<'_>]) -> rustix::io::Result<usize> {
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(8))];
        let mut control = SendAncillaryBuffer::new(&mut space);
        if !fds.is_empty() {
            assert!(control.push(SendAncillaryMessage::ScmRights(fds)));
        }
        rustix::net::sendmsg(
            &self.0,
            &[std::io::IoSlice::new(message)],
            &mut control,
            SendFlags::NOSIGNAL,
        )
    }

    /// Sends `request` and returns the reply's payload.
    fn call(&mut self, request: u32, payload: &[u8]) -> Vec<u8> {
        self.send(request, payload, &[]);
        self.read_reply(request)
    }

    /// Reads the reply to `request` and returns its payload.
    fn read_reply(&mut self, request: u32) -> Vec<u8> {
        let mut header = [0u8; 12];
        self.0.read_exact(&mut header).expect("a reply header");
        let word = |i: usize| u32::from_ne_bytes(header[i..i + 4].try_into().unwrap());
        assert_eq!(word(0), request, "the reply answers the request");
        assert_eq!(word(4), 1 | 4, "version 1, reply flag");
        let mut reply = vec![0u8; usize::try_from(word(8)).unwrap()];
        self.0.read_exact(&mut reply).expect("a reply payload");
        reply
    }

    fn vring_state(&self, request: u32, index: u32, num: u32) {
        let mut payload = index.to_ne_bytes().to_vec();
        payload.extend_from_slice(&num.to_ne_bytes());
        self.send(request, &payload, &[]);
    }

    /// Negotiates as QEMU does and shares `memory` as the guest's RAM.
    fn start_device(&mut self, memory: &File) {
        let offered = u64::from_ne_bytes(self.call(GET_FEATURES, &[]).try_into().unwrap());
        assert_ne!(offered & F_VERSION_1, 0);
        self.send(SET_OWNER, &[], &[]);
        self.vring_state(SET_VRING_ENABLE, 0, 1);
        self.vring_state(SET_VRING_ENABLE, 1, 1);
        let features = F_VERSION_1 | F_MRG_RXBUF | F_PROTOCOL_FEATURES;
        self.send(SET_FEATURES, &features.to_ne_bytes(), &[]);
        self.send(SET_MEM_TABLE, &memory_table(MEM_SIZE), &[memory.as_fd()]);
    }

    /// Configures ring `index` as QEMU does when the device starts, the
    /// driver's next chain at `base`.
    fn set_up_vring(
        &self,
        index: u32,
        driver: &Driver<'_>,
        size: u32,
        base: u32,
    ) -> (OwnedFd, OwnedFd) {
        let flags = EventfdFlags::NONBLOCK | EventfdFlags::CLOEXEC;
        self.set_up_vring_with(index, driver, size, base, flags)
    }

    /// [`Self::set_up_vring`] with eventfds made with `flags`.
    fn set_up_vring_with(
        &self,
        index: u32,
        driver: &Driver<'_>,
        size: u32,
        base: u32,
        flags: EventfdFlags,
    ) -> (OwnedFd, OwnedFd) {
        self.vring_state(SET_VRING_NUM, index, size);
        let [desc, avail, used] = driver.addresses();
        let mut addr = index.to_ne_bytes().to_vec();
        addr.extend_from_slice(&0u32.to_ne_bytes());
        for gpa in [desc, used, avail] {
            addr.extend_from_slice(&(VMM_BASE + gpa.0).to_ne_bytes());
        }
        addr.extend_from_slice(&0u64.to_ne_bytes());
        self.send(SET_VRING_ADDR, &addr, &[]);
        self.vring_state(SET_VRING_BASE, index, base);
        let (kick, call) = (eventfd(0, flags).unwrap(), eventfd(0, flags).unwrap());
        self.send(
            SET_VRING_CALL,
            &u64::from(index).to_ne_bytes(),
            &[call.as_fd()],
        );
        self.send(
            SET_VRING_KICK,
            &u64::from(index).to_ne_bytes(),
            &[kick.as_fd()],
        );
        (kick, call)
    }
}

/// A vhost-user message: the header (version 1) and `payload`.
fn encode(request: u32, payload: &[u8]) -> Vec<u8> {
    let mut message = Vec::new();
    message.extend_from_slice(&request.to_ne_bytes());
    message.extend_from_slice(&1u32.to_ne_bytes());
    message.extend_from_slice(&u32::try_from(payload.len()).unwrap().to_ne_bytes());
    message.extend_from_slice(payload);
    message
}

fn signal(eventfd: &OwnedFd) {
    rustix::io::write(eventfd, &1u64.to_ne_bytes()).unwrap();
}

/// Waits at most [`LIMIT`] for `eventfd` to be signalled, and clears it.
fn wait_signalled(eventfd: &OwnedFd, what: &str) {
    let mut fds = [PollFd::new(eventfd, PollFlags::IN)];
    let limit = rustix::event::Timespec {
        tv_sec: i64::try_from(LIMIT.as_secs()).unwrap(),
        tv_nsec: 0,
    };
    let ready = rustix::event::poll(&mut fds, Some(&limit)).unwrap();
    assert_eq!(ready, 1, "{what}: no notification within {LIMIT:?}");
    let mut count = [0u8; 8];
    rustix::io::read(eventfd, &mut count).unwrap();
}

/// Guest memory in a memfd sealed against shrinking and growing, as
/// QEMU's `memory-backend-memfd` seals it, mapped here and shared with
/// slipway.
fn shared_memory() -> (File, GuestMemoryMmap) {
    let flags = MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING;
    let file = File::from(rustix::fs::memfd_create("guest", flags).unwrap());
    file.set_len(MEM_SIZE).unwrap();
    rustix::fs::fcntl_add_seals(&file, SealFlags::SHRINK | SealFlags::GROW).unwrap();
    map_shared(file)
}

/// Guest memory in a memfd without seals (a VMM that may truncate it).
fn unsealed_memory() -> (File, GuestMemoryMmap) {
    let file = File::from(rustix::fs::memfd_create("guest", MemfdFlags::CLOEXEC).unwrap());
    file.set_len(MEM_SIZE).unwrap();
    map_shared(file)
}

fn map_shared(file: File) -> (File, GuestMemoryMmap) {
    let mapping = FileOffset::new(file.try_clone().unwrap(), 0);
    let ranges = [(
        GuestAddress(0),
        usize::try_from(MEM_SIZE).unwrap(),
        Some(mapping),
    )];
    let mem = GuestMemoryMmap::from_ranges_with_files(ranges).unwrap();
    (file, mem)
}

/// Offers a receive buffer, transmits a DHCP DISCOVER with `xid` and
/// checks the OFFER that arrives in the buffer; `fds` are the receive
/// ring's kick and call and the transmit ring's kick.
fn dhcp_exchange(rx: &mut Driver<'_>, tx: &mut Driver<'_>, fds: [&OwnedFd; 3], xid: u32) {
    let [rx_kick, rx_call, tx_kick] = fds;
    let rx_buffers = rx.offer_rx(&[4096]);
    signal(rx_kick);
    let discover = dhcp_message(DhcpMessageType::Discover, xid, None, None);
    tx.offer_tx(&[&[0u8; NET_HDR_LEN], &discover]);
    signal(tx_kick);

    wait_signalled(rx_call, "the offer on the receive ring");
    let used = rx.take_used();
    assert_eq!(used.len(), 1, "one receive chain used: {used:?}");
    let (head, len) = used[0];
    assert_eq!(head, u32::from(rx_buffers.head));
    let (addr, _) = rx_buffers.buffers[0];
    let written = rx.read(addr, len);
    let frame = Frame(written[NET_HDR_LEN..].to_vec());
    check_dhcp_reply(&frame, DhcpMessageType::Offer, xid);
    assert_eq!(tx.take_used().len(), 1, "the transmit chain is returned");
}

/// A `SET_MEM_TABLE` payload: one region of `size` bytes at guest address
/// 0, at [`VMM_BASE`] in the VMM, from offset 0 of its file.
fn memory_table(size: u64) -> Vec<u8> {
    let mut table = 1u32.to_ne_bytes().to_vec();
    table.extend_from_slice(&0u32.to_ne_bytes());
    for value in [0, size, VMM_BASE, 0] {
        table.extend_from_slice(&value.to_ne_bytes());
    }
    table
}

fn connect(socket: &Path) -> Vmm {
    let conn = UnixStream::connect(socket).expect("connect to slipway");
    conn.set_read_timeout(Some(LIMIT)).unwrap();
    Vmm(conn)
}

#[test]
fn dhcp_discover_through_the_tx_ring_gets_an_offer_on_the_rx_ring_before_and_after_a_restart() {
    let slipway = Slipway::start("dhcp");
    let (file, mem) = shared_memory();
    let mut vmm = connect(&slipway.socket);

    let offered = u64::from_ne_bytes(vmm.call(GET_FEATURES, &[]).try_into().unwrap());
    assert_ne!(
        offered & F_PROTOCOL_FEATURES,
        0,
        "QEMU needs it for virtio-net"
    );
    assert_ne!(offered & F_VERSION_1, 0);
    vmm.send(SET_OWNER, &[], &[]);
    // QEMU's virtio-net enables the rings before it sets the features.
    vmm.vring_state(SET_VRING_ENABLE, 0, 1);
    vmm.vring_state(SET_VRING_ENABLE, 1, 1);
    let features = F_VERSION_1 | F_MRG_RXBUF | F_PROTOCOL_FEATURES;
    vmm.send(SET_FEATURES, &features.to_ne_bytes(), &[]);
    vmm.send(SET_MEM_TABLE, &memory_table(MEM_SIZE), &[file.as_fd()]);

    let size = 64u16;
    let mut rx = Driver::new(&mem, 0x1000, size, 0x10_0000);
    let mut tx = Driver::new(&mem, 0x8000, size, 0x80_0000);
    let (rx_kick, rx_call) = vmm.set_up_vring(0, &rx, u32::from(size), 0);
    let (tx_kick, _tx_call) = vmm.set_up_vring(1, &tx, u32::from(size), 0);
    dhcp_exchange(
        &mut rx,
        &mut tx,
        [&rx_kick, &rx_call, &tx_kick],
        0x5157_1e00,
    );

    // The guest's driver resets: QEMU stops both rings, each reporting
    // where the driver's next chain is, then starts the device again.
    for index in [0u8, 1] {
        let base = vmm.call(GET_VRING_BASE, &[index, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(base, [index, 0, 0, 0, 1, 0, 0, 0], "ring {index}");
    }
    vmm.send(SET_FEATURES, &features.to_ne_bytes(), &[]);
    let (rx_kick, rx_call) = vmm.set_up_vring(0, &rx, u32::from(size), 1);
    let (tx_kick, _tx_call) = vmm.set_up_vring(1, &tx, u32::from(size), 1);
    dhcp_exchange(
        &mut rx,
        &mut tx,
        [&rx_kick, &rx_call, &tx_kick],
        0x5157_1e01,
    );
    common::assert_process_quiet(slipway.proc.id(), 1, "after the second DHCP exchange");

    drop(vmm);
    let end = slipway.finish();
    let stderr = &end.stderr;
    assert_eq!(
        end.code,
        Some(0),
        "slipway exits cleanly when the VMM leaves:\n{stderr}"
    );
    assert!(stderr.contains("frames from guest          2"), "{stderr}");
    assert!(end.socket_removed, "the socket file is removed");
    // The capture holds each DISCOVER as the guest sent it and each OFFER.
    assert_eq!(end.frames.len(), 4, "{stderr}");
    let discover = dhcp_message(DhcpMessageType::Discover, 0x5157_1e00, None, None);
    assert_eq!(end.frames[0], discover);
    check_dhcp_reply(
        &Frame(end.frames[1].clone()),
        DhcpMessageType::Offer,
        0x5157_1e00,
    );
}

#[test]
fn sigterm_before_a_vmm_connects_ends_cleanly_and_removes_the_socket() {
    let slipway = Slipway::start("sigterm");
    common::assert_process_quiet(slipway.proc.id(), 1, "listening, no VMM yet");
    let pid = rustix::process::Pid::from_raw(i32::try_from(slipway.proc.id()).unwrap()).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    let Finished {
        code,
        stderr,
        socket_removed: removed,
        ..
    } = slipway.finish();
    assert_eq!(code, Some(0), "{stderr}");
    assert!(removed, "the socket file is removed");
}

#[test]
fn a_message_for_a_third_vring_ends_the_connection_and_slipway_exits() {
    let slipway = Slipway::start("bad-vring");
    let vmm = connect(&slipway.socket);
    vmm.send(SET_OWNER, &[], &[]);
    vmm.vring_state(SET_VRING_NUM, 2, 256);
    let Finished {
        code,
        stderr,
        socket_removed: removed,
        ..
    } = slipway.finish();
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("vring 2: the device has two"), "{stderr}");
    assert!(removed, "the socket file is removed");
}

#[test]
fn a_memory_region_past_the_end_of_its_file_is_refused_not_mapped() {
    let slipway = Slipway::start("short-memfd");
    let (file, _mem) = shared_memory();
    let vmm = connect(&slipway.socket);
    vmm.send(SET_OWNER, &[], &[]);
    vmm.send(SET_MEM_TABLE, &memory_table(2 * MEM_SIZE), &[file.as_fd()]);
    let Finished {
        code,
        stderr,
        socket_removed: removed,
        ..
    } = slipway.finish();
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("memory region 0 extends past the end of its file"),
        "{stderr}"
    );
    assert!(removed, "the socket file is removed");
}

/// Starts the device on `file` and both rings with eventfds made with
/// `flags`; returns the drivers of the receive and transmit rings and the
/// receive ring's kick and call and the transmit ring's kick.
fn start_rings<'m>(
    vmm: &mut Vmm,
    file: &File,
    mem: &'m GuestMemoryMmap,
    flags: EventfdFlags,
) -> (Driver<'m>, Driver<'m>, [OwnedFd; 3]) {
    vmm.start_device(file);
    let size = 64u16;
    let rx = Driver::new(mem, 0x1000, size, 0x10_0000);
    let tx = Driver::new(mem, 0x8000, size, 0x80_0000);
    let (rx_kick, rx_call) = vmm.set_up_vring_with(0, &rx, u32::from(size), 0, flags);
    let (tx_kick, _tx_call) = vmm.set_up_vring_with(1, &tx, u32::from(size), 0, flags);
    // The rings are up once slipway answers what follows their messages
    // (or it has refused them and closed the connection).
    vmm.send(GET_FEATURES, &[], &[]);
    let mut reply = [0u8; 20];
    let _ = vmm.0.read_exact(&mut reply);
    (rx, tx, [rx_kick, rx_call, tx_kick])
}

const NONBLOCKING: EventfdFlags = EventfdFlags::NONBLOCK.union(EventfdFlags::CLOEXEC);

#[test]
fn an_unsealed_memfd_is_refused_naming_the_qemu_backend_that_seals_it() {
    let slipway = Slipway::start("unsealed");
    let (file, _mem) = unsealed_memory();
    let vmm = connect(&slipway.socket);
    vmm.send(SET_OWNER, &[], &[]);
    vmm.send(SET_MEM_TABLE, &memory_table(MEM_SIZE), &[file.as_fd()]);
    let end = slipway.finish();
    let stderr = &end.stderr;
    assert_eq!(end.code, Some(0), "{stderr}");
    assert!(
        stderr.contains("memory region 0 is not sealed against shrinking (F_SEAL_SHRINK)"),
        "{stderr}"
    );
    assert!(stderr.contains("memory-backend-memfd"), "{stderr}");
    drop(vmm);
}

#[test]
fn a_vmm_that_truncates_its_memfd_under_started_rings_cannot_crash_slipway() {
    let slipway = Slipway::start("truncated");
    let (file, mem) = unsealed_memory();
    let mut vmm = connect(&slipway.socket);
    let (mut rx, mut tx, [rx_kick, _rx_call, tx_kick]) =
        start_rings(&mut vmm, &file, &mem, NONBLOCKING);
    rx.offer_rx(&[4096]);
    let discover = dhcp_message(DhcpMessageType::Discover, 0x5157_1e02, None, None);
    tx.offer_tx(&[&[0u8; NET_HDR_LEN], &discover]);
    // The guest's memory goes away under the rings (the test no longer
    // touches its own mapping), and the driver kicks both.
    file.set_len(0).unwrap();
    signal(&rx_kick);
    signal(&tx_kick);
    let end = slipway.finish();
    let stderr = &end.stderr;
    assert_eq!(end.code, Some(0), "slipway is not killed:\n{stderr}");
    assert!(stderr.contains("F_SEAL_SHRINK"), "{stderr}");
    drop(vmm);
}

#[test]
fn blocking_kick_eventfds_replaced_twice_with_a_kick_pending_leave_slipway_serving() {
    let slipway = Slipway::start("blocking-kicks");
    let (file, mem) = shared_memory();
    let mut vmm = connect(&slipway.socket);
    let blocking = EventfdFlags::CLOEXEC;
    let (mut rx, mut tx, [rx_kick, rx_call, tx_kick]) =
        start_rings(&mut vmm, &file, &mem, blocking);
    // Stopped, slipway finds the pending kick and both replacements of
    // its descriptor in one wait.
    slipway.pause();
    signal(&tx_kick);
    let kicks = [eventfd(0, blocking).unwrap(), eventfd(0, blocking).unwrap()];
    for kick in &kicks {
        vmm.send(SET_VRING_KICK, &1u64.to_ne_bytes(), &[kick.as_fd()]);
    }
    slipway.signal(Signal::CONT);

    let offered = vmm.call(GET_FEATURES, &[]);
    assert_eq!(offered.len(), 8, "slipway still answers the VMM");
    dhcp_exchange(
        &mut rx,
        &mut tx,
        [&rx_kick, &rx_call, &kicks[1]],
        0x5157_1e03,
    );
    let (took, end) = slipway.terminate();
    assert_eq!(end.code, Some(0), "{}", end.stderr);
    eprintln!("slipway exited {took:?} after SIGTERM");
    drop(vmm);
}

#[test]
fn a_message_completed_after_a_stall_is_handled_and_the_rings_run_meanwhile() {
    let slipway = Slipway::start("stalled");
    let (file, mem) = shared_memory();
    let mut vmm = connect(&slipway.socket);
    let (mut rx, mut tx, [rx_kick, rx_call, tx_kick]) =
        start_rings(&mut vmm, &file, &mem, NONBLOCKING);
    let message = encode(GET_FEATURES, &[]);
    assert_eq!(vmm.send_bytes(&message[..5], &[]), Ok(5));
    // Longer than any wait for the rest of a message would be.
    std::thread::sleep(Duration::from_secs(3));
    dhcp_exchange(
        &mut rx,
        &mut tx,
        [&rx_kick, &rx_call, &tx_kick],
        0x5157_1e04,
    );
    assert_eq!(vmm.send_bytes(&message[5..], &[]), Ok(7));
    let offered = u64::from_ne_bytes(vmm.read_reply(GET_FEATURES).try_into().unwrap());
    assert_ne!(offered & F_VERSION_1, 0);
    dhcp_exchange(
        &mut rx,
        &mut tx,
        [&rx_kick, &rx_call, &tx_kick],
        0x5157_1e05,
    );
    let (_, end) = slipway.terminate();
    assert_eq!(end.code, Some(0), "{}", end.stderr);
    drop(vmm);
}

#[test]
fn a_vmm_trickling_a_message_leaves_the_rings_served_and_sigterm_prompt() {
    let slipway = Slipway::start("trickle");
    let (file, mem) = shared_memory();
    let mut vmm = connect(&slipway.socket);
    let (mut rx, mut tx, [rx_kick, rx_call, tx_kick]) =
        start_rings(&mut vmm, &file, &mem, NONBLOCKING);
    // One byte every half second: a message of 40 bytes takes 20 s.
    let message = encode(GET_FEATURES, &[0u8; 28]);
    let conn = vmm.0.try_clone().unwrap();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let trickle = {
        let done = std::sync::Arc::clone(&done);
        std::thread::spawn(move || {
            for byte in message {
                if done.load(std::sync::atomic::Ordering::Relaxed) {
                    return;
                }
                if rustix::net::send(&conn, &[byte], SendFlags::NOSIGNAL).is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(500));
            }
        })
    };
    std::thread::sleep(Duration::from_secs(2));
    let exchange = Instant::now();
    dhcp_exchange(
        &mut rx,
        &mut tx,
        [&rx_kick, &rx_call, &tx_kick],
        0x5157_1e06,
    );
    let exchanged = exchange.elapsed();
    let trickling = !trickle.is_finished();
    let (took, end) = slipway.terminate();
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    trickle.join().unwrap();
    assert_eq!(end.code, Some(0), "{}", end.stderr);
    eprintln!("DHCP exchange took {exchanged:?}; slipway exited {took:?} after SIGTERM");
    assert!(
        trickling && exchanged < Duration::from_secs(8),
        "the rings are served while the message trickles in: {exchanged:?}"
    );
    assert!(
        took < Duration::from_secs(8),
        "SIGTERM is not held up by a message that trickles in: {took:?}"
    );
    drop(vmm);
}

#[test]
fn a_vmm_that_does_not_read_its_replies_leaves_the_rings_served_and_loses_no_reply() {
    let slipway = Slipway::start("unread-replies");
    let (file, mem) = shared_memory();
    let mut vmm = connect(&slipway.socket);
    let (mut rx, mut tx, [rx_kick, rx_call, tx_kick]) =
        start_rings(&mut vmm, &file, &mem, NONBLOCKING);
    // Requests until both directions of the socket are full.
    let message = encode(GET_FEATURES, &[]);
    vmm.0.set_nonblocking(true).unwrap();
    let mut sent = 0usize;
    let mut full_since: Option<Instant> = None;
    for _ in 0..200_000 {
        match vmm.send_bytes(&message, &[]) {
            Ok(n) => {
                assert_eq!(n, message.len());
                sent += 1;
                full_since = None;
            }
            Err(rustix::io::Errno::AGAIN) => {
                // Full once slipway has stopped taking requests for a while.
                let since = *full_since.get_or_insert_with(Instant::now);
                if since.elapsed() > Duration::from_secs(3) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => panic!("request {sent}: {e}"),
        }
    }
    assert!(
        full_since.is_some(),
        "the socket filled up after {sent} requests"
    );
    vmm.0.set_nonblocking(false).unwrap();
    dhcp_exchange(
        &mut rx,
        &mut tx,
        [&rx_kick, &rx_call, &tx_kick],
        0x5157_1e07,
    );
    for i in 0..sent {
        let reply = vmm.read_reply(GET_FEATURES);
        assert_eq!(reply.len(), 8, "reply {i} of {sent}");
    }
    eprintln!("{sent} requests sent before the socket filled, every one answered");
    let (_, end) = slipway.terminate();
    assert_eq!(end.code, Some(0), "{}", end.stderr);
    drop(vmm);
}
