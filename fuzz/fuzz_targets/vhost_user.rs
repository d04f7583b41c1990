//! vhost-user message sequences from a VMM: the input is a sequence of
//! messages (known requests with payloads built from its bytes, or raw
//! requests, flags and payloads), descriptors passed with them
//! (`SCM_RIGHTS`: a sealed memfd of guest memory for `SET_MEM_TABLE`,
//! eventfds for kicks and calls), writes into that guest memory (rings,
//! descriptor tables, frames) and kicks. A `VhostUserFrontend` on a UNIX
//! socket serves the connection with `serve_pass`, its device core moving
//! frames between the rings and a loopback-only backend (as in
//! `backend_frames`).
//!
//! Nothing may panic or hang: every message is whole when it is written, so
//! the frontend never waits for the rest of one; a bad message ends the
//! connection, which ends the input.
#![no_main]

use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Instant;

use libfuzzer_sys::fuzz_target;
use slipway::frontend::StreamSocket;
use virtio_net_kvm::vhost_user::VhostUserFrontend;
use slipway_fuzz::{Input, assert_within_limits, loopback_backend};
use virtio_net_kvm::NetConfig;

/// Guest memory: one region of this size at guest address 0.
const MEM_SIZE: u64 = 64 << 10;
/// Where the "VMM" says it maps guest memory: vring addresses are given
/// in this space.
const USER_BASE: u64 = 0x7f00_0000_0000;
/// Bytes written to the socket between passes: well under its buffer, so
/// that a message is never cut.
const MAX_UNREAD: usize = 32 << 10;
const VERSION: u32 = 1;
const VRING_NOFD: u64 = 1 << 8;

/// The requests this backend handles, and a few it does not.
const REQUESTS: [u32; 20] = [
    1, 2, 3, 4, 5, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 6, 20, 32,
];

thread_local! {
    static SOCKET_PATH: PathBuf = {
        let dir = std::env::temp_dir().join(format!("slipway-fuzz-{}", std::process::id()));
        if let Err(error) = std::fs::create_dir_all(&dir) {
            panic!("cannot create {}: {error}", dir.display());
        }
        dir.join("vhost-user.sock")
    };
}

fuzz_target!(|data: &[u8]| {
    SOCKET_PATH.with(|path| run(data, path));
});

fn memfd() -> OwnedFd {
    // SAFETY: the name is a NUL-terminated literal; the flags are valid.
    let fd = unsafe {
        libc::memfd_create(
            c"slipway-fuzz-guest".as_ptr(),
            libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING,
        )
    };
    assert!(fd >= 0, "memfd_create: {}", std::io::Error::last_os_error());
    // SAFETY: `fd` was just returned open and is owned by nothing else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let size = libc::off_t::try_from(MEM_SIZE).unwrap_or(0);
    // SAFETY: plain calls on a descriptor we own.
    let sized = unsafe {
        libc::ftruncate(fd.as_raw_fd(), size) == 0
            && libc::fcntl(
                fd.as_raw_fd(),
                libc::F_ADD_SEALS,
                libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL,
            ) == 0
    };
    assert!(
        sized,
        "sizing the memfd: {}",
        std::io::Error::last_os_error()
    );
    fd
}

