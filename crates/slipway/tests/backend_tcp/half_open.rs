//! Half-open flows: capped like a SYN backlog and reclaimed at the handshake
//! timeout; SYNs to group addresses dropped without an RST.

use test_support::harness;

use std::io::Read;
use std::net::{Ipv4Addr, SocketAddrV4, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use flow_table::Protocol;
use smoltcp::wire::TcpControl;

use harness::{
    Frame, GuestSeg, GuestTcp, Harness, State, TcpOpts, default_config, listen_with, via_gateway,
};

/// Half-open flows (the guest's SYN taken, its handshake not complete).
fn half_open_flows(h: &Harness) -> u32 {
    use flow_table::tcp::Phase;
    h.backend
        .tcp_flows_by_phase()
        .into_iter()
        .filter(|(phase, _)| matches!(phase, Phase::Connecting | Phase::SynReceived))
        .map(|(_, n)| n)
        .sum()
}

/// Accepts every connection on `listener` until told to stop, then reports
/// how many it took and how many of them saw slipway's socket close.
fn spawn_acceptor(
    listener: std::net::TcpListener,
) -> (
    std::sync::mpsc::Sender<()>,
    thread::JoinHandle<(usize, usize)>,
) {
    let (stop, stopped) = std::sync::mpsc::channel::<()>();
    let acceptor = thread::spawn(move || {
        listener.set_nonblocking(true).unwrap();
        let mut streams = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            match listener.accept() {
                Ok((stream, _)) => streams.push(stream),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if stopped.try_recv().is_ok() {
                        break;
                    }
                    thread::sleep(Duration::from_millis(2));
                }
                Err(e) => panic!("accept: {e}"),
            }
        }
        let closed = streams
            .iter_mut()
            .filter(|stream| {
                stream.set_nonblocking(false).unwrap();
                stream
                    .set_read_timeout(Some(Duration::from_secs(2)))
                    .unwrap();
                let mut byte = [0u8; 1];
                let mut reader: &TcpStream = stream;
                match reader.read(&mut byte) {
                    Ok(0) => true,
                    Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
                    Ok(_) => false,
                }
            })
            .count();
        (streams.len(), closed)
    });
    (stop, acceptor)
}

/// Sends `syns` SYNs that the guest never acknowledges: `cap` of them are
/// admitted (one SYN-ACK each, the flows half-open), the rest dropped,
/// counted and unanswered.
fn flood_unacknowledged_syns(port: u16, syns: u16, cap: u32) -> Harness {
    let mut config = default_config();
    config.max_half_open_tcp = cap;
    config.tcp_handshake_timeout = Duration::from_millis(1500);
    let mut h = Harness::with_config(config);
    for i in 0..syns {
        let syn = GuestSeg::syn(41_000 + i, via_gateway(port), 1000 * u32::from(i), None);
        h.send(&syn.frame(&[]));
    }
    let mut seen = 0;
    let mut frames = h.collect_until(Duration::from_secs(5), |f| {
        seen += usize::from(f.tcp().is_some_and(|t| t.syn && t.ack.is_some()));
        seen == cap as usize
    });
    frames.extend(h.collect_for(Duration::from_millis(200)));
    let syn_acks = frames
        .iter()
        .filter_map(Frame::tcp)
        .filter(|t| t.syn && t.ack.is_some())
        .count();
    assert_eq!(syn_acks, cap as usize, "one SYN-ACK per admitted SYN");
    assert_eq!(half_open_flows(&h), cap);
    assert_eq!(h.backend.open_flows(Protocol::Tcp), cap);
    assert_eq!(
        h.backend.counters().syn_backlog_drops,
        u64::from(syns) - u64::from(cap)
    );
    assert!(
        frames.iter().filter_map(Frame::tcp).all(|t| !t.rst),
        "dropped SYNs get no answer"
    );
    h
}

