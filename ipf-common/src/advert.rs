//! Per-VRID advertisement tracking: which valid adverts are news for the state machine.
//!
//! The datapath calls [`observe_advert`] for every valid advert; it updates the VRID's state and returns
//! the [`event_kind`] bits to report (0 in steady state), so userspace is woken only by changes.

use crate::{
    frame::Claim,
    maps::{DatapathEvent, IfaceConfig, VipState, VridConfig, VridState, event_kind, vrid_flags},
    vrrp::{Advert, IpMeta},
};

/// Silence longer than this many advert intervals makes the next advert an `AFTER_SILENCE` event:
/// three intervals is the RFC's Master_Down_Interval without the skew.
pub const SILENCE_INTERVALS: u64 = 3;

const NS_PER_CS: u64 = 10_000_000;

/// Updates `state` with a valid advert from `src_mac` seen at `now_ns` and returns the event bits it
/// causes.
#[inline(always)]
pub fn observe_advert(
    state: &mut VridState,
    cfg: &VridConfig,
    ip: &IpMeta,
    adv: &Advert,
    src_mac: &[u8; 6],
    now_ns: u64,
) -> u32 {
    let mut kind = 0;
    let first = state.last_seen_ns == 0;
    if first || state.master_addr != ip.src {
        kind |= event_kind::NEW_MASTER;
    } else {
        if state.master_priority != adv.priority {
            kind |= event_kind::PRIORITY_CHANGE;
        }
        if state.adver_int_cs != adv.adver_int_cs {
            kind |= event_kind::INTERVAL_CHANGE;
        }
    }
    let silence_ns = SILENCE_INTERVALS * state.adver_int_cs as u64 * NS_PER_CS;
    if !first && now_ns.saturating_sub(state.last_seen_ns) > silence_ns {
        kind |= event_kind::AFTER_SILENCE;
    }
    // RFC 5798 §6.4.3: a Master receiving a higher priority, or an equal priority from a higher
    // primary address, must become Backup. Reported on every such advert until userspace clears MASTER.
    if cfg.has(vrid_flags::MASTER) && advert_wins(cfg, adv.priority, &ip.src) {
        kind |= event_kind::PREEMPTED;
    }
    state.last_seen_ns = now_ns;
    state.adverts_rx += 1;
    if adv.priority == 0 {
        state.priority_zero_rx += 1;
    }
    state.master_addr = ip.src;
    state.master_mac = *src_mac;
    state.master_priority = adv.priority;
    state.adver_int_cs = adv.adver_int_cs;
    state.version = adv.version;
    state.addr_count = adv.addr_count;
    if kind != 0 {
        state.events += 1;
    }
    kind
}

/// Whether an advert of `priority` from `src` wins the election against us (RFC 5798 §6.4.3: higher
/// priority, or equal priority from a higher primary address). Priority 0 never wins.
#[inline(always)]
pub fn advert_wins(cfg: &VridConfig, priority: u8, src: &[u8; 16]) -> bool {
    priority != 0 && (priority > cfg.priority || (priority == cfg.priority && *src > cfg.primary_addr))
}

