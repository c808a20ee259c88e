use std::{
    net::{IpAddr, Ipv6Addr},
    path::PathBuf,
    time::Duration,
};

use super::{lex::glob_match, *};
use crate::{
    config::{CheckKind, CheckSpec, Firewall, Garp, InitialState, InstanceSpec, Notify, Vip, parse_vip},
    datapath::Family,
    vrrp::Preempt,
};

const PATH: &str = "keepalived.conf";

fn ok(text: &str) -> Config {
    parse(text, PATH).unwrap_or_else(|e| panic!("{e}\n---\n{text}"))
}

fn fails(text: &str) -> String {
    match parse(text, PATH) {
        Ok(cfg) => panic!("accepted: {cfg:?}\n---\n{text}"),
        Err(e) => e.to_string(),
    }
}

fn vip(text: &str) -> Vip {
    parse_vip(text).expect("valid VIP")
}

fn ip(text: &str) -> IpAddr {
    text.parse().expect("valid address")
}

/// An instance block with the required keywords and `extra` lines.
fn instance(extra: &str) -> String {
    format!(
        "vrrp_instance VI_1 {{\n  interface eth0\n  virtual_router_id 51\n{extra}\n  virtual_ipaddress {{\n    192.0.2.10/24\n  }}\n}}\n"
    )
}

fn only(cfg: &Config) -> &InstanceSpec {
    assert_eq!(cfg.instances.len(), 1, "{cfg:?}");
    &cfg.instances[0]
}

/// What the round trip compares: not the warnings (parsing adds some), the firewall (a comment) nor
/// the script security (the rendering adds the image's `script_user root` / `enable_script_security`
/// whenever there are scripts).
fn comparable(mut cfg: Config) -> Config {
    cfg.warnings.clear();
    cfg.firewall = None;
    cfg.script_security = Default::default();
    cfg
}

fn check(name: &str, kind: CheckKind, interval_s: u64) -> CheckSpec {
    CheckSpec {
        name: name.into(),
        kind,
        interval: Duration::from_secs(interval_s),
        timeout: Duration::from_secs(interval_s),
        rise: 1,
        fall: 1,
        weight: 0,
    }
}

// --- lexing --------------------------------------------------------------------------------------

#[test]
fn comments_quotes_and_brace_placement() {
    let variants = [
        // One keyword per line, braces at line ends.
        "vrrp_instance VI_1 {\n interface eth0\n virtual_router_id 51\n virtual_ipaddress {\n  192.0.2.10/24\n }\n}\n",
        // Braces on their own lines, `{` on the line after the keyword.
        "vrrp_instance VI_1\n{\n interface eth0\n virtual_router_id 51\n virtual_ipaddress\n {\n  192.0.2.10/24\n }\n}\n",
        // Value blocks on one line, `}` sharing a line, comments everywhere.
        "! header\n# another\nvrrp_instance VI_1 { # trailing\n interface eth0 ! bang comment\n virtual_router_id 51#glued comment\n virtual_ipaddress { 192.0.2.10/24 } }\n",
        // Quoted values, CRLF line ends and tabs.
        "vrrp_instance \"VI_1\" {\r\n\tinterface \"eth0\"\r\n\tvirtual_router_id 51\r\n\tvirtual_ipaddress {\r\n\t\t\"192.0.2.10/24\"\r\n\t}\r\n}\r\n",
        // A continued line.
        "vrrp_instance VI_1 {\n interface \\\n   eth0\n virtual_router_id 51\n virtual_ipaddress {\n  192.0.2.10/24\n }\n}\n",
    ];
    let expected = ok(variants[0]);
    for text in variants {
        assert_eq!(ok(text), expected, "{text}");
    }
    let i = only(&expected);
    assert_eq!((i.name.as_str(), i.interface.as_str(), i.vrid), ("VI_1", "eth0", 51));
    assert_eq!(i.vips, vec![vip("192.0.2.10/24")]);
}

#[test]
fn quoted_strings_keep_comment_marks_braces_and_escaped_quotes() {
    let cfg = ok(&format!(
        "vrrp_script odd {{\n  script \"/usr/bin/check --x='{{a}}' # not a comment ! either \\\"q\\\" \\\\n\"\n}}\n{}",
        instance("  track_script {\n    odd\n  }\n  authentication {\n    auth_type PASS\n    auth_pass p\\#ss\n  }")
    ));
    assert_eq!(
        cfg.checks[0].kind,
        CheckKind::Script("/usr/bin/check --x='{a}' # not a comment ! either \"q\" \\n".into())
    );
    assert_eq!(only(&cfg).auth_pass.as_deref(), Some("p#ss"), "\\# is a literal #");
}

#[test]
fn lines_are_numbered_across_comments_and_continuations() {
    let text = "! 1\n\n# 3\nvrrp_instance VI_1 { ! 4\n  interface \\\n eth0\n  virtual_router_id 51\n  bogus 1\n}\n";
    assert_eq!(
        fails(text),
        "keepalived.conf:8: unknown keyword \"bogus\" in vrrp_instance VI_1"
    );
}

// --- keywords and defaults -----------------------------------------------------------------------

