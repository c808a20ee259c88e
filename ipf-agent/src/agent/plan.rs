//! One instance's settings, projected once into what each part needs: the election engine
//! ([`InstanceConfig`]), the datapath ([`VridSpec`]), the advert sender ([`AdvertWire`]), the VIP
//! worker (VIPs with their interface) and the status board. Every conversion (centiseconds, the
//! PASS password's wire bytes, destinations) happens here and nowhere else.

use std::net::IpAddr;

use ipf_common::vrrp::{MCAST_V4, MCAST_V6};

use crate::{
    config::{InstanceSpec, Vip},
    datapath::{Family, VridSpec, wire_addr},
    status::InstanceStatus,
    vrrp::{InstanceConfig, State, timers::Precision},
};

/// Most addresses one advert of `family` carries: what its 8-bit count field and a 1500-byte packet
/// hold (255 IPv4, 90 IPv6). The rest are still owned, just not advertised, as keepalived moves them
/// to its excluded addresses. keepalived 2 advertises every other VIP, and a keepalived Backup takes
/// an advert whose list differs from its own configuration for no master at all; keepalived 1.x's
/// limit of 20 would make one take over beside an ipf Master with 21 VIPs or more.
pub fn max_advertised(family: Family) -> usize {
    match family {
        Family::V4 => 255,
        Family::V6 => (1500 - 40 - 8) / 16,
    }
}

/// What goes into every advert of the instance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdvertWire {
    pub family: Family,
    pub vrid: u8,
    pub version: u8,
    pub adver_int_cs: u16,
    pub src: IpAddr,
    /// The multicast group, or the unicast peers but this node.
    pub dsts: Vec<IpAddr>,
    /// The advertised address list as on the wire (the first [`max_advertised`] VIPs).
    pub addrs: Vec<u8>,
    /// The PASS password's 8 wire bytes.
    pub auth_pass: Option<[u8; 8]>,
}

/// Everything starting an instance needs, built from its configuration and advert source.
#[derive(Clone, Debug)]
pub struct InstancePlan {
    pub engine: InstanceConfig,
    pub datapath: VridSpec,
    pub wire: AdvertWire,
    /// Every owned VIP with its interface filled in (`dev`), so the VIP worker needs no other context.
    pub vips: Vec<Vip>,
    pub status: InstanceStatus,
}

