//! `slipway stream` as QEMU meets it: the real binary listens on a UNIX
//! socket in a temporary directory, and the test connects as a synthetic
//! guest speaking QEMU's `-netdev stream` framing (a 4-byte big-endian
//! length before each frame), with frames built by `harness::frames`.
//!
//! No root needed. Every child is killed when its guard drops, every wait
//! is bounded, and the only host peers are servers on 127.0.0.1.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use test_support::common;
use test_support::harness;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use harness::frames::{arp_request, check_dhcp_reply, dhcp_message};
use harness::{
    Fnv, Frame, GATEWAY_IP, GUEST_IP, GuestTcp, GuestWire, Parsed, TcpOpts, fnv, free_port,
    gateway_mac, listen, parse, pattern, serve,
};
use rustix::event::{PollFd, PollFlags};
use smoltcp::wire::{ArpOperation, ArpRepr, DhcpMessageType};

/// The longest a test waits for slipway to start, answer or exit.
const LIMIT: Duration = Duration::from_secs(20);

/// A temporary directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("slipway-stream-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir(&path).expect("temporary directory");
        Self(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running `slipway stream`; killed on drop if it is still running.
struct Slipway {
    child: Child,
    /// The first line slipway printed on stdout.
    announcement: String,
    stderr: Option<thread::JoinHandle<String>>,
    socket: PathBuf,
    _dir: TempDir,
}

fn command(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_slipway"));
    command.args(args);
    common::scrub(&mut command);
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

fn collect(stream: impl Read + Send + 'static) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut stream = stream;
        let mut text = String::new();
        let _ = stream.read_to_string(&mut text);
        text
    })
}

impl Slipway {
    /// Starts `slipway stream --socket DIR/guest.sock ARGS` and waits for
    /// the line that says it listens.
    fn start(args: &[&str]) -> Self {
        let dir = TempDir::new();
        Self::start_in(dir, args)
    }

    fn start_in(dir: TempDir, args: &[&str]) -> Self {
        Self::start_configured(dir, args, |_| {})
    }

    /// [`start_in`](Self::start_in) with the command configured further.
    fn start_configured(dir: TempDir, args: &[&str], configure: impl FnOnce(&mut Command)) -> Self {
        let socket = dir.0.join("guest.sock");
        let mut all = vec!["stream", "--socket", socket.to_str().unwrap()];
        all.extend_from_slice(args);
        let mut command = command(&all);
        configure(&mut command);
        let mut child = command.spawn().expect("slipway starts");
        let stderr = collect(child.stderr.take().unwrap());
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let first = lines.next().and_then(Result::ok).unwrap_or_default();
            let _ = tx.send(first);
            for _ in lines {}
        });
        let mut slipway = Self {
            child,
            announcement: String::new(),
            stderr: Some(stderr),
            socket,
            _dir: dir,
        };
        match rx.recv_timeout(LIMIT) {
            Ok(line) if !line.is_empty() => slipway.announcement = line,
            _ => {
                let (status, stderr) = slipway.wait();
                panic!("slipway did not announce its socket ({status:?}):\n{stderr}");
            }
        }
        slipway
    }

    fn connect(&self) -> StreamGuest {
        StreamGuest::new(UnixStream::connect(&self.socket).expect("connect to slipway"))
    }

    /// Waits for slipway to exit (killing it after [`LIMIT`]); returns its
    /// status and stderr.
    fn wait(&mut self) -> (ExitStatus, String) {
        let deadline = Instant::now() + LIMIT;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let status = self.child.wait().unwrap();
                let stderr = self.stderr.take().map(|h| h.join().unwrap());
                panic!("slipway did not exit within {LIMIT:?} ({status:?}):\n{stderr:?}");
            }
            thread::sleep(Duration::from_millis(10));
        };
        let stderr = self
            .stderr
            .take()
            .map(|h| h.join().unwrap())
            .unwrap_or_default();
        (status, stderr)
    }

    fn terminate(&mut self) -> (ExitStatus, String) {
        let pid = rustix::process::Pid::from_child(&self.child);
        rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
        self.wait()
    }

    fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Asserts that slipway idles for a second: the scenario's traffic has
    /// ended, its client may still be connected.
    fn assert_quiet(&self, what: &str) {
        common::assert_process_quiet(self.child.id(), 1, what);
    }
}

