//! The node's side of the running instances: their advert sources, and starting, updating and
//! stopping one (datapath entries, metrics series, status row, engine).

use std::{
    cell::RefCell,
    net::IpAddr,
    rc::Rc,
    sync::{Arc, atomic::AtomicU64},
    time::Duration,
};

use anyhow::{Context as _, Result, bail};
use tokio::sync::mpsc;

use super::{
    effects::RealEffects,
    outbox::{Origin, Outboxes},
    plan::InstancePlan,
    vips::VipOp,
};
use crate::{
    config::InstanceSpec,
    datapath::Datapath,
    metrics::{InstanceSeries, Metrics},
    network::AddressManager,
    status,
    vrrp::{Input, Instance, State, timers::TimerSink},
};

/// How long to wait for the interface to have a usable source address.
const SOURCE_WAIT: Duration = Duration::from_secs(10);

/// A running instance.
pub(super) struct Running {
    /// Inputs are addressed by id, so a message for an instance a reload replaced is dropped.
    pub(super) id: u64,
    pub(super) spec: InstanceSpec,
    pub(super) inst: Instance<RealEffects>,
    /// Its advert source.
    pub(super) src: IpAddr,
    /// The Fault and effective priority last fed to the instance.
    pub(super) applied: (bool, u8),
}

/// The node's side of the running instances: what starting and stopping one needs.
pub(super) struct Node {
    pub(super) interface: String,
    pub(super) ifindex: u32,
    pub(super) addrs: Rc<AddressManager>,
    pub(super) metrics: Arc<Metrics>,
    pub(super) board: status::Board,
    pub(super) datapath: Rc<RefCell<Datapath>>,
    pub(super) ops: mpsc::UnboundedSender<VipOp>,
    pub(super) inputs: mpsc::UnboundedSender<(u64, Input)>,
    pub(super) vip_lease: crate::lease::VipLease,
    /// Multicast instances also advertise by unicast to the peers they heard (see `peers`).
    pub(super) learn_peers: bool,
    pub(super) split_brain_policy: crate::conflict::SplitBrainPolicy,
    /// The latest peer set from DNS (see `dns_peers`), given to instances that start later.
    pub(super) dns_peers: Vec<IpAddr>,
    /// The packet socket every instance's conflict probes go out on (see `conflict`): one for the
    /// node, not one per instance (255 instances held 255 sockets).
    pub(super) probes: Option<Rc<crate::network::Announcer>>,
    pub(super) next_id: u64,
    /// Advert sockets with their queues, shared by the instances of one family and source.
    pub(super) outboxes: Outboxes,
}

