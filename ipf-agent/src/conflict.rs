//! Split-brain detection and reporting for a Master's VIPs, in the spirit of RFC 5227 (IPv4 address
//! conflict detection) and RFC 4862 duplicate address detection.
//!
//! While an instance is Master it probes its VIPs: an ARP probe (sender address 0.0.0.0) or a DAD
//! neighbour solicitation (source ::). Any other node holding the address answers from its kernel,
//! and the datapath reports that answer, like any foreign gratuitous ARP / NA, as a conflict (the
//! datapath already ignores our own MACs, a Backup's view and a master that preempts us, see
//! `ipf_common::advert::conflict_due`). An *episode* starts with the first claim and ends when the
//! claims stop for [`QUIET`] (the other side released the address) or when this instance leaves
//! Master. One log line marks each end; the status board and a per-instance gauge show what is
//! ongoing. While an episode runs, probes and an extra VRRP advert go out every [`FAST_PROBE`], so
//! when the VRRP path returns the lower Master yields within that time (see the engine's answer to
//! a lower Master's advert) and the end is seen within [`QUIET`] more; at the end, a Master that
//! kept the address re-announces it, so clients that followed the other node come back at once
//! rather than when their ARP entries age out.
//!
//! With no VRRP path at all neither Master hears the other's adverts, and the split lasts as long as
//! the partition. [`SplitBrainPolicy::Yield`] settles it: after [`YIELD_AFTER`] of conflict, the
//! Master whose MAC is the lower of the two steps down ([`yields`]; both sides compute the same
//! answer from the same two MACs) and *guards*: as a Backup it keeps probing the VIPs every
//! [`GUARD_PROBE`], each answer from the holder ([`Input::HolderSeen`]) restarts its wait, and it
//! takes the VIPs back only when the holder stops answering for [`crate::vrrp::GUARD_HOLD`] (or
//! the VRRP path returns and the election decides).

use std::{
    cell::RefCell,
    collections::BTreeMap,
    net::{IpAddr, Ipv6Addr},
    rc::Rc,
    time::Duration,
};

use crate::metrics::{Counter, Gauge};
use futures_util::TryStreamExt as _;
use ipf_common::{
    checksum,
    frame::{ETH_P_ARP, ETH_P_IPV6, IPPROTO_ICMPV6},
};
use rtnetlink::packet_route::neighbour::{NeighbourAddress, NeighbourAttribute, NeighbourState};
use tokio::{sync::Notify, time::Instant};

use crate::{
    datapath::format_mac,
    network::{Announcer, arp_probe_frame},
    status,
    vrrp::{GUARD_HOLD, Input},
};

/// What a Master does about a conflict that VRRP cannot settle (no advert path between the two).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum SplitBrainPolicy {
    /// Report it (log, status, metrics) and keep the VIPs: both nodes serve until the path returns.
    #[default]
    Report,
    /// Report it, and the node with the lower MAC yields the VIPs to the other until that one
    /// stops answering for them (see the module documentation).
    Yield,
}

/// The yield rule: of two Masters claiming the same VIP, the one with the numerically lower MAC
/// steps down. It needs nothing but the two MACs each side already has (its own, and the one the
/// other's ARP/NA came from), so both reach the same answer without talking; priorities are not
/// known without adverts.
pub fn yields(ours: [u8; 6], theirs: [u8; 6]) -> bool {
    ours < theirs
}

/// How long a conflict lasts before the `yield` policy acts: with a VRRP path, the lower Master
/// yields to the extra adverts sent every [`FAST_PROBE`] well within it, so a conflict still going
/// after this has no VRRP path.
pub const YIELD_AFTER: Duration = Duration::from_secs(1);
/// Probe interval of a guarding Backup: three probes fit in [`GUARD_HOLD`], so one lost answer
/// does not end the guard.
pub const GUARD_PROBE: Duration = Duration::from_millis(500);
const _: () = assert!(GUARD_PROBE.as_millis() * 3 < GUARD_HOLD.as_millis());

