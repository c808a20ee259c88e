//! The `OPENSHIFT_HA_*` environment of the OpenShift ipfailover image, read into the agent's
//! configuration (../shared/docs/compat-contract.md). The old image's harmful quirks are fixed: VIP
//! prefixes are kept, bad tokens are errors, preemption values are checked, and priorities are
//! deterministic and never 0 or 255.

use std::{
    collections::BTreeMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    time::Duration,
};

use super::{
    CheckKind, CheckSpec, Config, ConfigError, Firewall, Host, InstanceSpec, Notify,
    env::{Vars, err, interface_name},
    parse_vip,
};
use crate::{datapath::Family, vrrp::Preempt};

/// Expands `OPENSHIFT_HA_VIRTUAL_IPS`: comma/whitespace separated; `a.b.c.X-Y` (last octet) and
/// `prefix:XXXX-YYYY` (last IPv6 group, hex) ranges; an optional `/prefix` is kept.
pub fn expand_vips(value: &str) -> Result<Vec<String>, ConfigError> {
    const VAR: &str = "OPENSHIFT_HA_VIRTUAL_IPS";
    let mut out = Vec::new();
    for token in value
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|t| !t.is_empty())
    {
        let (addr, prefix) = match token.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (token, None),
        };
        let with_prefix = |a: String| match prefix {
            Some(p) => format!("{a}/{p}"),
            None => a,
        };
        let bad = |why: &str| err(VAR, value, format!("{token:?} {why}"));
        if let Some((head, last)) = addr.rsplit_once('-').filter(|_| addr.contains('-')) {
            if head.contains(':') {
                let (base, first) = head.rsplit_once(':').ok_or_else(|| bad("is not an address range"))?;
                let first = u16::from_str_radix(first, 16).map_err(|_| bad("has a bad first group"))?;
                let last = u16::from_str_radix(last, 16).map_err(|_| bad("has a bad last group"))?;
                if first > last {
                    return Err(bad("is an empty range"));
                }
                for g in first..=last {
                    let a = format!("{base}:{g:x}");
                    a.parse::<Ipv6Addr>().map_err(|_| bad("is not an IPv6 range"))?;
                    out.push(with_prefix(a));
                }
            } else {
                let (base, first) = head.rsplit_once('.').ok_or_else(|| bad("is not an address range"))?;
                let first: u8 = first.parse().map_err(|_| bad("has a bad first octet"))?;
                let last: u8 = last.parse().map_err(|_| bad("has a bad last octet"))?;
                if first > last {
                    return Err(bad("is an empty range"));
                }
                for o in first..=last {
                    let a = format!("{base}.{o}");
                    a.parse::<Ipv4Addr>().map_err(|_| bad("is not an IPv4 range"))?;
                    out.push(with_prefix(a));
                }
            }
        } else {
            addr.parse::<IpAddr>().map_err(|_| bad("is not an IP address"))?;
            out.push(token.to_owned());
        }
    }
    if out.is_empty() {
        return Err(err(VAR, value, "no addresses"));
    }
    Ok(out)
}

/// Splits `n` VIPs into `groups`: `n / groups` each, the first `n % groups` one more.
pub fn group_sizes(n: usize, groups: usize) -> Vec<usize> {
    (0..groups).map(|k| n / groups + usize::from(k < n % groups)).collect()
}

/// The config name with non-alphanumerics other than `-`/`_` dropped and `-` turned into `_` (the
/// image's router_id and instance name prefix).
pub fn scrub(config_name: &str) -> String {
    config_name
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .map(|c| if c == '-' { '_' } else { c })
        .collect()
}

/// `<scrubbed config name>_VIP_<n>`, `n` from 1.
pub fn instance_name(config_name: &str, n: usize) -> String {
    format!("{}_VIP_{n}", scrub(config_name))
}

