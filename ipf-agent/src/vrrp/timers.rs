//! Timers as owned handles: every instance's timer is an entry in one per-thread schedule, driven by
//! one task that sleeps until the earliest deadline and then calls the callbacks of all that are due
//! with their kind, generation and deadline; dropping the handle cancels it. A generation number lets the
//! instance ignore a timer that fired after it was replaced (its message already queued). The timers
//! know nothing of the engine's inputs: the owner of the callback turns a firing into one.
//!
//! One schedule rather than a task (and, for precise timers, a timerfd) per timer: with hundreds of
//! instances the agent wakes once per batch of due timers instead of once per timer, and a precise
//! wait re-arms one timerfd instead of creating and closing one each time. A Backup's master-down
//! timer carries the owner's check of a live master ([`Renew`]), so the schedule moves it on while
//! the master advertises and the owner hears of it only when the master may be down.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex, MutexGuard, OnceLock, Weak},
    time::Duration,
};

use nix::sys::{
    time::TimeSpec,
    timerfd::{ClockId, Expiration, TimerFd, TimerFlags, TimerSetTimeFlags},
};
use tokio::{io::unix::AsyncFd, sync::Notify, time::Instant};

/// The instance's timers (RFC 5798 §6.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimerKind {
    /// Master: send the next advertisement.
    Adver,
    /// Backup: the master may be down; check the datapath's last-seen time.
    MasterDown,
}

/// How a timer waits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Precision {
    /// tokio's timer: millisecond wheel, rounded up, so up to a millisecond late. The simulated-time
    /// tests use it (tokio's clock can be paused; a kernel timer's cannot).
    Millisecond,
    /// The schedule's timerfd; a master-down timer fires [`FINE_EARLY`] before its deadline: the
    /// owner finishes the last stretch exactly when it matters (a Backup taking over spins it, see
    /// `on_master_down_timer`), so a takeover lands within microseconds of Master_Down_Interval or
    /// Skew_Time, which matters at 10 ms adverts. An advert timer of this precision joins a batch
    /// instead (see [`ADVER_BATCH`]), so a node's Masters advertise together.
    Fine,
}

/// Advert timers of [`Precision::Fine`] gather in batches of at most this many: a Master's next
/// advert goes out at the latest point before it is due on the grid of its interval (multiples of
/// the interval from the process's epoch) that holds fewer, else up to [`ADVER_PHASES`] − 1 slots
/// [`BATCH_GAP`] apart just after it (see [`batch_point`]), else when due. So a node's Masters with one interval wake it
/// once per interval, sending their adverts with one `sendmmsg` per batch (a Master's first periodic
/// advert may go up to an interval early; more adverts than needed never hurt a receiver), and
/// renew their leases in one netlink batch (see `lease.rs`: the kernel deletes addresses that ran
/// out together in one pass, others up to a second later). The size is bounded for the receivers:
/// a peer without XDP (keepalived) queues a burst in its raw socket, whose default buffer
/// (`rmem_default`, 208 KiB) holds about 270 of these packets: one node's 255 Masters (four
/// batches) fit even if it reads none of them meanwhile.
pub const ADVER_BATCH: usize = 64;

/// How many batch points an interval's grid point gathers, [`BATCH_GAP`] apart (up to 512 adverts).
pub const ADVER_PHASES: u32 = 8;

/// The spacing of the batches of one grid point (an eighth of the interval when that is less):
/// the whole cluster spans at most 14 ms, so its renewals run out within the 20 ms that one pass of
/// the kernel's lifetime check takes together (see `lease.rs`).
pub const BATCH_GAP: Duration = Duration::from_millis(2);

/// A master-down timer may fire up to this fraction of its wait early, when the schedule wakes for
/// another timer anyway: the instance only checks the datapath then, and waits out the rest exactly
/// (`Timer::start_exact`) if the master is not heard from. With hundreds of Backups, each wake-up
/// serves every check due soon after it instead of each check waking the agent on its own. Half:
/// a Backup's wait (Master_Down_Interval less the last advert's age) is over two intervals while
/// its master lives, so every check can ride on one of the node's advert batches (one per
/// interval); an eighth left the checks their own wake-ups (5-6 a second of 7 at 1 s adverts). Of
/// the batches within reach it takes the last before its deadline (see `rides_now`). A check taken
/// early costs a look at the datapath's mmapped last-seen time and a re-arm, less than a wake-up.
pub const CHECK_EARLY_DIVISOR: u32 = 2;

/// How early a [`Precision::Fine`] master-down timer fires. A timerfd's wake-up lands 50–300 µs late
/// on an idle (or virtual) CPU leaving its sleep state; firing this much early and spinning the rest
/// only when a takeover is due keeps that off the failover time without spinning on every Backup's
/// routine check of a live master.
pub const FINE_EARLY: Duration = Duration::from_micros(300);

/// Called with the kind, generation and deadline of a timer that fired; it may outlive its instance
/// (then it must do nothing harmful). The deadline is the handle's, or a later one the schedule
/// moved it to (see [`Renew`]).
pub type TimerSink = Arc<dyn Fn(TimerKind, u64, Instant) + Send + Sync>;

