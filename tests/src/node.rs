//! Small pieces the end-to-end agent tests share: nodes on a bridge, who holds an address, the
//! agent's log, and scripts written for a test.

use std::{os::unix::fs::PermissionsExt as _, path::Path};

use ipf_testbed::{Netns, Proc, Switch, addresses};

use crate::{
    agent_bin,
    trace::{Ns, log_events},
};

/// The VIP of instance VI_51 in the two-node agent tests.
pub const VI51_VIP: &str = "192.0.2.100";

/// An agent on eth0 (status socket off) running instance VI_51: VRID 51, 100 ms adverts, VIP
/// 192.0.2.100/24, at `priority`; `extra` goes before the instance and `track` (`,track=...`) at
/// its end.
pub fn vi51_agent(ns: &Netns, priority: u8, extra: &[&str], track: &str) -> Proc {
    let mut cmd = ns.command(agent_bin());
    cmd.args(["run", "-i", "eth0", "--status-socket", "off"])
        .args(extra)
        .args([
            "--instance",
            &format!("name=VI_51,vrid=51,priority={priority},interval=100,vip={VI51_VIP}/24{track}"),
        ]);
    Proc::spawn("ipf-agent", cmd)
}

/// Whether VI_51's VIP is on eth0 in `ns`.
pub fn holds_vi51(ns: &Netns) -> bool {
    holds_on(ns, "eth0", VI51_VIP)
}

/// A bridge and `n` namespaces on it, node i with eth0 at `192.0.2.<i + 1>/24` (port `p<i>`).
pub fn nodes_on_a_bridge(tag: &str, n: usize) -> (Switch, Vec<Netns>) {
    let switch = Switch::new(&format!("ipf-{tag}s"));
    let nodes = (0..n)
        .map(|i| {
            let ns = Netns::new(&format!("ipf-{tag}{i}"));
            switch.attach(&ns, "eth0", &[&format!("192.0.2.{}/24", i + 1)], &format!("p{i}"));
            ns
        })
        .collect();
    (switch, nodes)
}

/// Whether `addr` (without prefix) is on `ifname` in `ns`.
pub fn holds_on(ns: &Netns, ifname: &str, addr: &str) -> bool {
    addresses(ns, ifname).iter().any(|a| a == addr)
}

/// Whether every one of `addrs` is on `ifname` in `ns`, and whether none is.
pub fn holds_all_none(ns: &Netns, ifname: &str, addrs: &[String]) -> (bool, bool) {
    let have = addresses(ns, ifname);
    let n = addrs.iter().filter(|a| have.contains(a)).count();
    (n == addrs.len(), n == 0)
}

/// When the agent first logged a line containing `needle` (its own timestamp).
pub fn logged_at(p: &Proc, needle: &str) -> Option<Ns> {
    log_events(&p.stderr_lines())
        .into_iter()
        .find(|(_, l)| l.contains(needle))
        .map(|(t, _)| t)
}

/// Writes an executable shell script.
pub fn write_script(path: &Path, body: &str) {
    std::fs::write(path, format!("#!/bin/sh\n{body}")).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// The lines of a file a script appends to (empty while it does not exist).
pub fn read_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}
