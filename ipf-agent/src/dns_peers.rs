//! Unicast peers from DNS (`--peers-dns NAME`): a name that resolves to every node running ipf, such
//! as a DaemonSet's headless Service. Multicast instances also send each advert by unicast to them,
//! so a node is heard from its first advert even when multicast does not get through, without having
//! been heard before (learned peers, `peers`, need that).
//!
//! The name is re-resolved every interval by an async stub resolver on the agent's own runtime (a
//! lookup never blocks an election). A changed set goes to the run loop, which swaps the instances'
//! destinations in place: no instance restarts, and multicast instances' datapath accepts adverts
//! from any source, so it needs no entry. A failed lookup keeps the last good set (a DNS outage must
//! not cut the nodes off each other) and is logged once when lookups start failing and once when they
//! work again. This node's own addresses (on any interface) are skipped.

use std::{net::IpAddr, path::PathBuf, rc::Rc, time::Duration};

use hickory_resolver::{
    Resolver, config::LookupIpStrategy, net::runtime::TokioRuntimeProvider, system_conf::parse_resolv_conf,
};
use tokio::sync::mpsc;

use crate::network::AddressManager;

/// Longest one round of lookups may take; a slower server counts as a failed lookup.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);

/// Where the name is resolved and how often.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsPeersConfig {
    pub name: String,
    pub interval: Duration,
    /// The resolv.conf naming the servers (read again every round, so its changes apply).
    pub resolv_conf: PathBuf,
}

