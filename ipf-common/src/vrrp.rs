//! VRRP advertisement layout, validation (RFC 3768 §7.1, RFC 5798 §7.1) and encoding.
//!
//! VRRPv2 (RFC 3768 §5.1):
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |Version| Type  | Virtual Rtr ID|   Priority    | Count IP Addrs|
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |   Auth Type   |   Adver Int   |          Checksum             |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                         IP Address (1..n)                     |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                     Authentication Data (1)                   |
//! |                     Authentication Data (2)                   |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//! VRRPv3 (RFC 5798 §5.1), IPv4 or IPv6 addresses, checksum over a pseudo-header:
//! ```text
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |Version| Type  | Virtual Rtr ID|   Priority    |Count IPvX Addr|
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |(rsvd) |     Max Adver Int     |          Checksum             |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                       IPvX Address(es) (1..n)                 |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```

pub use crate::consts::{IPPROTO_VRRP, MCAST_V4, MCAST_V6};
use crate::{
    checksum,
    consts::{FAMILY_V4, FAMILY_V6, MAX_VRRP_LEN},
    maps::{VridConfig, vrid_flags},
};

pub const VRRP_TTL: u8 = 255;
pub const HEADER_LEN: usize = 8;
pub const V2_AUTH_LEN: usize = 8;
pub const TYPE_ADVERTISEMENT: u8 = 1;
pub const AUTH_NONE: u8 = 0;
pub const AUTH_PASS: u8 = 1;
/// RFC 2338 IP Authentication Header; deprecated by RFC 3768 but still a known type.
pub const AUTH_AH: u8 = 2;
/// VRRPv3 carries a 12-bit interval in centiseconds.
pub const V3_MAX_INTERVAL_CS: u16 = 0x0fff;

/// IP-level facts about a received VRRP packet, filled from the IPv4/IPv6 header by either side.
#[derive(Clone, Copy, Default, PartialEq, Eq)]
#[cfg_attr(feature = "user", derive(Debug))]
pub struct IpMeta {
    pub family: u8,
    /// TTL (IPv4) or hop limit (IPv6).
    pub ttl: u8,
    /// Length of the IP payload (the VRRP message) according to the IP header.
    pub payload_len: u16,
    pub src: [u8; 16],
    pub dst: [u8; 16],
}

impl IpMeta {
    #[inline(always)]
    pub fn addr_len(&self) -> usize {
        if self.family == FAMILY_V6 { 16 } else { 4 }
    }
}

/// A validated advertisement.
#[derive(Clone, Copy, Default, PartialEq, Eq)]
#[cfg_attr(feature = "user", derive(Debug))]
pub struct Advert {
    pub family: u8,
    pub version: u8,
    pub vrid: u8,
    pub priority: u8,
    pub addr_count: u8,
    /// Advertisement interval in centiseconds (v2 seconds × 100).
    pub adver_int_cs: u16,
}

/// Why a VRRP packet is not accepted. Every variant but `OwnAdvert` drops the packet.
#[derive(Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "user", derive(Debug))]
pub enum RxError {
    IpTtl,
    Version,
    InvalidType,
    VridUnknown,
    PacketLen,
    Checksum,
    AuthTypeMismatch,
    AuthFailure,
    AddrList,
    AdvertInterval,
    PeerUnknown,
    /// Sent by this node (source is our primary address): not an error, not a received advert.
    OwnAdvert,
}

impl RxError {
    pub const fn counter(self) -> crate::Counter {
        use crate::Counter as C;
        match self {
            RxError::IpTtl => C::IpTtlErr,
            RxError::Version => C::VersionErr,
            RxError::InvalidType => C::InvalidType,
            RxError::VridUnknown => C::VridUnknown,
            RxError::PacketLen => C::PacketLenErr,
            RxError::Checksum => C::ChecksumErr,
            RxError::AuthTypeMismatch => C::AuthTypeMismatch,
            RxError::AuthFailure => C::AuthFailure,
            RxError::AddrList => C::AddrListErr,
            RxError::AdvertInterval => C::AdvertIntervalErr,
            RxError::PeerUnknown => C::PeerUnknown,
            RxError::OwnAdvert => C::OwnAdverts,
        }
    }
}

/// What validation needs from its environment: per-VRID configuration (BPF maps in the kernel, hash
/// maps in userspace) and the one's-complement sum of a message.
pub trait VridLookup {
    fn config(&self, family: u8, vrid: u8) -> Option<VridConfig>;
    /// Is `addr` a configured unicast peer of `(family, vrid)`?
    fn is_peer(&self, family: u8, vrid: u8, addr: &[u8; 16]) -> bool;
    /// The folded (not complemented) one's-complement sum of `bytes` as big-endian words. The kernel
    /// overrides this with its checksum helper; `bytes.len()` is a multiple of 4 when called.
    fn ones_sum(&self, bytes: &[u8]) -> u16 {
        !checksum::fold(checksum::sum(bytes, 0))
    }
}

/// Expected VRRP message length for a version, family and address count.
#[inline(always)]
pub const fn message_len(version: u8, family: u8, count: u8) -> usize {
    let addr_len = if family == FAMILY_V6 { 16 } else { 4 };
    let auth = if version == 2 { V2_AUTH_LEN } else { 0 };
    HEADER_LEN + addr_len * count as usize + auth
}

/// Digest of an advertised address block: its folded one's-complement sum. Order-independent and
/// computable by the kernel's checksum helper in one pass, so the XDP program needs no per-address
/// loop; together with the address count it catches a misconfigured peer, which is what the RFC check is
/// for (it is not an authentication mechanism).
pub fn address_digest(addrs: &[u8]) -> u32 {
    !checksum::fold(checksum::sum(addrs, 0)) as u32
}

/// Validates a received VRRP message (`msg` is the IP payload) against the receive rules of RFC 3768
/// §7.1 and RFC 5798 §7.1, in the order the RFCs give, and returns the advert on success.
#[inline(always)]
pub fn validate_advert<L: VridLookup>(ip: &IpMeta, msg: &[u8], lookup: &L) -> Result<Advert, RxError> {
    if ip.ttl != VRRP_TTL {
        return Err(RxError::IpTtl);
    }
    if msg.len() < HEADER_LEN || msg.len() != ip.payload_len as usize || msg.len() > MAX_VRRP_LEN {
        return Err(RxError::PacketLen);
    }
    let version = msg[0] >> 4;
    let kind = msg[0] & 0x0f;
    let vrid = msg[1];
    let priority = msg[2];
    let count = msg[3];
    let cfg = match lookup.config(ip.family, vrid) {
        Some(cfg) if cfg.has(vrid_flags::CONFIGURED) => cfg,
        _ => {
            // Unknown VRIDs are reported before version errors: a v2 node on the segment with a VRID
            // we do not run is not a version problem of ours.
            if version != 2 && version != 3 {
                return Err(RxError::Version);
            }
            return Err(RxError::VridUnknown);
        }
    };
    if version != cfg.version || (version == 2 && ip.family != FAMILY_V4) {
        return Err(RxError::Version);
    }
    if kind != TYPE_ADVERTISEMENT {
        return Err(RxError::InvalidType);
    }
    if msg.len() != message_len(version, ip.family, count) {
        return Err(RxError::PacketLen);
    }
    let pseudo = if version == 3 {
        checksum::pseudo_header_sum(ip.family, &ip.src, &ip.dst, msg.len() as u16)
    } else {
        0
    };
    if checksum::fold(pseudo + lookup.ones_sum(msg) as u32) != 0 {
        return Err(RxError::Checksum);
    }
    if ip.src == cfg.primary_addr {
        return Err(RxError::OwnAdvert);
    }
    let addrs_end = HEADER_LEN + ip.addr_len() * count as usize;
    let adver_int_cs = if version == 2 {
        let auth_type = msg[4];
        let wanted = if cfg.has(vrid_flags::AUTH_PASS) {
            AUTH_PASS
        } else {
            AUTH_NONE
        };
        if auth_type != wanted {
            return Err(RxError::AuthTypeMismatch);
        }
        if auth_type == AUTH_PASS && msg[addrs_end..addrs_end + V2_AUTH_LEN] != cfg.auth_pass {
            return Err(RxError::AuthFailure);
        }
        let interval = msg[5] as u16 * 100;
        if interval != cfg.adver_int_cs {
            return Err(RxError::AdvertInterval);
        }
        interval
    } else {
        u16::from_be_bytes([msg[4], msg[5]]) & V3_MAX_INTERVAL_CS
    };
    if cfg.has(vrid_flags::CHECK_ADDRS)
        && priority != 255
        && (count != cfg.addr_count || lookup.ones_sum(&msg[HEADER_LEN..addrs_end]) as u32 != cfg.addr_digest)
    {
        return Err(RxError::AddrList);
    }
    if cfg.has(vrid_flags::UNICAST) && !lookup.is_peer(ip.family, vrid, &ip.src) {
        return Err(RxError::PeerUnknown);
    }
    Ok(Advert {
        family: ip.family,
        version,
        vrid,
        priority,
        addr_count: count,
        adver_int_cs,
    })
}

/// Whether a version can carry an advertisement interval of `cs` centiseconds: VRRPv2 whole seconds
/// 1..=255, VRRPv3 1..=4095 centiseconds.
pub const fn interval_fits(version: u8, cs: u32) -> bool {
    if version == 2 {
        cs.is_multiple_of(100) && cs >= 100 && cs <= 25_500
    } else {
        cs >= 1 && cs <= V3_MAX_INTERVAL_CS as u32
    }
}

/// Fields of an advertisement to encode.
#[derive(Clone, Copy)]
#[cfg_attr(feature = "user", derive(Debug))]
pub struct AdvertFields<'a> {
    pub version: u8,
    pub family: u8,
    pub vrid: u8,
    pub priority: u8,
    pub adver_int_cs: u16,
    /// Concatenated addresses, 4 or 16 bytes each.
    pub addrs: &'a [u8],
    /// VRRPv2 PASS password (zero padded), or none.
    pub auth_pass: Option<[u8; 8]>,
    /// Source and destination, for the v3 pseudo-header.
    pub src: [u8; 16],
    pub dst: [u8; 16],
}

/// Why an advert cannot be encoded.
#[derive(Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "user", derive(Debug))]
pub enum EncodeError {
    /// Version other than 2 or 3, or v2 with IPv6.
    Version,
    /// Address list not a whole number of addresses, or more than 255.
    Addresses,
    /// Interval not representable: v2 whole seconds 1..=255, v3 1..=4095 cs.
    Interval,
    /// Output buffer too small.
    BufferTooSmall,
}

/// Encodes an advertisement with its checksum into `buf`; returns the message length.
pub fn encode_advert(f: &AdvertFields<'_>, buf: &mut [u8]) -> Result<usize, EncodeError> {
    if !(f.version == 3 || (f.version == 2 && f.family == FAMILY_V4))
        || !(f.family == FAMILY_V4 || f.family == FAMILY_V6)
    {
        return Err(EncodeError::Version);
    }
    let addr_len = if f.family == FAMILY_V6 { 16 } else { 4 };
    if !f.addrs.len().is_multiple_of(addr_len) || f.addrs.len() / addr_len > 255 {
        return Err(EncodeError::Addresses);
    }
    let count = (f.addrs.len() / addr_len) as u8;
    if !interval_fits(f.version, f.adver_int_cs as u32) {
        return Err(EncodeError::Interval);
    }
    let len = message_len(f.version, f.family, count);
    let Some(out) = buf.get_mut(..len) else {
        return Err(EncodeError::BufferTooSmall);
    };
    out[0] = (f.version << 4) | TYPE_ADVERTISEMENT;
    out[1] = f.vrid;
    out[2] = f.priority;
    out[3] = count;
    if f.version == 2 {
        out[4] = if f.auth_pass.is_some() { AUTH_PASS } else { AUTH_NONE };
        out[5] = (f.adver_int_cs / 100) as u8;
    } else {
        out[4..6].copy_from_slice(&f.adver_int_cs.to_be_bytes());
    }
    out[6] = 0;
    out[7] = 0;
    out[HEADER_LEN..HEADER_LEN + f.addrs.len()].copy_from_slice(f.addrs);
    if f.version == 2 {
        let auth = &mut out[HEADER_LEN + f.addrs.len()..];
        auth.copy_from_slice(&f.auth_pass.unwrap_or([0; 8]));
    }
    let csum = checksum::vrrp_checksum(f.version, f.family, &f.src, &f.dst, out);
    out[6..8].copy_from_slice(&csum.to_be_bytes());
    Ok(len)
}

#[inline(always)]
pub const fn is_family(family: u8) -> bool {
    family == FAMILY_V4 || family == FAMILY_V6
}
