//! Prometheus metrics, `/healthz` and `/readyz`, served from their own thread so a scrape never runs
//! on the election loop. Names follow Prometheus conventions (`ipf_` prefix, `_total` counters,
//! seconds) and RFC 6527 / keepalived's statistics; labels are bounded (instance, interface, VRID,
//! reason, mode).

use std::{
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context as _, Result};
use axum::{Router, http::StatusCode, routing::get};
use prometheus::{
    Encoder as _, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
    core::{Collector, Desc},
    proto::{self, LabelPair, Metric, MetricFamily, MetricType},
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
    check_up: IntGaugeVec,
    check_runs: IntCounterVec,
    check_duration: HistogramVec,
    datapath_packets: IntCounterVec,
    invalid_packets: IntCounterVec,
    ringbuf_full: IntCounterVec,
    datapath_events: IntCounterVec,
    vip_conflicts: IntCounterVec,
    datapath_mode: IntGaugeVec,
    /// Every instance's series (see [`InstanceSeries`]).
    instances: Arc<Instances>,
    datapaths: Mutex<Vec<DatapathReader>>,
    /// Last absolute values read from the datapath's per-interface counters, to turn them into
    /// counter increments.
    seen: Mutex<std::collections::HashMap<String, u64>>,
    /// Set once the configuration is loaded, the datapath attached and every instance started.
    pub ready: AtomicBool,
    /// Unix time (ms) of the election loop's last heartbeat.
    pub heartbeat_ms: AtomicU64,
    /// A scrape ran since the last heartbeat.
    scraped: AtomicBool,
}

/// A counter of one instance, shared by the code that counts and the scrape.
#[derive(Clone, Default)]
pub struct Counter(Arc<AtomicU64>);

impl Counter {
    pub fn inc(&self) {
        self.inc_by(1);
    }

