//! The network-namespace side of `slipway run` and `slipway attach`: a new
//! namespace, the tap in it configured over rtnetlink, frames both ways
//! through the tap descriptor, commands spawned into the namespace with a
//! private resolv.conf, and namespaces opened by PID and path.
//!
//! Needs root and /dev/net/tun (CI has both); each test says on stderr why
//! it skips otherwise. `ip` only checks results; a missing `ip` or `ping`
//! skips just the assertions that need it. Every namespace here vanishes
//! when its descriptors drop; every child is killed and reaped, waits are
//! bounded.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use test_support::common;

use std::ffi::OsString;
use std::fs::File;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, UdpSocket};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use slipway::netns::{self, Namespace, TapConfig, TapIpv6, TapOffload};
use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, EthernetAddress, EthernetFrame, EthernetProtocol,
    EthernetRepr, Icmpv4Packet, Icmpv4Repr, IpProtocol, Ipv4Packet, Ipv4Repr, UdpPacket, UdpRepr,
    checksum,
};

const GUEST_MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];
const GATEWAY_MAC: [u8; 6] = [0x52, 0x55, 0x0a, 0x00, 0x02, 0x02];
const GUEST: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 15);
const GATEWAY: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 2);
const GUEST_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 2, 0, 0, 0, 0x15);
const GATEWAY_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 2, 0, 0, 0, 2);
const MTU: u32 = 65520;
/// The bound on every wait for a frame or a command.
const WAIT: Duration = Duration::from_secs(10);

// ---- environment -----------------------------------------------------------

/// Whether this test can run; says why on stderr when it cannot.
fn privileged() -> bool {
    if !rustix::process::geteuid().is_root() {
        common::skip("needs root (CAP_SYS_ADMIN) for network namespaces");
        return false;
    }
    if !Path::new("/dev/net/tun").exists() {
        common::skip("/dev/net/tun is missing");
        return false;
    }
    true
}

