//! A DHCPv6 server for exactly one guest (RFC 8415).
//!
//! Stateful, it has one address to give in an IA_NA: the plan's guest
//! IPv6 address, or the network's host `::15` when the plan names none.
//! Solicit gets an Advertise (a Reply when the client asks for rapid
//! commit), Request, Renew and Rebind a Reply with the address and its
//! lifetimes, Release and Decline a Reply with a status, Confirm a Reply
//! saying whether its addresses are on the link. Stateless, an
//! Information-request gets the DNS server (option 23) and the domain list
//! (option 24). The server's DUID is a DUID-LL of slipway's MAC address,
//! the same for the life of the server.
//!
//! Messages come from the client port to the server port, sent to
//! ff02::1:2 or to the router's link-local address. Those that RFC 8415
//! wants multicast and that came by unicast are dropped; the others get a
//! `UseMulticast` status. A message naming another server is dropped.

mod wire;

use std::net::Ipv6Addr;
use std::time::Duration;

use nat_core::{Ipv6Plan, Plan};
use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    ETHERNET_HEADER_LEN, EthernetAddress, EthernetFrame, EthernetProtocol, EthernetRepr,
    IPV6_HEADER_LEN, IpAddress, IpProtocol, Ipv6Packet, Ipv6Repr, UDP_HEADER_LEN, UdpPacket,
    UdpRepr,
};

use super::Handled;
use super::builder::TTL;
use super::counters::{Counters, DropReason};
use super::frame::{Ipv6Datagram, Transport, ethernet_address};
pub use wire::{MAX_DUID_LEN, MAX_IA_ADDRS, MAX_IA_NA, MAX_OPTIONS};
use wire::{Message, Status, Writer, msg, opt};

/// The UDP port DHCPv6 clients listen on.
pub const DHCPV6_CLIENT_PORT: u16 = 546;
/// The UDP port DHCPv6 servers listen on.
pub const DHCPV6_SERVER_PORT: u16 = 547;
/// All_DHCP_Relay_Agents_and_Servers, where clients send.
pub const ALL_DHCP_RELAY_AGENTS_AND_SERVERS: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 1, 2);

/// The guest's host number in the network when the plan names no guest
/// IPv6 address (the IPv4 guest's, `::15`).
const DEFAULT_GUEST_HOST: u128 = 0x15;

/// DUID-LL (RFC 8415, section 11.4) over Ethernet (hardware type 1).
const DUID_LL_ETHERNET: [u8; 4] = [0, 3, 0, 1];
const DUID_LEN: usize = 10;

/// The default preferred lifetime of the address: one hour.
pub const DEFAULT_PREFERRED_LIFETIME: Duration = Duration::from_secs(3600);
/// The default valid lifetime of the address: two hours.
pub const DEFAULT_VALID_LIFETIME: Duration = Duration::from_secs(7200);

/// Which DHCPv6 service the front desk gives.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Dhcpv6Mode {
    /// None: DHCPv6 messages go on to the relays like any UDP datagram.
    Off,
    /// Information-request only; Solicits and Requests get `NoAddrsAvail`.
    Stateless,
    /// Addresses (IA_NA) and information.
    #[default]
    Stateful,
}

/// Settings of the DHCPv6 server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dhcpv6Config {
    /// The service given.
    pub mode: Dhcpv6Mode,
    /// The address's preferred lifetime (whole seconds, below `u32::MAX`,
    /// which would mean infinity). Renewal (T1) is at half of it,
    /// rebinding (T2) at four fifths.
    pub preferred_lifetime: Duration,
    /// The address's valid lifetime; never less than the preferred one.
    pub valid_lifetime: Duration,
    /// Whether a Solicit with the Rapid Commit option gets a Reply at once.
    pub rapid_commit: bool,
    /// The domain search list (option 24), sent when not empty; names that
    /// are not valid DNS names are left out.
    pub search_domains: Vec<String>,
}

impl Default for Dhcpv6Config {
    fn default() -> Self {
        Self {
            mode: Dhcpv6Mode::default(),
            preferred_lifetime: DEFAULT_PREFERRED_LIFETIME,
            valid_lifetime: DEFAULT_VALID_LIFETIME,
            rapid_commit: true,
            search_domains: Vec::new(),
        }
    }
}

fn secs(duration: Duration) -> u32 {
    u32::try_from(duration.as_secs())
        .unwrap_or(u32::MAX)
        .min(u32::MAX - 1)
}

