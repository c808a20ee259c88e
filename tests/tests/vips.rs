//! Where VIPs go, end to end with ipf-agents in namespaces: a VIP with `dev` lands on that device
//! (keepalived.conf and the arcts/keepalived environment) and moves with the election; excluded VIPs
//! are owned like VIPs but not advertised; more than 20 VIPs are all owned and advertised, and
//! keepalived with the same 25 keeps one master with ipf either way round;
//! the VRRP interface itself going down means FAULT (VIPs released, status, notify) and coming back
//! up means BACKUP and MASTER again. Adverts are checked on the wire. Needs root.
#![allow(clippy::unwrap_used, reason = "tests")]

use std::{net::Ipv4Addr, path::Path, time::Duration};

use ipf_testbed::{Netns, Proc, Switch, TempDir, addresses, wait_for};
use ipf_tests::{
    agent_bin, agent_status,
    node::{holds_all_none, holds_on, logged_at, nodes_on_a_bridge, read_lines, write_script},
    trace::{Capture, Frame, Seen, mac_of, ms, now_ns},
};

const T: Duration = Duration::from_secs(20);

fn run(ns: &Netns, args: &[&str], env: &[(&str, String)]) -> Proc {
    let mut cmd = ns.command(agent_bin());
    cmd.args(["run", "--status-socket", "off", "--metrics-addr", "off"])
        .args(args);
    cmd.envs(env.iter().map(|(k, v)| (*k, v.as_str())));
    Proc::spawn("ipf-agent", cmd)
}

fn run_conf(ns: &Netns, conf: &Path, text: &str) -> Proc {
    std::fs::write(conf, text).unwrap();
    run(ns, &["--config", conf.to_str().unwrap()], &[])
}

fn strings(addrs: impl IntoIterator<Item = Ipv4Addr>) -> Vec<String> {
    addrs.into_iter().map(|a| a.to_string()).collect()
}

/// The address lists of the adverts `src` sent while the capture ran, waiting for at least `n`.
fn adverts_from(cap: &Capture, src: &str, n: usize) -> Vec<Vec<Ipv4Addr>> {
    wait_for(&format!("{n} adverts from {src} on the wire"), T, || {
        let lists: Vec<Vec<Ipv4Addr>> = cap
            .between(0, now_ns())
            .into_iter()
            .filter_map(|f| match f.seen {
                Seen::Vrrp {
                    src: s,
                    priority,
                    addrs,
                } if s.to_string() == src && priority > 0 => Some(addrs),
                _ => None,
            })
            .collect();
        (lists.len() >= n).then_some(lists)
    })
}

/// Whether a gratuitous ARP for `vip` from `mac` was captured.
fn garp_seen(cap: &Capture, vip: &str, mac: [u8; 6]) -> bool {
    cap.between(0, now_ns()).iter().any(|f: &Frame| {
        matches!(f.seen, Seen::Arp { sha, spa, tpa, .. } if sha == mac && spa == tpa && spa.to_string() == vip)
    })
}