#[test]
fn every_supported_keyword() {
    let text = r#"
global_defs {
  router_id node-a
  vrrp_version 3
  vrrp_garp_master_delay 2
  vrrp_garp_master_repeat 3
  vrrp_garp_master_refresh 60
}
vrrp_script chk_http {
  script "/usr/local/bin/check-http --port 8080"
  interval 3
  timeout 2
  weight -20
  rise 2
  fall 4
}
vrrp_script chk_port {
  script "</dev/tcp/127.0.0.1/6443"
  interval 5
}
vrrp_instance VI_1 {
  state MASTER
  interface eth0
  virtual_router_id 51
  priority 150
  advert_int 0.05
  version 3
  preempt_delay 12.5
  unicast_src_ip 192.0.2.1
  unicast_peer {
    192.0.2.2
    192.0.2.3
  }
  virtual_ipaddress {
    192.0.2.10/24 brd 192.0.2.255 scope global label eth0:vip
    192.0.2.11 dev eth1
  }
  virtual_ipaddress_excluded {
    198.51.100.10/32
  }
  track_script {
    chk_http
    chk_port
  }
  track_interface {
    eth1
    eth2
  }
  notify "/etc/keepalived/notify.sh"
  notify_master "/etc/keepalived/master.sh arg"
  notify_backup /etc/keepalived/backup.sh
  notify_fault "/etc/keepalived/fault.sh"
  notify_stop "/etc/keepalived/stop.sh"
  garp_master_delay 1
  garp_master_repeat 2
  garp_master_refresh 0
}
vrrp_instance VI_2 {
  interface eth0
  virtual_router_id 52
  priority 90
  version 2
  advert_int 2
  nopreempt
  mcast_src_ip 192.0.2.1
  authentication {
    auth_type PASS
    auth_pass secret
  }
  virtual_ipaddress {
    192.0.2.20
  }
}
"#;
    let cfg = ok(text);
    assert_eq!(cfg.router_id.as_deref(), Some("node-a"));
    assert_eq!(
        cfg.checks,
        vec![
            CheckSpec {
                name: "chk_http".into(),
                kind: CheckKind::Script("/usr/local/bin/check-http --port 8080".into()),
                interval: Duration::from_secs(3),
                timeout: Duration::from_secs(2),
                rise: 2,
                fall: 4,
                weight: -20,
            },
            check("chk_port", CheckKind::Tcp(6443), 5),
        ]
    );
    let mut vi1 = InstanceSpec::new("VI_1", "eth0", 51, Family::V4);
    vi1.initial_state = InitialState::Master;
    vi1.priority = 150;
    vi1.adver_int = Duration::from_millis(50);
    vi1.version = 3;
    // keepalived drops preempt_delay with state MASTER (and says so).
    vi1.preempt = Preempt::Yes;
    vi1.src = Some(ip("192.0.2.1"));
    vi1.unicast_peers = vec![ip("192.0.2.2"), ip("192.0.2.3")];
    vi1.vips = vec![
        vip("192.0.2.10/24 brd 192.0.2.255 scope global label eth0:vip"),
        vip("192.0.2.11 dev eth1"),
    ];
    vi1.excluded = vec![vip("198.51.100.10/32")];
    vi1.tracks = vec!["chk_http".into(), "chk_port".into()];
    vi1.track_interfaces = vec!["eth1".into(), "eth2".into()];
    vi1.notify = Notify {
        any: Some("/etc/keepalived/notify.sh".into()),
        master: Some("/etc/keepalived/master.sh arg".into()),
        backup: Some("/etc/keepalived/backup.sh".into()),
        fault: Some("/etc/keepalived/fault.sh".into()),
        stop: Some("/etc/keepalived/stop.sh".into()),
    };
    vi1.garp = Garp {
        repeat: 2,
        delay: Duration::from_secs(1),
        refresh: None,
    };
    let mut vi2 = InstanceSpec::new("VI_2", "eth0", 52, Family::V4);
    vi2.priority = 90;
    vi2.version = 2;
    vi2.adver_int = Duration::from_secs(2);
    vi2.preempt = Preempt::No;
    vi2.src = Some(ip("192.0.2.1"));
    vi2.auth_pass = Some("secret".into());
    vi2.vips = vec![vip("192.0.2.20")];
    // From global_defs.
    vi2.garp = Garp {
        repeat: 3,
        delay: Duration::from_secs(2),
        refresh: Some(Duration::from_secs(60)),
    };
    assert_eq!(cfg.instances, vec![vi1, vi2]);
    assert!(
        cfg.warnings
            .iter()
            .any(|w| w.starts_with("keepalived.conf:28: preempt_delay in vrrp_instance VI_1: ignored")),
        "{:?}",
        cfg.warnings
    );
}

#[test]
fn keepalived_defaults() {
    let cfg = ok(&instance(""));
    let mut expected = InstanceSpec::new("VI_1", "eth0", 51, Family::V4);
    expected.vips = vec![vip("192.0.2.10/24")];
    assert_eq!(cfg.instances, vec![expected.clone()]);
    // Spelled out, as keepalived's man page gives them.
    assert_eq!(expected.priority, 100);
    assert_eq!(expected.adver_int, Duration::from_secs(1));
    assert_eq!(expected.version, 2);
    assert_eq!(expected.preempt, Preempt::Yes);
    assert_eq!(expected.initial_state, InitialState::Backup);
    assert_eq!(expected.garp, Garp::default());
    assert!(cfg.warnings.is_empty() && cfg.checks.is_empty() && cfg.router_id.is_none());

    let script = ok(&format!(
        "vrrp_script c {{\n  script \"/bin/true\"\n}}\n{}",
        instance("  track_script {\n    c\n  }")
    ));
    assert_eq!(
        script.checks,
        vec![check("c", CheckKind::Script("/bin/true".into()), 1)],
        "interval 1 s, timeout = interval, weight 0, rise 1, fall 1"
    );
    let timeout_follows_interval = ok("vrrp_script c {\n  script \"/bin/true\"\n  interval 7\n}\n");
    assert_eq!(timeout_follows_interval.checks[0].timeout, Duration::from_secs(7));
}

#[test]
fn defaults_that_follow_other_keywords() {
    // Global vrrp_version; the instance's version wins.
    assert_eq!(
        only(&ok(&format!("global_defs {{\n vrrp_version 3\n}}\n{}", instance("")))).version,
        3
    );
    assert_eq!(
        only(&ok(&format!(
            "global_defs {{\n vrrp_version 3\n}}\n{}",
            instance("  version 2")
        )))
        .version,
        2
    );
    // IPv6 addresses force VRRPv3 and give the family.
    let v6 = ok(
        "vrrp_instance V6 {\n interface eth0\n virtual_router_id 7\n virtual_ipaddress {\n  2001:db8::10/64\n }\n}\n",
    );
    assert_eq!((only(&v6).family, only(&v6).version), (Family::V6, 3));
    // state MASTER without priority: the address owner; priority 255 without state: MASTER.
    let owner = ok(&instance("  state MASTER"));
    assert_eq!(
        (only(&owner).priority, only(&owner).initial_state),
        (255, InitialState::Master)
    );
    assert!(owner.warnings[0].contains("priority 255"), "{:?}", owner.warnings);
    let owner = ok(&instance("  priority 255"));
    assert_eq!(only(&owner).initial_state, InitialState::Master);
    // nopreempt needs BACKUP and a priority below 255 (keepalived clears it otherwise).
    assert_eq!(only(&ok(&instance("  state BACKUP\n  nopreempt"))).preempt, Preempt::No);
    assert_eq!(
        only(&ok(&instance("  state MASTER\n  priority 10\n  nopreempt"))).preempt,
        Preempt::Yes
    );
    assert_eq!(
        only(&ok(&instance("  priority 255\n  nopreempt"))).preempt,
        Preempt::Yes
    );
    assert_eq!(only(&ok(&instance("  preempt_delay 0"))).preempt, Preempt::Yes);
    assert_eq!(only(&ok(&instance("  preempt"))).preempt, Preempt::Yes);
    assert_eq!(
        only(&ok(&instance("  preempt_delay 300"))).preempt,
        Preempt::Delay(Duration::from_secs(300))
    );
    // Authentication is a VRRPv2 thing: dropped with a warning in v3.
    let v3_auth = ok(&instance(
        "  version 3\n  authentication {\n    auth_type PASS\n    auth_pass x\n  }",
    ));
    assert_eq!(only(&v3_auth).auth_pass, None);
    assert!(v3_auth.warnings[0].contains("VRRPv3"), "{:?}", v3_auth.warnings);
    // Passwords: the first 8 bytes, as on the wire.
    let long = ok(&instance(
        "  authentication {\n    auth_type PASS\n    auth_pass ipfailover\n  }",
    ));
    assert_eq!(only(&long).auth_pass.as_deref(), Some("ipfailov"));
    assert_eq!(
        long.warnings,
        vec![
            "keepalived.conf:6: auth_pass \"ipfailover\": only the first 8 characters, \"ipfailov\", are used (as keepalived does)"
        ]
    );
    // default_interface stands in for a missing interface; a `dev` naming the own interface is implied.
    let default_if = ok(
        "global_defs {\n default_interface bond0\n}\nvrrp_instance X {\n virtual_router_id 9\n virtual_ipaddress {\n  192.0.2.1 dev bond0\n }\n}\n",
    );
    assert_eq!(only(&default_if).interface, "bond0");
    assert_eq!(only(&default_if).vips, vec![vip("192.0.2.1")]);
    // The family without addresses: the source's, else IPv4.
    let no_vips = ok("vrrp_instance X {\n interface eth0\n virtual_router_id 9\n mcast_src_ip fe80::1\n}\n");
    assert_eq!(only(&no_vips).family, Family::V6);
    assert!(
        no_vips.warnings[0].contains("has no virtual_ipaddress"),
        "{:?}",
        no_vips.warnings
    );
    // Repeated tracks collapse; an empty unicast_peer block means multicast, with a warning.
    let repeated = ok(&format!(
        "vrrp_script c {{\n script \"/bin/true\"\n}}\n{}",
        instance("  track_script {\n c\n c\n }\n  unicast_peer {\n  }")
    ));
    assert_eq!(only(&repeated).tracks, vec!["c".to_owned()]);
    assert!(only(&repeated).unicast_peers.is_empty());
    assert!(repeated.warnings[0].contains("multicast"), "{:?}", repeated.warnings);
}

