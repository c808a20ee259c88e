//! Deterministic tests of the state machine in simulated time (no root, no network): every
//! transition of RFC 5798 §6.4, preemption modes, priority 0, ties, interval learning, Fault.

use std::time::Duration;

use super::{
    Input, Preempt, State,
    sim::{Call, Sim, config},
    timers::CHECK_EARLY_DIVISOR,
};

const MS: Duration = Duration::from_millis(1);

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

/// Asserts `t` is within 2 ms after `want` (the simulation steps time by 1 ms).
fn assert_at(what: &str, t: Option<Duration>, want: Duration) {
    let t = t.unwrap_or_else(|| panic!("{what}: never happened"));
    assert!(t >= want && t <= want + 2 * MS, "{what}: at {t:?}, expected {want:?}");
}

#[tokio::test(start_paused = true)]
async fn lone_backup_becomes_master_after_master_down_interval() {
    let mut sim = Sim::new();
    sim.start("a", config("a", 100, "192.0.2.1"));
    assert_eq!(sim.state("a"), State::Backup);
    sim.run_for(secs(5.0)).await;
    // RFC 5798 §6.1: 3 × 1 s + (256 - 100) / 256 s.
    let mdi = secs(3.0) + Duration::from_secs(1) * 156 / 256;
    assert_at("master", sim.entered("a", State::Master), mdi);
    let calls: Vec<Call> = sim
        .node("a")
        .inst
        .effects()
        .calls
        .iter()
        .map(|(_, c)| c.clone())
        .collect();
    assert_eq!(
        calls[..6],
        [
            Call::State(State::Initialize, State::Backup),
            Call::Advert(100),
            Call::AddVips,
            Call::Announce,
            Call::Role(true, 100),
            Call::State(State::Backup, State::Master),
        ]
    );
    // Then one advert per Advertisement_Interval.
    let adverts = calls.iter().filter(|c| **c == Call::Advert(100)).count();
    assert_eq!(adverts, 2, "{calls:?}");
}

#[tokio::test(start_paused = true)]
async fn address_owner_becomes_master_at_startup() {
    let mut sim = Sim::new();
    sim.start("owner", config("owner", 255, "192.0.2.1"));
    assert_eq!(sim.state("owner"), State::Master);
    sim.start("b", config("b", 200, "192.0.2.2"));
    sim.run_for(secs(10.0)).await;
    assert_eq!(sim.masters(), vec!["owner"]);
}

#[tokio::test(start_paused = true)]
async fn higher_priority_wins_and_backup_is_not_woken_per_advert() {
    let mut sim = Sim::new();
    // The instance's own checks, as when the schedule cannot read the datapath.
    sim.schedule_checks = false;
    sim.start("low", config("low", 100, "192.0.2.1"));
    sim.start("high", config("high", 200, "192.0.2.2"));
    sim.run_for(secs(60.0)).await;
    assert_eq!(sim.masters(), vec!["high"]);
    assert_eq!(sim.entered("low", State::Master), None);
    // ~56 adverts reached the backup; it woke for the first one and for its master-down checks only.
    // A check re-arms for Master_Down_Interval less the last advert's age (at least 3 × 1 s + Skew_Time
    // − 1 s) and may fire up to 1 / CHECK_EARLY_DIVISOR of that early: at most one check per
    // (2 s + Skew_Time) / CHECK_EARLY_DIVISOR, Skew_Time = (256 − 100) / 256 s (RFC 5798 §6.1).
    let skew = Duration::from_secs(1) * 156 / 256;
    let every = (secs(2.0) + skew) / CHECK_EARLY_DIVISOR;
    let bound = (secs(60.0).as_secs_f64() / every.as_secs_f64()) as u64 + 2;
    let wakeups = sim.node("low").wakeups;
    assert!(
        wakeups <= bound && bound < 56,
        "backup woke {wakeups} times in 60 s of 1 s adverts (at most {bound})"
    );
}

