//! DHCPv6: the exchanges a guest client makes, and the replies as it sees
//! them.

use std::net::Ipv6Addr;
use std::time::Instant;

use frontdesk::{
    ALL_DHCP_RELAY_AGENTS_AND_SERVERS, Dhcpv6Config, Dhcpv6Mode, DropReason, FrontDesk, Outcome,
};
use proptest::prelude::*;
use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    EthernetFrame, EthernetProtocol, IpAddress, IpProtocol, Ipv6Packet, Ipv6Repr, UdpPacket,
    UdpRepr,
};

use crate::v6frames::{DNS6, GUEST_LL, GUEST6, ROUTER_LL, ipv6_udp};
use crate::{desk, gateway_mac, guest_mac};

const SOLICIT: u8 = 1;
const ADVERTISE: u8 = 2;
const REQUEST: u8 = 3;
const CONFIRM: u8 = 4;
const RENEW: u8 = 5;
const REBIND: u8 = 6;
const REPLY: u8 = 7;
const RELEASE: u8 = 8;
const DECLINE: u8 = 9;
const INFORMATION_REQUEST: u8 = 11;

const OPT_CLIENTID: u16 = 1;
const OPT_SERVERID: u16 = 2;
const OPT_IA_NA: u16 = 3;
const OPT_IAADDR: u16 = 5;
const OPT_ELAPSED_TIME: u16 = 8;
const OPT_STATUS_CODE: u16 = 13;
const OPT_RAPID_COMMIT: u16 = 14;
const OPT_DNS_SERVERS: u16 = 23;
const OPT_DOMAIN_LIST: u16 = 24;

const SUCCESS: u16 = 0;
const NO_ADDRS_AVAIL: u16 = 2;
const NO_BINDING: u16 = 3;
const NOT_ON_LINK: u16 = 4;
const USE_MULTICAST: u16 = 5;

const IAID: u32 = 0x0102_0304;
const XID: [u8; 3] = [0xab, 0xcd, 0xef];

/// The client's DUID: a DUID-LL of the guest's MAC.
fn client_duid() -> Vec<u8> {
    let mut duid = vec![0, 3, 0, 1];
    duid.extend_from_slice(&guest_mac().0);
    duid
}

/// The server's DUID as the guest sees it: a DUID-LL of slipway's MAC.
fn server_duid() -> Vec<u8> {
    let mut duid = vec![0, 3, 0, 1];
    duid.extend_from_slice(&gateway_mac().0);
    duid
}

fn option(code: u16, data: &[u8]) -> Vec<u8> {
    let mut bytes = code.to_be_bytes().to_vec();
    bytes.extend_from_slice(&u16::try_from(data.len()).unwrap().to_be_bytes());
    bytes.extend_from_slice(data);
    bytes
}

fn ia_na(iaid: u32, addrs: &[Ipv6Addr]) -> Vec<u8> {
    let mut data = iaid.to_be_bytes().to_vec();
    data.extend_from_slice(&[0; 8]);
    for addr in addrs {
        let mut inner = addr.octets().to_vec();
        inner.extend_from_slice(&[0; 8]);
        data.extend(option(OPT_IAADDR, &inner));
    }
    option(OPT_IA_NA, &data)
}

/// What a DHCPv6 client puts in a message.
#[derive(Clone)]
struct Client {
    kind: u8,
    client_id: Option<Vec<u8>>,
    server_id: Option<Vec<u8>>,
    ia_na: Vec<(u32, Vec<Ipv6Addr>)>,
    rapid_commit: bool,
    dst: Ipv6Addr,
}

impl Client {
    fn new(kind: u8) -> Self {
        let with_server = matches!(kind, REQUEST | RENEW | RELEASE | DECLINE);
        let with_ia = kind != INFORMATION_REQUEST;
        let addrs = if matches!(kind, SOLICIT | REQUEST) {
            vec![]
        } else {
            vec![GUEST6]
        };
        Self {
            kind,
            client_id: Some(client_duid()),
            server_id: with_server.then(server_duid),
            ia_na: if with_ia { vec![(IAID, addrs)] } else { vec![] },
            rapid_commit: false,
            dst: ALL_DHCP_RELAY_AGENTS_AND_SERVERS,
        }
    }

