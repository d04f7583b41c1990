//! DNS replies arriving from the upstream: a `DnsForwarder` connected to an
//! upstream socket on host loopback forwards the input's queries; the
//! upstream answers with arbitrary bytes, either raw or carrying the
//! transaction id of a query it received (so that they match), and the
//! forwarder's replies are read into buffers of arbitrary size while the
//! clock jumps.
//!
//! Nothing may panic; a reply handed out fits its buffer, goes to a guest
//! that sent a query, and carries an id that guest used; the table of
//! pending queries never exceeds its bound.
#![no_main]

use std::cell::RefCell;
use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use relay_udp_icmp::{DnsForwarder, DnsForwarderConfig, SendOutcome};
use slipway_fuzz::{HOST, Input};

/// The forwarder's limits. One forwarder serves every input (a socket per
/// input would cost more than the input); each input starts a day after
/// the last one's end, when every query it left has timed out.
const CONFIG: DnsForwarderConfig = DnsForwarderConfig {
    max_pending: 8,
    query_timeout: Duration::from_secs(2),
};

/// The upstream socket, the forwarder connected to it, the last address a
/// query came from (one of the forwarder's pool of sockets), and the clock
/// that runs on across inputs.
struct Rig {
    upstream: UdpSocket,
    forwarder: DnsForwarder,
    last_source: Option<SocketAddr>,
    now: Instant,
}

thread_local! {
    static RIG: RefCell<Option<Rig>> = const { RefCell::new(None) };
}

fn rig() -> Rig {
    slipway_fuzz::isolate_network();
    let bound = UdpSocket::bind((HOST, 0)).and_then(|socket| {
        socket.set_nonblocking(true)?;
        let addr = socket.local_addr()?;
        Ok((socket, addr))
    });
    let (upstream, upstream_addr) = match bound {
        Ok(bound) => bound,
        Err(error) => panic!("no upstream socket on {HOST}: {error}"),
    };
    let forwarder = match DnsForwarder::new(upstream_addr, CONFIG) {
        Ok(forwarder) => forwarder,
        Err(error) => panic!("no forwarder to {upstream_addr}: {error}"),
    };
    Rig {
        upstream,
        forwarder,
        last_source: None,
        now: Instant::now(),
    }
}

fuzz_target!(|data: &[u8]| {
    RIG.with_borrow_mut(|rig_slot| {
        let rig = rig_slot.get_or_insert_with(rig);
        // What the last input left: datagrams on either socket, queries
        // pending (they time out a day later).
        let mut buf = [0u8; 4096];
        while rig.upstream.recv_from(&mut buf).is_ok() {}
        rig.now += Duration::from_secs(86_400);
        rig.forwarder.handle_timeouts(rig.now);
        while let Ok(Some(_)) = rig.forwarder.recv_reply(&mut buf, rig.now) {}
        assert_eq!(rig.forwarder.pending(), 0, "queries outlived their timeout");
        run(data, rig);
    });
});

fn run(data: &[u8], rig: &mut Rig) {
    let mut input = Input::new(data);
    let Rig {
        upstream,
        forwarder,
        last_source,
        now: clock,
    } = rig;
    // (guest, guest's id) of every query forwarded.
    let mut asked: HashSet<(SocketAddr, u16)> = HashSet::new();
    let mut received = [0u8; 4096];
    let mut reply_buf = [0u8; 4096];
    for _ in 0..256 {
        let Some(op) = input.try_u8() else { break };
        let now = *clock;
        match op % 5 {
            0 => {
                let guest = SocketAddr::new(
                    IpAddr::V4(Ipv4Addr::new(10, 0, 2, 15)),
                    1024 + u16::from(input.u8() % 4),
                );
                let query = input.chunk(1500);
                match forwarder.forward_query(guest, query, now) {
                    Ok(SendOutcome::Sent(_)) => {
                        asked.insert((guest, u16::from_be_bytes([query[0], query[1]])));
                    }
                    Ok(_) => {}
                    Err(error) => panic!("forwarding to loopback failed: {error}"),
                }
            }
            1 => {
                // The upstream answers the next query it got, with its id.
                let reply = input.chunk(2048);
                if let Ok((len, from)) = upstream.recv_from(&mut received) {
                    *last_source = Some(from);
                    let mut answer = reply.to_vec();
                    if len >= 2 && answer.len() >= 2 {
                        answer[..2].copy_from_slice(&received[..2]);
                    }
                    let _ = upstream.send_to(&answer, from);
                }
            }
            2 => {
                // Raw bytes to the socket the next query left from (each
                // query leaves from one of a pool), else the last one seen.
                let to = match upstream.peek_from(&mut received) {
                    Ok((_, from)) => Some(from),
                    Err(_) => *last_source,
                };
                if let Some(to) = to {
                    let _ = upstream.send_to(input.chunk(2048), to);
                }
            }
            3 => {
                let len = usize::from(input.u16()) % (reply_buf.len() + 1);
                let buf = &mut reply_buf[..len];
                for _ in 0..64 {
                    let reply = match forwarder.recv_reply(buf, now) {
                        Ok(Some(reply)) => reply,
                        Ok(None) => break,
                        Err(error) => panic!("reading replies failed: {error}"),
                    };
                    assert!(reply.len <= len, "{reply:?} beyond a buffer of {len}");
                    assert!(reply.len >= 12, "{reply:?}: shorter than a DNS header");
                    let id = u16::from_be_bytes([buf[0], buf[1]]);
                    assert!(
                        asked.contains(&(reply.guest, id)),
                        "{reply:?} with id {id} answers no query of that guest"
                    );
                }
            }
            _ => {
                *clock += Duration::from_millis(u64::from(input.u16()));
                forwarder.handle_timeouts(*clock);
            }
        }
        assert!(
            forwarder.pending() <= CONFIG.max_pending,
            "{} pending queries, bound {}",
            forwarder.pending(),
            CONFIG.max_pending
        );
    }
}
