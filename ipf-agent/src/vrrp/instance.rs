//! A VRRP instance: configuration, state, and the one place state changes happen ([`Instance::change_state`]).

use std::{net::IpAddr, sync::Arc, time::Duration};

use tokio::time::Instant;

use ipf_common::VridState;

use super::timers::{Precision, Renew, Timer, TimerKind, TimerSink};
use crate::datapath::{Family, ip_from_wire};

/// RFC 5798 §6.4 states, plus keepalived's Fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum State {
    Initialize,
    Backup,
    Master,
    /// A health check or tracked interface failed: no VIPs, no part in elections (keepalived's FAULT).
    Fault,
}

impl State {
    /// The name keepalived prints and passes to notify scripts.
    pub fn keepalived_name(self) -> &'static str {
        match self {
            State::Initialize => "INIT",
            State::Backup => "BACKUP",
            State::Master => "MASTER",
            State::Fault => "FAULT",
        }
    }
}

/// Preemption (RFC 5798 Preempt_Mode; keepalived `nopreempt` / `preempt_delay`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Preempt {
    Yes,
    No,
    /// Preempt, but not before this long after the instance started.
    Delay(Duration),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstanceConfig {
    pub name: String,
    pub vrid: u8,
    pub family: Family,
    /// 2 or 3.
    pub version: u8,
    /// Configured priority, 1..=255 (255: address owner).
    pub priority: u8,
    pub adver_int: Duration,
    pub preempt: Preempt,
    /// Our primary address on the interface: the advert source and the tie-breaker.
    pub primary_addr: IpAddr,
    /// How the timers wait (fine in the agent, tokio's millisecond timer under simulated time). It
    /// sets the takeover time, and fine advert timers share a few phases per interval (see
    /// [`Precision::Fine`]).
    pub timer_precision: Precision,
}

/// What the datapath last saw from the current master of this VRID.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LastAdvert {
    /// Time since that advert arrived.
    pub age: Duration,
    pub src: IpAddr,
    pub priority: u8,
    pub adver_int: Duration,
}

impl LastAdvert {
    /// The current master's last advert as the datapath recorded it in `st`, aged as of `now_ns` on
    /// the clock the datapath stamps with; `None` before any.
    pub fn from_datapath(family: Family, st: &VridState, now_ns: u64) -> Option<Self> {
        (st.last_seen_ns != 0).then(|| LastAdvert {
            age: Duration::from_nanos(now_ns.saturating_sub(st.last_seen_ns)),
            src: ip_from_wire(family.wire(), &st.master_addr),
            priority: st.master_priority,
            adver_int: Duration::from_millis(u64::from(st.adver_int_cs) * 10),
        })
    }
}

/// Reads what the datapath last saw from the current master ([`Effects::last_advert`]) from the
/// timer schedule, which runs outside the instance (see [`Renew`]).
pub type AdvertSource = Arc<dyn Fn() -> Option<LastAdvert> + Send + Sync>;

/// Skew_Time (RFC 5798 §6.1): ((256 - Priority) * Master_Adver_Interval) / 256. VRRPv2 (RFC 3768
/// §6.1) has (256 - Priority) / 256 seconds, the same formula with a 1 s interval.
fn skew_time(version: u8, priority: u8, master_adver_int: Duration) -> Duration {
    let base = if version == 2 {
        Duration::from_secs(1)
    } else {
        master_adver_int
    };
    base * (256 - u32::from(priority)) / 256
}

/// Master_Down_Interval (RFC 5798 §6.1): 3 × Master_Adver_Interval + Skew_Time.
fn master_down_interval(version: u8, priority: u8, master_adver_int: Duration) -> Duration {
    master_adver_int * 3 + skew_time(version, priority, master_adver_int)
}

