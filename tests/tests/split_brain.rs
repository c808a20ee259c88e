//! Split brain (issue 10) with real agents in network namespaces: two or three ipf nodes and a client
//! on a bridge, VRRP adverts at 1 s as the ipfailover image sends them.
//!
//! - VRRP dropped on the bridge (a bridge-family nft rule in the switch's namespace: the nodes' XDP
//!   programs see packets before their own netfilter, so the block has to be on the path): both
//!   nodes become MASTER and each reports the conflict within a second of the second one appearing
//!   (log line, `status --json`, the `ipf_vip_conflict` gauge). After the block lifts, one master
//!   remains and the client reaches it within a second; each side logs the end of the episode.
//! - Twenty failovers in a healthy three-node cluster (SIGKILL, graceful stop, restart and preemption)
//!   count no conflict on any node.
//! - SIGKILL of a master at 1 s adverts: the VIP lease is gone before the backup takes over, so the
//!   VIP is never on two nodes.
//!
//! - IPv6: the same detection with DAD probes and unsolicited NAs.
//! - `--split-brain-policy yield` with VRRP blocked: the lower MAC yields, one node serves for as
//!   long as the partition lasts, and the yielder takes the VIP back when the holder dies.
//! - DNS peers: a real dnsmasq in its own namespace on the bridge answers a name for both nodes; with
//!   multicast VRRP blocked and learning off they keep one master, and records removed and added
//!   while running change the unicast destinations in place (no instance restart).
//!
//! Needs root (skipped with a message otherwise).
#![allow(clippy::unwrap_used, reason = "tests")]

use std::{
    net::IpAddr,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use ipf_testbed::{Dnsmasq, Netns, Proc, Switch, TempDir, addresses, fetch_name, http_get, spawn_responder, wait_for};
use ipf_tests::agent_bin;
use serde_json::Value;

const T: Duration = Duration::from_secs(20);
const VIP: &str = "192.0.2.100";
const PORT: u16 = 8080;

fn vip() -> IpAddr {
    VIP.parse().unwrap()
}

/// An agent on `eth0` with one VRRPv3 instance (VRID 51, 1 s adverts) holding the VIP.
fn agent(ns: &Netns, priority: u8, socket: &Path, extra: &[&str]) -> Proc {
    let mut cmd = ns.command(agent_bin());
    cmd.args(["run", "-i", "eth0", "--status-socket"]).arg(socket);
    cmd.args([
        "--instance",
        &format!("name=VI_1,vrid=51,priority={priority},version=3,interval=1000,vip={VIP}/24"),
    ]);
    cmd.args(extra);
    Proc::spawn("ipf-agent", cmd)
}

/// The one instance of `ipf-agent status --json`, or Null while the agent is not answering.
fn status(ns: &Netns, socket: &Path) -> Value {
    ipf_tests::agent_status(ns, socket)
        .into_iter()
        .next()
        .unwrap_or(Value::Null)
}

fn state(ns: &Netns, socket: &Path) -> String {
    status(ns, socket)["state"].as_str().unwrap_or_default().to_owned()
}

fn mac(ns: &Netns) -> String {
    ns.exec("cat", &["/sys/class/net/eth0/address"]).trim().to_owned()
}

fn holds(ns: &Netns) -> bool {
    addresses(ns, "eth0").iter().any(|a| a == VIP)
}

/// The sum of a metric's series on the agent in `ns` (None while /metrics does not answer).
fn metric(ns: &Netns, name: &str) -> Option<f64> {
    let (200, body) = http_get(ns, "127.0.0.1".parse().unwrap(), 9477, "/metrics")? else {
        return None;
    };
    Some(
        body.lines()
            .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum(),
    )
}

fn count(p: &Proc, needle: &str) -> usize {
    p.stderr_lines().iter().filter(|l| l.contains(needle)).count()
}

/// Drops VRRP (IP protocol 112) forwarded by the bridge.
fn block_vrrp(switch: &Switch) {
    let s = &switch.ns;
    s.exec("nft", &["add", "table", "bridge", "ipf_split"]);
    s.exec(
        "nft",
        &["add chain bridge ipf_split forward { type filter hook forward priority 0 ; }"],
    );
    s.exec("nft", &["add rule bridge ipf_split forward ip protocol 112 drop"]);
    s.exec("nft", &["add rule bridge ipf_split forward ip6 nexthdr 112 drop"]);
}

fn unblock_vrrp(switch: &Switch) {
    switch.ns.exec("nft", &["delete", "table", "bridge", "ipf_split"]);
}

struct Lab {
    switch: Switch,
    nodes: Vec<Netns>,
    client: Netns,
    _http: Vec<Proc>,
    dir: TempDir,
}

impl Lab {
    /// `n` nodes at 192.0.2.1.. with a responder each, and a client at 192.0.2.10.
    fn new(tag: &str, n: usize) -> Lab {
        let switch = Switch::new(&format!("ipf-{tag}s"));
        let mut nodes = Vec::new();
        let mut http = Vec::new();
        for i in 0..n {
            let ns = Netns::new(&format!("ipf-{tag}{i}"));
            switch.attach(&ns, "eth0", &[&format!("192.0.2.{}/24", i + 1)], &format!("p{i}"));
            http.push(spawn_responder(&ns, PORT, &format!("n{i}")));
            nodes.push(ns);
        }
        let client = Netns::new(&format!("ipf-{tag}c"));
        switch.attach(&client, "eth0", &["192.0.2.10/24"], "pc");
        Lab {
            switch,
            nodes,
            client,
            _http: http,
            dir: TempDir::new(&format!("ipf-{tag}")),
        }
    }

    fn socket(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("n{i}.sock"))
    }

    fn start(&self, i: usize, priority: u8, extra: &[&str]) -> Proc {
        agent(&self.nodes[i], priority, &self.socket(i), extra)
    }

    fn state(&self, i: usize) -> String {
        state(&self.nodes[i], &self.socket(i))
    }

    fn serves(&self) -> Option<String> {
        fetch_name(&self.client, vip(), PORT)
    }
}