/// Whether `program` is in `PATH`.
fn have(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

/// Whether `ip` is there to check results; says why not on stderr.
fn have_ip() -> bool {
    let found = have("ip");
    if !found {
        common::skip("`ip` not found (install iproute2)");
    }
    found
}

fn argv(words: &[&str]) -> Vec<OsString> {
    words.iter().map(OsString::from).collect()
}

fn default_config() -> TapConfig {
    TapConfig {
        name: "eth0".into(),
        mac: GUEST_MAC,
        mtu: MTU,
        addr_v4: Some((GUEST, 24)),
        gateway_v4: Some(GATEWAY),
        addr_v6: None,
        gateway_v6: None,
        ipv6: TapIpv6::Autoconf,
        offload: TapOffload::None,
    }
}

/// A new namespace with the tap of `cfg` in it.
fn namespace_with_tap(cfg: &TapConfig) -> (Namespace, File) {
    let ns = Namespace::create().expect("create namespace");
    let tap = netns::open_tap(&ns, cfg).expect("open tap");
    (ns, File::from(tap))
}

// ---- processes -------------------------------------------------------------

/// A child that is killed and reaped however the test ends.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Reaped {
    /// Waits at most [`WAIT`] for the child to exit.
    fn wait_bounded(&mut self) -> std::process::ExitStatus {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.0.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "child still running after {WAIT:?}"
            );
            thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Runs `words` in `ns` (with `resolv_conf` if given) and returns its output;
/// panics if it runs longer than [`WAIT`].
fn run_in_ns(ns: &Namespace, words: &[&str], resolv_conf: Option<&Path>) -> Output {
    let mut command = netns::command_in(ns, &argv(words), resolv_conf).expect("command");
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = Reaped(command.spawn().expect("spawn"));
    let status = child.wait_bounded();
    // The commands here print far less than a pipe holds, so reading after
    // the exit cannot deadlock.
    let mut stdout = Vec::new();
    let mut stderr = Vec::new();
    child
        .0
        .stdout
        .take()
        .unwrap()
        .read_to_end(&mut stdout)
        .unwrap();
    child
        .0
        .stderr
        .take()
        .unwrap()
        .read_to_end(&mut stderr)
        .unwrap();
    Output {
        status,
        stdout,
        stderr,
    }
}

/// The standard output of a command that must succeed.
fn stdout_of(ns: &Namespace, words: &[&str]) -> String {
    let output = run_in_ns(ns, words, None);
    assert!(
        output.status.success(),
        "{words:?}: {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// The flags of an `ip -o link` line (`<LOOPBACK,UP,LOWER_UP>`).
fn link_flags(line: &str) -> Vec<&str> {
    let start = line.find('<').expect("flags");
    let end = line.find('>').expect("flags");
    line[start + 1..end].split(',').collect()
}

/// The interfaces of `/proc/net/dev` text and their received packets.
fn rx_packets(proc_net_dev: &str) -> Vec<(String, u64)> {
    proc_net_dev
        .lines()
        .skip(2)
        .filter_map(|line| {
            let (name, counters) = line.split_once(':')?;
            let packets = counters.split_whitespace().nth(1)?.parse().ok()?;
            Some((name.trim().to_owned(), packets))
        })
        .collect()
}

fn inode(fd: impl AsFd) -> (u64, u64) {
    let stat = rustix::fs::fstat(fd).unwrap();
    (stat.st_dev, stat.st_ino)
}

// ---- frames ----------------------------------------------------------------

/// Reads frames from the tap until `pick` returns something; bounded.
fn read_until<T>(tap: &mut File, mut pick: impl FnMut(&[u8]) -> Option<T>) -> T {
    let deadline = Instant::now() + WAIT;
    let mut buf = vec![0u8; 65536 + 14];
    loop {
        match tap.read(&mut buf) {
            Ok(len) => {
                if let Some(found) = pick(&buf[..len]) {
                    return found;
                }
            }
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                assert!(Instant::now() < deadline, "no such frame within {WAIT:?}");
                thread::sleep(Duration::from_millis(5));
            }
            Err(err) => panic!("reading the tap: {err}"),
        }
    }
}

/// The ARP request of the guest for `target`, if `frame` is one.
fn arp_request_for(frame: &[u8], target: Ipv4Addr) -> Option<ArpRepr> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    if eth.ethertype() != EthernetProtocol::Arp {
        return None;
    }
    let repr = ArpRepr::parse(&ArpPacket::new_checked(eth.payload()).ok()?).ok()?;
    match repr {
        ArpRepr::EthernetIpv4 {
            operation: ArpOperation::Request,
            target_protocol_addr,
            ..
        } if target_protocol_addr == target => Some(repr),
        _ => None,
    }
}

/// The gateway's ARP reply to the guest.
fn arp_reply() -> Vec<u8> {
    let repr = ArpRepr::EthernetIpv4 {
        operation: ArpOperation::Reply,
        source_hardware_addr: EthernetAddress(GATEWAY_MAC),
        source_protocol_addr: GATEWAY,
        target_hardware_addr: EthernetAddress(GUEST_MAC),
        target_protocol_addr: GUEST,
    };
    let mut frame = vec![0u8; 14 + repr.buffer_len()];
    let mut eth = EthernetFrame::new_unchecked(&mut frame[..]);
    EthernetRepr {
        src_addr: EthernetAddress(GATEWAY_MAC),
        dst_addr: EthernetAddress(GUEST_MAC),
        ethertype: EthernetProtocol::Arp,
    }
    .emit(&mut eth);
    repr.emit(&mut ArpPacket::new_unchecked(eth.payload_mut()));
    frame
}

/// Answers the guest's ARP request for the gateway.
fn answer_arp(tap: &mut File) {
    let request = read_until(tap, |frame| arp_request_for(frame, GATEWAY));
    let ArpRepr::EthernetIpv4 {
        source_hardware_addr,
        source_protocol_addr,
        ..
    } = request
    else {
        unreachable!("arp_request_for returns Ethernet/IPv4 requests");
    };
    assert_eq!(source_hardware_addr, EthernetAddress(GUEST_MAC));
    assert_eq!(source_protocol_addr, GUEST);
    tap.write_all(&arp_reply()).expect("write ARP reply");
}

/// The IPv4 packet in `frame` if it goes from the guest to the gateway's
/// MAC with protocol `protocol`: (source, destination, IP payload).
fn ipv4_to_gateway(frame: &[u8], protocol: IpProtocol) -> Option<(Ipv4Addr, Ipv4Addr, Vec<u8>)> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    if eth.ethertype() != EthernetProtocol::Ipv4 || eth.dst_addr() != EthernetAddress(GATEWAY_MAC) {
        return None;
    }
    let ip = Ipv4Packet::new_checked(eth.payload()).ok()?;
    if ip.next_header() != protocol {
        return None;
    }
    Some((ip.src_addr(), ip.dst_addr(), ip.payload().to_vec()))
}

