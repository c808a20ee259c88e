//! The typed configuration every front end produces, and the front ends themselves: command-line
//! flags (`flags`), the `OPENSHIFT_HA_*` environment (`openshift`), the `KEEPALIVED_*` environment
//! (`keepalived_env`; both environments read through `env`) and a keepalived.conf file
//! (`keepalived_conf`); `source` picks the one that applies. `check-config` prints the result
//! (`describe`), `render-config` writes it back as keepalived.conf, and `run` / SIGHUP apply it.
//!
//! Nothing here touches the system but `host` (read once per load) and the files a keepalived.conf
//! names; errors are [`ConfigError`]s that name the variable, flag or file:line and the value.

pub mod check;
pub mod describe;
mod env;
pub mod flags;
pub mod host;
pub mod keepalived_conf;
pub mod keepalived_env;
pub mod node_ip;
pub mod openshift;
pub mod source;
pub mod vip;

use std::{net::IpAddr, time::Duration};

pub use check::{CheckKind, CheckSpec};
pub use host::Host;
pub use source::{Selection, Source};
pub use vip::{Vip, VipError, parse_vip};

use crate::{datapath::Family, vrrp::Preempt};

/// Why a configuration cannot be used. Every variant names where the value came from.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// An environment variable with a value that cannot be used.
    #[error("{var}={value:?}: {why}")]
    Env { var: String, value: String, why: String },
    /// An environment variable missing, or at odds with another.
    #[error("{var} {why}")]
    Variable { var: String, why: String },
    /// A keepalived.conf problem (`path:line: ...`).
    #[error(transparent)]
    File(#[from] keepalived_conf::ConfError),
    /// A VIP line that does not parse (`vip="...": why`).
    #[error(transparent)]
    Vip(#[from] VipError),
    /// A `--instance` / `--check` value (`key="value": why`).
    #[error("{0}")]
    Flag(String),
    /// Flags or sources that exclude each other, or no source at all.
    #[error("{0}")]
    Usage(String),
    /// A checked configuration that is inconsistent (`instance NAME: ...`, `check NAME: ...`).
    #[error("{what}: {why}")]
    Invalid { what: String, why: String },
}

impl ConfigError {
    fn instance(name: &str, why: impl std::fmt::Display) -> Self {
        ConfigError::Invalid {
            what: format!("instance {name}"),
            why: why.to_string(),
        }
    }
}

/// Everything the front ends describe (the runtime options — metrics address, status socket, XDP
/// mode, VIP leases — are flags of `run`, not part of it).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Config {
    pub instances: Vec<InstanceSpec>,
    /// Health checks the instances can track (keepalived's vrrp_script).
    pub checks: Vec<CheckSpec>,
    /// Accept rule for VRRP traffic the agent adds and `cleanup` removes.
    pub firewall: Option<Firewall>,
    /// keepalived's `global_defs { router_id }`: kept for the rendering, not used on the wire.
    pub router_id: Option<String>,
    /// keepalived's `script_user` / `enable_script_security` (keepalived.conf only).
    pub script_security: crate::script_security::ScriptSecurity,
    /// What the front end accepted but ignores (a harmless keepalived keyword, `KEEPALIVED_CMD`): logged
    /// at start and printed by `check-config`.
    pub warnings: Vec<String>,
}

/// keepalived's `state`. As in keepalived 2.x, every instance that is not the address owner starts
/// as Backup and VRRP elects the Master; the value is kept so the rendering matches the source.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum InitialState {
    #[default]
    Backup,
    Master,
}

/// Notify scripts (keepalived's `notify`, `notify_master`, ...). `any` gets keepalived's argv
/// `INSTANCE <name> <MASTER|BACKUP|FAULT|STOP> <priority>`; the per-state ones are run as written.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Notify {
    pub any: Option<String>,
    pub master: Option<String>,
    pub backup: Option<String>,
    pub fault: Option<String>,
    pub stop: Option<String>,
}

/// Gratuitous ARP / unsolicited NA on becoming Master (keepalived's garp_master_*).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Garp {
    /// Packets per burst (garp_master_repeat).
    pub repeat: u32,
    /// Delay of the second burst (garp_master_delay).
    pub delay: Duration,
    /// Periodic refresh while Master (garp_master_refresh); `None`: off.
    pub refresh: Option<Duration>,
}

impl Default for Garp {
    /// keepalived's defaults: 5 packets, a second burst after 5 s, no refresh.
    fn default() -> Self {
        Garp {
            repeat: 5,
            delay: Duration::from_secs(5),
            refresh: None,
        }
    }
}

/// The firewall accept rule for VRRP multicast the ipfailover image added.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Firewall {
    /// `OPENSHIFT_HA_IPTABLES_CHAIN`: a rule in this iptables chain (filter table).
    Iptables { chain: String },
    /// `OPENSHIFT_HA_NFTABLES_RULE`: the same rule in an nftables table of ipf's own.
    Nftables,
}

