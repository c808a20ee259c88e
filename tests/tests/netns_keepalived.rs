//! The datapath attached to a veth in a network namespace, fed by a real keepalived (Debian package)
//! in another: VRRPv2 and VRRPv3, multicast and unicast, IPv4 and IPv6. Needs root.
#![allow(clippy::unwrap_used, reason = "tests")]

use std::time::Duration;

use ipf_testbed::{
    Keepalived, Netns, Proc, Switch, keepalived_conf, keepalived_instance, spawn_monitor, veth, wait_for,
};
use ipf_tests::agent_bin;
use serde_json::Value;

const T: Duration = Duration::from_secs(20);

struct Lab {
    // Field order: processes die before their namespaces go.
    peer: Netns,
    node: Netns,
}

fn lab() -> Lab {
    let peer = Netns::new("ipf-kp");
    let node = Netns::new("ipf-kn");
    veth(
        &peer,
        "eth0",
        &["192.0.2.1/24", "192.0.2.9/24"],
        &node,
        "eth0",
        &["192.0.2.2/24"],
    );
    Lab { peer, node }
}

fn events(p: &Proc, vrid: u64) -> Vec<Value> {
    p.json_lines()
        .into_iter()
        .filter(|v| v["type"] == "event" && v["event"]["vrid"] == vrid)
        .map(|v| v["event"].clone())
        .collect()
}

fn last_report(p: &Proc) -> Option<Value> {
    p.json_lines().into_iter().rev().find(|v| v["type"] == "report")
}

fn vrid_state(report: &Value, vrid: u64, family: &str) -> Value {
    report["vrids"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["vrid"] == vrid && s["family"] == family)
        .cloned()
        .unwrap_or(Value::Null)
}

/// Waits until the datapath has counted at least `n` adverts for the VRID; returns that report.
fn wait_adverts(p: &Proc, vrid: u64, family: &str, n: u64) -> Value {
    wait_for(&format!("{n} adverts for vrid {vrid}"), T, || {
        let r = last_report(p)?;
        (vrid_state(&r, vrid, family)["adverts_rx"].as_u64()? >= n).then_some(r)
    })
}

fn wait_ready(p: &Proc) -> Value {
    wait_for("the datapath to start", T, || {
        p.json_lines().into_iter().find(|v| v["type"] == "ready")
    })
}

fn counter(report: &Value, name: &str) -> u64 {
    report["counters"][name].as_u64().unwrap()
}