#[test]
fn garp_defaults_come_from_global_defs_then_keepalived() {
    let g = |globals: &str, extra: &str| only(&ok(&format!("global_defs {{\n{globals}\n}}\n{}", instance(extra)))).garp;
    assert_eq!(g("", ""), Garp::default());
    assert_eq!(
        g(
            "vrrp_garp_master_delay 1\nvrrp_garp_master_repeat 2",
            "  garp_master_repeat 9"
        ),
        Garp {
            repeat: 9,
            delay: Duration::from_secs(1),
            refresh: None
        }
    );
    assert_eq!(
        g("vrrp_min_garp", ""),
        Garp {
            repeat: 1,
            delay: Duration::ZERO,
            refresh: None
        }
    );
    assert_eq!(
        g(
            "vrrp_min_garp true\nvrrp_garp_master_repeat 4",
            "  garp_master_refresh 30"
        ),
        Garp {
            repeat: 4,
            delay: Duration::ZERO,
            refresh: Some(Duration::from_secs(30))
        }
    );
    assert_eq!(g("vrrp_min_garp false", ""), Garp::default());
}

#[test]
fn advert_intervals() {
    let adv = |extra: &str| only(&ok(&instance(extra))).adver_int;
    assert_eq!(adv("  advert_int 3"), Duration::from_secs(3));
    assert_eq!(adv("  advert_int 1.0"), Duration::from_secs(1));
    assert_eq!(adv("  version 3\n  advert_int 0.01"), Duration::from_millis(10));
    assert_eq!(adv("  advert_int .5\n  version 3"), Duration::from_millis(500));
    assert_eq!(adv("  version 3\n  advert_int 40.95"), Duration::from_millis(40_950));
    assert_eq!(adv("  advert_int 255"), Duration::from_secs(255));
}

#[test]
fn tcp_checks_of_the_ipfailover_image() {
    for (script, expected) in [
        ("</dev/tcp/10.0.0.5/80", Some(80)),
        ("/bin/bash -c '</dev/tcp/10.0.0.5/80'", Some(80)),
        ("/usr/bin/bash -c '</dev/tcp/10.0.0.5/8080'", Some(8080)),
        ("bash -c '< /dev/tcp/10.0.0.5/443'", Some(443)),
        // An IPv6-only node: the image wrote no address at all.
        ("/bin/bash -c '</dev/tcp//80'", Some(80)),
        ("</dev/tcp/2001:db8::5/22", Some(22)),
        ("true", None),
        ("/bin/true", None),
        ("/bin/bash -c 'echo </dev/tcp/10.0.0.5/80'", None),
        ("/bin/sh -c '</dev/tcp/10.0.0.5/80'", None),
        ("</dev/tcp/10.0.0.5/80 && curl x", None),
    ] {
        let cfg = ok(&format!("vrrp_script c {{\n  script \"{script}\"\n}}\n"));
        let kind = &cfg.checks[0].kind;
        match expected {
            Some(port) => {
                assert_eq!(kind, &CheckKind::Tcp(port), "{script}");
                assert!(
                    cfg.warnings[0].starts_with("keepalived.conf:2: script")
                        && cfg.warnings[0].contains("native TCP check"),
                    "{:?}",
                    cfg.warnings
                );
            }
            None => assert_eq!(kind, &CheckKind::Script(script.into()), "{script}"),
        }
    }
}

// --- errors --------------------------------------------------------------------------------------

