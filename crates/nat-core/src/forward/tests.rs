#![allow(clippy::unwrap_used)]

use super::*;

fn spec(s: &str) -> PortSpec {
    s.parse().unwrap()
}

fn err(s: &str) -> String {
    s.parse::<PortSpec>().unwrap_err().to_string()
}

/// (host first, host last, guest first) of every mapping.
fn triples(s: &PortSpec) -> Vec<(u16, u16, u16)> {
    s.mappings()
        .iter()
        .map(|m| (m.host_first(), m.host_last(), m.guest_first()))
        .collect()
}

#[test]
fn single_port() {
    let s = spec("22");
    assert_eq!(triples(&s), vec![(22, 22, 22)]);
    assert_eq!(s.bind(), None);
    assert_eq!(s.bind_policy(), BindPolicy::Required);
    assert_eq!(s.guest_port_for(22), Some(22));
    assert_eq!(s.guest_port_for(23), None);
    assert_eq!(s.to_string(), "22");
}

#[test]
fn man_page_examples() {
    assert_eq!(triples(&spec("22:23")), vec![(22, 22, 23)]);
    assert_eq!(triples(&spec("22:2022")), vec![(22, 22, 2022)]);
    assert_eq!(triples(&spec("22,25")), vec![(22, 22, 22), (25, 25, 25)]);
    assert_eq!(triples(&spec("22-80")), vec![(22, 80, 22)]);
    assert_eq!(triples(&spec("22-80:32-90")), vec![(22, 80, 32)]);
    assert_eq!(
        triples(&spec("2000-2010:3000-3010")),
        vec![(2000, 2010, 3000)]
    );
    assert_eq!(
        triples(&spec("2000-5000,~3000-3010")),
        vec![(2000, 2999, 2000), (3011, 5000, 3011)]
    );
    let s = spec("192.0.2.1/22");
    assert_eq!(s.bind(), Some("192.0.2.1".parse().unwrap()));
    assert_eq!(triples(&s), vec![(22, 22, 22)]);
    let s = spec("192.0.2.1/20-30,~25");
    assert_eq!(triples(&s), vec![(20, 24, 20), (26, 30, 26)]);
    let s = spec("192.0.2.1%eth0/22");
    assert_eq!(s.interface(), Some("eth0"));
    assert_eq!(s.to_string(), "192.0.2.1%eth0/22");
    let s = spec("%eth0/22");
    assert_eq!((s.bind(), s.interface()), (None, Some("eth0")));
    assert_eq!(s.to_string(), "%eth0/22");
}

#[test]
fn ipv6_bind_addresses() {
    let s = spec("::1/8080");
    assert_eq!(s.bind(), Some("::1".parse().unwrap()));
    assert_eq!(s.to_string(), "::1/8080");
    let s = spec("[::1]/22:2222");
    assert_eq!(s.bind(), Some("::1".parse().unwrap()));
    assert_eq!(s.guest_port_for(22), Some(2222));
    assert_eq!(s.to_string(), "::1/22:2222");
    assert_eq!(spec("[127.0.0.1]/80").to_string(), "127.0.0.1/80");
}

#[test]
fn implied_target_range() {
    let s = spec("22-80:8022");
    assert_eq!(triples(&s), vec![(22, 80, 8022)]);
    assert_eq!(s.guest_port_for(80), Some(8080));
    assert_eq!(s.to_string(), "22-80:8022-8080");
}

#[test]
fn exclusions_only_forward_everything_else_best_effort() {
    let s = spec("~25");
    assert_eq!(s.bind_policy(), BindPolicy::BestEffort);
    assert_eq!(
        triples(&s),
        vec![(1, 24, 1), (26, 32767, 26), (61000, 65535, 61000)]
    );
    assert_eq!(s.to_string(), "~25,~32768-60999");
    let s = spec("~20000-20010");
    assert_eq!(s.guest_port_for(20000), None);
    assert_eq!(s.guest_port_for(19999), Some(19999));
    assert_eq!(s.guest_port_for(40000), None);
}

