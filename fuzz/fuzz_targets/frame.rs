//! A received Ethernet frame through the datapath's pure path (what the XDP program and the raw-socket
//! fallback both run): classification, VRRP validation against a VRID configuration taken from the
//! input, the advert tracker, and ARP/NA claims against the conflict rate limit. Checks that an
//! accepted advert is what validation promises, not only that nothing panics.
#![no_main]

use ipf_common::{
    IfaceConfig, VipState, VridConfig, VridLookup, VridState,
    advert::conflict_due,
    frame::{Frame, classify, vrrp_message},
    maps::{FAMILY_V4, FAMILY_V6},
    observe_advert, validate_advert,
    vrrp::{TYPE_ADVERTISEMENT, VRRP_TTL, message_len},
};
use libfuzzer_sys::fuzz_target;

/// Bytes of input that configure the VRID before the frame starts.
const KNOBS: usize = 16;

struct Lookup {
    cfg: VridConfig,
    vrid: u8,
    peer: [u8; 16],
}

impl VridLookup for Lookup {
    fn config(&self, _family: u8, vrid: u8) -> Option<VridConfig> {
        (vrid == self.vrid).then_some(self.cfg)
    }

    fn is_peer(&self, _family: u8, vrid: u8, addr: &[u8; 16]) -> bool {
        vrid == self.vrid && *addr == self.peer
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() < KNOBS {
        return;
    }
    let (k, frame) = data.split_at(KNOBS);
    let mut auth_pass = [0u8; 8];
    auth_pass.copy_from_slice(&k[6..14]);
    let cfg = VridConfig {
        flags: k[0],
        version: 2 + (k[1] & 1),
        priority: k[2],
        addr_count: k[3],
        adver_int_cs: u16::from_be_bytes([k[4], k[5]]),
        _pad: [0; 2],
        addr_digest: u32::from(k[14]) << 8 | u32::from(k[15]),
        auth_pass,
        primary_addr: [192, 0, 2, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
    };
    let lookup = Lookup {
        cfg,
        vrid: k[1] >> 1,
        peer: [192, 0, 2, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
    };
    let now = u64::from_le_bytes([k[0], k[1], k[2], k[3], k[4], k[5], k[6], k[7]]);
    match classify(frame) {
        Frame::Vrrp { ip, offset, .. } => {
            assert!(ip.family == FAMILY_V4 || ip.family == FAMILY_V6);
            let Some(msg) = vrrp_message(frame, &ip, offset) else {
                assert!(frame.len() < offset + ip.payload_len as usize);
                return;
            };
            if let Ok(adv) = validate_advert(&ip, msg, &lookup) {
                assert_eq!(ip.ttl, VRRP_TTL);
                assert_eq!(adv.vrid, lookup.vrid);
                assert_eq!(adv.version, cfg.version);
                assert_eq!(msg[0] & 0x0f, TYPE_ADVERTISEMENT);
                assert_eq!(msg.len(), message_len(adv.version, ip.family, adv.addr_count));
                assert_ne!(ip.src, cfg.primary_addr, "our own advert accepted");
                if cfg.flags & ipf_common::maps::vrid_flags::UNICAST != 0 {
                    assert_eq!(ip.src, lookup.peer, "a non-peer's advert accepted");
                }
                let mut state = VridState::default();
                let src_mac = [frame[6], frame[7], frame[8], frame[9], frame[10], frame[11]];
                for t in [now, now.wrapping_add(1), now] {
                    observe_advert(&mut state, &cfg, &ip, &adv, &src_mac, t);
                }
                assert_eq!(state.adverts_rx, 3);
                assert_eq!(state.master_addr, ip.src);
            }
        }
        Frame::Claim(claim) => {
            let iface = IfaceConfig {
                conflict_interval_ns: 1_000_000_000,
                own_macs: [[2, 0, 0, 0, 0, 2]; 4],
                own_mac_count: k[0] & 7,
                _pad: [0; 7],
            };
            let mut vip = VipState::default();
            // The owning VRID as the fuzzer made it: Master or not, any last-seen master.
            let state = VridState::default();
            let first = conflict_due(&mut vip, &iface, &cfg, &state, &claim.mac, now);
            // A second claim within the interval is never reported twice.
            let second = conflict_due(&mut vip, &iface, &cfg, &state, &claim.mac, now);
            assert!(!(first && second && now != 0));
        }
        Frame::Invalid(_) | Frame::Other => {}
    }
});
