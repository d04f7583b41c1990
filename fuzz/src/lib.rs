//! What the fuzz targets share: a reader that turns the fuzzer's bytes into
//! choices ([`Input`]), a [`Backend`] whose frames can only ever reach host
//! loopback ([`loopback_backend`]), the host peers on that loopback
//! ([`HostPeers`]), a private network namespace where the privilege allows
//! one ([`isolate_network`]), checksum repair so that mutated frames get
//! past the checks into the code behind them ([`fix_checksums`]), and the
//! run of `backend_frames` ([`frames`]), whose tests replay its seeds.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Once, OnceLock};
use std::time::{Duration, Instant};

use nat_core::{Cidr, DenyList, HostLoopback, Plan, Rules};
use slipway::{Backend, BackendConfig};

pub mod checksum;
pub mod frames;
pub mod peers;

pub use checksum::fix_checksums;
pub use peers::HostPeers;

/// The host address the guest's gateway maps to, and where every host peer
/// of the targets listens: a loopback address other than 127.0.0.1, so that
/// even outside a private namespace nothing else on the host is likely to
/// answer on it.
pub const HOST: Ipv4Addr = Ipv4Addr::new(127, 77, 0, 1);

/// The port of the TCP listener and the UDP peer on [`HOST`]: guest frames
/// to the gateway's port 4242 reach them.
pub const PEER_PORT: u16 = 4242;

/// The port of the DNS upstream on [`HOST`].
pub const DNS_PORT: u16 = 5353;

/// Flow limits of the fuzzed backend: small, so that inputs reach them.
pub const LIMITS: flow_table::Limits = flow_table::Limits {
    tcp: 32,
    udp: 32,
    icmp: 8,
};

/// The fuzzer's bytes, consumed front to back; once they run out every read
/// yields zeros (or `None` from the `try_` forms), so a short input is
/// still a whole, deterministic run.
#[derive(Debug)]
pub struct Input<'a>(&'a [u8]);

impl<'a> Input<'a> {
    /// A reader over `data`.
    #[must_use]
    pub fn new(data: &'a [u8]) -> Self {
        Self(data)
    }

    /// Whether every byte has been read.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The next byte, if any.
    pub fn try_u8(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }

    /// The next byte, 0 past the end.
    pub fn u8(&mut self) -> u8 {
        self.try_u8().unwrap_or(0)
    }

    /// The next two bytes, little-endian.
    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }

    /// The next four bytes, little-endian.
    pub fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }

    /// The next eight bytes, little-endian.
    pub fn u64(&mut self) -> u64 {
        u64::from(self.u32()) | (u64::from(self.u32()) << 32)
    }

    /// Up to `n` next bytes (fewer at the end).
    pub fn bytes(&mut self, n: usize) -> &'a [u8] {
        let (head, rest) = self.0.split_at(n.min(self.0.len()));
        self.0 = rest;
        head
    }

    /// A length-prefixed chunk: a `u16` length, taken modulo `max + 1`,
    /// then that many bytes.
    pub fn chunk(&mut self, max: usize) -> &'a [u8] {
        let len = usize::from(self.u16()) % (max + 1);
        self.bytes(len)
    }
}

/// A virtual clock that the input advances. It starts far enough in the
/// past of the real monotonic clock that it never overtakes it, so a
/// backend's `handle_host_events(now)` (an epoll wait until `now`) never
/// blocks.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    now: Instant,
    /// How much further it may go.
    left: Duration,
}

/// How far a [`Clock`] may advance over one input.
const CLOCK_SPAN: Duration = Duration::from_secs(1_000_000);

impl Clock {
    /// A clock [`CLOCK_SPAN`] before the real one (or at it, on a machine
    /// whose monotonic clock cannot go that far back, which then never
    /// advances).
    #[must_use]
    pub fn new() -> Self {
        let real = Instant::now();
        match real.checked_sub(CLOCK_SPAN) {
            Some(now) => Self {
                now,
                left: CLOCK_SPAN,
            },
            None => Self {
                now: real,
                left: Duration::ZERO,
            },
        }
    }

    /// The current virtual time.
    #[must_use]
    pub fn now(&self) -> Instant {
        self.now
    }