impl Drop for Slipway {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The guest's end of the stream: frames out with their length prefix,
/// frames in cut by a decoder of its own (not slipway's).
struct StreamGuest {
    sock: UnixStream,
    rx: Vec<u8>,
    eof: bool,
}

impl StreamGuest {
    fn new(sock: UnixStream) -> Self {
        sock.set_write_timeout(Some(LIMIT)).unwrap();
        Self {
            sock,
            rx: Vec::new(),
            eof: false,
        }
    }

    fn send(&mut self, frame: &[u8]) {
        let mut bytes = u32::try_from(frame.len()).unwrap().to_be_bytes().to_vec();
        bytes.extend_from_slice(frame);
        self.sock
            .write_all(&bytes)
            .expect("slipway takes the frame");
    }

    /// A whole frame from what was read, if there is one.
    fn take_frame(&mut self) -> Option<Vec<u8>> {
        let prefix = self.rx.get(..4)?;
        let len = u32::from_be_bytes(prefix.try_into().unwrap()) as usize;
        assert!(
            (14..=65535 + 14).contains(&len),
            "slipway sent a frame length of {len}"
        );
        if self.rx.len() < 4 + len {
            return None;
        }
        let frame = self.rx[4..4 + len].to_vec();
        self.rx.drain(..4 + len);
        Some(frame)
    }

    /// Waits up to `timeout` for readable bytes and reads what is there;
    /// returns false at end of file.
    fn fill(&mut self, timeout: Duration) -> bool {
        let mut fds = [PollFd::new(&self.sock, PollFlags::IN)];
        let timeout = rustix::event::Timespec::try_from(timeout).unwrap();
        if rustix::event::poll(&mut fds, Some(&timeout)).unwrap() == 0 {
            return true;
        }
        let mut buf = vec![0u8; 256 * 1024];
        let flags = rustix::net::RecvFlags::DONTWAIT;
        match rustix::net::recv(&self.sock, &mut buf[..], flags) {
            Ok((0, _)) => {
                self.eof = true;
                false
            }
            Ok((n, _)) => {
                self.rx.extend_from_slice(&buf[..n]);
                true
            }
            Err(rustix::io::Errno::AGAIN) => true,
            Err(rustix::io::Errno::CONNRESET) => {
                self.eof = true;
                false
            }
            Err(e) => panic!("reading the stream: {e}"),
        }
    }

    /// The next frame within `timeout`.
    fn recv(&mut self, timeout: Duration) -> Option<Vec<u8>> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(frame) = self.take_frame() {
                return Some(frame);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || !self.fill(left) {
                return None;
            }
        }
    }

    /// Whether slipway closes the connection within `timeout` (frames
    /// before the end are skipped).
    fn closed_within(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while !self.eof && Instant::now() < deadline {
            self.rx.clear();
            self.fill(deadline.saturating_duration_since(Instant::now()));
        }
        self.eof
    }
}

impl GuestWire for StreamGuest {
    fn send_frame(&mut self, frame: &[u8], _now: Instant) {
        self.send(frame);
    }
}

fn is_arp_reply_for_gateway(frame: &Frame) -> bool {
    matches!(
        frame.arp(),
        Some(ArpRepr::EthernetIpv4 {
            operation: ArpOperation::Reply,
            source_protocol_addr,
            target_protocol_addr,
            ..
        }) if source_protocol_addr == GATEWAY_IP && target_protocol_addr == GUEST_IP
    )
}

/// Asks for the gateway's MAC address and checks the answer.
fn arp_round_trip(guest: &mut StreamGuest) {
    guest.send(&arp_request(GATEWAY_IP));
    let reply = guest.recv(LIMIT).expect("an ARP reply");
    let Some(ArpRepr::EthernetIpv4 {
        source_hardware_addr,
        ..
    }) = Frame(reply.clone()).arp()
    else {
        panic!("not ARP: {reply:?}");
    };
    assert!(is_arp_reply_for_gateway(&Frame(reply)));
    assert_eq!(source_hardware_addr, gateway_mac());
}

