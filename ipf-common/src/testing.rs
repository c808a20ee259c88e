//! Ethernet frames for tests, fuzzing and benchmarks (feature `testing`).
#![allow(
    clippy::unwrap_used,
    reason = "test frame builder: bad literals in tests should panic"
)]

use std::{vec, vec::Vec};

use std::net::IpAddr;

use crate::{
    frame::{ETH_P_ARP, ETH_P_IPV4, ETH_P_IPV6, IPPROTO_ICMPV6},
    maps::{FAMILY_V4, FAMILY_V6, addr16},
    vrrp::{AdvertFields, IPPROTO_VRRP, MCAST_V4, MCAST_V6, encode_advert},
};

pub const PEER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
pub const OWN_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];

/// An advert to put in a frame.
#[derive(Clone, Debug)]
pub struct Advert {
    pub version: u8,
    pub vrid: u8,
    pub priority: u8,
    pub adver_int_cs: u16,
    pub src: IpAddr,
    /// Defaults to the VRRP multicast group of the source's family.
    pub dst: Option<IpAddr>,
    pub addrs: Vec<IpAddr>,
    pub auth_pass: Option<[u8; 8]>,
    pub ttl: u8,
}

impl Advert {
    pub fn v3(vrid: u8, priority: u8, src: &str, addrs: &[&str]) -> Self {
        Advert {
            version: 3,
            vrid,
            priority,
            adver_int_cs: 100,
            src: src.parse().unwrap(),
            dst: None,
            addrs: addrs.iter().map(|a| a.parse().unwrap()).collect(),
            auth_pass: None,
            ttl: 255,
        }
    }

    pub fn v2(vrid: u8, priority: u8, src: &str, addrs: &[&str]) -> Self {
        Advert {
            version: 2,
            ..Self::v3(vrid, priority, src, addrs)
        }
    }

    fn family(&self) -> u8 {
        if self.src.is_ipv6() { FAMILY_V6 } else { FAMILY_V4 }
    }

    fn dst_addr(&self) -> IpAddr {
        self.dst.unwrap_or(if self.src.is_ipv6() {
            IpAddr::from(MCAST_V6)
        } else {
            IpAddr::from(MCAST_V4)
        })
    }

    /// The VRRP message alone, with a correct checksum.
    pub fn message(&self) -> Vec<u8> {
        let addr_bytes: Vec<u8> = self.addrs.iter().flat_map(octets).collect();
        let mut buf = vec![0u8; 4096];
        let fields = AdvertFields {
            version: self.version,
            family: self.family(),
            vrid: self.vrid,
            priority: self.priority,
            adver_int_cs: self.adver_int_cs,
            addrs: &addr_bytes,
            auth_pass: self.auth_pass,
            src: addr16(&octets(&self.src)),
            dst: addr16(&octets(&self.dst_addr())),
        };
        let n = encode_advert(&fields, &mut buf).unwrap();
        buf.truncate(n);
        buf
    }

    /// The whole Ethernet frame.
    pub fn frame(&self) -> Vec<u8> {
        ip_frame(&self.src, &self.dst_addr(), IPPROTO_VRRP, self.ttl, &self.message())
    }
}

pub fn octets(a: &IpAddr) -> Vec<u8> {
    match a {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

/// An Ethernet frame carrying an IPv4 or IPv6 packet with `payload`.
pub fn ip_frame(src: &IpAddr, dst: &IpAddr, proto: u8, ttl: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(14 + 40 + payload.len());
    let dst_mac: [u8; 6] = if dst.is_ipv6() {
        [0x33, 0x33, 0, 0, 0, 0x12]
    } else {
        [0x01, 0, 0x5e, 0, 0, 0x12]
    };
    f.extend_from_slice(&dst_mac);
    f.extend_from_slice(&PEER_MAC);
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            f.extend_from_slice(&ETH_P_IPV4.to_be_bytes());
            let total = (20 + payload.len()) as u16;
            let mut h = [0u8; 20];
            h[0] = 0x45;
            h[2..4].copy_from_slice(&total.to_be_bytes());
            h[8] = ttl;
            h[9] = proto;
            h[12..16].copy_from_slice(&s.octets());
            h[16..20].copy_from_slice(&d.octets());
            let c = crate::checksum::fold(crate::checksum::sum(&h, 0));
            h[10..12].copy_from_slice(&c.to_be_bytes());
            f.extend_from_slice(&h);
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            f.extend_from_slice(&ETH_P_IPV6.to_be_bytes());
            let mut h = [0u8; 40];
            h[0] = 0x60;
            h[4..6].copy_from_slice(&(payload.len() as u16).to_be_bytes());
            h[6] = proto;
            h[7] = ttl;
            h[8..24].copy_from_slice(&s.octets());
            h[24..40].copy_from_slice(&d.octets());
            f.extend_from_slice(&h);
        }
        _ => panic!("mixed address families"),
    }
    f.extend_from_slice(payload);
    f
}

/// A UDP datagram frame (pass-through traffic).
pub fn udp_frame(src: &str, dst: &str, payload_len: usize) -> Vec<u8> {
    let mut udp = vec![0u8; 8 + payload_len];
    udp[0..2].copy_from_slice(&12345u16.to_be_bytes());
    udp[2..4].copy_from_slice(&80u16.to_be_bytes());
    udp[4..6].copy_from_slice(&((8 + payload_len) as u16).to_be_bytes());
    ip_frame(&src.parse().unwrap(), &dst.parse().unwrap(), 17, 64, &udp)
}

/// An ARP packet (op 1 request, 2 reply) in which `sender_mac` claims `sender_ip`.
pub fn arp_frame(op: u16, sender_mac: [u8; 6], sender_ip: &str, target_ip: &str) -> Vec<u8> {
    let s: std::net::Ipv4Addr = sender_ip.parse().unwrap();
    let t: std::net::Ipv4Addr = target_ip.parse().unwrap();
    let mut f = Vec::new();
    f.extend_from_slice(&[0xff; 6]);
    f.extend_from_slice(&sender_mac);
    f.extend_from_slice(&ETH_P_ARP.to_be_bytes());
    f.extend_from_slice(&1u16.to_be_bytes());
    f.extend_from_slice(&ETH_P_IPV4.to_be_bytes());
    f.push(6);
    f.push(4);
    f.extend_from_slice(&op.to_be_bytes());
    f.extend_from_slice(&sender_mac);
    f.extend_from_slice(&s.octets());
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&t.octets());
    f
}

/// An unsolicited neighbour advertisement for `target` sent from `src_mac`.
pub fn na_frame(src_mac: [u8; 6], src: &str, target: &str) -> Vec<u8> {
    let t: std::net::Ipv6Addr = target.parse().unwrap();
    let mut icmp = vec![136u8, 0, 0, 0, 0x20, 0, 0, 0];
    icmp.extend_from_slice(&t.octets());
    // Target link-layer address option.
    icmp.extend_from_slice(&[2, 1]);
    icmp.extend_from_slice(&src_mac);
    let mut f = ip_frame(
        &src.parse().unwrap(),
        &"ff02::1".parse().unwrap(),
        IPPROTO_ICMPV6,
        255,
        &icmp,
    );
    f[6..12].copy_from_slice(&src_mac);
    f
}
