//! A DHCPv4 server for exactly one guest (RFC 2131).
//!
//! There is one address to give, the plan's guest address, and one server,
//! the gateway. DISCOVER gets an OFFER, REQUEST an ACK (or a NAK when it
//! names another address or another server), INFORM an ACK without an
//! address; RELEASE forgets the lease and DECLINE is counted. Offers and
//! acknowledgments carry the subnet mask, the router (the gateway), the DNS
//! server (the plan's DNS address), the interface MTU (option 26), the lease
//! time and the renewal and rebinding times (options 58 and 59).

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use nat_core::{Ipv4Plan, Plan};
use smoltcp::wire::{
    DHCP_CLIENT_PORT, DHCP_SERVER_PORT, DhcpMessageType, DhcpOpCode, DhcpOption, DhcpPacket,
    DhcpRepr, EthernetAddress,
};

use super::Handled;
use super::builder::{ChecksumFill, LinkAddrs, build_udp_v4_with};
use super::counters::{Counters, DropReason};
use super::frame::Dhcpv4Message;

/// The smallest BOOTP message some clients accept (RFC 951, RFC 1542).
const BOOTP_MIN_LEN: usize = 300;

/// DHCP option codes smoltcp's `DhcpRepr` has no field for on emission.
const OPT_INTERFACE_MTU: u8 = 26;
const OPT_DOMAIN_NAME_SERVER: u8 = 6;
const OPT_MESSAGE: u8 = 56;
const OPT_RENEWAL_TIME: u8 = 58;
const OPT_REBINDING_TIME: u8 = 59;
const OPT_CLIENT_ID: u8 = 61;

/// The default lease time: one hour.
pub const DEFAULT_LEASE_TIME: Duration = Duration::from_secs(3600);

/// Settings of the DHCP server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DhcpConfig {
    /// The lease time offered (whole seconds; at most `u32::MAX - 1`, as
    /// `u32::MAX` would mean an infinite lease). Renewal (T1) is at half of
    /// it, rebinding (T2) at seven eighths.
    pub lease_time: Duration,
}

impl Default for DhcpConfig {
    fn default() -> Self {
        Self {
            lease_time: DEFAULT_LEASE_TIME,
        }
    }
}

impl DhcpConfig {
    fn lease_secs(&self) -> u32 {
        u32::try_from(self.lease_time.as_secs())
            .unwrap_or(u32::MAX)
            .min(u32::MAX - 1)
    }
}

/// The one lease the server holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lease {
    /// The client's hardware address (`chaddr`).
    pub client_mac: EthernetAddress,
    /// The transaction id of the REQUEST that was acknowledged.
    pub xid: u32,
}

/// What the DHCP server has done, by message.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DhcpStats {
    /// OFFERs sent.
    pub offers: u64,
    /// ACKs sent, INFORM answers included.
    pub acks: u64,
    /// NAKs sent.
    pub naks: u64,
    /// RELEASEs honoured.
    pub releases: u64,
    /// DECLINEs received: the guest found its address in use.
    pub declines: u64,
}

/// The DHCPv4 server. Its state is the one lease.
#[derive(Clone, Debug, Default)]
pub struct DhcpServer {
    config: DhcpConfig,
    lease: Option<Lease>,
    stats: DhcpStats,
}

/// Where a reply goes.
#[derive(Clone, Copy, Debug)]
enum Destination {
    /// The broadcast MAC address and 255.255.255.255.
    Broadcast,
    /// The client's MAC address and an IPv4 address.
    Unicast(EthernetAddress, Ipv4Addr),
}

/// The fields of a reply that differ between message types.
#[derive(Clone, Copy, Debug)]
struct Reply<'a> {
    message_type: DhcpMessageType,
    your_ip: Ipv4Addr,
    client_ip: Ipv4Addr,
    /// Whether to send the network configuration (mask, router, DNS, MTU).
    configuration: bool,
    /// Whether to send the lease, renewal and rebinding times.
    lease: bool,
    /// The message option (56), for NAKs.
    message: Option<&'a str>,
    destination: Destination,
}

