//! End-to-end: a real flow (`TcpFlowDriver`) driven by a simulated guest
//! through the relay to real peers on 127.0.0.1, with hashes checking
//! every byte.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use epoll_dispatch::{Events, Interest, Poller};
use flow_table::tcp::{CloseReason, Phase, Segment, SeqNum, TcpConfig, Transmit};
use relay_tcp::{Closure, HostSocket, Listener, PeekMethod, SocketReadiness, TcpFlowDriver};
use support::guest::{Guest, GuestConfig, Role};
use support::harness::{Relay, Report};
use support::{Fnv, LOOPBACK, SOCKET_TOKEN, WAIT_LIMIT, pattern};

const TRANSFER: usize = 64 << 20;

/// How long one end-to-end transfer may take before the test fails.
const TRANSFER_LIMIT: Duration = Duration::from_secs(60);

/// Timers short enough that a retransmission costs milliseconds.
fn config() -> TcpConfig {
    TcpConfig {
        initial_rto: Duration::from_millis(50),
        min_rto: Duration::from_millis(10),
        time_wait: Duration::from_millis(20),
        ..TcpConfig::default()
    }
}

fn throughput(what: &str, bytes: usize, report: &Report) {
    let secs = report.elapsed.as_secs_f64();
    eprintln!(
        "{what}: {} MiB in {:.2} s = {:.0} MB/s; {} loop iterations, {} epoll waits; {:?}",
        bytes >> 20,
        secs,
        bytes as f64 / secs / 1e6,
        report.iterations,
        report.waits,
        report.stats
    );
}

/// Establishes a guest-opened flow to `dst`: the guest's SYN, the relay's
/// non-blocking connect.
fn guest_opened_flow(guest: &mut Guest, dst: SocketAddr) -> Relay {
    let syn = guest.syn();
    let now = Instant::now();
    let sock = HostSocket::connect(dst).unwrap();
    let isn = SeqNum::new(u32::MAX - 77);
    Relay::new(TcpFlowDriver::for_guest_syn(&syn, isn, config(), sock, now)).unwrap()
}

/// The next segment `relay`'s flow has for the guest, its payload aside.
fn next_transmit(relay: &mut Relay, now: Instant) -> Option<Transmit> {
    let mut frame = vec![0; 65536];
    let (transmit, _) = relay.flow.poll_transmit(now, &mut frame, |_| Some(0))?;
    Some(transmit)
}

#[test]
fn guest_to_host_64_mib_into_a_4_kib_receiver_arrives_intact() {
    let listener = support::listener_with_rcvbuf(4096);
    let dst = listener.local_addr().unwrap();
    let server = thread::spawn(move || -> io::Result<(u64, u64)> {
        let mut stream = support::accept_within(&listener)?;
        stream.set_read_timeout(Some(TRANSFER_LIMIT))?;
        let (mut fnv, mut total, mut buf) = (Fnv::new(), 0u64, vec![0; 4096]);
        loop {
            match stream.read(&mut buf)? {
                0 => return Ok((total, fnv.finish())),
                n => {
                    fnv.update(&buf[..n]);
                    total += n as u64;
                }
            }
        }
    });
    let data = pattern(10, TRANSFER);
    let expected = Fnv::of(&data);
    let mut guest = Guest::new(GuestConfig::default(), data);
    let mut relay = guest_opened_flow(&mut guest, dst);
    let report = relay.drive(&mut guest, TRANSFER_LIMIT).unwrap();
    let (total, hash) = server.join().unwrap().unwrap();
    throughput("guest -> host (4 KiB receiver)", TRANSFER, &report);
    assert_eq!(total, TRANSFER as u64);
    assert_eq!(hash, expected, "host received different bytes");
    assert_eq!(report.stats.bytes_to_host, TRANSFER as u64);
    assert!(
        report.stats.host_backpressure > 0,
        "the small receiver held the guest back"
    );
    assert_eq!(report.close_reason, Some(CloseReason::Normal));
    assert_eq!(report.closed, Some(Closure::Close));
}

/// A host peer that connects to `addr`, sends `data`, closes its sending
/// side and then reads until the relay's end of stream.
fn sending_peer(addr: SocketAddr, data: Arc<Vec<u8>>) -> thread::JoinHandle<io::Result<usize>> {
    thread::spawn(move || {
        let mut stream = TcpStream::connect(addr)?;
        stream.set_write_timeout(Some(TRANSFER_LIMIT))?;
        stream.set_read_timeout(Some(TRANSFER_LIMIT))?;
        stream.write_all(&data)?;
        stream.shutdown(std::net::Shutdown::Write)?;
        let mut rest = Vec::new();
        stream.read_to_end(&mut rest)?;
        Ok(rest.len())
    })
}

