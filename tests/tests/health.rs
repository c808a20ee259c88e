//! Health checks and notify scripts with two ipf-agents on a bridge: a failing check script moves the
//! VIP within fall × interval + Master_Down_Interval; a closed monitor port puts the node in FAULT and an
//! open one brings it back; the notify script gets keepalived's argv for every change. Needs root.
#![allow(clippy::unwrap_used, reason = "tests")]

use std::{
    net::IpAddr,
    path::Path,
    time::{Duration, Instant},
};

use ipf_testbed::{Netns, Proc, Switch, TempDir, http_get, spawn_responder, wait_for};
use ipf_tests::{
    agent_bin,
    node::{VI51_VIP, holds_vi51, vi51_agent},
};

const T: Duration = Duration::from_secs(20);
const VIP: &str = VI51_VIP;

fn logged(p: &Proc, needle: &str) -> bool {
    p.stderr_lines().iter().any(|l| l.contains(needle))
}

fn pair() -> (Switch, Netns, Netns) {
    let switch = Switch::new("ipf-hs");
    let a = Netns::new("ipf-ha");
    let b = Netns::new("ipf-hb");
    switch.attach(&a, "eth0", &["192.0.2.1/24"], "pa");
    switch.attach(&b, "eth0", &["192.0.2.2/24"], "pb");
    (switch, a, b)
}

#[test]
fn failing_check_script_moves_the_vip_and_notify_sees_each_change() {
    ipf_testbed::skip_unless_root!();
    let (_switch, a_ns, b_ns) = pair();
    let dir = TempDir::new("ipf-health");
    let healthy = dir.path().join("healthy");
    std::fs::write(&healthy, "").unwrap();
    let notify_log = dir.path().join("notify.log");
    let notify = dir.path().join("notify.sh");
    std::fs::write(&notify, format!("#!/bin/sh\necho \"$@\" >> {}\n", notify_log.display())).unwrap();
    std::fs::set_permissions(&notify, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let check = format!(
        "name=chk,interval=0.2,fall=2,rise=2,weight=0,script=test -f {}",
        healthy.display()
    );
    let mut a = vi51_agent(
        &a_ns,
        150,
        &["--check", &check, "--notify", notify.to_str().unwrap()],
        ",track=chk",
    );
    let _b = vi51_agent(&b_ns, 100, &[], "");
    wait_for("A to hold the VIP", T, || {
        (holds_vi51(&a_ns) && !holds_vi51(&b_ns)).then_some(())
    });

    // The check starts failing: A goes FAULT and B takes over within fall × interval + MDI (+ slack).
    std::fs::remove_file(&healthy).unwrap();
    let t0 = Instant::now();
    wait_for("B to hold the VIP alone", T, || {
        (holds_vi51(&b_ns) && !holds_vi51(&a_ns)).then_some(())
    });
    let took = t0.elapsed();
    let bound = Duration::from_millis(2 * 200 + 200) + Duration::from_millis(300 + 61) + Duration::from_millis(500);
    assert!(took < bound, "failover took {took:?}, bound {bound:?}");
    wait_for("the FAULT log line", T, || {
        logged(&a, "(VI_51) Entering FAULT STATE").then_some(())
    });
    assert!(logged(&a, "VRRP_Script(chk) failed"));

    // Healthy again: back to BACKUP, and A (150) preempts B.
    std::fs::write(&healthy, "").unwrap();
    wait_for("A to hold the VIP again", T, || {
        (holds_vi51(&a_ns) && !holds_vi51(&b_ns)).then_some(())
    });
    assert!(logged(&a, "VRRP_Script(chk) succeeded"));
    a.signal(libc::SIGTERM);
    assert!(a.wait_exit(Duration::from_secs(1)).success());

    let expected = [
        "INSTANCE VI_51 BACKUP 150",
        "INSTANCE VI_51 MASTER 150",
        "INSTANCE VI_51 FAULT 150",
        "INSTANCE VI_51 BACKUP 150",
        "INSTANCE VI_51 MASTER 150",
        "INSTANCE VI_51 STOP 150",
    ];
    let lines = wait_for("every notify call", T, || {
        let text = std::fs::read_to_string(&notify_log).unwrap_or_default();
        let lines: Vec<String> = text.lines().map(str::to_owned).collect();
        (lines.len() >= expected.len()).then_some(lines)
    });
    assert_eq!(lines, expected, "notify argv sequence");
}

#[test]
fn closed_monitor_port_means_fault_and_an_open_one_recovers() {
    ipf_testbed::skip_unless_root!();
    let (_switch, a_ns, _b_ns) = pair();
    let a = vi51_agent(
        &a_ns,
        150,
        &["--check", "name=port,tcp=8080,interval=0.2,fall=1,rise=1,weight=0"],
        ",track=port",
    );
    wait_for("A in FAULT (nothing listens on 8080)", T, || {
        logged(&a, "(VI_51) Entering FAULT STATE").then_some(())
    });
    assert!(!holds_vi51(&a_ns));
    let metric = |name: &str| {
        let (_, body) = http_get(&a_ns, IpAddr::from([127, 0, 0, 1]), 9477, "/metrics")?;
        body.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit_once(' '))
            .and_then(|(_, v)| v.parse::<f64>().ok())
    };
    assert_eq!(metric("ipf_check_up{check=\"port\"}"), Some(0.0));
    assert!(metric("ipf_check_runs_total{check=\"port\",result=\"failure\"}").unwrap_or(0.0) >= 1.0);
    assert_eq!(metric("ipf_vrrp_state{"), Some(3.0), "FAULT is 3");
    let _responder = spawn_responder(&a_ns, 8080, "a");
    wait_for("A to recover and hold the VIP", T, || holds_vi51(&a_ns).then_some(()));
    assert!(logged(&a, "VRRP_Script(port) succeeded"));
    assert_eq!(metric("ipf_check_up{check=\"port\"}"), Some(1.0));
}

