//! The image under podman + runc, run exactly as the rendered DaemonSet says (tests/src/container.rs
//! reads the pod spec from `kubectl kustomize deploy/base`), in three node namespaces on a bridge with
//! a real keepalived as a fourth peer: elections, the manifest's probes, `podman kill` → takeover,
//! `podman stop` → priority-0 release within terminationGracePeriodSeconds, nothing left on a node
//! after removal; the runtime's default seccomp profile and a missing capability give the clear
//! error; a rolling update as the strategy allows keeps exactly one VIP holder (sampled throughout).
//! Needs root, podman and the image (`IPF_IMAGE_ARCHIVE`, set by `cargo xtask test`); skips with a
//! message otherwise.
#![allow(clippy::unwrap_used, reason = "tests")]

use std::{
    collections::BTreeMap,
    net::IpAddr,
    path::PathBuf,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use ipf_testbed::{
    Keepalived, Netns, Switch, TempDir, addresses, fetch_name, http_get, keepalived_conf, keepalived_instance,
    spawn_responder, unique, wait_for,
};
use ipf_tests::{
    agent_bin,
    container::{Container, LoadedImage, Node, Overrides, PodSpec, podman_available},
    holders::{Holders, Step},
};

const VIP: &str = "192.0.2.100";
const PORT: u16 = 8080;
const T: Duration = Duration::from_secs(20);

/// The image, or why the test cannot run here.
fn image() -> Option<PathBuf> {
    if !ipf_testbed::is_root() {
        eprintln!(
            "skipped: the container tests need root (network namespaces, podman); `sudo -E cargo xtask test` runs them"
        );
        return None;
    }
    if !podman_available() {
        eprintln!("skipping: podman is not installed (`cargo xtask setup` installs it)");
        return None;
    }
    match std::env::var_os("IPF_IMAGE_ARCHIVE") {
        Some(p) => Some(p.into()),
        None => {
            eprintln!("skipping: IPF_IMAGE_ARCHIVE is unset (`cargo xtask test` builds the image and sets it)");
            None
        }
    }
}

struct Cluster {
    switch: Switch,
    nodes: Vec<(String, String, Netns, TempDir)>,
}

impl Cluster {
    /// `n` node namespaces with eth0 on one bridge at 192.0.2.11.., each serving its name on PORT.
    fn new(tag: &str, n: usize) -> (Self, Vec<ipf_testbed::Proc>) {
        let switch = Switch::new(&format!("ipf-{tag}s"));
        let mut nodes = Vec::new();
        let mut responders = Vec::new();
        for i in 0..n {
            let ns = Netns::new(&format!("ipf-{tag}{i}"));
            let ip = format!("192.0.2.{}", 11 + i);
            switch.attach(&ns, "eth0", &[&format!("{ip}/24")], &format!("p{i}"));
            responders.push(spawn_responder(&ns, PORT, &format!("node{i}")));
            nodes.push((format!("node{i}"), ip, ns, TempDir::new(&format!("ipf-{tag}root{i}"))));
        }
        (Cluster { switch, nodes }, responders)
    }

    fn node(&self, i: usize) -> Node<'_> {
        let (name, ip, ns, root) = &self.nodes[i];
        Node {
            name,
            ip,
            netns: &ns.name,
            host_root: root.path(),
        }
    }

    fn ns(&self, i: usize) -> &Netns {
        &self.nodes[i].2
    }

    fn holders(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|i| addresses(self.ns(*i), "eth0").iter().any(|a| a == VIP))
            .collect()
    }

    fn ip(&self, i: usize) -> IpAddr {
        self.nodes[i].1.parse().unwrap()
    }
}

fn probe_ok(c: &Cluster, i: usize, (path, port): &(String, u16)) -> bool {
    http_get(c.ns(i), c.ip(i), *port, path).is_some_and(|(status, _)| status == 200)
}