#[test]
fn keepalived_v2_then_v3_multicast_one_event_per_change() {
    ipf_testbed::skip_unless_root!();
    let lab = lab();
    let mon = spawn_monitor(
        &lab.node,
        &agent_bin(),
        &[
            "-i",
            "eth0",
            "--vrid",
            "51,version=2,interval=1000,pass=ipfpass",
            "--vrid",
            "52,version=3,interval=50",
            "--vrid",
            "53,version=3,family=ipv6,interval=50",
            "--report-interval-ms",
            "100",
        ],
    );
    let ready = wait_ready(&mon);
    assert_eq!(
        ready["datapath"]["mode"], "xdp_driver",
        "veth supports native XDP: {ready}"
    );

    // VRRPv2 with PASS authentication, 1 s adverts.
    let auth = "  authentication {\n    auth_type PASS\n    auth_pass ipfpass\n  }";
    let v2 = keepalived_instance("V2", 51, 150, "1", auth, &["192.0.2.100/24"]);
    let mut ka = Keepalived::start(&lab.peer, &keepalived_conf(2, &[v2]));
    let r = wait_adverts(&mon, 51, "ipv4", 4);
    let st = vrid_state(&r, 51, "ipv4");
    assert_eq!(st["master_addr"], "192.0.2.1");
    assert_eq!(st["master_priority"], 150);
    assert_eq!(st["adver_int_ms"], 1000);
    let ev = events(&mon, 51);
    assert_eq!(ev.len(), 1, "one event for {} adverts: {ev:?}", st["adverts_rx"]);
    assert_eq!(ev[0]["kinds"], serde_json::json!(["new_master"]));
    assert_eq!(ev[0]["priority"], 150);

    // A priority change is one event, however many adverts follow.
    ka.reload(&keepalived_conf(
        2,
        &[keepalived_instance("V2", 51, 120, "1", auth, &["192.0.2.100/24"])],
    ));
    wait_for("the priority change event", T, || {
        events(&mon, 51).iter().any(|e| e["priority"] == 120).then_some(())
    });
    let seen = vrid_state(&last_report(&mon).unwrap(), 51, "ipv4")["adverts_rx"]
        .as_u64()
        .unwrap();
    wait_adverts(&mon, 51, "ipv4", seen + 3);
    let ev = events(&mon, 51);
    assert_eq!(ev.len(), 2, "{ev:?}");
    assert_eq!(ev[1]["kinds"], serde_json::json!(["priority_change"]));

    // A wrong password is dropped and counted, and raises nothing.
    let bad = "  authentication {\n    auth_type PASS\n    auth_pass wrong\n  }";
    ka.reload(&keepalived_conf(
        2,
        &[keepalived_instance("V2", 51, 120, "1", bad, &["192.0.2.100/24"])],
    ));
    wait_for("auth_failure to be counted", T, || {
        (counter(&last_report(&mon)?, "auth_failure") >= 2).then_some(())
    });
    assert_eq!(events(&mon, 51).len(), 2);

    // VRRPv3, IPv4 and IPv6, 50 ms adverts.
    let v3 = [
        keepalived_instance("V3", 52, 200, "0.05", "", &["192.0.2.101/24"]),
        keepalived_instance("V3_6", 53, 210, "0.05", "", &["2001:db8::101/64"]),
    ];
    ka.reload(&keepalived_conf(3, &v3));
    let r = wait_adverts(&mon, 52, "ipv4", 60);
    let r6 = wait_adverts(&mon, 53, "ipv6", 60);
    let st = vrid_state(&r, 52, "ipv4");
    assert_eq!(st["master_priority"], 200);
    assert_eq!(st["adver_int_ms"], 50);
    let st6 = vrid_state(&r6, 53, "ipv6");
    assert_eq!(st6["master_priority"], 210);
    assert!(st6["master_addr"].as_str().unwrap().starts_with("fe80::"), "{st6}");
    assert_eq!(events(&mon, 52).len(), 1, "{:?}", events(&mon, 52));
    assert_eq!(events(&mon, 53).len(), 1, "{:?}", events(&mon, 53));
    for c in [
        "checksum_err",
        "version_err",
        "packet_len_err",
        "ip_ttl_err",
        "ringbuf_full",
    ] {
        assert_eq!(counter(&r6, c), 0, "{c}: {r6}");
    }

    // A graceful stop sends priority 0: one more event per VRID.
    ka.stop();
    wait_for("priority 0 events", T, || {
        (events(&mon, 52).iter().any(|e| e["priority"] == 0) && events(&mon, 53).iter().any(|e| e["priority"] == 0))
            .then_some(())
    });
}

