//! Commands in the namespace: `setns` between `fork` and `exec`, and a
//! private `/etc/resolv.conf` seen only by the command.

use std::ffi::{CString, OsString};
use std::fmt::Write as _;
use std::fs;
use std::io::{self, Write as _};
use std::net::IpAddr;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicU32, Ordering};

use super::{Namespace, step_error};

/// The file the command's resolver reads.
const RESOLV_CONF: &str = "/etc/resolv.conf";
/// How many names [`write_resolv_conf`] tries before giving up.
const CREATE_ATTEMPTS: u32 = 64;

/// Spawns `argv` (program and arguments, looked up in `PATH`) inside `ns`.
///
/// In the child, before `exec`: `setns` into `ns`; then, if `resolv_conf`
/// is given, `unshare(CLONE_NEWNS)`, make every mount private
/// (`mount("none", "/", MS_REC | MS_PRIVATE)`) and bind-mount `resolv_conf`
/// over `/etc/resolv.conf`, so that only the command (and its children) see
/// it. Where `/etc/resolv.conf` is a symlink, the bind mount covers its
/// target. The command inherits stdin, stdout and stderr (use
/// [`command_in`] to set them) and is not waited for here.
///
/// Note that `/sys/class/net` is not remounted: it keeps showing the
/// interfaces of the namespace sysfs was mounted in. `/proc/net` and
/// netlink show the command's own namespace.
///
/// # Errors
///
/// An empty `argv`, a missing `resolv_conf` or `/etc/resolv.conf`, or the
/// failure of `setns`, of the mounts or of `exec`, named in the message.
pub fn spawn_in(
    ns: &Namespace,
    argv: &[OsString],
    resolv_conf: Option<&Path>,
) -> io::Result<Child> {
    let mut command = command_in(ns, argv, resolv_conf)?;
    let program = command.get_program().to_owned();
    command.spawn().map_err(|err| {
        step_error(
            format_args!(
                "spawning {} in the network namespace",
                program.to_string_lossy()
            ),
            err,
        )
    })
}

/// The [`Command`] that [`spawn_in`] spawns, for callers that set its
/// standard streams, environment or working directory before spawning it.
/// The command holds its own descriptor of `ns`.
///
/// # Errors
///
/// An empty `argv`, a missing `resolv_conf` or `/etc/resolv.conf`, or no
/// descriptor left to duplicate the namespace's.
pub fn command_in(
    ns: &Namespace,
    argv: &[OsString],
    resolv_conf: Option<&Path>,
) -> io::Result<Command> {
    let Some((program, args)) = argv.split_first() else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "no command to run in the network namespace",
        ));
    };
    let resolv_conf = match resolv_conf {
        Some(path) => Some(bind_source(path)?),
        None => None,
    };
    let mut command = Command::new(program);
    command.args(args);
    // The command may outlive `ns`; its own (close-on-exec) descriptor keeps
    // the number valid until the child has used it.
    let ns_fd = ns.fd().try_clone_to_owned()?;
    let setup = move || {
        // SAFETY: `ns_fd` is an open descriptor of the namespace, owned by
        // the closure and so open in the child until `exec`; `setns` reads
        // nothing else.
        if unsafe { libc::setns(ns_fd.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(io::Error::last_os_error());
        }
        if let Some(source) = &resolv_conf {
            private_resolv_conf(source)?;
        }
        Ok(())
    };
    // SAFETY: `setup` makes only raw system calls (setns, unshare, mount) on
    // values prepared before the fork; it allocates nothing and takes no
    // lock, so it is safe between `fork` and `exec`.
    unsafe { command.pre_exec(setup) };
    Ok(command)
}

/// The bind-mount source `path` as a C string, after checking that it and
/// the mount point exist, so that the child's failures are the rare ones.
fn bind_source(path: &Path) -> io::Result<CString> {
    fs::metadata(path)
        .map_err(|err| step_error(format_args!("resolv.conf {}", path.display()), err))?;
    fs::metadata(RESOLV_CONF)
        .map_err(|err| step_error(format_args!("cannot bind-mount over {RESOLV_CONF}"), err))?;
    CString::new(path.as_os_str().as_bytes()).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("resolv.conf path {} contains a NUL byte", path.display()),
        )
    })
}

