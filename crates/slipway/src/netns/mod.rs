//! The Linux network-namespace side of `slipway run` and `slipway attach`:
//! a namespace handle, the tap device inside it (configured over rtnetlink),
//! and commands spawned into it.
//!
//! - [`Namespace`] owns a file descriptor of a network namespace (nsfs). A
//!   namespace made by [`Namespace::create`] lives exactly as long as that
//!   descriptor, so dropping the handle is the whole clean-up.
//! - [`open_tap`] creates the tap device in the namespace, sets its MAC, MTU,
//!   addresses and default routes, turns IPv6 on for SLAAC from slipway's
//!   router advertisements (or off), brings it and `lo` up, and hands back
//!   the descriptor the event loop reads frames from and writes frames to.
//! - [`Ipv6Watch`] reads what the namespace's kernel has configured for
//!   IPv6 on an interface: addresses and the default router.
//! - [`spawn_in`] starts a command in the namespace, optionally with its own
//!   `/etc/resolv.conf` (from [`write_resolv_conf`]) bind-mounted in a private
//!   mount namespace.
//!
//! Invariant: nothing here changes the namespaces of the calling thread. Work
//! that must happen inside a namespace runs on a short-lived thread
//! ([`Namespace::run_in`]) or in a child process between `fork` and `exec`.
//!
//! These calls need `CAP_SYS_ADMIN` over the namespaces they make: root has
//! it, and an unprivileged process gets it by moving into a user namespace of
//! its own first ([`enter_user_namespace`], what `slipway run` does, as pasta
//! does). That step changes the whole process, so it is the one exception to
//! the invariant above, taken once at start-up.

mod ipv6;
mod netlink;
mod spawn;
mod tap;
mod userns;

use std::fmt;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::thread;

use rustix::fs::{Mode, OFlags};
use rustix::thread::{LinkNameSpaceType, UnshareFlags};

pub use ipv6::{Ipv6State, Ipv6Watch};
pub use spawn::{command_in, spawn_in, write_resolv_conf};
pub use tap::open_tap;
pub use userns::enter_user_namespace;

/// The message of the error [`Namespace::create`] returns without the
/// privilege to create a network namespace.
const NEEDS_ROOT: &str = "creating a network namespace needs CAP_SYS_ADMIN: run as root, \
                          or call enter_user_namespace() first (slipway run does)";

/// `NS_GET_NSTYPE` from `<linux/nsfs.h>`: `_IO(0xb7, 0x3)`.
const NS_GET_NSTYPE: libc::Ioctl = 0xb703;

/// A Linux network namespace, held open through a file descriptor of it.
///
/// The kernel keeps a namespace alive while any process is in it, any bind
/// mount of it exists, or any descriptor of it is open; this handle is such a
/// descriptor.
pub struct Namespace {
    fd: OwnedFd,
    origin: Origin,
}

/// Where a [`Namespace`] came from, which decides what [`Namespace::is_alive`]
/// can check.
#[derive(Debug)]
enum Origin {
    /// Made by [`Namespace::create`]; the handle's descriptor is what keeps it.
    Created,
    /// Opened through a path (a bind mount such as `/run/netns/NAME`, or
    /// `/proc/PID/ns/net`); the identity of the namespace file when opened.
    Path { path: PathBuf, dev: u64, ino: u64 },
}

impl Namespace {
    /// Creates a new, empty network namespace. Its only interface is `lo`,
    /// which is down.
    ///
    /// A short-lived helper thread calls `unshare(CLONE_NEWNET)`, opens
    /// `/proc/thread-self/ns/net` and exits; the namespace then lives while
    /// the returned handle does.
    ///
    /// # Errors
    ///
    /// Without `CAP_SYS_ADMIN`, an error of kind
    /// [`io::ErrorKind::PermissionDenied`] saying that root is needed; any
    /// other failure of `unshare` or `open`.
    pub fn create() -> io::Result<Namespace> {
        let fd = thread::scope(|scope| {
            let helper = thread::Builder::new()
                .name("slipway-netns".into())
                .spawn_scoped(scope, || {
                    // SAFETY: `CLONE_NEWNET` changes only this thread's
                    // network namespace; no file descriptor table is
                    // unshared, so no descriptor becomes invisible to another
                    // thread.
                    unsafe { rustix::thread::unshare_unsafe(UnshareFlags::NEWNET) }.map_err(
                        |err| match err {
                            rustix::io::Errno::PERM => {
                                io::Error::new(io::ErrorKind::PermissionDenied, NEEDS_ROOT)
                            }
                            err => step_error("unshare(CLONE_NEWNET)", err.into()),
                        },
                    )?;
                    rustix::fs::open(
                        "/proc/thread-self/ns/net",
                        OFlags::RDONLY | OFlags::CLOEXEC,
                        Mode::empty(),
                    )
                    .map_err(|err| step_error("opening /proc/thread-self/ns/net", err.into()))
                })?;
            join(helper)
        })?;
        Ok(Namespace {
            fd,
            origin: Origin::Created,
        })
    }

