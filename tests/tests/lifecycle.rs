//! The agent's lifecycle with a keepalived.conf (`--config`) and the OPENSHIFT_HA_* environment, on two
//! ipf nodes: SIGHUP with an unchanged file changes no state and no address; SIGHUP with a changed file
//! updates an instance in place (its state kept) and releases a removed one; a bad file, at start or on
//! reload, leaves the node as it was; `cleanup` removes the VIPs and the firewall rule, idempotently.
//! Needs root.
#![allow(clippy::unwrap_used, reason = "tests")]

use std::{path::Path, time::Duration};

use ipf_testbed::{Netns, Proc, TempDir, addresses, http_get, keepalived_conf, wait_for};
use ipf_tests::{
    agent_bin,
    lab::{Lab, agent_with, holds, instance, logged},
};

const T: Duration = Duration::from_secs(20);

/// `ipf-agent status --json` of the agent behind `socket`: instance name → (state, last transition).
fn status(ns: &Netns, socket: &Path) -> Vec<(String, String, f64)> {
    let mut out: Vec<(String, String, f64)> = ipf_tests::agent_status(ns, socket)
        .iter()
        .map(|i| {
            (
                i["instance"].as_str().unwrap_or_default().to_owned(),
                i["state"].as_str().unwrap_or_default().to_owned(),
                i["last_transition"].as_f64().unwrap_or_default(),
            )
        })
        .collect();
    out.sort_by(|x, y| x.0.cmp(&y.0));
    out
}

fn states(s: &[(String, String, f64)]) -> Vec<(&str, &str)> {
    s.iter().map(|(n, st, _)| (n.as_str(), st.as_str())).collect()
}