impl Dhcpv6Config {
    /// T1, T2, preferred and valid lifetimes, in seconds.
    fn times(&self) -> Times {
        let preferred = secs(self.preferred_lifetime);
        let valid = secs(self.valid_lifetime).max(preferred);
        Times {
            t1: preferred / 2,
            t2: preferred / 5 * 4,
            preferred,
            valid,
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Times {
    t1: u32,
    t2: u32,
    preferred: u32,
    valid: u32,
}

/// The one binding the server holds: the address given to a client's IA.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dhcpv6Binding {
    /// The client's DUID (at most [`MAX_DUID_LEN`] bytes).
    pub client_id: Vec<u8>,
    /// The IA_NA's identifier.
    pub iaid: u32,
    /// The address given.
    pub addr: Ipv6Addr,
}

/// What the DHCPv6 server has done, by message.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Dhcpv6Stats {
    /// Advertises sent.
    pub advertises: u64,
    /// Replies sent.
    pub replies: u64,
    /// Releases that ended a binding.
    pub releases: u64,
    /// Declines received for the bound address: the guest found it in use.
    pub declines: u64,
}

/// A DHCPv6 message from the guest, with the addresses it came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dhcpv6Message<'a> {
    /// The Ethernet source address (a unicast address).
    pub src_mac: EthernetAddress,
    /// The IPv6 source address (the client's link-local address).
    pub src_addr: Ipv6Addr,
    /// The IPv6 destination address.
    pub dst_addr: Ipv6Addr,
    /// The UDP payload: the DHCPv6 message, not yet parsed.
    pub payload: &'a [u8],
}

impl<'a> Dhcpv6Message<'a> {
    /// The DHCPv6 message in `datagram`, if it is one for the server: UDP
    /// from port 546 to port 547, to ff02::1:2 or one of the gateway's
    /// addresses.
    #[must_use]
    pub fn from_datagram(datagram: &Ipv6Datagram<'a>, v6: &Ipv6Plan) -> Option<Self> {
        let Transport::Udp {
            src_port: DHCPV6_CLIENT_PORT,
            dst_port: DHCPV6_SERVER_PORT,
            payload,
        } = datagram.transport
        else {
            return None;
        };
        let dst = datagram.header.dst_addr;
        let for_us = dst == ALL_DHCP_RELAY_AGENTS_AND_SERVERS
            || dst == v6.gateway_link_local()
            || dst == v6.gateway();
        for_us.then_some(Self {
            src_mac: datagram.src_mac,
            src_addr: datagram.header.src_addr,
            dst_addr: dst,
            payload,
        })
    }

    fn unicast(&self) -> bool {
        self.dst_addr != ALL_DHCP_RELAY_AGENTS_AND_SERVERS
    }
}

/// The DHCPv6 server. Its state is the one binding.
#[derive(Clone, Debug)]
pub struct Dhcpv6Server {
    config: Dhcpv6Config,
    duid: [u8; DUID_LEN],
    domain_list: Vec<u8>,
    binding: Option<Dhcpv6Binding>,
    stats: Dhcpv6Stats,
}

/// Whether a message type wants a server identifier (RFC 8415, section 16).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ServerId {
    Required,
    Forbidden,
    Optional,
}

/// How a message type is checked before it is answered.
#[derive(Clone, Copy, Debug)]
struct Rules {
    client_id: bool,
    server_id: ServerId,
    /// Whether a unicast copy is dropped (rather than told `UseMulticast`).
    multicast_only: bool,
}

fn rules(msg_type: u8) -> Option<Rules> {
    let (client_id, server_id, multicast_only) = match msg_type {
        msg::SOLICIT | msg::CONFIRM | msg::REBIND => (true, ServerId::Forbidden, true),
        msg::REQUEST | msg::RENEW | msg::RELEASE | msg::DECLINE => {
            (true, ServerId::Required, false)
        }
        msg::INFORMATION_REQUEST => (false, ServerId::Optional, true),
        // Advertise, Reply, Reconfigure and relay messages are not a
        // client's to send to a server on the link.
        _ => return None,
    };
    Some(Rules {
        client_id,
        server_id,
        multicast_only,
    })
}

impl Dhcpv6Server {
    /// A server with no binding, whose DUID is a DUID-LL of `server_mac`.
    #[must_use]
    pub fn new(config: Dhcpv6Config, server_mac: EthernetAddress) -> Self {
        let mut duid = [0; DUID_LEN];
        duid[..4].copy_from_slice(&DUID_LL_ETHERNET);
        duid[4..].copy_from_slice(&server_mac.0);
        let mut domain_list = Vec::new();
        wire::encode_domain_list(&config.search_domains, &mut domain_list);
        Self {
            config,
            duid,
            domain_list,
            binding: None,
            stats: Dhcpv6Stats::default(),
        }
    }