/// What holds a Backup back (RFC 5798 §6.4.2): an advert of the master that it would not preempt,
/// for Master_Down_Interval at the master's interval from its arrival; with keepalived's
/// `preempt_delay`, until the delay is over also one it would. One rule for the instance's own check
/// and for the timer schedule's ([`Renew`]).
#[derive(Clone, Copy, Debug)]
pub(super) struct HoldRule {
    version: u8,
    priority: u8,
    preempt: Preempt,
    /// When `preempt_delay` is over (startup + the delay).
    preempt_from: Option<Instant>,
}

impl HoldRule {
    /// §6.4.2: Preempt_Mode true and the advert's priority lower than ours.
    pub(super) fn would_preempt(&self, priority: u8) -> bool {
        match self.preempt {
            Preempt::No => false,
            Preempt::Yes | Preempt::Delay(_) => priority < self.priority,
        }
    }

    /// How much longer from `now` `last` holds us back; `None` if it does not (a release,
    /// Master_Down_Interval gone by, or a master we preempt now).
    pub(super) fn holds(&self, last: &LastAdvert, now: Instant) -> Option<Duration> {
        if last.priority == 0 {
            return None;
        }
        let mdi = master_down_interval(self.version, self.priority, last.adver_int);
        let left = mdi.checked_sub(last.age).filter(|left| !left.is_zero())?;
        if !self.would_preempt(last.priority) {
            return Some(left);
        }
        let delay_left = self.preempt_from?.saturating_duration_since(now);
        (!delay_left.is_zero()).then(|| left.min(delay_left))
    }
}

/// Inputs to an instance. Each has one handler in `events.rs`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    /// RFC 5798 §6.4.1 Startup event.
    Startup,
    /// RFC 5798 §6.4.2/6.4.3 Shutdown event.
    Shutdown,
    /// The datapath reports a change in the adverts of this VRID (new master, priority, interval,
    /// after silence, or an advert that wins against us while we are Master).
    Advert {
        src: IpAddr,
        priority: u8,
        adver_int: Duration,
        /// How long before this input the datapath received the advert: timers started by it count
        /// from its arrival (RFC 5798 §6.4.2), not from when the agent got round to it.
        age: Duration,
    },
    Timer {
        kind: TimerKind,
        generation: u64,
        /// When it was due (the schedule may have moved a master-down timer on, see [`Renew`]).
        deadline: Instant,
    },
    /// Health (checks, tracked interfaces) went bad (`true`) or recovered (`false`).
    Fault(bool),
    /// The effective priority changed (check weights); the configured one stays in the config.
    Priority(u8),
    /// Another node claims our VIPs (conflict detection): a Master advertises now, so that a peer
    /// the VRRP path reaches again yields without waiting for our next advert.
    Contested,
    /// The other node stopped claiming our VIPs: a Master re-announces them, since clients may
    /// still have the other node's MAC.
    ConflictOver,
    /// A split brain with no VRRP path that the split-brain policy `yield` settles against us: a
    /// Master steps down to Backup and guards (see [`GUARD_HOLD`]).
    Yield,
    /// While guarding: the node we yielded to still answers for our VIPs.
    HolderSeen,
}

/// How long a Backup that yielded a split brain (guarding) waits without the holder answering its
/// probes, and without adverts, before it takes over: at least this, and at least
/// Master_Down_Interval. Its conflict watch probes several times within it, so one lost answer
/// does not make it take the VIPs back from a live holder.
pub const GUARD_HOLD: Duration = Duration::from_millis(1600);

