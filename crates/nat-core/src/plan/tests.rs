#![allow(clippy::unwrap_used)]

use super::*;

fn v4(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn v6(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

#[test]
fn defaults_match_the_design() {
    let plan = Plan::default();
    let p4 = plan.ipv4().unwrap();
    assert_eq!(p4.network().to_string(), "10.0.2.0/24");
    assert_eq!(p4.guest(), v4("10.0.2.15"));
    assert_eq!(p4.gateway(), v4("10.0.2.2"));
    assert_eq!(p4.dns(), v4("10.0.2.3"));
    assert_eq!(p4.broadcast(), v4("10.0.2.255"));
    let p6 = plan.ipv6().unwrap();
    assert_eq!(p6.network().to_string(), "fd00:0:0:2::/64");
    assert_eq!(p6.guest(), None);
    assert_eq!(p6.gateway(), v6("fd00:0:0:2::2"));
    assert_eq!(p6.gateway_link_local(), v6("fe80::1"));
    assert_eq!(p6.dns(), v6("fd00:0:0:2::3"));
    assert_eq!(plan.mtu(), 65520);
    assert_eq!(plan.gateway_mac().to_string(), "52:55:0a:00:02:02");
    assert_eq!(plan.guest_mac().to_string(), "52:54:00:12:34:56");
}

#[test]
fn empty_builder_builds_the_default() {
    assert_eq!(Plan::builder().build().unwrap(), Plan::default());
}

#[test]
fn unset_addresses_follow_the_network() {
    let plan = Plan::builder()
        .ipv4_network("192.168.7.0/24".parse().unwrap())
        .ipv6_network("fd12:3456::/64".parse().unwrap())
        .build()
        .unwrap();
    let p4 = plan.ipv4().unwrap();
    assert_eq!(
        (p4.guest(), p4.gateway(), p4.dns()),
        (v4("192.168.7.15"), v4("192.168.7.2"), v4("192.168.7.3"))
    );
    let p6 = plan.ipv6().unwrap();
    assert_eq!(
        (p6.gateway(), p6.dns()),
        (v6("fd12:3456::2"), v6("fd12:3456::3"))
    );
}

#[test]
fn every_value_is_configurable() {
    let plan = Plan::builder()
        .ipv4_network("172.16.0.0/16".parse().unwrap())
        .ipv4_guest(v4("172.16.5.5"))
        .ipv4_gateway(v4("172.16.0.1"))
        .ipv4_dns(v4("172.16.0.53"))
        .ipv6_network("fd99::/64".parse().unwrap())
        .ipv6_guest(v6("fd99::100"))
        .ipv6_gateway(v6("fd99::1"))
        .ipv6_gateway_link_local(v6("fe80::2"))
        .ipv6_dns(v6("fd99::53"))
        .mtu(1500)
        .gateway_mac("02:00:00:00:00:01".parse().unwrap())
        .guest_mac("02:00:00:00:00:02".parse().unwrap())
        .build()
        .unwrap();
    assert_eq!(plan.ipv4().unwrap().guest(), v4("172.16.5.5"));
    assert_eq!(plan.ipv6().unwrap().guest(), Some(v6("fd99::100")));
    assert_eq!(plan.ipv6().unwrap().gateway_link_local(), v6("fe80::2"));
    assert_eq!(plan.mtu(), 1500);
}

/// Each builder's error message, checked whole.
fn assert_errors(cases: Vec<(PlanBuilder, &str)>) {
    for (builder, message) in cases {
        assert_eq!(builder.build().unwrap_err().to_string(), message);
    }
}

/// Addresses outside their network, on a reserved host, or taken twice.
#[test]
fn errors_name_the_bad_address() {
    assert_errors(vec![
        (
            Plan::builder().ipv4_guest(v4("10.0.3.15")),
            "IPv4 guest address 10.0.3.15 is outside the network 10.0.2.0/24",
        ),
        (
            Plan::builder().ipv4_gateway(v4("10.0.2.0")),
            "IPv4 gateway address 10.0.2.0 is the network address of 10.0.2.0/24",
        ),
        (
            Plan::builder().ipv4_dns(v4("10.0.2.255")),
            "IPv4 DNS address 10.0.2.255 is the broadcast address of 10.0.2.0/24",
        ),
        (
            Plan::builder().ipv4_dns(v4("10.0.2.2")),
            "IPv4 DNS address 10.0.2.2 is also the IPv4 gateway address",
        ),
        (
            Plan::builder().ipv4_guest(v4("10.0.2.3")),
            "IPv4 guest address 10.0.2.3 is also the IPv4 DNS address",
        ),
        (
            Plan::builder().ipv6_guest(v6("fd00:0:0:2::2")),
            "IPv6 guest address fd00:0:0:2::2 is also the IPv6 gateway address",
        ),
        (
            Plan::builder().ipv6_dns(v6("fd00:0:0:3::3")),
            "IPv6 DNS address fd00:0:0:3::3 is outside the network fd00:0:0:2::/64",
        ),
        (
            Plan::builder().ipv6_gateway(v6("fd00:0:0:2::")),
            "IPv6 gateway address fd00:0:0:2:: is the network address of fd00:0:0:2::/64",
        ),
        (
            Plan::builder().ipv6_gateway_link_local(v6("fd00::1")),
            "IPv6 gateway link-local address fd00::1 is not a link-local unicast address (fe80::/10)",
        ),
    ]);
}

/// Networks too small or reserved, and both families disabled.
#[test]
fn errors_name_the_bad_network() {
    assert_errors(vec![
        (
            Plan::builder().ipv6_network("fd00::/48".parse().unwrap()),
            "IPv6 network fd00::/48 is not a /64, so SLAAC cannot give the guest an address: set the IPv6 guest address",
        ),
        (
            Plan::builder().disable_ipv4().disable_ipv6(),
            "both IPv4 and IPv6 are disabled: a plan needs at least one",
        ),
        (
            Plan::builder().ipv4_network("10.0.2.0/29".parse().unwrap()),
            "IPv4 guest address has no default in 10.0.2.0/29 (host 15 is outside it): set it explicitly",
        ),
        (
            Plan::builder().ipv4_network("10.0.2.0/28".parse().unwrap()),
            "IPv4 guest address 10.0.2.15 is the broadcast address of 10.0.2.0/28",
        ),
        (
            Plan::builder().ipv4_network("127.0.0.0/24".parse().unwrap()),
            "IPv4 network 127.0.0.0/24 overlaps 127.0.0.0/8, the loopback range",
        ),
        (
            Plan::builder().ipv4_network("0.0.0.0/0".parse().unwrap()),
            "IPv4 network 0.0.0.0/0 overlaps 0.0.0.0/8, \"this network\"",
        ),
        (
            Plan::builder().ipv6_network("fe80::/64".parse().unwrap()),
            "IPv6 network fe80::/64 overlaps fe80::/10, the link-local range",
        ),
        (
            Plan::builder().ipv6_network("::/64".parse().unwrap()),
            "IPv6 network ::/64 overlaps ::/128, the unspecified address",
        ),
    ]);
}

/// MTUs out of range and MAC addresses no host can have.
#[test]
fn errors_name_the_bad_mtu_or_mac() {
    assert_errors(vec![
        (Plan::builder().mtu(67), "MTU 67 is outside 68 to 65520"),
        (
            Plan::builder().mtu(65521),
            "MTU 65521 is outside 68 to 65520",
        ),
        (
            Plan::builder().mtu(1279),
            "MTU 1279 is below 1280, the IPv6 minimum: raise it or disable IPv6",
        ),
        (
            Plan::builder().guest_mac("01:00:5e:00:00:01".parse().unwrap()),
            "guest MAC address 01:00:5e:00:00:01 is not a unicast address",
        ),
        (
            Plan::builder().gateway_mac(MacAddr([0; 6])),
            "gateway MAC address 00:00:00:00:00:00 is not a unicast address",
        ),
        (
            Plan::builder().guest_mac(DEFAULT_GATEWAY_MAC),
            "guest MAC address 52:55:0a:00:02:02 is also the gateway MAC address",
        ),
    ]);
}

#[test]
fn error_reports_its_field() {
    let err = Plan::builder()
        .ipv4_dns(v4("10.9.9.9"))
        .build()
        .unwrap_err();
    assert_eq!(err.field(), Some(PlanField::Ipv4Dns));
    let err = Plan::builder().mtu(10).build().unwrap_err();
    assert_eq!(err.field(), Some(PlanField::Mtu));
}

#[test]
fn small_mtu_is_fine_without_ipv6() {
    let plan = Plan::builder().disable_ipv6().mtu(576).build().unwrap();
    assert!(plan.ipv6().is_none());
    assert_eq!(plan.mtu(), 576);
    let plan = Plan::builder().disable_ipv4().build().unwrap();
    assert!(plan.ipv4().is_none());
}

#[test]
fn non_slash64_needs_a_configured_guest() {
    let plan = Plan::builder()
        .ipv6_network("fd00::/112".parse().unwrap())
        .ipv6_guest(v6("fd00::15"))
        .build()
        .unwrap();
    assert_eq!(plan.ipv6().unwrap().gateway(), v6("fd00::2"));
}

#[test]
fn guest_sources() {
    let plan = Plan::default();
    let p4 = plan.ipv4().unwrap();
    assert!(p4.is_guest_source(v4("10.0.2.15")));
    assert!(p4.is_guest_source(v4("10.0.2.99")));
    for bad in [
        "10.0.2.0",
        "10.0.2.255",
        "10.0.2.2",
        "10.0.2.3",
        "10.0.3.15",
        "0.0.0.0",
    ] {
        assert!(!p4.is_guest_source(v4(bad)), "{bad}");
    }
    let p6 = plan.ipv6().unwrap();
    assert!(p6.is_guest_source(v6("fd00:0:0:2::abcd")));
    assert!(p6.is_guest_source(v6("fe80::5054:ff:fe12:3456")));
    for bad in [
        "fd00:0:0:2::",
        "fd00:0:0:2::2",
        "fd00:0:0:2::3",
        "fe80::1",
        "::",
        "fd00:0:0:3::1",
        "ff02::1",
    ] {
        assert!(!p6.is_guest_source(v6(bad)), "{bad}");
    }
}
