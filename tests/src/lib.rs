//! Support for ipf's root-only tests and benchmarks: crafted frames, the XDP program under
//! BPF_PROG_TEST_RUN, network namespaces that clean up after themselves, and processes that die with
//! the test.
#![allow(
    clippy::unwrap_used,
    reason = "test support: a failed set-up step should panic with a backtrace"
)]

pub use ipf_common::testing as frames;
pub mod container;
pub mod cost;
pub mod deploy;
pub mod flood;
pub mod floor;
pub mod holders;
pub mod lab;
pub mod node;
pub mod trace;
pub mod xdp;

pub use ipf_testbed::{require_root, wait_for};

/// Path of the `ipf-agent` binary: `$IPF_AGENT_BIN`, else next to the test executable's target dir.
pub fn agent_bin() -> std::path::PathBuf {
    if let Some(p) = std::env::var_os("IPF_AGENT_BIN") {
        return p.into();
    }
    let exe = std::env::current_exe().unwrap();
    // target/<profile>/deps/<test> → target/<profile>/ipf-agent
    let path = exe.parent().and_then(|d| d.parent()).unwrap().join("ipf-agent");
    assert!(
        path.exists(),
        "{} not found: build it first (`cargo build -p ipf-agent`; cargo xtask test does)",
        path.display()
    );
    path
}

/// The instances `ipf-agent status --json` reports for the agent behind `socket` in `ns`; empty
/// while no agent answers there.
pub fn agent_status(ns: &ipf_testbed::Netns, socket: &std::path::Path) -> Vec<serde_json::Value> {
    let out = ns
        .command(agent_bin())
        .args(["status", "--json", "--socket"])
        .arg(socket)
        .output()
        .unwrap();
    serde_json::from_slice::<serde_json::Value>(&out.stdout)
        .ok()
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default()
}

/// The receive path the agent in `ns` reports on its default metrics address
/// (`ipf_datapath_mode{interface="IFACE",mode="..."} 1`): `xdp-driver`, `xdp-skb` or `raw-socket`.
pub fn datapath_mode(ns: &ipf_testbed::Netns, iface: &str) -> Option<String> {
    let (status, body) = ipf_testbed::http_get(ns, std::net::IpAddr::from([127, 0, 0, 1]), 9477, "/metrics")?;
    if status != 200 {
        return None;
    }
    body.lines().find_map(|l| {
        let rest = l.strip_prefix("ipf_datapath_mode{")?;
        let (labels, value) = rest.rsplit_once("} ")?;
        let interface_matches = labels.split(',').any(|x| x == format!("interface=\"{iface}\""));
        let mode = labels.split(',').find_map(|x| x.strip_prefix("mode=\""))?;
        (interface_matches && value.trim() == "1").then(|| mode.trim_end_matches('"').to_owned())
    })
}