/// Asked by the schedule when a master-down timer comes due (or may ride along early): given the
/// time, the deadline the wait moves to because the master was heard since, or `None` when the
/// owner must look itself. The schedule then moves the timer instead of firing it, so a Backup's
/// routine check of a live master costs a look at the datapath's mapped state and an update in
/// place, not a trip through the agent's input channel, the state machine and a new timer. It answers
/// with the rule the owner applies (see `Instance::master_holds`), so moving changes nothing but the
/// cost; a deadline less than [`RENEW_MIN`] later than the current one is no answer (the owner
/// decides then).
pub type Renew = Arc<dyn Fn(Instant) -> Option<Instant> + Send + Sync>;

/// How much later than its current deadline a [`Renew`] answer must be to move a timer: two reads
/// of the same advert differ by the microseconds between their clock reads, while a later advert
/// moves the deadline by the time between the two (an interval, 10 ms at least, for a regular one).
/// An answer too close to call leaves the check to the owner, which is never wrong, only dearer.
pub const RENEW_MIN: Duration = Duration::from_millis(1);

/// A running timer; cancelled when dropped.
pub struct Timer {
    pub kind: TimerKind,
    pub generation: u64,
    /// As armed: the schedule may move a master-down timer later ([`Renew`]); a firing carries the
    /// deadline it fired for.
    pub deadline: Instant,
    key: (Instant, u64),
    schedule: Weak<Schedule>,
}

impl std::fmt::Debug for Timer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Timer")
            .field("kind", &self.kind)
            .field("generation", &self.generation)
            .field("deadline", &self.deadline)
            .finish()
    }
}

struct Entry {
    kind: TimerKind,
    generation: u64,
    /// The owner's deadline (the entry's time may be [`FINE_EARLY`] before it).
    deadline: Instant,
    precision: Precision,
    /// An advert timer counted in [`Entries::batches`].
    batched: bool,
    /// How much earlier than its deadline it may fire along with another timer.
    early: Duration,
    fire: TimerSink,
}

/// A master-down timer with its owner's check ([`Renew`]): kept apart from the ordered entries, as
/// the schedule moves each one on every interval or two while its master lives, in place.
struct Watched {
    /// When it is due: [`entry_time`] of the entry's deadline.
    at: Instant,
    entry: Entry,
    renew: Renew,
}

#[derive(Default)]
struct Entries {
    /// By deadline, then by insertion (a sequence number keeps equal deadlines apart).
    due: BTreeMap<(Instant, u64), Entry>,
    seq: u64,
    /// The largest `early` of any entry so far: how far past `now` a wake-up looks.
    max_early: Duration,
    /// How many batched advert timers each batch point holds: [`batch_point`] asks this for every
    /// point it tries, rather than counting the map's entries at the point (up to [`ADVER_BATCH`]
    /// of them, each try).
    batches: HashMap<Instant, usize>,
    /// Master-down timers with a [`Renew`], by sequence number. A wake-up looks at each (a few
    /// hundred at most, one per Backup instance): cheaper than re-ordering the ones it moves.
    watched: HashMap<u64, Watched>,
    /// The earliest of `watched`, kept with every change to it: [`Entries::next`] runs on every
    /// timer armed and every wake-up, and a scan of all the Backups' checks each time showed.
    watched_next: Option<(Instant, Precision)>,
}

impl Entries {
    /// Takes the entry out, and out of its batch's count.
    fn take(&mut self, key: &(Instant, u64)) -> Option<Entry> {
        let entry = self.due.remove(key)?;
        if entry.batched
            && let Some(n) = self.batches.get_mut(&key.0)
        {
            *n -= 1;
            if *n == 0 {
                self.batches.remove(&key.0);
            }
        }
        Some(entry)
    }

    /// Cancels the timer a handle armed with `key`.
    fn cancel(&mut self, key: &(Instant, u64)) {
        match self.watched.remove(&key.1) {
            Some(w) if self.watched_next.is_some_and(|(at, _)| at == w.at) => self.find_watched_next(),
            Some(_) => {}
            None => {
                self.take(key);
            }
        }
    }

    /// Adds a master-down timer with its owner's check.
    fn watch(&mut self, seq: u64, w: Watched) {
        if self.watched_next.is_none_or(|(at, _)| w.at < at) {
            self.watched_next = Some((w.at, w.entry.precision));
        }
        self.watched.insert(seq, w);
    }

    /// Looks for the earliest of `watched` again, after it moved or went.
    fn find_watched_next(&mut self) {
        self.watched_next = self
            .watched
            .values()
            .min_by_key(|w| w.at)
            .map(|w| (w.at, w.entry.precision));
    }

    /// The earliest time anything is due, and how precisely to wait for it.
    fn next(&self) -> Option<(Instant, Precision)> {
        let ordered = self.due.first_key_value().map(|((at, _), e)| (*at, e.precision));
        match (ordered, self.watched_next) {
            (Some(a), Some(b)) => Some(if b.0 < a.0 { b } else { a }),
            (a, b) => a.or(b),
        }
    }
}

