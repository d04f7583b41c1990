//! `bench-harness` sends traffic only to loopback or to addresses inside
//! network namespaces it creates itself. The stacks and the host-side
//! servers run in a namespace of the harness's own whose only way out leads
//! into an empty namespace (see [`paths`]).
//!
//! Benchmarks of slipway: the wall-clock harness that runs the same
//! workloads over slipway and its peers side by side (and, in `benches/`,
//! microbenches of the hot paths).
//!
//! # The harness
//!
//! `bench-harness [--paths P,..] [--workloads W,..] [--reps N]
//! [--duration SECS] [--json FILE] [--markdown FILE] [--svg FILE]
//! [--slipway BIN]` (also `cargo xtask bench`, which builds first) runs, in
//! each of N repetitions, every path in turn (interleaved), each started
//! afresh, through every workload:
//!
//! | workload | what | metrics |
//! |---|---|---|
//! | `idle` | the stack with no flows | `wakeups_per_s`, `rss_mib` |
//! | `tcp_g2h`, `tcp_h2g` | iperf3 guest→host, host→guest (`-R`) | `gbit_s`, `cpu_s_per_gbit` |
//! | `tcp_rr`, `tcp_crr`, `udp_rr` | 1-byte request-response (CRR: connect each time) | `p50_us`, `p99_us`, `tps` (CRR also `errors`: refused or reset transactions) |
//! | `dns` | queries to the DNS address, 16 in flight | `qps` |
//! | `icmp` | echo to the gateway, back to back | `p50_us`, `p99_us` |
//! | `fwd_connect` | host connects through the inbound forward, 1-byte echo from the guest | `p50_us`, `p99_us`, `tps`, `errors` |
//! | `idle_10k` | the stack, started afresh for it, while the guest holds 10k idle TCP connections | `wakeups_per_s`, `rss_mib` |
//! | `tcp_g2h6`, `tcp_h2g6`, `tcp_rr6`, `tcp_crr6` | the same as without the `6`, over IPv6, each run right after its IPv4 twin in the same session | as their twins |
//!
//! Over IPv6 the host-side servers bind to `::1` and the guest reaches them
//! at `fd00:0:0:2::2`, the gateway slipway and pasta (given that plan) map
//! to host loopback; on `veth` both ends carry an address of
//! `fd00:0:0:2::/64` and the servers bind to the host end's; on `loopback`
//! it is `::1` itself. Paths that carry no IPv6 here (slirp4netns, the VM
//! paths) report the IPv6 workloads absent with the reason.
//!
//! Paths: `slipway-65520`, `slipway-1500` (`--slipway BIN` selects the
//! binary; default `target/release/slipway`), `pasta` (the one in PATH,
//! as Debian packages it), `pasta-current` (a pasta built from current
//! sources, given by `--pasta-current BIN`), `slirp4netns-1500`,
//! `slirp4netns-65520`, `veth` (the kernel, upper bound) and `loopback`
//! (client and server on 127.0.0.1). A peer not installed is reported
//! absent, not failed. Stack metrics (CPU, wakeups, memory) exist only for
//! paths with a stack process.
//!
//! VM paths ([`vm`]): `qemu-slipway` (`slipway stream`) and `qemu-passt`
//! (passt), both over QEMU's `-netdev stream`, `qemu-slipway-vhost-user`
//! (`slipway vhost-user` over `-netdev vhost-user`, the guest's RAM a
//! shared memfd) and `qemu-libslirp` (`-netdev user`) boot the same Linux
//! guest (`cargo xtask guest-image`,
//! built on first use) with this binary appended to its initramfs, and run
//! the same workloads inside it through a command agent ([`agent`])
//! reached over the stack's own inbound forward. The stack measured is the
//! slipway or passt process (over vhost-user it also serves the
//! virtqueues, which QEMU serves for the others); libslirp lives inside QEMU, so its `idle`
//! rows are absent and its throughput has no CPU figure; passt answers
//! no echo request to the gateway (it maps only TCP and UDP there), so
//! `qemu-passt`'s `icmp` is absent. Under TCG (no
//! usable /dev/kvm; `SLIPWAY_VM_ACCEL=kvm|tcg|auto` overrides) the timed
//! workloads run for at most 2 s and `idle_10k` is absent. Select them
//! alone with
//! `--paths qemu-slipway,qemu-slipway-vhost-user,qemu-passt,qemu-libslirp`.
//!
//! # JSON schema (version 1)
//!
//! ```json
//! {
//!   "schema": 1,
//!   "machine": { "kernel": "6.1.0", "cpu": "...", "cpus": 2, "unix_time": 1700000000,
//!                "slipway": "target/release/slipway", "reps": 3, "duration_s": 5.0,
//!                "idle_flows": 10000, "paths": ["..."], "workloads": ["..."],
//!                "versions": { "pasta": "...", "pasta-current": "...", "slirp4netns": "...",
//!                              "iperf3": "..." } },
//!   "results": [
//!     { "path": "slipway-65520", "workload": "tcp_rr", "metric": "p50_us", "unit": "us",
//!       "better": "lower", "values": [30.1, 29.8, 31.0], "median": 30.1, "min": 29.8,
//!       "max": 31.0, "vs_pasta": 0.64, "vs_veth": 1.43, "v6_vs_v4": null }
//!   ],
//!   "absent": [ { "path": "pasta", "why": "pasta not installed" },
//!               { "path": "veth", "workload": "idle", "why": "no stack process to measure" } ],
//!   "failures": [ { "path": "slirp4netns-1500", "workload": "icmp", "rep": 2, "error": "..." } ]
//! }
//! ```
//!
//! `values` holds one value per successful repetition; `median`, `min` and
//! `max` summarize them; `vs_pasta` and `vs_veth` are this median divided by
//! the same workload and metric's median on `pasta` and `veth` (`null` when
//! that is missing). `v6_vs_v4`, on an IPv6 row (`tcp_rr6`), is its
//! median divided by its IPv4 twin's (`tcp_rr`) on the same path and
//! metric (`null` on IPv4 rows or when the twin is missing). `better` is
//! `"higher"` or `"lower"`. An `absent`
//! entry without `workload` is a whole path; with one, that workload on
//! that path (`"path": "*"` for every path, as when iperf3 is missing).
//! `failures` lists what was attempted and failed (`workload` is `null`
//! when the path itself did not start). Fields may be
//! added; a change to these is a new `schema` number.

#![forbid(unsafe_code)]

// The README's example runs as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctest;

pub mod agent;
pub mod cli;
pub mod dns;
pub mod paths;
pub mod report;
pub mod runner;
pub mod stats;
pub mod svg;
pub mod sys;
pub mod tools;
pub mod vm;
pub mod workloads;
