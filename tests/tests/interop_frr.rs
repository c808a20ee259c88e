//! ipf-agent against FRR's vrrpd (Debian package), and a three-node mixed cluster of ipf, keepalived
//! and FRR on one bridge, with a client that reaches the VIP. Needs root.
#![allow(clippy::unwrap_used, reason = "tests")]

use std::{net::IpAddr, time::Duration};

use ipf_testbed::{
    Frr, Keepalived, Netns, Proc, Switch, fetch_name, keepalived_conf, keepalived_instance, spawn_responder, wait_for,
};
use ipf_tests::{
    agent_bin,
    holders::{Holders, Step},
};

const T: Duration = Duration::from_secs(20);
const VIP: &str = "192.0.2.100";
const PORT: u16 = 8080;
/// Every node's advert interval.
const INTERVAL: Duration = Duration::from_millis(100);

struct Node {
    ns: Netns,
    _responder: Proc,
}

fn node(switch: &Switch, prefix: &str, addr: &str, port: &str) -> Node {
    let ns = Netns::new(prefix);
    switch.attach(&ns, "eth0", &[addr], port);
    let responder = spawn_responder(&ns, PORT, prefix);
    Node {
        ns,
        _responder: responder,
    }
}

fn agent(ns: &Netns, priority: u8) -> Proc {
    let mut cmd = ns.command(agent_bin());
    cmd.args([
        "run",
        "-i",
        "eth0",
        "--status-socket",
        "off",
        "--instance",
        &format!("name=VI_51,vrid=51,priority={priority},interval=100,vip={VIP}/24"),
    ]);
    Proc::spawn("ipf-agent", cmd)
}

/// Waits until `who` is the only holder (never two at once beyond `step` on the way, and alone for
/// the settle window) and the client reaches the VIP there.
fn wait_owner(client: &Netns, holders: &Holders, who: &str, step: Step) {
    holders.wait_owner(who, step);
    let vip: IpAddr = VIP.parse().unwrap();
    wait_for(&format!("the client to reach {VIP} on {who}"), T, || {
        fetch_name(client, vip, PORT).filter(|n| n.starts_with(who)).map(|_| ())
    });
}

#[test]
fn with_frr_vrrpv3() {
    ipf_testbed::skip_unless_root!();
    let switch = Switch::new("ipf-fs");
    let ipf = node(&switch, "ipf-fi", "192.0.2.1/24", "p1");
    let frr_node = node(&switch, "ipf-ff", "192.0.2.3/24", "p3");
    let client = Netns::new("ipf-fc");
    switch.attach(&client, "eth0", &["192.0.2.50/24"], "pc");
    let frr = Frr::start(&frr_node.ns, "eth0", 51, 150, 100, &format!("{VIP}/24"));
    // FRR holds the VIP on its macvlan while that is not protodown.
    let holders = Holders::start(
        VIP,
        &[
            ("ipf-fi", &ipf.ns, "eth0"),
            ("ipf-ff", &frr_node.ns, frr.macvlan.as_str()),
        ],
    );
    // The macvlan carries the VIP from its creation until vrrpd's Initialize sets it protodown.
    wait_for("FRR's first election", T, || (frr.became_master() >= 1).then_some(()));
    wait_owner(&client, &holders, "ipf-ff", Step::at(INTERVAL));

    // ipf with a higher priority preempts; FRR goes Backup (protodown).
    let a = agent(&ipf.ns, 200);
    wait_owner(&client, &holders, "ipf-fi", Step::at(INTERVAL));
    // SIGKILL: FRR takes over; the dead agent's VIP lease runs out.
    drop(a);
    wait_owner(&client, &holders, "ipf-ff", Step::after_kill(INTERVAL));
    // Back and preempting, then a graceful stop.
    let mut a = agent(&ipf.ns, 200);
    wait_owner(&client, &holders, "ipf-fi", Step::at(INTERVAL));
    a.signal(libc::SIGTERM);
    assert!(a.wait_exit(Duration::from_secs(1)).success());
    wait_owner(&client, &holders, "ipf-ff", Step::at(INTERVAL));
    // ipf with a lower priority stays Backup.
    let a = agent(&ipf.ns, 100);
    wait_for("ipf to enter BACKUP", T, || {
        a.stderr_lines()
            .iter()
            .any(|l| l.contains("(VI_51) Entering BACKUP STATE"))
            .then_some(())
    });
    wait_owner(&client, &holders, "ipf-ff", Step::joining(INTERVAL));
    drop(a);
    drop(frr);
}

#[test]
fn three_node_mixed_cluster_ipf_keepalived_frr() {
    ipf_testbed::skip_unless_root!();
    let switch = Switch::new("ipf-ms");
    let ipf = node(&switch, "ipf-mi", "192.0.2.1/24", "p1");
    let ka_node = node(&switch, "ipf-mk", "192.0.2.2/24", "p2");
    let frr_node = node(&switch, "ipf-mf", "192.0.2.3/24", "p3");
    let client = Netns::new("ipf-mc");
    switch.attach(&client, "eth0", &["192.0.2.50/24"], "pc");
    let conf = keepalived_conf(
        3,
        &[keepalived_instance(
            "VI_51",
            51,
            150,
            "0.1",
            "",
            &[&format!("{VIP}/24")],
        )],
    );
    let frr = Frr::start(&frr_node.ns, "eth0", 51, 100, 100, &format!("{VIP}/24"));
    let mut ka = Some(Keepalived::start(&ka_node.ns, &conf));
    let a = agent(&ipf.ns, 200);
    let holders = Holders::start(
        VIP,
        &[
            ("ipf-mi", &ipf.ns, "eth0"),
            ("ipf-mk", &ka_node.ns, "eth0"),
            ("ipf-mf", &frr_node.ns, frr.macvlan.as_str()),
        ],
    );
    // The highest priority (ipf, 200) wins among three implementations.
    wait_owner(&client, &holders, "ipf-mi", Step::at(INTERVAL));
    // ipf killed: keepalived (150) takes over, FRR (100) stays Backup.
    drop(a);
    wait_owner(&client, &holders, "ipf-mk", Step::after_kill(INTERVAL));
    // keepalived stopped: FRR takes over.
    if let Some(mut k) = ka.take() {
        k.stop();
    }
    wait_owner(&client, &holders, "ipf-mf", Step::at(INTERVAL));
    // ipf back: it preempts FRR.
    let _a = agent(&ipf.ns, 200);
    wait_owner(&client, &holders, "ipf-mi", Step::at(INTERVAL));
}
