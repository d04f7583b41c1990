//! Property tests of nat-core's public API: deny rules always win, port
//! mappings are bijections, parse and format round-trip, and parse errors
//! name the bad part.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use nat_core::{
    BindPolicy, Cidr, DenyList, DenyReason, DnsUpstream, HostLoopback, Ipv4Cidr, Ipv6Cidr,
    LINUX_EPHEMERAL_PORTS, LocalService, MacAddr, Nat, Plan, PortForwards, PortSpec, Protocol,
    Rules, Verdict,
};
use proptest::prelude::*;
use proptest::sample::select;

// ---------------------------------------------------------------------------
// Addresses and rules

fn v4_addr() -> impl Strategy<Value = Ipv4Addr> {
    prop_oneof![
        any::<u32>().prop_map(Ipv4Addr::from_bits),
        (0u32..256).prop_map(|h| Ipv4Addr::from_bits(0x0a00_0200 | h)),
        (0u32..1 << 24).prop_map(|h| Ipv4Addr::from_bits(0x7f00_0000 | h)),
        select(vec![
            Ipv4Addr::BROADCAST,
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::new(10, 0, 2, 2),
            Ipv4Addr::new(10, 0, 2, 3),
            Ipv4Addr::new(10, 0, 2, 15),
            Ipv4Addr::new(169, 254, 169, 254),
            Ipv4Addr::new(224, 0, 0, 1),
        ]),
    ]
}

fn v6_addr() -> impl Strategy<Value = Ipv6Addr> {
    let net = 0xfd00_0000_0000_0002_u128 << 64;
    let ll = 0xfe80_u128 << 112;
    prop_oneof![
        any::<u128>().prop_map(Ipv6Addr::from_bits),
        any::<u64>().prop_map(move |h| Ipv6Addr::from_bits(net | u128::from(h))),
        (0u128..32).prop_map(move |h| Ipv6Addr::from_bits(net | h)),
        any::<u64>().prop_map(move |h| Ipv6Addr::from_bits(ll | u128::from(h))),
        any::<u32>().prop_map(|a| Ipv4Addr::from_bits(a).to_ipv6_mapped()),
        select(vec![
            Ipv6Addr::LOCALHOST,
            Ipv6Addr::UNSPECIFIED,
            "fe80::1".parse().unwrap(),
            "ff02::1:2".parse().unwrap(),
            "2001:db8::1".parse().unwrap(),
        ]),
    ]
}

fn ip_addr() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        v4_addr().prop_map(IpAddr::V4),
        v6_addr().prop_map(IpAddr::V6)
    ]
}

/// A source the guest may plausibly use, or any address.
fn src_for(dst: IpAddr) -> BoxedStrategy<IpAddr> {
    match dst {
        IpAddr::V4(_) => prop_oneof![
            3 => select(vec!["10.0.2.15", "10.0.2.99", "0.0.0.0"]).prop_map(|s| s.parse().unwrap()),
            1 => ip_addr(),
        ]
        .boxed(),
        IpAddr::V6(_) => prop_oneof![
            3 => select(vec!["fd00:0:0:2::15", "fd00:0:0:2:5054:ff:fe12:3456", "fe80::5054:ff:fe12:3456"])
                .prop_map(|s| s.parse().unwrap()),
            1 => ip_addr(),
        ]
        .boxed(),
    }
}

fn protocol() -> impl Strategy<Value = Protocol> {
    select(vec![Protocol::Tcp, Protocol::Udp, Protocol::Icmp])
}

fn port() -> impl Strategy<Value = u16> {
    prop_oneof![any::<u16>(), select(vec![0u16, 53, 67, 68, 547, 80])]
}

/// A prefix of length `len` (clamped to the family) around `addr`.
fn prefix_around(addr: IpAddr, len: u8) -> Cidr {
    match addr {
        IpAddr::V4(a) => Ipv4Cidr::containing(a, len % 33).into(),
        IpAddr::V6(a) => Ipv6Cidr::containing(a, len % 129).into(),
    }
}

fn cidr() -> impl Strategy<Value = Cidr> {
    (ip_addr(), any::<u8>()).prop_map(|(a, len)| prefix_around(a, len))
}