/// An IPv4 frame from the gateway to the guest around a `payload_len`-byte
/// IP payload that `emit` writes.
fn ipv4_to_guest(
    protocol: IpProtocol,
    payload_len: usize,
    emit: impl FnOnce(&mut [u8]),
) -> Vec<u8> {
    let ip = Ipv4Repr {
        src_addr: GATEWAY,
        dst_addr: GUEST,
        next_header: protocol,
        payload_len,
        hop_limit: 64,
    };
    let mut frame = vec![0u8; 14 + ip.buffer_len() + payload_len];
    let mut eth = EthernetFrame::new_unchecked(&mut frame[..]);
    EthernetRepr {
        src_addr: EthernetAddress(GATEWAY_MAC),
        dst_addr: EthernetAddress(GUEST_MAC),
        ethertype: EthernetProtocol::Ipv4,
    }
    .emit(&mut eth);
    let mut packet = Ipv4Packet::new_unchecked(eth.payload_mut());
    ip.emit(&mut packet, &ChecksumCapabilities::default());
    emit(packet.payload_mut());
    frame
}

/// An echo reply from the gateway to the guest.
fn echo_reply(ident: u16, seq_no: u16, data: &[u8]) -> Vec<u8> {
    let icmp = Icmpv4Repr::EchoReply {
        ident,
        seq_no,
        data,
    };
    ipv4_to_guest(IpProtocol::Icmp, icmp.buffer_len(), |area| {
        icmp.emit(
            &mut Icmpv4Packet::new_unchecked(area),
            &ChecksumCapabilities::default(),
        );
    })
}

// ---- tests -----------------------------------------------------------------

#[test]
fn created_namespace_is_new_and_has_only_loopback_down() {
    if !privileged() {
        return;
    }
    let ns = Namespace::create().unwrap();
    let host = File::open("/proc/self/ns/net").unwrap();
    assert_ne!(inode(ns.fd()), inode(&host), "a new namespace, not ours");
    assert!(ns.is_alive());
    assert_eq!(ns.path(), None);

    let dev = stdout_of(&ns, &["cat", "/proc/net/dev"]);
    let names: Vec<String> = rx_packets(&dev).into_iter().map(|(name, _)| name).collect();
    assert_eq!(names, ["lo"], "{dev}");

    if have_ip() {
        let links = stdout_of(&ns, &["ip", "-o", "link"]);
        assert_eq!(links.lines().count(), 1, "{links}");
        assert!(
            !link_flags(&links).contains(&"UP"),
            "lo starts down: {links}"
        );
    }
}