/// keepalived.conf's `dev` for A, the arcts image's `KEEPALIVED_VIRTUAL_IPADDRESS_<n>` for B: the
/// address goes on the named device, is announced there, and moves with the election; the VRRP
/// interface keeps only its own VIP.
#[test]
fn a_vip_with_dev_lands_on_that_device_and_moves_with_the_election() {
    ipf_testbed::skip_unless_root!();
    let (_switch, nodes) = nodes_on_a_bridge("vd", 2);
    let (a_ns, b_ns) = (&nodes[0], &nodes[1]);
    // A second segment: both nodes' eth1 and a listener.
    let other = Switch::new("ipf-vdo");
    other.attach(a_ns, "eth1", &["198.51.100.1/24"], "q0");
    other.attach(b_ns, "eth1", &["198.51.100.2/24"], "q1");
    let listener = Netns::new("ipf-vdl");
    other.attach(&listener, "eth0", &["198.51.100.9/24"], "q2");
    let cap = Capture::start(&listener, "eth0");
    let (vip, far) = ("192.0.2.100", "198.51.100.100");

    let dir = TempDir::new("ipf-dev");
    // The arcts image speaks VRRPv2 with PASS `pwd<VRID>` at whole seconds; A matches it.
    let conf = "vrrp_instance VI_51 {\n  state MASTER\n  interface eth0\n  virtual_router_id 51\n  priority 150\n  advert_int 1\n  authentication {\n    auth_type PASS\n    auth_pass pwd51\n  }\n  virtual_ipaddress {\n    192.0.2.100/24\n    198.51.100.100/24 dev eth1\n  }\n}\n";
    let mut a = run_conf(a_ns, &dir.path().join("keepalived.conf"), conf);
    wait_for("A to hold both VIPs, each on its device", T, || {
        (holds_on(a_ns, "eth0", vip) && holds_on(a_ns, "eth1", far)).then_some(())
    });
    assert!(
        !holds_on(a_ns, "eth0", far),
        "{far} on A's eth0: {:?}",
        addresses(a_ns, "eth0")
    );
    assert!(!holds_on(a_ns, "eth1", vip), "{vip} on A's eth1");
    wait_for("A's gratuitous ARP for the far VIP on eth1's segment", T, || {
        garp_seen(&cap, far, mac_of(a_ns, "eth1")).then_some(())
    });
    // The lease (2 s at 1 s adverts) is renewed on eth1 too: no gap for longer than one lease.
    sample_every_50ms(Duration::from_millis(2500), || {
        assert!(holds_on(a_ns, "eth1", far), "{far} left A's eth1 while A is Master");
    });

    let env = [
        ("KEEPALIVED_INTERFACE", "eth0".to_owned()),
        ("KEEPALIVED_STATE", "BACKUP".to_owned()),
        ("KEEPALIVED_PRIORITY", "100".to_owned()),
        ("KEEPALIVED_VIRTUAL_ROUTER_ID", "51".to_owned()),
        ("KEEPALIVED_VIRTUAL_IPADDRESS_1", "192.0.2.100/24".to_owned()),
        (
            "KEEPALIVED_VIRTUAL_IPADDRESS_2",
            "198.51.100.100/24 dev eth1".to_owned(),
        ),
    ];
    let b = run(b_ns, &[], &env);
    // The arcts image's instance is called MAIN.
    wait_for("B to run as BACKUP", T, || {
        b.stderr_lines()
            .iter()
            .any(|l| l.contains("(MAIN) Entering BACKUP STATE"))
            .then_some(())
    });
    // A stops gracefully (priority 0): B takes both, each on its device; A keeps neither.
    a.signal(libc::SIGTERM);
    assert!(a.wait_exit(Duration::from_secs(2)).success());
    assert!(
        !holds_on(a_ns, "eth0", vip) && !holds_on(a_ns, "eth1", far),
        "A kept a VIP"
    );
    wait_for("B to hold both VIPs, each on its device", T, || {
        (holds_on(b_ns, "eth0", vip) && holds_on(b_ns, "eth1", far)).then_some(())
    });
    assert!(!holds_on(b_ns, "eth0", far) && !holds_on(b_ns, "eth1", vip));
    wait_for("B's gratuitous ARP for the far VIP on eth1's segment", T, || {
        garp_seen(&cap, far, mac_of(b_ns, "eth1")).then_some(())
    });
}

/// `virtual_ipaddress_excluded` (keepalived.conf on A, `excluded=` on B): taken and released with
/// the VIPs, announced, but not in the adverts.
#[test]
fn excluded_vips_are_owned_and_moved_but_not_advertised() {
    ipf_testbed::skip_unless_root!();
    let (_switch, nodes) = nodes_on_a_bridge("ve", 3);
    let (a_ns, b_ns) = (&nodes[0], &nodes[1]);
    let cap = Capture::start(&nodes[2], "eth0");
    let owned = ["192.0.2.100", "192.0.2.101", "192.0.2.102"].map(str::to_owned);
    let dir = TempDir::new("ipf-excl");
    let conf = "global_defs {\n  vrrp_version 3\n}\nvrrp_instance VI_51 {\n  interface eth0\n  virtual_router_id 51\n  priority 150\n  advert_int 0.1\n  virtual_ipaddress {\n    192.0.2.100/24\n  }\n  virtual_ipaddress_excluded {\n    192.0.2.101/24\n    192.0.2.102/24\n  }\n}\n";
    let mut a = run_conf(a_ns, &dir.path().join("keepalived.conf"), conf);
    wait_for("A to hold all three", T, || {
        holds_all_none(a_ns, "eth0", &owned).0.then_some(())
    });
    let _b = run(
        b_ns,
        &[
            "-i",
            "eth0",
            "--instance",
            "name=VI_51,vrid=51,priority=100,interval=100,vip=192.0.2.100/24,excluded=192.0.2.101/24,excluded=192.0.2.102/24",
        ],
        &[],
    );
    for list in adverts_from(&cap, "192.0.2.1", 5) {
        assert_eq!(strings(list), ["192.0.2.100"], "A's advert lists an excluded VIP");
    }
    for excluded in &owned[1..] {
        wait_for(&format!("A's gratuitous ARP for {excluded}"), T, || {
            garp_seen(&cap, excluded, mac_of(a_ns, "eth0")).then_some(())
        });
    }
    assert!(holds_all_none(b_ns, "eth0", &owned).1, "B holds a VIP as Backup");

    a.signal(libc::SIGTERM);
    assert!(a.wait_exit(Duration::from_secs(2)).success());
    assert!(
        holds_all_none(a_ns, "eth0", &owned).1,
        "A kept an address: {:?}",
        addresses(a_ns, "eth0")
    );
    wait_for("B to hold all three", T, || {
        holds_all_none(b_ns, "eth0", &owned).0.then_some(())
    });
    for list in adverts_from(&cap, "192.0.2.2", 5) {
        assert_eq!(strings(list), ["192.0.2.100"], "B's advert lists an excluded VIP");
    }
}