impl DhcpServer {
    /// A server with no lease.
    #[must_use]
    pub fn new(config: DhcpConfig) -> Self {
        Self {
            config,
            lease: None,
            stats: DhcpStats::default(),
        }
    }

    /// The settings.
    #[must_use]
    pub fn config(&self) -> &DhcpConfig {
        &self.config
    }

    /// The current lease, if the guest holds one.
    #[must_use]
    pub fn lease(&self) -> Option<&Lease> {
        self.lease.as_ref()
    }

    /// Counts of the messages handled.
    #[must_use]
    pub fn stats(&self) -> &DhcpStats {
        &self.stats
    }

    /// Handles one DHCP message from the guest, writing the reply frame (if
    /// any) into `out`. A message that is dropped is counted in `counters`.
    pub fn handle(
        &mut self,
        plan: &Plan,
        message: &Dhcpv4Message<'_>,
        out: &mut [u8],
        counters: &mut Counters,
    ) -> Handled {
        Handled::counted(self.respond(plan, message, out), counters)
    }

    fn respond(
        &mut self,
        plan: &Plan,
        message: &Dhcpv4Message<'_>,
        out: &mut [u8],
    ) -> Result<Option<usize>, DropReason> {
        let v4 = plan.ipv4().ok_or(DropReason::FamilyDisabled)?;
        let packet =
            DhcpPacket::new_checked(message.payload).map_err(|_| DropReason::DhcpMalformed)?;
        if packet.opcode() != DhcpOpCode::Request {
            return Err(DropReason::DhcpMalformed);
        }
        let request = DhcpRepr::parse(&packet).map_err(|_| DropReason::DhcpMalformed)?;
        // Echoed verbatim (RFC 6842); smoltcp only parses the Ethernet form.
        let client_id = packet
            .options()
            .find(|option| option.kind == OPT_CLIENT_ID)
            .map(|option| option.data);
        let client = Client {
            request: &request,
            client_id,
            src_mac: message.src_mac,
        };
        let reply = match request.message_type {
            DhcpMessageType::Discover => self.offer(v4, &client),
            DhcpMessageType::Request => self.acknowledge(v4, &client),
            DhcpMessageType::Inform => inform(&client)?,
            DhcpMessageType::Release => return self.release(&request).map(|()| None),
            DhcpMessageType::Decline => {
                self.decline(&request);
                return Ok(None);
            }
            DhcpMessageType::Offer
            | DhcpMessageType::Ack
            | DhcpMessageType::Nak
            | DhcpMessageType::Unknown(_) => return Err(DropReason::DhcpMalformed),
        };
        let len = self.emit(plan, v4, &client, &reply, out)?;
        match reply.message_type {
            DhcpMessageType::Offer => self.stats.offers = self.stats.offers.wrapping_add(1),
            DhcpMessageType::Ack => self.stats.acks = self.stats.acks.wrapping_add(1),
            _ => self.stats.naks = self.stats.naks.wrapping_add(1),
        }
        Ok(Some(len))
    }

