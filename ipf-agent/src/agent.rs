//! `ipf-agent run`: the datapath, one VRRP state machine per instance, and their side effects
//! (adverts, VIPs through rtnetlink, gratuitous ARP / unsolicited NA), until SIGTERM / SIGINT.

use std::{
    cell::RefCell,
    net::IpAddr,
    rc::Rc,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use anyhow::{Context as _, Result, bail};
use ipf_common::{
    maps::FAMILY_V6,
    vrrp::{AdvertFields, MCAST_V4, MCAST_V6, encode_advert},
};
use tokio::sync::mpsc;

use prometheus::{Gauge, IntCounter, IntGauge};

use crate::{
    checks::{self, CheckEvent, CheckSpec},
    datapath::{Datapath, DatapathOptions, Family, VridSpec, XdpModeArg, ip_from_wire, raw::monotonic_ns, wire_addr},
    links::{self, LinkEvent},
    metrics::{self, Metrics},
    network::{AddressManager, AdvertSender, Announcer, Vip},
    status,
    vrrp::{Effects, Input, Instance, InstanceConfig, LastAdvert, Preempt, State},
};

/// One configured VRRP instance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstanceSpec {
    pub name: String,
    pub vrid: u8,
    pub family: Family,
    pub version: u8,
    pub priority: u8,
    pub adver_int: Duration,
    pub preempt: Preempt,
    pub vips: Vec<Vip>,
    /// Owned like `vips` but never advertised (keepalived's virtual_ipaddress_excluded).
    pub excluded: Vec<Vip>,
    pub unicast_peers: Vec<IpAddr>,
    /// Source address for adverts; detected from the interface when `None`.
    pub src: Option<IpAddr>,
    pub auth_pass: Option<String>,
    /// Names of the checks this instance tracks (keepalived's track_script).
    pub tracks: Vec<String>,
    /// Interfaces whose link going down puts the instance in FAULT, besides the VRRP interface
    /// (keepalived's track_interface).
    pub track_interfaces: Vec<String>,
}

impl InstanceSpec {
    /// Every address the instance owns when Master: advertised and excluded.
    pub fn owned(&self) -> impl Iterator<Item = &Vip> {
        self.vips.iter().chain(&self.excluded)
    }
}

/// Everything `run` needs.
#[derive(Clone, Debug)]
pub struct AgentConfig {
    pub interface: String,
    pub xdp_mode: XdpModeArg,
    pub instances: Vec<InstanceSpec>,
    /// Health checks the instances can track.
    pub checks: Vec<CheckSpec>,
    /// Run on every state change as keepalived's notify: `SCRIPT INSTANCE <name> <state> <priority>`.
    pub notify: Option<String>,
    /// Gratuitous ARP / NA: packets per burst, and the delay of the second burst (keepalived's
    /// vrrp_garp_master_repeat 5 and vrrp_garp_master_delay 5).
    pub garp_repeat: u32,
    pub garp_delay: Duration,
    /// Periodic gratuitous ARP / NA while Master (keepalived's vrrp_garp_master_refresh); `None`: off.
    pub garp_refresh: Option<Duration>,
    /// The status socket `ipf-agent status` reads (`None`: not served).
    pub status_socket: Option<std::path::PathBuf>,
    /// Listen address of /metrics, /healthz and /readyz (`None`: not served).
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// Lifetime of a VIP on the interface, renewed while Master (`None`: permanent, as keepalived).
    /// A killed agent's VIPs disappear after at most this long.
    pub vip_lease: Option<Duration>,
}

/// Longest a notify script may run before it is killed.
const NOTIFY_TIMEOUT: Duration = Duration::from_secs(60);

/// How long to wait for the interface to have a usable source address.
const SOURCE_WAIT: Duration = Duration::from_secs(10);

/// Most addresses one advert carries; the rest are still owned, just not advertised (keepalived
/// moves them to virtual_ipaddress_excluded the same way).
pub const MAX_ADVERTISED: usize = 20;