/// This node's priority for a group: rendezvous hashing of (VRID, node address) onto 1..=254, so the
/// masters of the groups spread over the nodes without the nodes knowing each other, and the same
/// inputs always give the same priority. Equal priorities fall to VRRP's higher-address tie-break.
///
/// The function is part of the contract (an upgrade must not reshuffle masters): FNV-1a 64 over the
/// VRID and the address octets, then the murmur3 finalizer, modulo 254, plus 1.
pub fn priority(vrid: u8, node: IpAddr) -> u8 {
    let octets: Vec<u8> = match node {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    };
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in std::iter::once(vrid).chain(octets) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^= h >> 33;
    1 + (h % 254) as u8
}

fn preemption(value: &str) -> Result<Preempt, ConfigError> {
    let words: Vec<&str> = value.split_whitespace().collect();
    match words.as_slice() {
        ["nopreempt"] => Ok(Preempt::No),
        ["preempt_nodelay"] | ["preempt"] | ["preempt_delay", "0"] => Ok(Preempt::Yes),
        ["preempt_delay", n] => n
            .parse::<u64>()
            .map(|s| Preempt::Delay(Duration::from_secs(s)))
            .map_err(|_| err("OPENSHIFT_HA_PREEMPTION", value, "the delay must be whole seconds")),
        _ => Err(err(
            "OPENSHIFT_HA_PREEMPTION",
            value,
            "expected `preempt_delay N`, `nopreempt`, `preempt_nodelay` or `preempt`",
        )),
    }
}

