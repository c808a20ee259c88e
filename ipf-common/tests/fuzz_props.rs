//! Property tests of the parsers, validation, encoding and checksums: no input panics, whatever is
//! accepted re-checks against an independent parse and RFC 1071 reference, encode → receive round-trips
//! the fields exactly, and the checksum and address digest agree with plain references.

mod harness;

use std::sync::LazyLock;

use harness::{
    ETH, OUR_V4, OUR_V6, Outcome, PEER_V4, PEER_V6, Spec, TestLookup, config, mcast, parse_independently, receive,
    reference_checksum, reference_vrrp_checksum, reseal,
};
use ipf_common::{
    VridConfig, checksum,
    frame::{Frame, classify, vrrp_message},
    maps::{FAMILY_V4, FAMILY_V6, MAX_VRRP_LEN, vrid_flags},
    vrrp::{
        Advert, AdvertFields, IpMeta, RxError, TYPE_ADVERTISEMENT, VridLookup, address_digest, encode_advert,
        message_len, validate_advert,
    },
};
use proptest::{prelude::*, sample::Index};

const CASES: u32 = 2000;

/// VRRPv2 VRIDs 192..=255 use PASS with this password.
const PASSWORD: [u8; 8] = *b"hunter2\0";

/// The lookup the fuzzing runs against. IPv4: VRIDs 1..=127 VRRPv3, 128..=191 VRRPv2, 192..=255 VRRPv2
/// with PASS. IPv6: all VRRPv3. VRIDs 100..=127 are unicast with `PEER_*` as the peer. 1 s intervals.
static LOOKUP: LazyLock<TestLookup> = LazyLock::new(|| {
    let mut l = TestLookup::default();
    for vrid in 1..=255u8 {
        let mut v4 = config(FAMILY_V4, if vrid < 128 { 3 } else { 2 });
        let mut v6 = config(FAMILY_V6, 3);
        if vrid >= 192 {
            v4.flags |= vrid_flags::AUTH_PASS;
            v4.auth_pass = PASSWORD;
        }
        if (100..128).contains(&vrid) {
            v4.flags |= vrid_flags::UNICAST;
            l.peer(FAMILY_V4, vrid, PEER_V4);
        }
        if (100..=255).contains(&vrid) {
            v6.flags |= vrid_flags::UNICAST;
            l.peer(FAMILY_V6, vrid, PEER_V6);
        }
        l.set(FAMILY_V4, vrid, v4).set(FAMILY_V6, vrid, v6);
    }
    l
});

fn addr_of(family: u8, raw: [u8; 16]) -> [u8; 16] {
    if family == FAMILY_V6 {
        raw
    } else {
        harness::v4([raw[0], raw[1], raw[2], raw[3]])
    }
}

/// An advert `LOOKUP` accepts.
fn fuzz_spec() -> impl Strategy<Value = Spec> {
    (
        0u8..3,
        any::<u8>(),
        any::<u8>(),
        proptest::collection::vec(any::<[u8; 16]>(), 1..=20),
        1u16..=4095,
    )
        .prop_map(|(kind, seed, priority, addrs, interval)| {
            let (mut spec, vrid) = match kind {
                0 => (Spec::v2(0), 128 + seed % 128),
                1 => (Spec::v3(FAMILY_V4, 0), 1 + seed % 127),
                _ => (Spec::v3(FAMILY_V6, 0), 1 + seed % 255),
            };
            spec.vrid = vrid;
            spec.priority = priority;
            spec.addrs = addrs.into_iter().map(|a| addr_of(spec.family, a)).collect();
            if spec.version == 2 {
                spec.adver_int_cs = 100;
                if vrid >= 192 {
                    spec.auth_pass = Some(PASSWORD);
                }
            } else {
                spec.adver_int_cs = interval;
            }
            spec
        })
}