/// Every side effect of the state machine. The agent implements it with sockets, netlink and the
/// datapath; tests record the calls.
pub trait Effects {
    /// Sends an advertisement with `priority` (0 when releasing).
    fn send_advert(&mut self, priority: u8);
    /// Puts the VIPs on the interface.
    fn add_vips(&mut self);
    /// Removes the VIPs from the interface.
    fn remove_vips(&mut self);
    /// Gratuitous ARP / unsolicited NA for the VIPs (with keepalived's repeats).
    fn announce(&mut self);
    /// One more burst of gratuitous ARP / unsolicited NA now, without the delayed second burst:
    /// another Master was heard, and clients may have its MAC for our VIPs.
    fn reannounce(&mut self);
    /// Tells the datapath our role and priority (it reports adverts that preempt a Master).
    fn set_role(&mut self, master: bool, priority: u8);
    /// Starts or stops guarding a yielded split brain: while on, the datapath reports the holder's
    /// claims of our VIPs and the conflict watch probes for them (each answer is [`Input::HolderSeen`]).
    fn guard(&mut self, on: bool);
    /// Logs and notifies a state change.
    fn state_changed(&mut self, from: State, to: State, reason: &str);
    /// The datapath's view of the current master's adverts.
    fn last_advert(&self) -> Option<LastAdvert>;
    /// The same view for the timer schedule, if it can read it from there.
    fn advert_source(&self) -> Option<AdvertSource>;
}

/// One VRRP instance.
pub struct Instance<E: Effects> {
    pub(super) cfg: InstanceConfig,
    pub(super) state: State,
    /// Effective priority (configured priority moved by check weights).
    pub(super) priority: u8,
    /// Master_Adver_Interval (RFC 5798 §6.1): learned from the master while Backup.
    pub(super) master_adver_int: Duration,
    pub(super) effects: E,
    pub(super) timer: Option<Timer>,
    pub(super) generation: u64,
    pub(super) started_at: Instant,
    pub(super) faulty: bool,
    /// A Backup that yielded a split brain and holds off while the holder answers.
    pub(super) guarding: bool,
    on_timer: TimerSink,
    /// The datapath's view for the schedule, and the schedule's check of a live master built on it
    /// with our priority (rebuilt when that changes).
    source: Option<AdvertSource>,
    watch: Option<Renew>,
}

impl<E: Effects> Instance<E> {
    /// An instance in Initialize; `on_timer` hears its timers fire and must feed them back as
    /// [`Input::Timer`].
    pub fn new(cfg: InstanceConfig, effects: E, on_timer: TimerSink) -> Self {
        let source = effects.advert_source();
        let mut inst = Instance {
            priority: cfg.priority,
            master_adver_int: cfg.adver_int,
            cfg,
            state: State::Initialize,
            effects,
            timer: None,
            generation: 0,
            started_at: Instant::now(),
            faulty: false,
            guarding: false,
            on_timer,
            source,
            watch: None,
        };
        inst.watch = inst.make_watch();
        inst
    }

    pub(super) fn hold_rule(&self) -> HoldRule {
        HoldRule {
            version: self.cfg.version,
            priority: self.priority,
            preempt: self.cfg.preempt,
            preempt_from: match self.cfg.preempt {
                Preempt::Delay(d) => Some(self.started_at + d),
                Preempt::Yes | Preempt::No => None,
            },
        }
    }

    /// The schedule's check of a live master: the deadline a master-down wait moves to.
    fn make_watch(&self) -> Option<Renew> {
        let source = self.source.clone()?;
        let rule = self.hold_rule();
        Some(Arc::new(move |now| {
            let last = source()?;
            rule.holds(&last, now).map(|left| now + left)
        }))
    }

    /// Rebuilds the schedule's check after what it judges by changed: our priority, or the
    /// startup time `preempt_delay` counts from.
    pub(super) fn refresh_watch(&mut self) {
        self.watch = self.make_watch();
    }

