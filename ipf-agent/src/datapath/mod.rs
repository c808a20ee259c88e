//! The datapath: VRRP/ARP/NA receive classification feeding the state machine.
//!
//! Two backends share one table model ([`Tables`]) and the pure validation of `ipf-common`:
//! - [`xdp`]: the XDP program, with tables in BPF maps and events from a ring buffer;
//! - [`raw`]: an AF_PACKET socket, used with `--xdp-mode off` or when attaching fails.
//!
//! Either way the agent sees the same [`DatapathEvent`]s, one per change, never one per advert.

pub mod attach;
pub mod raw;
pub mod xdp;

use std::{
    collections::BTreeMap,
    fmt,
    net::IpAddr,
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use ipf_common::{
    Counter, DatapathEvent, IfaceConfig, VipKey, VridConfig, VridState,
    maps::{FAMILY_V4, FAMILY_V6, PeerKey, addr16, vrid_flags, vrid_slot},
    vrrp::{address_digest, interval_fits},
};
use serde::Serialize;
use tokio::sync::mpsc;

/// Attach mode requested on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum XdpModeArg {
    /// Native (driver) XDP, else generic (skb) XDP, else the raw-socket path.
    Auto,
    /// Native XDP only; the raw-socket path if the driver cannot.
    Driver,
    /// Generic XDP only; the raw-socket path if that fails.
    Skb,
    /// No XDP: the raw-socket path.
    Off,
}

/// The receive path actually in use.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum ActiveMode {
    XdpDriver,
    XdpSkb,
    /// The raw-socket path, and why XDP is not used.
    RawSocket {
        reason: String,
    },
}

impl ActiveMode {
    /// Short label for logs and metrics.
    pub fn label(&self) -> &'static str {
        match self {
            ActiveMode::XdpDriver => "xdp-driver",
            ActiveMode::XdpSkb => "xdp-skb",
            ActiveMode::RawSocket { .. } => "raw-socket",
        }
    }
}

impl fmt::Display for ActiveMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ActiveMode::RawSocket { reason } => write!(f, "raw-socket ({reason})"),
            other => f.write_str(other.label()),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DatapathError {
    #[error("interface {0:?} not found")]
    NoSuchInterface(String),
    #[error("loading the XDP program: {0}")]
    Load(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("attaching XDP to {iface} in {mode} mode: {source}")]
    Attach {
        iface: String,
        mode: &'static str,
        #[source]
        source: aya::programs::ProgramError,
    },
    #[error("attaching XDP to {iface} in {mode} mode through netlink: {source}")]
    NetlinkAttach {
        iface: String,
        mode: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("{op} on map {map}: {source}")]
    Map {
        op: &'static str,
        map: &'static str,
        #[source]
        source: aya::maps::MapError,
    },
    #[error("raw socket on {iface}: {source}")]
    RawSocket {
        iface: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Spec(String),
}

/// Address family of a VRRP instance.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Family {
    #[serde(rename = "ipv4")]
    V4,
    #[serde(rename = "ipv6")]
    V6,
}

impl Family {
    pub fn of(addr: &IpAddr) -> Self {
        match addr {
            IpAddr::V4(_) => Family::V4,
            IpAddr::V6(_) => Family::V6,
        }
    }

    pub fn wire(self) -> u8 {
        match self {
            Family::V4 => FAMILY_V4,
            Family::V6 => FAMILY_V6,
        }
    }

    pub fn from_wire(family: u8) -> Option<Self> {
        match family {
            FAMILY_V4 => Some(Family::V4),
            FAMILY_V6 => Some(Family::V6),
            _ => None,
        }
    }
}

/// Address as the maps store it: network order, IPv4 in the first 4 bytes.
pub fn wire_addr(addr: &IpAddr) -> [u8; 16] {
    match addr {
        IpAddr::V4(a) => addr16(&a.octets()),
        IpAddr::V6(a) => a.octets(),
    }
}

/// The inverse of [`wire_addr`].
pub fn ip_from_wire(family: u8, addr: &[u8; 16]) -> IpAddr {
    if family == FAMILY_V6 {
        IpAddr::from(*addr)
    } else {
        IpAddr::from([addr[0], addr[1], addr[2], addr[3]])
    }
}

