//! ipf-agent running VRRP against real keepalived (Debian package) on one bridge, with a client
//! namespace that reaches the VIP: who holds the VIP, who answers, and failover both ways, on each
//! receive path the agent can run (native XDP, generic XDP, the raw-socket path). Every change of
//! owner is watched by a sampler: never two holders at once beyond a handover, and the new owner
//! stays put for a few advert intervals. Needs root.
#![allow(clippy::unwrap_used, reason = "tests")]

use std::{net::IpAddr, time::Duration};

use ipf_testbed::{
    Keepalived, Netns, Proc, Switch, addresses, fetch_name, keepalived_conf, keepalived_instance, spawn_responder,
    wait_for,
};
use ipf_tests::{
    agent_bin, datapath_mode,
    holders::{Holders, Step},
};

const T: Duration = Duration::from_secs(20);
const VIP4: &str = "192.0.2.100";
const VIP6: &str = "2001:db8::100";
const PORT: u16 = 8080;

/// The receive path the agent is told to use, and what it must then report.
#[derive(Clone, Copy, Debug)]
enum Mode {
    /// veth has native XDP: `driver` must not fall back.
    Native,
    Skb,
    Off,
}

impl Mode {
    fn arg(self) -> &'static str {
        match self {
            Mode::Native => "driver",
            Mode::Skb => "skb",
            Mode::Off => "off",
        }
    }

    /// `ipf_datapath_mode`'s label for it.
    fn label(self) -> &'static str {
        match self {
            Mode::Native => "xdp-driver",
            Mode::Skb => "xdp-skb",
            Mode::Off => "raw-socket",
        }
    }
}

struct Node {
    ns: Netns,
    _responder: Proc,
}

struct Lab {
    // Processes are dropped before the namespaces they run in, the sampler before both.
    holders: Holders,
    agent: Option<Proc>,
    keepalived: Option<Keepalived>,
    ipf: Node,
    ka: Node,
    client: Netns,
    _switch: Switch,
    vip: &'static str,
    mode: Mode,
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

fn lab(vip: &'static str, mode: Mode) -> Lab {
    let switch = Switch::new("ipf-is");
    let ipf = node(&switch, "ipf-in", &["192.0.2.1/24", "2001:db8::1/64"], "p1");
    let ka = node(&switch, "ipf-ik", &["192.0.2.2/24", "2001:db8::2/64"], "p2");
    let client = Netns::new("ipf-ic");
    switch.attach(&client, "eth0", &["192.0.2.50/24", "2001:db8::50/64"], "p3");
    let holders = Holders::start(vip, &[("ipf", &ipf.ns, "eth0"), ("keepalived", &ka.ns, "eth0")]);
    Lab {
        holders,
        agent: None,
        keepalived: None,
        ipf,
        ka,
        client,
        _switch: switch,
        vip,
        mode,
    }
}

impl Lab {
    fn start_agent(&mut self, instance: &str) {
        let mut cmd = self.ipf.ns.command(agent_bin());
        cmd.args([
            "run",
            "-i",
            "eth0",
            "--status-socket",
            "off",
            "--xdp-mode",
            self.mode.arg(),
        ])
        .args(["--instance", instance]);
        self.agent = Some(Proc::spawn("ipf-agent", cmd));
    }

    /// The running agent uses the receive path it was told to, and says so in its log and metrics.
    fn assert_mode(&self) {
        let label = self.mode.label();
        let reported = wait_for("the agent's datapath mode in its metrics", T, || {
            datapath_mode(&self.ipf.ns, "eth0")
        });
        assert_eq!(reported, label, "ipf_datapath_mode with --xdp-mode {}", self.mode.arg());
        let logs = self.agent.as_ref().unwrap().stderr_lines();
        let said = match self.mode {
            Mode::Off => logs
                .iter()
                .any(|l| l.contains("using the raw-socket receive path") && l.contains("--xdp-mode off")),
            _ => logs
                .iter()
                .any(|l| l.contains("datapath: XDP attached") && l.contains(label)),
        };
        assert!(said, "no log line for {label}:\n{}", logs.join("\n"));
        // And the kernel runs what the agent reports.
        let kernel = match self.mode {
            Mode::Native => Some("driver"),
            Mode::Skb => Some("generic"),
            Mode::Off => None,
        };
        assert_eq!(
            self.ipf.ns.xdp_attach_mode("eth0"),
            kernel,
            "XDP on eth0 as the kernel reports it, with --xdp-mode {}",
            self.mode.arg()
        );
    }

