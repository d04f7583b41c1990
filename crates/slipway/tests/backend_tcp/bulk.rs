//! 64 MiB transfers both ways through a small host receive buffer or a small
//! guest window, with and without loss, verified by hash.

use test_support::harness;

use std::io::{Read, Write};
use std::thread;
use std::time::{Duration, Instant};

use crate::{BULK, report};
use harness::{
    Fnv, GuestStats, GuestTcp, Harness, Impairments, TcpOpts, fnv, listen, listen_with, pattern,
    serve,
};

/// Sends `data` from the guest to a server whose receive buffer is 4 KiB
/// and checks that every byte arrived in order.
fn guest_to_host_small_rcvbuf(name: &str, impair: Impairments) -> GuestStats {
    let data = pattern(BULK, 0xb01c);
    let expected = fnv(&data);
    let server = serve(listen_with(Some(4096), 16), |mut stream| {
        let mut hash = Fnv::new();
        let mut total = 0usize;
        let mut buf = vec![0u8; 4096];
        let mut pause_at = 1 << 20;
        for _ in 0..BULK {
            let n = stream.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            hash.update(&buf[..n]);
            total += n;
            if total >= pause_at {
                // Slow enough now and then for the window to shut.
                thread::sleep(Duration::from_millis(1));
                pause_at += 1 << 20;
            }
        }
        (total, hash.finish())
    });
    let mut h = Harness::new();
    let opts = TcpOpts {
        impair,
        ..TcpOpts::default()
    };
    // Sequence numbers wrap after the first mebibyte.
    let mut ep = GuestTcp::new(opts, 40100, server.guest_addr(), u32::MAX - 1_000_000);
    let start = Instant::now();
    ep.connect(start, &mut h.backend);
    ep.send_vec(data);
    ep.close();
    let done = h.drive(&mut ep, Duration::from_secs(40), |ep, _| ep.fin_acked());
    let elapsed = start.elapsed();
    assert!(
        done,
        "transfer stalled: {:?} {:?}",
        ep.stats(),
        h.backend.counters()
    );
    let (total, hash) = server.join().expect("a connection");
    assert_eq!(total, BULK);
    assert_eq!(hash, expected, "the host read the guest's bytes in order");
    assert_eq!(h.backend.counters().tcp_bytes_to_host, BULK as u64);
    report(name, BULK, elapsed);
    h.assert_quiet(name);
    *ep.stats()
}

/// Sends `BULK` bytes from a host server to a guest with a 4 KiB window
/// and checks that every byte arrived in order.
fn host_to_guest_4k_window(name: &str, impair: Impairments) -> GuestStats {
    let data = pattern(BULK, 0x4057);
    let expected = fnv(&data);
    let server = serve(listen(), move |mut stream| stream.write_all(&data).unwrap());
    let mut h = Harness::new();
    let opts = TcpOpts {
        window: 4096,
        wscale: None,
        impair,
        ..TcpOpts::default()
    };
    let mut ep = GuestTcp::new(opts, 40200, server.guest_addr(), 31337);
    let start = Instant::now();
    ep.connect(start, &mut h.backend);
    let done = h.drive(&mut ep, Duration::from_secs(40), |ep, _| ep.peer_fin());
    let elapsed = start.elapsed();
    assert!(
        done,
        "transfer stalled: {:?} {:?}",
        ep.stats(),
        h.backend.counters()
    );
    assert_eq!(ep.received_len(), BULK as u64);
    assert_eq!(
        ep.received_hash(),
        expected,
        "the guest got the bytes in order"
    );
    assert_eq!(ep.stats().window_violations, 0, "never past the window");
    server.join().expect("a connection");
    report(name, BULK, elapsed);
    // slipway closed first, so its flow lingers in TIME-WAIT afterwards.
    ep.close();
    let closed = h.drive(&mut ep, Duration::from_secs(2), |ep, _| ep.fin_acked());
    assert!(closed, "the guest's FIN is acknowledged");
    h.assert_quiet(name);
    *ep.stats()
}

#[test]
fn tcp_64mib_guest_to_host_small_rcvbuf_hash_verified() {
    let stats = guest_to_host_small_rcvbuf("guest to host", Impairments::default());
    assert_eq!(stats.rsts, 0);
}

#[test]
fn tcp_64mib_guest_to_host_small_rcvbuf_lossy_guest_hash_verified() {
    let impair = Impairments {
        loss: 20,
        duplicate: 20,
        reorder: 20,
        ..Impairments::default()
    };
    let stats = guest_to_host_small_rcvbuf("guest to host, lossy guest", impair);
    assert!(stats.lost > 0 && stats.duplicated > 0 && stats.reordered > 0);
    assert_eq!(stats.rsts, 0);
}

#[test]
fn tcp_64mib_host_to_guest_4k_window_hash_verified() {
    let stats = host_to_guest_4k_window("host to guest", Impairments::default());
    assert_eq!(stats.rsts, 0);
}

#[test]
fn tcp_64mib_host_to_guest_4k_window_dropped_acks_retransmitted() {
    let impair = Impairments {
        drop_every_nth_ack: 2000,
        max_ack_drops: 6,
        ..Impairments::default()
    };
    let stats = host_to_guest_4k_window("host to guest, dropped ACKs", impair);
    assert_eq!(stats.acks_dropped, 6);
    assert!(
        stats.dup_segments >= stats.acks_dropped,
        "slipway retransmitted every segment whose ACK was lost: {stats:?}"
    );
}