    fn offer(&self, v4: &Ipv4Plan, client: &Client<'_, '_>) -> Reply<'static> {
        tracing::debug!(client = %client.request.client_hardware_address, "DHCP offer");
        Reply {
            message_type: DhcpMessageType::Offer,
            your_ip: v4.guest(),
            client_ip: Ipv4Addr::UNSPECIFIED,
            configuration: true,
            lease: true,
            message: None,
            destination: client.destination(v4.guest()),
        }
    }

    fn acknowledge(&mut self, v4: &Ipv4Plan, client: &Client<'_, '_>) -> Reply<'static> {
        let request = client.request;
        let guest = v4.guest();
        // SELECTING names a server and an address; INIT-REBOOT only an
        // address; RENEWING and REBINDING only `ciaddr`.
        let refusal = match (
            request.server_identifier,
            request.requested_ip,
            request.client_ip,
        ) {
            (Some(server), _, _) if server != v4.gateway() => Some("server identifier is not ours"),
            (_, Some(requested), _) if requested != guest => Some("requested address is not ours"),
            (_, Some(_), _) => None,
            (_, None, ciaddr) if ciaddr == guest => None,
            (_, None, _) => Some("no address requested"),
        };
        if let Some(message) = refusal {
            tracing::debug!(client = %request.client_hardware_address, message, "DHCP NAK");
            return Reply {
                message_type: DhcpMessageType::Nak,
                your_ip: Ipv4Addr::UNSPECIFIED,
                client_ip: Ipv4Addr::UNSPECIFIED,
                configuration: false,
                lease: false,
                message: Some(message),
                destination: Destination::Broadcast,
            };
        }
        self.lease = Some(Lease {
            client_mac: request.client_hardware_address,
            xid: request.transaction_id,
        });
        tracing::debug!(client = %request.client_hardware_address, address = %guest, "DHCP ACK");
        Reply {
            message_type: DhcpMessageType::Ack,
            your_ip: guest,
            client_ip: request.client_ip,
            configuration: true,
            lease: true,
            message: None,
            destination: client.destination(guest),
        }
    }

    fn release(&mut self, request: &DhcpRepr<'_>) -> Result<(), DropReason> {
        match self.lease {
            Some(lease) if lease.client_mac == request.client_hardware_address => {
                self.lease = None;
                self.stats.releases = self.stats.releases.wrapping_add(1);
                tracing::debug!(client = %lease.client_mac, "DHCP lease released");
                Ok(())
            }
            _ => Err(DropReason::DhcpIgnored),
        }
    }

    fn decline(&mut self, request: &DhcpRepr<'_>) {
        self.stats.declines = self.stats.declines.wrapping_add(1);
        tracing::warn!(
            client = %request.client_hardware_address,
            "DHCP decline: the guest found its address in use"
        );
        if self
            .lease
            .is_some_and(|lease| lease.client_mac == request.client_hardware_address)
        {
            self.lease = None;
        }
    }

    fn emit(
        &self,
        plan: &Plan,
        v4: &Ipv4Plan,
        client: &Client<'_, '_>,
        reply: &Reply<'_>,
        out: &mut [u8],
    ) -> Result<usize, DropReason> {
        let request = client.request;
        let lease_secs = self.config.lease_secs();
        let mtu = plan.mtu().to_be_bytes();
        let dns = v4.dns().octets();
        let renewal = (lease_secs / 2).to_be_bytes();
        let rebinding = (lease_secs / 8).saturating_mul(7).to_be_bytes();
        let mut options = Vec::with_capacity(6);
        if reply.configuration {
            options.push(DhcpOption {
                kind: OPT_DOMAIN_NAME_SERVER,
                data: &dns,
            });
            options.push(DhcpOption {
                kind: OPT_INTERFACE_MTU,
                data: &mtu,
            });
        }
        if reply.lease {
            options.push(DhcpOption {
                kind: OPT_RENEWAL_TIME,
                data: &renewal,
            });
            options.push(DhcpOption {
                kind: OPT_REBINDING_TIME,
                data: &rebinding,
            });
        }
        if let Some(message) = reply.message {
            options.push(DhcpOption {
                kind: OPT_MESSAGE,
                data: message.as_bytes(),
            });
        }
        if let Some(id) = client
            .client_id
            .filter(|id| id.len() <= usize::from(u8::MAX))
        {
            options.push(DhcpOption {
                kind: OPT_CLIENT_ID,
                data: id,
            });
        }
        let repr = DhcpRepr {
            message_type: reply.message_type,
            transaction_id: request.transaction_id,
            secs: 0,
            client_hardware_address: request.client_hardware_address,
            client_ip: reply.client_ip,
            your_ip: reply.your_ip,
            server_ip: Ipv4Addr::UNSPECIFIED,
            router: reply.configuration.then_some(v4.gateway()),
            subnet_mask: reply.configuration.then(|| netmask(v4)),
            relay_agent_ip: request.relay_agent_ip,
            broadcast: request.broadcast,
            requested_ip: None,
            client_identifier: None,
            server_identifier: Some(v4.gateway()),
            parameter_request_list: None,
            dns_servers: None,
            max_size: None,
            lease_duration: reply.lease.then_some(lease_secs),
            renew_duration: None,
            rebind_duration: None,
            additional_options: &options,
        };
        write_reply(plan, v4, &repr, reply.destination, out)
    }
}

