//! SIGHUP reloads that start instances, on two ipf nodes: a change that needs a restart makes a
//! Master release with priority 0 first, so the peer takes over at once rather than after
//! Master_Down_Interval; instances a reload adds elect and take their VIPs; a family change leaves
//! nothing of the old family behind. Needs root.
#![allow(clippy::unwrap_used, reason = "tests")]

use std::time::{Duration, Instant};

use ipf_testbed::wait_for;
use ipf_tests::{
    lab::{A_IP, B_IP, Lab, T, adverts_from, holds, instance, states_are, wait_reloaded},
    trace::{Capture, Ns, now_ns},
};

/// Master_Down_Interval of b (priority 100) at 100 ms adverts: 3 × 100 ms + Skew_Time (61 ms).
const B_MASTER_DOWN_MS: f64 = 361.0;

#[test]
fn a_restart_releases_with_priority_zero_and_the_peer_takes_over_at_once() {
    ipf_testbed::skip_unless_root!();
    let lab = Lab::new("rr");
    lab.write("a", &[instance("VI_1", 51, 150, "", &["192.0.2.100/24"])]);
    lab.write("b", &[instance("VI_1", 51, 100, "", &["192.0.2.100/24"])]);
    let a = lab.agent(&lab.a, "a");
    let _b = lab.agent(&lab.b, "b");
    let (sa, sb) = (lab.socket("a"), lab.socket("b"));
    wait_for("a to master VI_1", T, || {
        (states_are(&lab.a, &sa, &[("VI_1", "MASTER")]) && states_are(&lab.b, &sb, &[("VI_1", "BACKUP")])).then_some(())
    });
    let capture = Capture::start(&lab.b, "eth0");
    let from = now_ns();
    wait_for("a's adverts on the wire", T, || {
        (adverts_from(&capture, A_IP, from, now_ns()).len() >= 2).then_some(())
    });
    // The advert interval is part of the election on the wire: not an in-place change.
    lab.write(
        "a",
        &[instance("VI_1", 51, 150, "", &["192.0.2.100/24"]).replace("advert_int 0.1", "advert_int 0.2")],
    );
    a.signal(libc::SIGHUP);
    wait_reloaded(&a, "0 unchanged, 0 updated in place, 1 restarted, 0 removed, 0 added");
    wait_for("b to take VI_1 over", T, || holds(&lab.b, "192.0.2.100").then_some(()));
    // The restarted instance (150, preempting) wins it back.
    wait_for("a to master VI_1 again, alone", T, || {
        (holds(&lab.a, "192.0.2.100")
            && !holds(&lab.b, "192.0.2.100")
            && states_are(&lab.a, &sa, &[("VI_1", "MASTER")]))
        .then_some(())
    });

    let to = now_ns();
    let from_a = adverts_from(&capture, A_IP, from, to);
    let from_b = adverts_from(&capture, B_IP, from, to);
    let release: Ns = from_a
        .iter()
        .find(|(_, p)| *p == 0)
        .map(|(at, _)| *at)
        .unwrap_or_else(|| panic!("no priority-0 advert from a on the restart: {from_a:?}"));
    let b_first: Ns = from_b
        .iter()
        .find(|(_, p)| *p == 100)
        .map(|(at, _)| *at)
        .unwrap_or_else(|| panic!("b never advertised: {from_b:?}"));
    let a_last = from_a
        .iter()
        .filter(|(at, p)| *p != 0 && *at < b_first)
        .map(|(at, _)| *at)
        .max()
        .unwrap_or_else(|| panic!("no advert of a's before b's: {from_a:?}"));
    let after_release = ipf_tests::trace::ms(release, b_first);
    let after_last = ipf_tests::trace::ms(a_last, b_first);
    eprintln!(
        "b's first advert {after_release:.1} ms after a's priority 0, {after_last:.1} ms after a's last advert \
         (Master_Down_Interval {B_MASTER_DOWN_MS} ms)"
    );
    assert!(release < b_first, "b took over before a released");
    // Without the release b would wait Master_Down_Interval from a's last advert; with it, Skew_Time
    // (61 ms) from the release, which follows a's last advert within an interval (100 ms).
    assert!(
        after_last < B_MASTER_DOWN_MS,
        "b took over {after_last:.1} ms after a's last advert: not before Master_Down_Interval"
    );
    // The restarted instance advertises at its new priority; nothing of the old one is left.
    assert!(
        from_a.iter().any(|(at, p)| *at > b_first && *p == 150),
        "a's restarted instance never advertised: {from_a:?}"
    );
}

