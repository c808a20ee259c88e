use super::*;

fn host() -> Host {
    Host {
        interfaces: vec!["eth0".into(), "eth1".into()],
        default_route_interface: Some("eth0".into()),
        addresses: vec!["10.10.0.21".parse().expect("addr")],
    }
}

fn vars(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

fn read(pairs: &[(&str, &str)]) -> Result<KeepalivedEnv, String> {
    from_env(&vars(pairs), &host()).map_err(|e| e.to_string())
}

fn config(pairs: &[(&str, &str)]) -> Config {
    match read(pairs).expect("valid environment").source {
        Source::Autoconf(c) => c,
        other => panic!("expected autoconf, got {other:?}"),
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("address")
}

fn vip(s: &str) -> Vip {
    parse_vip(s).expect("vip")
}

/// The model of `KEEPALIVED_VIRTUAL_IPADDRESS_1=10.10.0.2/24` and nothing else.
fn defaults() -> InstanceSpec {
    let mut i = InstanceSpec::new("MAIN", "eth0", 1, Family::V4);
    i.version = 2;
    i.priority = 200;
    i.initial_state = InitialState::Master;
    i.vips = vec![vip("10.10.0.2/24")];
    i.auth_pass = Some("pwd1".into());
    i
}

const VIP: (&str, &str) = ("KEEPALIVED_VIRTUAL_IPADDRESS_1", "10.10.0.2/24");

#[test]
fn defaults_follow_the_image() {
    let c = config(&[VIP]);
    assert_eq!(c.instances, [defaults()]);
    assert_eq!(c.router_id.as_deref(), Some("LVS_MAIN"));
    assert!(c.checks.is_empty() && c.firewall.is_none());
    assert_eq!(c.warnings, Vec::<String>::new());
    assert!(!read(&[VIP]).expect("ok").debug);
}

#[test]
fn every_variable_sets_its_field() {
    type Edit = fn(&mut InstanceSpec);
    let table: &[(&[(&str, &str)], Edit)] = &[
        (&[("KEEPALIVED_INTERFACE", "ens3")], |i| {
            i.interface = "ens3".into();
        }),
        (&[("KEEPALIVED_STATE", "backup")], |i| {
            i.initial_state = InitialState::Backup;
            i.priority = 100;
        }),
        (&[("KEEPALIVED_STATE", "Master")], |_| {}),
        (&[("KEEPALIVED_STATE", "BACKUP"), ("KEEPALIVED_PRIORITY", "150")], |i| {
            i.initial_state = InitialState::Backup;
            i.priority = 150;
        }),
        (&[("KEEPALIVED_PRIORITY", "255")], |i| i.priority = 255),
        (&[("KEEPALIVED_PRIORITY", "1")], |i| i.priority = 1),
        (&[("KEEPALIVED_VIRTUAL_ROUTER_ID", "42")], |i| {
            i.vrid = 42;
            i.auth_pass = Some("pwd42".into());
        }),
        (
            &[
                ("KEEPALIVED_VIRTUAL_ROUTER_ID", "7"),
                ("KEEPALIVED_AUTH_PASS", "s3cret"),
            ],
            |i| {
                i.vrid = 7;
                i.auth_pass = Some("s3cret".into());
            },
        ),
        (&[("KEEPALIVED_ADVERT_INT", "3")], |i| {
            i.adver_int = Duration::from_secs(3)
        }),
        (&[("KEEPALIVED_ADVERT_INT", "255")], |i| {
            i.adver_int = Duration::from_secs(255)
        }),
        (&[("KEEPALIVED_ADVERT_INT", "2.0")], |i| {
            i.adver_int = Duration::from_secs(2)
        }),
        (&[("KEEPALIVED_UNICAST_SRC_IP", "10.10.0.21")], |i| {
            i.src = Some(ip("10.10.0.21"))
        }),
        (
            &[
                ("KEEPALIVED_UNICAST_PEER_0", "10.10.0.22"),
                ("KEEPALIVED_UNICAST_PEER_1", "10.10.0.23"),
            ],
            |i| i.unicast_peers = vec![ip("10.10.0.22"), ip("10.10.0.23")],
        ),
        (
            &[("KEEPALIVED_VIRTUAL_IPADDRESS_2", "10.10.0.3 dev eth1 label eth1:vip")],
            |i| i.vips.push(vip("10.10.0.3/32 dev eth1 label eth1:vip")),
        ),
        (
            &[(
                "KEEPALIVED_VIRTUAL_IPADDRESS_EXCLUDED_0",
                "172.16.1.20/24 brd + dev eth1 scope link",
            )],
            |i| i.excluded = vec![vip("172.16.1.20/24 brd 172.16.1.255 dev eth1 scope 253")],
        ),
        (
            &[
                ("KEEPALIVED_TRACK_INTERFACE_1", "eth1"),
                ("KEEPALIVED_TRACK_INTERFACE_0", "eth0"),
            ],
            // The VRRP interface is always tracked; the model lists the others.
            |i| i.track_interfaces = vec!["eth1".into()],
        ),
        // Given track interfaces replace the default (the image did the same).
        (&[("KEEPALIVED_TRACK_INTERFACE_5", "eth1")], |i| {
            i.track_interfaces = vec!["eth1".into()]
        }),
        // Empty is unset, as `${VAR:-default}`.
        (&[("KEEPALIVED_INTERFACE", ""), ("KEEPALIVED_PRIORITY", " ")], |_| {}),
        (&[("KEEPALIVED_AUTOCONF", "TRUE")], |_| {}),
        (&[("KEEPALIVED_DEBUG", "true")], |_| {}),
    ];
    for (pairs, edit) in table {
        let mut all = vec![VIP];
        all.extend_from_slice(pairs);
        let mut want = defaults();
        edit(&mut want);
        let got = config(&all);
        assert_eq!(got.instances, [want], "{pairs:?}");
    }
}

#[test]
fn debug_is_exposed_in_both_modes() {
    assert!(read(&[VIP, ("KEEPALIVED_DEBUG", "True")]).expect("ok").debug);
    let file = read(&[("KEEPALIVED_AUTOCONF", "false"), ("KEEPALIVED_DEBUG", "TRUE")]).expect("ok");
    assert!(file.debug);
    assert!(!read(&[VIP, ("KEEPALIVED_DEBUG", "false")]).expect("ok").debug);
}

#[test]
fn numbered_families_are_read_in_numeric_order() {
    let c = config(&[
        ("KEEPALIVED_VIRTUAL_IPADDRESS_10", "10.0.0.10"),
        ("KEEPALIVED_VIRTUAL_IPADDRESS_2", "10.0.0.2"),
        ("KEEPALIVED_VIRTUAL_IPADDRESS_1", "10.0.0.1"),
        ("KEEPALIVED_VIRTUAL_IPADDRESS_100", "10.0.0.100"),
        ("KEEPALIVED_VIRTUAL_IPADDRESS_EXCLUDED_10", "10.1.0.10"),
        ("KEEPALIVED_VIRTUAL_IPADDRESS_EXCLUDED_9", "10.1.0.9"),
        ("KEEPALIVED_UNICAST_PEER_10", "10.2.0.10"),
        ("KEEPALIVED_UNICAST_PEER_2", "10.2.0.2"),
        ("KEEPALIVED_UNICAST_PEER_000", "10.2.0.0"),
        ("KEEPALIVED_TRACK_INTERFACE_10", "eth1"),
        ("KEEPALIVED_TRACK_INTERFACE_9", "eth0"),
    ]);
    let i = &c.instances[0];
    let addrs = |v: &[Vip]| v.iter().map(|v| v.addr.to_string()).collect::<Vec<_>>();
    assert_eq!(addrs(&i.vips), ["10.0.0.1", "10.0.0.2", "10.0.0.10", "10.0.0.100"]);
    assert_eq!(addrs(&i.excluded), ["10.1.0.9", "10.1.0.10"]);
    assert_eq!(i.unicast_peers, [ip("10.2.0.0"), ip("10.2.0.2"), ip("10.2.0.10")]);
    assert_eq!(i.track_interfaces, ["eth1"]);
}

#[test]
fn ipv6_vips_use_vrrpv3_without_auth() {
    let c = config(&[
        ("KEEPALIVED_VIRTUAL_IPADDRESS_1", "2001:db8::10/64 dev eth0"),
        ("KEEPALIVED_ADVERT_INT", "0.5"),
        ("KEEPALIVED_UNICAST_PEER_1", "fe80::2"),
        ("KEEPALIVED_AUTH_PASS", "secret"),
    ]);
    let i = &c.instances[0];
    assert_eq!((i.family, i.version, i.auth_pass.clone()), (Family::V6, 3, None));
    assert_eq!(i.adver_int, Duration::from_millis(500));
    assert_eq!(i.unicast_peers, [ip("fe80::2")]);
    assert!(
        c.warnings.iter().any(|w| w.contains("KEEPALIVED_AUTH_PASS is ignored")),
        "{:?}",
        c.warnings
    );
    let top = config(&[
        ("KEEPALIVED_VIRTUAL_IPADDRESS_1", "2001:db8::10"),
        ("KEEPALIVED_ADVERT_INT", "40.95"),
    ]);
    assert_eq!(top.instances[0].adver_int, Duration::from_millis(40_950));
}

#[test]
fn bad_values_name_the_variable_and_the_value() {
    for (pairs, needle) in [
        (vec![("KEEPALIVED_AUTOCONF", "yes")], r#"KEEPALIVED_AUTOCONF="yes""#),
        (vec![("KEEPALIVED_DEBUG", "1")], r#"KEEPALIVED_DEBUG="1""#),
        (vec![("KEEPALIVED_STATE", "FAULT")], r#"KEEPALIVED_STATE="FAULT""#),
        (vec![("KEEPALIVED_PRIORITY", "0")], r#"KEEPALIVED_PRIORITY="0""#),
        (vec![("KEEPALIVED_PRIORITY", "256")], r#"KEEPALIVED_PRIORITY="256""#),
        (vec![("KEEPALIVED_PRIORITY", "high")], r#"KEEPALIVED_PRIORITY="high""#),
        (
            vec![("KEEPALIVED_VIRTUAL_ROUTER_ID", "300")],
            r#"KEEPALIVED_VIRTUAL_ROUTER_ID="300": a whole number 1..255 expected"#,
        ),
        (
            vec![("KEEPALIVED_VIRTUAL_ROUTER_ID", "0")],
            r#"KEEPALIVED_VIRTUAL_ROUTER_ID="0""#,
        ),
        (vec![("KEEPALIVED_ADVERT_INT", "0")], r#"KEEPALIVED_ADVERT_INT="0""#),
        (
            vec![("KEEPALIVED_ADVERT_INT", "0.5")],
            r#"KEEPALIVED_ADVERT_INT="0.5": whole seconds 1..255"#,
        ),
        (vec![("KEEPALIVED_ADVERT_INT", "256")], r#"KEEPALIVED_ADVERT_INT="256""#),
        (vec![("KEEPALIVED_ADVERT_INT", "1s")], r#"KEEPALIVED_ADVERT_INT="1s""#),
        (
            vec![("KEEPALIVED_INTERFACE", "eth0 eth1")],
            r#"KEEPALIVED_INTERFACE="eth0 eth1""#,
        ),
        (
            vec![("KEEPALIVED_INTERFACE", "a-very-long-interface")],
            r#"KEEPALIVED_INTERFACE="a-very-long-interface""#,
        ),
        (
            vec![("KEEPALIVED_AUTH_PASS", "two words")],
            r#"KEEPALIVED_AUTH_PASS="two words""#,
        ),
        (
            vec![("KEEPALIVED_UNICAST_SRC_IP", "10.10.0.x")],
            r#"KEEPALIVED_UNICAST_SRC_IP="10.10.0.x": not an IP address"#,
        ),
        (
            vec![("KEEPALIVED_UNICAST_SRC_IP", "2001:db8::1")],
            r#"KEEPALIVED_UNICAST_SRC_IP="2001:db8::1": the VIPs are IPv4"#,
        ),
        (
            vec![("KEEPALIVED_UNICAST_PEER_3", "peer-b")],
            r#"KEEPALIVED_UNICAST_PEER_3="peer-b": not an IP address"#,
        ),
        (
            vec![("KEEPALIVED_UNICAST_PEER_3", "2001:db8::2")],
            r#"KEEPALIVED_UNICAST_PEER_3="2001:db8::2""#,
        ),
        (
            vec![("KEEPALIVED_UNICAST_PEER_x", "10.10.0.22")],
            r#"KEEPALIVED_UNICAST_PEER_x="10.10.0.22": the name must end in a number 0..999"#,
        ),
        (
            vec![("KEEPALIVED_UNICAST_PEER_1000", "10.10.0.22")],
            r#"KEEPALIVED_UNICAST_PEER_1000="10.10.0.22""#,
        ),
        (
            vec![("KEEPALIVED_VIRTUAL_IPADDRESS_", "10.10.0.9")],
            r#"KEEPALIVED_VIRTUAL_IPADDRESS_="10.10.0.9""#,
        ),
        (
            vec![("KEEPALIVED_VIRTUAL_IPADDRESS_EXCLUDED_1a", "10.10.0.9")],
            r#"KEEPALIVED_VIRTUAL_IPADDRESS_EXCLUDED_1a="10.10.0.9""#,
        ),
        (
            vec![("KEEPALIVED_TRACK_INTERFACE_-1", "eth0")],
            r#"KEEPALIVED_TRACK_INTERFACE_-1="eth0""#,
        ),
        (
            vec![("KEEPALIVED_VIRTUAL_IPADDRESS_2", "10.10.0.300/24 dev eth0")],
            r#"KEEPALIVED_VIRTUAL_IPADDRESS_2="10.10.0.300/24 dev eth0""#,
        ),
        (
            vec![("KEEPALIVED_VIRTUAL_IPADDRESS_2", "10.10.0.3/24 device eth0")],
            r#"KEEPALIVED_VIRTUAL_IPADDRESS_2="10.10.0.3/24 device eth0""#,
        ),
        (
            vec![("KEEPALIVED_VIRTUAL_IPADDRESS_2", "2001:db8::3")],
            r#"KEEPALIVED_VIRTUAL_IPADDRESS_2="2001:db8::3": KEEPALIVED_VIRTUAL_IPADDRESS_1 is IPv4"#,
        ),
        (
            vec![("KEEPALIVED_VIRTUAL_IPADDRESS_EXCLUDED_2", "172.16.1.20/33")],
            r#"KEEPALIVED_VIRTUAL_IPADDRESS_EXCLUDED_2="172.16.1.20/33""#,
        ),
        (
            vec![("KEEPALIVED_TRACK_INTERFACE_1", "eth/0")],
            r#"KEEPALIVED_TRACK_INTERFACE_1="eth/0""#,
        ),
        // Fuzzer finding: `@` rendered as a track_interface line that keepalived.conf reads as a
        // conditional configuration id.
        (
            vec![("KEEPALIVED_TRACK_INTERFACE_1", "@")],
            r#"KEEPALIVED_TRACK_INTERFACE_1="@": not an interface name"#,
        ),
        (
            vec![("KEEPALIVED_KUBE_APISERVER_CHECK", "on")],
            r#"KEEPALIVED_KUBE_APISERVER_CHECK="on""#,
        ),
        (
            vec![
                ("KEEPALIVED_KUBE_APISERVER_CHECK", "true"),
                ("KUBE_APISERVER_ADDRESS", "vip"),
            ],
            r#"KUBE_APISERVER_ADDRESS="vip""#,
        ),
        (
            vec![
                ("KEEPALIVED_KUBE_APISERVER_CHECK", "true"),
                ("KUBE_APISERVER_PORT", "0"),
            ],
            r#"KUBE_APISERVER_PORT="0""#,
        ),
        (
            vec![
                ("KEEPALIVED_KUBE_APISERVER_CHECK", "true"),
                ("KUBE_APISERVER_PORT", "tcp://10.96.0.1:443"),
            ],
            "enableServiceLinks",
        ),
        (
            vec![
                ("KEEPALIVED_KUBE_APISERVER_CHECK", "true"),
                ("KUBE_APISERVER_CHK_INTERVAL", "0"),
            ],
            r#"KUBE_APISERVER_CHK_INTERVAL="0""#,
        ),
        (
            vec![
                ("KEEPALIVED_KUBE_APISERVER_CHECK", "true"),
                ("KUBE_APISERVER_CHK_FALL", "0"),
            ],
            r#"KUBE_APISERVER_CHK_FALL="0""#,
        ),
        (
            vec![
                ("KEEPALIVED_KUBE_APISERVER_CHECK", "true"),
                ("KUBE_APISERVER_CHK_RISE", "-1"),
            ],
            r#"KUBE_APISERVER_CHK_RISE="-1""#,
        ),
        (
            vec![
                ("KEEPALIVED_KUBE_APISERVER_CHECK", "true"),
                ("KUBE_APISERVER_CHK_WEIGHT", "-300"),
            ],
            r#"KUBE_APISERVER_CHK_WEIGHT="-300": a whole number -253..253 expected"#,
        ),
    ] {
        let mut all = vec![VIP];
        all.extend(pairs);
        let e = read(&all).expect_err(needle);
        assert!(e.contains(needle), "{needle}\n  got: {e}");
    }
}

#[test]
fn a_vip_is_required() {
    let e = read(&[("KEEPALIVED_STATE", "MASTER")]).expect_err("no VIP");
    assert!(e.contains("KEEPALIVED_VIRTUAL_IPADDRESS_<0-999> is required"), "{e}");
    // An excluded address is not a VIP, nor is an empty VIP variable.
    let e = read(&[
        ("KEEPALIVED_VIRTUAL_IPADDRESS_EXCLUDED_1", "172.16.1.20/24"),
        ("KEEPALIVED_VIRTUAL_IPADDRESS_1", ""),
    ])
    .expect_err("no VIP");
    assert!(e.contains("is required"), "{e}");
}

#[test]
fn autoconf_false_reads_a_file() {
    let file = |pairs: &[(&str, &str)]| match read(pairs).expect("ok").source {
        Source::File { path, warnings } => (path, warnings),
        other => panic!("expected a file, got {other:?}"),
    };
    let (path, warnings) = file(&[("KEEPALIVED_AUTOCONF", "false")]);
    assert_eq!(path, PathBuf::from("/etc/keepalived/keepalived.conf"));
    assert!(warnings.is_empty(), "{warnings:?}");
    let (path, warnings) = file(&[
        ("KEEPALIVED_AUTOCONF", "False"),
        ("KEEPALIVED_CONF", "/config/keepalived.conf"),
        // Not read without autoconf: no error for a bad one, but a warning that it is ignored.
        ("KEEPALIVED_VIRTUAL_ROUTER_ID", "300"),
        ("KEEPALIVED_VIRTUAL_IPADDRESS_1", "10.10.0.2/24"),
        (
            "KEEPALIVED_CMD",
            "/usr/sbin/keepalived -n -l -f /config/keepalived.conf",
        ),
    ]);
    assert_eq!(path, PathBuf::from("/config/keepalived.conf"));
    for needle in [
        "KEEPALIVED_VIRTUAL_ROUTER_ID is ignored: with KEEPALIVED_AUTOCONF=false the configuration is /config/keepalived.conf",
        "KEEPALIVED_VIRTUAL_IPADDRESS_1 is ignored",
        "KEEPALIVED_CMD is not applicable",
    ] {
        assert!(warnings.iter().any(|w| w.contains(needle)), "{needle}: {warnings:?}");
    }
}

#[test]
fn warnings_for_what_is_not_applied() {
    let c = config(&[
        VIP,
        (
            "KEEPALIVED_CMD",
            "/usr/sbin/keepalived -n -l -D -f /etc/keepalived/keepalived.conf",
        ),
        ("KEEPALIVED_VAR_RUN", "/var/run/keepalived"),
        ("KEEPALIVED_CONF", "/etc/keepalived/keepalived.conf"),
        ("KEEPALIVED_NOPREEMPT", "true"),
        ("KEEPALIVED_INTERFAC", "eth1"),
        ("KEEPALVED_TRACK_INTERFACE_2", "eth1"),
        ("KEEPALIVED_UNICAST_PEERS", "10.10.0.22"),
        ("KUBE_APISERVER_PORT", "6443"),
        // Not ours and not like ours: no warning.
        ("PATH", "/usr/bin"),
        ("KUBE_APISERVER_SERVICE_HOST", "10.96.0.1"),
        ("KEEPALIVED_TRACK_INTERFACE_3", ""),
    ]);
    let want = [
        "KEEPALIVED_CMD is not applicable",
        "KEEPALIVED_VAR_RUN is not applicable",
        "KEEPALIVED_CONF is not used with KEEPALIVED_AUTOCONF=true",
        "KEEPALIVED_NOPREEMPT is unknown: ignored",
        "KEEPALIVED_INTERFAC is not a variable of ipf nor of the arcts/keepalived image: ignored (did you mean KEEPALIVED_INTERFACE?)",
        "KEEPALVED_TRACK_INTERFACE_2 is not a variable of ipf nor of the arcts/keepalived image: ignored (did you mean KEEPALIVED_TRACK_INTERFACE_2?)",
        "KEEPALIVED_UNICAST_PEERS is not a variable of ipf nor of the arcts/keepalived image: ignored (did you mean KEEPALIVED_UNICAST_PEER_",
        "KUBE_APISERVER_PORT is ignored: KEEPALIVED_KUBE_APISERVER_CHECK is not true",
        "KEEPALIVED_TRACK_INTERFACE_3 is empty: skipped",
    ];
    for needle in want {
        assert!(
            c.warnings.iter().any(|w| w.contains(needle)),
            "{needle}: {:#?}",
            c.warnings
        );
    }
    assert_eq!(c.warnings.len(), want.len(), "{:#?}", c.warnings);
    // The misspelled and empty ones do not count.
    assert!(c.instances[0].track_interfaces.is_empty());
}

#[test]
fn interfaces_missing_on_this_node_are_warned_about() {
    let c = config(&[
        ("KEEPALIVED_VIRTUAL_IPADDRESS_1", "10.10.0.2/24 dev eth2"),
        ("KEEPALIVED_INTERFACE", "bond0"),
    ]);
    assert_eq!(
        c.warnings,
        [
            "interface bond0 does not exist on this node (yet)",
            "interface eth2 does not exist on this node (yet)"
        ]
    );
    // Nothing is known about the node: nothing to say.
    let bare = from_env(&vars(&[VIP, ("KEEPALIVED_INTERFACE", "bond0")]), &Host::default()).expect("ok");
    let Source::Autoconf(c) = bare.source else {
        panic!("autoconf expected")
    };
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
}

#[test]
fn this_node_in_the_peer_list_is_skipped() {
    // host() is 10.10.0.21.
    let c = config(&[
        VIP,
        ("KEEPALIVED_UNICAST_PEER_1", "10.10.0.21"),
        ("KEEPALIVED_UNICAST_PEER_2", "10.10.0.22"),
        ("KEEPALIVED_UNICAST_SRC_IP", "10.10.0.99"),
    ]);
    assert_eq!(c.instances[0].unicast_peers, [ip("10.10.0.22")]);
    assert_eq!(c.instances[0].src, Some(ip("10.10.0.99")));
    assert_eq!(
        c.warnings,
        [
            r#"KEEPALIVED_UNICAST_PEER_1="10.10.0.21" is this node's own address: skipped"#,
            r#"KEEPALIVED_UNICAST_SRC_IP="10.10.0.99" is not an address of this node (yet)"#,
        ]
    );
}

#[test]
fn kube_apiserver_check() {
    let c = config(&[
        ("KEEPALIVED_VIRTUAL_IPADDRESS_10", "10.0.0.10/24"),
        ("KEEPALIVED_VIRTUAL_IPADDRESS_2", "10.0.0.2/24 brd 10.0.0.255 dev eth0"),
        ("KEEPALIVED_KUBE_APISERVER_CHECK", "TRUE"),
    ]);
    assert_eq!(
        c.checks,
        [CheckSpec {
            name: "chk_kube_apiserver".into(),
            // The lowest-numbered VIP (the image took the lowest-sorted, _10), its address only.
            kind: CheckKind::KubeApiserver {
                address: ip("10.0.0.2"),
                port: 6443
            },
            interval: Duration::from_secs(3),
            timeout: Duration::from_secs(2),
            rise: 2,
            fall: 10,
            weight: -50,
        }]
    );
    assert_eq!(c.instances[0].tracks, ["chk_kube_apiserver"]);
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);

    let c = config(&[
        VIP,
        ("KEEPALIVED_KUBE_APISERVER_CHECK", "true"),
        ("KUBE_APISERVER_ADDRESS", "10.10.0.100"),
        ("KUBE_APISERVER_PORT", "8443"),
        ("KUBE_APISERVER_CHK_INTERVAL", "1"),
        ("KUBE_APISERVER_CHK_FALL", "3"),
        ("KUBE_APISERVER_CHK_RISE", "1"),
        ("KUBE_APISERVER_CHK_WEIGHT", "-20"),
    ]);
    assert_eq!(
        c.checks,
        [CheckSpec {
            name: "chk_kube_apiserver".into(),
            kind: CheckKind::KubeApiserver {
                address: ip("10.10.0.100"),
                port: 8443
            },
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            rise: 1,
            fall: 3,
            weight: -20,
        }]
    );

    let off = config(&[VIP, ("KEEPALIVED_KUBE_APISERVER_CHECK", "false")]);
    assert!(off.checks.is_empty() && off.instances[0].tracks.is_empty());
}

/// The two `docker run` examples of the image's README (seed document 003).
fn readme_example(state: &str, src: &str, peer: &str) -> Vec<(&'static str, String)> {
    vec![
        ("KEEPALIVED_AUTOCONF", "true".into()),
        ("KEEPALIVED_STATE", state.into()),
        ("KEEPALIVED_INTERFACE", "eth0".into()),
        ("KEEPALIVED_VIRTUAL_ROUTER_ID", "2".into()),
        ("KEEPALIVED_UNICAST_SRC_IP", src.into()),
        ("KEEPALIVED_UNICAST_PEER_0", peer.into()),
        ("KEEPALIVED_TRACK_INTERFACE_1", "eth0".into()),
        ("KEEPALVED_TRACK_INTERFACE_2", "eth1".into()),
        ("KEEPALIVED_VIRTUAL_IPADDRESS_1", "10.10.0.3/24 dev eth0".into()),
        (
            "KEEPALIVED_VIRTUAL_IPADDRESS_EXCLUDED_1",
            "172.16.1.20/24 dev eth1".into(),
        ),
    ]
}

#[test]
fn the_readme_examples() {
    for (state, priority, initial, src, peer) in [
        ("MASTER", 200, InitialState::Master, "10.10.0.21", "10.10.0.22"),
        ("BACKUP", 100, InitialState::Backup, "10.10.0.22", "10.10.0.21"),
    ] {
        let pairs = readme_example(state, src, peer);
        let pairs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
        // Each runs on its own node, whose address is its unicast source.
        let node = Host {
            addresses: vec![ip(src)],
            ..host()
        };
        let env = from_env(&vars(&pairs), &node).expect("the README's example");
        assert!(!env.debug);
        let Source::Autoconf(c) = env.source else {
            panic!("autoconf expected")
        };
        let mut want = InstanceSpec::new("MAIN", "eth0", 2, Family::V4);
        want.version = 2;
        want.priority = priority;
        want.initial_state = initial;
        want.src = Some(ip(src));
        want.unicast_peers = vec![ip(peer)];
        want.auth_pass = Some("pwd2".into());
        // `dev eth0` is the instance's own interface: the canonical model leaves it out.
        want.vips = vec![Vip::new(ip("10.10.0.3"), 24)];
        want.excluded = vec![Vip {
            dev: Some("eth1".into()),
            ..Vip::new(ip("172.16.1.20"), 24)
        }];
        // The misspelled KEEPALVED_TRACK_INTERFACE_2 does not count (nor did it for the image).
        // (eth0 is the VRRP interface, always tracked.)
        assert_eq!(c.instances, [want], "{state}");
        assert_eq!(c.router_id.as_deref(), Some("LVS_MAIN"));
        assert!(c.checks.is_empty());
        assert_eq!(
            c.warnings,
            [
                "KEEPALVED_TRACK_INTERFACE_2 is not a variable of ipf nor of the arcts/keepalived image: ignored (did you mean KEEPALIVED_TRACK_INTERFACE_2?)"
            ],
            "{state}"
        );
    }
}

#[test]
fn misspellings_are_recognised_but_unrelated_names_are_not() {
    assert_eq!(
        misspelling_of("KEEPALVED_TRACK_INTERFACE_2").as_deref(),
        Some("KEEPALIVED_TRACK_INTERFACE_2")
    );
    assert_eq!(
        misspelling_of("KEEPALIVED_VIRTUAL_IPADRESS_1").as_deref(),
        Some("KEEPALIVED_VIRTUAL_IPADDRESS_1")
    );
    assert_eq!(
        misspelling_of("KEEPALIVED_PRIORTY").as_deref(),
        Some("KEEPALIVED_PRIORITY")
    );
    assert_eq!(
        misspelling_of("KUBE_APISERVER_PROT").as_deref(),
        Some("KUBE_APISERVER_PORT")
    );
    for name in [
        "HOSTNAME",
        "KUBERNETES_SERVICE_PORT",
        "KUBE_APISERVER_PORT_443_TCP",
        "HOME_1",
    ] {
        assert_eq!(misspelling_of(name), None, "{name}");
    }
    assert_eq!(distance("kitten", "sitting"), 3);
    assert_eq!(distance("", "abc"), 3);
}
