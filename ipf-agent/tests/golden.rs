//! Golden tests: the documented examples of the images ipf replaces (the OpenShift ipfailover example
//! Deployment, the arcts/keepalived README's `docker run` examples and keepalived.conf files) go through
//! the front ends; the effective configuration (`check-config`'s text) and the keepalived.conf rendering
//! must match the files under `tests/golden/`. `IPF_UPDATE_GOLDEN=1 cargo test -p ipf-agent --test
//! golden` rewrites them; review the diff. The `tests` crate runs the real `keepalived -t` on the
//! renderings.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::{collections::BTreeMap, net::IpAddr, path::PathBuf};

use clap::Parser;
use ipf_agent::{
    cli::RunArgs,
    config::{Host, keepalived_conf},
};

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    run: RunArgs,
}

/// The node an example runs on: eth0 (with `node`; the arcts README's nodes are 10.10.0.21 and .22),
/// eth1 and ens3 (the ipfailover example Deployment's interface).
fn host(node: IpAddr) -> Host {
    Host {
        interfaces: vec!["eth0".into(), "eth1".into(), "ens3".into()],
        default_route_interface: Some("eth0".into()),
        addresses: vec![node],
    }
}

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn fixture(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/keepalived")
        .join(name)
        .display()
        .to_string()
}

fn check(name: &str, args: &[&str], env: &[(&str, &str)]) {
    check_on("10.10.0.21", name, args, env);
}

fn check_on(node: &str, name: &str, args: &[&str], env: &[(&str, &str)]) {
    let node: IpAddr = node.parse().unwrap();
    let cli = Cli::try_parse_from(std::iter::once("ipf-agent").chain(args.iter().copied())).unwrap();
    let env: BTreeMap<String, String> = env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    let (config, source) = cli
        .run
        .selection()
        .load_from(&env, &host(node))
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    config.validate().unwrap_or_else(|e| panic!("{name}: {e}"));
    // Warnings name the file with its absolute path: the checkout's place is not part of the result.
    let effective = format!("source: {}\n{}", source.describe(), config.describe())
        .replace(env!("CARGO_MANIFEST_DIR"), "$CARGO_MANIFEST_DIR");
    let rendered = keepalived_conf::render(&config, Some(node));
    let dir = golden_dir();
    for (suffix, got) in [("effective.txt", &effective), ("keepalived.conf", &rendered)] {
        let path = dir.join(format!("{name}.{suffix}"));
        if std::env::var_os("IPF_UPDATE_GOLDEN").is_some() {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(&path, got).unwrap();
            continue;
        }
        let want = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e} (IPF_UPDATE_GOLDEN=1 writes it)", path.display()));
        assert_eq!(
            got,
            &want,
            "{} differs (IPF_UPDATE_GOLDEN=1 rewrites it)",
            path.display()
        );
    }
    // What ipf renders, ipf reads back to the same configuration.
    let reread = keepalived_conf::parse(&rendered, "rendered.conf").unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(
        reread.instances, config.instances,
        "{name}: instances survive render → parse"
    );
}

/// The example Deployment of the OKD "Configuring IP failover" page (seed 000), as written: 2 VIPs,
/// 10 groups (one per VIP, with a warning), ens3, monitor port 30060 replaced by the check script,
/// iptables chain INPUT.
#[test]
fn openshift_example_deployment() {
    check(
        "openshift-example-deployment",
        &[],
        &[
            ("OPENSHIFT_HA_CONFIG_NAME", "ipfailover"),
            ("OPENSHIFT_HA_VIRTUAL_IPS", "1.1.1.1-2"),
            ("OPENSHIFT_HA_VIP_GROUPS", "10"),
            ("OPENSHIFT_HA_NETWORK_INTERFACE", "ens3"),
            ("OPENSHIFT_HA_MONITOR_PORT", "30060"),
            ("OPENSHIFT_HA_VRRP_ID_OFFSET", "0"),
            ("OPENSHIFT_HA_REPLICA_COUNT", "2"),
            ("OPENSHIFT_HA_USE_UNICAST", "false"),
            ("OPENSHIFT_HA_IPTABLES_CHAIN", "INPUT"),
            ("OPENSHIFT_HA_CHECK_SCRIPT", "/etc/keepalive/mycheckscript.sh"),
            ("OPENSHIFT_HA_PREEMPTION", "preempt_delay 300"),
            ("OPENSHIFT_HA_CHECK_INTERVAL", "2"),
        ],
    );
}

