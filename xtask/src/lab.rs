//! The local lab: N ipf-agent nodes (default 3) in network namespaces on one bridge, each with a VIP
//! group and a tiny TCP service that answers with the node's name, plus a client namespace that keeps
//! reaching the VIP. Shows live who holds the VIP and who answers the client; nodes can be stopped,
//! killed and restored. Everything is removed on exit, Ctrl-C included.
//!
//! ```text
//!   ipf-lab-n1 192.0.2.11 (priority 150) ─┐
//!   ipf-lab-n2 192.0.2.12 (priority 120) ─┼─ br0 (ipf-lab-sw) ─ ipf-lab-client 192.0.2.50
//!   ipf-lab-n3 192.0.2.13 (priority 100) ─┘        VIP 192.0.2.100, port 8080
//! ```

use std::{
    io::BufRead as _,
    net::IpAddr,
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
        mpsc,
    },
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use ipf_testbed::{Netns, Proc, Switch, addresses, fetch_name, spawn_responder, try_wait_for};

use crate::util;

const VIP: &str = "192.0.2.100";
const PORT: u16 = 8080;

#[derive(clap::Args)]
pub struct LabArgs {
    /// Run a scripted failover (kill, restore, graceful stop), print the timings and exit; non-zero if
    /// a step does not happen.
    #[arg(long)]
    demo: bool,
    /// Number of ipf nodes.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u8).range(2..=9))]
    nodes: u8,
    /// Advertisement interval in milliseconds.
    #[arg(long, default_value_t = 100)]
    interval_ms: u32,
}

struct Node {
    name: String,
    priority: u8,
    agent: Option<Proc>,
    _responder: Proc,
    ns: Netns,
}

struct Lab {
    // Field order: processes (in nodes) go before the namespaces they run in.
    nodes: Vec<Node>,
    client: Netns,
    _switch: Switch,
    agent_bin: PathBuf,
    interval_ms: u32,
    started: Instant,
}

/// What the lab shows: who holds the VIP and who answered the client.
#[derive(Clone, Debug, PartialEq, Eq)]
struct View {
    holders: Vec<String>,
    answered_by: Option<String>,
}

impl Lab {
    fn build(agent_bin: &Path, n: u8, interval_ms: u32) -> Result<Lab> {
        let switch = Switch::named("ipf-lab-sw");
        let mut nodes = Vec::new();
        for i in 1..=n {
            let name = format!("n{i}");
            let ns = Netns::named(&format!("ipf-lab-{name}"));
            switch.attach(&ns, "eth0", &[&format!("192.0.2.{}/24", 10 + i)], &name);
            let responder = spawn_responder(&ns, PORT, &name);
            nodes.push(Node {
                priority: 150u8.saturating_sub((i - 1) * 30).max(1),
                name,
                agent: None,
                _responder: responder,
                ns,
            });
        }
        let client = Netns::named("ipf-lab-client");
        switch.attach(&client, "eth0", &["192.0.2.50/24"], "client");
        Ok(Lab {
            nodes,
            client,
            _switch: switch,
            agent_bin: agent_bin.to_owned(),
            interval_ms,
            started: Instant::now(),
        })
    }

    fn node(&mut self, name: &str) -> Result<&mut Node> {
        let names: Vec<String> = self.nodes.iter().map(|n| n.name.clone()).collect();
        self.nodes
            .iter_mut()
            .find(|n| n.name == name)
            .with_context(|| format!("no node {name:?} ({})", names.join(", ")))
    }

    fn start(&mut self, name: &str) -> Result<()> {
        let bin = self.agent_bin.clone();
        let interval = self.interval_ms;
        let node = self.node(name)?;
        if node.agent.is_none() {
            let instance = format!(
                "name=VI_51,vrid=51,priority={},interval={interval},vip={VIP}/24",
                node.priority
            );
            let mut cmd = node.ns.command(&bin);
            // One status socket per node: `ipf-agent status --socket /run/ipf/lab-n1.sock`.
            let socket = format!("/run/ipf/lab-{name}.sock");
            cmd.args(["run", "-i", "eth0", "--status-socket", &socket, "--instance", &instance]);
            node.agent = Some(Proc::spawn(&format!("ipf-agent {name}"), cmd));
            println!("lab: started ipf-agent on {name} (priority {})", node.priority);
        }
        Ok(())
    }

    fn kill(&mut self, name: &str) -> Result<()> {
        if let Some(p) = self.node(name)?.agent.take() {
            drop(p); // SIGKILL: no priority 0; the VIP lease runs out on its own.
            println!("lab: killed ipf-agent on {name} (SIGKILL)");
        }
        Ok(())
    }

    fn stop(&mut self, name: &str) -> Result<()> {
        if let Some(mut p) = self.node(name)?.agent.take() {
            p.signal(libc::SIGTERM);
            let status = p.wait_exit(Duration::from_secs(5));
            println!("lab: stopped ipf-agent on {name} (SIGTERM, {status})");
        }
        Ok(())
    }

    fn view(&self) -> View {
        let holders = self
            .nodes
            .iter()
            .filter(|n| addresses(&n.ns, "eth0").iter().any(|a| a == VIP))
            .map(|n| n.name.clone())
            .collect();
        let vip: IpAddr = VIP.parse().unwrap_or(IpAddr::from([192, 0, 2, 100]));
        View {
            holders,
            answered_by: fetch_name(&self.client, vip, PORT),
        }
    }