#[test]
fn errors_name_path_line_keyword_and_value() {
    let script = "vrrp_script chk {\n  script \"/bin/true\"\n}\n";
    let cases: Vec<(String, &str)> = vec![
        // Values.
        (instance("  virtual_router_id 300").replace("  virtual_router_id 51\n", ""), "keepalived.conf:3: virtual_router_id \"300\": must be 1..255"),
        (instance("  priority 0"), "keepalived.conf:4: priority \"0\": must be 1..255"),
        (instance("  priority 256"), "keepalived.conf:4: priority \"256\": must be 1..255"),
        (instance("  priority +5"), "keepalived.conf:4: priority \"+5\": must be 1..255"),
        (instance("  priority"), "keepalived.conf:4: priority: missing value"),
        (instance("  priority 100 200"), "keepalived.conf:4: priority \"100 200\": takes one value"),
        (instance("  state master"), "keepalived.conf:4: state \"master\": MASTER or BACKUP expected (upper case, as keepalived wants)"),
        (instance("  version 4"), "keepalived.conf:4: version \"4\": must be 2..3"),
        (instance("  advert_int 0.5"), "keepalived.conf:4: advert_int \"0.5\": VRRPv2 needs whole seconds 1..255 (version 3 allows 0.01..40.95)"),
        (instance("  advert_int 256"), "keepalived.conf:4: advert_int \"256\": VRRPv2 needs whole seconds 1..255 (version 3 allows 0.01..40.95)"),
        (instance("  version 3\n  advert_int 0.015"), "keepalived.conf:5: advert_int \"0.015\": VRRPv3 needs 0.01..40.95 seconds in steps of 0.01"),
        (instance("  version 3\n  advert_int 41"), "keepalived.conf:5: advert_int \"41\": VRRPv3 needs 0.01..40.95 seconds in steps of 0.01"),
        (instance("  advert_int 0"), "keepalived.conf:4: advert_int \"0\": seconds > 0 expected"),
        (instance("  advert_int 1s"), "keepalived.conf:4: advert_int \"1s\": seconds > 0 expected"),
        (instance("  preempt_delay 1001"), "keepalived.conf:4: preempt_delay \"1001\": must be 0..1000 seconds"),
        (instance("  preempt_delay soon"), "keepalived.conf:4: preempt_delay \"soon\": must be 0..1000 seconds"),
        (instance("  nopreempt yes"), "keepalived.conf:4: nopreempt \"yes\": takes no value"),
        (instance("  nopreempt\n  preempt_delay 10"), "keepalived.conf:5: preempt_delay: preemption is already set by nopreempt at line 4"),
        (instance("  garp_master_repeat 0"), "keepalived.conf:4: garp_master_repeat \"0\": must be 1..1000"),
        (instance("  garp_master_delay -1"), "keepalived.conf:4: garp_master_delay \"-1\": whole seconds 0..3600 expected"),
        (instance("  interface eth0"), "keepalived.conf:4: interface given twice in vrrp_instance VI_1 (first at line 2)"),
        (instance("  interface averyveryverylongname").replace("  interface eth0\n", ""), "keepalived.conf:3: interface \"averyveryverylongname\": not an interface name (1 to 15 bytes, no '/', ':', spaces, quotes, braces or control characters)"),
        // Fuzzer finding: control characters in `interface` were accepted, then refused in the
        // rendering's VIP `dev`.
        (instance("  interface eth0\u{e}\u{0}").replace("  interface eth0\n", ""), "keepalived.conf:3: interface \"eth0\\u{e}\\0\": not an interface name (1 to 15 bytes, no '/', ':', spaces, quotes, braces or control characters)"),
        // Addresses.
        (instance("  unicast_src_ip 192.0.2.300"), "keepalived.conf:4: unicast_src_ip \"192.0.2.300\": not an IP address"),
        (instance("  unicast_src_ip 192.0.2.1\n  mcast_src_ip 192.0.2.2"), "keepalived.conf:5: mcast_src_ip \"192.0.2.2\": the source address is already 192.0.2.1 (unicast_src_ip at line 4)"),
        (instance("  unicast_peer {\n    nope\n  }"), "keepalived.conf:5: unicast_peer \"nope\": not an IP address"),
        (instance("  unicast_peer {\n    192.0.2.2 weight 3\n  }"), "keepalived.conf:5: unicast_peer \"192.0.2.2 weight 3\": unknown option \"weight\" (one address per line, optionally min_ttl/max_ttl)"),
        (instance("  unicast_peer 192.0.2.2"), "keepalived.conf:4: unicast_peer \"192.0.2.2\": values go inside the block"),
        (instance("  virtual_ipaddress_excluded {\n    10.0.0.300/24\n  }"), "keepalived.conf:5: virtual_ipaddress_excluded \"10.0.0.300/24\": not an IP address"),
        (instance("  virtual_ipaddress {\n    192.0.2.11/33\n  }"), "keepalived.conf:5: virtual_ipaddress \"192.0.2.11/33\": prefix must be 0..32"),
        (instance("  virtual_ipaddress {\n    192.0.2.11 no_track\n  }"), "keepalived.conf:5: virtual_ipaddress \"192.0.2.11 no_track\": option \"no_track\" is not supported by ipf"),
        (instance("  virtual_ipaddress {\n    192.0.2.11 colour red\n  }"), "keepalived.conf:5: virtual_ipaddress \"192.0.2.11 colour red\": unknown option \"colour\""),
        (instance("  virtual_ipaddress {\n    2001:db8::1\n  }"), "keepalived.conf:8: virtual_ipaddress \"192.0.2.10/24\": IPv4 address in the IPv6 vrrp_instance VI_1; ipf does not mix families in one instance, use a second vrrp_instance"),
        (instance("  virtual_ipaddress_excluded {\n    2001:db8::1\n  }"), "keepalived.conf:5: virtual_ipaddress_excluded \"2001:db8::1\": IPv6 address in the IPv4 vrrp_instance VI_1; ipf does not mix families in one instance, use a second vrrp_instance"),
        (instance("  unicast_src_ip fe80::1"), "keepalived.conf:4: unicast_src_ip \"fe80::1\": not IPv4 like vrrp_instance VI_1"),
        (instance("  unicast_peer {\n    fe80::2\n  }"), "keepalived.conf:5: unicast_peer \"fe80::2\": not IPv4 like vrrp_instance VI_1"),
        ("vrrp_instance V6 {\n interface eth0\n virtual_router_id 7\n version 2\n virtual_ipaddress {\n  2001:db8::10/64\n }\n}\n".into(), "keepalived.conf:4: version \"2\": vrrp_instance V6 has IPv6 addresses, which need VRRPv3"),
        // Authentication.
        (instance("  authentication {\n    auth_type AH\n    auth_pass x\n  }"), "keepalived.conf:5: auth_type \"AH\": IPsec AH authentication is not supported (PASS is)"),
        (instance("  authentication {\n    auth_type NONE\n  }"), "keepalived.conf:5: auth_type \"NONE\": PASS expected"),
        (instance("  authentication {\n    auth_pass x\n  }"), "keepalived.conf:5: auth_pass: auth_type PASS is missing (keepalived would send no authentication)"),
        (instance("  authentication {\n    auth_type PASS\n  }"), "keepalived.conf:5: auth_type \"PASS\": auth_pass is missing"),
        (instance("  authentication {\n    auth_type PASS\n    auth_key x\n  }"), "keepalived.conf:6: unknown keyword \"auth_key\" in authentication of vrrp_instance VI_1"),
        // Tracking.
        (instance("  track_script {\n    chk_missing\n  }"), "keepalived.conf:5: track_script \"chk_missing\": no vrrp_script of that name"),
        (format!("{script}{}", instance("  track_script {\n    chk weight -10\n  }")), "keepalived.conf:8: track_script \"chk weight -10\": a per-instance weight is not supported by ipf; set weight in vrrp_script chk"),
        (instance("  track_interface {\n    eth1 weight 10\n  }"), "keepalived.conf:5: track_interface \"eth1 weight 10\": per-interface weights are not supported by ipf; a tracked interface going down puts the instance in FAULT"),
        // Scripts.
        ("vrrp_script c {\n  script \"/bin/true\"\n  interval 0\n}\n".into(), "keepalived.conf:3: interval \"0\": whole seconds 1..86400 expected"),
        ("vrrp_script c {\n  script \"/bin/true\"\n  interval 1.5\n}\n".into(), "keepalived.conf:3: interval \"1.5\": whole seconds 1..86400 expected"),
        ("vrrp_script c {\n  script \"/bin/true\"\n  timeout 0\n}\n".into(), "keepalived.conf:3: timeout \"0\": whole seconds 1..86400 expected"),
        ("vrrp_script c {\n  script \"/bin/true\"\n  weight 300\n}\n".into(), "keepalived.conf:3: weight \"300\": must be -253..253"),
        ("vrrp_script c {\n  script \"/bin/true\"\n  weight 10 reverse\n}\n".into(), "keepalived.conf:3: weight \"10 reverse\": \"reverse\" and other options are not supported"),
        ("vrrp_script c {\n  script \"/bin/true\"\n  rise 0\n}\n".into(), "keepalived.conf:3: rise \"0\": must be 1..1000000"),
        ("vrrp_script c {\n  script \"/bin/true\"\n  fall x\n}\n".into(), "keepalived.conf:3: fall \"x\": must be 1..1000000"),
        ("vrrp_script c {\n  interval 2\n}\n".into(), "keepalived.conf:1: vrrp_script c: script is required"),
        ("vrrp_script c {\n  script /usr/bin/check arg\n}\n".into(), "keepalived.conf:2: script \"/usr/bin/check arg\": quote the command and its arguments as one string (keepalived would run only \"/usr/bin/check\")"),
        ("vrrp_script c {\n  script \"</dev/tcp/10.0.0.1/0\"\n}\n".into(), "keepalived.conf:2: script \"</dev/tcp/10.0.0.1/0\": TCP port \"0\" must be 1..65535"),
        ("vrrp_script c {\n  script \"/bin/true\"\n  init_fail\n}\n".into(), "keepalived.conf:3: init_fail: not supported (ipf checks start healthy)"),
        ("vrrp_script c {\n  script \"/bin/true\"\n  frequency 2\n}\n".into(), "keepalived.conf:3: unknown keyword \"frequency\" in vrrp_script c"),
        (format!("{script}{script}"), "keepalived.conf:4: vrrp_script \"chk\" defined twice (first at line 1)"),
        (instance("  notify"), "keepalived.conf:4: notify: missing script"),
        (instance("  notify \"/a\"\n  notify \"/b\""), "keepalived.conf:5: notify given twice in vrrp_instance VI_1 (first at line 4)"),
        // Required keywords and uniqueness.
        ("vrrp_instance VI_1 {\n  virtual_router_id 1\n}\n".into(), "keepalived.conf:1: vrrp_instance VI_1: interface is required"),
        ("vrrp_instance VI_1 {\n  interface eth0\n}\n".into(), "keepalived.conf:1: vrrp_instance VI_1: virtual_router_id is required"),
        (format!("{}{}", instance(""), instance("")), "keepalived.conf:9: vrrp_instance \"VI_1\" defined twice (first at line 1)"),
        (format!("{}{}", instance(""), instance("").replace("VI_1", "VI_2")), "keepalived.conf:11: virtual_router_id \"51\": vrrp_instance VI_1 already uses it for IPv4 on eth0"),
        ("global_defs {\n router_id a\n}\nglobal_defs {\n router_id b\n}\n".into(), "keepalived.conf:5: router_id given twice in global_defs (first at line 2)"),
        ("global_defs {\n router_id a\n router_id b\n}\n".into(), "keepalived.conf:3: router_id given twice in global_defs (first at line 2)"),
        // Unknown and unsupported keywords.
        (instance("  foo 1"), "keepalived.conf:4: unknown keyword \"foo\" in vrrp_instance VI_1"),
        ("global_defs {\n  foo\n}\n".into(), "keepalived.conf:2: unknown keyword \"foo\" in global_defs"),
        ("foo {\n}\n".into(), "keepalived.conf:1: unknown keyword \"foo\" at top level"),
        ("global_defs {\n  vrrp_strict\n}\n".into(), "keepalived.conf:2: vrrp_strict: strict RFC mode is not supported"),
        ("global_defs {\n  vrrp_version 4\n}\n".into(), "keepalived.conf:2: vrrp_version \"4\": must be 2..3"),
        (instance("  dont_track_primary"), "keepalived.conf:4: dont_track_primary: ipf always puts the instance in FAULT when its interface goes down"),
        (instance("  use_vmac vrrp51"), "keepalived.conf:4: use_vmac \"vrrp51\": virtual MAC interfaces are not supported"),
        ("virtual_server 10.0.0.1 80 {\n}\n".into(), "keepalived.conf:1: virtual_server \"10.0.0.1 80\": ipf does VRRP only, not LVS"),
        ("vrrp_sync_group G {\n}\n".into(), "keepalived.conf:1: vrrp_sync_group \"G\": sync groups are not supported"),
        ("@high vrrp_instance X {\n}\n".into(), "keepalived.conf:1: conditional line \"@high\": keepalived's @name configuration ids are not supported"),
        ("$IF=eth0\n".into(), "keepalived.conf:1: definition \"$IF=eth0\": keepalived's $NAME=value definitions are not supported"),
        ("include other.conf\n".into(), "keepalived.conf:1: include \"other.conf\": includes are only followed when the configuration is read from a file"),
        // Structure.
        ("vrrp_instance VI_1 {\n  interface eth0\n".into(), "keepalived.conf:1: \"{\" is never closed (a \"}\" is missing)"),
        (format!("{}}}\n", instance("")), "keepalived.conf:9: unexpected \"}\": no block is open"),
        ("{\n}\n".into(), "keepalived.conf:1: unexpected \"{\": a block must follow a keyword"),
        ("vrrp_instance {\n}\n".into(), "keepalived.conf:1: vrrp_instance: missing name"),
        ("vrrp_instance A B {\n}\n".into(), "keepalived.conf:1: vrrp_instance \"A B\": takes one name"),
        ("vrrp_instance VI_1\n".into(), "keepalived.conf:1: vrrp_instance: needs a \"{ ... }\" block"),
        (instance("  priority 100 {\n  }"), "keepalived.conf:4: priority: takes no \"{\" block"),
        (instance("  virtual_ipaddress {\n    192.0.2.11 {\n    }\n  }"), "keepalived.conf:5: 192.0.2.11: takes no \"{\" block"),
        (instance("  notify \"/unterminated"), "keepalived.conf:4: unterminated quote in \"notify \\\"/unterminated\""),
    ];
    for (text, expected) in &cases {
        assert_eq!(&fails(text), expected, "\n---\n{text}");
    }
}