/// The value of counter `name` in slipway's `--stats` output.
fn counter(stderr: &str, name: &str) -> u64 {
    stderr
        .lines()
        .find_map(|line| {
            let line = line.trim_start();
            let rest = line.strip_prefix(name)?;
            rest.trim().parse().ok()
        })
        .unwrap_or_else(|| panic!("no counter {name:?} in:\n{stderr}"))
}

#[test]
fn announces_the_qemu_options_and_serves_dhcp_and_arp() {
    let mut slipway = Slipway::start(&[]);
    let path = slipway.socket.display().to_string();
    assert!(
        slipway.announcement.contains(&format!(
            "-netdev stream,id=net0,server=off,addr.type=unix,addr.path={path} \
             -device virtio-net-pci,netdev=net0"
        )),
        "{}",
        slipway.announcement
    );
    let mut guest = slipway.connect();
    let xid = 0x5eed_0001;
    guest.send(&dhcp_message(DhcpMessageType::Discover, xid, None, None));
    let offer = Frame(guest.recv(LIMIT).expect("an OFFER"));
    let (server, offered) = check_dhcp_reply(&offer, DhcpMessageType::Offer, xid);
    guest.send(&dhcp_message(
        DhcpMessageType::Request,
        xid,
        Some(offered),
        Some(server),
    ));
    let ack = Frame(guest.recv(LIMIT).expect("an ACK"));
    check_dhcp_reply(&ack, DhcpMessageType::Ack, xid);
    arp_round_trip(&mut guest);
    slipway.assert_quiet("after DHCP and ARP");
    drop(guest);
    let (status, stderr) = slipway.wait();
    assert!(status.success(), "{status:?}: {stderr}");
}

#[test]
fn frames_split_byte_by_byte_or_packed_in_one_write_all_arrive() {
    let mut slipway = Slipway::start(&["--stats"]);
    let mut guest = slipway.connect();
    // One frame, one byte per write, with pauses so that slipway reads
    // each byte on its own.
    let frame = arp_request(GATEWAY_IP);
    let mut bytes = u32::try_from(frame.len()).unwrap().to_be_bytes().to_vec();
    bytes.extend_from_slice(&frame);
    for byte in &bytes {
        guest.sock.write_all(&[*byte]).unwrap();
        thread::sleep(Duration::from_millis(2));
    }
    let reply = Frame(guest.recv(LIMIT).expect("an answer to the split frame"));
    assert!(is_arp_reply_for_gateway(&reply));
    // Fifty frames in one write.
    const MANY: usize = 50;
    let mut packed = Vec::new();
    for _ in 0..MANY {
        packed.extend_from_slice(&bytes);
    }
    guest.sock.write_all(&packed).unwrap();
    for i in 0..MANY {
        let reply = Frame(guest.recv(LIMIT).unwrap_or_else(|| panic!("reply {i}")));
        assert!(is_arp_reply_for_gateway(&reply), "reply {i}");
    }
    slipway.assert_quiet("after split and packed frames");
    drop(guest);
    let (status, stderr) = slipway.wait();
    assert!(status.success(), "{status:?}: {stderr}");
    assert_eq!(counter(&stderr, "frames from guest"), 1 + MANY as u64);
    assert_eq!(counter(&stderr, "frames to guest"), 1 + MANY as u64);
    assert_eq!(counter(&stderr, "bad lengths (closed)"), 0);
}