    /// Waits until exactly `who` holds the VIP (never two holders beyond `step.overlap` on the way,
    /// and `who` alone for the settle window), and the client reaches it there.
    fn wait_owner(&self, who: &'static str, step: Step) {
        let served_by = if who == "ipf" {
            &self.ipf.ns.name
        } else {
            &self.ka.ns.name
        };
        self.holders.wait_owner(who, step);
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
/// After each step exactly one node holds the VIP, has held it alone since the previous step
/// (beyond a handover, or what the VIP lease documents after a SIGKILL), keeps it for a few advert
/// intervals, and the client reaches it there.
fn run_failover(mode: Mode, version: u8, ka_extra: &str, ipf_extra: &str, interval_ms: u32, vip: &'static str) {
    let interval = format!("{}", f64::from(interval_ms) / 1000.0);
    let step = Step::at(Duration::from_millis(interval_ms.into()));
    let after_kill = Step::after_kill(Duration::from_millis(interval_ms.into()));
    let prefix = if vip.contains(':') { 64 } else { 24 };
    let mut lab = lab(vip, mode);
    let ka_vip = format!("{vip}/{prefix}");
    lab.keepalived = Some(Keepalived::start(
        &lab.ka.ns,
        &keepalived_conf(
            version,
            &[keepalived_instance("VI_51", 51, 100, &interval, ka_extra, &[&ka_vip])],
        ),
    ));
    lab.wait_owner("keepalived", step);

    let instance = format!(
        "name=VI_51,vrid=51,priority=150,version={version},interval={interval_ms},vip={vip}/{prefix}{ipf_extra}"
    );
    lab.start_agent(&instance);
    lab.wait_owner("ipf", step);
    lab.assert_mode();

    lab.agent.take();
    lab.wait_owner("keepalived", after_kill);

    lab.start_agent(&instance);
    lab.wait_owner("ipf", step);
    let mut agent = lab.agent.take().unwrap();
    agent.signal(libc::SIGTERM);
    let status = agent.wait_exit(Duration::from_secs(1));
    assert!(status.success(), "graceful stop: {status:?}");
    lab.wait_owner("keepalived", step);

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
    lab.wait_owner("keepalived", Step::joining(Duration::from_millis(interval_ms.into())));
    lab.assert_mode();
    // keepalived has no VIP lease, so a SIGKILL would leave its VIP behind: stop it gracefully.
    lab.keepalived.take().unwrap().stop();
    lab.wait_owner("ipf", step);
}

const V2_PASS_KA: &str = "  authentication {\n    auth_type PASS\n    auth_pass ipfpass\n  }";
const V2_PASS_IPF: &str = ",pass=ipfpass";

// Native XDP (what veth offers) runs the whole matrix. Generic XDP and the raw-socket path differ
// from it only in how packets reach the shared validation, not in what the election does with
// them, so each runs one VRRPv3 multicast case (100 ms adverts) and the VRRPv2 PASS-auth case
// (the other version and the authentication check on that path): the CI budget of three full
// matrices would buy no more coverage of the receive path.

#[test]
fn xdp_native_with_keepalived_vrrpv3_multicast() {
    ipf_testbed::skip_unless_root!();
    run_failover(Mode::Native, 3, "", "", 100, VIP4);
}

#[test]
fn xdp_native_with_keepalived_vrrpv2_pass_auth() {
    ipf_testbed::skip_unless_root!();
    run_failover(Mode::Native, 2, V2_PASS_KA, V2_PASS_IPF, 1000, VIP4);
}

#[test]
fn xdp_native_with_keepalived_vrrpv3_unicast() {
    ipf_testbed::skip_unless_root!();
    run_failover(
        Mode::Native,
        3,
        "  unicast_src_ip 192.0.2.2\n  unicast_peer {\n    192.0.2.1\n  }",
        ",peer=192.0.2.2",
        100,
        VIP4,
    );
}

#[test]
fn xdp_native_with_keepalived_vrrpv3_ipv6() {
    ipf_testbed::skip_unless_root!();
    run_failover(Mode::Native, 3, "", "", 100, VIP6);
}

#[test]
fn xdp_skb_with_keepalived_vrrpv3_multicast() {
    ipf_testbed::skip_unless_root!();
    run_failover(Mode::Skb, 3, "", "", 100, VIP4);
}

#[test]
fn xdp_skb_with_keepalived_vrrpv2_pass_auth() {
    ipf_testbed::skip_unless_root!();
    run_failover(Mode::Skb, 2, V2_PASS_KA, V2_PASS_IPF, 1000, VIP4);
}

#[test]
fn raw_socket_with_keepalived_vrrpv3_multicast() {
    ipf_testbed::skip_unless_root!();
    run_failover(Mode::Off, 3, "", "", 100, VIP4);
}

#[test]
fn raw_socket_with_keepalived_vrrpv2_pass_auth() {
    ipf_testbed::skip_unless_root!();
    run_failover(Mode::Off, 2, V2_PASS_KA, V2_PASS_IPF, 1000, VIP4);
}

#[test]
fn bad_configuration_exits_non_zero_and_touches_nothing() {
    ipf_testbed::skip_unless_root!();
    let lab = lab(VIP4, Mode::Native);
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