#[test]
fn create_without_cap_sys_admin_says_root_is_needed() {
    // Capabilities are per thread and new threads inherit them, so a thread
    // without CAP_SYS_ADMIN in its effective set stands for an unprivileged
    // process (and without root this is what every thread is).
    let result = thread::spawn(|| {
        let mut caps = rustix::thread::capabilities(None)?;
        caps.effective
            .remove(rustix::thread::CapabilitySet::SYS_ADMIN);
        rustix::thread::set_capabilities(None, caps)?;
        Ok::<_, io::Error>(Namespace::create())
    })
    .join()
    .unwrap()
    .unwrap();
    let err = result.unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::PermissionDenied);
    assert_eq!(
        err.to_string(),
        "creating a network namespace needs CAP_SYS_ADMIN: run as root, \
         or call enter_user_namespace() first (slipway run does)"
    );
}

#[test]
fn run_in_runs_inside_and_leaves_the_caller_outside() {
    if !privileged() {
        return;
    }
    let ns = Namespace::create().unwrap();
    let before = inode(File::open("/proc/thread-self/ns/net").unwrap());
    let inside = ns
        .run_in(|| Ok(inode(File::open("/proc/thread-self/ns/net")?)))
        .unwrap();
    let after = inode(File::open("/proc/thread-self/ns/net").unwrap());
    assert_eq!(inside, inode(ns.fd()));
    assert_eq!(before, after);
    let err = ns
        .run_in(|| -> io::Result<()> { Err(io::Error::other("from inside")) })
        .unwrap_err();
    assert_eq!(err.to_string(), "from inside");
}

#[test]
fn tap_has_address_routes_mtu_mac_and_is_up() {
    if !privileged() {
        return;
    }
    let cfg = TapConfig {
        addr_v6: Some((GUEST_V6, 64)),
        gateway_v6: Some(GATEWAY_V6),
        ..default_config()
    };
    let (ns, _tap) = namespace_with_tap(&cfg);

    let dev = stdout_of(&ns, &["cat", "/proc/net/dev"]);
    let mut names: Vec<String> = rx_packets(&dev).into_iter().map(|(name, _)| name).collect();
    names.sort();
    assert_eq!(names, ["eth0", "lo"], "{dev}");
    if !have_ip() {
        return;
    }

    let addr = stdout_of(&ns, &["ip", "-o", "addr", "show", "dev", "eth0"]);
    assert!(addr.contains("inet 10.0.2.15/24 brd 10.0.2.255 "), "{addr}");
    assert!(addr.contains("inet6 fd00:0:0:2::15/64 "), "{addr}");
    let route = stdout_of(&ns, &["ip", "-o", "route"]);
    assert!(route.contains("default via 10.0.2.2 dev eth0"), "{route}");
    assert!(
        route.contains("10.0.2.0/24 dev eth0 proto kernel scope link src 10.0.2.15"),
        "{route}"
    );
    let route6 = stdout_of(&ns, &["ip", "-o", "-6", "route"]);
    assert!(
        route6.contains("default via fd00:0:0:2::2 dev eth0"),
        "{route6}"
    );

    let link = stdout_of(&ns, &["ip", "-o", "link", "show", "dev", "eth0"]);
    assert!(link.contains(&format!(" mtu {MTU} ")), "{link}");
    assert!(link.contains("link/ether 52:54:00:12:34:56 "), "{link}");
    assert!(link_flags(&link).contains(&"UP"), "{link}");
    assert!(
        link_flags(&link).contains(&"LOWER_UP"),
        "carrier while the fd is open: {link}"
    );

    let lo = stdout_of(&ns, &["ip", "-o", "link", "show", "dev", "lo"]);
    assert!(link_flags(&lo).contains(&"UP"), "{lo}");
    let lo_addr = stdout_of(&ns, &["ip", "-o", "addr", "show", "dev", "lo"]);
    assert!(lo_addr.contains("inet 127.0.0.1/8 "), "{lo_addr}");
}

/// The value of sysctl `net.ipv6.conf.eth0.KEY` in `ns`.
fn eth0_sysctl(ns: &Namespace, key: &str) -> String {
    let path = format!("/proc/sys/net/ipv6/conf/eth0/{key}");
    stdout_of(ns, &["cat", &path]).trim().to_owned()
}

