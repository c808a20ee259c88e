//! The `KEEPALIVED_*` environment of the arcts/keepalived image (its `init.sh`), read into the agent's
//! configuration (../shared/docs/compat-contract.md): one VRRP instance named `MAIN` under
//! `router_id LVS_MAIN`, as the image generates, or, with `KEEPALIVED_AUTOCONF=false`, the path of a
//! keepalived.conf to read instead.
//!
//! The image's quirks that this fixes: numbered variables are read in numeric order (`_2` before
//! `_10`; bash sorted them as text), a malformed number suffix or value is an error naming the
//! variable (the image pasted values verbatim into keepalived.conf), unknown and misspelled names are
//! warnings (the image ignored them silently; its own README misspells one), and the kube-apiserver
//! check wants a 200 (the script's curl took any answer) and compares this node's addresses exactly
//! (the script grepped `ip addr`); see `checks::CheckKind::KubeApiserver`.
//!
//! `KEEPALIVED_UNICAST_SRC_IP` unset leaves `src: None`: the agent then takes the interface's first
//! global IPv4 address (link-local for IPv6) when it starts, as the image's `ip addr | grep inet`
//! did, except that it never picks a VIP left on the interface. So the model does not depend on the
//! node it was read on, and `Host` needs no per-interface addresses.

use std::{collections::BTreeMap, net::IpAddr, path::PathBuf, time::Duration};

use super::{
    CheckKind, CheckSpec, Config, ConfigError, Host, InitialState, InstanceSpec, Vip,
    env::{Vars, err, interface_name},
    parse_vip,
};
use crate::datapath::Family;

/// `KEEPALIVED_CONF`'s default.
pub const DEFAULT_CONF: &str = "/etc/keepalived/keepalived.conf";
/// The instance the image generates.
pub const INSTANCE: &str = "MAIN";
/// The image's `global_defs { router_id }`.
pub const ROUTER_ID: &str = "LVS_MAIN";
/// The image's `vrrp_script` name for the kube-apiserver check.
pub const KUBE_APISERVER_CHECK: &str = "chk_kube_apiserver";

const AUTOCONF: &str = "KEEPALIVED_AUTOCONF";
const CONF: &str = "KEEPALIVED_CONF";
const CMD: &str = "KEEPALIVED_CMD";
const DEBUG: &str = "KEEPALIVED_DEBUG";
const VAR_RUN: &str = "KEEPALIVED_VAR_RUN";
const INTERFACE: &str = "KEEPALIVED_INTERFACE";
const STATE: &str = "KEEPALIVED_STATE";
const PRIORITY: &str = "KEEPALIVED_PRIORITY";
const VRID: &str = "KEEPALIVED_VIRTUAL_ROUTER_ID";
const ADVERT_INT: &str = "KEEPALIVED_ADVERT_INT";
const AUTH_PASS: &str = "KEEPALIVED_AUTH_PASS";
const SRC_IP: &str = "KEEPALIVED_UNICAST_SRC_IP";
const KUBE_CHECK: &str = "KEEPALIVED_KUBE_APISERVER_CHECK";
const KUBE_ADDRESS: &str = "KUBE_APISERVER_ADDRESS";
const KUBE_PORT: &str = "KUBE_APISERVER_PORT";
const KUBE_INTERVAL: &str = "KUBE_APISERVER_CHK_INTERVAL";
const KUBE_FALL: &str = "KUBE_APISERVER_CHK_FALL";
const KUBE_RISE: &str = "KUBE_APISERVER_CHK_RISE";
const KUBE_WEIGHT: &str = "KUBE_APISERVER_CHK_WEIGHT";

