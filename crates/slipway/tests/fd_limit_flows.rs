//! New flows when the process runs out of file descriptors: the test
//! lowers its own soft `RLIMIT_NOFILE`, so it lives alone in this test
//! binary (tests of one binary share the process) and restores the limit
//! when it ends. Synthetic guest frames against a UDP server and a TCP
//! listener on 127.0.0.1.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use slipway::Served;
use test_support::harness;

use slipway::FrameBackend;
use std::net::{SocketAddrV4, UdpSocket};
use std::time::{Duration, Instant};

use harness::frames::{GATEWAY_IP, GuestSeg, Parsed, udp_frame};
use harness::{Frame, Harness, RestoreLimit, listen, lowest_free_fd};
use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};

/// Descriptors the test leaves for new flows under its lowered limit.
const SPARE: u64 = 30;

/// New UDP flows the guest opens: more than [`SPARE`].
const FLOWS: u16 = 100;

/// ICMP destination unreachable, admin prohibited (type 3, code 13).
fn is_refusal(frame: &Frame) -> bool {
    matches!(
        frame.parse(),
        Parsed::Icmp {
            msg_type: 3,
            code: 13,
            ..
        }
    )
}

#[test]
fn flows_beyond_the_open_files_limit_are_refused_with_icmp_or_rst_and_counted() {
    let server = UdpSocket::bind("127.0.0.1:0").unwrap();
    server
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let to = SocketAddrV4::new(GATEWAY_IP, server.local_addr().unwrap().port());
    let tcp_server = listen();
    let tcp_to = SocketAddrV4::new(GATEWAY_IP, tcp_server.local_addr().unwrap().port());
    // Default limits: 16 384 UDP flows, far more than the descriptors.
    let mut h = Harness::new();
    let original = getrlimit(Resource::Nofile);
    let _restore = RestoreLimit(original);
    let lowered = Rlimit {
        current: Some(lowest_free_fd() + SPARE),
        maximum: original.maximum,
    };
    setrlimit(Resource::Nofile, lowered).expect("lower the soft limit");

    for i in 0..FLOWS {
        h.send(&udp_frame(41_000 + i, to, b"datagram"));
    }
    let counters = h.backend.counters().clone();
    let opened = counters.udp_flows_opened;
    eprintln!(
        "{opened} flows opened, {} refused for descriptors",
        counters.fd_refusals
    );
    assert!(opened <= SPARE, "no more flows than descriptors: {opened}");
    assert!(opened > 0, "flows open while descriptors last");
    assert_eq!(
        counters.fd_refusals,
        u64::from(FLOWS) - opened,
        "each refusal counted"
    );
    let frames = h.collect_for(Duration::from_millis(300));
    let refusals = frames.iter().filter(|f| is_refusal(f)).count() as u64;
    assert_eq!(
        refusals, counters.fd_refusals,
        "an ICMP error for each refusal"
    );
    // A TCP SYN now: no socket for it, an RST.
    h.send(&GuestSeg::syn(43_000, tcp_to, 7, None).frame(&[]));
    let frames = h.collect_for(Duration::from_millis(100));
    assert!(
        frames
            .iter()
            .any(|f| f.tcp_to(43_000).is_some_and(|t| t.rst)),
        "the SYN is answered with an RST"
    );
    assert_eq!(h.backend.counters().fd_refusals, counters.fd_refusals + 1);
    assert_eq!(h.backend.counters().tcp_flows_opened, 0);
    let counters = h.backend.counters().clone();
    h.assert_quiet("UDP flows at the open files limit");

    // The flows expire (their idle timeout, on the backend's clock), their
    // descriptors close, and a new flow opens again.
    h.backend
        .handle_timeout(Instant::now() + Duration::from_secs(3600));
    assert_eq!(h.backend.counters().datagram_flows_expired, opened);
    h.send(&udp_frame(42_000, to, b"after"));
    assert_eq!(h.backend.counters().udp_flows_opened, opened + 1);
    assert_eq!(h.backend.counters().fd_refusals, counters.fd_refusals);
    let mut buf = [0u8; 64];
    let mut got = Vec::new();
    for _ in 0..=opened {
        let (n, _) = server
            .recv_from(&mut buf)
            .expect("the datagrams of open flows");
        got.push(buf[..n].to_vec());
    }
    assert_eq!(got.last().map(Vec::as_slice), Some(&b"after"[..]));
    let _ = h.backend.poll_guest_frame(&mut [0u8; 1514], Instant::now());
}
