#![allow(clippy::unwrap_used)]

use std::mem::size_of;

use super::*;
use crate::{DenyList, HostLoopback, PortForwards};

const GUEST4: &str = "10.0.2.15";
const GUEST6: &str = "fd00:0:0:2::15";

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn nat(rules: Rules) -> Nat {
    Nat::new(Plan::default(), rules).unwrap()
}

fn out(n: &Nat, proto: Protocol, src: &str, dst: &str) -> Verdict {
    n.translate_outbound(proto, ip(src), sa(dst))
}

fn deny(reason: DenyReason) -> Verdict {
    Verdict::Deny(reason)
}

#[test]
fn ordinary_destinations_connect_as_addressed() {
    let n = nat(Rules::default());
    assert_eq!(
        out(&n, Protocol::Tcp, GUEST4, "192.0.2.1:80"),
        Verdict::Connect(sa("192.0.2.1:80"))
    );
    assert_eq!(
        out(&n, Protocol::Udp, GUEST4, "198.51.100.7:443"),
        Verdict::Connect(sa("198.51.100.7:443"))
    );
    assert_eq!(
        out(&n, Protocol::Icmp, GUEST4, "192.0.2.1:0"),
        Verdict::Connect(sa("192.0.2.1:0"))
    );
    assert_eq!(
        out(&n, Protocol::Tcp, GUEST6, "[2001:db8::1]:80"),
        Verdict::Connect(sa("[2001:db8::1]:80"))
    );
    // Any host address of the network is a guest source, not just the plan's.
    assert_eq!(
        out(&n, Protocol::Tcp, "10.0.2.99", "192.0.2.1:80"),
        Verdict::Connect(sa("192.0.2.1:80"))
    );
}

#[test]
fn gateway_maps_to_host_loopback() {
    let n = nat(Rules::default());
    assert_eq!(
        out(&n, Protocol::Tcp, GUEST4, "10.0.2.2:8080"),
        Verdict::Connect(sa("127.0.0.1:8080"))
    );
    assert_eq!(
        out(&n, Protocol::Udp, GUEST4, "10.0.2.2:5353"),
        Verdict::Connect(sa("127.0.0.1:5353"))
    );
    assert_eq!(
        out(&n, Protocol::Icmp, GUEST4, "10.0.2.2:7"),
        Verdict::Connect(sa("127.0.0.1:7"))
    );
    assert_eq!(
        out(&n, Protocol::Tcp, GUEST6, "[fd00:0:0:2::2]:22"),
        Verdict::Connect(sa("[::1]:22"))
    );
    assert_eq!(
        out(&n, Protocol::Tcp, "fe80::5054:ff:fe12:3456", "[fe80::1]:22"),
        Verdict::Connect(sa("[::1]:22"))
    );
}

#[test]
fn gateway_mapping_target_is_configurable() {
    let rules = Rules {
        host_loopback: HostLoopback {
            v4: Some("127.0.0.2".parse().unwrap()),
            v6: None,
        },
        ..Rules::default()
    };
    let n = nat(rules);
    assert_eq!(
        out(&n, Protocol::Tcp, GUEST4, "10.0.2.2:80"),
        Verdict::Connect(sa("127.0.0.2:80"))
    );
    assert_eq!(
        out(&n, Protocol::Tcp, GUEST6, "[fd00:0:0:2::2]:80"),
        deny(DenyReason::HostLoopbackDisabled)
    );
}

#[test]
fn gateway_without_mapping_is_denied_but_answers_pings() {
    let n = nat(Rules {
        host_loopback: HostLoopback::OFF,
        ..Rules::default()
    });
    assert_eq!(
        out(&n, Protocol::Tcp, GUEST4, "10.0.2.2:8080"),
        deny(DenyReason::HostLoopbackDisabled)
    );
    assert_eq!(
        out(&n, Protocol::Udp, GUEST6, "[fd00:0:0:2::2]:53"),
        deny(DenyReason::HostLoopbackDisabled)
    );
    assert_eq!(
        out(&n, Protocol::Icmp, GUEST4, "10.0.2.2:1"),
        Verdict::AnswerLocally(LocalService::EchoReply)
    );
}

