//! The tap device inside the namespace: `TUNSETIFF`, then its link,
//! addresses and routes over rtnetlink.

use std::io;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, OwnedFd};

use rustix::fs::{Mode, OFlags};

use super::netlink::{Link, Rtnl};
use super::{Namespace, TapConfig, TapIpv6, TapOffload, VNET_HDR_LEN, ipv6, step_error};

/// `IFNAMSIZ`: interface names are at most 15 bytes and a NUL.
const IFNAMSIZ: usize = 16;

/// Inside `ns`: creates the tap device `cfg.name` (`TUNSETIFF` with
/// `IFF_TAP | IFF_NO_PI` on `/dev/net/tun`, and with `cfg.offload` also
/// `IFF_VNET_HDR`, `TUNSETVNETHDRSZ` and `TUNSETOFFLOAD`), turns IPv6 on or
/// off on it as `cfg.ipv6` says (sysctls), sets its MAC and MTU, brings `lo`
/// and the tap up, adds the addresses and then the default routes, all over
/// rtnetlink. Returns the tap's descriptor, non-blocking
/// and close-on-exec: each `read()` returns one Ethernet frame and each
/// `write()` sends one, each behind a `virtio_net_hdr` with an offload.
///
/// The tap is not persistent: it disappears when the descriptor is closed,
/// also when a later step fails. The descriptor also holds a reference to
/// the namespace, which lives at least as long as it.
///
/// # Errors
///
/// An invalid configuration ([`io::ErrorKind::InvalidInput`]); an interface
/// of that name already in the namespace ([`io::ErrorKind::AlreadyExists`]);
/// or the failed step, named in the message (for example
/// `RTM_NEWROUTE default via 10.0.2.2 dev eth0: Network is unreachable`).
/// A failure of the IPv6 sysctls is only logged: IPv4 works without them.
pub fn open_tap(ns: &Namespace, cfg: &TapConfig) -> io::Result<OwnedFd> {
    validate(cfg)?;
    ns.run_in(|| {
        let mut rtnl = Rtnl::open()?;
        if rtnl.link_index(&cfg.name)?.is_some() {
            return Err(name_taken(&cfg.name));
        }
        let tap = create_tap(&cfg.name, cfg.offload)?;
        let index = rtnl.link_index(&cfg.name)?.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("tap {} vanished right after TUNSETIFF", cfg.name),
            )
        })?;
        let link = Link {
            index,
            name: &cfg.name,
        };
        set_ipv6(&cfg.name, cfg.ipv6);
        configure(&mut rtnl, link, cfg)?;
        Ok(tap)
    })
}

/// Turns IPv6 on the tap on or off, before the link goes up; a kernel or
/// namespace that refuses leaves IPv4 working, so this only warns.
fn set_ipv6(name: &str, mode: TapIpv6) {
    match (ipv6::write_sysctls(name, mode), mode) {
        (Ok(()), _) => {}
        // No IPv6 in this kernel, or none on the link: off already.
        (Err(error), TapIpv6::Disabled) if error.kind() == io::ErrorKind::NotFound => {}
        (Err(error), TapIpv6::Disabled) => {
            tracing::warn!(%error, "cannot turn IPv6 off on the tap");
        }
        (Err(error), TapIpv6::Autoconf) => {
            tracing::warn!(%error, "cannot set up IPv6 on the tap; the namespace may not have it");
        }
    }
}