/// The entry's time for an owner's deadline: a fine master-down timer's [`FINE_EARLY`] before it.
fn entry_time(kind: TimerKind, precision: Precision, deadline: Instant) -> Instant {
    match (kind, precision) {
        (TimerKind::MasterDown, Precision::Fine) => deadline.checked_sub(FINE_EARLY).unwrap_or(deadline),
        _ => deadline,
    }
}

/// The thread's timers and the wake-up of the task that drives them.
#[derive(Default)]
struct Schedule {
    entries: Mutex<Entries>,
    /// An earlier deadline than the driver sleeps towards was added.
    changed: Notify,
}

impl Schedule {
    fn lock(&self) -> MutexGuard<'_, Entries> {
        // Map operations only: a panic elsewhere cannot leave the map half changed.
        self.entries.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

thread_local! {
    /// The driver task holds the only strong reference: when its runtime goes (a test's), the
    /// schedule goes with it and the next timer on this thread starts a new one.
    static SCHEDULE: std::cell::RefCell<Weak<Schedule>> = const { std::cell::RefCell::new(Weak::new()) };
}

/// This thread's schedule, its driver started on the current runtime if there is none.
fn schedule() -> Arc<Schedule> {
    SCHEDULE.with(|s| {
        if let Some(live) = s.borrow().upgrade() {
            return live;
        }
        let new = Arc::new(Schedule::default());
        tokio::spawn(drive(new.clone()));
        *s.borrow_mut() = Arc::downgrade(&new);
        new
    })
}

/// The grid advert timers are aligned to: shared by all instances of the process (and the grid of
/// their lease renewals, `lease::Renewal`).
pub fn grid_epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// How many slots of the [`BATCH_GAP`] grid before its deadline an advert timer tries when the
/// cluster of its grid point has no room for it.
const FINE_TRIES: u32 = 64;

/// Where an advert timer due at `deadline` joins a batch (see [`ADVER_BATCH`]). A grid point's
/// cluster is the point and the [`ADVER_PHASES`] − 1 slots [`BATCH_GAP`] apart after it; the timer
/// takes the first slot with room within [`now`, `deadline`] of the cluster of the latest grid
/// point at or before its deadline, else the latest slot with room of the [`BATCH_GAP`] grid in
/// the half interval before its deadline (a batch off the grid, as tight), else `deadline` itself.
/// A Master whose advert went from a slot of a cluster so goes to the same slot of the next one,
/// an interval later: never to a later slot of the cluster it just left.
fn batch_point(batches: &HashMap<Instant, usize>, deadline: Instant, period: Duration, now: Instant) -> Instant {
    // The period in whole milliseconds (advert intervals are centiseconds): the time spent between
    // arming and here must not give each timer a grid of its own.
    let period_ns = (period.as_micros() + 500) / 1000 * 1_000_000;
    let epoch = grid_epoch();
    if period_ns == 0 || deadline <= epoch {
        return deadline;
    }
    let gap = (period_ns / u128::from(ADVER_PHASES)).min(BATCH_GAP.as_nanos());
    let due = deadline.duration_since(epoch).as_nanos();
    let earliest = now.saturating_duration_since(epoch).as_nanos();
    let point = due / period_ns * period_ns;
    let cluster = (0..ADVER_PHASES)
        .map(|k| point + gap * u128::from(k))
        .filter(|&at| at <= due && at >= earliest);
    // Not nearer than half an interval after `now`: the advert that was just sent.
    let fine = (0..FINE_TRIES)
        .filter_map(|k| (due / gap * gap).checked_sub(gap * u128::from(k)))
        .filter(|&at| at >= earliest.max(due.saturating_sub(period_ns / 2)));
    cluster
        .chain(fine)
        .map(|at| epoch + Duration::from_nanos(u64::try_from(at).unwrap_or(u64::MAX)))
        .find(|at| batches.get(at).is_none_or(|&n| n < ADVER_BATCH))
        .unwrap_or(deadline)
}

/// How early a master-down wait armed at `now` for `deadline` may fire along with another timer.
fn check_allowance(deadline: Instant, now: Instant) -> Duration {
    deadline.saturating_duration_since(now) / CHECK_EARLY_DIVISOR
}

/// Where a timer goes in the schedule.
enum Place {
    At(Instant),
    /// An advert timer due at `deadline`, joining a batch (see [`batch_point`]); `now` is when it
    /// was armed.
    Batch {
        deadline: Instant,
        period: Duration,
        now: Instant,
    },
}

impl Timer {
    /// A timer for `deadline`: a fine advert timer joining a batch at or before it, a master-down timer
    /// allowed to fire up to `1 / CHECK_EARLY_DIVISOR` of its wait early, and moved rather than
    /// fired while `renew` says the master was heard.
    pub fn start(
        kind: TimerKind,
        generation: u64,
        deadline: Instant,
        precision: Precision,
        fire: TimerSink,
        renew: Option<Renew>,
    ) -> Self {
        let now = Instant::now();
        let (place, early) = match (kind, precision) {
            (TimerKind::Adver, Precision::Fine) => (
                Place::Batch {
                    deadline,
                    period: deadline.saturating_duration_since(now),
                    now,
                },
                Duration::ZERO,
            ),
            (TimerKind::Adver, Precision::Millisecond) => (Place::At(deadline), Duration::ZERO),
            (TimerKind::MasterDown, _) => (Place::At(deadline), check_allowance(deadline, now)),
        };
        Self::schedule(kind, generation, place, precision, early, fire, renew)
    }