fn rules() -> impl Strategy<Value = Rules> {
    let loopback = select(vec![
        HostLoopback::LOOPBACK,
        HostLoopback::OFF,
        HostLoopback {
            v4: Some(Ipv4Addr::new(127, 0, 0, 2)),
            v6: None,
        },
        HostLoopback {
            v4: Some(Ipv4Addr::new(192, 0, 2, 10)),
            v6: Some("2001:db8::10".parse().unwrap()),
        },
    ]);
    let upstream = select(vec![
        None,
        Some("192.0.2.53:53"),
        Some("127.0.0.53:53"),
        Some("[2001:db8::53]:5353"),
    ])
    .prop_map(|s| s.map(|s| s.parse::<SocketAddr>().unwrap()));
    (loopback, prop::collection::vec(cidr(), 0..8), upstream).prop_map(
        |(host_loopback, deny, dns_upstream)| Rules {
            host_loopback,
            deny: DenyList::new(deny),
            dns_upstream,
            ..Rules::default()
        },
    )
}

fn is_gateway(addr: IpAddr) -> bool {
    ["10.0.2.2", "fd00:0:0:2::2", "fe80::1"]
        .iter()
        .any(|g| addr == g.parse::<IpAddr>().unwrap())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    #[test]
    fn deny_always_wins(
        mut rules in rules(),
        proto in protocol(),
        (dst, src) in ip_addr().prop_flat_map(|d| (Just(d), src_for(d))),
        port in port(),
        len in any::<u8>(),
    ) {
        let covering = prefix_around(dst, len);
        rules.deny = rules.deny.iter().chain([covering]).collect();
        let nat = Nat::new(Plan::default(), rules).unwrap();
        let verdict = nat.translate_outbound(proto, src, SocketAddr::new(dst, port));
        prop_assert!(
            matches!(verdict, Verdict::Deny(DenyReason::DeniedCidr(c)) if c.contains(dst)),
            "{verdict:?}"
        );
    }

    #[test]
    fn no_verdict_reaches_a_denied_or_forbidden_host_address(
        rules in rules(),
        proto in protocol(),
        (dst, src) in ip_addr().prop_flat_map(|d| (Just(d), src_for(d))),
        port in port(),
    ) {
        let deny = rules.deny.clone();
        let nat = Nat::new(Plan::default(), rules).unwrap();
        let verdict = nat.translate_outbound(proto, src, SocketAddr::new(dst, port));
        match verdict {
            Verdict::Connect(target) => {
                let ip = target.ip();
                prop_assert!(!deny.contains(ip) && !deny.contains(dst));
                prop_assert_eq!(target.port(), port);
                // Host loopback only through the gateway address.
                prop_assert!(!ip.is_loopback() || is_gateway(dst), "{dst} -> {target}");
                prop_assert!(!ip.is_unspecified() && !ip.is_multicast());
                prop_assert!(!matches!(ip, IpAddr::V6(a) if a.to_ipv4_mapped().is_some()));
                let plan = nat.plan();
                prop_assert!(!matches!(ip, IpAddr::V4(a) if plan.ipv4().unwrap().network().contains(a)));
                prop_assert!(!matches!(ip, IpAddr::V6(a) if plan.ipv6().unwrap().network().contains(a)));
            }
            Verdict::ForwardDns(upstream) => {
                prop_assert!(!deny.contains(dst));
                prop_assert!(proto != Protocol::Icmp && port == 53);
                if let DnsUpstream::Configured(a) = upstream {
                    prop_assert!(!deny.contains(a.ip()));
                }
            }
            Verdict::AnswerLocally(_) => prop_assert!(!deny.contains(dst)),
            Verdict::Deny(_) => {}
        }
    }

    #[test]
    fn gateway_is_denied_when_a_rule_covers_its_loopback_target(
        proto in protocol(),
        dst in select(vec!["10.0.2.2", "fd00:0:0:2::2", "fe80::1"]),
        port in 1u16..,
        len in any::<u8>(),
    ) {
        let dst: IpAddr = dst.parse().unwrap();
        let target: IpAddr = if dst.is_ipv4() { Ipv4Addr::LOCALHOST.into() } else { Ipv6Addr::LOCALHOST.into() };
        let covering = prefix_around(target, len);
        let rules = Rules { deny: DenyList::new([covering]), ..Rules::default() };
        let nat = Nat::new(Plan::default(), rules).unwrap();
        let src: IpAddr = if dst.is_ipv4() { "10.0.2.15".parse().unwrap() } else { "fe80::2".parse().unwrap() };
        let verdict = nat.translate_outbound(proto, src, SocketAddr::new(dst, port));
        // DHCPv4 to the gateway is slipway's own DHCP server, not a flow to
        // the host: it never reaches host loopback, so no deny applies.
        if dst.is_ipv4() && proto == Protocol::Udp && port == 67 {
            prop_assert_eq!(verdict, Verdict::AnswerLocally(LocalService::Dhcpv4));
            return Ok(());
        }
        prop_assert!(
            matches!(verdict, Verdict::Deny(DenyReason::DeniedCidr(c)) if c.contains(target)),
            "{verdict:?}"
        );
    }
}