impl DnsPeersConfig {
    /// Checks the name and the interval (`--peers-dns`, `--peers-dns-interval-secs`).
    pub fn new(name: &str, interval_secs: u64, resolv_conf: PathBuf) -> Result<Self, DnsConfigError> {
        if interval_secs == 0 {
            return Err(DnsConfigError::Interval);
        }
        hickory_resolver::proto::rr::Name::from_str_relaxed(name).map_err(|e| DnsConfigError::Name {
            name: name.to_owned(),
            message: e.to_string(),
        })?;
        if name.contains(char::is_whitespace) {
            return Err(DnsConfigError::Name {
                name: name.to_owned(),
                message: "contains white space".to_owned(),
            });
        }
        Ok(DnsPeersConfig {
            name: name.to_owned(),
            interval: Duration::from_secs(interval_secs),
            resolv_conf,
        })
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DnsConfigError {
    #[error("--peers-dns {name:?} (IPF_PEERS_DNS): not a DNS name: {message}")]
    Name { name: String, message: String },
    #[error("--peers-dns-interval-secs 0 (IPF_PEERS_DNS_INTERVAL_SECS): must be at least 1")]
    Interval,
}

#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    #[error("reading {path}: {source}")]
    ResolvConf { path: String, source: std::io::Error },
    #[error("{path}: {message}")]
    BadResolvConf { path: String, message: String },
    #[error("looking up {name}: {message}")]
    Lookup { name: String, message: String },
    #[error("looking up {name}: no answer within {LOOKUP_TIMEOUT:?}")]
    Timeout { name: String },
    #[error("listing this node's addresses: {0}")]
    Local(String),
}

/// Whether lookups work, so a failure is logged when it starts and not on every attempt.
#[derive(Debug, Default)]
pub struct LookupHealth {
    failing: bool,
}

/// What the watcher should log after a lookup.
#[derive(Debug, PartialEq, Eq)]
pub enum Transition {
    /// Lookups started failing.
    Failed,
    /// Lookups work again.
    Recovered,
    Unchanged,
}

impl LookupHealth {
    pub fn record(&mut self, ok: bool) -> Transition {
        let was = std::mem::replace(&mut self.failing, !ok);
        match (was, ok) {
            (false, false) => Transition::Failed,
            (true, true) => Transition::Recovered,
            _ => Transition::Unchanged,
        }
    }
}

/// The peers a lookup answered: sorted, deduplicated, without this node's own addresses.
pub fn peer_set(answer: impl IntoIterator<Item = IpAddr>, local: &[IpAddr]) -> Vec<IpAddr> {
    let mut out: Vec<IpAddr> = answer
        .into_iter()
        .filter(|a| !local.contains(a) && !a.is_unspecified() && !a.is_multicast() && !a.is_loopback())
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Resolves `cfg.name` once against the servers of `cfg.resolv_conf`.
async fn lookup(cfg: &DnsPeersConfig) -> Result<Vec<IpAddr>, LookupError> {
    let path = cfg.resolv_conf.display().to_string();
    let data = tokio::fs::read(&cfg.resolv_conf)
        .await
        .map_err(|source| LookupError::ResolvConf {
            path: path.clone(),
            source,
        })?;
    let (config, mut opts) = parse_resolv_conf(data).map_err(|e| LookupError::BadResolvConf {
        path,
        message: e.to_string(),
    })?;
    // Both families: each instance takes the addresses of its own.
    opts.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
    // A fresh resolver each round: no cache outlives the interval, and resolv.conf changes apply.
    let mut builder = Resolver::builder_with_config(config, TokioRuntimeProvider::default());
    *builder.options_mut() = opts;
    let resolver = builder.build().map_err(|e| LookupError::Lookup {
        name: cfg.name.clone(),
        message: e.to_string(),
    })?;
    let answer = tokio::time::timeout(LOOKUP_TIMEOUT, resolver.lookup_ip(cfg.name.as_str()))
        .await
        .map_err(|_| LookupError::Timeout { name: cfg.name.clone() })?
        .map_err(|e| LookupError::Lookup {
            name: cfg.name.clone(),
            message: e.to_string(),
        })?;
    Ok(answer.iter().collect())
}

/// Resolves the name every interval and sends each new peer set to `tx` (the first one too). Runs
/// until the receiver is gone. Spawn it on the agent's `LocalSet`.
pub async fn watch(cfg: DnsPeersConfig, addrs: Rc<AddressManager>, tx: mpsc::UnboundedSender<Vec<IpAddr>>) {
    let mut health = LookupHealth::default();
    let mut last: Option<Vec<IpAddr>> = None;
    let mut tick = tokio::time::interval(cfg.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let round = async {
            let answer = lookup(&cfg).await?;
            let local = addrs
                .local_addresses()
                .await
                .map_err(|e| LookupError::Local(e.to_string()))?;
            Ok::<_, LookupError>(peer_set(answer, &local))
        };
        let result = round.await;
        match health.record(result.is_ok()) {
            Transition::Failed => {
                if let Err(e) = &result {
                    let kept = last.as_ref().map_or(0, Vec::len);
                    tracing::warn!("DNS peers: {e}; keeping the last good set ({kept} peers) until it answers");
                }
            }
            Transition::Recovered => tracing::info!("DNS peers: {} answers again", cfg.name),
            Transition::Unchanged => {}
        }
        let Ok(set) = result else { continue };
        if last.as_ref() != Some(&set) {
            let list: Vec<String> = set.iter().map(ToString::to_string).collect();
            tracing::info!("DNS peers: {} resolves to [{}]", cfg.name, list.join(", "));
            if tx.send(set.clone()).is_err() {
                return;
            }
            last = Some(set);
        }
    }
}

/// An instance's peers from DNS: those of its family, other than its own source and the destinations
/// it already has.
#[derive(Debug, Default)]
pub struct InstancePeers {
    peers: Vec<IpAddr>,
}

impl InstancePeers {
    /// Takes the node's new set; returns the (added, removed) peers of this instance.
    pub fn update(&mut self, set: &[IpAddr], own: IpAddr, dsts: &[IpAddr]) -> (Vec<IpAddr>, Vec<IpAddr>) {
        let wanted: Vec<IpAddr> = set
            .iter()
            .copied()
            .filter(|a| a.is_ipv4() == own.is_ipv4() && *a != own && !dsts.contains(a))
            .collect();
        let added = wanted.iter().copied().filter(|a| !self.peers.contains(a)).collect();
        let removed = self.peers.iter().copied().filter(|a| !wanted.contains(a)).collect();
        self.peers = wanted;
        (added, removed)
    }

    pub fn addrs(&self) -> impl Iterator<Item = IpAddr> + '_ {
        self.peers.iter().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("address")
    }

    #[test]
    fn checks_the_name_and_interval() {
        let conf = || PathBuf::from("/etc/resolv.conf");
        assert!(DnsPeersConfig::new("ipf.openshift-ipf.svc.cluster.local.", 30, conf()).is_ok());
        assert_eq!(
            DnsPeersConfig::new("ipf.test", 0, conf()),
            Err(DnsConfigError::Interval)
        );
        for bad in ["ipf..test", "ipf test", &"a".repeat(64)] {
            let e = DnsPeersConfig::new(bad, 30, conf()).expect_err(bad);
            assert!(e.to_string().contains("IPF_PEERS_DNS"), "{e}");
        }
    }

    #[test]
    fn logs_only_changes_of_state() {
        let mut h = LookupHealth::default();
        assert_eq!(h.record(true), Transition::Unchanged);
        assert_eq!(h.record(false), Transition::Failed);
        assert_eq!(h.record(false), Transition::Unchanged, "not once per attempt");
        assert_eq!(h.record(true), Transition::Recovered);
        assert_eq!(h.record(true), Transition::Unchanged);
    }

    #[test]
    fn skips_own_addresses_and_sorts() {
        let set = peer_set(
            [
                ip("192.0.2.3"),
                ip("192.0.2.1"),
                ip("192.0.2.2"),
                ip("192.0.2.3"),
                ip("127.0.0.1"),
            ],
            &[ip("192.0.2.1")],
        );
        assert_eq!(set, [ip("192.0.2.2"), ip("192.0.2.3")]);
    }

    #[test]
    fn instance_takes_its_family_and_reports_changes() {
        let mut p = InstancePeers::default();
        let own = ip("192.0.2.1");
        let mcast = [ip("224.0.0.18")];
        let (added, removed) = p.update(&[ip("192.0.2.2"), ip("2001:db8::2"), own], own, &mcast);
        assert_eq!((added, removed), (vec![ip("192.0.2.2")], vec![]));
        let (added, removed) = p.update(&[ip("192.0.2.3")], own, &mcast);
        assert_eq!((added, removed), (vec![ip("192.0.2.3")], vec![ip("192.0.2.2")]));
        assert_eq!(p.update(&[ip("192.0.2.3")], own, &mcast), (vec![], vec![]));
        assert_eq!(p.addrs().collect::<Vec<_>>(), [ip("192.0.2.3")]);
    }
}