/// The OpenShift front end's priority of each node for VRID 51 (OPENSHIFT_HA_VRRP_ID_OFFSET=50).
fn priorities(c: &Cluster, vrid: u8) -> Vec<u8> {
    (0..c.nodes.len())
        .map(|i| ipf_agent::config::openshift::priority(vrid, c.ip(i)))
        .collect()
}

fn vrid(spec: &PodSpec) -> u8 {
    let offset: u8 = spec.env["OPENSHIFT_HA_VRRP_ID_OFFSET"].parse().unwrap();
    offset + 1
}

fn by_priority(p: &[u8]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..p.len()).collect();
    order.sort_by_key(|i| std::cmp::Reverse(p[*i]));
    order
}

fn status_socket(c: &Cluster, i: usize) -> PathBuf {
    c.nodes[i].3.path().join("run/ipf/ipf-agent.sock")
}

#[test]
fn manifest_pods_elect_probe_fail_over_and_leave_nothing() {
    let Some(archive) = image() else { return };
    let spec = PodSpec::rendered("base");
    let image = LoadedImage::load(&archive, &unique("t"));
    let (cluster, _responders) = Cluster::new("ct", 3);
    let vrid = vrid(&spec);
    let prio = priorities(&cluster, vrid);
    let order = by_priority(&prio);
    let lowest = prio.iter().copied().min().unwrap();
    assert!(lowest > 1, "keepalived needs a priority below every ipf node: {prio:?}");

    let containers: Vec<Container> = (0..3)
        .map(|i| {
            Container::run(
                &unique("ipf-ct"),
                &image.reference,
                &spec,
                &cluster.node(i),
                &Overrides::default(),
            )
        })
        .collect();
    // The startup probe's budget is periodSeconds × failureThreshold (60 s); far less is needed.
    for i in 0..3 {
        wait_for(&format!("node{i}'s startup probe"), T, || {
            probe_ok(&cluster, i, &spec.startup).then_some(())
        });
    }
    let master = order[0];
    wait_for("the highest-priority node to hold the VIP alone", T, || {
        (cluster.holders() == vec![master]).then_some(())
    });
    // The fourth peer joins a running domain (with preempt_delay 300 the ipf nodes would not take the
    // VIP back from an early keepalived master): keepalived as the ipfailover image ran it (VRRPv2,
    // PASS = the config name), below every ipf node.
    let k_ns = Netns::new("ipf-ctk");
    // Who holds the VIP, sampled from here on (keepalived's node has no eth0 until it joins).
    let labels = ["node0", "node1", "node2"];
    let sampled = Holders::start(
        VIP,
        &[
            (labels[0], cluster.ns(0), "eth0"),
            (labels[1], cluster.ns(1), "eth0"),
            (labels[2], cluster.ns(2), "eth0"),
            ("keepalived", &k_ns, "eth0"),
        ],
    );
    // The manifest keeps the images' default 1 s adverts.
    let step = Step::at(Duration::from_secs(1));
    // The others started with it and must keep hearing it.
    sampled.wait_owner(labels[master], Step::joining(Duration::from_secs(1)));
    cluster.switch.attach(&k_ns, "eth0", &["192.0.2.14/24"], "pk");
    let pass = &spec.env["OPENSHIFT_HA_CONFIG_NAME"];
    let keepalived = Keepalived::start(
        &k_ns,
        &keepalived_conf(
            2,
            &[keepalived_instance(
                "VI_K",
                vrid,
                lowest - 1,
                "1",
                &format!("  authentication {{\n    auth_type PASS\n    auth_pass {pass}\n  }}"),
                &[&format!("{VIP}/24")],
            )],
        ),
    );

    for (i, container) in containers.iter().enumerate() {
        assert!(probe_ok(&cluster, i, &spec.readiness), "node{i} readiness");
        assert!(probe_ok(&cluster, i, &spec.liveness), "node{i} liveness");
        let logs = container.logs();
        assert!(
            !logs.contains('\u{1b}'),
            "node{i}: escape sequences in the container's log:\n{logs}"
        );
        assert!(
            logs.contains("datapath: XDP attached"),
            "node{i}: the manifest's privileges allow XDP:\n{logs}"
        );
        assert!(cluster.ns(i).has_xdp("eth0"), "node{i}: XDP attached");
    }
    wait_for("keepalived to be BACKUP", T, || {
        let p = &keepalived.proc;
        p.lines()
            .iter()
            .chain(p.stderr_lines().iter())
            .any(|l| l.contains("Entering BACKUP STATE"))
            .then_some(())
    });
    // `ipf-agent status` from the node, through the hostPath socket.
    let out = std::process::Command::new(agent_bin())
        .args(["status", "--brief", "--socket"])
        .arg(status_socket(&cluster, master))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "status from the node: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("MASTER"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    // podman kill: the next node by priority takes over; the killed node keeps nothing.
    containers[master].kill();
    let second = order[1];
    wait_for("the second node to take over after podman kill", T, || {
        (cluster.holders() == vec![second]).then_some(())
    });
    sampled.wait_owner(labels[second], Step::after_kill(Duration::from_secs(1)));
    // The killed agent's XDP program outlives it by design (datapath/attach.rs: no RCU grace period
    // under rtnl_mutex when an agent dies) until the next agent or `ipf-agent cleanup` removes it.
    assert!(cluster.ns(master).has_xdp("eth0"), "XDP gone after podman kill");
    cleanup_xdp(cluster.ns(master));
    assert!(!cluster.ns(master).has_xdp("eth0"), "XDP left after cleanup");
    assert!(
        fetch_name(cluster.ns(order[2]), VIP.parse().unwrap(), PORT).as_deref() == Some(&format!("node{second}")),
        "the VIP reaches the new master"
    );

    // podman stop: SIGTERM → priority 0, VIPs removed, exit 0 within the grace period; the third
    // node takes over at once (Skew_Time, not Master_Down_Interval).
    let took = containers[second].stop();
    assert!(took < spec.grace, "podman stop took {took:?}, grace {:?}", spec.grace);
    let (running, code, _) = containers[second].state();
    assert!(
        !running && code == 0,
        "stopped agent: running {running}, exit code {code}"
    );
    assert!(
        !cluster.holders().contains(&second),
        "the stopped node still holds the VIP"
    );
    assert!(!cluster.ns(second).has_xdp("eth0"), "XDP left after podman stop");
    let third = order[2];
    let stopped_at = Instant::now();
    wait_for("the third node to take over after priority 0", T, || {
        (cluster.holders() == vec![third]).then_some(())
    });
    assert!(
        stopped_at.elapsed() < Duration::from_secs(3),
        "takeover after priority 0 took {:?} (a Master_Down_Interval is 3 s and more)",
        stopped_at.elapsed()
    );
    sampled.wait_owner(labels[third], step);

    // Removal: keepalived, the last peer, takes the VIP; no node keeps an address or a program.
    for c in containers {
        c.remove();
    }
    sampled.wait_owner("keepalived", step);
    drop(sampled);
    // `podman rm -f` kills the last running agent: its program stays until cleanup (cleanup_xdp).
    for k in 0..3 {
        cleanup_xdp(cluster.ns(k));
    }
    wait_for("every node to be clean", Duration::from_secs(10), || {
        (cluster.holders().is_empty() && (0..3).all(|i| !cluster.ns(i).has_xdp("eth0"))).then_some(())
    });
}

