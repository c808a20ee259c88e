//! `#[repr(C)]` map keys, values and events shared with the XDP program. Byte order: addresses are
//! stored as network-order byte arrays (IPv4 in the first 4 bytes, the rest zero); integers are native.

use core::mem::size_of;

pub use crate::consts::{FAMILY_V4, FAMILY_V6, MAX_VRRP_LEN};

/// Slots in the per-VRID arrays: VRIDs 0..=255 for IPv4, then 0..=255 for IPv6.
pub const VRID_SLOTS: u32 = 512;

/// Entries in the VIP map (ARP/NA conflict detection).
pub const MAX_VIPS: u32 = 4096;

/// Entries in the unicast-peer map.
pub const MAX_PEERS: u32 = 4096;

/// Ring buffer size in bytes (a power-of-two multiple of the page size). 64 KiB holds about 1,170
/// events (48 bytes and an 8-byte header each): more than two for every VRID slot at once, while
/// the agent drains the ring on every wake-up. Every page of it ends up resident, twice (the data
/// is mapped twice for wrap-around), so it is not larger than that.
pub const EVENT_RING_BYTES: u32 = 64 * 1024;

/// Index of `(family, vrid)` in `VRID_CONFIG` / `VRID_STATE`.
#[inline(always)]
pub const fn vrid_slot(family: u8, vrid: u8) -> u32 {
    if family == FAMILY_V6 {
        256 + vrid as u32
    } else {
        vrid as u32
    }
}

/// Copies the first `N` bytes of `src` into a 16-byte address (IPv4 uses the first 4).
#[inline(always)]
pub fn addr16(src: &[u8]) -> [u8; 16] {
    let mut out = [0u8; 16];
    let mut i = 0;
    while i < src.len() && i < 16 {
        out[i] = src[i];
        i += 1;
    }
    out
}

/// `VridConfig::flags` bits.
pub mod vrid_flags {
    /// The VRID is configured on this interface; adverts for any other VRID are `vrid_unknown`.
    pub const CONFIGURED: u8 = 1 << 0;
    /// Unicast instance: adverts must come from a configured peer (`PEERS` map).
    pub const UNICAST: u8 = 1 << 1;
    /// VRRPv2 simple-text (PASS) authentication: `auth_pass` must match.
    pub const AUTH_PASS: u8 = 1 << 2;
    /// Check the advertised address list against `addr_count` / `addr_digest`.
    pub const CHECK_ADDRS: u8 = 1 << 3;
    /// This node is Master for the VRID: adverts that would preempt us raise an event every time.
    pub const MASTER: u8 = 1 << 4;
    /// This node is a Backup that yielded the VIPs in a split brain (policy `yield`): claims of the
    /// VIPs are reported, not counted, so it knows the holder is still there.
    pub const GUARD: u8 = 1 << 5;
}

/// Per-VRID configuration written by the agent (`VRID_CONFIG` array, indexed by [`vrid_slot`]).
#[repr(C)]
#[derive(Clone, Copy, Default, PartialEq, Eq)]
#[cfg_attr(feature = "user", derive(Debug))]
pub struct VridConfig {
    pub flags: u8,
    /// VRRP version expected on the wire: 2 or 3.
    pub version: u8,
    /// Our current (effective) priority, for the preemption check while Master.
    pub priority: u8,
    /// Number of addresses the peers advertise, when `CHECK_ADDRS`.
    pub addr_count: u8,
    /// Configured advertisement interval in centiseconds (VRRPv2 checks it, RFC 3768 §7.1).
    pub adver_int_cs: u16,
    pub _pad: [u8; 2],
    /// Order-independent digest of the advertised addresses ([`crate::vrrp::address_digest`]).
    pub addr_digest: u32,
    /// VRRPv2 PASS password, zero padded.
    pub auth_pass: [u8; 8],
    /// Our primary address on the interface: adverts from it are our own; ties break against it.
    pub primary_addr: [u8; 16],
}
const _: () = assert!(size_of::<VridConfig>() == 36);

impl VridConfig {
    #[inline(always)]
    pub fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }
}

