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

use std::{
    collections::BTreeMap, fmt::Display, net::IpAddr, ops::RangeInclusive, path::PathBuf, str::FromStr, time::Duration,
};

use crate::{
    checks::{CheckKind, CheckSpec},
    config::{Config, InitialState, InstanceSpec},
    datapath::Family,
    network::Vip,
    openshift::Host,
    run_args::parse_vip,
};

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

fn err(var: &str, value: &str, why: impl Display) -> String {
    format!("{var}={value:?}: {why}")
}

/// Lookups in the environment; an empty value counts as unset, as the image's `${VAR:-default}`.
struct Vars<'a>(&'a BTreeMap<String, String>);

impl<'a> Vars<'a> {
    fn get(&self, name: &str) -> Option<&'a str> {
        self.0.get(name).map(String::as_str).filter(|v| !v.trim().is_empty())
    }

    /// `true` / `false`, any case. The image took anything but `true` for false; here it is an error.
    fn boolean(&self, name: &str, default: bool) -> Result<bool, String> {
        match self.get(name) {
            None => Ok(default),
            Some(v) if v.trim().eq_ignore_ascii_case("true") => Ok(true),
            Some(v) if v.trim().eq_ignore_ascii_case("false") => Ok(false),
            Some(v) => Err(err(name, v, "true or false expected")),
        }
    }

    fn number<T>(&self, name: &str, default: T, range: RangeInclusive<T>) -> Result<T, String>
    where
        T: FromStr + PartialOrd + Display,
    {
        match self.get(name) {
            None => Ok(default),
            Some(v) => v.trim().parse::<T>().ok().filter(|n| range.contains(n)).ok_or_else(|| {
                err(
                    name,
                    v,
                    format!("a whole number {}..{} expected", range.start(), range.end()),
                )
            }),
        }
    }

    fn address(&self, name: &str) -> Result<Option<IpAddr>, String> {
        self.get(name)
            .map(|v| v.trim().parse().map_err(|_| err(name, v, "not an IP address")))
            .transpose()
    }
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
) -> Result<Vec<Numbered<'a>>, String> {
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
            .filter(|f| distance(&format!("{stem}_"), f) <= 2)
            .map(|f| format!("{f}{n}"))
            .collect(),
        None => SCALARS
            .iter()
            .map(|s| (*s).to_owned())
            .filter(|s| distance(name, s) <= 2)
            .chain(
                FAMILIES
                    .iter()
                    .filter(|f| distance(name, f.trim_end_matches('_')) <= 2)
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

/// A Linux interface name (the kernel's dev_valid_name).
fn interface_name(var: &str, value: &str) -> Result<String, String> {
    let name = value.trim();
    if name.len() > 15 || name == "." || name == ".." || name.contains(['/', ':']) || name.contains(char::is_whitespace)
    {
        return Err(err(
            var,
            value,
            "not an interface name (at most 15 bytes, no '/', ':' or spaces)",
        ));
    }
    Ok(name.to_owned())
}

/// Reads the arcts/keepalived environment. `host` only adds warnings (an interface or a source address
/// this node does not have) and drops this node's own address from the unicast peers.
pub fn from_env(vars: &BTreeMap<String, String>, host: &Host) -> Result<KeepalivedEnv, String> {
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
) -> Result<Config, String> {
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
        return Err(format!(
            "{VIPS}<0-999> is required: at least one virtual address, e.g. {VIPS}1=\"10.10.0.2/24 dev eth0\""
        ));
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
fn advert_int(v: &Vars, version: u8) -> Result<Duration, String> {
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
fn kube_apiserver_check(v: &Vars, first_vip: IpAddr) -> Result<CheckSpec, String> {
    // The image took the first IPv4 address in the lowest-sorted VIP variable; this is the address
    // of the lowest-numbered one.
    let address = v.address(KUBE_ADDRESS)?.unwrap_or(first_vip);
    let port = v.number(KUBE_PORT, 6443u16, 1..=65535).map_err(|e| {
        if v.get(KUBE_PORT).is_some_and(|p| p.contains("://")) {
            format!(
                "{e} (Kubernetes defines {KUBE_PORT} as a service link for a Service named kube-apiserver; \
                 set enableServiceLinks: false or set the port explicitly)"
            )
        } else {
            e
        }
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
mod tests {
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
        from_env(&vars(pairs), &host())
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
}