#[test]
fn autoconf_tap_takes_router_advertisements_and_has_its_link_local_address_at_once() {
    if !privileged() {
        return;
    }
    let (ns, _tap) = namespace_with_tap(&default_config());
    for (key, value) in [
        ("disable_ipv6", "0"),
        ("accept_ra", "2"),
        ("autoconf", "1"),
        ("addr_gen_mode", "0"),
        ("accept_dad", "0"),
    ] {
        assert_eq!(eth0_sysctl(&ns, key), value, "{key}");
    }
    // The EUI-64 link-local address of the MAC, usable without waiting for
    // duplicate address detection (flags 0x80: permanent, not tentative).
    let if_inet6 = stdout_of(&ns, &["cat", "/proc/net/if_inet6"]);
    assert!(
        if_inet6
            .lines()
            .any(|line| line.starts_with("fe80000000000000505400fffe123456 ")
                && line.split_whitespace().nth(4) == Some("80")),
        "{if_inet6}"
    );
}

#[test]
fn disabled_tap_has_no_ipv6() {
    if !privileged() {
        return;
    }
    let cfg = TapConfig {
        ipv6: TapIpv6::Disabled,
        ..default_config()
    };
    let (ns, _tap) = namespace_with_tap(&cfg);
    assert_eq!(eth0_sysctl(&ns, "disable_ipv6"), "1");
    let if_inet6 = stdout_of(&ns, &["cat", "/proc/net/if_inet6"]);
    assert!(!if_inet6.contains("eth0"), "{if_inet6}");
}

#[test]
fn ipv6_watch_sees_static_address_and_default_router() {
    if !privileged() {
        return;
    }
    let cfg = TapConfig {
        addr_v6: Some((GUEST_V6, 64)),
        gateway_v6: Some(GATEWAY_V6),
        ..default_config()
    };
    let (ns, _tap) = namespace_with_tap(&cfg);
    let mut watch = netns::Ipv6Watch::open(&ns, "eth0").unwrap();
    let state = watch.read().unwrap();
    assert_eq!(state.static_addrs, [(GUEST_V6, 64)]);
    assert!(state.autoconf_addrs.is_empty(), "{state:?}");
    assert_eq!(state.default_router, Some(GATEWAY_V6));
    assert!(state.is_configured());
    // A second read sees the same: the files are read again from the start.
    assert_eq!(watch.read().unwrap(), state);
    let mut lo = netns::Ipv6Watch::open(&ns, "lo").unwrap();
    assert!(!lo.read().unwrap().is_configured());
}

#[test]
fn kernel_frames_reach_the_tap_and_written_frames_reach_the_kernel() {
    if !privileged() {
        return;
    }
    let (ns, mut tap) = namespace_with_tap(&default_config());
    // A datagram to the gateway from inside: the kernel first asks for the
    // gateway's MAC, and sends the datagram once our ARP reply is in.
    let socket = ns
        .run_in(|| {
            let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))?;
            socket.send_to(b"slipway", (GATEWAY, 9))?;
            Ok(socket)
        })
        .unwrap();
    answer_arp(&mut tap);
    let (src, dst, udp) = read_until(&mut tap, |frame| ipv4_to_gateway(frame, IpProtocol::Udp));
    assert_eq!((src, dst), (GUEST, GATEWAY));
    let udp = UdpPacket::new_checked(&udp[..]).unwrap();
    assert_eq!(udp.src_port(), socket.local_addr().unwrap().port());
    assert_eq!(udp.dst_port(), 9);
    assert_eq!(udp.payload(), b"slipway");
}

/// A frame behind a tap's `virtio_net_hdr` (native byte order): flags,
/// `csum_start`, `csum_offset`.
fn with_vnet_hdr(flags: u8, start: u16, offset: u16, frame: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; netns::VNET_HDR_LEN];
    out[0] = flags;
    out[6..8].copy_from_slice(&start.to_ne_bytes());
    out[8..10].copy_from_slice(&offset.to_ne_bytes());
    out.extend_from_slice(frame);
    out
}

