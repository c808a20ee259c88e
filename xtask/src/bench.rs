//! Benchmarks: built in release mode, they print figures (no pass/fail thresholds).

use anyhow::Result;

use crate::util;

#[derive(clap::Subcommand)]
pub enum Bench {
    /// XDP program ns/packet (pass-through and adverts) and ring-buffer events per 10,000 adverts.
    Datapath,
    /// Resident memory of an agent with 255 instances.
    Memory,
    /// Failover time, ipf-agent against keepalived (IPF_BENCH_TRIALS, default 20; IPF_BENCH_FAST_ONLY=1
    /// for the 10 ms case only; IPF_BENCH_SCRAPE_MS=100 compares ipf with and without /metrics scrapes).
    Failover,
    /// Split brain at 1 s adverts: time to detect on each side, time until the client reaches the
    /// survivor after the path returns (ipf and keepalived), and splits with multicast blocked, with
    /// and without unicast peers (IPF_BENCH_TRIALS, default 5).
    SplitBrain,
    /// A backup under a flood of seven kinds of invalid VRRP from a third namespace, ipf against
    /// keepalived: generator rate, drops per reason, spurious takeovers, agent and softirq CPU
    /// (IPF_BENCH_FLOOD_SECS, default 20).
    Flood,
    /// 255 VIPs in 255 groups (OPENSHIFT_HA_*) on 3 nodes, ipf against keepalived, at 1 s (v2), 100 ms
    /// and 10 ms (v3): CPU, RSS, time to elect, ratios against the targets (IPF_BENCH_WINDOW_SECS,
    /// default 60; IPF_BENCH_INTERVALS, e.g. `1000,100`).
    Scale,
}

pub fn run(which: Bench) -> Result<()> {
    util::require_root("benchmarks load BPF programs")?;
    match which {
        Bench::Datapath => bench_bin("datapath", false),
        Bench::Memory => bench_bin("memory", true),
        Bench::Failover => bench_bin("failover", true),
        Bench::SplitBrain => bench_bin("split-brain", true),
        Bench::Flood => bench_bin("flood", true),
        Bench::Scale => bench_bin("scale", true),
    }
}

/// Runs `tests/src/bin/bench-NAME.rs` in release mode; with `agent`, against a release ipf-agent (as
/// deployed) passed in `IPF_AGENT_BIN`.
fn bench_bin(name: &str, agent: bool) -> Result<()> {
    let mut c = util::cargo(&[
        "run",
        "--quiet",
        "--release",
        "-p",
        "ipf-tests",
        "--bin",
        &format!("bench-{name}"),
    ]);
    if agent {
        util::step(
            "build ipf-agent (release)",
            util::cargo(&["build", "--release", "-p", "ipf-agent"]),
        )?;
        c.env(
            "IPF_AGENT_BIN",
            util::workspace_root()?.join("target/release/ipf-agent"),
        );
    }
    util::step(&format!("bench {name}"), c)
}
