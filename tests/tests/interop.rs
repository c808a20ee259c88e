//! ipf-agent running VRRP against real keepalived (Debian package) on one bridge, with a client
//! namespace that reaches the VIP: who holds the VIP, who answers, and failover both ways. Needs root.
#![allow(clippy::unwrap_used, reason = "tests")]

use std::{net::IpAddr, time::Duration};

use ipf_testbed::{
    Keepalived, Netns, Proc, Switch, addresses, fetch_name, keepalived_conf, keepalived_instance, spawn_responder,
    wait_for,
};
use ipf_tests::agent_bin;

const T: Duration = Duration::from_secs(20);
const VIP4: &str = "192.0.2.100";
const VIP6: &str = "2001:db8::100";
const PORT: u16 = 8080;

struct Node {
    ns: Netns,
    _responder: Proc,
}

struct Lab {
    // Processes are dropped before the namespaces they run in.
    agent: Option<Proc>,
    keepalived: Option<Keepalived>,
    ipf: Node,
    ka: Node,
    client: Netns,
    _switch: Switch,
    vip: &'static str,
}

fn node(switch: &Switch, prefix: &str, addrs: &[&str], port: &str) -> Node {
    let ns = Netns::new(prefix);
    switch.attach(&ns, "eth0", addrs, port);
    let responder = spawn_responder(&ns, PORT, prefix);
    Node {
        ns,
        _responder: responder,
    }
}

fn lab(vip: &'static str) -> Lab {
    let switch = Switch::new("ipf-is");
    let ipf = node(&switch, "ipf-in", &["192.0.2.1/24", "2001:db8::1/64"], "p1");
    let ka = node(&switch, "ipf-ik", &["192.0.2.2/24", "2001:db8::2/64"], "p2");
    let client = Netns::new("ipf-ic");
    switch.attach(&client, "eth0", &["192.0.2.50/24", "2001:db8::50/64"], "p3");
    Lab {
        agent: None,
        keepalived: None,
        ipf,
        ka,
        client,
        _switch: switch,
        vip,
    }
}

impl Lab {
    fn start_agent(&mut self, instance: &str) {
        let mut cmd = self.ipf.ns.command(agent_bin());
        cmd.args(["run", "-i", "eth0", "--status-socket", "off", "--instance", instance]);
        self.agent = Some(Proc::spawn("ipf-agent", cmd));
    }

    fn holders(&self) -> Vec<&'static str> {
        let mut h = Vec::new();
        if addresses(&self.ipf.ns, "eth0").iter().any(|a| a == self.vip) {
            h.push("ipf");
        }
        if addresses(&self.ka.ns, "eth0").iter().any(|a| a == self.vip) {
            h.push("keepalived");
        }
        h
    }

    /// Waits until exactly `who` holds the VIP and the client reaches it there.
    fn wait_owner(&self, who: &'static str) {
        let served_by = if who == "ipf" {
            &self.ipf.ns.name
        } else {
            &self.ka.ns.name
        };
        wait_for(&format!("{who} to own {} alone", self.vip), T, || {
            (self.holders() == [who]).then_some(())
        });
        let vip: IpAddr = self.vip.parse().unwrap();
        wait_for(&format!("the client to reach {} on {who}", self.vip), T, || {
            // A node's responder answers with its namespace name's prefix.
            fetch_name(&self.client, vip, PORT)
                .filter(|n| served_by.starts_with(n.as_str()))
                .map(|_| ())
        });
    }
}

