//! Timers as owned handles: a timer is a task that sleeps and then calls its callback with its kind
//! and generation; dropping the handle cancels it. A generation number lets the instance ignore a
//! timer that fired after it was replaced (its message already queued). The timers know nothing of
//! the engine's inputs: the owner of the callback turns a firing into one.

use std::time::Duration;

use nix::sys::{
    time::TimeSpec,
    timerfd::{ClockId, Expiration, TimerFd, TimerFlags, TimerSetTimeFlags},
};
use std::sync::Arc;

use tokio::{task::JoinHandle, time::Instant};

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
    /// tokio's timer alone: millisecond wheel, rounded up, so up to a millisecond late. The
    /// simulated-time tests use it (tokio's clock can be paused; a kernel timer's cannot).
    Millisecond,
    /// tokio's timer up to the last two milliseconds, then a timerfd that fires [`FINE_EARLY`]
    /// before the deadline: the owner finishes the last stretch exactly when it matters (a Backup
    /// taking over spins it, see `on_master_down_timer`), so a takeover lands within microseconds of
    /// Master_Down_Interval or Skew_Time, which matters at 10 ms adverts.
    Fine,
}

/// How early a [`Precision::Fine`] timer fires. A timerfd's wake-up lands 50–300 µs late on an idle
/// (or virtual) CPU leaving its sleep state; firing this much early and spinning the rest only when
/// a takeover is due keeps that off the failover time without spinning on every Backup's routine
/// check of a live master.
pub const FINE_EARLY: Duration = Duration::from_micros(300);

/// Called with the kind and generation of a timer that fired; it may outlive its instance (then it
/// must do nothing harmful).
pub type TimerSink = Arc<dyn Fn(TimerKind, u64) + Send + Sync>;

/// A running timer; cancelled when dropped.
#[derive(Debug)]
pub struct Timer {
    pub kind: TimerKind,
    pub generation: u64,
    pub deadline: Instant,
    task: JoinHandle<()>,
}

impl Timer {
    pub fn start(kind: TimerKind, generation: u64, deadline: Instant, precision: Precision, fire: TimerSink) -> Self {
        let task = tokio::spawn(async move {
            match precision {
                Precision::Millisecond => tokio::time::sleep_until(deadline).await,
                Precision::Fine => sleep_until_precisely(deadline.checked_sub(FINE_EARLY).unwrap_or(deadline)).await,
            }
            fire(kind, generation);
        });
        Timer {
            kind,
            generation,
            deadline,
            task,
        }
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Busy-waits until `deadline`: for the last stretch of a takeover only (at most [`FINE_EARLY`]).
pub fn spin_until(deadline: Instant) {
    while Instant::now() < deadline {
        std::hint::spin_loop();
    }
}

/// Sleeps until `deadline` with the kernel timer's precision: tokio's timer for all but the last two
/// milliseconds (it rounds up to the next millisecond tick, so one left it often overshooting), a
/// one-shot timerfd for the rest.
async fn sleep_until_precisely(deadline: Instant) {
    if let Some(early) = deadline.checked_sub(Duration::from_millis(2)) {
        tokio::time::sleep_until(early).await;
    }
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return;
    }
    if let Err(e) = timerfd_sleep(left).await {
        tracing::debug!("timerfd: {e}; falling back to tokio's timer");
        tokio::time::sleep_until(deadline).await;
    }
}

async fn timerfd_sleep(d: Duration) -> std::io::Result<()> {
    let fd = TimerFd::new(
        ClockId::CLOCK_MONOTONIC,
        TimerFlags::TFD_NONBLOCK | TimerFlags::TFD_CLOEXEC,
    )?;
    // `d` is not zero: a zero expiration would disarm the timer instead.
    fd.set(
        Expiration::OneShot(TimeSpec::from_duration(d)),
        TimerSetTimeFlags::empty(),
    )?;
    let fd = crate::datapath::readable_fd(std::os::fd::OwnedFd::from(fd))?;
    let mut ready = fd.readable().await?;
    ready.clear_ready();
    Ok(())
}

#[cfg(test)]
mod precision_tests {
    use super::*;

    /// The fine timer fires after its deadline, and well within a millisecond of it (tokio's alone
    /// is up to a millisecond late). Real time: a loaded machine may be later, so the bound is loose.
    #[tokio::test]
    async fn fine_timers_fire_on_time() {
        let mut worst = Duration::ZERO;
        for i in 0..20u64 {
            let deadline = Instant::now() + Duration::from_micros(2_300 + 97 * i);
            sleep_until_precisely(deadline).await;
            let late = Instant::now().saturating_duration_since(deadline);
            assert!(Instant::now() >= deadline);
            worst = worst.max(late);
        }
        assert!(worst < Duration::from_millis(5), "worst lateness {worst:?}");
    }
}
