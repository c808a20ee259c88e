//! ipf's keepalived.conf rendering (`keepalived_conf::render`) checked by the real keepalived:
//! `keepalived -t -f FILE` accepts what ipf writes for an OPENSHIFT_HA-like configuration, an IPv6
//! VRRPv3 one, a unicast one with excluded VIPs on a second interface, and the old images' files parsed
//! and written back; and rejects a broken file, so the check can fail. Needs root (namespaces).
//!
//! What `keepalived -t` (2.2.7, Debian's package) needs, found by trying it:
//! - The interfaces the file names must exist: otherwise it prints "Non-existent interface specified in
//!   configuration" and exits non-zero. So the files are checked inside a namespace that has eth0 and
//!   eth1 (a veth pair).
//! - Scripts (vrrp_script, notify) need `enable_script_security` and a `script_user` that exists, else
//!   "SECURITY VIOLATION - scripts are being executed but script_security not enabled" and a non-zero
//!   exit; `render` writes both when there are scripts.
//! - A track_interface naming the instance's own interface is an error to it ("Ignoring track_interface
//!   eth0 since own interface"), as is an instance without virtual_ipaddress; the arcts README's files
//!   track their own interface, so they pass only as ipf writes them back (without it).
//! - Exit codes: 0 when the file is valid; for an invalid file 2.2.7 exits 5 whatever the error (a bad
//!   value, an unknown keyword, a missing "}", a missing interface), 6 for the script security
//!   violation. The man page documents 3, 4 and 5 by kind, so the test asserts only non-zero.
#![allow(clippy::unwrap_used, reason = "tests")]

use std::{net::IpAddr, path::Path, time::Duration};

use ipf_agent::{
    config::{
        CheckKind, CheckSpec, Config, Firewall, Garp, InitialState, InstanceSpec, Notify,
        keepalived_conf::{parse, render},
        parse_vip,
    },
    datapath::Family,
    vrrp::Preempt,
};
use ipf_testbed::{Netns, TempDir};

const T: Duration = Duration::from_secs(20);

const ARCTS_MASTER: &str = include_str!("../../ipf-agent/tests/fixtures/keepalived/arcts-master.conf");
const ARCTS_BACKUP: &str = include_str!("../../ipf-agent/tests/fixtures/keepalived/arcts-backup.conf");
const IPFAILOVER: &str = include_str!("../../ipf-agent/tests/fixtures/keepalived/ipfailover.conf");

/// A namespace with the interfaces the configurations name: eth0 and eth1, up.
fn namespace() -> Netns {
    let ns = Netns::new("ipf-kt");
    ns.ip(&["link", "add", "eth0", "type", "veth", "peer", "name", "eth1"]);
    ns.ip(&["addr", "add", "10.0.0.11/24", "dev", "eth0"]);
    ns.ip(&["link", "set", "eth0", "up"]);
    ns.ip(&["link", "set", "eth1", "up"]);
    ns
}