/// keepalived (priority 100) owns the VIP; ipf (150) joins and preempts; ipf is SIGKILLed and
/// keepalived takes over (the dead agent's VIP lease runs out); ipf returns and preempts; ipf stops
/// gracefully and keepalived takes over; ipf (50) joins as Backup; keepalived stops and ipf takes over.
/// After each step exactly one node holds the VIP and the client reaches it there.
fn run_failover(version: u8, ka_extra: &str, ipf_extra: &str, interval_ms: u32, vip: &'static str) {
    let interval = format!("{}", f64::from(interval_ms) / 1000.0);
    let prefix = if vip.contains(':') { 64 } else { 24 };
    let mut lab = lab(vip);
    let ka_vip = format!("{vip}/{prefix}");
    lab.keepalived = Some(Keepalived::start(
        &lab.ka.ns,
        &keepalived_conf(
            version,
            &[keepalived_instance("VI_51", 51, 100, &interval, ka_extra, &[&ka_vip])],
        ),
    ));
    lab.wait_owner("keepalived");

    let instance = format!(
        "name=VI_51,vrid=51,priority=150,version={version},interval={interval_ms},vip={vip}/{prefix}{ipf_extra}"
    );
    lab.start_agent(&instance);
    lab.wait_owner("ipf");

    lab.agent.take();
    lab.wait_owner("keepalived");

    lab.start_agent(&instance);
    lab.wait_owner("ipf");
    let mut agent = lab.agent.take().unwrap();
    agent.signal(libc::SIGTERM);
    let status = agent.wait_exit(Duration::from_secs(1));
    assert!(status.success(), "graceful stop: {status:?}");
    lab.wait_owner("keepalived");

    lab.start_agent(&instance.replace("priority=150", "priority=50"));
    wait_for("ipf to enter BACKUP", T, || {
        lab.agent
            .as_ref()
            .unwrap()
            .stderr_lines()
            .iter()
            .any(|l| l.contains("(VI_51) Entering BACKUP STATE"))
            .then_some(())
    });
    lab.wait_owner("keepalived");
    // keepalived has no VIP lease, so a SIGKILL would leave its VIP behind: stop it gracefully.
    lab.keepalived.take().unwrap().stop();
    lab.wait_owner("ipf");
}

#[test]
fn with_keepalived_vrrpv3_multicast() {
    ipf_testbed::skip_unless_root!();
    run_failover(3, "", "", 100, VIP4);
}

#[test]
fn with_keepalived_vrrpv2_pass_auth() {
    ipf_testbed::skip_unless_root!();
    run_failover(
        2,
        "  authentication {\n    auth_type PASS\n    auth_pass ipfpass\n  }",
        ",pass=ipfpass",
        1000,
        VIP4,
    );
}

#[test]
fn with_keepalived_vrrpv3_unicast() {
    ipf_testbed::skip_unless_root!();
    run_failover(
        3,
        "  unicast_src_ip 192.0.2.2\n  unicast_peer {\n    192.0.2.1\n  }",
        ",peer=192.0.2.2",
        100,
        VIP4,
    );
}

#[test]
fn with_keepalived_vrrpv3_ipv6() {
    ipf_testbed::skip_unless_root!();
    run_failover(3, "", "", 100, VIP6);
}

#[test]
fn bad_configuration_exits_non_zero_and_touches_nothing() {
    ipf_testbed::skip_unless_root!();
    let lab = lab(VIP4);
    let before = addresses(&lab.ipf.ns, "eth0");
    for (args, needle) in [
        (
            vec!["-i", "eth0", "--instance", "vrid=0,vip=192.0.2.100/24"],
            "vrid=\"0\"",
        ),
        (
            vec!["-i", "eth0", "--instance", "vrid=51,priority=256,vip=192.0.2.100/24"],
            "priority=\"256\"",
        ),
        (
            vec![
                "-i",
                "eth0",
                "--instance",
                "vrid=51,version=2,interval=50,vip=192.0.2.100/24",
            ],
            "50ms",
        ),
        (
            vec!["-i", "nosuch0", "--instance", "vrid=51,vip=192.0.2.100/24"],
            "nosuch0",
        ),
        (
            vec![
                "-i",
                "eth0",
                "--instance",
                "vrid=51,vip=192.0.2.100/24,vip=2001:db8::100/64",
            ],
            "2001:db8::100",
        ),
    ] {
        let out = lab.ipf.ns.command(agent_bin()).arg("run").args(&args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} should fail");
        assert!(
            stderr.contains(needle),
            "{args:?}: the error does not name {needle}: {stderr}"
        );
        assert_eq!(addresses(&lab.ipf.ns, "eth0"), before, "{args:?} changed addresses");
        assert!(!lab.ipf.ns.has_xdp("eth0"), "{args:?} left XDP attached");
    }
}
