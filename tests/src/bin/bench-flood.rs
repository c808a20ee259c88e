//! `cargo xtask bench flood`: a backup under a flood of invalid VRRP, ipf against keepalived in the
//! same run. Two nodes (A priority 200, the master; B priority 100, the backup) run one VRRPv2
//! unicast instance with PASS authentication and 1 s adverts, the OpenShift image's setting; keepalived
//! runs the keepalived.conf that `ipf-agent render-config` writes for the same arguments. From a
//! third namespace on the same bridge, a generator (sendmmsg on an AF_PACKET socket, one core) sends
//! B seven kinds of invalid VRRP as fast as it can for `IPF_BENCH_FLOOD_SECS` (default 20). Prints
//! the generator's rate, what B's interface received, ipf's drop counters per reason against what was
//! sent, B's spurious takeovers and time holding the VIP, B's CPU and the machine's softirq CPU.
//! Figures only; no pass/fail.
#![allow(clippy::unwrap_used, reason = "benchmark binary")]

use std::{
    net::IpAddr,
    path::Path,
    time::{Duration, Instant},
};

use ipf_testbed::{Keepalived, Netns, Proc, Switch, addresses, http_get, in_netns, wait_for};
use ipf_tests::{cost, flood};

const VIP: &str = "192.0.2.100";
const A_ADDR: &str = "192.0.2.1";
const B_ADDR: &str = "192.0.2.2";
const X_ADDR: &str = "192.0.2.9";
const PASSWORD: &str = "secret";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Impl {
    Ipf,
    Keepalived,
}

/// A node's VRRP process: ipf-agent, or keepalived (its parent and VRRP child).
enum Router {
    Ipf(Proc),
    Keepalived(Keepalived),
}

impl Router {
    fn proc(&self) -> &Proc {
        match self {
            Router::Ipf(p) => p,
            Router::Keepalived(k) => &k.proc,
        }
    }

    /// Lines logged so far saying the instance became Master (both log it as keepalived does).
    fn masters_logged(&self) -> usize {
        let p = self.proc();
        p.lines()
            .iter()
            .chain(p.stderr_lines().iter())
            .filter(|l| l.contains("Entering MASTER STATE"))
            .count()
    }

    fn backup_logged(&self) -> bool {
        let p = self.proc();
        p.lines()
            .iter()
            .chain(p.stderr_lines().iter())
            .any(|l| l.contains("Entering BACKUP STATE"))
    }
}

fn instance_arg(priority: u8, peer: &str) -> String {
    format!("name=VI_1,vrid=51,priority={priority},version=2,interval=1000,vip={VIP}/24,peer={peer},pass={PASSWORD}")
}

fn start(ns: &Netns, imp: Impl, agent: &Path, priority: u8, peer: &str) -> Router {
    let args = ["-i", "eth0", "--instance", &instance_arg(priority, peer)];
    match imp {
        Impl::Ipf => {
            let mut cmd = ns.command(agent);
            cmd.args(["run", "--status-socket", "off"])
                .args(args)
                .env("RUST_LOG", "info");
            Router::Ipf(Proc::spawn("ipf-agent", cmd))
        }
        Impl::Keepalived => {
            let conf = ns.exec(agent.to_str().unwrap(), &[&["render-config"][..], &args[..]].concat());
            Router::Keepalived(Keepalived::start(ns, &conf))
        }
    }
}

fn mac(ns: &Netns, ifname: &str) -> [u8; 6] {
    let v: serde_json::Value = serde_json::from_str(&ns.ip(&["-j", "link", "show", "dev", ifname])).unwrap();
    let text = v[0]["address"].as_str().unwrap();
    let mut out = [0u8; 6];
    for (o, part) in out.iter_mut().zip(text.split(':')) {
        *o = u8::from_str_radix(part, 16).unwrap();
    }
    out
}

/// Packets and drops counted by the kernel on `ifname`'s receive side.
fn rx_stats(ns: &Netns, ifname: &str) -> (u64, u64) {
    let v: serde_json::Value = serde_json::from_str(&ns.ip(&["-j", "-s", "link", "show", "dev", ifname])).unwrap();
    let rx = &v[0]["stats64"]["rx"];
    (rx["packets"].as_u64().unwrap_or(0), rx["dropped"].as_u64().unwrap_or(0))
}

/// ipf's drop counters on B, by reason.
fn ipf_drops(b: &Netns) -> Vec<(String, f64)> {
    let (_, page) = http_get(b, IpAddr::from([127, 0, 0, 1]), 9477, "/metrics").unwrap_or_default();
    cost::samples(&page, "ipf_datapath_invalid_packets_total")
        .into_iter()
        .filter_map(|(labels, v)| Some((cost::label(&labels, "reason")?.to_owned(), v)))
        .collect()
}