/// What VRRP can carry on the wire for one instance (RFC 3768, RFC 5798): the one rule the
/// configuration and the datapath both apply.
pub fn check_wire(family: Family, vrid: u8, version: u8, adver_int: Duration, auth: bool) -> Result<(), DatapathError> {
    let err = |m: String| Err(DatapathError::Spec(m));
    if vrid == 0 {
        return err(format!("vrid {vrid}: must be 1..255"));
    }
    if version != 2 && version != 3 {
        return err(format!("vrid {vrid}: version {version} (must be 2 or 3)"));
    }
    if version == 2 && family == Family::V6 {
        return err(format!("vrid {vrid}: VRRPv2 has no IPv6"));
    }
    // Longer passwords are cut to their first 8 bytes on the wire, as keepalived does.
    if auth && version != 2 {
        return err(format!("vrid {vrid}: auth_pass needs VRRPv2"));
    }
    let cs = adver_int.as_millis() / 10;
    let whole_cs = adver_int.as_nanos().is_multiple_of(10_000_000);
    if !whole_cs || !interval_fits(version, u32::try_from(cs).unwrap_or(u32::MAX)) {
        return err(format!(
            "vrid {vrid}: advert interval {adver_int:?} cannot be carried by VRRPv{version}"
        ));
    }
    Ok(())
}

/// What the datapath must know about one VRRP instance on the interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VridSpec {
    pub family: Family,
    pub vrid: u8,
    /// 2 or 3.
    pub version: u8,
    /// Our effective priority.
    pub priority: u8,
    /// Configured advertisement interval.
    pub adver_int: Duration,
    /// Our primary address (adverts from it are ours).
    pub primary_addr: Option<IpAddr>,
    /// Unicast peers; empty for multicast.
    pub unicast_peers: Vec<IpAddr>,
    /// VRRPv2 PASS password (at most 8 bytes).
    pub auth_pass: Option<String>,
    /// The addresses peers must advertise; `None` skips the address-list check.
    pub expected_addrs: Option<Vec<IpAddr>>,
    /// Whether we are Master.
    pub master: bool,
    /// Whether we are a Backup guarding a split brain it yielded (claims reported, see
    /// `ipf_common::advert::conflict_due`).
    pub guard: bool,
}

impl VridSpec {
    /// Checks what the wire format cannot carry.
    pub fn validate(&self) -> Result<(), DatapathError> {
        check_wire(
            self.family,
            self.vrid,
            self.version,
            self.adver_int,
            self.auth_pass.is_some(),
        )?;
        let err = |m: String| Err(DatapathError::Spec(m));
        let all = self
            .unicast_peers
            .iter()
            .chain(self.expected_addrs.iter().flatten())
            .chain(self.primary_addr.iter());
        for a in all {
            if Family::of(a) != self.family {
                return err(format!("vrid {}: address {a} is not {:?}", self.vrid, self.family));
            }
        }
        if self.expected_addrs.as_ref().is_some_and(|a| a.len() > 255) {
            return err(format!("vrid {}: more than 255 advertised addresses", self.vrid));
        }
        Ok(())
    }

    /// The map entry for this instance.
    pub fn config(&self) -> VridConfig {
        let mut flags = vrid_flags::CONFIGURED;
        if !self.unicast_peers.is_empty() {
            flags |= vrid_flags::UNICAST;
        }
        if self.master {
            flags |= vrid_flags::MASTER;
        }
        if self.guard {
            flags |= vrid_flags::GUARD;
        }
        let mut auth_pass = [0u8; 8];
        if let Some(p) = &self.auth_pass {
            flags |= vrid_flags::AUTH_PASS;
            let n = p.len().min(8);
            auth_pass[..n].copy_from_slice(&p.as_bytes()[..n]);
        }
        let (addr_count, addr_digest) = match &self.expected_addrs {
            Some(addrs) => {
                flags |= vrid_flags::CHECK_ADDRS;
                let len = if self.family == Family::V6 { 16 } else { 4 };
                let bytes: Vec<u8> = addrs.iter().flat_map(|a| wire_addr(a)[..len].to_vec()).collect();
                (addrs.len().min(255) as u8, address_digest(&bytes))
            }
            None => (0, 0),
        };
        VridConfig {
            flags,
            version: self.version,
            priority: self.priority,
            addr_count,
            adver_int_cs: (self.adver_int.as_millis() / 10).min(u16::MAX as u128) as u16,
            _pad: [0; 2],
            addr_digest,
            auth_pass,
            primary_addr: self.primary_addr.as_ref().map(wire_addr).unwrap_or_default(),
        }
    }