/// Probe interval while no conflict is known. A split is seen without it (the new Master's first
/// probe, the old one's view of its gratuitous ARP); it is for a holder that never announces (a host
/// configured by hand), found within this. At 1 s adverts a shorter one would be a third of a node's
/// packets.
pub const STEADY_PROBE: Duration = Duration::from_secs(10);
/// Probe interval while an episode runs: its end is seen within [`QUIET`] + this.
pub const FAST_PROBE: Duration = Duration::from_millis(200);
/// Claims stopping for this long end an episode (more than two fast probes: one lost answer does
/// not end it).
pub const QUIET: Duration = Duration::from_millis(500);
/// Wait after becoming Master before the first probe: a master we preempted needs a moment to drop
/// the addresses after our first advert, and its kernel would still answer.
pub const FIRST_PROBE_DELAY: Duration = Duration::from_millis(250);

/// ICMPv6 neighbour solicitation.
const ICMPV6_NEIGHBOR_SOLICIT: u8 = 135;
pub const DAD_PROBE_LEN: usize = 14 + 40 + 24;

/// An ongoing conflict on one VIP.
#[derive(Clone, Debug)]
struct Episode {
    mac: [u8; 6],
    other_ip: Option<IpAddr>,
    started: Instant,
    started_unix: f64,
    last: Instant,
    claims: u64,
}

/// The instance's series for conflicts.
pub struct ConflictMetrics {
    /// VIPs in an ongoing conflict.
    pub ongoing: Gauge,
    pub episodes: Counter,
}

struct Inner {
    instance: String,
    ifindex: u32,
    mac: [u8; 6],
    /// VIPs on the datapath's interface (claims are seen only there).
    vips: Vec<IpAddr>,
    episodes: BTreeMap<IpAddr, Episode>,
    /// Incremented at every Master entry and exit; the probe task of a past term stops.
    term: u64,
    master: bool,
    /// When this term began (as Master): claims in its first [`FIRST_PROBE_DELAY`] are the master
    /// we preempted, which still holds the VIPs until it hears our first advert.
    term_began: Instant,
    metrics: ConflictMetrics,
    board: status::Board,
    announcer: Option<Rc<Announcer>>,
    neighbours: Option<rtnetlink::Handle>,
    /// Feeds the instance (`Input::Contested`, `Input::ConflictOver`): the engine decides what a
    /// Master does about it.
    to_instance: Rc<dyn Fn(Input)>,
    /// Wakes the probe task when an episode starts.
    wake: Rc<Notify>,
    policy: SplitBrainPolicy,
    /// The MAC this term's Master yielded to (policy `yield`); shown while guarding.
    yielding_to: Option<[u8; 6]>,
    /// A Backup that yielded: claims are the holder answering, not conflicts.
    guarding: bool,
}

/// One instance's conflict watch. Cheap to clone; single-threaded (lives on the agent's `LocalSet`).
#[derive(Clone)]
pub struct Watch(Rc<RefCell<Inner>>);

/// What [`Watch::new`] needs about the instance and the node.
pub struct WatchConfig {
    pub instance: String,
    pub interface: String,
    pub ifindex: u32,
    pub vips: Vec<IpAddr>,
    pub metrics: ConflictMetrics,
    pub board: status::Board,
    pub neighbours: Option<rtnetlink::Handle>,
    /// The interface's packet socket the probes go out on, shared by the node's instances (`None`:
    /// no probes; claims, gratuitous ARP / NA, are still seen).
    pub probes: Option<Rc<Announcer>>,
    pub to_instance: Rc<dyn Fn(Input)>,
    pub policy: SplitBrainPolicy,
}

impl Watch {
    pub fn new(cfg: WatchConfig) -> Self {
        Watch(Rc::new(RefCell::new(Inner {
            mac: crate::datapath::interface_mac(&cfg.interface),
            instance: cfg.instance,
            ifindex: cfg.ifindex,
            vips: cfg.vips,
            episodes: BTreeMap::new(),
            term: 0,
            master: false,
            term_began: Instant::now(),
            metrics: cfg.metrics,
            board: cfg.board,
            announcer: cfg.probes,
            neighbours: cfg.neighbours,
            to_instance: cfg.to_instance,
            wake: Rc::new(Notify::new()),
            policy: cfg.policy,
            yielding_to: None,
            guarding: false,
        })))
    }

