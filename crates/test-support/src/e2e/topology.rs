//! The namespaces a test builds for a destination other than the gateway:
//! slipway runs in `mid`, whose only way anywhere is a veth pair to `srv`,
//! so that a flow slipway opens to the server's address leaves the
//! guest's namespace and the host's routes stay untouched.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use super::data::{Sha256, Stream, hex};
use super::{
    CURL_GLOBOFF, Family, NamedNetns, command, http_url, ip, run, run_then_quiet, servers,
    slipway_binary, wait_until,
};

/// How long one `ip` command may take.
const IP_LIMIT: Duration = Duration::from_secs(10);
/// The bound on the guest's run.
const LIMIT: Duration = Duration::from_secs(60);
/// How long the server in `srv` may take to answer `mid`.
const READY: Duration = Duration::from_secs(10);
/// The length of what the server in `srv` serves.
const TRANSFER_LEN: usize = 32 << 20;

/// Links `mid` and `srv` by a veth pair (`slw-mid0` in `mid`, `slw-srv0`
/// in `srv`, both at MTU 1500, as an Ethernet link has it) carrying the link network of each of `families` (see
/// [`Family::link`]: the server's address in `srv`, the other in `mid`),
/// and checks that `mid` then has no default route of any of them and no
/// route but its link's, loopback's and link-local ones.
pub fn link_by_veth(mid: &NamedNetns, srv: &NamedNetns, families: &[Family]) {
    ip(&[
        "-n",
        mid.name(),
        "link",
        "add",
        "slw-mid0",
        "mtu",
        "1500",
        "type",
        "veth",
        "peer",
        "name",
        "slw-srv0",
        "mtu",
        "1500",
        "netns",
        srv.name(),
    ]);
    for &family in families {
        let (server, other, len) = family.link();
        for (ns, dev, addr) in [(mid, "slw-mid0", other), (srv, "slw-srv0", server)] {
            let cidr = format!("{addr}/{len}");
            let mut args = vec!["-n", ns.name(), "addr", "add", &cidr, "dev", dev];
            // No duplicate address detection: the addresses are usable at
            // once, and the link has nobody else on it.
            if family == Family::V6 {
                args.push("nodad");
            }
            ip(&args);
        }
    }
    ip(&["-n", mid.name(), "link", "set", "slw-mid0", "up"]);
    ip(&["-n", srv.name(), "link", "set", "slw-srv0", "up"]);
    for &family in families {
        let (server, _, len) = family.link();
        let network = match server {
            IpAddr::V4(a) => IpAddr::V4((a.to_bits() & (u32::MAX << (32 - len))).into()),
            IpAddr::V6(a) => IpAddr::V6((a.to_bits() & (u128::MAX << (128 - len))).into()),
        };
        let link_route = format!("{network}/{len} dev slw-mid0 ");
        let routes = run(
            &mut command("ip", &["-n", mid.name(), family.flag(), "route", "show"]),
            IP_LIMIT,
        );
        let others: Vec<&str> = routes
            .stdout
            .lines()
            .filter(|l| !l.starts_with(&link_route))
            .filter(|l| !l.starts_with("fe80::/64 dev slw-mid0 ") && !l.contains(" dev lo "))
            .collect();
        assert!(
            others.is_empty() && routes.stdout.lines().any(|l| l.starts_with(&link_route)),
            "mid must have only its link route for {}:\n{}",
            family.name(),
            routes.stdout
        );
    }
}

/// Builds `srv` and `mid` joined by a veth carrying `family`'s link
/// network, serves 32 MiB from the server's address in `srv`, and has the
/// guest of a `slipway run` in `mid` download them: the guest's SHA-256
/// is the server's, and slipway is quiet afterwards.
pub fn download_from_behind_a_veth(family: Family) {
    let tag = family.name().to_lowercase();
    let srv = NamedNetns::new(&format!("srv-{tag}"));
    let mid = NamedNetns::new(&format!("mid-{tag}"));
    link_by_veth(&mid, &srv, &[family]);
    let mut body = vec![0; TRANSFER_LEN];
    Stream::new(32).fill(&mut body);
    let sha256 = hex(&Sha256::digest(&body));
    let body: &'static [u8] = Vec::leak(body);
    let (server, _, _) = family.link();
    let port = srv.within(|| {
        servers::http_body_on(servers::listener_at(SocketAddr::new(server, 0), 16), body)
    });
    let url = http_url(server, port, "");
    // Directly from `mid` first: the topology works without slipway.
    wait_until("the server in srv answering mid", READY, || {
        let mut fetch = mid.exec(
            "curl",
            &[
                CURL_GLOBOFF,
                "-sf",
                "-o",
                "/dev/null",
                "--max-time",
                "1",
                &url,
            ],
        );
        run(&mut fetch, LIMIT).status.success()
    });
    let slipway = slipway_binary();
    let script = format!("curl {CURL_GLOBOFF} -sS --max-time 30 {url} | sha256sum");
    let out = run_then_quiet(
        mid.exec(&slipway.to_string_lossy(), &["run", "--"]),
        &["sh", "-c", &script],
        LIMIT,
        "after the download from srv",
    );
    out.assert_success("slipway run in mid");
    assert_eq!(
        out.stdout.split_whitespace().next(),
        Some(sha256.as_str()),
        "the guest's hash of the download from {server} differs:\n{}",
        out.stderr
    );
}