/// Accepts the peer's connection on `listener`, waiting on epoll.
fn accept_flow(listener: &Listener) -> (HostSocket, SocketAddr) {
    let mut poller = Poller::new().unwrap();
    poller
        .register(listener.fd(), SOCKET_TOKEN, Interest::READABLE)
        .unwrap();
    let mut events = Events::with_capacity(1);
    let end = Instant::now() + WAIT_LIMIT;
    for _ in 0..100 {
        if let Some(accepted) = listener.accept().unwrap() {
            return accepted;
        }
        poller.wait(&mut events, Some(end)).unwrap();
    }
    panic!("no connection to accept");
}

/// One host-to-guest transfer through an inbound forward.
struct Downstream {
    bytes: usize,
    window: u16,
    mss: u16,
    drop_ack_every: Option<u64>,
    peek: Option<PeekMethod>,
}

impl Default for Downstream {
    fn default() -> Self {
        Self {
            bytes: TRANSFER,
            window: 4096,
            mss: 65480,
            drop_ack_every: None,
            peek: None,
        }
    }
}

fn host_to_guest(run: &Downstream) -> Report {
    let listener = Listener::bind(SocketAddr::from((LOOPBACK, 0))).unwrap();
    let data = Arc::new(pattern(20, run.bytes));
    let expected = Fnv::of(&data);
    let peer = sending_peer(listener.local_addr(), Arc::clone(&data));
    let (mut sock, _) = accept_flow(&listener);
    if let Some(method) = run.peek {
        sock = sock.with_peek_method(method).unwrap();
    }
    let isn = SeqNum::new(u32::MAX - 3000);
    let flow = TcpFlowDriver::for_host_accept(isn, config(), sock, Instant::now());
    let mut relay = Relay::new(flow).unwrap();
    let cfg = GuestConfig {
        role: Role::Server,
        window: run.window,
        mss: run.mss,
        wscale: None,
        drop_ack_every: run.drop_ack_every,
        ..GuestConfig::default()
    };
    let mut guest = Guest::new(cfg, Vec::new());
    let report = relay.drive(&mut guest, TRANSFER_LIMIT).unwrap();
    assert_eq!(
        peer.join().unwrap().unwrap(),
        0,
        "the peer read end of stream"
    );
    assert_eq!(guest.received, run.bytes as u64);
    assert_eq!(
        guest.hash.finish(),
        expected,
        "guest received different bytes"
    );
    assert_eq!(
        report.consumed, run.bytes as u64,
        "every byte consumed once"
    );
    assert_eq!(report.close_reason, Some(CloseReason::Normal));
    assert_eq!(report.closed, Some(Closure::Close));
    report
}

#[test]
fn host_to_guest_64_mib_through_a_4_kib_guest_window_arrives_intact() {
    let report = host_to_guest(&Downstream::default());
    throughput("host -> guest (4 KiB window)", TRANSFER, &report);
    assert_eq!(report.stats.bytes_to_guest, TRANSFER as u64);
}

#[test]
fn host_to_guest_with_lost_guest_acks_retransmits_by_peeking_again() {
    let run = Downstream {
        drop_ack_every: Some(256),
        ..Downstream::default()
    };
    let report = host_to_guest(&run);
    throughput(
        "host -> guest (4 KiB window, 1/256 ACKs lost)",
        TRANSFER,
        &report,
    );
    assert!(report.stats.timeouts > 0, "lost ACKs stalled the window");
    assert!(
        report.stats.bytes_retransmitted > 0,
        "unacknowledged bytes were peeked again"
    );
}

#[test]
fn host_to_guest_peeks_at_offsets_with_each_method() {
    let methods = if relay_tcp::peek_offset_supported() {
        vec![PeekMethod::PeekOffset, PeekMethod::Prefix]
    } else {
        eprintln!("skipping PeekMethod::PeekOffset: this kernel has no SO_PEEK_OFF for TCP");
        vec![PeekMethod::Prefix]
    };
    for method in methods {
        // Many MSS-sized segments in flight: peeks at offsets past the head.
        let run = Downstream {
            bytes: 8 << 20,
            window: 65535,
            mss: 1460,
            drop_ack_every: Some(64),
            peek: Some(method),
        };
        let report = host_to_guest(&run);
        throughput(
            &format!("host -> guest ({method:?}, 64 KiB window, MSS 1460)"),
            run.bytes,
            &report,
        );
    }
}

