//! The agent's /metrics, /healthz and /readyz in a two-node lab: the exposition passes
//! `promtool check metrics` (Debian's prometheus package), and the series follow a failover. Needs root.
#![allow(clippy::unwrap_used, reason = "tests")]

use std::{io::Write as _, net::IpAddr, path::Path, process::Stdio, time::Duration};

use ipf_testbed::{Netns, Proc, Switch, TempDir, http_get, wait_for};
use ipf_tests::agent_bin;

const T: Duration = Duration::from_secs(20);
const PORT: u16 = 9477;

fn agent(ns: &Netns, priority: u8, socket: &Path) -> Proc {
    let mut cmd = ns.command(agent_bin());
    cmd.args(["run", "-i", "eth0", "--status-socket"]).arg(socket);
    cmd.args([
        "--instance",
        &format!("name=VI_51,vrid=51,priority={priority},interval=100,vip=192.0.2.100/24"),
    ]);
    Proc::spawn("ipf-agent", cmd)
}

fn localhost() -> IpAddr {
    IpAddr::from([127, 0, 0, 1])
}

/// The value of the series `name{labels}` (labels as in the exposition, e.g. `instance="VI_51"`).
fn value(exposition: &str, name: &str, labels: &[&str]) -> Option<f64> {
    exposition.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (series, v) = l.rsplit_once(' ')?;
        let matches = series.starts_with(&format!("{name}{{")) && labels.iter().all(|lab| series.contains(lab));
        matches.then(|| v.parse().ok()).flatten()
    })
}

fn metrics(ns: &Netns) -> Option<String> {
    http_get(ns, localhost(), PORT, "/metrics")
        .filter(|(s, _)| *s == 200)
        .map(|(_, b)| b)
}

fn wait_value(ns: &Netns, what: &str, name: &str, want: impl Fn(f64) -> bool) -> String {
    wait_for(what, T, || {
        metrics(ns).filter(|m| value(m, name, &["instance=\"VI_51\""]).is_some_and(&want))
    })
}

fn promtool_check(exposition: &str) {
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus) is installed by cargo xtask setup");
    child.stdin.take().unwrap().write_all(exposition.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn metrics_and_health_follow_a_failover() {
    ipf_testbed::skip_unless_root!();
    let switch = Switch::new("ipf-ms");
    let a_ns = Netns::new("ipf-ma");
    let b_ns = Netns::new("ipf-mb");
    switch.attach(&a_ns, "eth0", &["192.0.2.1/24"], "pa");
    switch.attach(&b_ns, "eth0", &["192.0.2.2/24"], "pb");
    let dir = TempDir::new("ipf-mst");
    let (sock_a, sock_b) = (dir.path().join("a.sock"), dir.path().join("b.sock"));
    let a = agent(&a_ns, 150, &sock_a);
    let _b = agent(&b_ns, 100, &sock_b);

    wait_value(&a_ns, "A to be master", "ipf_vrrp_state", |v| v == 2.0);
    // The announcements follow the VIPs asynchronously.
    let ma = wait_value(&a_ns, "A's gratuitous ARPs", "ipf_vrrp_gratuitous_sent_total", |v| {
        v >= 5.0
    });
    let mb = wait_value(
        &b_ns,
        "B to count A's adverts",
        "ipf_vrrp_adverts_received_total",
        |v| v >= 5.0,
    );
    promtool_check(&ma);
    promtool_check(&mb);
    assert_eq!(value(&mb, "ipf_vrrp_state", &[]), Some(1.0), "B is backup");
    assert_eq!(value(&ma, "ipf_vrrp_became_master_total", &[]), Some(1.0));
    assert_eq!(
        value(
            &ma,
            "ipf_vrrp_configured_priority",
            &["vrid=\"51\"", "interface=\"eth0\""]
        ),
        Some(150.0)
    );
    assert!(value(&ma, "ipf_vrrp_adverts_sent_total", &[]).unwrap() >= 1.0);
    assert_eq!(value(&ma, "ipf_datapath_mode", &["mode=\"xdp-driver\""]), Some(1.0));
    assert!(value(&mb, "ipf_datapath_packets_total", &["kind=\"advert\""]).unwrap() >= 5.0);
    assert_eq!(
        value(&mb, "ipf_datapath_invalid_packets_total", &["reason=\"checksum_err\""]),
        Some(0.0)
    );
    for path in ["/healthz", "/readyz"] {
        assert_eq!(
            http_get(&a_ns, localhost(), PORT, path).map(|(s, _)| s),
            Some(200),
            "{path}"
        );
    }

    // A stops gracefully: B sees priority 0 and takes over; its series say so. (B may already have
    // been master once while both started.)
    let became = value(&metrics(&b_ns).unwrap(), "ipf_vrrp_became_master_total", &[]).unwrap();
    a.signal(libc::SIGTERM);
    let mb = wait_value(&b_ns, "B to become master", "ipf_vrrp_state", |v| v == 2.0);
    assert_eq!(value(&mb, "ipf_vrrp_became_master_total", &[]), Some(became + 1.0));
    assert!(value(&mb, "ipf_vrrp_priority_zero_received_total", &[]).unwrap() >= 1.0);
    assert!(value(&mb, "ipf_vrrp_last_transition_timestamp_seconds", &[]).unwrap() > 1.7e9);
    promtool_check(&mb);
    assert_eq!(status(&sock_b)[0]["state"], "MASTER");
    assert_eq!(status(&sock_b)[0]["master"], "192.0.2.2");
}

fn status(socket: &Path) -> Vec<serde_json::Value> {
    let out = std::process::Command::new(agent_bin())
        .arg("status")
        .arg("--json")
        .arg("--socket")
        .arg(socket)
        .output()
        .unwrap();
    assert!(out.status.success(), "status: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}