impl InstancePlan {
    /// `interface` is the VRRP interface; `src` the advert source the node chose.
    pub fn new(spec: &InstanceSpec, interface: &str, src: IpAddr) -> Self {
        let dsts = if spec.unicast_peers.is_empty() {
            vec![match spec.family {
                Family::V6 => IpAddr::from(MCAST_V6),
                Family::V4 => IpAddr::from(MCAST_V4),
            }]
        } else {
            // The ipfailover image lists every node, this one included.
            spec.unicast_peers.iter().copied().filter(|p| *p != src).collect()
        };
        let auth_pass = spec.auth_pass.as_ref().map(|p| {
            let mut a = [0u8; 8];
            let n = p.len().min(8);
            a[..n].copy_from_slice(&p.as_bytes()[..n]);
            a
        });
        let addr_len = if spec.family == Family::V6 { 16 } else { 4 };
        let addrs = spec
            .vips
            .iter()
            .take(max_advertised(spec.family))
            .flat_map(|v| wire_addr(&v.addr)[..addr_len].to_vec())
            .collect();
        let vips: Vec<Vip> = spec
            .owned()
            .map(|v| Vip {
                dev: Some(spec.vip_interface(v).to_owned()),
                ..v.clone()
            })
            .collect();
        InstancePlan {
            engine: InstanceConfig {
                name: spec.name.clone(),
                vrid: spec.vrid,
                family: spec.family,
                version: spec.version,
                priority: spec.priority,
                adver_int: spec.adver_int,
                preempt: spec.preempt,
                primary_addr: src,
                timer_precision: Precision::Fine,
            },
            datapath: VridSpec {
                family: spec.family,
                vrid: spec.vrid,
                version: spec.version,
                priority: spec.priority,
                adver_int: spec.adver_int,
                primary_addr: Some(src),
                unicast_peers: spec.unicast_peers.clone(),
                auth_pass: spec.auth_pass.clone(),
                expected_addrs: None,
                master: false,
                guard: false,
            },
            wire: AdvertWire {
                family: spec.family,
                vrid: spec.vrid,
                version: spec.version,
                // Validated to fit (config::validate): whole centiseconds, at most 40.95 s in v3.
                adver_int_cs: u16::try_from(spec.adver_int.as_millis() / 10).unwrap_or(u16::MAX),
                src,
                dsts,
                addrs,
                auth_pass,
            },
            status: InstanceStatus {
                instance: spec.name.clone(),
                interface: interface.to_owned(),
                vrid: spec.vrid,
                family: format!("{:?}", spec.family).to_lowercase(),
                state: State::Initialize.keepalived_name().to_owned(),
                priority: spec.priority,
                configured_priority: spec.priority,
                master: None,
                vips: vips.iter().map(ToString::to_string).collect(),
                last_transition: 0.0,
                conflicts: Vec::new(),
                dns_peers: Vec::new(),
                yielded_to: None,
                src: Some(src),
                family_key: Some(spec.family),
            },
            vips,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::parse_vip;

    fn spec() -> InstanceSpec {
        let mut s = InstanceSpec::new("VI_1", "eth0", 51, Family::V4);
        s.adver_int = Duration::from_millis(1230);
        s.auth_pass = Some("secret12".into());
        s.vips = (1..=22)
            .map(|n| parse_vip(&format!("192.0.2.{n}/24")).expect("vip"))
            .collect();
        s.excluded = vec![parse_vip("198.51.100.1/32 dev eth1").expect("vip")];
        s
    }

    #[test]
    fn every_part_gets_the_same_settings() {
        let src: IpAddr = "192.0.2.200".parse().expect("addr");
        let p = InstancePlan::new(&spec(), "eth0", src);
        assert_eq!(p.wire.adver_int_cs, 123);
        assert_eq!(p.engine.adver_int, p.datapath.adver_int);
        assert_eq!(p.wire.auth_pass, Some(*b"secret12"));
        assert_eq!(p.datapath.auth_pass.as_deref(), Some("secret12"));
        assert_eq!(
            (p.engine.primary_addr, p.datapath.primary_addr, p.wire.src),
            (src, Some(src), src)
        );
        assert_eq!(p.wire.dsts, [IpAddr::from(MCAST_V4)]);
        // All 22 advertised VIPs go on the wire, 4 bytes each; all 23 owned ones are placed.
        assert_eq!(p.wire.addrs.len(), 22 * 4);
        assert_eq!(&p.wire.addrs[..4], &[192, 0, 2, 1]);
        assert_eq!(p.vips.len(), 23);
        assert_eq!(p.vips[0].dev.as_deref(), Some("eth0"));
        assert_eq!(p.vips[22].dev.as_deref(), Some("eth1"));
        assert_eq!(p.status.vips.len(), 23);
        assert_eq!((p.status.state.as_str(), p.status.family.as_str()), ("INIT", "v4"));
    }

    #[test]
    fn unicast_skips_this_node_and_v6_uses_its_group() {
        let src: IpAddr = "192.0.2.200".parse().expect("addr");
        let mut s = spec();
        s.unicast_peers = vec![src, "192.0.2.201".parse().expect("addr")];
        let p = InstancePlan::new(&s, "eth0", src);
        assert_eq!(p.wire.dsts, ["192.0.2.201".parse::<IpAddr>().expect("addr")]);
        assert_eq!(
            p.datapath.unicast_peers.len(),
            2,
            "the datapath still accepts every listed peer"
        );
        let mut v6 = InstanceSpec::new("VI_6", "eth0", 7, Family::V6);
        v6.version = 3;
        v6.vips = vec![parse_vip("2001:db8::1/64").expect("vip")];
        let p = InstancePlan::new(&v6, "eth0", "fe80::1".parse().expect("addr"));
        assert_eq!(p.wire.dsts, [IpAddr::from(MCAST_V6)]);
        assert_eq!(p.wire.addrs.len(), 16);
        assert_eq!(p.wire.auth_pass, None);
    }

    #[test]
    fn adverts_list_what_one_packet_holds_and_every_vip_stays_owned() {
        let mut v4 = spec();
        v4.vips = (0..300u32)
            .map(|n| parse_vip(&format!("10.0.{}.{}/16", n / 256, n % 256)).expect("vip"))
            .collect();
        let p = InstancePlan::new(&v4, "eth0", "192.0.2.200".parse().expect("addr"));
        assert_eq!(p.wire.addrs.len(), 255 * 4, "the count field's limit");
        assert_eq!(p.vips.len(), 301);
        let mut v6 = InstanceSpec::new("VI_6", "eth0", 7, Family::V6);
        v6.version = 3;
        v6.vips = (0..100)
            .map(|n| parse_vip(&format!("2001:db8::{n:x}/64")).expect("vip"))
            .collect();
        let p = InstancePlan::new(&v6, "eth0", "fe80::1".parse().expect("addr"));
        // IPv6 header, VRRP header, addresses: within 1500 bytes, no fragment.
        assert!(40 + 8 + p.wire.addrs.len() <= 1500);
        assert_eq!(p.wire.addrs.len(), 90 * 16);
        assert_eq!(p.vips.len(), 100);
    }
}
