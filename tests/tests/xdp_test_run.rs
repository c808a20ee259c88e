//! The XDP program under BPF_PROG_TEST_RUN: verdicts, counters, map state and ring-buffer events for
//! crafted frames, without any interface. Needs root.
#![allow(clippy::unwrap_used, reason = "tests")]

use std::net::IpAddr;

use ipf_agent::datapath::Family;
use ipf_common::{
    Counter,
    maps::{FAMILY_V4, FAMILY_V6, event_kind},
    vrrp::MCAST_V4,
};
use ipf_tests::{
    frames::{Advert, OWN_MAC, PEER_MAC, arp_frame, ip_frame, na_frame, udp_frame},
    xdp::{TestProgram, XDP_DROP, XDP_PASS, vrid_spec as spec},
};

/// The frame of `adv` with its VRRP message changed by `mutate`; the checksum is recomputed unless
/// `keep_checksum`.
fn mutated(adv: &Advert, keep_checksum: bool, mutate: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut msg = adv.message();
    mutate(&mut msg);
    if !keep_checksum && msg.len() >= 8 {
        msg[6] = 0;
        msg[7] = 0;
        let dst: IpAddr = adv.dst.unwrap_or(IpAddr::from(MCAST_V4));
        let family = if adv.src.is_ipv6() { FAMILY_V6 } else { FAMILY_V4 };
        let c = ipf_common::checksum::vrrp_checksum(
            adv.version,
            family,
            &ipf_agent::datapath::wire_addr(&adv.src),
            &ipf_agent::datapath::wire_addr(&dst),
            &msg,
        );
        msg[6..8].copy_from_slice(&c.to_be_bytes());
    }
    ip_frame(&adv.src, &adv.dst.unwrap_or(IpAddr::from(MCAST_V4)), 112, adv.ttl, &msg)
}

/// Asserts that `frame` is dropped and counted under exactly `counter`.
fn assert_dropped(p: &mut TestProgram, frame: &[u8], counter: Counter) {
    p.drain_events();
    let before = p.counters();
    assert_eq!(p.run(frame), XDP_DROP, "expected XDP_DROP for {}", counter.name());
    let after = p.counters();
    for c in Counter::ALL {
        let delta = after[*c as usize] - before[*c as usize];
        let want = u64::from(*c == counter);
        assert_eq!(
            delta,
            want,
            "counter {} changed by {delta} (expected {want}) for a {} packet",
            c.name(),
            counter.name()
        );
    }
    assert!(p.drain_events().is_empty(), "a dropped packet raised an event");
}

#[test]
fn pass_through_traffic_is_passed_untouched() {
    ipf_testbed::skip_unless_root!();
    let mut p = TestProgram::load();
    p.configure(&spec(51, 3, Family::V4));
    let frames = [
        udp_frame("192.0.2.1", "192.0.2.2", 64),
        udp_frame("2001:db8::1", "2001:db8::2", 64),
        arp_frame(1, PEER_MAC, "192.0.2.1", "192.0.2.2"),
        vec![0u8; 14],
        vec![0xffu8; 60],
    ];
    for f in &frames {
        assert_eq!(p.run(f), XDP_PASS);
    }
    let c = p.counters();
    assert_eq!(c[Counter::ArpRx as usize], 1);
    assert_eq!(c.iter().sum::<u64>(), 1, "only the ARP packet is counted: {c:?}");
    assert!(p.drain_events().is_empty());
}

#[test]
fn valid_v3_advert_records_state_and_raises_one_event() {
    ipf_testbed::skip_unless_root!();
    let mut p = TestProgram::load();
    p.configure(&spec(51, 3, Family::V4));
    let adv = Advert::v3(51, 150, "192.0.2.1", &["192.0.2.100"]);
    for _ in 0..100 {
        assert_eq!(p.run(&adv.frame()), XDP_PASS);
    }
    let st = p.state(FAMILY_V4, 51);
    assert_eq!(&st.master_addr[..4], &[192, 0, 2, 1]);
    assert_eq!(st.master_priority, 150);
    assert_eq!(st.adver_int_cs, 100);
    assert_eq!(st.adverts_rx, 100);
    assert_ne!(st.last_seen_ns, 0);
    assert_eq!(p.counter(Counter::AdvertsRx), 100);
    let events = p.drain_events();
    assert_eq!(events.len(), 1, "one event for 100 identical adverts");
    assert_eq!(events[0].kind, event_kind::NEW_MASTER);
    assert_eq!(events[0].vrid, 51);
    assert_eq!(events[0].priority, 150);
    assert_eq!(events[0].mac, PEER_MAC);
    assert_eq!(p.counter(Counter::EventsSent), 1);
}