#[test]
fn multicast_blocked_both_masters_report_within_a_second_and_the_split_heals_within_a_second() {
    ipf_testbed::skip_unless_root!();
    let lab = Lab::new("sb", 2);
    let (a, b) = (lab.start(0, 150, &[]), lab.start(1, 100, &[]));
    wait_for("n0 master, n1 backup", T, || {
        (lab.state(0) == "MASTER" && lab.state(1) == "BACKUP").then_some(())
    });
    wait_for("the client to reach n0", T, || {
        (lab.serves().as_deref() == Some("n0")).then_some(())
    });
    let (mac_a, mac_b) = (mac(&lab.nodes[0]), mac(&lab.nodes[1]));

    block_vrrp(&lab.switch);
    wait_for("n1 to become master too", T, || {
        (lab.state(1) == "MASTER").then_some(())
    });
    let b_master_since = status(&lab.nodes[1], &lab.socket(1))["last_transition"]
        .as_f64()
        .unwrap();
    // Both report it, in status, naming the other node's MAC.
    let conflict = |i: usize| {
        let s = status(&lab.nodes[i], &lab.socket(i));
        let c = s["conflicts"].as_array()?.first()?.clone();
        Some(c)
    };
    let (ca, cb) = wait_for("both masters to report the conflict", T, || {
        Some((conflict(0)?, conflict(1)?))
    });
    assert_eq!(ca["vip"], VIP);
    assert_eq!(cb["vip"], VIP);
    assert_eq!(ca["other_mac"], mac_b.as_str(), "{ca}");
    assert_eq!(cb["other_mac"], mac_a.as_str(), "{cb}");
    let (da, db) = (
        ca["since"].as_f64().unwrap() - b_master_since,
        cb["since"].as_f64().unwrap() - b_master_since,
    );
    eprintln!(
        "detected {da:.3} s (n0, the old master) and {db:.3} s (n1, the new one) after n1 became master (load {})",
        std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim()
    );
    assert!(
        (-0.05..1.0).contains(&da),
        "n0 reported {da:.3} s after n1 became master"
    );
    assert!(
        (-0.05..1.0).contains(&db),
        "n1 reported {db:.3} s after it became master"
    );
    // One log line each, and the gauge.
    let started = |p: &Proc, other: &str| count(p, &format!("split brain: VIP {VIP} is also claimed by {other}"));
    assert_eq!(started(&a, &mac_b), 1);
    assert_eq!(started(&b, &mac_a), 1);
    for ns in &lab.nodes {
        assert_eq!(metric(ns, "ipf_vip_conflict"), Some(1.0));
        assert!(metric(ns, "ipf_vip_conflict_episodes_total") == Some(1.0));
    }
    // Clients split: the new master's announcement took this one.
    wait_for("the client to follow n1", T, || {
        (lab.serves().as_deref() == Some("n1")).then_some(())
    });

    let lifted = Instant::now();
    unblock_vrrp(&lab.switch);
    let reached = wait_for("the client to reach n0 again", T, || {
        (lab.serves().as_deref() == Some("n0")).then(|| lifted.elapsed())
    });
    eprintln!(
        "client back on the survivor {:.3} s after the block lifted (load {})",
        reached.as_secs_f64(),
        std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim()
    );
    wait_for("n1 back to backup", T, || (lab.state(1) == "BACKUP").then_some(()));
    assert_eq!(lab.state(0), "MASTER");
    assert!(holds(&lab.nodes[0]) && !holds(&lab.nodes[1]));
    assert!(
        reached < Duration::from_secs(1),
        "the client reached the survivor {reached:?} after the path returned"
    );
    // Each side logs the end once; nothing ongoing is left.
    wait_for("both ends logged", T, || {
        (count(&a, "split brain over: VIP") == 1 && count(&b, "split brain over: VIP") == 1).then_some(())
    });
    for (i, ns) in lab.nodes.iter().enumerate() {
        assert_eq!(metric(ns, "ipf_vip_conflict"), Some(0.0));
        assert_eq!(status(ns, &lab.socket(i))["conflicts"], Value::Array(Vec::new()));
    }
}

