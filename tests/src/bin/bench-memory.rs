//! `cargo xtask bench memory`: resident memory of an agent running 255 VRRP instances (one VIP each),
//! all Master, with the datapath attached and /metrics scraped. Prints the figure (target: < 32 MiB).
#![allow(clippy::unwrap_used, reason = "benchmark binary")]

use std::{net::IpAddr, time::Duration};

use ipf_testbed::{Netns, Proc, http_get, veth, wait_for};

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

fn main() {
    let node = Netns::new("ipf-mem");
    let peer = Netns::new("ipf-mep");
    veth(&node, "eth0", &["192.0.2.1/24"], &peer, "eth0", &["192.0.2.2/24"]);
    let mut cmd = node.command(ipf_tests::agent_bin());
    cmd.args(["run", "-i", "eth0", "--status-socket", "off", "--garp-repeat", "1"]);
    for vrid in 1..=255u32 {
        cmd.arg("--instance").arg(format!(
            "vrid={vrid},priority=100,interval=1000,vip=198.18.{}.{}/32",
            vrid / 256,
            vrid % 256
        ));
    }
    cmd.env("RUST_LOG", "warn");
    let agent = Proc::spawn("ipf-agent", cmd);
    let lo = IpAddr::from([127, 0, 0, 1]);
    let masters = || {
        let (_, body) = http_get(&node, lo, 9477, "/metrics")?;
        Some(
            body.lines()
                .filter(|l| l.starts_with("ipf_vrrp_state{") && l.ends_with(" 2"))
                .count(),
        )
    };
    wait_for("255 instances to be Master", Duration::from_secs(60), || {
        masters().filter(|n| *n == 255)
    });
    // A few more seconds of adverts, lease renewals and scrapes before reading the figure.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while std::time::Instant::now() < deadline {
        masters();
        std::thread::sleep(Duration::from_millis(500));
    }
    let kib = rss_kib(agent.child.id());
    println!(
        "memory: ipf-agent with 255 instances (255 VIPs, all Master, XDP attached): VmRSS {:.1} MiB",
        kib as f64 / 1024.0
    );
}
