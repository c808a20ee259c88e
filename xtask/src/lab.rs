//! The local lab: VRRP routers (real keepalived) and an ipf node in network namespaces on one bridge,
//! shown live. Until ipf's election engine lands, the ipf node runs the datapath in monitor mode: it
//! shows who is master for the VIP group as the XDP program sees it, and every change.
//!
//! Topology (all addresses exist only inside the lab's namespaces):
//! ```text
//!   ipf-lab-r1 (192.0.2.11, keepalived prio 150) ─┐
//!   ipf-lab-r2 (192.0.2.12, keepalived prio 100) ─┼─ br0 in ipf-lab-sw
//!   ipf-lab-n1 (192.0.2.21, ipf-agent monitor)   ─┘
//! ```

use std::{
    io::BufRead as _,
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
        mpsc,
    },
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use ipf_testbed::{Keepalived, Netns, Proc, spawn_monitor, try_wait_for, veth};
use serde_json::Value;

use crate::util;

const VRID: u8 = 51;
const VIP: &str = "192.0.2.100/24";

#[derive(clap::Args)]
pub struct LabArgs {
    /// Run a scripted failover (kill, restore, graceful stop) and exit; non-zero if any step fails.
    #[arg(long)]
    demo: bool,
    /// Advertisement interval of the lab's routers, in milliseconds.
    #[arg(long, default_value_t = 100)]
    interval_ms: u32,
}

struct Router {
    name: &'static str,
    addr: &'static str,
    priority: u8,
    ns: Netns,
    keepalived: Option<Keepalived>,
}

struct Lab {
    // Processes first: they are dropped (killed) before the namespaces are deleted.
    monitor: Proc,
    routers: Vec<Router>,
    _node: Netns,
    _switch: Netns,
    interval_ms: u32,
    started: Instant,
}

fn keepalived_conf(r: &Router, interval_ms: u32) -> String {
    format!(
        "global_defs {{\n  router_id {name}\n  vrrp_version 3\n}}\nvrrp_instance LAB {{\n  state BACKUP\n  interface eth0\n  virtual_router_id {VRID}\n  priority {prio}\n  advert_int {int}\n  virtual_ipaddress {{\n    {VIP}\n  }}\n}}\n",
        name = r.name,
        prio = r.priority,
        int = f64::from(interval_ms) / 1000.0,
    )
}

impl Lab {
    fn build(agent: &Path, interval_ms: u32) -> Result<Lab> {
        let switch = Netns::named("ipf-lab-sw");
        switch.ip(&["link", "add", "br0", "type", "bridge"]);
        switch.ip(&["link", "set", "br0", "up"]);
        let attach = |ns: &Netns, port: &str, addr: &str| {
            veth(ns, "eth0", &[addr], &switch, port, &[]);
            switch.ip(&["link", "set", port, "master", "br0"]);
        };
        let mut routers = Vec::new();
        for (name, addr, priority) in [("r1", "192.0.2.11", 150u8), ("r2", "192.0.2.12", 100)] {
            let ns = Netns::named(&format!("ipf-lab-{name}"));
            attach(&ns, name, &format!("{addr}/24"));
            routers.push(Router {
                name,
                addr,
                priority,
                ns,
                keepalived: None,
            });
        }
        let node = Netns::named("ipf-lab-n1");
        attach(&node, "n1", "192.0.2.21/24");
        let vrid = format!("{VRID},interval={interval_ms}");
        let monitor = spawn_monitor(
            &node,
            agent,
            &[
                "-i",
                "eth0",
                "--vrid",
                &vrid,
                "--vip",
                "192.0.2.100",
                "--report-interval-ms",
                "250",
            ],
        );
        let ready = try_wait_for(Duration::from_secs(10), || {
            monitor
                .json_lines()
                .into_iter()
                .find(|v| v["type"] == "ready")
        })
        .context("ipf-agent did not start")?;
        println!(
            "lab: ipf-agent on ipf-lab-n1/eth0, datapath {}",
            ready["datapath"]["mode"]
        );
        Ok(Lab {
            monitor,
            routers,
            _node: node,
            _switch: switch,
            interval_ms,
            started: Instant::now(),
        })
    }