impl Node {
    /// The advert source of each instance, waiting for the interface to have one. Runs before
    /// anything changes, so an error leaves the system untouched.
    pub(super) async fn sources(&self, instances: &[&InstanceSpec]) -> Result<Vec<IpAddr>> {
        let all_vips: Vec<IpAddr> = instances.iter().flat_map(|i| i.owned().map(|v| v.addr)).collect();
        let mut out = Vec::new();
        // NODE_IP (downward API) picks among several addresses; config/node_ip.rs says how it combines.
        let node_ip = crate::config::node_ip::from_env().map_err(anyhow::Error::msg)?;
        let on_interface: Vec<IpAddr> = self
            .addrs
            .list(self.ifindex)
            .await?
            .into_iter()
            .map(|(a, _)| a)
            .collect();
        for i in instances {
            if let Some(s) = i.src {
                out.push(s);
                continue;
            }
            match crate::config::node_ip::choose(node_ip, i.family == crate::datapath::Family::V4, &on_interface) {
                crate::config::node_ip::Choice::NodeIp(a) => {
                    out.push(a);
                    continue;
                }
                crate::config::node_ip::Choice::NotOnInterface(a) => tracing::warn!(
                    "({}) NODE_IP {a} is not an address of {}: advertising from the interface's first address",
                    i.name,
                    self.interface
                ),
                crate::config::node_ip::Choice::Default => {}
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
    pub(super) async fn remove_stale(&self, spec: &InstanceSpec) -> Result<()> {
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
    pub(super) fn start(&mut self, spec: &InstanceSpec, src: IpAddr) -> Result<Running> {
        let plan = InstancePlan::new(spec, &self.interface, src);
        self.datapath.borrow_mut().set_vrid(&plan.datapath)?;
        for v in spec.owned() {
            self.datapath.borrow_mut().add_vip(&v.addr, spec.vrid)?;
        }
        let id = self.next_id;
        self.next_id += 1;
        // Timer firings come back tagged with the instance's id, so one for an instance a reload
        // replaced finds nobody.
        let inputs = self.inputs.clone();
        let on_timer: TimerSink = Arc::new(move |kind, generation, deadline| {
            let _ = inputs.send((
                id,
                Input::Timer {
                    kind,
                    generation,
                    deadline,
                },
            ));
        });
        let outbox = self.outboxes.get(&self.interface, spec.family, src)?;
        {
            let mut board = status::lock(&self.board);
            board.retain(|s| s.instance != spec.name);
            board.push(plan.status.clone());
        }
        let metrics = self
            .metrics
            .add_instance(&spec.name, &self.interface, spec.family, spec.vrid);
        metrics.configured_priority.set(i64::from(spec.priority));
        metrics.priority.set(i64::from(spec.priority));
        let vip_lease = self.vip_lease.for_interval(spec.adver_int);
        let learned = (spec.unicast_peers.is_empty() && self.learn_peers)
            .then(|| crate::peers::Learned::new(src, plan.wire.dsts.clone()));
        // Configured unicast peers keep their keepalived meaning: those peers only.
        let multicast = spec.unicast_peers.is_empty();
        let inputs = self.inputs.clone();
        let to_instance: Rc<dyn Fn(Input)> = Rc::new(move |input| {
            let _ = inputs.send((id, input));
        });
        let conflicts = self.conflict_watch(spec, &plan.vips, &metrics, to_instance);
        let effects = RealEffects {
            name: spec.name.clone(),
            wire: plan.wire,
            encoded: Default::default(),
            vips: plan.vips.into(),
            outbox,
            origin: Rc::new(Origin {
                instance: spec.name.clone(),
                adverts_sent: metrics.adverts_sent.clone(),
                priority_zero_sent: metrics.priority_zero_sent.clone(),
            }),
            ops: self.ops.clone(),
            datapath: self.datapath.clone(),
            advertising: false,
            master_epoch: Arc::new(AtomicU64::new(0)),
            garp: spec.garp,
            vip_lease,
            renewal: vip_lease
                .map(|l| crate::lease::Renewal::new(l, spec.adver_int, crate::vrrp::timers::grid_epoch())),
            learned,
            dns: multicast.then(Default::default),
            metrics,
            board: self.board.clone(),
            notify: spec.notify.clone(),
            conflicts,
        };
        let mut inst = Instance::new(plan.engine, effects, on_timer);
        inst.effects_mut().set_dns_peers(&self.dns_peers);
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
            src,
            inst,
            applied: (false, spec.priority),
        })
    }

    /// The instance's conflict watch, on its VIPs on the VRRP interface (the datapath sees claims
    /// only there); it feeds the instance `Contested` / `ConflictOver`, and `Yield` / `HolderSeen`
    /// under the `yield` policy.
    fn conflict_watch(
        &self,
        spec: &InstanceSpec,
        vips: &[crate::network::Vip],
        metrics: &InstanceSeries,
        to_instance: Rc<dyn Fn(Input)>,
    ) -> crate::conflict::Watch {
        crate::conflict::Watch::new(crate::conflict::WatchConfig {
            instance: spec.name.clone(),
            interface: self.interface.clone(),
            ifindex: self.ifindex,
            vips: vips
                .iter()
                .filter(|v| v.dev.as_deref() == Some(self.interface.as_str()))
                .map(|v| v.addr)
                .collect(),
            metrics: crate::conflict::ConflictMetrics {
                ongoing: metrics.vip_conflict.clone(),
                episodes: metrics.vip_conflict_episodes.clone(),
            },
            board: self.board.clone(),
            neighbours: Some(self.addrs.handle()),
            probes: self.probes.clone(),
            to_instance,
            policy: self.split_brain_policy,
        })
    }

    /// The datapath, for the last step of a stop; everything else of the node is dropped, which
    /// closes the VIP worker's queue.
    pub(super) fn into_datapath(self) -> Rc<RefCell<Datapath>> {
        self.datapath
    }

    /// Stops an instance (priority 0 and VIPs released if Master) and forgets it everywhere.
    pub(super) fn stop(&mut self, mut r: Running) {
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
        self.metrics.remove_instance(&r.inst.effects().metrics);
    }

    /// Applies a changed priority, addresses, tracking, notify or announcements in place.
    pub(super) fn update(&mut self, r: &mut Running, spec: &InstanceSpec) {
        let master = r.inst.state() == State::Master;
        let mut dp = self.datapath.borrow_mut();
        for v in r.spec.owned().filter(|v| !spec.owned().any(|n| n.addr == v.addr)) {
            if let Err(e) = dp.remove_vip(&v.addr) {
                tracing::warn!("({}) datapath VIP {}: {e}", spec.name, v.addr);
            }
        }
        for v in spec.owned() {
            if let Err(e) = dp.add_vip(&v.addr, spec.vrid) {
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
            let plan = InstancePlan::new(spec, &self.interface, r.src);
            effects.set_vips(plan.vips, plan.wire.addrs, master);
        }
        tracing::info!("({}) configuration updated in place", spec.name);
        // The effective priority follows from the new configured one at the next health pass.
        r.spec = spec.clone();
    }
}
