//! Shared by `validation.rs` and `fuzz_props.rs`: a configuration lookup, an Ethernet/IPv4/IPv6 frame
//! builder written independently of `ipf_common::testing` (only the VRRP message itself comes from
//! `encode_advert`), the userspace receive path end to end, and a plain RFC 1071 reference checksum.
#![allow(dead_code, reason = "each test file uses part of it")]

use std::collections::{HashMap, HashSet};

use ipf_common::{
    VridConfig,
    frame::{Frame, classify, vrrp_message},
    maps::{FAMILY_V4, FAMILY_V6, vrid_flags},
    vrrp::{
        Advert, AdvertFields, IPPROTO_VRRP, IpMeta, MCAST_V4, MCAST_V6, RxError, VridLookup, encode_advert,
        validate_advert,
    },
};

pub const ETH: usize = 14;
pub const PEER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];

/// 192.0.2.2 and fe80::2: this node's primary addresses.
pub const OUR_V4: [u8; 16] = v4([192, 0, 2, 2]);
pub const OUR_V6: [u8; 16] = v6_last(2);
/// 192.0.2.1 and fe80::1: the peer that sends the test adverts.
pub const PEER_V4: [u8; 16] = v4([192, 0, 2, 1]);
pub const PEER_V6: [u8; 16] = v6_last(1);
/// 192.0.2.7 and fe80::7: a node that is not a configured unicast peer.
pub const STRANGER_V4: [u8; 16] = v4([192, 0, 2, 7]);
pub const STRANGER_V6: [u8; 16] = v6_last(7);