#[test]
fn runtime_default_seccomp_gives_the_clear_error_and_the_raw_socket_path() {
    let Some(archive) = image() else { return };
    let spec = PodSpec::rendered("base");
    let image = LoadedImage::load(&archive, &unique("t"));
    let (cluster, _responders) = Cluster::new("cs", 1);
    let c = Container::run(
        &unique("ipf-cs"),
        &image.reference,
        &spec,
        &cluster.node(0),
        &Overrides {
            runtime_default_seccomp: true,
            ..Overrides::default()
        },
    );
    // Alone, it becomes master on the raw-socket path: working, not crash-looping.
    wait_for("the agent to hold the VIP on the raw-socket path", T, || {
        (cluster.holders() == vec![0]).then_some(())
    });
    assert!(probe_ok(&cluster, 0, &spec.readiness));
    let logs = c.logs();
    assert!(
        logs.contains("bpf() is blocked by the container's seccomp profile") && logs.contains("seccompProfile"),
        "the log names the seccomp cause and the fix:\n{logs}"
    );
    assert!(logs.contains("using the raw-socket receive path"), "{logs}");
    assert!(!logs.contains("Operation not permitted"), "no bare EPERM:\n{logs}");
    let (running, _, restarts) = c.state();
    assert!(running && restarts == 0, "running {running}, restarts {restarts}");
    assert!(!cluster.ns(0).has_xdp("eth0"));
    let took = c.stop();
    assert!(took < spec.grace);
    assert!(cluster.holders().is_empty(), "VIP left after stop");
}