/// The numbered families, `<prefix><0-999>`.
const EXCLUDED: &str = "KEEPALIVED_VIRTUAL_IPADDRESS_EXCLUDED_";
const VIPS: &str = "KEEPALIVED_VIRTUAL_IPADDRESS_";
const PEERS: &str = "KEEPALIVED_UNICAST_PEER_";
const TRACKS: &str = "KEEPALIVED_TRACK_INTERFACE_";
/// Longest first, so `_EXCLUDED_<n>` is never taken for a VIP with the suffix `EXCLUDED_<n>`.
const FAMILIES: [&str; 4] = [EXCLUDED, VIPS, PEERS, TRACKS];

/// The kube-apiserver check's settings (ignored while the check is off).
const KUBE_SETTINGS: [&str; 6] = [
    KUBE_ADDRESS,
    KUBE_PORT,
    KUBE_INTERVAL,
    KUBE_FALL,
    KUBE_RISE,
    KUBE_WEIGHT,
];
/// The variables that only shape the generated configuration (ignored when it is not generated),
/// besides the numbered families and `KUBE_SETTINGS`.
const AUTOCONF_ONLY: [&str; 8] = [
    INTERFACE, STATE, PRIORITY, VRID, ADVERT_INT, AUTH_PASS, SRC_IP, KUBE_CHECK,
];
const SCALARS: [&str; 19] = [
    AUTOCONF,
    CONF,
    CMD,
    DEBUG,
    VAR_RUN,
    INTERFACE,
    STATE,
    PRIORITY,
    VRID,
    ADVERT_INT,
    AUTH_PASS,
    SRC_IP,
    KUBE_CHECK,
    KUBE_ADDRESS,
    KUBE_PORT,
    KUBE_INTERVAL,
    KUBE_FALL,
    KUBE_RISE,
    KUBE_WEIGHT,
];

/// What the environment describes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeepalivedEnv {
    pub source: Source,
    /// `KEEPALIVED_DEBUG=true` (the image added keepalived's `-D`): the caller turns on debug logging.
    /// It applies whichever the source.
    pub debug: bool,
}

/// Where the configuration comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// `KEEPALIVED_AUTOCONF` true (the default): built from the variables. Warnings about the
    /// environment are in its `warnings`.
    Autoconf(Config),
    /// `KEEPALIVED_AUTOCONF=false`: the keepalived.conf at `path` (`KEEPALIVED_CONF`). `warnings` are
    /// about the environment: the caller adds them to the warnings of the configuration it reads.
    File { path: PathBuf, warnings: Vec<String> },
}

/// One member of a numbered family: its number, name and value.
struct Numbered<'a> {
    n: u16,
    name: &'a str,
    value: &'a str,
}

/// The members of the family `prefix`, in numeric order (`_2` before `_10`; equal numbers such as
/// `_1` and `_01` by name). A suffix other than 1 to 3 digits is an error; an empty member is
/// skipped with a warning.
fn numbered<'a>(
    vars: &'a BTreeMap<String, String>,
    prefix: &str,
    warnings: &mut Vec<String>,
) -> Result<Vec<Numbered<'a>>, ConfigError> {
    let mut out = Vec::new();
    for (name, value) in vars {
        let Some(suffix) = name.strip_prefix(prefix) else {
            continue;
        };
        // The longer family that shares this prefix owns the name.
        if FAMILIES
            .iter()
            .any(|f| f.len() > prefix.len() && f.starts_with(prefix) && name.starts_with(f))
        {
            continue;
        }
        let n = Some(suffix)
            .filter(|s| (1..=3).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|s| s.parse::<u16>().ok())
            .ok_or_else(|| {
                err(
                    name,
                    value,
                    format!("the name must end in a number 0..999 (1 to 3 digits) after {prefix}"),
                )
            })?;
        if value.trim().is_empty() {
            warnings.push(format!("{name} is empty: skipped"));
            continue;
        }
        out.push(Numbered {
            n,
            name,
            value: value.trim(),
        });
    }
    out.sort_by(|a, b| (a.n, a.name).cmp(&(b.n, b.name)));
    Ok(out)
}

