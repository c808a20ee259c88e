//! `cargo xtask bench scale`: cost of 255 VIPs in 255 groups on three nodes, ipf against keepalived in
//! the same run. Each node gets the OpenShift ipfailover image's environment (255 VIPs, 255 groups,
//! no monitor port): at 1 s adverts ipf reads it directly (VRRPv2 with PASS auth, as the image) and
//! keepalived runs what `ipf-agent render-config` writes for it on that node; at 100 ms and 10 ms that
//! keepalived.conf is switched to VRRPv3 at the interval (v3 has no authentication) and both read the
//! same file. Prints, per implementation and interval: the time from start until every VIP is held by
//! exactly one node, CPU seconds per minute per node and in total over a steady-state window
//! (`IPF_BENCH_WINDOW_SECS`, default 60), context switches per second per node (wake-ups, which the
//! machine's load hardly changes, unlike CPU time), the resident memory of each node's process tree,
//! and the
//! ratios against the targets (CPU ≤ 1/10 and RSS ≤ 1/2 of keepalived's; electing no slower).
//! After ipf's window each node's adverts are captured and, with the agents stopped (SIGSTOP: their
//! XDP programs stay attached), replayed for another window by a thread doing nothing else
//! (`ipf_tests::floor`): the kernel's share of sending them, which no implementation avoids,
//! printed as the floor; then, with the agents gone and no XDP program on any receiver, the same
//! replay again: the bare floor, the kernel's part for any implementation (keepalived's receivers
//! run no XDP); and the ratio of what each implementation spends above the bare floor.
//! `IPF_BENCH_INTERVALS` (ms, default `1000,100,10`) picks the cases. Figures only; no pass/fail.
#![allow(clippy::unwrap_used, reason = "benchmark binary")]

use std::{
    collections::HashMap,
    path::Path,
    time::{Duration, Instant},
};

use ipf_testbed::{Keepalived, Netns, Proc, Switch, TempDir, addresses, in_netns};
use ipf_tests::{cost, floor};

const NODES: [&str; 3] = ["192.0.2.1", "192.0.2.2", "192.0.2.3"];
const GROUPS: usize = 255;

fn environment() -> Vec<(&'static str, String)> {
    vec![
        ("OPENSHIFT_HA_VIRTUAL_IPS", "198.51.100.1-255".into()),
        ("OPENSHIFT_HA_VIP_GROUPS", GROUPS.to_string()),
        ("OPENSHIFT_HA_NETWORK_INTERFACE", "eth0".into()),
        // The VRRP cost alone: a monitor port would add a TCP check per node every 2 s.
        ("OPENSHIFT_HA_MONITOR_PORT", "0".into()),
        ("OPENSHIFT_HA_CONFIG_NAME", "scale".into()),
    ]
}