/// A guest that sends SYNs and never acknowledges the SYN-ACKs holds a host
/// socket per SYN: such half-open flows are capped like a SYN backlog (the
/// SYNs beyond dropped and counted), a proper connection still gets in
/// (its retransmitted SYN once there is room), and at the handshake timeout
/// the half-open flows are reset and their sockets closed.
#[test]
fn half_open_flows_are_capped_and_reclaimed_at_the_handshake_timeout() {
    const CAP: u32 = 8;
    const SYNS: u16 = 40;
    let listener = listen_with(None, 128);
    let port = listener.local_addr().unwrap().port();
    let (stop, acceptor) = spawn_acceptor(listener);
    let mut h = flood_unacknowledged_syns(port, SYNS, CAP);

    let opts = TcpOpts {
        rto: Duration::from_millis(100),
        max_rto: Duration::from_millis(400),
        ..TcpOpts::default()
    };
    let mut ep = GuestTcp::new(opts, 42_000, via_gateway(port), 0x7000_0000);
    let start = Instant::now();
    ep.connect(start, &mut h.backend);
    let up = h.drive(&mut ep, Duration::from_secs(10), |ep, _| {
        ep.state() == State::Established
    });
    assert!(up, "a proper connection gets in: {:?}", ep.stats());
    eprintln!("proper connection established after {:?}", start.elapsed());

    let gone = h.drive(&mut ep, Duration::from_secs(5), |_, backend| {
        backend.open_flows(Protocol::Tcp) == 1
    });
    assert!(gone, "half-open flows left: {}", half_open_flows(&h));
    assert_eq!(half_open_flows(&h), 0);
    let resets = h
        .stray
        .iter()
        .filter_map(Frame::tcp)
        .filter(|t| t.rst)
        .count();
    assert_eq!(resets, CAP as usize, "each timed-out flow resets the guest");

    ep.close();
    let closed = h.drive(&mut ep, Duration::from_secs(3), |ep, _| ep.fin_acked());
    assert!(closed, "close: {:?}", ep.stats());
    h.assert_quiet("after half-open flows were reclaimed");
    stop.send(()).unwrap();
    let (accepted, seen_closed) = acceptor.join().unwrap();
    assert_eq!(
        accepted,
        CAP as usize + 1,
        "host connections: the admitted SYNs and the proper one"
    );
    assert_eq!(
        seen_closed, accepted,
        "every host connection saw slipway's socket close"
    );
}

#[test]
fn syn_to_a_broadcast_or_multicast_address_is_dropped_without_an_rst() {
    let mut h = Harness::new();
    let groups = [
        Ipv4Addr::new(10, 0, 2, 255),
        Ipv4Addr::BROADCAST,
        Ipv4Addr::new(224, 0, 0, 251),
    ];
    for (i, group) in (0u16..).zip(groups) {
        let dst = SocketAddrV4::new(group, 80);
        h.send(&GuestSeg::syn(40100 + i, dst, 1000, Some(7)).frame(&[]));
        h.send(&GuestSeg::bare(40110 + i, dst, 1000, Some(5000), TcpControl::Psh).frame(b"x"));
    }
    let frames = h.collect_for(Duration::from_millis(200));
    assert!(
        frames.iter().all(|f| f.tcp().is_none()),
        "no segment answers a group address: {frames:?}"
    );
    assert_eq!(h.backend.counters().tcp_group_drops, 6);
    assert_eq!(h.backend.counters().rst_unknown, 0);
    assert_eq!(h.backend.open_flows(Protocol::Tcp), 0);
    // A unicast destination that opens no flow still gets its RST.
    let dst = via_gateway(9);
    h.send(&GuestSeg::bare(40120, dst, 1000, Some(5000), TcpControl::Psh).frame(b"x"));
    let rst = h.poll_queued().expect("an RST for a unicast destination");
    assert!(rst.tcp().is_some_and(|t| t.rst), "{rst:?}");
    h.assert_quiet("syn to a group address");
}