    /// The settings.
    #[must_use]
    pub fn config(&self) -> &Dhcpv6Config {
        &self.config
    }

    /// The server's DUID, as its Server Identifier option carries it.
    #[must_use]
    pub fn duid(&self) -> &[u8] {
        &self.duid
    }

    /// The current binding, if the guest holds the address.
    #[must_use]
    pub fn binding(&self) -> Option<&Dhcpv6Binding> {
        self.binding.as_ref()
    }

    /// Counts of the messages handled.
    #[must_use]
    pub fn stats(&self) -> &Dhcpv6Stats {
        &self.stats
    }

    /// The address the server gives, if it gives one: the plan's guest
    /// address, or the network's `::15`, unless that is one of slipway's.
    #[must_use]
    pub fn address(&self, v6: &Ipv6Plan) -> Option<Ipv6Addr> {
        if self.config.mode != Dhcpv6Mode::Stateful {
            return None;
        }
        let addr = v6
            .guest()
            .or_else(|| v6.network().host(DEFAULT_GUEST_HOST))?;
        let ours = [v6.gateway(), v6.gateway_link_local(), v6.dns()];
        (!ours.contains(&addr)).then_some(addr)
    }

    /// Handles one DHCPv6 message from the guest, writing the reply frame
    /// (if any) into `out`. A message that is dropped is counted in
    /// `counters`.
    pub fn handle(
        &mut self,
        plan: &Plan,
        message: &Dhcpv6Message<'_>,
        out: &mut [u8],
        counters: &mut Counters,
    ) -> Handled {
        Handled::counted(self.respond(plan, message, out).map(Some), counters)
    }

    fn respond(
        &mut self,
        plan: &Plan,
        message: &Dhcpv6Message<'_>,
        out: &mut [u8],
    ) -> Result<usize, DropReason> {
        let v6 = plan.ipv6().ok_or(DropReason::FamilyDisabled)?;
        let request = Message::parse(message.payload).map_err(|_| DropReason::Dhcpv6Malformed)?;
        let rules = rules(request.msg_type).ok_or(DropReason::Dhcpv6Malformed)?;
        self.check(&request, rules, message.unicast())?;
        let payload = out
            .get_mut(FRAME_HEADERS_LEN..)
            .ok_or(DropReason::NoBufferSpace)?;
        let unicast = message.unicast() && !rules.multicast_only;
        let (reply_type, len) = if unicast {
            let mut writer = self.start(payload, msg::REPLY, &request)?;
            writer.status(Status::UseMulticast).map_err(full)?;
            (msg::REPLY, writer.len())
        } else {
            self.answer(v6, &request, payload)?
        };
        let len = emit_frame(plan, v6, message, out, len)?;
        if reply_type == msg::ADVERTISE {
            self.stats.advertises = self.stats.advertises.wrapping_add(1);
        } else {
            self.stats.replies = self.stats.replies.wrapping_add(1);
        }
        Ok(len)
    }

    /// The checks of RFC 8415, section 16, for one message type.
    fn check(&self, request: &Message<'_>, rules: Rules, unicast: bool) -> Result<(), DropReason> {
        if rules.client_id && request.client_id.is_none() {
            return Err(DropReason::Dhcpv6Malformed);
        }
        if unicast && rules.multicast_only {
            return Err(DropReason::Dhcpv6Ignored);
        }
        let ours = request.server_id.map(|id| id == self.duid);
        match (rules.server_id, ours) {
            (ServerId::Required, Some(true))
            | (ServerId::Forbidden, None)
            | (ServerId::Optional, None | Some(true)) => {}
            (ServerId::Required, None) => return Err(DropReason::Dhcpv6Malformed),
            _ => return Err(DropReason::Dhcpv6Ignored),
        }
        let has_ia = !request.ia_na().is_empty() || request.other_ia;
        if request.msg_type == msg::INFORMATION_REQUEST && has_ia {
            return Err(DropReason::Dhcpv6Malformed);
        }
        Ok(())
    }

