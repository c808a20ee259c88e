//! The Internet checksum (RFC 1071) over VRRP messages, with the RFC 5798 §5.2.8 pseudo-header.

use crate::consts::{FAMILY_V6, IPPROTO_VRRP};

/// One's-complement sum of `data` as big-endian 16-bit words (an odd trailing byte is padded with zero),
/// added to `initial`. Not folded: call [`fold`] on the result.
#[inline(always)]
pub fn sum(data: &[u8], initial: u32) -> u32 {
    let mut acc = initial as u64;
    let mut words = data.chunks_exact(4);
    // 32-bit steps halve the loop trips (cheaper for the verifier and at run time); the carries are
    // folded back at the end.
    for w in &mut words {
        acc += u32::from_be_bytes([w[0], w[1], w[2], w[3]]) as u64;
    }
    let rest = words.remainder();
    let mut tail = [0u8; 4];
    let mut i = 0;
    while i < rest.len() && i < 4 {
        tail[i] = rest[i];
        i += 1;
    }
    acc += u32::from_be_bytes(tail) as u64;
    fold64(acc)
}

#[inline(always)]
fn fold64(mut acc: u64) -> u32 {
    // Fold to 32 bits keeping the one's-complement carries.
    acc = (acc & 0xffff_ffff) + (acc >> 32);
    acc = (acc & 0xffff_ffff) + (acc >> 32);
    let acc = acc as u32;
    (acc & 0xffff) + (acc >> 16)
}

/// Folds a partial sum to the 16-bit one's complement checksum value.
#[inline(always)]
pub fn fold(mut acc: u32) -> u16 {
    acc = (acc & 0xffff) + (acc >> 16);
    acc = (acc & 0xffff) + (acc >> 16);
    !(acc as u16)
}

/// Partial sum of the IPv4 or IPv6 pseudo-header (RFC 768 / RFC 8200 §8.1) for protocol 112.
#[inline(always)]
pub fn pseudo_header_sum(family: u8, src: &[u8; 16], dst: &[u8; 16], upper_len: u16) -> u32 {
    let addr_len = if family == FAMILY_V6 { 16 } else { 4 };
    let mut acc = sum(&src[..addr_len], 0);
    acc = sum(&dst[..addr_len], acc);
    acc += upper_len as u32;
    acc += IPPROTO_VRRP as u32;
    acc
}

/// Checksum value to store in a VRRP message whose checksum field is zero.
pub fn vrrp_checksum(version: u8, family: u8, src: &[u8; 16], dst: &[u8; 16], msg: &[u8]) -> u16 {
    let initial = if version == 3 {
        pseudo_header_sum(family, src, dst, msg.len() as u16)
    } else {
        0
    };
    fold(sum(msg, initial))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc1071_example() {
        // RFC 1071 §3 example: words 0001 f203 f4f5 f6f7 sum to ddf2, checksum 220d.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(fold(sum(&data, 0)), !0xddf2);
    }

    #[test]
    fn odd_length_pads_with_zero() {
        assert_eq!(sum(&[0x12, 0x34, 0x56], 0), sum(&[0x12, 0x34, 0x56, 0x00], 0));
        assert_eq!(sum(&[0xab], 0), 0xab00);
    }

    #[test]
    fn message_with_its_checksum_sums_to_zero() {
        let mut msg = [0x31, 7, 100, 1, 0, 100, 0, 0, 192, 0, 2, 1];
        let c = fold(sum(&msg, 0));
        msg[6..8].copy_from_slice(&c.to_be_bytes());
        assert_eq!(fold(sum(&msg, 0)), 0);
    }
}