    /// Opens an existing network namespace: `path_or_pid` is either a path
    /// to a namespace file (a bind mount such as `/run/netns/NAME`, or
    /// `/proc/PID/ns/net`) or a process id in decimal, which stands for
    /// `/proc/PID/ns/net`.
    ///
    /// # Errors
    ///
    /// The path cannot be opened (the error names it), or it is not a
    /// network namespace ([`io::ErrorKind::InvalidInput`]).
    pub fn open(path_or_pid: &str) -> io::Result<Namespace> {
        let path = if !path_or_pid.is_empty() && path_or_pid.bytes().all(|b| b.is_ascii_digit()) {
            PathBuf::from(format!("/proc/{path_or_pid}/ns/net"))
        } else {
            PathBuf::from(path_or_pid)
        };
        let fd = rustix::fs::open(&path, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())
            .map_err(|err| step_error(format_args!("opening {}", path.display()), err.into()))?;
        check_is_network_namespace(fd.as_fd(), &path)?;
        let stat = rustix::fs::fstat(&fd)?;
        Ok(Namespace {
            fd,
            origin: Origin::Path {
                path,
                dev: stat.st_dev,
                ino: stat.st_ino,
            },
        })
    }

    /// The descriptor of the namespace.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Runs `f` on a new thread that has `setns()`'d into this namespace and
    /// returns its result. Sockets and devices `f` creates belong to this
    /// namespace and stay there after the thread ends. A panic in `f` is
    /// resumed on the calling thread.
    ///
    /// # Errors
    ///
    /// The thread cannot be started or cannot enter the namespace; or what
    /// `f` returns.
    pub fn run_in<T: Send>(&self, f: impl FnOnce() -> io::Result<T> + Send) -> io::Result<T> {
        let fd = self.fd();
        thread::scope(|scope| {
            let worker = thread::Builder::new()
                .name("slipway-netns".into())
                .spawn_scoped(scope, move || {
                    rustix::thread::move_into_link_name_space(fd, Some(LinkNameSpaceType::Network))
                        .map_err(|err| {
                            step_error("setns into the network namespace", err.into())
                        })?;
                    f()
                })?;
            join(worker)
        })
    }

    /// Whether the namespace is still there for the one who named it.
    ///
    /// - Made by [`Namespace::create`]: always true; this handle keeps it.
    /// - Opened by path or PID: true while the path still names this same
    ///   namespace (same device and inode). It turns false when the process
    ///   of `/proc/PID/ns/net` has exited (already as a zombie, before it is
    ///   reaped) or its PID now belongs to a process in another namespace,
    ///   and when the bind mount was removed (`ip netns delete`). The namespace itself may live on in other
    ///   processes; for `slipway attach` the namespace is gone once the one
    ///   it was pointed at is.
    pub fn is_alive(&self) -> bool {
        match &self.origin {
            Origin::Created => true,
            Origin::Path { path, dev, ino } => {
                rustix::fs::stat(path).is_ok_and(|stat| stat.st_dev == *dev && stat.st_ino == *ino)
            }
        }
    }

    /// The path this namespace was opened through, if it was opened rather
    /// than created.
    pub fn path(&self) -> Option<&Path> {
        match &self.origin {
            Origin::Created => None,
            Origin::Path { path, .. } => Some(path),
        }
    }
}

impl AsFd for Namespace {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd()
    }
}

impl fmt::Debug for Namespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Namespace")
            .field("fd", &self.fd.as_raw_fd())
            .field("origin", &self.origin)
            .finish()
    }
}

