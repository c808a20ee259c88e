//! VRRP receive validation end to end as the userspace path runs it (`classify` → `vrrp_message` →
//! `validate_advert`), with frames built here around messages from `encode_advert`: every `RxError`
//! for VRRPv2, VRRPv3 over IPv4 and VRRPv3 over IPv6, the accepted cases, truncation at every length,
//! the counter of each error, encoding limits and checksums, and the ARP / NA / other frames.

mod harness;

use harness::{
    ETH, Outcome, PEER_MAC, PEER_V4, PEER_V6, STRANGER_V4, STRANGER_V6, Spec, TestLookup, addr_len, config, doc_v4,
    doc_v6, ip_frame, ipv4_frame, ipv6_frame, mcast, pseudo_header, receive, reference_checksum,
    reference_vrrp_checksum, reseal, v4,
};
use ipf_common::{
    Counter, VridConfig,
    frame::{Claim, Frame, IPV4_HDR_LEN, IPV6_HDR_LEN, classify, vrrp_message},
    maps::{FAMILY_V4, FAMILY_V6, MAX_VRRP_LEN, vrid_flags},
    vrrp::{
        Advert, AdvertFields, EncodeError, IPPROTO_VRRP, IpMeta, RxError, address_digest, encode_advert, message_len,
        validate_advert,
    },
};

/// VRRPv3 for IPv4 and IPv6.
const V3: u8 = 10;
/// VRRPv2 for IPv4, no authentication. Also "configured" as VRRPv2 for IPv6, which must still refuse
/// VRRPv2 over IPv6.
const V2: u8 = 11;
/// VRRPv2 with PASS authentication, password `secret`.
const PASS: u8 = 12;
/// VRRPv3 checking the address list (the two default addresses of `Spec`), IPv4 and IPv6.
const ADDRS: u8 = 13;
/// VRRPv2 checking the address list.
const ADDRS2: u8 = 14;
/// VRRPv3 unicast, the peer is `PEER_V4` / `PEER_V6`.
const UNI: u8 = 15;
/// VRRPv2 unicast, the peer is `PEER_V4`.
const UNI2: u8 = 16;
/// Present in the lookup but without the CONFIGURED flag.
const UNCONFIGURED: u8 = 20;
/// Not in the lookup at all.
const UNKNOWN: u8 = 99;

const SECRET: [u8; 8] = *b"secret\0\0";

fn lookup() -> TestLookup {
    let mut l = TestLookup::default();
    for family in [FAMILY_V4, FAMILY_V6] {
        l.set(family, V3, config(family, 3));
        l.set(family, V2, config(family, 2));
        l.set(
            family,
            UNCONFIGURED,
            VridConfig {
                flags: 0,
                ..config(family, 3)
            },
        );
        let addrs = Spec::v3(family, ADDRS).addr_bytes();
        l.set(
            family,
            ADDRS,
            VridConfig {
                flags: vrid_flags::CONFIGURED | vrid_flags::CHECK_ADDRS,
                addr_count: 2,
                addr_digest: address_digest(&addrs),
                ..config(family, 3)
            },
        );
        l.set(
            family,
            UNI,
            VridConfig {
                flags: vrid_flags::CONFIGURED | vrid_flags::UNICAST,
                ..config(family, 3)
            },
        );
    }
    l.set(
        FAMILY_V4,
        PASS,
        VridConfig {
            flags: vrid_flags::CONFIGURED | vrid_flags::AUTH_PASS,
            auth_pass: SECRET,
            ..config(FAMILY_V4, 2)
        },
    );
    l.set(
        FAMILY_V4,
        ADDRS2,
        VridConfig {
            flags: vrid_flags::CONFIGURED | vrid_flags::CHECK_ADDRS,
            addr_count: 2,
            addr_digest: address_digest(&Spec::v2(ADDRS2).addr_bytes()),
            ..config(FAMILY_V4, 2)
        },
    );
    l.set(
        FAMILY_V4,
        UNI2,
        VridConfig {
            flags: vrid_flags::CONFIGURED | vrid_flags::UNICAST,
            ..config(FAMILY_V4, 2)
        },
    );
    l.peer(FAMILY_V4, UNI, PEER_V4)
        .peer(FAMILY_V6, UNI, PEER_V6)
        .peer(FAMILY_V4, UNI2, PEER_V4)
        // Peers of a VRID that is not unicast; they must not count for UNI / UNI2.
        .peer(FAMILY_V4, V3, STRANGER_V4)
        .peer(FAMILY_V4, V2, STRANGER_V4)
        .peer(FAMILY_V6, V3, STRANGER_V6);
    l
}

/// The three kinds of advert: VRRPv2 (IPv4 only), VRRPv3 over IPv4, VRRPv3 over IPv6.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    V2,
    V3v4,
    V3v6,
}

const KINDS: [Kind; 3] = [Kind::V2, Kind::V3v4, Kind::V3v6];

impl Kind {
    fn spec(self, vrid: u8) -> Spec {
        match self {
            Kind::V2 => Spec::v2(vrid),
            Kind::V3v4 => Spec::v3(FAMILY_V4, vrid),
            Kind::V3v6 => Spec::v3(FAMILY_V6, vrid),
        }
    }

    fn family(self) -> u8 {
        if self == Kind::V3v6 { FAMILY_V6 } else { FAMILY_V4 }
    }

    /// The plain VRID configured with this kind's version.
    fn plain(self) -> Spec {
        self.spec(if self == Kind::V2 { V2 } else { V3 })
    }

    fn addrs_vrid(self) -> u8 {
        if self == Kind::V2 { ADDRS2 } else { ADDRS }
    }

    fn unicast_vrid(self) -> u8 {
        if self == Kind::V2 { UNI2 } else { UNI }
    }

    fn our_addr(self) -> [u8; 16] {
        config(self.family(), 3).primary_addr
    }

    fn stranger(self) -> [u8; 16] {
        if self == Kind::V3v6 { STRANGER_V6 } else { STRANGER_V4 }
    }

    /// Offset in the frame of the IPv4 total length or the IPv6 payload length.
    fn ip_len_field(self) -> usize {
        if self == Kind::V3v6 { ETH + 4 } else { ETH + 2 }
    }

    fn ip_hdr_len(self) -> usize {
        if self == Kind::V3v6 { IPV6_HDR_LEN } else { IPV4_HDR_LEN }
    }

    /// Offset of the destination address in the frame, and its length.
    fn ip_dst(self) -> (usize, usize) {
        if self == Kind::V3v6 {
            (ETH + 24, 16)
        } else {
            (ETH + 16, 4)
        }
    }

    fn ip_src(self) -> (usize, usize) {
        if self == Kind::V3v6 {
            (ETH + 8, 16)
        } else {
            (ETH + 12, 4)
        }
    }

    /// A different address of the right family for the address list.
    fn other_addr(self) -> [u8; 16] {
        if self == Kind::V3v6 { doc_v6(9) } else { doc_v4(9) }
    }
}

/// The frame of `spec` with its message changed by `f` and the checksum recomputed with the reference
/// (pseudo-header if the resulting version nibble is 3).
fn resealed(spec: &Spec, f: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut msg = spec.message();
    f(&mut msg);
    reseal(spec.family, &spec.src, &spec.dst, &mut msg);
    spec.frame_with(&msg)
}

/// The frame of `spec` with its message changed by `f`, checksum left as it was.
fn raw(spec: &Spec, f: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut msg = spec.message();
    f(&mut msg);
    spec.frame_with(&msg)
}

fn with(spec: Spec, f: impl FnOnce(&mut Spec)) -> Spec {
    let mut s = spec;
    f(&mut s);
    s
}

/// `frame` edited by `f`, with the IPv4 header checksum recomputed (the edit targets another rule).
fn edit_frame(mut frame: Vec<u8>, f: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    f(&mut frame);
    harness::reseal_ipv4_header(&mut frame);
    frame
}

