//! End to end with the Linux kernel as the guest at MTU 1500: UDP
//! datagrams and pings larger than the MTU, which the guest's kernel sends
//! in fragments and must get back in fragments, to servers on host
//! loopback (reached through the gateway 10.0.2.2).
//!
//! Needs root and /dev/net/tun; each test says on stderr why it skips
//! otherwise, or which tool it is missing. Traffic goes only to 127.0.0.1.
//! Every process runs under a guard that kills its process group; every
//! wait is bounded.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use test_support::e2e;
use test_support::require;

use std::time::Duration;

use e2e::{GUEST_UDP_ECHO_CLIENT, python_in_guest, servers, stat};

/// The bound on the guest's run (its client waits 3 s per try at most).
const LIMIT: Duration = Duration::from_secs(60);

/// What the guest runs after the UDP echoes: a ping of the gateway with
/// 3000 bytes of data.
const GUEST_PING: &str = "\
import subprocess
ping = subprocess.run(['busybox', 'ping', '-c', '2', '-s', '3000', '-W', '3', '10.0.2.2'],
                      capture_output=True, text=True)
print(ping.stdout, flush=True)
";

#[test]
fn guest_at_mtu_1500_udp_of_3000_to_65507_bytes_and_ping_of_3000_round_trip_in_fragments() {
    require!("python3", "busybox");
    let port = servers::udp_echo().to_string();
    let script = format!("{GUEST_UDP_ECHO_CLIENT}{GUEST_PING}");
    let sizes = ["3000", "20000", "65507"];
    let args = ["10.0.2.2", &port[..], sizes[0], sizes[1], sizes[2]];
    let out = python_in_guest(&["--mtu", "1500", "--stats"], &script, &args, LIMIT);
    out.assert_success("udp client");
    assert!(
        out.stdout
            .starts_with("echo 3000\necho 20000\necho 65507\n"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("2 packets transmitted, 2 packets received"),
        "{}\n{}",
        out.stdout,
        out.stderr
    );
    // Three datagrams and two echo requests at least came in fragments
    // and went back in fragments: 3 + 14 + 45 + 2 * 3 of them.
    let reassembled = stat(&out.stderr, "datagrams reassembled").expect("the counter");
    assert!(reassembled >= 5, "{}", out.stderr);
    let fragments = stat(&out.stderr, "fragments to guest").expect("the counter");
    assert!(fragments >= 3 + 14 + 45 + 6, "{}", out.stderr);
    assert_eq!(
        stat(&out.stderr, "dropped: fragment_overlap"),
        None,
        "{}",
        out.stderr
    );
    eprintln!("e2e: {reassembled} datagrams reassembled, {fragments} fragments to the guest");
}