/// IPv6: the same split over a VIP in 2001:db8::/64. The new master's duplicate address detection
/// probe (from ::) is answered by the old master's kernel with a neighbour advertisement, and the old
/// master sees the new one's unsolicited NA: both report within a second.
#[test]
fn ipv6_multicast_blocked_both_masters_report_within_a_second() {
    ipf_testbed::skip_unless_root!();
    const VIP6: &str = "2001:db8::100";
    let switch = Switch::new("ipf-s6s");
    let dir = TempDir::new("ipf-s6");
    let nodes: Vec<Netns> = (0..2)
        .map(|i| {
            let ns = Netns::new(&format!("ipf-s6{i}"));
            let (v4, v6) = (format!("192.0.2.{}/24", i + 1), format!("2001:db8::{}/64", i + 1));
            switch.attach(&ns, "eth0", &[&v4, &v6], &format!("p{i}"));
            ns
        })
        .collect();
    let socket = |i: usize| dir.path().join(format!("n{i}.sock"));
    let start = |i: usize, priority: u8| {
        let mut cmd = nodes[i].command(agent_bin());
        cmd.args(["run", "-i", "eth0", "--status-socket"]).arg(socket(i));
        cmd.args([
            "--instance",
            &format!("name=VI_6,vrid=61,priority={priority},version=3,interval=1000,vip={VIP6}/64"),
        ]);
        Proc::spawn("ipf-agent", cmd)
    };
    let _agents = [start(0, 150), start(1, 100)];
    let st = |i: usize| status(&nodes[i], &socket(i));
    wait_for("n0 master, n1 backup", T, || {
        (st(0)["state"] == "MASTER" && st(1)["state"] == "BACKUP").then_some(())
    });
    let (mac_a, mac_b) = (mac(&nodes[0]), mac(&nodes[1]));
    block_vrrp(&switch);
    wait_for("n1 to become master too", T, || {
        (st(1)["state"] == "MASTER").then_some(())
    });
    let b_master_since = st(1)["last_transition"].as_f64().unwrap();
    let conflict = |i: usize| st(i)["conflicts"].as_array()?.first().cloned();
    let (ca, cb) = wait_for("both masters to report the conflict", T, || {
        Some((conflict(0)?, conflict(1)?))
    });
    assert_eq!(ca["vip"], VIP6);
    assert_eq!(cb["vip"], VIP6);
    assert_eq!(ca["other_mac"], mac_b.as_str(), "{ca}");
    assert_eq!(cb["other_mac"], mac_a.as_str(), "{cb}");
    for (who, c) in [("n0", &ca), ("n1", &cb)] {
        let d = c["since"].as_f64().unwrap() - b_master_since;
        eprintln!("IPv6: {who} reported {d:.3} s after n1 became master");
        assert!(
            (-0.05..1.0).contains(&d),
            "{who} reported {d:.3} s after n1 became master"
        );
    }
    unblock_vrrp(&switch);
    wait_for("n1 back to backup, the episodes over", T, || {
        (st(1)["state"] == "BACKUP" && st(0)["conflicts"] == Value::Array(Vec::new())).then_some(())
    });
    assert_eq!(st(0)["state"], "MASTER");
}

