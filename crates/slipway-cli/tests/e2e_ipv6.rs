//! End to end with the Linux kernel as the guest: IPv6 in the namespaces of
//! `slipway run` and `slipway attach`, configured by the kernel itself from
//! slipway's router advertisements (SLAAC), by a DHCPv6 client (dhcpcd) and
//! by `-a`, its neighbour discovery of the router, the DNS address the
//! advertisements carry, and a serving loop that stays quiet once the
//! initial advertisements are out.
//!
//! Needs root, /dev/net/tun and the tools each test names; each says on
//! stderr why it skips otherwise. No datagram leaves the namespaces made
//! here (the neighbour probes and router solicitations stay on the tap's
//! link); every process runs under a guard, every wait is bounded.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use test_support::common::assert_process_quiet;
use test_support::e2e;
use test_support::require;

use std::net::Ipv6Addr;
use std::time::{Duration, Instant};

use e2e::{GuestRun, NamedNetns, Proc, run, slipway, slipway_run, wait_until};

/// The bound on a short command in the guest.
const LIMIT: Duration = Duration::from_secs(30);
/// How soon after start the namespace must have IPv6 configured.
const SLAAC_WITHIN: Duration = Duration::from_secs(5);

/// The plan's IPv6 prefix (its first 64 bits).
const PREFIX: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 2, 0, 0, 0, 0);
/// The router's link-local address, the source of its advertisements.
const ROUTER: &str = "fe80::1";
/// The plan's IPv6 gateway address.
const GATEWAY: &str = "fd00:0:0:2::2";
/// The plan's IPv6 DNS address.
const DNS: &str = "fd00:0:0:2::3";
/// The address SLAAC makes from the prefix and the plan's guest MAC
/// (52:54:00:12:34:56) by EUI-64.
const SLAAC_ADDRESS: &str = "fd00::2:5054:ff:fe12:3456";
/// slipway's MAC address as the router's and the gateway's.
const ROUTER_MAC: &str = "52:55:0a:00:02:02";

/// A guest script that waits (at most 5 s, in steps of 0.1 s) for a global
/// address and an IPv6 default route on `eth0`, says `slaac-ready`, and
/// prints how many steps it waited (`waited=N`) and both.
const AWAIT_SLAAC: &str = "\
i=0
while [ $i -lt 50 ]; do
  if ip -6 -o addr show dev eth0 scope global | grep -q inet6 && ip -6 route show default | grep -q via; then break; fi
  sleep 0.1; i=$((i + 1))
done
echo slaac-ready
echo waited=$i
ip -6 -o addr show dev eth0 scope global
ip -6 route show default
";

/// Checks that `text` (`ip -6 -o addr` and `ip -6 route show default`
/// output) shows a usable SLAAC address in the plan's prefix and the default
/// route via the router's link-local address, learnt from its
/// advertisement.
fn assert_slaac(text: &str) {
    // The one made from an advertised prefix: an address given with -a or
    // leased by DHCPv6 may stand beside it.
    let line = text
        .lines()
        .find(|line| line.contains("inet6 ") && line.contains("/64 scope global dynamic"))
        .unwrap_or_else(|| panic!("no global IPv6 address from an advertisement:\n{text}"));
    let addr: Ipv6Addr = line
        .split_whitespace()
        .skip_while(|word| *word != "inet6")
        .nth(1)
        .and_then(|cidr| cidr.split('/').next())
        .and_then(|addr| addr.parse().ok())
        .unwrap_or_else(|| panic!("no address in {line:?}"));
    let prefix = u128::from(addr) & !u128::from(u64::MAX);
    assert_eq!(Ipv6Addr::from(prefix), PREFIX, "{line}");
    assert_eq!(addr.to_string(), SLAAC_ADDRESS, "{line}");
    // Made from an advertised prefix (with its lifetimes), not set by hand,
    // and usable.
    assert!(line.contains(" dynamic"), "{line}");
    assert!(!line.contains("tentative"), "{line}");
    assert!(
        text.lines()
            .any(|l| l.starts_with(&format!("default via {ROUTER} dev eth0 proto ra"))),
        "no default route via {ROUTER} from an advertisement:\n{text}"
    );
}

#[test]
fn run_namespace_takes_slaac_address_and_default_route_via_router_link_local_within_5s() {
    require!("ip", "grep");
    let started = Instant::now();
    let mut guest = GuestRun::spawn(slipway_run(&[]), &["sh", "-c", AWAIT_SLAAC]);
    guest.wait_for_line("slaac-ready", SLAAC_WITHIN + Duration::from_secs(1));
    let elapsed = started.elapsed();
    let out = guest.finish_quiet(LIMIT, "after SLAAC");
    out.assert_success("the guest's script");
    assert_slaac(&out.stdout);
    assert!(elapsed < SLAAC_WITHIN, "SLAAC took {elapsed:?}");
    // slipway starts the command once IPv6 is up, as IPv4 is.
    assert_eq!(
        e2e::field(&out.stdout, "waited"),
        Some("0"),
        "the command started before IPv6 was configured:\n{}",
        out.stdout
    );
    eprintln!("e2e: SLAAC address and default route within {elapsed:?} of start");
}

