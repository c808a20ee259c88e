//! What a probe sees: `status --brief` exits non-zero while an instance is in FAULT and zero again
//! when it recovers (FAULT is an election outcome: /healthz and /readyz stay up); `/healthz` fails
//! when the election loop stops turning, though the metrics thread still answers, and recovers when
//! it turns again; `/readyz` fails until the instances have started, and a SIGTERM meanwhile leaves
//! nothing behind. Needs root.
#![allow(clippy::unwrap_used, reason = "tests")]

use std::{
    process::Output,
    time::{Duration, Instant},
};

use ipf_testbed::{Netns, Proc, Switch, TempDir, wait_for};
use ipf_tests::{
    agent_bin,
    lab::{T, holds, probe, probe_answer},
};

const VIP: &str = "192.0.2.100";

/// An agent in `ns` with VI_51 (100 ms adverts) and `extra` arguments.
fn agent(ns: &Netns, socket: &std::path::Path, extra: &[&str], track: &str) -> Proc {
    let mut cmd = ns.command(agent_bin());
    cmd.args(["run", "-i", "eth0", "--vip-lease-secs", "0", "--status-socket"])
        .arg(socket)
        .args(extra)
        .args([
            "--instance",
            &format!("name=VI_51,vrid=51,priority=150,interval=100,vip={VIP}/24{track}"),
        ]);
    Proc::spawn("ipf-agent", cmd)
}

fn node(tag: &str, addrs: &[&str]) -> (Switch, Netns) {
    let switch = Switch::new(&format!("ipf-{tag}s"));
    let ns = Netns::new(&format!("ipf-{tag}a"));
    switch.attach(&ns, "eth0", addrs, "pa");
    (switch, ns)
}

