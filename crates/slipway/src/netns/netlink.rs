//! A minimal rtnetlink client: the link, address and route requests that
//! set up the tap, each sent with `NLM_F_ACK` and checked against the
//! kernel's answer.
//!
//! The socket belongs to the network namespace of the thread that opens it,
//! so [`Rtnl::open`] runs inside the target namespace. Messages are built and
//! parsed as bytes in host order, without casting structures.

use std::fmt;
use std::io;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::Duration;

use rustix::net::netlink::SocketAddrNetlink;
use rustix::net::sockopt::Timeout;
use rustix::net::{AddressFamily, RecvFlags, SendFlags, SocketFlags, SocketType};

use super::step_error;

/// How long a request waits for the kernel's answer.
const REPLY_TIMEOUT: Duration = Duration::from_secs(5);
/// Room for one answer: an error echoes the request, which is small.
const RECV_LEN: usize = 8192;

/// `sizeof(struct nlmsghdr)`.
const NLMSG_HDR_LEN: usize = 16;
/// `NLMSG_ERROR`.
const NLMSG_ERROR: u16 = 2;
/// `NLM_F_REQUEST`.
const NLM_F_REQUEST: u16 = 0x1;
/// `NLM_F_ACK`.
const NLM_F_ACK: u16 = 0x4;
/// `NLM_F_EXCL`.
const NLM_F_EXCL: u16 = 0x200;
/// `NLM_F_CREATE`.
const NLM_F_CREATE: u16 = 0x400;
/// `NLM_F_CAPPED`: the error message does not echo the request's payload.
const NLM_F_CAPPED: u16 = 0x100;
/// `NLM_F_ACK_TLVS`: extended-ack attributes follow the error message.
const NLM_F_ACK_TLVS: u16 = 0x200;
/// `NLMSGERR_ATTR_MSG`: the kernel's error string.
const NLMSGERR_ATTR_MSG: u16 = 1;

/// `RTM_NEWLINK`.
const RTM_NEWLINK: u16 = 16;
/// `RTM_NEWADDR`.
const RTM_NEWADDR: u16 = 20;
/// `RTM_NEWROUTE`.
const RTM_NEWROUTE: u16 = 24;

/// `IFLA_ADDRESS`: the link-layer address.
const IFLA_ADDRESS: u16 = 1;
/// `IFLA_MTU`.
const IFLA_MTU: u16 = 4;
/// `IFF_UP`.
const IFF_UP: u32 = 0x1;

/// `IFA_ADDRESS`.
const IFA_ADDRESS: u16 = 1;
/// `IFA_LOCAL`.
const IFA_LOCAL: u16 = 2;
/// `IFA_BROADCAST`.
const IFA_BROADCAST: u16 = 4;
/// `IFA_F_NODAD`: skip duplicate address detection.
const IFA_F_NODAD: u8 = 0x02;

/// `RTA_OIF`.
const RTA_OIF: u16 = 4;
/// `RTA_GATEWAY`.
const RTA_GATEWAY: u16 = 5;
/// `RT_TABLE_MAIN`.
const RT_TABLE_MAIN: u8 = 254;
/// `RTPROT_BOOT`: what `ip route add` marks routes with.
const RTPROT_BOOT: u8 = 3;
/// `RT_SCOPE_UNIVERSE`.
const RT_SCOPE_UNIVERSE: u8 = 0;
/// `RTN_UNICAST`.
const RTN_UNICAST: u8 = 1;

/// `AF_UNSPEC`, `AF_INET` and `AF_INET6` as the one-byte family fields.
const AF_UNSPEC: u8 = 0;
/// See [`AF_UNSPEC`].
const AF_INET: u8 = 2;
/// See [`AF_UNSPEC`].
const AF_INET6: u8 = 10;

/// A `NETLINK_ROUTE` socket in the namespace of the thread that opened it.
pub(crate) struct Rtnl {
    fd: OwnedFd,
    seq: u32,
}