/// Adverts the agent in `ns` has sent, from its /metrics.
fn adverts_sent(ns: &Netns) -> u64 {
    let Some((200, body)) = http_get(ns, "127.0.0.1".parse().unwrap(), 9477, "/metrics") else {
        return 0;
    };
    body.lines()
        .filter(|l| l.starts_with("ipf_vrrp_adverts_sent_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// Waits until `ns`'s agent has sent `n` more adverts: at 100 ms a peer would have noticed any gap
/// (Master_Down_Interval is about 0.35 s) by then.
fn let_elections_run(ns: &Netns, n: u64) {
    let start = adverts_sent(ns);
    wait_for("the master to keep advertising", T, || {
        (adverts_sent(ns) >= start + n).then_some(())
    });
}

/// Two nodes on a bridge, each running an agent with a keepalived.conf of VI_1 (VRID 51,
/// 192.0.2.100) and VI_2 (VRID 52, 192.0.2.101) at the given priorities.
struct Pair {
    // The agents stop before their namespaces go.
    a: Proc,
    b: Proc,
    lab: Lab,
}

impl Pair {
    fn start(tag: &str, a: [u8; 2], b: [u8; 2]) -> Pair {
        let lab = Lab::new(tag);
        let start = |ns: &Netns, node: &str, p: [u8; 2]| {
            lab.write(
                node,
                &[
                    instance("VI_1", 51, p[0], "", &["192.0.2.100/24"]),
                    instance("VI_2", 52, p[1], "", &["192.0.2.101/24"]),
                ],
            );
            lab.agent(ns, node)
        };
        let (a, b) = (start(&lab.a, "a", a), start(&lab.b, "b", b));
        Pair { a, b, lab }
    }
}

#[test]
fn sighup_with_an_unchanged_configuration_changes_nothing() {
    ipf_testbed::skip_unless_root!();
    let p = Pair::start("hu", [150, 50], [100, 100]);
    let (sa, sb) = (p.lab.socket("a"), p.lab.socket("b"));
    let Pair { lab, a, b } = p;
    let (a_ns, b_ns) = (&lab.a, &lab.b);
    wait_for("a to master VI_1 and b VI_2", T, || {
        (holds(a_ns, "192.0.2.100") && holds(b_ns, "192.0.2.101")).then_some(())
    });
    wait_for("both agents to settle", T, || {
        (states(&status(a_ns, &sa)) == [("VI_1", "MASTER"), ("VI_2", "BACKUP")]
            && states(&status(b_ns, &sb)) == [("VI_1", "BACKUP"), ("VI_2", "MASTER")])
        .then_some(())
    });
    let (before_a, before_b) = (status(a_ns, &sa), status(b_ns, &sb));
    let (addr_a, addr_b) = (addresses(a_ns, "eth0"), addresses(b_ns, "eth0"));
    let (entering_a, entering_b) = (logged(&a, "Entering"), logged(&b, "Entering"));
    a.signal(libc::SIGHUP);
    b.signal(libc::SIGHUP);
    for p in [&a, &b] {
        wait_for("the reload to be done", T, || {
            (logged(
                p,
                "reloaded: 2 unchanged, 0 updated in place, 0 restarted, 0 removed, 0 added",
            ) == 1)
                .then_some(())
        });
    }
    let_elections_run(a_ns, 10);
    let_elections_run(b_ns, 10);
    assert_eq!(status(a_ns, &sa), before_a, "a's states and transition times");
    assert_eq!(status(b_ns, &sb), before_b, "b's states and transition times");
    assert_eq!(addresses(a_ns, "eth0"), addr_a);
    assert_eq!(addresses(b_ns, "eth0"), addr_b);
    assert_eq!(
        (logged(&a, "Entering"), logged(&b, "Entering")),
        (entering_a, entering_b)
    );
}

#[test]
fn sighup_updates_in_place_and_releases_removed_instances() {
    ipf_testbed::skip_unless_root!();
    let p = Pair::start("hc", [150, 150], [100, 100]);
    let (sa, sb, fa) = (p.lab.socket("a"), p.lab.socket("b"), p.lab.file("a"));
    let Pair { lab, a, b: _b } = p;
    let (a_ns, b_ns) = (&lab.a, &lab.b);
    wait_for("a to master both", T, || {
        (states(&status(a_ns, &sa)) == [("VI_1", "MASTER"), ("VI_2", "MASTER")]
            && states(&status(b_ns, &sb)) == [("VI_1", "BACKUP"), ("VI_2", "BACKUP")])
        .then_some(())
    });
    let vi1_since = status(a_ns, &sa)[0].2;
    // VI_1 gains an address and a lower (still winning) priority; VI_2 goes away.
    std::fs::write(
        &fa,
        keepalived_conf(
            3,
            &[instance("VI_1", 51, 140, "", &["192.0.2.100/24", "192.0.2.102/24"])],
        ),
    )
    .unwrap();
    a.signal(libc::SIGHUP);
    wait_for("the reload to be done", T, || {
        (logged(
            &a,
            "reloaded: 0 unchanged, 1 updated in place, 0 restarted, 1 removed, 0 added",
        ) == 1)
            .then_some(())
    });
    // On the wire from here on: a's only instance left is VI_1, so every advert of a's that is not
    // VI_2's release (priority 0) must carry the new priority.
    let capture = ipf_tests::trace::Capture::start(b_ns, "eth0");
    let from = ipf_tests::trace::now_ns();
    wait_for("a to hold the new address and b to take VI_2 over", T, || {
        (holds(a_ns, "192.0.2.102") && !holds(a_ns, "192.0.2.101") && holds(b_ns, "192.0.2.101")).then_some(())
    });
    let_elections_run(a_ns, 10);
    let priorities: Vec<u8> =
        ipf_tests::lab::adverts_from(&capture, ipf_tests::lab::A_IP, from, ipf_tests::trace::now_ns())
            .into_iter()
            .map(|(_, p)| p)
            .filter(|p| *p != 0)
            .collect();
    assert!(priorities.len() >= 5, "a's adverts seen at b: {priorities:?}");
    assert!(
        priorities.iter().all(|p| *p == 140),
        "a advertises 140 now: {priorities:?}"
    );
    let now = status(a_ns, &sa);
    assert_eq!(states(&now), [("VI_1", "MASTER")], "VI_2 is gone from a's status");
    assert_eq!(now[0].2, vi1_since, "VI_1 kept its state through the update");
    let vi1 = ipf_tests::agent_status(a_ns, &sa);
    assert_eq!(
        (vi1[0]["priority"].as_u64(), vi1[0]["configured_priority"].as_u64()),
        (Some(140), Some(140)),
        "VI_1's priority in a's status"
    );
    assert!(holds(a_ns, "192.0.2.100"));
    assert!(!holds(b_ns, "192.0.2.100") && !holds(b_ns, "192.0.2.102"));
}

#[test]
fn a_bad_configuration_leaves_the_node_as_it_was() {
    ipf_testbed::skip_unless_root!();
    let lab = Lab::new("bc");
    let a_ns = &lab.a;
    let dir = TempDir::new("ipf-bad");
    let file = dir.path().join("bad.conf");
    let socket = dir.path().join("a.sock");
    // An address this configuration manages is on the interface (say, left by a kill -9).
    a_ns.ip(&["addr", "add", "192.0.2.100/24", "dev", "eth0"]);
    let before = addresses(a_ns, "eth0");
    std::fs::write(
        &file,
        keepalived_conf(
            3,
            &[instance("VI_1", 51, 150, "", &["192.0.2.100/24"]).replace("priority 150", "priority 300")],
        ),
    )
    .unwrap();
    let mut p = agent_with(a_ns, &file, &socket);
    let status = p.wait_exit(T);
    assert!(!status.success());
    let err = p.stderr_lines().join("\n");
    assert!(
        err.contains("bad.conf:") && err.contains("300"),
        "names the file, line and value: {err}"
    );
    assert_eq!(addresses(a_ns, "eth0"), before, "no address touched");
    assert!(!a_ns.has_xdp("eth0"), "no program attached");
    assert!(!socket.exists());

    // The same at reload: the running configuration stays.
    std::fs::write(
        &file,
        keepalived_conf(3, &[instance("VI_1", 51, 150, "", &["192.0.2.100/24"])]),
    )
    .unwrap();
    let a = agent_with(a_ns, &file, &socket);
    wait_for("a to master VI_1", T, || {
        (states(&self::status(a_ns, &socket)) == [("VI_1", "MASTER")]).then_some(())
    });
    let before = self::status(a_ns, &socket);
    std::fs::write(
        &file,
        "vrrp_instance VI_1 {\n  interface eth0\n  virtual_router_id 51\n  bogus_keyword 1\n}\n",
    )
    .unwrap();
    a.signal(libc::SIGHUP);
    wait_for("the reload to fail", T, || {
        (logged(&a, "reload failed") == 1).then_some(())
    });
    assert!(
        a.stderr_lines()
            .iter()
            .any(|l| l.contains("bad.conf:4") && l.contains("bogus_keyword")),
        "the error names the line and keyword"
    );
    let_elections_run(a_ns, 5);
    assert_eq!(self::status(a_ns, &socket), before);
    assert!(holds(a_ns, "192.0.2.100"));
}

fn iptables_rules(ns: &Netns) -> String {
    ns.exec("iptables", &["-w", "-S", "INPUT"])
}

#[test]
fn cleanup_removes_the_vips_and_the_firewall_rule() {
    ipf_testbed::skip_unless_root!();
    let lab = Lab::new("cu");
    let a_ns = &lab.a;
    let env = [
        ("OPENSHIFT_HA_VIRTUAL_IPS", "192.0.2.10-11"),
        ("OPENSHIFT_HA_MONITOR_PORT", "0"),
        ("OPENSHIFT_HA_NETWORK_INTERFACE", "eth0"),
        ("OPENSHIFT_HA_PREEMPTION", "nopreempt"),
        ("OPENSHIFT_HA_IPTABLES_CHAIN", "INPUT"),
    ];
    let ipf = |args: &[&str]| {
        let mut cmd = a_ns.command(agent_bin());
        cmd.args(args).envs(env);
        cmd
    };
    let dir = TempDir::new("ipf-cleanup");
    let socket = dir.path().join("a.sock");
    let socket = socket.to_str().unwrap();
    let mut cmd = ipf(&[
        "run",
        "--vip-lease-secs",
        "0",
        "--status-socket",
        socket,
        "--metrics-addr",
        "off",
    ]);
    cmd.env_remove("KEEPALIVED_DEBUG");
    let mut agent = Proc::spawn("ipf-agent", cmd);
    wait_for("the agent to master both VIPs", T, || {
        (holds(a_ns, "192.0.2.10") && holds(a_ns, "192.0.2.11")).then_some(())
    });
    assert!(
        iptables_rules(a_ns).contains("224.0.0.18"),
        "the accept rule is in INPUT"
    );
    // Not under a running agent, which would take them right back.
    let refused = ipf(&["cleanup", "--status-socket", socket]).output().unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("is running"));
    assert!(holds(a_ns, "192.0.2.10"));
    // A crash leaves the addresses and the rule behind; cleanup removes both.
    agent.signal(libc::SIGKILL);
    agent.wait_exit(T);
    assert!(holds(a_ns, "192.0.2.10"));
    let out = ipf(&["cleanup", "--status-socket", socket]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        report.contains("removed 192.0.2.10/32") && report.contains("removed 192.0.2.11/32"),
        "{report}"
    );
    assert!(!holds(a_ns, "192.0.2.10") && !holds(a_ns, "192.0.2.11"));
    assert!(!iptables_rules(a_ns).contains("224.0.0.18"), "the rule is gone");
    // Idempotent. Its own socket, not the host's default: an agent running on the host must neither
    // refuse this nor be touched by it.
    let again = ipf(&["cleanup", "--status-socket", socket]).output().unwrap();
    assert!(again.status.success(), "{}", String::from_utf8_lossy(&again.stderr));
    assert!(!String::from_utf8_lossy(&again.stdout).contains("removed 192.0.2"));
    assert!(
        addresses(a_ns, "eth0").contains(&"192.0.2.1".to_owned()),
        "the node's own address stays"
    );
}

/// The id of the XDP program on `eth0` in `ns`, as `ip -d link` shows it.
fn xdp_prog_id(ns: &Netns) -> Option<u32> {
    let out = ns.ip(&["-d", "link", "show", "dev", "eth0"]);
    let mut words = out.split_whitespace().skip_while(|w| *w != "prog/xdp");
    words.nth(2)?.parse().ok()
}

/// Waits until the agent's election runs (its signal handlers are in place by then).
fn wait_running(p: &Proc) {
    wait_for("the agent's first state", T, || {
        p.stderr_lines()
            .iter()
            .any(|l| l.contains("Entering BACKUP STATE"))
            .then_some(())
    });
}

/// A crashed agent's XDP program stays on the interface (the kernel does not tear it down under
/// rtnl_mutex while a peer is taking over); the next agent replaces it, `cleanup` removes it, a
/// graceful stop detaches it.
#[test]
fn the_xdp_program_outlives_a_crash_until_the_next_agent_or_cleanup() {
    ipf_testbed::skip_unless_root!();
    let lab = Lab::new("xc");
    let a_ns = &lab.a;
    let dir = TempDir::new("ipf-xdpcrash");
    let file = dir.path().join("ipf.conf");
    std::fs::write(
        &file,
        keepalived_conf(3, &[instance("VI_1", 51, 150, "", &["192.0.2.100/24"])]),
    )
    .unwrap();
    let socket = |n: &str| dir.path().join(format!("{n}.sock"));
    assert_eq!(xdp_prog_id(a_ns), None);

    let mut first = agent_with(a_ns, &file, &socket("first"));
    let id1 = wait_for("the first agent's program", T, || xdp_prog_id(a_ns));
    first.signal(libc::SIGKILL);
    first.wait_exit(T);
    assert_eq!(xdp_prog_id(a_ns), Some(id1), "a crash leaves the program attached");

    let mut second = agent_with(a_ns, &file, &socket("second"));
    let id2 = wait_for("the second agent to replace the program", T, || {
        xdp_prog_id(a_ns).filter(|id| *id != id1)
    });
    wait_for("the second agent to master the VIP", T, || {
        holds(a_ns, "192.0.2.100").then_some(())
    });
    assert!(
        second
            .stderr_lines()
            .iter()
            .any(|l| l.contains("replacing the program a previous agent left")),
        "says it adopted the old attachment"
    );
    // A second agent on the same interface must not take a running agent's program.
    let mut cmd = a_ns.command(agent_bin());
    cmd.args([
        "run",
        "--vip-lease-secs",
        "0",
        "--metrics-addr",
        "off",
        "--status-socket",
    ])
    .arg(socket("intruder"))
    .arg("--config")
    .arg(&file);
    let mut intruder = Proc::spawn("ipf-agent", cmd);
    wait_for("the intruder to fall back to the raw socket", T, || {
        intruder
            .stderr_lines()
            .iter()
            .any(|l| l.contains("raw-socket receive path"))
            .then_some(())
    });
    intruder.signal(libc::SIGKILL);
    intruder.wait_exit(T);
    assert_eq!(xdp_prog_id(a_ns), Some(id2), "the running agent's program stays");
    second.signal(libc::SIGKILL);
    second.wait_exit(T);
    assert_eq!(xdp_prog_id(a_ns), Some(id2));

    let out = a_ns
        .command(agent_bin())
        .args(["cleanup", "--config"])
        .arg(&file)
        .arg("--status-socket")
        .arg(socket("second"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        report.contains(&format!("detached XDP program {id2} from eth0")),
        "{report}"
    );
    assert!(!a_ns.has_xdp("eth0"), "cleanup detached it");

    // An agent that does not use XDP removes a crashed one's program, which would go on filtering.
    let mut third = agent_with(a_ns, &file, &socket("third"));
    wait_for("the third agent's program", T, || xdp_prog_id(a_ns));
    third.signal(libc::SIGKILL);
    third.wait_exit(T);
    let mut cmd = a_ns.command(agent_bin());
    cmd.args(["run", "--xdp-mode", "off", "--vip-lease-secs", "0", "--status-socket"])
        .arg(socket("fourth"))
        .arg("--config")
        .arg(&file);
    let mut fourth = Proc::spawn("ipf-agent", cmd);
    wait_for("the raw-socket agent to detach the old program", T, || {
        (!a_ns.has_xdp("eth0")).then_some(())
    });
    wait_running(&fourth);
    fourth.signal(libc::SIGTERM);
    assert!(fourth.wait_exit(T).success());

    let mut fifth = agent_with(a_ns, &file, &socket("fifth"));
    wait_for("the fifth agent's program", T, || xdp_prog_id(a_ns));
    wait_running(&fifth);
    fifth.signal(libc::SIGTERM);
    assert!(fifth.wait_exit(T).success());
    assert!(!a_ns.has_xdp("eth0"), "a graceful stop detaches it");
}

#[test]
fn keepalived_conf_notify_scripts_get_keepalived_argv() {
    ipf_testbed::skip_unless_root!();
    let lab = Lab::new("nt");
    let a_ns = &lab.a;
    let dir = TempDir::new("ipf-notify");
    let log = dir.path().join("notify.log");
    let script = |name: &str| {
        let path = dir.path().join(format!("{name}.sh"));
        std::fs::write(
            &path,
            format!("#!/bin/sh\necho \"{name} $#:$*\" >> {}\n", log.display()),
        )
        .unwrap();
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        path.display().to_string()
    };
    let (any, master, backup, stop) = (script("any"), script("master"), script("backup"), script("stop"));
    let file = dir.path().join("a.conf");
    let extra = format!(
        "  notify \"{any}\"\n  notify_master \"{master}\"\n  notify_backup \"{backup}\"\n  notify_stop \"{stop}\"\n"
    );
    std::fs::write(
        &file,
        keepalived_conf(
            3,
            &[instance("VI_1", 51, 150, "", &["192.0.2.100/24"])
                .replace("  virtual_ipaddress", &format!("{extra}  virtual_ipaddress"))],
        ),
    )
    .unwrap();
    let mut a = agent_with(a_ns, &file, &dir.path().join("a.sock"));
    let lines = || std::fs::read_to_string(&log).unwrap_or_default();
    wait_for("BACKUP then MASTER notifications", T, || {
        (lines().lines().count() >= 4).then_some(())
    });
    a.signal(libc::SIGTERM);
    assert!(a.wait_exit(T).success());
    wait_for("the STOP notifications", T, || {
        (lines().lines().count() >= 6).then_some(())
    });
    let got: Vec<String> = lines().lines().map(str::to_owned).collect();
    // Each state's own script with no arguments, then `notify` with keepalived's four, in order per
    // script (they run detached, so the two of one change may land in either order).
    let of = |prefix: &str| -> Vec<String> { got.iter().filter(|l| l.starts_with(prefix)).cloned().collect() };
    assert_eq!(
        of("any"),
        [
            "any 4:INSTANCE VI_1 BACKUP 150",
            "any 4:INSTANCE VI_1 MASTER 150",
            "any 4:INSTANCE VI_1 STOP 150"
        ],
        "{got:?}"
    );
    assert_eq!(of("backup"), ["backup 0:"], "{got:?}");
    assert_eq!(of("master"), ["master 0:"], "{got:?}");
    assert_eq!(of("stop"), ["stop 0:"], "{got:?}");
}

#[test]
fn check_config_names_the_variable_and_value_or_prints_the_configuration() {
    ipf_testbed::skip_unless_root!();
    let lab = Lab::new("cc");
    let a_ns = &lab.a;
    let check_config = |env: &[(&str, &str)]| {
        let out = a_ns
            .command(agent_bin())
            .arg("check-config")
            .envs(env.iter().copied())
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    for (env, needle) in [
        (
            vec![
                ("OPENSHIFT_HA_VIRTUAL_IPS", "192.0.2.10"),
                ("OPENSHIFT_HA_VIP_GROUPS", "abc"),
            ],
            "OPENSHIFT_HA_VIP_GROUPS=\"abc\"",
        ),
        (
            vec![("OPENSHIFT_HA_VIRTUAL_IPS", "192.0.2.10,10.0.0.x")],
            "\"10.0.0.x\"",
        ),
        (
            vec![("KEEPALIVED_VIRTUAL_IPADDRESS_1", "192.0.2.300/24")],
            "KEEPALIVED_VIRTUAL_IPADDRESS_1=\"192.0.2.300/24\"",
        ),
        (
            vec![
                ("KEEPALIVED_VIRTUAL_IPADDRESS_1", "192.0.2.10/24"),
                ("KEEPALIVED_UNICAST_PEER_x", "192.0.2.2"),
            ],
            "KEEPALIVED_UNICAST_PEER_x",
        ),
        (
            vec![
                ("OPENSHIFT_HA_VIRTUAL_IPS", "192.0.2.10"),
                ("OPENSHIFT_HA_NETWORK_INTERFACE", "nosuch0"),
            ],
            "nosuch0",
        ),
    ] {
        let (ok, _, err) = check_config(&env);
        assert!(!ok, "{env:?} is accepted");
        assert!(err.contains(needle), "{env:?}: {err}");
    }
    let (ok, out, err) = check_config(&[
        ("OPENSHIFT_HA_VIRTUAL_IPS", "192.0.2.10-12"),
        ("OPENSHIFT_HA_VIP_GROUPS", "2"),
        ("OPENSHIFT_HA_CONFIG_NAME", "web-vips"),
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("source: OPENSHIFT_HA_* environment"), "{out}");
    assert!(out.contains("instance web_vips_VIP_1: eth0 vrid 1 V4 VRRPv2"), "{out}");
    assert!(out.contains("vips: 192.0.2.12/32"), "{out}");
    assert!(
        out.contains("check chk_web_vips: TCP connect to this node's port 80"),
        "{out}"
    );
}