/// How [`open_tap`] sets up the tap device inside the namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TapConfig {
    /// The interface name in the namespace (at most 15 bytes, e.g. `eth0`).
    pub name: String,
    /// The guest's MAC address: the tap's own address in the namespace.
    pub mac: [u8; 6],
    /// The interface MTU.
    pub mtu: u32,
    /// The IPv4 address and prefix length, if any.
    pub addr_v4: Option<(Ipv4Addr, u8)>,
    /// The IPv4 default gateway, if any; it must be inside `addr_v4`'s
    /// network (on-link).
    pub gateway_v4: Option<Ipv4Addr>,
    /// A static IPv6 address and prefix length, if any. It is added without
    /// duplicate address detection, so it is usable at once.
    pub addr_v6: Option<(Ipv6Addr, u8)>,
    /// The IPv6 default gateway, if any; on-link (inside `addr_v6`'s prefix,
    /// or link-local).
    pub gateway_v6: Option<Ipv6Addr>,
    /// Whether the namespace's kernel runs IPv6 on the tap, and so
    /// configures itself from router advertisements.
    pub ipv6: TapIpv6,
    /// What the tap device takes off the namespace's kernel.
    pub offload: TapOffload,
}

/// Whether the namespace's kernel runs IPv6 on the tap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TapIpv6 {
    /// Off (`disable_ipv6`): no addresses, no IPv6 frames at all. No static
    /// IPv6 address or gateway may be given.
    Disabled,
    /// On, and configured by the kernel from router advertisements
    /// (SLAAC): the link-local address from the MAC (EUI-64), global
    /// addresses from the advertised prefix, the default route via the
    /// advertising router, all usable at once (no duplicate address
    /// detection: slipway is the only other node on the link). Also where
    /// forwarding is on. A static address and gateway come on top.
    Autoconf,
}

/// The offloads a tap device takes off the namespace's kernel, and so the
/// form of the frames on its descriptor.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum TapOffload {
    /// None: each read and write is one plain Ethernet frame whose
    /// checksums the namespace's kernel computed.
    #[default]
    None,
    /// Each frame is preceded by a [`VNET_HDR_LEN`]-byte `virtio_net_hdr`
    /// (`IFF_VNET_HDR`), and the kernel leaves TCP and UDP checksums
    /// partial (`TUN_F_CSUM`), saying so in the header.
    Checksum,
    /// As [`TapOffload::Checksum`], and the kernel also hands over TCP
    /// segments of up to 64 KiB whatever the MTU, for the reader to
    /// segment (`TUN_F_TSO4 | TUN_F_TSO6`).
    ChecksumTso,
}

impl TapOffload {
    /// Whether frames on the descriptor carry a `virtio_net_hdr`.
    #[must_use]
    pub fn has_vnet_hdr(self) -> bool {
        !matches!(self, TapOffload::None)
    }
}

/// Bytes of the `virtio_net_hdr` in front of each frame on a tap with an
/// offload: the virtio 1.x header, `num_buffers` included.
pub const VNET_HDR_LEN: usize = 12;

/// Wraps `err` into an error of the same kind whose message names `step`.
fn step_error(step: impl fmt::Display, err: io::Error) -> io::Error {
    io::Error::new(err.kind(), format!("{step}: {err}"))
}

/// Joins a helper thread, resuming its panic on the caller.
fn join<T>(handle: thread::ScopedJoinHandle<'_, io::Result<T>>) -> io::Result<T> {
    match handle.join() {
        Ok(result) => result,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

/// Checks with `NS_GET_NSTYPE` that `fd` is a network namespace.
fn check_is_network_namespace(fd: BorrowedFd<'_>, path: &Path) -> io::Result<()> {
    // SAFETY: `NS_GET_NSTYPE` takes no argument and only returns a value;
    // `fd` is a valid open descriptor for the duration of the call.
    let kind = unsafe { libc::ioctl(fd.as_raw_fd(), NS_GET_NSTYPE) };
    if kind == libc::CLONE_NEWNET {
        return Ok(());
    }
    let what = if kind < 0 {
        "not a namespace file"
    } else {
        "a namespace of another kind, not a network namespace"
    };
    Err(io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("{} is {what}", path.display()),
    ))
}
