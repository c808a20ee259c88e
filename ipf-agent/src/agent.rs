//! `ipf-agent run`: the datapath, one VRRP state machine per instance, and their side effects
//! (adverts, VIPs through rtnetlink, gratuitous ARP / unsolicited NA), until SIGTERM / SIGINT.

use std::{
    cell::RefCell,
    collections::HashMap,
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
    config::{Config, Garp, InstanceSpec, Notify},
    datapath::{Datapath, DatapathOptions, Family, XdpModeArg, ip_from_wire, raw::monotonic_ns, wire_addr},
    firewall,
    links::{self, LinkEvent},
    metrics::{self, Metrics},
    network::{AddressManager, AdvertSender, Announcer, Vip},
    status,
    vrrp::{Effects, Input, Instance, InstanceConfig, LastAdvert, State},
};

/// Everything `run` needs: the configuration and the runtime options of `ipf-agent run`.
#[derive(Clone, Debug)]
pub struct AgentConfig {
    pub config: Config,
    pub xdp_mode: XdpModeArg,
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

/// Checks the configuration against the system without changing anything: every interface it
/// names must exist.
pub fn check_system(config: &Config) -> Result<()> {
    config.validate().map_err(anyhow::Error::msg)?;
    for name in config.interfaces() {
        crate::datapath::interface_index(name).with_context(|| format!("interface {name:?}"))?;
    }
    Ok(())
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
    /// Every owned VIP with its interface filled in (`dev`).
    vips: Vec<Vip>,
    sender: Rc<AdvertSender>,
    ops: mpsc::UnboundedSender<VipOp>,
    datapath: Rc<RefCell<Datapath>>,
    /// Incremented on every Master entry and exit: stale delayed announcements are skipped.
    master_epoch: Arc<AtomicU64>,
    garp: Garp,
    vip_lease: Option<Duration>,
    metrics: InstanceMetrics,
    board: status::Board,
    notify: Notify,
}

/// The instance's series, bound to its labels once.
struct InstanceMetrics {
    labels: [String; 3],
    state: IntGauge,
    priority: IntGauge,
    configured_priority: IntGauge,
    adverts_sent: IntCounter,
    priority_zero_sent: IntCounter,
    became_master: IntCounter,
    released_master: IntCounter,
    last_transition: Gauge,
    gratuitous_sent: IntCounter,
    notify_failures: IntCounter,
}

impl InstanceMetrics {
    fn new(m: &Metrics, labels: [String; 3]) -> Self {
        let l = [labels[0].as_str(), labels[1].as_str(), labels[2].as_str()];
        InstanceMetrics {
            state: m.state.with_label_values(&l),
            priority: m.priority.with_label_values(&l),
            configured_priority: m.configured_priority.with_label_values(&l),
            adverts_sent: m.adverts_sent.with_label_values(&l),
            priority_zero_sent: m.priority_zero_sent.with_label_values(&l),
            became_master: m.became_master.with_label_values(&l),
            released_master: m.released_master.with_label_values(&l),
            last_transition: m.last_transition.with_label_values(&l),
            gratuitous_sent: m.gratuitous_sent.with_label_values(&l),
            notify_failures: m.notify_failures.with_label_values(&l),
            labels,
        }
    }
}

/// The VIPs of `spec` with their interface made explicit, so the VIP worker needs no other context.
fn placed_vips(spec: &InstanceSpec) -> Vec<Vip> {
    spec.owned()
        .map(|v| Vip {
            dev: Some(spec.vip_interface(v).to_owned()),
            ..v.clone()
        })
        .collect()
}

/// The advertised address list on the wire (the first [`MAX_ADVERTISED`] VIPs).
fn advertised_bytes(spec: &InstanceSpec) -> Vec<u8> {
    let addr_len = if spec.family == Family::V6 { 16 } else { 4 };
    spec.vips
        .iter()
        .take(MAX_ADVERTISED)
        .flat_map(|v| wire_addr(&v.addr)[..addr_len].to_vec())
        .collect()
}

impl RealEffects {
    fn with_status(&self, f: impl FnOnce(&mut status::InstanceStatus)) {
        if let Some(s) = status::lock(&self.board).iter_mut().find(|s| s.instance == self.name) {
            f(s);
        }
    }

