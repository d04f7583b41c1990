//! The option table: every option's names, whether it takes a value, and
//! the form of that value for messages.

use super::vmm;

/// An option of the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Opt {
    Tcp,
    Udp,
    Mtu,
    MapHostLoopback,
    Deny,
    DnsUpstream,
    Ipv4Only,
    Ipv6Only,
    Network,
    Address,
    Gateway,
    DnsForward,
    Pcap,
    Ifname,
    Netns,
    Socket,
    Fd,
    KeepListening,
    NoOffload,
    MaxFlows,
    Stats,
    Debug,
    Trace,
    Quiet,
    Help,
    Version,
    Kernel,
    Initrd,
    Cmdline,
    Mem,
    Console,
    DeviceOnCmdline,
}

/// Each option's short name, long name, and whether it takes a value.
pub(super) const OPTIONS: &[(Option<char>, &str, Opt, bool)] = &[
    (Some('t'), "tcp-ports", Opt::Tcp, true),
    (Some('u'), "udp-ports", Opt::Udp, true),
    (None, "mtu", Opt::Mtu, true),
    (None, "map-host-loopback", Opt::MapHostLoopback, true),
    (None, "deny", Opt::Deny, true),
    (None, "dns-upstream", Opt::DnsUpstream, true),
    (Some('4'), "ipv4-only", Opt::Ipv4Only, false),
    (Some('6'), "ipv6-only", Opt::Ipv6Only, false),
    (None, "network", Opt::Network, true),
    (Some('a'), "address", Opt::Address, true),
    (Some('g'), "gateway", Opt::Gateway, true),
    (None, "dns-forward", Opt::DnsForward, true),
    (None, "pcap", Opt::Pcap, true),
    (None, "ifname", Opt::Ifname, true),
    (None, "netns", Opt::Netns, true),
    (None, "socket", Opt::Socket, true),
    (None, "fd", Opt::Fd, true),
    (None, "keep-listening", Opt::KeepListening, false),
    (None, "no-offload", Opt::NoOffload, false),
    (None, "max-flows", Opt::MaxFlows, true),
    (None, "stats", Opt::Stats, false),
    (Some('d'), "debug", Opt::Debug, false),
    (None, "trace", Opt::Trace, false),
    (Some('q'), "quiet", Opt::Quiet, false),
    (Some('h'), "help", Opt::Help, false),
    (Some('V'), "version", Opt::Version, false),
    (None, "kernel", Opt::Kernel, true),
    (None, "initrd", Opt::Initrd, true),
    (None, "cmdline", Opt::Cmdline, true),
    (None, "mem", Opt::Mem, true),
    (None, "console", Opt::Console, true),
    (None, "device-on-cmdline", Opt::DeviceOnCmdline, false),
];

/// The form an option's value takes, for messages.
pub(super) fn expected_form(opt: Opt) -> &'static str {
    match opt {
        Opt::Tcp | Opt::Udp => {
            "a port spec [ADDR/]FIRST[-LAST][:TOFIRST[-TOLAST]][,...], ~FIRST[-LAST], all or none"
        }
        Opt::Mtu => "a number from 68 to 65520",
        Opt::MapHostLoopback => "the gateway address 10.0.2.2 (or fd00:0:0:2::2), or none",
        Opt::Deny => "CIDR[,CIDR...], e.g. 192.168.0.0/16",
        Opt::DnsUpstream => "ADDR or ADDR:PORT, with an IPv6 address and a port as [ADDR]:PORT",
        Opt::Network => "a CIDR of IPv4 or IPv6, e.g. 10.0.2.0/24 or fd00:0:0:2::/64",
        Opt::Address | Opt::Gateway | Opt::DnsForward => "an IPv4 or IPv6 address",
        Opt::Pcap => "a file name",
        Opt::Ifname => "an interface name of 1 to 15 bytes without '/', ':' or whitespace",
        Opt::Netns => "a namespace path such as /run/netns/NAME, or a process id",
        Opt::Socket => "a socket path",
        Opt::Fd => "a descriptor number from 0 to 2147483647",
        Opt::MaxFlows => "a number of flows from 0 to 82944",
        Opt::Kernel | Opt::Initrd | Opt::Console => "a file name",
        Opt::Cmdline => "kernel parameters",
        Opt::Mem => vmm::MEM_FORM,
        Opt::KeepListening
        | Opt::Ipv4Only
        | Opt::Ipv6Only
        | Opt::NoOffload
        | Opt::Stats
        | Opt::Debug
        | Opt::Trace
        | Opt::Quiet
        | Opt::Help
        | Opt::Version
        | Opt::DeviceOnCmdline => "nothing",
    }
}