/// Writes `repr` from the gateway's DHCP server port to the client port at
/// `destination`, padded to the BOOTP minimum.
fn write_reply(
    plan: &Plan,
    v4: &Ipv4Plan,
    repr: &DhcpRepr<'_>,
    destination: Destination,
    out: &mut [u8],
) -> Result<usize, DropReason> {
    let (link, dst) = match destination {
        Destination::Broadcast => (
            LinkAddrs::gateway_to(plan, EthernetAddress::BROADCAST),
            Ipv4Addr::BROADCAST,
        ),
        Destination::Unicast(mac, ip) => (LinkAddrs::gateway_to(plan, mac), ip),
    };
    let len = repr.buffer_len().max(BOOTP_MIN_LEN);
    build_udp_v4_with(
        out,
        link,
        (
            SocketAddrV4::new(v4.gateway(), DHCP_SERVER_PORT),
            SocketAddrV4::new(dst, DHCP_CLIENT_PORT),
        ),
        len,
        ChecksumFill::Complete,
        |area| {
            // Everything after the end option is padding.
            area.fill(0);
            repr.emit(&mut DhcpPacket::new_unchecked(area)).ok()
        },
    )
    .ok_or(DropReason::NoBufferSpace)
}

/// A client's message and what is needed to answer it.
struct Client<'r, 'a> {
    request: &'r DhcpRepr<'a>,
    client_id: Option<&'a [u8]>,
    src_mac: EthernetAddress,
}

impl Client<'_, '_> {
    /// Where an OFFER or ACK goes (RFC 2131, section 4.1): to the
    /// broadcast address when the client asks for it, to `ciaddr` when it
    /// has one, else to the offered address at the client's MAC address.
    fn destination(&self, your_ip: Ipv4Addr) -> Destination {
        if self.request.broadcast {
            Destination::Broadcast
        } else if !self.request.client_ip.is_unspecified() {
            Destination::Unicast(self.src_mac, self.request.client_ip)
        } else {
            Destination::Unicast(self.src_mac, your_ip)
        }
    }
}

/// An ACK to an INFORM: configuration without an address or lease, sent to
/// the address the client already has.
fn inform(client: &Client<'_, '_>) -> Result<Reply<'static>, DropReason> {
    let ciaddr = client.request.client_ip;
    if ciaddr.is_unspecified() || ciaddr.is_broadcast() || ciaddr.is_multicast() {
        return Err(DropReason::DhcpIgnored);
    }
    Ok(Reply {
        message_type: DhcpMessageType::Ack,
        your_ip: Ipv4Addr::UNSPECIFIED,
        client_ip: ciaddr,
        configuration: true,
        lease: false,
        message: None,
        destination: Destination::Unicast(client.src_mac, ciaddr),
    })
}

/// The network's mask as an address.
fn netmask(v4: &Ipv4Plan) -> Ipv4Addr {
    let host_bits = 32u32.saturating_sub(u32::from(v4.network().prefix_len()));
    Ipv4Addr::from(u32::MAX.checked_shl(host_bits).unwrap_or(0))
}