fn brief(ns: &Netns, socket: &std::path::Path) -> Output {
    ns.command(agent_bin())
        .args(["status", "--brief", "--socket"])
        .arg(socket)
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn status_brief_fails_while_an_instance_is_in_fault() {
    ipf_testbed::skip_unless_root!();
    let (_switch, ns) = node("pb", &["192.0.2.1/24"]);
    let dir = TempDir::new("ipf-brief");
    let healthy = dir.path().join("healthy");
    std::fs::write(&healthy, "").unwrap();
    let socket = dir.path().join("a.sock");
    let check = format!(
        "name=chk,interval=0.2,fall=1,rise=1,weight=0,script=test -f {}",
        healthy.display()
    );
    let _a = agent(&ns, &socket, &["--check", &check], ",track=chk");
    wait_for("VI_51 MASTER", T, || holds(&ns, VIP).then_some(()));
    let out = wait_for("status --brief to answer MASTER", T, || {
        Some(brief(&ns, &socket)).filter(|o| text(&o.stdout) == "VI_51 MASTER\n")
    });
    assert!(out.status.success(), "MASTER: {:?} {}", out.status, text(&out.stderr));

    std::fs::remove_file(&healthy).unwrap();
    let out = wait_for("status --brief to answer FAULT", T, || {
        Some(brief(&ns, &socket)).filter(|o| text(&o.stdout) == "VI_51 FAULT\n")
    });
    assert!(!out.status.success(), "FAULT and status --brief exits 0");
    assert!(text(&out.stderr).contains("in FAULT: VI_51"), "{}", text(&out.stderr));
    assert!(!holds(&ns, VIP));
    // A FAULT is an election outcome, not a broken agent: the liveness and readiness probes stay up.
    assert_eq!(probe_answer(&ns, "/healthz"), 200);
    assert_eq!(probe_answer(&ns, "/readyz"), 200);

    std::fs::write(&healthy, "").unwrap();
    let out = wait_for("status --brief to answer MASTER again", T, || {
        Some(brief(&ns, &socket)).filter(|o| text(&o.stdout) == "VI_51 MASTER\n")
    });
    assert!(
        out.status.success(),
        "recovered: {:?} {}",
        out.status,
        text(&out.stderr)
    );
}

/// Stops one thread of `pid` (its main thread, `tid == pid`: the election loop) under ptrace; the
/// process's other threads go on. Dropping it lets the thread run again.
struct ThreadStop(libc::pid_t);

impl ThreadStop {
    fn new(tid: libc::pid_t) -> ThreadStop {
        // SAFETY: plain ptrace/waitpid syscalls on our own child; every result is checked.
        unsafe {
            assert_eq!(
                libc::ptrace(libc::PTRACE_SEIZE, tid, 0, 0),
                0,
                "PTRACE_SEIZE: {}",
                std::io::Error::last_os_error()
            );
            assert_eq!(libc::ptrace(libc::PTRACE_INTERRUPT, tid, 0, 0), 0, "PTRACE_INTERRUPT");
            let mut status = 0;
            assert_eq!(libc::waitpid(tid, &mut status, libc::__WALL), tid, "waitpid");
            assert!(libc::WIFSTOPPED(status), "the thread did not stop: {status:#x}");
        }
        ThreadStop(tid)
    }
}

impl Drop for ThreadStop {
    fn drop(&mut self) {
        // SAFETY: detaching a tracee we seized; a failure leaves it to die with the test's Proc.
        unsafe { libc::ptrace(libc::PTRACE_DETACH, self.0, 0, 0) };
    }
}

#[test]
fn healthz_fails_while_the_election_loop_is_stopped_and_readyz_until_started() {
    ipf_testbed::skip_unless_root!();
    // No IPv4 address yet: the agent waits (up to 10 s) for one to advertise from before it
    // starts its instances.
    let (_switch, ns) = node("ph", &[]);
    let dir = TempDir::new("ipf-probes");
    let socket = dir.path().join("a.sock");
    let a = agent(&ns, &socket, &[], "");
    let starting = wait_for("the metrics endpoint", T, || probe(&ns, "/readyz"));
    assert_eq!(starting, 503, "/readyz before the instances started");
    ns.ip(&["addr", "add", "192.0.2.1/24", "dev", "eth0"]);
    wait_for("/readyz once started", T, || {
        (probe(&ns, "/readyz") == Some(200)).then_some(())
    });
    wait_for("/healthz", T, || (probe(&ns, "/healthz") == Some(200)).then_some(()));
    wait_for("VI_51 MASTER", T, || holds(&ns, VIP).then_some(()));

    // The loop's thread stops; the metrics thread answers on. The loop beats every second and
    // /healthz allows 5 s without a beat.
    let stopped = ThreadStop::new(a.pid());
    let t0 = Instant::now();
    assert_eq!(probe_answer(&ns, "/healthz"), 200, "a beat within the last 5 s");
    wait_for("/healthz to fail", T, || {
        (probe(&ns, "/healthz") == Some(503)).then_some(())
    });
    let failed_after = t0.elapsed();
    eprintln!("/healthz failed {failed_after:?} after the loop stopped");
    assert!(
        failed_after > Duration::from_secs(3),
        "failed after {failed_after:?}: sooner than the 5 s the loop is allowed (less its last beat's age)"
    );
    assert_eq!(
        probe_answer(&ns, "/readyz"),
        200,
        "readiness is about start-up, not the loop"
    );
    drop(stopped);
    wait_for("/healthz to recover", T, || {
        (probe(&ns, "/healthz") == Some(200)).then_some(())
    });
    assert!(holds(&ns, VIP));
}

/// A SIGTERM while the agent is still starting (here: waiting for an address to advertise from,
/// with its XDP program already attached) is a graceful stop once start-up is over: the agent
/// exits 0 and leaves no program and no VIP behind (it used to die of the signal, program
/// attached).
#[test]
fn sigterm_during_start_up_leaves_nothing_behind() {
    ipf_testbed::skip_unless_root!();
    let (_switch, ns) = node("pt", &[]);
    let dir = TempDir::new("ipf-early");
    let mut a = agent(&ns, &dir.path().join("a.sock"), &[], "");
    wait_for("the XDP program", T, || ns.has_xdp("eth0").then_some(()));
    assert_eq!(probe_answer(&ns, "/readyz"), 503, "still starting");
    a.signal(libc::SIGTERM);
    ns.ip(&["addr", "add", "192.0.2.1/24", "dev", "eth0"]);
    let status = a.wait_exit(T);
    assert!(
        status.success(),
        "the agent's exit on a SIGTERM during start-up: {status:?}"
    );
    assert!(!ns.has_xdp("eth0"), "the XDP program stayed attached");
    assert!(!holds(&ns, VIP));
}