fn eventfd() -> OwnedFd {
    // SAFETY: a plain eventfd(2) call.
    let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
    assert!(fd >= 0, "eventfd: {}", std::io::Error::last_os_error());
    // SAFETY: `fd` was just returned open and is owned by nothing else.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// Sends `bytes` in one `sendmsg` with `fds` attached; returns whether all
/// of it went.
fn send(conn: &UnixStream, bytes: &[u8], fds: &[RawFd]) -> bool {
    let mut space = [0u64; 16];
    let mut iov = libc::iovec {
        iov_base: bytes.as_ptr().cast_mut().cast(),
        iov_len: bytes.len(),
    };
    // SAFETY: an all-zero msghdr is valid.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &raw mut iov;
    msg.msg_iovlen = 1;
    let fd_bytes = std::mem::size_of_val(fds);
    if !fds.is_empty() {
        // SAFETY: CMSG_SPACE only computes a size.
        let needed = unsafe { libc::CMSG_SPACE(fd_bytes as u32) } as usize;
        assert!(needed <= std::mem::size_of_val(&space));
        msg.msg_control = space.as_mut_ptr().cast();
        msg.msg_controllen = needed;
        // SAFETY: the control buffer is `needed` bytes, room for one
        // header and `fds`; CMSG_FIRSTHDR points into it.
        unsafe {
            let header = libc::CMSG_FIRSTHDR(&raw const msg);
            (*header).cmsg_level = libc::SOL_SOCKET;
            (*header).cmsg_type = libc::SCM_RIGHTS;
            (*header).cmsg_len = libc::CMSG_LEN(fd_bytes as u32) as usize;
            std::ptr::copy_nonoverlapping(
                fds.as_ptr().cast::<u8>(),
                libc::CMSG_DATA(header),
                fd_bytes,
            );
        }
    }
    // SAFETY: `msg` points at `iov` and `space`, both alive for the call.
    let sent = unsafe {
        libc::sendmsg(
            conn.as_raw_fd(),
            &raw const msg,
            libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
        )
    };
    usize::try_from(sent).is_ok_and(|n| n == bytes.len())
}

/// The "VMM": its end of the socket, guest memory and the eventfds it
/// passes.
struct Vmm {
    conn: UnixStream,
    memory: OwnedFd,
    kicks: Vec<OwnedFd>,
    unread: usize,
}

impl Vmm {
    /// A payload for `request` built from the input.
    fn payload(input: &mut Input<'_>, request: u32) -> Vec<u8> {
        let mut p = Vec::new();
        let ring = |input: &mut Input<'_>| u32::from(input.u8() % 3);
        match request {
            2 => p.extend(input.u64().to_ne_bytes()),
            5 => {
                let count = if input.u8() < 240 {
                    1u32
                } else {
                    u32::from(input.u8())
                };
                p.extend(count.to_ne_bytes());
                p.extend(0u32.to_ne_bytes());
                let gpa = if input.u8() < 200 { 0 } else { input.u64() };
                let size = if input.u8() < 200 {
                    MEM_SIZE
                } else {
                    input.u64()
                };
                let offset = if input.u8() < 200 { 0 } else { input.u64() };
                for value in [gpa, size, USER_BASE, offset] {
                    p.extend(value.to_ne_bytes());
                }
            }
            8 | 10 | 18 => {
                p.extend(ring(input).to_ne_bytes());
                let num = match input.u8() % 4 {
                    0 => 256,
                    1 => 1 << (input.u8() % 11),
                    2 => 0,
                    _ => input.u32(),
                };
                p.extend(num.to_ne_bytes());
            }
            9 => {
                p.extend(ring(input).to_ne_bytes());
                p.extend(0u32.to_ne_bytes());
                let defaults = [0x0000u64, 0x2000, 0x1000];
                for default in defaults {
                    let addr = match input.u8() % 4 {
                        0 => input.u64(),
                        1 => USER_BASE + u64::from(input.u16()),
                        _ => USER_BASE + default + 0x4000 * u64::from(input.u8() % 2),
                    };
                    p.extend(addr.to_ne_bytes());
                }
                p.extend(0u64.to_ne_bytes());
            }
            11 => {
                p.extend(ring(input).to_ne_bytes());
                p.extend(0u32.to_ne_bytes());
            }
            12..=14 => {
                let nofd = if input.u8() < 32 { VRING_NOFD } else { 0 };
                p.extend((u64::from(ring(input)) | nofd).to_ne_bytes());
            }
            _ => {}
        }
        p
    }

    /// Writes one message; returns false once the socket cannot take it.
    fn message(&mut self, input: &mut Input<'_>) -> bool {
        let pick = input.u8();
        let raw = pick >= 0xf0;
        let request = if raw {
            input.u32()
        } else {
            REQUESTS[usize::from(pick) % REQUESTS.len()]
        };
        let flags = if pick & 0x08 != 0 && raw {
            input.u32()
        } else {
            VERSION
        };
        let payload = if raw {
            input.chunk(512).to_vec()
        } else {
            Self::payload(input, request)
        };
        let size = u32::try_from(payload.len()).unwrap_or(u32::MAX);
        let mut bytes = Vec::with_capacity(12 + payload.len());
        for word in [request, flags, size] {
            bytes.extend(word.to_ne_bytes());
        }
        bytes.extend_from_slice(&payload);
        let mut fds = Vec::new();
        let mut passed = None;
        let attach = input.u8();
        match request {
            5 if attach != 0 => fds.push(self.memory.as_raw_fd()),
            12..=14 if attach != 0 => {
                let fd = eventfd();
                fds.push(fd.as_raw_fd());
                passed = Some(fd);
            }
            _ if attach == 0xff => fds.push(self.memory.as_raw_fd()),
            _ => {}
        }
        if !send(&self.conn, &bytes, &fds) {
            return false;
        }
        self.unread += bytes.len();
        if let (12, Some(fd)) = (request, passed) {
            if self.kicks.len() < 8 {
                self.kicks.push(fd);
            }
        }
        true
    }

    fn write_memory(&self, input: &mut Input<'_>) {
        let at = u64::from(input.u16()) % MEM_SIZE;
        let bytes = input.chunk(1024);
        let offset = libc::off_t::try_from(at).unwrap_or(0);
        // SAFETY: pwrite reads `bytes.len()` bytes of a live slice.
        unsafe {
            libc::pwrite(
                self.memory.as_raw_fd(),
                bytes.as_ptr().cast(),
                bytes.len(),
                offset,
            );
        }
    }

    fn kick(&self, which: u8) {
        let Some(fd) = self.kicks.get(usize::from(which) % self.kicks.len().max(1)) else {
            return;
        };
        let one = 1u64.to_ne_bytes();
        // SAFETY: write reads 8 bytes of `one`.
        unsafe {
            libc::write(fd.as_raw_fd(), one.as_ptr().cast(), one.len());
        }
    }

    /// Reads the replies waiting, so that the frontend never waits for room.
    fn drain(&mut self) {
        let mut buf = [0u8; 4096];
        while let Ok(n) = (&self.conn).read(&mut buf) {
            if n == 0 {
                break;
            }
        }
        self.unread = 0;
    }
}

fn run(data: &[u8], path: &PathBuf) {
    let mut input = Input::new(data);
    let socket = match StreamSocket::bind(path) {
        Ok(socket) => socket,
        Err(error) => panic!("cannot listen on {}: {error}", path.display()),
    };
    let listener = match socket.try_clone_listener() {
        Ok(listener) => listener,
        Err(error) => panic!("cannot duplicate the listener: {error}"),
    };
    let mut frontend = match VhostUserFrontend::new(listener, NetConfig::default()) {
        Ok(frontend) => frontend,
        Err(error) => panic!("no vhost-user frontend: {error}"),
    };
    frontend.set_checksum_offload(input.u8() & 1 == 0);
    let conn = match UnixStream::connect(path) {
        Ok(conn) => conn,
        Err(error) => panic!("cannot connect to {}: {error}", path.display()),
    };
    if conn.set_nonblocking(true).is_err() {
        return;
    }
    let mut vmm = Vmm {
        conn,
        memory: memfd(),
        kicks: Vec::new(),
        unread: 0,
    };
    let mut backend = loopback_backend(Instant::now());
    for _ in 0..128 {
        let Some(op) = input.try_u8() else { break };
        let pass = match op % 8 {
            0..=3 => {
                if vmm.unread > MAX_UNREAD || !vmm.message(&mut input) {
                    true
                } else {
                    op & 0x80 != 0
                }
            }
            4 | 5 => {
                vmm.write_memory(&mut input);
                false
            }
            6 => {
                vmm.kick(op >> 4);
                false
            }
            _ => true,
        };
        if pass && !serve(&mut frontend, &mut backend, &mut vmm) {
            return;
        }
    }
    serve(&mut frontend, &mut backend, &mut vmm);
}

/// One pass; false once the connection has ended.
fn serve(frontend: &mut VhostUserFrontend, backend: &mut slipway::Backend, vmm: &mut Vmm) -> bool {
    let end = match frontend.serve_pass(backend, Instant::now()) {
        Ok(end) => end,
        Err(error) => panic!("serving the vhost-user connection failed: {error}"),
    };
    vmm.drain();
    assert_within_limits(backend);
    end.is_none()
}
