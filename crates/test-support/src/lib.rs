//! `test-support` holds no test of its own, and no library an embedder
//! links depends on it (it is `publish = false`; only tests, benches, the
//! benchmark harness and xtask use it). Every loop is bounded in count and
//! in time.
//!
//! The test code the slipway workspace's crates share, so that no crate
//! includes another's files with `#[path]`.
//!
//! - [`common`]: skipping a test that cannot run here, said out loud (and a
//!   failure under `SLIPWAY_NO_SKIP=1`, as in CI); a proxy-free environment;
//!   the process-level quiet-loop check.
//! - [`e2e`]: guards for child processes, namespaces and temporary
//!   directories, the `slipway` command, servers and data checks for the
//!   end-to-end suites.
//! - [`process`]: a child in its own process group with its output read
//!   by threads, which the guards above and the bench harness build on.
//! - [`vm`]: a Linux guest under QEMU (or slipway-vmm) wired to slipway;
//!   [`guest_image`] builds its kernel and initramfs.
//! - `harness` (feature `backend`): a synthetic guest driving slipway's
//!   `Backend` on real host sockets, with the frame-level quiet-loop check.
//! - `virtq` (feature `virtio`): a virtio split-queue driver over mock
//!   guest memory and a recording peer backend.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    missing_docs,
    reason = "test code: a failed setup step should stop the test at once"
)]

// The README's example runs as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctest;

pub mod common;
pub mod e2e;
pub mod guest_image;
#[cfg(feature = "backend")]
pub mod harness;
pub mod process;
#[cfg(feature = "virtio")]
pub mod virtq;
pub mod vm;