impl Rtnl {
    /// Opens and binds a route netlink socket, with a bounded wait for
    /// answers and extended acks (the kernel's error strings) turned on.
    pub(crate) fn open() -> io::Result<Rtnl> {
        let fd = rustix::net::socket_with(
            AddressFamily::NETLINK,
            SocketType::RAW,
            SocketFlags::CLOEXEC,
            None, // NETLINK_ROUTE is protocol 0
        )
        .map_err(|err| step_error("opening a NETLINK_ROUTE socket", err.into()))?;
        rustix::net::bind(&fd, &SocketAddrNetlink::new(0, 0))
            .map_err(|err| step_error("binding the NETLINK_ROUTE socket", err.into()))?;
        rustix::net::sockopt::set_socket_timeout(&fd, Timeout::Recv, Some(REPLY_TIMEOUT))?;
        // Extended acks only improve messages; kernels without them still
        // answer every request.
        let _ = set_ext_ack(&fd);
        Ok(Rtnl { fd, seq: 0 })
    }

    /// The index of the interface `name`, or `None` if there is none.
    pub(crate) fn link_index(&self, name: &str) -> io::Result<Option<u32>> {
        // SIOCGIFINDEX on any socket looks up the name in the socket's
        // namespace.
        match rustix::net::netdevice::name_to_index(&self.fd, name) {
            Ok(index) => Ok(Some(index)),
            Err(rustix::io::Errno::NODEV) => Ok(None),
            Err(err) => Err(step_error(
                format_args!("looking up interface {name}"),
                err.into(),
            )),
        }
    }

    /// Sets the MAC address and MTU of a link (`RTM_NEWLINK` on an existing
    /// index modifies it).
    pub(crate) fn set_link_address_mtu(
        &mut self,
        link: Link<'_>,
        mac: [u8; 6],
        mtu: u32,
    ) -> io::Result<()> {
        let mut request = Request::new(RTM_NEWLINK, 0, &ifinfomsg(link.index, 0, 0));
        request.attr(IFLA_ADDRESS, &mac);
        request.attr(IFLA_MTU, &mtu.to_ne_bytes());
        let step = format_args!(
            "RTM_NEWLINK {} address {} mtu {mtu}",
            link.name,
            MacDisplay(mac)
        );
        self.execute(step, request)
    }

    /// Brings a link up.
    pub(crate) fn set_link_up(&mut self, link: Link<'_>) -> io::Result<()> {
        let request = Request::new(RTM_NEWLINK, 0, &ifinfomsg(link.index, IFF_UP, IFF_UP));
        self.execute(format_args!("RTM_NEWLINK {} up", link.name), request)
    }

    /// Adds `addr/prefix_len` to a link. IPv4 addresses get the directed
    /// broadcast address where the network has one; IPv6 addresses skip
    /// duplicate address detection.
    pub(crate) fn add_address(
        &mut self,
        link: Link<'_>,
        addr: IpAddr,
        prefix_len: u8,
    ) -> io::Result<()> {
        let request = address_request(link.index, addr, prefix_len);
        let step = format_args!("RTM_NEWADDR {addr}/{prefix_len} dev {}", link.name);
        self.execute(step, request)
    }

    /// Adds the default route of `gateway`'s family via `gateway` out of a
    /// link.
    pub(crate) fn add_default_route(&mut self, link: Link<'_>, gateway: IpAddr) -> io::Result<()> {
        let request = default_route_request(link.index, gateway);
        let step = format_args!("RTM_NEWROUTE default via {gateway} dev {}", link.name);
        self.execute(step, request)
    }

    /// Sends one request and waits for its acknowledgement.
    fn execute(&mut self, step: fmt::Arguments<'_>, request: Request) -> io::Result<()> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let message = request.finish(seq);
        rustix::net::send(&self.fd, &message, SendFlags::empty())
            .map_err(|err| step_error(step, err.into()))?;
        let mut buf = vec![0u8; RECV_LEN];
        loop {
            let (len, _) = match rustix::net::recv(&self.fd, &mut buf[..], RecvFlags::empty()) {
                Ok(received) => received,
                Err(rustix::io::Errno::AGAIN) => {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("{step}: no answer from the kernel within {REPLY_TIMEOUT:?}"),
                    ));
                }
                Err(rustix::io::Errno::INTR) => continue,
                Err(err) => return Err(step_error(step, err.into())),
            };
            match parse_ack(&buf[..len.min(buf.len())], seq) {
                None => continue,
                Some(Ok(())) => return Ok(()),
                Some(Err(nack)) => return Err(nack.into_error(step)),
            }
        }
    }
}