    /// Runs a notify script detached (never blocking an election) with keepalived's argv: the words
    /// of `line`, then `extra`. A script still running after [`NOTIFY_TIMEOUT`] is killed.
    fn run_script(&self, line: &str, extra: &[String]) {
        let mut words = line.split_whitespace();
        let Some(program) = words.next() else { return };
        let mut cmd = tokio::process::Command::new(program);
        // Not killed with the agent: a STOP notification must still run when the agent exits.
        cmd.args(words).args(extra).stdin(std::process::Stdio::null());
        let failed = self.metrics.notify_failures.clone();
        let what = format!("{line} {}", extra.join(" "));
        match cmd.spawn() {
            Err(e) => {
                failed.inc();
                tracing::warn!("notify {what}: {e}");
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
                    tracing::warn!("notify {what}: {problem}");
                });
            }
        }
    }

    /// A reload changed the addresses: a Master drops the removed ones and takes and announces the
    /// new set; the next adverts carry the new list.
    fn set_vips(&mut self, vips: Vec<Vip>, advertised: Vec<u8>, master: bool) {
        let removed: Vec<Vip> = self.vips.iter().filter(|v| !vips.contains(v)).cloned().collect();
        self.vips = vips;
        self.advertised = advertised;
        self.with_status(|s| s.vips = self.vips.iter().map(ToString::to_string).collect());
        if master {
            if !removed.is_empty() {
                let _ = self.ops.send(VipOp::Remove(removed));
            }
            self.add_vips();
            self.announce();
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
        let _ = self.ops.send(op(self.garp.repeat));
        // keepalived's second burst after garp_master_delay, then the optional periodic refresh
        // (garp_master_refresh), for as long as this Master epoch lasts.
        let second = op(self.garp.repeat);
        let refresh = self.garp.refresh.map(|every| (every, op(1)));
        let (delay, ops, epoch_now) = (self.garp.delay, self.ops.downgrade(), self.master_epoch.clone());
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
        self.with_status(|s| s.priority = priority);
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
        self.with_status(|s| {
            s.state = to.keepalived_name().to_owned();
            s.last_transition = now;
        });
        if to == State::Master {
            m.became_master.inc();
        }
        if from == State::Master {
            m.released_master.inc();
        }
        // keepalived's wording, which existing tooling greps for.
        tracing::info!(reason, "({}) Entering {} STATE", self.name, to.keepalived_name());
        // keepalived runs the state's own script, then `notify` with `INSTANCE <name> <state>
        // <priority>`; STOP when the instance stops.
        let (specific, state) = match to {
            State::Master => (&self.notify.master, "MASTER"),
            State::Backup => (&self.notify.backup, "BACKUP"),
            State::Fault => (&self.notify.fault, "FAULT"),
            State::Initialize => (&self.notify.stop, "STOP"),
        };
        if let Some(line) = specific {
            self.run_script(line, &[]);
        }
        if let Some(line) = &self.notify.any {
            let args = [
                "INSTANCE".to_owned(),
                self.name.clone(),
                state.to_owned(),
                self.metrics.priority.get().to_string(),
            ];
            self.run_script(line, &args);
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

/// An interface VIPs go on, opened on first use.
struct VipInterface {
    ifindex: u32,
    mac: [u8; 6],
    announcer: Announcer,
}

/// The interface of `v` (its `dev`, set by `placed_vips`), opened on first use.
fn vip_interface<'a>(interfaces: &'a mut HashMap<String, VipInterface>, v: &Vip) -> Option<&'a VipInterface> {
    let name = v.dev.as_deref()?;
    if !interfaces.contains_key(name) {
        let opened = crate::datapath::interface_index(name)
            .map_err(|e| e.to_string())
            .and_then(|ifindex| {
                Announcer::new(name)
                    .map_err(|e| e.to_string())
                    .map(|announcer| VipInterface {
                        ifindex,
                        mac: crate::datapath::interface_mac(name),
                        announcer,
                    })
            });
        match opened {
            Ok(i) => {
                interfaces.insert(name.to_owned(), i);
            }
            Err(e) => {
                tracing::error!("VIP {v}: {e}");
                return None;
            }
        }
    }
    interfaces.get(name)
}

async fn vip_worker(mut rx: mpsc::UnboundedReceiver<VipOp>, addrs: Rc<AddressManager>, lease: Option<Duration>) {
    let mut interfaces: HashMap<String, VipInterface> = HashMap::new();
    let add = async |ifindex: u32, v: &Vip| match lease {
        Some(l) => addrs.add_leased(ifindex, v, l).await,
        None => addrs.add(ifindex, v).await,
    };
    while let Some(op) = rx.recv().await {
        match op {
            VipOp::Add(vips) => {
                for v in &vips {
                    let Some(ifindex) = vip_interface(&mut interfaces, v).map(|i| i.ifindex) else {
                        continue;
                    };
                    if let Err(e) = add(ifindex, v).await {
                        tracing::error!("adding VIP {v}: {e}");
                    }
                }
            }
            VipOp::Renew { vips, epoch, epoch_now } => {
                if epoch_now.load(Ordering::SeqCst) == epoch {
                    for v in &vips {
                        let Some(ifindex) = vip_interface(&mut interfaces, v).map(|i| i.ifindex) else {
                            continue;
                        };
                        if let Err(e) = add(ifindex, v).await {
                            tracing::error!("renewing VIP {v}: {e}");
                        }
                    }
                }
            }
            VipOp::Remove(vips) => {
                for v in &vips {
                    let Some(ifindex) = vip_interface(&mut interfaces, v).map(|i| i.ifindex) else {
                        continue;
                    };
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
                    for v in &vips {
                        if let Some(i) = vip_interface(&mut interfaces, v) {
                            sent.inc_by(announce(&i.announcer, v, i.mac, burst));
                        }
                    }
                }
            }
        }
    }
}

/// Sends `burst` gratuitous ARPs / unsolicited NAs for `vip`; returns how many went out.
fn announce(announcer: &Announcer, vip: &Vip, mac: [u8; 6], burst: u32) -> u64 {
    let mut sent = 0;
    for _ in 0..burst {
        let r = match vip.addr {
            IpAddr::V4(a) => announcer.gratuitous_arp(a, mac),
            IpAddr::V6(a) => announcer.unsolicited_na(a, mac),
        };
        match r {
            Ok(()) => sent += 1,
            Err(e) => tracing::warn!("announcing {}: {e}", vip.addr),
        }
    }
    sent
}

/// A running instance.
struct Running {
    /// Inputs are addressed by id, so a message for an instance a reload replaced is dropped.
    id: u64,
    spec: InstanceSpec,
    inst: Instance<RealEffects>,
    /// The Fault and effective priority last fed to the instance.
    applied: (bool, u8),
    forward: tokio::task::JoinHandle<()>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.forward.abort();
    }
}