/// Reads the ipfailover environment through `get`.
pub fn from_env(env: &BTreeMap<String, String>, host: &Host) -> Result<Config, ConfigError> {
    let vars = Vars(env);
    let var = |name: &str| vars.get(name).map(str::to_owned);
    let vips_text = var("OPENSHIFT_HA_VIRTUAL_IPS").ok_or_else(|| ConfigError::Variable {
        var: "OPENSHIFT_HA_VIRTUAL_IPS".into(),
        why: "is required".into(),
    })?;
    let vips = expand_vips(&vips_text)?;
    let number = |name: &str, default: u64, min: u64, max: u64| vars.number(name, default, min..=max);
    let mut warnings = Vec::new();
    let mut groups = number("OPENSHIFT_HA_VIP_GROUPS", vips.len() as u64, 1, 255)? as usize;
    if groups > vips.len() {
        // The documented example Deployment asks for 10 groups of 2 VIPs; the image then made one
        // group per address, and so does ipf.
        warnings.push(format!(
            "OPENSHIFT_HA_VIP_GROUPS={groups} is more than the {} VIPs: one group per VIP",
            vips.len()
        ));
        groups = vips.len();
    }
    let offset = number("OPENSHIFT_HA_VRRP_ID_OFFSET", 0, 0, 254)?;
    let excluded: Vec<u8> = match var("HA_EXCLUDED_VRRP_IDS") {
        None => Vec::new(),
        Some(v) => v
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|t| !t.is_empty())
            .map(|t| {
                t.parse::<u8>()
                    .map_err(|_| err("HA_EXCLUDED_VRRP_IDS", &v, format!("{t:?} is not a VRID")))
            })
            .collect::<Result<_, _>>()?,
    };
    let interface = match var("OPENSHIFT_HA_NETWORK_INTERFACE") {
        // Checked here, as the other front ends do: the name goes into the rendered keepalived.conf
        // and into netlink requests (the fuzzer found any text taken).
        Some(i) => interface_name("OPENSHIFT_HA_NETWORK_INTERFACE", &i)?,
        None if host.interfaces.iter().any(|i| i == "eth0") => "eth0".to_owned(),
        None => {
            let i = host
                .default_route_interface
                .clone()
                .ok_or_else(|| ConfigError::Variable {
                    var: "OPENSHIFT_HA_NETWORK_INTERFACE".into(),
                    why: "is unset, there is no eth0 and no default route to take the interface from".into(),
                })?;
            tracing::info!(
                "OPENSHIFT_HA_NETWORK_INTERFACE unset and no eth0: using {i}, the default route's interface"
            );
            i
        }
    };
    let monitor_port = number("OPENSHIFT_HA_MONITOR_PORT", 80, 0, 65535)? as u16;
    let interval = Duration::from_secs(number("OPENSHIFT_HA_CHECK_INTERVAL", 2, 1, 3600)?);
    let check = match (var("OPENSHIFT_HA_CHECK_SCRIPT"), monitor_port) {
        (Some(script), _) => Some(CheckKind::Script(script)),
        (None, 0) => None,
        (None, port) => Some(CheckKind::Tcp(port)),
    };
    let config_name = var("OPENSHIFT_HA_CONFIG_NAME").unwrap_or_else(|| "ipfailover".into());
    let checks: Vec<CheckSpec> = check
        .map(|kind| CheckSpec {
            // The image's script name: chk_<config name with - turned into _>.
            name: format!("chk_{}", config_name.replace('-', "_")),
            kind,
            interval,
            timeout: interval,
            rise: 1,
            fall: 1,
            weight: 0,
        })
        .into_iter()
        .collect();
    let preempt = preemption(&var("OPENSHIFT_HA_PREEMPTION").unwrap_or_else(|| "preempt_delay 300".into()))?;
    let use_unicast = match var("OPENSHIFT_HA_USE_UNICAST").as_deref().map(str::trim) {
        None | Some("false") => false,
        Some("true") => true,
        Some(v) => return Err(err("OPENSHIFT_HA_USE_UNICAST", v, "true or false expected")),
    };
    let peers: Vec<IpAddr> = match var("OPENSHIFT_HA_UNICAST_PEERS") {
        None => Vec::new(),
        Some(v) => v
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|t| !t.is_empty())
            .map(|t| {
                t.parse::<IpAddr>()
                    .map_err(|_| err("OPENSHIFT_HA_UNICAST_PEERS", &v, format!("{t:?} is not an IP address")))
            })
            .filter(|p| p.as_ref().map_or(true, |a| !host.addresses.contains(a)))
            .collect::<Result<_, _>>()?,
    };
    if use_unicast && peers.is_empty() {
        return Err(ConfigError::Variable {
            var: "OPENSHIFT_HA_USE_UNICAST=true".into(),
            why: "needs OPENSHIFT_HA_UNICAST_PEERS (other than this node)".into(),
        });
    }
    // Accepted for compatibility; the priorities come from the hash, which needs no node count.
    number("OPENSHIFT_HA_REPLICA_COUNT", 2, 1, 255)?;
    let notify = var("OPENSHIFT_HA_NOTIFY_SCRIPT");
    let node = host
        .addresses
        .iter()
        .copied()
        .find(IpAddr::is_ipv4)
        .or(host.addresses.first().copied());

    let mut instances = Vec::new();
    let mut next_vrid = offset + 1;
    let mut rest = vips.as_slice();
    for (k, size) in group_sizes(vips.len(), groups).into_iter().enumerate() {
        while excluded.contains(&(next_vrid.min(255) as u8)) {
            next_vrid += 1;
        }
        if next_vrid > 255 {
            return Err(err(
                "OPENSHIFT_HA_VRRP_ID_OFFSET",
                &offset.to_string(),
                format!("group {} would need VRID {next_vrid} (1..255)", k + 1),
            ));
        }
        let vrid = next_vrid as u8;
        next_vrid += 1;
        let (group, tail) = rest.split_at(size);
        rest = tail;
        let group: Vec<_> = group
            .iter()
            .map(|v| parse_vip(v).map_err(|e| err("OPENSHIFT_HA_VIRTUAL_IPS", &vips_text, e)))
            .collect::<Result<_, _>>()?;
        let family = Family::of(&group[0].addr);
        if group.iter().any(|v| Family::of(&v.addr) != family) {
            return Err(err(
                "OPENSHIFT_HA_VIRTUAL_IPS",
                &vips_text,
                format!("group {} mixes IPv4 and IPv6", k + 1),
            ));
        }
        let unicast: Vec<IpAddr> = peers.iter().copied().filter(|p| Family::of(p) == family).collect();
        // Numbered from 1, as the image's generator counts groups (its logs name them so).
        let mut spec = InstanceSpec::new(instance_name(&config_name, k + 1), &interface, vrid, family);
        // The image speaks VRRPv2 with PASS auth; keepalived forces v3 for IPv6.
        spec.version = if family == Family::V6 { 3 } else { 2 };
        spec.priority = node.map_or(100, |n| priority(vrid, n));
        spec.preempt = preempt;
        // The image wrote `state MASTER` on some instances as part of its priority scheme, which made
        // keepalived ignore preempt_delay there; ipf starts every instance as Backup and honours it.
        spec.vips = group;
        spec.unicast_peers = unicast;
        // The image wrote the whole name; keepalived uses its first 8 bytes, and so does the model.
        spec.auth_pass = (family == Family::V4).then(|| crate::config::wire_password(&config_name));
        spec.tracks = checks.iter().map(|c| c.name.clone()).collect();
        spec.notify = Notify {
            any: notify.clone(),
            ..Notify::default()
        };
        instances.push(spec);
    }
    // Only non-emptiness matters, as in the image; the nftables switch is the newer one and wins.
    let firewall = if var("OPENSHIFT_HA_NFTABLES_RULE").is_some() {
        Some(Firewall::Nftables)
    } else {
        var("OPENSHIFT_HA_IPTABLES_CHAIN").map(|chain| Firewall::Iptables {
            chain: chain.trim().to_owned(),
        })
    };
    Ok(Config {
        instances,
        checks,
        firewall,
        router_id: Some(scrub(&config_name)),
        warnings,
        // keepalived.conf only: the images' scripts run as root, as they did.
        script_security: Default::default(),
    })
}