impl AgentConfig {
    /// Checks what can be checked without touching the system; errors name the field and value.
    pub fn validate(&self) -> Result<()> {
        let mut seen = std::collections::HashSet::new();
        for i in &self.instances {
            if !seen.insert((i.family, i.vrid)) {
                bail!(
                    "instance {}: vrid {} ({:?}) is used twice on {}",
                    i.name,
                    i.vrid,
                    i.family,
                    self.interface
                );
            }
            for t in &i.tracks {
                if !self.checks.iter().any(|c| &c.name == t) {
                    bail!("instance {}: track={t:?} names no --check", i.name);
                }
            }
            for t in &i.track_interfaces {
                crate::datapath::interface_index(t)
                    .with_context(|| format!("instance {}: track_interface={t:?}", i.name))?;
            }
            if i.priority == 0 {
                bail!("instance {}: priority 0 is invalid (1..255)", i.name);
            }
            for v in i.owned() {
                if Family::of(&v.addr) != i.family {
                    bail!(
                        "instance {}: VIP {} is not {:?} like the instance",
                        i.name,
                        v.addr,
                        i.family
                    );
                }
            }
            self.vrid_spec(i, None)
                .validate()
                .with_context(|| format!("instance {}", i.name))?;
        }
        Ok(())
    }

    fn vrid_spec(&self, i: &InstanceSpec, primary: Option<IpAddr>) -> VridSpec {
        VridSpec {
            family: i.family,
            vrid: i.vrid,
            version: i.version,
            priority: i.priority,
            adver_int: i.adver_int,
            primary_addr: primary.or(i.src),
            unicast_peers: i.unicast_peers.clone(),
            auth_pass: i.auth_pass.clone(),
            expected_addrs: None,
            master: false,
        }
    }
}

/// Ordered VIP and announcement work, done by one task so netlink calls happen in the order the state
/// machine asked for them.
#[derive(Clone)]
enum VipOp {
    Add(Vec<Vip>),
    /// Renews the leases of `vips` unless the instance left Master since (`epoch` changed).
    Renew {
        vips: Vec<Vip>,
        epoch: u64,
        epoch_now: Arc<AtomicU64>,
    },
    Remove(Vec<Vip>),
    /// Announce `vips` `burst` times unless the instance left Master since (`epoch` changed).
    Announce {
        vips: Vec<Vip>,
        epoch: u64,
        epoch_now: Arc<AtomicU64>,
        burst: u32,
        sent: IntCounter,
    },
}

struct RealEffects {
    name: String,
    family: Family,
    vrid: u8,
    version: u8,
    adver_int_cs: u16,
    src: IpAddr,
    dsts: Vec<IpAddr>,
    advertised: Vec<u8>,
    auth_pass: Option<[u8; 8]>,
    vips: Vec<Vip>,
    sender: Rc<AdvertSender>,
    ops: mpsc::UnboundedSender<VipOp>,
    datapath: Rc<RefCell<Datapath>>,
    /// Incremented on every Master entry and exit: stale delayed announcements are skipped.
    master_epoch: Arc<AtomicU64>,
    garp_repeat: u32,
    garp_delay: Duration,
    garp_refresh: Option<Duration>,
    vip_lease: Option<Duration>,
    metrics: InstanceMetrics,
    board: status::Board,
    board_index: usize,
    notify: Option<Rc<str>>,
}

/// The instance's series, bound to its labels once.
struct InstanceMetrics {
    state: IntGauge,
    priority: IntGauge,
    adverts_sent: IntCounter,
    priority_zero_sent: IntCounter,
    became_master: IntCounter,
    released_master: IntCounter,
    last_transition: Gauge,
    gratuitous_sent: IntCounter,
    notify_failures: IntCounter,
}

impl InstanceMetrics {
    fn new(m: &Metrics, labels: &[String; 3]) -> Self {
        let l = [labels[0].as_str(), labels[1].as_str(), labels[2].as_str()];
        InstanceMetrics {
            state: m.state.with_label_values(&l),
            priority: m.priority.with_label_values(&l),
            adverts_sent: m.adverts_sent.with_label_values(&l),
            priority_zero_sent: m.priority_zero_sent.with_label_values(&l),
            became_master: m.became_master.with_label_values(&l),
            released_master: m.released_master.with_label_values(&l),
            last_transition: m.last_transition.with_label_values(&l),
            gratuitous_sent: m.gratuitous_sent.with_label_values(&l),
            notify_failures: m.notify_failures.with_label_values(&l),
        }
    }
}