#[test]
fn router_and_gateway_addresses_resolve_by_neighbour_discovery() {
    require!("ip", "busybox");
    // Neighbour entries are made afresh by each probe: an answered
    // solicitation leaves the entry REACHABLE (STALE once it ages). Whether
    // the echo requests themselves are answered is the ICMPv6 relay's
    // contract; here only the discovery they trigger counts.
    let script = format!(
        "ip -6 neigh flush dev eth0; \
         busybox ping -6 -c 1 -W 1 {ROUTER}%eth0; busybox ping -6 -c 1 -W 1 {GATEWAY}; \
         echo neighbours; ip -6 neigh show dev eth0"
    );
    let out = e2e::run_in_guest(&[], &script, LIMIT);
    out.assert_success("the guest's script");
    let neighbours = out
        .stdout
        .split_once("neighbours\n")
        .map_or("", |(_, after)| after);
    for addr in [ROUTER, GATEWAY] {
        let line = neighbours
            .lines()
            .find(|line| line.starts_with(&format!("{addr} ")))
            .unwrap_or_else(|| panic!("no neighbour entry for {addr}:\n{}", out.stdout));
        assert!(line.contains(&format!("lladdr {ROUTER_MAC}")), "{line}");
        assert!(
            line.contains("REACHABLE") || line.contains("STALE"),
            "{addr} not resolved: {line}"
        );
    }
}

/// Python run in the guest: listens for the options of router
/// advertisements the kernel passes to user space (`RTNLGRP_ND_USEROPT`:
/// RDNSS among them) until `argv[1]` seconds after start, sending a router
/// solicitation first if `argv[2]` is `solicit`; prints `ra SECONDS` for
/// each advertisement heard (the kernel passes each user option in a
/// message of its own: one RDNSS option per advertisement) and
/// `rdnss ADDRESS` for each DNS address in it.
const ND_USEROPT_LISTENER: &str = r"
import select, socket, struct, sys, time
start = time.monotonic()
until = start + float(sys.argv[1])
nl = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
nl.bind((0, 1 << (20 - 1)))
if sys.argv[2] == 'solicit':
    rs = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
    rs.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 255)
    rs.sendto(bytes([133, 0, 0, 0, 0, 0, 0, 0]), ('ff02::2', 0, 0, socket.if_nametoindex('eth0')))
print('listening', flush=True)
while True:
    left = until - time.monotonic()
    if left <= 0 or not select.select([nl], [], [], left)[0]:
        break
    data = nl.recv(65536)
    off = 0
    while off + 16 <= len(data):
        length, kind = struct.unpack_from('=IH', data, off)
        if length < 16:
            break
        if kind == 68:
            opts_len = struct.unpack_from('=H', data, off + 18)[0]
            opts = data[off + 32:off + 32 + opts_len]
            o = 0
            while o + 8 <= len(opts) and opts[o + 1]:
                end = o + opts[o + 1] * 8
                if opts[o] == 25:
                    print('ra %.1f' % (time.monotonic() - start), flush=True)
                    for a in range(o + 8, end - 15, 16):
                        print('rdnss', socket.inet_ntop(socket.AF_INET6, opts[a:a + 16]), flush=True)
                o = end
        off += (length + 3) & ~3
";

#[test]
fn router_advertisement_names_the_dns_address_to_the_kernel() {
    require!("python3");
    let out = e2e::python_in_guest(&[], ND_USEROPT_LISTENER, &["3", "solicit"], LIMIT);
    out.assert_success("the listener");
    assert!(
        out.stdout
            .lines()
            .any(|line| line == format!("rdnss {DNS}")),
        "no RDNSS option with {DNS}:\n{}",
        out.stdout
    );
}

/// When the listener heard each advertisement, in seconds after its start.
fn advertisement_times(stdout: &str) -> Vec<f64> {
    stdout
        .lines()
        .filter_map(|line| line.strip_prefix("ra ")?.parse().ok())
        .collect()
}

#[test]
fn no_unsolicited_advertisement_after_the_initial_ones_and_the_loop_is_quiet() {
    require!("python3");
    // The initial advertisements go out 0, 4 and 12 s after the guest's
    // first IPv6 frame (at start), the next one only 10 minutes later: a
    // listener from start to 16 s hears the second and the third and
    // nothing after 13 s.
    let out = e2e::python_in_guest(&[], ND_USEROPT_LISTENER, &["16", "listen"], LIMIT);
    out.assert_success("the listener");
    let times = advertisement_times(&out.stdout);
    assert!(
        times.iter().any(|t| *t < 13.0),
        "no initial advertisement heard, so the listener hears none:\n{}",
        out.stdout
    );
    eprintln!("e2e: advertisements heard at {times:?} s");
    let late: Vec<_> = times.iter().filter(|t| **t >= 13.0).collect();
    assert!(
        late.is_empty(),
        "advertisements after the initial ones: {late:?}"
    );
}