    fn payload(&self) -> Vec<u8> {
        let mut bytes = vec![self.kind, XID[0], XID[1], XID[2]];
        if let Some(id) = &self.client_id {
            bytes.extend(option(OPT_CLIENTID, id));
        }
        if let Some(id) = &self.server_id {
            bytes.extend(option(OPT_SERVERID, id));
        }
        bytes.extend(option(OPT_ELAPSED_TIME, &[0, 0]));
        for (iaid, addrs) in &self.ia_na {
            bytes.extend(ia_na(*iaid, addrs));
        }
        if self.rapid_commit {
            bytes.extend(option(OPT_RAPID_COMMIT, &[]));
        }
        bytes
    }

    fn frame(&self) -> Vec<u8> {
        client_frame(self.dst, &self.payload())
    }
}

/// A Solicit with one IA_NA, to ff02::1:2.
pub(crate) fn guest_dhcpv6_solicit() -> Vec<u8> {
    Client::new(SOLICIT).frame()
}

fn client_frame(dst: Ipv6Addr, payload: &[u8]) -> Vec<u8> {
    ipv6_udp((GUEST_LL, dst), &[], (546, 547), payload)
}

/// An IA_NA of a reply.
#[derive(Debug, PartialEq, Eq)]
struct IaNa {
    iaid: u32,
    t1: u32,
    t2: u32,
    addrs: Vec<(Ipv6Addr, u32, u32)>,
    status: Option<u16>,
}

/// A DHCPv6 reply as the guest sees it.
#[derive(Debug)]
struct ServerMessage {
    kind: u8,
    options: Vec<(u16, Vec<u8>)>,
}

impl ServerMessage {
    fn get(&self, code: u16) -> Option<&[u8]> {
        self.options
            .iter()
            .find(|(c, _)| *c == code)
            .map(|(_, d)| d.as_slice())
    }

    fn status(&self) -> Option<u16> {
        self.get(OPT_STATUS_CODE)
            .map(|d| u16::from_be_bytes([d[0], d[1]]))
    }

    fn ia_na(&self) -> Vec<IaNa> {
        let mut all = Vec::new();
        for (_, data) in self.options.iter().filter(|(c, _)| *c == OPT_IA_NA) {
            let word = |at: usize| u32::from_be_bytes(data[at..at + 4].try_into().unwrap());
            let mut ia = IaNa {
                iaid: word(0),
                t1: word(4),
                t2: word(8),
                addrs: vec![],
                status: None,
            };
            for (code, inner) in parse_options(&data[12..]) {
                match code {
                    OPT_IAADDR => {
                        let addr = Ipv6Addr::from(<[u8; 16]>::try_from(&inner[..16]).unwrap());
                        let w =
                            |at: usize| u32::from_be_bytes(inner[at..at + 4].try_into().unwrap());
                        ia.addrs.push((addr, w(16), w(20)));
                    }
                    OPT_STATUS_CODE => ia.status = Some(u16::from_be_bytes([inner[0], inner[1]])),
                    _ => {}
                }
            }
            all.push(ia);
        }
        all
    }
}

fn parse_options(mut bytes: &[u8]) -> Vec<(u16, Vec<u8>)> {
    let mut options = Vec::new();
    while !bytes.is_empty() {
        let code = u16::from_be_bytes([bytes[0], bytes[1]]);
        let len = usize::from(u16::from_be_bytes([bytes[2], bytes[3]]));
        options.push((code, bytes[4..4 + len].to_vec()));
        bytes = &bytes[4 + len..];
    }
    options
}