#[cfg(test)]
mod tests {

    use super::*;
    use crate::config::InitialState;

    fn host() -> Host {
        Host {
            interfaces: vec!["eth0".into()],
            default_route_interface: Some("eth0".into()),
            addresses: vec!["192.0.2.1".parse().expect("addr")],
        }
    }

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn vip_ranges_and_prefixes() {
        assert_eq!(
            expand_vips("10.0.0.1-3").expect("ok"),
            ["10.0.0.1", "10.0.0.2", "10.0.0.3"]
        );
        assert_eq!(
            expand_vips("10.0.0.1/24, 10.0.0.9").expect("ok"),
            ["10.0.0.1/24", "10.0.0.9"]
        );
        assert_eq!(
            expand_vips("2001:db8::a-c").expect("ok"),
            ["2001:db8::a", "2001:db8::b", "2001:db8::c"]
        );
        assert_eq!(
            expand_vips("192.0.2.10-11/24").expect("ok"),
            ["192.0.2.10/24", "192.0.2.11/24"]
        );
        for bad in ["10.0.0.300", "10.0.0.5-3", "abc", "10.0.0.1-x", ""] {
            let e = expand_vips(bad).expect_err(bad).to_string();
            assert!(e.contains("OPENSHIFT_HA_VIRTUAL_IPS"), "{e}");
        }
    }

    #[test]
    fn groups_split_as_documented() {
        assert_eq!(group_sizes(7, 3), [3, 2, 2]);
        assert_eq!(group_sizes(4, 4), [1, 1, 1, 1]);
        let c = from_env(
            &env(&[
                ("OPENSHIFT_HA_VIRTUAL_IPS", "192.0.2.10-16"),
                ("OPENSHIFT_HA_VIP_GROUPS", "3"),
            ]),
            &host(),
        )
        .expect("ok");
        let sizes: Vec<usize> = c.instances.iter().map(|i| i.vips.len()).collect();
        assert_eq!(sizes, [3, 2, 2]);
        assert_eq!(c.instances[0].vips[0].prefix_len, 32);
        // More groups than VIPs (the documented example Deployment): one group per VIP, with a warning.
        let c = from_env(
            &env(&[
                ("OPENSHIFT_HA_VIRTUAL_IPS", "1.1.1.1-2"),
                ("OPENSHIFT_HA_VIP_GROUPS", "10"),
            ]),
            &host(),
        )
        .expect("ok");
        assert_eq!(c.instances.len(), 2);
        assert!(c.warnings[0].contains("OPENSHIFT_HA_VIP_GROUPS=10"), "{:?}", c.warnings);
    }