    fn slot(&self) -> u32 {
        vrid_slot(self.family.wire(), self.vrid)
    }

    fn peer_keys(&self) -> impl Iterator<Item = PeerKey> + '_ {
        self.unicast_peers.iter().map(|p| PeerKey {
            family: self.family.wire(),
            vrid: self.vrid,
            _pad: [0; 2],
            addr: wire_addr(p),
        })
    }
}

/// Table operations both backends implement: BPF maps, or their userspace twins.
pub trait Tables: Send {
    fn set_iface(&mut self, cfg: IfaceConfig) -> Result<(), DatapathError>;
    fn set_config(&mut self, slot: u32, cfg: VridConfig) -> Result<(), DatapathError>;
    fn reset_state(&mut self, slot: u32) -> Result<(), DatapathError>;
    fn state(&self, slot: u32) -> Result<VridState, DatapathError>;
    fn insert_peer(&mut self, key: PeerKey) -> Result<(), DatapathError>;
    fn remove_peer(&mut self, key: &PeerKey) -> Result<(), DatapathError>;
    fn insert_vip(&mut self, key: VipKey, vrid: u8) -> Result<(), DatapathError>;
    fn remove_vip(&mut self, key: &VipKey) -> Result<(), DatapathError>;
    /// Counter totals over all CPUs, indexed by [`Counter`].
    fn counters(&self) -> Result<Vec<u64>, DatapathError>;
}

/// Options for [`Datapath::start`].
#[derive(Clone, Debug)]
pub struct DatapathOptions {
    pub interface: String,
    pub mode: XdpModeArg,
    /// Kernel-side log level kept at load time; lower levels are pruned by the verifier.
    pub kernel_log_level: log::LevelFilter,
    /// Minimum time between two conflict events for one VIP.
    pub conflict_interval: Duration,
    /// MACs that may legitimately claim our VIPs besides the interface's own (e.g. a VMAC).
    pub extra_macs: Vec<[u8; 6]>,
    /// Attach through netlink so the program stays when the process dies (see [`attach`]): the
    /// agent; a read-only `monitor` keeps a link that goes with it.
    pub outlive_crash: bool,
}

impl DatapathOptions {
    pub fn new(interface: impl Into<String>, mode: XdpModeArg) -> Self {
        Self {
            interface: interface.into(),
            mode,
            kernel_log_level: log::LevelFilter::Warn,
            // Conflict probes go out every 200 ms during an episode; each answer must get through
            // for the episode's end to be seen within half a second.
            conflict_interval: Duration::from_millis(100),
            extra_macs: Vec::new(),
            outlive_crash: false,
        }
    }
}

/// The receive datapath of one interface.
pub struct Datapath {
    tables: SharedTables,
    mode: ActiveMode,
    interface: String,
    vrids: BTreeMap<u32, VridSpec>,
    /// Keeps the backend alive (XDP link, socket task); dropped last, detaching the program.
    _backend: Backend,
}

/// Held for its `Drop`: detaches the program or stops the socket task.
#[expect(dead_code, reason = "held only for its Drop")]
enum Backend {
    Xdp(xdp::XdpHandle),
    Raw(raw::RawHandle),
}

/// Registers an owned descriptor (socket, map) with the tokio reactor for readability.
pub(crate) fn readable_fd<T: std::os::fd::AsRawFd>(inner: T) -> std::io::Result<tokio::io::unix::AsyncFd<T>> {
    // SAFETY: every `T` passed here owns its descriptor (OwnedFd, aya map or logger), which stays open
    // and unchanged until the AsyncFd, which owns `T`, is dropped.
    Ok(unsafe { tokio::io::unix::AsyncFd::register_with_interest(inner, tokio::io::Interest::READABLE) }?)
}

type SharedTables = Arc<Mutex<Box<dyn Tables>>>;

/// Read access to the datapath's counters and VRID state from another thread (metrics), without
/// going through the election loop.
#[derive(Clone)]
pub struct DatapathReader {
    tables: SharedTables,
    pub interface: String,
    pub mode: ActiveMode,
}

impl DatapathReader {
    fn tables(&self) -> MutexGuard<'_, Box<dyn Tables>> {
        lock(&self.tables)
    }

    /// Counter totals by name.
    pub fn counters(&self) -> Result<Vec<(Counter, u64)>, DatapathError> {
        let values = self.tables().counters()?;
        Ok(Counter::ALL.iter().copied().zip(values).collect())
    }

    pub fn vrid_state(&self, family: Family, vrid: u8) -> Result<VridState, DatapathError> {
        self.tables().state(vrid_slot(family.wire(), vrid))
    }
}

