//! The effective configuration as `check-config` prints it: a stable text for people and golden
//! tests, and a stable JSON document (`--format json`) for tools.

use std::{fmt::Write as _, time::Duration};

use super::{CheckKind, Config, Firewall, InitialState};
use crate::vrrp::Preempt;

fn seconds(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

fn or_dash(items: impl IntoIterator<Item = String>) -> String {
    let v: Vec<String> = items.into_iter().collect();
    if v.is_empty() { "-".to_owned() } else { v.join(", ") }
}

impl Config {
    /// The effective configuration in a stable, readable form (`check-config` prints it; golden
    /// tests compare it).
    pub fn describe(&self) -> String {
        let mut out = String::new();
        let mut line = |s: String| {
            out.push_str(&s);
            out.push('\n');
        };
        line(format!("router_id: {}", self.router_id.as_deref().unwrap_or("-")));
        line(format!(
            "firewall: {}",
            match &self.firewall {
                None => "-".to_owned(),
                Some(Firewall::Iptables { chain }) =>
                    format!("iptables accept rule for VRRP multicast in chain {chain}"),
                Some(Firewall::Nftables) => "nftables accept rule for VRRP multicast".to_owned(),
            }
        ));
        for c in &self.checks {
            let kind = match &c.kind {
                CheckKind::Script(s) => format!("script {s:?}"),
                CheckKind::Tcp(p) => format!("TCP connect to this node's port {p}"),
                CheckKind::KubeApiserver { address, port } => format!(
                    "kube-apiserver: HTTPS GET /healthz on localhost:{port}, and on {address}:{port} while holding it"
                ),
            };
            line(format!(
                "check {}: {kind}, every {}, timeout {}, rise {}, fall {}, weight {}",
                c.name,
                seconds(c.interval),
                seconds(c.timeout),
                c.rise,
                c.fall,
                c.weight
            ));
        }
        for i in &self.instances {
            let preempt = match i.preempt {
                Preempt::Yes => "preempt".to_owned(),
                Preempt::No => "nopreempt".to_owned(),
                Preempt::Delay(d) => format!("preempt after {}", seconds(d)),
            };
            let state = match i.initial_state {
                InitialState::Backup => "BACKUP",
                InitialState::Master => "MASTER",
            };
            line(format!(
                "instance {}: {} vrid {} {:?} VRRPv{}, priority {}, advert every {}, {preempt}, state {state}",
                i.name,
                i.interface,
                i.vrid,
                i.family,
                i.version,
                i.priority,
                seconds(i.adver_int)
            ));
            line(format!("  vips: {}", or_dash(i.vips.iter().map(ToString::to_string))));
            line(format!(
                "  excluded: {}",
                or_dash(i.excluded.iter().map(ToString::to_string))
            ));
            let mut peers = String::new();
            if i.unicast_peers.is_empty() {
                peers.push_str("multicast");
            } else {
                let _ = write!(
                    peers,
                    "unicast to {}",
                    or_dash(i.unicast_peers.iter().map(ToString::to_string))
                );
            }
            let _ = write!(
                peers,
                ", from {}",
                i.src.map_or("the interface's address".to_owned(), |s| s.to_string())
            );
            line(format!("  adverts: {peers}"));
            line(format!(
                "  auth: {}",
                i.auth_pass.as_ref().map_or("-".to_owned(), |p| format!("PASS {p:?}"))
            ));
            line(format!(
                "  track_script: {}; track_interface: {}",
                or_dash(i.tracks.iter().cloned()),
                or_dash(i.track_interfaces.iter().cloned())
            ));
            let n = &i.notify;
            let notify = [
                ("notify", &n.any),
                ("notify_master", &n.master),
                ("notify_backup", &n.backup),
                ("notify_fault", &n.fault),
                ("notify_stop", &n.stop),
            ]
            .into_iter()
            .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k} {v:?}")));
            line(format!("  notify: {}", or_dash(notify)));
            line(format!(
                "  gratuitous ARP/NA: {} per burst, second burst after {}, refresh {}",
                i.garp.repeat,
                seconds(i.garp.delay),
                i.garp.refresh.map_or("off".to_owned(), seconds)
            ));
        }
        for w in &self.warnings {
            line(format!("warning: {w}"));
        }
        out
    }
}

/// `check-config --format json`: the effective configuration as a stable document. Durations are
/// whole milliseconds; absent values are `null`; `schema` changes only when a field changes meaning.
#[derive(serde::Serialize)]
struct ConfigJson<'a> {
    schema: u32,
    source: &'static str,
    router_id: Option<&'a str>,
    firewall: Option<FirewallJson<'a>>,
    checks: Vec<CheckJson<'a>>,
    instances: Vec<InstanceJson<'a>>,
    warnings: &'a [String],
}

#[derive(serde::Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
enum FirewallJson<'a> {
    Iptables { chain: &'a str },
    Nftables,
}

#[derive(serde::Serialize)]
struct CheckJson<'a> {
    name: &'a str,
    /// `script`, `tcp` or `kube-apiserver`.
    kind: &'static str,
    script: Option<&'a str>,
    port: Option<u16>,
    address: Option<std::net::IpAddr>,
    interval_ms: u128,
    timeout_ms: u128,
    rise: u32,
    fall: u32,
    weight: i32,
}