#[test]
fn a_failing_check_with_a_weight_lowers_the_priority() {
    ipf_testbed::skip_unless_root!();
    let (_switch, a_ns, b_ns) = pair();
    let dir = TempDir::new("ipf-weight");
    let healthy: &Path = &dir.path().join("healthy");
    std::fs::write(healthy, "").unwrap();
    let check = format!("name=w,interval=0.2,weight=-60,script=test -f {}", healthy.display());
    let _a = vi51_agent(&a_ns, 150, &["--check", &check], ",track=w");
    let _b = vi51_agent(&b_ns, 120, &[], "");
    wait_for("A to hold the VIP", T, || {
        (holds_vi51(&a_ns) && !holds_vi51(&b_ns)).then_some(())
    });
    let first = wait_for("A's metrics", T, || instance_metrics(&a_ns));
    assert_eq!(first, (2.0, 150.0, 150.0), "A: MASTER at 150");
    // 150 - 60 = 90 < 120: B (preempt) takes over, and A stays BACKUP at 90, not FAULT.
    std::fs::remove_file(healthy).unwrap();
    wait_for("B to hold the VIP alone", T, || {
        (holds_vi51(&b_ns) && !holds_vi51(&a_ns)).then_some(())
    });
    // The check's fall (default 1) has run by now; A's state settles as B takes over.
    let (state, priority, configured) = wait_for("A to leave MASTER", T, || {
        instance_metrics(&a_ns).filter(|(state, ..)| *state != 2.0)
    });
    assert_eq!(state, 1.0, "A is BACKUP (1), not FAULT (3) or anything else");
    assert_eq!((priority, configured), (90.0, 150.0), "A's priority is 150 - 60");
    // It stays so while B advertises (a FAULT would show within a check interval).
    let until = Instant::now() + Duration::from_millis(600);
    while Instant::now() < until {
        // A scrape that missed its connect timeout on a loaded machine says nothing.
        if let Some(m) = instance_metrics(&a_ns) {
            assert_eq!(m, (1.0, 90.0, 150.0), "A: BACKUP at 90");
        }
        assert!(
            holds_vi51(&b_ns) && !holds_vi51(&a_ns),
            "the VIP moved while A was lowered"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::fs::write(healthy, "").unwrap();
    wait_for("A to take it back", T, || {
        (holds_vi51(&a_ns) && !holds_vi51(&b_ns)).then_some(())
    });
    wait_for("A: MASTER at 150 again", T, || {
        (instance_metrics(&a_ns) == Some((2.0, 150.0, 150.0))).then_some(())
    });
}

/// VI_51's `ipf_vrrp_state`, `ipf_vrrp_priority` and `ipf_vrrp_configured_priority` from the agent's
/// /metrics in `ns`.
fn instance_metrics(ns: &Netns) -> Option<(f64, f64, f64)> {
    let (_, body) = http_get(ns, IpAddr::from([127, 0, 0, 1]), 9477, "/metrics")?;
    let series = |name: &str| {
        body.lines()
            .filter(|l| l.starts_with(&format!("{name}{{")) && l.contains("instance=\"VI_51\""))
            .find_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
    };
    Some((
        series("ipf_vrrp_state")?,
        series("ipf_vrrp_priority")?,
        series("ipf_vrrp_configured_priority")?,
    ))
}

#[test]
fn a_tracked_interface_going_down_means_fault_at_once() {
    ipf_testbed::skip_unless_root!();
    let (_switch, a_ns, b_ns) = pair();
    // A second link on A, tracked: its carrier going away must fault A without waiting for a poll.
    let spare = Netns::new("ipf-hx");
    ipf_testbed::veth(&a_ns, "uplink", &[], &spare, "peer", &[]);
    let a = vi51_agent(&a_ns, 150, &[], ",track_interface=uplink");
    let _b = vi51_agent(&b_ns, 100, &[], "");
    wait_for("A to hold the VIP", T, || {
        (holds_vi51(&a_ns) && !holds_vi51(&b_ns)).then_some(())
    });
    spare.ip(&["link", "set", "peer", "down"]);
    let t0 = Instant::now();
    wait_for("the FAULT log line", T, || {
        logged(&a, "(VI_51) Entering FAULT STATE").then_some(())
    });
    assert!(
        t0.elapsed() < Duration::from_millis(500),
        "noticed after {:?}",
        t0.elapsed()
    );
    wait_for("B to hold the VIP alone", T, || {
        (holds_vi51(&b_ns) && !holds_vi51(&a_ns)).then_some(())
    });
    spare.ip(&["link", "set", "peer", "up"]);
    wait_for("A to take the VIP back", T, || {
        (holds_vi51(&a_ns) && !holds_vi51(&b_ns)).then_some(())
    });
}

/// keepalived.conf's `script_user` and `enable_script_security`: the check and the notify script run
/// as the configured user (no root groups); a script in a directory anyone can write to is refused
/// with its file and line, and the agent exits before touching an address.
#[test]
fn scripts_run_as_script_user_and_unsafe_ones_are_refused() {
    use std::os::unix::fs::PermissionsExt as _;
    ipf_testbed::skip_unless_root!();
    let (_switch, a_ns, _b_ns) = pair();
    let dir = TempDir::new("ipf-suser");
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    // The scripts (as `nobody`) write here; the scripts themselves stay root's.
    std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o777)).unwrap();
    let write_script = |name: &str, body: String| {
        let p = dir.path().join(name);
        std::fs::write(&p, body).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p
    };
    let check = write_script(
        "check.sh",
        format!("#!/bin/sh\necho \"$(id -u) $(id -G)\" > {}/check.ids\n", out.display()),
    );
    let notify = write_script(
        "notify.sh",
        format!("#!/bin/sh\necho \"$(id -u) $(id -G)\" > {}/notify.ids\n", out.display()),
    );
    let conf = dir.path().join("keepalived.conf");
    std::fs::write(
        &conf,
        format!(
            "global_defs {{\n  vrrp_version 3\n  script_user nobody\n  enable_script_security\n}}\nvrrp_script chk {{\n  script \"{}\"\n  interval 1\n}}\nvrrp_instance VI_51 {{\n  interface eth0\n  virtual_router_id 51\n  priority 150\n  advert_int 0.1\n  track_script {{\n    chk\n  }}\n  notify_master \"{}\"\n  virtual_ipaddress {{\n    {VIP}/24\n  }}\n}}\n",
            check.display(),
            notify.display()
        ),
    )
    .unwrap();
    let id = |flag: &str| {
        let out = std::process::Command::new("id")
            .args([flag, "nobody"])
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    };
    let (nobody, nogroup) = (id("-u"), id("-g"));
    let mut cmd = a_ns.command(agent_bin());
    cmd.args(["run", "--status-socket", "off", "--config"]).arg(&conf);
    let a = Proc::spawn("ipf-agent", cmd);
    wait_for("A to hold the VIP", T, || holds_vi51(&a_ns).then_some(()));
    for file in ["check.ids", "notify.ids"] {
        let ids = wait_for(&format!("{file} from the script"), T, || {
            std::fs::read_to_string(out.join(file))
                .ok()
                .filter(|s| s.ends_with('\n'))
        });
        // uid, then every group: only nobody's own, root's none.
        assert_eq!(ids.trim(), format!("{nobody} {nogroup}"), "{file}");
    }
    drop(a);
    wait_for("the VIP lease to lapse", T, || (!holds_vi51(&a_ns)).then_some(()));

    // Scripts that run as root, in a directory anyone can write to: refused at the vrrp_script's line
    // (as nobody they would need no protection).
    let text = std::fs::read_to_string(&conf).unwrap();
    std::fs::write(&conf, text.replace("script_user nobody", "script_user root")).unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    // check-config and run both refuse; run touches nothing.
    for sub in ["check-config", "run"] {
        let mut cmd = a_ns.command(agent_bin());
        cmd.args([sub, "--status-socket", "off", "--config"]).arg(&conf);
        let mut p = Proc::spawn("ipf-agent", cmd);
        let status = p.wait_exit(T);
        assert!(!status.success(), "{sub} accepted an unsafe script");
        let expected = format!(
            "{}:6: vrrp_script chk: script \"{}\": {} is writable by everyone (mode 0777); refused because enable_script_security is set",
            conf.display(),
            check.display(),
            dir.path().display()
        );
        assert!(
            p.stderr_lines()
                .iter()
                .chain(p.lines().iter())
                .any(|l| l.contains(&expected)),
            "{sub}: no {expected:?} in {:?}",
            p.stderr_lines()
        );
    }
    assert!(!holds_vi51(&a_ns));
}