    /// A reply's header and identifiers.
    fn start<'b>(
        &self,
        payload: &'b mut [u8],
        msg_type: u8,
        request: &Message<'_>,
    ) -> Result<Writer<'b>, DropReason> {
        let mut writer = Writer::new(payload, msg_type, request.xid).map_err(full)?;
        writer.option(opt::SERVERID, &self.duid).map_err(full)?;
        if let Some(client_id) = request.client_id {
            writer.option(opt::CLIENTID, client_id).map_err(full)?;
        }
        Ok(writer)
    }

    /// Answers a checked message sent to ff02::1:2: the reply's type and
    /// length.
    fn answer(
        &mut self,
        v6: &Ipv6Plan,
        request: &Message<'_>,
        payload: &mut [u8],
    ) -> Result<(u8, usize), DropReason> {
        let rapid = request.msg_type == msg::SOLICIT
            && request.rapid_commit
            && self.config.rapid_commit
            && self.address(v6).is_some();
        let reply_type = if request.msg_type == msg::SOLICIT && !rapid {
            msg::ADVERTISE
        } else {
            msg::REPLY
        };
        if request.msg_type == msg::CONFIRM && confirmed(v6, request).is_none() {
            // Nothing to confirm: RFC 8415, section 18.3.3, wants no reply.
            return Err(DropReason::Dhcpv6Ignored);
        }
        let mut writer = self.start(payload, reply_type, request)?;
        if rapid {
            writer.option(opt::RAPID_COMMIT, &[]).map_err(full)?;
        }
        let configure = match request.msg_type {
            msg::SOLICIT => self.assign(v6, request, &mut writer, rapid),
            msg::REQUEST => self.assign(v6, request, &mut writer, true),
            msg::RENEW | msg::REBIND => self.extend(v6, request, &mut writer),
            msg::RELEASE | msg::DECLINE => self.release(request, &mut writer).map(|()| false),
            msg::CONFIRM => {
                let status = confirmed(v6, request).unwrap_or(Status::NotOnLink);
                writer.status(status).map(|()| false)
            }
            _ => Ok(true),
        }
        .map_err(full)?;
        if configure {
            self.configuration(v6, &mut writer).map_err(full)?;
        }
        Ok((reply_type, writer.len()))
    }

    /// The DNS server and the domain list.
    fn configuration(&self, v6: &Ipv6Plan, writer: &mut Writer<'_>) -> Result<(), wire::Full> {
        writer.option(opt::DNS_SERVERS, &v6.dns().octets())?;
        if !self.domain_list.is_empty() {
            writer.option(opt::DOMAIN_LIST, &self.domain_list)?;
        }
        Ok(())
    }

    /// Gives the address to the first IA_NA (and `NoAddrsAvail` to the
    /// others), binding it when `commit`.
    fn assign(
        &mut self,
        v6: &Ipv6Plan,
        request: &Message<'_>,
        writer: &mut Writer<'_>,
        commit: bool,
    ) -> Result<bool, wire::Full> {
        let times = self.config.times();
        let addr = self.address(v6);
        let mut given = false;
        for ia in request.ia_na() {
            match addr {
                Some(addr) if !given => {
                    let lease = [(addr, times.preferred, times.valid)];
                    writer.ia_na(ia.iaid, (times.t1, times.t2), &lease, None)?;
                    given = true;
                    if commit {
                        self.bind(request, ia.iaid, addr);
                    }
                }
                _ => writer.ia_na(ia.iaid, (0, 0), &[], Some(Status::NoAddrsAvail))?,
            }
        }
        if !given {
            writer.status(Status::NoAddrsAvail)?;
        }
        Ok(true)
    }

    fn bind(&mut self, request: &Message<'_>, iaid: u32, addr: Ipv6Addr) {
        let client_id = request.client_id.unwrap_or_default().to_vec();
        tracing::debug!(%addr, iaid, "DHCPv6 binding");
        self.binding = Some(Dhcpv6Binding {
            client_id,
            iaid,
            addr,
        });
    }

    /// Whether the binding is this client's IA's.
    fn holds(&self, request: &Message<'_>, iaid: u32) -> bool {
        self.binding.as_ref().is_some_and(|binding| {
            Some(binding.client_id.as_slice()) == request.client_id && binding.iaid == iaid
        })
    }

    /// Renew and Rebind: the bound address with fresh lifetimes, and zero
    /// lifetimes for any other address the client lists. A Rebind for an
    /// IA without a binding that lists the server's address takes it
    /// again (slipway restarted under a running guest).
    fn extend(
        &mut self,
        v6: &Ipv6Plan,
        request: &Message<'_>,
        writer: &mut Writer<'_>,
    ) -> Result<bool, wire::Full> {
        let times = self.config.times();
        let addr = self.address(v6);
        for ia in request.ia_na() {
            let rebound = request.msg_type == msg::REBIND
                && addr.is_some_and(|addr| ia.addrs().contains(&addr));
            if rebound && !self.holds(request, ia.iaid) {
                if let Some(addr) = addr {
                    self.bind(request, ia.iaid, addr);
                }
            }
            let bound = self
                .binding
                .as_ref()
                .filter(|_| self.holds(request, ia.iaid))
                .map(|binding| binding.addr);
            let Some(bound) = bound else {
                writer.ia_na(ia.iaid, (0, 0), &[], Some(Status::NoBinding))?;
                continue;
            };
            let mut leases = [(bound, times.preferred, times.valid); 1 + wire::MAX_IA_ADDRS];
            let mut count = 1;
            for &other in ia.addrs().iter().filter(|&&a| a != bound) {
                leases[count] = (other, 0, 0);
                count += 1;
            }
            writer.ia_na(ia.iaid, (times.t1, times.t2), &leases[..count], None)?;
        }
        Ok(true)
    }

    /// Release and Decline: ends the binding of an IA that holds it,
    /// answers `NoBinding` for the others, and `Success` for the message.
    fn release(
        &mut self,
        request: &Message<'_>,
        writer: &mut Writer<'_>,
    ) -> Result<(), wire::Full> {
        for ia in request.ia_na() {
            if self.holds(request, ia.iaid) {
                self.binding = None;
                if request.msg_type == msg::DECLINE {
                    tracing::warn!("DHCPv6 Decline: the guest found its address in use");
                    self.stats.declines = self.stats.declines.wrapping_add(1);
                } else {
                    self.stats.releases = self.stats.releases.wrapping_add(1);
                }
            } else {
                writer.ia_na(ia.iaid, (0, 0), &[], Some(Status::NoBinding))?;
            }
        }
        writer.status(Status::Success)
    }
}