fn lock<T: ?Sized>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Table operations are single calls: a panic elsewhere cannot leave them half done.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Receiver of datapath events.
pub type Events = mpsc::Receiver<DatapathEvent>;

/// Capacity of the event channel between the ring-buffer drain and the agent.
const EVENT_CHANNEL: usize = 1024;

impl Datapath {
    /// Loads and attaches the datapath on `opts.interface` (must run inside a tokio runtime).
    pub fn start(opts: &DatapathOptions) -> Result<(Self, Events), DatapathError> {
        let ifindex = interface_index(&opts.interface)?;
        let mut macs = vec![interface_mac(&opts.interface)];
        macs.extend(opts.extra_macs.iter().copied());
        let mut own_macs = [[0u8; 6]; 4];
        for (slot, mac) in own_macs.iter_mut().zip(macs.iter()) {
            *slot = *mac;
        }
        let iface_cfg = IfaceConfig {
            conflict_interval_ns: opts.conflict_interval.as_nanos().min(u64::MAX as u128) as u64,
            own_macs,
            own_mac_count: macs.len().min(4) as u8,
            _pad: [0; 7],
        };
        let (tx, rx) = mpsc::channel(EVENT_CHANNEL);
        let xdp_modes: &[(aya::programs::xdp::XdpMode, &'static str)] = match opts.mode {
            XdpModeArg::Auto => &[
                (aya::programs::xdp::XdpMode::Driver, "driver"),
                (aya::programs::xdp::XdpMode::Skb, "skb"),
            ],
            XdpModeArg::Driver => &[(aya::programs::xdp::XdpMode::Driver, "driver")],
            XdpModeArg::Skb => &[(aya::programs::xdp::XdpMode::Skb, "skb")],
            XdpModeArg::Off => &[],
        };
        let mut reason = String::from("--xdp-mode off");
        // A container without CAP_BPF or with a seccomp filter on bpf(): say why, in the manifest's
        // terms, rather than after a load fails with a bare EPERM.
        let blocked = if xdp_modes.is_empty() {
            None
        } else {
            let privileges = crate::container::Privileges::current();
            crate::container::xdp_preflight(&privileges, crate::container::probe_bpf())
        };
        if let Some(b) = &blocked {
            reason = format!("XDP unavailable: {b}");
        }
        if !xdp_modes.is_empty() && blocked.is_none() {
            match xdp::XdpHandle::start(opts, ifindex, xdp_modes, tx.clone()) {
                Ok((handle, mut tables, mode)) => {
                    tables.set_iface(iface_cfg)?;
                    tracing::info!(interface = %opts.interface, mode = mode.label(), "datapath: XDP attached");
                    let dp = Datapath {
                        tables: Arc::new(Mutex::new(Box::new(tables))),
                        mode,
                        interface: opts.interface.clone(),
                        vrids: BTreeMap::new(),
                        _backend: Backend::Xdp(handle),
                    };
                    return Ok((dp, rx));
                }
                Err(e) => {
                    let full = error_chain(&e);
                    tracing::debug!(interface = %opts.interface, "XDP unavailable: {full}");
                    // EBUSY/EEXIST from the kernel, or a live agent's program found by the attach code.
                    let busy = matches!(&e, DatapathError::NetlinkAttach { source, .. }
                        if source.kind() == std::io::ErrorKind::ResourceBusy);
                    reason = if busy || crate::container::slot_held(crate::container::errno_of(&e)) {
                        let held = crate::container::XdpBlocked::SlotHeld {
                            interface: opts.interface.clone(),
                        };
                        format!("XDP unavailable: {held}")
                    } else {
                        format!("XDP unavailable: {}", last_lines(&full, 3))
                    };
                }
            }
        }
        if opts.outlive_crash {
            // A crashed agent's program would go on filtering VRRP with that agent's tables.
            match attach::remove_ours(ifindex) {
                Ok(Some(id)) => {
                    tracing::info!(interface = %opts.interface, "detached XDP program {id} a previous agent left")
                }
                Ok(None) => {}
                // A running agent's program (or anyone else's) is not ours to remove: the fallback's
                // one line below says why XDP is unavailable.
                Err(e) => tracing::debug!(interface = %opts.interface, "not detaching the XDP program: {e}"),
            }
        }
        let (handle, mut tables) = raw::RawHandle::start(&opts.interface, ifindex, tx)?;
        tables.set_iface(iface_cfg)?;
        if matches!(
            blocked,
            Some(crate::container::XdpBlocked::NoBpfCapability | crate::container::XdpBlocked::Seccomp)
        ) {
            // The manifest is wrong: an error, though the agent goes on on the raw-socket path.
            tracing::error!(interface = %opts.interface, "datapath: {reason}; using the raw-socket receive path");
        } else {
            tracing::warn!(interface = %opts.interface, %reason, "datapath: using the raw-socket receive path");
        }
        let mode = ActiveMode::RawSocket { reason };
        Ok((
            Datapath {
                tables: Arc::new(Mutex::new(Box::new(tables))),
                mode,
                interface: opts.interface.clone(),
                vrids: BTreeMap::new(),
                _backend: Backend::Raw(handle),
            },
            rx,
        ))
    }

    pub fn mode(&self) -> &ActiveMode {
        &self.mode
    }

    fn tables(&self) -> MutexGuard<'_, Box<dyn Tables>> {
        lock(&self.tables)
    }

