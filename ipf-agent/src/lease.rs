//! VIP leases: a Master holds its VIPs as addresses with a lifetime it renews, so a killed agent's
//! VIPs disappear on their own. The lease must end before a Backup can take over, or two nodes hold
//! the VIP; it is derived from the advert interval.
//!
//! The bound. Renewals go out with adverts, at most [`RENEW_LATENCY`] after one (the VIP worker
//! sends a batch's renewals after the run loop's turn that sent its adverts), so the last renewal
//! `r` is no later than the last advert a Backup heard plus [`RENEW_LATENCY`], and the Backup takes
//! over no earlier than that advert + Master_Down_Interval (3 × interval + Skew_Time, RFC 5798
//! §6.1). The kernel deletes an expired address from a work item (`check_lifetime` in
//! net/ipv4/devinet.c, `addrconf_verify` for IPv6) that it schedules at the earliest expiry,
//! rounded up to a whole second when that moves it by less than a quarter second, and then late by
//! its timer wheel's granularity: by `r` + lease + [`kernel_slack`]. So the lease is the largest
//! whole number of seconds (at least one, the kernel's unit) with `lease + kernel_slack(lease) +
//! RENEW_LATENCY < 3 × interval`:
//!
//! | advert interval | lease | VIP gone before takeover by at least |
//! |---|---|---|
//! | 1 s (ipfailover, keepalived default) | 2 s | 0.42 s |
//! | 2 s | 5 s | 0.04 s |
//! | 0.5 s | 1 s | 0.10 s |
//! | below 0.47 s | 1 s | — overlap of at most 1.40 s − 3 × interval (1.1 s at 100 ms) |
//!
//! One pass deletes them all only if they ran out together. The work item never runs sooner than a
//! second (`ADDRCONF_TIMER_FUZZ_MAX`) after its last pass, so an address expiring a little after
//! another's pass waits up to a second more; a pass takes every address that runs out within 20 ms
//! of it (`ADDRCONF_TIMER_FUZZ_MINUS`, HZ / 50). A node's renewals therefore go within that: the
//! Masters' adverts share one cluster per interval (`vrrp::timers`: one batch, or batches 2 ms
//! apart within 14 ms when there are many), [`Renewal`] renews them in the same adverts (cells of a
//! grid shared by the node), and the worker sends each batch's renewals as one netlink send.
//! Masters with different intervals on one node renew on different grids: a pass for one group's
//! VIPs can then hold another group's up to a second longer (measured from the kill this stays
//! within the bound of the longer lease; see `tests/tests/leases.rs`).
//!
//! Below 0.47 s no whole-second lease ends in time. Graceful stops and faults remove VIPs at once
//! and are not affected; only SIGKILL / a crashed agent is. The work item is deferrable: on a CPU
//! that stays idle it runs at the CPU's next wake-up, which on a node running anything (the
//! Backups' adverts alone arrive every interval) comes within milliseconds.

use std::{fmt, str::FromStr, time::Duration};

use tokio::time::Instant;

/// How long after its advert a renewal may reach the kernel: the VIP worker sends it once the run
/// loop's turn that sent the advert is over, which a busy turn (a batch of 64 adverts, a reload)
/// can make a few milliseconds.
pub const RENEW_LATENCY: Duration = Duration::from_millis(20);

/// How far ahead of its check the kernel's rounding may put it (`ADDRCONF_TIMER_FUZZ`, HZ / 4).
const CHECK_ROUNDING: Duration = Duration::from_millis(250);

/// Time for the kernel's worker thread to run the check once its timer fired.
const WORK_LATENCY: Duration = Duration::from_millis(50);

/// The common kernel tick rates (CONFIG_HZ): the slack is the worst of them.
const HZ: [u64; 3] = [100, 250, 1000];

