//! The OPENSHIFT_HA_* front end on an arbitrary environment: an error names the variable; an accepted
//! configuration is valid and renders to a keepalived.conf that reads back.
#![no_main]

use libfuzzer_sys::fuzz_target;

const NAMES: &[&str] = &[
    "OPENSHIFT_HA_VIRTUAL_IPS",
    "OPENSHIFT_HA_VIP_GROUPS",
    "OPENSHIFT_HA_VRRP_ID_OFFSET",
    "HA_EXCLUDED_VRRP_IDS",
    "OPENSHIFT_HA_NETWORK_INTERFACE",
    "OPENSHIFT_HA_MONITOR_PORT",
    "OPENSHIFT_HA_CHECK_SCRIPT",
    "OPENSHIFT_HA_CHECK_INTERVAL",
    "OPENSHIFT_HA_NOTIFY_SCRIPT",
    "OPENSHIFT_HA_PREEMPTION",
    "OPENSHIFT_HA_UNICAST_PEERS",
    "OPENSHIFT_HA_USE_UNICAST",
    "OPENSHIFT_HA_IPTABLES_CHAIN",
    "OPENSHIFT_HA_NFTABLES_RULE",
    "OPENSHIFT_HA_REPLICA_COUNT",
    "OPENSHIFT_HA_CONFIG_NAME",
];

fuzz_target!(|data: &[u8]| {
    let vars = ipf_fuzz::environment(data, NAMES);
    match ipf_agent::config::openshift::from_env(&vars, &ipf_fuzz::host()) {
        Ok(cfg) => ipf_fuzz::check_accepted(&cfg),
        Err(e) => {
            let e = e.to_string();
            assert!(NAMES.iter().any(|n| e.contains(n)), "error naming no variable: {e}")
        }
    }
});