#[test]
fn harmless_keywords_are_warnings_with_their_line() {
    let text = format!(
        "global_defs {{\n  script_user root\n  enable_script_security\n  max_auto_priority 99\n  notification_email {{\n    a@b\n  }}\n  lvs_id X\n  vrrp_skip_check_adv_addr\n}}\n{}",
        instance("  smtp_alert\n  debug 2\n  accept")
    );
    let cfg = ok(&text);
    assert_eq!(
        cfg.warnings,
        vec![
            "keepalived.conf:4: max_auto_priority \"99\" in global_defs: accepted and ignored, ipf has no use for it",
            "keepalived.conf:5: notification_email (with its block) in global_defs: accepted and ignored, ipf has no use for it",
            "keepalived.conf:8: lvs_id \"X\" in global_defs: accepted and ignored, ipf has no use for it",
            "keepalived.conf:9: vrrp_skip_check_adv_addr in global_defs: accepted and ignored, ipf has no use for it",
            "keepalived.conf:14: smtp_alert in vrrp_instance VI_1: accepted and ignored, ipf has no use for it",
            "keepalived.conf:15: debug \"2\" in vrrp_instance VI_1: accepted and ignored, ipf has no use for it",
            "keepalived.conf:16: accept in vrrp_instance VI_1: accepted and ignored, ipf has no use for it",
        ]
    );
    let users = ok(&format!(
        "vrrp_script c {{\n  script \"/bin/true\"\n  user nobody\n}}\n{}",
        instance("  notify \"/bin/n\" nobody nogroup\n  unicast_peer {\n    192.0.2.2 min_ttl 250\n  }")
    ));
    assert_eq!(users.warnings.len(), 3, "{:?}", users.warnings);
    assert!(users.warnings[0].starts_with("keepalived.conf:3: user \"nobody\" in vrrp_script c: ignored"));
    assert!(users.warnings[1].starts_with("keepalived.conf:8: notify user \"nobody nogroup\""));
    assert!(users.warnings[2].starts_with("keepalived.conf:10: unicast_peer 192.0.2.2 min_ttl 250: ignored"));
    assert_eq!(only(&users).notify.any.as_deref(), Some("/bin/n"));
}

