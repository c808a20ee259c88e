//! The typed configuration every front end produces: command-line flags (`run_args`), the
//! `OPENSHIFT_HA_*` environment (`openshift`), the `KEEPALIVED_*` environment (`keepalived_env`) and a
//! keepalived.conf file (`keepalived_conf`). `check-config` prints it, `render-config` writes it back
//! as keepalived.conf, and `run` / SIGHUP apply it.

use std::{net::IpAddr, time::Duration};

use crate::{checks::CheckSpec, datapath::Family, network::Vip, vrrp::Preempt};

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
    pub fn interface(&self) -> Result<&str, String> {
        let mut names = self.instances.iter().map(|i| i.interface.as_str());
        let first = names.next().ok_or("no VRRP instance is configured")?;
        match names.find(|n| *n != first) {
            None => Ok(first),
            Some(other) => Err(format!(
                "instances run on {first} and on {other}: one agent serves one interface, run one agent per interface"
            )),
        }
    }
}

impl InstanceSpec {
    /// What the datapath needs to validate this instance's adverts.
    pub fn vrid_spec(&self, primary: Option<IpAddr>) -> crate::datapath::VridSpec {
        crate::datapath::VridSpec {
            family: self.family,
            vrid: self.vrid,
            version: self.version,
            priority: self.priority,
            adver_int: self.adver_int,
            primary_addr: primary.or(self.src),
            unicast_peers: self.unicast_peers.clone(),
            auth_pass: self.auth_pass.clone(),
            expected_addrs: None,
            master: false,
        }
    }
}

impl Config {
    /// Checks what can be checked without looking at the system; errors name the instance, the field
    /// and the value.
    pub fn validate(&self) -> Result<(), String> {
        let interface = self.interface()?;
        let mut seen = std::collections::HashSet::new();
        let mut names = std::collections::HashSet::new();
        for i in &self.instances {
            let at = format!("instance {}", i.name);
            if !names.insert(i.name.as_str()) {
                return Err(format!("{at}: the name is used twice"));
            }
            if !seen.insert((i.family, i.vrid)) {
                return Err(format!(
                    "{at}: vrid {} ({:?}) is used twice on {interface}",
                    i.vrid, i.family
                ));
            }
            if i.priority == 0 {
                return Err(format!("{at}: priority 0 is invalid (1..255)"));
            }
            if i.vips.is_empty() {
                return Err(format!("{at}: no virtual address"));
            }
            for t in &i.tracks {
                if !self.checks.iter().any(|c| &c.name == t) {
                    return Err(format!("{at}: track_script {t:?} names no check"));
                }
            }
            for v in i.owned() {
                if Family::of(&v.addr) != i.family {
                    return Err(format!("{at}: VIP {v} is not {:?} like the instance", i.family));
                }
                v.validate().map_err(|e| format!("{at}: {e}"))?;
            }
            i.vrid_spec(None).validate().map_err(|e| format!("{at}: {e}"))?;
        }
        let mut checks = std::collections::HashSet::new();
        for c in &self.checks {
            if !checks.insert(c.name.as_str()) {
                return Err(format!("check {}: the name is used twice", c.name));
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
        use std::fmt::Write as _;
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
                crate::checks::CheckKind::Script(s) => format!("script {s:?}"),
                crate::checks::CheckKind::Tcp(p) => format!("TCP connect to this node's port {p}"),
                crate::checks::CheckKind::KubeApiserver { address, port } => format!(
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