#[test]
fn instances_a_reload_adds_elect_and_take_their_vips() {
    ipf_testbed::skip_unless_root!();
    let lab = Lab::new("ra");
    let vi1 = |p| instance("VI_1", 51, p, "", &["192.0.2.100/24"]);
    let vi2 = |p| instance("VI_2", 52, p, "", &["192.0.2.101/24", "192.0.2.102/24"]);
    lab.write("a", &[vi1(150)]);
    lab.write("b", &[vi1(100)]);
    let a = lab.agent(&lab.a, "a");
    let b = lab.agent(&lab.b, "b");
    let (sa, sb) = (lab.socket("a"), lab.socket("b"));
    wait_for("a to master VI_1", T, || {
        (states_are(&lab.a, &sa, &[("VI_1", "MASTER")]) && states_are(&lab.b, &sb, &[("VI_1", "BACKUP")])).then_some(())
    });
    let since = ipf_tests::agent_status(&lab.a, &sa)[0]["last_transition"].as_f64();
    lab.write("a", &[vi1(150), vi2(150)]);
    lab.write("b", &[vi1(100), vi2(100)]);
    b.signal(libc::SIGHUP);
    a.signal(libc::SIGHUP);
    for p in [&a, &b] {
        wait_reloaded(p, "1 unchanged, 0 updated in place, 0 restarted, 0 removed, 1 added");
    }
    let settled = || {
        states_are(&lab.a, &sa, &[("VI_1", "MASTER"), ("VI_2", "MASTER")])
            && states_are(&lab.b, &sb, &[("VI_1", "BACKUP"), ("VI_2", "BACKUP")])
            && ["192.0.2.100", "192.0.2.101", "192.0.2.102"]
                .iter()
                .all(|v| holds(&lab.a, v) && !holds(&lab.b, v))
    };
    wait_for("a to master VI_2 and hold its VIPs, b neither", T, || {
        settled().then_some(())
    });
    // And it stays so: the new instance's election is over, VI_1 was not touched.
    let until = Instant::now() + Duration::from_secs(1);
    while Instant::now() < until {
        assert!(settled(), "the election moved after it settled");
        std::thread::sleep(Duration::from_millis(100));
    }
    let now = ipf_tests::agent_status(&lab.a, &sa);
    let vi1_now = now.iter().find(|i| i["instance"] == "VI_1").unwrap();
    assert_eq!(vi1_now["last_transition"].as_f64(), since, "VI_1 kept its state");
}

#[test]
fn a_family_change_on_reload_leaves_nothing_of_the_old_family() {
    ipf_testbed::skip_unless_root!();
    let lab = Lab::new("rf");
    lab.write("a", &[instance("VI_1", 51, 150, "", &["192.0.2.100/24"])]);
    let a = lab.agent(&lab.a, "a");
    let sa = lab.socket("a");
    wait_for("a to master VI_1 over IPv4", T, || {
        (states_are(&lab.a, &sa, &[("VI_1", "MASTER")]) && holds(&lab.a, "192.0.2.100")).then_some(())
    });
    // The same instance, now IPv6: a restart (the family is on the wire), its old VIP released.
    lab.write("a", &[instance("VI_1", 51, 150, "", &["fd00:2::100/64"])]);
    a.signal(libc::SIGHUP);
    wait_reloaded(&a, "0 unchanged, 0 updated in place, 1 restarted, 0 removed, 0 added");
    wait_for("a to master VI_1 over IPv6", T, || {
        let i = ipf_tests::agent_status(&lab.a, &sa);
        (i.len() == 1 && i[0]["state"] == "MASTER" && i[0]["family"] == "v6" && holds(&lab.a, "fd00:2::100"))
            .then_some(())
    });
    assert!(!holds(&lab.a, "192.0.2.100"), "the IPv4 VIP stayed");
    assert!(holds(&lab.a, "192.0.2.1"), "the node's own address stays");
}