/// `--split-brain-policy yield` with VRRP blocked both ways: the Master with the lower MAC yields
/// after a second of conflict, so one node serves; it guards while the holder answers (no takeover
/// however long the partition lasts) and takes the VIP back when the holder dies.
#[test]
fn yield_policy_leaves_one_holder_without_a_vrrp_path_and_takes_back_when_it_dies() {
    ipf_testbed::skip_unless_root!();
    let lab = Lab::new("sy", 2);
    let yield_args = ["--split-brain-policy", "yield"];
    let mut agents = vec![lab.start(0, 150, &yield_args), lab.start(1, 100, &yield_args)];
    wait_for("n0 master, n1 backup", T, || {
        (lab.state(0) == "MASTER" && lab.state(1) == "BACKUP").then_some(())
    });
    let macs = [mac(&lab.nodes[0]), mac(&lab.nodes[1])];
    // The rule: the lower MAC yields (both are lowercase, zero-padded hex: strings compare as bytes).
    let (yielder, holder) = if macs[0] < macs[1] { (0, 1) } else { (1, 0) };

    block_vrrp(&lab.switch);
    let blocked = Instant::now();
    wait_for("the yielder to step down, guarding", T, || {
        let s = status(&lab.nodes[yielder], &lab.socket(yielder));
        (lab.state(holder) == "MASTER" && s["state"] == "BACKUP" && s["yielded_to"] == macs[holder].as_str())
            .then_some(())
    });
    let yielded = blocked.elapsed();
    assert_eq!(
        count(
            &agents[yielder],
            &format!("split brain: yielding the VIPs to {}", macs[holder])
        ),
        1
    );
    assert_eq!(
        count(&agents[holder], "split brain: yielding"),
        0,
        "the holder never yields"
    );
    wait_for("the VIP on the holder only", T, || {
        (holds(&lab.nodes[holder]) && !holds(&lab.nodes[yielder])).then_some(())
    });
    let name = format!("n{holder}");
    wait_for("the client to reach the holder", T, || {
        (lab.serves().as_deref() == Some(name.as_str())).then_some(())
    });
    // The partition lasts: the guard outlives several Master_Down_Intervals (3.6 s) without a
    // takeover, the holder's answers to its probes standing in for adverts.
    let entered_master = |p: &Proc| count(p, "Entering MASTER STATE");
    let before = entered_master(&agents[yielder]);
    let window = Instant::now();
    while window.elapsed() < Duration::from_secs(8) {
        assert_eq!(
            lab.state(yielder),
            "BACKUP",
            "the yielder took the VIP back while the holder lives"
        );
        assert!(!holds(&lab.nodes[yielder]));
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(entered_master(&agents[yielder]), before);
    assert_eq!(lab.state(holder), "MASTER");
    assert_eq!(
        metric(&lab.nodes[holder], "ipf_vip_conflict"),
        Some(0.0),
        "the holder's episode ended"
    );

    // The holder dies: its VIP lease runs out, the probes go unanswered, the yielder takes over.
    let killed = Instant::now();
    agents[holder].signal(libc::SIGKILL);
    let name = format!("n{yielder}");
    let back = wait_for("the yielder to take the VIP back", T, || {
        (lab.state(yielder) == "MASTER" && lab.serves().as_deref() == Some(name.as_str())).then(|| killed.elapsed())
    });
    assert_eq!(
        status(&lab.nodes[yielder], &lab.socket(yielder))["yielded_to"],
        Value::Null
    );
    eprintln!(
        "n{yielder} yielded {:.3} s after the block; took the VIP back {:.3} s after n{holder}'s SIGKILL (load {})",
        yielded.as_secs_f64(),
        back.as_secs_f64(),
        std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim()
    );
    agents.clear();
}

#[test]
fn a_sigkilled_masters_vip_is_gone_before_the_backup_takes_over() {
    ipf_testbed::skip_unless_root!();
    let lab = Lab::new("sk", 2);
    let a = lab.start(0, 150, &[]);
    let _b = lab.start(1, 100, &[]);
    wait_for("n0 master holding the VIP", T, || {
        (lab.state(0) == "MASTER" && holds(&lab.nodes[0])).then_some(())
    });
    wait_for("n1 backup", T, || (lab.state(1) == "BACKUP").then_some(()));
    // Let a few renewals happen, then kill without any clean-up.
    std::thread::sleep(Duration::from_millis(2500));
    let killed = Instant::now();
    a.signal(libc::SIGKILL);
    let mut gone = None;
    let taken = wait_for("n1 to take the VIP", T, || {
        let (on_a, on_b) = (holds(&lab.nodes[0]), holds(&lab.nodes[1]));
        assert!(
            !(on_a && on_b),
            "the VIP is on both nodes {:?} after the kill",
            killed.elapsed()
        );
        if !on_a && gone.is_none() {
            gone = Some(killed.elapsed());
        }
        on_b.then(|| killed.elapsed())
    });
    let gone = gone.expect("the VIP left n0 before n1 took it");
    eprintln!(
        "VIP gone from the killed master {:.3} s after SIGKILL, on the backup at {:.3} s: {:.3} s apart (load {})",
        gone.as_secs_f64(),
        taken.as_secs_f64(),
        (taken - gone).as_secs_f64(),
        std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim()
    );
    // At 1 s adverts the lease is 2 s, renewed with each advert: gone at most 2.25 s after the last
    // advert, a takeover no sooner than 3 s after it. Half that margin is asserted, for scheduling.
    assert!(
        taken - gone >= Duration::from_millis(350),
        "VIP gone {gone:?}, taken over {taken:?} after the kill"
    );
    // And no conflict on the new master: the old one no longer answers for the VIP.
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(metric(&lab.nodes[1], "ipf_vip_conflicts_total"), Some(0.0));
}

#[test]
fn twenty_failovers_in_a_healthy_cluster_count_no_conflict() {
    ipf_testbed::skip_unless_root!();
    let lab = Lab::new("ff", 3);
    let prio = [150u8, 120, 90];
    let mut procs: Vec<Option<Proc>> = (0..3).map(|i| Some(lab.start(i, prio[i], &[]))).collect();
    let mut dead: Vec<Proc> = Vec::new();
    let mut conflicts = 0.0;
    let master = |lab: &Lab, procs: &[Option<Proc>]| {
        let m: Vec<usize> = (0..3)
            .filter(|i| procs[*i].is_some() && lab.state(*i) == "MASTER")
            .collect();
        (m.len() == 1 && holds(&lab.nodes[m[0]])).then(|| m[0])
    };
    wait_for("n0 master", T, || (master(&lab, &procs) == Some(0)).then_some(()));
    let mut failovers = 0;
    let mut round = 0;
    while failovers < 20 {
        let m = wait_for("one master", T, || master(&lab, &procs));
        // Read what the node counted before it goes.
        conflicts += metric(&lab.nodes[m], "ipf_vip_conflicts_total").unwrap_or(0.0);
        let mut p = procs[m].take().unwrap();
        if round % 2 == 0 {
            p.signal(libc::SIGTERM);
            assert!(p.wait_exit(T).success());
        } else {
            p.signal(libc::SIGKILL);
            p.wait_exit(T);
        }
        dead.push(p);
        let next = wait_for("another master", T, || master(&lab, &procs).filter(|n| *n != m));
        failovers += 1;
        // Back it comes; a higher priority preempts (one more failover).
        procs[m] = Some(lab.start(m, prio[m], &[]));
        if prio[m] > prio[next] {
            wait_for("the restarted node to preempt", T, || {
                (master(&lab, &procs) == Some(m)).then_some(())
            });
            failovers += 1;
        } else {
            wait_for("the restarted node to be backup", T, || {
                (lab.state(m) == "BACKUP").then_some(())
            });
        }
        round += 1;
    }
    for (i, p) in procs.iter().enumerate() {
        if p.is_some() {
            conflicts += metric(&lab.nodes[i], "ipf_vip_conflicts_total").unwrap_or(0.0);
        }
    }
    let logged: usize = procs
        .iter()
        .flatten()
        .chain(dead.iter())
        .map(|p| count(p, "split brain"))
        .sum();
    eprintln!("{failovers} failovers in {round} rounds: {conflicts} conflicts counted, {logged} logged");
    assert_eq!(conflicts, 0.0, "conflicts counted over {failovers} failovers");
    assert_eq!(logged, 0, "split-brain lines logged over {failovers} failovers");
}

/// Drops only multicast VRRP (to 224.0.0.18) on the bridge: unicast adverts still pass.
fn block_multicast_vrrp(switch: &Switch) {
    let s = &switch.ns;
    s.exec("nft", &["add", "table", "bridge", "ipf_split"]);
    s.exec(
        "nft",
        &["add chain bridge ipf_split forward { type filter hook forward priority 0 ; }"],
    );
    s.exec(
        "nft",
        &["add rule bridge ipf_split forward ip daddr 224.0.0.18 ip protocol 112 drop"],
    );
}

#[test]
fn learned_peers_keep_one_master_when_multicast_is_blocked() {
    ipf_testbed::skip_unless_root!();
    let lab = Lab::new("lp", 2);
    // n1 first, so each node has heard the other as Master: n0 preempts it.
    let b = lab.start(1, 100, &[]);
    wait_for("n1 master", T, || (lab.state(1) == "MASTER").then_some(()));
    let a = lab.start(0, 150, &[]);
    wait_for("n0 to preempt", T, || {
        (lab.state(0) == "MASTER" && lab.state(1) == "BACKUP").then_some(())
    });
    wait_for("both to learn the other", T, || {
        (count(&a, "learned unicast peer 192.0.2.2") == 1 && count(&b, "learned unicast peer 192.0.2.1") == 1)
            .then_some(())
    });
    let became = metric(&lab.nodes[1], "ipf_vrrp_became_master_total").unwrap();
    block_multicast_vrrp(&lab.switch);
    // Twice Master_Down_Interval (3.6 s): n1 would have taken over without the unicast copies.
    let until = Instant::now() + Duration::from_secs(8);
    while Instant::now() < until {
        assert_eq!(lab.state(1), "BACKUP", "n1 took over with multicast blocked");
        assert_eq!(lab.state(0), "MASTER");
        std::thread::sleep(Duration::from_millis(100));
    }
    // The counter sees a flip the polling could miss.
    assert_eq!(metric(&lab.nodes[1], "ipf_vrrp_became_master_total"), Some(became));
    assert_eq!(metric(&lab.nodes[0], "ipf_vip_conflicts_total"), Some(0.0));
    assert!(holds(&lab.nodes[0]) && !holds(&lab.nodes[1]));
}

fn dns_peers(ns: &Netns, socket: &Path) -> Vec<String> {
    status(ns, socket)["dns_peers"]
        .as_array()
        .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

#[test]
fn dns_peers_keep_one_master_without_multicast_and_follow_record_changes_in_place() {
    ipf_testbed::skip_unless_root!();
    let lab = Lab::new("dn", 2);
    let both = "192.0.2.1 ipf.test\n192.0.2.2 ipf.test\n";
    let mut dns = Dnsmasq::start(&lab.switch, "192.0.2.53/24", "pd", both);
    // Multicast VRRP is blocked before the nodes start and nothing is learned: only DNS tells them
    // about each other.
    block_multicast_vrrp(&lab.switch);
    let resolv_arg = dns.resolv_conf.to_str().unwrap();
    let opts = [
        "--learn-peers",
        "false",
        "--peers-dns",
        "ipf.test",
        "--peers-dns-interval-secs",
        "1",
        "--resolv-conf",
        resolv_arg,
    ];
    let a = lab.start(0, 150, &opts);
    let b = lab.start(1, 100, &opts);
    wait_for("each node to take the other from DNS", T, || {
        (count(&a, "(VI_1) unicast peers from DNS: added [192.0.2.2], removed []") == 1
            && count(&b, "(VI_1) unicast peers from DNS: added [192.0.2.1], removed []") == 1)
            .then_some(())
    });
    assert_eq!(
        dns_peers(&lab.nodes[0], &lab.socket(0)),
        ["192.0.2.2"],
        "own address skipped"
    );
    wait_for("n0 master, n1 backup", T, || {
        (lab.state(0) == "MASTER" && lab.state(1) == "BACKUP").then_some(())
    });
    // Twice Master_Down_Interval: n1 would have taken over without the unicast copies.
    let until = Instant::now() + Duration::from_secs(8);
    while Instant::now() < until {
        assert_eq!(
            lab.state(1),
            "BACKUP",
            "n1 took over with multicast blocked and DNS peers"
        );
        assert_eq!(lab.state(0), "MASTER");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(metric(&lab.nodes[1], "ipf_vrrp_became_master_total"), Some(0.0));
    assert_eq!(metric(&lab.nodes[0], "ipf_vip_conflicts_total"), Some(0.0));

    // n1's record goes: n0 stops advertising to it, in place, and n1 takes over (the split that
    // shows the destination really went).
    dns.set_hosts("192.0.2.1 ipf.test\n");
    wait_for("n0 to drop n1", T, || {
        (count(&a, "(VI_1) unicast peers from DNS: added [], removed [192.0.2.2]") == 1).then_some(())
    });
    assert!(dns_peers(&lab.nodes[0], &lab.socket(0)).is_empty());
    wait_for("n1 to take over without n0's adverts", T, || {
        (lab.state(1) == "MASTER").then_some(())
    });
    // Back it comes: n0 advertises to n1 again and n1, hearing a higher priority, yields.
    dns.set_hosts(both);
    wait_for("n0 to take n1 again", T, || {
        (count(&a, "(VI_1) unicast peers from DNS: added [192.0.2.2], removed []") == 2).then_some(())
    });
    wait_for("n1 back to backup", T, || (lab.state(1) == "BACKUP").then_some(()));
    assert_eq!(lab.state(0), "MASTER");
    assert!(holds(&lab.nodes[0]) && !holds(&lab.nodes[1]));
    // All in place: each instance started once, n0 never left MASTER.
    assert_eq!(count(&a, "(VI_1) vrid 51 on eth0 from"), 1);
    assert_eq!(count(&b, "(VI_1) vrid 51 on eth0 from"), 1);
    assert_eq!(metric(&lab.nodes[0], "ipf_vrrp_became_master_total"), Some(1.0));

    // The server goes away: one warning, and the last good set stays.
    dns.stop();
    wait_for("n0 to warn that lookups fail", T, || {
        (count(&a, "DNS peers: ") > 0 && count(&a, "keeping the last good set (1 peers)") == 1).then_some(())
    });
    // Several more failed rounds at 1 s: still one line, still the peer.
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(count(&a, "keeping the last good set"), 1, "{:?}", a.stderr_lines());
    assert_eq!(dns_peers(&lab.nodes[0], &lab.socket(0)), ["192.0.2.2"]);
    assert_eq!(lab.state(1), "BACKUP");
}