#[test]
fn with_checksum_offload_frames_carry_a_vnet_header_and_partial_checksums_both_ways() {
    const NEEDS_CSUM: u8 = 1;
    if !privileged() {
        return;
    }
    let cfg = TapConfig {
        offload: TapOffload::Checksum,
        ..default_config()
    };
    let (ns, mut tap) = namespace_with_tap(&cfg);
    let socket = ns
        .run_in(|| {
            let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))?;
            socket.set_read_timeout(Some(WAIT))?;
            socket.send_to(&[0x5a; 1000], (GATEWAY, 9))?;
            Ok(socket)
        })
        .unwrap();
    let hdr = netns::VNET_HDR_LEN;
    let request = read_until(&mut tap, |read| arp_request_for(&read[hdr..], GATEWAY));
    assert!(matches!(request, ArpRepr::EthernetIpv4 { .. }));
    tap.write_all(&with_vnet_hdr(0, 0, 0, &arp_reply()))
        .unwrap();
    let (header, udp) = read_until(&mut tap, |read| {
        let (_, _, udp) = ipv4_to_gateway(&read[hdr..], IpProtocol::Udp)?;
        Some((read[..hdr].to_vec(), udp))
    });
    let field = |at: usize| u16::from_ne_bytes([header[at], header[at + 1]]);
    assert_eq!(
        header[0] & NEEDS_CSUM,
        NEEDS_CSUM,
        "the kernel left it partial"
    );
    assert_eq!((field(6), field(8)), (34, 6), "csum_start, csum_offset");
    let packet = UdpPacket::new_checked(&udp[..]).unwrap();
    let (guest, gateway) = (GUEST.into(), GATEWAY.into());
    assert!(!packet.verify_checksum(&guest, &gateway), "not summed");
    assert_eq!(packet.payload(), &[0x5a; 1000][..]);

    // The other way: a datagram with only the pseudo-header sum, marked
    // NEEDS_CSUM, is taken by the kernel as verified.
    let port = socket.local_addr().unwrap().port();
    let payload = b"partial from the gateway";
    let repr = UdpRepr {
        src_port: 9,
        dst_port: port,
    };
    let udp_len = 8 + payload.len();
    let frame = ipv4_to_guest(IpProtocol::Udp, udp_len, |area| {
        let mut udp = UdpPacket::new_unchecked(area);
        repr.emit(
            &mut udp,
            &gateway,
            &guest,
            payload.len(),
            |area| area.copy_from_slice(payload),
            &ChecksumCapabilities::ignored(),
        );
        let len = u32::try_from(udp_len).unwrap();
        udp.set_checksum(checksum::pseudo_header_v4(
            &GATEWAY,
            &GUEST,
            IpProtocol::Udp,
            len,
        ));
    });
    tap.write_all(&with_vnet_hdr(NEEDS_CSUM, 34, 6, &frame))
        .unwrap();
    let mut got = [0u8; 64];
    let (n, from) = socket.recv_from(&mut got).expect("the datagram arrives");
    assert_eq!(&got[..n], payload);
    assert_eq!(from, (GATEWAY, 9).into());
}

#[test]
fn written_frame_is_counted_by_the_kernel() {
    if !privileged() {
        return;
    }
    let (ns, mut tap) = namespace_with_tap(&default_config());
    let eth0_rx = |ns: &Namespace| {
        let dev = stdout_of(ns, &["cat", "/proc/net/dev"]);
        rx_packets(&dev)
            .into_iter()
            .find_map(|(name, packets)| (name == "eth0").then_some(packets))
            .expect("eth0 in /proc/net/dev")
    };
    let before = eth0_rx(&ns);
    // A broadcast frame of the local experimental ethertype: counted, and
    // nothing in the namespace answers it.
    let mut frame = vec![0u8; 60];
    frame[0..6].copy_from_slice(&[0xff; 6]);
    frame[6..12].copy_from_slice(&GATEWAY_MAC);
    frame[12..14].copy_from_slice(&0x88b5u16.to_be_bytes());
    assert_eq!(tap.write(&frame).unwrap(), frame.len());
    assert_eq!(eth0_rx(&ns), before + 1);
}

