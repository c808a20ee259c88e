//! Gratuitous ARP and unsolicited NA on the wire: a new Master sends `garp_master_repeat` of them at once, as many again
//! `garp_master_delay` later, and one every `garp_master_refresh` counted from the takeover (as
//! keepalived counts it), from keepalived.conf and from the `--garp-*` flags. Needs root.
#![allow(clippy::unwrap_used, reason = "tests")]

use std::time::Duration;

use ipf_testbed::{Netns, Proc, TempDir, wait_for};
use ipf_tests::{
    agent_bin,
    node::nodes_on_a_bridge,
    trace::{Capture, Ns, Seen, mac_of, ms, now_ns},
};

const T: Duration = Duration::from_secs(20);
/// How far a burst may be from its due time: timers and a loaded machine, far below the 1 s steps
/// that tell one schedule from another.
const SLACK_MS: f64 = 200.0;
/// Packets of one burst leave back to back; bursts are at least a second apart.
const BURST_GAP_MS: f64 = 300.0;

fn agent(ns: &Netns, args: &[&str]) -> Proc {
    let mut cmd = ns.command(agent_bin());
    cmd.args(["run", "--status-socket", "off", "--metrics-addr", "off"])
        .args(args);
    Proc::spawn("ipf-agent", cmd)
}

/// Times of the gratuitous ARPs (sender and target address the VIP: not the conflict probes, which
/// come from 0.0.0.0) or unsolicited neighbour advertisements for `vip` from `mac`.
fn garps(cap: &Capture, vip: &str, mac: [u8; 6]) -> Vec<Ns> {
    cap.between(0, now_ns())
        .iter()
        .filter(|f| match f.seen {
            Seen::Arp { sha, spa, tpa, .. } => sha == mac && spa == tpa && spa.to_string() == vip,
            Seen::Na { target } => f.src_mac == mac && target.to_string() == vip,
            Seen::Vrrp { .. } => false,
        })
        .map(|f| f.at)
        .collect()
}

/// (ms after the first, packets) of each burst in the first `horizon_ms` after the first packet.
fn bursts(cap: &Capture, vip: &str, mac: [u8; 6], horizon_ms: f64) -> Vec<(f64, usize)> {
    let first = wait_for(&format!("the first gratuitous ARP for {vip}"), T, || {
        garps(cap, vip, mac).first().copied()
    });
    wait_for("the observation window to pass", T, || {
        (ms(first, now_ns()) > horizon_ms).then_some(())
    });
    let mut out: Vec<(f64, usize, Ns)> = Vec::new();
    for at in garps(cap, vip, mac) {
        let off = ms(first, at);
        if off > horizon_ms {
            break;
        }
        match out.last_mut() {
            Some((_, n, last)) if ms(*last, at) < BURST_GAP_MS => {
                *n += 1;
                *last = at;
            }
            _ => out.push((off, 1, at)),
        }
    }
    out.into_iter().map(|(off, n, _)| (off, n)).collect()
}

fn assert_schedule(what: &str, seen: &[(f64, usize)], expected: &[(f64, usize)]) {
    let ok = seen.len() == expected.len()
        && seen
            .iter()
            .zip(expected)
            .all(|((t, n), (et, en))| n == en && (t - et).abs() < SLACK_MS);
    assert!(
        ok,
        "{what}: bursts (ms after the first, packets) {seen:.0?}, expected {expected:?} (± {SLACK_MS} ms)"
    );
}

#[test]
fn garp_repeat_delay_and_refresh_on_the_wire() {
    ipf_testbed::skip_unless_root!();
    let (_switch, nodes) = nodes_on_a_bridge("ga", 3);
    let (a_ns, b_ns) = (&nodes[0], &nodes[1]);
    let cap = Capture::start(&nodes[2], "eth0");
    let dir = TempDir::new("ipf-garp");
    // A: keepalived.conf, 3 per burst, second burst at 1 s, refresh every 2 s from the takeover.
    let conf = dir.path().join("keepalived.conf");
    std::fs::write(
        &conf,
        "global_defs {\n  vrrp_version 3\n}\nvrrp_instance VI_51 {\n  interface eth0\n  virtual_router_id 51\n  priority 150\n  advert_int 0.1\n  garp_master_repeat 3\n  garp_master_delay 1\n  garp_master_refresh 2\n  virtual_ipaddress {\n    192.0.2.100/24\n  }\n}\n",
    )
    .unwrap();
    let _a = agent(a_ns, &["--config", conf.to_str().unwrap()]);
    // B: the flags, 2 per burst, second burst at 2 s, refresh every 3 s; its own VRID, so both
    // are Master at once.
    let _b = agent(
        b_ns,
        &[
            "-i",
            "eth0",
            "--garp-repeat",
            "2",
            "--garp-delay-secs",
            "2",
            "--garp-refresh-secs",
            "3",
            "--instance",
            "name=VI_52,vrid=52,priority=150,interval=100,vip=192.0.2.200/24",
            "--instance",
            "name=VI_53,vrid=53,priority=150,interval=100,vip=2001:db8::200/64",
        ],
    );
    let horizon = 4_600.0;
    // A: 0 s ×3, 1 s ×3 (delay), 2 s and 4 s ×1 (refresh). Refresh counted from the second burst
    // would give 3 s; keepalived's default repeat 5 and delay 5 s would give 5 packets and no
    // second burst in the window.
    let a_bursts = bursts(&cap, "192.0.2.100", mac_of(a_ns, "eth0"), horizon);
    assert_schedule(
        "A (keepalived.conf)",
        &a_bursts,
        &[(0.0, 3), (1000.0, 3), (2000.0, 1), (4000.0, 1)],
    );
    // B: 0 s ×2, 2 s ×2 (delay), 3 s ×1 (refresh), gratuitous ARP and unsolicited NA alike.
    let b_mac = mac_of(b_ns, "eth0");
    for vip in ["192.0.2.200", "2001:db8::200"] {
        let b_bursts = bursts(&cap, vip, b_mac, horizon);
        assert_schedule(
            &format!("B (--garp-* flags), {vip}"),
            &b_bursts,
            &[(0.0, 2), (2000.0, 2), (3000.0, 1)],
        );
    }
}
