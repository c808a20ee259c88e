//! Timers as owned handles: a timer is a task that sleeps and then sends its input to the instance;
//! dropping the handle cancels it. A generation number lets the instance ignore a timer that fired
//! after it was replaced (its message already queued).

use tokio::{sync::mpsc, task::JoinHandle, time::Instant};

use super::instance::Input;

/// The instance's timers (RFC 5798 §6.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimerKind {
    /// Master: send the next advertisement.
    Adver,
    /// Backup: the master may be down; check the datapath's last-seen time.
    MasterDown,
}

/// A running timer; cancelled when dropped.
#[derive(Debug)]
pub struct Timer {
    pub kind: TimerKind,
    pub generation: u64,
    pub deadline: Instant,
    task: JoinHandle<()>,
}

impl Timer {
    pub fn start(kind: TimerKind, generation: u64, deadline: Instant, tx: mpsc::UnboundedSender<Input>) -> Self {
        let task = tokio::spawn(async move {
            tokio::time::sleep_until(deadline).await;
            // The instance may be gone (shutting down): nothing to do then.
            let _ = tx.send(Input::Timer { kind, generation });
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
