//! The receive rules of RFC 3768 §7.1 and RFC 5798 §7.1 as the userspace path applies them (classify,
//! extract, validate): every drop reason, v2 and v3, IPv4 and IPv6, truncation at every length, and the
//! frames that are not VRRP. The XDP program runs the same functions (tests/tests/xdp_test_run.rs).

mod support;

use std::net::IpAddr;

use ipf_common::{
    Counter,
    checksum::vrrp_checksum,
    frame::{Claim, Frame, classify},
    maps::{FAMILY_V4, FAMILY_V6, addr16, vrid_flags},
    testing::{Advert, OWN_MAC, PEER_MAC, arp_frame, ip_frame, na_frame, octets, udp_frame},
    vrrp::{AdvertFields, EncodeError, MCAST_V4, MCAST_V6, RxError, address_digest, encode_advert},
};
use support::{Lookup, Outcome, receive, reference_checksum};

const OUR_V4: [u8; 16] = [192, 0, 2, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
const OUR_V6: [u8; 16] = [0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];

fn lookup() -> Lookup {
    Lookup::default()
        .with(FAMILY_V4, 51, 3, OUR_V4)
        .with(FAMILY_V4, 52, 2, OUR_V4)
        .with(FAMILY_V6, 53, 3, OUR_V6)
}

fn v3() -> Advert {
    Advert::v3(51, 100, "192.0.2.1", &["192.0.2.100", "192.0.2.101"])
}

fn v2() -> Advert {
    Advert::v2(52, 100, "192.0.2.1", &["192.0.2.100"])
}

fn v6() -> Advert {
    Advert::v3(53, 100, "fe80::1", &["2001:db8::100"])
}

/// The frame of `adv` with its message changed by `mutate`, checksum recomputed unless `keep_checksum`.
fn mutated(adv: &Advert, keep_checksum: bool, mutate: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut msg = adv.message();
    mutate(&mut msg);
    let dst = adv.dst.unwrap_or(if adv.src.is_ipv6() {
        IpAddr::from(MCAST_V6)
    } else {
        IpAddr::from(MCAST_V4)
    });
    if !keep_checksum && msg.len() >= 8 {
        msg[6..8].fill(0);
        let family = if adv.src.is_ipv6() { FAMILY_V6 } else { FAMILY_V4 };
        let c = vrrp_checksum(
            adv.version,
            family,
            &addr16(&octets(&adv.src)),
            &addr16(&octets(&dst)),
            &msg,
        );
        msg[6..8].copy_from_slice(&c.to_be_bytes());
    }
    ip_frame(&adv.src, &dst, 112, adv.ttl, &msg)
}

fn rejected(frame: &[u8], l: &Lookup) -> RxError {
    match receive(frame, l) {
        Outcome::Rejected(e) => e,
        other => panic!("expected a rejection, got {other:?}"),
    }
}

#[test]
fn valid_adverts_are_accepted_with_their_fields() {
    let l = lookup();
    let Outcome::Accepted(a) = receive(&v3().frame(), &l) else {
        panic!("v3 rejected")
    };
    assert_eq!(
        (a.version, a.vrid, a.priority, a.addr_count, a.adver_int_cs),
        (3, 51, 100, 2, 100)
    );
    let Outcome::Accepted(a) = receive(&v2().frame(), &l) else {
        panic!("v2 rejected")
    };
    assert_eq!((a.version, a.vrid, a.adver_int_cs), (2, 52, 100));
    let Outcome::Accepted(a) = receive(&v6().frame(), &l) else {
        panic!("v6 rejected")
    };
    assert_eq!((a.family, a.vrid, a.addr_count), (FAMILY_V6, 53, 1));
    // Ethernet padding after the IP payload is not part of the message.
    let mut padded = v3().frame();
    padded.extend_from_slice(&[0; 18]);
    assert!(matches!(receive(&padded, &l), Outcome::Accepted(_)));
}

#[test]
fn every_drop_reason() {
    let mut l = lookup();
    let mut ttl = v3();
    ttl.ttl = 254;
    let mut hop = v6();
    hop.ttl = 1;
    let cases: Vec<(&str, Vec<u8>, RxError)> = vec![
        ("ttl 254", ttl.frame(), RxError::IpTtl),
        ("hop limit 1", hop.frame(), RxError::IpTtl),
        (
            "v2 packet, v3 configured",
            mutated(&v3(), false, |m| m[0] = 0x21),
            RxError::Version,
        ),
        ("version 4", mutated(&v3(), false, |m| m[0] = 0x41), RxError::Version),
        (
            "v3 packet, v2 configured",
            Advert::v3(52, 100, "192.0.2.1", &["192.0.2.100"]).frame(),
            RxError::Version,
        ),
        ("v2 over IPv6", mutated(&v6(), false, |m| m[0] = 0x21), RxError::Version),
        ("type 2", mutated(&v3(), false, |m| m[0] = 0x32), RxError::InvalidType),
        (
            "unknown vrid",
            mutated(&v3(), false, |m| m[1] = 99),
            RxError::VridUnknown,
        ),
        (
            "count 3 for 2 addresses",
            mutated(&v3(), false, |m| m[3] = 3),
            RxError::PacketLen,
        ),
        (
            "count 1 for 2 addresses",
            mutated(&v3(), false, |m| m[3] = 1),
            RxError::PacketLen,
        ),
        (
            "shorter than a header",
            mutated(&v3(), true, |m| m.truncate(7)),
            RxError::PacketLen,
        ),
        ("bad checksum", mutated(&v3(), true, |m| m[2] ^= 1), RxError::Checksum),
        (
            "bad v2 checksum",
            mutated(&v2(), true, |m| m[9] ^= 1),
            RxError::Checksum,
        ),
        (
            "bad v6 checksum",
            mutated(&v6(), true, |m| m[12] ^= 0x80),
            RxError::Checksum,
        ),
        (
            "v2 interval 2 s",
            mutated(&v2(), false, |m| m[5] = 2),
            RxError::AdvertInterval,
        ),
        (
            "auth type 1 unconfigured",
            mutated(&v2(), false, |m| m[4] = 1),
            RxError::AuthTypeMismatch,
        ),
        (
            "auth type 2",
            mutated(&v2(), false, |m| m[4] = 2),
            RxError::AuthTypeMismatch,
        ),
        (
            "own advert",
            Advert::v3(51, 100, "192.0.2.2", &["192.0.2.100", "192.0.2.101"]).frame(),
            RxError::OwnAdvert,
        ),
    ];
    for (what, frame, want) in &cases {
        assert_eq!(rejected(frame, &l), *want, "{what}");
    }
    // IPv4 header problems.
    let mut frag = v3().frame();
    frag[14 + 6] = 0x20; // more fragments
    assert_eq!(rejected(&frag, &l), RxError::PacketLen, "fragment");
    let mut short_ihl = v3().frame();
    short_ihl[14] = 0x44;
    assert_eq!(rejected(&short_ihl, &l), RxError::PacketLen, "IHL 4");
    let mut long_total = v3().frame();
    long_total[14 + 3] += 4; // IP total length beyond the frame
    assert_eq!(
        rejected(&long_total, &l),
        RxError::PacketLen,
        "total length beyond the frame"
    );
    // v3 checksum covers the pseudo-header: a changed destination breaks it.
    let mut uni = v3();
    uni.dst = Some("192.0.2.2".parse().expect("addr"));
    let mut f = uni.frame();
    f[14 + 19] = 3;
    assert_eq!(rejected(&f, &l), RxError::Checksum, "pseudo-header destination");

    // PASS authentication.
    l.edit(FAMILY_V4, 52, |c| {
        c.flags |= vrid_flags::AUTH_PASS;
        c.auth_pass = *b"secret\0\0";
    });
    let mut good = v2();
    good.auth_pass = Some(*b"secret\0\0");
    assert!(matches!(receive(&good.frame(), &l), Outcome::Accepted(_)));
    let mut wrong = v2();
    wrong.auth_pass = Some(*b"secreT\0\0");
    assert_eq!(rejected(&wrong.frame(), &l), RxError::AuthFailure);
    assert_eq!(
        rejected(&v2().frame(), &l),
        RxError::AuthTypeMismatch,
        "no auth when PASS configured"
    );

    // Address list (order does not matter; the owner is exempt).
    let addrs: Vec<u8> = [[192u8, 0, 2, 100], [192, 0, 2, 101]].concat();
    l.edit(FAMILY_V4, 51, |c| {
        c.flags |= vrid_flags::CHECK_ADDRS;
        c.addr_count = 2;
        c.addr_digest = address_digest(&addrs);
    });
    assert!(matches!(
        receive(
            &Advert::v3(51, 100, "192.0.2.1", &["192.0.2.101", "192.0.2.100"]).frame(),
            &l
        ),
        Outcome::Accepted(_)
    ));
    assert_eq!(
        rejected(
            &Advert::v3(51, 100, "192.0.2.1", &["192.0.2.100", "192.0.2.102"]).frame(),
            &l
        ),
        RxError::AddrList
    );
    assert_eq!(
        rejected(&Advert::v3(51, 100, "192.0.2.1", &["192.0.2.100"]).frame(), &l),
        RxError::AddrList
    );
    assert!(matches!(
        receive(&Advert::v3(51, 255, "192.0.2.1", &["192.0.2.9"]).frame(), &l),
        Outcome::Accepted(_)
    ));

    // Unicast peers.
    l.edit(FAMILY_V4, 51, |c| {
        c.flags = vrid_flags::CONFIGURED | vrid_flags::UNICAST
    });
    l.peers.insert((FAMILY_V4, 51, addr16(&[192, 0, 2, 1])));
    assert!(matches!(receive(&v3().frame(), &l), Outcome::Accepted(_)));
    assert_eq!(
        rejected(
            &Advert::v3(51, 100, "192.0.2.7", &["192.0.2.100", "192.0.2.101"]).frame(),
            &l
        ),
        RxError::PeerUnknown
    );
}

#[test]
fn truncation_at_every_length_is_never_accepted() {
    let l = lookup();
    for adv in [v3(), v2(), v6()] {
        let full = adv.frame();
        assert!(matches!(receive(&full, &l), Outcome::Accepted(_)));
        for len in 0..full.len() {
            assert!(
                !matches!(receive(&full[..len], &l), Outcome::Accepted(_)),
                "accepted at {len} of {}",
                full.len()
            );
        }
    }
}

#[test]
fn errors_map_to_the_keepalived_counter_names() {
    for (e, name) in [
        (RxError::IpTtl, "ip_ttl_err"),
        (RxError::Version, "version_err"),
        (RxError::InvalidType, "invalid_type"),
        (RxError::VridUnknown, "vrid_unknown"),
        (RxError::PacketLen, "packet_len_err"),
        (RxError::Checksum, "checksum_err"),
        (RxError::AuthTypeMismatch, "authtype_mismatch"),
        (RxError::AuthFailure, "auth_failure"),
        (RxError::AddrList, "addr_list_err"),
        (RxError::AdvertInterval, "advert_interval_err"),
        (RxError::PeerUnknown, "peer_unknown"),
        (RxError::OwnAdvert, "own_adverts"),
    ] {
        assert_eq!(e.counter().name(), name);
    }
    assert_eq!(Counter::ALL.len(), Counter::COUNT as usize);
}

#[test]
fn encoding_checks_what_the_wire_can_carry() {
    let mut buf = [0u8; 2048];
    let base = AdvertFields {
        version: 3,
        family: FAMILY_V4,
        vrid: 1,
        priority: 100,
        adver_int_cs: 100,
        addrs: &[192, 0, 2, 1],
        auth_pass: None,
        src: addr16(&[192, 0, 2, 1]),
        dst: addr16(&MCAST_V4),
    };
    assert_eq!(
        encode_advert(
            &AdvertFields {
                version: 2,
                family: FAMILY_V6,
                ..base
            },
            &mut buf
        ),
        Err(EncodeError::Version)
    );
    assert_eq!(
        encode_advert(
            &AdvertFields {
                version: 2,
                adver_int_cs: 150,
                ..base
            },
            &mut buf
        ),
        Err(EncodeError::Interval)
    );
    assert_eq!(
        encode_advert(
            &AdvertFields {
                adver_int_cs: 4096,
                ..base
            },
            &mut buf
        ),
        Err(EncodeError::Interval)
    );
    assert_eq!(
        encode_advert(
            &AdvertFields {
                adver_int_cs: 0,
                ..base
            },
            &mut buf
        ),
        Err(EncodeError::Interval)
    );
    assert_eq!(
        encode_advert(
            &AdvertFields {
                addrs: &[1, 2, 3],
                ..base
            },
            &mut buf
        ),
        Err(EncodeError::Addresses)
    );
    let many = vec![1u8; 4 * 256];
    assert_eq!(
        encode_advert(&AdvertFields { addrs: &many, ..base }, &mut buf),
        Err(EncodeError::Addresses)
    );
    assert_eq!(encode_advert(&base, &mut buf[..10]), Err(EncodeError::BufferTooSmall));
    // The v3 checksum against an independent RFC 1071 computation over the pseudo-header.
    let n = encode_advert(&base, &mut buf).expect("valid");
    let mut msg = buf[..n].to_vec();
    let stored = u16::from_be_bytes([msg[6], msg[7]]);
    msg[6..8].fill(0);
    let pseudo = [&[192u8, 0, 2, 1][..], &MCAST_V4, &[0, 112], &(n as u16).to_be_bytes()].concat();
    assert_eq!(stored, reference_checksum(&[&pseudo, &msg]));
    // v2: over the message alone.
    let n = encode_advert(
        &AdvertFields {
            version: 2,
            auth_pass: Some(*b"pw\0\0\0\0\0\0"),
            ..base
        },
        &mut buf,
    )
    .expect("valid");
    let mut msg = buf[..n].to_vec();
    let stored = u16::from_be_bytes([msg[6], msg[7]]);
    msg[6..8].fill(0);
    assert_eq!(stored, reference_checksum(&[&msg]));
    assert_eq!(&buf[n - 8..n], b"pw\0\0\0\0\0\0");
}

#[test]
fn address_claims_and_other_frames() {
    for op in [1, 2] {
        let f = arp_frame(op, PEER_MAC, "192.0.2.100", "192.0.2.1");
        assert_eq!(
            classify(&f),
            Frame::Claim(Claim {
                family: FAMILY_V4,
                addr: addr16(&[192, 0, 2, 100]),
                mac: PEER_MAC
            })
        );
    }
    let garp = arp_frame(1, OWN_MAC, "192.0.2.100", "192.0.2.100");
    assert!(matches!(classify(&garp), Frame::Claim(c) if c.mac == OWN_MAC));
    let mut not_ethernet = arp_frame(1, PEER_MAC, "192.0.2.100", "192.0.2.1");
    not_ethernet[15] = 6; // hardware type IEEE 802
    assert_eq!(classify(&not_ethernet), Frame::Other);
    let na = na_frame(PEER_MAC, "fe80::1", "2001:db8::100");
    let Frame::Claim(c) = classify(&na) else {
        panic!("NA not a claim")
    };
    assert_eq!((c.family, c.mac), (FAMILY_V6, PEER_MAC));
    assert_eq!(
        c.addr,
        "2001:db8::100".parse::<std::net::Ipv6Addr>().expect("addr").octets()
    );
    let mut echo = na.clone();
    echo[14 + 40] = 128; // ICMPv6 echo request
    assert_eq!(classify(&echo), Frame::Other);
    assert_eq!(classify(&udp_frame("192.0.2.1", "192.0.2.2", 10)), Frame::Other);
    assert_eq!(classify(&[]), Frame::Other);
}
