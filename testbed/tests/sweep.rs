//! A test binary killed without unwinding (SIGKILL, a CI time-out) leaves its namespaces with an
//! agent holding XDP, keepalived and the rest running in them. The next test binary's first
//! namespace sweeps such labs, only those whose creator is gone. Needs root and the agent binary
//! (`IPF_AGENT_BIN`, which `cargo xtask test` sets, or target/<profile>/ipf-agent).
#![allow(clippy::unwrap_used, reason = "tests")]

use std::{path::PathBuf, process::Command, time::Duration};

use ipf_testbed::{Netns, Proc, bpf_prog_exists, namespaces, wait_for};
use serde_json::Value;

const T: Duration = Duration::from_secs(30);

fn agent_bin() -> PathBuf {
    let path = std::env::var_os("IPF_AGENT_BIN").map_or_else(
        // target/<profile>/stale-lab → target/<profile>/ipf-agent
        || PathBuf::from(env!("CARGO_BIN_EXE_stale-lab")).with_file_name("ipf-agent"),
        PathBuf::from,
    );
    assert!(
        path.exists(),
        "{} not found: build it first (`cargo build -p ipf-agent`; cargo xtask test does)",
        path.display()
    );
    path
}

fn running(pid: i64) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|s| s.rsplit_once(") ").is_some_and(|(_, rest)| !rest.starts_with('Z')))
}

/// One `stale-lab` process and what it made; removes all of it on drop, also when the test fails.
struct Lab {
    proc: Proc,
    namespaces: Vec<String>,
    dir: PathBuf,
    xdp: u32,
    pids: Vec<i64>,
}

impl Lab {
    fn start(agent: &std::path::Path) -> Lab {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_stale-lab"));
        cmd.arg(agent);
        let proc = Proc::spawn("stale-lab", cmd);
        let made: Value = wait_for("the lab to be made", T, || proc.json_lines().pop());
        Lab {
            namespaces: made["namespaces"]
                .as_array()
                .unwrap()
                .iter()
                .map(|n| n.as_str().unwrap().to_owned())
                .collect(),
            dir: made["dir"].as_str().unwrap().into(),
            xdp: u32::try_from(made["xdp"].as_u64().unwrap()).unwrap(),
            pids: made["pids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p.as_i64().unwrap())
                .collect(),
            proc,
        }
    }

    /// Every part of the lab is still there: namespaces, processes, XDP program, directory.
    fn intact(&self) -> Result<(), String> {
        let listed = namespaces();
        if let Some(n) = self.namespaces.iter().find(|n| !listed.contains(n)) {
            return Err(format!("namespace {n} is gone"));
        }
        if let Some(p) = self.pids.iter().find(|p| !running(**p)) {
            return Err(format!("process {p} is gone"));
        }
        if !bpf_prog_exists(self.xdp) {
            return Err(format!("XDP program {} is gone", self.xdp));
        }
        if !self.dir.exists() {
            return Err(format!("{} is gone", self.dir.display()));
        }
        Ok(())
    }

    /// No part of the lab is left.
    fn gone(&self) -> Result<(), String> {
        let listed = namespaces();
        if let Some(n) = self.namespaces.iter().find(|n| listed.contains(n)) {
            return Err(format!("namespace {n} is left"));
        }
        if let Some(p) = self.pids.iter().find(|p| running(**p)) {
            return Err(format!("process {p} is left"));
        }
        if bpf_prog_exists(self.xdp) {
            return Err(format!("XDP program {} is left", self.xdp));
        }
        if self.dir.exists() {
            return Err(format!("{} is left", self.dir.display()));
        }
        Ok(())
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = self.proc.child.kill();
        let _ = self.proc.child.wait();
        let listed = namespaces();
        for name in self.namespaces.drain(..).filter(|n| listed.contains(n)) {
            drop(Netns { name });
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn a_killed_runs_lab_is_swept_at_the_next_start_and_a_live_runs_is_left_alone() {
    ipf_testbed::skip_unless_root!();
    let agent = agent_bin();
    let mut dead = Lab::start(&agent);
    let live = Lab::start(&agent);
    dead.proc.signal(libc::SIGKILL);
    dead.proc.wait_exit(T);
    // The kill alone leaves everything behind.
    dead.intact().unwrap_or_else(|e| panic!("right after the kill: {e}"));

    // The next test binary's first namespace sweeps the dead run's lab.
    let next = Lab::start(&agent);
    // Namespace deletion and the program's release finish asynchronously.
    let swept = ipf_testbed::try_wait_for(T, || dead.gone().ok());
    assert!(swept.is_some(), "the dead run's lab: {}", dead.gone().unwrap_err());
    for ns in &dead.namespaces {
        assert!(
            next.proc
                .stderr_lines()
                .iter()
                .any(|l| l.contains(&format!("removed namespace {ns} "))),
            "the sweep names {ns}: {:?}",
            next.proc.stderr_lines()
        );
    }
    live.intact().unwrap_or_else(|e| panic!("a live run's lab: {e}"));
    next.intact().unwrap_or_else(|e| panic!("the new run's lab: {e}"));
}