    #[test]
    fn names_vrids_auth_and_checks() {
        let c = from_env(
            &env(&[
                ("OPENSHIFT_HA_VIRTUAL_IPS", "192.0.2.10-12"),
                ("OPENSHIFT_HA_CONFIG_NAME", "my-ip.failover"),
                ("OPENSHIFT_HA_VRRP_ID_OFFSET", "10"),
                ("HA_EXCLUDED_VRRP_IDS", "12"),
                ("OPENSHIFT_HA_MONITOR_PORT", "8080"),
            ]),
            &host(),
        )
        .expect("ok");
        let names: Vec<&str> = c.instances.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(
            names,
            ["my_ipfailover_VIP_1", "my_ipfailover_VIP_2", "my_ipfailover_VIP_3"]
        );
        let vrids: Vec<u8> = c.instances.iter().map(|i| i.vrid).collect();
        assert_eq!(vrids, [11, 13, 14]);
        // keepalived sends the first 8 bytes of the name.
        assert_eq!(c.instances[0].auth_pass.as_deref(), Some("my-ip.fa"));
        assert_eq!(c.instances[0].version, 2);
        assert_eq!(c.checks[0].kind, CheckKind::Tcp(8080));
        assert_eq!(c.instances[0].tracks, ["chk_my_ip.failover"]);
        assert_eq!(c.instances[0].preempt, Preempt::Delay(Duration::from_secs(300)));
        let none = from_env(
            &env(&[
                ("OPENSHIFT_HA_VIRTUAL_IPS", "192.0.2.10"),
                ("OPENSHIFT_HA_MONITOR_PORT", "0"),
            ]),
            &host(),
        )
        .expect("ok");
        assert!(none.checks.is_empty() && none.instances[0].tracks.is_empty());
        let v6 = from_env(&env(&[("OPENSHIFT_HA_VIRTUAL_IPS", "2001:db8::10")]), &host()).expect("ok");
        assert_eq!((v6.instances[0].version, v6.instances[0].auth_pass.clone()), (3, None));
    }

    #[test]
    fn unicast_peers_skip_this_node() {
        let c = from_env(
            &env(&[
                ("OPENSHIFT_HA_VIRTUAL_IPS", "192.0.2.10"),
                ("OPENSHIFT_HA_USE_UNICAST", "true"),
                ("OPENSHIFT_HA_UNICAST_PEERS", "192.0.2.1,192.0.2.2, 192.0.2.3"),
            ]),
            &host(),
        )
        .expect("ok");
        assert_eq!(
            c.instances[0].unicast_peers,
            [
                "192.0.2.2".parse::<IpAddr>().expect("a"),
                "192.0.2.3".parse().expect("a")
            ]
        );
    }