#[derive(serde::Serialize)]
struct InstanceJson<'a> {
    name: &'a str,
    interface: &'a str,
    vrid: u8,
    /// `ipv4` or `ipv6`.
    family: &'static str,
    version: u8,
    priority: u8,
    advert_interval_ms: u128,
    /// `true`, `false`, or the delay in milliseconds.
    preempt: serde_json::Value,
    /// `BACKUP` or `MASTER`.
    initial_state: &'static str,
    vips: Vec<String>,
    excluded: Vec<String>,
    unicast_peers: &'a [std::net::IpAddr],
    src: Option<std::net::IpAddr>,
    auth_pass: Option<&'a str>,
    track_scripts: &'a [String],
    track_interfaces: &'a [String],
    notify: NotifyJson<'a>,
    garp: GarpJson,
}

#[derive(serde::Serialize)]
struct NotifyJson<'a> {
    any: Option<&'a str>,
    master: Option<&'a str>,
    backup: Option<&'a str>,
    fault: Option<&'a str>,
    stop: Option<&'a str>,
}

#[derive(serde::Serialize)]
struct GarpJson {
    repeat: u32,
    delay_ms: u128,
    refresh_ms: Option<u128>,
}

impl Config {
    /// The effective configuration as pretty-printed JSON (see [`ConfigJson`]'s fields).
    pub fn to_json(&self, source: super::Source) -> Result<String, serde_json::Error> {
        let checks = self
            .checks
            .iter()
            .map(|c| {
                let (kind, script, port, address) = match &c.kind {
                    CheckKind::Script(s) => ("script", Some(s.as_str()), None, None),
                    CheckKind::Tcp(p) => ("tcp", None, Some(*p), None),
                    CheckKind::KubeApiserver { address, port } => ("kube-apiserver", None, Some(*port), Some(*address)),
                };
                CheckJson {
                    name: &c.name,
                    kind,
                    script,
                    port,
                    address,
                    interval_ms: c.interval.as_millis(),
                    timeout_ms: c.timeout.as_millis(),
                    rise: c.rise,
                    fall: c.fall,
                    weight: c.weight,
                }
            })
            .collect();
        let instances = self
            .instances
            .iter()
            .map(|i| InstanceJson {
                name: &i.name,
                interface: &i.interface,
                vrid: i.vrid,
                family: match i.family {
                    crate::datapath::Family::V4 => "ipv4",
                    crate::datapath::Family::V6 => "ipv6",
                },
                version: i.version,
                priority: i.priority,
                advert_interval_ms: i.adver_int.as_millis(),
                preempt: match i.preempt {
                    Preempt::Yes => serde_json::Value::Bool(true),
                    Preempt::No => serde_json::Value::Bool(false),
                    Preempt::Delay(d) => serde_json::Value::from(u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
                },
                initial_state: match i.initial_state {
                    InitialState::Backup => "BACKUP",
                    InitialState::Master => "MASTER",
                },
                vips: i.vips.iter().map(ToString::to_string).collect(),
                excluded: i.excluded.iter().map(ToString::to_string).collect(),
                unicast_peers: &i.unicast_peers,
                src: i.src,
                auth_pass: i.auth_pass.as_deref(),
                track_scripts: &i.tracks,
                track_interfaces: &i.track_interfaces,
                notify: NotifyJson {
                    any: i.notify.any.as_deref(),
                    master: i.notify.master.as_deref(),
                    backup: i.notify.backup.as_deref(),
                    fault: i.notify.fault.as_deref(),
                    stop: i.notify.stop.as_deref(),
                },
                garp: GarpJson {
                    repeat: i.garp.repeat,
                    delay_ms: i.garp.delay.as_millis(),
                    refresh_ms: i.garp.refresh.map(|d| d.as_millis()),
                },
            })
            .collect();
        let doc = ConfigJson {
            schema: 1,
            source: source.describe(),
            router_id: self.router_id.as_deref(),
            firewall: self.firewall.as_ref().map(|f| match f {
                Firewall::Iptables { chain } => FirewallJson::Iptables { chain },
                Firewall::Nftables => FirewallJson::Nftables,
            }),
            checks,
            instances,
            warnings: &self.warnings,
        };
        serde_json::to_string_pretty(&doc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{InstanceSpec, Source, parse_vip};

    #[test]
    fn json_has_the_documented_fields() {
        let mut i = InstanceSpec::new("VI_1", "eth0", 51, crate::datapath::Family::V4);
        i.vips = vec![parse_vip("192.0.2.100/24").expect("vip")];
        i.preempt = Preempt::Delay(Duration::from_secs(300));
        let config = Config {
            instances: vec![i],
            firewall: Some(Firewall::Iptables { chain: "INPUT".into() }),
            ..Config::default()
        };
        let v: serde_json::Value =
            serde_json::from_str(&config.to_json(Source::Flags).expect("json")).expect("parses back");
        assert_eq!(v["schema"], 1);
        assert_eq!(v["source"], "command-line flags");
        assert_eq!(v["firewall"], serde_json::json!({"kind": "iptables", "chain": "INPUT"}));
        let inst = &v["instances"][0];
        assert_eq!(inst["name"], "VI_1");
        assert_eq!(inst["vrid"], 51);
        assert_eq!(inst["family"], "ipv4");
        assert_eq!(inst["advert_interval_ms"], 1000);
        assert_eq!(inst["preempt"], 300_000);
        assert_eq!(inst["vips"][0], "192.0.2.100/24");
        assert_eq!(
            inst["garp"],
            serde_json::json!({"repeat": 5, "delay_ms": 5000, "refresh_ms": null})
        );
    }
}
