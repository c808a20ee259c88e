//! What a container's environment changes for the agent, without a container runtime: NODE_IP picks
//! the advert source among several addresses (seen on the wire by the peer), an XDP slot held by
//! another program means the raw-socket path with one clear line (and that path carries the election), a read-only /proc/sys gives one
//! warning for all VIPs, and logs in a pipe carry no escape sequences (`--log-format json` gives
//! JSON lines). Needs root; skips with a message otherwise.
#![allow(clippy::unwrap_used, reason = "tests")]

use std::{path::Path, process::Command, time::Duration};

use ipf_testbed::{Netns, Proc, Switch, TempDir, addresses, http_get, spawn_monitor, wait_for};
use ipf_tests::{
    agent_bin, datapath_mode,
    holders::{Holders, Step},
};
use serde_json::Value;

const T: Duration = Duration::from_secs(20);

fn agent(ns: &Netns, socket: &Path, priority: u8, env: &[(&str, &str)], extra: &[&str]) -> Proc {
    let mut cmd = ns.command(agent_bin());
    cmd.args(["run", "-i", "eth0", "--status-socket"])
        .arg(socket)
        .args(extra);
    if !extra.contains(&"--metrics-addr") {
        cmd.args(["--metrics-addr", "off"]);
    }
    cmd.args([
        "--instance",
        &format!("name=VI_51,vrid=51,priority={priority},interval=100,version=3,vip=192.0.2.100/24,vip=192.0.2.101/24"),
    ]);
    for (k, v) in env {
        cmd.env(k, v);
    }
    Proc::spawn("ipf-agent", cmd)
}

#[test]
fn node_ip_is_the_advert_source_among_several_addresses() {
    ipf_testbed::skip_unless_root!();
    let switch = Switch::new("ipf-nis");
    let a = Netns::new("ipf-nia");
    let b = Netns::new("ipf-nib");
    // The node's own address is the second one on the interface.
    switch.attach(&a, "eth0", &["192.0.2.1/24", "192.0.2.9/24"], "pa");
    switch.attach(&b, "eth0", &["192.0.2.2/24"], "pb");
    let dir = TempDir::new("ipf-ni");
    let (sa, sb) = (dir.path().join("a.sock"), dir.path().join("b.sock"));
    let _a = agent(&a, &sa, 200, &[("NODE_IP", "192.0.2.9")], &[]);
    let _b = agent(&b, &sb, 100, &[], &[]);
    let seen = wait_for("the backup to see the master's advert source", T, || {
        let s = ipf_tests::agent_status(&b, &sb);
        let i = s.first()?;
        (i["state"] == "BACKUP" && !i["master"].is_null()).then(|| i["master"].clone())
    });
    assert_eq!(seen, "192.0.2.9", "adverts come from NODE_IP");
    // The master names itself by its source address too.
    let own = ipf_tests::agent_status(&a, &sa);
    assert_eq!(
        (&own[0]["state"], &own[0]["master"]),
        (&"MASTER".into(), &"192.0.2.9".into())
    );

    // A malformed NODE_IP is an error naming it, before anything is touched.
    let c = Netns::new("ipf-nic");
    switch.attach(&c, "eth0", &["192.0.2.3/24"], "pc");
    let mut bad = agent(&c, &dir.path().join("c.sock"), 100, &[("NODE_IP", "192.0.2.x")], &[]);
    let code = bad.wait_exit(T);
    assert!(!code.success());
    let err = bad.stderr_lines().join("\n");
    assert!(err.contains("NODE_IP=\"192.0.2.x\""), "{err}");
    assert!(!addresses(&c, "eth0").iter().any(|x| x == "192.0.2.100"));
}

