//! nat-core: the verdict on a new outbound flow with a deny list of 1 000
//! CIDRs, and the inbound port-forward lookup.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use divan::{Bencher, black_box};
use nat_core::{
    Cidr, DenyList, IpFamily, LINUX_EPHEMERAL_PORTS, Nat, Plan, PortForwards, Protocol, Rules,
    Verdict,
};

fn main() {
    common::run_nanosecond_benches();
}

/// 1 000 disjoint /24 prefixes in 198.18.0.0/15 and 100.64.0.0/10, none of
/// them holding the destinations below.
fn deny_list(len: usize) -> DenyList {
    DenyList::new((0..len).map(|i| {
        let (a, b) = if i < 512 { (198, 18) } else { (100, 64) };
        let third = u8::try_from(i % 256).unwrap();
        let second = b + u8::try_from((i % 512) / 256).unwrap();
        Cidr::new(IpAddr::V4(Ipv4Addr::new(a, second, third, 0)), 24).unwrap()
    }))
}

fn nat(deny: usize) -> Nat {
    let rules = Rules {
        deny: deny_list(deny),
        ..Rules::default()
    };
    Nat::new(Plan::default(), rules).unwrap()
}

/// Measures the verdict on a guest TCP flow to `dst` after checking that
/// it is the expected kind.
fn outbound(bencher: Bencher<'_, '_>, deny: usize, dst: SocketAddr, denied: bool) {
    let nat = nat(deny);
    let src = IpAddr::V4(Ipv4Addr::new(10, 0, 2, 15));
    let verdict = nat.translate_outbound(Protocol::Tcp, src, dst);
    assert_eq!(matches!(verdict, Verdict::Deny(_)), denied, "{verdict:?}");
    assert_eq!(
        matches!(verdict, Verdict::Connect(_)),
        !denied,
        "{verdict:?}"
    );
    bencher.bench_local(|| nat.translate_outbound(Protocol::Tcp, black_box(src), black_box(dst)));
}

/// A guest TCP flow to an outside address that no rule denies: every check
/// runs, the deny list's lookup included.
#[divan::bench(args = [0, 1000])]
fn translate_outbound_allowed(bencher: Bencher<'_, '_>, deny: usize) {
    let dst = SocketAddr::from((Ipv4Addr::new(203, 0, 113, 7), 443));
    outbound(bencher, deny, dst, false);
}

/// A guest TCP flow into a denied prefix.
#[divan::bench(args = [1000])]
fn translate_outbound_denied(bencher: Bencher<'_, '_>, deny: usize) {
    let dst = SocketAddr::from((Ipv4Addr::new(100, 65, 3, 9), 80));
    outbound(bencher, deny, dst, true);
}

/// The guest end of a connection to a forwarded host port, among 100
/// forwarded ranges.
#[divan::bench]
fn translate_inbound_forward(bencher: Bencher<'_, '_>) {
    let specs: Vec<String> = (0..100u16)
        .map(|i| {
            format!(
                "{}-{}:{}-{}",
                2000 + i * 10,
                2004 + i * 10,
                8000 + i * 10,
                8004 + i * 10
            )
        })
        .collect();
    let forwards = PortForwards::parse_with(&specs.join(" "), LINUX_EPHEMERAL_PORTS).unwrap();
    let rules = Rules {
        tcp_forwards: forwards,
        ..Rules::default()
    };
    let nat = Nat::new(Plan::default(), rules).unwrap();
    assert_eq!(
        nat.translate_inbound(Protocol::Tcp, IpFamily::V4, 2503, None),
        Some(SocketAddr::from((Ipv4Addr::new(10, 0, 2, 15), 8503)))
    );
    bencher
        .bench_local(|| nat.translate_inbound(Protocol::Tcp, IpFamily::V4, black_box(2503), None));
}
