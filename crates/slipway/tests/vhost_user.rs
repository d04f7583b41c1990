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

#[allow(dead_code, reason = "no test here needs to skip")]
mod common;
#[allow(unused_macros, reason = "the namespace suite's `require!`")]
mod e2e;
mod support;
#[path = "../../virtio-net-kvm/tests/common/mod.rs"]
mod virtq;

use std::fs::File;
use std::io::Read;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use e2e::{Proc, TempDir};
use rustix::event::{EventfdFlags, PollFd, PollFlags, eventfd};
use rustix::net::{SendAncillaryBuffer, SendAncillaryMessage, SendFlags};
use smoltcp::wire::DhcpMessageType;
use support::Frame;
use support::frames::{check_dhcp_reply, dhcp_message};
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
        let mut message = Vec::new();
        message.extend_from_slice(&request.to_ne_bytes());
        message.extend_from_slice(&1u32.to_ne_bytes());
        message.extend_from_slice(&u32::try_from(payload.len()).unwrap().to_ne_bytes());
        message.extend_from_slice(payload);
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(8))];
        let mut control = SendAncillaryBuffer::new(&mut space);
        if !fds.is_empty() {
            assert!(control.push(SendAncillaryMessage::ScmRights(fds)));
        }
        let sent = rustix::net::sendmsg(
            &self.0,
            &[std::io::IoSlice::new(&message)],
            &mut control,
            SendFlags::empty(),
        )
        .unwrap();
        assert_eq!(sent, message.len());
    }

    /// Sends `request` and returns the reply's payload.
    fn call(&mut self, request: u32, payload: &[u8]) -> Vec<u8> {
        self.send(request, payload, &[]);
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

    /// Configures ring `index` as QEMU does when the device starts, the
    /// driver's next chain at `base`.
    fn set_up_vring(
        &self,
        index: u32,
        driver: &Driver<'_>,
        size: u32,
        base: u32,
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
        let flags = EventfdFlags::NONBLOCK | EventfdFlags::CLOEXEC;
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

/// Guest memory in a memfd, mapped here and shared with slipway.
fn shared_memory() -> (File, GuestMemoryMmap) {
    let fd = rustix::fs::memfd_create("guest", rustix::fs::MemfdFlags::CLOEXEC).unwrap();
    let file = File::from(fd);
    file.set_len(MEM_SIZE).unwrap();
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