impl Effects for RealEffects {
    fn send_advert(&mut self, priority: u8) {
        let mut buf = [0u8; 1100];
        for dst in &self.dsts {
            let fields = AdvertFields {
                version: self.version,
                family: self.family.wire(),
                vrid: self.vrid,
                priority,
                adver_int_cs: self.adver_int_cs,
                addrs: &self.advertised,
                auth_pass: self.auth_pass,
                src: wire_addr(&self.src),
                dst: wire_addr(dst),
            };
            match encode_advert(&fields, &mut buf) {
                Ok(n) => match self.sender.send(*dst, &buf[..n]) {
                    Ok(()) => {
                        self.metrics.adverts_sent.inc();
                        if priority == 0 {
                            self.metrics.priority_zero_sent.inc();
                        }
                    }
                    Err(e) => tracing::warn!(instance = %self.name, "sending advert to {dst}: {e}"),
                },
                Err(e) => tracing::error!(instance = %self.name, "encoding advert: {e:?}"),
            }
        }
    }

    fn add_vips(&mut self) {
        let epoch = self.master_epoch.fetch_add(1, Ordering::SeqCst) + 1;
        let _ = self.ops.send(VipOp::Add(self.vips.clone()));
        if let Some(lease) = self.vip_lease {
            // Renewals go through the same ordered queue, so none can land after a removal; a weak
            // sender lets the queue close at shutdown.
            let ops = self.ops.downgrade();
            let vips = self.vips.clone();
            let epoch_now = self.master_epoch.clone();
            tokio::task::spawn_local(async move {
                let mut tick = tokio::time::interval(lease / 4);
                tick.tick().await;
                loop {
                    tick.tick().await;
                    let Some(ops) = ops.upgrade() else { break };
                    if epoch_now.load(Ordering::SeqCst) != epoch
                        || ops
                            .send(VipOp::Renew {
                                vips: vips.clone(),
                                epoch,
                                epoch_now: epoch_now.clone(),
                            })
                            .is_err()
                    {
                        break;
                    }
                }
            });
        }
    }

    fn remove_vips(&mut self) {
        self.master_epoch.fetch_add(1, Ordering::SeqCst);
        let _ = self.ops.send(VipOp::Remove(self.vips.clone()));
    }

    fn announce(&mut self) {
        let epoch = self.master_epoch.load(Ordering::SeqCst);
        let op = |burst| VipOp::Announce {
            vips: self.vips.clone(),
            epoch,
            epoch_now: self.master_epoch.clone(),
            burst,
            sent: self.metrics.gratuitous_sent.clone(),
        };
        let _ = self.ops.send(op(self.garp_repeat));
        // keepalived's second burst after vrrp_garp_master_delay, then the optional periodic refresh
        // (vrrp_garp_master_refresh), for as long as this Master epoch lasts.
        let second = op(self.garp_repeat);
        let refresh = self.garp_refresh.map(|every| (every, op(1)));
        let (delay, ops, epoch_now) = (self.garp_delay, self.ops.downgrade(), self.master_epoch.clone());
        tokio::task::spawn_local(async move {
            let due = |op: VipOp| {
                let tx = ops.upgrade()?;
                (epoch_now.load(Ordering::SeqCst) == epoch).then(|| tx.send(op).ok())?
            };
            tokio::time::sleep(delay).await;
            if due(second).is_none() {
                return;
            }
            let Some((every, op)) = refresh else { return };
            loop {
                tokio::time::sleep(every).await;
                if due(op.clone()).is_none() {
                    return;
                }
            }
        });
    }

    fn set_role(&mut self, master: bool, priority: u8) {
        self.metrics.priority.set(i64::from(priority));
        if let Some(s) = status::lock(&self.board).get_mut(self.board_index) {
            s.priority = priority;
        }
        if let Err(e) = self
            .datapath
            .borrow_mut()
            .set_role(self.family, self.vrid, master, priority)
        {
            tracing::warn!(instance = %self.name, "datapath role: {e}");
        }
    }