/// Confirm's answer: `Success` when every address listed is in the
/// network, `NotOnLink` otherwise, `None` when it lists none.
fn confirmed(v6: &Ipv6Plan, request: &Message<'_>) -> Option<Status> {
    let mut addrs = request.ia_na().iter().flat_map(|ia| ia.addrs()).peekable();
    addrs.peek()?;
    let on_link = addrs.all(|addr| v6.network().contains(*addr));
    Some(if on_link {
        Status::Success
    } else {
        Status::NotOnLink
    })
}

fn full(_: wire::Full) -> DropReason {
    DropReason::NoBufferSpace
}

/// Ethernet, IPv6 and UDP headers in front of the DHCPv6 message.
const FRAME_HEADERS_LEN: usize = ETHERNET_HEADER_LEN + IPV6_HEADER_LEN + UDP_HEADER_LEN;

/// Writes the headers in front of the `len`-byte message already at
/// [`FRAME_HEADERS_LEN`] in `out`: from the router's link-local address
/// and slipway's MAC to the client's address and MAC, the UDP checksum
/// filled in. The frame's length.
fn emit_frame(
    plan: &Plan,
    v6: &Ipv6Plan,
    message: &Dhcpv6Message<'_>,
    out: &mut [u8],
    len: usize,
) -> Result<usize, DropReason> {
    let udp_len = UDP_HEADER_LEN + len;
    let frame_len = FRAME_HEADERS_LEN + len;
    let frame = out.get_mut(..frame_len).ok_or(DropReason::NoBufferSpace)?;
    let (src, dst) = (v6.gateway_link_local(), message.src_addr);
    EthernetRepr {
        src_addr: ethernet_address(plan.gateway_mac()),
        dst_addr: message.src_mac,
        ethertype: EthernetProtocol::Ipv6,
    }
    .emit(&mut EthernetFrame::new_unchecked(&mut *frame));
    let ip = Ipv6Repr {
        src_addr: src,
        dst_addr: dst,
        next_header: IpProtocol::Udp,
        payload_len: udp_len,
        hop_limit: TTL,
    };
    let mut packet = Ipv6Packet::new_unchecked(&mut frame[ETHERNET_HEADER_LEN..]);
    ip.emit(&mut packet);
    let udp = UdpRepr {
        src_port: DHCPV6_SERVER_PORT,
        dst_port: DHCPV6_CLIENT_PORT,
    };
    // The message is in place already: nothing more to write.
    udp.emit(
        &mut UdpPacket::new_unchecked(packet.payload_mut()),
        &IpAddress::Ipv6(src),
        &IpAddress::Ipv6(dst),
        len,
        |_| {},
        &ChecksumCapabilities::default(),
    );
    Ok(frame_len)
}
