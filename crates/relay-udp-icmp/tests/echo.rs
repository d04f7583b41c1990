//! ICMP and ICMPv6 echo to 127.0.0.1 and ::1, over whichever socket kind
//! this process may open, plus the ping-socket path in a private network
//! namespace where `ping_group_range` can be opened up without touching the
//! host's setting.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::thread;
use std::time::{Duration, Instant};

use rustix::event::PollFlags;
use smoltcp::wire::checksum;

use nat_core::IpFamily;
use relay_udp_icmp::{
    DropReason, EchoAvailability, EchoKind, EchoOpenError, EchoReply, EchoSocket, SendOutcome,
    probe_echo,
};

use common::{ipv6_loopback_available, wait_for, wait_readable};

const V4: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const V6: IpAddr = IpAddr::V6(Ipv6Addr::LOCALHOST);
const PING_GROUP_RANGE: &str = "/proc/sys/net/ipv4/ping_group_range";

/// Waits for the socket's next reply, at most [`common::WAIT`]. A raw
/// socket also hears the replies of the other tests' raw flows to the same
/// host; it drops them, so a wakeup may yield nothing.
fn next_reply(socket: &mut EchoSocket, buf: &mut [u8]) -> EchoReply {
    let deadline = Instant::now() + common::WAIT;
    while Instant::now() < deadline {
        wait_for(&*socket, PollFlags::IN, Duration::from_millis(100));
        if let Some(reply) = socket.recv_reply(buf).unwrap() {
            return reply;
        }
    }
    panic!("no echo reply within {:?}", common::WAIT);
}

/// Pings `dst` three times through `socket` and checks each reply carries
/// the guest's id, the sequence number and the payload back.
fn ping_three_times(socket: &mut EchoSocket, dst: IpAddr) {
    let mut buf = vec![0u8; 2048];
    for seq in 1..=3u16 {
        let payload: Vec<u8> = (0..56u8).map(|b| b ^ (seq as u8)).collect();
        assert_eq!(
            socket.send_echo(seq, &payload).unwrap(),
            SendOutcome::Sent(56)
        );
        let reply = next_reply(socket, &mut buf);
        assert_eq!(reply.guest_id, socket.guest_id());
        assert_eq!(reply.seq, seq);
        assert_eq!(reply.from, dst);
        assert_eq!(reply.payload_len, 56);
        assert_eq!(buf[..56], payload[..]);
    }
    assert_eq!(socket.counters().to_host.datagrams, 3);
    assert_eq!(socket.counters().to_guest.datagrams, 3);
}

fn echo_over_available_kind(test: &str, family: IpFamily, dst: IpAddr) {
    let availability = probe_echo(family);
    eprintln!("{test}: {}", availability.reason());
    let Some(kind) = availability.kind() else {
        eprintln!("{test}: skipped: no kind of ICMP echo socket is allowed here");
        return;
    };
    let mut socket = EchoSocket::open_kind(dst, 0xbeef, kind).unwrap();
    assert_eq!(socket.kind(), kind);
    assert_eq!(socket.destination(), dst);
    ping_three_times(&mut socket, dst);
}

#[test]
fn echo_reply_from_ipv4_loopback_carries_the_guest_id() {
    echo_over_available_kind(
        "echo_reply_from_ipv4_loopback_carries_the_guest_id",
        IpFamily::V4,
        V4,
    );
}

#[test]
fn echo_reply_from_ipv6_loopback_carries_the_guest_id() {
    let test = "echo_reply_from_ipv6_loopback_carries_the_guest_id";
    if ipv6_loopback_available(test) {
        echo_over_available_kind(test, IpFamily::V6, V6);
    }
}

#[test]
fn open_falls_back_to_raw_when_ping_sockets_are_refused() {
    let test = "open_falls_back_to_raw_when_ping_sockets_are_refused";
    match probe_echo(IpFamily::V4) {
        EchoAvailability::PingSocket => {
            eprintln!("{test}: skipped: ping sockets are allowed here, so open() never falls back");
        }
        EchoAvailability::Raw { ping_errno, .. } => {
            assert!(ping_errno == libc::EACCES || ping_errno == libc::EPERM);
            let mut socket = EchoSocket::open(V4, 0x4242).unwrap();
            assert_eq!(socket.kind(), EchoKind::Raw);
            assert_ne!(socket.wire_id(), 0);
            ping_three_times(&mut socket, V4);
        }
        unavailable @ EchoAvailability::Unavailable { .. } => {
            let err = EchoSocket::open(V4, 0x4242).unwrap_err();
            assert!(matches!(err, EchoOpenError::Unavailable(_)), "{err}");
            assert!(err.to_string().contains("unavailable"), "{err}");
            eprintln!("{test}: skipped the raw path: {}", unavailable.reason());
        }
    }
}

/// Opens a raw echo socket, or says on stderr why it cannot.
fn raw_socket(test: &str, dst: IpAddr, guest_id: u16) -> Option<EchoSocket> {
    match EchoSocket::open_kind(dst, guest_id, EchoKind::Raw) {
        Ok(s) => Some(s),
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => {
            eprintln!("{test}: skipped: raw sockets need CAP_NET_RAW: {e}");
            None
        }
        Err(e) => panic!("raw socket: {e}"),
    }
}