    /// A handle for reading counters and state from another thread.
    pub fn reader(&self) -> DatapathReader {
        DatapathReader {
            tables: self.tables.clone(),
            interface: self.interface.clone(),
            mode: self.mode.clone(),
        }
    }

    pub fn interface(&self) -> &str {
        &self.interface
    }

    /// Adds or updates a VRID. Its advert state is reset when the instance is new or its version,
    /// family or peers change.
    pub fn set_vrid(&mut self, spec: &VridSpec) -> Result<(), DatapathError> {
        spec.validate()?;
        let slot = spec.slot();
        let old = self.vrids.get(&slot).cloned();
        if let Some(old) = &old {
            for key in old.peer_keys() {
                if !spec.unicast_peers.iter().any(|p| wire_addr(p) == key.addr) {
                    self.tables().remove_peer(&key)?;
                }
            }
        }
        for key in spec.peer_keys() {
            self.tables().insert_peer(key)?;
        }
        if old
            .as_ref()
            .is_none_or(|o| o.version != spec.version || o.unicast_peers != spec.unicast_peers)
        {
            self.tables().reset_state(slot)?;
        }
        self.tables().set_config(slot, spec.config())?;
        self.vrids.insert(slot, spec.clone());
        Ok(())
    }

    /// Changes only our role and priority (what the preemption check needs) for a configured VRID.
    pub fn set_role(&mut self, family: Family, vrid: u8, master: bool, priority: u8) -> Result<(), DatapathError> {
        let slot = vrid_slot(family.wire(), vrid);
        let Some(spec) = self.vrids.get_mut(&slot) else {
            return Err(DatapathError::Spec(format!(
                "vrid {vrid} ({family:?}) is not configured"
            )));
        };
        spec.master = master;
        spec.priority = priority;
        let cfg = spec.config();
        self.tables().set_config(slot, cfg)
    }

    /// Starts or stops guarding a yielded split brain for a configured VRID (see [`VridSpec::guard`]).
    pub fn set_guard(&mut self, family: Family, vrid: u8, guard: bool) -> Result<(), DatapathError> {
        let slot = vrid_slot(family.wire(), vrid);
        let Some(spec) = self.vrids.get_mut(&slot) else {
            return Err(DatapathError::Spec(format!(
                "vrid {vrid} ({family:?}) is not configured"
            )));
        };
        spec.guard = guard;
        let cfg = spec.config();
        self.tables().set_config(slot, cfg)
    }

    pub fn remove_vrid(&mut self, family: Family, vrid: u8) -> Result<(), DatapathError> {
        let slot = vrid_slot(family.wire(), vrid);
        if let Some(old) = self.vrids.remove(&slot) {
            for key in old.peer_keys() {
                self.tables().remove_peer(&key)?;
            }
        }
        self.tables().set_config(slot, VridConfig::default())?;
        self.tables().reset_state(slot)
    }

    /// Registers a VIP owned by `vrid`'s instance (same family) for conflict detection.
    pub fn add_vip(&mut self, addr: &IpAddr, vrid: u8) -> Result<(), DatapathError> {
        self.tables().insert_vip(vip_key(addr), vrid)
    }

    pub fn remove_vip(&mut self, addr: &IpAddr) -> Result<(), DatapathError> {
        self.tables().remove_vip(&vip_key(addr))
    }