/// An IPv4 address in the 16-byte form used by `IpMeta` and the maps.
pub const fn v4(a: [u8; 4]) -> [u8; 16] {
    [a[0], a[1], a[2], a[3], 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
}

/// fe80::`last`.
pub const fn v6_last(last: u8) -> [u8; 16] {
    [0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, last]
}

/// 2001:db8::`n`.
pub const fn doc_v6(n: u16) -> [u8; 16] {
    let b = n.to_be_bytes();
    [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, b[0], b[1]]
}

/// 198.51.100.`n`.
pub const fn doc_v4(n: u8) -> [u8; 16] {
    v4([198, 51, 100, n])
}

pub fn addr_len(family: u8) -> usize {
    if family == FAMILY_V6 { 16 } else { 4 }
}

pub fn mcast(family: u8) -> [u8; 16] {
    if family == FAMILY_V6 { MCAST_V6 } else { v4(MCAST_V4) }
}

/// Configuration lookup backed by hash maps, as the agent's raw-socket path has it.
#[derive(Default, Clone)]
pub struct TestLookup {
    pub configs: HashMap<(u8, u8), VridConfig>,
    pub peers: HashSet<(u8, u8, [u8; 16])>,
}

impl VridLookup for TestLookup {
    fn config(&self, family: u8, vrid: u8) -> Option<VridConfig> {
        self.configs.get(&(family, vrid)).copied()
    }

    fn is_peer(&self, family: u8, vrid: u8, addr: &[u8; 16]) -> bool {
        self.peers.contains(&(family, vrid, *addr))
    }
}

impl TestLookup {
    pub fn set(&mut self, family: u8, vrid: u8, cfg: VridConfig) -> &mut Self {
        self.configs.insert((family, vrid), cfg);
        self
    }

    pub fn peer(&mut self, family: u8, vrid: u8, addr: [u8; 16]) -> &mut Self {
        self.peers.insert((family, vrid, addr));
        self
    }
}

/// A configured VRID: `version`, priority 100, 1 s adverts, primary address of `family`.
pub fn config(family: u8, version: u8) -> VridConfig {
    VridConfig {
        flags: vrid_flags::CONFIGURED,
        version,
        priority: 100,
        adver_int_cs: 100,
        primary_addr: if family == FAMILY_V6 { OUR_V6 } else { OUR_V4 },
        ..VridConfig::default()
    }
}

/// An advertisement to send, and the IP header around it.
#[derive(Clone, Debug)]
pub struct Spec {
    pub version: u8,
    pub family: u8,
    pub vrid: u8,
    pub priority: u8,
    pub adver_int_cs: u16,
    /// 16-byte form; the first 4 bytes are used for IPv4.
    pub addrs: Vec<[u8; 16]>,
    pub auth_pass: Option<[u8; 8]>,
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub ttl: u8,
}

impl Spec {
    /// VRRPv3 from the peer to the multicast group, priority 100, 1 s, two documentation addresses.
    pub fn v3(family: u8, vrid: u8) -> Self {
        let v6 = family == FAMILY_V6;
        Spec {
            version: 3,
            family,
            vrid,
            priority: 100,
            adver_int_cs: 100,
            addrs: if v6 {
                vec![doc_v6(1), doc_v6(2)]
            } else {
                vec![doc_v4(1), doc_v4(2)]
            },
            auth_pass: None,
            src: if v6 { PEER_V6 } else { PEER_V4 },
            dst: mcast(family),
            ttl: 255,
        }
    }

    /// VRRPv2 (IPv4 only), otherwise as [`Spec::v3`].
    pub fn v2(vrid: u8) -> Self {
        Spec {
            version: 2,
            ..Self::v3(FAMILY_V4, vrid)
        }
    }

    pub fn addr_bytes(&self) -> Vec<u8> {
        let n = addr_len(self.family);
        self.addrs.iter().flat_map(|a| a[..n].iter().copied()).collect()
    }

    /// The VRRP message made by `encode_advert`.
    pub fn message(&self) -> Vec<u8> {
        let addrs = self.addr_bytes();
        let fields = AdvertFields {
            version: self.version,
            family: self.family,
            vrid: self.vrid,
            priority: self.priority,
            adver_int_cs: self.adver_int_cs,
            addrs: &addrs,
            auth_pass: self.auth_pass,
            src: self.src,
            dst: self.dst,
        };
        let mut buf = vec![0u8; 8192];
        let n = encode_advert(&fields, &mut buf).expect("encodable advert");
        buf.truncate(n);
        buf
    }

    /// The whole Ethernet frame.
    pub fn frame(&self) -> Vec<u8> {
        self.frame_with(&self.message())
    }

    /// The Ethernet and IP headers of this spec around `msg`.
    pub fn frame_with(&self, msg: &[u8]) -> Vec<u8> {
        ip_frame(self.family, &self.src, &self.dst, self.ttl, IPPROTO_VRRP, msg)
    }

    /// The advert validation should return for this spec.
    pub fn expected(&self) -> Advert {
        Advert {
            family: self.family,
            version: self.version,
            vrid: self.vrid,
            priority: self.priority,
            addr_count: self.addrs.len() as u8,
            adver_int_cs: self.adver_int_cs,
        }
    }

    /// IP facts for calling `validate_advert` directly on a message of `len` bytes.
    pub fn ip_meta(&self, len: usize) -> IpMeta {
        IpMeta {
            family: self.family,
            ttl: self.ttl,
            payload_len: len as u16,
            src: self.src,
            dst: self.dst,
        }
    }
}

/// An Ethernet frame carrying an IPv4 (no options, no fragmentation) or IPv6 packet with `payload`.
pub fn ip_frame(family: u8, src: &[u8; 16], dst: &[u8; 16], ttl: u8, proto: u8, payload: &[u8]) -> Vec<u8> {
    if family == FAMILY_V6 {
        ipv6_frame(src, dst, ttl, proto, payload)
    } else {
        ipv4_frame(src, dst, ttl, proto, &[], 0, payload)
    }
}

fn eth_header(f: &mut Vec<u8>, dst_mac: [u8; 6], ether_type: u16) {
    f.extend_from_slice(&dst_mac);
    f.extend_from_slice(&PEER_MAC);
    f.extend_from_slice(&ether_type.to_be_bytes());
}

/// An IPv4 frame with header `options` (a multiple of 4 bytes) and the flags/fragment-offset field.
pub fn ipv4_frame(
    src: &[u8; 16],
    dst: &[u8; 16],
    ttl: u8,
    proto: u8,
    options: &[u8],
    frag_off: u16,
    payload: &[u8],
) -> Vec<u8> {
    assert!(options.len().is_multiple_of(4) && options.len() <= 40);
    let mut f = Vec::with_capacity(ETH + 60 + payload.len());
    eth_header(&mut f, [0x01, 0, 0x5e, 0, 0, 0x12], 0x0800);
    let hlen = 20 + options.len();
    let mut h = vec![0u8; hlen];
    h[0] = 0x40 | (hlen / 4) as u8;
    h[1] = 0xc0; // DSCP CS6, as VRRP speakers send
    h[2..4].copy_from_slice(&((hlen + payload.len()) as u16).to_be_bytes());
    h[4..6].copy_from_slice(&0x1234u16.to_be_bytes());
    h[6..8].copy_from_slice(&frag_off.to_be_bytes());
    h[8] = ttl;
    h[9] = proto;
    h[12..16].copy_from_slice(&src[..4]);
    h[16..20].copy_from_slice(&dst[..4]);
    h[20..].copy_from_slice(options);
    let c = reference_checksum(&h);
    h[10..12].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(&h);
    f.extend_from_slice(payload);
    f
}

pub fn ipv6_frame(src: &[u8; 16], dst: &[u8; 16], hop_limit: u8, next_header: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(ETH + 40 + payload.len());
    eth_header(&mut f, [0x33, 0x33, 0, 0, 0, 0x12], 0x86dd);
    f.extend_from_slice(&[0x60, 0, 0, 0]);
    f.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    f.push(next_header);
    f.push(hop_limit);
    f.extend_from_slice(src);
    f.extend_from_slice(dst);
    f.extend_from_slice(payload);
    f
}

/// RFC 1071 the plain way: 16-bit big-endian words, an odd last byte padded with zero, end-around
/// carry after every addition, complement at the end.
pub fn reference_checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for pair in data.chunks(2) {
        let word = u16::from_be_bytes([pair[0], pair.get(1).copied().unwrap_or(0)]);
        sum += u32::from(word);
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// The pseudo-header of RFC 768 (IPv4) or RFC 8200 §8.1 (IPv6) for a VRRP message of `len` bytes.
pub fn pseudo_header(family: u8, src: &[u8; 16], dst: &[u8; 16], len: usize) -> Vec<u8> {
    let mut p = Vec::new();
    if family == FAMILY_V6 {
        p.extend_from_slice(src);
        p.extend_from_slice(dst);
        p.extend_from_slice(&(len as u32).to_be_bytes());
        p.extend_from_slice(&[0, 0, 0, IPPROTO_VRRP]);
    } else {
        p.extend_from_slice(&src[..4]);
        p.extend_from_slice(&dst[..4]);
        p.extend_from_slice(&[0, IPPROTO_VRRP]);
        p.extend_from_slice(&(len as u16).to_be_bytes());
    }
    p
}

/// The reference checksum of `msg` (checksum field included as it is): VRRPv3 over the pseudo-header
/// and the message, VRRPv2 over the message alone. A correct message gives 0.
pub fn reference_vrrp_checksum(pseudo: bool, family: u8, src: &[u8; 16], dst: &[u8; 16], msg: &[u8]) -> u16 {
    if pseudo {
        let mut all = pseudo_header(family, src, dst, msg.len());
        all.extend_from_slice(msg);
        reference_checksum(&all)
    } else {
        reference_checksum(msg)
    }
}

/// Recomputes the IPv4 header checksum of an Ethernet frame (no-op for other frames or IHL > 5), so a
/// test that edits a header field exercises the rule it targets, not the header checksum.
pub fn reseal_ipv4_header(frame: &mut [u8]) {
    if frame.len() >= 34 && frame[12..14] == [0x08, 0x00] && frame[14] == 0x45 {
        frame[24..26].fill(0);
        let c = reference_checksum(&frame[14..34]);
        frame[24..26].copy_from_slice(&c.to_be_bytes());
    }
}

/// Recomputes the checksum of `msg` with the reference (pseudo-header when the version nibble says 3).
pub fn reseal(family: u8, src: &[u8; 16], dst: &[u8; 16], msg: &mut [u8]) {
    if msg.len() < 8 {
        return;
    }
    msg[6..8].fill(0);
    let c = reference_vrrp_checksum(msg[0] >> 4 == 3, family, src, dst, msg);
    msg[6..8].copy_from_slice(&c.to_be_bytes());
}

/// What the agent's raw-socket path (`ipf-agent/src/datapath/raw.rs`) makes of a frame.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Accepted(Advert),
    Rejected(RxError),
    NotVrrp,
}

pub fn receive(frame: &[u8], lookup: &impl VridLookup) -> Outcome {
    match classify(frame) {
        Frame::Vrrp { ip, offset, .. } => match vrrp_message(frame, &ip, offset) {
            None => Outcome::Rejected(RxError::PacketLen),
            Some(msg) => match validate_advert(&ip, msg, lookup) {
                Ok(a) => Outcome::Accepted(a),
                Err(e) => Outcome::Rejected(e),
            },
        },
        Frame::Invalid(e) => Outcome::Rejected(e),
        Frame::Claim(_) | Frame::Other => Outcome::NotVrrp,
    }
}

/// The IP facts and VRRP message of a frame, parsed here without `ipf_common::frame`, for re-checking
/// what the crate accepted. `None` when the frame is not a complete VRRP packet.
pub struct Parsed<'a> {
    pub family: u8,
    pub ttl: u8,
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub msg: &'a [u8],
}