#[test]
fn all_forwards_every_non_ephemeral_port() {
    let s = spec("all");
    assert_eq!(s.bind_policy(), BindPolicy::BestEffort);
    assert_eq!(triples(&s), vec![(1, 32767, 1), (61000, 65535, 61000)]);
    assert_eq!(s.to_string(), "~32768-60999");
    let s = PortSpec::parse_with("all", 49152..=65535).unwrap();
    assert_eq!(triples(&s), vec![(1, 49151, 1)]);
    #[allow(clippy::reversed_empty_ranges)]
    let s = PortSpec::parse_with("all", 1..=0).unwrap();
    assert_eq!(triples(&s), vec![(1, 65535, 1)]);
    assert_eq!(s.to_string(), "all");
    let s = spec("127.0.0.1/all");
    assert_eq!(s.to_string(), "127.0.0.1/~32768-60999");
}

#[test]
fn none_forwards_nothing() {
    let s = spec("none");
    assert!(s.is_empty());
    assert_eq!(s.to_string(), "none");
    assert_eq!(s.iter().count(), 0);
}

#[test]
fn port_zero_is_rejected() {
    assert_eq!(
        err("0-1024,~22"),
        "invalid port \"0\" in \"0-1024,~22\": ports are 1 to 65535"
    );
    assert_eq!(
        err("22:0"),
        "invalid port \"0\" in \"22:0\": ports are 1 to 65535"
    );
    assert_eq!(
        err("~0-10"),
        "invalid port \"0\" in \"~0-10\": ports are 1 to 65535"
    );
}

/// Each spec's error message, checked whole.
fn assert_errors(cases: &[(&str, &str)]) {
    for (input, message) in cases {
        assert_eq!(err(input), *message, "{input}");
    }
}

/// Ports and ranges that do not parse, run backwards or run past 65535.
#[test]
fn errors_name_the_bad_port_or_range() {
    assert_errors(&[
        (
            "70000:80",
            "invalid port \"70000\" in \"70000:80\": ports are 1 to 65535",
        ),
        (
            "22,99999999999999999999",
            "invalid port \"99999999999999999999\" in \"22,99999999999999999999\": ports are 1 to 65535",
        ),
        (
            "22,ssh",
            "invalid port range \"ssh\" in \"22,ssh\": expected PORT[-PORT][:PORT[-PORT]] or ~PORT[-PORT]",
        ),
        (
            "22-",
            "invalid port range \"22-\" in \"22-\": expected PORT[-PORT][:PORT[-PORT]] or ~PORT[-PORT]",
        ),
        (
            "+22",
            "invalid port range \"+22\" in \"+22\": expected PORT[-PORT][:PORT[-PORT]] or ~PORT[-PORT]",
        ),
        (
            "22:80:90",
            "invalid port range \"22:80:90\" in \"22:80:90\": expected PORT[-PORT][:PORT[-PORT]] or ~PORT[-PORT]",
        ),
        ("22,,80", "empty entry in \"22,,80\": remove the extra ','"),
        ("80-22", "port range \"80-22\" in \"80-22\" runs backwards"),
        (
            "22-80:8022-8030",
            "port ranges in \"22-80:8022-8030\" in \"22-80:8022-8030\" differ in length: 59 host ports, 9 guest ports",
        ),
        (
            "1-100:65500",
            "guest ports of \"1-100:65500\" in \"1-100:65500\" run past 65535",
        ),
        (
            "~22:23",
            "exclusion \"~22:23\" in \"~22:23\" cannot have a target port",
        ),
    ]);
}

/// Forwarding addresses and interface names that cannot be bound.
#[test]
fn errors_name_the_bad_address_or_interface() {
    assert_errors(&[
        (
            "192.0.2.x/22",
            "invalid forwarding address \"192.0.2.x\" in \"192.0.2.x/22\"",
        ),
        ("/22", "invalid forwarding address \"\" in \"/22\""),
        (
            "192.0.2.1%/22",
            "invalid interface name \"\" in \"192.0.2.1%/22\": 1 to 15 bytes, without '/', ':', '%' or whitespace",
        ),
        (
            "%averyveryverylongname/22",
            "invalid interface name \"averyveryverylongname\" in \"%averyveryverylongname/22\": 1 to 15 bytes, without '/', ':', '%' or whitespace",
        ),
    ]);
}