/// Everything an accepted frame must satisfy, re-derived from the bytes without `ipf_common::frame`
/// and with the reference checksum.
fn check_accepted(frame: &[u8], adv: &Advert, lookup: &impl VridLookup) -> Result<(), TestCaseError> {
    let p = parse_independently(frame)
        .ok_or_else(|| TestCaseError::fail("accepted a frame that is not a whole VRRP packet"))?;
    if p.family == FAMILY_V4 {
        let frag = u16::from_be_bytes([frame[ETH + 6], frame[ETH + 7]]) & 0x3fff;
        prop_assert_eq!(frag, 0, "accepted an IPv4 fragment");
    }
    check_accepted_message(p.family, p.ttl, &p.src, &p.dst, p.msg, adv, lookup)
}

fn check_accepted_message(
    family: u8,
    ttl: u8,
    src: &[u8; 16],
    dst: &[u8; 16],
    msg: &[u8],
    adv: &Advert,
    lookup: &impl VridLookup,
) -> Result<(), TestCaseError> {
    prop_assert_eq!(ttl, 255);
    prop_assert!(msg.len() >= 8 && msg.len() <= MAX_VRRP_LEN);
    let version = msg[0] >> 4;
    prop_assert!(version == 2 || version == 3);
    prop_assert!(version == 3 || family == FAMILY_V4, "VRRPv2 over IPv6 accepted");
    prop_assert_eq!(msg[0] & 0x0f, TYPE_ADVERTISEMENT);
    prop_assert_eq!(msg.len(), message_len(version, family, msg[3]));
    prop_assert_eq!(
        reference_vrrp_checksum(version == 3, family, src, dst, msg),
        0,
        "accepted a message with a bad checksum"
    );
    let interval = if version == 2 {
        u16::from(msg[5]) * 100
    } else {
        u16::from_be_bytes([msg[4], msg[5]]) & 0x0fff
    };
    let want = Advert {
        family,
        version,
        vrid: msg[1],
        priority: msg[2],
        addr_count: msg[3],
        adver_int_cs: interval,
    };
    prop_assert_eq!(*adv, want);
    let cfg = lookup
        .config(family, msg[1])
        .ok_or_else(|| TestCaseError::fail("accepted an unknown VRID"))?;
    prop_assert!(cfg.flags & vrid_flags::CONFIGURED != 0);
    prop_assert_eq!(cfg.version, version);
    prop_assert_ne!(*src, cfg.primary_addr, "own advert accepted");
    if version == 2 {
        prop_assert_eq!(cfg.adver_int_cs, interval);
        let auth_end = msg.len();
        if cfg.flags & vrid_flags::AUTH_PASS != 0 {
            prop_assert_eq!(msg[4], 1);
            prop_assert_eq!(&msg[auth_end - 8..], &cfg.auth_pass[..]);
        } else {
            prop_assert_eq!(msg[4], 0);
        }
    }
    if cfg.flags & vrid_flags::UNICAST != 0 {
        prop_assert!(lookup.is_peer(family, msg[1], src), "accepted from a non-peer");
    }
    if cfg.flags & vrid_flags::CHECK_ADDRS != 0 && msg[2] != 255 {
        let n = if family == FAMILY_V6 { 16 } else { 4 };
        let addrs = &msg[8..8 + n * usize::from(msg[3])];
        prop_assert_eq!(msg[3], cfg.addr_count);
        prop_assert_eq!(u32::from(!reference_checksum(addrs)), cfg.addr_digest);
    }
    Ok(())
}

/// Runs a frame through the receive path; checks an accepted one.
fn receive_and_check(frame: &[u8]) -> Result<Outcome, TestCaseError> {
    let got = receive(frame, &*LOOKUP);
    if let Outcome::Accepted(a) = &got {
        check_accepted(frame, a, &*LOOKUP)?;
    }
    Ok(got)
}

/// Recomputes the VRRP checksum of a frame in place, when it has a message to checksum.
fn reseal_frame(frame: &mut [u8]) {
    let Some(p) = parse_independently(frame) else {
        return;
    };
    let (family, src, dst, len) = (p.family, p.src, p.dst, p.msg.len());
    let start = p.msg.as_ptr() as usize - frame.as_ptr() as usize;
    reseal(family, &src, &dst, &mut frame[start..start + len]);
}