#[test]
fn keepalived_v3_unicast_only_from_configured_peers() {
    ipf_testbed::skip_unless_root!();
    let lab = lab();
    let mon = spawn_monitor(
        &lab.node,
        &agent_bin(),
        &[
            "-i",
            "eth0",
            "--vrid",
            "61,interval=50,peer=192.0.2.1",
            "--report-interval-ms",
            "100",
        ],
    );
    wait_ready(&mon);
    let unicast = |src: &str| format!("  unicast_src_ip {src}\n  unicast_peer {{\n    192.0.2.2\n  }}");
    let _ka = Keepalived::start(
        &lab.peer,
        &keepalived_conf(
            3,
            &[keepalived_instance(
                "U",
                61,
                150,
                "0.05",
                &unicast("192.0.2.1"),
                &["192.0.2.110/24"],
            )],
        ),
    );
    let r = wait_adverts(&mon, 61, "ipv4", 40);
    assert_eq!(vrid_state(&r, 61, "ipv4")["master_addr"], "192.0.2.1");
    assert_eq!(events(&mon, 61).len(), 1);
    assert_eq!(counter(&r, "peer_unknown"), 0);

    // A second speaker for the same VRID from an address that is not a configured peer.
    let _stranger = Keepalived::start(
        &lab.peer,
        &keepalived_conf(
            3,
            &[keepalived_instance(
                "U",
                61,
                250,
                "0.05",
                &unicast("192.0.2.9"),
                &["192.0.2.111/24"],
            )],
        ),
    );
    wait_for("peer_unknown drops", T, || {
        (counter(&last_report(&mon)?, "peer_unknown") >= 20).then_some(())
    });
    let r = last_report(&mon).unwrap();
    assert_eq!(
        vrid_state(&r, 61, "ipv4")["master_addr"],
        "192.0.2.1",
        "the stranger never became master in the map"
    );
    assert_eq!(events(&mon, 61).len(), 1);
}

/// The events of `p` without their timestamps, in order: what a path reports for the traffic.
fn event_sequence(p: &Proc) -> Vec<Value> {
    p.json_lines()
        .into_iter()
        .filter(|v| v["type"] == "event")
        .map(|v| {
            let mut e = v["event"].clone();
            e.as_object_mut().unwrap().remove("timestamp_ns");
            e
        })
        .collect()
}