/// Per-VRID advertisement state kept by the datapath (`VRID_STATE` array).
#[repr(C)]
#[derive(Clone, Copy, Default, PartialEq, Eq)]
#[cfg_attr(feature = "user", derive(Debug))]
pub struct VridState {
    /// Monotonic (CLOCK_MONOTONIC, ns) time of the last valid advert; 0 before the first.
    pub last_seen_ns: u64,
    /// Valid adverts received.
    pub adverts_rx: u64,
    /// Valid adverts with priority 0 (master releasing) received.
    pub priority_zero_rx: u64,
    /// Events raised for this VRID.
    pub events: u64,
    /// Source address of the last advert: the current master.
    pub master_addr: [u8; 16],
    pub master_priority: u8,
    pub version: u8,
    /// Advertised interval in centiseconds.
    pub adver_int_cs: u16,
    pub addr_count: u8,
    /// Source MAC of the last advert: a claim of our VIPs from it is the master we heard, not a
    /// conflict, while its advert is recent and wins against us.
    pub master_mac: [u8; 6],
    pub _pad: [u8; 5],
}
const _: () = assert!(size_of::<VridState>() == 64);

/// Interface-wide settings (`IFACE_CONFIG` array, one entry).
#[repr(C)]
#[derive(Clone, Copy, Default, PartialEq, Eq)]
#[cfg_attr(feature = "user", derive(Debug))]
pub struct IfaceConfig {
    /// Minimum time between two conflict events for the same VIP.
    pub conflict_interval_ns: u64,
    /// MAC addresses that may claim our VIPs (the interface's own and, with a VMAC, 00:00:5e:00:01:xx).
    pub own_macs: [[u8; 6]; 4],
    pub own_mac_count: u8,
    pub _pad: [u8; 7],
}
const _: () = assert!(size_of::<IfaceConfig>() == 40);

/// Key of the `VIPS` map: the VIPs this agent manages on the interface.
#[repr(C)]
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "user", derive(Debug))]
pub struct VipKey {
    pub family: u8,
    pub _pad: [u8; 3],
    pub addr: [u8; 16],
}
const _: () = assert!(size_of::<VipKey>() == 20);

/// Value of the `VIPS` map.
#[repr(C)]
#[derive(Clone, Copy, Default, PartialEq, Eq)]
#[cfg_attr(feature = "user", derive(Debug))]
pub struct VipState {
    /// Time of the last conflict event (rate limit).
    pub last_conflict_ns: u64,
    /// Conflicting claims seen (events or not).
    pub conflicts: u64,
    /// The VRID whose instance owns the VIP (same family as the key): its role and the master it
    /// heard decide whether a claim is a conflict.
    pub vrid: u8,
    pub _pad: [u8; 7],
}
const _: () = assert!(size_of::<VipState>() == 24);

impl VipState {
    /// A VIP owned by `vrid`'s instance, no conflict seen yet.
    pub const fn owned_by(vrid: u8) -> Self {
        VipState {
            last_conflict_ns: 0,
            conflicts: 0,
            vrid,
            _pad: [0; 7],
        }
    }
}

/// Key of the `PEERS` map: unicast peers allowed to advertise a VRID.
#[repr(C)]
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "user", derive(Debug))]
pub struct PeerKey {
    pub family: u8,
    pub vrid: u8,
    pub _pad: [u8; 2],
    pub addr: [u8; 16],
}
const _: () = assert!(size_of::<PeerKey>() == 20);

/// `DatapathEvent::kind` bits: why userspace is woken. Several can be set at once.
pub mod event_kind {
    /// The advert came from a different address than the last one (or is the first).
    pub const NEW_MASTER: u32 = 1 << 0;
    /// Same master, different priority (priority 0 included).
    pub const PRIORITY_CHANGE: u32 = 1 << 1;
    /// Same master, different advertised interval.
    pub const INTERVAL_CHANGE: u32 = 1 << 2;
    /// First advert after more than three advert intervals of silence.
    pub const AFTER_SILENCE: u32 = 1 << 3;
    /// We are Master and the advert's sender wins the election (RFC 5798 §6.4.3).
    pub const PREEMPTED: u32 = 1 << 4;
    /// While we are Master, an ARP/NA claims one of our VIPs from a MAC that is neither ours nor that
    /// of a master whose advert wins against us (see `advert::conflict_due`).
    pub const VIP_CONFLICT: u32 = 1 << 5;
}
pub use event_kind as EventKind;