/// With the timer schedule checking the live master (as in the agent), the Backup hears nothing of
/// its master-down timer while the master advertises: it wakes for the first advert only.
#[tokio::test(start_paused = true)]
async fn the_schedule_checks_a_live_master_without_waking_the_backup() {
    let mut sim = Sim::new();
    sim.start("low", config("low", 100, "192.0.2.1"));
    sim.start("high", config("high", 200, "192.0.2.2"));
    sim.run_for(secs(60.0)).await;
    assert_eq!(sim.masters(), vec!["high"]);
    let wakeups = sim.node("low").wakeups;
    assert!(
        wakeups <= 2,
        "backup woke {wakeups} times in 60 s of 1 s adverts (at most 2: the first advert, and a check armed before it)"
    );

    // A Backup held by preempt_delay under a lower master (keepalived's rule) sleeps as well.
    let mut sim = Sim::new();
    sim.start("low", config("low", 100, "192.0.2.1"));
    sim.run_for(secs(5.0)).await;
    let mut cfg = config("high", 200, "192.0.2.2");
    cfg.preempt = Preempt::Delay(secs(300.0));
    sim.start("high", cfg);
    sim.run_for(secs(60.0)).await;
    assert_eq!(sim.masters(), vec!["low"]);
    let wakeups = sim.node("high").wakeups;
    assert!(
        wakeups <= 2,
        "delayed backup woke {wakeups} times in 60 s of 1 s adverts (at most 2)"
    );
}

/// a (150) started first and is Master; b (120, preempt) is its Backup.
async fn a_master_over_b() -> Sim {
    let mut sim = Sim::new();
    sim.start("a", config("a", 150, "192.0.2.1"));
    sim.run_for(secs(5.0)).await;
    sim.start("b", config("b", 120, "192.0.2.2"));
    sim.run_for(secs(5.0)).await;
    assert_eq!(sim.masters(), vec!["a"]);
    sim
}