    /// Moves the clock forward by `by`, at most to the end of its span.
    pub fn advance(&mut self, by: Duration) -> Instant {
        let by = by.min(self.left);
        self.left -= by;
        self.now += by;
        self.now
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

/// Moves this process into a network namespace of its own, with `lo` up, if
/// it has the privilege (root); otherwise it stays where it is and says so
/// once on stderr. Either way the backend reaches only loopback (see
/// [`loopback_config`]); the namespace keeps that loopback to the fuzzer
/// alone.
pub fn isolate_network() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| match enter_private_netns() {
        Ok(()) => eprintln!("slipway-fuzz: in a private network namespace"),
        Err(error) => eprintln!(
            "slipway-fuzz: no private network namespace ({error}); \
             the backend still reaches only {HOST} and ::1"
        ),
    });
}

fn enter_private_netns() -> std::io::Result<()> {
    // SAFETY: unshare takes no pointers; CLONE_NEWNET moves only the calling
    // thread, which is the one that runs every input and opens every socket.
    if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a plain socket(2) call; the descriptor is closed below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: an all-zero ifreq is valid; the name is NUL-terminated.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (slot, &b) in ifr.ifr_name.iter_mut().zip(b"lo\0") {
        *slot = b as libc::c_char;
    }
    ifr.ifr_ifru.ifru_flags = (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
    // SAFETY: SIOCSIFFLAGS reads the ifreq we own for the duration of the call.
    let result = unsafe { libc::ioctl(fd, libc::SIOCSIFFLAGS, &ifr) };
    let error = std::io::Error::last_os_error();
    // SAFETY: `fd` is ours and closed once.
    unsafe { libc::close(fd) };
    if result != 0 {
        return Err(error);
    }
    Ok(())
}

/// Every prefix of the address space of `bits` bits (32 or 128) outside
/// `allowed` (given as `(first address, prefix length)`), as few prefixes
/// as the binary split gives.
fn complement(bits: u8, allowed: &[(u128, u8)]) -> Vec<(u128, u8)> {
    fn last(first: u128, len: u8, bits: u8) -> u128 {
        let host_bits = u32::from(bits - len);
        if host_bits >= 128 {
            u128::MAX
        } else {
            first | ((1u128 << host_bits) - 1)
        }
    }
    let mut out = Vec::new();
    let mut todo = vec![(0u128, 0u8)];
    while let Some((first, len)) = todo.pop() {
        let end = last(first, len, bits);
        let overlaps = allowed.iter().any(|&(a, alen)| {
            let a_end = last(a, alen, bits);
            a <= end && first <= a_end
        });
        let inside = allowed.iter().any(|&(a, alen)| {
            let a_end = last(a, alen, bits);
            a <= first && end <= a_end
        });
        if inside {
            continue;
        }
        if !overlaps {
            out.push((first, len));
            continue;
        }
        let half = u32::from(bits - len - 1);
        todo.push((first, len + 1));
        todo.push((first | (1u128 << half), len + 1));
    }
    out
}

/// The rules of the fuzzed backend: the gateway maps to [`HOST`] (and ::1),
/// DNS goes to [`HOST`]`:`[`DNS_PORT`], no port is forwarded, and the deny
/// list covers every address except the plan's own networks, [`HOST`] and
/// ::1, and the IPv6 link-local prefix (the gateway's link-local address).
/// Since nat-core checks a deny list against the address the guest names
/// and against the host address it maps to, no verdict can connect anywhere
/// but [`HOST`] or ::1.
#[must_use]
pub fn loopback_config() -> BackendConfig {
    let plan = Plan::default();
    let mut allowed_v4 = vec![(u128::from(HOST.to_bits()), 32u8)];
    if let Some(v4) = plan.ipv4() {
        let network = v4.network();
        allowed_v4.push((
            u128::from(network.network().to_bits()),
            network.prefix_len(),
        ));
    }
    let mut allowed_v6 = vec![
        (Ipv6Addr::LOCALHOST.to_bits(), 128u8),
        (Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0).to_bits(), 10),
    ];
    if let Some(v6) = plan.ipv6() {
        let network = v6.network();
        allowed_v6.push((network.network().to_bits(), network.prefix_len()));
    }
    let mut deny = Vec::new();
    for (first, len) in complement(32, &allowed_v4) {
        let addr = Ipv4Addr::from_bits(u32::try_from(first).unwrap_or(u32::MAX));
        deny.extend(Cidr::new(IpAddr::V4(addr), len).ok());
    }
    for (first, len) in complement(128, &allowed_v6) {
        deny.extend(Cidr::new(IpAddr::V6(Ipv6Addr::from_bits(first)), len).ok());
    }
    let rules = Rules {
        host_loopback: HostLoopback {
            v4: Some(HOST),
            v6: Some(Ipv6Addr::LOCALHOST),
        },
        deny: DenyList::new(deny),
        dns_upstream: Some(SocketAddr::new(IpAddr::V4(HOST), DNS_PORT)),
        ..Rules::default()
    };
    let mut config = BackendConfig::new(plan, rules);
    config.limits = LIMITS;
    config.host_resolver = None;
    config
}