/// Sets up the link, then `lo`, then addresses, then routes: a gateway is
/// reachable only once the link is up and its address is there.
fn configure(rtnl: &mut Rtnl, link: Link<'_>, cfg: &TapConfig) -> io::Result<()> {
    rtnl.set_link_address_mtu(link, cfg.mac, cfg.mtu)?;
    let lo_index = rtnl.link_index("lo")?.ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            "no loopback interface in the namespace",
        )
    })?;
    rtnl.set_link_up(Link {
        index: lo_index,
        name: "lo",
    })?;
    rtnl.set_link_up(link)?;
    if let Some((addr, prefix_len)) = cfg.addr_v4 {
        rtnl.add_address(link, IpAddr::V4(addr), prefix_len)?;
    }
    if let Some((addr, prefix_len)) = cfg.addr_v6 {
        rtnl.add_address(link, IpAddr::V6(addr), prefix_len)?;
    }
    if let Some(gateway) = cfg.gateway_v4 {
        rtnl.add_default_route(link, IpAddr::V4(gateway))?;
    }
    if let Some(gateway) = cfg.gateway_v6 {
        rtnl.add_default_route(link, IpAddr::V6(gateway))?;
    }
    Ok(())
}

/// Checks what the kernel would otherwise reject with a bare `EINVAL`.
fn validate(cfg: &TapConfig) -> io::Result<()> {
    let invalid = |what: String| Err(io::Error::new(io::ErrorKind::InvalidInput, what));
    let name = &cfg.name;
    if name.is_empty() || name.len() >= IFNAMSIZ {
        return invalid(format!(
            "interface name {name:?}: expected 1 to {} bytes",
            IFNAMSIZ - 1
        ));
    }
    if name == "."
        || name == ".."
        || name
            .chars()
            .any(|c| c == '/' || c == ':' || c == '%' || c.is_whitespace() || c.is_control())
    {
        return invalid(format!(
            "interface name {name:?}: must not be . or .. nor contain '/', ':', '%' or whitespace"
        ));
    }
    if let Some((addr, prefix_len @ 33..)) = cfg.addr_v4 {
        return invalid(format!(
            "IPv4 address {addr}/{prefix_len}: prefix longer than 32"
        ));
    }
    if cfg.ipv6 == TapIpv6::Disabled && (cfg.addr_v6.is_some() || cfg.gateway_v6.is_some()) {
        return invalid("an IPv6 address or gateway on a tap with IPv6 disabled".into());
    }
    if let Some((addr, prefix_len @ 129..)) = cfg.addr_v6 {
        return invalid(format!(
            "IPv6 address {addr}/{prefix_len}: prefix longer than 128"
        ));
    }
    Ok(())
}

/// The error for an interface name already used in the namespace.
fn name_taken(name: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::AlreadyExists,
        format!("an interface named {name} already exists in the network namespace"),
    )
}

/// Opens `/dev/net/tun` and attaches it to a new tap device `name` in the
/// calling thread's network namespace, with `offload`.
fn create_tap(name: &str, offload: TapOffload) -> io::Result<OwnedFd> {
    let tun = rustix::fs::open(
        "/dev/net/tun",
        OFlags::RDWR | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|err| step_error("opening /dev/net/tun", err.into()))?;

    // struct ifreq: the name, then ifr_flags (a short) in the union.
    let mut ifreq = [0u8; size_of::<libc::ifreq>()];
    ifreq[..name.len()].copy_from_slice(name.as_bytes());
    // IFF_TUN_EXCL: never attach to an existing (persistent) tap of that name.
    let mut flags = libc::IFF_TAP | libc::IFF_NO_PI | libc::IFF_TUN_EXCL;
    if offload.has_vnet_hdr() {
        flags |= libc::IFF_VNET_HDR;
    }
    // ifr_flags is a short; IFF_TUN_EXCL is its top bit.
    let flags = u16::try_from(flags).unwrap_or(u16::MAX);
    ifreq[IFNAMSIZ..IFNAMSIZ + 2].copy_from_slice(&flags.to_ne_bytes());
    // SAFETY: `ifreq` is a buffer of `sizeof(struct ifreq)` bytes that lives
    // across the call; the kernel reads it and writes the final name back
    // into it. `tun` is an open descriptor of /dev/net/tun.
    let rc = unsafe { libc::ioctl(tun.as_raw_fd(), libc::TUNSETIFF, ifreq.as_mut_ptr()) };
    if rc < 0 {
        let err = io::Error::last_os_error();
        return Err(match err.raw_os_error() {
            Some(libc::EBUSY | libc::EEXIST) => name_taken(name),
            _ => step_error(format_args!("TUNSETIFF {name} (IFF_TAP|IFF_NO_PI)"), err),
        });
    }
    if offload.has_vnet_hdr() {
        set_offload(&tun, offload)?;
    }
    Ok(tun)
}