/// A Backup whose effective priority rises above its master's (preempt on) no longer counts the
/// master's adverts (RFC 5798 §6.4.2): it takes over when its wait runs out, although the master
/// lives. The schedule's check judges with the new priority.
#[tokio::test(start_paused = true)]
async fn a_backup_raised_above_its_master_takes_over_within_master_down_interval() {
    let mut sim = a_master_over_b().await;
    let raised = sim.now();
    sim.input("b", Input::Priority(200));
    sim.run_for(secs(10.0)).await;
    assert_eq!(sim.masters(), vec!["b"]);
    // b's wait ends at most Master_Down_Interval (3 × 1 s + (256 - 120) / 256 s, armed before the
    // raise) after a's last counted advert, which came at most an interval before the raise.
    let mdi_b = secs(3.0) + Duration::from_secs(1) * 136 / 256;
    let took = sim.entered("b", State::Master).expect("b took over");
    assert!(
        took > raised && took <= raised + mdi_b,
        "b took over at {took:?}, raised at {raised:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn killed_master_is_replaced_after_master_down_interval() {
    for schedule_checks in [true, false] {
        killed_master_is_replaced(schedule_checks).await;
    }
}

async fn killed_master_is_replaced(schedule_checks: bool) {
    let mut sim = Sim::new();
    sim.schedule_checks = schedule_checks;
    sim.start("a", config("a", 100, "192.0.2.1"));
    sim.start("b", config("b", 200, "192.0.2.2"));
    sim.run_for(secs(10.2)).await;
    assert_eq!(sim.masters(), vec!["b"]);
    // b advertises at 3.21875 + k s; the last before the kill is at 10.21875 - 1 = 9.21875.
    let last_advert = secs(3.0) + Duration::from_secs(1) * 56 / 256 + secs(6.0);
    sim.kill("b");
    sim.run_for(secs(10.0)).await;
    let mdi_a = secs(3.0) + Duration::from_secs(1) * 156 / 256;
    assert_at("a takes over", sim.entered("a", State::Master), last_advert + mdi_a);
}

#[tokio::test(start_paused = true)]
async fn graceful_shutdown_hands_over_after_skew_time() {
    let mut sim = Sim::new();
    sim.start("a", config("a", 100, "192.0.2.1"));
    sim.start("b", config("b", 200, "192.0.2.2"));
    sim.run_for(secs(5.0)).await;
    let t = sim.now();
    sim.input("b", Input::Shutdown);
    let calls = &sim.node("b").inst.effects().calls;
    let tail: Vec<&Call> = calls.iter().rev().take(4).map(|(_, c)| c).collect();
    assert_eq!(
        tail,
        [
            &Call::State(State::Master, State::Initialize),
            &Call::Role(false, 200),
            &Call::RemoveVips,
            &Call::Advert(0)
        ]
    );
    sim.run_for(secs(3.0)).await;
    let skew_a = Duration::from_secs(1) * 156 / 256;
    assert_at(
        "a takes over after Skew_Time",
        sim.entered("a", State::Master),
        t + skew_a,
    );
}

#[tokio::test(start_paused = true)]
async fn preempt_modes() {
    for (preempt, expect_master, after) in [
        (Preempt::Yes, "high", None),
        (Preempt::No, "low", None),
        (Preempt::Delay(secs(20.0)), "high", Some(secs(20.0))),
    ] {
        let mut sim = Sim::new();
        sim.start("low", config("low", 100, "192.0.2.1"));
        sim.run_for(secs(5.0)).await;
        assert_eq!(sim.masters(), vec!["low"]);
        let start = sim.now();
        let mut cfg = config("high", 200, "192.0.2.2");
        cfg.preempt = preempt;
        sim.start("high", cfg);
        sim.run_for(secs(30.0)).await;
        assert_eq!(sim.masters(), vec![expect_master], "{preempt:?}");
        if let Some(delay) = after {
            let t = sim.entered("high", State::Master).expect("preempted");
            assert!(
                t >= start + delay && t <= start + delay + secs(1.0),
                "{preempt:?}: preempted at {t:?}"
            );
        }
        if expect_master == "high" {
            // The old master stepped down to Backup on the higher advert.
            assert_eq!(sim.state("low"), State::Backup);
        }
    }
}

#[tokio::test(start_paused = true)]
async fn split_brain_heals_to_the_higher_primary_address_on_equal_priorities() {
    let mut sim = Sim::new();
    sim.start("a", config("a", 100, "192.0.2.1"));
    sim.start("b", config("b", 100, "192.0.2.2"));
    sim.set_connected("a", false);
    sim.set_connected("b", false);
    sim.run_for(secs(10.0)).await;
    assert_eq!(
        sim.masters(),
        vec!["a", "b"],
        "cut off from each other, both are Master"
    );
    sim.set_connected("a", true);
    sim.set_connected("b", true);
    sim.run_for(secs(3.0)).await;
    // RFC 5798 §6.4.3: equal priority, the higher primary address stays Master.
    assert_eq!(sim.masters(), vec!["b"]);
    assert_eq!(sim.state("a"), State::Backup);
}

/// RFC 5798 §6.4.3 has a Master discard a lower-priority advert; keepalived answers it at once with its
/// own advert and a gratuitous ARP burst, and so do we: the lower Master yields within the network's
/// delay instead of at our next advert, and clients that followed the other Master come back now.
#[tokio::test(start_paused = true)]
async fn a_master_hearing_a_lower_master_answers_at_once_and_reannounces() {
    let mut sim = Sim::new();
    sim.start("high", config("high", 200, "192.0.2.2"));
    sim.start("low", config("low", 100, "192.0.2.1"));
    sim.set_connected("high", false);
    sim.set_connected("low", false);
    sim.run_for(secs(10.0)).await;
    assert_eq!(sim.masters(), vec!["high", "low"], "cut off, both are Master");
    // The path returns just after high's advert went out (high is Master since 3.22 s, low since
    // 3.61 s, both advertising every second), so low's advert at 10.61 s reaches high first.
    sim.run_for(secs(0.3)).await;
    sim.set_connected("high", true);
    sim.set_connected("low", true);
    let back = sim.now();
    sim.run_for(secs(0.95)).await;
    assert_eq!(sim.masters(), vec!["high"]);
    let left = sim.entered("low", State::Backup).expect("low yields");
    let calls = &sim.node("high").inst.effects().calls;
    let reannounced = calls
        .iter()
        .find(|(t, c)| *t >= back && *c == Call::Reannounce)
        .map(|(t, _)| *t)
        .expect("high re-announces");
    let answered = calls
        .iter()
        .filter(|(t, c)| *t >= back && *t <= reannounced && *c == Call::Advert(200))
        .count();
    assert_eq!(
        answered, 1,
        "one advert in answer, before the re-announcement: {calls:?}"
    );
    // Both happen when low's first advert arrives, not at high's next periodic advert.
    assert_eq!(reannounced, left, "low yields to the answer itself");
    assert!(reannounced - back < secs(0.95), "{reannounced:?} after {back:?}");
    // Steady state afterwards: low is silent as Backup, no further re-announcements.
    sim.run_for(secs(10.0)).await;
    let again = sim
        .node("high")
        .inst
        .effects()
        .calls
        .iter()
        .filter(|(_, c)| *c == Call::Reannounce)
        .count();
    assert_eq!(again, 1);
}

#[tokio::test(start_paused = true)]
async fn backup_learns_the_masters_interval() {
    let mut sim = Sim::new();
    let mut fast = config("fast", 200, "192.0.2.2");
    fast.adver_int = Duration::from_millis(50);
    sim.start("fast", fast);
    sim.run_for(secs(1.0)).await;
    assert_eq!(sim.masters(), vec!["fast"]);
    sim.start("slow", config("slow", 100, "192.0.2.1"));
    sim.run_for(secs(2.0)).await;
    sim.kill("fast");
    let t = sim.now();
    sim.run_for(secs(5.0)).await;
    // Master_Down_Interval from the learned 50 ms: 150 ms + (156 × 50 / 256) ms, after the last advert
    // (at most 50 ms before the kill).
    let mdi = Duration::from_millis(150) + Duration::from_millis(50) * 156 / 256;
    let took = sim.entered("slow", State::Master).expect("took over") - t;
    assert!(
        took <= mdi + 2 * MS && took + Duration::from_millis(50) >= mdi,
        "took {took:?}, MDI {mdi:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn fault_releases_with_priority_zero_and_recovery_preempts_back() {
    let mut sim = Sim::new();
    sim.start("a", config("a", 100, "192.0.2.1"));
    sim.start("b", config("b", 200, "192.0.2.2"));
    sim.run_for(secs(5.0)).await;
    sim.input("b", Input::Fault(true));
    assert_eq!(sim.state("b"), State::Fault);
    let t = sim.now();
    sim.run_for(secs(5.0)).await;
    assert_at(
        "a takes over after skew",
        sim.entered("a", State::Master),
        t + Duration::from_secs(1) * 156 / 256,
    );
    assert_eq!(sim.state("b"), State::Fault, "no part in elections while faulty");
    sim.input("b", Input::Fault(false));
    assert_eq!(sim.state("b"), State::Backup);
    sim.run_for(secs(10.0)).await;
    assert_eq!(sim.masters(), vec!["b"]);
    assert_eq!(sim.state("a"), State::Backup);
}

#[tokio::test(start_paused = true)]
async fn a_master_answers_priority_zero_at_once() {
    let mut sim = Sim::new();
    sim.start("a", config("a", 100, "192.0.2.1"));
    sim.run_for(secs(5.0)).await;
    let before = sim.node("a").inst.effects().calls.len();
    // Another router releasing the VRID while a is Master.
    sim.input(
        "a",
        Input::Advert {
            src: "192.0.2.9".parse().expect("addr"),
            priority: 0,
            adver_int: secs(1.0),
            age: Duration::ZERO,
        },
    );
    let calls = &sim.node("a").inst.effects().calls[before..];
    assert_eq!(
        calls.iter().map(|(_, c)| c.clone()).collect::<Vec<_>>(),
        vec![Call::Advert(100)]
    );
    assert_eq!(sim.state("a"), State::Master);
}

#[tokio::test(start_paused = true)]
async fn vrrpv2_skew_uses_one_second() {
    let mut sim = Sim::new();
    let mut cfg = config("a", 100, "192.0.2.1");
    cfg.version = 2;
    cfg.adver_int = secs(2.0);
    sim.start("a", cfg);
    sim.run_for(secs(10.0)).await;
    // RFC 3768 §6.1: 3 × 2 s + (256 - 100) / 256 s.
    assert_at(
        "master",
        sim.entered("a", State::Master),
        secs(6.0) + Duration::from_secs(1) * 156 / 256,
    );
}

#[tokio::test(start_paused = true)]
async fn lower_effective_priority_is_advertised_and_loses() {
    let mut sim = a_master_over_b().await;
    // A failing check with weight -50: a now advertises 100 and b (120, preempt) takes over.
    sim.input("a", Input::Priority(100));
    sim.run_for(secs(10.0)).await;
    assert_eq!(sim.masters(), vec!["b"]);
}

/// A contested Master (conflict detection sees another node claim its VIPs) advertises at once; with
/// the path back, the lower Master yields on that advert, not at the next Advertisement_Interval.
#[tokio::test(start_paused = true)]
async fn a_contested_master_advertises_at_once_and_a_backup_ignores_it() {
    let mut sim = Sim::new();
    sim.start("high", config("high", 200, "192.0.2.2"));
    sim.start("low", config("low", 100, "192.0.2.1"));
    sim.set_connected("high", false);
    sim.set_connected("low", false);
    sim.run_for(secs(10.0)).await;
    assert_eq!(sim.masters(), vec!["high", "low"]);
    // Path back just after both adverts went out (10.22 s and 10.61 s): without an extra advert, low
    // would stay Master until high's advert at 11.22 s.
    sim.run_for(secs(0.65)).await;
    sim.set_connected("high", true);
    sim.set_connected("low", true);
    let back = sim.now();
    sim.input("high", Input::Contested);
    assert_eq!(sim.masters(), vec!["high"]);
    assert_at("low yields", sim.entered("low", State::Backup), back);
    // A Backup has nothing to defend: no advert.
    let before = sim.node("low").inst.effects().calls.len();
    sim.input("low", Input::Contested);
    assert_eq!(sim.node("low").inst.effects().calls.len(), before);
}

/// When a conflict ends (the other node stopped claiming our VIPs), a Master re-announces them;
/// a Backup has none to announce.
#[tokio::test(start_paused = true)]
async fn a_master_reannounces_when_a_conflict_ends() {
    let mut sim = Sim::new();
    sim.start("high", config("high", 200, "192.0.2.2"));
    sim.start("low", config("low", 100, "192.0.2.1"));
    sim.run_for(secs(5.0)).await;
    assert_eq!(sim.masters(), vec!["high"]);
    for name in ["high", "low"] {
        sim.input(name, Input::ConflictOver);
    }
    let reannounced = |name: &str| {
        sim.node(name)
            .inst
            .effects()
            .calls
            .iter()
            .filter(|(_, c)| *c == Call::Reannounce)
            .count()
    };
    assert_eq!((reannounced("high"), reannounced("low")), (1, 0));
}

/// Split-brain policy `yield` with no VRRP path: the Master told to yield steps down like a
/// preempted one (no priority 0: the other side cannot hear it, and a Backup that could would take
/// over at once), guards while the holder answers, and takes the VIPs back only a full wait after
/// the last answer.
#[tokio::test(start_paused = true)]
async fn a_yielding_master_guards_while_the_holder_answers_and_takes_over_after() {
    let mut sim = Sim::new();
    sim.start("a", config("a", 100, "192.0.2.1"));
    sim.start("b", config("b", 200, "192.0.2.2"));
    sim.set_connected("a", false);
    sim.set_connected("b", false);
    sim.run_for(secs(5.0)).await;
    assert_eq!(sim.masters(), vec!["a", "b"], "cut off, both are Master");
    let yielded = sim.now();
    sim.input("a", Input::Yield);
    assert_eq!(sim.state("a"), State::Backup);
    assert!(sim.node("a").inst.guarding());
    let after: Vec<Call> = sim
        .node("a")
        .inst
        .effects()
        .calls
        .iter()
        .filter(|(t, _)| *t >= yielded)
        .map(|(_, c)| c.clone())
        .collect();
    assert_eq!(
        after,
        [
            Call::RemoveVips,
            Call::Role(false, 100),
            Call::State(State::Master, State::Backup),
            Call::Guard(true),
        ]
    );
    // The holder answers the guard's probes every 500 ms for 20 s: no takeover, however long.
    for _ in 0..40 {
        sim.run_for(secs(0.5)).await;
        sim.input("a", Input::HolderSeen);
    }
    assert_eq!(sim.entered("a", State::Master).map(|t| t > yielded), Some(false));
    let last_answer = sim.now();
    // The holder stops answering (dead, or it left): a takes over Master_Down_Interval after the
    // last answer (3 × 1 s + (256 - 100) / 256 s, longer than GUARD_HOLD here).
    sim.run_for(secs(5.0)).await;
    let mdi = secs(3.0) + Duration::from_secs(1) * 156 / 256;
    assert!(mdi > super::GUARD_HOLD);
    assert_at("a takes back", sim.entered("a", State::Master), last_answer + mdi);
    assert!(!sim.node("a").inst.guarding());
    let calls = &sim.node("a").inst.effects().calls;
    let off = calls
        .iter()
        .position(|(_, c)| *c == Call::Guard(false))
        .expect("guard ends");
    assert_eq!(
        calls[off + 1].1,
        Call::Advert(100),
        "the guard ends before the takeover"
    );
    // A Master that is not guarding ignores a holder's answer.
    sim.input("b", Input::HolderSeen);
    assert_eq!(sim.state("b"), State::Master);
}

/// A guarding Backup whose VRRP path returns leaves the decision to the election: here it has the
/// higher priority, so it preempts the holder, which steps down on its advert (RFC 5798 §6.4.3).
#[tokio::test(start_paused = true)]
async fn a_guarding_backup_hands_back_to_the_election_when_adverts_return() {
    let mut sim = Sim::new();
    sim.start("a", config("a", 200, "192.0.2.1"));
    sim.start("b", config("b", 100, "192.0.2.2"));
    sim.set_connected("a", false);
    sim.set_connected("b", false);
    sim.run_for(secs(5.0)).await;
    sim.input("a", Input::Yield);
    sim.input("a", Input::HolderSeen);
    assert!(sim.node("a").inst.guarding());
    sim.set_connected("a", true);
    sim.set_connected("b", true);
    let back = sim.now();
    sim.run_for(secs(1.1)).await;
    assert!(!sim.node("a").inst.guarding(), "b's advert ends the guard");
    sim.run_for(secs(5.0)).await;
    assert_eq!(sim.masters(), vec!["a"]);
    assert!(sim.entered("a", State::Master).is_some_and(|t| t > back));
    assert!(sim.entered("b", State::Backup).is_some_and(|t| t > back));
}
