//! Who holds a VIP (or each of several VIP groups), sampled at a fixed cadence on a thread of its
//! own for as long as the watch lives, so that a wait for a new owner also sees what happened on the
//! way: two nodes holding a VIP at once, or an owner that does not stay put once reached.

use std::{
    process::Command,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use ipf_testbed::Netns;

/// Time between the starts of two samples (a sample runs `ip` once per node, a few ms each).
pub const CADENCE: Duration = Duration::from_millis(20);

/// The holders of each VIP group at one instant (one `ip` call per node, in a row).
#[derive(Clone, Debug)]
pub struct Sample {
    pub at: Instant,
    /// Per group, the nodes holding any of its addresses.
    pub holders: Vec<Vec<String>>,
}

struct Probe {
    label: String,
    ns: String,
    dev: String,
}

impl Probe {
    /// For each group, whether any of its addresses is on the device and the device can carry it:
    /// up and not protodown (FRR's Backup keeps the VIP on a protodown macvlan).
    fn holds(&self, groups: &[Vec<String>]) -> Vec<bool> {
        let out = Command::new("ip")
            .args(["-n", &self.ns, "-j", "-d", "addr", "show", "dev", &self.dev])
            .output()
            .map(|o| o.stdout)
            .unwrap_or_default();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap_or_default();
        let link = &v[0];
        let up = link["proto_down"] != true && link["operstate"] != "DOWN";
        let addrs: Vec<&str> = link["addr_info"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|x| x["local"].as_str())
            .collect();
        groups
            .iter()
            .map(|g| up && g.iter().any(|vip| addrs.contains(&vip.as_str())))
            .collect()
    }
}

/// What a wait for an owner tolerates and how long it watches afterwards.
#[derive(Clone, Copy, Debug)]
pub struct Step {
    /// Deadline for the owner to be the only holder.
    pub timeout: Duration,
    /// How long the owner must then hold the VIP alone, sample after sample.
    pub settle: Duration,
    /// Longest run of samples with two holders tolerated since the previous wait: the instants of a
    /// preemption (the old master drops the VIP when the new one's advert arrives) or, after a
    /// SIGKILL, what the VIP lease documents. A node that keeps the VIP after losing the election
    /// keeps it for a lease (≥ 1 s) or for good.
    pub overlap: Duration,
}

impl Step {
    /// A change of owner by VRRP at `interval` adverts: the owner keeps the VIP for three intervals
    /// (it advertises, and no one it beat comes back), and a handover of 200 ms is tolerated (a few
    /// ms in practice: the time for the new master's advert to be handled by the old one).
    pub fn at(interval: Duration) -> Self {
        Step {
            timeout: Duration::from_secs(20),
            settle: (interval * 3).max(Duration::from_millis(300)),
            overlap: Duration::from_millis(200),
        }
    }

    /// A node that just started as Backup under the owner: the settle window outlasts its
    /// Master_Down_Interval (3 × interval + Skew_Time < 4 × interval, counted from its start,
    /// which is before the wait), so a Backup that does not hear the owner takes the VIP within it.
    pub fn joining(interval: Duration) -> Self {
        Step {
            settle: interval * 4 + Duration::from_millis(100),
            ..Step::at(interval)
        }
    }

    /// After an ipf master at `interval` is SIGKILLed: its VIP lease ends before the takeover when
    /// 3 × interval > 1.25 s; below that (a whole-second lease) the VIP may stay on the dead node up
    /// to 1.25 s − 3 × interval after the takeover (ipf-agent/src/lease.rs). One sampling period on
    /// top: the two ends of an overlap are known to within a sample.
    pub fn after_kill(interval: Duration) -> Self {
        let documented = Duration::from_millis(1250).saturating_sub(interval * 3);
        Step {
            overlap: (documented + CADENCE * 2).max(Step::at(interval).overlap),
            ..Step::at(interval)
        }
    }
}

/// The sampler; dropping it stops the thread.
pub struct Holders {
    vips: String,
    groups: usize,
    samples: Arc<Mutex<Vec<Sample>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    /// Samples before this index were checked by an earlier wait.
    checked: Mutex<usize>,
}

impl Holders {
    /// Starts sampling which of `nodes` (label, namespace, device) hold `vip`.
    pub fn start(vip: &str, nodes: &[(&str, &Netns, &str)]) -> Self {
        Self::start_groups(&[&[vip]], nodes)
    }

    /// Starts sampling which of `nodes` hold each group of VIPs (a node adding or removing a
    /// group's addresses one by one holds it while it has any).
    pub fn start_groups(groups: &[&[&str]], nodes: &[(&str, &Netns, &str)]) -> Self {
        let groups: Vec<Vec<String>> = groups
            .iter()
            .map(|g| g.iter().map(|v| (*v).to_owned()).collect())
            .collect();
        let vips = format!("{groups:?}");
        let groups_len = groups.len();
        let probes: Vec<Probe> = nodes
            .iter()
            .map(|(label, ns, dev)| Probe {
                label: (*label).to_owned(),
                ns: ns.name.clone(),
                dev: (*dev).to_owned(),
            })
            .collect();
        let samples = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (samples, stop) = (samples.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut next = Instant::now();
                while !stop.load(Ordering::Relaxed) {
                    let at = Instant::now();
                    let held: Vec<Vec<bool>> = probes.iter().map(|p| p.holds(&groups)).collect();
                    let holders = (0..groups.len())
                        .map(|g| {
                            probes
                                .iter()
                                .zip(&held)
                                .filter(|(_, h)| h[g])
                                .map(|(p, _)| p.label.clone())
                                .collect()
                        })
                        .collect();
                    lock(&samples).push(Sample { at, holders });
                    // A fixed cadence, not a fixed pause: a slow sample shortens the next wait.
                    next += CADENCE;
                    let now = Instant::now();
                    if next > now {
                        std::thread::sleep(next - now);
                    } else {
                        next = now;
                    }
                }
            })
        };
        Holders {
            vips,
            groups: groups_len,
            samples,
            stop,
            thread: Some(thread),
            checked: Mutex::new(0),
        }
    }

    /// The newest sample taken after `after`.
    fn sample_after(&self, after: Instant) -> Option<Sample> {
        lock(&self.samples).last().filter(|s| s.at > after).cloned()
    }

    /// Waits until `who` is the only holder of every group, then for `step.settle` during which
    /// every sample must show `who` alone; panics too if, since the previous wait, two nodes held a
    /// group at once for longer than `step.overlap`. Returns the samples this wait checked.
    pub fn wait_owner(&self, who: &str, step: Step) -> Vec<Sample> {
        self.wait_owners(&vec![who; self.groups], step)
    }

    /// [`Holders::wait_owner`] with an owner per group (`who[g]` for group g).
    pub fn wait_owners(&self, who: &[&str], step: Step) -> Vec<Sample> {
        let who: Vec<String> = who.iter().map(|w| (*w).to_owned()).collect();
        self.wait_inner(Some(&who), step).1
    }

    /// Waits until some node holds each group alone, whichever it is, and checks the way there and
    /// the settle window as [`Holders::wait_owner`] does; returns the owner of each group and the
    /// samples this wait checked.
    pub fn wait_single_owner(&self, step: Step) -> (Vec<String>, Vec<Sample>) {
        self.wait_inner(None, step)
    }

    fn wait_inner(&self, expected: Option<&[String]>, step: Step) -> (Vec<String>, Vec<Sample>) {
        let began = Instant::now();
        let what = expected.map_or_else(|| "one node each".to_owned(), |w| format!("{w:?}"));
        let (reached, who) = crate::wait_for(&format!("{what} to hold {} alone", self.vips), step.timeout, || {
            let s = self.sample_after(began)?;
            let single: Option<Vec<String>> = s.holders.iter().map(|h| (h.len() == 1).then(|| h[0].clone())).collect();
            single
                .filter(|w| expected.is_none_or(|e| e == w.as_slice()))
                .map(|w| (s.at, w))
        });
        let alone = |s: &Sample| {
            s.holders.len() == who.len()
                && s.holders
                    .iter()
                    .zip(&who)
                    .all(|(h, w)| h.as_slice() == std::slice::from_ref(w))
        };
        let settled = reached + step.settle;
        crate::wait_for(
            &format!("samples of {} for the settle window", self.vips),
            step.settle + Duration::from_secs(10),
            || self.sample_after(settled).map(|_| ()),
        );
        let mut checked = lock(&self.checked);
        let samples: Vec<Sample> = lock(&self.samples)[*checked..]
            .iter()
            .filter(|s| s.at <= settled)
            .cloned()
            .collect();
        *checked += samples.len();
        drop(checked);
        let origin = samples.first().map_or(began, |s| s.at);
        let at = |s: &Sample| s.at.saturating_duration_since(origin);
        let mut longest = Duration::ZERO;
        for g in 0..who.len() {
            // Runs of consecutive samples with two or more holders of group g.
            let two = |s: &Sample| s.holders[g].len() > 1;
            let mut run: Option<&Sample> = None;
            for (i, s) in samples.iter().enumerate() {
                if two(s) && run.is_none() {
                    run = Some(s);
                }
                let ends = !two(s) || i + 1 == samples.len();
                if let (Some(first), true) = (run, ends) {
                    let last = if two(s) { s } else { &samples[i - 1] };
                    let span = last.at - first.at;
                    longest = longest.max(span);
                    assert!(
                        span <= step.overlap,
                        "group {g} of {} held by {:?} at once for {span:?} (from {:?} to {:?} into the wait for \
                         {who:?}; {:?} tolerated); {}",
                        self.vips,
                        first.holders[g],
                        at(first),
                        at(last),
                        step.overlap,
                        changes(&samples, origin)
                    );
                    run = None;
                }
            }
        }
        println!(
            "{who:?} alone after {:?}; {} samples; longest two-holder run {longest:?}; {}",
            reached.saturating_duration_since(origin),
            samples.len(),
            changes(&samples, origin)
        );
        if let Some(bad) = samples.iter().find(|s| s.at > reached && !alone(s)) {
            panic!(
                "{} did not stay with {who:?}: {:?} {:?} after they held it alone ({:?} settle window); {}",
                self.vips,
                bad.holders,
                bad.at - reached,
                step.settle,
                changes(&samples, origin)
            );
        }
        (who, samples)
    }
}

impl Drop for Holders {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The samples where the holders changed, as `+time holders`.
fn changes(samples: &[Sample], origin: Instant) -> String {
    let mut out = Vec::new();
    let mut last: Option<&Vec<Vec<String>>> = None;
    for s in samples {
        if last != Some(&s.holders) {
            out.push(format!("+{:?} {:?}", s.at.saturating_duration_since(origin), s.holders));
            last = Some(&s.holders);
        }
    }
    format!("holders: {}", out.join(", "))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