// ---------------------------------------------------------------------------
// Port specs

/// A generated spec: its text and the host → guest map it must parse to.
#[derive(Debug, Clone)]
struct GenSpec {
    text: String,
    model: BTreeMap<u16, u16>,
    best_effort: bool,
}

/// Disjoint host ranges, each with a guest start that keeps the guest range
/// within 1..=65535.
fn mappings() -> impl Strategy<Value = Vec<(u16, u16, u16)>> {
    prop::collection::btree_set(1u16..=65535, 1..12)
        .prop_flat_map(|points| {
            let points: Vec<u16> = points.into_iter().collect();
            let ranges: Vec<(u16, u16)> = points
                .chunks(2)
                .map(|c| (c[0], *c.last().unwrap()))
                .collect();
            let guests: Vec<BoxedStrategy<u16>> = ranges
                .iter()
                .map(|&(f, l)| prop_oneof![Just(f), 1u16..=(65535 - (l - f))].boxed())
                .collect();
            (Just(ranges), guests)
        })
        .prop_map(|(ranges, guests)| {
            ranges
                .into_iter()
                .zip(guests)
                .map(|((f, l), g)| (f, l, g))
                .collect()
        })
        .prop_shuffle()
}

fn format_mapping((first, last, guest): (u16, u16, u16), style: u8) -> String {
    let host = if first == last && style % 2 == 0 {
        first.to_string()
    } else {
        format!("{first}-{last}")
    };
    let guest_last = guest + (last - first);
    match style % 3 {
        _ if guest == first && style % 5 != 0 => host,
        0 => format!("{host}:{guest}"),
        _ => format!("{host}:{guest}-{guest_last}"),
    }
}

fn exclusions() -> impl Strategy<Value = Vec<(u16, u16)>> {
    prop::collection::vec((1u16..=65535, 0u16..2000), 0..4).prop_map(|v| {
        v.into_iter()
            .map(|(f, n)| (f, f.saturating_add(n)))
            .collect()
    })
}

fn bind_prefix() -> impl Strategy<Value = String> {
    select(vec![
        "",
        "127.0.0.1/",
        "192.0.2.1%eth0/",
        "%lo/",
        "::1/",
        "[::1]/",
        "[10.0.0.1]/",
        "fe80::1%veth-x/",
    ])
    .prop_map(str::to_owned)
}

fn port_spec() -> impl Strategy<Value = GenSpec> {
    let explicit = (
        mappings(),
        prop::collection::vec(any::<u8>(), 12),
        exclusions(),
        bind_prefix(),
    );
    prop_oneof![
        3 => explicit.prop_map(|(maps, styles, excl, prefix)| explicit_spec(&maps, &styles, &excl, &prefix)),
        1 => (exclusions(), bind_prefix()).prop_map(|(excl, prefix)| exclusion_spec(&excl, &prefix)),
    ]
}

fn excluded(port: u16, excl: &[(u16, u16)]) -> bool {
    excl.iter().any(|&(f, l)| (f..=l).contains(&port))
}

fn explicit_spec(
    maps: &[(u16, u16, u16)],
    styles: &[u8],
    excl: &[(u16, u16)],
    prefix: &str,
) -> GenSpec {
    let mut entries: Vec<String> = maps
        .iter()
        .zip(styles)
        .map(|(m, s)| format_mapping(*m, *s))
        .collect();
    entries.extend(excl.iter().map(|(f, l)| format!("~{f}-{l}")));
    let mut model = BTreeMap::new();
    for &(first, last, guest) in maps {
        for p in first..=last {
            if !excluded(p, excl) {
                model.insert(p, guest + (p - first));
            }
        }
    }
    GenSpec {
        text: format!("{prefix}{}", entries.join(",")),
        model,
        best_effort: false,
    }
}

fn exclusion_spec(excl: &[(u16, u16)], prefix: &str) -> GenSpec {
    let body = if excl.is_empty() {
        "all".to_owned()
    } else {
        excl.iter()
            .map(|(f, l)| format!("~{f}-{l}"))
            .collect::<Vec<_>>()
            .join(",")
    };
    let model = (1..=65535u16)
        .filter(|p| !excluded(*p, excl) && !LINUX_EPHEMERAL_PORTS.contains(p))
        .map(|p| (p, p))
        .collect();
    GenSpec {
        text: format!("{prefix}{body}"),
        model,
        best_effort: true,
    }
}