/// The same page's other settings: seven VIPs in three groups, the default TCP monitor port, a notify
/// script, nopreempt, unicast peers (this node skipped) and the nftables switch.
#[test]
fn openshift_groups_unicast_nftables() {
    check(
        "openshift-groups-unicast-nftables",
        &[],
        &[
            ("OPENSHIFT_HA_CONFIG_NAME", "ipf-ailover"),
            ("OPENSHIFT_HA_VIRTUAL_IPS", "10.10.0.100-106"),
            ("OPENSHIFT_HA_VIP_GROUPS", "3"),
            ("OPENSHIFT_HA_VRRP_ID_OFFSET", "10"),
            ("HA_EXCLUDED_VRRP_IDS", "12"),
            ("OPENSHIFT_HA_NOTIFY_SCRIPT", "/etc/keepalive/mynotifyscript.sh"),
            ("OPENSHIFT_HA_PREEMPTION", "nopreempt"),
            ("OPENSHIFT_HA_UNICAST_PEERS", "10.10.0.21,10.10.0.22,10.10.0.23"),
            ("OPENSHIFT_HA_NFTABLES_RULE", "true"),
        ],
    );
}

/// IPv6 VIPs: a hex range on the last group, VRRPv3, no authentication.
#[test]
fn openshift_ipv6() {
    check(
        "openshift-ipv6",
        &[],
        &[
            ("OPENSHIFT_HA_VIRTUAL_IPS", "2001:db8::1f39-1f3b"),
            ("OPENSHIFT_HA_VIP_GROUPS", "1"),
            ("OPENSHIFT_HA_MONITOR_PORT", "0"),
        ],
    );
}

/// The arcts README's first `docker run` (the MASTER node).
#[test]
fn arcts_docker_run_master() {
    check(
        "arcts-docker-run-master",
        &[],
        &[
            ("KEEPALIVED_AUTOCONF", "true"),
            ("KEEPALIVED_STATE", "MASTER"),
            ("KEEPALIVED_INTERFACE", "eth0"),
            ("KEEPALIVED_VIRTUAL_ROUTER_ID", "2"),
            ("KEEPALIVED_UNICAST_SRC_IP", "10.10.0.21"),
            ("KEEPALIVED_UNICAST_PEER_0", "10.10.0.22"),
            ("KEEPALIVED_TRACK_INTERFACE_1", "eth0"),
            ("KEEPALVED_TRACK_INTERFACE_2", "eth1"),
            ("KEEPALIVED_VIRTUAL_IPADDRESS_1", "10.10.0.3/24 dev eth0"),
            ("KEEPALIVED_VIRTUAL_IPADDRESS_EXCLUDED_1", "172.16.1.20/24 dev eth1"),
        ],
    );
}

/// The arcts README's second `docker run` (the BACKUP node), with the kube-apiserver check on.
#[test]
fn arcts_docker_run_backup_with_kube_apiserver_check() {
    check_on(
        "10.10.0.22",
        "arcts-docker-run-backup-kube",
        &[],
        &[
            ("KEEPALIVED_AUTOCONF", "true"),
            ("KEEPALIVED_STATE", "BACKUP"),
            ("KEEPALIVED_INTERFACE", "eth0"),
            ("KEEPALIVED_VIRTUAL_ROUTER_ID", "2"),
            ("KEEPALIVED_UNICAST_SRC_IP", "10.10.0.22"),
            ("KEEPALIVED_UNICAST_PEER_0", "10.10.0.21"),
            ("KEEPALIVED_TRACK_INTERFACE_1", "eth0"),
            ("KEEPALIVED_VIRTUAL_IPADDRESS_1", "10.10.0.3/24 dev eth0"),
            ("KEEPALIVED_VIRTUAL_IPADDRESS_EXCLUDED_1", "172.16.1.20/24 dev eth1"),
            ("KEEPALIVED_KUBE_APISERVER_CHECK", "true"),
        ],
    );
}

/// The arcts README's two example keepalived.conf files, through `--config` and through
/// `KEEPALIVED_AUTOCONF=false` + `KEEPALIVED_CONF`.
#[test]
fn arcts_example_keepalived_conf_files() {
    check("arcts-conf-master", &["--config", &fixture("arcts-master.conf")], &[]);
    check_on(
        "10.10.0.22",
        "arcts-conf-backup",
        &[],
        &[
            ("KEEPALIVED_AUTOCONF", "false"),
            ("KEEPALIVED_CONF", &fixture("arcts-backup.conf")),
        ],
    );
}
