//! One handler per input, each citing the RFC 5798 section it implements (RFC 3768 §6.4 is the same
//! for VRRPv2 but for Skew_Time, see [`Instance::skew_time`]).

use std::{net::IpAddr, time::Duration};

use tokio::time::Instant;

use super::{
    instance::{Effects, Input, Instance, State},
    timers::{FINE_EARLY, TimerKind, spin_until},
};

impl<E: Effects> Instance<E> {
    /// Feeds one input to the state machine.
    pub fn handle(&mut self, input: Input) {
        match input {
            Input::Startup => self.on_startup(),
            Input::Shutdown => self.on_shutdown(),
            Input::Advert {
                src,
                priority,
                adver_int,
                age,
            } => self.on_advert(src, priority, adver_int, age),
            Input::Timer {
                kind,
                generation,
                deadline,
            } => {
                // A timer replaced after it fired: its message is stale.
                if self
                    .timer
                    .as_ref()
                    .is_some_and(|t| t.generation == generation && t.kind == kind)
                {
                    self.timer = None;
                    match kind {
                        TimerKind::Adver => self.on_adver_timer(),
                        TimerKind::MasterDown => self.on_master_down_timer(deadline),
                    }
                }
            }
            Input::Fault(faulty) => self.on_fault(faulty),
            Input::Priority(p) => self.on_priority(p),
            Input::Contested => self.on_contested(),
            Input::ConflictOver => {
                if self.state == State::Master {
                    self.effects.reannounce();
                }
            }
            Input::Yield => self.on_yield(),
            Input::HolderSeen => {
                // The holder is alive across the broken VRRP path: its answer restarts our wait
                // as an advert would.
                if self.state == State::Backup && self.guarding {
                    let wait = self.backup_wait();
                    self.arm(TimerKind::MasterDown, wait);
                }
            }
        }
    }

    /// §6.4.1: the address owner (priority 255) becomes Master at once; anyone else waits as Backup
    /// for Master_Down_Interval.
    fn on_startup(&mut self) {
        if self.state != State::Initialize {
            return;
        }
        self.started_at = tokio::time::Instant::now();
        // preempt_delay counts from here.
        self.refresh_watch();
        if self.faulty {
            self.change_state(State::Fault, "startup with a failed check");
        } else if self.priority == 255 {
            self.change_state(State::Master, "startup as address owner");
        } else {
            self.change_state(State::Backup, "startup");
        }
    }

    /// §6.4.2 / §6.4.3 Shutdown: a Master sends priority 0 and drops its addresses.
    fn on_shutdown(&mut self) {
        self.change_state(State::Initialize, "shutdown");
    }

    /// An advert the datapath reports as news (§6.4.2 Backup, §6.4.3 Master).
    fn on_advert(&mut self, src: IpAddr, priority: u8, adver_int: Duration, age: Duration) {
        match self.state {
            State::Backup => {
                if self.guarding {
                    // The VRRP path is back: the election, not the yield rule, decides from now on.
                    self.guarding = false;
                    self.effects.guard(false);
                }
                if priority == 0 {
                    // §6.4.2: the master is releasing; take over after Skew_Time.
                    let skew = self.skew_time();
                    self.arm(TimerKind::MasterDown, skew.saturating_sub(age));
                } else if !self.would_preempt(priority) {
                    // §6.4.2: learn the master's interval and restart the wait. Later adverts of the same
                    // master do not reach us; the timer consults the datapath when it fires.
                    self.master_adver_int = adver_int;
                    let mdi = self.master_down_interval();
                    self.arm(TimerKind::MasterDown, mdi.saturating_sub(age));
                }
                // Otherwise (lower priority, preemption allowed) the advert is discarded: the timer
                // runs out and we take over (§6.4.2, last clause).
            }
            State::Master => {
                if priority == 0 {
                    // §6.4.3: another router released: assert ourselves at once.
                    self.effects.send_advert(self.priority);
                    let int = self.cfg.adver_int;
                    self.arm(TimerKind::Adver, int);
                } else if priority > self.priority || (priority == self.priority && src > self.cfg.primary_addr) {
                    // §6.4.3: a better Master exists.
                    self.master_adver_int = adver_int;
                    self.change_state(State::Backup, "higher priority advert received");
                } else {
                    // §6.4.3 discards a lower-priority advert; its sender is a second Master (a split
                    // brain healing, or a peer that missed our adverts). As keepalived does, answer at
                    // once so it yields now rather than at our next advert, and re-announce: clients
                    // may hold its MAC for our VIPs. The datapath reports such a sender once (new
                    // master or after silence), so this does not repeat per advert.
                    self.effects.send_advert(self.priority);
                    self.effects.reannounce();
                    let int = self.cfg.adver_int;
                    self.arm(TimerKind::Adver, int);
                }
            }
            State::Initialize | State::Fault => {}
        }
    }