/// Parses a reply frame, checking its addresses, ports and checksum.
fn parse_reply(frame: &[u8]) -> ServerMessage {
    let eth = EthernetFrame::new_checked(frame).unwrap();
    assert_eq!(eth.src_addr(), gateway_mac());
    assert_eq!(eth.dst_addr(), guest_mac());
    assert_eq!(eth.ethertype(), EthernetProtocol::Ipv6);
    let ip = Ipv6Packet::new_checked(eth.payload()).unwrap();
    let ip_repr = Ipv6Repr::parse(&ip).unwrap();
    assert_eq!((ip_repr.src_addr, ip_repr.dst_addr), (ROUTER_LL, GUEST_LL));
    assert_eq!(ip_repr.next_header, IpProtocol::Udp);
    let (src, dst) = (
        IpAddress::Ipv6(ip_repr.src_addr),
        IpAddress::Ipv6(ip_repr.dst_addr),
    );
    let udp = UdpPacket::new_checked(ip.payload()).unwrap();
    assert!(udp.verify_checksum(&src, &dst), "UDP checksum");
    let udp_repr = UdpRepr::parse(&udp, &src, &dst, &ChecksumCapabilities::default()).unwrap();
    assert_eq!((udp_repr.src_port, udp_repr.dst_port), (547, 546));
    let payload = udp.payload();
    assert_eq!(&payload[1..4], &XID, "transaction id echoed");
    let options = parse_options(&payload[4..]);
    let message = ServerMessage {
        kind: payload[0],
        options,
    };
    assert_eq!(message.get(OPT_SERVERID), Some(server_duid().as_slice()));
    message
}

fn exchange(desk: &mut FrontDesk, frame: &[u8]) -> ServerMessage {
    let mut out = vec![0; 1514];
    match desk.handle_frame(frame, Instant::now(), &mut out) {
        Outcome::Reply(len) => parse_reply(&out[..len]),
        other => panic!("expected a reply, got {other:?}"),
    }
}

fn dropped(desk: &mut FrontDesk, frame: &[u8]) -> DropReason {
    let mut out = vec![0; 1514];
    let before = desk.counters().total_drops();
    match desk.handle_frame(frame, Instant::now(), &mut out) {
        Outcome::Dropped(reason) => {
            assert_eq!(desk.counters().total_drops(), before + 1);
            reason
        }
        other => panic!("expected a drop, got {other:?}"),
    }
}

fn lease() -> IaNa {
    IaNa {
        iaid: IAID,
        t1: 1800,
        t2: 2880,
        addrs: vec![(GUEST6, 3600, 7200)],
        status: None,
    }
}

fn bound_desk() -> FrontDesk {
    let mut desk = desk();
    let reply = exchange(&mut desk, &Client::new(REQUEST).frame());
    assert_eq!(reply.kind, REPLY);
    assert!(desk.dhcpv6().binding().is_some());
    desk
}

#[test]
fn dhcpv6_solicit_advertise_request_reply_gives_the_plan_address() {
    let mut desk = desk();
    let advertise = exchange(&mut desk, &Client::new(SOLICIT).frame());
    assert_eq!(advertise.kind, ADVERTISE);
    assert_eq!(advertise.get(OPT_CLIENTID), Some(client_duid().as_slice()));
    assert_eq!(advertise.ia_na(), vec![lease()]);
    assert_eq!(advertise.get(OPT_DNS_SERVERS), Some(&DNS6.octets()[..]));
    assert_eq!(advertise.get(OPT_DOMAIN_LIST), None, "no search domain set");
    assert_eq!(advertise.get(OPT_RAPID_COMMIT), None);
    assert!(
        desk.dhcpv6().binding().is_none(),
        "an Advertise binds nothing"
    );

    let reply = exchange(&mut desk, &Client::new(REQUEST).frame());
    assert_eq!(reply.kind, REPLY);
    assert_eq!(reply.get(OPT_CLIENTID), Some(client_duid().as_slice()));
    assert_eq!(reply.ia_na(), vec![lease()]);
    let binding = desk.dhcpv6().binding().unwrap();
    assert_eq!((binding.addr, binding.iaid), (GUEST6, IAID));
    assert_eq!(binding.client_id, client_duid());
    assert_eq!(desk.dhcpv6().stats().advertises, 1);
    assert_eq!(desk.dhcpv6().stats().replies, 1);
    assert_eq!(desk.guest_mac(), guest_mac());
}

#[test]
fn dhcpv6_solicit_with_rapid_commit_gets_a_reply_and_binds() {
    let mut desk = desk();
    let mut solicit = Client::new(SOLICIT);
    solicit.rapid_commit = true;
    let reply = exchange(&mut desk, &solicit.frame());
    assert_eq!(reply.kind, REPLY);
    assert_eq!(reply.get(OPT_RAPID_COMMIT), Some(&[][..]));
    assert_eq!(reply.ia_na(), vec![lease()]);
    assert!(desk.dhcpv6().binding().is_some());
}