/// How late after the end of a `lease` renewed in one batch the kernel may delete the addresses: its
/// check rounded up by up to [`CHECK_ROUNDING`], then the timer wheel's lateness for a wait that
/// long (a timer lands on its wheel level's next boundary: 8^level jiffies), worst over [`HZ`],
/// then [`WORK_LATENCY`]. 0.38 s for 1 s, 0.56 s for 2 s, 0.94 s for 5 s.
pub fn kernel_slack(lease: Duration) -> Duration {
    let wait = lease + CHECK_ROUNDING;
    let lateness = HZ
        .iter()
        .map(|&hz| {
            let jiffies = u64::try_from(wait.as_nanos() * u128::from(hz) / 1_000_000_000).unwrap_or(u64::MAX);
            // Level n holds waits from 63 << 3(n - 1) jiffies on, with a granularity of 8^n.
            let level = (1..9u32).take_while(|n| jiffies >= 63 << (3 * (n - 1))).count();
            Duration::from_nanos(8u64.pow(level as u32) * 1_000_000_000 / hz)
        })
        .max()
        .unwrap_or_default();
    CHECK_ROUNDING + lateness + WORK_LATENCY
}

/// `--vip-lease-secs`: `auto` (derived from each instance's advert interval), a fixed number of
/// seconds, or 0 for permanent addresses as keepalived adds them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum VipLease {
    #[default]
    Auto,
    Fixed(Duration),
    Permanent,
}

impl FromStr for VipLease {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim() {
            "auto" => Ok(VipLease::Auto),
            "0" => Ok(VipLease::Permanent),
            n => n
                .parse::<u32>()
                .map(|secs| VipLease::Fixed(Duration::from_secs(u64::from(secs))))
                .map_err(|_| format!("{s:?}: expected auto, 0 (permanent) or a number of seconds")),
        }
    }
}

impl fmt::Display for VipLease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VipLease::Auto => f.write_str("auto"),
            VipLease::Permanent => f.write_str("0"),
            VipLease::Fixed(d) => write!(f, "{}", d.as_secs()),
        }
    }
}

impl VipLease {
    /// The lease of an instance advertising every `adver_int` (`None`: permanent).
    pub fn for_interval(self, adver_int: Duration) -> Option<Duration> {
        match self {
            VipLease::Permanent => None,
            VipLease::Fixed(d) => Some(d.max(Duration::from_secs(1))),
            VipLease::Auto => Some(derived(adver_int)),
        }
    }
}

/// The largest whole-second lease that ends before a Backup can take over (see the module docs).
pub fn derived(adver_int: Duration) -> Duration {
    let budget = adver_int * 3;
    // Strictly below the budget: a lease ending exactly at it would end at the earliest takeover.
    (2..=u64::from(u32::MAX))
        .map(Duration::from_secs)
        .take_while(|&lease| lease + kernel_slack(lease) + RENEW_LATENCY < budget)
        .last()
        .unwrap_or(Duration::from_secs(1))
}

/// When a Master renews its leases: with its adverts, at the first advert in each cell of a grid of
/// whole intervals shared by the node (from `epoch`, the grid its adverts are batched on), so that a
/// node's Masters with one interval renew in the same adverts and the kernel deletes their VIPs in
/// one pass (see the module docs). A cell holds as many intervals as fit in two thirds of the lease
/// less one interval (every advert at 1 s with its 2 s lease, every fifth at 100 ms with 1 s), so
/// the address never outlives the last advert by more than the lease, and a third is left as the
/// margin for an agent held up (and for the kernel, which may delete an address a jiffy before its
/// lifetime ends).
#[derive(Debug)]
pub struct Renewal {
    /// The cell's length: a whole number of intervals.
    cell: Duration,
    /// Half an interval: cells start between two advert points of the grid, so an advert batched a
    /// little after its point (a cluster's later slots) or before it (a slot off the full cluster)
    /// stays in that point's cell.
    offset: Duration,
    epoch: Instant,
    /// The cell of the last renewal; `None` right after the VIPs were added (renew with the next
    /// advert, the first periodic one, to join the node's batch).
    last: Option<u128>,
}

impl Renewal {
    pub fn new(lease: Duration, adver_int: Duration, epoch: Instant) -> Self {
        let every = (lease * 2 / 3).saturating_sub(adver_int);
        let n = (every.as_nanos() / adver_int.as_nanos().max(1)).max(1);
        Renewal {
            cell: adver_int * u32::try_from(n).unwrap_or(u32::MAX),
            offset: adver_int / 2,
            epoch,
            last: None,
        }
    }

    fn cell_of(&self, now: Instant) -> u128 {
        (now + self.offset).saturating_duration_since(self.epoch).as_nanos() / self.cell.as_nanos().max(1)
    }