#[test]
fn bad_length_prefixes_close_the_connection_with_a_clear_error() {
    let mut slipway = Slipway::start(&["--keep-listening", "--stats", "--mtu", "1500"]);
    // A claimed 4 GiB frame: refused at once, nothing allocated for it.
    let mut guest = slipway.connect();
    let mut claim = u32::MAX.to_be_bytes().to_vec();
    claim.extend_from_slice(&[0u8; 64]);
    // One write: slipway may close the stream as soon as it reads the
    // prefix, and a second write would then fail.
    guest.sock.write_all(&claim).unwrap();
    assert!(guest.closed_within(LIMIT), "slipway closes the stream");
    // A frame over the MTU but within the protocol: skipped, and the
    // connection goes on.
    let mut guest = slipway.connect();
    let mut big = arp_request(GATEWAY_IP);
    big.resize(1500 + 14 + 1, 0);
    guest.send(&big);
    arp_round_trip(&mut guest);
    assert!(slipway.is_running());
    slipway.assert_quiet("after bad lengths");
    drop(guest);
    let (status, stderr) = slipway.terminate();
    assert!(status.success(), "{status:?}: {stderr}");
    assert!(
        stderr.contains("a frame length of 4294967295 bytes, more than the protocol's 65549"),
        "{stderr}"
    );
    assert_eq!(counter(&stderr, "bad lengths (closed)"), 1);
    assert_eq!(counter(&stderr, "oversized frames dropped"), 1);
    assert_eq!(counter(&stderr, "clients"), 2);
}

#[test]
fn frames_of_0_to_13_bytes_are_dropped_and_counted_and_the_client_stays() {
    // Without --keep-listening: a client that ended would end slipway.
    let mut slipway = Slipway::start(&["--stats"]);
    let mut guest = slipway.connect();
    for len in 0..14 {
        guest.send(&vec![0xee; len]);
    }
    // The connection goes on, framed as before.
    arp_round_trip(&mut guest);
    // An empty frame alone, in its own write, and again a frame after it.
    guest.sock.write_all(&0u32.to_be_bytes()).unwrap();
    thread::sleep(Duration::from_millis(50));
    arp_round_trip(&mut guest);
    assert!(slipway.is_running(), "slipway serves on");
    drop(guest);
    let (status, stderr) = slipway.wait();
    assert!(status.success(), "{status:?}: {stderr}");
    assert_eq!(counter(&stderr, "short frames dropped"), 15);
    assert_eq!(counter(&stderr, "bad lengths (closed)"), 0);
    assert_eq!(counter(&stderr, "frames from guest"), 2);
    assert_eq!(counter(&stderr, "clients"), 1);
}

#[test]
fn a_second_client_is_refused_while_the_first_is_connected() {
    let mut slipway = Slipway::start(&["--stats"]);
    let mut first = slipway.connect();
    arp_round_trip(&mut first);
    let mut second = slipway.connect();
    assert!(second.closed_within(LIMIT), "the second client is closed");
    arp_round_trip(&mut first);
    slipway.assert_quiet("with one client refused");
    drop(first);
    let (status, stderr) = slipway.wait();
    assert!(status.success(), "{status:?}: {stderr}");
    assert!(stderr.contains("refused a second client"), "{stderr}");
    assert_eq!(counter(&stderr, "clients refused"), 1);
}

#[test]
fn exits_when_the_client_disconnects_and_removes_its_socket() {
    let mut slipway = Slipway::start(&[]);
    let mut guest = slipway.connect();
    arp_round_trip(&mut guest);
    assert!(slipway.socket.exists());
    slipway.assert_quiet("with an idle client");
    drop(guest);
    let (status, stderr) = slipway.wait();
    assert!(status.success(), "{status:?}: {stderr}");
    assert!(!slipway.socket.exists(), "the socket file is removed");
}

#[test]
fn keep_listening_serves_the_next_client_until_sigterm() {
    let mut slipway = Slipway::start(&["--keep-listening"]);
    for _ in 0..3 {
        let mut guest = slipway.connect();
        arp_round_trip(&mut guest);
    }
    assert!(slipway.is_running());
    slipway.assert_quiet("between clients");
    let (status, stderr) = slipway.terminate();
    assert!(status.success(), "{status:?}: {stderr}");
    assert!(!slipway.socket.exists(), "the socket file is removed");
}