    pub fn inc_by(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A gauge of one instance (integer; the transition time keeps an `f64`'s bits).
#[derive(Clone, Default)]
pub struct Gauge(Arc<AtomicI64>);

impl Gauge {
    pub fn set(&self, v: i64) {
        self.0.store(v, Ordering::Relaxed);
    }

    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// One instance's series: plain atomics, turned into metric families only while a scrape runs.
/// (The prometheus crate's labelled children cost about half a kilobyte each, which with 14 series
/// per instance made them half the agent's heap at 255 instances.)
#[derive(Clone, Default)]
pub struct InstanceSeries {
    pub labels: [Arc<str>; 3],
    pub state: Gauge,
    pub priority: Gauge,
    pub configured_priority: Gauge,
    pub adverts_sent: Counter,
    pub priority_zero_sent: Counter,
    pub became_master: Counter,
    pub released_master: Counter,
    /// Unix time in seconds, as `f64` bits.
    pub last_transition: Gauge,
    pub gratuitous_sent: Counter,
    pub notify_failures: Counter,
    pub vip_conflict: Gauge,
    pub vip_conflict_episodes: Counter,
    adverts_received: Counter,
    priority_zero_received: Counter,
}

impl InstanceSeries {
    pub fn set_last_transition(&self, unix_secs: f64) {
        self.last_transition.set(unix_secs.to_bits() as i64);
    }
}

/// A registered instance: its series, where the datapath counts its adverts, and what the datapath
/// had counted at the last scrape.
struct Registered {
    series: InstanceSeries,
    family: Family,
    vrid: u8,
    seen_rx: u64,
    seen_rx0: u64,
}

#[derive(Clone, Copy)]
enum Kind {
    Counter,
    Gauge,
}

/// A per-instance family: name, help, type, and the value of one instance.
type InstanceFamily = (&'static str, &'static str, Kind, fn(&InstanceSeries) -> f64);

const INSTANCE_FAMILIES: [InstanceFamily; 14] = [
    (
        "ipf_vrrp_state",
        "VRRP state: 0 init, 1 backup, 2 master, 3 fault.",
        Kind::Gauge,
        |s| s.state.get() as f64,
    ),
    (
        "ipf_vrrp_priority",
        "Effective priority (configured priority moved by check weights).",
        Kind::Gauge,
        |s| s.priority.get() as f64,
    ),
    (
        "ipf_vrrp_configured_priority",
        "Configured priority.",
        Kind::Gauge,
        |s| s.configured_priority.get() as f64,
    ),
    (
        "ipf_vrrp_adverts_sent_total",
        "Advertisements sent.",
        Kind::Counter,
        |s| s.adverts_sent.get() as f64,
    ),
    (
        "ipf_vrrp_priority_zero_sent_total",
        "Priority-0 (release) advertisements sent.",
        Kind::Counter,
        |s| s.priority_zero_sent.get() as f64,
    ),
    (
        "ipf_vrrp_became_master_total",
        "Transitions to MASTER.",
        Kind::Counter,
        |s| s.became_master.get() as f64,
    ),
    (
        "ipf_vrrp_released_master_total",
        "Transitions out of MASTER.",
        Kind::Counter,
        |s| s.released_master.get() as f64,
    ),
    (
        "ipf_vrrp_last_transition_timestamp_seconds",
        "Unix time of the instance's last state change.",
        Kind::Gauge,
        |s| f64::from_bits(s.last_transition.get() as u64),
    ),
    (
        "ipf_vrrp_gratuitous_sent_total",
        "Gratuitous ARP and unsolicited NA packets sent.",
        Kind::Counter,
        |s| s.gratuitous_sent.get() as f64,
    ),
    (
        "ipf_notify_failures_total",
        "Notify scripts that failed, timed out or could not start.",
        Kind::Counter,
        |s| s.notify_failures.get() as f64,
    ),
    (
        "ipf_vrrp_adverts_received_total",
        "Valid advertisements received (datapath).",
        Kind::Counter,
        |s| s.adverts_received.get() as f64,
    ),
    (
        "ipf_vrrp_priority_zero_received_total",
        "Priority-0 advertisements received (datapath).",
        Kind::Counter,
        |s| s.priority_zero_received.get() as f64,
    ),
    (
        "ipf_vip_conflict",
        "VIPs of the instance another node claims right now while it is MASTER (split brain).",
        Kind::Gauge,
        |s| s.vip_conflict.get() as f64,
    ),
    (
        "ipf_vip_conflict_episodes_total",
        "Split-brain episodes: a VIP claimed by another node while MASTER.",
        Kind::Counter,
        |s| s.vip_conflict_episodes.get() as f64,
    ),
];

/// Every instance's families, gathered at scrape time.
struct Instances {
    descs: Vec<Desc>,
    list: Mutex<Vec<Registered>>,
}

impl Instances {
    fn new() -> Result<Self> {
        let labels: Vec<String> = INSTANCE_LABELS.iter().map(|l| l.to_string()).collect();
        let descs = INSTANCE_FAMILIES
            .iter()
            .map(|(name, help, _, _)| Desc::new(name.to_string(), help.to_string(), labels.clone(), Default::default()))
            .collect::<Result<_, _>>()?;
        Ok(Instances {
            descs,
            list: Mutex::new(Vec::new()),
        })
    }
}

/// The registry's handle on [`Instances`], which [`Metrics`] shares.
struct SharedInstances(Arc<Instances>);

impl Collector for SharedInstances {
    fn desc(&self) -> Vec<&Desc> {
        self.0.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let list = lock(&self.0.list);
        INSTANCE_FAMILIES
            .iter()
            .map(|(name, help, kind, value)| {
                let mut family = MetricFamily::default();
                family.set_name(name.to_string());
                family.set_help(help.to_string());
                family.set_field_type(match kind {
                    Kind::Counter => MetricType::COUNTER,
                    Kind::Gauge => MetricType::GAUGE,
                });
                family.set_metric(
                    list.iter()
                        .map(|r| {
                            let mut m = Metric::default();
                            m.set_label(
                                INSTANCE_LABELS
                                    .iter()
                                    .zip(&r.series.labels)
                                    .map(|(k, v)| {
                                        let mut l = LabelPair::default();
                                        l.set_name(k.to_string());
                                        l.set_value(v.to_string());
                                        l
                                    })
                                    .collect(),
                            );
                            let v = value(&r.series);
                            match kind {
                                Kind::Counter => {
                                    let mut c = proto::Counter::default();
                                    c.set_value(v);
                                    m.set_counter(c);
                                }
                                Kind::Gauge => {
                                    let mut g = proto::Gauge::default();
                                    g.set_value(v);
                                    m.set_gauge(g);
                                }
                            }
                            m
                        })
                        .collect(),
                );
                family
            })
            .collect()
    }
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
        let build = IntGauge::with_opts(
            Opts::new("ipf_build_info", "Build information; the value is 1.")
                .const_label("version", env!("CARGO_PKG_VERSION")),
        )?;
        build.set(1);
        r.register(Box::new(build))?;
        let instances = Arc::new(Instances::new()?);
        r.register(Box::new(SharedInstances(instances.clone())))?;
        Ok(Arc::new(Metrics {
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
            datapath_mode: gauge_vec(
                &r,
                "ipf_datapath_mode",
                "Active receive path (1 for the active mode).",
                &["interface", "mode"],
            )?,
            registry: r,
            instances,
            datapaths: Mutex::new(Vec::new()),
            seen: Mutex::new(std::collections::HashMap::new()),
            ready: AtomicBool::new(false),
            heartbeat_ms: AtomicU64::new(0),
            scraped: AtomicBool::new(false),
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

    /// Registers an instance and returns its series, all zero.
    pub fn add_instance(&self, name: &str, interface: &str, family: Family, vrid: u8) -> InstanceSeries {
        let series = InstanceSeries {
            labels: [name.into(), interface.into(), vrid.to_string().into()],
            ..Default::default()
        };
        lock(&self.instances.list).push(Registered {
            series: series.clone(),
            family,
            vrid,
            seen_rx: 0,
            seen_rx0: 0,
        });
        series
    }

    /// Forgets a removed instance (reload): its series disappear from the next scrape.
    pub fn remove_instance(&self, series: &InstanceSeries) {
        lock(&self.instances.list).retain(|r| !Arc::ptr_eq(&r.series.state.0, &series.state.0));
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

    /// The election loop's heartbeat, once a second. After a scrape it also hands back what the
    /// scrape used: the families gathered for 255 instances take about a megabyte, and the server
    /// and the encoder about as much code, none of it needed until the next scrape. (Here, not at the
    /// end of the scrape: the response is still being written then.)
    pub fn heartbeat(&self) {
        self.heartbeat_ms
            .store(now_unix().as_millis() as u64, Ordering::Relaxed);
        if self.scraped.swap(false, Ordering::Relaxed) {
            crate::memory::release_unused();
        }
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
            let i = dp.interface.as_str();
            // The instances' counts first, the interface's after: the program counts a packet for
            // the interface before it counts it for its VRID, so read in this order no scrape shows
            // an instance with more adverts than its interface received.
            for r in lock(&self.instances.list)
                .iter_mut()
                .filter(|r| &*r.series.labels[1] == i)
            {
                let Ok(st) = dp.vrid_state(r.family, r.vrid) else {
                    continue;
                };
                // A VRID reset (reconfiguration) restarts its count: count from there.
                r.series
                    .adverts_received
                    .inc_by(st.adverts_rx.saturating_sub(r.seen_rx));
                r.series
                    .priority_zero_received
                    .inc_by(st.priority_zero_rx.saturating_sub(r.seen_rx0));
                (r.seen_rx, r.seen_rx0) = (st.adverts_rx, st.priority_zero_rx);
            }
            let Ok(counters) = dp.counters() else { continue };
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
        }
    }

    /// The exposition text.
    pub fn render(&self) -> String {
        self.sync_datapath();
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::warn!("encoding metrics: {e}");
        }
        self.scraped.store(true, Ordering::Relaxed);
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
