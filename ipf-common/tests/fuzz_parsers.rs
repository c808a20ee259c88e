//! Property-based fuzzing of the parsers and validation (runs in CI, a few seconds): no input panics,
//! whatever is accepted really has a valid checksum, and encode → receive round-trips.

mod support;

use std::net::IpAddr;

use ipf_common::{
    checksum,
    frame::{Frame, classify, vrrp_message},
    maps::{FAMILY_V4, FAMILY_V6},
    testing::Advert,
    vrrp::address_digest,
};
use proptest::prelude::*;
use support::{Lookup, Outcome, receive, reference_checksum};

fn lookup() -> Lookup {
    let mut l = Lookup::default();
    for vrid in 1..=255u8 {
        l = l.with(FAMILY_V4, vrid, 3, [0; 16]).with(FAMILY_V6, vrid, 3, [0; 16]);
    }
    l.with(FAMILY_V4, 200, 2, [0; 16])
}

/// A valid advert with random fields.
fn any_advert() -> impl Strategy<Value = Advert> {
    // VRID 200 is the VRRPv2 one in `lookup`; v3 adverts use the others.
    (
        any::<bool>(),
        1u8..=199,
        0u8..=255,
        1usize..=20,
        1u16..=4095,
        any::<bool>(),
    )
        .prop_map(|(v6, vrid, priority, n, interval, v2)| {
            let v2 = v2 && !v6;
            let addrs: Vec<String> = (0..n)
                .map(|i| {
                    if v6 {
                        format!("2001:db8::{:x}", i + 1)
                    } else {
                        format!("198.51.100.{}", i + 1)
                    }
                })
                .collect();
            let refs: Vec<&str> = addrs.iter().map(String::as_str).collect();
            let src = if v6 { "fe80::1" } else { "192.0.2.1" };
            let mut a = if v2 {
                Advert::v2(200, priority, src, &refs)
            } else {
                Advert::v3(vrid, priority, src, &refs)
            };
            a.adver_int_cs = if v2 { 100 } else { interval };
            a
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..1600)) {
        let l = lookup();
        let _ = receive(&bytes, &l);
    }

    #[test]
    fn arbitrary_bytes_behind_a_vrrp_header_never_panic(payload in proptest::collection::vec(any::<u8>(), 0..1200), ttl in any::<u8>()) {
        let l = lookup();
        let src: IpAddr = "192.0.2.1".parse().expect("addr");
        let dst: IpAddr = "224.0.0.18".parse().expect("addr");
        let frame = ipf_common::testing::ip_frame(&src, &dst, 112, ttl, &payload);
        let _ = receive(&frame, &l);
    }

    #[test]
    fn mutated_adverts_never_panic_and_accepted_ones_check_out(
        adv in any_advert(),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        cut in any::<prop::sample::Index>(),
        truncate in any::<bool>(),
    ) {
        let l = lookup();
        let mut frame = adv.frame();
        for (at, byte) in edits {
            let i = at.index(frame.len());
            frame[i] = byte;
        }
        if truncate {
            frame.truncate(cut.index(frame.len()));
        }
        if let Outcome::Accepted(_) = receive(&frame, &l) {
            // Whatever passed must carry a correct checksum over what the IP header delimits.
            let Frame::Vrrp { ip, offset, .. } = classify(&frame) else { panic!("accepted a non-VRRP frame") };
            let msg = vrrp_message(&frame, &ip, offset).expect("accepted message is whole");
            let len = ip.addr_len();
            let sum = if msg[0] >> 4 == 3 {
                let pseudo = [&ip.src[..len], &ip.dst[..len], &[0, 112], &(msg.len() as u16).to_be_bytes()].concat();
                reference_checksum(&[&pseudo, msg])
            } else {
                reference_checksum(&[msg])
            };
            prop_assert_eq!(sum, 0);
        }
    }

    #[test]
    fn encode_then_receive_round_trips(adv in any_advert()) {
        let l = lookup();
        let Outcome::Accepted(a) = receive(&adv.frame(), &l) else { panic!("valid advert rejected: {adv:?}") };
        prop_assert_eq!(a.version, adv.version);
        prop_assert_eq!(a.vrid, adv.vrid);
        prop_assert_eq!(a.priority, adv.priority);
        prop_assert_eq!(a.adver_int_cs, adv.adver_int_cs);
        prop_assert_eq!(a.addr_count as usize, adv.addrs.len());
        prop_assert_eq!(a.family, if adv.src.is_ipv6() { FAMILY_V6 } else { FAMILY_V4 });
    }

    #[test]
    fn checksum_sum_matches_the_plain_reference(data in proptest::collection::vec(any::<u8>(), 0..600)) {
        prop_assert_eq!(checksum::fold(checksum::sum(&data, 0)), reference_checksum(&[&data]));
    }

    #[test]
    fn address_digest_ignores_order(mut addrs in proptest::collection::vec(any::<[u8; 4]>(), 1..40), seed in any::<u64>()) {
        let before = address_digest(&addrs.concat());
        // A deterministic shuffle.
        let n = addrs.len();
        for i in 0..n {
            let j = (seed.rotate_left(i as u32) as usize) % n;
            addrs.swap(i, j);
        }
        prop_assert_eq!(address_digest(&addrs.concat()), before);
    }
}
