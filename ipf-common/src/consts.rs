//! Protocol numbers, address families and sizes every other module uses: a leaf, so the parsers,
//! the map layout and the checksums depend on it and not on each other.

/// Address family tags in maps and events (not the kernel's AF_* values).
pub const FAMILY_V4: u8 = 4;
pub const FAMILY_V6: u8 = 6;

/// IANA protocol number of VRRP.
pub const IPPROTO_VRRP: u8 = 112;

/// Largest VRRP message: 8-byte header plus 255 IPv6 addresses (4088), rounded to a power of two.
pub const MAX_VRRP_LEN: usize = 4096;

/// 224.0.0.18
pub const MCAST_V4: [u8; 4] = [224, 0, 0, 18];
/// ff02::12
pub const MCAST_V6: [u8; 16] = [0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x12];