/// Runs `keepalived -t -f FILE` in `ns`; returns whether it accepted the file, and what it printed.
/// A hung keepalived fails the test after `T`; the namespace's drop kills it.
fn keepalived_test(ns: &Netns, file: &Path) -> (bool, String) {
    let mut cmd = ns.command("keepalived");
    cmd.arg("-t").arg("-f").arg(file);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(cmd.output());
    });
    let out = rx
        .recv_timeout(T)
        .unwrap_or_else(|_| panic!("keepalived -t did not finish within {T:?}"))
        .unwrap_or_else(|e| panic!("running keepalived (is it installed?): {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), format!("exit {}: {text}", out.status))
}

fn vip(text: &str) -> ipf_agent::network::Vip {
    parse_vip(text).unwrap()
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

/// What the ipfailover image's environment gives: three VRRPv2 groups with PASS auth, the TCP monitor
/// check, a notify script, multicast, the firewall rule.
fn openshift_like() -> Config {
    let mut cfg = Config {
        checks: vec![CheckSpec {
            name: "chk_ipfailover".into(),
            kind: CheckKind::Tcp(80),
            interval: Duration::from_secs(2),
            timeout: Duration::from_secs(2),
            rise: 1,
            fall: 1,
            weight: 0,
        }],
        firewall: Some(Firewall::Nftables),
        router_id: Some("ipfailover".into()),
        ..Config::default()
    };
    for (k, group) in [
        &["10.0.0.100", "10.0.0.101"][..],
        &["10.0.0.102", "10.0.0.103"],
        &["10.0.0.104"],
    ]
    .iter()
    .enumerate()
    {
        let vrid = 11 + k as u8;
        let mut i = InstanceSpec::new(format!("ipfailover_VIP_{}", k + 1), "eth0", vrid, Family::V4);
        i.priority = 50 + vrid;
        i.preempt = Preempt::Delay(Duration::from_secs(300));
        i.auth_pass = Some("ipfailov".into());
        i.tracks = vec!["chk_ipfailover".into()];
        i.notify.any = Some("/bin/true".into());
        i.vips = group.iter().map(|v| vip(v)).collect();
        cfg.instances.push(i);
    }
    cfg
}

/// IPv6, VRRPv3 at 10 ms, no preemption, a weighted script check, GARP settings.
fn ipv6() -> Config {
    let mut i = InstanceSpec::new("V6", "eth0", 7, Family::V6);
    i.version = 3;
    i.adver_int = Duration::from_millis(10);
    i.preempt = Preempt::No;
    i.priority = 120;
    i.vips = vec![vip("fe80::7/64"), vip("2001:db8::7/64")];
    i.tracks = vec!["chk_api".into()];
    i.garp = Garp {
        repeat: 1,
        delay: Duration::ZERO,
        refresh: Some(Duration::from_secs(30)),
    };
    Config {
        instances: vec![i],
        checks: vec![CheckSpec {
            name: "chk_api".into(),
            kind: CheckKind::Script("/usr/bin/test -e /proc/self".into()),
            interval: Duration::from_secs(3),
            timeout: Duration::from_secs(2),
            rise: 2,
            fall: 10,
            weight: -50,
        }],
        ..Config::default()
    }
}

/// Unicast with a source address, excluded VIPs on eth1, track_interface, every notify, MASTER.
fn unicast() -> Config {
    let mut i = InstanceSpec::new("MAIN", "eth0", 2, Family::V4);
    i.initial_state = InitialState::Master;
    i.priority = 200;
    i.src = Some(ip("10.0.0.11"));
    i.unicast_peers = vec![ip("10.0.0.12"), ip("10.0.0.13")];
    i.auth_pass = Some("pwd2".into());
    i.vips = vec![vip("10.0.0.2/24 brd 10.0.0.255 label eth0:vip")];
    i.excluded = vec![vip("172.16.1.20/24 dev eth1"), vip("172.16.1.21 dev eth1")];
    i.track_interfaces = vec!["eth1".into()];
    i.notify = Notify {
        any: Some("/bin/true".into()),
        master: Some("/bin/echo master".into()),
        backup: Some("/bin/echo backup".into()),
        fault: Some("/bin/echo fault".into()),
        stop: Some("/bin/echo stop".into()),
    };
    Config {
        instances: vec![i],
        router_id: Some("LVS_MAIN".into()),
        ..Config::default()
    }
}

#[test]
fn keepalived_accepts_what_ipf_renders() {
    ipf_testbed::skip_unless_root!();
    let ns = namespace();
    let dir = TempDir::new("ipf-kt");
    let mut cases: Vec<(&str, String)> = vec![
        ("openshift", render(&openshift_like(), Some(ip("10.0.0.11")))),
        ("openshift-no-node", render(&openshift_like(), None)),
        ("ipv6", render(&ipv6(), None)),
        ("unicast", render(&unicast(), None)),
    ];
    for (name, fixture) in [
        ("arcts-master", ARCTS_MASTER),
        ("arcts-backup", ARCTS_BACKUP),
        ("ipfailover", IPFAILOVER),
    ] {
        let cfg = parse(fixture, name).unwrap_or_else(|e| panic!("{e}"));
        cases.push((name, render(&cfg, Some(ip("10.0.0.11")))));
    }
    for (name, text) in &cases {
        let file = dir.path().join(format!("{name}.conf"));
        std::fs::write(&file, text).unwrap();
        let (accepted, output) = keepalived_test(&ns, &file);
        assert!(
            accepted,
            "keepalived -t rejects the {name} rendering:\n{output}\n---\n{text}"
        );
        // And ipf reads its own rendering back.
        parse(text, name).unwrap_or_else(|e| panic!("{e}\n---\n{text}"));
    }
}

#[test]
fn keepalived_rejects_a_broken_file() {
    ipf_testbed::skip_unless_root!();
    let ns = namespace();
    let dir = TempDir::new("ipf-kt");
    let good = render(&unicast(), None);
    let file = dir.path().join("good.conf");
    std::fs::write(&file, &good).unwrap();
    assert!(keepalived_test(&ns, &file).0, "the unbroken file passes");
    for (what, broken) in [
        (
            "a VRID out of range",
            good.replace("virtual_router_id 2", "virtual_router_id 300"),
        ),
        (
            "an unknown keyword",
            good.replace("   priority 200\n", "   priority 200\n   colour blue\n"),
        ),
        ("a missing \"}\"", good.trim_end().trim_end_matches('}').to_owned()),
        (
            "a missing interface",
            good.replace("interface eth0", "interface nosuch0"),
        ),
    ] {
        let file = dir.path().join("broken.conf");
        std::fs::write(&file, &broken).unwrap();
        let (accepted, output) = keepalived_test(&ns, &file);
        assert!(
            !accepted,
            "keepalived -t accepts a file with {what}:\n{output}\n---\n{broken}"
        );
    }
}

/// The golden renderings of the images' documented examples (`ipf-agent/tests/golden/`), the files
/// users diff against what the old images wrote, are valid keepalived configurations too.
#[test]
fn keepalived_accepts_the_golden_renderings() {
    ipf_testbed::skip_unless_root!();
    let ns = namespace();
    // The ipfailover example Deployment's interface.
    ns.ip(&["link", "add", "ens3", "type", "veth", "peer", "name", "ens3p"]);
    ns.ip(&["link", "set", "ens3", "up"]);
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../ipf-agent/tests/golden");
    let scripts = TempDir::new("ipf-kt-scripts");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let golden = entry.unwrap().path();
        let Some(name) = golden
            .file_name()
            .and_then(|n| n.to_str())
            .filter(|n| n.ends_with(".keepalived.conf"))
        else {
            continue;
        };
        // keepalived -t insists that scripts exist: the examples' scripts (their checks and notify
        // paths, the arcts image's kube-apiserver check) become stand-ins in a temporary directory.
        let text = std::fs::read_to_string(&golden).unwrap();
        let mut rewritten = String::new();
        for line in text.lines() {
            let quoted = line
                .split_once('"')
                .and_then(|(_, rest)| rest.split_whitespace().next());
            match quoted
                .map(|w| w.trim_end_matches('"'))
                .filter(|w| w.starts_with('/') && !Path::new(w).exists())
            {
                Some(missing) => {
                    let stand_in = scripts.path().join(missing.trim_start_matches('/').replace('/', "_"));
                    std::fs::write(&stand_in, "#!/bin/sh\nexit 0\n").unwrap();
                    std::fs::set_permissions(&stand_in, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
                    rewritten.push_str(&line.replacen(missing, &stand_in.display().to_string(), 1));
                }
                None => rewritten.push_str(line),
            }
            rewritten.push('\n');
        }
        let file = scripts.path().join(name);
        std::fs::write(&file, rewritten).unwrap();
        let (accepted, output) = keepalived_test(&ns, &file);
        assert!(accepted, "keepalived -t rejects {}:\n{output}", golden.display());
        checked += 1;
    }
    assert!(
        checked >= 7,
        "only {checked} golden renderings found in {}",
        dir.display()
    );
}