    fn show(&self, v: &View) -> String {
        format!(
            "[{:7.3}s] VIP {VIP} held by [{}], client reaches {}; agents: {}",
            self.started.elapsed().as_secs_f64(),
            v.holders.join(", "),
            v.answered_by.as_deref().unwrap_or("nobody"),
            self.nodes
                .iter()
                .map(|n| format!("{}={}", n.name, if n.agent.is_some() { "up" } else { "down" }))
                .collect::<Vec<_>>()
                .join(" ")
        )
    }

    /// Waits until the client reaches the VIP on `name`, then until `name` alone holds it (a killed
    /// node's VIP lease has to run out); returns both times.
    fn wait_served_by(&self, name: &str) -> Result<(Duration, Duration)> {
        let start = Instant::now();
        let fail = || {
            format!(
                "lab: {name} did not take the VIP within 20 s ({})",
                self.show(&self.view())
            )
        };
        let vip: IpAddr = VIP.parse().unwrap_or(IpAddr::from([192, 0, 2, 100]));
        try_wait_for(Duration::from_secs(20), || {
            (fetch_name(&self.client, vip, PORT).as_deref() == Some(name)).then_some(())
        })
        .with_context(fail)?;
        let reached = start.elapsed();
        let view = try_wait_for(Duration::from_secs(20), || {
            let v = self.view();
            (v.holders == [name] && v.answered_by.as_deref() == Some(name)).then_some(v)
        })
        .with_context(fail)?;
        println!("{}", self.show(&view));
        Ok((reached, start.elapsed()))
    }
}

fn demo(lab: &mut Lab) -> Result<()> {
    let names: Vec<String> = lab.nodes.iter().map(|n| n.name.clone()).collect();
    for n in &names {
        lab.start(n)?;
    }
    lab.wait_served_by("n1")?;
    println!("demo: SIGKILL n1: n2 takes over after Master_Down_Interval");
    lab.kill("n1")?;
    let (reached, alone) = lab.wait_served_by("n2")?;
    println!(
        "demo: the client reaches n2 {:.0} ms after n1 was killed (probe resolution ~50 ms; precise figures: cargo xtask bench failover); n1's VIP lease ran out after {:.1} s",
        reached.as_secs_f64() * 1000.0,
        alone.as_secs_f64()
    );
    println!("demo: restore n1: it preempts n2");
    lab.start("n1")?;
    lab.wait_served_by("n1")?;
    println!("demo: graceful stop of n1 (priority 0): n2 takes over after Skew_Time");
    lab.stop("n1")?;
    let (reached, _) = lab.wait_served_by("n2")?;
    println!(
        "demo: the client reaches n2 {:.0} ms after n1 stopped",
        reached.as_secs_f64() * 1000.0
    );
    println!("demo: done");
    Ok(())
}

fn interactive(lab: &mut Lab, interrupted: &AtomicBool) -> Result<()> {
    let names: Vec<String> = lab.nodes.iter().map(|n| n.name.clone()).collect();
    for n in &names {
        lab.start(n)?;
    }
    println!("lab: commands: kill NODE, stop NODE, start NODE, quit (Ctrl-C also quits and cleans up)");
    println!("lab: from another terminal: ipf-agent status --socket /run/ipf/lab-n1.sock (target/debug/ipf-agent)");
    let (tx, rx) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut last: Option<View> = None;
    while !interrupted.load(Ordering::SeqCst) {
        let v = lab.view();
        if last.as_ref() != Some(&v) {
            println!("{}", lab.show(&v));
            last = Some(v);
        }
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(line) => {
                let words: Vec<&str> = line.split_whitespace().collect();
                let result = match words.as_slice() {
                    ["kill", n] => lab.kill(n),
                    ["stop", n] => lab.stop(n),
                    ["start", n] => lab.start(n),
                    ["quit"] | ["exit"] => break,
                    [] => Ok(()),
                    _ => {
                        println!("unknown command {line:?}");
                        Ok(())
                    }
                };
                if let Err(e) = result {
                    println!("{e:#}");
                }
                last = None;
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
    Ok(())
}

pub fn run(args: LabArgs) -> Result<()> {
    util::require_root("the lab creates network namespaces and attaches XDP")?;
    util::step("build ipf-agent", util::cargo(&["build", "-p", "ipf-agent"]))?;
    let agent = util::workspace_root()?.join("target/debug/ipf-agent");
    if !agent.exists() {
        bail!("{} missing after the build", agent.display());
    }
    let interrupted = Arc::new(AtomicBool::new(false));
    let flag = interrupted.clone();
    ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst)).context("installing the Ctrl-C handler")?;
    let mut lab = Lab::build(&agent, args.nodes, args.interval_ms)?;
    let result = if args.demo {
        demo(&mut lab)
    } else {
        interactive(&mut lab, &interrupted)
    };
    let sockets: Vec<String> = lab
        .nodes
        .iter()
        .map(|n| format!("/run/ipf/lab-{}.sock", n.name))
        .collect();
    drop(lab);
    for s in sockets {
        let _ = std::fs::remove_file(s);
    }
    println!("lab: removed every namespace, process and status socket");
    result
}