/// One configured VRRP instance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstanceSpec {
    pub name: String,
    /// The interface VRRP runs on and the VIPs go on (unless a VIP names its own `dev`).
    pub interface: String,
    pub vrid: u8,
    pub family: Family,
    /// 2 or 3.
    pub version: u8,
    pub priority: u8,
    pub adver_int: Duration,
    pub preempt: Preempt,
    pub initial_state: InitialState,
    pub vips: Vec<Vip>,
    /// Owned like `vips` but never advertised (keepalived's virtual_ipaddress_excluded).
    pub excluded: Vec<Vip>,
    pub unicast_peers: Vec<IpAddr>,
    /// Source address for adverts; detected from the interface when `None`.
    pub src: Option<IpAddr>,
    pub auth_pass: Option<String>,
    /// Names of the checks this instance tracks (keepalived's track_script).
    pub tracks: Vec<String>,
    /// Interfaces whose link going down puts the instance in FAULT, besides the VRRP interface
    /// (keepalived's track_interface).
    pub track_interfaces: Vec<String>,
    pub notify: Notify,
    pub garp: Garp,
}

/// What a VRRPv2 PASS password is on the wire: its first 8 bytes (cut at a character boundary), as
/// keepalived reads it. The model keeps that, so every front end and the rendering agree.
pub fn wire_password(text: &str) -> String {
    let mut end = text.len().min(8);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

impl InstanceSpec {
    /// An instance with keepalived's defaults for everything but what identifies it.
    pub fn new(name: impl Into<String>, interface: impl Into<String>, vrid: u8, family: Family) -> Self {
        InstanceSpec {
            name: name.into(),
            interface: interface.into(),
            vrid,
            family,
            version: 2,
            priority: 100,
            adver_int: Duration::from_secs(1),
            preempt: Preempt::Yes,
            initial_state: InitialState::Backup,
            vips: Vec::new(),
            excluded: Vec::new(),
            unicast_peers: Vec::new(),
            src: None,
            auth_pass: None,
            tracks: Vec::new(),
            track_interfaces: Vec::new(),
            notify: Notify::default(),
            garp: Garp::default(),
        }
    }

    /// Every address the instance owns when Master: advertised and excluded.
    pub fn owned(&self) -> impl Iterator<Item = &Vip> {
        self.vips.iter().chain(&self.excluded)
    }

    /// The interface `vip` goes on: its own `dev`, else the instance's.
    pub fn vip_interface<'a>(&'a self, vip: &'a Vip) -> &'a str {
        vip.dev.as_deref().unwrap_or(&self.interface)
    }
}

impl Config {
    /// The one interface VRRP runs on: an agent serves one interface (run one per interface).
    pub fn interface(&self) -> Result<&str, ConfigError> {
        let mut names = self.instances.iter().map(|i| i.interface.as_str());
        let first = names
            .next()
            .ok_or_else(|| ConfigError::Usage("no VRRP instance is configured".into()))?;
        match names.find(|n| *n != first) {
            None => Ok(first),
            Some(other) => Err(ConfigError::Usage(format!(
                "instances run on {first} and on {other}: one agent serves one interface, run one agent per interface"
            ))),
        }
    }
}

impl Config {
    /// Checks what can be checked without looking at the system; errors name the instance, the field
    /// and the value.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let interface = self.interface()?;
        let mut seen = std::collections::HashSet::new();
        let mut names = std::collections::HashSet::new();
        for i in &self.instances {
            let bad = |why: String| Err(ConfigError::instance(&i.name, why));
            if !names.insert(i.name.as_str()) {
                return bad("the name is used twice".into());
            }
            if !seen.insert((i.family, i.vrid)) {
                return bad(format!("vrid {} ({:?}) is used twice on {interface}", i.vrid, i.family));
            }
            if i.priority == 0 {
                return bad("priority 0 is invalid (1..255)".into());
            }
            if i.vips.is_empty() {
                return bad("no virtual address".into());
            }
            for t in &i.tracks {
                if !self.checks.iter().any(|c| &c.name == t) {
                    return bad(format!("track_script {t:?} names no check"));
                }
            }
            for v in i.owned() {
                if Family::of(&v.addr) != i.family {
                    return bad(format!("VIP {v} is not {:?} like the instance", i.family));
                }
                v.validate().map_err(|e| ConfigError::instance(&i.name, e))?;
            }
            for a in i.unicast_peers.iter().chain(&i.src) {
                if Family::of(a) != i.family {
                    return bad(format!("vrid {}: address {a} is not {:?}", i.vrid, i.family));
                }
            }
            // What the wire can carry: the datapath's rule, the one both use.
            crate::datapath::check_wire(i.family, i.vrid, i.version, i.adver_int, i.auth_pass.is_some())
                .map_err(|e| ConfigError::instance(&i.name, e))?;
        }
        let mut checks = std::collections::HashSet::new();
        for c in &self.checks {
            if !checks.insert(c.name.as_str()) {
                return Err(ConfigError::Invalid {
                    what: format!("check {}", c.name),
                    why: "the name is used twice".into(),
                });
            }
        }
        Ok(())
    }

    /// Every interface the configuration needs: the VRRP one, the VIPs' own `dev`s and the tracked
    /// ones (they must exist before anything is touched).
    pub fn interfaces(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for i in &self.instances {
            let names = std::iter::once(i.interface.as_str())
                .chain(i.owned().map(|v| i.vip_interface(v)))
                .chain(i.track_interfaces.iter().map(String::as_str));
            for n in names {
                if !out.contains(&n) {
                    out.push(n);
                }
            }
        }
        out
    }
}
