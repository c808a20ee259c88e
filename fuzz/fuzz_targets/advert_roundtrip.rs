//! Encoding and validation agree: every advert `encode_advert` produces from the input's fields passes
//! `validate_advert` for a VRID configured with the same fields and comes back unchanged; flipping any
//! one byte of it is rejected or still decodes consistently, and never panics.
#![no_main]

use ipf_common::{
    IpMeta, VridConfig, VridLookup,
    maps::{FAMILY_V4, FAMILY_V6, vrid_flags},
    validate_advert,
    vrrp::{AdvertFields, address_digest, encode_advert},
};
use libfuzzer_sys::fuzz_target;

struct One(VridConfig);

impl VridLookup for One {
    fn config(&self, _family: u8, _vrid: u8) -> Option<VridConfig> {
        Some(self.0)
    }

    fn is_peer(&self, _family: u8, _vrid: u8, _addr: &[u8; 16]) -> bool {
        true
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 12 {
        return;
    }
    let (k, rest) = data.split_at(12);
    let v6 = k[0] & 1 == 1;
    let family = if v6 { FAMILY_V6 } else { FAMILY_V4 };
    let version = if v6 || k[0] & 2 == 2 { 3 } else { 2 };
    let addr_len = if v6 { 16 } else { 4 };
    let n = (rest.len() / addr_len).min(usize::from(k[1]));
    let addrs = &rest[..n * addr_len];
    let pass = (version == 2 && k[0] & 4 == 4).then(|| {
        let mut p = [0u8; 8];
        p.copy_from_slice(&k[4..12]);
        p
    });
    let adver_int_cs = if version == 2 {
        u16::from(k[2]) * 100
    } else {
        u16::from_be_bytes([k[2], k[3]])
    };
    let mut src = [0u8; 16];
    src[..4].copy_from_slice(&[192, 0, 2, 1]);
    let mut dst = [0u8; 16];
    dst[..4].copy_from_slice(&[224, 0, 0, 18]);
    let fields = AdvertFields {
        version,
        family,
        vrid: k[3] | 1,
        priority: k[1],
        adver_int_cs,
        addrs,
        auth_pass: pass,
        src,
        dst,
    };
    let mut buf = [0u8; 8 + 255 * 16 + 8];
    let Ok(len) = encode_advert(&fields, &mut buf) else {
        return;
    };
    let msg = &mut buf[..len];
    let mut flags = vrid_flags::CONFIGURED | vrid_flags::CHECK_ADDRS;
    if pass.is_some() {
        flags |= vrid_flags::AUTH_PASS;
    }
    let cfg = VridConfig {
        flags,
        version,
        priority: 100,
        addr_count: n as u8,
        adver_int_cs,
        _pad: [0; 2],
        addr_digest: address_digest(addrs),
        auth_pass: pass.unwrap_or([0; 8]),
        primary_addr: [0xff; 16],
    };
    let ip = IpMeta {
        family,
        ttl: 255,
        payload_len: len as u16,
        src,
        dst,
    };
    let adv = validate_advert(&ip, msg, &One(cfg)).expect("an encoded advert validates");
    assert_eq!(
        (adv.version, adv.vrid, adv.priority, adv.addr_count, adv.adver_int_cs),
        (version, fields.vrid, fields.priority, n as u8, adver_int_cs)
    );
    // One flipped bit anywhere: the checksum catches it (or validation rejects it earlier).
    let bit = usize::from(k[2]) * 8 + usize::from(k[3] & 7);
    if bit / 8 < len {
        msg[bit / 8] ^= 1 << (bit % 8);
        assert!(
            validate_advert(&ip, msg, &One(cfg)).is_err(),
            "a corrupted advert validated"
        );
    }
});
