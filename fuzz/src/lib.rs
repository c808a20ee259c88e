//! Shared by the configuration fuzz targets: an environment decoded from fuzz input, a fixed host, and
//! the property every front end must keep.

use std::{collections::BTreeMap, net::IpAddr};

use ipf_agent::config::{Config, Host, keepalived_conf};

/// This node as the targets see it: eth0 with 192.0.2.2 and fe80::2.
pub fn host() -> Host {
    Host {
        interfaces: vec!["lo".into(), "eth0".into()],
        default_route_interface: Some("eth0".into()),
        addresses: vec![
            IpAddr::from([192, 0, 2, 2]),
            IpAddr::from([0xfe80, 0, 0, 0, 0, 0, 0, 2]),
        ],
    }
}

/// Lines of `NAME=VALUE`; a line whose name is a single byte takes the name at that index of `names`
/// instead, so the fuzzer reaches the variables that matter without guessing their spelling.
pub fn environment(data: &[u8], names: &[&str]) -> BTreeMap<String, String> {
    let text = String::from_utf8_lossy(data);
    let mut vars = BTreeMap::new();
    for line in text.lines() {
        let Some((name, value)) = line.split_once('=') else {
            continue;
        };
        let name = match name.as_bytes() {
            [b] => names[usize::from(*b) % names.len()].to_owned(),
            _ => name.to_owned(),
        };
        vars.insert(name, value.to_owned());
    }
    vars
}

/// A configuration a front end accepted and that passes validation (as `run` and `check-config` do
/// next) renders to a keepalived.conf that reads back to as many instances (what `render-config`
/// promises: keepalived runs the same setup).
pub fn check_accepted(cfg: &Config) {
    if cfg.validate().is_err() {
        return;
    }
    let text = keepalived_conf::render(cfg, host().addresses.first().copied());
    match keepalived_conf::parse(&text, "rendered.conf") {
        Ok(back) => assert_eq!(
            back.instances.len(),
            cfg.instances.len(),
            "rendering lost instances:\n{text}"
        ),
        // The rendering turns on keepalived's script security for scripts (keepalived wants it): a
        // script path that a non-root user could change is then rightly refused.
        Err(e) if e.to_string().contains("enable_script_security") => {}
        Err(e) => panic!("the rendering does not read back: {e}\n{text}"),
    }
}