/// Writes `value` to `/proc/sys/net/ipv6/conf/{key}` inside `netns`.
fn sysctl(netns: &NamedNetns, key: &str, value: &str) {
    let script = format!("echo {value} > /proc/sys/net/ipv6/conf/{key}");
    run(&mut netns.exec("sh", &["-c", &script]), LIMIT).assert_success(&script);
}

#[test]
fn attach_brings_slaac_up_where_the_namespace_has_ipv6_off_and_forwarding_on() {
    require!("ip", "grep");
    // A namespace whose new interfaces get no IPv6, no link-local address,
    // no router advertisements and no SLAAC, and that forwards (where
    // accept_ra=1 would ignore advertisements).
    let netns = NamedNetns::new("v6off");
    sysctl(&netns, "all/forwarding", "1");
    for (key, value) in [
        ("disable_ipv6", "1"),
        ("accept_ra", "0"),
        ("autoconf", "0"),
        ("addr_gen_mode", "1"),
    ] {
        sysctl(&netns, &format!("default/{key}"), value);
    }
    let path = format!("/run/netns/{}", netns.name());
    let started = Instant::now();
    let server = Proc::spawn(&mut slipway(&["attach", "--netns", &path]));
    let mut state = String::new();
    wait_until("SLAAC in the attached namespace", SLAAC_WITHIN, || {
        let addr = run(
            &mut netns.exec(
                "ip",
                &["-6", "-o", "addr", "show", "dev", "eth0", "scope", "global"],
            ),
            LIMIT,
        );
        let route = run(
            &mut netns.exec("ip", &["-6", "route", "show", "default"]),
            LIMIT,
        );
        state = format!("{}{}", addr.stdout, route.stdout);
        addr.stdout.contains("inet6")
            && !addr.stdout.contains("tentative")
            && route.stdout.contains("via")
    });
    eprintln!("e2e: attach: SLAAC within {:?} of start", started.elapsed());
    assert_slaac(&state);
    let accept_ra = run(
        &mut netns.exec("cat", &["/proc/sys/net/ipv6/conf/eth0/accept_ra"]),
        LIMIT,
    );
    assert_eq!(accept_ra.stdout.trim(), "2");
    assert_process_quiet(server.id(), 1, "attach after SLAAC");
    assert!(!server.exited(), "slipway attach stopped");
}

#[test]
fn address_option_sets_the_ipv6_address_on_the_interface_beside_slaac_and_it_carries_traffic() {
    require!("ip", "curl");
    let port = e2e::servers::http_body_on(
        e2e::servers::loopback_listener(e2e::Family::V6, 16),
        b"from the given address\n",
    );
    // curl binds the given address as its source: without it on the
    // interface the connection cannot be made.
    let script = format!(
        "{AWAIT_SLAAC}\
         curl -sS --max-time 10 --interface fd00:0:0:2::99 http://[{GATEWAY}]:{port}/"
    );
    let out = e2e::run_in_guest(&["-a", "fd00:0:0:2::99"], &script, LIMIT);
    out.assert_success("the guest's script");
    let given = out
        .stdout
        .lines()
        .find(|line| line.contains("inet6 fd00:0:0:2::99/64"))
        .unwrap_or_else(|| panic!("no fd00:0:0:2::99/64 on eth0:\n{}", out.stdout));
    // Set by slipway, usable at once, and the SLAAC address still made.
    assert!(
        !given.contains("dynamic") && !given.contains("tentative"),
        "{given}"
    );
    assert_slaac(&out.stdout);
    assert!(
        out.stdout.contains("from the given address"),
        "no body over the given address:\n{}",
        out.stdout
    );
}

#[test]
fn dhcpv6_client_in_the_namespace_leases_the_plans_address() {
    require!("ip", "dhcpcd", "unshare", "mount");
    // dhcpcd keeps its DUID and leases under /var/lib/dhcpcd and its pid
    // file under /run: a mount namespace of its own with both on tmpfs
    // keeps the host's untouched. DHCPv6 for an address only (--ia_na),
    // the advertisements left to the kernel (--noipv6rs), rapid commit;
    // it exits once the lease is applied (-1 -w) and runs no hooks (-c).
    let script = format!(
        "unshare -m sh -c '\
           mount -t tmpfs tmpfs /run && mkdir -p /var/lib/dhcpcd && \
           mount -t tmpfs tmpfs /var/lib/dhcpcd && \
           dhcpcd -f /dev/null -o rapid_commit -6 -1 -w -B --noipv6rs --ia_na \
             -c /bin/true -t 10 eth0' > /tmp/dhcpcd.$$ 2>&1 || {{ cat /tmp/dhcpcd.$$; exit 1; }}
         rm -f /tmp/dhcpcd.$$
         {AWAIT_SLAAC}"
    );
    let out = e2e::run_in_guest(&[], &script, LIMIT);
    out.assert_success("the guest's script");
    // The plan's DHCPv6 address (fd00:0:0:2::15) as a /128, beside the
    // SLAAC address.
    assert!(
        out.stdout
            .lines()
            .any(|line| line.contains("inet6 fd00:0:0:2::15/128")),
        "no DHCPv6 lease of fd00:0:0:2::15 on eth0:\n{}",
        out.stdout
    );
    assert_slaac(&out.stdout);
}