// --- the old images' files -----------------------------------------------------------------------

const ARCTS_MASTER: &str = include_str!("../../../tests/fixtures/keepalived/arcts-master.conf");
const ARCTS_BACKUP: &str = include_str!("../../../tests/fixtures/keepalived/arcts-backup.conf");
const IPFAILOVER: &str = include_str!("../../../tests/fixtures/keepalived/ipfailover.conf");

fn arcts_expected(path: &str, state: InitialState, priority: u8, src: &str, peer: &str) -> Config {
    let mut i = InstanceSpec::new("MAIN", "eth0", 2, Family::V4);
    i.initial_state = state;
    i.priority = priority;
    i.src = Some(ip(src));
    i.unicast_peers = vec![ip(peer)];
    i.auth_pass = Some("pwd1".into());
    i.vips = vec![vip("10.10.0.2/24")];
    i.excluded = vec![vip("172.16.1.20/24 dev eth1")];
    // eth0, the instance's own interface, is tracked anyway (keepalived drops it from the list).
    i.track_interfaces = vec!["eth1".into()];
    Config {
        instances: vec![i],
        warnings: vec![format!(
            "{path}:22: track_interface \"eth0\" in vrrp_instance MAIN: ignored, the instance's own interface is always tracked (keepalived ignores it too)"
        )],
        ..Config::default()
    }
}

#[test]
fn arcts_readme_examples() {
    assert_eq!(
        parse(ARCTS_MASTER, "arcts-master.conf").expect("valid"),
        arcts_expected(
            "arcts-master.conf",
            InitialState::Master,
            200,
            "10.10.0.21",
            "10.10.0.22"
        )
    );
    assert_eq!(
        parse(ARCTS_BACKUP, "arcts-backup.conf").expect("valid"),
        arcts_expected(
            "arcts-backup.conf",
            InitialState::Backup,
            100,
            "10.10.0.22",
            "10.10.0.21"
        )
    );
}

#[test]
fn ipfailover_generated_file() {
    let cfg = parse(IPFAILOVER, "ipfailover.conf").expect("valid");
    let instance = |name: &str, vrid: u8, priority: u8, vips: &[&str]| {
        let mut i = InstanceSpec::new(name, "eth0", vrid, Family::V4);
        i.priority = priority;
        i.preempt = Preempt::Delay(Duration::from_secs(300));
        i.auth_pass = Some("ipfailov".into());
        i.tracks = vec!["chk_ipfailover".into()];
        i.notify.any = Some("/etc/keepalived/notify.sh".into());
        // As written: the image listed the node itself among the peers.
        i.unicast_peers = vec![ip("10.0.0.11"), ip("10.0.0.12")];
        i.vips = vips.iter().map(|v| vip(v)).collect();
        i
    };
    let vip1 = instance("ipfailover_VIP_1", 11, 27, &["10.0.0.100", "10.0.0.101"]);
    let mut vip2 = instance("ipfailover_VIP_2", 12, 244, &["10.0.0.102"]);
    vip2.initial_state = InitialState::Master;
    // keepalived clears preempt_delay on a `state MASTER` instance: what the old image really ran.
    vip2.preempt = Preempt::Yes;
    assert_eq!(
        comparable(cfg.clone()),
        Config {
            instances: vec![vip1, vip2],
            checks: vec![check("chk_ipfailover", CheckKind::Tcp(80), 2)],
            firewall: None,
            router_id: Some("ipfailover".into()),
            warnings: Vec::new(),
            script_security: Default::default(),
        }
    );
    let warnings = cfg.warnings.join("\n");
    for needle in [
        "ipfailover.conf:4: max_auto_priority",
        "ipfailover.conf:5: notification_email",
        "ipfailover.conf:9: notification_email_from",
        "ipfailover.conf:10: smtp_server",
        "ipfailover.conf:11: smtp_connect_timeout",
        "ipfailover.conf:16: script \"/bin/bash -c '</dev/tcp/10.0.0.11/80'\" in vrrp_script chk_ipfailover: run as ipf's native TCP check of port 80 on this node's address (the file names 10.0.0.11)",
        "ipfailover.conf:30: auth_pass \"ipfailover\": only the first 8 characters",
        "ipfailover.conf:56: preempt_delay in vrrp_instance ipfailover_VIP_2: ignored as keepalived does, it does not work with state MASTER",
    ] {
        assert!(warnings.contains(needle), "{needle}\n{warnings}");
    }
    let lines: Vec<usize> = cfg
        .warnings
        .iter()
        .map(|w| w.split(':').nth(1).and_then(|l| l.parse().ok()).expect("path:line:"))
        .collect();
    assert!(lines.is_sorted(), "warnings in line order: {lines:?}");
}

// --- rendering -----------------------------------------------------------------------------------

/// Configurations the round trip runs over: what each front end produces.
fn sample_configs() -> Vec<Config> {
    // OPENSHIFT_HA_*-like: three v2 groups, a TCP check, notify, multicast, the firewall rule.
    let mut openshift = Config {
        checks: vec![check("chk_ipfailover", CheckKind::Tcp(80), 2)],
        firewall: Some(Firewall::Nftables),
        router_id: Some("ipfailover".into()),
        ..Config::default()
    };
    for (k, vips) in [
        ["192.0.2.10", "192.0.2.11"],
        ["192.0.2.12", "192.0.2.13"],
        ["192.0.2.14", ""],
    ]
    .iter()
    .enumerate()
    {
        let vrid = 11 + k as u8;
        let mut i = InstanceSpec::new(format!("ipfailover_VIP_{}", k + 1), "eth0", vrid, Family::V4);
        i.priority = 100 + vrid;
        i.preempt = Preempt::Delay(Duration::from_secs(300));
        i.auth_pass = Some("ipfailov".into());
        i.tracks = vec!["chk_ipfailover".into()];
        i.notify.any = Some("/etc/keepalived/notify.sh".into());
        i.vips = vips.iter().filter(|v| !v.is_empty()).map(|v| vip(v)).collect();
        openshift.instances.push(i);
    }

    // IPv6, VRRPv3 at 10 ms, no preemption, a weighted script check.
    let mut v6 = InstanceSpec::new("V6", "eth0", 7, Family::V6);
    v6.version = 3;
    v6.adver_int = Duration::from_millis(10);
    v6.preempt = Preempt::No;
    v6.priority = 120;
    v6.vips = vec![vip("fe80::7/64"), vip("2001:db8::7/64")];
    v6.src = Some(IpAddr::V6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1)));
    v6.tracks = vec!["chk_api".into()];
    v6.garp = Garp {
        repeat: 1,
        delay: Duration::ZERO,
        refresh: Some(Duration::from_secs(30)),
    };
    let ipv6 = Config {
        instances: vec![v6],
        checks: vec![CheckSpec {
            name: "chk_api".into(),
            kind: CheckKind::Script("/usr/bin/curl -fsk \"https://[::1]:6443/healthz\"".into()),
            interval: Duration::from_secs(3),
            timeout: Duration::from_secs(2),
            rise: 2,
            fall: 10,
            weight: -50,
        }],
        ..Config::default()
    };

    // Unicast, excluded VIPs on a second interface, track_interface, every notify, MASTER.
    let mut u = InstanceSpec::new("MAIN", "eth0", 2, Family::V4);
    u.initial_state = InitialState::Master;
    u.priority = 200;
    u.version = 3;
    u.adver_int = Duration::from_millis(250);
    u.src = Some(ip("10.10.0.21"));
    u.unicast_peers = vec![ip("10.10.0.22"), ip("10.10.0.23")];
    u.vips = vec![vip("10.10.0.2/24 brd 10.10.0.255 scope link label eth0:vip")];
    u.excluded = vec![vip("172.16.1.20/24 dev eth1"), vip("172.16.1.21/32 dev eth1")];
    u.track_interfaces = vec!["eth1".into()];
    u.notify = Notify {
        any: Some("/bin/notify any".into()),
        master: Some("/bin/notify master".into()),
        backup: Some("/bin/notify backup".into()),
        fault: Some("/bin/notify fault".into()),
        stop: Some("/bin/notify stop".into()),
    };
    let unicast = Config {
        instances: vec![u],
        router_id: Some("LVS_MAIN".into()),
        ..Config::default()
    };

    vec![
        openshift,
        ipv6,
        unicast,
        parse(ARCTS_MASTER, "a").expect("valid"),
        parse(ARCTS_BACKUP, "b").expect("valid"),
        parse(IPFAILOVER, "c").expect("valid"),
    ]
}

