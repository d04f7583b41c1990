//! The help text of `slipway --help`.

/// The help text of `slipway --help`.
pub const USAGE: &str = "\
slipway: a user-mode network stack for network namespaces and virtual machines

Usage:
  slipway run [OPTIONS] [--] CMD [ARGS...]
      Run CMD in a new network namespace served by slipway, and exit with
      CMD's status.
  slipway attach [OPTIONS] --netns PATH|PID
      Serve an existing network namespace until it is gone (when given by
      PID) or slipway is stopped (SIGINT, SIGTERM).
  slipway stream [OPTIONS] --socket PATH | --fd N
      Serve one QEMU guest over a UNIX stream socket (QEMU's -netdev
      stream, length-prefixed frames, as with passt) until it disconnects;
      one client at a time, others are refused. Prints the QEMU options to
      use on stdout (not with -q).
  slipway vhost-user [OPTIONS] --socket PATH
      Serve one VMM's virtio-net device as a vhost-user backend on the
      UNIX socket PATH (QEMU's -netdev vhost-user; guest memory must be
      shared and sealed against shrinking, as memory-backend-memfd,share=on
      is) until it disconnects.
      Prints the QEMU options to use on stdout (not with -q).

Options:
  -t, --tcp-ports SPEC    forward inbound TCP ports to the guest (repeatable)
                          SPEC: [ADDR/]FIRST[-LAST][:TOFIRST[-TOLAST]][,...],
                          ~FIRST[-LAST] to exclude, all, or none
  -u, --udp-ports SPEC    forward inbound UDP ports to the guest (repeatable)
      --mtu N             guest MTU, 68 to 65520 (default 65520)
      --map-host-loopback ADDR|none
                          the guest address that reaches the host's loopback:
                          the gateway 10.0.2.2 (default), or none
      --deny CIDR[,CIDR]  never connect to these destinations (repeatable)
      --dns-upstream ADDR[:PORT]
                          where DNS goes (default: the first nameserver of
                          /etc/resolv.conf); IPv6 with a port: [ADDR]:PORT
  -4, --ipv4-only         IPv4 alone: no IPv6 answered, relayed or forwarded
  -6, --ipv6-only         IPv6 alone: no IPv4 answered, relayed or forwarded
      --network CIDR      the guest's IPv4 or IPv6 network (once per family;
                          default 10.0.2.0/24 and fd00:0:0:2::/64)
  -a, --address ADDR      the guest's IPv4 address (its DHCP lease; default
                          .15) or IPv6 address (its DHCPv6 address, default
                          ::15; run, attach: also set on the interface beside
                          the address the kernel makes by SLAAC)
  -g, --gateway ADDR      the gateway's IPv4 or IPv6 address (default .2, ::2)
      --dns-forward ADDR  the IPv4 or IPv6 address the guest sends DNS to
                          (default .3, ::3)
      --pcap FILE         capture the guest-side frames to FILE (pcap)
      --ifname NAME       interface name in the namespace (default eth0)
      --netns PATH|PID    attach: the namespace, as a path (/run/netns/NAME,
                          /proc/PID/ns/net) or a process id
      --socket PATH       stream, vhost-user: listen on PATH (created,
                          removed at exit; a stale socket nobody listens on
                          is replaced)
      --fd N              stream: serve the connected UNIX stream socket N
      --keep-listening    stream: after the client disconnects, wait for the
                          next one instead of exiting
      --no-offload        compute and verify every TCP/UDP checksum instead
                          of offloading them; run, attach: plain tap frames,
                          no segments larger than the MTU either way
      --max-flows N       open flows at most, all protocols (shared as the
                          defaults are: 64:16:1 TCP:UDP:ICMP; at most 82944;
                          default: what the open files limit, raised to its
                          hard limit, leaves after a reserve)
      --stats             print counters to stderr at exit
  -d, --debug             debug logging
      --trace             trace logging
  -q, --quiet             log errors only
  -h, --help              print this help and exit
  -V, --version           print the version and exit

The guest gets 10.0.2.15/24 with gateway 10.0.2.2 and DNS 10.0.2.3, and
an address of fd00:0:0:2::/64 by SLAAC with gateway fd00:0:0:2::2 and DNS
fd00:0:0:2::3. A forward without ADDR listens on both families; a host
peer's connection reaches the guest in its own family, from the peer's own
address (host loopback appears as the gateway).
Exit status: run: CMD's status (128+N if a signal N ended it); 1 when
slipway fails; 2 on a usage error.
";