pub fn parse_independently(frame: &[u8]) -> Option<Parsed<'_>> {
    let ether_type = u16::from_be_bytes([*frame.get(12)?, *frame.get(13)?]);
    match ether_type {
        0x0800 => {
            let ip = frame.get(ETH..ETH + 20)?;
            let ihl = usize::from(ip[0] & 0x0f) * 4;
            let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
            if ip[9] != IPPROTO_VRRP || ip[0] >> 4 != 4 || ihl < 20 || total < ihl {
                return None;
            }
            let mut src = [0u8; 16];
            let mut dst = [0u8; 16];
            src[..4].copy_from_slice(&ip[12..16]);
            dst[..4].copy_from_slice(&ip[16..20]);
            Some(Parsed {
                family: FAMILY_V4,
                ttl: ip[8],
                src,
                dst,
                msg: frame.get(ETH + ihl..ETH + total)?,
            })
        }
        0x86dd => {
            let ip = frame.get(ETH..ETH + 40)?;
            if ip[6] != IPPROTO_VRRP {
                return None;
            }
            let len = usize::from(u16::from_be_bytes([ip[4], ip[5]]));
            let mut src = [0u8; 16];
            let mut dst = [0u8; 16];
            src.copy_from_slice(&ip[8..24]);
            dst.copy_from_slice(&ip[24..40]);
            Some(Parsed {
                family: FAMILY_V6,
                ttl: ip[7],
                src,
                dst,
                msg: frame.get(ETH + 40..ETH + 40 + len)?,
            })
        }
        _ => None,
    }
}
