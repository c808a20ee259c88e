//! The arcts/keepalived KEEPALIVED_* front end on an arbitrary environment: an error names the
//! variable; an accepted configuration is valid and renders to a keepalived.conf that reads back.
#![no_main]

use ipf_agent::config::keepalived_env::{Source, from_env};
use libfuzzer_sys::fuzz_target;

const NAMES: &[&str] = &[
    "KEEPALIVED_AUTOCONF",
    "KEEPALIVED_CONF",
    "KEEPALIVED_CMD",
    "KEEPALIVED_DEBUG",
    "KEEPALIVED_INTERFACE",
    "KEEPALIVED_STATE",
    "KEEPALIVED_PRIORITY",
    "KEEPALIVED_VIRTUAL_ROUTER_ID",
    "KEEPALIVED_ADVERT_INT",
    "KEEPALIVED_AUTH_PASS",
    "KEEPALIVED_UNICAST_SRC_IP",
    "KEEPALIVED_KUBE_APISERVER_CHECK",
    "KUBE_APISERVER_ADDRESS",
    "KUBE_APISERVER_PORT",
    "KUBE_APISERVER_CHK_INTERVAL",
    "KUBE_APISERVER_CHK_FALL",
    "KUBE_APISERVER_CHK_RISE",
    "KUBE_APISERVER_CHK_WEIGHT",
    "KEEPALIVED_VIRTUAL_IPADDRESS_1",
    "KEEPALIVED_VIRTUAL_IPADDRESS_2",
    "KEEPALIVED_VIRTUAL_IPADDRESS_EXCLUDED_1",
    "KEEPALIVED_UNICAST_PEER_1",
    "KEEPALIVED_UNICAST_PEER_2",
    "KEEPALIVED_TRACK_INTERFACE_1",
];

fuzz_target!(|data: &[u8]| {
    let vars = ipf_fuzz::environment(data, NAMES);
    match from_env(&vars, &ipf_fuzz::host()) {
        Ok(env) => {
            if let Source::Autoconf(cfg) = env.source {
                ipf_fuzz::check_accepted(&cfg);
            }
        }
        Err(e) => {
            let e = e.to_string();
            assert!(
                vars.keys().any(|n| e.contains(n.as_str()))
                    || e.contains("KEEPALIVED_")
                    || e.contains("KUBE_APISERVER_"),
                "error naming no variable: {e}"
            )
        }
    }
});