    fn router(&mut self, name: &str) -> Result<&mut Router> {
        self.routers
            .iter_mut()
            .find(|r| r.name == name)
            .with_context(|| format!("no router {name:?} (r1, r2)"))
    }

    fn start(&mut self, name: &str) -> Result<()> {
        let interval = self.interval_ms;
        let r = self.router(name)?;
        if r.keepalived.is_none() {
            r.keepalived = Some(Keepalived::start(&r.ns, &keepalived_conf(r, interval)));
            println!(
                "lab: started keepalived on {name} ({}, priority {})",
                r.addr, r.priority
            );
        }
        Ok(())
    }

    fn kill(&mut self, name: &str) -> Result<()> {
        if let Some(k) = self.router(name)?.keepalived.take() {
            // Dropping the guard SIGKILLs it: no priority-0 advert, the peers must time the master out.
            drop(k);
            println!("lab: killed keepalived on {name} (SIGKILL)");
        }
        Ok(())
    }

    fn stop(&mut self, name: &str) -> Result<()> {
        if let Some(mut k) = self.router(name)?.keepalived.take() {
            k.stop();
            println!("lab: stopped keepalived on {name} (SIGTERM: priority 0 advert)");
        }
        Ok(())
    }

    fn events(&self) -> Vec<Value> {
        self.monitor
            .json_lines()
            .into_iter()
            .filter(|v| v["type"] == "event")
            .map(|v| v["event"].clone())
            .collect()
    }

    fn name_of(&self, addr: &str) -> &'static str {
        self.routers
            .iter()
            .find(|r| r.addr == addr)
            .map_or("?", |r| r.name)
    }

    fn describe(&self, e: &Value) -> String {
        let addr = e["addr"].as_str().unwrap_or("?");
        format!(
            "[{:6.2}s] {} vrid {}: master {} ({}) priority {} interval {} ms",
            self.started.elapsed().as_secs_f64(),
            e["kinds"],
            e["vrid"],
            addr,
            self.name_of(addr),
            e["priority"],
            e["adver_int_ms"]
        )
    }

    /// Waits for a new event matching `pred` (after the first `seen` events) and prints it.
    fn expect_event(
        &self,
        what: &str,
        seen: usize,
        pred: impl Fn(&Value) -> bool,
    ) -> Result<usize> {
        let found = try_wait_for(Duration::from_secs(15), || {
            let events = self.events();
            events
                .iter()
                .skip(seen)
                .position(&pred)
                .map(|i| (seen + i, events[seen + i].clone()))
        });
        match found {
            Some((i, e)) => {
                println!("{}", self.describe(&e));
                Ok(i + 1)
            }
            None => bail!("lab: no event for {what} within 15 s"),
        }
    }

    /// Waits until the datapath has seen `adverts` more adverts from `addr` as master; returns the
    /// number of events so far (later waits look only at newer ones).
    fn wait_stable_master(&self, addr: &str, adverts: u64) -> Result<usize> {
        let report_master = || {
            let r = self
                .monitor
                .json_lines()
                .into_iter()
                .rev()
                .find(|v| v["type"] == "report")?;
            let s = &r["vrids"][0];
            Some((
                s["master_addr"].as_str()? == addr,
                s["adverts_rx"].as_u64()?,
            ))
        };
        let first = try_wait_for(Duration::from_secs(15), || {
            report_master().filter(|(is, _)| *is).map(|(_, n)| n)
        })
        .with_context(|| format!("lab: {addr} never seen as master"))?;
        try_wait_for(Duration::from_secs(15), || {
            report_master().filter(|(is, n)| *is && *n >= first + adverts)
        })
        .with_context(|| format!("lab: {addr} not stable as master"))?;
        Ok(self.events().len())
    }

    fn status(&self) -> String {
        let Some(r) = self
            .monitor
            .json_lines()
            .into_iter()
            .rev()
            .find(|v| v["type"] == "report")
        else {
            return "no report yet".into();
        };
        let s = &r["vrids"][0];
        let addr = s["master_addr"].as_str().unwrap_or("none");
        format!(
            "vrid {VRID}: master {addr} ({}) priority {}, {} adverts seen, {} events; routers: {}",
            self.name_of(addr),
            s["master_priority"],
            s["adverts_rx"],
            s["events"],
            self.routers
                .iter()
                .map(|r| format!(
                    "{}={}",
                    r.name,
                    if r.keepalived.is_some() { "up" } else { "down" }
                ))
                .collect::<Vec<_>>()
                .join(" ")
        )
    }
}