#[test]
fn dhcpv6_rapid_commit_turned_off_gets_an_advertise() {
    let config = Dhcpv6Config {
        rapid_commit: false,
        ..Dhcpv6Config::default()
    };
    let mut desk = desk().with_dhcpv6(config);
    let mut solicit = Client::new(SOLICIT);
    solicit.rapid_commit = true;
    let advertise = exchange(&mut desk, &solicit.frame());
    assert_eq!(advertise.kind, ADVERTISE);
    assert_eq!(advertise.get(OPT_RAPID_COMMIT), None);
    assert!(desk.dhcpv6().binding().is_none());
}

#[test]
fn dhcpv6_second_ia_na_gets_no_addrs_avail() {
    let mut desk = desk();
    let mut solicit = Client::new(SOLICIT);
    solicit.ia_na.push((7, vec![]));
    let advertise = exchange(&mut desk, &solicit.frame());
    let ias = advertise.ia_na();
    assert_eq!(ias[0], lease());
    assert_eq!((ias[1].iaid, ias[1].status), (7, Some(NO_ADDRS_AVAIL)));
    assert!(ias[1].addrs.is_empty());
}

#[test]
fn dhcpv6_renew_extends_the_binding_and_zeroes_other_addresses() {
    let mut desk = bound_desk();
    let other = Ipv6Addr::new(0xfd00, 0, 0, 2, 0, 0, 0, 0x99);
    let mut renew = Client::new(RENEW);
    renew.ia_na = vec![(IAID, vec![GUEST6, other])];
    let reply = exchange(&mut desk, &renew.frame());
    assert_eq!(reply.kind, REPLY);
    let mut expected = lease();
    expected.addrs.push((other, 0, 0));
    assert_eq!(reply.ia_na(), vec![expected]);
}

#[test]
fn dhcpv6_renew_without_binding_is_no_binding() {
    let mut desk = desk();
    let reply = exchange(&mut desk, &Client::new(RENEW).frame());
    let ias = reply.ia_na();
    assert_eq!(ias.len(), 1);
    assert_eq!(ias[0].status, Some(NO_BINDING));
    assert!(ias[0].addrs.is_empty());
}

#[test]
fn dhcpv6_rebind_extends_the_binding_or_takes_the_address_again() {
    let mut desk = bound_desk();
    let reply = exchange(&mut desk, &Client::new(REBIND).frame());
    assert_eq!(reply.ia_na(), vec![lease()]);
    // A fresh server (slipway restarted) knows the address as its own.
    let mut fresh = crate::desk();
    let reply = exchange(&mut fresh, &Client::new(REBIND).frame());
    assert_eq!(reply.ia_na(), vec![lease()]);
    assert!(fresh.dhcpv6().binding().is_some());
    // An address not ours is not taken.
    let mut rebind = Client::new(REBIND);
    rebind.ia_na = vec![(IAID, vec![Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)])];
    let reply = exchange(&mut crate::desk(), &rebind.frame());
    assert_eq!(reply.ia_na()[0].status, Some(NO_BINDING));
}

#[test]
fn dhcpv6_release_ends_the_binding_with_success() {
    let mut desk = bound_desk();
    let reply = exchange(&mut desk, &Client::new(RELEASE).frame());
    assert_eq!(reply.kind, REPLY);
    assert_eq!(reply.status(), Some(SUCCESS));
    assert!(reply.ia_na().is_empty());
    assert!(desk.dhcpv6().binding().is_none());
    assert_eq!(desk.dhcpv6().stats().releases, 1);
    // Released again: the IA has no binding.
    let reply = exchange(&mut desk, &Client::new(RELEASE).frame());
    assert_eq!(reply.status(), Some(SUCCESS));
    assert_eq!(reply.ia_na()[0].status, Some(NO_BINDING));
    assert_eq!(desk.dhcpv6().stats().releases, 1);
}

#[test]
fn dhcpv6_decline_ends_the_binding_and_is_counted() {
    let mut desk = bound_desk();
    let reply = exchange(&mut desk, &Client::new(DECLINE).frame());
    assert_eq!(reply.kind, REPLY);
    assert_eq!(reply.status(), Some(SUCCESS));
    assert!(desk.dhcpv6().binding().is_none());
    assert_eq!(desk.dhcpv6().stats().declines, 1);
}