    #[test]
    fn bad_values_name_the_variable_and_value() {
        for (pairs, needle) in [
            (vec![], "OPENSHIFT_HA_VIRTUAL_IPS is required"),
            (
                vec![("OPENSHIFT_HA_VIP_GROUPS", "abc")],
                "OPENSHIFT_HA_VIP_GROUPS=\"abc\"",
            ),
            (vec![("OPENSHIFT_HA_VIP_GROUPS", "0")], "OPENSHIFT_HA_VIP_GROUPS=\"0\""),
            (
                vec![("OPENSHIFT_HA_VRRP_ID_OFFSET", "254"), ("OPENSHIFT_HA_VIP_GROUPS", "2")],
                "OPENSHIFT_HA_VRRP_ID_OFFSET=\"254\"",
            ),
            (
                vec![("OPENSHIFT_HA_PREEMPTION", "sometimes")],
                "OPENSHIFT_HA_PREEMPTION=\"sometimes\"",
            ),
            (
                vec![("OPENSHIFT_HA_MONITOR_PORT", "70000")],
                "OPENSHIFT_HA_MONITOR_PORT=\"70000\"",
            ),
            (vec![("OPENSHIFT_HA_USE_UNICAST", "true")], "OPENSHIFT_HA_UNICAST_PEERS"),
            (
                vec![("OPENSHIFT_HA_UNICAST_PEERS", "10.0.0.x")],
                "OPENSHIFT_HA_UNICAST_PEERS=\"10.0.0.x\"",
            ),
            (vec![("HA_EXCLUDED_VRRP_IDS", "1,x")], "HA_EXCLUDED_VRRP_IDS=\"1,x\""),
            (
                vec![("OPENSHIFT_HA_CHECK_INTERVAL", "0")],
                "OPENSHIFT_HA_CHECK_INTERVAL=\"0\"",
            ),
            // Regression (fuzzing): any text was taken as the interface, and the rendered
            // keepalived.conf did not read back.
            (
                vec![("OPENSHIFT_HA_NETWORK_INTERFACE", "averyveryverylongname")],
                "OPENSHIFT_HA_NETWORK_INTERFACE=\"averyveryverylongname\": not an interface name",
            ),
            (
                vec![("OPENSHIFT_HA_NETWORK_INTERFACE", "e\u{1}")],
                "not an interface name",
            ),
            (
                vec![("OPENSHIFT_HA_NETWORK_INTERFACE", "eth0 x")],
                "OPENSHIFT_HA_NETWORK_INTERFACE=\"eth0 x\": not an interface name",
            ),
            // A trailing backslash continued the rendered VIP line onto the next.
            (
                vec![("OPENSHIFT_HA_NETWORK_INTERFACE", "eth0\\")],
                "OPENSHIFT_HA_NETWORK_INTERFACE=\"eth0\\\\\": not an interface name",
            ),
        ] {
            let mut all = vec![("OPENSHIFT_HA_VIRTUAL_IPS", "192.0.2.10-12")];
            if needle.contains("is required") {
                all.clear();
            }
            all.extend(pairs);
            let e = from_env(&env(&all), &host()).expect_err(needle).to_string();
            assert!(e.contains(needle), "{needle}: {e}");
        }
    }

