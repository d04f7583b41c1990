//! A virtio-net device (virtio 1.x) that bridges a guest's driver to any
//! slipway `NetworkBackend`, with a virtio-mmio transport for KVM VMMs.
//!
//! Invariant: guest memory is read once per decision; the device never trusts
//! a value it has already validated to stay unchanged in shared memory.
