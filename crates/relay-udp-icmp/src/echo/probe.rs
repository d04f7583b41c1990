//! Which kind of ICMP echo socket this process may open, and if none, why.

use std::fmt;
use std::io;

use nat_core::IpFamily;

use super::EchoKind;

/// Where the kernel's allowance for ping sockets is set.
pub(crate) const PING_GROUP_RANGE_PATH: &str = "/proc/sys/net/ipv4/ping_group_range";

/// What [`probe_echo`] found: the kind of socket ICMP echo will use, or why
/// there is none.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EchoAvailability {
    /// Unprivileged ping sockets work.
    PingSocket,
    /// Ping sockets are refused; raw sockets work (the process has
    /// `CAP_NET_RAW`).
    Raw {
        /// The errno that refused the ping socket (`EACCES`).
        ping_errno: i32,
        /// `net.ipv4.ping_group_range` when it was read.
        ping_group_range: Option<(u32, u32)>,
    },
    /// Neither kind works: the backend warns once and answers no echo.
    Unavailable {
        /// The errno that refused the ping socket.
        ping_errno: i32,
        /// The errno that refused the raw socket; `None` when the ping
        /// socket failed for a reason a raw socket would not fix (no IPv6,
        /// say) and no raw socket was tried.
        raw_errno: Option<i32>,
        /// `net.ipv4.ping_group_range` when it was read.
        ping_group_range: Option<(u32, u32)>,
    },
}

impl EchoAvailability {
    /// The kind of socket that works, if any.
    #[must_use]
    pub fn kind(&self) -> Option<EchoKind> {
        match self {
            EchoAvailability::PingSocket => Some(EchoKind::PingSocket),
            EchoAvailability::Raw { .. } => Some(EchoKind::Raw),
            EchoAvailability::Unavailable { .. } => None,
        }
    }

    /// A sentence for the log saying which kind is used and why, or why
    /// echo is unavailable and what would enable it.
    #[must_use]
    pub fn reason(&self) -> String {
        self.to_string()
    }

    pub(crate) fn refused(
        ping: &io::Error,
        raw: Option<&io::Error>,
        raw_works: bool,
    ) -> EchoAvailability {
        let ping_errno = ping.raw_os_error().unwrap_or(libc::EIO);
        let ping_group_range = read_ping_group_range();
        match raw {
            None if raw_works => EchoAvailability::Raw {
                ping_errno,
                ping_group_range,
            },
            _ => EchoAvailability::Unavailable {
                ping_errno,
                raw_errno: raw.map(|e| e.raw_os_error().unwrap_or(libc::EIO)),
                ping_group_range,
            },
        }
    }
}

fn describe_ping_refusal(
    f: &mut fmt::Formatter<'_>,
    errno: i32,
    range: Option<(u32, u32)>,
) -> fmt::Result {
    write!(
        f,
        "ping sockets are refused ({})",
        io::Error::from_raw_os_error(errno)
    )?;
    if is_refusal_errno(errno) {
        match range {
            Some((lo, hi)) => write!(
                f,
                ": no group of this process is in net.ipv4.ping_group_range \"{lo} {hi}\""
            )?,
            None => f.write_str(": no group of this process is in net.ipv4.ping_group_range")?,
        }
    }
    Ok(())
}

impl fmt::Display for EchoAvailability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            EchoAvailability::PingSocket => f.write_str("ICMP echo uses unprivileged ping sockets"),
            EchoAvailability::Raw {
                ping_errno,
                ping_group_range,
            } => {
                f.write_str("ICMP echo uses raw sockets (CAP_NET_RAW): ")?;
                describe_ping_refusal(f, ping_errno, ping_group_range)
            }
            EchoAvailability::Unavailable {
                ping_errno,
                raw_errno,
                ping_group_range,
            } => {
                f.write_str("ICMP echo is unavailable: ")?;
                describe_ping_refusal(f, ping_errno, ping_group_range)?;
                if let Some(raw) = raw_errno {
                    write!(
                        f,
                        ", and raw sockets are refused ({}) without CAP_NET_RAW",
                        io::Error::from_raw_os_error(raw)
                    )?;
                }
                if is_refusal_errno(ping_errno) {
                    f.write_str(
                        "; to enable it, add a group of this process to \
                         net.ipv4.ping_group_range (e.g. sysctl -w \
                         net.ipv4.ping_group_range=\"0 2147483647\")",
                    )?;
                }
                Ok(())
            }
        }
    }
}

/// Whether opening a socket failed for lack of permission, which the other
/// kind of socket may not lack.
pub(crate) fn is_refusal(err: &io::Error) -> bool {
    err.raw_os_error().is_some_and(is_refusal_errno)
}

fn is_refusal_errno(errno: i32) -> bool {
    errno == libc::EACCES || errno == libc::EPERM
}

/// Parses the two numbers of `ping_group_range`.
pub(crate) fn parse_ping_group_range(text: &str) -> Option<(u32, u32)> {
    let mut words = text.split_ascii_whitespace();
    let lo = words.next()?.parse().ok()?;
    let hi = words.next()?.parse().ok()?;
    Some((lo, hi))
}

fn read_ping_group_range() -> Option<(u32, u32)> {
    std::fs::read_to_string(PING_GROUP_RANGE_PATH)
        .ok()
        .as_deref()
        .and_then(parse_ping_group_range)
}

/// Finds out which kind of echo socket of `family` this process may open,
/// by opening (and closing) one: a ping socket first, a raw socket when ping
/// sockets are refused. Sends nothing.
#[must_use]
pub fn probe_echo(family: IpFamily) -> EchoAvailability {
    let v6 = family == IpFamily::V6;
    let ping = match super::open_socket(v6, EchoKind::PingSocket) {
        Ok(_) => return EchoAvailability::PingSocket,
        Err(e) => e,
    };
    if !is_refusal(&ping) {
        return EchoAvailability::refused(&ping, None, false);
    }
    match super::open_socket(v6, EchoKind::Raw) {
        Ok(_) => EchoAvailability::refused(&ping, None, true),
        Err(raw) => EchoAvailability::refused(&ping, Some(&raw), false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ping_group_range_parses() {
        assert_eq!(parse_ping_group_range("1\t0\n"), Some((1, 0)));
        assert_eq!(
            parse_ping_group_range("0 2147483647"),
            Some((0, 2_147_483_647))
        );
        assert_eq!(parse_ping_group_range("1"), None);
        assert_eq!(parse_ping_group_range(""), None);
    }

    #[test]
    fn unavailable_says_what_refused_and_how_to_fix_it() {
        let a = EchoAvailability::Unavailable {
            ping_errno: libc::EACCES,
            raw_errno: Some(libc::EPERM),
            ping_group_range: Some((1, 0)),
        };
        let text = a.reason();
        assert!(text.contains("unavailable"), "{text}");
        assert!(text.contains("\"1 0\""), "{text}");
        assert!(text.contains("CAP_NET_RAW"), "{text}");
        assert!(text.contains("sysctl"), "{text}");
        assert_eq!(a.kind(), None);
    }

    #[test]
    fn raw_fallback_names_the_refusal() {
        let a = EchoAvailability::Raw {
            ping_errno: libc::EACCES,
            ping_group_range: Some((1, 0)),
        };
        assert_eq!(a.kind(), Some(EchoKind::Raw));
        assert!(a.reason().contains("raw sockets"));
        assert_eq!(
            EchoAvailability::PingSocket.kind(),
            Some(EchoKind::PingSocket)
        );
    }
}