/// Random fields of a valid advert, and a configuration that accepts exactly it.
#[derive(Debug, Clone)]
struct RoundTrip {
    spec: Spec,
    cfg: VridConfig,
    peer: bool,
}

fn round_trip() -> impl Strategy<Value = RoundTrip> {
    (
        (any::<bool>(), any::<bool>(), 1u8..=255, any::<u8>()),
        proptest::collection::vec(any::<[u8; 16]>(), 1..=20),
        (1u16..=255, 1u16..=4095),
        (any::<Option<[u8; 8]>>(), any::<bool>(), any::<bool>(), any::<bool>()),
        any::<[u8; 16]>(),
    )
        .prop_flat_map(|(head, addrs, intervals, flags, seed)| {
            let shuffled = Just(addrs.clone()).prop_shuffle();
            (Just((head, addrs, intervals, flags, seed)), shuffled)
        })
        .prop_map(
            |(
                ((v2, v6, vrid, priority), addrs, (secs, cs), (auth, check_addrs, unicast, to_us), src_raw),
                shuffled,
            )| {
                let family = if v6 { FAMILY_V6 } else { FAMILY_V4 };
                let version = if v2 && !v6 { 2 } else { 3 };
                let mut spec = if version == 2 {
                    Spec::v2(vrid)
                } else {
                    Spec::v3(family, vrid)
                };
                spec.priority = priority;
                spec.addrs = addrs.iter().map(|a| addr_of(family, *a)).collect();
                spec.adver_int_cs = if version == 2 { secs * 100 } else { cs };
                spec.auth_pass = if version == 2 { auth } else { None };
                spec.src = addr_of(family, src_raw);
                if to_us {
                    spec.dst = if v6 { OUR_V6 } else { OUR_V4 };
                }
                let mut cfg = config(family, version);
                // VRRPv3 does not check the interval: configure another one.
                cfg.adver_int_cs = if version == 2 { spec.adver_int_cs } else { 300 };
                if let Some(pw) = spec.auth_pass {
                    cfg.flags |= vrid_flags::AUTH_PASS;
                    cfg.auth_pass = pw;
                }
                if check_addrs {
                    let n = harness::addr_len(family);
                    let bytes: Vec<u8> = shuffled
                        .iter()
                        .flat_map(|a| addr_of(family, *a)[..n].to_vec())
                        .collect();
                    cfg.flags |= vrid_flags::CHECK_ADDRS;
                    cfg.addr_count = addrs.len() as u8;
                    cfg.addr_digest = address_digest(&bytes);
                }
                if unicast {
                    cfg.flags |= vrid_flags::UNICAST;
                }
                RoundTrip {
                    spec,
                    cfg,
                    peer: unicast,
                }
            },
        )
}

fn naive_checksum(data: &[u8], initial: u32) -> u16 {
    let mut s = u64::from(initial);
    for pair in data.chunks(2) {
        s += u64::from(u16::from_be_bytes([pair[0], pair.get(1).copied().unwrap_or(0)]));
    }
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    !(s as u16)
}