/// The most edits a misspelling may be away from one of our names.
const MISSPELLING: usize = 2;

/// Whether `a` is within [`MISSPELLING`] edits of `b`. The lengths alone rule out most names, so
/// an environment full of unrelated variables costs next to nothing.
fn near(a: &str, b: &str) -> bool {
    a.chars().count().abs_diff(b.chars().count()) <= MISSPELLING && distance(a, b) <= MISSPELLING
}

/// Levenshtein distance, to tell a misspelling of one of our names.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let next = (diagonal + usize::from(ca != *cb)).min(row[j] + 1).min(row[j + 1] + 1);
            diagonal = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
}

/// The known name `name` is most likely a misspelling of, if any: at most 2 edits away. A numbered
/// name is compared with the families, its number kept; an unnumbered one with the other names and
/// with the families' stems (`KEEPALIVED_UNICAST_PEERS`).
fn misspelling_of(name: &str) -> Option<String> {
    let numbered = name
        .rsplit_once('_')
        .filter(|(_, n)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
    let candidates: Vec<String> = match numbered {
        Some((stem, n)) => FAMILIES
            .iter()
            .filter(|f| near(&format!("{stem}_"), f))
            .map(|f| format!("{f}{n}"))
            .collect(),
        None => SCALARS
            .iter()
            .map(|s| (*s).to_owned())
            .filter(|s| near(name, s))
            .chain(
                FAMILIES
                    .iter()
                    .filter(|f| near(name, f.trim_end_matches('_')))
                    .map(|f| format!("{f}<0-999>")),
            )
            .collect(),
    };
    candidates
        .into_iter()
        .filter(|c| c != name)
        .min_by_key(|c| distance(name, c))
}

/// Warnings for the names that are none of ours: unknown `KEEPALIVED_*` names, and any name that looks
/// like a misspelling of one of ours (the image's README has `KEEPALVED_TRACK_INTERFACE_2`).
fn name_warnings(vars: &BTreeMap<String, String>) -> Vec<String> {
    let mut warnings = Vec::new();
    for name in vars.keys() {
        if SCALARS.contains(&name.as_str()) || FAMILIES.iter().any(|f| name.starts_with(f)) {
            continue;
        }
        match misspelling_of(name) {
            Some(known) => warnings.push(format!(
                "{name} is not a variable of ipf nor of the arcts/keepalived image: ignored (did you mean {known}?)"
            )),
            // Only our own prefix: `KUBE_APISERVER_*` is also what Kubernetes service links define
            // for a Service named kube-apiserver.
            None if name.starts_with("KEEPALIVED_") => warnings.push(format!("{name} is unknown: ignored")),
            None => {}
        }
    }
    warnings
}

/// Reads the arcts/keepalived environment. `host` only adds warnings (an interface or a source address
/// this node does not have) and drops this node's own address from the unicast peers.
pub fn from_env(vars: &BTreeMap<String, String>, host: &Host) -> Result<KeepalivedEnv, ConfigError> {
    let v = Vars(vars);
    let mut warnings = name_warnings(vars);
    let debug = v.boolean(DEBUG, false)?;
    let autoconf = v.boolean(AUTOCONF, true)?;
    if v.get(CMD).is_some() {
        warnings.push(format!(
            "{CMD} is not applicable: ipf is the VRRP daemon and runs no keepalived command; ignored"
        ));
    }
    if v.get(VAR_RUN).is_some() {
        warnings.push(format!(
            "{VAR_RUN} is not applicable: ipf keeps no pid files there; ignored"
        ));
    }
    if !autoconf {
        let path = PathBuf::from(v.get(CONF).map_or(DEFAULT_CONF, str::trim));
        for name in vars.keys().filter(|n| v.get(n).is_some()) {
            if autoconf_only(name) {
                warnings.push(format!(
                    "{name} is ignored: with {AUTOCONF}=false the configuration is {}",
                    path.display()
                ));
            }
        }
        return Ok(KeepalivedEnv {
            source: Source::File { path, warnings },
            debug,
        });
    }
    if v.get(CONF).is_some() {
        warnings.push(format!(
            "{CONF} is not used with {AUTOCONF}=true: ipf writes no keepalived.conf (render-config prints one)"
        ));
    }
    let config = generate(&v, vars, host, warnings)?;
    Ok(KeepalivedEnv {
        source: Source::Autoconf(config),
        debug,
    })
}

fn autoconf_only(name: &str) -> bool {
    AUTOCONF_ONLY.contains(&name) || KUBE_SETTINGS.contains(&name) || FAMILIES.iter().any(|f| name.starts_with(f))
}

/// The image's `config_keepalived`: one instance `MAIN`.
fn generate(
    v: &Vars,
    vars: &BTreeMap<String, String>,
    host: &Host,
    mut warnings: Vec<String>,
) -> Result<Config, ConfigError> {
    let interface = match v.get(INTERFACE) {
        Some(i) => interface_name(INTERFACE, i)?,
        None => "eth0".to_owned(),
    };
    let state = v.get(STATE).unwrap_or("MASTER");
    let initial_state = match state.trim().to_ascii_uppercase().as_str() {
        "MASTER" => InitialState::Master,
        "BACKUP" => InitialState::Backup,
        // The image left the priority empty then, which keepalived rejected.
        _ => return Err(err(STATE, state, "MASTER or BACKUP expected")),
    };
    let default_priority = match initial_state {
        InitialState::Master => 200,
        InitialState::Backup => 100,
    };
    let priority = v.number(PRIORITY, default_priority, 1..=255)?;
    let vrid = v.number(VRID, 1, 1..=255)?;

    let vip_vars = numbered(vars, VIPS, &mut warnings)?;
    let Some(first) = vip_vars.first() else {
        return Err(ConfigError::Variable {
            var: format!("{VIPS}<0-999>"),
            why: format!("is required: at least one virtual address, e.g. {VIPS}1=\"10.10.0.2/24 dev eth0\""),
        });
    };
    let vips: Vec<Vip> = vip_vars
        .iter()
        .map(|m| parse_vip(m.value).map_err(|e| err(m.name, m.value, e)))
        .collect::<Result<_, _>>()?;
    let family = Family::of(&vips[0].addr);
    if let Some((m, vip)) = vip_vars
        .iter()
        .zip(&vips)
        .find(|(_, vip)| Family::of(&vip.addr) != family)
    {
        return Err(err(
            m.name,
            m.value,
            format!(
                "{} is {} and {} is not: one VRRP instance speaks one address family",
                first.name,
                family_name(family),
                vip.addr
            ),
        ));
    }
    // One family per instance, excluded addresses included (keepalived would move either; the agent's
    // instance is one family).
    let excluded: Vec<Vip> = numbered(vars, EXCLUDED, &mut warnings)?
        .iter()
        .map(|m| {
            let vip = parse_vip(m.value).map_err(|e| err(m.name, m.value, e))?;
            if Family::of(&vip.addr) != family {
                return Err(err(
                    m.name,
                    m.value,
                    format!("not {} like the VIPs", family_name(family)),
                ));
            }
            Ok(vip)
        })
        .collect::<Result<_, _>>()?;
    // keepalived forces VRRPv3 for IPv6, which has no authentication.
    let version = if family == Family::V6 { 3 } else { 2 };
    let adver_int = advert_int(v, version)?;

    let same_family = |var: &str, value: &str, a: IpAddr| {
        if Family::of(&a) == family {
            Ok(a)
        } else {
            Err(err(
                var,
                value,
                format!("the VIPs are {}, so must this be", family_name(family)),
            ))
        }
    };
    let mut unicast_peers = Vec::new();
    for m in numbered(vars, PEERS, &mut warnings)? {
        let a = m.value.parse().map_err(|_| err(m.name, m.value, "not an IP address"))?;
        let a = same_family(m.name, m.value, a)?;
        // Adverts to itself would only come back to it; the ipfailover front end skips it too.
        if host.addresses.contains(&a) {
            warnings.push(format!("{}={:?} is this node's own address: skipped", m.name, m.value));
        } else {
            unicast_peers.push(a);
        }
    }
    let src = match v.get(SRC_IP) {
        Some(text) => {
            let a = text
                .trim()
                .parse()
                .map_err(|_| err(SRC_IP, text, "not an IP address"))?;
            let a = same_family(SRC_IP, text, a)?;
            // Often a copy of the other node's settings; the address may also come later.
            if !host.addresses.is_empty() && !host.addresses.contains(&a) {
                warnings.push(format!("{SRC_IP}={text:?} is not an address of this node (yet)"));
            }
            Some(a)
        }
        None => None,
    };

    let auth_pass = match (family, v.get(AUTH_PASS)) {
        (Family::V6, Some(_)) => {
            warnings.push(format!(
                "{AUTH_PASS} is ignored: the VIPs are IPv6, so VRRPv3, which has no authentication"
            ));
            None
        }
        (Family::V6, None) => None,
        (Family::V4, None) => Some(format!("pwd{vrid}")),
        (Family::V4, Some(text)) => {
            // Trimmed, as keepalived.conf's tokenizer does (a value from a Secret often ends in a
            // newline); inside, keepalived peers would use the first word only.
            let pass = text.trim();
            if pass.contains(char::is_whitespace) {
                return Err(err(AUTH_PASS, text, "a password without spaces expected"));
            }
            let wire = crate::config::wire_password(pass);
            if wire != pass {
                warnings.push(format!(
                    "{AUTH_PASS}: only its first 8 bytes, {wire:?}, are sent and compared (VRRPv2 PASS), as keepalived does"
                ));
            }
            Some(wire)
        }
    };

    let mut track_interfaces: Vec<String> = numbered(vars, TRACKS, &mut warnings)?
        .iter()
        .map(|m| interface_name(m.name, m.value))
        .collect::<Result<_, _>>()?;
    // The VRRP interface is always tracked (the image's default list): the model lists only others.
    track_interfaces.retain(|t| *t != interface);

    let mut checks = Vec::new();
    if v.boolean(KUBE_CHECK, false)? {
        checks.push(kube_apiserver_check(v, vips[0].addr)?);
    } else {
        for name in KUBE_SETTINGS.iter().filter(|n| v.get(n).is_some()) {
            warnings.push(format!("{name} is ignored: {KUBE_CHECK} is not true"));
        }
    }

    if !host.interfaces.is_empty() {
        let devs = vips.iter().chain(&excluded).filter_map(|v| v.dev.as_deref());
        let mut missing: Vec<&str> = std::iter::once(interface.as_str())
            .chain(track_interfaces.iter().map(String::as_str))
            .chain(devs)
            .filter(|i| !host.interfaces.iter().any(|h| h == i))
            .collect();
        missing.dedup();
        for i in missing {
            let w = format!("interface {i} does not exist on this node (yet)");
            if !warnings.contains(&w) {
                warnings.push(w);
            }
        }
    }

    let mut instance = InstanceSpec::new(INSTANCE, interface, vrid, family);
    instance.version = version;
    instance.priority = priority;
    instance.adver_int = adver_int;
    instance.initial_state = initial_state;
    // `dev` naming the instance's own interface says nothing more: the model stays canonical.
    let own_dev = |mut v: Vip| {
        if v.dev.as_deref() == Some(instance.interface.as_str()) {
            v.dev = None;
        }
        v
    };
    instance.vips = vips.into_iter().map(own_dev).collect();
    instance.excluded = excluded.into_iter().map(own_dev).collect();
    instance.unicast_peers = unicast_peers;
    instance.src = src;
    instance.auth_pass = auth_pass;
    instance.tracks = checks.iter().map(|c| c.name.clone()).collect();
    instance.track_interfaces = track_interfaces;
    Ok(Config {
        instances: vec![instance],
        checks,
        firewall: None,
        router_id: Some(ROUTER_ID.to_owned()),
        warnings,
        // keepalived.conf only: the images' scripts run as root, as they did.
        script_security: Default::default(),
    })
}

fn family_name(f: Family) -> &'static str {
    match f {
        Family::V4 => "IPv4",
        Family::V6 => "IPv6",
    }
}