#[test]
fn each_change_raises_exactly_one_event() {
    ipf_testbed::skip_unless_root!();
    let mut p = TestProgram::load();
    p.configure(&spec(7, 3, Family::V4));
    let mut adv = Advert::v3(7, 100, "192.0.2.1", &["192.0.2.100"]);
    let run = |p: &mut TestProgram, adv: &Advert| {
        for _ in 0..10 {
            p.run(&adv.frame());
        }
        p.drain_events().iter().map(|e| e.kind).collect::<Vec<_>>()
    };
    assert_eq!(run(&mut p, &adv), vec![event_kind::NEW_MASTER]);
    adv.priority = 120;
    assert_eq!(run(&mut p, &adv), vec![event_kind::PRIORITY_CHANGE]);
    adv.adver_int_cs = 50;
    assert_eq!(run(&mut p, &adv), vec![event_kind::INTERVAL_CHANGE]);
    adv.src = "192.0.2.9".parse().unwrap();
    assert_eq!(run(&mut p, &adv), vec![event_kind::NEW_MASTER]);
    adv.priority = 0;
    assert_eq!(run(&mut p, &adv), vec![event_kind::PRIORITY_CHANGE]);
    assert_eq!(p.state(FAMILY_V4, 7).priority_zero_rx, 10);
}

#[test]
fn v2_with_pass_authentication() {
    ipf_testbed::skip_unless_root!();
    let mut p = TestProgram::load();
    let mut s = spec(9, 2, Family::V4);
    s.auth_pass = Some("s3cret".into());
    p.configure(&s);
    let mut adv = Advert::v2(9, 100, "192.0.2.1", &["192.0.2.100", "192.0.2.101"]);
    adv.auth_pass = Some(*b"s3cret\0\0");
    assert_eq!(p.run(&adv.frame()), XDP_PASS);
    assert_eq!(p.counter(Counter::AdvertsRx), 1);
    adv.auth_pass = Some(*b"wrong\0\0\0");
    assert_dropped(&mut p, &adv.frame(), Counter::AuthFailure);
    adv.auth_pass = None;
    assert_dropped(&mut p, &adv.frame(), Counter::AuthTypeMismatch);
}

#[test]
fn v3_ipv6_advert() {
    ipf_testbed::skip_unless_root!();
    let mut p = TestProgram::load();
    p.configure(&spec(51, 3, Family::V6));
    let adv = Advert::v3(51, 200, "fe80::1", &["fe80::100", "2001:db8::100"]);
    assert_eq!(p.run(&adv.frame()), XDP_PASS);
    let st = p.state(FAMILY_V6, 51);
    assert_eq!(st.master_priority, 200);
    assert_eq!(st.addr_count, 2);
    assert_eq!(p.drain_events().len(), 1);
    // Wrong hop limit.
    let mut bad = adv.clone();
    bad.ttl = 64;
    assert_dropped(&mut p, &bad.frame(), Counter::IpTtlErr);
    // Checksum over the wrong pseudo-header (destination changed after encoding).
    let mut f = adv.frame();
    let dst_off = 14 + 24;
    f[dst_off + 15] ^= 1;
    assert_dropped(&mut p, &f, Counter::ChecksumErr);
}