#[test]
fn refused_connect_resets_the_guest() {
    let mut guest = Guest::new(GuestConfig::default(), Vec::new());
    let mut relay = guest_opened_flow(&mut guest, support::closed_port());
    assert_eq!(relay.flow.phase(), Phase::Connecting);
    let readiness = support::wait_ready(relay.flow.socket(), Interest::WRITABLE).unwrap();
    let now = Instant::now();
    let executed = relay.flow.handle_readiness(readiness.into(), now);
    assert_eq!(
        relay.flow.conn().close_reason(),
        Some(CloseReason::ConnectFailed)
    );
    assert_eq!(executed.closed, Some(Closure::Reset));
    let failure = executed.failure.expect("the connect error is reported");
    assert_eq!(failure.source.kind(), io::ErrorKind::ConnectionRefused);
    let rst = next_transmit(&mut relay, now).expect("an RST for the guest");
    assert!(rst.flags.rst);
}

#[test]
fn host_reset_resets_the_guest() {
    let listener = std::net::TcpListener::bind((LOOPBACK, 0)).unwrap();
    let mut guest = Guest::new(GuestConfig::default(), Vec::new());
    let syn = guest.syn();
    let mut relay = guest_opened_flow(&mut guest, listener.local_addr().unwrap());
    let peer = support::accept_within(&listener).unwrap();
    // Up to the established flow: connect completion, SYN-ACK, ACK.
    let readiness = support::wait_ready(relay.flow.socket(), Interest::WRITABLE).unwrap();
    let now = Instant::now();
    let _ = relay.flow.handle_readiness(readiness.into(), now);
    let syn_ack = next_transmit(&mut relay, now).unwrap();
    assert!(syn_ack.flags.syn);
    let ack = Segment {
        seq: syn.seq + 1,
        ack: Some(syn_ack.seq + 1),
        window: 65535,
        ..Segment::default()
    };
    let _ = relay.flow.handle_guest_segment(now, &ack, &[]);
    assert_eq!(relay.flow.phase(), Phase::Established);
    relay.step(now).unwrap();
    rustix::net::sockopt::set_socket_linger(&peer, Some(Duration::ZERO)).unwrap();
    drop(peer);
    let interest = relay.flow.registered().unwrap();
    let readiness = support::wait_ready(relay.flow.socket(), interest).unwrap();
    let readiness = SocketReadiness::from(readiness);
    assert!(readiness.error, "{readiness:?}");
    let executed = relay.flow.handle_readiness(readiness, now);
    assert_eq!(
        relay.flow.conn().close_reason(),
        Some(CloseReason::HostReset)
    );
    assert_eq!(executed.closed, Some(Closure::Reset));
    let rst = next_transmit(&mut relay, now).unwrap();
    assert!(rst.flags.rst);
}

#[test]
fn a_persisting_hangup_is_reported_once_when_nothing_is_wanted() {
    let listener = std::net::TcpListener::bind((LOOPBACK, 0)).unwrap();
    let mut guest = Guest::new(GuestConfig::default(), Vec::new());
    let mut relay = guest_opened_flow(&mut guest, listener.local_addr().unwrap());
    let peer = support::accept_within(&listener).unwrap();
    let readiness = support::wait_ready(relay.flow.socket(), Interest::WRITABLE).unwrap();
    let now = Instant::now();
    let _ = relay.flow.handle_readiness(readiness.into(), now);
    relay.step(now).unwrap();
    // The host closed, the flow took the end of stream: it wants nothing
    // more from the socket while the guest has yet to see the FIN.
    peer.shutdown(std::net::Shutdown::Write).unwrap();
    let interest = relay.flow.registered().unwrap();
    let readiness = support::wait_ready(relay.flow.socket(), interest).unwrap();
    let readiness = SocketReadiness::from(readiness);
    assert!(readiness.read_hangup, "{readiness:?}");
    let _ = relay.flow.handle_readiness(readiness, now);
    relay.step(now).unwrap();
    let interest = relay.flow.registered().unwrap();
    assert!(!interest.is_readable() && !interest.is_writable());
    // Both directions shut: EPOLLHUP holds from now on.
    drop(peer);
    relay.flow.socket().shutdown_write().unwrap();
    let mut poller = Poller::new().unwrap();
    poller
        .register(relay.flow.socket().fd().unwrap(), SOCKET_TOKEN, interest)
        .unwrap();
    let mut events = Events::with_capacity(4);
    let first = poller
        .wait(&mut events, Some(Instant::now() + WAIT_LIMIT))
        .unwrap();
    assert_eq!(first, 1);
    let (_, readiness) = events.iter().next().unwrap();
    assert!(readiness.is_hangup(), "{readiness:?}");
    let again = poller
        .wait(
            &mut events,
            Some(Instant::now() + Duration::from_millis(100)),
        )
        .unwrap();
    assert_eq!(again, 0, "the hang-up is reported once, not on every wait");
}
