//! `cargo xtask bench datapath`: cost of the XDP program per packet (BPF_PROG_TEST_RUN with repeat)
//! and ring-buffer events per 10,000 adverts. Prints figures; asserts nothing about speed.
#![allow(clippy::unwrap_used, reason = "benchmark binary")]

use ipf_agent::datapath::{Family, VridSpec};
use ipf_common::Counter;
use ipf_tests::{
    frames::{Advert, arp_frame, ip_frame, udp_frame},
    xdp::{TestProgram, vrid_spec},
};

const REPEAT: u32 = 1_000_000;
const ROUNDS: usize = 5;

fn spec(vrid: u8, version: u8, family: Family) -> VridSpec {
    VridSpec {
        auth_pass: (version == 2).then(|| "secret".to_owned()),
        ..vrid_spec(vrid, version, family)
    }
}

fn main() {
    let mut p = TestProgram::load();
    p.configure(&spec(51, 3, Family::V4));
    p.configure(&spec(52, 2, Family::V4));
    p.configure(&spec(53, 3, Family::V6));
    p.add_vip("192.0.2.100", 51);

    let mut v2 = Advert::v2(52, 100, "192.0.2.1", &["192.0.2.100"]);
    v2.auth_pass = Some(*b"secret\0\0");
    let v3 = Advert::v3(51, 100, "192.0.2.1", &["192.0.2.100"]);
    let v3_20 = Advert::v3(
        51,
        100,
        "192.0.2.1",
        &(0..20)
            .map(|i| format!("192.0.2.{}", 100 + i))
            .collect::<Vec<_>>()
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    let v6 = Advert::v3(53, 100, "fe80::1", &["2001:db8::100"]);
    let mut bad_sum = v3.frame();
    let last = bad_sum.len() - 1;
    bad_sum[last] ^= 0xff;
    let tcp6 = ip_frame(
        &"2001:db8::1".parse().unwrap(),
        &"2001:db8::2".parse().unwrap(),
        6,
        64,
        &[0u8; 40],
    );

    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "pass-through IPv4 UDP (1400 B)",
            udp_frame("198.51.100.1", "198.51.100.2", 1400),
        ),
        (
            "pass-through IPv4 UDP (64 B)",
            udp_frame("198.51.100.1", "198.51.100.2", 18),
        ),
        ("pass-through IPv6 TCP", tcp6),
        (
            "ARP, not one of our VIPs",
            arp_frame(1, [2, 0, 0, 0, 0, 9], "192.0.2.7", "192.0.2.8"),
        ),
        ("valid VRRPv2 advert, PASS auth", v2.frame()),
        ("valid VRRPv3 IPv4 advert, 1 VIP", v3.frame()),
        ("valid VRRPv3 IPv4 advert, 20 VIPs", v3_20.frame()),
        ("valid VRRPv3 IPv6 advert", v6.frame()),
        ("VRRPv3 advert, bad checksum (dropped)", bad_sum),
    ];
    println!("XDP program cost per packet (BPF_PROG_TEST_RUN, {REPEAT} repeats, best of {ROUNDS} rounds):");
    for (name, frame) in &cases {
        let best = (0..ROUNDS).map(|_| p.run_repeat(frame, REPEAT).1).min().unwrap();
        println!("  {name:<42} {best:>4} ns/packet");
    }
    p.drain_events();

    println!("ring-buffer events per 10,000 adverts:");
    let mut adv = Advert::v3(51, 150, "192.0.2.9", &["192.0.2.100"]);
    let batch = |p: &mut TestProgram, adv: &Advert, label: &str| {
        let before = p.counter(Counter::EventsSent);
        p.run_repeat(&adv.frame(), 10_000);
        let events = p.counter(Counter::EventsSent) - before;
        let drained = p.drain_events().len();
        println!("  {label:<42} {events:>4} events ({drained} read from the ring buffer)");
    };
    batch(&mut p, &adv, "first 10,000 (new master)");
    batch(&mut p, &adv, "next 10,000, steady state");
    batch(&mut p, &adv, "next 10,000, steady state");
    adv.priority = 120;
    batch(&mut p, &adv, "10,000 after a priority change");
    adv.adver_int_cs = 50;
    batch(&mut p, &adv, "10,000 after an interval change");
    adv.src = "192.0.2.10".parse().unwrap();
    batch(&mut p, &adv, "10,000 from another master");
    println!(
        "  ring-buffer reservation failures: {}",
        p.counter(Counter::RingbufFull)
    );
}