#[test]
fn every_drop_reason_is_counted() {
    ipf_testbed::skip_unless_root!();
    let mut p = TestProgram::load();
    let mut s3 = spec(51, 3, Family::V4);
    s3.expected_addrs = Some(vec!["192.0.2.100".parse().unwrap(), "192.0.2.101".parse().unwrap()]);
    p.configure(&s3);
    let mut s2 = spec(52, 2, Family::V4);
    s2.auth_pass = Some("pw".into());
    p.configure(&s2);
    let mut uni = spec(53, 3, Family::V4);
    uni.unicast_peers = vec!["192.0.2.1".parse().unwrap()];
    p.configure(&uni);

    let good = Advert::v3(51, 100, "192.0.2.1", &["192.0.2.101", "192.0.2.100"]);
    assert_eq!(p.run(&good.frame()), XDP_PASS, "address order does not matter");

    let mut ttl = good.clone();
    ttl.ttl = 254;
    assert_dropped(&mut p, &ttl.frame(), Counter::IpTtlErr);
    assert_dropped(&mut p, &mutated(&good, false, |m| m[0] = 0x21), Counter::VersionErr);
    assert_dropped(&mut p, &mutated(&good, false, |m| m[0] = 0x41), Counter::VersionErr);
    assert_dropped(&mut p, &mutated(&good, false, |m| m[0] = 0x32), Counter::InvalidType);
    assert_dropped(&mut p, &mutated(&good, false, |m| m[1] = 99), Counter::VridUnknown);
    assert_dropped(&mut p, &mutated(&good, false, |m| m[3] = 3), Counter::PacketLenErr);
    assert_dropped(&mut p, &mutated(&good, false, |m| m.truncate(6)), Counter::PacketLenErr);
    assert_dropped(&mut p, &mutated(&good, true, |m| m[2] ^= 0x10), Counter::ChecksumErr);
    let other_addrs = Advert::v3(51, 100, "192.0.2.1", &["192.0.2.100", "192.0.2.102"]);
    assert_dropped(&mut p, &other_addrs.frame(), Counter::AddrListErr);
    let fewer_addrs = Advert::v3(51, 100, "192.0.2.1", &["192.0.2.100"]);
    assert_dropped(&mut p, &fewer_addrs.frame(), Counter::AddrListErr);
    // The address owner (priority 255) is exempt from the address check (RFC 5798 §7.1).
    let owner = Advert::v3(51, 255, "192.0.2.1", &["192.0.2.100"]);
    assert_eq!(p.run(&owner.frame()), XDP_PASS);

    let mut v2 = Advert::v2(52, 100, "192.0.2.1", &["192.0.2.100"]);
    v2.auth_pass = Some(*b"pw\0\0\0\0\0\0");
    assert_eq!(p.run(&v2.frame()), XDP_PASS);
    let mut v2_interval = v2.clone();
    v2_interval.adver_int_cs = 200;
    assert_dropped(&mut p, &v2_interval.frame(), Counter::AdvertIntervalErr);
    let mut v2_noauth = v2.clone();
    v2_noauth.auth_pass = None;
    assert_dropped(&mut p, &v2_noauth.frame(), Counter::AuthTypeMismatch);
    let mut v2_badpass = v2.clone();
    v2_badpass.auth_pass = Some(*b"px\0\0\0\0\0\0");
    assert_dropped(&mut p, &v2_badpass.frame(), Counter::AuthFailure);
    let v3_on_v2 = Advert::v3(52, 100, "192.0.2.1", &["192.0.2.100"]);
    assert_dropped(&mut p, &v3_on_v2.frame(), Counter::VersionErr);

    let from_peer = Advert::v3(53, 100, "192.0.2.1", &["192.0.2.100"]);
    assert_eq!(p.run(&from_peer.frame()), XDP_PASS);
    let from_stranger = Advert::v3(53, 100, "192.0.2.66", &["192.0.2.100"]);
    assert_dropped(&mut p, &from_stranger.frame(), Counter::PeerUnknown);

    // Truncated: the IP header announces more payload than the frame carries.
    let mut short = good.frame();
    short.truncate(short.len() - 4);
    assert_dropped(&mut p, &short, Counter::PacketLenErr);
    // A corrupted IPv4 header (the stack has not checked it yet when XDP runs).
    let mut header = good.frame();
    header[14 + 4] ^= 1;
    assert_dropped(&mut p, &header, Counter::ChecksumErr);
    // IPv4 fragment carrying VRRP.
    let mut frag = good.frame();
    frag[14 + 6] = 0x20;
    assert_dropped(&mut p, &frag, Counter::PacketLenErr);
}

#[test]
fn own_adverts_are_not_counted_as_received() {
    ipf_testbed::skip_unless_root!();
    let mut p = TestProgram::load();
    p.configure(&spec(51, 3, Family::V4));
    let own = Advert::v3(51, 100, "192.0.2.2", &["192.0.2.100"]);
    assert_eq!(p.run(&own.frame()), XDP_PASS);
    assert_eq!(p.counter(Counter::OwnAdverts), 1);
    assert_eq!(p.counter(Counter::AdvertsRx), 0);
    assert_eq!(p.state(FAMILY_V4, 51).adverts_rx, 0);
    assert!(p.drain_events().is_empty());
}