    /// The VIPs changed (reload).
    pub fn set_vips(&self, vips: Vec<IpAddr>) {
        let mut w = self.0.borrow_mut();
        w.episodes.retain(|v, _| vips.contains(v));
        w.vips = vips;
        w.publish();
    }

    /// The instance became Master: probe after [`FIRST_PROBE_DELAY`], then periodically, for as
    /// long as this term lasts. Must run inside a `LocalSet`.
    pub fn begin_term(&self) {
        let term = {
            let mut w = self.0.borrow_mut();
            w.term += 1;
            w.master = true;
            w.term_began = Instant::now();
            w.yielding_to = None;
            w.term
        };
        let watch = self.clone();
        tokio::task::spawn_local(async move { watch.probe_loop(term).await });
    }

    /// The instance starts guarding a split brain it yielded (`on`), or stops (it takes the VIPs
    /// back, the VRRP path returned, or it leaves Backup). While guarding it probes every
    /// [`GUARD_PROBE`]; must run inside a `LocalSet`.
    pub fn guard(&self, on: bool) {
        let term = {
            let mut w = self.0.borrow_mut();
            if w.guarding == on {
                return;
            }
            w.term += 1;
            w.guarding = on;
            if !on {
                tracing::info!("({}) split brain: no longer guarding the yielded VIPs", w.instance);
                w.yielding_to = None;
            }
            w.publish();
            w.term
        };
        if on {
            let watch = self.clone();
            tokio::task::spawn_local(async move { watch.guard_loop(term).await });
        }
    }

    async fn guard_loop(&self, term: u64) {
        loop {
            {
                let w = self.0.borrow();
                if w.term != term || !w.guarding {
                    return;
                }
                w.probe();
            }
            tokio::time::sleep(GUARD_PROBE).await;
        }
    }

    /// The instance left Master: every episode ends (the address is no longer ours to defend).
    pub fn end_term(&self) {
        let mut w = self.0.borrow_mut();
        w.term += 1;
        w.master = false;
        let ended: Vec<IpAddr> = w.episodes.keys().copied().collect();
        for vip in ended {
            w.end(vip, "no longer MASTER");
        }
        w.publish();
    }

    /// The datapath saw `mac` claim `vip`.
    pub fn claim(&self, vip: IpAddr, mac: [u8; 6]) {
        let mut guard = self.0.borrow_mut();
        if guard.guarding && guard.vips.contains(&vip) {
            (guard.to_instance)(Input::HolderSeen);
            return;
        }
        if !guard.master || !guard.vips.contains(&vip) {
            return;
        }
        let now = Instant::now();
        // The master we just preempted holds the VIPs until our first advert reaches it, and its
        // kernel answers for them meanwhile (seen as a false conflict about 1 ms into a term under
        // load). A real split outlasts this: our first probe comes right after it.
        if now.duration_since(guard.term_began) < FIRST_PROBE_DELAY {
            return;
        }
        let w = &mut *guard;
        if let Some(e) = w.episodes.get_mut(&vip) {
            e.last = now;
            e.claims += 1;
            if e.mac != mac {
                // A third node, or the other side's MAC changed: the log names the newest.
                tracing::warn!(
                    "({}) VIP {vip} also claimed by {} (split brain continues)",
                    w.instance,
                    format_mac(&mac)
                );
                e.mac = mac;
                e.other_ip = None;
            }
            return;
        }
        w.episodes.insert(
            vip,
            Episode {
                mac,
                other_ip: None,
                started: now,
                started_unix: crate::metrics::now_unix().as_secs_f64(),
                last: now,
                claims: 1,
            },
        );
        w.metrics.episodes.inc();
        w.publish();
        w.wake.notify_one();
        let (instance, handle, ifindex) = (w.instance.clone(), w.neighbours.clone(), w.ifindex);
        drop(guard);
        // The start line names the other node's IP when the neighbour table knows it: looked up
        // off the election path, logged when the answer is in (a dump takes about a millisecond).
        let watch = self.clone();
        tokio::task::spawn_local(async move {
            let other_ip = match handle {
                Some(h) => neighbour_ip(&h, ifindex, mac, vip).await,
                None => None,
            };
            let mut w = watch.0.borrow_mut();
            if let Some(e) = w.episodes.get_mut(&vip).filter(|e| e.mac == mac) {
                e.other_ip = other_ip;
            }
            w.publish();
            tracing::warn!(
                "({instance}) split brain: VIP {vip} is also claimed by {}{} while we are MASTER",
                format_mac(&mac),
                other_ip.map_or_else(String::new, |ip| format!(" ({ip})")),
            );
        });
    }