#[test]
fn dns_address_forwards_port_53() {
    let n = nat(Rules::default());
    let host = Verdict::ForwardDns(DnsUpstream::HostResolver);
    assert_eq!(out(&n, Protocol::Udp, GUEST4, "10.0.2.3:53"), host);
    assert_eq!(out(&n, Protocol::Tcp, GUEST4, "10.0.2.3:53"), host);
    assert_eq!(out(&n, Protocol::Udp, GUEST6, "[fd00:0:0:2::3]:53"), host);
    assert_eq!(
        out(&n, Protocol::Tcp, GUEST4, "10.0.2.3:80"),
        deny(DenyReason::DnsAddressOtherPort)
    );
    assert_eq!(
        out(&n, Protocol::Icmp, GUEST4, "10.0.2.3:9"),
        Verdict::AnswerLocally(LocalService::EchoReply)
    );
    let upstream = sa("192.0.2.53:5353");
    let n = nat(Rules {
        dns_upstream: Some(upstream),
        ..Rules::default()
    });
    assert_eq!(
        out(&n, Protocol::Udp, GUEST6, "[fd00:0:0:2::3]:53"),
        Verdict::ForwardDns(DnsUpstream::Configured(upstream))
    );
}

#[test]
fn dhcp_is_answered_locally() {
    let n = nat(Rules::default());
    let v4 = Verdict::AnswerLocally(LocalService::Dhcpv4);
    assert_eq!(out(&n, Protocol::Udp, "0.0.0.0", "255.255.255.255:67"), v4);
    assert_eq!(out(&n, Protocol::Udp, GUEST4, "10.0.2.2:67"), v4);
    assert_eq!(
        out(&n, Protocol::Udp, "fe80::2", "[ff02::1:2]:547"),
        Verdict::AnswerLocally(LocalService::Dhcpv6)
    );
    // Not DHCP: wrong port or protocol.
    assert_eq!(
        out(&n, Protocol::Udp, "0.0.0.0", "255.255.255.255:68"),
        deny(DenyReason::InvalidSource)
    );
    assert_eq!(
        out(&n, Protocol::Udp, GUEST4, "255.255.255.255:68"),
        deny(DenyReason::Broadcast)
    );
    assert_eq!(
        out(&n, Protocol::Tcp, GUEST4, "10.0.2.2:67"),
        Verdict::Connect(sa("127.0.0.1:67"))
    );
}

#[test]
fn special_destinations_are_denied() {
    let n = nat(Rules::default());
    let cases = [
        (GUEST4, "127.0.0.1:22", DenyReason::Loopback),
        (GUEST4, "127.1.2.3:22", DenyReason::Loopback),
        (GUEST6, "[::1]:22", DenyReason::Loopback),
        (GUEST6, "[::ffff:127.0.0.1]:22", DenyReason::Ipv4Mapped),
        (GUEST6, "[::ffff:192.0.2.1]:22", DenyReason::Ipv4Mapped),
        (GUEST4, "0.0.0.0:22", DenyReason::Unspecified),
        (GUEST4, "0.1.2.3:22", DenyReason::Unspecified),
        (GUEST6, "[::]:22", DenyReason::Unspecified),
        (GUEST4, "224.0.0.251:5353", DenyReason::Multicast),
        (GUEST6, "[ff02::fb]:5353", DenyReason::Multicast),
        (GUEST4, "255.255.255.255:9", DenyReason::Broadcast),
        (GUEST4, "10.0.2.255:9", DenyReason::Broadcast),
        (GUEST4, "169.254.169.254:80", DenyReason::LinkLocal),
        (GUEST6, "[fe80::99]:80", DenyReason::LinkLocal),
        (GUEST4, "10.0.2.15:80", DenyReason::GuestAddress),
        (GUEST4, "10.0.2.0:80", DenyReason::UnassignedAddress),
        (GUEST4, "10.0.2.77:80", DenyReason::UnassignedAddress),
        (GUEST6, "[fd00:0:0:2::15]:80", DenyReason::GuestAddress),
        (GUEST6, "[fd00:0:0:2::77]:80", DenyReason::UnassignedAddress),
        (GUEST4, "192.0.2.1:0", DenyReason::PortZero),
        (
            GUEST4,
            "[2001:db8::1]:80",
            DenyReason::AddressFamilyMismatch,
        ),
        ("192.0.2.9", "192.0.2.1:80", DenyReason::InvalidSource),
        ("10.0.2.2", "192.0.2.1:80", DenyReason::InvalidSource),
        (
            "fd00:0:0:3::1",
            "[2001:db8::1]:80",
            DenyReason::InvalidSource,
        ),
        ("fe80::2", "[2001:db8::1]:80", DenyReason::InvalidSource),
    ];
    for (src, dst, reason) in cases {
        assert_eq!(
            out(&n, Protocol::Tcp, src, dst),
            deny(reason),
            "{src} -> {dst}"
        );
    }
}