    /// §6.4.3: the Master advertises every Advertisement_Interval.
    fn on_adver_timer(&mut self) {
        if self.state == State::Master {
            self.effects.send_advert(self.priority);
            let int = self.cfg.adver_int;
            self.arm(TimerKind::Adver, int);
        }
    }

    /// §6.4.2 Master_Down_Timer fired. The datapath's last-seen time says whether the master really
    /// went quiet, so steady-state adverts never wake us; while the master advertises, the schedule
    /// moves the timer on by the same rule ([`super::timers::Renew`]) and we are not asked at all.
    /// A fine timer fires up to [`FINE_EARLY`] before its deadline: the master is judged as of the
    /// deadline, and a takeover spins the rest, then looks once more for an advert that came in
    /// meanwhile. A check may also fire well before it along with other timers (see
    /// `timers::CHECK_EARLY_DIVISOR`): then it only looks at the master, as of the deadline, and
    /// otherwise waits out the rest exactly.
    fn on_master_down_timer(&mut self, deadline: Instant) {
        if self.state != State::Backup {
            return;
        }
        let early = deadline.saturating_duration_since(Instant::now());
        if self.master_holds(early) {
            return;
        }
        if early > FINE_EARLY {
            // Fired early along with another timer, and nothing holds us back as of the deadline:
            // wait out the rest exactly (an advert may still come).
            self.arm_exact(TimerKind::MasterDown, early);
            return;
        }
        if !early.is_zero() {
            spin_until(deadline);
            if self.master_holds(Duration::ZERO) {
                return;
            }
        }
        self.change_state(State::Master, "master down");
    }

    /// Whether the master (as of `ahead` from now) still holds us back as Backup; if so the timer is
    /// re-armed for when it may no longer.
    fn master_holds(&mut self, ahead: Duration) -> bool {
        let Some(last) = self.effects.last_advert() else {
            return false;
        };
        self.master_adver_int = last.adver_int;
        match self.hold_rule().holds(&last, Instant::now()) {
            Some(left) if left > ahead => {
                self.arm(TimerKind::MasterDown, left);
                true
            }
            _ => false,
        }
    }

    /// keepalived's Fault: leave the election (releasing the VIPs with priority 0 when Master) while
    /// unhealthy; come back as Backup (or Master as address owner) when healthy.
    fn on_fault(&mut self, faulty: bool) {
        self.faulty = faulty;
        match (faulty, self.state) {
            (true, State::Backup | State::Master) => self.change_state(State::Fault, "health check failed"),
            (false, State::Fault) => {
                if self.priority == 255 {
                    self.change_state(State::Master, "health restored, address owner");
                } else {
                    self.change_state(State::Backup, "health restored");
                }
            }
            _ => {}
        }
    }

    /// A split brain is under way. §6.4.3 has a Master advertise every Advertisement_Interval; an
    /// extra advert is harmless to every receiver (each one restarts a Backup's wait, as the regular
    /// ones do) and lets the other Master, once the path between us returns, yield within the
    /// network's delay. The regular advert timer keeps its phase.
    fn on_contested(&mut self) {
        if self.state == State::Master {
            self.effects.send_advert(self.priority);
        }
    }

    /// Split-brain policy `yield` (decided by the conflict watch, the same rule on both sides): a
    /// Master with no VRRP path to the other holder of its VIPs steps down and guards, so that one
    /// node serves the VIPs. RFC 5798 has no such transition: it assumes the VRRP path; this is the
    /// Master → Backup of §6.4.3 with the holder's ARP answers standing in for its adverts, which
    /// keeps the Backup from taking the VIPs back while the holder lives.
    fn on_yield(&mut self) {
        if self.state != State::Master {
            return;
        }
        self.change_state(State::Backup, "split brain: yielded to the other holder (policy yield)");
        self.guarding = true;
        self.effects.guard(true);
        let wait = self.backup_wait();
        self.arm(TimerKind::MasterDown, wait);
    }

    /// A new effective priority: a Master advertises it from the next advert on.
    fn on_priority(&mut self, priority: u8) {
        self.set_priority(priority);
        if self.state == State::Master {
            self.effects.set_role(true, priority);
        }
    }

    /// Whether an advert of `priority` from the current master would be overridden by us (§6.4.2:
    /// Preempt_Mode true and the advert's priority lower than ours).
    fn would_preempt(&self, priority: u8) -> bool {
        self.hold_rule().would_preempt(priority)
    }
}