fn vips() -> Vec<String> {
    (1..=GROUPS).map(|i| format!("198.51.100.{i}")).collect()
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Impl {
    Ipf,
    Keepalived,
}

enum Router {
    Ipf(Proc),
    Keepalived(Keepalived),
}

impl Router {
    fn pid(&self) -> i32 {
        match self {
            Router::Ipf(p) => p.pid(),
            Router::Keepalived(k) => k.proc.pid(),
        }
    }

    fn exited(&mut self) -> bool {
        let p = match self {
            Router::Ipf(p) => p,
            Router::Keepalived(k) => &mut k.proc,
        };
        p.child.try_wait().ok().flatten().is_some()
    }
}

/// render-config's keepalived.conf for this node, moved to VRRPv3 at `interval_ms` unless it is the
/// image's 1 s VRRPv2.
fn keepalived_conf(ns: &Netns, agent: &Path, interval_ms: u32) -> String {
    let mut cmd = ns.command(agent);
    cmd.arg("render-config").envs(environment());
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "render-config: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let conf = String::from_utf8(out.stdout).unwrap();
    if interval_ms == 1000 {
        return conf;
    }
    let advert_int = format!("{}", f64::from(interval_ms) / 1000.0);
    let mut lines = Vec::new();
    let mut skipping = 0usize;
    for line in conf.lines() {
        let word = line.split_whitespace().next().unwrap_or("");
        if skipping > 0 {
            skipping = skipping + line.matches('{').count() - line.matches('}').count();
            continue;
        }
        match word {
            // VRRPv3 has no authentication.
            "authentication" => skipping = line.matches('{').count() - line.matches('}').count(),
            "advert_int" => lines.push(line.replace(line.trim(), &format!("advert_int {advert_int}"))),
            "vrrp_version" => lines.push(line.replace(line.trim(), "vrrp_version 3")),
            "global_defs" => {
                lines.push(line.to_owned());
                if !conf.contains("vrrp_version") {
                    lines.push("   vrrp_version 3".to_owned());
                }
            }
            _ => lines.push(line.to_owned()),
        }
    }
    lines.join("\n") + "\n"
}

/// Starts `imp` on `ns`: ipf from the environment at 1 s, else ipf or keepalived with `conf`.
fn start(ns: &Netns, imp: Impl, agent: &Path, interval_ms: u32, conf: &str, dir: &TempDir) -> Router {
    match (imp, interval_ms) {
        (Impl::Ipf, 1000) => {
            let mut cmd = ns.command(agent);
            cmd.args(["run", "--status-socket", "off"])
                .envs(environment())
                .env("RUST_LOG", "warn");
            Router::Ipf(Proc::spawn("ipf-agent", cmd))
        }
        (Impl::Ipf, _) => {
            let file = dir.path().join(format!("{}.conf", ns.name));
            std::fs::write(&file, conf).unwrap();
            let mut cmd = ns.command(agent);
            cmd.args(["run", "--status-socket", "off", "--config"])
                .arg(&file)
                .env("RUST_LOG", "warn");
            Router::Ipf(Proc::spawn("ipf-agent", cmd))
        }
        (Impl::Keepalived, _) => Router::Keepalived(Keepalived::start(ns, conf)),
    }
}

/// How many nodes hold each VIP.
fn holders(nodes: &[Netns]) -> HashMap<String, usize> {
    let mut count: HashMap<String, usize> = vips().into_iter().map(|v| (v, 0)).collect();
    for ns in nodes {
        for a in addresses(ns, "eth0") {
            if let Some(c) = count.get_mut(&a) {
                *c += 1;
            }
        }
    }
    count
}

struct Figures {
    elect: Option<Duration>,
    /// CPU seconds per minute, per node.
    cpu: Vec<f64>,
    /// Context switches per second, per node (wake-ups: hardly affected by the machine's load).
    switches: Vec<f64>,
    rss_mib: Vec<f64>,
    /// VIPs held by no node or by more than one at the end of the window.
    unsettled: usize,
    load: String,
    /// ipf only: the kernel's floor under each node's adverts (see [`floor`]).
    floor: Option<Floor>,
}

struct Floor {
    /// CPU seconds per minute of the replaying thread, per node.
    cpu: Vec<f64>,
    /// The same replay once the agents are gone (no XDP program on any receiver, as with
    /// keepalived): the kernel's part alone, per node. `None` if it could not be measured.
    bare: Option<Vec<f64>>,
    /// The captured adverts, per node (one per Master: replayed once per interval).
    packets: Vec<Vec<Vec<u8>>>,
}

/// Captures each node's adverts while the agents run, then stops the agents (SIGSTOP: their XDP
/// programs stay attached and keep taking adverts, nothing of theirs runs, so the machine does only
/// the replay) and replays the adverts for `window` from all three nodes at once.
fn measure_floor(nodes: &[Netns], agents: &[&Proc], interval_ms: u32, window: Duration) -> Result<Floor, String> {
    let interval = Duration::from_millis(u64::from(interval_ms));
    let span = interval * 3 / 2 + Duration::from_millis(100);
    let packets: Vec<Vec<Vec<u8>>> = std::thread::scope(|s| {
        let handles: Vec<_> = nodes
            .iter()
            .map(|ns| s.spawn(move || in_netns(ns, || floor::capture("eth0", span))))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap().map_err(|e| format!("{e:#}")))
            .collect::<Result<_, _>>()
    })?;
    for agent in agents {
        agent.signal(libc::SIGSTOP);
    }
    let cpu = replay_all(nodes, &packets, interval_ms, window);
    for agent in agents {
        agent.signal(libc::SIGCONT);
    }
    Ok(Floor {
        cpu: cpu?,
        bare: None,
        packets,
    })
}

/// Replays `packets` (per node, as captured by [`measure_floor`]) once no node has an XDP program
/// attached: the bare floor.
fn measure_bare_floor(
    nodes: &[Netns],
    packets: &[Vec<Vec<u8>>],
    interval_ms: u32,
    window: Duration,
) -> Result<Vec<f64>, String> {
    // A killed agent leaves its program on the interface (attached through netlink, see the README's
    // datapath section): taken off here, whatever the mode; one still attached would make this the
    // floor above again.
    for ns in nodes {
        for mode in ["xdp", "xdpgeneric", "xdpdrv"] {
            let _ = ns
                .command("ip")
                .args(["link", "set", "dev", "eth0", mode, "off"])
                .stderr(std::process::Stdio::null())
                .status();
        }
    }
    if ipf_testbed::try_wait_for(Duration::from_secs(10), || {
        nodes.iter().all(|ns| !ns.has_xdp("eth0")).then_some(())
    })
    .is_none()
    {
        return Err("an XDP program is still attached after the agents exited and it was taken off".into());
    }
    replay_all(nodes, packets, interval_ms, window)
}