    /// A timer that fires at `deadline` and not before (a fine master-down timer: [`FINE_EARLY`]
    /// before, as always).
    pub fn start_exact(
        kind: TimerKind,
        generation: u64,
        deadline: Instant,
        precision: Precision,
        fire: TimerSink,
        renew: Option<Renew>,
    ) -> Self {
        Self::schedule(
            kind,
            generation,
            Place::At(deadline),
            precision,
            Duration::ZERO,
            fire,
            renew,
        )
    }

    fn schedule(
        kind: TimerKind,
        generation: u64,
        place: Place,
        precision: Precision,
        early: Duration,
        fire: TimerSink,
        renew: Option<Renew>,
    ) -> Self {
        let schedule = schedule();
        let renew = renew.filter(|_| kind == TimerKind::MasterDown);
        let (key, deadline, earliest) = {
            let mut e = schedule.lock();
            let (deadline, batched) = match place {
                Place::At(deadline) => (deadline, false),
                Place::Batch { deadline, period, now } => (batch_point(&e.batches, deadline, period, now), true),
            };
            // The handle keeps the deadline, which the owner judges by.
            let at = entry_time(kind, precision, deadline);
            e.seq += 1;
            e.max_early = e.max_early.max(early);
            let key = (at, e.seq);
            if batched {
                *e.batches.entry(at).or_default() += 1;
            }
            let earliest = e.next().is_none_or(|(next, _)| at < next);
            let entry = Entry {
                kind,
                generation,
                deadline,
                precision,
                batched,
                early,
                fire,
            };
            match renew {
                Some(renew) => {
                    e.watch(key.1, Watched { at, entry, renew });
                }
                None => {
                    e.due.insert(key, entry);
                }
            }
            (key, deadline, earliest)
        };
        if earliest {
            schedule.changed.notify_one();
        }
        Timer {
            kind,
            generation,
            deadline,
            key,
            schedule: Arc::downgrade(&schedule),
        }
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        // A timer that already fired has no entry left; a removed one only makes the driver's
        // wake-up early, and it finds nothing due then.
        if let Some(s) = self.schedule.upgrade() {
            s.lock().cancel(&self.key);
        }
    }
}

/// Busy-waits until `deadline`: for the last stretch of a takeover only (at most [`FINE_EARLY`]).
pub fn spin_until(deadline: Instant) {
    while Instant::now() < deadline {
        std::hint::spin_loop();
    }
}

/// Whether a timer at `at`, allowed to fire `early`, goes with this wake-up at `now`: when it is
/// within its allowance and no advert batch wakes the schedule before it is due (`next_batch`).
/// Else a later wake-up takes it, nearer its deadline: a Backup's check rides on the last batch
/// before it rather than the first within reach, and a live master is checked less often (once per
/// Master_Down_Interval less up to an interval, rather than up to twice as often).
fn rides_now(at: Instant, early: Duration, now: Instant, next_batch: Option<Instant>) -> bool {
    at.saturating_duration_since(now) <= early && next_batch.is_none_or(|batch| batch > at)
}

/// The driver: sleeps until the earliest deadline (or until an earlier one is added), then fires
/// everything due, outside the lock (a callback may start or drop timers).
async fn drive(schedule: Arc<Schedule>) {
    let mut clock = FineClock::new();
    // Kept from one wake-up to the next: a wake-up with hundreds of timers due allocates nothing.
    let mut fired: Vec<Entry> = Vec::new();
    let mut early: Vec<(Instant, u64)> = Vec::new();
    let mut over: Vec<u64> = Vec::new();
    loop {
        let next = schedule.lock().next();
        match next {
            None => schedule.changed.notified().await,
            Some((deadline, precision)) if deadline > Instant::now() => {
                tokio::select! {
                    () = clock.sleep_until(deadline, precision) => {}
                    () = schedule.changed.notified() => {}
                }
            }
            Some(_) => {}
        }
        let now = Instant::now();
        {
            let mut guard = schedule.lock();
            let e = &mut *guard;
            while let Some((&key, _)) = e.due.first_key_value()
                && key.0 <= now
            {
                fired.extend(e.take(&key));
            }
            // Whatever may fire early goes along with the ones due (only if some were).
            let riding = !fired.is_empty() || e.watched_next.is_some_and(|(at, _)| at <= now);
            let next_batch = e.batches.keys().copied().filter(|at| *at > now).min();
            if riding {
                let horizon = (now + e.max_early, u64::MAX);
                early.extend(
                    e.due
                        .range(..horizon)
                        .filter(|((at, _), entry)| rides_now(*at, entry.early, now, next_batch))
                        .map(|(k, _)| *k),
                );
                for k in early.drain(..) {
                    fired.extend(e.take(&k));
                }
            }
            // Backups' checks: a master heard since moves the wait on, in place. A check that was
            // only riding along stays where it was if not (the owner would look again then
            // anyway); the rest fire.
            let (mut widest, mut moved) = (Duration::ZERO, false);
            for (seq, w) in &mut e.watched {
                let due = w.at <= now;
                let rides = riding && rides_now(w.at, w.entry.early, now, next_batch);
                if !(due || rides) {
                    continue;
                }
                match (w.renew)(now) {
                    Some(deadline) if deadline >= w.entry.deadline + RENEW_MIN => {
                        // The allowance its owner would give a wait armed now.
                        w.entry.deadline = deadline;
                        w.entry.early = check_allowance(deadline, now);
                        w.at = entry_time(w.entry.kind, w.entry.precision, deadline);
                        widest = widest.max(w.entry.early);
                        moved = true;
                    }
                    Some(_) if !due => {}
                    _ => over.push(*seq),
                }
            }
            e.max_early = e.max_early.max(widest);
            let checked = moved || !over.is_empty();
            for seq in over.drain(..) {
                fired.extend(e.watched.remove(&seq).map(|w| w.entry));
            }
            if checked {
                e.find_watched_next();
            }
        }
        for e in fired.drain(..) {
            (e.fire)(e.kind, e.generation, e.deadline);
        }
    }
}

/// A timerfd tokio can watch (nix's type has no `AsRawFd`).
struct Tfd(TimerFd);

impl std::os::fd::AsRawFd for Tfd {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        use std::os::fd::AsFd as _;
        self.0.as_fd().as_raw_fd()
    }
}

