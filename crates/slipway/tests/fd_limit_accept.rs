//! A forwarded TCP port when `accept()` fails with `EMFILE`: the test
//! lowers its own soft `RLIMIT_NOFILE`, so it lives alone in this test
//! binary (tests of one binary share the process) and restores the limit
//! when it ends. The host peer is a client on 127.0.0.1.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use test_support::harness;

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use harness::{Harness, RestoreLimit, default_config, free_port, lowest_free_fd};
use rustix::net::{AddressFamily, SocketType, connect, socket};
use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};

#[test]
fn accept_failing_with_emfile_pauses_the_listener_instead_of_spinning() {
    let port = free_port();
    let mut config = default_config();
    config.rules.tcp_forwards = format!("127.0.0.1/{port}:8080").parse().unwrap();
    let mut h = Harness::with_config(config);
    // The client's socket exists before the limit drops; connecting needs
    // no new descriptor, and the connection waits in the backlog.
    let client = socket(AddressFamily::INET, SocketType::STREAM, None).unwrap();
    let original = getrlimit(Resource::Nofile);
    let restore = RestoreLimit(original);
    let lowered = Rlimit {
        current: Some(lowest_free_fd()),
        maximum: original.maximum,
    };
    setrlimit(Resource::Nofile, lowered).expect("lower the soft limit");
    connect(&client, &SocketAddr::from((Ipv4Addr::LOCALHOST, port))).unwrap();

    let frames = h.collect_for(Duration::from_millis(300));
    assert!(frames.is_empty(), "nothing reaches the guest: {frames:?}");
    assert_eq!(h.backend.counters().tcp_flows_accepted, 0);
    h.assert_quiet("a forwarded port whose accept fails with EMFILE");
    assert!(
        h.backend.counters().accept_pauses >= 1,
        "the listener paused"
    );
    let pauses = h.backend.counters().accept_pauses;
    assert!(pauses <= 6, "pauses of 100 ms doubling to 1 s: {pauses}");

    // Descriptors come back: the waiting connection reaches the guest
    // within the longest pause.
    drop(restore);
    let frames = h.collect_until(Duration::from_secs(5), |f| {
        f.tcp_to(8080).is_some_and(|t| t.syn)
    });
    assert!(
        frames
            .last()
            .and_then(|f| f.tcp_to(8080))
            .is_some_and(|t| t.syn),
        "the guest gets the SYN once accept works"
    );
    assert_eq!(h.backend.counters().tcp_flows_accepted, 1);
    drop(client);
}