    /// Advert state of a VRID as the datapath last saw it.
    pub fn vrid_state(&self, family: Family, vrid: u8) -> Result<VridState, DatapathError> {
        self.tables().state(vrid_slot(family.wire(), vrid))
    }

    /// Counter totals by name.
    pub fn counters(&self) -> Result<Vec<(Counter, u64)>, DatapathError> {
        let values = self.tables().counters()?;
        Ok(Counter::ALL.iter().copied().zip(values).collect())
    }

    /// Configured VRIDs.
    pub fn vrids(&self) -> impl Iterator<Item = &VridSpec> {
        self.vrids.values()
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// The end of a long message (verifier logs run to thousands of lines; the cause is at the end).
fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    if lines.len() <= n {
        return lines.join(" | ");
    }
    format!("{} | ... | {}", lines[0], lines[lines.len() - n..].join(" | "))
}

fn vip_key(addr: &IpAddr) -> VipKey {
    VipKey {
        family: Family::of(addr).wire(),
        _pad: [0; 3],
        addr: wire_addr(addr),
    }
}

pub fn interface_index(name: &str) -> Result<u32, DatapathError> {
    let c = std::ffi::CString::new(name).map_err(|_| DatapathError::NoSuchInterface(name.to_owned()))?;
    // SAFETY: valid NUL-terminated string.
    let idx = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if idx == 0 {
        Err(DatapathError::NoSuchInterface(name.to_owned()))
    } else {
        Ok(idx)
    }
}

/// The interface's MAC from sysfs (all zeros when it has none, e.g. loopback).
pub fn interface_mac(name: &str) -> [u8; 6] {
    let mut mac = [0u8; 6];
    if let Ok(text) = std::fs::read_to_string(format!("/sys/class/net/{name}/address")) {
        for (slot, part) in mac.iter_mut().zip(text.trim().split(':')) {
            *slot = u8::from_str_radix(part, 16).unwrap_or(0);
        }
    }
    mac
}

/// An event in the form logs and JSON output use.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct EventView {
    pub timestamp_ns: u64,
    pub kinds: Vec<&'static str>,
    pub family: Option<Family>,
    pub vrid: u8,
    pub priority: u8,
    pub version: u8,
    pub adver_int_ms: u32,
    pub addr_count: u8,
    pub addr: IpAddr,
    pub mac: String,
}

impl From<&DatapathEvent> for EventView {
    fn from(e: &DatapathEvent) -> Self {
        use ipf_common::maps::event_kind as k;
        let names = [
            (k::NEW_MASTER, "new_master"),
            (k::PRIORITY_CHANGE, "priority_change"),
            (k::INTERVAL_CHANGE, "interval_change"),
            (k::AFTER_SILENCE, "after_silence"),
            (k::PREEMPTED, "preempted"),
            (k::VIP_CONFLICT, "vip_conflict"),
        ];
        EventView {
            timestamp_ns: e.timestamp_ns,
            kinds: names
                .iter()
                .filter(|(bit, _)| e.kind & bit != 0)
                .map(|(_, n)| *n)
                .collect(),
            family: Family::from_wire(e.family),
            vrid: e.vrid,
            priority: e.priority,
            version: e.version,
            adver_int_ms: e.adver_int_cs as u32 * 10,
            addr_count: e.addr_count,
            addr: ip_from_wire(e.family, &e.addr),
            mac: format_mac(&e.mac),
        }
    }
}

pub fn format_mac(mac: &[u8; 6]) -> String {
    mac.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

/// Advert state in the form logs and JSON output use.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StateView {
    pub family: Family,
    pub vrid: u8,
    pub master_addr: Option<IpAddr>,
    pub master_priority: u8,
    pub adver_int_ms: u32,
    pub adverts_rx: u64,
    pub priority_zero_rx: u64,
    pub events: u64,
    pub last_seen_ns: u64,
}

impl StateView {
    pub fn new(family: Family, vrid: u8, s: &VridState) -> Self {
        StateView {
            family,
            vrid,
            master_addr: (s.last_seen_ns != 0).then(|| ip_from_wire(family.wire(), &s.master_addr)),
            master_priority: s.master_priority,
            adver_int_ms: s.adver_int_cs as u32 * 10,
            adverts_rx: s.adverts_rx,
            priority_zero_rx: s.priority_zero_rx,
            events: s.events,
            last_seen_ns: s.last_seen_ns,
        }
    }
}