/// What a reload does to an instance.
#[derive(Debug, PartialEq, Eq)]
enum Change {
    Keep,
    /// Priority, addresses, tracking, notify or announcements changed: applied in place, keeping
    /// the state.
    Update,
    /// Something on the wire or in the election changed: released and started again.
    Restart,
}

fn change(old: &InstanceSpec, new: &InstanceSpec) -> Change {
    if old == new {
        return Change::Keep;
    }
    fn identity(s: &InstanceSpec) -> impl PartialEq + '_ {
        (
            &s.interface,
            s.vrid,
            s.family,
            s.version,
            s.adver_int,
            s.preempt,
            &s.unicast_peers,
            s.src,
            &s.auth_pass,
            // Becoming or ceasing to be the address owner changes the election itself.
            s.priority == 255,
        )
    }
    if identity(old) == identity(new) {
        Change::Update
    } else {
        Change::Restart
    }
}

/// The node's side of the running instances: what starting and stopping one needs.
struct Node {
    interface: String,
    ifindex: u32,
    addrs: Rc<AddressManager>,
    metrics: Arc<Metrics>,
    board: status::Board,
    datapath: Rc<RefCell<Datapath>>,
    ops: mpsc::UnboundedSender<VipOp>,
    inputs: mpsc::UnboundedSender<(u64, Input)>,
    vip_lease: Option<Duration>,
    next_id: u64,
}

