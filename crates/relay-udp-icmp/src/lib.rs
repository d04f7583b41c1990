//! UDP flows on connected host sockets, DNS forwarding, ICMP echo on ping or
//! raw sockets, and ICMP errors read from `IP_RECVERR`.
//!
//! Invariant: `relay-udp-icmp` makes no policy decisions; `nat-core` has
//! already said where each datagram may go.
