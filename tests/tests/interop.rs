//! ipf-agent running VRRP against real keepalived (Debian package) on one bridge, with a client
//! namespace that reaches the VIP: who holds the VIP, who answers, and failover both ways. Needs root.
#![allow(clippy::unwrap_used, reason = "tests")]

use std::{net::IpAddr, time::Duration};

use ipf_testbed::{
    Keepalived, Netns, Proc, Switch, addresses, fetch_name, spawn_responder, wait_for,
};
use ipf_tests::agent_bin;

const T: Duration = Duration::from_secs(20);
const VIP: &str = "192.0.2.100";
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

fn lab() -> Lab {
    let switch = Switch::new("ipf-is");
    let ipf = node(&switch, "ipf-in", "192.0.2.1/24", "p1");
    let ka = node(&switch, "ipf-ik", "192.0.2.2/24", "p2");
    let client = Netns::new("ipf-ic");
    switch.attach(&client, "eth0", &["192.0.2.50/24"], "p3");
    Lab {
        agent: None,
        keepalived: None,
        ipf,
        ka,
        client,
        _switch: switch,
    }
}

fn keepalived_conf(version: u8, priority: u8, interval: &str, extra: &str) -> String {
    format!(
        "global_defs {{\n  router_id ka\n  vrrp_version {version}\n}}\nvrrp_instance VI_51 {{\n  state BACKUP\n  interface eth0\n  virtual_router_id 51\n  priority {priority}\n  advert_int {interval}\n{extra}\n  virtual_ipaddress {{\n    {VIP}/24\n  }}\n}}\n"
    )
}

impl Lab {
    fn start_agent(&mut self, instance: &str) {
        let mut cmd = self.ipf.ns.command(agent_bin());
        cmd.args(["run", "-i", "eth0", "--instance", instance]);
        self.agent = Some(Proc::spawn("ipf-agent", cmd));
    }

    fn holders(&self) -> Vec<&'static str> {
        let mut h = Vec::new();
        if addresses(&self.ipf.ns, "eth0").iter().any(|a| a == VIP) {
            h.push("ipf");
        }
        if addresses(&self.ka.ns, "eth0").iter().any(|a| a == VIP) {
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
        wait_for(&format!("{who} to own the VIP alone"), T, || {
            (self.holders() == [who]).then_some(())
        });
        let vip: IpAddr = VIP.parse().unwrap();
        wait_for(&format!("the client to reach the VIP on {who}"), T, || {
            // The prefix of the node's namespace name is what its responder answers.
            fetch_name(&self.client, vip, PORT)
                .filter(|n| served_by.starts_with(n.as_str()))
                .map(|_| ())
        });
    }
}

fn run_failover(version: u8, ka_extra: &str, ipf_extra: &str, interval_ms: u32) {
    let interval = format!("{}", f64::from(interval_ms) / 1000.0);
    let mut lab = lab();
    lab.keepalived = Some(Keepalived::start(
        &lab.ka.ns,
        &keepalived_conf(version, 100, &interval, ka_extra),
    ));
    lab.wait_owner("keepalived");

    // ipf joins with a higher priority and preempts.
    let instance = format!(
        "name=VI_51,vrid=51,priority=150,version={version},interval={interval_ms},vip={VIP}/24{ipf_extra}"
    );
    lab.start_agent(&instance);
    lab.wait_owner("ipf");

    // SIGKILL: keepalived takes over, and the dead agent's VIP lease runs out.
    lab.agent.take();
    lab.wait_owner("keepalived");

    // Back, and preempting again; then a graceful stop hands over at once (priority 0).
    lab.start_agent(&instance);
    lab.wait_owner("ipf");
    let mut agent = lab.agent.take().unwrap();
    agent.signal(libc::SIGTERM);
    let status = agent.wait_exit(Duration::from_secs(2));
    assert!(status.success(), "graceful stop: {status:?}");
    lab.wait_owner("keepalived");

    // ipf as the lower priority: it stays Backup and never holds the VIP.
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
    // keepalived stops (it has no VIP lease, so a SIGKILL would leave its VIP behind): the
    // lower-priority ipf takes over.
    lab.keepalived.take().unwrap().stop();
    lab.wait_owner("ipf");
}

#[test]
fn with_keepalived_vrrpv3_multicast() {
    run_failover(3, "", "", 100);
}

#[test]
fn with_keepalived_vrrpv2_pass_auth() {
    run_failover(
        2,
        "  authentication {\n    auth_type PASS\n    auth_pass ipfpass\n  }",
        ",pass=ipfpass",
        1000,
    );
}

#[test]
fn with_keepalived_vrrpv3_unicast() {
    run_failover(
        3,
        "  unicast_src_ip 192.0.2.2\n  unicast_peer {\n    192.0.2.1\n  }",
        ",peer=192.0.2.2",
        100,
    );
}