#[test]
fn render_then_parse_gives_the_configuration_back() {
    for cfg in sample_configs() {
        let text = render(&cfg, None);
        let back = parse(&text, "rendered.conf").unwrap_or_else(|e| panic!("{e}\n---\n{text}"));
        assert_eq!(comparable(back), comparable(cfg), "\n---\n{text}");
    }
}

#[test]
fn rendering_is_stable() {
    // render(parse(text)) is a fixed point once the text is keepalived.conf (a first rendering's
    // `# ipf:` comments are comments to the parser).
    let node = Some(ip("10.0.0.11"));
    for cfg in sample_configs() {
        let text = render(&cfg, node);
        let once = render(&parse(&text, "rendered.conf").expect("valid"), node);
        let twice = render(&parse(&once, "rendered.conf").expect("valid"), node);
        assert_eq!(once, twice);
    }
    for fixture in [ARCTS_MASTER, ARCTS_BACKUP, IPFAILOVER] {
        let once = render(&ok(fixture), None);
        assert_eq!(render(&ok(&once), None), once);
    }
}

#[test]
fn render_layout_follows_the_ipfailover_image() {
    let cfg = &sample_configs()[0];
    let text = render(cfg, Some(ip("10.0.0.11")));
    let expected_start = "! Configuration File for keepalived
! Rendered by ipf from its configuration, to compare with keepalived's.
# ipf: firewall: accept VRRP multicast (224.0.0.18) in an nftables table of ipf's own

global_defs {
   router_id ipfailover
   script_user root
   enable_script_security
}

vrrp_script chk_ipfailover {
   script \"/bin/bash -c '</dev/tcp/10.0.0.11/80'\"
   interval 2
}

vrrp_instance ipfailover_VIP_1 {
   interface eth0
   state BACKUP
   virtual_router_id 11
   priority 111
   advert_int 1
   preempt_delay 300
   authentication {
      auth_type PASS
      auth_pass ipfailov
   }
   track_script {
      chk_ipfailover
   }
   notify \"/etc/keepalived/notify.sh\"
   virtual_ipaddress {
      192.0.2.10/32 dev eth0
      192.0.2.11/32 dev eth0
   }
}
";
    assert!(text.starts_with(expected_start), "{text}");
    // Without a node address, the image's own fallback.
    assert!(render(cfg, None).contains("script \"/bin/bash -c '</dev/tcp/127.0.0.1/80'\""));
    let iptables = Config {
        firewall: Some(Firewall::Iptables { chain: "INPUT".into() }),
        ..Config::default()
    };
    assert!(
        render(&iptables, None)
            .contains("# ipf: firewall: accept VRRP multicast (224.0.0.18) with a rule in iptables chain INPUT\n")
    );

    // IPv6: version 3, no authentication block even if the model carries a password.
    let mut v6 = sample_configs()[1].clone();
    v6.instances[0].auth_pass = Some("x".into());
    let text = render(&v6, None);
    assert!(
        text.contains("   version 3\n   advert_int 0.01\n   nopreempt\n"),
        "{text}"
    );
    assert!(!text.contains("authentication {"), "{text}");
    assert!(
        text.contains("   # ipf: auth_pass is set, but VRRPv3 has no authentication\n"),
        "{text}"
    );
    assert!(text.contains("   mcast_src_ip fe80::1\n"), "{text}");
    assert!(
        text.contains("   garp_master_delay 0\n   garp_master_repeat 1\n   garp_master_refresh 30\n"),
        "{text}"
    );
    assert!(
        text.contains("   timeout 2\n   weight -50\n   rise 2\n   fall 10\n"),
        "{text}"
    );

    // Unicast: unicast_src_ip, the peers, excluded VIPs with their own dev, track_interface.
    let text = render(&sample_configs()[2], None);
    for line in [
        "   unicast_src_ip 10.10.0.21\n   unicast_peer {\n      10.10.0.22\n      10.10.0.23\n   }\n",
        "   virtual_ipaddress_excluded {\n      172.16.1.20/24 dev eth1\n      172.16.1.21/32 dev eth1\n   }\n",
        "   track_interface {\n      eth1\n   }\n",
        "      10.10.0.2/24 brd 10.10.0.255 scope link label eth0:vip dev eth0\n",
        "   notify_stop \"/bin/notify stop\"\n",
    ] {
        assert!(text.contains(line), "{line}\n---\n{text}");
    }
    assert!(!text.contains("garp_"), "default GARP settings are not written: {text}");

    // The own interface is always tracked: keepalived rejects it in track_interface.
    let mut own = sample_configs()[2].clone();
    own.instances[0].track_interfaces = vec!["eth0".into()];
    assert!(!render(&own, None).contains("track_interface"));
}

#[test]
fn render_notes_what_keepalived_cannot_express() {
    let mut i = InstanceSpec::new("X", "eth0", 1, Family::V4);
    i.initial_state = InitialState::Master;
    i.preempt = Preempt::Delay(Duration::from_millis(1500));
    i.adver_int = Duration::from_millis(1500);
    i.vips = vec![vip("192.0.2.1")];
    let cfg = Config {
        instances: vec![i],
        checks: vec![CheckSpec {
            interval: Duration::from_millis(500),
            ..check("c", CheckKind::Script("/bin/true".into()), 1)
        }],
        ..Config::default()
    };
    let text = render(&cfg, None);
    for line in [
        "   # ipf: interval is 0.5s in ipf; keepalived takes whole seconds\n   interval 1\n",
        "   # ipf: advert_int is 1.5s in ipf; keepalived rounds it\n",
        "   # ipf: keepalived ignores preempt_delay with state MASTER\n   preempt_delay 1.5\n",
    ] {
        assert!(text.contains(line), "{line}\n---\n{text}");
    }
    // Words that need it are quoted, and read back the same.
    let mut odd = Config::default();
    let mut i = InstanceSpec::new("Y", "eth0", 2, Family::V4);
    i.auth_pass = Some("p#s{s}".into());
    i.vips = vec![vip("192.0.2.2")];
    odd.instances.push(i);
    let text = render(&odd, None);
    assert!(text.contains("auth_pass \"p#s{s}\""), "{text}");
    assert_eq!(comparable(ok(&text)), odd);
}