enum Input {
    /// A whole Ethernet frame through the receive path.
    Frame(Vec<u8>),
    /// `validate_advert` called directly (IP facts the frame parser would never produce).
    Direct(IpMeta, Vec<u8>),
}

fn run(input: &Input, l: &TestLookup) -> Outcome {
    match input {
        Input::Frame(f) => receive(f, l),
        Input::Direct(ip, msg) => match validate_advert(ip, msg, l) {
            Ok(a) => Outcome::Accepted(a),
            Err(e) => Outcome::Rejected(e),
        },
    }
}

struct Cases(Vec<(String, Input, RxError)>);

impl Cases {
    fn frame(&mut self, name: impl Into<String>, frame: Vec<u8>, want: RxError) {
        self.0.push((name.into(), Input::Frame(frame), want));
    }

    fn direct(&mut self, name: impl Into<String>, ip: IpMeta, msg: Vec<u8>, want: RxError) {
        self.0.push((name.into(), Input::Direct(ip, msg), want));
    }
}

fn error_cases() -> Cases {
    let mut c = Cases(Vec::new());

    for k in KINDS {
        let base = k.plain();
        let n = base.addrs.len() as u8;

        // IpTtl: anything but 255, whatever else is wrong.
        for ttl in [254, 1, 0, 64, 128] {
            c.frame(
                format!("{k:?}: ttl {ttl}"),
                with(base.clone(), |s| s.ttl = ttl).frame(),
                RxError::IpTtl,
            );
        }
        c.frame(
            format!("{k:?}: ttl 254 and a bad checksum"),
            raw(&with(base.clone(), |s| s.ttl = 254), |m| m[2] ^= 1),
            RxError::IpTtl,
        );
        c.frame(
            format!("{k:?}: ttl 254, unknown vrid"),
            with(k.spec(UNKNOWN), |s| s.ttl = 254).frame(),
            RxError::IpTtl,
        );
        c.direct(
            format!("{k:?}: ttl 254 direct"),
            with(base.clone(), |s| s.ttl = 254).ip_meta(base.message().len()),
            base.message(),
            RxError::IpTtl,
        );

        // Version.
        for version in [0u8, 1, 4, 5, 15] {
            c.frame(
                format!("{k:?}: version nibble {version}"),
                resealed(&base, |m| m[0] = version << 4 | 1),
                RxError::Version,
            );
        }
        c.frame(
            format!("{k:?}: version 4 on an unknown vrid"),
            resealed(&k.spec(UNKNOWN), |m| m[0] = 0x41),
            RxError::Version,
        );

        // InvalidType.
        for kind in [0u8, 2, 3, 15] {
            c.frame(
                format!("{k:?}: type {kind}"),
                resealed(&base, |m| m[0] = (m[0] & 0xf0) | kind),
                RxError::InvalidType,
            );
        }

        // VridUnknown.
        c.frame(format!("{k:?}: vrid 99"), k.spec(UNKNOWN).frame(), RxError::VridUnknown);
        c.frame(
            format!("{k:?}: vrid rewritten to 99"),
            resealed(&base, |m| m[1] = UNKNOWN),
            RxError::VridUnknown,
        );
        c.frame(format!("{k:?}: vrid 0"), k.spec(0).frame(), RxError::VridUnknown);
        c.frame(
            format!("{k:?}: vrid present without CONFIGURED"),
            k.spec(UNCONFIGURED).frame(),
            RxError::VridUnknown,
        );

        // PacketLen: the count disagrees with the length.
        for (what, count) in [
            ("count + 1", n + 1),
            ("count - 1", n - 1),
            ("count 0", 0),
            ("count 255", 255),
        ] {
            c.frame(
                format!("{k:?}: {what}"),
                resealed(&base, |m| m[3] = count),
                RxError::PacketLen,
            );
        }
        c.frame(
            format!("{k:?}: 4 bytes appended"),
            resealed(&base, |m| m.extend_from_slice(&[0; 4])),
            RxError::PacketLen,
        );
        c.frame(
            format!("{k:?}: 1 byte appended"),
            resealed(&base, |m| m.push(0)),
            RxError::PacketLen,
        );
        c.frame(
            format!("{k:?}: last address cut off"),
            resealed(&base, |m| {
                let cut = if k == Kind::V3v6 { 16 } else { 4 };
                m.truncate(m.len() - cut)
            }),
            RxError::PacketLen,
        );
        // PacketLen: shorter than the fixed header.
        for len in 0..8 {
            c.frame(
                format!("{k:?}: {len}-byte message"),
                raw(&base, |m| m.truncate(len)),
                RxError::PacketLen,
            );
            c.direct(
                format!("{k:?}: {len}-byte message direct"),
                base.ip_meta(len),
                base.message()[..len].to_vec(),
                RxError::PacketLen,
            );
        }
        // PacketLen: the IP payload length disagrees with the message handed over.
        let msg = base.message();
        for (what, len) in [
            ("payload_len + 1", msg.len() + 1),
            ("payload_len - 1", msg.len() - 1),
            ("payload_len - 4", msg.len() - 4),
            ("payload_len 0", 0),
            ("payload_len 65535", 65535),
        ] {
            c.direct(
                format!("{k:?}: {what}"),
                base.ip_meta(len),
                msg.clone(),
                RxError::PacketLen,
            );
        }
        // PacketLen: longer than any VRRP message, even with a length that matches.
        let mut huge = msg.clone();
        huge.resize(MAX_VRRP_LEN + 4, 0);
        c.direct(
            format!("{k:?}: {} bytes", huge.len()),
            base.ip_meta(huge.len()),
            huge.clone(),
            RxError::PacketLen,
        );
        c.frame(
            format!("{k:?}: {} bytes in a frame", huge.len()),
            base.frame_with(&huge),
            RxError::PacketLen,
        );
        // PacketLen: the IP header claims more than the frame holds.
        let f = k.ip_len_field();
        c.frame(
            format!("{k:?}: IP length 4 beyond the frame"),
            edit_frame(base.frame(), |fr| {
                let v = u16::from_be_bytes([fr[f], fr[f + 1]]) + 4;
                fr[f..f + 2].copy_from_slice(&v.to_be_bytes());
            }),
            RxError::PacketLen,
        );
        // PacketLen: the IP header claims less than the message (the rest would be link padding).
        c.frame(
            format!("{k:?}: IP length 4 short of the message"),
            edit_frame(base.frame(), |fr| {
                let v = u16::from_be_bytes([fr[f], fr[f + 1]]) - 4;
                fr[f..f + 2].copy_from_slice(&v.to_be_bytes());
            }),
            RxError::PacketLen,
        );

        // Checksum.
        c.frame(
            format!("{k:?}: priority changed, checksum kept"),
            raw(&base, |m| m[2] ^= 1),
            RxError::Checksum,
        );
        c.frame(
            format!("{k:?}: checksum byte flipped"),
            raw(&base, |m| m[7] ^= 0xff),
            RxError::Checksum,
        );
        c.frame(
            format!("{k:?}: address byte flipped"),
            raw(&base, |m| m[9] ^= 0x10),
            RxError::Checksum,
        );
        c.frame(
            format!("{k:?}: checksum field zero"),
            raw(&base, |m| m[6..8].fill(0)),
            RxError::Checksum,
        );
        c.frame(
            format!("{k:?}: everything after the first word zeroed"),
            raw(&base, |m| m[4..].fill(0)),
            RxError::Checksum,
        );
        c.frame(
            format!("{k:?}: own advert with a bad checksum"),
            raw(&with(base.clone(), |s| s.src = k.our_addr()), |m| m[2] ^= 1),
            RxError::Checksum,
        );
        if k == Kind::V2 {
            c.frame(
                "V2: auth data flipped",
                raw(&with(k.spec(PASS), |s| s.auth_pass = Some(SECRET)), |m| {
                    let last = m.len() - 1;
                    m[last] ^= 1
                }),
                RxError::Checksum,
            );
            // A VRRPv2 message checksummed as if it were VRRPv3 (with the pseudo-header).
            let mut m = base.message();
            m[6..8].fill(0);
            let wrong = reference_vrrp_checksum(true, FAMILY_V4, &base.src, &base.dst, &m);
            m[6..8].copy_from_slice(&wrong.to_be_bytes());
            c.frame(
                "V2: checksum includes a pseudo-header",
                base.frame_with(&m),
                RxError::Checksum,
            );
        } else {
            // The pseudo-header: a VRRPv3 checksum made for another destination or source.
            let unicast = with(base.clone(), |s| s.dst = k.our_addr());
            c.frame(
                format!("{k:?}: checksum for a unicast destination, sent to the group"),
                unicast.frame_with(&base.message()),
                RxError::Checksum,
            );
            c.frame(
                format!("{k:?}: checksum for the group, sent unicast"),
                base.frame_with(&unicast.message()),
                RxError::Checksum,
            );
            let other_src = with(base.clone(), |s| s.src = k.stranger());
            c.frame(
                format!("{k:?}: checksum for another source"),
                other_src.frame_with(&base.message()),
                RxError::Checksum,
            );
            // A VRRPv3 message checksummed as VRRPv2 (no pseudo-header).
            let mut m = base.message();
            m[6..8].fill(0);
            let wrong = reference_checksum(&m);
            m[6..8].copy_from_slice(&wrong.to_be_bytes());
            c.frame(
                format!("{k:?}: checksum without the pseudo-header"),
                base.frame_with(&m),
                RxError::Checksum,
            );
            // The direct call uses the IpMeta addresses for the pseudo-header too.
            let mut ip = base.ip_meta(base.message().len());
            ip.dst = k.our_addr();
            c.direct(
                format!("{k:?}: direct, IpMeta dst changed"),
                ip,
                base.message(),
                RxError::Checksum,
            );
        }

        // AddrList: differs from the configured count or digest (and the sender is not the owner).
        let av = k.addrs_vrid();
        let other = k.other_addr();
        c.frame(
            format!("{k:?}: one address fewer"),
            with(k.spec(av), |s| {
                s.addrs.pop();
            })
            .frame(),
            RxError::AddrList,
        );
        c.frame(
            format!("{k:?}: one address more"),
            with(k.spec(av), |s| s.addrs.push(other)).frame(),
            RxError::AddrList,
        );
        c.frame(
            format!("{k:?}: one address different"),
            with(k.spec(av), |s| s.addrs[1] = other).frame(),
            RxError::AddrList,
        );
        c.frame(
            format!("{k:?}: first address twice"),
            with(k.spec(av), |s| s.addrs[1] = s.addrs[0]).frame(),
            RxError::AddrList,
        );
        c.frame(
            format!("{k:?}: different addresses at priority 254"),
            with(k.spec(av), |s| {
                s.priority = 254;
                s.addrs[0] = other
            })
            .frame(),
            RxError::AddrList,
        );
        c.frame(
            format!("{k:?}: different addresses at priority 0"),
            with(k.spec(av), |s| {
                s.priority = 0;
                s.addrs[0] = other
            })
            .frame(),
            RxError::AddrList,
        );

        // PeerUnknown: unicast instance, source not a configured peer of this VRID.
        let uv = k.unicast_vrid();
        c.frame(
            format!("{k:?}: unicast from a stranger"),
            with(k.spec(uv), |s| s.src = k.stranger()).frame(),
            RxError::PeerUnknown,
        );
        c.frame(
            format!("{k:?}: unicast from a stranger, to our address"),
            with(k.spec(uv), |s| {
                s.src = k.stranger();
                s.dst = k.our_addr()
            })
            .frame(),
            RxError::PeerUnknown,
        );

        // OwnAdvert: the source is our primary address.
        c.frame(
            format!("{k:?}: own advert"),
            with(base.clone(), |s| s.src = k.our_addr()).frame(),
            RxError::OwnAdvert,
        );
        c.frame(
            format!("{k:?}: own advert on a unicast vrid"),
            with(k.spec(uv), |s| s.src = k.our_addr()).frame(),
            RxError::OwnAdvert,
        );
        c.frame(
            format!("{k:?}: own advert, address check"),
            with(k.spec(av), |s| {
                s.src = k.our_addr();
                s.addrs[0] = other
            })
            .frame(),
            RxError::OwnAdvert,
        );
    }

    // Version: the other version than the configured one, and VRRPv2 over IPv6.
    c.frame("v2 packet, v3 configured", Spec::v2(V3).frame(), RxError::Version);
    c.frame(
        "v2 packet, v3 configured (nibble rewritten)",
        resealed(&Spec::v3(FAMILY_V4, V3), |m| m[0] = 0x21),
        RxError::Version,
    );
    c.frame(
        "v3 packet, v2 configured",
        Spec::v3(FAMILY_V4, V2).frame(),
        RxError::Version,
    );
    c.frame(
        "v3 packet, v2+PASS configured",
        Spec::v3(FAMILY_V4, PASS).frame(),
        RxError::Version,
    );
    c.frame(
        "v2 over IPv6, v3 configured",
        resealed(&Spec::v3(FAMILY_V6, V3), |m| m[0] = 0x21),
        RxError::Version,
    );
    c.frame(
        "v2 over IPv6, v2 configured for IPv6",
        resealed(&Spec::v3(FAMILY_V6, V2), |m| m[0] = 0x21),
        RxError::Version,
    );
    // A well-formed VRRPv2 layout (16-byte addresses, 8 bytes of auth data) over IPv6.
    let mut v2v6 = vec![0x21, V2, 100, 1, 0, 1, 0, 0];
    v2v6.extend_from_slice(&doc_v6(1));
    v2v6.extend_from_slice(&[0; 8]);
    let v6spec = Spec::v3(FAMILY_V6, V2);
    reseal(FAMILY_V6, &v6spec.src, &v6spec.dst, &mut v2v6);
    c.frame(
        "v2 layout over IPv6, v2 configured for IPv6",
        v6spec.frame_with(&v2v6),
        RxError::Version,
    );

    // VridUnknown: configured for the other family only.
    c.frame(
        "IPv6 advert for an IPv4-only vrid",
        Spec::v3(FAMILY_V6, PASS).frame(),
        RxError::VridUnknown,
    );
    c.frame(
        "v2 advert for an IPv4 vrid number, IPv6 packet",
        resealed(&Spec::v3(FAMILY_V6, ADDRS2), |m| m[0] = 0x21),
        RxError::VridUnknown,
    );

    // PacketLen: VRRPv2 without its authentication data.
    c.frame(
        "v2 without auth data",
        resealed(&Spec::v2(V2), |m| m.truncate(m.len() - 8)),
        RxError::PacketLen,
    );
    c.frame(
        "v2 with half the auth data",
        resealed(&Spec::v2(V2), |m| m.truncate(m.len() - 4)),
        RxError::PacketLen,
    );
    // PacketLen from the IPv4 header, for VRRPv2 and VRRPv3.
    for spec in [Spec::v2(V2), Spec::v3(FAMILY_V4, V3)] {
        let v = spec.version;
        let msg = spec.message();
        for (what, frag) in [
            ("more fragments", 0x2000u16),
            ("fragment offset 1", 0x0001),
            ("more fragments at offset 8", 0x2001),
            ("fragment offset 0x1fff", 0x1fff),
            ("DF and MF", 0x6000),
        ] {
            c.frame(
                format!("v{v}: IPv4 {what}"),
                ipv4_frame(&spec.src, &spec.dst, 255, IPPROTO_VRRP, &[], frag, &msg),
                RxError::PacketLen,
            );
        }
        for ihl in [0u8, 1, 4] {
            c.frame(
                format!("v{v}: IHL {ihl}"),
                edit_frame(spec.frame(), |f| f[ETH] = 0x40 | ihl),
                RxError::PacketLen,
            );
        }
        c.frame(
            format!("v{v}: IPv4 version nibble 6"),
            edit_frame(spec.frame(), |f| f[ETH] = 0x65),
            RxError::PacketLen,
        );
        c.frame(
            format!("v{v}: IPv4 total length 19"),
            edit_frame(spec.frame(), |f| {
                f[ETH + 2..ETH + 4].copy_from_slice(&19u16.to_be_bytes())
            }),
            RxError::PacketLen,
        );
        c.frame(
            format!("v{v}: IPv4 total length 20 (empty payload)"),
            edit_frame(spec.frame(), |f| {
                f[ETH + 2..ETH + 4].copy_from_slice(&20u16.to_be_bytes())
            }),
            RxError::PacketLen,
        );
        c.frame(
            format!("v{v}: IHL 15 beyond the total length"),
            edit_frame(spec.frame(), |f| f[ETH] = 0x4f),
            RxError::PacketLen,
        );
    }

    // AuthTypeMismatch.
    c.frame(
        "PASS configured, no auth sent",
        Spec::v2(PASS).frame(),
        RxError::AuthTypeMismatch,
    );
    c.frame(
        "no auth configured, PASS sent",
        with(Spec::v2(V2), |s| s.auth_pass = Some(SECRET)).frame(),
        RxError::AuthTypeMismatch,
    );
    c.frame(
        "no auth configured, AH (2) sent",
        resealed(&Spec::v2(V2), |m| m[4] = 2),
        RxError::AuthTypeMismatch,
    );
    c.frame(
        "PASS configured, AH (2) sent",
        resealed(&with(Spec::v2(PASS), |s| s.auth_pass = Some(SECRET)), |m| m[4] = 2),
        RxError::AuthTypeMismatch,
    );
    c.frame(
        "no auth configured, auth type 255",
        resealed(&Spec::v2(V2), |m| m[4] = 255),
        RxError::AuthTypeMismatch,
    );

    // AuthFailure.
    for (what, pw) in [
        ("case differs", *b"secreT\0\0"),
        ("prefix", *b"secre\0\0\0"),
        ("longer", *b"secret12"),
        ("garbage after the NUL", *b"secret\0x"),
        ("empty", [0; 8]),
    ] {
        c.frame(
            format!("wrong password: {what}"),
            with(Spec::v2(PASS), |s| s.auth_pass = Some(pw)).frame(),
            RxError::AuthFailure,
        );
    }

    // AdvertInterval (VRRPv2 only).
    for secs in [2u16, 255] {
        c.frame(
            format!("v2 interval {secs} s, 1 s configured"),
            with(Spec::v2(V2), |s| s.adver_int_cs = secs * 100).frame(),
            RxError::AdvertInterval,
        );
    }
    c.frame(
        "v2 interval 0",
        resealed(&Spec::v2(V2), |m| m[5] = 0),
        RxError::AdvertInterval,
    );
    c.frame(
        "v2 interval 3 s, right password",
        with(Spec::v2(PASS), |s| {
            s.auth_pass = Some(SECRET);
            s.adver_int_cs = 300
        })
        .frame(),
        RxError::AdvertInterval,
    );

    // PeerUnknown: a peer of another VRID is not a peer of this one.
    c.frame(
        "v3 unicast from a peer of another vrid",
        with(Spec::v3(FAMILY_V4, UNI), |s| s.src = STRANGER_V4).frame(),
        RxError::PeerUnknown,
    );
    c.frame(
        "IPv4 peer address does not make an IPv6 peer",
        with(Spec::v3(FAMILY_V6, UNI), |s| s.src = v6_mapped(PEER_V4)).frame(),
        RxError::PeerUnknown,
    );

    // Ordering: the own-advert check comes before authentication.
    c.frame(
        "own advert without the password",
        with(Spec::v2(PASS), |s| s.src = harness::OUR_V4).frame(),
        RxError::OwnAdvert,
    );
    c
}