#[test]
fn spawned_ping_gets_its_echo_reply_through_the_tap() {
    if !privileged() {
        return;
    }
    let ping: &[&str] = if have("ping") {
        &["ping"]
    } else if have("busybox") {
        &["busybox", "ping"]
    } else {
        common::skip("neither `ping` nor `busybox` found (install iputils-ping or busybox-static)");
        return;
    };
    let (ns, mut tap) = namespace_with_tap(&default_config());
    let mut words = ping.to_vec();
    words.extend(["-c", "1", "-W", "5", "10.0.2.2"]);
    let mut command = netns::command_in(&ns, &argv(&words), None).unwrap();
    command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut child = Reaped(command.spawn().unwrap());

    answer_arp(&mut tap);
    let (ident, seq_no, data) = read_until(&mut tap, |frame| {
        let (src, dst, payload) = ipv4_to_gateway(frame, IpProtocol::Icmp)?;
        assert_eq!((src, dst), (GUEST, GATEWAY));
        let packet = Icmpv4Packet::new_checked(&payload[..]).ok()?;
        match Icmpv4Repr::parse(&packet, &ChecksumCapabilities::default()).ok()? {
            Icmpv4Repr::EchoRequest {
                ident,
                seq_no,
                data,
            } => Some((ident, seq_no, data.to_vec())),
            _ => None,
        }
    });
    tap.write_all(&echo_reply(ident, seq_no, &data)).unwrap();
    let status = child.wait_bounded();
    assert!(status.success(), "ping saw no reply: {status}");
}

#[test]
fn resolv_conf_is_bind_mounted_for_the_command_only() {
    if !privileged() {
        return;
    }
    let Ok(host_before) = std::fs::read("/etc/resolv.conf") else {
        common::skip("the host has no /etc/resolv.conf to mount over");
        return;
    };
    let ns = Namespace::create().unwrap();
    let path = netns::write_resolv_conf(&[
        IpAddr::V4(Ipv4Addr::new(10, 0, 2, 3)),
        IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 2, 0, 0, 0, 3)),
    ])
    .unwrap();
    let _remove = RemoveOnDrop(path.clone());
    let written = std::fs::read(&path).unwrap();

    let output = run_in_ns(&ns, &["cat", "/etc/resolv.conf"], Some(&path));
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(output.stdout, written);
    let text = String::from_utf8(written).unwrap();
    assert!(
        text.contains("nameserver 10.0.2.3\nnameserver fd00:0:0:2::3\n"),
        "{text}"
    );

    assert_eq!(std::fs::read("/etc/resolv.conf").unwrap(), host_before);
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains("slipway-resolv"),
        "the bind mount leaked: {mounts}"
    );

    // Without a resolv.conf the command sees the host's.
    let plain = run_in_ns(&ns, &["cat", "/etc/resolv.conf"], None);
    assert_eq!(plain.stdout, host_before);
}

/// Deletes a file when dropped.
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn open_by_pid_and_path_finds_the_process_namespace_until_it_exits() {
    if !privileged() {
        return;
    }
    let ns = Namespace::create().unwrap();
    let mut command = netns::command_in(&ns, &argv(&["sleep", "30"]), None).unwrap();
    command.stdin(Stdio::null());
    let mut child = Reaped(command.spawn().unwrap());
    let pid = child.0.id().to_string();

    let by_pid = Namespace::open(&pid).unwrap();
    let by_path = Namespace::open(&format!("/proc/{pid}/ns/net")).unwrap();
    assert_eq!(inode(by_pid.fd()), inode(ns.fd()));
    assert_eq!(inode(by_path.fd()), inode(ns.fd()));
    let expected = PathBuf::from(format!("/proc/{pid}/ns/net"));
    assert_eq!(by_pid.path(), Some(expected.as_path()));
    assert!(by_pid.is_alive() && by_path.is_alive());

    // What run_in sees through the opened namespace is the child's.
    let inside = by_pid
        .run_in(|| Ok(inode(File::open("/proc/thread-self/ns/net")?)))
        .unwrap();
    assert_eq!(inside, inode(ns.fd()));

    child.0.kill().unwrap();
    child.wait_bounded();
    assert!(!by_pid.is_alive(), "the process exited");
    assert!(!by_path.is_alive(), "the process exited");
    assert!(
        ns.is_alive(),
        "the created namespace lives while its handle does"
    );
}