/// Lists that misuse a keyword, overlap, forward nothing or are empty.
#[test]
fn errors_name_the_bad_list() {
    assert_errors(&[
        (
            "22,all",
            "\"all\" in \"22,all\" must be the whole list of ports",
        ),
        (
            "auto",
            "\"auto\" in \"auto\" is not supported: list the ports to forward, or use \"all\"",
        ),
        (
            "20-30,25",
            "host port 25 is forwarded by both \"20-30\" and \"25\" in \"20-30,25\"",
        ),
        (
            "~1-65535",
            "\"~1-65535\" forwards no ports: every port is excluded",
        ),
        (
            "22,~22",
            "\"22,~22\" forwards no ports: every port is excluded",
        ),
        (
            "",
            "empty port forwarding spec: expected PORTS, ADDRESS/PORTS, \"all\" or \"none\"",
        ),
    ]);
}

#[test]
fn exclusion_resolves_overlap_like_passt() {
    // The excluded port is removed from both entries before they are compared.
    assert_eq!(
        triples(&spec("20-30,25:125,~25")),
        vec![(20, 24, 20), (26, 30, 26)]
    );
}

#[test]
fn exclusions_keep_the_offset_of_a_remapped_range() {
    let s = spec("2000-2010:3000-3010,~2005");
    assert_eq!(triples(&s), vec![(2000, 2004, 3000), (2006, 2010, 3006)]);
    assert_eq!(s.to_string(), "2000-2004:3000-3004,2006-2010:3006-3010");
}

#[test]
fn canonical_form_merges_and_sorts() {
    let s = spec("25,22,23,24");
    assert_eq!(s.to_string(), "22-25");
    assert_eq!(spec("8081:81,8080:80").to_string(), "8080-8081:80-81");
    assert_eq!(spec("8080:80,8082:82").to_string(), "8080:80,8082:82");
    assert_eq!(spec("025").to_string(), "25");
}

#[test]
fn iteration_lists_every_port_with_its_bind_address() {
    let s = spec("127.0.0.1/22-23:2022");
    let ports: Vec<PortForward> = s.iter().collect();
    let bind = Some("127.0.0.1".parse().unwrap());
    assert_eq!(
        ports,
        vec![
            PortForward {
                bind,
                host_port: 22,
                guest_port: 2022
            },
            PortForward {
                bind,
                host_port: 23,
                guest_port: 2023
            },
        ]
    );
}

#[test]
fn mapping_is_invertible() {
    let m = PortMapping::new(2000..=2010, 3000).unwrap();
    assert_eq!(m.guest_port(2005), Some(3005));
    assert_eq!(m.host_port(3005), Some(2005));
    assert_eq!(m.host_port(2005), None);
    assert_eq!(m.guest_port(1999), None);
    assert_eq!(m.port_count(), 11);
    assert_eq!(PortMapping::new(0..=1, 1), None);
    assert_eq!(PortMapping::new(1..=2, 65535), None);
    #[allow(clippy::reversed_empty_ranges)]
    let reversed = PortMapping::new(2..=1, 1);
    assert_eq!(reversed, None);
    let m = PortMapping::new(1..=65535, 1).unwrap();
    assert_eq!(m.guest_port(65535), Some(65535));
}

#[test]
fn table_combines_specs_and_rejects_overlaps() {
    let t: PortForwards = "127.0.0.1/8080:80 22 ::1/443".parse().unwrap();
    assert_eq!(t.to_string(), "22 ::1/443 127.0.0.1/8080:80");
    assert_eq!(t.guest_port_for(8080), Some(80));
    assert_eq!(t.guest_port_for(22), Some(22));
    assert_eq!(t.guest_port_for(80), None);
    assert_eq!(
        t.spec_for(443).unwrap().bind(),
        Some("::1".parse().unwrap())
    );
    assert_eq!(t.iter().count(), 3);
    let e = "127.0.0.1/80 ::1/70-90"
        .parse::<PortForwards>()
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "host port 80 is forwarded by both \"::1/70-90\" and \"127.0.0.1/80\""
    );
    let e = "none 22".parse::<PortForwards>().unwrap_err();
    assert_eq!(
        e.to_string(),
        "\"none\" cannot be combined with other specs in \"none 22\""
    );
    let t: PortForwards = "none".parse().unwrap();
    assert!(t.is_empty());
    assert_eq!(t.to_string(), "none");
    assert_eq!(t, PortForwards::default());
}

#[test]
fn table_round_trips() {
    for input in [
        "22",
        "~22",
        "1-100 127.0.0.1/~1-100,~200-65535",
        "1-10:11-20 %lo/30",
    ] {
        let t: PortForwards = input.parse().unwrap();
        let again: PortForwards = t.to_string().parse().unwrap();
        assert_eq!(again, t, "{input} -> {t}");
    }
}