/// A syntactically bad entry and the part an error must name.
fn garbage_entry() -> impl Strategy<Value = (String, String)> {
    prop_oneof![
        (65536u32..10_000_000).prop_map(|n| (n.to_string(), n.to_string())),
        (65536u32..10_000_000, 1u16..100).prop_map(|(n, p)| (format!("{p}:{n}"), n.to_string())),
        (65536u32..10_000_000, 1u16..100).prop_map(|(n, p)| (format!("{p}-{n}"), n.to_string())),
        Just(("0".to_owned(), "0".to_owned())),
        (1u16..100).prop_map(|p| (format!("0-{p}"), "0".to_owned())),
        // "all" and "none" alone are whole specs, not garbage.
        "[a-z+*#!. ]{1,6}"
            .prop_filter("keyword", |s| s != "all" && s != "none")
            .prop_map(|s| (s.clone(), s)),
        (1u16..30000, 1u16..30000).prop_map(|(a, n)| {
            let r = format!("{}-{a}", a + n);
            (r.clone(), r)
        }),
        (1u16..30000, 0u16..100, 1u16..100, 0u16..100).prop_filter_map(
            "equal lengths",
            |(a, n, g, m)| {
                (n != m).then(|| {
                    let e = format!("{a}-{}:{g}-{}", a + n, g + m);
                    (e.clone(), e)
                })
            }
        ),
        (1u16..100, 1u16..100).prop_map(|(a, b)| {
            let e = format!("~{a}:{b}");
            (e.clone(), e)
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn spec_parses_to_its_model(g in port_spec()) {
        match g.text.parse::<PortSpec>() {
            Ok(spec) => {
                let parsed: BTreeMap<u16, u16> = spec.iter().map(|f| (f.host_port, f.guest_port)).collect();
                prop_assert_eq!(&parsed, &g.model);
                let policy = if g.best_effort { BindPolicy::BestEffort } else { BindPolicy::Required };
                prop_assert_eq!(spec.bind_policy(), policy);
                for (&host, &guest) in g.model.iter().step_by(97) {
                    prop_assert_eq!(spec.guest_port_for(host), Some(guest));
                }
            }
            Err(e) => {
                prop_assert!(g.model.is_empty(), "{} -> {}", g.text, e);
                prop_assert!(e.to_string().contains("forwards no ports"), "{}", e);
            }
        }
    }

    #[test]
    fn spec_round_trips(g in port_spec()) {
        if let Ok(spec) = g.text.parse::<PortSpec>() {
            let text = spec.to_string();
            let again: PortSpec = text.parse().unwrap();
            prop_assert_eq!(&again, &spec, "{} -> {}", g.text, text);
            prop_assert_eq!(again.to_string(), text);
        }
    }

    #[test]
    fn table_round_trips(a in port_spec(), b in port_spec()) {
        let input = format!("{} {}", a.text, b.text);
        if let Ok(table) = input.parse::<PortForwards>() {
            let again: PortForwards = table.to_string().parse().unwrap();
            prop_assert_eq!(&again, &table);
            for (&host, &guest) in a.model.iter().chain(&b.model).step_by(89) {
                prop_assert_eq!(table.guest_port_for(host), Some(guest));
            }
        }
    }

    #[test]
    fn mapping_is_a_bijection(
        (first, last, guest) in (1u16..=65535).prop_flat_map(|f| (Just(f), f..=65535))
            .prop_flat_map(|(f, l)| (Just(f), Just(l), 1u16..=(65535 - (l - f)))),
    ) {
        let text = format!("{first}-{last}:{guest}");
        let spec: PortSpec = text.parse().unwrap();
        prop_assert_eq!(spec.mappings().len(), 1);
        let mapping = spec.mappings()[0];
        let mut seen = std::collections::HashSet::new();
        for host in first..=last {
            let g = spec.guest_port_for(host).unwrap();
            prop_assert!(seen.insert(g), "guest port {} reached twice", g);
            prop_assert!(mapping.guest_ports().contains(&g));
            prop_assert_eq!(mapping.host_port(g), Some(host));
        }
        prop_assert_eq!(seen.len() as u32, mapping.port_count());
        if let Some(before) = first.checked_sub(1) {
            prop_assert_eq!(spec.guest_port_for(before), None);
        }
        if let Some(after) = last.checked_add(1) {
            prop_assert_eq!(spec.guest_port_for(after), None);
        }
    }

    #[test]
    fn garbage_entry_is_named_in_the_error(
        g in port_spec(),
        (bad, token) in garbage_entry(),
        at in any::<prop::sample::Index>(),
    ) {
        let (prefix, body) = match g.text.split_once('/') {
            Some((p, b)) => (format!("{p}/"), b.to_owned()),
            None => (String::new(), g.text.clone()),
        };
        let mut entries: Vec<String> = if body == "all" { vec![] } else { body.split(',').map(str::to_owned).collect() };
        entries.insert(at.index(entries.len() + 1), bad.clone());
        let spec = format!("{prefix}{}", entries.join(","));
        let err = spec.parse::<PortSpec>().unwrap_err().to_string();
        prop_assert!(err.contains(&format!("{token:?}")), "{} -> {}", spec, err);
        prop_assert!(err.contains(&format!("{spec:?}")), "{} -> {}", spec, err);
    }

    #[test]
    fn bad_bind_address_is_named_in_the_error(
        addr in prop_oneof![
            "[0-9]{1,3}\\.[0-9]{1,3}\\.[a-z]{1,3}\\.[0-9]{1,3}",
            (256u32..1000).prop_map(|n| format!("10.0.0.{n}")),
            "[g-z]{1,4}::[0-9]",
        ],
        g in port_spec(),
    ) {
        let body = g.text.split_once('/').map_or(g.text.as_str(), |(_, b)| b);
        let spec = format!("{addr}/{body}");
        let err = spec.parse::<PortSpec>().unwrap_err().to_string();
        prop_assert!(err.contains(&format!("{addr:?}")), "{} -> {}", spec, err);
    }

    #[test]
    fn arbitrary_text_never_panics_and_round_trips_when_valid(s in "[0-9a-z,:~%/\\[\\]. -]{0,24}") {
        if let Ok(spec) = s.parse::<PortSpec>() {
            prop_assert_eq!(spec.to_string().parse::<PortSpec>().unwrap(), spec);
        }
        if let Ok(table) = s.parse::<PortForwards>() {
            prop_assert_eq!(table.to_string().parse::<PortForwards>().unwrap(), table);
        }
        if let Ok(c) = s.parse::<Cidr>() {
            prop_assert_eq!(c.to_string().parse::<Cidr>().unwrap(), c);
        }
        if let Ok(l) = s.parse::<DenyList>() {
            prop_assert_eq!(l.to_string().parse::<DenyList>().unwrap(), l);
        }
    }
}

// ---------------------------------------------------------------------------
// CIDRs and the rest

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn cidr_round_trips(c in cidr()) {
        let text = c.to_string();
        prop_assert_eq!(text.parse::<Cidr>().unwrap(), c);
        prop_assert!(c.contains(c.network()));
    }

    #[test]
    fn cidr_with_host_bits_names_the_network(a in ip_addr(), len in any::<u8>()) {
        let c = prefix_around(a, len);
        let text = format!("{a}/{}", c.prefix_len());
        match text.parse::<Cidr>() {
            Ok(parsed) => prop_assert_eq!(parsed.network(), a),
            Err(e) => {
                prop_assert_ne!(c.network(), a);
                prop_assert!(e.to_string().contains(&c.to_string()), "{}", e);
            }
        }
    }

    #[test]
    fn deny_list_matches_a_linear_scan(cidrs in prop::collection::vec(cidr(), 0..16), probes in prop::collection::vec(ip_addr(), 32)) {
        let list = DenyList::new(cidrs.clone());
        for addr in probes.into_iter().chain(cidrs.iter().map(Cidr::network)) {
            let linear = cidrs.iter().any(|c| c.contains(addr));
            let found = list.denied_by(addr);
            prop_assert_eq!(found.is_some(), linear, "{}", addr);
            if let Some(c) = found {
                prop_assert!(c.contains(addr) && cidrs.contains(&c));
                // The widest configured prefix covering the address.
                prop_assert!(cidrs.iter().filter(|d| d.contains(addr)).all(|d| d.prefix_len() >= c.prefix_len()));
            }
        }
        // The kept prefixes are pairwise disjoint.
        let kept: Vec<Cidr> = list.iter().collect();
        for (i, a) in kept.iter().enumerate() {
            for b in &kept[i + 1..] {
                prop_assert!(!a.contains(b.network()) && !b.contains(a.network()), "{} and {}", a, b);
            }
        }
        prop_assert_eq!(list.to_string().parse::<DenyList>().unwrap(), list);
    }

    #[test]
    fn mac_round_trips(octets in any::<[u8; 6]>()) {
        let mac = MacAddr(octets);
        prop_assert_eq!(mac.to_string().parse::<MacAddr>().unwrap(), mac);
    }
}