/// In the child: a private mount namespace with `source` over
/// `/etc/resolv.conf`. Raw system calls only (it runs after `fork`).
fn private_resolv_conf(source: &CString) -> io::Result<()> {
    // SAFETY: unsharing the mount namespace affects only this (single
    // threaded) child process.
    if unsafe { libc::unshare(libc::CLONE_NEWNS) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: every pointer is a NUL-terminated string literal or null,
    // valid for the call; changing propagation reads no data.
    let rc = unsafe {
        libc::mount(
            c"none".as_ptr(),
            c"/".as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `source` and the target are NUL-terminated strings that live
    // across the call; a bind mount takes no filesystem type or data.
    let rc = unsafe {
        libc::mount(
            source.as_ptr(),
            c"/etc/resolv.conf".as_ptr(),
            std::ptr::null(),
            libc::MS_BIND,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Writes a resolv.conf with one `nameserver` line per address of `dns`
/// into a new file (mode 0644, never an existing one) in
/// `$XDG_RUNTIME_DIR` if that is a directory, else in the temporary
/// directory, and returns its path. The caller deletes the file.
///
/// # Errors
///
/// An empty `dns` ([`io::ErrorKind::InvalidInput`]), or the file cannot be
/// created or written.
pub fn write_resolv_conf(dns: &[IpAddr]) -> io::Result<PathBuf> {
    if dns.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "a resolv.conf needs at least one DNS server address",
        ));
    }
    let contents = resolv_conf_contents(dns);
    let dir = std::env::var_os("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .filter(|dir| dir.is_absolute() && dir.is_dir())
        .unwrap_or_else(std::env::temp_dir);
    let (path, mut file) = create_new_file(&dir)?;
    let written = file
        .set_permissions(fs::Permissions::from_mode(0o644))
        .and_then(|()| file.write_all(contents.as_bytes()))
        .and_then(|()| file.sync_all());
    if let Err(err) = written {
        let _ = fs::remove_file(&path);
        return Err(step_error(format_args!("writing {}", path.display()), err));
    }
    Ok(path)
}

/// The text of a resolv.conf naming `dns`.
fn resolv_conf_contents(dns: &[IpAddr]) -> String {
    let mut text = String::from("# Written by slipway for the command it runs.\n");
    for addr in dns {
        let _ = writeln!(text, "nameserver {addr}");
    }
    text
}

/// Creates a file with a fresh name in `dir` (`O_EXCL`, so never through
/// an existing file or symlink).
fn create_new_file(dir: &Path) -> io::Result<(PathBuf, fs::File)> {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let pid = std::process::id();
    let mut last_error = None;
    for _ in 0..CREATE_ATTEMPTS {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.subsec_nanos());
        let path = dir.join(format!("slipway-resolv-{pid}-{n}-{nanos:08x}.conf"));
        match fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&path)
        {
            Ok(file) => return Ok((path, file)),
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists => last_error = Some(err),
            Err(err) => return Err(step_error(format_args!("creating {}", path.display()), err)),
        }
    }
    Err(last_error.unwrap_or_else(|| io::Error::from(io::ErrorKind::AlreadyExists)))
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;

    #[test]
    fn resolv_conf_names_every_server() {
        let text = resolv_conf_contents(&[
            IpAddr::V4(Ipv4Addr::new(10, 0, 2, 3)),
            IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 2, 0, 0, 0, 3)),
        ]);
        assert!(
            text.ends_with("nameserver 10.0.2.3\nnameserver fd00:0:0:2::3\n"),
            "{text}"
        );
    }

    #[test]
    fn resolv_conf_needs_a_server() {
        let err = write_resolv_conf(&[]).err().map(|err| err.kind());
        assert_eq!(err, Some(io::ErrorKind::InvalidInput));
    }

    #[test]
    fn resolv_conf_file_is_new_and_world_readable() {
        let dns = [IpAddr::V4(Ipv4Addr::new(192, 0, 2, 53))];
        let first = write_resolv_conf(&dns);
        let second = write_resolv_conf(&dns);
        let (Ok(first), Ok(second)) = (first, second) else {
            panic!("cannot write resolv.conf files");
        };
        assert_ne!(first, second);
        let mode = fs::metadata(&first).map(|m| m.permissions().mode() & 0o777);
        let text = fs::read_to_string(&first);
        let _ = fs::remove_file(&first);
        let _ = fs::remove_file(&second);
        assert_eq!(mode.ok(), Some(0o644));
        assert!(text.is_ok_and(|text| text.contains("nameserver 192.0.2.53\n")));
    }
}
