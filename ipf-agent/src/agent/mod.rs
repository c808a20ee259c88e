//! `ipf-agent run`: the datapath, one VRRP state machine per instance, and their side effects
//! (adverts, VIPs through rtnetlink, gratuitous ARP / unsolicited NA), until SIGTERM / SIGINT.
//!
//! Tasks and channels (one thread; a `LocalSet` runs everything but the metrics and status servers,
//! which have threads of their own and read shared state):
//!
//! ```text
//!  datapath ring buffer ──events──►┐
//!  timer schedule (one task) ─(id, Input::Timer)──►┤
//!  health checks ──CheckEvent──►   ├─► run loop ──► Instance::handle ──► RealEffects (effects.rs)
//!  rtnetlink link watch ──LinkEvent──►┤        │                          │ adverts: outbox.rs
//!  SIGHUP / SIGTERM / SIGINT ───────►┘        │                          │ VipOp ──► VIP worker (vips.rs)
//!                                             │                          │            rtnetlink, GARP/NA
//!                                   reload.rs, health.rs, node.rs       └─► datapath role, metrics, status
//! ```
//!
//! The loop handles every input already queued before it waits again, and flushes the adverts they
//! queued first: timers that fell due together leave as one `sendmmsg`.
//!
//! `plan.rs` turns an instance's configuration into what each part needs, once; `node.rs` starts,
//! updates and stops instances; `reload.rs` decides what a SIGHUP changes; `health.rs` turns checks
//! and links into inputs; `cleanup.rs` holds what runs without an election.

mod cleanup;
mod effects;
mod health;
mod node;
mod outbox;
pub mod plan;
mod reload;
mod vips;

use std::{cell::RefCell, collections::HashMap, net::IpAddr, rc::Rc, time::Duration};

use anyhow::{Context as _, Result, bail};
use ipf_common::maps::FAMILY_V6;
use tokio::sync::mpsc;

pub use cleanup::{check_system, cleanup};
use health::{CheckTasks, Health, tracked_links};
use node::Node;
use reload::{apply_reload, reload_config};
use vips::vip_worker;

use crate::{
    checks::CheckEvent,
    config::{Config, InstanceSpec},
    datapath::{Datapath, DatapathOptions, Family, XdpModeArg, ip_from_wire},
    firewall,
    links::{self, LinkEvent},
    metrics::{self, Metrics},
    network::AddressManager,
    status,
    vrrp::Input,
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
    /// Lifetime of a VIP on the interface, renewed while Master (see `lease`): a killed agent's VIPs
    /// disappear on their own.
    pub vip_lease: crate::lease::VipLease,
    /// Multicast instances also advertise by unicast to the peers they heard (see `peers`).
    pub learn_peers: bool,
    /// Multicast instances also advertise by unicast to the addresses of this name (see `dns_peers`).
    pub peers_dns: Option<crate::dns_peers::DnsPeersConfig>,
    /// What a Master does about a split brain with no VRRP path (see `conflict`).
    pub split_brain_policy: crate::conflict::SplitBrainPolicy,
}

