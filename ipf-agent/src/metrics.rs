//! Prometheus metrics, `/healthz` and `/readyz`, served from their own thread so a scrape never runs
//! on the election loop. Names follow Prometheus conventions (`ipf_` prefix, `_total` counters,
//! seconds) and RFC 6527 / keepalived's statistics; labels are bounded (instance, interface, VRID,
//! reason, mode).

use std::{
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context as _, Result};
use axum::{Router, http::StatusCode, routing::get};
use prometheus::{
    Encoder as _, GaugeVec, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

use crate::{
    datapath::{DatapathReader, Family},
    vrrp::State,
};

/// Default listen address of the metrics and health endpoints.
pub const DEFAULT_ADDR: &str = "0.0.0.0:9477";

/// The agent's metrics. Per-instance series are updated inline by the state machine's effects
/// (atomic increments); datapath series are read from the maps at scrape time.
pub struct Metrics {
    registry: Registry,
    pub state: IntGaugeVec,
    pub priority: IntGaugeVec,
    pub configured_priority: IntGaugeVec,
    pub adverts_sent: IntCounterVec,
    pub priority_zero_sent: IntCounterVec,
    pub became_master: IntCounterVec,
    pub released_master: IntCounterVec,
    pub last_transition: GaugeVec,
    pub gratuitous_sent: IntCounterVec,
    pub notify_failures: IntCounterVec,
    check_up: IntGaugeVec,
    check_runs: IntCounterVec,
    check_duration: HistogramVec,
    adverts_received: IntCounterVec,
    priority_zero_received: IntCounterVec,
    datapath_packets: IntCounterVec,
    invalid_packets: IntCounterVec,
    ringbuf_full: IntCounterVec,
    datapath_events: IntCounterVec,
    vip_conflicts: IntCounterVec,
    pub vip_conflict: IntGaugeVec,
    pub vip_conflict_episodes: IntCounterVec,
    datapath_mode: IntGaugeVec,
    /// Instances whose received-advert counters come from the datapath: (labels, family, vrid).
    instances: Mutex<Vec<([String; 3], Family, u8)>>,
    datapaths: Mutex<Vec<DatapathReader>>,
    /// Last absolute values read from the datapath, to turn them into counter increments.
    seen: Mutex<std::collections::HashMap<String, u64>>,
    /// Set once the configuration is loaded, the datapath attached and every instance started.
    pub ready: AtomicBool,
    /// Unix time (ms) of the election loop's last heartbeat.
    pub heartbeat_ms: AtomicU64,
}

const INSTANCE_LABELS: [&str; 3] = ["instance", "interface", "vrid"];

/// The numbers keepalived's exporter uses for `keepalived_vrrp_state`.
pub fn state_value(s: State) -> i64 {
    match s {
        State::Initialize => 0,
        State::Backup => 1,
        State::Master => 2,
        State::Fault => 3,
    }
}

pub fn now_unix() -> Duration {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default()
}

fn counter_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> Result<IntCounterVec> {
    let c = IntCounterVec::new(Opts::new(name, help), labels)?;
    r.register(Box::new(c.clone()))?;
    Ok(c)
}

fn gauge_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> Result<IntGaugeVec> {
    let g = IntGaugeVec::new(Opts::new(name, help), labels)?;
    r.register(Box::new(g.clone()))?;
    Ok(g)
}

impl Metrics {
    pub fn new() -> Result<Arc<Self>> {
        let r = Registry::new();
        let l = &INSTANCE_LABELS;
        let last_transition = GaugeVec::new(
            Opts::new(
                "ipf_vrrp_last_transition_timestamp_seconds",
                "Unix time of the instance's last state change.",
            ),
            l,
        )?;
        r.register(Box::new(last_transition.clone()))?;
        let build = IntGauge::with_opts(
            Opts::new("ipf_build_info", "Build information; the value is 1.")
                .const_label("version", env!("CARGO_PKG_VERSION")),
        )?;
        build.set(1);
        r.register(Box::new(build))?;
        Ok(Arc::new(Metrics {
            state: gauge_vec(
                &r,
                "ipf_vrrp_state",
                "VRRP state: 0 init, 1 backup, 2 master, 3 fault.",
                l,
            )?,
            priority: gauge_vec(
                &r,
                "ipf_vrrp_priority",
                "Effective priority (configured priority moved by check weights).",
                l,
            )?,
            configured_priority: gauge_vec(&r, "ipf_vrrp_configured_priority", "Configured priority.", l)?,
            adverts_sent: counter_vec(&r, "ipf_vrrp_adverts_sent_total", "Advertisements sent.", l)?,
            priority_zero_sent: counter_vec(
                &r,
                "ipf_vrrp_priority_zero_sent_total",
                "Priority-0 (release) advertisements sent.",
                l,
            )?,
            became_master: counter_vec(&r, "ipf_vrrp_became_master_total", "Transitions to MASTER.", l)?,
            released_master: counter_vec(&r, "ipf_vrrp_released_master_total", "Transitions out of MASTER.", l)?,
            last_transition,
            gratuitous_sent: counter_vec(
                &r,
                "ipf_vrrp_gratuitous_sent_total",
                "Gratuitous ARP and unsolicited NA packets sent.",
                l,
            )?,
            notify_failures: counter_vec(
                &r,
                "ipf_notify_failures_total",
                "Notify scripts that failed, timed out or could not start.",
                l,
            )?,
            check_up: gauge_vec(
                &r,
                "ipf_check_up",
                "Health check status after rise/fall: 1 healthy, 0 failing.",
                &["check"],
            )?,
            check_runs: counter_vec(
                &r,
                "ipf_check_runs_total",
                "Health check runs by result.",
                &["check", "result"],
            )?,
            check_duration: {
                let h = HistogramVec::new(
                    HistogramOpts::new("ipf_check_duration_seconds", "Health check run time.")
                        .buckets(vec![0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 2.0, 5.0, 10.0]),
                    &["check"],
                )?;
                r.register(Box::new(h.clone()))?;
                h
            },
            adverts_received: counter_vec(
                &r,
                "ipf_vrrp_adverts_received_total",
                "Valid advertisements received (datapath).",
                l,
            )?,
            priority_zero_received: counter_vec(
                &r,
                "ipf_vrrp_priority_zero_received_total",
                "Priority-0 advertisements received (datapath).",
                l,
            )?,
            datapath_packets: counter_vec(
                &r,
                "ipf_datapath_packets_total",
                "Packets the datapath classified, by kind.",
                &["interface", "kind"],
            )?,
            invalid_packets: counter_vec(
                &r,
                "ipf_datapath_invalid_packets_total",
                "VRRP packets dropped as invalid, by reason.",
                &["interface", "reason"],
            )?,
            ringbuf_full: counter_vec(
                &r,
                "ipf_datapath_ringbuf_full_total",
                "Events lost because the ring buffer was full.",
                &["interface"],
            )?,
            datapath_events: counter_vec(
                &r,
                "ipf_datapath_events_total",
                "Events the datapath sent to the agent.",
                &["interface"],
            )?,
            vip_conflicts: counter_vec(
                &r,
                "ipf_vip_conflicts_total",
                "ARP/NA claims of our VIPs by other MACs while MASTER (rate-limited).",
                &["interface"],
            )?,
            vip_conflict: gauge_vec(
                &r,
                "ipf_vip_conflict",
                "VIPs of the instance another node claims right now while it is MASTER (split brain).",
                l,
            )?,
            vip_conflict_episodes: counter_vec(
                &r,
                "ipf_vip_conflict_episodes_total",
                "Split-brain episodes: a VIP claimed by another node while MASTER.",
                l,
            )?,
            datapath_mode: gauge_vec(
                &r,
                "ipf_datapath_mode",
                "Active receive path (1 for the active mode).",
                &["interface", "mode"],
            )?,
            registry: r,
            instances: Mutex::new(Vec::new()),
            datapaths: Mutex::new(Vec::new()),
            seen: Mutex::new(std::collections::HashMap::new()),
            ready: AtomicBool::new(false),
            heartbeat_ms: AtomicU64::new(0),
        }))
    }

    /// The series of one health check.
    pub fn check(&self, name: &str) -> crate::checks::CheckMetrics {
        crate::checks::CheckMetrics {
            up: self.check_up.with_label_values(&[name]),
            successes: self.check_runs.with_label_values(&[name, "success"]),
            failures: self.check_runs.with_label_values(&[name, "failure"]),
            duration: self.check_duration.with_label_values(&[name]),
        }
    }

    /// Label values of an instance.
    pub fn labels(name: &str, interface: &str, vrid: u8) -> [String; 3] {
        [name.to_owned(), interface.to_owned(), vrid.to_string()]
    }

    /// Registers an instance whose datapath counters are exported.
    pub fn add_instance(&self, labels: [String; 3], family: Family, vrid: u8) {
        lock(&self.instances).push((labels, family, vrid));
    }

    /// Forgets a removed instance (reload): its series disappear from the next scrape.
    pub fn remove_instance(&self, labels: &[String; 3]) {
        lock(&self.instances).retain(|(l, _, _)| l != labels);
        let l = [labels[0].as_str(), labels[1].as_str(), labels[2].as_str()];
        for v in [
            &self.state,
            &self.priority,
            &self.configured_priority,
            &self.vip_conflict,
        ] {
            let _ = v.remove_label_values(&l);
        }
        for v in [
            &self.adverts_sent,
            &self.priority_zero_sent,
            &self.became_master,
            &self.released_master,
            &self.gratuitous_sent,
            &self.notify_failures,
            &self.adverts_received,
            &self.priority_zero_received,
            &self.vip_conflict_episodes,
        ] {
            let _ = v.remove_label_values(&l);
        }
        let _ = self.last_transition.remove_label_values(&l);
        lock(&self.seen).retain(|k, _| !k.starts_with(&format!("{}/{}/", labels[0], labels[2])));
    }

    /// Forgets a removed check's series (reload).
    pub fn remove_check(&self, name: &str) {
        let _ = self.check_up.remove_label_values(&[name]);
        let _ = self.check_runs.remove_label_values(&[name, "success"]);
        let _ = self.check_runs.remove_label_values(&[name, "failure"]);
        let _ = self.check_duration.remove_label_values(&[name]);
    }

    pub fn add_datapath(&self, reader: DatapathReader) {
        self.datapath_mode
            .with_label_values(&[reader.interface.as_str(), reader.mode.label()])
            .set(1);
        lock(&self.datapaths).push(reader);
    }

    pub fn heartbeat(&self) {
        self.heartbeat_ms
            .store(now_unix().as_millis() as u64, Ordering::Relaxed);
    }

    /// Adds what the datapath counted since the last scrape to the exported counters.
    fn sync_datapath(&self) {
        let mut seen = lock(&self.seen);
        let mut add = |key: String, counter: IntCounter, now: u64| {
            let before = seen.insert(key, now).unwrap_or(0);
            // A VRID reset (reconfiguration) restarts its count: count from there.
            counter.inc_by(now.saturating_sub(before));
        };
        for dp in lock(&self.datapaths).iter() {
            let Ok(counters) = dp.counters() else { continue };
            let i = dp.interface.as_str();
            for (c, v) in counters {
                use ipf_common::Counter as C;
                let counter = match c {
                    C::AdvertsRx => self.datapath_packets.with_label_values(&[i, "advert"]),
                    C::OwnAdverts => self.datapath_packets.with_label_values(&[i, "own_advert"]),
                    C::ArpRx => self.datapath_packets.with_label_values(&[i, "arp"]),
                    C::NaRx => self.datapath_packets.with_label_values(&[i, "na"]),
                    C::VipConflicts => self.vip_conflicts.with_label_values(&[i]),
                    C::EventsSent => self.datapath_events.with_label_values(&[i]),
                    C::RingbufFull => self.ringbuf_full.with_label_values(&[i]),
                    reason => self.invalid_packets.with_label_values(&[i, reason.name()]),
                };
                add(format!("{i}/{}", c.name()), counter, v);
            }
            for (labels, family, vrid) in lock(&self.instances).iter().filter(|(l, _, _)| l[1] == i) {
                let Ok(st) = dp.vrid_state(*family, *vrid) else {
                    continue;
                };
                let l = [labels[0].as_str(), labels[1].as_str(), labels[2].as_str()];
                add(
                    format!("{}/{vrid}/rx", labels[0]),
                    self.adverts_received.with_label_values(&l),
                    st.adverts_rx,
                );
                add(
                    format!("{}/{vrid}/rx0", labels[0]),
                    self.priority_zero_received.with_label_values(&l),
                    st.priority_zero_rx,
                );
            }
        }
    }

    /// The exposition text.
    pub fn render(&self) -> String {
        self.sync_datapath();
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::warn!("encoding metrics: {e}");
        }
        String::from_utf8(out).unwrap_or_default()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Longest the election loop may go without a heartbeat before `/healthz` fails.
const HEARTBEAT_STALE: Duration = Duration::from_secs(5);

/// Serves `/metrics`, `/healthz` and `/readyz` on `addr` from a dedicated thread and runtime. The
/// socket is bound before returning, so a bad address is reported at start.
pub fn serve(metrics: Arc<Metrics>, addr: SocketAddr) -> Result<()> {
    let listener = std::net::TcpListener::bind(addr).with_context(|| format!("binding the metrics endpoint {addr}"))?;
    listener.set_nonblocking(true)?;
    on_own_thread("ipf-metrics", move || async move {
        let listener = match tokio::net::TcpListener::from_std(listener) {
            Ok(l) => l,
            Err(e) => return tracing::error!("metrics listener: {e}"),
        };
        let (m1, m2, m3) = (metrics.clone(), metrics.clone(), metrics);
        let app = Router::new()
            .route("/metrics", get(move || async move { m1.render() }))
            .route(
                "/healthz",
                get(move || async move {
                    let last = Duration::from_millis(m2.heartbeat_ms.load(Ordering::Relaxed));
                    if now_unix().saturating_sub(last) < HEARTBEAT_STALE {
                        (StatusCode::OK, "ok\n")
                    } else {
                        (StatusCode::SERVICE_UNAVAILABLE, "event loop not responding\n")
                    }
                }),
            )
            .route(
                "/readyz",
                get(move || async move {
                    if m3.ready.load(Ordering::Relaxed) {
                        (StatusCode::OK, "ready\n")
                    } else {
                        (StatusCode::SERVICE_UNAVAILABLE, "starting\n")
                    }
                }),
            );
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!("metrics server: {e}");
        }
    })
}

/// Runs the future `make` returns on a new thread with its own current-thread runtime, away from the
/// election loop (metrics and status servers).
pub(crate) fn on_own_thread<F, Fut>(name: &str, make: F) -> Result<()>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()>,
{
    let thread_name = name.to_owned();
    std::thread::Builder::new().name(thread_name.clone()).spawn(move || {
        match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(rt) => rt.block_on(make()),
            Err(e) => tracing::error!("{thread_name} runtime: {e}"),
        }
    })?;
    Ok(())
}