/// `KEEPALIVED_ADVERT_INT` in seconds: whole seconds 1..255 for VRRPv2, 0.01..40.95 in steps of
/// 10 ms for VRRPv3 (what the advert's interval field can carry).
fn advert_int(v: &Vars, version: u8) -> Result<Duration, ConfigError> {
    let Some(text) = v.get(ADVERT_INT) else {
        return Ok(Duration::from_secs(1));
    };
    let centis = text
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s > 0.0)
        .map(|s| s * 100.0)
        .filter(|c| (c - c.round()).abs() < 1e-6)
        .map(|c| c.round() as u64);
    let ok = match (version, centis) {
        (2, Some(c)) => c % 100 == 0 && (100..=25_500).contains(&c),
        (_, Some(c)) => (1..=4095).contains(&c),
        (_, None) => false,
    };
    match centis.filter(|_| ok) {
        Some(c) => Ok(Duration::from_millis(c * 10)),
        None if version == 2 => Err(err(
            ADVERT_INT,
            text,
            "whole seconds 1..255 expected (VRRPv2, the IPv4 VIPs' version)",
        )),
        None => Err(err(
            ADVERT_INT,
            text,
            "seconds 0.01..40.95 in steps of 0.01 expected (VRRPv3, the IPv6 VIPs' version)",
        )),
    }
}