/// Runs the agent until SIGTERM / SIGINT; SIGHUP reloads the configuration through `reload`. Must be
/// called on a current-thread runtime inside a `LocalSet` (the state machines and their effects are
/// single-threaded).
pub async fn run(cfg: AgentConfig, reload: impl Fn() -> Result<Config>) -> Result<()> {
    // The handlers come before anything changes: a SIGTERM, SIGINT or SIGHUP during start-up (the
    // wait for a source address may take seconds) would otherwise kill the process with the XDP
    // program left attached. It waits until start-up is over, then stops (or reloads) as usual.
    let signal = |kind, name| tokio::signal::unix::signal(kind).with_context(|| format!("{name} handler"));
    use tokio::signal::unix::SignalKind;
    let mut sigterm = signal(SignalKind::terminate(), "SIGTERM")?;
    let mut sigint = signal(SignalKind::interrupt(), "SIGINT")?;
    let mut sighup = signal(SignalKind::hangup(), "SIGHUP")?;
    check_system(&cfg.config)?;
    crate::container::require_for_run(&crate::container::Privileges::current())?;
    let mut config = cfg.config.clone();
    crate::script_security::set_run_as(config.script_security.run_as.clone());
    for w in &config.warnings {
        tracing::warn!("{w}");
    }
    let interface = config.interface()?.to_owned();
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

    let mut opts = DatapathOptions::new(&interface, cfg.xdp_mode);
    opts.outlive_crash = true;
    let (dp, mut events) = Datapath::start(&opts)?;
    metrics.add_datapath(dp.reader());
    readers
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .push(dp.reader());
    let (ops_tx, ops_rx) = mpsc::unbounded_channel();
    let worker = tokio::task::spawn_local(vip_worker(ops_rx, addrs.clone()));
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
        learn_peers: cfg.learn_peers,
        split_brain_policy: cfg.split_brain_policy,
        dns_peers: Vec::new(),
        // Without it there are no probes; claims (gratuitous ARP / NA) are still seen.
        probes: crate::network::Announcer::new(&interface)
            .map_err(|e| tracing::warn!("conflict probes disabled: {e}"))
            .ok()
            .map(Rc::new),
        next_id: 0,
        outboxes: Default::default(),
    };
    // Lookups run beside the loop; only a changed set comes in.
    let (dns_tx, mut dns_rx) = mpsc::unbounded_channel::<Vec<IpAddr>>();
    let _dns_watch = cfg.peers_dns.clone().map(|c| {
        tracing::info!(
            "DNS peers: resolving {} every {:?} ({})",
            c.name,
            c.interval,
            c.resolv_conf.display()
        );
        AbortOnDrop(tokio::task::spawn_local(crate::dns_peers::watch(
            c,
            node.addrs.clone(),
            dns_tx,
        )))
    });

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
    crate::memory::release_unused();
    // The heartbeat /healthz checks: proves this loop still turns. It is taken on a turn the loop
    // makes anyway (an advert batch, a datapath event) once BEAT has nearly passed (a node that is
    // only Backup turns for neither: the schedule checks its masters itself); the timer wakes the loop
    // only when nothing else did for BEAT + BEAT_GRACE. A timer of its own would cost two wake-ups
    // a second (tokio's wheel wakes once to move a 1 s timer to its finest level, once to fire it),
    // a third of a node's wake-ups at 1 s adverts.
    let mut last_beat = tokio::time::Instant::now();
    let idle = tokio::time::sleep_until(last_beat);
    tokio::pin!(idle);
    let mut beats = 0u64;
    loop {
        // What the last input queued goes out before waiting: the adverts of timers due together
        // leave as one batch.
        node.outboxes.flush();
        let now = tokio::time::Instant::now();
        if now.duration_since(last_beat) >= BEAT - BEAT_EARLY || beats == 0 {
            last_beat = now;
            // A new timer, not `reset`: tokio extends a later deadline lazily, leaving the wheel's
            // entry at the old one, which then woke the loop twice a beat for nothing (the
            // wheel's cascade and the old deadline) on a loop that beats every second.
            idle.set(tokio::time::sleep_until(now + BEAT + BEAT_GRACE));
            metrics.heartbeat();
            // Learned peers are forgotten after minutes: a look every LEARNED_REFRESH beats (a
            // datapath lookup per instance) keeps the current master known.
            beats += 1;
            if beats == SETTLED_BEATS {
                // The first elections and announcements are over: what they ran is not needed in
                // the steady state either.
                crate::memory::release_unused();
            }
            if beats % LEARNED_REFRESH == 1 {
                for r in &mut running {
                    r.inst.effects_mut().refresh_learned();
                }
            }
        }
        tokio::select! {
            // Nothing else turned the loop: the next turn beats.
            () = &mut idle => {}
            Some(set) = dns_rx.recv() => {
                for r in &mut running {
                    r.inst.effects_mut().set_dns_peers(&set);
                }
                node.dns_peers = set;
            }
            Some(ev) = check_rx.recv() => {
                health.check_ok.insert(ev.name, ev.ok);
                health.apply(&interface, &config.checks, &mut running);
            }
            Some(ev) = link_rx.recv() => {
                health.link_up.insert(ev.ifname, ev.up);
                health.apply(&interface, &config.checks, &mut running);
            }
            Some(first) = inputs_rx.recv() => {
                // Timers that fell due together are queued together: all of them are handled
                // before the flush, so their adverts share one batch.
                let mut next = Some(first);
                while let Some((id, input)) = next {
                    if let Some(i) = position(&running, id) {
                        running[i].inst.handle(input);
                    }
                    next = inputs_rx.try_recv().ok();
                }
            }
            ev = events.recv() => {
                let Some(ev) = ev else { bail!("datapath event stream ended") };
                let family = if ev.family == FAMILY_V6 { Family::V6 } else { Family::V4 };
                if ev.kind & ipf_common::maps::event_kind::VIP_CONFLICT != 0 {
                    for r in running.iter().filter(|r| r.spec.vrid == ev.vrid && r.spec.family == family) {
                        r.inst.effects().conflicts.claim(ip_from_wire(ev.family, &ev.addr), ev.mac);
                    }
                    continue;
                }
                for r in running.iter_mut().filter(|r| r.spec.vrid == ev.vrid && r.spec.family == family) {
                    r.inst.effects_mut().learn(ip_from_wire(ev.family, &ev.addr));
                    r.inst.handle(Input::Advert {
                        src: ip_from_wire(ev.family, &ev.addr),
                        priority: ev.priority,
                        adver_int: Duration::from_millis(u64::from(ev.adver_int_cs) * 10),
                        age: Duration::from_nanos(
                            crate::datapath::raw::monotonic_ns().map_or(0, |now| now.saturating_sub(ev.timestamp_ns)),
                        ),
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
                                crate::script_security::set_run_as(new.script_security.run_as.clone());
                                // No firewall step: the rule comes only from the OPENSHIFT_HA_*
                                // environment, which a process cannot change, so a reload never
                                // changes it nor the families it covers (a keepalived.conf has no rule).
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
    // Graceful stop: priority 0 from every Master, VIPs removed, then the datapath detaches. The
    // priority-0 adverts leave first, before any clean-up: the Backups' Skew_Time runs from them.
    let stopping = tokio::time::Instant::now();
    for r in &mut running {
        r.inst.handle(Input::Shutdown);
    }
    node.outboxes.flush();
    for r in running.drain(..) {
        node.stop(r);
    }
    node.outboxes.flush();
    drop(checks);
    // The rest of the node goes now: its VIP-op sender is what ends the worker (a destructuring
    // `let` would keep the other fields alive until the end of the function).
    let datapath = node.into_datapath();
    if tokio::time::timeout(Duration::from_millis(800), worker).await.is_err() {
        tracing::error!("VIP removal did not finish within 800 ms");
    }
    if !matches!(datapath.borrow().mode(), crate::datapath::ActiveMode::RawSocket { .. }) {
        let delay = crate::datapath::attach::graceful_detach_delay(config.instances.iter().map(|i| i.adver_int));
        tokio::time::sleep_until(stopping + delay).await;
    }
    drop(datapath);
    if let Some(path) = &cfg.status_socket {
        let _ = std::fs::remove_file(path);
    }
    tracing::info!("stopped");
    Ok(())
}

/// The heartbeat's period. A turn this much earlier than a full period beats too, so a loop turning
/// once a period (1 s adverts) beats on each turn despite jitter.
const BEAT: Duration = Duration::from_secs(1);
const BEAT_EARLY: Duration = Duration::from_millis(100);
/// How long past a period the idle timer waits for another turn (below `metrics::HEARTBEAT_STALE`).
const BEAT_GRACE: Duration = Duration::from_millis(250);

/// Heartbeats after start-up when the first elections are over (Master_Down_Interval is at most
/// about 4 s at 1 s adverts; announcements repeat after 5 s by default).
const SETTLED_BEATS: u64 = 10;

/// Heartbeats between two refreshes of the learned peers (see `peers::FORGET_AFTER`, minutes).
const LEARNED_REFRESH: u64 = 30;

/// Where the instance with `id` is in `running`, which stays sorted by id (ids only grow and new
/// instances are pushed). Until a reload removes one, ids are consecutive and the first guess is
/// right: one look instead of a binary search whose every step is a cache miss (an entry is over a
/// kilobyte, and a node with hundreds of instances finds them cold after each sleep).
fn position(running: &[node::Running], id: u64) -> Option<usize> {
    let guess = running
        .first()
        .and_then(|first| usize::try_from(id.checked_sub(first.id)?).ok())
        .filter(|&i| running.get(i).is_some_and(|r| r.id == id));
    guess.or_else(|| running.binary_search_by_key(&id, |r| r.id).ok())
}

/// Stops the task with the run loop (DNS lookups must not outlive the agent's stop).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
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