#[test]
fn raw_flows_take_only_their_own_replies() {
    let test = "raw_flows_take_only_their_own_replies";
    let Some(mut a) = raw_socket(test, V4, 1) else {
        return;
    };
    let Some(mut b) = raw_socket(test, V4, 1) else {
        return;
    };
    assert_ne!(a.wire_id(), b.wire_id());
    a.send_echo(5, b"for a only").unwrap();
    let mut buf = [0u8; 256];
    let reply = next_reply(&mut a, &mut buf);
    assert_eq!((reply.guest_id, reply.seq), (1, 5));
    // b's socket heard the same reply (same host) and must not take it.
    wait_readable(&b);
    assert_eq!(b.recv_reply(&mut buf).unwrap(), None);
    assert!(b.counters().drops(DropReason::UnmatchedReply) >= 1);
    assert_eq!(b.counters().to_guest.datagrams, 0);
    // A reply for a sequence number never sent is not a's either.
    assert_eq!(a.recv_reply(&mut buf).unwrap(), None);
}

#[test]
fn raw_ipv6_echo_round_trips() {
    let test = "raw_ipv6_echo_round_trips";
    if !ipv6_loopback_available(test) {
        return;
    }
    if let Some(mut s) = raw_socket(test, V6, 0x6666) {
        ping_three_times(&mut s, V6);
    }
}

#[test]
fn oversized_echo_payload_is_a_counted_drop() {
    let Some(kind) = probe_echo(IpFamily::V4).kind() else {
        eprintln!("oversized_echo_payload_is_a_counted_drop: skipped: no echo socket allowed");
        return;
    };
    let mut s = EchoSocket::open_kind(V4, 3, kind).unwrap();
    let big = vec![0u8; 65_508];
    assert_eq!(
        s.send_echo(1, &big).unwrap(),
        SendOutcome::Dropped(DropReason::Oversize)
    );
    assert_eq!(s.counters().drops(DropReason::Oversize), 1);
}

/// Runs `body` on a thread of its own in a new network namespace with
/// loopback up and ping sockets allowed for every group. Returns why it
/// could not, instead of running `body`.
fn in_private_netns(body: impl FnOnce() + Send + 'static) -> Result<(), String> {
    let host_range = std::fs::read_to_string(PING_GROUP_RANGE).map_err(|e| e.to_string())?;
    let outcome = thread::spawn(move || -> Result<(), String> {
        // SAFETY: unshare(CLONE_NEWNET) moves only this thread into a new
        // network namespace; no memory is involved, and the thread ends
        // with the test.
        if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
            return Err(format!(
                "unshare(CLONE_NEWNET): {}",
                io::Error::last_os_error()
            ));
        }
        let mine = std::fs::read_link("/proc/thread-self/ns/net").map_err(|e| e.to_string())?;
        let process = std::fs::read_link("/proc/self/ns/net").map_err(|e| e.to_string())?;
        if mine == process {
            return Err("the thread is still in the process's network namespace".into());
        }
        // /proc/sys/net resolves through the calling thread's namespace.
        std::fs::write(PING_GROUP_RANGE, "0 2147483647").map_err(|e| e.to_string())?;
        loopback_up().map_err(|e| format!("bringing lo up: {e}"))?;
        body();
        Ok(())
    })
    .join();
    let after = std::fs::read_to_string(PING_GROUP_RANGE).map_err(|e| e.to_string())?;
    if after != host_range {
        // Never leave the host changed, even if the namespace logic is wrong.
        let _ = std::fs::write(PING_GROUP_RANGE, host_range.trim());
        panic!("the host's ping_group_range changed from {host_range:?} to {after:?}");
    }
    match outcome {
        Ok(result) => result,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

/// Sets IFF_UP on `lo` in the calling thread's network namespace.
fn loopback_up() -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let sock = std::net::UdpSocket::bind("0.0.0.0:0")?;
    // SAFETY: `ifreq` is plain old data; all-zero is a valid value.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in ifr.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: `ifr` is a valid, NUL-terminated request that outlives the
    // call; SIOCGIFFLAGS writes only the flags field of it.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &raw mut ifr) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: SIOCGIFFLAGS just filled the `ifru_flags` member of the union.
    unsafe { ifr.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short };
    // SAFETY: as above; SIOCSIFFLAGS only reads `ifr`.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &raw const ifr) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[test]
fn ping_socket_restores_the_guest_id_in_a_private_netns() {
    let test = "ping_socket_restores_the_guest_id_in_a_private_netns";
    let result = in_private_netns(move || {
        assert_eq!(probe_echo(IpFamily::V4), EchoAvailability::PingSocket);
        let mut s = EchoSocket::open(V4, 0xbeef).unwrap();
        assert_eq!(s.kind(), EchoKind::PingSocket);
        ping_three_times(&mut s, V4);
        // The kernel's identifier differs from the guest's; a second flow
        // with the same guest id gets its own.
        let other = EchoSocket::open(V4, 0xbeef).unwrap();
        assert_ne!(other.wire_id(), s.wire_id());
        match EchoSocket::open(V6, 0xcafe) {
            Ok(mut s6) => {
                assert_eq!(s6.kind(), EchoKind::PingSocket);
                ping_three_times(&mut s6, V6);
            }
            Err(e) => eprintln!("{test}: skipped the IPv6 part: {e}"),
        }
    });
    if let Err(why) = result {
        eprintln!("{test}: skipped: {why}");
    }
}

/// An address on the test's own link that no one answers: the kernel's
/// ARP for it fails and each request queued meanwhile gets an ICMP host
/// unreachable.
const ABSENT: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 77));

