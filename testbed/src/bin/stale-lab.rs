//! A lab as a test binary makes it: a switch and a node running an ipf agent (XDP attached) and a
//! keepalived. Prints what it made as one JSON line, then waits to be killed; `tests/sweep.rs`
//! SIGKILLs it and checks that the next test binary's first namespace sweeps all of it.
//! Usage: `stale-lab AGENT_BINARY`.
#![allow(clippy::unwrap_used, reason = "test helper: a failed step should panic")]

use std::{
    process::{Command, Stdio},
    time::Duration,
};

use ipf_testbed::{Netns, Switch, TempDir, namespace_pids, wait_for};

#[allow(
    clippy::zombie_processes,
    reason = "they outlive this process, which is killed and never waits"
)]
fn quiet(mut cmd: Command) {
    // Not piped to this process: its death must not take them down (a real killed run's children
    // go on).
    cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
    cmd.spawn().unwrap();
}

fn main() {
    let agent = std::env::args_os().nth(1).expect("usage: stale-lab AGENT_BINARY");
    let switch = Switch::new("ipf-sls");
    let node = Netns::new("ipf-sln");
    switch.attach(&node, "eth0", &["192.0.2.1/24"], "pa");
    let dir = TempDir::new("ipf-sld");
    let mut cmd = node.command(&agent);
    cmd.args(["run", "-i", "eth0", "--metrics-addr", "off", "--status-socket"])
        .arg(dir.path().join("ipf.sock"))
        .args([
            "--instance",
            "name=VI_1,vrid=51,priority=150,version=3,interval=100,vip=192.0.2.100/24",
        ]);
    quiet(cmd);
    let conf = dir.path().join("keepalived.conf");
    std::fs::write(
        &conf,
        ipf_testbed::keepalived_conf(
            3,
            &[ipf_testbed::keepalived_instance(
                "VI_2",
                52,
                100,
                "1",
                "",
                &["192.0.2.101/24"],
            )],
        ),
    )
    .unwrap();
    let mut cmd = node.command("keepalived");
    cmd.args(["--dont-fork", "--vrrp", "-f"])
        .arg(&conf)
        .arg("-p")
        .arg(dir.path().join("keepalived.pid"))
        .arg("-r")
        .arg(dir.path().join("vrrp.pid"));
    quiet(cmd);
    let xdp = wait_for("the agent's XDP program", Duration::from_secs(20), || {
        node.xdp_prog_id("eth0")
    });
    // The agent, keepalived and its VRRP child.
    let pids = wait_for(
        "the agent and keepalived's two processes",
        Duration::from_secs(20),
        || {
            let pids = namespace_pids(&node.name);
            (pids.len() >= 3).then_some(pids)
        },
    );
    println!(
        "{}",
        serde_json::json!({
            "namespaces": [switch.ns.name, node.name],
            "dir": dir.path(),
            "xdp": xdp,
            "pids": pids,
        })
    );
    loop {
        std::thread::park();
    }
}