/// An interface by index, with its name for messages.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Link<'a> {
    /// The interface index.
    pub(crate) index: u32,
    /// The interface name.
    pub(crate) name: &'a str,
}

/// Turns on `NETLINK_EXT_ACK`.
fn set_ext_ack(fd: &OwnedFd) -> io::Result<()> {
    let on: libc::c_int = 1;
    // SAFETY: `on` is a live `c_int` and the length passed is its size; the
    // kernel only reads it.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_NETLINK,
            libc::NETLINK_EXT_ACK,
            (&raw const on).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// A netlink request being built: header, family header, attributes.
#[derive(Debug)]
struct Request {
    buf: Vec<u8>,
}

impl Request {
    /// Starts a request of type `kind` with `NLM_F_REQUEST | NLM_F_ACK` and
    /// `extra_flags`, followed by the family header `family_header`.
    fn new(kind: u16, extra_flags: u16, family_header: &[u8]) -> Request {
        let mut buf = Vec::with_capacity(128);
        buf.extend_from_slice(&0u32.to_ne_bytes()); // nlmsg_len, set by finish
        buf.extend_from_slice(&kind.to_ne_bytes());
        buf.extend_from_slice(&(NLM_F_REQUEST | NLM_F_ACK | extra_flags).to_ne_bytes());
        buf.extend_from_slice(&0u32.to_ne_bytes()); // nlmsg_seq, set by finish
        buf.extend_from_slice(&0u32.to_ne_bytes()); // nlmsg_pid: the kernel fills it
        buf.extend_from_slice(family_header);
        pad(&mut buf);
        Request { buf }
    }

    /// Appends one attribute (`struct rtattr` and its value, padded).
    fn attr(&mut self, kind: u16, value: &[u8]) {
        let len = u16::try_from(4 + value.len()).unwrap_or(u16::MAX);
        self.buf.extend_from_slice(&len.to_ne_bytes());
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        self.buf.extend_from_slice(value);
        pad(&mut self.buf);
    }

    /// The finished message with its length and sequence number.
    fn finish(mut self, seq: u32) -> Vec<u8> {
        let len = u32::try_from(self.buf.len()).unwrap_or(u32::MAX);
        self.buf[0..4].copy_from_slice(&len.to_ne_bytes());
        self.buf[8..12].copy_from_slice(&seq.to_ne_bytes());
        self.buf
    }
}

/// Pads `buf` to the 4-byte netlink alignment.
fn pad(buf: &mut Vec<u8>) {
    buf.resize(buf.len().next_multiple_of(4), 0);
}

/// `struct ifinfomsg` for link `index`.
fn ifinfomsg(index: u32, flags: u32, change: u32) -> [u8; 16] {
    let mut header = [0u8; 16];
    header[0] = AF_UNSPEC;
    // ifi_type stays 0; ifi_index is an int, and kernel indexes fit.
    header[4..8].copy_from_slice(&index.to_ne_bytes());
    header[8..12].copy_from_slice(&flags.to_ne_bytes());
    header[12..16].copy_from_slice(&change.to_ne_bytes());
    header
}

/// The `RTM_NEWADDR` request that adds `addr/prefix_len` to link `index`.
fn address_request(index: u32, addr: IpAddr, prefix_len: u8) -> Request {
    let (family, flags) = match addr {
        IpAddr::V4(_) => (AF_INET, 0),
        IpAddr::V6(_) => (AF_INET6, IFA_F_NODAD),
    };
    // struct ifaddrmsg: family, prefixlen, flags, scope, index.
    let mut header = [0u8; 8];
    header[0] = family;
    header[1] = prefix_len;
    header[2] = flags;
    header[3] = RT_SCOPE_UNIVERSE;
    header[4..8].copy_from_slice(&index.to_ne_bytes());
    let mut request = Request::new(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, &header);
    match addr {
        IpAddr::V4(v4) => {
            request.attr(IFA_LOCAL, &v4.octets());
            request.attr(IFA_ADDRESS, &v4.octets());
            if prefix_len < 31 {
                let host_mask = u32::MAX.checked_shr(u32::from(prefix_len)).unwrap_or(0);
                let broadcast = u32::from(v4) | host_mask;
                request.attr(IFA_BROADCAST, &broadcast.to_be_bytes());
            }
        }
        IpAddr::V6(v6) => {
            request.attr(IFA_LOCAL, &v6.octets());
            request.attr(IFA_ADDRESS, &v6.octets());
        }
    }
    request
}

/// The `RTM_NEWROUTE` request for the default route via `gateway` out of
/// link `index`.
fn default_route_request(index: u32, gateway: IpAddr) -> Request {
    let family = match gateway {
        IpAddr::V4(_) => AF_INET,
        IpAddr::V6(_) => AF_INET6,
    };
    // struct rtmsg: family, dst_len, src_len, tos, table, protocol, scope,
    // type, flags.
    let header = [
        family,
        0,
        0,
        0,
        RT_TABLE_MAIN,
        RTPROT_BOOT,
        RT_SCOPE_UNIVERSE,
        RTN_UNICAST,
        0,
        0,
        0,
        0,
    ];
    let mut request = Request::new(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL, &header);
    match gateway {
        IpAddr::V4(v4) => request.attr(RTA_GATEWAY, &v4.octets()),
        IpAddr::V6(v6) => request.attr(RTA_GATEWAY, &v6.octets()),
    }
    request.attr(RTA_OIF, &index.to_ne_bytes());
    request
}

/// A negative acknowledgement: the errno and the kernel's message, if any.
#[derive(Debug, PartialEq, Eq)]
struct Nack {
    errno: i32,
    message: Option<String>,
}

impl Nack {
    /// The error naming `step`, the errno and the kernel's message.
    fn into_error(self, step: fmt::Arguments<'_>) -> io::Error {
        let os = io::Error::from_raw_os_error(self.errno);
        let text = match self.message {
            Some(message) => format!("{step}: {os} (kernel: {message})"),
            None => format!("{step}: {os}"),
        };
        io::Error::new(os.kind(), text)
    }
}

/// Finds the acknowledgement of request `seq` among the messages in `buf`:
/// `None` if there is none, else success or the negative acknowledgement.
/// Malformed input ends the search.
fn parse_ack(buf: &[u8], seq: u32) -> Option<Result<(), Nack>> {
    let mut rest = buf;
    while rest.len() >= NLMSG_HDR_LEN {
        let len = usize::try_from(read_u32(rest, 0)?).ok()?;
        if len < NLMSG_HDR_LEN || len > rest.len() {
            return None;
        }
        let message = &rest[..len];
        let kind = read_u16(message, 4)?;
        let flags = read_u16(message, 6)?;
        if kind == NLMSG_ERROR && read_u32(message, 8)? == seq {
            let error = i32::from_ne_bytes(message.get(16..20)?.try_into().ok()?);
            if error == 0 {
                return Some(Ok(()));
            }
            return Some(Err(Nack {
                errno: error.checked_neg().unwrap_or(libc::EIO),
                message: ext_ack_message(message, flags),
            }));
        }
        rest = rest.get(len.next_multiple_of(4)..).unwrap_or_default();
    }
    None
}

/// The `NLMSGERR_ATTR_MSG` string of an error message, if it has one.
fn ext_ack_message(message: &[u8], flags: u16) -> Option<String> {
    if flags & NLM_F_ACK_TLVS == 0 {
        return None;
    }
    // struct nlmsgerr: the error, then the request's header, then (unless
    // capped) the rest of the request; the attributes follow.
    let echoed_header = 20;
    let echoed_len = if flags & NLM_F_CAPPED == 0 {
        usize::try_from(read_u32(message, echoed_header)?).ok()?
    } else {
        NLMSG_HDR_LEN
    };
    let mut attrs = message.get((echoed_header + echoed_len).next_multiple_of(4)..)?;
    while attrs.len() >= 4 {
        let attr_len = usize::from(read_u16(attrs, 0)?);
        let kind = read_u16(attrs, 2)?;
        if attr_len < 4 || attr_len > attrs.len() {
            return None;
        }
        if kind == NLMSGERR_ATTR_MSG {
            let value = &attrs[4..attr_len];
            let text = value.split(|&b| b == 0).next().unwrap_or_default();
            return Some(String::from_utf8_lossy(text).into_owned());
        }
        attrs = attrs
            .get(attr_len.next_multiple_of(4)..)
            .unwrap_or_default();
    }
    None
}

/// The host-order `u32` at `at`, if `buf` holds it.
fn read_u32(buf: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(buf.get(at..at + 4)?.try_into().ok()?))
}

