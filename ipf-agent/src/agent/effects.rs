//! The engine's [`Effects`] on the real world: adverts on the wire, VIP work queued for the VIP
//! worker, the datapath's role, metrics, the status board and notify scripts.

use std::{
    cell::RefCell,
    net::IpAddr,
    ops::Range,
    rc::Rc,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use ipf_common::{
    VridState,
    vrrp::{AdvertFields, encode_advert},
};
use tokio::sync::mpsc;

use super::{
    outbox::{Origin, Outbox},
    plan::AdvertWire,
    vips::VipOp,
};
use crate::{
    config::{Garp, Notify, Vip},
    datapath::{Datapath, Family, raw::monotonic_ns, wire_addr},
    metrics::{self, InstanceSeries},
    status,
    vrrp::{AdvertSource, Effects, LastAdvert, State},
};

/// Longest a notify script may run before it is killed.
const NOTIFY_TIMEOUT: Duration = Duration::from_secs(60);

/// The engine's side effects for one instance, on the real network, datapath, metrics and board.
pub(super) struct RealEffects {
    pub(super) name: String,
    /// Changed only through [`Self::set_vips`], which also drops `encoded`.
    pub(super) wire: AdvertWire,
    pub(super) encoded: EncodedAdverts,
    /// Every owned VIP with its interface filled in (`dev`).
    /// Shared with the VIP worker's queued ops: a renewal with every advert copies no list.
    pub(super) vips: Rc<[Vip]>,
    pub(super) outbox: Outbox,
    /// This instance as its queued adverts name and count it.
    pub(super) origin: Rc<Origin>,
    /// Whether the instance is Master (set by `state_changed`): its periodic adverts wait for the
    /// run loop's batch, a takeover's or a release's do not.
    pub(super) advertising: bool,
    pub(super) ops: mpsc::UnboundedSender<VipOp>,
    pub(super) datapath: Rc<RefCell<Datapath>>,
    /// Incremented on every Master entry and exit: stale delayed announcements are skipped.
    pub(super) master_epoch: Arc<AtomicU64>,
    pub(super) garp: Garp,
    pub(super) vip_lease: Option<Duration>,
    /// When the Master renews the lease: with its adverts.
    pub(super) renewal: Option<crate::lease::Renewal>,
    /// Peers learned from multicast adverts, advertised to by unicast as well (multicast instances).
    pub(super) learned: Option<crate::peers::Learned>,
    /// Peers from DNS, advertised to by unicast as well (multicast instances).
    pub(super) dns: Option<crate::dns_peers::InstancePeers>,
    pub(super) metrics: InstanceSeries,
    pub(super) board: status::Board,
    pub(super) notify: Notify,
    pub(super) conflicts: crate::conflict::Watch,
}

impl RealEffects {
    pub(super) fn with_status(&self, f: impl FnOnce(&mut status::InstanceStatus)) {
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
        crate::script_security::apply(&mut cmd);
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
    pub(super) fn set_vips(&mut self, vips: Vec<Vip>, advertised: Vec<u8>, master: bool) {
        let removed: Vec<Vip> = self.vips.iter().filter(|v| !vips.contains(v)).cloned().collect();
        self.vips = vips.into();
        self.wire.addrs = advertised;
        self.encoded = EncodedAdverts::default();
        self.with_status(|s| s.vips = self.vips.iter().map(ToString::to_string).collect());
        let watched = self
            .vips
            .iter()
            .filter(|v| v.dev.as_deref() == Some(self.outbox.sender().interface()));
        self.conflicts.set_vips(watched.map(|v| v.addr).collect());
        if master {
            if !removed.is_empty() {
                let _ = self.ops.send(VipOp::Remove(removed.into()));
            }
            self.add_vips();
            self.announce();
        }
    }
}

impl RealEffects {
    /// An advert from `src` was heard (multicast instances learn it as a unicast peer).
    pub(super) fn learn(&mut self, src: std::net::IpAddr) {
        if let Some(l) = self.learned.as_mut()
            && l.heard(src, tokio::time::Instant::now())
        {
            tracing::info!("({}) learned unicast peer {src}", self.name);
        }
    }

    /// The node's peer set from DNS changed: this instance's unicast destinations follow, in place.
    pub(super) fn set_dns_peers(&mut self, set: &[std::net::IpAddr]) {
        let Some(dns) = self.dns.as_mut() else { return };
        let (added, removed) = dns.update(set, self.wire.src, &self.wire.dsts);
        let list = |v: &[std::net::IpAddr]| v.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ");
        if !added.is_empty() || !removed.is_empty() {
            tracing::info!(
                "({}) unicast peers from DNS: added [{}], removed [{}]",
                self.name,
                list(&added),
                list(&removed)
            );
        }
        let peers: Vec<std::net::IpAddr> = dns.addrs().collect();
        self.with_status(|s| s.dns_peers = peers);
    }

    /// Keeps the master the datapath hears, forgets peers long silent.
    pub(super) fn refresh_learned(&mut self) {
        let current = self.last_advert().filter(|a| a.age < a.adver_int * 3).map(|a| a.src);
        if let Some(l) = self.learned.as_mut() {
            for gone in l.refresh(current, tokio::time::Instant::now()) {
                tracing::info!(
                    "({}) forgot unicast peer {gone} (not heard for {:?})",
                    self.name,
                    crate::peers::FORGET_AFTER
                );
            }
        }
    }
}

impl Effects for RealEffects {
    fn send_advert(&mut self, priority: u8) {
        let w = &self.wire;
        if self.encoded.priority != Some(priority) {
            self.encoded.fill(w, priority, &self.name);
        }
        for (dst, bytes) in &self.encoded.msgs {
            // Sent with the others due in the same batch when the run loop flushes.
            let msg = &self.encoded.bytes[bytes.clone()];
            self.outbox.queue(*dst, msg, &self.origin, priority == 0);
        }
        let dns = self.dns.iter().flat_map(|d| d.addrs());
        // A learned peer also in DNS gets one copy.
        let learned = self
            .learned
            .iter()
            .flat_map(|l| l.addrs())
            .filter(|a| !self.dns.as_ref().is_some_and(|d| d.addrs().any(|p| p == *a)));
        let mut peers = dns.chain(learned).peekable();
        if peers.peek().is_some() {
            let mut buf = [0u8; MAX_ADVERT];
            for dst in peers {
                if let Some(n) = encode(w, priority, dst, &mut buf, &self.name) {
                    self.outbox.queue(dst, &buf[..n], &self.origin, priority == 0);
                }
            }
        }
        // A takeover's first advert and a release (priority 0) start the peers' clocks (their
        // yielding, their Skew_Time): they leave now rather than with the loop's batch, which only
        // periodic adverts need.
        if priority == 0 || !self.advertising {
            self.outbox.flush();
        }
        // Renewing only with adverts bounds the lease's end by the last advert a Backup heard.
        if priority != 0
            && let (Some(lease), Some(r)) = (self.vip_lease, self.renewal.as_mut())
            && r.due(tokio::time::Instant::now())
        {
            let _ = self.ops.send(VipOp::Renew {
                vips: self.vips.clone(),
                lease,
                epoch: self.master_epoch.load(Ordering::SeqCst),
                epoch_now: self.master_epoch.clone(),
            });
        }
    }

    fn add_vips(&mut self) {
        self.master_epoch.fetch_add(1, Ordering::SeqCst);
        let _ = self.ops.send(VipOp::Add(self.vips.clone(), self.vip_lease));
        if let Some(r) = self.renewal.as_mut() {
            r.added();
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
        // keepalived's second burst after garp_master_delay and the optional periodic refresh
        // (garp_master_refresh), both counted from the takeover as keepalived counts them (the
        // refresh does not wait for the second burst), for as long as this Master epoch lasts.
        let (ops, epoch_now) = (self.ops.downgrade(), self.master_epoch.clone());
        let due = move |op: VipOp| {
            let tx = ops.upgrade()?;
            (epoch_now.load(Ordering::SeqCst) == epoch).then(|| tx.send(op).ok())?
        };
        let (second, delay) = (op(self.garp.repeat), self.garp.delay);
        let second_due = due.clone();
        tokio::task::spawn_local(async move {
            tokio::time::sleep(delay).await;
            second_due(second);
        });
        if let Some(every) = self.garp.refresh {
            let refresh = op(1);
            tokio::task::spawn_local(async move {
                loop {
                    tokio::time::sleep(every).await;
                    if due(refresh.clone()).is_none() {
                        return;
                    }
                }
            });
        }
    }

    fn reannounce(&mut self) {
        let _ = self.ops.send(VipOp::Announce {
            vips: self.vips.clone(),
            epoch: self.master_epoch.load(Ordering::SeqCst),
            epoch_now: self.master_epoch.clone(),
            burst: self.garp.repeat,
            sent: self.metrics.gratuitous_sent.clone(),
        });
    }

    fn set_role(&mut self, master: bool, priority: u8) {
        self.metrics.priority.set(i64::from(priority));
        self.with_status(|s| s.priority = priority);
        if let Err(e) = self
            .datapath
            .borrow_mut()
            .set_role(self.wire.family, self.wire.vrid, master, priority)
        {
            tracing::warn!(instance = %self.name, "datapath role: {e}");
        }
    }

    fn guard(&mut self, on: bool) {
        if let Err(e) = self
            .datapath
            .borrow_mut()
            .set_guard(self.wire.family, self.wire.vrid, on)
        {
            tracing::warn!(instance = %self.name, "datapath guard: {e}");
        }
        self.conflicts.guard(on);
    }

    fn state_changed(&mut self, from: State, to: State, reason: &str) {
        let m = &self.metrics;
        let now = metrics::now_unix().as_secs_f64();
        m.state.set(metrics::state_value(to));
        m.set_last_transition(now);
        self.with_status(|s| {
            s.state = to.keepalived_name().to_owned();
            s.last_transition = now;
        });
        self.advertising = to == State::Master;
        if to == State::Master {
            m.became_master.inc();
            self.conflicts.begin_term();
        }
        if from == State::Master {
            m.released_master.inc();
            self.conflicts.end_term();
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
        let st = self
            .datapath
            .borrow()
            .vrid_state(self.wire.family, self.wire.vrid)
            .ok()?;
        last_advert_of(self.wire.family, &st)
    }

    fn advert_source(&self) -> Option<AdvertSource> {
        let reader = self.datapath.borrow().reader();
        let (family, vrid) = (self.wire.family, self.wire.vrid);
        Some(Arc::new(move || {
            last_advert_of(family, &reader.vrid_state(family, vrid).ok()?)
        }))
    }
}

/// Room for the largest advert: a 1500-byte packet's, which `plan::max_advertised` fills (90 IPv6
/// addresses are 1448 bytes; 255 IPv4 ones with authentication, 1036).
const MAX_ADVERT: usize = 1500;

/// An instance's adverts to its configured destinations (the multicast group or the unicast
/// peers), encoded once for a priority: a Master sends the same bytes every interval. Peers from DNS
/// or learned from adverts change at run time and are encoded as they go.
#[derive(Default)]
pub(super) struct EncodedAdverts {
    /// The priority they carry (`None`: none encoded yet).
    priority: Option<u8>,
    bytes: Vec<u8>,
    msgs: Vec<(IpAddr, Range<usize>)>,
}

impl EncodedAdverts {
    fn fill(&mut self, w: &AdvertWire, priority: u8, instance: &str) {
        self.bytes.clear();
        self.msgs.clear();
        let mut buf = [0u8; MAX_ADVERT];
        for &dst in &w.dsts {
            if let Some(n) = encode(w, priority, dst, &mut buf, instance) {
                let at = self.bytes.len();
                self.bytes.extend_from_slice(&buf[..n]);
                self.msgs.push((dst, at..self.bytes.len()));
            }
        }
        self.priority = Some(priority);
    }
}

/// Encodes the advert of `w` with `priority` to `dst` into `buf`; its length, or `None` (logged)
/// if it does not encode.
fn encode(w: &AdvertWire, priority: u8, dst: IpAddr, buf: &mut [u8], instance: &str) -> Option<usize> {
    let fields = AdvertFields {
        version: w.version,
        family: w.family.wire(),
        vrid: w.vrid,
        priority,
        adver_int_cs: w.adver_int_cs,
        addrs: &w.addrs,
        auth_pass: w.auth_pass,
        src: wire_addr(&w.src),
        dst: wire_addr(&dst),
    };
    encode_advert(&fields, buf)
        .map_err(|e| tracing::error!(instance, "encoding advert: {e:?}"))
        .ok()
}

/// The current master's last advert as the datapath recorded it, aged by the monotonic clock the
/// datapath stamps with.
fn last_advert_of(family: Family, st: &VridState) -> Option<LastAdvert> {
    LastAdvert::from_datapath(family, st, monotonic_ns()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire(family: Family, version: u8, count: usize, auth: bool) -> AdvertWire {
        let (len, dst): (usize, IpAddr) = match family {
            Family::V4 => (4, ipf_common::vrrp::MCAST_V4.into()),
            Family::V6 => (16, ipf_common::vrrp::MCAST_V6.into()),
        };
        let src: IpAddr = match family {
            Family::V4 => "192.0.2.200".parse().expect("addr"),
            Family::V6 => "fe80::1".parse().expect("addr"),
        };
        AdvertWire {
            family,
            vrid: 7,
            version,
            adver_int_cs: 100,
            src,
            dsts: vec![dst],
            addrs: vec![1; count * len],
            auth_pass: auth.then_some(*b"secret12"),
        }
    }

    #[test]
    fn the_largest_adverts_a_plan_makes_encode() {
        // What `plan::max_advertised` lets an advert carry, with the header and authentication.
        for (w, len) in [
            (wire(Family::V4, 2, 255, true), 8 + 255 * 4 + 8),
            (wire(Family::V6, 3, 90, false), 8 + 90 * 16),
        ] {
            let mut e = EncodedAdverts::default();
            e.fill(&w, 100, "VI_1");
            assert_eq!(e.msgs.len(), 1, "{:?}: one advert to the group", w.family);
            assert_eq!(e.msgs[0].1.len(), len, "{:?}", w.family);
            assert_eq!(e.bytes[2], 100, "the priority is on the wire");
        }
    }
}