/// Precise waits on one timerfd, re-armed for each (tokio's timer as the fallback).
struct FineClock {
    fd: Option<AsyncFd<Tfd>>,
}

impl FineClock {
    fn new() -> Self {
        let fd = TimerFd::new(
            ClockId::CLOCK_MONOTONIC,
            TimerFlags::TFD_NONBLOCK | TimerFlags::TFD_CLOEXEC,
        )
        .map_err(std::io::Error::from)
        .and_then(|fd| crate::datapath::readable_fd(Tfd(fd)));
        match fd {
            Ok(fd) => FineClock { fd: Some(fd) },
            Err(e) => {
                tracing::warn!("timerfd: {e}; VRRP timers fall back to tokio's millisecond timer");
                FineClock { fd: None }
            }
        }
    }

    async fn sleep_until(&mut self, deadline: Instant, precision: Precision) {
        let left = deadline.saturating_duration_since(Instant::now());
        let Some(fd) = self
            .fd
            .as_ref()
            .filter(|_| precision == Precision::Fine && !left.is_zero())
        else {
            tokio::time::sleep_until(deadline).await;
            return;
        };
        // Arming resets the expiry count, so an expiry left from an earlier wait cannot end this one:
        // at most a readiness tokio cached makes one spurious wake-up, and the driver looks again.
        // `left` is not zero: a zero expiration would disarm the timer instead.
        if let Err(e) = fd.get_ref().0.set(
            Expiration::OneShot(TimeSpec::from_duration(left)),
            TimerSetTimeFlags::empty(),
        ) {
            tracing::debug!("timerfd: {e}; waiting on tokio's timer");
            tokio::time::sleep_until(deadline).await;
            return;
        }
        match fd.readable().await {
            Ok(mut ready) => ready.clear_ready(),
            Err(_) => tokio::time::sleep_until(deadline).await,
        }
    }
}