fn run(imp: Impl, agent: &Path, secs: u64) {
    let switch = Switch::new("ipf-fs");
    let a = Netns::new("ipf-fa");
    let b = Netns::new("ipf-fb");
    let x = Netns::new("ipf-fx");
    switch.attach(&a, "eth0", &[&format!("{A_ADDR}/24")], "pa");
    switch.attach(&b, "eth0", &[&format!("{B_ADDR}/24")], "pb");
    switch.attach(&x, "eth0", &[&format!("{X_ADDR}/24")], "px");

    let ra = start(&a, imp, agent, 200, B_ADDR);
    let rb = start(&b, imp, agent, 100, A_ADDR);
    wait_for("A to hold the VIP and B to be Backup", Duration::from_secs(30), || {
        (addresses(&a, "eth0").iter().any(|v| v == VIP)
            && !addresses(&b, "eth0").iter().any(|v| v == VIP)
            && rb.backup_logged())
        .then_some(())
    });
    // A Backup sends nothing: a datagram from B (its ARP request first) teaches the bridge B's port,
    // so the flood goes to B alone.
    in_netns(&b, || {
        let s = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
        let _ = s.send_to(b"hello", (X_ADDR, 9));
    });
    std::thread::sleep(Duration::from_millis(200));
    let target = flood::Target {
        vrid: 51,
        interval_s: 1,
        password: {
            let mut p = [0u8; 8];
            p[..PASSWORD.len()].copy_from_slice(PASSWORD.as_bytes());
            p
        },
        dst: B_ADDR.parse().unwrap(),
        dst_mac: mac(&b, "eth0"),
        peer: A_ADDR.parse().unwrap(),
        own: X_ADDR.parse().unwrap(),
        own_mac: mac(&x, "eth0"),
    };
    let kinds = flood::kinds(&target);

    let b_pid = rb.proc().pid();
    let drops_before = ipf_drops(&b);
    let masters_before = rb.masters_logged();
    let (rx_before, rx_drop_before) = rx_stats(&b, "eth0");
    let cpu_before = cost::tree_cpu_secs(b_pid);
    let softirq_before = cost::softirq_secs();
    let load = cost::load();
    let t0 = Instant::now();
    let mut samples = 0u32;
    let mut held = 0u32;
    let (counts, took) = std::thread::scope(|s| {
        let generator = s.spawn(|| in_netns(&x, || flood::send("eth0", &kinds, Duration::from_secs(secs))));
        // Who holds the VIP, every 250 ms while the flood lasts.
        while !generator.is_finished() {
            samples += 1;
            if addresses(&b, "eth0").iter().any(|v| v == VIP) {
                held += 1;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        generator.join().unwrap().unwrap()
    });
    let window = t0.elapsed().as_secs_f64();
    let cpu = cost::tree_cpu_secs(b_pid) - cpu_before;
    let softirq = cost::softirq_secs() - softirq_before;
    let (rx_after, rx_drop_after) = rx_stats(&b, "eth0");
    // Counters are read after the last packets have been through the program.
    std::thread::sleep(Duration::from_millis(500));
    let drops_after = ipf_drops(&b);
    let takeovers = rb.masters_logged() - masters_before;
    let a_still = addresses(&a, "eth0").iter().any(|v| v == VIP);

    let sent: u64 = counts.iter().sum();
    let rate = sent as f64 / took.as_secs_f64();
    println!(
        "{imp:?} as the backup (load before: {load}):\n  generator: {sent} packets in {:.1} s = {:.0} packets/s ({:.2} Mpps)",
        took.as_secs_f64(),
        rate,
        rate / 1e6
    );
    println!(
        "  B's eth0 received {} packets, dropped {} (kernel counters)",
        rx_after - rx_before,
        rx_drop_after - rx_drop_before
    );
    for (k, n) in kinds.iter().zip(&counts) {
        let line = format!("    {:<24} sent {n:>10}", k.name);
        if imp == Impl::Ipf {
            let get = |v: &[(String, f64)]| v.iter().find(|(r, _)| r == k.reason).map_or(0.0, |(_, v)| *v);
            let counted = get(&drops_after) - get(&drops_before);
            println!(
                "{line}   counted as {:<15} {counted:>10.0} ({:.1} %)",
                k.reason,
                100.0 * counted / (*n).max(1) as f64
            );
        } else {
            println!("{line}");
        }
    }
    println!(
        "  spurious takeovers by B: {takeovers}; B held the VIP in {held} of {samples} samples ({:.0} % of the flood); A holds it after: {a_still}",
        100.0 * f64::from(held) / f64::from(samples.max(1))
    );
    println!(
        "  B's {} CPU: {:.3} s in {window:.1} s ({:.1} % of a core); softirq CPU, whole machine: {:.1} % of a core",
        match imp {
            Impl::Ipf => "ipf-agent",
            Impl::Keepalived => "keepalived (parent and VRRP child)",
        },
        cpu,
        100.0 * cpu / window,
        100.0 * softirq / window
    );
    drop((ra, rb));
}

fn main() {
    let secs: u64 = std::env::var("IPF_BENCH_FLOOD_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let agent = ipf_tests::agent_bin();
    println!(
        "flood: {secs} s of invalid VRRP (7 kinds, round-robin) at a backup: VRRPv2 unicast, PASS auth, 1 s adverts; one sending core"
    );
    for imp in [Impl::Ipf, Impl::Keepalived] {
        run(imp, &agent, secs);
    }
}
