//! The non-root mode, as pasta has it: the slipway process moves into a new
//! user namespace in which it holds the capabilities to create the guest's
//! network namespace and tap device. Its own network namespace does not
//! change, so every host socket it opens is still the invoking user's.

use std::fs;
use std::io;

/// Moves the calling process into a new user namespace that maps the
/// invoking user and group to root inside it.
///
/// Must run while the process has a single thread (the kernel refuses
/// `unshare(CLONE_NEWUSER)` otherwise): call it first thing in `main`.
///
/// # Errors
/// The kernel's refusal (unprivileged user namespaces disabled, a
/// multithreaded process) or a failed write of the id maps, each naming the
/// step.
pub fn enter_user_namespace() -> io::Result<()> {
    let uid = rustix::process::geteuid().as_raw();
    let gid = rustix::process::getegid().as_raw();
    // SAFETY: unshare(2) with CLONE_NEWUSER only changes the process's user
    // namespace; it touches no memory of ours. The kernel rejects it in a
    // multithreaded process, which the caller rules out.
    let rc = unsafe { libc::unshare(libc::CLONE_NEWUSER) };
    if rc != 0 {
        let error = io::Error::last_os_error();
        return Err(io::Error::new(
            error.kind(),
            format!(
                "unshare(CLONE_NEWUSER) failed: {error} (are unprivileged user namespaces \
                 allowed? see /proc/sys/user/max_user_namespaces)"
            ),
        ));
    }
    let write = |path: &str, content: String| {
        fs::write(path, content.as_bytes())
            .map_err(|e| io::Error::new(e.kind(), format!("writing {path}: {e}")))
    };
    // An unprivileged process may map only itself, and only after giving up
    // setgroups(2) in the new namespace.
    write("/proc/self/setgroups", "deny".to_owned())?;
    write("/proc/self/uid_map", format!("0 {uid} 1"))?;
    write("/proc/self/gid_map", format!("0 {gid} 1"))?;
    Ok(())
}