#[test]
fn dhcpv6_confirm_says_whether_addresses_are_on_link() {
    let mut desk = desk();
    let reply = exchange(&mut desk, &Client::new(CONFIRM).frame());
    assert_eq!(reply.kind, REPLY);
    assert_eq!(reply.status(), Some(SUCCESS));
    let mut elsewhere = Client::new(CONFIRM);
    elsewhere.ia_na = vec![(
        IAID,
        vec![GUEST6, Ipv6Addr::new(0xfd00, 0, 0, 9, 0, 0, 0, 1)],
    )];
    let reply = exchange(&mut desk, &elsewhere.frame());
    assert_eq!(reply.status(), Some(NOT_ON_LINK));
}

#[test]
fn dhcpv6_confirm_without_addresses_gets_no_reply() {
    let mut desk = desk();
    let mut confirm = Client::new(CONFIRM);
    confirm.ia_na = vec![(IAID, vec![])];
    assert_eq!(
        dropped(&mut desk, &confirm.frame()),
        DropReason::Dhcpv6Ignored
    );
}

#[test]
fn dhcpv6_information_request_gets_dns_and_the_domain_list() {
    let config = Dhcpv6Config {
        search_domains: vec!["corp.internal".into(), "bad..name".into(), "lan.".into()],
        ..Dhcpv6Config::default()
    };
    let mut desk = desk().with_dhcpv6(config);
    let mut info = Client::new(INFORMATION_REQUEST);
    info.client_id = None;
    let reply = exchange(&mut desk, &info.frame());
    assert_eq!(reply.kind, REPLY);
    assert_eq!(reply.get(OPT_CLIENTID), None);
    assert_eq!(reply.get(OPT_DNS_SERVERS), Some(&DNS6.octets()[..]));
    assert_eq!(
        reply.get(OPT_DOMAIN_LIST),
        Some(&b"\x04corp\x08internal\x00\x03lan\x00"[..])
    );
    assert!(reply.ia_na().is_empty());
    assert!(desk.dhcpv6().binding().is_none());
}

#[test]
fn dhcpv6_information_request_with_an_ia_is_dropped() {
    let mut info = Client::new(INFORMATION_REQUEST);
    info.ia_na = vec![(IAID, vec![])];
    assert_eq!(
        dropped(&mut desk(), &info.frame()),
        DropReason::Dhcpv6Malformed
    );
}

#[test]
fn dhcpv6_stateless_mode_has_no_addresses() {
    let config = Dhcpv6Config {
        mode: Dhcpv6Mode::Stateless,
        ..Dhcpv6Config::default()
    };
    let mut desk = desk().with_dhcpv6(config);
    let mut solicit = Client::new(SOLICIT);
    solicit.rapid_commit = true;
    let advertise = exchange(&mut desk, &solicit.frame());
    assert_eq!(advertise.kind, ADVERTISE);
    assert_eq!(advertise.status(), Some(NO_ADDRS_AVAIL));
    assert_eq!(advertise.ia_na()[0].status, Some(NO_ADDRS_AVAIL));
    let reply = exchange(&mut desk, &Client::new(REQUEST).frame());
    assert_eq!(reply.status(), Some(NO_ADDRS_AVAIL));
    assert!(desk.dhcpv6().binding().is_none());
    let info = exchange(&mut desk, &Client::new(INFORMATION_REQUEST).frame());
    assert_eq!(info.get(OPT_DNS_SERVERS), Some(&DNS6.octets()[..]));
}

#[test]
fn dhcpv6_off_passes_messages_to_the_relays() {
    let config = Dhcpv6Config {
        mode: Dhcpv6Mode::Off,
        ..Dhcpv6Config::default()
    };
    let mut desk = desk().with_dhcpv6(config);
    let mut out = vec![0; 1514];
    let frame = Client::new(SOLICIT).frame();
    let outcome = desk.handle_frame(&frame, Instant::now(), &mut out);
    assert!(matches!(outcome, Outcome::Ipv6(_)), "{outcome:?}");
}