/// Runs `slipway stream --socket PATH`, expects it to fail with status 1,
/// and returns its stderr.
fn bind_failure(path: &std::path::Path) -> String {
    let output = command(&["stream", "--socket", path.to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    stderr
}

#[test]
fn a_stale_socket_is_replaced_but_a_live_one_or_a_file_is_an_error() {
    // Stale: bound once, nobody listens any more.
    let dir = TempDir::new();
    let path = dir.0.join("guest.sock");
    drop(UnixListener::bind(&path).unwrap());
    assert!(path.exists());
    let mut slipway = Slipway::start_in(dir, &[]);
    let mut guest = slipway.connect();
    arp_round_trip(&mut guest);
    slipway.assert_quiet("on a replaced socket");
    drop(guest);
    let (status, _) = slipway.wait();
    assert!(status.success());
    // Live: someone listens there.
    let dir = TempDir::new();
    let path = dir.0.join("live.sock");
    let _live = UnixListener::bind(&path).unwrap();
    let stderr = bind_failure(&path);
    assert!(stderr.contains("another process is listening"), "{stderr}");
    assert!(path.exists(), "the live socket is left alone");
    // A regular file.
    let file = dir.0.join("file");
    std::fs::write(&file, b"not a socket").unwrap();
    let stderr = bind_failure(&file);
    assert!(stderr.contains("is not a socket"), "{stderr}");
    assert_eq!(std::fs::read(&file).unwrap(), b"not a socket");
}

#[test]
fn usage_errors_name_the_option_and_exit_2() {
    for (args, expected) in [
        (&["stream"][..], "stream: missing --socket"),
        (
            &["stream", "--socket", "s", "--mtu", "10"],
            "--mtu: invalid value \"10\"",
        ),
        (
            &["stream", "--fd", "3", "--keep-listening"],
            "--keep-listening: not with --fd",
        ),
        (
            &["stream", "--fd", "987654"],
            "--fd: descriptor 987654 is not open",
        ),
        (
            &["run", "--socket", "s", "true"],
            "--socket: only for stream",
        ),
    ] {
        let output = command(args).output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
    let help = command(&["--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(
        help.contains("slipway stream [OPTIONS] --socket PATH"),
        "{help}"
    );
}

#[test]
fn fd_serves_a_socket_the_parent_passes() {
    // Without CLOEXEC, so the child inherits it under the same number.
    let (ours, theirs) = rustix::net::socketpair(
        rustix::net::AddressFamily::UNIX,
        rustix::net::SocketType::STREAM,
        rustix::net::SocketFlags::empty(),
        None,
    )
    .unwrap();
    rustix::io::fcntl_setfd(&ours, rustix::io::FdFlags::CLOEXEC).unwrap();
    let fd = theirs.as_raw_fd().to_string();
    let mut child = command(&["stream", "--fd", &fd, "--stats"])
        .spawn()
        .unwrap();
    drop(theirs);
    let stderr = collect(child.stderr.take().unwrap());
    let mut guest = StreamGuest::new(UnixStream::from(ours));
    arp_round_trip(&mut guest);
    common::assert_process_quiet(child.id(), 1, "serving --fd, after ARP");
    drop(guest);
    let deadline = Instant::now() + LIMIT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("slipway --fd did not exit when its client closed");
        }
        thread::sleep(Duration::from_millis(10));
    };
    let stderr = stderr.join().unwrap();
    assert!(status.success(), "{status:?}: {stderr}");
    assert_eq!(counter(&stderr, "frames to guest"), 1);
}

#[test]
fn pcap_captures_the_frames_of_both_directions() {
    let dir = TempDir::new();
    let pcap = dir.0.join("guest.pcap");
    let pcap_arg = pcap.to_str().unwrap().to_owned();
    let mut slipway = Slipway::start_in(dir, &["--pcap", &pcap_arg]);
    let mut guest = slipway.connect();
    let request = arp_request(GATEWAY_IP);
    guest.send(&request);
    let reply = guest.recv(LIMIT).expect("an ARP reply");
    slipway.assert_quiet("capturing, after ARP");
    drop(guest);
    let (status, stderr) = slipway.wait();
    assert!(status.success(), "{status:?}: {stderr}");
    let bytes = std::fs::read(&pcap).expect("the capture");
    let records = test_support::harness::frames::pcap_frames(&bytes);
    assert_eq!(records, vec![&request[..], &reply[..]]);
}

#[test]
fn a_guest_that_stops_reading_gets_backpressure_and_counted_drops_only() {
    let mut slipway = Slipway::start(&["--stats"]);
    let mut guest = slipway.connect();
    // Far more replies than the stream holds: slipway keeps reading while
    // its writes wait, and takes no more frames from the backend than it
    // can keep; the backend's bounded queue drops the rest, counted.
    const FLOOD: u64 = 20_000;
    let frame = arp_request(GATEWAY_IP);
    let mut packed = Vec::new();
    for _ in 0..FLOOD {
        packed.extend_from_slice(&u32::try_from(frame.len()).unwrap().to_be_bytes());
        packed.extend_from_slice(&frame);
    }
    guest.sock.write_all(&packed).unwrap();
    thread::sleep(Duration::from_millis(200));
    let mut replies = 0;
    while let Some(reply) = guest.recv(Duration::from_millis(500)) {
        assert!(is_arp_reply_for_gateway(&Frame(reply)));
        replies += 1;
        assert!(replies <= FLOOD, "one reply per request at most");
    }
    slipway.assert_quiet("after the flood");
    drop(guest);
    let (status, stderr) = slipway.wait();
    assert!(status.success(), "{status:?}: {stderr}");
    assert_eq!(counter(&stderr, "frames from guest"), FLOOD);
    assert!(counter(&stderr, "socket write waits") > 0, "{stderr}");
    assert_eq!(counter(&stderr, "frames to guest"), replies);
    assert_eq!(counter(&stderr, "frames lost at disconnect"), 0);
    let dropped = counter(&stderr, "output queue drops");
    assert_eq!(
        replies + dropped,
        FLOOD,
        "every request answered or counted"
    );
    eprintln!("flood: {replies} replies, {dropped} counted drops");
}

#[test]
fn a_forwarded_host_port_reaches_the_guest_over_the_stream() {
    let port = free_port();
    let spec = format!("127.0.0.1/{port}:8080");
    let mut slipway = Slipway::start(&["-t", &spec]);
    let mut guest = slipway.connect();
    let client = thread::spawn(move || {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream.set_read_timeout(Some(LIMIT)).unwrap();
        stream.write_all(b"ping").unwrap();
        let mut reply = Vec::new();
        stream.read_to_end(&mut reply).unwrap();
        reply
    });
    let deadline = Instant::now() + LIMIT;
    let syn = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let frame = Frame(guest.recv(left).expect("a SYN for the guest"));
        if frame.tcp_to(8080).is_some_and(|t| t.syn) {
            break frame;
        }
    };
    let view = syn.tcp_to(8080).unwrap();
    assert_eq!(*view.src.ip(), GATEWAY_IP, "host loopback is the gateway");
    let opts = TcpOpts::default();
    let mut ep = GuestTcp::accept(opts, &view, 0x8000_0000, Instant::now(), &mut guest);
    let never = (u64::MAX, Duration::ZERO);
    let pinged = drive(&mut guest, &mut ep, LIMIT, never, |ep| {
        ep.received() == b"ping"
    });
    assert!(pinged, "data from the host: {:?}", ep.stats());
    ep.send(b"pong");
    ep.close();
    let closed = drive(&mut guest, &mut ep, LIMIT, never, |ep| {
        ep.fin_acked() && ep.peer_fin()
    });
    assert!(closed, "reply and close: {:?}", ep.stats());
    assert_eq!(client.join().unwrap(), b"pong");
    slipway.assert_quiet("after the forwarded connection");
    drop(guest);
    let (status, stderr) = slipway.wait();
    assert!(status.success(), "{status:?}: {stderr}");
}

/// Bytes each way in the TCP test.
const BULK: usize = 8 << 20;

/// Drives `ep` over the stream until `done` or `timeout`; returns whether
/// `done` became true. Once `ep` has received `pause_after` bytes the guest
/// stops reading for `pause`, so that slipway finds the stream full.
fn drive(
    guest: &mut StreamGuest,
    ep: &mut GuestTcp,
    timeout: Duration,
    (pause_after, pause): (u64, Duration),
    mut done: impl FnMut(&GuestTcp) -> bool,
) -> bool {
    let deadline = Instant::now() + timeout;
    let mut paused = false;
    while Instant::now() < deadline {
        if done(ep) {
            return true;
        }
        if !paused && ep.received_len() >= pause_after {
            paused = true;
            let t0 = Instant::now();
            thread::sleep(pause);
            let mut fds = [PollFd::new(&guest.sock, PollFlags::IN)];
            let _ = rustix::event::poll(&mut fds, None);
            eprintln!(
                "DEBUG pause at {} slept {:?} fin {} acked {} nread {:?}",
                ep.received_len(),
                t0.elapsed(),
                ep.peer_fin(),
                ep.fin_acked(),
                rustix::io::ioctl_fionread(&guest.sock)
            );
        }
        let now = Instant::now();
        ep.on_timer(now, guest);
        ep.transmit(now, guest);
        let mut wait = Duration::from_millis(5);
        if let Some(at) = ep.next_timeout() {
            wait = wait.min(at.saturating_duration_since(now));
        }
        if !guest.fill(wait) {
            return false;
        }
        while let Some(frame) = guest.take_frame() {
            if let Parsed::Tcp(view) = parse(&frame) {
                if ep.owns(&view) {
                    ep.on_segment(&view, Instant::now(), guest);
                }
            }
        }
    }
    done(ep)
}

#[test]
fn tcp_through_the_stream_moves_data_both_ways_intact() {
    let upload = pattern(BULK, 0x0b1);
    let download = pattern(BULK, 0xd0e);
    let (up_hash, down_hash) = (fnv(&upload), fnv(&download));
    let to_send = download.clone();
    let server = serve(listen(), move |mut stream| {
        let mut hash = Fnv::new();
        let mut total = 0;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = stream.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            hash.update(&buf[..n]);
            total += n;
        }
        stream.write_all(&to_send).unwrap();
        (total, hash.finish())
    });
    let mut slipway = Slipway::start(&["--stats"]);
    let mut guest = slipway.connect();
    let mut ep = GuestTcp::new(TcpOpts::default(), 41000, server.guest_addr(), 7_000);
    let start = Instant::now();
    ep.connect(start, &mut guest);
    ep.send_vec(upload);
    ep.close();
    // The server answers once the upload is in: the pause falls in the
    // middle of the download.
    const STALL: Duration = Duration::from_millis(300);
    let mut uploaded = None;
    let done = drive(&mut guest, &mut ep, LIMIT, (1 << 20, STALL), |ep| {
        if ep.fin_acked() && uploaded.is_none() {
            uploaded = Some(Instant::now());
        }
        ep.fin_acked() && ep.peer_fin()
    });
    assert!(done, "transfer stalled: {:?}", ep.stats());
    let up_time = uploaded.unwrap() - start;
    let down_time = start.elapsed() - up_time - STALL;
    let (total, hash) = server.join().expect("a connection");
    assert_eq!((total, hash), (BULK, up_hash), "the host got the upload");
    assert_eq!(ep.received_len(), BULK as u64);
    assert_eq!(ep.received_hash(), down_hash, "the guest got the download");
    let mib = (BULK >> 20) as f64;
    eprintln!(
        "stream: upload {mib:.0} MiB in {up_time:.2?} ({:.0} MiB/s), \
         download {mib:.0} MiB in {down_time:.2?} ({:.0} MiB/s, not counting a {STALL:?} stall)",
        mib / up_time.as_secs_f64(),
        mib / down_time.as_secs_f64(),
    );
    slipway.assert_quiet("after 8 MiB each way");
    drop(guest);
    let (status, stderr) = slipway.wait();
    assert!(status.success(), "{status:?}: {stderr}");
    assert!(counter(&stderr, "tcp bytes to guest") >= BULK as u64);
    assert_eq!(counter(&stderr, "frames lost at disconnect"), 0);
    assert_eq!(counter(&stderr, "tcp bytes to host"), BULK as u64);
}