    /// Each variable not covered above, with what it must do to the model.
    #[test]
    fn every_variable_reaches_the_model() {
        type Check = fn(&Config);
        let base = ("OPENSHIFT_HA_VIRTUAL_IPS", "192.0.2.10");
        let cases: Vec<(Vec<(&str, &str)>, Check)> = vec![
            (vec![], |c| {
                // Defaults: eth0, TCP check on port 80 every 2 s, preempt_delay 300, multicast, no rule.
                let i = &c.instances[0];
                assert_eq!((i.interface.as_str(), i.vrid), ("eth0", 1));
                assert_eq!(c.checks[0].kind, CheckKind::Tcp(80));
                assert_eq!(c.checks[0].interval, Duration::from_secs(2));
                assert_eq!(i.preempt, Preempt::Delay(Duration::from_secs(300)));
                assert!(i.unicast_peers.is_empty() && c.firewall.is_none() && i.notify.any.is_none());
                assert_eq!(i.initial_state, InitialState::Backup);
                assert_eq!(i.auth_pass.as_deref(), Some("ipfailov"));
                assert_eq!(c.router_id.as_deref(), Some("ipfailover"));
            }),
            (vec![("OPENSHIFT_HA_NETWORK_INTERFACE", "ens3")], |c| {
                assert_eq!(c.instances[0].interface, "ens3")
            }),
            (vec![("OPENSHIFT_HA_CHECK_SCRIPT", "/bin/check.sh")], |c| {
                // Replaces the TCP check (the image's code, not its comment).
                assert_eq!(c.checks.len(), 1);
                assert_eq!(c.checks[0].kind, CheckKind::Script("/bin/check.sh".into()));
            }),
            (vec![("OPENSHIFT_HA_CHECK_INTERVAL", "7")], |c| {
                // A check still running after the interval is killed and counts as failed.
                assert_eq!(
                    (c.checks[0].interval, c.checks[0].timeout),
                    (Duration::from_secs(7), Duration::from_secs(7))
                );
                assert_eq!((c.checks[0].rise, c.checks[0].fall, c.checks[0].weight), (1, 1, 0));
            }),
            (vec![("OPENSHIFT_HA_NOTIFY_SCRIPT", "/bin/notify.sh")], |c| {
                assert_eq!(c.instances[0].notify.any.as_deref(), Some("/bin/notify.sh"))
            }),
            (vec![("OPENSHIFT_HA_PREEMPTION", "nopreempt")], |c| {
                assert_eq!(c.instances[0].preempt, Preempt::No);
            }),
            (vec![("OPENSHIFT_HA_PREEMPTION", "preempt_nodelay")], |c| {
                assert_eq!(c.instances[0].preempt, Preempt::Yes)
            }),
            (vec![("OPENSHIFT_HA_PREEMPTION", "preempt_delay 30")], |c| {
                assert_eq!(c.instances[0].preempt, Preempt::Delay(Duration::from_secs(30)))
            }),
            (vec![("OPENSHIFT_HA_REPLICA_COUNT", "5")], |c| {
                assert_eq!(c.instances.len(), 1)
            }),
            (vec![("OPENSHIFT_HA_USE_UNICAST", "false")], |c| {
                assert!(c.instances[0].unicast_peers.is_empty())
            }),
            (vec![("OPENSHIFT_HA_IPTABLES_CHAIN", "INPUT")], |c| {
                assert_eq!(c.firewall, Some(Firewall::Iptables { chain: "INPUT".into() }))
            }),
            (
                vec![
                    ("OPENSHIFT_HA_NFTABLES_RULE", "yes"),
                    ("OPENSHIFT_HA_IPTABLES_CHAIN", "INPUT"),
                ],
                |c| assert_eq!(c.firewall, Some(Firewall::Nftables)),
            ),
            (vec![("OPENSHIFT_HA_CONFIG_NAME", "my-ha")], |c| {
                assert_eq!(c.instances[0].name, "my_ha_VIP_1");
                assert_eq!(c.checks[0].name, "chk_my_ha");
                assert_eq!(c.router_id.as_deref(), Some("my_ha"));
            }),
            (vec![("OPENSHIFT_HA_VRRP_ID_OFFSET", "254")], |c| {
                assert_eq!(c.instances[0].vrid, 255)
            }),
            (vec![("HA_EXCLUDED_VRRP_IDS", "1 2")], |c| {
                assert_eq!(c.instances[0].vrid, 3)
            }),
        ];
        for (pairs, check) in cases {
            let mut all = vec![base];
            all.extend(pairs.iter().copied());
            let c = from_env(&env(&all), &host()).unwrap_or_else(|e| panic!("{pairs:?}: {e}"));
            check(&c);
        }
        // No eth0: the default route's interface.
        let no_eth0 = Host {
            interfaces: vec!["ens5".into()],
            default_route_interface: Some("ens5".into()),
            ..host()
        };
        let c = from_env(&env(&[base]), &no_eth0).expect("ok");
        assert_eq!(c.instances[0].interface, "ens5");
    }

    const PINNED_51: [u8; 3] = [109, 162, 39];

    #[test]
    fn priorities_are_deterministic_in_range_and_spread() {
        let nodes: Vec<IpAddr> = (1..=3u8).map(|i| IpAddr::from([192, 0, 2, i])).collect();
        let mut masters = [0usize; 3];
        for vrid in 1..=255u8 {
            let p: Vec<u8> = nodes.iter().map(|n| priority(vrid, *n)).collect();
            assert!(p.iter().all(|p| (1..=254).contains(p)));
            assert_eq!(p, nodes.iter().map(|n| priority(vrid, *n)).collect::<Vec<_>>());
            let (best, _) = p.iter().enumerate().max_by_key(|(i, p)| (**p, *i)).expect("3 nodes");
            masters[best] += 1;
        }
        // Each of 3 nodes masters a fair share of 255 groups.
        assert!(masters.iter().all(|m| (55..=115).contains(m)), "{masters:?}");
        // Pinned: a change of the function would reshuffle masters on upgrade.
        let pinned: Vec<u8> = nodes.iter().map(|n| priority(51, *n)).collect();
        assert_eq!(pinned, PINNED_51);
    }
}