/// Any IpMeta a caller could hand over, biased towards what passes the early checks.
fn any_ip_meta(msg_len: usize) -> impl Strategy<Value = IpMeta> {
    (
        prop_oneof![Just(FAMILY_V4), Just(FAMILY_V6), any::<u8>()],
        prop_oneof![3 => Just(255u8), 1 => any::<u8>()],
        prop_oneof![3 => Just(msg_len as u16), 1 => any::<u16>()],
        any::<[u8; 16]>(),
        any::<[u8; 16]>(),
    )
        .prop_map(|(family, ttl, payload_len, src, dst)| IpMeta {
            family,
            ttl,
            payload_len,
            src,
            dst,
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: CASES, ..ProptestConfig::default() })]

    /// (a) Arbitrary bytes as a frame never panic; what is accepted checks out.
    #[test]
    fn arbitrary_frames_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2000)) {
        receive_and_check(&bytes)?;
        if let Frame::Vrrp { ip, offset, .. } = classify(&bytes) {
            let _ = vrrp_message(&bytes, &ip, offset);
        }
    }

    /// (a) The same with the EtherType and IP protocol steered to VRRP, so the bytes reach validation.
    #[test]
    fn arbitrary_vrrp_looking_frames_never_panic(
        mut bytes in proptest::collection::vec(any::<u8>(), 0..2000),
        ether_type in prop_oneof![Just(0x0800u16), Just(0x86dd), Just(0x0806), any::<u16>()],
        vrrp in any::<bool>(),
        plausible in any::<bool>(),
    ) {
        if bytes.len() >= 14 {
            bytes[12..14].copy_from_slice(&ether_type.to_be_bytes());
        }
        if vrrp {
            let (proto_at, len_at, v4) = if ether_type == 0x86dd { (ETH + 6, ETH + 4, false) } else { (ETH + 9, ETH + 2, true) };
            if bytes.len() > proto_at {
                bytes[proto_at] = 112;
            }
            if plausible && bytes.len() > ETH + 60 {
                // A sane header whose length matches the frame, so the message is handed to validation.
                let hdr = if v4 { 20 } else { 40 };
                let len = (bytes.len() - ETH - if v4 { 0 } else { hdr }) as u16;
                bytes[len_at..len_at + 2].copy_from_slice(&len.to_be_bytes());
                if v4 {
                    bytes[ETH] = 0x45;
                    bytes[ETH + 6..ETH + 8].fill(0);
                    bytes[ETH + 8] = 255;
                } else {
                    bytes[ETH + 7] = 255;
                }
                let m = ETH + hdr;
                bytes[m] = if bytes[m] & 1 == 0 { 0x21 } else { 0x31 }; // version 2 or 3, type 1
            }
        }
        receive_and_check(&bytes)?;
    }

    /// (a) `validate_advert` called directly with any IP facts and message never panics.
    #[test]
    fn validate_advert_never_panics_on_direct_input(
        (ip, msg) in prop_oneof![
            3 => proptest::collection::vec(any::<u8>(), 0..1100),
            1 => proptest::collection::vec(any::<u8>(), (MAX_VRRP_LEN - 8)..(MAX_VRRP_LEN + 64)),
        ]
            .prop_flat_map(|msg| (any_ip_meta(msg.len()), Just(msg))),
        version in prop_oneof![Just(2u8), Just(3), any::<u8>()],
        fix_count in any::<bool>(),
    ) {
        let mut msg = msg;
        if msg.len() >= 8 {
            msg[0] = (version << 4) | TYPE_ADVERTISEMENT;
            if fix_count {
                let n = if ip.family == FAMILY_V6 { 16 } else { 4 };
                let auth = if version == 2 { 8 } else { 0 };
                msg[3] = ((msg.len().saturating_sub(8 + auth)) / n).min(255) as u8;
            }
        }
        if let Ok(a) = validate_advert(&ip, &msg, &*LOOKUP) {
            prop_assert_eq!(usize::from(ip.payload_len), msg.len());
            check_accepted_message(ip.family, ip.ttl, &ip.src, &ip.dst, &msg, &a, &*LOOKUP)?;
        }
    }

    /// (c) encode → frame → classify → validate returns exactly the encoded fields, under a
    /// configuration with random PASS / address-check / unicast settings that matches the advert.
    #[test]
    fn encode_then_receive_round_trips(rt in round_trip()) {
        let RoundTrip { spec, cfg, peer } = rt;
        prop_assume!(spec.src != cfg.primary_addr);
        let mut l = TestLookup::default();
        l.set(spec.family, spec.vrid, cfg);
        if peer {
            l.peer(spec.family, spec.vrid, spec.src);
        }
        let frame = spec.frame();
        prop_assert_eq!(receive(&frame, &l), Outcome::Accepted(spec.expected()));
        check_accepted(&frame, &spec.expected(), &l)?;
        // The direct call agrees.
        let msg = spec.message();
        prop_assert_eq!(validate_advert(&spec.ip_meta(msg.len()), &msg, &l), Ok(spec.expected()));
        // Encoded checksum against the reference, recomputed from scratch.
        let mut zeroed = msg.clone();
        zeroed[6..8].fill(0);
        let c = reference_vrrp_checksum(spec.version == 3, spec.family, &spec.src, &spec.dst, &zeroed);
        prop_assert_eq!(u16::from_be_bytes([msg[6], msg[7]]), c);
        // And the advert is refused once the configuration stops matching it.
        if spec.version == 2 {
            let mut other = cfg;
            other.adver_int_cs = if cfg.adver_int_cs == 100 { 200 } else { 100 };
            l.set(spec.family, spec.vrid, other);
            prop_assert_eq!(receive(&frame, &l), Outcome::Rejected(RxError::AdvertInterval));
        } else {
            let mut other = cfg;
            other.version = 2;
            l.set(spec.family, spec.vrid, other);
            prop_assert_eq!(receive(&frame, &l), Outcome::Rejected(RxError::Version));
        }
        if peer {
            l.set(spec.family, spec.vrid, cfg);
            l.peers.clear();
            prop_assert_eq!(receive(&frame, &l), Outcome::Rejected(RxError::PeerUnknown));
        }
    }

    /// (c) Encoding also round-trips through the raw bytes for every representable interval and
    /// address count, including the largest messages.
    #[test]
    fn encode_fields_land_where_the_rfc_puts_them(
        v6 in any::<bool>(),
        v2 in any::<bool>(),
        vrid in any::<u8>(),
        priority in any::<u8>(),
        count in 1usize..=255,
        interval in 1u16..=4095,
        fill in any::<u8>(),
    ) {
        let family = if v6 { FAMILY_V6 } else { FAMILY_V4 };
        let version = if v2 && !v6 { 2 } else { 3 };
        let n = harness::addr_len(family);
        let addrs: Vec<u8> = (0..count * n).map(|i| (i as u8).wrapping_add(fill)).collect();
        let cs = if version == 2 { (interval % 255 + 1) * 100 } else { interval };
        let f = AdvertFields {
            version, family, vrid, priority, adver_int_cs: cs, addrs: &addrs, auth_pass: None,
            src: if v6 { PEER_V6 } else { PEER_V4 }, dst: mcast(family),
        };
        let mut buf = vec![0u8; MAX_VRRP_LEN];
        let len = encode_advert(&f, &mut buf).map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
        prop_assert_eq!(len, message_len(version, family, count as u8));
        prop_assert!(len <= MAX_VRRP_LEN);
        prop_assert_eq!(&buf[..4], &[(version << 4) | 1, vrid, priority, count as u8][..]);
        prop_assert_eq!(&buf[8..8 + addrs.len()], &addrs[..]);
        let ip = IpMeta { family, ttl: 255, payload_len: len as u16, src: f.src, dst: f.dst };
        let mut l = TestLookup::default();
        let mut cfg = config(family, version);
        cfg.adver_int_cs = cs;
        l.set(family, vrid, cfg);
        prop_assert_eq!(
            validate_advert(&ip, &buf[..len], &l),
            Ok(Advert { family, version, vrid, priority, addr_count: count as u8, adver_int_cs: cs })
        );
    }

    /// (d) `checksum::sum` (32-bit steps, tail padding, carry folding) against 16-bit words one by one.
    #[test]
    fn checksum_sum_matches_a_naive_reference(
        data in proptest::collection::vec(any::<u8>(), 0..2000),
        initial in prop_oneof![Just(0u32), 0u32..=0x1_ffff, any::<u32>()],
    ) {
        let s = checksum::sum(&data, initial);
        prop_assert_eq!(checksum::fold(s), naive_checksum(&data, initial));
        if initial == 0 {
            prop_assert_eq!(checksum::fold(s), reference_checksum(&data));
        }
    }

    /// (d) Sums chain across word-aligned pieces, as the pseudo-header sum relies on.
    #[test]
    fn checksum_sums_chain(
        a in proptest::collection::vec(any::<[u8; 2]>(), 0..300),
        b in proptest::collection::vec(any::<u8>(), 0..600),
    ) {
        let a: Vec<u8> = a.concat();
        let whole = [&a[..], &b[..]].concat();
        prop_assert_eq!(checksum::fold(checksum::sum(&b, checksum::sum(&a, 0))), reference_checksum(&whole));
    }

    /// (d) `vrrp_checksum` (pseudo-header included for VRRPv3) against the reference layout.
    #[test]
    fn vrrp_checksum_matches_the_reference(
        v6 in any::<bool>(),
        version in 2u8..=3,
        src in any::<[u8; 16]>(),
        dst in any::<[u8; 16]>(),
        msg in proptest::collection::vec(any::<u8>(), 0..1100),
    ) {
        let family = if v6 { FAMILY_V6 } else { FAMILY_V4 };
        let (src, dst) = (addr_of(family, src), addr_of(family, dst));
        prop_assert_eq!(
            checksum::vrrp_checksum(version, family, &src, &dst, &msg),
            reference_vrrp_checksum(version == 3, family, &src, &dst, &msg)
        );
    }

    /// (e) The address digest does not depend on the order of IPv4 addresses, and is their folded sum.
    #[test]
    fn address_digest_is_order_independent_v4(
        (addrs, shuffled) in proptest::collection::vec(any::<[u8; 4]>(), 0..64)
            .prop_flat_map(|v| (Just(v.clone()), Just(v).prop_shuffle())),
    ) {
        let (a, b) = (addrs.concat(), shuffled.concat());
        prop_assert_eq!(address_digest(&a), address_digest(&b));
        prop_assert_eq!(address_digest(&a), u32::from(!reference_checksum(&a)));
    }

    /// (e) The same for IPv6 addresses.
    #[test]
    fn address_digest_is_order_independent_v6(
        (addrs, shuffled) in proptest::collection::vec(any::<[u8; 16]>(), 0..64)
            .prop_flat_map(|v| (Just(v.clone()), Just(v).prop_shuffle())),
    ) {
        let (a, b) = (addrs.concat(), shuffled.concat());
        prop_assert_eq!(address_digest(&a), address_digest(&b));
        prop_assert_eq!(address_digest(&a), u32::from(!reference_checksum(&a)));
    }
}