/// What the datapath sends to userspace through the ring buffer.
#[repr(C)]
#[derive(Clone, Copy, Default, PartialEq, Eq)]
#[cfg_attr(feature = "user", derive(Debug))]
pub struct DatapathEvent {
    pub timestamp_ns: u64,
    /// [`event_kind`] bits.
    pub kind: u32,
    pub family: u8,
    pub vrid: u8,
    pub priority: u8,
    pub version: u8,
    pub adver_int_cs: u16,
    pub addr_count: u8,
    pub _pad: u8,
    /// Advert source address, or the VIP claimed for `VIP_CONFLICT`.
    pub addr: [u8; 16],
    /// Claiming MAC for `VIP_CONFLICT`; the frame's source MAC otherwise.
    pub mac: [u8; 6],
    pub _pad2: [u8; 2],
}
const _: () = assert!(size_of::<DatapathEvent>() == 48);

macro_rules! counters {
    ($( $(#[$doc:meta])* $variant:ident = $name:literal ),+ $(,)?) => {
        /// Index of the per-CPU `COUNTERS` array. Names follow keepalived's statistics and RFC 6527.
        #[repr(u32)]
        #[derive(Clone, Copy, PartialEq, Eq)]
        #[cfg_attr(feature = "user", derive(Debug))]
        pub enum Counter { $( $(#[$doc])* $variant ),+ }

        impl Counter {
            pub const ALL: &'static [Counter] = &[$(Counter::$variant),+];
            pub const COUNT: u32 = Self::ALL.len() as u32;
            /// Stable name used in logs and metrics.
            pub const fn name(self) -> &'static str {
                match self { $(Counter::$variant => $name),+ }
            }
        }
    };
}

counters! {
    /// Valid adverts accepted.
    AdvertsRx = "adverts_rx",
    /// Adverts sent by this node seen on receive; not counted as received.
    OwnAdverts = "own_adverts",
    /// TTL / hop limit not 255.
    IpTtlErr = "ip_ttl_err",
    /// VRRP version not the configured one.
    VersionErr = "version_err",
    /// VRRP type not 1 (advertisement).
    InvalidType = "invalid_type",
    /// VRID not configured on this interface.
    VridUnknown = "vrid_unknown",
    /// Truncated, or length inconsistent with the address count.
    PacketLenErr = "packet_len_err",
    /// Bad checksum.
    ChecksumErr = "checksum_err",
    /// Authentication type not the configured one.
    AuthTypeMismatch = "authtype_mismatch",
    /// PASS authentication data does not match.
    AuthFailure = "auth_failure",
    /// Advertised addresses differ from the configured ones (and the sender is not the owner).
    AddrListErr = "addr_list_err",
    /// VRRPv2 advert interval differs from the configured one.
    AdvertIntervalErr = "advert_interval_err",
    /// Unicast instance: the source is not a configured peer.
    PeerUnknown = "peer_unknown",
    /// ARP packets inspected.
    ArpRx = "arp_rx",
    /// ICMPv6 neighbour advertisements inspected.
    NaRx = "na_rx",
    /// ARP/NA claims of one of our VIPs from a foreign MAC while Master (see `advert::conflict_due`).
    VipConflicts = "vip_conflicts",
    /// Events sent to userspace.
    EventsSent = "events_sent",
    /// Events lost because the ring buffer was full.
    RingbufFull = "ringbuf_full",
}

#[cfg(feature = "user")]
mod pod {
    use super::*;
    // SAFETY: all types are #[repr(C)], Copy, with explicit padding fields and no invalid bit patterns.
    unsafe impl aya::Pod for VridConfig {}
    unsafe impl aya::Pod for VridState {}
    unsafe impl aya::Pod for IfaceConfig {}
    unsafe impl aya::Pod for VipKey {}
    unsafe impl aya::Pod for VipState {}
    unsafe impl aya::Pod for PeerKey {}
    unsafe impl aya::Pod for DatapathEvent {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counter_names_are_unique_snake_case() {
        for (i, a) in Counter::ALL.iter().enumerate() {
            assert_eq!(*a as u32, i as u32);
            assert!(a.name().bytes().all(|b| b.is_ascii_lowercase() || b == b'_'));
            for b in &Counter::ALL[i + 1..] {
                assert_ne!(a.name(), b.name());
            }
        }
    }

    #[test]
    fn vrid_slots_do_not_overlap() {
        assert_eq!(vrid_slot(FAMILY_V4, 255), 255);
        assert_eq!(vrid_slot(FAMILY_V6, 0), 256);
        assert_eq!(vrid_slot(FAMILY_V6, 255), VRID_SLOTS - 1);
    }
}