fn master_is(addr: &'static str, priority: u64) -> impl Fn(&Value) -> bool {
    move |e| e["addr"] == addr && e["priority"] == priority
}

fn demo(lab: &mut Lab) -> Result<()> {
    println!("demo: both routers up; r1 (priority 150) must be master");
    lab.start("r1")?;
    lab.start("r2")?;
    lab.expect_event("r1 as master", 0, master_is("192.0.2.11", 150))?;
    let seen = lab.wait_stable_master("192.0.2.11", 5)?;
    println!("demo: SIGKILL r1; r2 must take over after Master_Down_Interval");
    lab.kill("r1")?;
    let seen = lab.expect_event("r2 taking over", seen, master_is("192.0.2.12", 100))?;
    println!("demo: restore r1; it preempts r2");
    lab.start("r1")?;
    lab.expect_event("r1 preempting", seen, master_is("192.0.2.11", 150))?;
    let seen = lab.wait_stable_master("192.0.2.11", 5)?;
    println!("demo: graceful stop of r1 (priority 0), r2 takes over after Skew_Time");
    lab.stop("r1")?;
    let seen = lab.expect_event("r1 releasing", seen, master_is("192.0.2.11", 0))?;
    lab.expect_event("r2 taking over", seen, master_is("192.0.2.12", 100))?;
    println!("demo: {}", lab.status());
    println!("demo: done");
    Ok(())
}

fn interactive(lab: &mut Lab, interrupted: &AtomicBool) -> Result<()> {
    lab.start("r1")?;
    lab.start("r2")?;
    println!(
        "lab: commands: kill r1|r2, stop r1|r2, start r1|r2, status, quit (Ctrl-C also quits and cleans up)"
    );
    let (tx, rx) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut shown = 0;
    let mut last_status = Instant::now();
    while !interrupted.load(Ordering::SeqCst) {
        let events = lab.events();
        for e in events.iter().skip(shown) {
            println!("{}", lab.describe(e));
        }
        shown = events.len();
        if last_status.elapsed() > Duration::from_secs(5) {
            println!("status: {}", lab.status());
            last_status = Instant::now();
        }
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(line) => {
                let words: Vec<&str> = line.split_whitespace().collect();
                let result = match words.as_slice() {
                    ["kill", r] => lab.kill(r),
                    ["stop", r] => lab.stop(r),
                    ["start", r] => lab.start(r),
                    ["status"] => {
                        println!("status: {}", lab.status());
                        Ok(())
                    }
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
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            // stdin closed: keep running until Ctrl-C.
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                std::thread::sleep(Duration::from_millis(100))
            }
        }
    }
    Ok(())
}

pub fn run(args: LabArgs) -> Result<()> {
    util::require_root("the lab creates network namespaces and attaches XDP")?;
    util::step(
        "build ipf-agent",
        util::cargo(&["build", "-p", "ipf-agent"]),
    )?;
    let agent = util::workspace_root()?.join("target/debug/ipf-agent");
    let interrupted = Arc::new(AtomicBool::new(false));
    let flag = interrupted.clone();
    ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst))
        .context("installing the Ctrl-C handler")?;
    let mut lab = Lab::build(&agent, args.interval_ms)?;
    let result = if args.demo {
        demo(&mut lab)
    } else {
        interactive(&mut lab, &interrupted)
    };
    drop(lab);
    println!("lab: removed every namespace and process");
    result
}