/// Checks that the rules of [`loopback_config`] deny a sample of
/// outside destinations and map the gateway to [`HOST`]; panics otherwise,
/// before any frame is handed in.
fn check_loopback_only(config: &BackendConfig) {
    {
        let nat = match nat_core::Nat::new(config.plan, config.rules.clone()) {
            Ok(nat) => nat,
            Err(error) => panic!("the fuzz rules do not fit the plan: {error}"),
        };
        let guest = IpAddr::V4(Ipv4Addr::new(10, 0, 2, 15));
        for outside in [
            Ipv4Addr::new(1, 1, 1, 1),
            Ipv4Addr::new(8, 8, 8, 8),
            Ipv4Addr::new(192, 0, 2, 1),
            Ipv4Addr::new(10, 0, 3, 1),
            Ipv4Addr::new(127, 0, 0, 1),
            Ipv4Addr::new(224, 0, 0, 1),
        ] {
            for protocol in [
                nat_core::Protocol::Tcp,
                nat_core::Protocol::Udp,
                nat_core::Protocol::Icmp,
            ] {
                let verdict = nat.translate_outbound(
                    protocol,
                    guest,
                    SocketAddr::new(IpAddr::V4(outside), 80),
                );
                assert!(
                    matches!(verdict, nat_core::Verdict::Deny(_)),
                    "{protocol} to {outside} is not denied: {verdict:?}"
                );
            }
        }
        let gateway = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 2, 2)), PEER_PORT);
        let verdict = nat.translate_outbound(nat_core::Protocol::Tcp, guest, gateway);
        assert_eq!(
            verdict,
            nat_core::Verdict::Connect(SocketAddr::new(IpAddr::V4(HOST), PEER_PORT))
        );
    }
}

/// A backend built from [`loopback_config`] at `now`, after
/// [`isolate_network`] and the check that its rules reach loopback only.
///
/// # Panics
/// If the backend cannot start (no epoll, out of descriptors): a fuzz run
/// cannot go on without one.
#[must_use]
pub fn loopback_backend(now: Instant) -> Backend {
    static CONFIG: OnceLock<BackendConfig> = OnceLock::new();
    isolate_network();
    let config = CONFIG.get_or_init(|| {
        let config = loopback_config();
        check_loopback_only(&config);
        config
    });
    match Backend::new(config.clone(), now) {
        Ok(backend) => backend,
        Err(error) => panic!("the fuzzed backend cannot start: {error}"),
    }
}

/// Panics if the backend holds more flows than [`LIMITS`] allow.
pub fn assert_within_limits(backend: &Backend) {
    for protocol in [
        flow_table::Protocol::Tcp,
        flow_table::Protocol::Udp,
        flow_table::Protocol::Icmp,
    ] {
        let open = backend.open_flows(protocol);
        assert!(
            open <= LIMITS.get(protocol),
            "{open} {protocol:?} flows open, limit {}",
            LIMITS.get(protocol)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn complement_leaves_out_exactly_the_allowed_prefixes() {
        let allowed = [(0x0a00_0200u128, 24u8), (0x7f4d_0001, 32)];
        let denied = complement(32, &allowed);
        let covered = |addr: u32| {
            denied.iter().any(|&(first, len)| {
                let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
                (addr & mask) == u32::try_from(first).unwrap_or(0)
            })
        };
        for addr in [0x0a00_0201u32, 0x0a00_02ff, 0x7f4d_0001] {
            assert!(!covered(addr), "{addr:#x} denied");
        }
        for addr in [0u32, 0x0a00_0301, 0x7f00_0001, 0x7f4d_0002, u32::MAX] {
            assert!(covered(addr), "{addr:#x} allowed");
        }
    }
}