#[test]
fn deny_list_wins_over_everything() {
    let rules = Rules {
        deny: "127.0.0.0/8,192.0.2.0/24,10.0.2.3/32,fd00::/8"
            .parse()
            .unwrap(),
        dns_upstream: None,
        ..Rules::default()
    };
    let n = nat(rules);
    let c = |s: &str| deny(DenyReason::DeniedCidr(s.parse().unwrap()));
    assert_eq!(
        out(&n, Protocol::Tcp, GUEST4, "192.0.2.1:80"),
        c("192.0.2.0/24")
    );
    // The gateway maps to 127.0.0.1, which a rule covers.
    assert_eq!(
        out(&n, Protocol::Tcp, GUEST4, "10.0.2.2:80"),
        c("127.0.0.0/8")
    );
    assert_eq!(
        out(&n, Protocol::Icmp, GUEST4, "10.0.2.2:1"),
        c("127.0.0.0/8")
    );
    // The DNS address itself is covered.
    assert_eq!(
        out(&n, Protocol::Udp, GUEST4, "10.0.2.3:53"),
        c("10.0.2.3/32")
    );
    assert_eq!(
        out(&n, Protocol::Udp, GUEST6, "[fd00:0:0:2::3]:53"),
        c("fd00::/8")
    );
    let rules = Rules {
        deny: "192.0.2.0/24".parse().unwrap(),
        dns_upstream: Some(sa("192.0.2.53:53")),
        ..Rules::default()
    };
    let n = nat(rules);
    assert_eq!(
        out(&n, Protocol::Udp, GUEST4, "10.0.2.3:53"),
        c("192.0.2.0/24")
    );
}

#[test]
fn disabled_family_is_denied() {
    let plan = Plan::builder().disable_ipv6().build().unwrap();
    let n = Nat::new(plan, Rules::default()).unwrap();
    assert_eq!(
        out(&n, Protocol::Tcp, GUEST6, "[2001:db8::1]:80"),
        deny(DenyReason::FamilyDisabled)
    );
}

#[test]
fn inbound_goes_to_the_guest_on_the_mapped_port() {
    let rules = Rules {
        tcp_forwards: "8080:80,2222:22".parse().unwrap(),
        udp_forwards: "5353".parse().unwrap(),
        ..Rules::default()
    };
    let n = nat(rules);
    assert_eq!(
        n.translate_inbound(Protocol::Tcp, IpFamily::V4, 8080, None),
        Some(sa("10.0.2.15:80"))
    );
    assert_eq!(
        n.translate_inbound(Protocol::Udp, IpFamily::V4, 5353, None),
        Some(sa("10.0.2.15:5353"))
    );
    assert_eq!(
        n.translate_inbound(Protocol::Udp, IpFamily::V4, 8080, None),
        None
    );
    assert_eq!(
        n.translate_inbound(Protocol::Icmp, IpFamily::V4, 8080, None),
        None
    );
    // No IPv6 guest address configured or learned.
    assert_eq!(
        n.translate_inbound(Protocol::Tcp, IpFamily::V6, 2222, None),
        None
    );
    let learned = "fd00:0:0:2:5054:ff:fe12:3456".parse().unwrap();
    assert_eq!(
        n.translate_inbound(Protocol::Tcp, IpFamily::V6, 2222, Some(learned)),
        Some(sa("[fd00:0:0:2:5054:ff:fe12:3456]:22"))
    );
    // A learned address outside the network is not used.
    let stray = "2001:db8::1".parse().unwrap();
    assert_eq!(
        n.translate_inbound(Protocol::Tcp, IpFamily::V6, 2222, Some(stray)),
        None
    );
}

