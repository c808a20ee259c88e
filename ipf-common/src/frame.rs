//! Ethernet, IPv4, IPv6, ARP and ICMPv6 headers as byte-array structs (alignment 1, so a reference can
//! be taken at any offset), and the pure classification both datapaths run on them.
//!
//! The XDP program obtains each header through its bounds-checked accessor; userspace through
//! [`header_at`]. Both then call the same functions below.

use crate::{
    consts::{FAMILY_V4, FAMILY_V6, IPPROTO_VRRP},
    maps::addr16,
    vrrp::{IpMeta, RxError},
};

pub const ETH_HDR_LEN: usize = 14;
pub const ETH_P_IPV4: u16 = 0x0800;
pub const ETH_P_IPV6: u16 = 0x86dd;
pub const ETH_P_ARP: u16 = 0x0806;
pub const IPPROTO_ICMPV6: u8 = 58;
pub const ICMPV6_NEIGHBOR_ADVERT: u8 = 136;
pub const IPV4_HDR_LEN: usize = 20;
pub const IPV6_HDR_LEN: usize = 40;

#[repr(C)]
#[derive(Clone, Copy)]
pub struct EthHdr {
    pub dst: [u8; 6],
    pub src: [u8; 6],
    pub ether_type: [u8; 2],
}

impl Ipv4Hdr {
    /// The header's 20 bytes.
    #[inline(always)]
    pub fn as_bytes(&self) -> &[u8; IPV4_HDR_LEN] {
        // SAFETY: Ipv4Hdr is #[repr(C)] of byte fields, exactly IPV4_HDR_LEN bytes, alignment 1.
        unsafe { &*(self as *const Self as *const [u8; IPV4_HDR_LEN]) }
    }
}

impl EthHdr {
    #[inline(always)]
    pub fn ether_type(&self) -> u16 {
        u16::from_be_bytes(self.ether_type)
    }
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct Ipv4Hdr {
    pub version_ihl: u8,
    pub tos: u8,
    pub total_len: [u8; 2],
    pub id: [u8; 2],
    pub frag_off: [u8; 2],
    pub ttl: u8,
    pub proto: u8,
    pub check: [u8; 2],
    pub src: [u8; 4],
    pub dst: [u8; 4],
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct Ipv6Hdr {
    pub version_class_flow: [u8; 4],
    pub payload_len: [u8; 2],
    pub next_header: u8,
    pub hop_limit: u8,
    pub src: [u8; 16],
    pub dst: [u8; 16],
}

/// ARP for Ethernet/IPv4 (RFC 826).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ArpEthIpv4 {
    pub htype: [u8; 2],
    pub ptype: [u8; 2],
    pub hlen: u8,
    pub plen: u8,
    pub oper: [u8; 2],
    pub sha: [u8; 6],
    pub spa: [u8; 4],
    pub tha: [u8; 6],
    pub tpa: [u8; 4],
}

/// ICMPv6 neighbour advertisement (RFC 4861 §4.4) without options.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct NeighborAdvert {
    pub icmp_type: u8,
    pub code: u8,
    pub checksum: [u8; 2],
    pub flags: [u8; 4],
    pub target: [u8; 16],
}

const _: () = {
    assert!(core::mem::size_of::<EthHdr>() == ETH_HDR_LEN);
    assert!(core::mem::size_of::<Ipv4Hdr>() == IPV4_HDR_LEN);
    assert!(core::mem::size_of::<Ipv6Hdr>() == IPV6_HDR_LEN);
    assert!(core::mem::size_of::<ArpEthIpv4>() == 28);
    assert!(core::mem::size_of::<NeighborAdvert>() == 24);
    assert!(core::mem::align_of::<EthHdr>() == 1);
    assert!(core::mem::align_of::<Ipv4Hdr>() == 1);
    assert!(core::mem::align_of::<Ipv6Hdr>() == 1);
    assert!(core::mem::align_of::<ArpEthIpv4>() == 1);
    assert!(core::mem::align_of::<NeighborAdvert>() == 1);
};

/// Marker for the header structs above: `#[repr(C)]`, only byte fields, alignment 1, any bit pattern valid.
///
/// # Safety
/// Implement only for types with those properties.
pub unsafe trait Header: Copy {}
// SAFETY: each is #[repr(C)] of u8 and [u8; N] fields (checked above).
unsafe impl Header for EthHdr {}
unsafe impl Header for Ipv4Hdr {}
unsafe impl Header for Ipv6Hdr {}
unsafe impl Header for ArpEthIpv4 {}
unsafe impl Header for NeighborAdvert {}

/// The header `T` at `offset` in `bytes`, if it fits.
#[inline(always)]
pub fn header_at<T: Header>(bytes: &[u8], offset: usize) -> Option<&T> {
    let end = offset.checked_add(core::mem::size_of::<T>())?;
    let slice = bytes.get(offset..end)?;
    // SAFETY: the slice is exactly size_of::<T>() bytes, T has alignment 1 and no invalid bit patterns.
    Some(unsafe { &*(slice.as_ptr() as *const T) })
}

