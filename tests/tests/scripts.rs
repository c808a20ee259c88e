//! Scripts against the election with two ipf-agents on a bridge: a hung check script is killed
//! (with what it started) at its `timeout` and counts as failed then, not at its next interval; a
//! notify script that takes seconds delays no takeover, and its calls still come in order. Needs
//! root.
#![allow(clippy::unwrap_used, reason = "tests")]

use std::time::{Duration, Instant};

use ipf_testbed::{Netns, Proc, TempDir, wait_for};
use ipf_tests::{
    node::{holds_vi51, logged_at, nodes_on_a_bridge, read_lines, vi51_agent, write_script},
    trace::{Ns, ms},
};

const T: Duration = Duration::from_secs(20);
/// An agent without a metrics endpoint (these tests read the wire, logs and files).
fn agent(ns: &Netns, priority: u8, extra: &[&str], track: &str) -> Proc {
    let extra: Vec<&str> = ["--metrics-addr", "off"].iter().chain(extra).copied().collect();
    vi51_agent(ns, priority, &extra, track)
}

/// Whether `pid` is gone (reaped, or a zombie nobody reaped yet: it runs no more).
fn dead(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |s| {
        s.rsplit_once(')').is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
    })
}

/// Kills what the hung script left, should the agent not have (a failing test leaves nothing).
struct Reap(Vec<i32>);

impl Drop for Reap {
    fn drop(&mut self) {
        for &pid in &self.0 {
            if !dead(pid) {
                // SAFETY: plain kill(2) of a process this test's script started.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
    }
}

#[test]
fn a_hung_check_script_is_killed_at_its_timeout_and_counts_as_failed() {
    ipf_testbed::skip_unless_root!();
    let (_switch, nodes) = nodes_on_a_bridge("sc", 2);
    let (a_ns, b_ns) = (&nodes[0], &nodes[1]);
    let dir = TempDir::new("ipf-hung");
    let hang = dir.path().join("hang");
    let pids = dir.path().join("pids");
    let script = dir.path().join("check.sh");
    // While `hang` exists the script starts a child and waits for it, after writing both pids and
    // its start time (ns since the epoch).
    write_script(
        &script,
        &format!(
            "[ -f {hang} ] || exit 0\nsleep 600 &\necho \"$$ $! $(date +%s%N)\" > {pids}.new\nmv {pids}.new {pids}\nwait\n",
            hang = hang.display(),
            pids = pids.display()
        ),
    );
    // The interval (2 s) is far from the timeout (0.5 s): a check failed only when the next run
    // is due, or never, is told apart from one killed at its timeout.
    let timeout = Duration::from_millis(500);
    let check = format!(
        "name=hung,interval=2,timeout=0.5,fall=1,rise=1,weight=0,script={}",
        script.display()
    );
    let a = agent(a_ns, 150, &["--check", &check], ",track=hung");
    let _b = agent(b_ns, 100, &[], "");
    wait_for("A to hold the VIP", T, || {
        (holds_vi51(a_ns) && !holds_vi51(b_ns)).then_some(())
    });

    std::fs::write(&hang, "").unwrap();
    let (script_pid, child_pid, started) = wait_for("the hung script's pids", T, || {
        let text = std::fs::read_to_string(&pids).ok()?;
        let mut w = text.split_whitespace();
        Some((
            w.next()?.parse::<i32>().ok()?,
            w.next()?.parse::<i32>().ok()?,
            w.next()?.parse::<Ns>().ok()?,
        ))
    });
    let _reap = Reap(vec![script_pid, child_pid]);
    let failed = wait_for("the check to fail", T, || logged_at(&a, "VRRP_Script(hung) failed"));
    let took = Duration::from_nanos(u64::try_from(failed - started).unwrap_or(0));
    assert!(
        took >= timeout - Duration::from_millis(50) && took < timeout + Duration::from_millis(400),
        "the check failed {:.0} ms after the script started, timeout {timeout:?}",
        ms(started, failed)
    );
    assert!(
        logged_at(&a, "VRRP_Script(hung) timed out after 500ms").is_some(),
        "no timeout line in {:?}",
        a.stderr_lines()
    );
    // The agent kills the script's process group before it logs the failure: both are gone now.
    assert!(dead(script_pid), "the script (pid {script_pid}) still runs");
    assert!(dead(child_pid), "the script's child (pid {child_pid}) still runs");
    wait_for("A in FAULT", T, || logged_at(&a, "(VI_51) Entering FAULT STATE"));
    wait_for("B to hold the VIP alone", T, || {
        (holds_vi51(b_ns) && !holds_vi51(a_ns)).then_some(())
    });

    // Not hung any more: the next run (within an interval) succeeds and A takes the VIP back.
    std::fs::remove_file(&hang).unwrap();
    wait_for("A to hold the VIP again", T, || {
        (holds_vi51(a_ns) && !holds_vi51(b_ns)).then_some(())
    });
    assert!(logged_at(&a, "VRRP_Script(hung) succeeded").is_some());
}

#[test]
fn a_slow_notify_script_does_not_delay_a_takeover() {
    ipf_testbed::skip_unless_root!();
    let (_switch, nodes) = nodes_on_a_bridge("sn", 2);
    let (a_ns, b_ns) = (&nodes[0], &nodes[1]);
    let dir = TempDir::new("ipf-slow");
    let log = dir.path().join("notify.log");
    let notify = dir.path().join("notify.sh");
    let sleep = Duration::from_secs(3);
    write_script(
        &notify,
        &format!(
            "echo \"start $*\" >> {log}\nsleep {}\necho \"done $*\" >> {log}\n",
            sleep.as_secs(),
            log = log.display()
        ),
    );
    let a = agent(a_ns, 150, &[], "");
    wait_for("A to hold the VIP", T, || holds_vi51(a_ns).then_some(()));
    let _b = agent(b_ns, 100, &["--notify", notify.to_str().unwrap()], "");
    wait_for("B's BACKUP notify to start", T, || {
        read_lines(&log)
            .contains(&"start INSTANCE VI_51 BACKUP 100".to_owned())
            .then_some(())
    });
    // B's BACKUP notify sleeps for 3 s from now: the takeover must not wait for it.
    a.signal(libc::SIGKILL);
    let killed = Instant::now();
    wait_for("B to hold the VIP", T, || holds_vi51(b_ns).then_some(()));
    let took = killed.elapsed();
    // Master_Down_Interval at 100 ms adverts and priority 100: 3 × 100 ms + 61 ms skew, plus slack
    // for the VIP add and a loaded machine; far below the notify's 3 s.
    let bound = Duration::from_millis(361 + 400);
    assert!(took < bound, "B took over {took:?} after A's kill, bound {bound:?}");
    assert!(
        !read_lines(&log).contains(&"done INSTANCE VI_51 BACKUP 100".to_owned()),
        "the BACKUP notify finished before the takeover: the test proves nothing"
    );

    let expected = [
        "start INSTANCE VI_51 BACKUP 100",
        "start INSTANCE VI_51 MASTER 100",
        "done INSTANCE VI_51 BACKUP 100",
        "done INSTANCE VI_51 MASTER 100",
    ];
    let lines = wait_for("both notify calls to finish", T, || {
        let lines = read_lines(&log);
        (lines.len() >= expected.len()).then_some(lines)
    });
    assert_eq!(lines, expected, "notify calls");
}
