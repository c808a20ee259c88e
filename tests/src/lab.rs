//! Two ipf nodes on a bridge running a keepalived.conf, for the reload, election and probe tests:
//! the lab, the agent, and what a test reads back from it (addresses, log lines, status, metrics,
//! adverts on the wire).

use std::{
    net::{IpAddr, Ipv4Addr},
    path::{Path, PathBuf},
    time::Duration,
};

use ipf_testbed::{Netns, Proc, Switch, TempDir, http_get, wait_for};

use crate::{
    agent_bin,
    trace::{Capture, Ns, Seen},
};

/// Long enough for any one step of these tests on a loaded machine.
pub const T: Duration = Duration::from_secs(20);

/// Node a's and node b's own addresses on the bridge.
pub const A_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
pub const B_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);

/// A bridge with nodes a (192.0.2.1) and b (192.0.2.2) on `eth0`, and a directory for their files.
pub struct Lab {
    pub a: Netns,
    pub b: Netns,
    pub dir: TempDir,
    _switch: Switch,
}

impl Lab {
    pub fn new(tag: &str) -> Lab {
        let switch = Switch::new(&format!("ipf-{tag}s"));
        let a = Netns::new(&format!("ipf-{tag}a"));
        let b = Netns::new(&format!("ipf-{tag}b"));
        switch.attach(&a, "eth0", &[&format!("{A_IP}/24")], "pa");
        switch.attach(&b, "eth0", &[&format!("{B_IP}/24")], "pb");
        Lab {
            a,
            b,
            dir: TempDir::new(&format!("ipf-{tag}")),
            _switch: switch,
        }
    }

    /// Node `node`'s keepalived.conf.
    pub fn file(&self, node: &str) -> PathBuf {
        self.dir.path().join(format!("{node}.conf"))
    }

    /// Node `node`'s status socket.
    pub fn socket(&self, node: &str) -> PathBuf {
        self.dir.path().join(format!("{node}.sock"))
    }

    /// Writes node `node`'s keepalived.conf (VRRPv3) with these `vrrp_instance` blocks.
    pub fn write(&self, node: &str, instances: &[String]) {
        std::fs::write(self.file(node), ipf_testbed::keepalived_conf(3, instances)).unwrap();
    }

    /// Starts an agent in `ns` on node `node`'s file and socket (leases off: these tests stop
    /// agents gracefully or look at nothing a lease would change).
    pub fn agent(&self, ns: &Netns, node: &str) -> Proc {
        agent_with(ns, &self.file(node), &self.socket(node))
    }
}

/// Starts an agent in `ns` on keepalived.conf `file` with status socket `socket` (leases off).
pub fn agent_with(ns: &Netns, file: &Path, socket: &Path) -> Proc {
    run_config(ns, file, socket, &["--vip-lease-secs", "0"])
}

/// `ipf-agent run FLAGS --status-socket SOCKET --config FILE` in `ns`.
pub fn run_config(ns: &Netns, file: &Path, socket: &Path, flags: &[&str]) -> Proc {
    let mut cmd = ns.command(agent_bin());
    cmd.arg("run")
        .args(flags)
        .arg("--status-socket")
        .arg(socket)
        .arg("--config")
        .arg(file);
    Proc::spawn("ipf-agent", cmd)
}

/// A `vrrp_instance` on eth0 with 100 ms adverts and `extra` lines (preemption, say).
pub fn instance(name: &str, vrid: u8, priority: u8, extra: &str, vips: &[&str]) -> String {
    ipf_testbed::keepalived_instance(name, vrid, priority, "0.1", extra, vips)
}

/// Whether `vip` is on the lab's `eth0` in `ns`.
pub fn holds(ns: &Netns, vip: &str) -> bool {
    crate::node::holds_on(ns, "eth0", vip)
}

/// How many of `p`'s log lines contain `needle`.
pub fn logged(p: &Proc, needle: &str) -> usize {
    p.stderr_lines().iter().filter(|l| l.contains(needle)).count()
}

/// Waits until `p` has logged the reload summary `summary` (e.g. "1 unchanged, 0 updated in place,
/// 0 restarted, 0 removed, 1 added").
pub fn wait_reloaded(p: &Proc, summary: &str) {
    let line = format!("reloaded: {summary}");
    wait_for(&format!("the log line {line:?}"), T, || {
        (logged(p, &line) == 1).then_some(())
    });
}

/// `(instance, state)` of every instance the agent behind `socket` reports, sorted by name.
pub fn states(ns: &Netns, socket: &Path) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = crate::agent_status(ns, socket)
        .iter()
        .map(|i| {
            (
                i["instance"].as_str().unwrap_or_default().to_owned(),
                i["state"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    out.sort();
    out
}

/// Whether the agent behind `socket` reports exactly these `(instance, state)` pairs.
pub fn states_are(ns: &Netns, socket: &Path, want: &[(&str, &str)]) -> bool {
    let got = states(ns, socket);
    got.len() == want.len() && got.iter().zip(want).all(|(g, w)| g.0 == w.0 && g.1 == w.1)
}

/// The HTTP status of `path` on the agent's metrics endpoint in `ns` (default 127.0.0.1:9477).
pub fn probe(ns: &Netns, path: &str) -> Option<u16> {
    http_get(ns, IpAddr::from([127, 0, 0, 1]), 9477, path).map(|(s, _)| s)
}

/// The HTTP status of `path` as [`probe`], waiting for an answer (a loaded machine may miss the
/// connect timeout once).
pub fn probe_answer(ns: &Netns, path: &str) -> u16 {
    wait_for(&format!("an answer on {path}"), T, || probe(ns, path))
}

/// VRRP adverts from `src` in `capture` between `from` and `to`: (kernel time, priority).
pub fn adverts_from(capture: &Capture, src: Ipv4Addr, from: Ns, to: Ns) -> Vec<(Ns, u8)> {
    capture
        .between(from, to)
        .iter()
        .filter_map(|f| match f.seen {
            Seen::Vrrp { src: s, priority, .. } if s == src => Some((f.at, priority)),
            _ => None,
        })
        .collect()
}
