//! `cargo xtask bench datapath`: cost of the XDP program per packet (BPF_PROG_TEST_RUN with repeat)
//! and ring-buffer events per 10,000 adverts. Prints figures; asserts nothing about speed. Each row's
//! verdict is checked first (the action, and the one counter the packet must move): a row timing a
//! path the packet did not take would be a wrong figure, so a wrong verdict is printed as an error
//! and the bench exits non-zero.
#![allow(clippy::unwrap_used, reason = "benchmark binary")]

use ipf_agent::datapath::{Family, VridSpec};
use ipf_common::Counter;
use ipf_tests::{
    frames::{Advert, arp_frame, ip_frame, udp_frame},
    xdp::{TestProgram, XDP_DROP, XDP_PASS, vrid_spec},
};

const REPEAT: u32 = 1_000_000;
const ROUNDS: usize = 5;

fn spec(vrid: u8, version: u8, family: Family) -> VridSpec {
    VridSpec {
        auth_pass: (version == 2).then(|| "secret".to_owned()),
        ..vrid_spec(vrid, version, family)
    }
}

/// What a row's packet must do: the XDP action, and the counter it moves by one (`None`: none).
#[derive(Clone, Copy)]
struct Verdict {
    action: u32,
    counter: Option<Counter>,
}

const PASS_UNCOUNTED: Verdict = Verdict {
    action: XDP_PASS,
    counter: None,
};

fn action_name(a: u32) -> String {
    match a {
        XDP_PASS => "PASS".to_owned(),
        XDP_DROP => "DROP".to_owned(),
        other => format!("action {other}"),
    }
}

/// Runs `frame` once and compares with `want`; the mismatch, if any. The adverts' state changes of
/// a first run are drained so the timed runs that follow are the steady state.
fn check(p: &mut TestProgram, frame: &[u8], want: &Verdict) -> Option<String> {
    let before = p.counters();
    let action = p.run(frame);
    let after = p.counters();
    p.drain_events();
    let moved: Vec<Counter> = Counter::ALL
        .iter()
        .copied()
        // Ring-buffer events follow the adverts' state, not the verdict.
        .filter(|c| !matches!(c, Counter::EventsSent | Counter::RingbufFull))
        .filter(|c| after[*c as usize] != before[*c as usize])
        .collect();
    let want_moved: Vec<Counter> = want.counter.into_iter().collect();
    (action != want.action || moved != want_moved).then(|| {
        let names = |v: &[Counter]| {
            if v.is_empty() {
                "no counter".to_owned()
            } else {
                v.iter().map(|c| c.name()).collect::<Vec<_>>().join(", ")
            }
        };
        format!(
            "{} counting {}, expected {} counting {}",
            action_name(action),
            names(&moved),
            action_name(want.action),
            names(&want_moved)
        )
    })
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

    let valid = Verdict {
        action: XDP_PASS,
        counter: Some(Counter::AdvertsRx),
    };
    let cases: Vec<(&str, Vec<u8>, Verdict)> = vec![
        (
            "pass-through IPv4 UDP (1400 B)",
            udp_frame("198.51.100.1", "198.51.100.2", 1400),
            PASS_UNCOUNTED,
        ),
        (
            "pass-through IPv4 UDP (64 B)",
            udp_frame("198.51.100.1", "198.51.100.2", 18),
            PASS_UNCOUNTED,
        ),
        ("pass-through IPv6 TCP", tcp6, PASS_UNCOUNTED),
        (
            "ARP, not one of our VIPs",
            arp_frame(1, [2, 0, 0, 0, 0, 9], "192.0.2.7", "192.0.2.8"),
            Verdict {
                action: XDP_PASS,
                counter: Some(Counter::ArpRx),
            },
        ),
        ("valid VRRPv2 advert, PASS auth", v2.frame(), valid),
        ("valid VRRPv3 IPv4 advert, 1 VIP", v3.frame(), valid),
        ("valid VRRPv3 IPv4 advert, 20 VIPs", v3_20.frame(), valid),
        ("valid VRRPv3 IPv6 advert", v6.frame(), valid),
        (
            "VRRPv3 advert, bad checksum (dropped)",
            bad_sum,
            Verdict {
                action: XDP_DROP,
                counter: Some(Counter::ChecksumErr),
            },
        ),
    ];
    println!("XDP program cost per packet (BPF_PROG_TEST_RUN, {REPEAT} repeats, best of {ROUNDS} rounds):");
    let mut errors = 0;
    for (name, frame, want) in &cases {
        let wrong = check(&mut p, frame, want);
        let (best, action) = (0..ROUNDS)
            .map(|_| p.run_repeat(frame, REPEAT))
            .map(|(action, ns)| (ns, action))
            .min()
            .unwrap();
        // Every timed run must have taken the checked path too.
        let wrong =
            wrong.or_else(|| (action != want.action).then(|| format!("timed runs returned {}", action_name(action))));
        match wrong {
            None => println!("  {name:<42} {best:>4} ns/packet  {}", action_name(want.action)),
            Some(why) => {
                errors += 1;
                println!("  {name:<42} {best:>4} ns/packet  ERROR: {why}");
            }
        }
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
    if errors > 0 {
        eprintln!("{errors} rows did not get the verdict they time");
        std::process::exit(1);
    }
}