/// The 16-byte form of `a` read as IPv6 (::ffff:a.b.c.d).
fn v6_mapped(a: [u8; 16]) -> [u8; 16] {
    let mut out = [0u8; 16];
    out[10] = 0xff;
    out[11] = 0xff;
    out[12..].copy_from_slice(&a[..4]);
    out
}

#[test]
fn every_rx_error_for_every_kind() {
    let l = lookup();
    let cases = error_cases();
    let mut failures = Vec::new();
    for (name, input, want) in &cases.0 {
        let got = run(input, &l);
        if got != Outcome::Rejected(*want) {
            failures.push(format!("{name}: want {want:?}, got {got:?}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} case(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    // Every variant is covered.
    let all = [
        RxError::IpTtl,
        RxError::Version,
        RxError::InvalidType,
        RxError::VridUnknown,
        RxError::PacketLen,
        RxError::Checksum,
        RxError::AuthTypeMismatch,
        RxError::AuthFailure,
        RxError::AddrList,
        RxError::AdvertInterval,
        RxError::PeerUnknown,
        RxError::OwnAdvert,
    ];
    for e in all {
        assert!(cases.0.iter().any(|(_, _, w)| *w == e), "no case for {e:?}");
    }
    assert!(cases.0.len() > 200, "only {} cases", cases.0.len());
}

#[test]
fn accepted_adverts_return_exactly_their_fields() {
    let l = lookup();
    let mut cases: Vec<(String, Vec<u8>, Advert)> = Vec::new();
    let mut ok = |name: String, spec: &Spec, frame: Vec<u8>| {
        let want = spec.expected();
        cases.push((name, frame, want));
    };
    for k in KINDS {
        let base = k.plain();
        ok(format!("{k:?}: plain"), &base, base.frame());
        for priority in [0u8, 1, 254, 255] {
            let s = with(base.clone(), |s| s.priority = priority);
            ok(format!("{k:?}: priority {priority}"), &s, s.frame());
        }
        // Link-layer padding after the IP payload is not part of the message.
        let mut padded = base.frame();
        padded.extend_from_slice(&[0xee; 30]);
        ok(format!("{k:?}: Ethernet padding"), &base, padded);
        // Unicast from the configured peer, to the group or to us.
        let uni = k.spec(k.unicast_vrid());
        ok(format!("{k:?}: unicast from the peer"), &uni, uni.frame());
        let uni_to_us = with(uni, |s| s.dst = k.our_addr());
        ok(
            format!("{k:?}: unicast from the peer to us"),
            &uni_to_us,
            uni_to_us.frame(),
        );
        // The address digest does not depend on the order.
        let swapped = with(k.spec(k.addrs_vrid()), |s| s.addrs.reverse());
        ok(format!("{k:?}: addresses in another order"), &swapped, swapped.frame());
        let same = k.spec(k.addrs_vrid());
        ok(format!("{k:?}: addresses in the configured order"), &same, same.frame());
        // The owner (priority 255) is exempt from the address check.
        for change in [
            |s: &mut Spec, o: [u8; 16]| s.addrs[0] = o,
            |s: &mut Spec, o: [u8; 16]| s.addrs.push(o),
            |s: &mut Spec, _: [u8; 16]| s.addrs.truncate(1),
        ] {
            let owner = with(k.spec(k.addrs_vrid()), |s| {
                s.priority = 255;
                change(s, k.other_addr())
            });
            ok(
                format!("{k:?}: owner with other addresses {:?}", owner.addrs.len()),
                &owner,
                owner.frame(),
            );
        }
        // Many addresses.
        let many = with(base.clone(), |s| {
            s.addrs = (1..=255u16)
                .map(|i| {
                    if k == Kind::V3v6 {
                        doc_v6(i)
                    } else {
                        v4([10, 0, 0, i as u8])
                    }
                })
                .collect()
        });
        ok(format!("{k:?}: 255 addresses"), &many, many.frame());
        let one = with(base.clone(), |s| s.addrs.truncate(1));
        ok(format!("{k:?}: one address"), &one, one.frame());
    }
    // VRRPv3: the interval is reported, not checked; the reserved bits are ignored.
    for k in [Kind::V3v4, Kind::V3v6] {
        for cs in [1u16, 99, 100, 101, 4095] {
            let s = with(k.plain(), |s| s.adver_int_cs = cs);
            ok(format!("{k:?}: interval {cs} cs"), &s, s.frame());
        }
        let s = with(k.plain(), |s| s.adver_int_cs = 0x123);
        ok(format!("{k:?}: reserved bits set"), &s, resealed(&s, |m| m[4] |= 0xf0));
    }
    // VRRPv2: PASS authentication, and auth data ignored without it (RFC 3768 §5.3.6.1).
    let pass = with(Spec::v2(PASS), |s| s.auth_pass = Some(SECRET));
    ok("v2 PASS, right password".into(), &pass, pass.frame());
    let full_pw = *b"12345678";
    let mut l_full = l.clone();
    l_full.set(
        FAMILY_V4,
        PASS,
        VridConfig {
            auth_pass: full_pw,
            ..l.configs[&(FAMILY_V4, PASS)]
        },
    );
    let junk_auth = Spec::v2(V2);
    ok(
        "v2 no auth, junk in the auth data".into(),
        &junk_auth,
        resealed(&junk_auth, |m| {
            let n = m.len();
            m[n - 8..].copy_from_slice(b"whatever")
        }),
    );
    // VRRPv2: the checksum does not cover the IP addresses.
    let v2 = Spec::v2(V2);
    ok(
        "v2 to a unicast destination with the group's message".into(),
        &v2,
        with(v2.clone(), |s| s.dst = harness::OUR_V4).frame_with(&v2.message()),
    );
    // IPv4 header variants.
    for spec in [Spec::v2(V2), Spec::v3(FAMILY_V4, V3)] {
        let msg = spec.message();
        ok(
            format!("v{}: IPv4 DF", spec.version),
            &spec,
            ipv4_frame(&spec.src, &spec.dst, 255, IPPROTO_VRRP, &[], 0x4000, &msg),
        );
        ok(
            format!("v{}: IPv4 with a router-alert option", spec.version),
            &spec,
            ipv4_frame(&spec.src, &spec.dst, 255, IPPROTO_VRRP, &[0x94, 0x04, 0, 0], 0, &msg),
        );
        ok(
            format!("v{}: IPv4 with 40 bytes of options", spec.version),
            &spec,
            ipv4_frame(&spec.src, &spec.dst, 255, IPPROTO_VRRP, &[1; 40], 0, &msg),
        );
    }

    let mut failures = Vec::new();
    for (name, frame, want) in &cases {
        let got = receive(frame, &l);
        if got != Outcome::Accepted(*want) {
            failures.push(format!("{name}: want {want:?}, got {got:?}"));
        }
    }
    let full = with(Spec::v2(PASS), |s| s.auth_pass = Some(full_pw));
    assert_eq!(receive(&full.frame(), &l_full), Outcome::Accepted(full.expected()));
    assert!(
        failures.is_empty(),
        "{} case(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn every_single_bit_flip_after_the_vrid_is_caught() {
    let l = lookup();
    for spec in [
        Spec::v2(V2),
        with(Spec::v2(PASS), |s| s.auth_pass = Some(SECRET)),
        Spec::v3(FAMILY_V4, V3),
        Spec::v3(FAMILY_V6, V3),
    ] {
        let msg = spec.message();
        for i in (2..msg.len()).filter(|&i| i != 3) {
            for bit in 0..8 {
                let mut m = msg.clone();
                m[i] ^= 1 << bit;
                assert_eq!(
                    receive(&spec.frame_with(&m), &l),
                    Outcome::Rejected(RxError::Checksum),
                    "v{} family {} byte {i} bit {bit}",
                    spec.version,
                    spec.family
                );
            }
        }
    }
}

#[test]
fn v3_checksum_covers_the_ip_addresses_v2_does_not() {
    let l = lookup();
    for k in KINDS {
        let base = k.plain();
        let frame = base.frame();
        for (start, len) in [k.ip_src(), k.ip_dst()] {
            for i in start..start + len {
                for bit in 0..8 {
                    let mut f = frame.clone();
                    f[i] ^= 1 << bit;
                    if k != Kind::V3v6 {
                        // Without a new header checksum the IPv4 header check catches any flip.
                        assert_eq!(
                            receive(&f, &l),
                            Outcome::Rejected(RxError::Checksum),
                            "{k:?} byte {i} bit {bit}, header"
                        );
                        harness::reseal_ipv4_header(&mut f);
                    }
                    let got = receive(&f, &l);
                    if k == Kind::V2 {
                        assert!(matches!(got, Outcome::Accepted(_)), "{k:?} byte {i} bit {bit}: {got:?}");
                    } else {
                        assert_eq!(got, Outcome::Rejected(RxError::Checksum), "{k:?} byte {i} bit {bit}");
                    }
                }
            }
        }
    }
}

#[test]
fn truncation_at_every_length_is_never_accepted() {
    let l = lookup();
    let frames = [
        (Kind::V2, with(Spec::v2(PASS), |s| s.auth_pass = Some(SECRET)).frame()),
        (Kind::V2, Spec::v2(V2).frame()),
        (Kind::V3v4, Spec::v3(FAMILY_V4, V3).frame()),
        (Kind::V3v6, Spec::v3(FAMILY_V6, V3).frame()),
    ];
    for (k, full) in frames {
        let Frame::Vrrp { ip, offset, src_mac } = classify(&full) else {
            panic!("{k:?}: not classified as VRRP")
        };
        assert_eq!(src_mac, PEER_MAC);
        assert_eq!(offset, ETH + k.ip_hdr_len());
        assert!(
            matches!(receive(&full, &l), Outcome::Accepted(_)),
            "{k:?}: full frame rejected"
        );
        for len in 0..full.len() {
            let cut = &full[..len];
            let got = receive(cut, &l);
            assert!(
                !matches!(got, Outcome::Accepted(_)),
                "{k:?}: accepted at {len} of {}",
                full.len()
            );
            if len < offset {
                // The IP header itself is cut: not recognisable as VRRP.
                assert_eq!(classify(cut), Frame::Other, "{k:?} at {len}");
                assert_eq!(got, Outcome::NotVrrp, "{k:?} at {len}");
            } else {
                // The header is whole and says more than there is.
                assert_eq!(classify(cut), Frame::Vrrp { ip, offset, src_mac }, "{k:?} at {len}");
                assert_eq!(vrrp_message(cut, &ip, offset), None, "{k:?} at {len}");
                assert_eq!(got, Outcome::Rejected(RxError::PacketLen), "{k:?} at {len}");
            }
        }
        // The message alone, cut at every length, with an IP length that matches the cut.
        let msg = vrrp_message(&full, &ip, offset).expect("whole message");
        for len in 0..msg.len() {
            let meta = IpMeta {
                payload_len: len as u16,
                ..ip
            };
            assert_eq!(
                validate_advert(&meta, &msg[..len], &l),
                Err(RxError::PacketLen),
                "{k:?}: message cut at {len}"
            );
            // And with the original length.
            assert_eq!(
                validate_advert(&ip, &msg[..len], &l),
                Err(RxError::PacketLen),
                "{k:?}: message cut at {len}, full IP length"
            );
        }
    }
}

#[test]
fn errors_map_to_their_counters() {
    let table = [
        (RxError::IpTtl, Counter::IpTtlErr, "ip_ttl_err"),
        (RxError::Version, Counter::VersionErr, "version_err"),
        (RxError::InvalidType, Counter::InvalidType, "invalid_type"),
        (RxError::VridUnknown, Counter::VridUnknown, "vrid_unknown"),
        (RxError::PacketLen, Counter::PacketLenErr, "packet_len_err"),
        (RxError::Checksum, Counter::ChecksumErr, "checksum_err"),
        (
            RxError::AuthTypeMismatch,
            Counter::AuthTypeMismatch,
            "authtype_mismatch",
        ),
        (RxError::AuthFailure, Counter::AuthFailure, "auth_failure"),
        (RxError::AddrList, Counter::AddrListErr, "addr_list_err"),
        (
            RxError::AdvertInterval,
            Counter::AdvertIntervalErr,
            "advert_interval_err",
        ),
        (RxError::PeerUnknown, Counter::PeerUnknown, "peer_unknown"),
        (RxError::OwnAdvert, Counter::OwnAdverts, "own_adverts"),
    ];
    for (e, counter, name) in table {
        assert_eq!(e.counter(), counter, "{e:?}");
        assert_eq!(e.counter().name(), name, "{e:?}");
        assert!(Counter::ALL.contains(&counter));
        assert!((counter as u32) < Counter::COUNT);
    }
    // No two errors share a counter, and none uses the accepted-advert counter.
    for (i, a) in table.iter().enumerate() {
        assert_ne!(a.1, Counter::AdvertsRx);
        for b in &table[i + 1..] {
            assert_ne!(a.1, b.1, "{:?} and {:?}", a.0, b.0);
        }
    }
    assert_eq!(Counter::ALL.len(), Counter::COUNT as usize);
}

fn fields<'a>(version: u8, family: u8, addrs: &'a [u8]) -> AdvertFields<'a> {
    AdvertFields {
        version,
        family,
        vrid: 7,
        priority: 150,
        adver_int_cs: 100,
        addrs,
        auth_pass: None,
        src: if family == FAMILY_V6 { PEER_V6 } else { PEER_V4 },
        dst: mcast(family),
    }
}

#[test]
fn encode_rejects_what_the_wire_cannot_carry() {
    let mut buf = [0u8; 8192];
    let a4 = [192u8, 0, 2, 100];
    let a6 = doc_v6(1);
    let cases: Vec<(&str, AdvertFields<'_>, EncodeError)> = vec![
        ("v2 over IPv6", fields(2, FAMILY_V6, &a6), EncodeError::Version),
        ("version 0", fields(0, FAMILY_V4, &a4), EncodeError::Version),
        ("version 1", fields(1, FAMILY_V4, &a4), EncodeError::Version),
        ("version 4", fields(4, FAMILY_V4, &a4), EncodeError::Version),
        ("version 4 over IPv6", fields(4, FAMILY_V6, &a6), EncodeError::Version),
        ("family 0", fields(3, 0, &a4), EncodeError::Version),
        ("family 5", fields(3, 5, &a4), EncodeError::Version),
        ("v2 family 5", fields(2, 5, &a4), EncodeError::Version),
        (
            "IPv4 list of 3 bytes",
            fields(3, FAMILY_V4, &a4[..3]),
            EncodeError::Addresses,
        ),
        (
            "IPv4 list of 5 bytes",
            fields(3, FAMILY_V4, &[1, 2, 3, 4, 5]),
            EncodeError::Addresses,
        ),
        (
            "IPv6 list of 4 bytes",
            fields(3, FAMILY_V6, &a4),
            EncodeError::Addresses,
        ),
        (
            "IPv6 list of 20 bytes",
            fields(3, FAMILY_V6, &[0; 20]),
            EncodeError::Addresses,
        ),
        (
            "v2 list of 6 bytes",
            fields(2, FAMILY_V4, &[0; 6]),
            EncodeError::Addresses,
        ),
    ];
    for (what, f, want) in &cases {
        assert_eq!(encode_advert(f, &mut buf), Err(*want), "{what}");
    }
    // More than 255 addresses.
    let many4 = vec![1u8; 4 * 256];
    let many6 = vec![1u8; 16 * 256];
    for (version, family, addrs) in [(2, FAMILY_V4, &many4), (3, FAMILY_V4, &many4), (3, FAMILY_V6, &many6)] {
        let f = fields(version, family, addrs);
        assert_eq!(
            encode_advert(&f, &mut buf),
            Err(EncodeError::Addresses),
            "v{version} {family} 256"
        );
        let n = addr_len(family);
        let f255 = fields(version, family, &addrs[..255 * n]);
        assert_eq!(
            encode_advert(&f255, &mut buf),
            Ok(message_len(version, family, 255)),
            "v{version} {family} 255"
        );
    }
    // Intervals: VRRPv2 whole seconds 1..=255, VRRPv3 1..=4095 cs.
    for (version, family, addrs) in [
        (2u8, FAMILY_V4, &a4[..]),
        (3, FAMILY_V4, &a4[..]),
        (3, FAMILY_V6, &a6[..]),
    ] {
        let bad: &[u16] = if version == 2 {
            &[0, 1, 50, 99, 101, 150, 199, 25_501, 25_600, 65_500, u16::MAX]
        } else {
            &[0, 4096, 5000, u16::MAX]
        };
        let good: &[u16] = if version == 2 {
            &[100, 200, 12_300, 25_500]
        } else {
            &[1, 99, 100, 101, 4095]
        };
        for &cs in bad {
            let f = AdvertFields {
                adver_int_cs: cs,
                ..fields(version, family, addrs)
            };
            assert_eq!(
                encode_advert(&f, &mut buf),
                Err(EncodeError::Interval),
                "v{version} {cs} cs"
            );
        }
        for &cs in good {
            let f = AdvertFields {
                adver_int_cs: cs,
                ..fields(version, family, addrs)
            };
            let n = encode_advert(&f, &mut buf).expect("representable interval");
            let wire = if version == 2 {
                u16::from(buf[5]) * 100
            } else {
                u16::from_be_bytes([buf[4], buf[5]])
            };
            assert_eq!((wire, n), (cs, message_len(version, family, 1)), "v{version} {cs} cs");
        }
    }
}

#[test]
fn encode_needs_exactly_the_message_length_and_writes_nothing_more() {
    let a4 = [192u8, 0, 2, 100, 192, 0, 2, 101];
    let a6 = [doc_v6(1), doc_v6(2)].concat();
    for f in [
        AdvertFields {
            auth_pass: Some(SECRET),
            ..fields(2, FAMILY_V4, &a4)
        },
        fields(2, FAMILY_V4, &a4),
        fields(3, FAMILY_V4, &a4),
        fields(3, FAMILY_V6, &a6),
    ] {
        let len = message_len(f.version, f.family, 2);
        for short in [0, 1, 7, 8, len - 8, len - 1] {
            let mut buf = vec![0xaa; short];
            assert_eq!(
                encode_advert(&f, &mut buf),
                Err(EncodeError::BufferTooSmall),
                "{f:?} in {short}"
            );
            assert!(buf.iter().all(|&b| b == 0xaa), "{f:?}: wrote into a too-small buffer");
        }
        let mut exact = vec![0xaa; len];
        assert_eq!(encode_advert(&f, &mut exact), Ok(len));
        let mut larger = vec![0xaa; len + 100];
        assert_eq!(encode_advert(&f, &mut larger), Ok(len));
        assert_eq!(larger[..len], exact[..]);
        assert!(
            larger[len..].iter().all(|&b| b == 0xaa),
            "{f:?}: wrote past the message"
        );
    }
}

#[test]
fn encode_lays_out_the_rfc_formats() {
    let mut buf = [0u8; 256];
    // VRRPv2, RFC 3768 §5.1.
    let a4 = [192u8, 0, 2, 100, 192, 0, 2, 101];
    let f = AdvertFields {
        adver_int_cs: 300,
        auth_pass: Some(SECRET),
        ..fields(2, FAMILY_V4, &a4)
    };
    let n = encode_advert(&f, &mut buf).expect("v2");
    assert_eq!(n, 8 + 8 + 8);
    assert_eq!(buf[..6], [0x21, 7, 150, 2, 1, 3]);
    assert_eq!(buf[8..16], a4);
    assert_eq!(buf[16..24], SECRET);
    let n = encode_advert(&fields(2, FAMILY_V4, &a4), &mut buf).expect("v2 no auth");
    assert_eq!((buf[4], &buf[16..n]), (0, &[0u8; 8][..]));
    // VRRPv3, RFC 5798 §5.1: 4-bit reserved, 12-bit interval.
    let a6 = [doc_v6(1), doc_v6(2), doc_v6(3)].concat();
    let f = AdvertFields {
        adver_int_cs: 0xabc,
        auth_pass: Some(SECRET), // ignored by VRRPv3
        ..fields(3, FAMILY_V6, &a6)
    };
    let n = encode_advert(&f, &mut buf).expect("v3");
    assert_eq!(n, 8 + 48);
    assert_eq!(buf[..6], [0x31, 7, 150, 3, 0x0a, 0xbc]);
    assert_eq!(buf[8..n], a6[..]);
}

#[test]
fn encoded_checksums_match_an_independent_rfc1071_computation() {
    let mut buf = [0u8; 8192];
    let a4: Vec<u8> = (0..7u8).flat_map(|i| [10, 1, 2, i]).collect();
    let a6: Vec<u8> = (1..=5u16).flat_map(doc_v6).collect();
    let unicast_v4 = v4([192, 0, 2, 2]);
    let unicast_v6 = harness::OUR_V6;
    for (version, family, addrs, dst, auth) in [
        (3u8, FAMILY_V4, &a4, mcast(FAMILY_V4), None),
        (3, FAMILY_V4, &a4, unicast_v4, None),
        (3, FAMILY_V6, &a6, mcast(FAMILY_V6), None),
        (3, FAMILY_V6, &a6, unicast_v6, None),
        (2, FAMILY_V4, &a4, mcast(FAMILY_V4), None),
        (2, FAMILY_V4, &a4, mcast(FAMILY_V4), Some(SECRET)),
    ] {
        for priority in [0u8, 1, 100, 255] {
            for count in [1usize, 2, 5] {
                let n = addr_len(family);
                let f = AdvertFields {
                    priority,
                    dst,
                    auth_pass: auth,
                    ..fields(version, family, &addrs[..count * n])
                };
                let len = encode_advert(&f, &mut buf).expect("valid");
                let mut msg = buf[..len].to_vec();
                let stored = u16::from_be_bytes([msg[6], msg[7]]);
                msg[6..8].fill(0);
                let want = if version == 3 {
                    let pseudo = pseudo_header(family, &f.src, &f.dst, len);
                    reference_checksum(&[&pseudo[..], &msg[..]].concat())
                } else {
                    reference_checksum(&msg)
                };
                assert_eq!(
                    stored, want,
                    "v{version} family {family} priority {priority} count {count}"
                );
                // And the whole thing verifies to zero.
                msg[6..8].copy_from_slice(&stored.to_be_bytes());
                assert_eq!(reference_vrrp_checksum(version == 3, family, &f.src, &f.dst, &msg), 0);
            }
        }
    }
    // The IPv4 and IPv6 pseudo-headers differ in layout but not in sum (RFC 768 vs RFC 8200).
    let src = v4([192, 0, 2, 1]);
    let p4 = pseudo_header(FAMILY_V4, &src, &mcast(FAMILY_V4), 16);
    assert_eq!(p4, [192, 0, 2, 1, 224, 0, 0, 18, 0, 112, 0, 16]);
    let p6 = pseudo_header(FAMILY_V6, &PEER_V6, &mcast(FAMILY_V6), 24);
    assert_eq!(p6[32..], [0, 0, 0, 24, 0, 0, 0, 112]);
}

/// An Ethernet ARP frame.
#[allow(clippy::too_many_arguments, reason = "every field is varied by some test")]
fn arp(htype: u16, ptype: u16, hlen: u8, plen: u8, op: u16, sha: [u8; 6], spa: [u8; 4], tpa: [u8; 4]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&[0xff; 6]);
    f.extend_from_slice(&sha);
    f.extend_from_slice(&0x0806u16.to_be_bytes());
    f.extend_from_slice(&htype.to_be_bytes());
    f.extend_from_slice(&ptype.to_be_bytes());
    f.push(hlen);
    f.push(plen);
    f.extend_from_slice(&op.to_be_bytes());
    f.extend_from_slice(&sha);
    f.extend_from_slice(&spa);
    f.extend_from_slice(&if op == 2 { [0x02, 0, 0, 0, 0, 0x09] } else { [0; 6] });
    f.extend_from_slice(&tpa);
    f
}

fn arp_eth(op: u16, sha: [u8; 6], spa: [u8; 4], tpa: [u8; 4]) -> Vec<u8> {
    arp(1, 0x0800, 6, 4, op, sha, spa, tpa)
}

/// An ICMPv6 frame of `icmp_type` / `code` with a 16-byte target and a target link-layer address
/// option, sent from `mac`.
fn icmpv6(icmp_type: u8, code: u8, mac: [u8; 6], target: [u8; 16], with_option: bool) -> Vec<u8> {
    let mut icmp = vec![icmp_type, code, 0, 0, 0x20, 0, 0, 0];
    icmp.extend_from_slice(&target);
    if with_option {
        icmp.extend_from_slice(&[2, 1]);
        icmp.extend_from_slice(&mac);
    }
    let mut f = ipv6_frame(&PEER_V6, &harness::v6_last(0xff), 255, 58, &icmp);
    f[6..12].copy_from_slice(&mac);
    f
}

#[test]
fn arp_requests_and_replies_are_claims_of_the_sender() {
    let mac = [0x02, 0xaa, 0xbb, 0xcc, 0xdd, 0xee];
    let vip = [192, 0, 2, 100];
    let claim = Frame::Claim(Claim {
        family: FAMILY_V4,
        addr: v4(vip),
        mac,
    });
    assert_eq!(classify(&arp_eth(1, mac, vip, [192, 0, 2, 1])), claim, "request");
    assert_eq!(classify(&arp_eth(2, mac, vip, [192, 0, 2, 1])), claim, "reply");
    assert_eq!(classify(&arp_eth(1, mac, vip, vip)), claim, "gratuitous request");
    assert_eq!(classify(&arp_eth(2, mac, vip, vip)), claim, "gratuitous reply");
    // Ethernet minimum-size padding after the ARP packet.
    let mut padded = arp_eth(1, mac, vip, vip);
    padded.resize(60, 0);
    assert_eq!(classify(&padded), claim, "padded");
    // The claim is the ARP sender hardware address, whatever the Ethernet source.
    let mut proxied = arp_eth(2, mac, vip, [192, 0, 2, 1]);
    proxied[6..12].copy_from_slice(&PEER_MAC);
    assert_eq!(classify(&proxied), claim, "Ethernet source differs from sha");

    let not_claims = [
        ("hardware type 6 (IEEE 802)", arp(6, 0x0800, 6, 4, 1, mac, vip, vip)),
        ("hardware type 0", arp(0, 0x0800, 6, 4, 1, mac, vip, vip)),
        ("protocol IPv6", arp(1, 0x86dd, 6, 4, 1, mac, vip, vip)),
        ("hardware length 8", arp(1, 0x0800, 8, 4, 1, mac, vip, vip)),
        ("protocol length 16", arp(1, 0x0800, 6, 16, 1, mac, vip, vip)),
        ("op 0", arp_eth(0, mac, vip, vip)),
        ("op 3 (RARP request)", arp_eth(3, mac, vip, vip)),
        ("op 4 (RARP reply)", arp_eth(4, mac, vip, vip)),
        ("op 0x0101", arp_eth(0x0101, mac, vip, vip)),
    ];
    for (what, f) in &not_claims {
        assert_eq!(classify(f), Frame::Other, "{what}");
    }
    let full = arp_eth(1, mac, vip, vip);
    for len in 0..full.len() {
        assert_eq!(classify(&full[..len]), Frame::Other, "ARP cut at {len}");
    }
}

#[test]
fn neighbour_advertisements_are_claims_of_the_target_by_the_ethernet_source() {
    let mac = [0x02, 0x11, 0x22, 0x33, 0x44, 0x55];
    let vip = doc_v6(0x100);
    let claim = Frame::Claim(Claim {
        family: FAMILY_V6,
        addr: vip,
        mac,
    });
    assert_eq!(classify(&icmpv6(136, 0, mac, vip, true)), claim, "NA with option");
    assert_eq!(classify(&icmpv6(136, 0, mac, vip, false)), claim, "NA without option");
    let full = icmpv6(136, 0, mac, vip, false);
    for len in 0..full.len() {
        assert_eq!(classify(&full[..len]), Frame::Other, "NA cut at {len}");
    }
    for (what, f) in [
        ("NA code 1", icmpv6(136, 1, mac, vip, true)),
        ("echo request", icmpv6(128, 0, mac, vip, true)),
        ("echo reply", icmpv6(129, 0, mac, vip, true)),
        ("neighbour solicitation", icmpv6(135, 0, mac, vip, true)),
        ("router advertisement", icmpv6(134, 0, mac, vip, true)),
    ] {
        assert_eq!(classify(&f), Frame::Other, "{what}");
    }
    // NA bytes behind another next header are not an NA.
    let mut udp = icmpv6(136, 0, mac, vip, true);
    udp[ETH + 6] = 17;
    assert_eq!(classify(&udp), Frame::Other, "next header UDP");
}

#[test]
fn other_traffic_is_other() {
    let udp = [0x30, 0x39, 0, 80, 0, 16, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8];
    let frames = [
        (
            "UDP over IPv4",
            ip_frame(FAMILY_V4, &PEER_V4, &harness::OUR_V4, 64, 17, &udp),
        ),
        (
            "UDP over IPv6",
            ip_frame(FAMILY_V6, &PEER_V6, &harness::OUR_V6, 64, 17, &udp),
        ),
        (
            "TCP over IPv4",
            ip_frame(FAMILY_V4, &PEER_V4, &harness::OUR_V4, 64, 6, &udp),
        ),
        (
            "ICMP over IPv4",
            ip_frame(FAMILY_V4, &PEER_V4, &harness::OUR_V4, 64, 1, &udp),
        ),
        (
            "IGMP with TTL 1",
            ip_frame(FAMILY_V4, &PEER_V4, &mcast(FAMILY_V4), 1, 2, &udp),
        ),
        (
            "a fragment of UDP",
            ipv4_frame(&PEER_V4, &harness::OUR_V4, 64, 17, &[], 0x2000, &udp),
        ),
        ("empty", Vec::new()),
        ("13 bytes", vec![0; 13]),
        ("Ethernet header only, IPv4", edit_frame(vec![0; 14], |f| f[12] = 0x08)),
    ];
    for (what, f) in &frames {
        assert_eq!(classify(f), Frame::Other, "{what}");
        assert_eq!(receive(f, &lookup()), Outcome::NotVrrp, "{what}");
    }
    // A VRRP frame under another EtherType: LLDP, a VLAN tag, IPv4 EtherType with an IPv6 packet.
    let vrrp = Spec::v3(FAMILY_V4, V3).frame();
    for et in [0x88ccu16, 0x8100, 0x86dd, 0x0806, 0x0000] {
        let f = edit_frame(vrrp.clone(), |f| f[12..14].copy_from_slice(&et.to_be_bytes()));
        assert_ne!(
            receive(&f, &lookup()),
            Outcome::Accepted(Spec::v3(FAMILY_V4, V3).expected()),
            "{et:#x}"
        );
    }
}

#[test]
fn vrrp_frames_are_classified_with_their_ip_facts() {
    let v4spec = Spec::v3(FAMILY_V4, V3);
    let f = v4spec.frame();
    let msg = v4spec.message();
    let want_ip = IpMeta {
        family: FAMILY_V4,
        ttl: 255,
        payload_len: msg.len() as u16,
        src: PEER_V4,
        dst: mcast(FAMILY_V4),
    };
    assert_eq!(
        classify(&f),
        Frame::Vrrp {
            ip: want_ip,
            offset: ETH + 20,
            src_mac: PEER_MAC
        }
    );
    assert_eq!(vrrp_message(&f, &want_ip, ETH + 20), Some(&msg[..]));
    // With options the message starts after them.
    let opt = ipv4_frame(
        &PEER_V4,
        &mcast(FAMILY_V4),
        255,
        IPPROTO_VRRP,
        &[0x94, 4, 0, 0, 1, 1, 1, 0],
        0,
        &msg,
    );
    let Frame::Vrrp { ip, offset, .. } = classify(&opt) else {
        panic!("options: not VRRP")
    };
    assert_eq!((ip, offset), (want_ip, ETH + 28));
    assert_eq!(vrrp_message(&opt, &ip, offset), Some(&msg[..]));
    // The TTL is reported as it is; validation judges it.
    let low = ipv4_frame(&PEER_V4, &mcast(FAMILY_V4), 3, IPPROTO_VRRP, &[], 0, &msg);
    assert!(matches!(classify(&low), Frame::Vrrp { ip, .. } if ip.ttl == 3));

    let v6spec = Spec::v3(FAMILY_V6, V3);
    let f = v6spec.frame();
    let msg = v6spec.message();
    let want_ip = IpMeta {
        family: FAMILY_V6,
        ttl: 255,
        payload_len: msg.len() as u16,
        src: PEER_V6,
        dst: mcast(FAMILY_V6),
    };
    assert_eq!(
        classify(&f),
        Frame::Vrrp {
            ip: want_ip,
            offset: ETH + 40,
            src_mac: PEER_MAC
        }
    );
    assert_eq!(vrrp_message(&f, &want_ip, ETH + 40), Some(&msg[..]));
    // IPv4 header problems are reported by classify itself.
    let frag = ipv4_frame(&PEER_V4, &mcast(FAMILY_V4), 255, IPPROTO_VRRP, &[], 0x2000, &msg);
    assert_eq!(classify(&frag), Frame::Invalid(RxError::PacketLen));
    // vrrp_message never reads past the frame, whatever the offset and length.
    assert_eq!(vrrp_message(&f, &want_ip, usize::MAX), None);
    assert_eq!(vrrp_message(&f, &want_ip, f.len()), None);
    let zero = IpMeta {
        payload_len: 0,
        ..want_ip
    };
    assert_eq!(vrrp_message(&f, &zero, f.len()), Some(&[][..]));
}

#[test]
fn ipv4_header_checksum_and_ipv6_version_are_checked() {
    let l = lookup();
    // XDP sees packets before the stack's header check: a bad IPv4 header checksum is dropped.
    let mut f = Spec::v3(FAMILY_V4, V3).frame();
    f[ETH + 4] ^= 0x01; // identification, covered only by the header checksum
    assert_eq!(receive(&f, &l), Outcome::Rejected(RxError::Checksum));
    harness::reseal_ipv4_header(&mut f);
    assert!(matches!(receive(&f, &l), Outcome::Accepted(_)));
    // An IPv6 header whose version nibble is not 6 is malformed.
    let mut f = Spec::v3(FAMILY_V6, V3).frame();
    f[ETH] = 0x40;
    assert_eq!(receive(&f, &l), Outcome::Rejected(RxError::PacketLen));
}
