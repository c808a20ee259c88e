//! Preemption with real agents: a higher-priority node joining a running Master waits out its
//! `preempt_delay` before taking over (and then does), and with `nopreempt` never takes over while
//! the Master lives (and does when it goes); a Master whose adverts carry all that one packet holds
//! (90 IPv6 VIPs) keeps its Backup. The VIPs are sampled at a fixed cadence, so a takeover too early
//! or a moment with the VIP on both nodes is seen. Needs root.
#![allow(clippy::unwrap_used, reason = "tests")]

use std::time::{Duration, Instant};

use ipf_testbed::{Netns, wait_for};
use ipf_tests::lab::{Lab, T, holds, instance, logged, states_are};

const VIP: &str = "192.0.2.100";
/// How often the VIPs are looked at.
const CADENCE: Duration = Duration::from_millis(20);

/// Waits until `ns`'s agent (socket `sock`) is BACKUP with its peer as master of VI_1.
fn wait_backup_of(ns: &Netns, sock: &std::path::Path, master: &str) {
    wait_for(&format!("VI_1 BACKUP of {master}"), T, || {
        let s = ipf_tests::agent_status(ns, sock);
        (s.len() == 1 && s[0]["state"] == "BACKUP" && s[0]["master"] == master).then_some(())
    });
}

#[test]
fn preempt_delay_holds_a_returning_higher_priority_node_back_until_it_has_passed() {
    ipf_testbed::skip_unless_root!();
    let lab = Lab::new("ed");
    let delay = Duration::from_secs(2);
    lab.write(
        "a",
        &[instance("VI_1", 51, 150, "  preempt_delay 2", &[&format!("{VIP}/24")])],
    );
    lab.write("b", &[instance("VI_1", 51, 100, "", &[&format!("{VIP}/24")])]);
    let _b = lab.agent(&lab.b, "b");
    wait_for("b to master VI_1 alone", T, || holds(&lab.b, VIP).then_some(()));
    // a returns: its delay counts from its start, which is after this.
    let started = Instant::now();
    let _a = lab.agent(&lab.a, "a");
    let mut took = None;
    while started.elapsed() < delay + T {
        let (on_a, on_b) = (holds(&lab.a, VIP), holds(&lab.b, VIP));
        assert!(!(on_a && on_b), "the VIP on both nodes at {:?}", started.elapsed());
        if on_a {
            took = Some(started.elapsed());
            break;
        }
        assert!(
            on_b || started.elapsed() >= delay,
            "b lost the VIP before a's preempt_delay at {:?}",
            started.elapsed()
        );
        std::thread::sleep(CADENCE);
    }
    let took = took.expect("a never took the VIP over");
    eprintln!("a took over {took:?} after its start (preempt_delay {delay:?})");
    assert!(
        took >= delay,
        "a preempted after {took:?}, before its preempt_delay of {delay:?}"
    );
    // The delay counts from the instance's start: after the process's start-up and the XDP attach,
    // which take a second or more on a loaded machine; then a Master_Down_Interval at most (0.36 s).
    assert!(took < delay + Duration::from_secs(3), "a took {took:?} to preempt");
    wait_for("b to be BACKUP of a", T, || {
        (!holds(&lab.b, VIP) && states_are(&lab.b, &lab.socket("b"), &[("VI_1", "BACKUP")])).then_some(())
    });
}

#[test]
fn nopreempt_keeps_the_running_master_until_it_goes() {
    ipf_testbed::skip_unless_root!();
    let lab = Lab::new("en");
    lab.write(
        "a",
        &[instance("VI_1", 51, 150, "  nopreempt", &[&format!("{VIP}/24")])],
    );
    lab.write("b", &[instance("VI_1", 51, 100, "", &[&format!("{VIP}/24")])]);
    let mut b = lab.agent(&lab.b, "b");
    wait_for("b to master VI_1 alone", T, || holds(&lab.b, VIP).then_some(()));
    let a = lab.agent(&lab.a, "a");
    wait_backup_of(&lab.a, &lab.socket("a"), "192.0.2.2");
    // Twenty of b's adverts (Master_Down_Interval is 0.36 s): a preempting one would have by now.
    let until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < until {
        assert!(
            holds(&lab.b, VIP) && !holds(&lab.a, VIP),
            "a (150, nopreempt) took the VIP from a live b (100)"
        );
        std::thread::sleep(CADENCE);
    }
    assert_eq!(logged(&a, "Entering MASTER STATE"), 0, "a was never MASTER");
    wait_backup_of(&lab.a, &lab.socket("a"), "192.0.2.2");
    // b goes: a takes over, at once on b's priority 0.
    b.signal(libc::SIGTERM);
    assert!(b.wait_exit(T).success());
    wait_for("a to master VI_1", T, || {
        (holds(&lab.a, VIP) && states_are(&lab.a, &lab.socket("a"), &[("VI_1", "MASTER")])).then_some(())
    });
}

/// An IPv6 instance advertising the most one packet holds, 90 VIPs (a 1448-byte VRRPv3 advert, 1488
/// bytes with the IPv6 header): the Master's adverts leave and its Backup stays Backup. Adverts
/// over 1100 bytes once failed to encode, so a Master with 69 or more IPv6 VIPs sent none and its
/// Backup took over after Master_Down_Interval.
#[test]
fn a_master_advertising_ninety_ipv6_vips_keeps_its_backup() {
    ipf_testbed::skip_unless_root!();
    let lab = Lab::new("e6");
    let vips: Vec<String> = (1..=90).map(|n| format!("2001:db8::1:{n:x}/64")).collect();
    let vips: Vec<&str> = vips.iter().map(String::as_str).collect();
    let (first, last) = ("2001:db8::1:1", "2001:db8::1:5a");
    lab.write("a", &[instance("VI_1", 51, 150, "", &vips)]);
    lab.write("b", &[instance("VI_1", 51, 100, "", &vips)]);
    let a = lab.agent(&lab.a, "a");
    wait_for("a to master VI_1 with all 90 VIPs", T, || {
        (holds(&lab.a, first) && holds(&lab.a, last)).then_some(())
    });
    let _b = lab.agent(&lab.b, "b");
    wait_for("b to be BACKUP of VI_1", T, || {
        states_are(&lab.b, &lab.socket("b"), &[("VI_1", "BACKUP")]).then_some(())
    });
    // Ten of a's adverts, three Master_Down_Intervals (0.36 s): a b that heard none would have
    // taken over.
    let until = Instant::now() + Duration::from_secs(1);
    while Instant::now() < until {
        assert!(
            holds(&lab.a, first) && !holds(&lab.b, first),
            "b (100) took VI_1 from a live a (150): a's 90-address adverts did not reach it"
        );
        std::thread::sleep(CADENCE);
    }
    assert!(states_are(&lab.b, &lab.socket("b"), &[("VI_1", "BACKUP")]));
    assert_eq!(logged(&a, "encoding advert"), 0, "a failed to encode an advert");
}