/// Two nodes on one bridge hear the same keepalived: one runs the XDP program, the other the
/// raw-socket path. Every change (new masters for IPv4 and IPv6, a priority and an interval change,
/// the priority-0 release, the return after silence) must give both the same event sequence.
#[test]
fn raw_socket_path_reports_the_same_events_as_xdp() {
    ipf_testbed::skip_unless_root!();
    let switch = Switch::new("ipf-kes");
    let peer = Netns::new("ipf-kep");
    let xdp_node = Netns::new("ipf-kex");
    let raw_node = Netns::new("ipf-ker");
    switch.attach(&peer, "eth0", &["192.0.2.1/24"], "pp");
    switch.attach(&xdp_node, "eth0", &["192.0.2.2/24"], "px");
    switch.attach(&raw_node, "eth0", &["192.0.2.3/24"], "pr");
    // 100 ms adverts: "after silence" is three intervals without one, measured by each path's own
    // clock; at 100 ms a loaded machine's scheduling does not reach it by accident.
    let monitor = |ns: &Netns, mode: &str| {
        spawn_monitor(
            ns,
            &agent_bin(),
            &[
                "-i",
                "eth0",
                "--xdp-mode",
                mode,
                "--vrid",
                "52,interval=100",
                "--vrid",
                "53,family=ipv6,interval=100",
                "--report-interval-ms",
                "100",
            ],
        )
    };
    let xdp = monitor(&xdp_node, "driver");
    let raw = monitor(&raw_node, "off");
    assert_eq!(wait_ready(&xdp)["datapath"]["mode"], "xdp_driver");
    assert_eq!(wait_ready(&raw)["datapath"]["mode"], "raw_socket");
    assert!(!raw_node.has_xdp("eth0"));

    let conf = |priority: u8, interval: &str| {
        keepalived_conf(
            3,
            &[
                keepalived_instance("V3", 52, priority, interval, "", &["192.0.2.101/24"]),
                keepalived_instance("V3_6", 53, 210, "0.1", "", &["2001:db8::101/64"]),
            ],
        )
    };
    // Both paths have counted `n` more adverts per VRID than at `before` (a report each).
    let both_counted = |n: u64| {
        let seen = |p: &Proc, vrid: u64, family: &str| {
            last_report(p).map_or(0, |r| vrid_state(&r, vrid, family)["adverts_rx"].as_u64().unwrap_or(0))
        };
        let base: Vec<u64> = [&xdp, &raw]
            .iter()
            .flat_map(|p| [seen(p, 52, "ipv4"), seen(p, 53, "ipv6")])
            .collect();
        wait_for(&format!("{n} more adverts on both paths"), T, || {
            let now: Vec<u64> = [&xdp, &raw]
                .iter()
                .flat_map(|p| [seen(p, 52, "ipv4"), seen(p, 53, "ipv6")])
                .collect();
            now.iter().zip(&base).all(|(a, b)| *a >= b + n).then_some(())
        });
    };
    let mut ka = Keepalived::start(&peer, &conf(200, "0.1"));
    both_counted(10);
    ka.reload(&conf(120, "0.2"));
    wait_for("the priority and interval change on both paths", T, || {
        [&xdp, &raw]
            .iter()
            .all(|p| {
                events(p, 52)
                    .iter()
                    .any(|e| e["priority"] == 120 && e["adver_int_ms"] == 200)
            })
            .then_some(())
    });
    both_counted(5);
    ka.stop();
    wait_for("priority 0 on both paths", T, || {
        [&xdp, &raw]
            .iter()
            .all(|p| {
                events(p, 52).iter().any(|e| e["priority"] == 0) && events(p, 53).iter().any(|e| e["priority"] == 0)
            })
            .then_some(())
    });
    let _ka = Keepalived::start(&peer, &conf(120, "0.2"));
    both_counted(5);

    let (x, r) = (event_sequence(&xdp), event_sequence(&raw));
    let kinds: Vec<(&Value, &Value, &Value)> = x.iter().map(|e| (&e["vrid"], &e["kinds"], &e["priority"])).collect();
    println!(
        "{} events on the XDP path, {} on the raw-socket path: {kinds:?}",
        x.len(),
        r.len()
    );
    for kind in ["new_master", "priority_change", "interval_change", "after_silence"] {
        assert!(
            x.iter()
                .any(|e| e["kinds"].as_array().unwrap().iter().any(|k| k == kind)),
            "the traffic gives a {kind} event: {kinds:?}"
        );
    }
    // Per VRID: the two VRIDs' adverts leave keepalived microseconds apart, and which of two such
    // events the ring buffer or the socket hands over first says nothing about the paths.
    for vrid in [52, 53] {
        let of = |s: &[Value]| s.iter().filter(|e| e["vrid"] == vrid).cloned().collect::<Vec<_>>();
        assert_eq!(
            of(&x),
            of(&r),
            "VRID {vrid}: the XDP path's events (left) and the raw-socket path's (right)"
        );
    }
    // Every advert the raw path counted passed the same validation: nothing dropped on either.
    for p in [&xdp, &raw] {
        let rep = last_report(p).unwrap();
        for c in [
            "checksum_err",
            "version_err",
            "packet_len_err",
            "ip_ttl_err",
            "ringbuf_full",
        ] {
            assert_eq!(counter(&rep, c), 0, "{c}: {rep}");
        }
    }
}

#[test]
fn no_xdp_program_stays_attached_after_sigkill_or_sigterm() {
    ipf_testbed::skip_unless_root!();
    let lab = lab();
    for signal in [libc::SIGKILL, libc::SIGTERM] {
        let mut mon = spawn_monitor(&lab.node, &agent_bin(), &["-i", "eth0", "--vrid", "51"]);
        wait_ready(&mon);
        assert!(lab.node.has_xdp("eth0"), "attached while the agent runs");
        mon.signal(signal);
        let status = mon.wait_exit(T);
        if signal == libc::SIGTERM {
            assert!(status.success(), "graceful exit: {status:?}");
        }
        wait_for("the XDP program to be detached", T, || {
            (!lab.node.has_xdp("eth0")).then_some(())
        });
    }
}