proptest! {
    // The structure-aware mutation property is cheap per case and the most searching: more cases.
    #![proptest_config(ProptestConfig { cases: 5 * CASES, ..ProptestConfig::default() })]

    /// (b) Valid frames with random byte edits (checksum recomputed or not) and random truncation:
    /// never a panic, and an accepted result re-verifies independently.
    #[test]
    fn mutated_frames_never_panic_and_accepted_ones_check_out(
        spec in fuzz_spec(),
        edits in proptest::collection::vec((any::<Index>(), any::<u8>()), 0..6),
        reseal_after in any::<bool>(),
        cut in proptest::option::of(any::<Index>()),
    ) {
        let mut frame = spec.frame();
        prop_assert_eq!(receive(&frame, &*LOOKUP), Outcome::Accepted(spec.expected()), "base frame {:?}", spec);
        for (at, byte) in &edits {
            let i = at.index(frame.len());
            frame[i] = *byte;
        }
        if reseal_after {
            reseal_frame(&mut frame);
        }
        if let Some(cut) = cut {
            frame.truncate(cut.index(frame.len()));
        }
        let got = receive_and_check(&frame)?;
        // Without edits to the message or the headers, the only way to fail is the truncation.
        if edits.is_empty() {
            match cut {
                None => prop_assert_eq!(got, Outcome::Accepted(spec.expected())),
                Some(_) if got != Outcome::NotVrrp => prop_assert_eq!(got, Outcome::Rejected(RxError::PacketLen)),
                Some(_) => {}
            }
        }
    }
}