/// The image's `vrrp_script chk_kube_apiserver`, as a native check.
fn kube_apiserver_check(v: &Vars, first_vip: IpAddr) -> Result<CheckSpec, ConfigError> {
    // The image took the first IPv4 address in the lowest-sorted VIP variable; this is the address
    // of the lowest-numbered one.
    let address = v.address(KUBE_ADDRESS)?.unwrap_or(first_vip);
    let port = v.number(KUBE_PORT, 6443u16, 1..=65535).map_err(|e| match e {
        ConfigError::Env { var, value, why } if value.contains("://") => ConfigError::Env {
            why: format!(
                "{why} (Kubernetes defines {KUBE_PORT} as a service link for a Service named kube-apiserver; \
                 set enableServiceLinks: false or set the port explicitly)"
            ),
            var,
            value,
        },
        e => e,
    })?;
    let interval = match v.get(KUBE_INTERVAL) {
        None => Duration::from_secs(3),
        Some(t) => t
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|s| s.is_finite() && *s > 0.0 && *s <= 86_400.0)
            .map(Duration::from_secs_f64)
            .ok_or_else(|| err(KUBE_INTERVAL, t, "seconds > 0 (at most 86400) expected"))?,
    };
    let fall = v.number(KUBE_FALL, 10u32, 1..=u32::MAX)?;
    let rise = v.number(KUBE_RISE, 2u32, 1..=u32::MAX)?;
    let weight = v.number(KUBE_WEIGHT, -50i32, -253..=253)?;
    Ok(CheckSpec {
        name: KUBE_APISERVER_CHECK.to_owned(),
        kind: CheckKind::KubeApiserver { address, port },
        interval,
        // The script gave each curl `--max-time 2`; never longer than the interval.
        timeout: interval.min(Duration::from_secs(2)),
        rise,
        fall,
        weight,
    })
}

#[cfg(test)]
mod tests;
