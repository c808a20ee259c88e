//! A deterministic simulation for the state machine's tests: several instances on one wire, each with
//! the real datapath event logic (`ipf_common::advert::observe_advert`) in front of it, in tokio's
//! paused (simulated) time.

use std::{
    collections::BTreeMap,
    net::IpAddr,
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use ipf_common::{
    VridConfig, VridState,
    advert::observe_advert,
    maps::{FAMILY_V4, vrid_flags},
    vrrp::{Advert, IpMeta},
};
use tokio::{
    sync::mpsc,
    time::{Instant, sleep_until},
};

use super::{
    Effects, Input, Instance, InstanceConfig, LastAdvert, Preempt, State, instance::AdvertSource, timers::TimerSink,
};
use crate::datapath::{Family, wire_addr};

/// A side effect, as recorded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Call {
    Advert(u8),
    AddVips,
    RemoveVips,
    Announce,
    Reannounce,
    Role(bool, u8),
    Guard(bool),
    State(State, State),
}

/// Records effects, and holds the node's datapath view of the VRID (shared, as the agent's mapped
/// datapath state is, with the timer schedule's checks when `schedule_checks`).
pub struct Recorder {
    pub epoch: Instant,
    pub calls: Vec<(Duration, Call)>,
    pub outbox: Vec<u8>,
    pub datapath: Arc<Mutex<VridState>>,
    pub role: (bool, u8),
    pub primary: IpAddr,
    pub schedule_checks: bool,
}

impl Recorder {
    fn log(&mut self, c: Call) {
        self.calls.push((self.epoch.elapsed(), c));
    }

    pub fn datapath(&self) -> MutexGuard<'_, VridState> {
        lock(&self.datapath)
    }
}

/// The view's lock: a test that panicked while holding it leaves plain data behind.
fn lock(view: &Mutex<VridState>) -> MutexGuard<'_, VridState> {
    view.lock().unwrap_or_else(|p| p.into_inner())
}

/// The datapath's view as the agent reads it (`RealEffects::last_advert`), in simulated time.
fn last_advert_of(epoch: Instant, d: &VridState) -> Option<LastAdvert> {
    let now_ns = u64::try_from(epoch.elapsed().as_nanos()).unwrap_or(u64::MAX);
    LastAdvert::from_datapath(Family::V4, d, now_ns)
}

impl Effects for Recorder {
    fn send_advert(&mut self, priority: u8) {
        self.log(Call::Advert(priority));
        self.outbox.push(priority);
    }
    fn add_vips(&mut self) {
        self.log(Call::AddVips);
    }
    fn remove_vips(&mut self) {
        self.log(Call::RemoveVips);
    }
    fn announce(&mut self) {
        self.log(Call::Announce);
    }
    fn reannounce(&mut self) {
        self.log(Call::Reannounce);
    }
    fn set_role(&mut self, master: bool, priority: u8) {
        self.role = (master, priority);
        self.log(Call::Role(master, priority));
    }
    fn guard(&mut self, on: bool) {
        self.log(Call::Guard(on));
    }
    fn state_changed(&mut self, from: State, to: State, _reason: &str) {
        self.log(Call::State(from, to));
    }
    fn last_advert(&self) -> Option<LastAdvert> {
        last_advert_of(self.epoch, &self.datapath())
    }
    fn advert_source(&self) -> Option<AdvertSource> {
        let (epoch, datapath) = (self.epoch, self.datapath.clone());
        self.schedule_checks
            .then(|| -> AdvertSource { Arc::new(move || last_advert_of(epoch, &lock(&datapath))) })
    }
}

pub struct Node {
    pub inst: Instance<Recorder>,
    rx: mpsc::UnboundedReceiver<Input>,
    /// Whether its adverts reach the wire (false: killed or cut off).
    pub connected: bool,
    /// Number of inputs it handled (wake-ups).
    pub wakeups: u64,
}

/// The wire and its nodes, by name.
pub struct Sim {
    pub epoch: Instant,
    pub nodes: BTreeMap<&'static str, Node>,
    /// Whether the timer schedule checks a live master itself (as in the agent), or leaves every
    /// check to the instance.
    pub schedule_checks: bool,
}

pub fn config(name: &str, priority: u8, addr: &str) -> InstanceConfig {
    InstanceConfig {
        name: name.to_owned(),
        vrid: 51,
        family: Family::V4,
        version: 3,
        priority,
        adver_int: Duration::from_secs(1),
        preempt: Preempt::Yes,
        primary_addr: addr.parse().expect("test address"),
        timer_precision: super::timers::Precision::Millisecond,
    }
}

impl Sim {
    pub fn new() -> Self {
        Sim {
            epoch: Instant::now(),
            nodes: BTreeMap::new(),
            schedule_checks: true,
        }
    }