impl Node {
    /// The advert source of each instance, waiting for the interface to have one. Runs before
    /// anything changes, so an error leaves the system untouched.
    async fn sources(&self, instances: &[&InstanceSpec]) -> Result<Vec<IpAddr>> {
        let all_vips: Vec<IpAddr> = instances.iter().flat_map(|i| i.owned().map(|v| v.addr)).collect();
        let mut out = Vec::new();
        for i in instances {
            if let Some(s) = i.src {
                out.push(s);
                continue;
            }
            // A link-local address is unusable until duplicate address detection ends (about a
            // second after the link comes up): wait for it rather than fail at boot.
            let deadline = tokio::time::Instant::now() + SOURCE_WAIT;
            loop {
                if let Some(a) = self.addrs.primary_address(self.ifindex, i.family, &all_vips).await? {
                    out.push(a);
                    break;
                }
                if tokio::time::Instant::now() >= deadline {
                    bail!(
                        "instance {}: {} has no usable {:?} address to advertise from (waited {SOURCE_WAIT:?})",
                        i.name,
                        self.interface,
                        i.family,
                    );
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        Ok(out)
    }

    /// Removes addresses `spec` manages that are on their interface without being owned (left by a
    /// crash or `kill -9`): not owned until elected.
    async fn remove_stale(&self, spec: &InstanceSpec) -> Result<()> {
        for v in spec.owned() {
            let name = spec.vip_interface(v);
            let ifindex = crate::datapath::interface_index(name)?;
            self.addrs
                .remove(ifindex, v)
                .await
                .with_context(|| format!("removing stale VIP {v} from {name}"))?;
        }
        Ok(())
    }

    /// Sets the instance up in the datapath, the metrics and the status board, and starts it.
    fn start(&mut self, spec: &InstanceSpec, src: IpAddr) -> Result<Running> {
        self.datapath.borrow_mut().set_vrid(&spec.vrid_spec(Some(src)))?;
        for v in spec.owned() {
            self.datapath.borrow_mut().add_vip(&v.addr)?;
        }
        let id = self.next_id;
        self.next_id += 1;
        let (tx, mut rx) = mpsc::unbounded_channel();
        let fwd = self.inputs.clone();
        let forward = tokio::spawn(async move {
            while let Some(input) = rx.recv().await {
                if fwd.send((id, input)).is_err() {
                    break;
                }
            }
        });
        let sender = Rc::new(AdvertSender::new(&self.interface, spec.family, src)?);
        let dsts = if spec.unicast_peers.is_empty() {
            vec![if spec.family == Family::V6 {
                IpAddr::from(MCAST_V6)
            } else {
                IpAddr::from(MCAST_V4)
            }]
        } else {
            // The ipfailover image lists every node, this one included.
            spec.unicast_peers.iter().copied().filter(|p| *p != src).collect()
        };
        let auth_pass = spec.auth_pass.as_ref().map(|p| {
            let mut a = [0u8; 8];
            let n = p.len().min(8);
            a[..n].copy_from_slice(&p.as_bytes()[..n]);
            a
        });
        let vips = placed_vips(spec);
        {
            let mut board = status::lock(&self.board);
            board.retain(|s| s.instance != spec.name);
            board.push(status::InstanceStatus {
                instance: spec.name.clone(),
                interface: self.interface.clone(),
                vrid: spec.vrid,
                family: format!("{:?}", spec.family).to_lowercase(),
                state: State::Initialize.keepalived_name().to_owned(),
                priority: spec.priority,
                configured_priority: spec.priority,
                master: None,
                vips: vips.iter().map(ToString::to_string).collect(),
                last_transition: 0.0,
                src: Some(src),
                family_key: Some(spec.family),
            });
        }
        let labels = Metrics::labels(&spec.name, &self.interface, spec.vrid);
        self.metrics.add_instance(labels.clone(), spec.family, spec.vrid);
        let metrics = InstanceMetrics::new(&self.metrics, labels);
        metrics.configured_priority.set(i64::from(spec.priority));
        metrics.priority.set(i64::from(spec.priority));
        let effects = RealEffects {
            name: spec.name.clone(),
            family: spec.family,
            vrid: spec.vrid,
            version: spec.version,
            adver_int_cs: (spec.adver_int.as_millis() / 10) as u16,
            src,
            dsts,
            advertised: advertised_bytes(spec),
            auth_pass,
            vips,
            sender,
            ops: self.ops.clone(),
            datapath: self.datapath.clone(),
            master_epoch: Arc::new(AtomicU64::new(0)),
            garp: spec.garp,
            vip_lease: self.vip_lease,
            metrics,
            board: self.board.clone(),
            notify: spec.notify.clone(),
        };
        let icfg = InstanceConfig {
            name: spec.name.clone(),
            vrid: spec.vrid,
            family: spec.family,
            version: spec.version,
            priority: spec.priority,
            adver_int: spec.adver_int,
            preempt: spec.preempt,
            primary_addr: src,
            timer_precision: crate::vrrp::timers::Precision::Fine,
        };
        let mut inst = Instance::new(icfg, effects, tx);
        tracing::info!(
            "({}) vrid {} on {} from {src}, priority {}",
            spec.name,
            spec.vrid,
            self.interface,
            spec.priority
        );
        inst.handle(Input::Startup);
        Ok(Running {
            id,
            spec: spec.clone(),
            inst,
            applied: (false, spec.priority),
            forward,
        })
    }

    /// Stops an instance (priority 0 and VIPs released if Master) and forgets it everywhere.
    fn stop(&mut self, mut r: Running) {
        r.inst.handle(Input::Shutdown);
        let mut dp = self.datapath.borrow_mut();
        for v in r.spec.owned() {
            if let Err(e) = dp.remove_vip(&v.addr) {
                tracing::warn!("({}) datapath VIP {}: {e}", r.spec.name, v.addr);
            }
        }
        if let Err(e) = dp.remove_vrid(r.spec.family, r.spec.vrid) {
            tracing::warn!("({}) datapath VRID: {e}", r.spec.name);
        }
        drop(dp);
        status::lock(&self.board).retain(|s| s.instance != r.spec.name);
        self.metrics.remove_instance(&r.inst.effects().metrics.labels);
    }

    /// Applies a changed priority, addresses, tracking, notify or announcements in place.
    fn update(&mut self, r: &mut Running, spec: &InstanceSpec) {
        let master = r.inst.state() == State::Master;
        let mut dp = self.datapath.borrow_mut();
        for v in r.spec.owned().filter(|v| !spec.owned().any(|n| n.addr == v.addr)) {
            if let Err(e) = dp.remove_vip(&v.addr) {
                tracing::warn!("({}) datapath VIP {}: {e}", spec.name, v.addr);
            }
        }
        for v in spec.owned() {
            if let Err(e) = dp.add_vip(&v.addr) {
                tracing::warn!("({}) datapath VIP {}: {e}", spec.name, v.addr);
            }
        }
        drop(dp);
        let effects = r.inst.effects_mut();
        effects.notify = spec.notify.clone();
        effects.garp = spec.garp;
        effects.metrics.configured_priority.set(i64::from(spec.priority));
        effects.with_status(|s| s.configured_priority = spec.priority);
        if r.spec.owned().ne(spec.owned()) {
            effects.set_vips(placed_vips(spec), advertised_bytes(spec), master);
        }
        tracing::info!("({}) configuration updated in place", spec.name);
        // The effective priority follows from the new configured one at the next health pass.
        r.spec = spec.clone();
    }
}

/// What checks and tracked links say.
#[derive(Default)]
struct Health {
    check_ok: HashMap<String, bool>,
    /// Links not reported yet count as up.
    link_up: HashMap<String, bool>,
}

impl Health {
    /// Feeds each instance the Fault and priority its checks and links call for, when they change.
    fn apply(&self, interface: &str, checks: &[CheckSpec], running: &mut [Running]) {
        for r in running {
            let tracked: Vec<(i32, bool)> = r
                .spec
                .tracks
                .iter()
                .filter_map(|t| checks.iter().find(|c| &c.name == t))
                .map(|c| (c.weight, self.check_ok.get(&c.name).copied().unwrap_or(true)))
                .collect();
            let (check_fault, priority) = checks::effect(r.spec.priority, &tracked);
            let link_down = std::iter::once(interface)
                .chain(r.spec.track_interfaces.iter().map(String::as_str))
                .any(|l| self.link_up.get(l) == Some(&false));
            let fault = check_fault || link_down;
            let (was_fault, was_priority) = std::mem::replace(&mut r.applied, (fault, priority));
            if priority != was_priority {
                r.inst.handle(Input::Priority(priority));
            }
            if fault != was_fault {
                r.inst.handle(Input::Fault(fault));
            }
        }
    }
}

/// The health checks as running tasks, so a reload can keep, replace or stop each.
struct CheckTasks {
    tasks: HashMap<String, (CheckSpec, tokio::task::JoinHandle<()>)>,
    target: Option<IpAddr>,
    tx: mpsc::UnboundedSender<CheckEvent>,
}

impl CheckTasks {
    /// Starts, restarts or stops checks to match `checks`; returns the names whose status restarts.
    fn sync(&mut self, checks: &[CheckSpec], metrics: &Metrics) -> Vec<String> {
        let mut restarted = Vec::new();
        self.tasks.retain(|name, (spec, task)| {
            let keep = checks.iter().any(|c| c == spec);
            if !keep {
                task.abort();
                if !checks.iter().any(|c| &c.name == name) {
                    metrics.remove_check(name);
                }
            }
            keep
        });
        let Some(target) = self.target else { return restarted };
        for c in checks {
            if !self.tasks.contains_key(&c.name) {
                let task = tokio::spawn(checks::run(c.clone(), target, self.tx.clone(), metrics.check(&c.name)));
                self.tasks.insert(c.name.clone(), (c.clone(), task));
                restarted.push(c.name.clone());
            }
        }
        restarted
    }
}

impl Drop for CheckTasks {
    fn drop(&mut self) {
        for (_, task) in self.tasks.values() {
            task.abort();
        }
    }
}

/// The links to watch: the VRRP interface itself (as keepalived) and every track_interface.
fn tracked_links(config: &Config, interface: &str) -> Vec<String> {
    let mut out = vec![interface.to_owned()];
    for name in config.instances.iter().flat_map(|i| &i.track_interfaces) {
        if !out.contains(name) {
            out.push(name.clone());
        }
    }
    out
}

/// Runs the agent until SIGTERM / SIGINT; SIGHUP reloads the configuration through `reload`. Must be
/// called on a current-thread runtime inside a `LocalSet` (the state machines and their effects are
/// single-threaded).
pub async fn run(cfg: AgentConfig, reload: impl Fn() -> Result<Config>) -> Result<()> {
    check_system(&cfg.config)?;
    let mut config = cfg.config.clone();
    for w in &config.warnings {
        tracing::warn!("{w}");
    }
    let interface = config.interface().map_err(anyhow::Error::msg)?.to_owned();
    let ifindex = crate::datapath::interface_index(&interface)?;
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

    let opts = DatapathOptions::new(&interface, cfg.xdp_mode);
    let (dp, mut events) = Datapath::start(&opts)?;
    metrics.add_datapath(dp.reader());
    readers
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .push(dp.reader());
    let (ops_tx, ops_rx) = mpsc::unbounded_channel();
    let worker = tokio::task::spawn_local(vip_worker(ops_rx, addrs.clone(), cfg.vip_lease));
    let (inputs_tx, mut inputs_rx) = mpsc::unbounded_channel::<(u64, Input)>();
    let mut node = Node {
        interface: interface.clone(),
        ifindex,
        addrs,
        metrics: metrics.clone(),
        board,
        datapath: Rc::new(RefCell::new(dp)),
        ops: ops_tx,
        inputs: inputs_tx,
        vip_lease: cfg.vip_lease,
        next_id: 0,
    };

    // Sources first: an error here must leave the addresses untouched.
    let all: Vec<&InstanceSpec> = config.instances.iter().collect();
    let sources = node.sources(&all).await?;
    if let Some(rule) = &config.firewall {
        apply_firewall(rule, &config).await?;
    }
    for i in &config.instances {
        node.remove_stale(i).await?;
    }
    let mut running = Vec::new();
    for (i, src) in config.instances.iter().zip(&sources) {
        running.push(node.start(i, *src)?);
    }
    // Health checks, against this node's own address (IPv4 first, as the ipfailover monitor port).
    let (check_tx, mut check_rx) = mpsc::unbounded_channel::<CheckEvent>();
    let mut checks = CheckTasks {
        tasks: HashMap::new(),
        target: sources
            .iter()
            .copied()
            .find(IpAddr::is_ipv4)
            .or(sources.first().copied()),
        tx: check_tx,
    };
    let mut health = Health::default();
    for name in checks.sync(&config.checks, &metrics) {
        health.check_ok.insert(name, true);
    }
    let (link_tx, mut link_rx) = mpsc::unbounded_channel::<LinkEvent>();
    let mut links_watched = tracked_links(&config, &interface);
    let mut _link_watch = links::watch(links_watched.clone(), link_tx.clone())?;
    metrics.heartbeat();
    metrics.ready.store(true, std::sync::atomic::Ordering::Relaxed);
    // The heartbeat /healthz checks: proves this loop still turns.
    let mut heartbeat = tokio::time::interval(Duration::from_secs(1));

    let signal = |kind, name| tokio::signal::unix::signal(kind).with_context(|| format!("{name} handler"));
    use tokio::signal::unix::SignalKind;
    let mut sigterm = signal(SignalKind::terminate(), "SIGTERM")?;
    let mut sigint = signal(SignalKind::interrupt(), "SIGINT")?;
    let mut sighup = signal(SignalKind::hangup(), "SIGHUP")?;
    loop {
        tokio::select! {
            _ = heartbeat.tick() => metrics.heartbeat(),
            Some(ev) = check_rx.recv() => {
                health.check_ok.insert(ev.name, ev.ok);
                health.apply(&interface, &config.checks, &mut running);
            }
            Some(ev) = link_rx.recv() => {
                health.link_up.insert(ev.ifname, ev.up);
                health.apply(&interface, &config.checks, &mut running);
            }
            Some((id, input)) = inputs_rx.recv() => {
                // `running` stays sorted by id: ids only grow and new instances are pushed.
                if let Ok(i) = running.binary_search_by_key(&id, |r| r.id) {
                    running[i].inst.handle(input);
                }
            }
            ev = events.recv() => {
                let Some(ev) = ev else { bail!("datapath event stream ended") };
                if ev.kind & ipf_common::maps::event_kind::VIP_CONFLICT != 0 {
                    tracing::warn!("VIP {} claimed by {}", ip_from_wire(ev.family, &ev.addr), crate::datapath::format_mac(&ev.mac));
                    continue;
                }
                let family = if ev.family == FAMILY_V6 { Family::V6 } else { Family::V4 };
                for r in running.iter_mut().filter(|r| r.spec.vrid == ev.vrid && r.spec.family == family) {
                    r.inst.handle(Input::Advert {
                        src: ip_from_wire(ev.family, &ev.addr),
                        priority: ev.priority,
                        adver_int: Duration::from_millis(u64::from(ev.adver_int_cs) * 10),
                    });
                }
            }
            _ = sighup.recv() => {
                tracing::info!("SIGHUP: reloading the configuration");
                // Everything is checked before anything changes: a bad file changes nothing.
                match reload_config(&reload, &interface) {
                    Err(e) => tracing::error!("reload failed, the running configuration stays: {e:#}"),
                    Ok(new) => {
                        match apply_reload(&mut node, &mut running, &new).await {
                            Err(e) => tracing::error!("reload failed, the running configuration stays: {e:#}"),
                            Ok(summary) => {
                                tracing::info!("reloaded: {summary}");
                                if config.firewall != new.firewall || families(&config) != families(&new) {
                                    if let Some(old) = config.firewall.clone().filter(|o| Some(o) != new.firewall.as_ref()) {
                                        match tokio::task::spawn_blocking(move || firewall::remove(&old)).await {
                                            Ok(Ok(())) => {}
                                            Ok(Err(e)) => tracing::warn!("removing the old firewall rule: {e}"),
                                            Err(e) => tracing::warn!("removing the old firewall rule: {e}"),
                                        }
                                    }
                                    if let Some(rule) = &new.firewall
                                        && let Err(e) = apply_firewall(rule, &new).await
                                    {
                                        tracing::error!("{e:#}");
                                    }
                                }
                                config = new;
                                for name in checks.sync(&config.checks, &metrics) {
                                    health.check_ok.insert(name, true);
                                }
                                health.check_ok.retain(|n, _| config.checks.iter().any(|c| &c.name == n));
                                let wanted = tracked_links(&config, &interface);
                                if wanted != links_watched {
                                    _link_watch = links::watch(wanted.clone(), link_tx.clone())?;
                                    links_watched = wanted;
                                }
                                health.apply(&interface, &config.checks, &mut running);
                            }
                        }
                    }
                }
            }
            _ = sigterm.recv() => break,
            _ = sigint.recv() => break,
        }
    }
    // Graceful stop: priority 0 from every Master, VIPs removed, then the datapath detaches.
    for r in running.drain(..) {
        node.stop(r);
    }
    drop(checks);
    let Node { datapath, .. } = node;
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

/// Adds the firewall accept rule (the tools block: off the event loop).
async fn apply_firewall(rule: &crate::config::Firewall, config: &Config) -> Result<()> {
    let (rule, families) = (rule.clone(), families(config));
    tokio::task::spawn_blocking(move || firewall::apply(&rule, &families))
        .await
        .context("firewall task")?
        .context("firewall accept rule")
}

/// The address families of the configured instances (for the firewall rule).
fn families(config: &Config) -> Vec<Family> {
    let mut out: Vec<Family> = Vec::new();
    for i in &config.instances {
        if !out.contains(&i.family) {
            out.push(i.family);
        }
    }
    out
}

/// Loads and checks the new configuration; it must keep the interface (the datapath is attached
/// there).
fn reload_config(reload: &impl Fn() -> Result<Config>, interface: &str) -> Result<Config> {
    let new = reload()?;
    check_system(&new)?;
    let new_interface = new.interface().map_err(anyhow::Error::msg)?;
    if new_interface != interface {
        bail!("the interface changed from {interface} to {new_interface}: restart the agent to move it");
    }
    Ok(new)
}

/// Brings the running instances to `new`: unchanged ones keep their state and VIPs, changed ones
/// are updated in place or restarted, removed ones released, added ones started. An error means
/// nothing was changed (it comes before the first change).
async fn apply_reload(node: &mut Node, running: &mut Vec<Running>, new: &Config) -> Result<String> {
    // Sources of the instances that will start, before anything changes.
    let starting: Vec<&InstanceSpec> = new
        .instances
        .iter()
        .filter(|n| {
            running
                .iter()
                .find(|r| r.spec.name == n.name)
                .is_none_or(|r| change(&r.spec, n) == Change::Restart)
        })
        .collect();
    let sources = node.sources(&starting).await?;
    let (mut kept, mut updated, mut restarted, mut removed) = (0, 0, 0, 0);
    // Stops first, so a VRID can move between instances.
    let mut i = 0;
    while i < running.len() {
        let verdict = new
            .instances
            .iter()
            .find(|n| n.name == running[i].spec.name)
            .map(|n| change(&running[i].spec, n));
        match verdict {
            None => {
                removed += 1;
                let r = running.remove(i);
                node.stop(r);
            }
            Some(Change::Restart) => {
                restarted += 1;
                let r = running.remove(i);
                node.stop(r);
            }
            Some(Change::Keep) => {
                kept += 1;
                i += 1;
            }
            Some(Change::Update) => {
                updated += 1;
                if let Some(n) = new.instances.iter().find(|n| n.name == running[i].spec.name) {
                    node.update(&mut running[i], n);
                }
                i += 1;
            }
        }
    }
    // From here on the change is under way: an instance that cannot start is reported, the others
    // go on.
    let mut failed = Vec::new();
    for (spec, src) in starting.iter().zip(sources) {
        let started = async {
            node.remove_stale(spec).await?;
            node.start(spec, src)
        };
        match started.await {
            Ok(r) => running.push(r),
            Err(e) => {
                tracing::error!("({}) cannot start: {e:#}", spec.name);
                failed.push(spec.name.clone());
            }
        }
    }
    let added = starting.len() - restarted;
    let mut summary = format!(
        "{kept} unchanged, {updated} updated in place, {restarted} restarted, {removed} removed, {added} added"
    );
    if !failed.is_empty() {
        summary.push_str(&format!("; failed to start: {}", failed.join(", ")));
    }
    Ok(summary)
}

/// `ipf-agent cleanup`: removes every address `config` manages from its interface and the firewall
/// rule, whoever put them there; absent ones are fine. Returns what was done, a line each.
pub async fn cleanup(config: &Config) -> Result<String> {
    let addrs = AddressManager::new().context("rtnetlink")?;
    let mut report = String::new();
    for i in &config.instances {
        for v in i.owned() {
            let name = i.vip_interface(v);
            let Ok(ifindex) = crate::datapath::interface_index(name) else {
                report.push_str(&format!("{v}: interface {name} is gone\n"));
                continue;
            };
            let present = addrs.list(ifindex).await?.contains(&(v.addr, v.prefix_len));
            addrs
                .remove(ifindex, v)
                .await
                .with_context(|| format!("removing {v} from {name}"))?;
            if present {
                report.push_str(&format!("removed {}/{} from {name}\n", v.addr, v.prefix_len));
            }
        }
    }
    if let Some(rule) = &config.firewall {
        firewall::remove(rule).context("removing the firewall accept rule")?;
        report.push_str("firewall accept rule removed (if it was there)\n");
    }
    if report.is_empty() {
        report.push_str("nothing to remove\n");
    }
    Ok(report)
}