/// `--xdp-mode auto` on an interface whose XDP slot another program holds: one clear line, the
/// raw-socket path in the metrics, and that path really carries the election. The fallback node has
/// the lower priority, so only the adverts it receives keep it Backup: it names the master it hears,
/// takes over when that master is killed, yields when it returns and takes over at once on its
/// priority-0 release. Never two holders of the VIP on the way.
#[test]
fn xdp_slot_held_by_another_program_falls_back_and_elects_on_the_raw_socket_path() {
    ipf_testbed::skip_unless_root!();
    let interval = Duration::from_millis(100);
    let switch = Switch::new("ipf-xss");
    let a = Netns::new("ipf-xsa");
    let b = Netns::new("ipf-xsb");
    switch.attach(&a, "eth0", &["192.0.2.1/24"], "pa");
    switch.attach(&b, "eth0", &["192.0.2.2/24"], "pb");
    let holders = Holders::start("192.0.2.100", &[("a", &a, "eth0"), ("b", &b, "eth0")]);
    // Another program in the slot: the datapath monitor holds it through its own link (and passes
    // valid adverts on to the stack, where the fallback's socket reads them).
    let monitor = spawn_monitor(&a, &agent_bin(), &["-i", "eth0", "--vrid", "51,version=3,interval=100"]);
    wait_for("the other program to hold the XDP slot", T, || {
        a.has_xdp("eth0").then_some(())
    });
    let dir = TempDir::new("ipf-xs");
    let (sa, sb) = (dir.path().join("a.sock"), dir.path().join("b.sock"));
    let master_b = agent(&b, &sb, 200, &[], &[]);
    holders.wait_owner("b", Step::at(interval));
    let fallback = agent(&a, &sa, 100, &[], &["--metrics-addr", "127.0.0.1:9477"]);
    let backup_hearing_b = || {
        wait_for(
            "a to be Backup naming b as master, from the adverts it receives",
            T,
            || {
                let s = ipf_tests::agent_status(&a, &sa);
                (s.first()?["state"] == "BACKUP" && s[0]["master"] == "192.0.2.2").then_some(())
            },
        )
    };
    backup_hearing_b();
    holders.wait_owner("b", Step::joining(interval));
    let logs = fallback.stderr_lines();
    let held: Vec<&String> = logs.iter().filter(|l| l.contains("held by another program")).collect();
    assert_eq!(held.len(), 1, "one clear line:\n{}", logs.join("\n"));
    assert!(held[0].contains("raw-socket"), "{}", held[0]);
    assert!(
        !logs.iter().any(|l| l.contains("XDP attach failed")),
        "{}",
        logs.join("\n")
    );
    assert_eq!(
        wait_for("a's datapath mode in its metrics", T, || datapath_mode(&a, "eth0")),
        "raw-socket"
    );

    // b killed: a's master-down timer, fed by the raw-socket path, runs out.
    drop(master_b);
    holders.wait_owner("a", Step::after_kill(interval));
    // b back with its higher priority: a hears it and yields.
    let mut master_b = agent(&b, &sb, 200, &[], &[]);
    holders.wait_owner("b", Step::at(interval));
    backup_hearing_b();
    // b stops gracefully: a takes over on its priority-0 advert, which it counts.
    master_b.signal(libc::SIGTERM);
    assert!(master_b.wait_exit(T).success());
    holders.wait_owner("a", Step::at(interval));
    wait_for("a to count b's priority-0 advert", T, || {
        let (_, body) = http_get(&a, [127, 0, 0, 1].into(), 9477, "/metrics")?;
        body.lines()
            .filter(|l| l.starts_with("ipf_vrrp_priority_zero_received_total{"))
            .any(|l| {
                l.rsplit_once(' ')
                    .is_some_and(|(_, v)| v.parse::<f64>().is_ok_and(|v| v >= 1.0))
            })
            .then_some(())
    });
    drop(fallback);
    drop(monitor);
}

#[test]
fn read_only_proc_sys_is_one_warning_for_every_vip() {
    ipf_testbed::skip_unless_root!();
    let switch = Switch::new("ipf-ros");
    let a = Netns::new("ipf-roa");
    switch.attach(&a, "eth0", &["192.0.2.1/24"], "pa");
    let dir = TempDir::new("ipf-ro");
    let sock = dir.path().join("a.sock");
    // A private mount namespace whose /proc/sys is read-only, as in a non-privileged container.
    let script = format!(
        "mount --make-rprivate / && mount --bind /proc/sys /proc/sys && mount -o remount,bind,ro /proc/sys && \
         exec ip netns exec {} {} run -i eth0 --metrics-addr off --status-socket {} --instance \
         name=VI_51,vrid=51,priority=200,interval=100,version=3,vip=192.0.2.100/24,vip=192.0.2.101/24",
        a.name,
        agent_bin().display(),
        sock.display()
    );
    let mut cmd = Command::new("unshare");
    cmd.args(["--mount", "sh", "-c", &script]);
    let agent = Proc::spawn("ipf-agent", cmd);
    wait_for("both VIPs on the master", T, || {
        let have = addresses(&a, "eth0");
        (have.iter().any(|x| x == "192.0.2.100") && have.iter().any(|x| x == "192.0.2.101")).then_some(())
    });
    let logs = agent.stderr_lines();
    let warned: Vec<&String> = logs.iter().filter(|l| l.contains("/proc/sys is read-only")).collect();
    assert_eq!(warned.len(), 1, "{}", logs.join("\n"));
    assert!(warned[0].contains("promote_secondaries=1"), "{}", warned[0]);
}

#[test]
fn logs_in_a_pipe_have_no_escape_sequences_and_json_is_json() {
    // Not root: a configuration error after the first log line is enough.
    let run = |extra: &[&str]| {
        let out = Command::new(agent_bin())
            .args(extra)
            .args([
                "run",
                "-i",
                "ipf-no-such-if0",
                "--instance",
                "name=VI_1,vrid=1,priority=100,vip=192.0.2.1/32",
            ])
            .env_remove("NO_COLOR")
            .env_remove("RUST_LOG")
            .output()
            .unwrap();
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let text = run(&[]);
    assert!(text.contains("configuration from the command-line flags"), "{text}");
    assert!(!text.contains('\u{1b}'), "escape sequences in a pipe: {text:?}");
    let json = run(&["--log-format", "json"]);
    let line = json
        .lines()
        .find(|l| l.contains("configuration from"))
        .unwrap_or_else(|| panic!("{json}"));
    let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
    assert_eq!(v["level"], "INFO");
    assert!(v["fields"]["message"].as_str().unwrap().contains("command-line flags"));
}
