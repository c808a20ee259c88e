//! ipf-agent configured only by the ipfailover image's OPENSHIFT_HA_* environment: two ipf nodes, and a
//! mixed rollout with a real keepalived running the configuration the old image generates for the
//! same environment. One master per VIP group at every step (sampled throughout: never two at once,
//! and each step's owner stays put), and failover both ways. Needs root.
#![allow(clippy::unwrap_used, reason = "tests")]

use std::time::Duration;

use ipf_testbed::{Keepalived, Netns, Proc, Switch, addresses, wait_for};
use ipf_tests::{
    agent_bin,
    holders::{Holders, Step},
};

const T: Duration = Duration::from_secs(30);
/// The images' advert interval (OPENSHIFT_HA_* has none set here; keepalived's default).
const INTERVAL: Duration = Duration::from_secs(1);
/// Two groups: 192.0.2.10-11 (VRID 1) and 192.0.2.12-13 (VRID 2).
const GROUPS: [[&str; 2]; 2] = [["192.0.2.10", "192.0.2.11"], ["192.0.2.12", "192.0.2.13"]];

fn env_agent(ns: &Netns) -> Proc {
    let mut cmd = ns.command(agent_bin());
    cmd.args(["run", "--status-socket", "off", "--metrics-addr", "off"])
        .env("OPENSHIFT_HA_VIRTUAL_IPS", "192.0.2.10-13")
        .env("OPENSHIFT_HA_VIP_GROUPS", "2")
        .env("OPENSHIFT_HA_MONITOR_PORT", "0")
        .env("OPENSHIFT_HA_PREEMPTION", "preempt_nodelay")
        .env("OPENSHIFT_HA_CONFIG_NAME", "ipf-test")
        .env("OPENSHIFT_HA_NETWORK_INTERFACE", "eth0");
    Proc::spawn("ipf-agent", cmd)
}

/// For each group, which of `nodes` hold all its addresses (a node adding or removing them one by one
/// counts as not holding the group until it is done).
fn holders<'a>(nodes: &[(&'a str, &Netns)]) -> Vec<Vec<&'a str>> {
    GROUPS
        .iter()
        .map(|group| {
            nodes
                .iter()
                .filter(|(_, ns)| {
                    let a = addresses(ns, "eth0");
                    group.iter().all(|v| a.iter().any(|x| x == *v))
                })
                .map(|(n, _)| *n)
                .collect()
        })
        .collect()
}

fn wait_one_master_each(nodes: &[(&str, &Netns)]) -> Vec<String> {
    wait_for("exactly one holder per VIP group", T, || {
        let h = holders(nodes);
        h.iter()
            .all(|g| g.len() == 1)
            .then(|| h.iter().map(|g| g[0].to_owned()).collect())
    })
}

/// Samples who holds each group, on `nodes` (label, namespace).
fn sampler(nodes: &[(&str, &Netns)]) -> Holders {
    let probes: Vec<(&str, &Netns, &str)> = nodes.iter().map(|(n, ns)| (*n, *ns, "eth0")).collect();
    Holders::start_groups(&[&GROUPS[0], &GROUPS[1]], &probes)
}

fn pair() -> (Switch, Netns, Netns) {
    let switch = Switch::new("ipf-os");
    let a = Netns::new("ipf-oa");
    let b = Netns::new("ipf-ob");
    switch.attach(&a, "eth0", &["192.0.2.1/24"], "pa");
    switch.attach(&b, "eth0", &["192.0.2.2/24"], "pb");
    (switch, a, b)
}