    /// Our effective priority changed: the schedule's check judges with the new one from now on.
    pub(super) fn set_priority(&mut self, priority: u8) {
        self.priority = priority;
        self.refresh_watch();
        if self.state == State::Backup
            && let Some(t) = self.timer.as_ref().filter(|t| t.kind == TimerKind::MasterDown)
        {
            let left = t.deadline.saturating_duration_since(Instant::now());
            self.arm_exact(TimerKind::MasterDown, left);
        }
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub fn priority(&self) -> u8 {
        self.priority
    }

    pub fn config(&self) -> &InstanceConfig {
        &self.cfg
    }

    pub fn effects(&self) -> &E {
        &self.effects
    }

    pub fn effects_mut(&mut self) -> &mut E {
        &mut self.effects
    }

    /// Skew_Time (RFC 5798 §6.1) with the master's interval we last learned.
    pub fn skew_time(&self) -> Duration {
        skew_time(self.cfg.version, self.priority, self.master_adver_int)
    }

    /// Master_Down_Interval with the master's interval we last learned.
    pub fn master_down_interval(&self) -> Duration {
        master_down_interval(self.cfg.version, self.priority, self.master_adver_int)
    }

    /// How long a Backup waits for the master: Master_Down_Interval, and while guarding a yielded
    /// split brain at least [`GUARD_HOLD`].
    pub(super) fn backup_wait(&self) -> Duration {
        let mdi = self.master_down_interval();
        if self.guarding { mdi.max(GUARD_HOLD) } else { mdi }
    }

    /// Whether this Backup guards a split brain it yielded.
    pub fn guarding(&self) -> bool {
        self.guarding
    }

    /// Arms the (single) timer of the current state; replaces any other.
    pub(super) fn arm(&mut self, kind: TimerKind, after: Duration) {
        self.arm_with(Timer::start, kind, after);
    }

    /// Arms a timer that fires no earlier than `after` (the rest of a wait an early check cut short).
    pub(super) fn arm_exact(&mut self, kind: TimerKind, after: Duration) {
        self.arm_with(Timer::start_exact, kind, after);
    }

    fn arm_with(
        &mut self,
        start: fn(TimerKind, u64, Instant, Precision, TimerSink, Option<Renew>) -> Timer,
        kind: TimerKind,
        after: Duration,
    ) {
        self.generation += 1;
        let deadline = Instant::now() + after;
        // A guarding Backup's wait is the holder's, not a master's: it stays the instance's to judge.
        let renew = (kind == TimerKind::MasterDown && !self.guarding)
            .then(|| self.watch.clone())
            .flatten();
        self.timer = Some(start(
            kind,
            self.generation,
            deadline,
            self.cfg.timer_precision,
            self.on_timer.clone(),
            renew,
        ));
    }

    pub(super) fn disarm(&mut self) {
        self.timer = None;
    }

    /// The one place state changes happen, with their side effects (RFC 5798 §6.4).
    pub(super) fn change_state(&mut self, to: State, reason: &str) {
        let from = self.state;
        if from == to {
            return;
        }
        if from == State::Backup && self.guarding {
            // The guard belongs to the Backup state: a Master defends the VIPs, Fault and
            // Initialize have none to guard.
            self.guarding = false;
            self.effects.guard(false);
        }
        match (from, to) {
            (_, State::Master) => {
                // RFC 5798 §6.4.1/§6.4.2: advertise, take the addresses, announce them, and advertise
                // every Advertisement_Interval.
                self.effects.send_advert(self.priority);
                self.effects.add_vips();
                self.effects.announce();
                self.effects.set_role(true, self.priority);
                self.arm(TimerKind::Adver, self.cfg.adver_int);
            }
            (State::Master, _) => {
                // Leaving Master: the addresses go. A release (shutdown, fault) also tells the others
                // with priority 0 so they take over after Skew_Time instead of Master_Down_Interval.
                if to != State::Backup {
                    self.effects.send_advert(0);
                }
                self.effects.remove_vips();
                self.effects.set_role(false, self.priority);
                self.disarm();
            }
            _ => {
                self.disarm();
            }
        }
        if to == State::Backup {
            self.master_adver_int = self.effects.last_advert().map_or(self.cfg.adver_int, |a| a.adver_int);
            let mdi = self.master_down_interval();
            self.arm(TimerKind::MasterDown, mdi);
        }
        self.state = to;
        self.effects.state_changed(from, to, reason);
    }
}
