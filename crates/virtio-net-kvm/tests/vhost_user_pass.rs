//! `VhostUserFrontend::serve_pass`, the one pass of the serving loop a
//! caller that drives the connection itself uses (the vhost-user fuzz
//! target): it answers what has arrived and returns without waiting, and
//! reports the end of the connection. No traffic leaves the process.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use epoll_dispatch::serve::ServeEnd;
use nat_core::{Plan, Rules};
use slipway::frontend::StreamSocket;
use slipway::{Backend, BackendConfig};
use virtio_net_kvm::NetConfig;
use virtio_net_kvm::vhost_user::VhostUserFrontend;

const GET_FEATURES: u32 = 1;
const VERSION: u32 = 1;
const FLAG_REPLY: u32 = 1 << 2;

fn frontend(name: &str) -> (VhostUserFrontend, UnixStream, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("slipway-pass-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("vhost.sock");
    let socket = StreamSocket::bind(&path).unwrap();
    let listener = socket.try_clone_listener().unwrap();
    let frontend = VhostUserFrontend::new(listener, NetConfig::default()).unwrap();
    let vmm = UnixStream::connect(&path).unwrap();
    (frontend, vmm, dir)
}

fn backend() -> Backend {
    Backend::new(
        BackendConfig::new(Plan::default(), Rules::default()),
        Instant::now(),
    )
    .unwrap()
}

#[test]
fn serve_pass_answers_a_waiting_message_and_returns_without_waiting() {
    let (mut frontend, mut vmm, dir) = frontend("answers");
    let mut backend = backend();
    let mut header = Vec::new();
    for word in [GET_FEATURES, VERSION, 0] {
        header.extend(word.to_ne_bytes());
    }
    vmm.write_all(&header).unwrap();
    let started = Instant::now();
    assert_eq!(
        frontend.serve_pass(&mut backend, Instant::now()).unwrap(),
        None
    );
    // Nothing more has arrived: the next pass returns at once too.
    assert_eq!(
        frontend.serve_pass(&mut backend, Instant::now()).unwrap(),
        None
    );
    assert!(started.elapsed() < Duration::from_secs(1), "a pass waited");
    vmm.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut reply = [0u8; 20];
    vmm.read_exact(&mut reply).unwrap();
    let word = |i: usize| u32::from_ne_bytes(reply[i..i + 4].try_into().unwrap());
    assert_eq!(word(0), GET_FEATURES);
    assert_eq!(word(4), VERSION | FLAG_REPLY);
    assert_eq!(word(8), 8, "a u64 of features");
    let features = u64::from_ne_bytes(reply[12..20].try_into().unwrap());
    assert_ne!(features & (1 << 32), 0, "VIRTIO_F_VERSION_1 offered");
    drop(frontend);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn serve_pass_reports_the_end_of_the_connection() {
    let (mut frontend, vmm, dir) = frontend("end");
    let mut backend = backend();
    assert_eq!(
        frontend.serve_pass(&mut backend, Instant::now()).unwrap(),
        None
    );
    drop(vmm);
    assert_eq!(
        frontend.serve_pass(&mut backend, Instant::now()).unwrap(),
        Some(ServeEnd::Disconnected)
    );
    drop(frontend);
    let _ = std::fs::remove_dir_all(dir);
}