/// Decides whether a claim of one of our VIPs by `mac` is a conflict, and whether it is reported now
/// (rate limit). `cfg` and `state` are those of the VRID owning the VIP ([`VipState::vrid`]).
///
/// Only a Master has a VIP to defend: a Backup (or Fault, Init) sees the master's announcements, the
/// new master's second burst included, and counts nothing. A Master counts nothing from its own MACs,
/// nor from the MAC whose advert preempts it (a legitimate new master announcing itself before this
/// node has handled the preemption). Everything else is counted; true when an event is due. A VIP of
/// no configured VRID (`ipf-agent monitor --vip`, VRID 0) has no role: every foreign claim counts.
///
/// A guarding Backup (one that yielded a split brain, [`vrid_flags::GUARD`]) has the claims of the
/// node it yielded to reported, rate-limited like a Master's, but not counted: they are the sign
/// that the holder is still there, not a conflict.
#[inline(always)]
pub fn conflict_due(
    vip: &mut VipState,
    iface: &IfaceConfig,
    cfg: &VridConfig,
    state: &VridState,
    mac: &[u8; 6],
    now_ns: u64,
) -> bool {
    let guarding = cfg.has(vrid_flags::GUARD) && !cfg.has(vrid_flags::MASTER);
    if cfg.has(vrid_flags::CONFIGURED) && !cfg.has(vrid_flags::MASTER) && !guarding {
        return false;
    }
    let mut i = 0;
    while i < iface.own_mac_count as usize && i < iface.own_macs.len() {
        if iface.own_macs[i] == *mac {
            return false;
        }
        i += 1;
    }
    // A live winner advertises every interval; two allow for one lost advert. A Backup takes over
    // only after more than three intervals of silence, so the master it no longer hears is never
    // excused when it then claims the VIPs.
    let fresh_ns = 2 * state.adver_int_cs as u64 * NS_PER_CS;
    if state.last_seen_ns != 0
        && state.master_mac == *mac
        && now_ns.saturating_sub(state.last_seen_ns) <= fresh_ns
        && advert_wins(cfg, state.master_priority, &state.master_addr)
    {
        return false;
    }
    if !guarding {
        vip.conflicts += 1;
    }
    if vip.last_conflict_ns != 0 && now_ns.saturating_sub(vip.last_conflict_ns) < iface.conflict_interval_ns {
        return false;
    }
    vip.last_conflict_ns = now_ns;
    true
}

// The event constructors live here, beside `observe_advert` that decides them, so the map layout
// (maps.rs) depends on no parser.
impl DatapathEvent {
    /// The event for a valid advert that changed something (`kind` from `observe_advert`).
    #[inline(always)]
    pub fn advert(kind: u32, ip: &IpMeta, advert: &Advert, src_mac: [u8; 6], now_ns: u64) -> Self {
        DatapathEvent {
            timestamp_ns: now_ns,
            kind,
            family: ip.family,
            vrid: advert.vrid,
            priority: advert.priority,
            version: advert.version,
            adver_int_cs: advert.adver_int_cs,
            addr_count: advert.addr_count,
            _pad: 0,
            addr: ip.src,
            mac: src_mac,
            _pad2: [0; 2],
        }
    }