/// Runs `body` on a thread in a new network namespace with a veth pair,
/// 192.0.2.1/24 on one end and nothing on the other, so that 192.0.2.77 is
/// an unreachable neighbour; ping sockets allowed when `ping_sockets`, else
/// refused (the namespace's default). Returns why it could not.
fn with_absent_neighbour(
    ping_sockets: bool,
    body: impl FnOnce() + Send + 'static,
) -> Result<(), String> {
    thread::spawn(move || -> Result<(), String> {
        // SAFETY: as in `in_private_netns`: only this thread moves.
        if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
            return Err(format!(
                "unshare(CLONE_NEWNET): {}",
                io::Error::last_os_error()
            ));
        }
        let range = if ping_sockets { "0 2147483647" } else { "1 0" };
        std::fs::write(PING_GROUP_RANGE, range).map_err(|e| e.to_string())?;
        // Children inherit the namespace of the thread that spawns them.
        for args in [
            &["link", "add", "sw0", "type", "veth", "peer", "name", "sw1"][..],
            &["addr", "add", "192.0.2.1/24", "dev", "sw0"],
            &["link", "set", "lo", "up"],
            &["link", "set", "sw1", "up"],
            &["link", "set", "sw0", "up"],
        ] {
            let status = std::process::Command::new("ip")
                .args(args)
                .status()
                .map_err(|e| format!("running ip: {e}"))?;
            if !status.success() {
                return Err(format!("ip {}: {status}", args.join(" ")));
            }
        }
        body();
        Ok(())
    })
    .join()
    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

/// Pings the absent neighbour through a socket of `kind` and checks that
/// the host unreachable comes out of the error queue quoting the request
/// as the guest sent it, and that the queue is empty after.
fn host_unreachable_is_read_from_the_error_queue(kind: EchoKind) {
    let guest_id = 0x5a5a;
    let mut s = EchoSocket::open(ABSENT, guest_id).unwrap();
    assert_eq!(s.kind(), kind);
    let payload = [0x42u8; 40];
    assert_eq!(s.send_echo(9, &payload).unwrap(), SendOutcome::Sent(40));
    // ARP gives up after about three seconds.
    let got = wait_for(&s, PollFlags::IN, Duration::from_secs(15));
    assert!(got.contains(PollFlags::ERR), "no error queued: {got:?}");
    let error = s.recv_error().unwrap().expect("an error report");
    assert_eq!(error.report.errno, libc::EHOSTUNREACH);
    assert_eq!((error.report.icmp_type, error.report.icmp_code), (3, 1));
    let header = error.request_header.expect("the request is quoted");
    assert_eq!(header[0], 8, "an echo request");
    assert_eq!(u16::from_be_bytes([header[4], header[5]]), guest_id);
    assert_eq!(u16::from_be_bytes([header[6], header[7]]), 9);
    assert_eq!(error.quoted_len, 48);
    // The checksum is the one the guest's request had: over its header
    // with the guest's id and its payload.
    let sum = checksum::combine(&[checksum::data(&header), checksum::data(&payload)]);
    assert_eq!(sum, 0xffff, "the quoted checksum is the guest's");
    assert_eq!(s.recv_error().unwrap(), None);
    assert!(!wait_for(&s, PollFlags::IN, Duration::ZERO).contains(PollFlags::ERR));
    assert_eq!(s.counters().icmp_errors, 1);
}

#[test]
fn host_unreachable_on_a_ping_socket_quotes_the_guest_request() {
    let test = "host_unreachable_on_a_ping_socket_quotes_the_guest_request";
    if let Err(why) = with_absent_neighbour(true, || {
        host_unreachable_is_read_from_the_error_queue(EchoKind::PingSocket);
    }) {
        eprintln!("{test}: skipped: {why}");
    }
}

#[test]
fn host_unreachable_on_a_raw_socket_quotes_the_guest_request() {
    let test = "host_unreachable_on_a_raw_socket_quotes_the_guest_request";
    if let Err(why) = with_absent_neighbour(false, move || {
        if probe_echo(IpFamily::V4).kind() != Some(EchoKind::Raw) {
            eprintln!("{test}: skipped: raw sockets need CAP_NET_RAW");
            return;
        }
        host_unreachable_is_read_from_the_error_queue(EchoKind::Raw);
    }) {
        eprintln!("{test}: skipped: {why}");
    }
}