/// The soft and hard `Max open files` of process `pid`.
fn open_files_limits(pid: u32) -> (u64, u64) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|line| line.starts_with("Max open files"))
        .expect("a Max open files line");
    let fields: Vec<&str> = line.split_whitespace().collect();
    (fields[3].parse().unwrap(), fields[4].parse().unwrap())
}

#[test]
fn raises_the_soft_open_files_limit_to_the_hard_one_at_start() {
    const SOFT: u64 = 256;
    let hard = rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .maximum
        .unwrap_or(u64::MAX)
        .min(8192);
    let mut slipway = Slipway::start_configured(TempDir::new(), &[], |command| {
        let low = rustix::process::Rlimit {
            current: Some(SOFT),
            maximum: Some(hard),
        };
        // SAFETY: the closure runs in the child between fork and exec and
        // only makes the setrlimit system call, which is async-signal-safe;
        // it allocates nothing and takes no lock.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(command, move || {
                rustix::process::setrlimit(rustix::process::Resource::Nofile, low)
                    .map_err(std::io::Error::from)
            });
        }
    });
    assert_eq!(
        open_files_limits(slipway.child.id()),
        (hard, hard),
        "slipway started with {SOFT} and raised it"
    );
    let mut guest = slipway.connect();
    arp_round_trip(&mut guest);
    drop(guest);
    let (status, stderr) = slipway.wait();
    assert!(status.success(), "{status:?}: {stderr}");
}