    /// The VIPs were just added with a full lease: the next advert renews, joining the others.
    pub fn added(&mut self) {
        self.last = None;
    }

    /// An advert goes out at `now`: whether to renew with it.
    pub fn due(&mut self, now: Instant) -> bool {
        let cell = self.cell_of(now);
        if self.last == Some(cell) {
            return false;
        }
        self.last = Some(cell);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn derived_leases_end_before_master_down_interval() {
        assert_eq!(kernel_slack(Duration::from_secs(1)), ms(380));
        assert_eq!(kernel_slack(Duration::from_secs(2)), ms(556));
        assert_eq!(kernel_slack(Duration::from_secs(5)), ms(940));
        assert_eq!(derived(ms(1000)), Duration::from_secs(2));
        assert_eq!(derived(ms(2000)), Duration::from_secs(5));
        assert_eq!(derived(ms(500)), Duration::from_secs(1));
        assert_eq!(derived(ms(100)), Duration::from_secs(1));
        assert_eq!(derived(ms(10)), Duration::from_secs(1));
        for int in (470..20_000).step_by(7).map(ms) {
            let lease = derived(int);
            let ends = |l: Duration| l + kernel_slack(l) + RENEW_LATENCY;
            assert!(ends(lease) < int * 3, "{int:?}: lease {lease:?}");
            // The largest such: one second more would not end in time.
            let longer = lease + Duration::from_secs(1);
            assert!(ends(longer) >= int * 3, "{int:?}: {longer:?} would do");
            assert!(lease.subsec_nanos() == 0);
        }
    }

    #[test]
    fn parsing() {
        assert_eq!("auto".parse(), Ok(VipLease::Auto));
        assert_eq!("0".parse(), Ok(VipLease::Permanent));
        assert_eq!("4".parse(), Ok(VipLease::Fixed(Duration::from_secs(4))));
        assert!("-1".parse::<VipLease>().expect_err("negative").contains("\"-1\""));
        assert_eq!(VipLease::Auto.for_interval(ms(1000)), Some(Duration::from_secs(2)));
        assert_eq!(VipLease::Permanent.for_interval(ms(1000)), None);
    }

    #[tokio::test(start_paused = true)]
    async fn renewals_follow_adverts_in_cells_the_node_shares() {
        let epoch = Instant::now();
        // 1 s adverts, 2 s lease: every advert renews, also one batched 14 ms after its point.
        let mut r = Renewal::new(Duration::from_secs(2), ms(1000), epoch);
        r.added();
        for n in 1..5 {
            assert!(r.due(epoch + ms(1000 * n) + ms(14 * (n % 2))), "advert {n}");
        }
        // 100 ms adverts, 1 s lease: the first advert after the add, then every fifth (cells of
        // 500 ms); two Masters added at different times renew in the same adverts after their first.
        let renewed = |added_after: u64| {
            let mut r = Renewal::new(Duration::from_secs(1), ms(100), epoch);
            r.added();
            (added_after + 1..=20)
                .filter(|n| r.due(epoch + ms(100 * n)))
                .collect::<Vec<_>>()
        };
        assert_eq!(renewed(0), vec![1, 5, 10, 15, 20]);
        assert_eq!(renewed(2), vec![3, 5, 10, 15, 20]);
        // Never later than the lease minus a third and one interval, whatever the interval, with
        // adverts up to 14 ms after or before their point.
        for int in [10u64, 30, 100, 250, 500, 1000, 2000].map(ms) {
            let lease = derived(int);
            let mut r = Renewal::new(lease, int, epoch);
            let t0 = epoch + int * 3 + ms(7);
            r.added();
            let mut last = t0;
            for n in 4..400u32 {
                let shift = (int / 8).min(ms(14));
                let at = match n % 3 {
                    0 => epoch + int * n,
                    1 => epoch + int * n + shift,
                    _ => epoch + int * n - shift,
                };
                if r.due(at) {
                    assert!(
                        at - last < lease * 2 / 3,
                        "{int:?}: renewed with less than a third left"
                    );
                    last = at;
                }
                assert!(
                    at + int - last < lease,
                    "{int:?}: the next advert would come after the lease"
                );
            }
        }
    }
}