/// 25 VIPs: the advert's count field has 8 bits; keepalived 1.x advertised at most 20 (its
/// VRRP_MAX_VIP), keepalived 2 advertises them all, and so does ipf. Every one of the 25 is taken on
/// takeover and dropped on release.
#[test]
fn more_than_twenty_vips_are_all_owned_and_advertised() {
    ipf_testbed::skip_unless_root!();
    let (_switch, nodes) = nodes_on_a_bridge("vm", 3);
    let (a_ns, b_ns) = (&nodes[0], &nodes[1]);
    let cap = Capture::start(&nodes[2], "eth0");
    let owned: Vec<String> = (101..=125).map(|i| format!("192.0.2.{i}")).collect();
    let instance = |priority: u8| {
        let vips: String = owned.iter().map(|v| format!(",vip={v}/24")).collect();
        format!("name=VI_51,vrid=51,priority={priority},interval=100{vips}")
    };
    let mut a = run(a_ns, &["-i", "eth0", "--instance", &instance(150)], &[]);
    wait_for("A to hold all 25", T, || {
        holds_all_none(a_ns, "eth0", &owned).0.then_some(())
    });
    let _b = run(b_ns, &["-i", "eth0", "--instance", &instance(100)], &[]);
    for list in adverts_from(&cap, "192.0.2.1", 5) {
        assert_eq!(strings(list), owned, "A's advert");
    }
    assert!(holds_all_none(b_ns, "eth0", &owned).1, "B holds a VIP as Backup");

    a.signal(libc::SIGTERM);
    assert!(a.wait_exit(Duration::from_secs(2)).success());
    let left: Vec<String> = addresses(a_ns, "eth0")
        .into_iter()
        .filter(|x| owned.contains(x))
        .collect();
    assert!(left.is_empty(), "A kept {left:?}");
    wait_for("B to hold all 25", T, || {
        holds_all_none(b_ns, "eth0", &owned).0.then_some(())
    });
    for list in adverts_from(&cap, "192.0.2.2", 5) {
        assert_eq!(strings(list), owned, "B's advert");
    }
}

/// The VRRP interface is always tracked: `ip link set eth0 down` on the Master releases its VIP,
/// shows FAULT in status and runs the FAULT notify; B takes over. Up again: BACKUP, then MASTER
/// (A preempts), VIP back.
#[test]
fn the_vrrp_interface_going_down_means_fault_and_coming_up_recovers() {
    ipf_testbed::skip_unless_root!();
    let (_switch, nodes) = nodes_on_a_bridge("vf", 2);
    let (a_ns, b_ns) = (&nodes[0], &nodes[1]);
    let vip = "192.0.2.100";
    let dir = TempDir::new("ipf-ifdown");
    let log = dir.path().join("notify.log");
    let notify = dir.path().join("notify.sh");
    write_script(&notify, &format!("echo \"$*\" >> {}\n", log.display()));
    let socket = dir.path().join("status.sock");
    let instance = |priority: u8| format!("name=VI_51,vrid=51,priority={priority},interval=100,vip={vip}/24");
    let mut cmd = a_ns.command(agent_bin());
    cmd.args(["run", "-i", "eth0", "--metrics-addr", "off", "--status-socket"])
        .arg(&socket)
        .args(["--notify", notify.to_str().unwrap(), "--instance", &instance(150)]);
    let a = Proc::spawn("ipf-agent", cmd);
    let _b = run(b_ns, &["-i", "eth0", "--instance", &instance(100)], &[]);
    let state = || {
        agent_status(a_ns, &socket)
            .first()
            .and_then(|i| i["state"].as_str().map(str::to_owned))
    };
    wait_for("A to master the VIP", T, || {
        (holds_on(a_ns, "eth0", vip) && !holds_on(b_ns, "eth0", vip) && state().as_deref() == Some("MASTER"))
            .then_some(())
    });

    let down = now_ns();
    a_ns.ip(&["link", "set", "eth0", "down"]);
    wait_for("A in FAULT without the VIP", T, || {
        (state().as_deref() == Some("FAULT") && !holds_on(a_ns, "eth0", vip)).then_some(())
    });
    wait_for("B to take the VIP", T, || holds_on(b_ns, "eth0", vip).then_some(()));
    // From the kernel's link event, not a poll: within a few advert intervals.
    let fault = logged_at(&a, "(VI_51) Entering FAULT STATE").unwrap();
    assert!(
        ms(down, fault) < 300.0,
        "FAULT {:.0} ms after the link went down",
        ms(down, fault)
    );

    a_ns.ip(&["link", "set", "eth0", "up"]);
    wait_for("A to master the VIP again", T, || {
        (holds_on(a_ns, "eth0", vip) && !holds_on(b_ns, "eth0", vip) && state().as_deref() == Some("MASTER"))
            .then_some(())
    });
    let expected = [
        "INSTANCE VI_51 BACKUP 150",
        "INSTANCE VI_51 MASTER 150",
        "INSTANCE VI_51 FAULT 150",
        "INSTANCE VI_51 BACKUP 150",
        "INSTANCE VI_51 MASTER 150",
    ];
    let lines = wait_for("every notify call", T, || {
        let lines = read_lines(&log);
        (lines.len() >= expected.len()).then_some(lines)
    });
    assert_eq!(lines, expected, "notify calls");
}