#[cfg(test)]
mod precision_tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;

    /// Fine master-down timers fire [`FINE_EARLY`] before their deadline, never earlier, and wake
    /// within [`FINE_EARLY`] of that, so a takeover is ready by its deadline (README: "a timerfd that
    /// fires 300 µs before a master-down deadline"; the wake-up's latency is 50-300 µs). The
    /// millisecond timer they replace rounds up to the next tick of tokio's wheel: with deadlines
    /// spread over a millisecond its median lateness here was 1.1 ms (0.3 ms at best), the fine
    /// timer's 0.05-0.2 ms (2 cores, load 5-11). The median, not the worst: on a loaded machine (CI: 2 cores, other tests in
    /// parallel) any single wake-up may wait for a CPU. Real time; the handle keeps the deadline.
    #[tokio::test]
    async fn fine_timers_fire_on_time() {
        const SAMPLES: u64 = 41;
        let mut late = Vec::new();
        for i in 0..SAMPLES {
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
            let sink: TimerSink = Arc::new(move |_, g, _| {
                let _ = tx.send((g, Instant::now()));
            });
            // Samples 20 ms apart, over most of a second: one stall of a busy machine reaches few
            // of them. Offsets 41 µs apart: spread over more than a millisecond (tokio's tick).
            tokio::time::sleep(Duration::from_millis(20)).await;
            let deadline = Instant::now() + Duration::from_micros(2_300 + 41 * i);
            let t = Timer::start(TimerKind::MasterDown, i, deadline, Precision::Fine, sink, None);
            assert_eq!(t.deadline, deadline);
            let (g, at) = rx.recv().await.expect("fired");
            assert_eq!(g, i);
            let due = deadline - FINE_EARLY;
            assert!(at >= due, "fired {:?} early", due - at);
            late.push(at.saturating_duration_since(due));
        }
        late.sort();
        let median = late[late.len() / 2];
        eprintln!(
            "fine master-down timers: median lateness {median:?}, worst {:?}",
            late[late.len() - 1]
        );
        assert!(
            median <= FINE_EARLY,
            "median lateness {median:?}: not woken by the deadline (sorted: {late:?})"
        );
    }

    /// A dropped timer never fires; the others still do, in deadline order.
    #[tokio::test]
    async fn dropped_timers_do_not_fire() {
        let fired = Arc::new(Mutex::new(Vec::new()));
        let f = fired.clone();
        let sink: TimerSink = Arc::new(move |_, g, _| f.lock().expect("lock").push(g));
        let now = Instant::now();
        let a = Timer::start(
            TimerKind::MasterDown,
            1,
            now + Duration::from_millis(30),
            Precision::Fine,
            sink.clone(),
            None,
        );
        let b = Timer::start(
            TimerKind::MasterDown,
            2,
            now + Duration::from_millis(10),
            Precision::Fine,
            sink.clone(),
            None,
        );
        let c = Timer::start(
            TimerKind::MasterDown,
            3,
            now + Duration::from_millis(20),
            Precision::Fine,
            sink,
            None,
        );
        drop(c);
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert_eq!(*fired.lock().expect("lock"), vec![2, 1]);
        drop((a, b));
    }

    /// A master-down timer whose master was heard since is moved, not fired: its owner hears it
    /// once, with the deadline of the last advert (the master is heard every 10 ms until 40 ms, and
    /// a wait runs 20 ms past its last advert). Its twin, dropped after the schedule moved it, never
    /// fires.
    #[tokio::test]
    async fn a_renewed_check_moves_the_timer_instead_of_firing() {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let sink: TimerSink = Arc::new(move |_, g, deadline| {
            let _ = tx.send((g, deadline));
        });
        let ms = Duration::from_millis;
        let t0 = Instant::now();
        // Counts its checks; tells `moved` once it has moved its timer.
        let quiet_at_40 = |checks: Arc<AtomicU64>, moved: Arc<Notify>| -> Renew {
            Arc::new(move |now: Instant| {
                checks.fetch_add(1, Ordering::Relaxed);
                let last = now.min(t0 + ms(40)).duration_since(t0).as_millis() / 10 * 10;
                let deadline = t0 + ms(u64::try_from(last).unwrap_or(u64::MAX)) + ms(20);
                if deadline > t0 + ms(20) {
                    moved.notify_one();
                }
                Some(deadline)
            })
        };
        let (kept_checks, dropped_moved) = (Arc::new(AtomicU64::new(0)), Arc::new(Notify::new()));
        let _kept = Timer::start(
            TimerKind::MasterDown,
            1,
            t0 + ms(20),
            Precision::Fine,
            sink.clone(),
            Some(quiet_at_40(kept_checks.clone(), Arc::new(Notify::new()))),
        );
        let dropped = Timer::start(
            TimerKind::MasterDown,
            2,
            t0 + ms(20),
            Precision::Fine,
            sink,
            Some(quiet_at_40(Arc::new(AtomicU64::new(0)), dropped_moved.clone())),
        );
        tokio::time::timeout(Duration::from_secs(2), dropped_moved.notified())
            .await
            .expect("the schedule moved the timer");
        drop(dropped);
        let first = tokio::time::timeout(Duration::from_secs(2), rx.recv()).await;
        assert_eq!(first.expect("a firing within 2 s"), Some((1, t0 + ms(60))));
        // The dropped twin would have fired with it, at 60 ms. A closed channel says its entry,
        // and the sink it held, are gone.
        let more = tokio::time::timeout(ms(200), rx.recv()).await;
        assert!(!matches!(more, Ok(Some(_))), "the dropped timer fired: {more:?}");
        assert!(
            kept_checks.load(Ordering::Relaxed) >= 2,
            "the schedule checked before moving"
        );
    }

    /// A master-down timer due soon after another fires with it; one due later than its allowance
    /// does not, and an exact one never fires early.
    #[tokio::test(start_paused = true)]
    async fn checks_due_soon_fire_with_a_due_timer() {
        let fired = Arc::new(Mutex::new(Vec::new()));
        let f = fired.clone();
        let sink: TimerSink = Arc::new(move |_, g, _| f.lock().expect("lock").push((g, Instant::now())));
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let _due = Timer::start(
            TimerKind::Adver,
            1,
            t0 + ms(1000),
            Precision::Millisecond,
            sink.clone(),
            None,
        );
        // A check may fire 1 / CHECK_EARLY_DIVISOR of its wait early. `soon` is due just after the
        // wake-up at 1000 ms (within its allowance): fires at 1000.
        let allowed = |due: u64| due / u64::from(CHECK_EARLY_DIVISOR);
        let soon = 1000 + allowed(1000) / 2;
        assert!(soon - allowed(soon) <= 1000);
        let _soon = Timer::start(
            TimerKind::MasterDown,
            2,
            t0 + ms(soon),
            Precision::Millisecond,
            sink.clone(),
            None,
        );
        // `later` is due further out than its allowance reaches back: neither the wake-up at 1000
        // nor the one at 1010 takes it.
        let later = 1010 * u64::from(CHECK_EARLY_DIVISOR) + 100;
        assert!(later - allowed(later) > 1010);
        let _later = Timer::start(
            TimerKind::MasterDown,
            3,
            t0 + ms(later),
            Precision::Millisecond,
            sink.clone(),
            None,
        );
        let _exact = Timer::start_exact(
            TimerKind::MasterDown,
            4,
            t0 + ms(1010),
            Precision::Millisecond,
            sink,
            None,
        );
        tokio::time::sleep(ms(later + 100)).await;
        let got: Vec<(u64, u64)> = fired
            .lock()
            .expect("lock")
            .iter()
            .map(|(g, at)| (*g, at.duration_since(t0).as_millis() as u64))
            .collect();
        assert!(got.contains(&(1, 1000)) && got.contains(&(2, 1000)), "{got:?}");
        assert!(got.contains(&(4, 1010)), "{got:?}");
        assert!(got.contains(&(3, later)), "{got:?}");
        assert_eq!(got.len(), 4);
    }

    /// A check within its allowance rides on this wake-up unless an advert batch comes before it is
    /// due, which it then rides on instead.
    #[test]
    fn checks_ride_on_the_last_wake_up_before_them() {
        let now = Instant::now();
        let ms = Duration::from_millis;
        let allowance = ms(500);
        // No batch ahead: within the allowance it goes now, beyond it not.
        assert!(rides_now(now + ms(400), allowance, now, None));
        assert!(!rides_now(now + ms(600), allowance, now, None));
        // A batch before it is due takes it; a batch after it leaves it to this wake-up.
        assert!(!rides_now(now + ms(400), allowance, now, Some(now + ms(200))));
        assert!(rides_now(now + ms(400), allowance, now, Some(now + ms(450))));
        // Already due: goes whatever comes next.
        assert!(rides_now(now, allowance, now, Some(now + ms(1))));
    }

    /// The earliest check is known without a scan, and follows every change: one added earlier,
    /// the earliest cancelled, a look after checks moved.
    #[test]
    fn the_earliest_check_follows_every_change() {
        let now = Instant::now();
        let ms = Duration::from_millis;
        let sink: TimerSink = Arc::new(|_, _, _| {});
        let renew: Renew = Arc::new(|_| None);
        let watched = |at: Instant| Watched {
            at,
            entry: Entry {
                kind: TimerKind::MasterDown,
                generation: 0,
                deadline: at,
                precision: Precision::Millisecond,
                batched: false,
                early: Duration::ZERO,
                fire: sink.clone(),
            },
            renew: renew.clone(),
        };
        let mut e = Entries::default();
        assert_eq!(e.next(), None);
        e.watch(1, watched(now + ms(30)));
        e.watch(2, watched(now + ms(10)));
        e.watch(3, watched(now + ms(20)));
        assert_eq!(e.next().map(|n| n.0), Some(now + ms(10)));
        // An ordered entry earlier than every check comes first.
        e.due.insert((now + ms(5), 4), watched(now + ms(5)).entry);
        assert_eq!(e.next().map(|n| n.0), Some(now + ms(5)));
        e.cancel(&(now + ms(5), 4));
        // Cancelling the earliest check finds the next; cancelling another changes nothing.
        e.cancel(&(now + ms(10), 2));
        assert_eq!(e.next().map(|n| n.0), Some(now + ms(20)));
        e.cancel(&(now + ms(30), 1));
        assert_eq!(e.next().map(|n| n.0), Some(now + ms(20)));
        // Moved in place (as the driver does), then looked for again.
        if let Some(w) = e.watched.get_mut(&3) {
            w.at = now + ms(50);
        }
        e.find_watched_next();
        assert_eq!(e.next().map(|n| n.0), Some(now + ms(50)));
        e.cancel(&(now + ms(20), 3));
        assert_eq!(e.next(), None);
    }

    /// Fine advert timers armed at different moments within an interval share one wake-up (or
    /// two, when the interval's grid point falls among them): none later than asked, none more
    /// than an interval early.
    #[tokio::test]
    async fn advert_timers_armed_within_an_interval_share_a_wake_up() {
        let period = Duration::from_millis(80);
        let times = Arc::new(Mutex::new(Vec::new()));
        let count = Arc::new(AtomicU64::new(0));
        let mut timers = Vec::new();
        for i in 0..24u64 {
            let asked = Instant::now() + period;
            let (t, c) = (times.clone(), count.clone());
            let sink: TimerSink = Arc::new(move |_, _, _| {
                c.fetch_add(1, Ordering::SeqCst);
                t.lock().expect("lock").push((asked, Instant::now()));
            });
            let timer = Timer::start(TimerKind::Adver, i, asked, Precision::Fine, sink, None);
            assert!(timer.deadline <= asked && timer.deadline + period >= asked);
            timers.push(timer);
            tokio::time::sleep(Duration::from_millis(3)).await;
        }
        // All fire within an interval of the last one armed (bounded for a loaded machine).
        let deadline = Instant::now() + period * 25;
        while count.load(Ordering::SeqCst) < 24 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(
            count.load(Ordering::SeqCst),
            24,
            "advert timers fired by {:?}",
            period * 25
        );
        let mut deadlines: Vec<Instant> = timers.iter().map(|t| t.deadline).collect();
        deadlines.sort_unstable();
        deadlines.dedup();
        // The asked deadlines span about 72 ms (more on a loaded machine): one grid point of the
        // 80 ms grid falls among them at most, unless the machine stretched the span past 80 ms.
        let asked: Vec<Instant> = times.lock().expect("lock").iter().map(|(a, _)| *a).collect();
        let span = asked
            .iter()
            .max()
            .expect("fired")
            .duration_since(*asked.iter().min().expect("fired"));
        let most = (span.as_nanos() / period.as_nanos()) as usize + 2;
        assert!(
            deadlines.len() <= most,
            "{} distinct wake-ups for 24 adverts asked over {span:?} (at most {most})",
            deadlines.len()
        );
        for (asked, at) in times.lock().expect("lock").iter() {
            assert!(*at + period >= *asked, "more than an interval early");
        }
    }

    /// No batch holds more than [`ADVER_BATCH`] adverts: the rest go in batches [`BATCH_GAP`] apart
    /// beside the first, still no later than asked, all within 14 ms.
    #[tokio::test(start_paused = true)]
    async fn advert_batches_hold_at_most_adver_batch() {
        let period = Duration::from_millis(80);
        let sink: TimerSink = Arc::new(|_, _, _| {});
        let asked = Instant::now() + period;
        let timers: Vec<Timer> = (0..3 * ADVER_BATCH as u64)
            .map(|i| Timer::start(TimerKind::Adver, i, asked, Precision::Fine, sink.clone(), None))
            .collect();
        let mut per_point: BTreeMap<Instant, usize> = BTreeMap::new();
        for t in &timers {
            assert!(t.deadline <= asked && t.deadline + period >= asked);
            *per_point.entry(t.deadline).or_default() += 1;
        }
        assert!(
            per_point.values().all(|n| *n <= ADVER_BATCH),
            "batches {:?}",
            per_point.values().collect::<Vec<_>>()
        );
        assert!(
            per_point.len() >= 3,
            "{} batches for {} adverts",
            per_point.len(),
            timers.len()
        );
        let (first, last) = (per_point.keys().next(), per_point.keys().last());
        let span = last.zip(first).map(|(l, f)| *l - *f);
        assert!(
            span.is_some_and(|s| s <= BATCH_GAP * (ADVER_PHASES - 1)),
            "the batches span {span:?}"
        );
    }

    /// Masters in a cluster of several batches, each re-armed for an interval after its advert went
    /// out (as the instance does), send one advert an interval: a Master sent from a later slot of a
    /// cluster re-arms into the next cluster, never back into a later slot of the one it just left
    /// (a second advert a few milliseconds after the first).
    #[tokio::test(start_paused = true)]
    async fn a_cluster_of_batches_sends_one_advert_an_interval() {
        let period = Duration::from_secs(1);
        let span = BATCH_GAP * (ADVER_PHASES - 1);
        let sink: TimerSink = Arc::new(|_, _, _| {});
        // Armed an interval before a moment just past a cluster of the grid, so all its slots are
        // open.
        let epoch = grid_epoch();
        let points = (Instant::now() - epoch).as_nanos() / period.as_nanos() + 2;
        let target = epoch + period * u32::try_from(points).expect("points") + span + BATCH_GAP;
        tokio::time::advance(target - period - Instant::now()).await;
        let asked = Instant::now() + period;
        let mut timers: Vec<Timer> = (0..4 * ADVER_BATCH as u64 - 20)
            .map(|i| Timer::start(TimerKind::Adver, i, asked, Precision::Fine, sink.clone(), None))
            .collect();
        for round in 0..4 {
            timers.sort_by_key(|t| t.deadline);
            let clusters: std::collections::BTreeSet<Instant> = timers.iter().map(|t| t.deadline).collect();
            let (first, last) = (clusters.first().copied(), clusters.last().copied());
            assert!(
                first.zip(last).is_some_and(|(f, l)| l - f <= span),
                "round {round}: adverts at {} moments over {:?}",
                clusters.len(),
                first.zip(last).map(|(f, l)| l - f)
            );
            let mut next = Vec::new();
            for t in timers.drain(..) {
                let sent = t.deadline;
                tokio::time::advance(sent.saturating_duration_since(Instant::now())).await;
                let generation = t.generation;
                drop(t);
                // As the instance arms it: an interval from now (which the paused clock may have
                // moved a little past the advert).
                let asked = Instant::now() + period;
                let n = Timer::start(TimerKind::Adver, generation, asked, Precision::Fine, sink.clone(), None);
                assert_eq!(
                    n.deadline - sent,
                    period,
                    "round {round}: the next advert of one sent from a slot of the cluster"
                );
                next.push(n);
            }
            timers = next;
        }
    }
}