#[test]
fn dhcpv6_wrong_server_id_is_ignored_and_counted() {
    for kind in [REQUEST, RENEW, RELEASE, DECLINE, INFORMATION_REQUEST] {
        let mut desk = bound_desk();
        let mut message = Client::new(kind);
        message.server_id = Some(vec![0, 3, 0, 1, 2, 2, 2, 2, 2, 2]);
        assert_eq!(
            dropped(&mut desk, &message.frame()),
            DropReason::Dhcpv6Ignored
        );
        assert_eq!(desk.counters().drops(DropReason::Dhcpv6Ignored), 1);
        assert!(desk.dhcpv6().binding().is_some(), "binding kept ({kind})");
    }
}

#[test]
fn dhcpv6_server_id_where_none_belongs_is_ignored() {
    for kind in [SOLICIT, CONFIRM, REBIND] {
        let mut message = Client::new(kind);
        message.server_id = Some(server_duid());
        assert_eq!(
            dropped(&mut desk(), &message.frame()),
            DropReason::Dhcpv6Ignored
        );
    }
}

#[test]
fn dhcpv6_missing_ids_are_dropped_as_malformed() {
    for kind in [SOLICIT, REQUEST, CONFIRM, RENEW, REBIND, RELEASE, DECLINE] {
        let mut message = Client::new(kind);
        message.client_id = None;
        assert_eq!(
            dropped(&mut desk(), &message.frame()),
            DropReason::Dhcpv6Malformed
        );
    }
    for kind in [REQUEST, RENEW, RELEASE, DECLINE] {
        let mut message = Client::new(kind);
        message.server_id = None;
        assert_eq!(
            dropped(&mut desk(), &message.frame()),
            DropReason::Dhcpv6Malformed
        );
    }
}

#[test]
fn dhcpv6_unicast_request_is_told_use_multicast() {
    let mut desk = desk();
    let mut request = Client::new(REQUEST);
    request.dst = ROUTER_LL;
    let reply = exchange(&mut desk, &request.frame());
    assert_eq!(reply.kind, REPLY);
    assert_eq!(reply.status(), Some(USE_MULTICAST));
    assert!(reply.ia_na().is_empty());
    assert_eq!(reply.get(OPT_DNS_SERVERS), None);
    assert!(desk.dhcpv6().binding().is_none());
}

#[test]
fn dhcpv6_unicast_solicit_is_dropped() {
    let mut solicit = Client::new(SOLICIT);
    solicit.dst = ROUTER_LL;
    assert_eq!(
        dropped(&mut desk(), &solicit.frame()),
        DropReason::Dhcpv6Ignored
    );
}

#[test]
fn dhcpv6_server_messages_from_the_guest_are_dropped() {
    for kind in [ADVERTISE, REPLY, 10, 12, 13, 0, 255] {
        let frame = Client::new(kind).frame();
        assert_eq!(dropped(&mut desk(), &frame), DropReason::Dhcpv6Malformed);
    }
}

#[test]
fn dhcpv6_malformed_options_are_dropped_and_counted() {
    let base = Client::new(SOLICIT).payload();
    let mut past_end = base.clone();
    past_end.extend_from_slice(&[0, 8, 0, 200, 0]);
    let mut many = base.clone();
    for _ in 0..1000 {
        many.extend(option(OPT_ELAPSED_TIME, &[0, 0]));
    }
    let mut many_ia = base.clone();
    for iaid in 0..10 {
        many_ia.extend(ia_na(iaid, &[]));
    }
    let addrs: Vec<_> = (0..10)
        .map(|h| Ipv6Addr::new(0xfd00, 0, 0, 2, 0, 0, 0, h))
        .collect();
    let mut many_addrs = base.clone();
    many_addrs.extend(ia_na(9, &addrs));
    let mut short_ia = base.clone();
    short_ia.extend(option(OPT_IA_NA, &[0; 11]));
    let mut two_client_ids = base.clone();
    two_client_ids.extend(option(OPT_CLIENTID, &client_duid()));
    let mut empty_duid = vec![SOLICIT, XID[0], XID[1], XID[2]];
    empty_duid.extend(option(OPT_CLIENTID, &[]));
    let mut long_duid = vec![SOLICIT, XID[0], XID[1], XID[2]];
    long_duid.extend(option(OPT_CLIENTID, &[7; 131]));
    let cases = [
        past_end,
        many,
        many_ia,
        many_addrs,
        short_ia,
        two_client_ids,
        empty_duid,
        long_duid,
        vec![SOLICIT, 1, 2],
        vec![],
    ];
    let mut desk = desk();
    for (i, payload) in cases.iter().enumerate() {
        let frame = client_frame(ALL_DHCP_RELAY_AGENTS_AND_SERVERS, payload);
        assert_eq!(
            dropped(&mut desk, &frame),
            DropReason::Dhcpv6Malformed,
            "case {i}"
        );
    }
    assert_eq!(
        desk.counters().drops(DropReason::Dhcpv6Malformed),
        cases.len() as u64
    );
}