/// Runs `check` every 50 ms for `span` (a property that must hold throughout, not eventually).
fn sample_every_50ms(span: Duration, mut check: impl FnMut()) {
    let end = std::time::Instant::now() + span;
    let mut next = std::time::Instant::now();
    while next < end {
        check();
        next += Duration::from_millis(50);
        std::thread::sleep(next.saturating_duration_since(std::time::Instant::now()));
    }
}

/// None of `addrs` is ever on `ns`'s eth0 during `span` (sampled every 50 ms).
fn never_holds(ns: &Netns, addrs: &[String], span: Duration, who: &str) {
    sample_every_50ms(span, || {
        let held: Vec<String> = addresses(ns, "eth0")
            .into_iter()
            .filter(|a| addrs.contains(a))
            .collect();
        assert!(held.is_empty(), "{who} took {held:?} beside the master");
    });
}

/// keepalived 2 as a Backup checks the advert's address list against its own configuration and
/// treats a master with another list as none: an ipf Master with 25 VIPs must list all 25, or the
/// keepalived Backup takes over beside it. And an ipf Backup hears a keepalived Master with 25.
#[test]
fn twenty_five_vips_against_keepalived_keep_one_master() {
    ipf_testbed::skip_unless_root!();
    let (_switch, nodes) = nodes_on_a_bridge("vk", 2);
    let (a_ns, k_ns) = (&nodes[0], &nodes[1]);
    let owned: Vec<String> = (101..=125).map(|i| format!("192.0.2.{i}")).collect();
    let with_prefix: Vec<String> = owned.iter().map(|v| format!("{v}/24")).collect();
    let refs: Vec<&str> = with_prefix.iter().map(String::as_str).collect();
    let instance = |priority: u8| {
        let vips: String = with_prefix.iter().map(|v| format!(",vip={v}")).collect();
        format!("name=VI_51,vrid=51,priority={priority},interval=100{vips}")
    };
    let mut a = run(a_ns, &["-i", "eth0", "--instance", &instance(150)], &[]);
    wait_for("ipf to hold all 25", T, || {
        holds_all_none(a_ns, "eth0", &owned).0.then_some(())
    });
    let _k = ipf_testbed::Keepalived::start(
        k_ns,
        &ipf_testbed::keepalived_conf(
            3,
            &[ipf_testbed::keepalived_instance("VI_51", 51, 100, "0.1", "", &refs)],
        ),
    );
    // keepalived's Master_Down_Interval is 0.36 s: a second is three of them.
    never_holds(k_ns, &owned, Duration::from_secs(1), "the keepalived Backup");
    assert!(holds_all_none(a_ns, "eth0", &owned).0, "ipf lost a VIP");

    a.signal(libc::SIGTERM);
    assert!(a.wait_exit(Duration::from_secs(2)).success());
    wait_for("keepalived to hold all 25", T, || {
        holds_all_none(k_ns, "eth0", &owned).0.then_some(())
    });
    let b = run(a_ns, &["-i", "eth0", "--instance", &instance(50)], &[]);
    wait_for("ipf to run as BACKUP", T, || {
        b.stderr_lines()
            .iter()
            .any(|l| l.contains("(VI_51) Entering BACKUP STATE"))
            .then_some(())
    });
    never_holds(a_ns, &owned, Duration::from_secs(1), "the ipf Backup");
}