    /// The event for a foreign claim of one of our VIPs.
    #[inline(always)]
    pub fn conflict(claim: &Claim, vrid: u8, now_ns: u64) -> Self {
        DatapathEvent {
            timestamp_ns: now_ns,
            kind: event_kind::VIP_CONFLICT,
            family: claim.family,
            vrid,
            addr: claim.addr,
            mac: claim.mac,
            ..DatapathEvent::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::maps::FAMILY_V4;

    fn ip(src: u8) -> IpMeta {
        let mut m = IpMeta {
            family: FAMILY_V4,
            ttl: 255,
            payload_len: 20,
            ..Default::default()
        };
        m.src[..4].copy_from_slice(&[192, 0, 2, src]);
        m
    }

    fn adv(priority: u8, interval: u16) -> Advert {
        Advert {
            family: FAMILY_V4,
            version: 3,
            vrid: 7,
            priority,
            addr_count: 1,
            adver_int_cs: interval,
        }
    }

    #[test]
    fn steady_state_raises_one_event() {
        let mut st = VridState::default();
        let cfg = VridConfig::default();
        let mut events = 0;
        for i in 1..=10_000u64 {
            if observe_advert(&mut st, &cfg, &ip(1), &adv(100, 100), &MAC, i * 1_000_000_000) != 0 {
                events += 1;
            }
        }
        assert_eq!(events, 1);
        assert_eq!(st.adverts_rx, 10_000);
        assert_eq!(st.events, 1);
    }

    #[test]
    fn each_change_is_reported_once() {
        let mut st = VridState::default();
        let cfg = VridConfig::default();
        let t = |n: u64| n * 1_000_000_000;
        assert_eq!(
            observe_advert(&mut st, &cfg, &ip(1), &adv(100, 100), &MAC, t(1)),
            event_kind::NEW_MASTER
        );
        assert_eq!(
            observe_advert(&mut st, &cfg, &ip(1), &adv(90, 100), &MAC, t(2)),
            event_kind::PRIORITY_CHANGE
        );
        assert_eq!(observe_advert(&mut st, &cfg, &ip(1), &adv(90, 100), &MAC, t(3)), 0);
        assert_eq!(
            observe_advert(&mut st, &cfg, &ip(1), &adv(90, 50), &MAC, t(4)),
            event_kind::INTERVAL_CHANGE
        );
        assert_eq!(
            observe_advert(&mut st, &cfg, &ip(2), &adv(90, 50), &MAC, t(5)),
            event_kind::NEW_MASTER
        );
        assert_eq!(
            observe_advert(&mut st, &cfg, &ip(2), &adv(0, 50), &MAC, t(6)),
            event_kind::PRIORITY_CHANGE
        );
        assert_eq!(st.priority_zero_rx, 1);
    }

    #[test]
    fn silence_longer_than_three_intervals_is_reported() {
        let mut st = VridState::default();
        let cfg = VridConfig::default();
        observe_advert(&mut st, &cfg, &ip(1), &adv(100, 100), &MAC, 1);
        assert_eq!(
            observe_advert(&mut st, &cfg, &ip(1), &adv(100, 100), &MAC, 1 + 3_000_000_000),
            0
        );
        assert_eq!(
            observe_advert(&mut st, &cfg, &ip(1), &adv(100, 100), &MAC, 2 + 6_000_000_001),
            event_kind::AFTER_SILENCE
        );
    }

    #[test]
    fn preemption_while_master() {
        let mut st = VridState::default();
        let mut cfg = VridConfig {
            flags: vrid_flags::CONFIGURED | vrid_flags::MASTER,
            priority: 100,
            ..Default::default()
        };
        cfg.primary_addr[..4].copy_from_slice(&[192, 0, 2, 5]);
        observe_advert(&mut st, &cfg, &ip(1), &adv(50, 100), &MAC, 1);
        // Lower priority: no preemption, no new event.
        assert_eq!(observe_advert(&mut st, &cfg, &ip(1), &adv(50, 100), &MAC, 2), 0);
        // Equal priority, lower address: we win.
        assert_eq!(
            observe_advert(&mut st, &cfg, &ip(1), &adv(100, 100), &MAC, 3),
            event_kind::PRIORITY_CHANGE
        );
        // Equal priority, higher address: we lose, on every advert.
        assert_ne!(
            observe_advert(&mut st, &cfg, &ip(9), &adv(100, 100), &MAC, 4) & event_kind::PREEMPTED,
            0
        );
        assert_eq!(
            observe_advert(&mut st, &cfg, &ip(9), &adv(100, 100), &MAC, 5),
            event_kind::PREEMPTED
        );
        // Priority 0 never preempts.
        assert_eq!(
            observe_advert(&mut st, &cfg, &ip(9), &adv(0, 100), &MAC, 6),
            event_kind::PRIORITY_CHANGE
        );
    }

    const MAC: [u8; 6] = [2, 0, 0, 0, 0, 9];

    fn iface() -> IfaceConfig {
        IfaceConfig {
            conflict_interval_ns: 1_000,
            own_macs: [[2, 0, 0, 0, 0, 1], [0; 6], [0; 6], [0; 6]],
            own_mac_count: 1,
            _pad: [0; 7],
        }
    }

    fn master(priority: u8) -> VridConfig {
        let mut cfg = VridConfig {
            flags: vrid_flags::CONFIGURED | vrid_flags::MASTER,
            priority,
            ..Default::default()
        };
        cfg.primary_addr[..4].copy_from_slice(&[192, 0, 2, 5]);
        cfg
    }

    #[test]
    fn conflicts_are_rate_limited_and_own_macs_ignored() {
        let mut vip = VipState::owned_by(7);
        let (cfg, st) = (master(100), VridState::default());
        assert!(!conflict_due(&mut vip, &iface(), &cfg, &st, &[2, 0, 0, 0, 0, 1], 10));
        assert!(conflict_due(&mut vip, &iface(), &cfg, &st, &[2, 0, 0, 0, 0, 2], 10));
        assert!(!conflict_due(&mut vip, &iface(), &cfg, &st, &[2, 0, 0, 0, 0, 2], 500));
        assert!(conflict_due(&mut vip, &iface(), &cfg, &st, &[2, 0, 0, 0, 0, 2], 1_010));
        assert_eq!(vip.conflicts, 3);
    }

    #[test]
    fn a_backup_never_counts_a_conflict() {
        let mut vip = VipState::owned_by(7);
        let cfg = VridConfig {
            flags: vrid_flags::CONFIGURED,
            priority: 100,
            ..Default::default()
        };
        for t in [10, 5_000, 10_000_000_000] {
            assert!(!conflict_due(&mut vip, &iface(), &cfg, &VridState::default(), &MAC, t));
        }
        assert_eq!(vip.conflicts, 0);
    }

    #[test]
    fn a_guarding_backup_hears_claims_without_counting_them() {
        let mut vip = VipState::owned_by(7);
        let cfg = VridConfig {
            flags: vrid_flags::CONFIGURED | vrid_flags::GUARD,
            priority: 100,
            ..Default::default()
        };
        let st = VridState::default();
        let holder = [2, 0, 0, 0, 0, 9];
        assert!(conflict_due(&mut vip, &iface(), &cfg, &st, &holder, 10));
        // Rate-limited as a Master's reports are, and its own MACs are never the holder.
        assert!(!conflict_due(&mut vip, &iface(), &cfg, &st, &holder, 500));
        assert!(!conflict_due(&mut vip, &iface(), &cfg, &st, &[2, 0, 0, 0, 0, 1], 2_000));
        assert!(conflict_due(&mut vip, &iface(), &cfg, &st, &holder, 1_010));
        assert_eq!(vip.conflicts, 0);
    }

    #[test]
    fn a_master_does_not_count_the_master_that_preempts_it() {
        let t = |ms: u64| ms * 1_000_000;
        let cfg = master(100);
        let mut st = VridState::default();
        // The new master's advert arrives first (PREEMPTED), then its gratuitous ARP, before userspace
        // has cleared MASTER.
        let kind = observe_advert(&mut st, &cfg, &ip(9), &adv(150, 100), &MAC, t(1));
        assert_ne!(kind & event_kind::PREEMPTED, 0);
        let mut vip = VipState::owned_by(7);
        assert!(!conflict_due(&mut vip, &iface(), &cfg, &st, &MAC, t(2)));
        // Another MAC claiming the VIP is a conflict all the same.
        assert!(conflict_due(&mut vip, &iface(), &cfg, &st, &[2, 0, 0, 0, 0, 3], t(3)));
        assert_eq!(vip.conflicts, 1);
    }

    #[test]
    fn a_master_counts_a_lower_or_silent_master() {
        let t = |ms: u64| ms * 1_000_000;
        let cfg = master(100);
        let mut st = VridState::default();
        // A lower-priority master heard on the VRRP path: its claims are a split brain.
        observe_advert(&mut st, &cfg, &ip(9), &adv(50, 100), &MAC, t(1));
        let mut vip = VipState::owned_by(7);
        assert!(conflict_due(&mut vip, &iface(), &cfg, &st, &MAC, t(2)));
        // A winner not heard for two intervals is no excuse either: the Backup that took over after
        // Master_Down_Interval (more than three) counts the master it no longer hears.
        observe_advert(&mut st, &cfg, &ip(9), &adv(150, 100), &MAC, t(3));
        assert!(!conflict_due(&mut vip, &iface(), &cfg, &st, &MAC, t(3 + 1_999)));
        assert!(conflict_due(&mut vip, &iface(), &cfg, &st, &MAC, t(3 + 3_001)));
        assert_eq!(vip.conflicts, 2);
    }
}