// --- include -------------------------------------------------------------------------------------

/// A directory under the system temp dir, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("ipf-kaconf-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("conf.d")).expect("temp dir");
        Scratch(dir)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).expect("write");
        path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn include_relative_paths_and_globs() {
    let dir = Scratch::new("include");
    dir.write("scripts.conf", "vrrp_script c {\n  script \"/bin/true\"\n}\n");
    dir.write(
        "conf.d/20-b.conf",
        &instance("").replace("VI_1", "B").replace("51", "52"),
    );
    dir.write(
        "conf.d/10-a.conf",
        &instance("  track_script {\n    c\n  }").replace("VI_1", "A"),
    );
    dir.write("conf.d/notes.txt", "not a config\n");
    let top = dir.write(
        "keepalived.conf",
        "global_defs {\n  router_id r\n}\ninclude scripts.conf\ninclude \"conf.d/*.conf\"\n",
    );
    let cfg = parse_file(&top).expect("valid");
    let names: Vec<&str> = cfg.instances.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(names, ["A", "B"], "in name order");
    assert_eq!(cfg.checks[0].name, "c");
    assert_eq!(cfg.router_id.as_deref(), Some("r"));

    // An include inside a block works too, as in keepalived (it is read line by line).
    dir.write("body.conf", "  interface eth0\n  virtual_router_id 9\n");
    let inside = dir.write("inside.conf", "vrrp_instance X {\ninclude body.conf\n}\n");
    assert_eq!(only(&parse_file(&inside).expect("valid")).vrid, 9);

    // A duplicate in another file says which file holds the first.
    let again = dir.write("again.conf", &instance("").replace("51", "53"));
    let dup = dir.write("dup.conf", "include again.conf\ninclude again.conf\n");
    assert_eq!(
        parse_file(&dup).expect_err("duplicate").to_string(),
        format!(
            "{}:1: vrrp_instance \"VI_1\" defined twice (first at {}:1)",
            again.display(),
            again.display()
        )
    );

    // Errors in an included file name that file and its line.
    let bad = dir.write(
        "conf.d/30-bad.conf",
        "vrrp_instance C {\n  interface eth0\n  priority 0\n}\n",
    );
    let err = parse_file(&top).expect_err("bad include").to_string();
    assert_eq!(err, format!("{}:3: priority \"0\": must be 1..255", bad.display()));

    let missing = dir.write("missing.conf", "\ninclude nothere.conf\n");
    let err = parse_file(&missing).expect_err("missing").to_string();
    assert!(
        err.starts_with(&format!(
            "{}:2: include \"nothere.conf\": cannot read ",
            missing.display()
        )),
        "{err}"
    );
    let nomatch = dir.write("nomatch.conf", "include conf.d/*.none\n");
    assert_eq!(
        parse_file(&nomatch).expect_err("no match").to_string(),
        format!("{}:1: include \"conf.d/*.none\": no file matches", nomatch.display())
    );
    let loop_ = dir.write("loop.conf", "include loop.conf\n");
    assert!(
        parse_file(&loop_)
            .expect_err("loop")
            .to_string()
            .contains("includes itself"),
        "a file including itself"
    );
    let globbed_dir = dir.write("globdir.conf", "include */x.conf\n");
    assert!(
        parse_file(&globbed_dir)
            .expect_err("glob dir")
            .to_string()
            .contains("globs are supported in the file name only")
    );
    let unreadable = dir.0.join("absent.conf");
    assert!(
        parse_file(&unreadable)
            .expect_err("absent")
            .to_string()
            .starts_with(&format!("{}: ", unreadable.display()))
    );
}

#[test]
fn glob_matching() {
    for (pattern, name, matches) in [
        ("*.conf", "a.conf", true),
        ("*.conf", ".conf", true),
        ("*.conf", "a.conf.bak", false),
        ("?0-*.conf", "10-a.conf", true),
        ("a*b*c", "aXbYbZc", true),
        ("a*b*c", "aXbYbZ", false),
        ("exact", "exact", true),
        ("*", "", true),
    ] {
        assert_eq!(glob_match(pattern, name), matches, "{pattern} {name}");
    }
}

/// enable_script_security: a check or notify script that a non-root user could change is refused at
/// its line; script_user is resolved where it is written. (Needs root: the files must be root's.)
#[test]
fn script_security_refuses_scripts_others_can_change() {
    use std::os::unix::fs::PermissionsExt as _;
    if !nix::unistd::geteuid().is_root() {
        return eprintln!("skipped: needs root (the scripts must be owned by root)");
    }
    let dir = std::env::temp_dir().join(format!("ipf-kc-sec-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("mkdir");
    let script = dir.join("chk.sh");
    std::fs::write(&script, "#!/bin/sh\nexit 0\n").expect("write");
    let path = script.display().to_string();
    let mode =
        |p: &std::path::Path, m: u32| std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).expect("chmod");
    // The check on line 5, the notify script on line 14.
    let text = |check: &str, notify: &str| {
        format!(
            "global_defs {{\n  enable_script_security\n  script_user root\n}}\nvrrp_script chk {{\n  script \"{check} --fast\"\n}}\n{}",
            instance(&format!(
                "  track_script {{\n    chk\n  }}\n  notify_master \"{notify}\""
            ))
        )
    };
    let result = std::panic::catch_unwind(|| {
        mode(&script, 0o755);
        mode(&dir, 0o777);
        assert_eq!(
            fails(&text(&path, "/bin/true")),
            format!(
                "keepalived.conf:5: vrrp_script chk: script \"{path} --fast\": {} is writable by everyone (mode 0777); refused because enable_script_security is set",
                dir.display()
            )
        );
        mode(&dir, 0o755);
        let cfg = ok(&text(&path, &path));
        assert!(cfg.script_security.enforce);
        assert_eq!(
            cfg.script_security.run_as.as_ref().map(|r| (r.uid, r.gid)),
            Some((0, 0))
        );

        mode(&script, 0o775);
        std::os::unix::fs::chown(&script, None, Some(100)).expect("chown");
        assert_eq!(
            fails(&text("/bin/true", &path)),
            format!(
                "keepalived.conf:14: notify_master of vrrp_instance VI_1: script \"{path}\": {path} is writable by group 100 (mode 0775); refused because enable_script_security is set"
            )
        );
        // Without enable_script_security the same files are accepted, as before.
        ok(&text(&path, &path).replace("  enable_script_security\n", ""));
        assert_eq!(
            fails("global_defs {\n  script_user ipf-no-such-user\n}\n"),
            "keepalived.conf:2: script_user \"ipf-no-such-user\": no such user"
        );
    });
    let _ = std::fs::remove_dir_all(&dir);
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}