/// Where the VRRP message of an IPv4 packet starts, and its IP-level facts; `Ok(None)` when the packet is
/// not VRRP.
#[inline(always)]
pub fn ipv4_vrrp(ip: &Ipv4Hdr) -> Result<Option<(IpMeta, usize)>, RxError> {
    if ip.proto != IPPROTO_VRRP {
        return Ok(None);
    }
    let ihl = (ip.version_ihl & 0x0f) as usize * 4;
    let total = u16::from_be_bytes(ip.total_len) as usize;
    let frag = u16::from_be_bytes(ip.frag_off) & 0x3fff;
    // VRRP messages are never fragmented (at most 1036 bytes in v2); a fragment is a malformed advert.
    if ip.version_ihl >> 4 != 4 || ihl < IPV4_HDR_LEN || total < ihl || frag != 0 {
        return Err(RxError::PacketLen);
    }
    // XDP runs before the stack checks the header: a corrupted VRRPv2 source (outside the VRRP
    // checksum) must not pass. Options (IHL > 5), which VRRP senders do not use, are not covered.
    if ihl == IPV4_HDR_LEN && crate::checksum::fold(crate::checksum::sum(ip.as_bytes(), 0)) != 0 {
        return Err(RxError::Checksum);
    }
    let meta = IpMeta {
        family: FAMILY_V4,
        ttl: ip.ttl,
        payload_len: (total - ihl) as u16,
        src: addr16(&ip.src),
        dst: addr16(&ip.dst),
    };
    Ok(Some((meta, ihl)))
}

/// Same as [`ipv4_vrrp`] for IPv6 (VRRP directly after the fixed header, RFC 5798 §5.1.2).
#[inline(always)]
pub fn ipv6_vrrp(ip: &Ipv6Hdr) -> Result<Option<IpMeta>, RxError> {
    if ip.next_header != IPPROTO_VRRP {
        return Ok(None);
    }
    if ip.version_class_flow[0] >> 4 != 6 {
        return Err(RxError::PacketLen);
    }
    Ok(Some(IpMeta {
        family: FAMILY_V6,
        ttl: ip.hop_limit,
        payload_len: u16::from_be_bytes(ip.payload_len),
        src: ip.src,
        dst: ip.dst,
    }))
}

/// An address claim: (family, address, MAC) from an ARP packet or neighbour advertisement.
#[derive(Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "user", derive(Debug))]
pub struct Claim {
    pub family: u8,
    pub addr: [u8; 16],
    pub mac: [u8; 6],
}

/// The address an ARP request or reply claims (its sender), for Ethernet/IPv4 ARP.
#[inline(always)]
pub fn arp_claim(arp: &ArpEthIpv4) -> Option<Claim> {
    let op = u16::from_be_bytes(arp.oper);
    if u16::from_be_bytes(arp.htype) != 1
        || u16::from_be_bytes(arp.ptype) != ETH_P_IPV4
        || arp.hlen != 6
        || arp.plen != 4
        || !(op == 1 || op == 2)
    {
        return None;
    }
    Some(Claim {
        family: FAMILY_V4,
        addr: addr16(&arp.spa),
        mac: arp.sha,
    })
}

/// The address a neighbour advertisement claims (its target), owned by the frame's source MAC.
#[inline(always)]
pub fn na_claim(ip: &Ipv6Hdr, na: &NeighborAdvert, eth_src: &[u8; 6]) -> Option<Claim> {
    if ip.next_header != IPPROTO_ICMPV6 || na.icmp_type != ICMPV6_NEIGHBOR_ADVERT || na.code != 0 {
        return None;
    }
    Some(Claim {
        family: FAMILY_V6,
        addr: na.target,
        mac: *eth_src,
    })
}

/// What a whole frame is, for the userspace receive path (the XDP program walks the same steps with
/// its own accessor).
#[derive(Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "user", derive(Debug))]
pub enum Frame {
    /// A VRRP packet: IP facts, offset of the VRRP message in the frame, and the source MAC.
    Vrrp {
        ip: IpMeta,
        offset: usize,
        src_mac: [u8; 6],
    },
    Claim(Claim),
    /// A VRRP packet rejected at the IP layer.
    Invalid(RxError),
    Other,
}

/// Classifies an Ethernet frame.
pub fn classify(frame: &[u8]) -> Frame {
    let Some(eth) = header_at::<EthHdr>(frame, 0) else {
        return Frame::Other;
    };
    match eth.ether_type() {
        ETH_P_IPV4 => {
            let Some(ip) = header_at::<Ipv4Hdr>(frame, ETH_HDR_LEN) else {
                return Frame::Other;
            };
            match ipv4_vrrp(ip) {
                Ok(Some((meta, ihl))) => Frame::Vrrp {
                    ip: meta,
                    offset: ETH_HDR_LEN + ihl,
                    src_mac: eth.src,
                },
                Ok(None) => Frame::Other,
                Err(e) => Frame::Invalid(e),
            }
        }
        ETH_P_IPV6 => {
            let Some(ip) = header_at::<Ipv6Hdr>(frame, ETH_HDR_LEN) else {
                return Frame::Other;
            };
            match ipv6_vrrp(ip) {
                Ok(Some(meta)) => {
                    return Frame::Vrrp {
                        ip: meta,
                        offset: ETH_HDR_LEN + IPV6_HDR_LEN,
                        src_mac: eth.src,
                    };
                }
                Err(e) => return Frame::Invalid(e),
                Ok(None) => {}
            }
            match header_at::<NeighborAdvert>(frame, ETH_HDR_LEN + IPV6_HDR_LEN)
                .and_then(|na| na_claim(ip, na, &eth.src))
            {
                Some(c) => Frame::Claim(c),
                None => Frame::Other,
            }
        }
        ETH_P_ARP => match header_at::<ArpEthIpv4>(frame, ETH_HDR_LEN).and_then(arp_claim) {
            Some(c) => Frame::Claim(c),
            None => Frame::Other,
        },
        _ => Frame::Other,
    }
}

/// The VRRP message of a classified frame: the IP payload as the IP header states it, or `None` when
/// the frame is shorter than that (truncated).
pub fn vrrp_message<'a>(frame: &'a [u8], ip: &IpMeta, offset: usize) -> Option<&'a [u8]> {
    frame.get(offset..offset.checked_add(ip.payload_len as usize)?)
}
