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

/// keepalived's `state`: where an instance starts. Either way VRRP decides who is Master; MASTER only
/// shortens the first wait (keepalived's behaviour).
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