#[test]
fn dhcpv6_reply_that_does_not_fit_is_dropped() {
    let mut desk = desk();
    let mut out = vec![0; 100];
    let frame = Client::new(SOLICIT).frame();
    let outcome = desk.handle_frame(&frame, Instant::now(), &mut out);
    assert_eq!(outcome, Outcome::Dropped(DropReason::NoBufferSpace));
    assert_eq!(desk.counters().drops(DropReason::NoBufferSpace), 1);
}

#[test]
fn dhcpv6_server_duid_is_stable_across_messages() {
    let mut desk = desk();
    let first = exchange(&mut desk, &Client::new(SOLICIT).frame());
    let second = exchange(&mut desk, &Client::new(INFORMATION_REQUEST).frame());
    assert_eq!(first.get(OPT_SERVERID), second.get(OPT_SERVERID));
    assert_eq!(desk.dhcpv6().duid(), server_duid().as_slice());
}

/// Feeds `frame` to `desk`: a reply is well-formed and counts no drop, a
/// drop is counted once under its reason.
fn check_outcome(desk: &mut FrontDesk, frame: &[u8]) -> Result<(), TestCaseError> {
    let mut out = vec![0; 1514];
    let before = desk.counters().clone();
    match desk.handle_frame(frame, Instant::now(), &mut out) {
        Outcome::Reply(len) => {
            prop_assert_eq!(desk.counters().total_drops(), before.total_drops());
            let _ = parse_reply(&out[..len]);
        }
        Outcome::Dropped(reason) => {
            prop_assert_eq!(desk.counters().drops(reason), before.drops(reason) + 1);
            prop_assert_eq!(desk.counters().total_drops(), before.total_drops() + 1);
        }
        other => prop_assert!(false, "unexpected {:?}", other),
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    #[test]
    fn dhcpv6_mutated_client_messages_never_panic_and_drops_are_counted(
        kind in prop::sample::select(vec![
            SOLICIT, REQUEST, CONFIRM, RENEW, REBIND, RELEASE, DECLINE, INFORMATION_REQUEST,
        ]),
        rapid_commit in any::<bool>(),
        bound in any::<bool>(),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..8),
        cut in proptest::option::of(any::<prop::sample::Index>()),
        extra in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        let mut client = Client::new(kind);
        client.rapid_commit = rapid_commit;
        let mut payload = client.payload();
        for (at, byte) in flips {
            let i = at.index(payload.len());
            payload[i] ^= byte;
        }
        if let Some(cut) = cut {
            payload.truncate(cut.index(payload.len() + 1));
        }
        payload.extend_from_slice(&extra);
        // The transaction id stays, for the reply's check.
        if let Some(xid) = payload.get_mut(1..4) {
            xid.copy_from_slice(&XID);
        }
        let mut desk = if bound { bound_desk() } else { desk() };
        let frame = client_frame(ALL_DHCP_RELAY_AGENTS_AND_SERVERS, &payload);
        check_outcome(&mut desk, &frame)?;
        check_outcome(&mut desk, &frame)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn dhcpv6_random_payloads_never_panic_and_drops_are_counted(
        payload in proptest::collection::vec(any::<u8>(), 0..600),
        kind in 0u8..16,
    ) {
        let mut desk = desk();
        let mut bytes = payload;
        if let Some(first) = bytes.first_mut() {
            *first = kind;
        }
        if let Some(xid) = bytes.get_mut(1..4) {
            xid.copy_from_slice(&XID);
        }
        let frame = client_frame(ALL_DHCP_RELAY_AGENTS_AND_SERVERS, &bytes);
        check_outcome(&mut desk, &frame)?;
    }
}