/// Sets the header size and the offloads of a tap opened with
/// `IFF_VNET_HDR`.
fn set_offload(tun: &OwnedFd, offload: TapOffload) -> io::Result<()> {
    let hdr_len = libc::c_int::try_from(VNET_HDR_LEN).unwrap_or(libc::c_int::MAX);
    // SAFETY: TUNSETVNETHDRSZ reads one int through the pointer, which
    // points at `hdr_len`, alive across the call; `tun` is an attached tap.
    let rc = unsafe { libc::ioctl(tun.as_raw_fd(), libc::TUNSETVNETHDRSZ, &raw const hdr_len) };
    if rc < 0 {
        let err = io::Error::last_os_error();
        return Err(step_error(
            format_args!("TUNSETVNETHDRSZ {VNET_HDR_LEN}"),
            err,
        ));
    }
    let features = match offload {
        TapOffload::None => 0,
        TapOffload::Checksum => libc::TUN_F_CSUM,
        TapOffload::ChecksumTso => libc::TUN_F_CSUM | libc::TUN_F_TSO4 | libc::TUN_F_TSO6,
    };
    // SAFETY: TUNSETOFFLOAD takes its argument by value (an unsigned long
    // of TUN_F_* bits) and reads no memory.
    let rc = unsafe {
        libc::ioctl(
            tun.as_raw_fd(),
            libc::TUNSETOFFLOAD,
            libc::c_ulong::from(features),
        )
    };
    if rc < 0 {
        let err = io::Error::last_os_error();
        return Err(step_error(format_args!("TUNSETOFFLOAD {features:#x}"), err));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::expect_used)]

    use std::net::Ipv4Addr;

    use super::*;

    fn config(name: &str) -> TapConfig {
        TapConfig {
            name: name.into(),
            mac: [0x52, 0x54, 0, 0x12, 0x34, 0x56],
            mtu: 65520,
            addr_v4: Some((Ipv4Addr::new(10, 0, 2, 15), 24)),
            gateway_v4: Some(Ipv4Addr::new(10, 0, 2, 2)),
            addr_v6: None,
            gateway_v6: None,
            ipv6: TapIpv6::Autoconf,
            offload: TapOffload::Checksum,
        }
    }

    #[test]
    fn valid_config_passes() {
        assert!(validate(&config("eth0")).is_ok());
        assert!(validate(&config("fifteen_bytes_x")).is_ok());
    }

    #[test]
    fn bad_interface_names_are_rejected() {
        for name in [
            "",
            "sixteen_bytes_xx",
            ".",
            "..",
            "a/b",
            "a:b",
            "tap%d",
            "a b",
        ] {
            let err = validate(&config(name)).expect_err(name);
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{name}");
        }
    }

    #[test]
    fn overlong_prefixes_are_rejected() {
        let mut cfg = config("eth0");
        cfg.addr_v4 = Some((Ipv4Addr::new(10, 0, 2, 15), 33));
        assert!(validate(&cfg).is_err());
        let mut cfg = config("eth0");
        cfg.addr_v6 = Some((std::net::Ipv6Addr::LOCALHOST, 129));
        assert!(validate(&cfg).is_err());
    }

    #[test]
    fn static_ipv6_on_a_tap_without_ipv6_is_rejected() {
        let mut cfg = config("eth0");
        cfg.ipv6 = TapIpv6::Disabled;
        assert!(validate(&cfg).is_ok());
        cfg.gateway_v6 = Some(std::net::Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1));
        let err = validate(&cfg).expect_err("a gateway without IPv6");
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }
}