#[test]
fn open_by_pid_of_a_host_process_is_the_host_namespace() {
    if !privileged() {
        return;
    }
    let mut child = Reaped(
        Command::new("sleep")
            .arg("30")
            .stdin(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let ns = Namespace::open(&child.0.id().to_string()).unwrap();
    let host = File::open("/proc/self/ns/net").unwrap();
    assert_eq!(inode(ns.fd()), inode(&host));
    child.0.kill().unwrap();
    child.wait_bounded();
    assert!(!ns.is_alive());
}

#[test]
fn open_rejects_what_is_not_a_network_namespace() {
    let err = Namespace::open("/proc/self/ns/uts").unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    assert!(err.to_string().contains("not a network namespace"), "{err}");

    let err = Namespace::open("/proc/self/status").unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    assert!(err.to_string().contains("not a namespace file"), "{err}");

    // PID 2^22 + 1 is above the kernel's pid_max limit, so no such process.
    let err = Namespace::open("4194305").unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::NotFound, "{err}");
    assert!(err.to_string().contains("/proc/4194305/ns/net"), "{err}");
}

#[test]
fn taken_interface_name_is_a_clear_error() {
    if !privileged() {
        return;
    }
    let (ns, _tap) = namespace_with_tap(&default_config());
    let err = netns::open_tap(&ns, &default_config()).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
    assert!(err.to_string().contains("eth0 already exists"), "{err}");

    let lo = TapConfig {
        name: "lo".into(),
        ..default_config()
    };
    let err = netns::open_tap(&ns, &lo).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
    assert!(err.to_string().contains("lo already exists"), "{err}");
}

#[test]
fn off_link_gateway_error_names_the_route_step() {
    if !privileged() {
        return;
    }
    let ns = Namespace::create().unwrap();
    let cfg = TapConfig {
        gateway_v4: Some(Ipv4Addr::new(192, 0, 2, 1)),
        ..default_config()
    };
    let err = netns::open_tap(&ns, &cfg).unwrap_err();
    let text = err.to_string();
    assert!(
        text.starts_with("RTM_NEWROUTE default via 192.0.2.1 dev eth0: "),
        "{text}"
    );
    assert_eq!(err.kind(), io::ErrorKind::NetworkUnreachable, "{text}");

    // The failed tap is gone with its descriptor, so the name is free again.
    netns::open_tap(&ns, &default_config()).unwrap();
}

#[test]
fn tap_descriptor_is_nonblocking_and_close_on_exec() {
    if !privileged() {
        return;
    }
    let ns = Namespace::create().unwrap();
    let tap: OwnedFd = netns::open_tap(&ns, &default_config()).unwrap();
    let status = rustix::fs::fcntl_getfl(&tap).unwrap();
    assert!(status.contains(rustix::fs::OFlags::NONBLOCK));
    let fd_flags = rustix::io::fcntl_getfd(&tap).unwrap();
    assert!(fd_flags.contains(rustix::io::FdFlags::CLOEXEC));
}

#[test]
fn empty_command_is_an_error() {
    let Ok(ns) = Namespace::open("/proc/self/ns/net") else {
        common::skip("cannot open /proc/self/ns/net");
        return;
    };
    let err = netns::spawn_in(&ns, &[], None).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
}