    /// Adds a node and starts it.
    pub fn start(&mut self, name: &'static str, cfg: InstanceConfig) {
        let (tx, rx) = mpsc::unbounded_channel();
        let rec = Recorder {
            epoch: self.epoch,
            calls: Vec::new(),
            outbox: Vec::new(),
            datapath: Arc::default(),
            role: (false, cfg.priority),
            primary: cfg.primary_addr,
            schedule_checks: self.schedule_checks,
        };
        let on_timer: TimerSink = Arc::new(move |kind, generation, deadline| {
            // A node removed from the simulation leaves nobody to hear it.
            let _ = tx.send(Input::Timer {
                kind,
                generation,
                deadline,
            });
        });
        let mut inst = Instance::new(cfg, rec, on_timer);
        inst.handle(Input::Startup);
        self.nodes.insert(
            name,
            Node {
                inst,
                rx,
                connected: true,
                wakeups: 0,
            },
        );
        self.deliver();
    }

    pub fn node(&self, name: &str) -> &Node {
        self.nodes.get(name).expect("node exists")
    }

    pub fn input(&mut self, name: &str, input: Input) {
        if let Some(n) = self.nodes.get_mut(name) {
            n.inst.handle(input);
        }
        self.deliver();
    }

    /// Cuts a node off the wire or reconnects it (its adverts are lost while cut off, both ways).
    pub fn set_connected(&mut self, name: &str, connected: bool) {
        if let Some(n) = self.nodes.get_mut(name) {
            n.connected = connected;
        }
    }

    /// Removes a node without a shutdown (SIGKILL).
    pub fn kill(&mut self, name: &str) {
        self.nodes.remove(name);
    }

    pub fn now(&self) -> Duration {
        self.epoch.elapsed()
    }

    pub fn state(&self, name: &str) -> State {
        self.node(name).inst.state()
    }

    pub fn masters(&self) -> Vec<&'static str> {
        self.nodes
            .iter()
            .filter(|(_, n)| n.inst.state() == State::Master)
            .map(|(k, _)| *k)
            .collect()
    }

    /// When `name` last entered `state`.
    pub fn entered(&self, name: &str, state: State) -> Option<Duration> {
        self.node(name)
            .inst
            .effects()
            .calls
            .iter()
            .rev()
            .find_map(|(t, c)| match c {
                Call::State(_, to) if *to == state => Some(*t),
                _ => None,
            })
    }

    /// Sends what every node put in its outbox to every other connected node's datapath, raising the
    /// datapath's events as inputs.
    fn deliver(&mut self) {
        let now_ns = self.epoch.elapsed().as_nanos() as u64 + 1;
        let mut sent = Vec::new();
        for (name, n) in &mut self.nodes {
            let src = n.inst.config().primary_addr;
            let int_cs = (n.inst.config().adver_int.as_millis() / 10) as u16;
            let outbox: Vec<u8> = n.inst.effects_mut().outbox.drain(..).collect();
            if n.connected {
                sent.extend(outbox.into_iter().map(|p| (*name, src, p, int_cs)));
            }
        }
        for (from, src, priority, int_cs) in sent {
            for (name, n) in &mut self.nodes {
                if *name == from || !n.connected {
                    continue;
                }
                let rec = n.inst.effects_mut();
                let ip = IpMeta {
                    family: FAMILY_V4,
                    ttl: 255,
                    payload_len: 12,
                    src: wire_addr(&src),
                    dst: [0; 16],
                };
                let adv = Advert {
                    family: FAMILY_V4,
                    version: 3,
                    vrid: 51,
                    priority,
                    addr_count: 1,
                    adver_int_cs: int_cs,
                };
                let mut vcfg = VridConfig {
                    flags: vrid_flags::CONFIGURED,
                    priority: rec.role.1,
                    primary_addr: wire_addr(&rec.primary),
                    ..VridConfig::default()
                };
                if rec.role.0 {
                    vcfg.flags |= vrid_flags::MASTER;
                }
                let event = observe_advert(&mut rec.datapath(), &vcfg, &ip, &adv, &[2, 0, 0, 0, 0, 1], now_ns);
                if event != 0 {
                    let input = Input::Advert {
                        src,
                        priority,
                        adver_int: Duration::from_millis(u64::from(int_cs) * 10),
                        age: Duration::ZERO,
                    };
                    n.wakeups += 1;
                    n.inst.handle(input);
                }
            }
        }
        // Handling may have produced more adverts (a Master answering priority 0).
        if self.nodes.values().any(|n| !n.inst.effects().outbox.is_empty()) {
            self.deliver();
        }
    }

    /// Runs the simulation for `d` of simulated time.
    pub async fn run_for(&mut self, d: Duration) {
        let end = Instant::now() + d;
        loop {
            // Timer inputs due now, in any node.
            let mut progressed = false;
            let names: Vec<&'static str> = self.nodes.keys().copied().collect();
            for name in names {
                while let Some(n) = self.nodes.get_mut(name) {
                    match n.rx.try_recv() {
                        Ok(input) => {
                            n.wakeups += 1;
                            n.inst.handle(input);
                            self.deliver();
                            progressed = true;
                        }
                        Err(_) => break,
                    }
                }
            }
            if progressed {
                continue;
            }
            if Instant::now() >= end {
                return;
            }
            // Let timers run: step time forward by a millisecond at most.
            sleep_until((Instant::now() + Duration::from_millis(1)).min(end)).await;
            tokio::task::yield_now().await;
        }
    }
}