    fn state_changed(&mut self, from: State, to: State, reason: &str) {
        let m = &self.metrics;
        let now = metrics::now_unix().as_secs_f64();
        m.state.set(metrics::state_value(to));
        m.last_transition.set(now);
        if let Some(s) = status::lock(&self.board).get_mut(self.board_index) {
            s.state = to.keepalived_name().to_owned();
            s.last_transition = now;
        }
        if to == State::Master {
            m.became_master.inc();
        }
        if from == State::Master {
            m.released_master.inc();
        }
        // keepalived's wording, which existing tooling greps for.
        tracing::info!(reason, "({}) Entering {} STATE", self.name, to.keepalived_name());
        if let Some(script) = self.notify.clone() {
            // keepalived's argv; STOP when the instance stops. Run detached: never blocks an election.
            let state = if to == State::Initialize {
                "STOP"
            } else {
                to.keepalived_name()
            };
            let args = [
                "INSTANCE".to_owned(),
                self.name.clone(),
                state.to_owned(),
                m.priority.get().to_string(),
            ];
            let mut cmd = tokio::process::Command::new(&*script);
            // Not killed with the agent: a STOP notification must still run when the agent exits.
            cmd.args(&args).stdin(std::process::Stdio::null());
            let failed = m.notify_failures.clone();
            match cmd.spawn() {
                Err(e) => {
                    failed.inc();
                    tracing::warn!("notify {script} {args:?}: {e}");
                }
                Ok(mut child) => {
                    tokio::task::spawn_local(async move {
                        let problem = match tokio::time::timeout(NOTIFY_TIMEOUT, child.wait()).await {
                            Ok(Ok(s)) if s.success() => return,
                            Ok(Ok(s)) => s.to_string(),
                            Ok(Err(e)) => e.to_string(),
                            Err(_) => {
                                let _ = child.start_kill();
                                format!("killed after {NOTIFY_TIMEOUT:?}")
                            }
                        };
                        failed.inc();
                        tracing::warn!("notify {script} {args:?}: {problem}");
                    });
                }
            }
        }
    }

    fn last_advert(&self) -> Option<LastAdvert> {
        let st = self.datapath.borrow().vrid_state(self.family, self.vrid).ok()?;
        if st.last_seen_ns == 0 {
            return None;
        }
        let now = monotonic_ns()?;
        Some(LastAdvert {
            age: Duration::from_nanos(now.saturating_sub(st.last_seen_ns)),
            src: ip_from_wire(self.family.wire(), &st.master_addr),
            priority: st.master_priority,
            adver_int: Duration::from_millis(u64::from(st.adver_int_cs) * 10),
        })
    }
}

async fn vip_worker(
    mut rx: mpsc::UnboundedReceiver<VipOp>,
    addrs: Rc<AddressManager>,
    announcer: Rc<Announcer>,
    ifindex: u32,
    mac: [u8; 6],
    lease: Option<Duration>,
) {
    let add = async |v: &Vip| match lease {
        Some(l) => addrs.add_leased(ifindex, v, l).await,
        None => addrs.add(ifindex, v).await,
    };
    while let Some(op) = rx.recv().await {
        match op {
            VipOp::Add(vips) => {
                for v in &vips {
                    if let Err(e) = add(v).await {
                        tracing::error!("adding VIP {v}: {e}");
                    }
                }
            }
            VipOp::Renew { vips, epoch, epoch_now } => {
                if epoch_now.load(Ordering::SeqCst) == epoch {
                    for v in &vips {
                        if let Err(e) = add(v).await {
                            tracing::error!("renewing VIP {v}: {e}");
                        }
                    }
                }
            }
            VipOp::Remove(vips) => {
                for v in &vips {
                    if let Err(e) = addrs.remove(ifindex, v).await {
                        tracing::error!("removing VIP {v}: {e}");
                    }
                }
            }
            VipOp::Announce {
                vips,
                epoch,
                epoch_now,
                burst,
                sent,
            } => {
                if epoch_now.load(Ordering::SeqCst) == epoch {
                    sent.inc_by(announce(&announcer, &vips, mac, burst));
                }
            }
        }
    }
}

/// What checks and tracked links say, and what was last applied to each instance.
struct Health {
    check_ok: std::collections::HashMap<String, bool>,
    /// Links not reported yet count as up.
    link_up: std::collections::HashMap<String, bool>,
    applied: Vec<(bool, u8)>,
}

