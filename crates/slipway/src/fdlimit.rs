//! How many file descriptors flows may use: every open flow holds one host
//! socket, and the soft `RLIMIT_NOFILE` is often 1024 while the default
//! flow limits allow 82 944 flows.
//!
//! [`fd_budget`] raises the soft limit to the hard one (what any process
//! may do) and says how many descriptors are left for flows once
//! [`FD_RESERVE`] and the forwarded ports' listeners are set aside;
//! [`FdBudget::limits`] turns that into flow limits
//! ([`Limits::for_fd_budget`]). The `slipway` command does both at start;
//! an embedder may too, or set its own [`Limits`], which then win. Either
//! way, a socket that cannot be opened for lack of descriptors refuses
//! only its new flow, counted in
//! [`BackendCounters::fd_refusals`](crate::BackendCounters::fd_refusals).

use std::io;

use flow_table::Limits;
use nat_core::Rules;
use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};

/// Descriptors kept back from flows for everything else a frontend holds:
/// stdio, the epoll sets, eventfds, the signalfd and pidfd, the tap or the
/// stream socket and its client, the vhost-user socket with its memory
/// regions and queue eventfds, the DNS forwarder's socket, a pcap file, and
/// room for accepting a connection before refusing it. The forwarded
/// ports' listeners come on top (see [`fd_budget`]).
pub const FD_RESERVE: u64 = 64;

/// Where `RLIMIT_NOFILE` cannot go when the hard limit is unlimited: the
/// kernel's `fs.nr_open` default.
const NR_OPEN_DEFAULT: u64 = 1 << 20;

/// What [`fd_budget`] found and did.
#[derive(Debug)]
pub struct FdBudget {
    /// The soft limit before.
    pub soft_before: u64,
    /// The soft limit now: the hard limit, unless raising failed.
    pub soft: u64,
    /// Descriptors set aside: [`FD_RESERVE`] plus one per listener.
    pub reserved: u64,
    /// Why the soft limit could not be raised, if it could not; the
    /// budget of the unchanged limit is still a safe one.
    pub raise_error: Option<io::Error>,
}

impl FdBudget {
    /// Descriptors flows may hold: the soft limit less the reserve.
    #[must_use]
    pub fn for_flows(&self) -> u64 {
        self.soft.saturating_sub(self.reserved)
    }

    /// Flow limits that fit [`for_flows`](Self::for_flows).
    #[must_use]
    pub fn limits(&self) -> Limits {
        Limits::for_fd_budget(self.for_flows())
    }
}

/// Raises this process's soft `RLIMIT_NOFILE` to its hard limit and
/// returns the budget of descriptors for flows under `rules` (whose port
/// forwards each hold a listener).
///
/// A refused raise is not an error: the budget of the unchanged limit is
/// still a safe one, and [`FdBudget::raise_error`] says why.
#[must_use]
pub fn fd_budget(rules: &Rules) -> FdBudget {
    // A forward that names no address listens on both families.
    let listeners: usize = [&rules.tcp_forwards, &rules.udp_forwards]
        .into_iter()
        .flat_map(nat_core::PortForwards::iter)
        .map(|forward| if forward.bind.is_some() { 1 } else { 2 })
        .sum();
    let reserved = FD_RESERVE + listeners as u64;
    let limit = getrlimit(Resource::Nofile);
    let hard = limit.maximum.unwrap_or(NR_OPEN_DEFAULT);
    let soft_before = limit.current.unwrap_or(hard);
    let mut budget = FdBudget {
        soft_before,
        soft: soft_before,
        reserved,
        raise_error: None,
    };
    if soft_before >= hard {
        return budget;
    }
    let raised = Rlimit {
        current: Some(hard),
        maximum: limit.maximum,
    };
    match setrlimit(Resource::Nofile, raised) {
        Ok(()) => budget.soft = hard,
        Err(error) => budget.raise_error = Some(error.into()),
    }
    budget
}

/// Whether `error` says the process or the system is out of file
/// descriptors (`EMFILE`, `ENFILE`).
#[must_use]
pub fn is_fd_exhaustion(error: &io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(code) if code == libc::EMFILE || code == libc::ENFILE
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_is_the_soft_limit_less_the_reserve() {
        let budget = FdBudget {
            soft_before: 1024,
            soft: 4096,
            reserved: FD_RESERVE + 2,
            raise_error: None,
        };
        assert_eq!(budget.for_flows(), 4096 - 66);
        assert!(budget.limits().total() <= 4096 - 66);
        let tiny = FdBudget { soft: 10, ..budget };
        assert_eq!(tiny.for_flows(), 0);
        assert_eq!(tiny.limits().total(), 0);
    }

    #[test]
    fn fd_exhaustion_is_emfile_or_enfile() {
        assert!(is_fd_exhaustion(&io::Error::from_raw_os_error(
            libc::EMFILE
        )));
        assert!(is_fd_exhaustion(&io::Error::from_raw_os_error(
            libc::ENFILE
        )));
        assert!(!is_fd_exhaustion(&io::Error::from_raw_os_error(
            libc::ENOBUFS
        )));
        assert!(!is_fd_exhaustion(&io::Error::other("no errno")));
    }
}