/// The host-order `u16` at `at`, if `buf` holds it.
fn read_u16(buf: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(buf.get(at..at + 2)?.try_into().ok()?))
}

/// A MAC address as `aa:bb:cc:dd:ee:ff`.
pub(crate) struct MacDisplay(pub(crate) [u8; 6]);

impl fmt::Display for MacDisplay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;

    /// An error answer to request `seq`, echoing a 16-byte request header
    /// (capped) and carrying `text` as the extended-ack message.
    fn error_answer(seq: u32, errno: i32, text: Option<&str>) -> Vec<u8> {
        let mut body = Vec::new();
        body.extend_from_slice(&(-errno).to_ne_bytes());
        let mut echoed = [0u8; 16];
        echoed[0..4].copy_from_slice(&16u32.to_ne_bytes());
        echoed[8..12].copy_from_slice(&seq.to_ne_bytes());
        body.extend_from_slice(&echoed);
        let mut flags = NLM_F_CAPPED;
        if let Some(text) = text {
            flags |= NLM_F_ACK_TLVS;
            let mut value = text.as_bytes().to_vec();
            value.push(0);
            let attr_len = u16::try_from(4 + value.len()).unwrap_or(u16::MAX);
            body.extend_from_slice(&attr_len.to_ne_bytes());
            body.extend_from_slice(&NLMSGERR_ATTR_MSG.to_ne_bytes());
            body.extend_from_slice(&value);
            pad(&mut body);
        }
        let mut message = Vec::new();
        let len = u32::try_from(NLMSG_HDR_LEN + body.len()).unwrap_or(u32::MAX);
        message.extend_from_slice(&len.to_ne_bytes());
        message.extend_from_slice(&NLMSG_ERROR.to_ne_bytes());
        message.extend_from_slice(&flags.to_ne_bytes());
        message.extend_from_slice(&seq.to_ne_bytes());
        message.extend_from_slice(&0u32.to_ne_bytes());
        message.extend_from_slice(&body);
        message
    }

    #[test]
    fn default_route_request_has_gateway_and_output_interface() {
        let message = default_route_request(7, IpAddr::V4(Ipv4Addr::new(10, 0, 2, 2))).finish(9);
        assert_eq!(read_u32(&message, 0), Some(44));
        assert_eq!(read_u16(&message, 4), Some(RTM_NEWROUTE));
        assert_eq!(
            read_u16(&message, 6),
            Some(NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL)
        );
        assert_eq!(read_u32(&message, 8), Some(9));
        assert_eq!(
            &message[16..28],
            &[AF_INET, 0, 0, 0, 254, 3, 0, 1, 0, 0, 0, 0]
        );
        // RTA_GATEWAY 10.0.2.2, then RTA_OIF 7.
        assert_eq!(read_u16(&message, 28), Some(8));
        assert_eq!(read_u16(&message, 30), Some(RTA_GATEWAY));
        assert_eq!(&message[32..36], &[10, 0, 2, 2]);
        assert_eq!(read_u16(&message, 36), Some(8));
        assert_eq!(read_u16(&message, 38), Some(RTA_OIF));
        assert_eq!(read_u32(&message, 40), Some(7));
    }

    #[test]
    fn ipv4_address_request_carries_broadcast() {
        let message = address_request(3, IpAddr::V4(Ipv4Addr::new(10, 0, 2, 15)), 24).finish(1);
        assert_eq!(&message[16..24], &[AF_INET, 24, 0, 0, 3, 0, 0, 0]);
        // IFA_LOCAL, IFA_ADDRESS, IFA_BROADCAST, 8 bytes each.
        assert_eq!(message.len(), 24 + 3 * 8);
        assert_eq!(read_u16(&message, 42), Some(IFA_BROADCAST));
        assert_eq!(&message[44..48], &[10, 0, 2, 255]);
    }

    #[test]
    fn ipv4_point_to_point_address_has_no_broadcast() {
        let message = address_request(3, IpAddr::V4(Ipv4Addr::new(10, 0, 2, 15)), 32).finish(1);
        assert_eq!(message.len(), 24 + 2 * 8);
    }

    #[test]
    fn ipv6_address_request_skips_dad() {
        let addr = Ipv6Addr::new(0xfd00, 0, 0, 2, 0, 0, 0, 0x15);
        let message = address_request(3, IpAddr::V6(addr), 64).finish(1);
        assert_eq!(&message[16..20], &[AF_INET6, 64, IFA_F_NODAD, 0]);
        assert_eq!(read_u16(&message, 26), Some(IFA_LOCAL));
        assert_eq!(&message[28..44], &addr.octets());
    }

    #[test]
    fn link_up_request_sets_and_changes_only_up() {
        let message = Request::new(RTM_NEWLINK, 0, &ifinfomsg(5, IFF_UP, IFF_UP)).finish(2);
        assert_eq!(message.len(), 32);
        assert_eq!(read_u32(&message, 20), Some(5));
        assert_eq!(read_u32(&message, 24), Some(IFF_UP));
        assert_eq!(read_u32(&message, 28), Some(IFF_UP));
    }

    #[test]
    fn success_ack_of_the_request_is_found() {
        let mut answer = error_answer(4, 0, None);
        // A zero error is a success acknowledgement.
        answer[16..20].copy_from_slice(&0i32.to_ne_bytes());
        assert_eq!(parse_ack(&answer, 4), Some(Ok(())));
    }

    #[test]
    fn error_ack_carries_errno_and_kernel_message() {
        let answer = error_answer(4, libc::ENETUNREACH, Some("Nexthop has invalid gateway"));
        assert_eq!(
            parse_ack(&answer, 4),
            Some(Err(Nack {
                errno: libc::ENETUNREACH,
                message: Some("Nexthop has invalid gateway".into()),
            }))
        );
    }

    #[test]
    fn error_names_step_errno_and_kernel_message() {
        let nack = Nack {
            errno: libc::ENETUNREACH,
            message: Some("Nexthop has invalid gateway".into()),
        };
        let err = nack.into_error(format_args!("RTM_NEWROUTE default via 10.0.2.2 dev eth0"));
        let text = err.to_string();
        assert!(
            text.starts_with("RTM_NEWROUTE default via 10.0.2.2 dev eth0: Network is unreachable"),
            "{text}"
        );
        assert!(
            text.ends_with("(kernel: Nexthop has invalid gateway)"),
            "{text}"
        );
    }

    #[test]
    fn answers_to_other_requests_are_skipped() {
        let mut answers = error_answer(3, libc::EEXIST, None);
        answers.extend_from_slice(&error_answer(4, libc::EINVAL, None));
        assert_eq!(
            parse_ack(&answers, 4),
            Some(Err(Nack {
                errno: libc::EINVAL,
                message: None
            }))
        );
        assert_eq!(parse_ack(&answers, 5), None);
    }

    #[test]
    fn truncated_answers_never_panic() {
        let answer = error_answer(4, libc::ENETUNREACH, Some("message"));
        for len in 0..answer.len() {
            let _ = parse_ack(&answer[..len], 4);
        }
        let mut bad_len = answer.clone();
        bad_len[0..4].copy_from_slice(&3u32.to_ne_bytes());
        assert_eq!(parse_ack(&bad_len, 4), None);
    }

    #[test]
    fn mac_displays_as_colon_hex() {
        assert_eq!(
            MacDisplay([0x52, 0x54, 0, 0x12, 0x34, 0x56]).to_string(),
            "52:54:00:12:34:56"
        );
    }
}