impl Health {
    /// Feeds each instance the Fault and priority its checks and links call for, when they change.
    fn apply(&mut self, cfg: &AgentConfig, instances: &mut [Instance<RealEffects>], metrics: &Metrics) {
        for (idx, spec) in cfg.instances.iter().enumerate() {
            let tracked: Vec<(i32, bool)> = spec
                .tracks
                .iter()
                .filter_map(|t| cfg.checks.iter().find(|c| &c.name == t))
                .map(|c| (c.weight, self.check_ok.get(&c.name).copied().unwrap_or(true)))
                .collect();
            let (check_fault, priority) = checks::effect(spec.priority, &tracked);
            let link_down = std::iter::once(&cfg.interface)
                .chain(&spec.track_interfaces)
                .any(|l| self.link_up.get(l) == Some(&false));
            let fault = check_fault || link_down;
            let Some(applied) = self.applied.get_mut(idx) else {
                continue;
            };
            let (was_fault, was_priority) = std::mem::replace(applied, (fault, priority));
            let Some(inst) = instances.get_mut(idx) else { continue };
            if priority != was_priority {
                let labels = [spec.name.as_str(), cfg.interface.as_str(), &spec.vrid.to_string()];
                metrics.priority.with_label_values(&labels).set(i64::from(priority));
                inst.handle(Input::Priority(priority));
            }
            if fault != was_fault {
                inst.handle(Input::Fault(fault));
            }
        }
    }
}

/// Sends `burst` gratuitous ARPs / unsolicited NAs per VIP; returns how many went out.
fn announce(announcer: &Announcer, vips: &[Vip], mac: [u8; 6], burst: u32) -> u64 {
    let mut sent = 0;
    for _ in 0..burst {
        for v in vips {
            let r = match v.addr {
                IpAddr::V4(a) => announcer.gratuitous_arp(a, mac),
                IpAddr::V6(a) => announcer.unsolicited_na(a, mac),
            };
            match r {
                Ok(()) => sent += 1,
                Err(e) => tracing::warn!("announcing {}: {e}", v.addr),
            }
        }
    }
    sent
}