/// The lowest descriptor number process `pid` has free.
fn lowest_free_fd_of(pid: u32) -> u64 {
    let open: std::collections::HashSet<u64> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    (0..).find(|n| !open.contains(n)).unwrap()
}

#[test]
fn an_accept_failing_with_emfile_is_tried_again_later_without_spinning_or_exiting() {
    let mut slipway = Slipway::start(&["--keep-listening", "--stats"]);
    let pid = slipway.child.id();
    // Let the loop reach its first wait, with every descriptor it needs.
    thread::sleep(Duration::from_millis(300));
    let nofile = rustix::process::Resource::Nofile;
    let target = rustix::process::Pid::from_child(&slipway.child);
    let (soft, hard) = open_files_limits(pid);
    let limits = rustix::process::Rlimit {
        current: Some(soft),
        maximum: Some(hard),
    };
    let full = rustix::process::Rlimit {
        current: Some(lowest_free_fd_of(pid)),
        maximum: Some(hard),
    };
    rustix::process::prlimit(Some(target), nofile, full).unwrap();
    // The connection waits at the listener, which cannot take it.
    let mut guest = slipway.connect();
    thread::sleep(Duration::from_millis(300));
    assert!(slipway.is_running(), "slipway does not give up");
    common::assert_process_quiet(pid, 1, "a listener whose accept fails with EMFILE");
    // Descriptors come back: the waiting guest is served.
    rustix::process::prlimit(Some(target), nofile, limits).unwrap();
    arp_round_trip(&mut guest);
    drop(guest);
    let (status, stderr) = slipway.terminate();
    assert!(status.success(), "{status:?}: {stderr}");
    assert!(counter(&stderr, "accept errors") >= 1, "{stderr}");
    assert_eq!(counter(&stderr, "clients"), 1);
}

#[test]
fn max_flows_wins_over_the_open_files_limit_and_refuses_with_icmp() {
    let mut slipway = Slipway::start(&["--max-flows", "0", "--stats"]);
    let mut guest = slipway.connect();
    let server = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let to = std::net::SocketAddrV4::new(GATEWAY_IP, server.local_addr().unwrap().port());
    guest.send(&harness::frames::udp_frame(40_100, to, b"refused"));
    let reply = Frame(guest.recv(LIMIT).expect("an ICMP error"));
    assert!(
        matches!(
            reply.parse(),
            Parsed::Icmp {
                msg_type: 3,
                code: 13,
                ..
            }
        ),
        "destination unreachable, admin prohibited: {reply:?}"
    );
    drop(guest);
    let (status, stderr) = slipway.wait();
    assert!(status.success(), "{status:?}: {stderr}");
    assert_eq!(counter(&stderr, "flow limit drops"), 1);
    assert_eq!(counter(&stderr, "udp flows opened"), 0);
}