/// Replays each node's `packets` there for `window`, from all nodes at once, each by a thread doing
/// nothing else: CPU seconds per minute per node.
fn replay_all(
    nodes: &[Netns],
    packets: &[Vec<Vec<u8>>],
    interval_ms: u32,
    window: Duration,
) -> Result<Vec<f64>, String> {
    let interval = Duration::from_millis(u64::from(interval_ms));
    let batch = ipf_agent::vrrp::timers::ADVER_BATCH;
    std::thread::scope(|s| {
        let handles: Vec<_> = nodes
            .iter()
            .zip(packets)
            .map(|(ns, packets)| {
                s.spawn(move || in_netns(ns, || floor::replay("eth0", packets, interval, batch, window)))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap()
                    .map(|cpu| cpu * 60.0 / window.as_secs_f64())
                    .map_err(|e| format!("{e:#}"))
            })
            .collect()
    })
}

fn run(imp: Impl, agent: &Path, interval_ms: u32, window: Duration) -> Figures {
    let switch = Switch::new("ipf-ss");
    let nodes: Vec<Netns> = NODES
        .iter()
        .enumerate()
        .map(|(i, addr)| {
            let ns = Netns::new(&format!("ipf-s{}", i + 1));
            switch.attach(&ns, "eth0", &[&format!("{addr}/24")], &format!("p{}", i + 1));
            ns
        })
        .collect();
    let dir = TempDir::new("ipf-scale");
    // Configurations are rendered before the clock starts: only start-up and election are timed.
    let confs: Vec<_> = nodes.iter().map(|ns| keepalived_conf(ns, agent, interval_ms)).collect();
    let t0 = Instant::now();
    let mut routers: Vec<Router> = nodes
        .iter()
        .zip(&confs)
        .map(|(ns, conf)| start(ns, imp, agent, interval_ms, conf, &dir))
        .collect();
    // Master_Down_Interval is at most ~4 s here; a minute covers start-up under load.
    let deadline = t0 + Duration::from_secs(60);
    let mut elect = None;
    while Instant::now() < deadline {
        if holders(&nodes).values().all(|n| *n == 1) {
            elect = Some(t0.elapsed());
            break;
        }
        if routers.iter_mut().any(Router::exited) {
            eprintln!("  {imp:?} at {interval_ms} ms: a router exited during start-up");
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // Steady state: the gratuitous ARP bursts after the election are over.
    std::thread::sleep(Duration::from_secs(6));
    let load = cost::load();
    let before: Vec<f64> = routers.iter().map(|r| cost::tree_cpu_secs(r.pid())).collect();
    let switches_before: Vec<u64> = routers.iter().map(|r| cost::tree_switches(r.pid())).collect();
    let w0 = Instant::now();
    std::thread::sleep(window);
    let secs = w0.elapsed().as_secs_f64();
    let cpu: Vec<f64> = routers
        .iter()
        .zip(&before)
        .map(|(r, b)| (cost::tree_cpu_secs(r.pid()) - b) * 60.0 / secs)
        .collect();
    let switches = routers
        .iter()
        .zip(&switches_before)
        .map(|(r, b)| cost::tree_switches(r.pid()).saturating_sub(*b) as f64 / secs)
        .collect();
    let rss_mib = routers
        .iter()
        .map(|r| cost::tree_rss_kib(r.pid()) as f64 / 1024.0)
        .collect();
    let unsettled = holders(&nodes).values().filter(|n| **n != 1).count();
    // With the agents' XDP programs attached, so the receivers take the copies as their masters'.
    let agents: Vec<&Proc> = routers
        .iter()
        .filter_map(|r| match r {
            Router::Ipf(p) => Some(p),
            Router::Keepalived(_) => None,
        })
        .collect();
    let mut floor = (imp == Impl::Ipf)
        .then(|| measure_floor(&nodes, &agents, interval_ms, window))
        .and_then(|r| r.map_err(|e| eprintln!("  kernel floor not measured: {e}")).ok());
    drop(routers);
    if let Some(fl) = floor.as_mut() {
        fl.bare = measure_bare_floor(&nodes, &fl.packets, interval_ms, window)
            .map_err(|e| eprintln!("  kernel floor without XDP not measured: {e}"))
            .ok();
    }
    Figures {
        elect,
        cpu,
        switches,
        rss_mib,
        unsettled,
        load,
        floor,
    }
}

fn show(imp: Impl, f: &Figures) {
    let list = |v: &[f64]| v.iter().map(|x| format!("{x:.2}")).collect::<Vec<_>>().join(" / ");
    println!(
        "  {:<10}  elected in {:>6}  CPU s/min per node {} (total {:.2})  wake-ups/s per node {}  RSS MiB per node {}  (load {}){}",
        format!("{imp:?}"),
        f.elect.map_or("never".into(), |d| format!("{:.2} s", d.as_secs_f64())),
        list(&f.cpu),
        f.cpu.iter().sum::<f64>(),
        f.switches
            .iter()
            .map(|x| format!("{x:.0}"))
            .collect::<Vec<_>>()
            .join(" / "),
        list(&f.rss_mib),
        f.load,
        if f.unsettled > 0 {
            format!("  [{} VIPs not on exactly one node at the end]", f.unsettled)
        } else {
            String::new()
        }
    );
    if let Some(fl) = &f.floor {
        println!(
            "  {:<10}  the same adverts ({} per node an interval) replayed by a thread doing nothing else: CPU s/min per node {} (total {:.2})",
            "floor",
            fl.packets
                .iter()
                .map(|p| p.len().to_string())
                .collect::<Vec<_>>()
                .join(" / "),
            list(&fl.cpu),
            fl.cpu.iter().sum::<f64>()
        );
        if let Some(bare) = &fl.bare {
            println!(
                "  {:<10}  replayed again with the agents gone (no XDP program on the receivers, as with keepalived): CPU s/min per node {} (total {:.2})",
                "bare floor",
                list(bare),
                bare.iter().sum::<f64>()
            );
        }
    }
}

fn main() {
    let window = Duration::from_secs(
        std::env::var("IPF_BENCH_WINDOW_SECS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(60),
    );
    let intervals: Vec<u32> = std::env::var("IPF_BENCH_INTERVALS")
        .unwrap_or_else(|_| "1000,100,10".into())
        .split(',')
        .filter_map(|v| v.trim().parse().ok())
        .collect();
    let agent = ipf_tests::agent_bin();
    println!(
        "scale: {GROUPS} VIPs in {GROUPS} groups (OPENSHIFT_HA_*), 3 nodes, {} s steady-state window",
        window.as_secs()
    );
    for interval_ms in intervals {
        let label = if interval_ms == 1000 {
            "1 s adverts, VRRPv2 PASS (the image's setting)".to_owned()
        } else {
            format!("{interval_ms} ms adverts, VRRPv3")
        };
        println!("{label}:");
        let ipf = run(Impl::Ipf, &agent, interval_ms, window);
        show(Impl::Ipf, &ipf);
        let ka = run(Impl::Keepalived, &agent, interval_ms, window);
        show(Impl::Keepalived, &ka);
        let total = |f: &Figures| f.cpu.iter().sum::<f64>();
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
        let ratio = |a: f64, b: f64| {
            if b > 0.0 {
                format!("{:.2}×", a / b)
            } else {
                "n/a".into()
            }
        };
        println!(
            "  ipf / keepalived: CPU {} (target ≤ 0.10×; the floor alone {}, without XDP {}), RSS {} (target ≤ 0.50×), time to elect {} (target ≤ 1.00×)",
            ratio(total(&ipf), total(&ka)),
            ipf.floor
                .as_ref()
                .map_or("not measured".into(), |fl| ratio(fl.cpu.iter().sum(), total(&ka))),
            ipf.floor
                .as_ref()
                .and_then(|fl| fl.bare.as_ref())
                .map_or("not measured".into(), |b| ratio(b.iter().sum(), total(&ka))),
            ratio(mean(&ipf.rss_mib), mean(&ka.rss_mib)),
            match (ipf.elect, ka.elect) {
                (Some(a), Some(b)) => ratio(a.as_secs_f64(), b.as_secs_f64()),
                _ => "n/a".into(),
            }
        );
        // Context for the CPU ratio, not the target: on these veths the switch's and the receivers'
        // kernel work for each advert runs in the sender's softirq and is charged to it, whichever
        // implementation sends. The bare floor (no XDP program on the receivers) is that work for
        // both; ipf's datapath on the receivers counts as ipf's own. Without it (not measured), the
        // floor with XDP stands for both, which leaves keepalived the smaller remainder.
        if let Some(fl) = &ipf.floor {
            let (under, which) = match &fl.bare {
                Some(bare) => (bare.iter().sum::<f64>(), "the bare floor"),
                None => (fl.cpu.iter().sum::<f64>(), "the floor"),
            };
            println!(
                "  above {which} (each implementation's own work; not the target): ipf {:.2}, keepalived {:.2} s/min, {}",
                total(&ipf) - under,
                total(&ka) - under,
                ratio(total(&ipf) - under, total(&ka) - under)
            );
        }
    }
}
