//! Feature bits the device offers and the device configuration space.

use virtio_bindings::bindings::virtio_config::VIRTIO_F_VERSION_1;
use virtio_bindings::bindings::virtio_net::{
    VIRTIO_NET_F_CSUM, VIRTIO_NET_F_GUEST_CSUM, VIRTIO_NET_F_MAC, VIRTIO_NET_F_MRG_RXBUF,
    VIRTIO_NET_F_MTU, VIRTIO_NET_F_STATUS, VIRTIO_NET_S_LINK_UP,
};
use virtio_bindings::bindings::virtio_ring::VIRTIO_RING_F_EVENT_IDX;

/// A feature bit as a mask.
const fn bit(n: u32) -> u64 {
    1 << n
}

/// Virtio 1.x; the device has no legacy interface.
pub const F_VERSION_1: u64 = bit(VIRTIO_F_VERSION_1);
/// The driver sends partially checksummed frames; the device completes them.
pub const F_CSUM: u64 = bit(VIRTIO_NET_F_CSUM);
/// The driver accepts frames whose checksum the device vouches for.
pub const F_GUEST_CSUM: u64 = bit(VIRTIO_NET_F_GUEST_CSUM);
/// The configuration space carries an MTU.
pub const F_MTU: u64 = bit(VIRTIO_NET_F_MTU);
/// The configuration space carries a MAC address.
pub const F_MAC: u64 = bit(VIRTIO_NET_F_MAC);
/// A received frame may span several receive chains.
pub const F_MRG_RXBUF: u64 = bit(VIRTIO_NET_F_MRG_RXBUF);
/// The configuration space carries a link status.
pub const F_STATUS: u64 = bit(VIRTIO_NET_F_STATUS);

/// The driver and device tell each other, through the rings, at which
/// index they next want a notification.
pub const F_EVENT_IDX: u64 = bit(VIRTIO_RING_F_EVENT_IDX);

/// Every feature the device offers. Anything else a driver acknowledges is
/// refused at `FEATURES_OK`.
pub const DEVICE_FEATURES: u64 =
    F_VERSION_1 | F_CSUM | F_GUEST_CSUM | F_MTU | F_MAC | F_MRG_RXBUF | F_STATUS | F_EVENT_IDX;

/// Why the features a driver acknowledged were refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FeatureError {
    /// The driver acknowledged bits the device did not offer.
    #[error("driver acknowledged features not offered: {0:#x}")]
    NotOffered(u64),
    /// The driver is a legacy driver; the device speaks virtio 1.x only.
    #[error("driver did not acknowledge VIRTIO_F_VERSION_1")]
    NoVersion1,
}

/// Checks the features a driver acknowledged against what the device offers.
///
/// # Errors
/// Bits the device never offered, or no `VIRTIO_F_VERSION_1`.
pub fn check_driver_features(acked: u64) -> Result<u64, FeatureError> {
    let extra = acked & !DEVICE_FEATURES;
    if extra != 0 {
        return Err(FeatureError::NotOffered(extra));
    }
    if acked & F_VERSION_1 == 0 {
        return Err(FeatureError::NoVersion1);
    }
    Ok(acked)
}

/// What the guest is told about the device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetConfig {
    /// The guest's MAC address.
    pub mac: [u8; 6],
    /// The MTU offered to the guest (at least 68).
    pub mtu: u16,
    /// The backend's frames carry correct checksums. With
    /// `VIRTIO_NET_F_GUEST_CSUM` the device then marks received frames
    /// `VIRTIO_NET_HDR_F_DATA_VALID` and the guest skips verifying them.
    pub rx_checksums_valid: bool,
}

impl Default for NetConfig {
    /// A locally administered MAC and the Ethernet MTU.
    fn default() -> Self {
        Self {
            mac: [0x52, 0x54, 0x00, 0x12, 0x34, 0x56],
            mtu: 1500,
            rx_checksums_valid: false,
        }
    }
}

/// Bytes of `virtio_net_config` the device exposes: `mac`, `status`,
/// `max_virtqueue_pairs`, `mtu`.
pub const CONFIG_SPACE_LEN: usize = 12;

impl NetConfig {
    /// The configuration space as the driver reads it (little endian).
    #[must_use]
    pub fn space(&self) -> [u8; CONFIG_SPACE_LEN] {
        let mut space = [0u8; CONFIG_SPACE_LEN];
        space[0..6].copy_from_slice(&self.mac);
        // The link is always up: the backend has no carrier to lose.
        let status = u16::try_from(VIRTIO_NET_S_LINK_UP).unwrap_or(1);
        space[6..8].copy_from_slice(&status.to_le_bytes());
        space[8..10].copy_from_slice(&1u16.to_le_bytes());
        space[10..12].copy_from_slice(&self.mtu.to_le_bytes());
        space
    }

    /// Reads `data.len()` bytes of the configuration space at `offset`;
    /// bytes past its end read as zero.
    pub fn read(&self, offset: u64, data: &mut [u8]) {
        let space = self.space();
        for (i, byte) in data.iter_mut().enumerate() {
            *byte = usize::try_from(offset)
                .ok()
                .and_then(|o| o.checked_add(i))
                .and_then(|o| space.get(o))
                .copied()
                .unwrap_or(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_and_unknown_features_are_refused() {
        assert_eq!(check_driver_features(F_MAC), Err(FeatureError::NoVersion1));
        let tso4 = 1 << 11;
        assert_eq!(
            check_driver_features(F_VERSION_1 | tso4),
            Err(FeatureError::NotOffered(tso4))
        );
        assert_eq!(check_driver_features(DEVICE_FEATURES), Ok(DEVICE_FEATURES));
    }

    #[test]
    fn config_space_layout_matches_virtio_net_config() {
        let config = NetConfig {
            mac: [2, 0, 0, 0, 0, 7],
            mtu: 65520,
            rx_checksums_valid: false,
        };
        assert_eq!(config.space(), [2, 0, 0, 0, 0, 7, 1, 0, 1, 0, 0xf0, 0xff]);
        let mut tail = [0xaa; 4];
        config.read(10, &mut tail);
        assert_eq!(tail, [0xf0, 0xff, 0, 0]);
        config.read(u64::MAX, &mut tail);
        assert_eq!(tail, [0; 4]);
    }
}