#[test]
fn higher_priority_advert_while_master_raises_preempted_on_each_advert() {
    ipf_testbed::skip_unless_root!();
    let mut p = TestProgram::load();
    let mut s = spec(51, 3, Family::V4);
    s.master = true;
    p.configure(&s);
    let lower = Advert::v3(51, 50, "192.0.2.1", &["192.0.2.100"]);
    p.run(&lower.frame());
    p.run(&lower.frame());
    assert_eq!(
        p.drain_events().iter().map(|e| e.kind).collect::<Vec<_>>(),
        vec![event_kind::NEW_MASTER]
    );
    let higher = Advert::v3(51, 200, "192.0.2.1", &["192.0.2.100"]);
    p.run(&higher.frame());
    p.run(&higher.frame());
    let kinds: Vec<u32> = p.drain_events().iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        vec![
            event_kind::PRIORITY_CHANGE | event_kind::PREEMPTED,
            event_kind::PREEMPTED
        ]
    );
}

#[test]
fn foreign_claims_of_our_vips_raise_rate_limited_conflicts_while_master() {
    ipf_testbed::skip_unless_root!();
    let mut p = TestProgram::load();
    let mut v4 = spec(51, 3, Family::V4);
    let mut v6 = spec(52, 3, Family::V6);
    p.configure(&v4);
    p.configure(&v6);
    p.add_vip("192.0.2.100", 51);
    p.add_vip("2001:db8::100", 52);
    // As Backup: a foreign claim is the master's announcement, not a conflict.
    assert_eq!(p.run(&arp_frame(1, PEER_MAC, "192.0.2.100", "192.0.2.100")), XDP_PASS);
    assert!(p.drain_events().is_empty());
    assert_eq!(p.counter(Counter::VipConflicts), 0);
    v4.master = true;
    v6.master = true;
    p.configure(&v4);
    p.configure(&v6);
    // Our own gratuitous ARP: no conflict.
    assert_eq!(p.run(&arp_frame(1, OWN_MAC, "192.0.2.100", "192.0.2.100")), XDP_PASS);
    assert!(p.drain_events().is_empty());
    // Someone else's, twice in a row: one event (rate limit 1 s), traffic still passes.
    assert_eq!(p.run(&arp_frame(2, PEER_MAC, "192.0.2.100", "192.0.2.1")), XDP_PASS);
    assert_eq!(p.run(&arp_frame(1, PEER_MAC, "192.0.2.100", "192.0.2.100")), XDP_PASS);
    let events = p.drain_events();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].kind, event_kind::VIP_CONFLICT);
    assert_eq!(events[0].vrid, 51);
    assert_eq!(&events[0].addr[..4], &[192, 0, 2, 100]);
    assert_eq!(events[0].mac, PEER_MAC);
    // Claims of addresses that are not ours are ignored.
    p.run(&arp_frame(1, PEER_MAC, "192.0.2.7", "192.0.2.7"));
    assert!(p.drain_events().is_empty());
    // Unsolicited NA for our IPv6 VIP from a foreign MAC.
    assert_eq!(p.run(&na_frame(PEER_MAC, "fe80::1", "2001:db8::100")), XDP_PASS);
    let events = p.drain_events();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].family, FAMILY_V6);
    assert_eq!(events[0].vrid, 52);
    assert_eq!(p.counter(Counter::ArpRx), 5);
    assert_eq!(p.counter(Counter::NaRx), 1);
    assert_eq!(p.counter(Counter::VipConflicts), 2, "one event per VIP (rate limit)");
}

#[test]
fn the_master_that_preempts_us_is_no_conflict() {
    ipf_testbed::skip_unless_root!();
    let mut p = TestProgram::load();
    let mut v4 = spec(51, 3, Family::V4);
    v4.master = true;
    p.configure(&v4);
    p.add_vip("192.0.2.100", 51);
    // A higher-priority master's advert, then its gratuitous ARP from the same MAC, before the agent
    // has handled the preemption (MASTER still set).
    let higher = Advert::v3(51, 200, "192.0.2.1", &["192.0.2.100"]);
    p.run(&higher.frame());
    assert_eq!(p.state(FAMILY_V4, 51).master_mac, PEER_MAC);
    p.drain_events();
    assert_eq!(p.run(&arp_frame(1, PEER_MAC, "192.0.2.100", "192.0.2.100")), XDP_PASS);
    assert!(p.drain_events().is_empty());
    assert_eq!(p.counter(Counter::VipConflicts), 0);
    // A lower-priority master claiming the VIP is a split brain.
    let mut q = TestProgram::load();
    q.configure(&v4);
    q.add_vip("192.0.2.100", 51);
    q.run(&Advert::v3(51, 50, "192.0.2.1", &["192.0.2.100"]).frame());
    q.drain_events();
    q.run(&arp_frame(1, PEER_MAC, "192.0.2.100", "192.0.2.100"));
    assert_eq!(q.drain_events().len(), 1);
    assert_eq!(q.counter(Counter::VipConflicts), 1);
}