    async fn probe_loop(&self, term: u64) {
        let wake = self.0.borrow().wake.clone();
        tokio::time::sleep(FIRST_PROBE_DELAY).await;
        loop {
            let every = {
                let mut w = self.0.borrow_mut();
                if w.term != term {
                    return;
                }
                // Episodes whose claims stopped: the other side let go; clients may still point at
                // it, so announce the addresses again.
                let now = Instant::now();
                let quiet: Vec<IpAddr> = w
                    .episodes
                    .iter()
                    .filter(|(_, e)| now.duration_since(e.last) >= QUIET)
                    .map(|(v, _)| *v)
                    .collect();
                for vip in &quiet {
                    w.end(*vip, "claims stopped");
                }
                if !quiet.is_empty() {
                    w.publish();
                    (w.to_instance)(Input::ConflictOver);
                }
                if w.policy == SplitBrainPolicy::Yield && w.yielding_to.is_none() {
                    w.maybe_yield(now);
                }
                w.probe();
                if w.episodes.is_empty() {
                    STEADY_PROBE
                } else {
                    // Advertise with every fast probe: when the VRRP path returns, the other Master
                    // hears us (or we it) within this interval rather than the advert interval.
                    (w.to_instance)(Input::Contested);
                    FAST_PROBE
                }
            };
            tokio::select! {
                _ = tokio::time::sleep_until(next_probe(every)) => {}
                _ = wake.notified() => {}
            }
        }
    }
}

/// When the next probe is due: steady probes on a grid shared by every instance (the node's Masters
/// wake together, once per [`STEADY_PROBE`], instead of each at its own moment), fast ones `every`
/// from now.
fn next_probe(every: Duration) -> Instant {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let now = Instant::now();
    if every != STEADY_PROBE {
        return now + every;
    }
    let epoch = *EPOCH.get_or_init(|| now);
    let step = every.as_nanos();
    let passed = now.duration_since(epoch).as_nanos();
    let next = (passed / step + 1) * step;
    epoch + Duration::from_nanos(u64::try_from(next).unwrap_or(u64::MAX))
}

impl Inner {
    /// Policy `yield`: the first conflict older than [`YIELD_AFTER`] that the rule settles against
    /// us makes the instance step down (once per term).
    fn maybe_yield(&mut self, now: Instant) {
        let due = self
            .episodes
            .iter()
            .find(|(_, e)| now.duration_since(e.started) >= YIELD_AFTER && yields(self.mac, e.mac));
        if let Some((vip, e)) = due {
            tracing::warn!(
                "({}) split brain: yielding the VIPs to {}{}: VIP {vip} contested for {:.1} s with no VRRP path, \
                 and the lower MAC yields (policy yield)",
                self.instance,
                format_mac(&e.mac),
                e.other_ip.map_or_else(String::new, |ip| format!(" ({ip})")),
                now.duration_since(e.started).as_secs_f64(),
            );
            self.yielding_to = Some(e.mac);
            (self.to_instance)(Input::Yield);
        }
    }

    fn probe(&self) {
        let Some(a) = &self.announcer else { return };
        for vip in &self.vips {
            let r = match vip {
                IpAddr::V4(v) => a.send_frame(ETH_P_ARP, &arp_probe_frame(*v, self.mac), "sending an ARP probe", *vip),
                IpAddr::V6(v) => a.send_frame(ETH_P_IPV6, &dad_probe_frame(*v, self.mac), "sending a DAD probe", *vip),
            };
            if let Err(e) = r {
                tracing::debug!(instance = %self.instance, "{e}");
            }
        }
    }