#[test]
fn inbound_uses_the_configured_ipv6_guest() {
    let plan = Plan::builder()
        .ipv6_guest("fd00:0:0:2::15".parse().unwrap())
        .build()
        .unwrap();
    let rules = Rules {
        tcp_forwards: "22".parse().unwrap(),
        ..Rules::default()
    };
    let n = Nat::new(plan, rules).unwrap();
    assert_eq!(
        n.translate_inbound(Protocol::Tcp, IpFamily::V6, 22, None),
        Some(sa("[fd00:0:0:2::15]:22"))
    );
}

#[test]
fn family_of_a_mapped_peer_is_ipv4() {
    assert_eq!(IpFamily::of(ip("::ffff:192.0.2.1")), IpFamily::V4);
    assert_eq!(IpFamily::of(ip("2001:db8::1")), IpFamily::V6);
    assert_eq!(IpFamily::of(ip("192.0.2.1")), IpFamily::V4);
}

#[test]
fn rules_that_do_not_fit_the_plan_are_rejected() {
    let check = |rules: Rules, plan: Plan, message: &str| {
        assert_eq!(Nat::new(plan, rules).unwrap_err().to_string(), message);
    };
    let plan = Plan::default();
    let with_v4_target = |a: &str| Rules {
        host_loopback: HostLoopback {
            v4: Some(a.parse().unwrap()),
            v6: None,
        },
        ..Rules::default()
    };
    check(
        with_v4_target("0.0.0.0"),
        plan,
        "host loopback target 0.0.0.0 is the unspecified address",
    );
    check(
        with_v4_target("10.0.2.15"),
        plan,
        "host loopback target 10.0.2.15 is inside the guest network 10.0.2.0/24",
    );
    let v6_target = Rules {
        host_loopback: HostLoopback {
            v4: None,
            v6: Some("fe80::1".parse().unwrap()),
        },
        ..Rules::default()
    };
    check(
        v6_target,
        plan,
        "host loopback target fe80::1 is link-local and names no interface",
    );
    let dns = |a: &str| Rules {
        dns_upstream: Some(sa(a)),
        ..Rules::default()
    };
    check(
        dns("192.0.2.1:0"),
        plan,
        "DNS upstream 192.0.2.1:0 has port 0",
    );
    check(
        dns("[fd00:0:0:2::99]:53"),
        plan,
        "DNS upstream fd00:0:0:2::99 is inside the guest network fd00:0:0:2::/64",
    );
    check(
        dns("224.0.0.1:53"),
        plan,
        "DNS upstream 224.0.0.1 is a multicast address",
    );
    assert!(Nat::new(plan, dns("[fe80::1%2]:53")).is_ok());
    let forwards = Rules {
        udp_forwards: "::1/53".parse::<PortForwards>().unwrap(),
        ..Rules::default()
    };
    let v4_only = Plan::builder().disable_ipv6().build().unwrap();
    check(
        forwards,
        v4_only,
        "UDP forward \"::1/53\" binds an IPv6 address, but IPv6 is disabled in the plan",
    );
}

#[test]
fn deny_reasons_print() {
    let reason = DenyReason::DeniedCidr("10.0.0.0/8".parse().unwrap());
    assert_eq!(reason.to_string(), "denied by rule 10.0.0.0/8");
    assert_eq!(DenyReason::Loopback.to_string(), "loopback destination");
}

#[test]
fn key_types_stay_small() {
    // Verdicts are returned per flow; keep them within a few words.
    assert!(
        size_of::<Verdict>() <= 40,
        "Verdict is {} bytes",
        size_of::<Verdict>()
    );
    assert!(
        size_of::<Cidr>() <= 20,
        "Cidr is {} bytes",
        size_of::<Cidr>()
    );
    assert!(size_of::<crate::PortMapping>() <= 6);
    assert!(size_of::<DenyList>() <= 48);
}

#[test]
fn empty_deny_list_changes_nothing() {
    let n = nat(Rules {
        deny: DenyList::default(),
        ..Rules::default()
    });
    assert_eq!(
        out(&n, Protocol::Tcp, GUEST4, "192.0.2.1:80"),
        Verdict::Connect(sa("192.0.2.1:80"))
    );
}