/// Runs the agent until SIGTERM / SIGINT. Must be called on a current-thread runtime inside a
/// `LocalSet` (the state machines and their effects are single-threaded).
pub async fn run(cfg: AgentConfig) -> Result<()> {
    cfg.validate()?;
    let ifindex = crate::datapath::interface_index(&cfg.interface)?;
    let mac = crate::datapath::interface_mac(&cfg.interface);
    let addrs = Rc::new(AddressManager::new().context("rtnetlink")?);
    let metrics = Metrics::new()?;
    if let Some(addr) = cfg.metrics_addr {
        metrics::serve(metrics.clone(), addr)?;
    }
    let board: status::Board = Default::default();
    let readers: status::Readers = Default::default();
    if let Some(path) = &cfg.status_socket {
        status::serve(board.clone(), readers.clone(), path)?;
    }
    let all_vips: Vec<IpAddr> = cfg.instances.iter().flat_map(|i| i.owned().map(|v| v.addr)).collect();

    // Sources first: an error here must leave the system untouched.
    let mut sources = Vec::new();
    for i in &cfg.instances {
        let src = match i.src {
            Some(s) => s,
            None => {
                // A link-local address is unusable until duplicate address detection ends (about a
                // second after the link comes up): wait for it rather than fail at boot.
                let deadline = tokio::time::Instant::now() + SOURCE_WAIT;
                loop {
                    if let Some(a) = addrs.primary_address(ifindex, i.family, &all_vips).await? {
                        break a;
                    }
                    if tokio::time::Instant::now() >= deadline {
                        bail!(
                            "instance {}: {} has no usable {:?} address to advertise from (waited {:?})",
                            i.name,
                            cfg.interface,
                            i.family,
                            SOURCE_WAIT
                        );
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        };
        sources.push(src);
    }

    // Addresses this configuration manages, left by a crash: not owned until elected.
    for i in &cfg.instances {
        for v in i.owned() {
            addrs
                .remove(ifindex, v)
                .await
                .with_context(|| format!("removing stale VIP {v}"))?;
        }
    }

    let opts = DatapathOptions::new(&cfg.interface, cfg.xdp_mode);
    let (dp, mut events) = Datapath::start(&opts)?;
    metrics.add_datapath(dp.reader());
    readers
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .push(dp.reader());
    let datapath = Rc::new(RefCell::new(dp));
    for (i, src) in cfg.instances.iter().zip(&sources) {
        let spec = cfg.vrid_spec(i, Some(*src));
        datapath.borrow_mut().set_vrid(&spec)?;
        for v in i.owned() {
            datapath.borrow_mut().add_vip(&v.addr)?;
        }
    }
    let announcer = Rc::new(Announcer::new(&cfg.interface)?);
    let (ops_tx, ops_rx) = mpsc::unbounded_channel();
    let worker = tokio::task::spawn_local(vip_worker(
        ops_rx,
        addrs.clone(),
        announcer,
        ifindex,
        mac,
        cfg.vip_lease,
    ));

    let (merged_tx, mut merged_rx) = mpsc::unbounded_channel::<(usize, Input)>();
    let mut instances = Vec::new();
    for (idx, (i, src)) in cfg.instances.iter().zip(&sources).enumerate() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let fwd = merged_tx.clone();
        tokio::spawn(async move {
            while let Some(input) = rx.recv().await {
                if fwd.send((idx, input)).is_err() {
                    break;
                }
            }
        });
        let sender = Rc::new(AdvertSender::new(&cfg.interface, i.family, *src)?);
        let dsts = if i.unicast_peers.is_empty() {
            vec![if i.family == Family::V6 {
                IpAddr::from(MCAST_V6)
            } else {
                IpAddr::from(MCAST_V4)
            }]
        } else {
            i.unicast_peers.clone()
        };
        let addr_len = if i.family == Family::V6 { 16 } else { 4 };
        let advertised = i
            .vips
            .iter()
            .take(MAX_ADVERTISED)
            .flat_map(|v| wire_addr(&v.addr)[..addr_len].to_vec())
            .collect();
        let auth_pass = i.auth_pass.as_ref().map(|p| {
            let mut a = [0u8; 8];
            let n = p.len().min(8);
            a[..n].copy_from_slice(&p.as_bytes()[..n]);
            a
        });
        let effects = RealEffects {
            name: i.name.clone(),
            family: i.family,
            vrid: i.vrid,
            version: i.version,
            adver_int_cs: (i.adver_int.as_millis() / 10) as u16,
            src: *src,
            dsts,
            advertised,
            auth_pass,
            vips: i.owned().cloned().collect(),
            sender,
            ops: ops_tx.clone(),
            datapath: datapath.clone(),
            master_epoch: Arc::new(AtomicU64::new(0)),
            garp_repeat: cfg.garp_repeat,
            garp_delay: cfg.garp_delay,
            garp_refresh: cfg.garp_refresh,
            vip_lease: cfg.vip_lease,
            notify: cfg.notify.as_deref().map(Rc::from),
            board: board.clone(),
            board_index: {
                let mut b = status::lock(&board);
                b.push(status::InstanceStatus {
                    instance: i.name.clone(),
                    interface: cfg.interface.clone(),
                    vrid: i.vrid,
                    family: format!("{:?}", i.family).to_lowercase(),
                    state: State::Initialize.keepalived_name().to_owned(),
                    priority: i.priority,
                    configured_priority: i.priority,
                    master: None,
                    vips: i.owned().map(ToString::to_string).collect(),
                    last_transition: 0.0,
                    src: Some(*src),
                    family_key: Some(i.family),
                });
                b.len() - 1
            },
            metrics: {
                let labels = Metrics::labels(&i.name, &cfg.interface, i.vrid);
                metrics.add_instance(labels.clone(), i.family, i.vrid);
                metrics
                    .configured_priority
                    .with_label_values(&[&labels[0], &labels[1], &labels[2]])
                    .set(i64::from(i.priority));
                let m = InstanceMetrics::new(&metrics, &labels);
                m.priority.set(i64::from(i.priority));
                m
            },
        };
        let icfg = InstanceConfig {
            name: i.name.clone(),
            vrid: i.vrid,
            family: i.family,
            version: i.version,
            priority: i.priority,
            adver_int: i.adver_int,
            preempt: i.preempt,
            primary_addr: *src,
        };
        let mut inst = Instance::new(icfg, effects, tx);
        tracing::info!(
            "({}) vrid {} on {} from {src}, priority {}",
            i.name,
            i.vrid,
            cfg.interface,
            i.priority
        );
        inst.handle(Input::Startup);
        instances.push(inst);
    }
    drop(ops_tx);
    // Health checks, against this node's own address (IPv4 first, as the ipfailover monitor port).
    let (check_tx, mut check_rx) = mpsc::unbounded_channel::<CheckEvent>();
    let target = sources
        .iter()
        .copied()
        .find(IpAddr::is_ipv4)
        .or(sources.first().copied());
    if let Some(target) = target {
        for c in &cfg.checks {
            tokio::spawn(checks::run(c.clone(), target, check_tx.clone(), metrics.check(&c.name)));
        }
    }
    // Tracked interfaces: the VRRP interface itself (as keepalived) and each instance's track_interface.
    let (link_tx, mut link_rx) = mpsc::unbounded_channel::<LinkEvent>();
    let mut tracked_links: Vec<String> = vec![cfg.interface.clone()];
    for i in &cfg.instances {
        tracked_links.extend(
            i.track_interfaces
                .iter()
                .filter(|n| !tracked_links.contains(n))
                .cloned()
                .collect::<Vec<_>>(),
        );
    }
    links::watch(tracked_links, link_tx)?;
    let mut health = Health {
        check_ok: cfg.checks.iter().map(|c| (c.name.clone(), true)).collect(),
        link_up: Default::default(),
        applied: cfg.instances.iter().map(|i| (false, i.priority)).collect(),
    };
    metrics.heartbeat();
    metrics.ready.store(true, std::sync::atomic::Ordering::Relaxed);
    // The heartbeat /healthz checks: proves this loop still turns.
    let mut heartbeat = tokio::time::interval(Duration::from_secs(1));

    let mut sigterm =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).context("SIGTERM handler")?;
    let mut sigint =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt()).context("SIGINT handler")?;
    loop {
        tokio::select! {
            _ = heartbeat.tick() => metrics.heartbeat(),
            Some(ev) = check_rx.recv() => {
                health.check_ok.insert(ev.name, ev.ok);
                health.apply(&cfg, &mut instances, &metrics);
            }
            Some(ev) = link_rx.recv() => {
                health.link_up.insert(ev.ifname, ev.up);
                health.apply(&cfg, &mut instances, &metrics);
            }
            Some((idx, input)) = merged_rx.recv() => {
                if let Some(inst) = instances.get_mut(idx) {
                    inst.handle(input);
                }
            }
            ev = events.recv() => {
                let Some(ev) = ev else { bail!("datapath event stream ended") };
                if ev.kind & ipf_common::maps::event_kind::VIP_CONFLICT != 0 {
                    tracing::warn!("VIP {} claimed by {}", ip_from_wire(ev.family, &ev.addr), crate::datapath::format_mac(&ev.mac));
                    continue;
                }
                let family = if ev.family == FAMILY_V6 { Family::V6 } else { Family::V4 };
                for inst in instances.iter_mut().filter(|i| i.config().vrid == ev.vrid && i.config().family == family) {
                    inst.handle(Input::Advert {
                        src: ip_from_wire(ev.family, &ev.addr),
                        priority: ev.priority,
                        adver_int: Duration::from_millis(u64::from(ev.adver_int_cs) * 10),
                    });
                }
            }
            _ = sigterm.recv() => break,
            _ = sigint.recv() => break,
        }
    }
    // Graceful stop: priority 0 from every Master, VIPs removed, then the datapath detaches.
    for inst in &mut instances {
        inst.handle(Input::Shutdown);
    }
    drop(instances);
    if tokio::time::timeout(Duration::from_millis(800), worker).await.is_err() {
        tracing::error!("VIP removal did not finish within 800 ms");
    }
    drop(datapath);
    if let Some(path) = &cfg.status_socket {
        let _ = std::fs::remove_file(path);
    }
    tracing::info!("stopped");
    Ok(())
}