    fn end(&mut self, vip: IpAddr, why: &str) {
        if let Some(e) = self.episodes.remove(&vip) {
            tracing::warn!(
                "({}) split brain over: VIP {vip} no longer claimed by {}{} ({why}; lasted {:.1} s, {} claims)",
                self.instance,
                format_mac(&e.mac),
                e.other_ip.map_or_else(String::new, |ip| format!(" ({ip})")),
                e.started.elapsed().as_secs_f64(),
                e.claims,
            );
        }
    }

    /// Gauge and status board follow the episodes.
    fn publish(&self) {
        self.metrics.ongoing.set(self.episodes.len() as i64);
        let conflicts: Vec<status::ConflictStatus> = self
            .episodes
            .iter()
            .map(|(vip, e)| status::ConflictStatus {
                vip: *vip,
                other_mac: format_mac(&e.mac),
                other_ip: e.other_ip,
                since: e.started_unix,
                claims: e.claims,
            })
            .collect();
        if let Some(s) = status::lock(&self.board)
            .iter_mut()
            .find(|s| s.instance == self.instance)
        {
            s.conflicts = conflicts;
            s.yielded_to = self.yielding_to.filter(|_| self.guarding).map(|m| format_mac(&m));
        }
    }
}

/// An IP address the neighbour table maps to `mac` on `ifindex` (IPv4 first), other than `vip`.
async fn neighbour_ip(handle: &rtnetlink::Handle, ifindex: u32, mac: [u8; 6], vip: IpAddr) -> Option<IpAddr> {
    let mut found: Vec<IpAddr> = Vec::new();
    let mut dump = handle.neighbours().get().execute();
    while let Ok(Some(msg)) = dump.try_next().await {
        if msg.header.ifindex != ifindex
            || matches!(msg.header.state, NeighbourState::Failed | NeighbourState::Incomplete)
        {
            continue;
        }
        let lladdr = msg.attributes.iter().find_map(|a| match a {
            NeighbourAttribute::LinkLayerAddress(l) => Some(l.as_slice()),
            _ => None,
        });
        if lladdr != Some(&mac[..]) {
            continue;
        }
        for a in &msg.attributes {
            if let NeighbourAttribute::Destination(d) = a {
                let ip = match d {
                    NeighbourAddress::Inet(v4) => IpAddr::V4(*v4),
                    NeighbourAddress::Inet6(v6) => IpAddr::V6(*v6),
                    _ => continue,
                };
                if ip != vip {
                    found.push(ip);
                }
            }
        }
    }
    found.sort_by_key(|ip| (ip.is_ipv6(), *ip));
    found.first().copied()
}