#[test]
fn two_ipf_nodes_from_the_ipfailover_environment() {
    ipf_testbed::skip_unless_root!();
    let (_switch, a, b) = pair();
    let pa = env_agent(&a);
    let _pb = env_agent(&b);
    let nodes = [("a", &a), ("b", &b)];
    let sampled = sampler(&nodes);
    let masters = wait_one_master_each(&nodes);
    let owners: Vec<&str> = masters.iter().map(String::as_str).collect();
    // Both started together: the loser of each group is a Backup that must keep hearing the owner.
    sampled.wait_owners(&owners, Step::joining(INTERVAL));
    assert!(
        pa.stderr_lines().iter().any(|l| l.contains("(ipf_test_VIP_1)")),
        "instance names follow the config name"
    );
    // Kill whichever node masters group 0: the other ends up with every group.
    let (victim, survivor) = if masters[0] == "a" { (pa, "b") } else { (_pb, "a") };
    drop(victim);
    wait_for("the survivor to hold every group alone", T, || {
        let h = holders(&nodes);
        h.iter().all(|g| g == &vec![survivor]).then_some(())
    });
    sampled.wait_owner(survivor, Step::after_kill(INTERVAL));
}

/// What the old ipfailover image generates for the same environment (its config-generators.sh, see
/// shared/docs/anchors-vrrp.md §2.3): its global_defs, the `chk_<name>` script (`true` for monitor port
/// 0), one VRRPv2 instance per group with `state MASTER`, the preemption line, PASS auth with the whole
/// config name (keepalived uses its first 8 bytes), the check tracked, and `<ip> dev <if>` VIPs; VRIDs 1
/// and 2. Only the priority is the test's choice.
fn old_image_conf(priority: u8) -> String {
    let mut s = String::from(
        "global_defs {\n   notification_email {\n     root@localhost\n   }\n   notification_email_from ipfailover@openshift.local\n   smtp_server 127.0.0.1\n   smtp_connect_timeout 30\n   router_id ipf_test\n   max_auto_priority 99\n}\n\nvrrp_script chk_ipf_test {\n   script \"true\"\n   interval 2\n}\n\n",
    );
    for (k, group) in GROUPS.iter().enumerate() {
        s.push_str(&format!(
            "vrrp_instance ipf_test_VIP_{} {{\n   interface eth0\n\n   state MASTER\n   virtual_router_id {}\n   priority {priority}\n   preempt_delay 300\n\n   authentication {{\n      auth_type PASS\n      auth_pass ipf-test\n   }}\n\n   track_script {{\n      chk_ipf_test\n   }}\n\n   virtual_ipaddress {{\n      {} dev eth0\n      {} dev eth0\n   }}\n}}\n\n",
            k + 1,
            k + 1,
            group[0],
            group[1]
        ));
    }
    s
}

#[test]
fn mixed_rollout_with_the_old_keepalived_image() {
    ipf_testbed::skip_unless_root!();
    let (_switch, a, b) = pair();
    // The old pod, with the highest priority ipf can assign (254) so it masters both groups first.
    let mut ka = Keepalived::start(&b, &old_image_conf(254));
    let nodes = [("ipf", &a), ("keepalived", &b)];
    let sampled = sampler(&nodes);
    wait_for("keepalived to master both groups", T, || {
        (holders(&nodes) == [vec!["keepalived"], vec!["keepalived"]]).then_some(())
    });
    sampled.wait_owner("keepalived", Step::at(INTERVAL));
    let ipf = env_agent(&a);
    // They agree: one master per group, and ipf (lower priority) stays Backup.
    wait_for("ipf to join as Backup", T, || {
        (ipf.stderr_lines()
            .iter()
            .filter(|l| l.contains("Entering BACKUP STATE"))
            .count()
            == 2)
            .then_some(())
    });
    sampled.wait_owner("keepalived", Step::joining(INTERVAL));
    // The old pod goes away (rolling update): ipf takes every group over.
    ka.stop();
    wait_for("ipf to take both groups", T, || {
        (holders(&nodes) == [vec!["ipf"], vec!["ipf"]]).then_some(())
    });
    sampled.wait_owner("ipf", Step::at(INTERVAL));
    // And back: the old image's pod returns with its higher priority and takes over from ipf.
    let _ka = Keepalived::start(&b, &old_image_conf(254));
    wait_for("keepalived to take both groups back", T, || {
        (holders(&nodes) == [vec!["keepalived"], vec!["keepalived"]]).then_some(())
    });
    sampled.wait_owner("keepalived", Step::at(INTERVAL));
}