#[test]
fn a_missing_capability_exits_non_zero_naming_it_before_touching_the_node() {
    let Some(archive) = image() else { return };
    let mut spec = PodSpec::rendered("base");
    spec.cap_add.retain(|c| c != "NET_RAW");
    let image = LoadedImage::load(&archive, &unique("t"));
    let (cluster, _responders) = Cluster::new("cc", 1);
    // A stale VIP as a crash would leave it: the agent must not even clean it up without privileges.
    cluster.ns(0).ip(&["addr", "add", &format!("{VIP}/32"), "dev", "eth0"]);
    let c = Container::run(
        &unique("ipf-cc"),
        &image.reference,
        &spec,
        &cluster.node(0),
        &Overrides::default(),
    );
    let code = wait_for("the agent to exit", T, || {
        let (running, code, _) = c.state();
        (!running).then_some(code)
    });
    assert_ne!(code, 0);
    let logs = c.logs();
    assert!(
        logs.contains("needs CAP_NET_RAW") && logs.contains("add NET_RAW to securityContext.capabilities.add"),
        "{logs}"
    );
    assert_eq!(cluster.holders(), vec![0], "the address was left alone");
    assert!(!cluster.ns(0).has_xdp("eth0"));
}

/// A rolling update as the DaemonSet's strategy allows it, one node at a time. The shared sampler
/// watches the VIP's holders throughout (never two at once beyond a handover; after each step one
/// node holds it alone for a few advert intervals); a client fetches the VIP all
/// along: at most one outage per step (the failover when the master's node is updated).
#[test]
fn rolling_update_one_node_at_a_time_keeps_one_holder() {
    let Some(archive) = image() else { return };
    let spec = PodSpec::rendered("base");
    let image = LoadedImage::load(&archive, &unique("t"));
    let (cluster, _responders) = Cluster::new("cr", 3);
    let client = Netns::new("ipf-crc");
    cluster.switch.attach(&client, "eth0", &["192.0.2.50/24"], "pc");
    // The manifest keeps the images' default 1 s adverts.
    let step = Step::at(Duration::from_secs(1));
    let labels: Vec<String> = (0..3).map(|i| format!("node{i}")).collect();
    let sampled = Holders::start(
        VIP,
        &(0..3)
            .map(|i| (labels[i].as_str(), cluster.ns(i), "eth0"))
            .collect::<Vec<_>>(),
    );
    let top = &labels[by_priority(&priorities(&cluster, vrid(&spec)))[0]];
    let names: Vec<String> = (0..3).map(|_| unique("ipf-cr")).collect();
    let mut containers: BTreeMap<usize, Container> = (0..3)
        .map(|i| {
            (
                i,
                Container::run(
                    &names[i],
                    &image.reference,
                    &spec,
                    &cluster.node(i),
                    &Overrides::default(),
                ),
            )
        })
        .collect();
    for i in 0..3 {
        wait_for("readiness", T, || probe_ok(&cluster, i, &spec.readiness).then_some(()));
    }
    sampled.wait_owner(top, step);

    // (time, the client reached the VIP)
    let reached = Arc::new(Mutex::new(Vec::<(Instant, bool)>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let fetcher = {
        let (reached, stop) = (reached.clone(), stop.clone());
        let client = client.name.clone();
        std::thread::spawn(move || {
            let client_ns = Netns { name: client };
            while !stop.load(Ordering::Relaxed) {
                let ok = fetch_name(&client_ns, VIP.parse().unwrap(), PORT).is_some();
                reached.lock().unwrap().push((Instant::now(), ok));
            }
            // The client namespace is owned by the test, not by this copy of its name.
            std::mem::forget(client_ns);
        })
    };

    // The DaemonSet controller's order does not matter; one node at a time, each waited for until
    // ready and then minReadySeconds.
    let mut steps = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let begin = Instant::now();
        let old = containers.remove(&i).unwrap();
        let took = old.stop();
        assert!(took < spec.grace, "stop took {took:?}");
        old.remove();
        let new = Container::run(name, &image.reference, &spec, &cluster.node(i), &Overrides::default());
        wait_for("the new pod's readiness", T, || {
            probe_ok(&cluster, i, &spec.readiness).then_some(())
        });
        let ready = Instant::now();
        wait_for("minReadySeconds", spec.min_ready + Duration::from_secs(1), || {
            (ready.elapsed() >= spec.min_ready).then_some(())
        });
        containers.insert(i, new);
        // Whoever took over keeps the VIP: the manifest's preempt_delay keeps the returning node
        // from taking it back.
        let (_, samples) = sampled.wait_single_owner(step);
        let alone: Duration = samples
            .windows(2)
            .filter(|w| w[0].holders[0].len() != 1)
            .map(|w| w[1].at - w[0].at)
            .sum();
        steps.push((begin, Instant::now(), alone));
    }
    stop.store(true, Ordering::Relaxed);
    fetcher.join().unwrap();
    let reached = reached.lock().unwrap();
    assert!(reached.len() > 50, "{} samples", reached.len());
    for (k, (begin, end, without_holder)) in steps.iter().enumerate() {
        let window: Vec<&(Instant, bool)> = reached.iter().filter(|(t, _)| t >= begin && t <= end).collect();
        // An outage is a run of fetches that failed.
        let outages = window.windows(2).filter(|w| w[0].1 && !w[1].1).count();
        let down: Duration = window.windows(2).filter(|w| !w[0].1).map(|w| w[1].0 - w[0].0).sum();
        println!(
            "rolling update step {k} (node{k}): {:?}, {} fetches, {outages} outage(s), {down:?} unreachable, \
             {without_holder:?} without a single holder",
            *end - *begin,
            window.len()
        );
        assert!(outages <= 1, "step {k}: {outages} outages");
        assert!(window.last().unwrap().1, "step {k} ends with the VIP reachable");
    }
    drop(sampled);
    drop(containers);
    // Containers removed by force leave their program, as a crash does (see cleanup_xdp).
    for k in 0..3 {
        cleanup_xdp(cluster.ns(k));
    }
    wait_for("every node to be clean", Duration::from_secs(10), || {
        (cluster.holders().is_empty() && (0..3).all(|i| !cluster.ns(i).has_xdp("eth0"))).then_some(())
    });
}

/// The datapath part of `ipf-agent cleanup` on a node: a killed agent's XDP program outlives it by
/// design until the next agent replaces it or cleanup removes it.
fn cleanup_xdp(ns: &Netns) {
    ipf_testbed::in_netns(ns, || {
        let ifindex = ipf_agent::datapath::interface_index("eth0").unwrap();
        ipf_agent::datapath::attach::remove_ours(ifindex).unwrap();
    });
}