/// A duplicate address detection probe (RFC 4862 §5.4.2): a neighbour solicitation for `ip` from
/// the unspecified address to its solicited-node group, hop limit 255, no link-layer option. A
/// holder of `ip` answers with a neighbour advertisement to all nodes (RFC 4861 §7.2.4).
pub fn dad_probe_frame(ip: Ipv6Addr, mac: [u8; 6]) -> [u8; DAD_PROBE_LEN] {
    const ICMP_LEN: usize = 24;
    let t = ip.octets();
    let group = Ipv6Addr::new(
        0xff02,
        0,
        0,
        0,
        0,
        1,
        0xff00 | u16::from(t[13]),
        u16::from_be_bytes([t[14], t[15]]),
    )
    .octets();
    let mut f = [0u8; DAD_PROBE_LEN];
    f[0..6].copy_from_slice(&[0x33, 0x33, 0xff, t[13], t[14], t[15]]);
    f[6..12].copy_from_slice(&mac);
    f[12..14].copy_from_slice(&ETH_P_IPV6.to_be_bytes());
    {
        let ip6 = &mut f[14..54];
        ip6[0] = 0x60;
        ip6[4..6].copy_from_slice(&(ICMP_LEN as u16).to_be_bytes());
        ip6[6] = IPPROTO_ICMPV6;
        ip6[7] = 255;
        // Source :: (already zero).
        ip6[24..40].copy_from_slice(&group);
    }
    let icmp = &mut f[54..];
    icmp[0] = ICMPV6_NEIGHBOR_SOLICIT;
    icmp[8..24].copy_from_slice(&t);
    let mut acc = checksum::sum(&[0u8; 16], 0);
    acc = checksum::sum(&group, acc);
    acc += ICMP_LEN as u32 + u32::from(IPPROTO_ICMPV6);
    let csum = checksum::fold(checksum::sum(icmp, acc));
    icmp[2..4].copy_from_slice(&csum.to_be_bytes());
    f
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    const MAC: [u8; 6] = [2, 0, 0, 0, 0, 7];

    #[test]
    fn the_yield_rule_picks_exactly_one_side() {
        let a = [2, 0, 0, 0, 0, 7];
        let b = [2, 0, 0, 0, 1, 0];
        assert!(yields(a, b));
        assert!(!yields(b, a));
        // The first differing byte decides, as both sides compare the same two arrays.
        assert!(yields([0x02, 0xff, 0xff, 0xff, 0xff, 0xff], [0x0a, 0, 0, 0, 0, 0]));
        assert!(!yields(a, a));
    }

    #[test]
    fn arp_probe_claims_nothing() {
        let f = arp_probe_frame(Ipv4Addr::new(192, 0, 2, 100), MAC);
        let arp: &ipf_common::frame::ArpEthIpv4 = ipf_common::frame::header_at(&f, 14).expect("ARP header");
        let claim = ipf_common::frame::arp_claim(arp).expect("an ARP request");
        // Sender address 0.0.0.0: the probe claims no address, so no receiver counts it.
        assert_eq!(claim.addr, [0; 16]);
        assert_eq!(&f[14 + 24..14 + 28], &[192, 0, 2, 100]);
        assert_eq!(&f[14 + 18..14 + 24], &[0; 6]);
    }

    #[test]
    fn dad_probe_is_a_valid_solicitation() {
        let ip: Ipv6Addr = "2001:db8::1:2:3".parse().expect("address");
        let f = dad_probe_frame(ip, MAC);
        assert_eq!(&f[0..6], &[0x33, 0x33, 0xff, 0x02, 0x00, 0x03]);
        assert_eq!(f[14 + 7], 255);
        assert_eq!(&f[14 + 8..14 + 24], &[0; 16]);
        let group: Ipv6Addr = "ff02::1:ff02:3".parse().expect("group");
        assert_eq!(&f[14 + 24..14 + 40], &group.octets());
        // The checksum over the pseudo-header and message folds to zero.
        let mut acc = checksum::sum(&[0u8; 16], 0);
        acc = checksum::sum(&group.octets(), acc);
        acc += 24 + u32::from(IPPROTO_ICMPV6);
        assert_eq!(checksum::fold(checksum::sum(&f[54..], acc)), 0);
        assert_eq!(f[54], ICMPV6_NEIGHBOR_SOLICIT);
        assert_eq!(&f[54 + 8..], &ip.octets());
    }

    /// A claim in the first moments of a term is the master we preempted, which holds the VIPs
    /// until our first advert reaches it: not a conflict. One after [`FIRST_PROBE_DELAY`] is.
    #[tokio::test(start_paused = true)]
    async fn claims_right_after_a_takeover_are_the_preempted_master() {
        tokio::task::LocalSet::new()
            .run_until(async {
                let vip: IpAddr = "192.0.2.100".parse().expect("address");
                let episodes = Counter::default();
                let w = Watch::new(WatchConfig {
                    instance: "VI_1".into(),
                    interface: "ipf-none0".into(),
                    ifindex: 0,
                    vips: vec![vip],
                    metrics: ConflictMetrics {
                        ongoing: Gauge::default(),
                        episodes: episodes.clone(),
                    },
                    board: Default::default(),
                    neighbours: None,
                    probes: None,
                    to_instance: Rc::new(|_| {}),
                    policy: SplitBrainPolicy::Report,
                });
                w.begin_term();
                tokio::time::advance(Duration::from_millis(1)).await;
                w.claim(vip, [2, 0, 0, 0, 0, 9]);
                assert_eq!(episodes.get(), 0, "a claim 1 ms into the term counted as a conflict");
                tokio::time::advance(FIRST_PROBE_DELAY).await;
                w.claim(vip, [2, 0, 0, 0, 0, 9]);
                assert_eq!(episodes.get(), 1, "a claim after FIRST_PROBE_DELAY was not counted");
            })
            .await;
    }
}
