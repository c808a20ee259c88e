//! VIP leases: a Master holds its VIPs as addresses with a lifetime it renews, so a killed agent's
//! VIPs disappear on their own. The lease must end before a Backup can take over, or two nodes hold
//! the VIP; it is derived from the advert interval.
//!
//! The bound. Renewals happen only when an advert goes out, so the last renewal `r` is no later than
//! the last advert a Backup heard, and the Backup takes over no earlier than `r` +
//! Master_Down_Interval (3 × interval + Skew_Time, RFC 5798 §6.1). The kernel deletes an address
//! whose lifetime ran out from a work item it schedules at the expiry, rounded up to a whole second
//! when that moves it by less than [`KERNEL_SLACK`] (`check_lifetime` in net/ipv4/devinet.c,
//! `addrconf_verify` for IPv6). So the VIP is gone by `r` + lease + [`KERNEL_SLACK`], and the lease
//! is the largest whole number of seconds (at least one, the kernel's unit) with
//! `lease + KERNEL_SLACK < 3 × interval`:
//!
//! | advert interval | lease | VIP gone before takeover by at least |
//! |---|---|---|
//! | 1 s (ipfailover, keepalived default) | 2 s | 0.75 s |
//! | 2 s | 5 s | 0.75 s |
//! | 0.5 s | 1 s | 0.25 s |
//! | below 0.42 s | 1 s | — overlap of at most 1.25 s − 3 × interval (0.95 s at 100 ms) |
//!
//! Below 0.42 s no whole-second lease ends in time: the VIP can stay on a killed node for up to
//! 1.25 s − 3 × interval after a Backup took over. Graceful stops and faults remove VIPs at once and
//! are not affected; only SIGKILL / a crashed agent is.

use std::{fmt, str::FromStr, time::Duration};

use tokio::time::Instant;

/// How late the kernel may delete an expired address: its lifetime check is rounded up to a whole
/// second when that moves it by less than a quarter second (`ADDRCONF_TIMER_FUZZ`).
pub const KERNEL_SLACK: Duration = Duration::from_millis(250);

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
    let budget = (adver_int * 3).saturating_sub(KERNEL_SLACK);
    // Strictly below the budget: a lease equal to it would end exactly at the earliest takeover.
    let secs = budget.as_nanos().saturating_sub(1) / 1_000_000_000;
    Duration::from_secs((secs as u64).max(1))
}

/// When a Master renews its leases: at an advert, when waiting for the next advert would leave less
/// than a third of the lease (so every advert at 1 s with its 2 s lease, every sixth or so at 100 ms
/// with 1 s), so the address never outlives the last advert by more than the lease. The third left
/// is the margin for an agent held up (and for the kernel, which may delete an address up to
/// 20 ms before its lifetime ends).
#[derive(Debug)]
pub struct Renewal {
    /// A renewal this long after the last one is due.
    every: Duration,
    last: Option<Instant>,
}

impl Renewal {
    pub fn new(lease: Duration, adver_int: Duration) -> Self {
        Renewal {
            every: (lease * 2 / 3).saturating_sub(adver_int),
            last: None,
        }
    }

    /// The VIPs were just added with a full lease.
    pub fn added(&mut self, now: Instant) {
        self.last = Some(now);
    }

    /// An advert goes out at `now`: whether to renew with it.
    pub fn due(&mut self, now: Instant) -> bool {
        if self.last.is_some_and(|l| now.duration_since(l) < self.every) {
            return false;
        }
        self.last = Some(now);
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
        assert_eq!(derived(ms(1000)), Duration::from_secs(2));
        assert_eq!(derived(ms(2000)), Duration::from_secs(5));
        assert_eq!(derived(ms(500)), Duration::from_secs(1));
        assert_eq!(derived(ms(100)), Duration::from_secs(1));
        assert_eq!(derived(ms(10)), Duration::from_secs(1));
        // Exactly on the budget is too late.
        assert_eq!(derived(ms(1750)), Duration::from_secs(4));
        assert_eq!(derived(ms(1749)), Duration::from_secs(4));
        for int in (420..10_000).step_by(7).map(ms) {
            let lease = derived(int);
            assert!(lease + KERNEL_SLACK < int * 3, "{int:?}: lease {lease:?}");
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
    async fn renewals_follow_adverts_leaving_a_third_of_the_lease() {
        let t0 = Instant::now();
        // 1 s adverts, 2 s lease: every advert renews.
        let mut r = Renewal::new(Duration::from_secs(2), ms(1000));
        r.added(t0);
        for n in 1..5 {
            assert!(r.due(t0 + ms(1000 * n)), "advert {n}");
        }
        // 100 ms adverts, 1 s lease: the advert after 567 ms renews, a third of the lease before
        // the next one would be too late.
        let mut r = Renewal::new(Duration::from_secs(1), ms(100));
        r.added(t0);
        let renewed: Vec<u64> = (1..=20).filter(|n| r.due(t0 + ms(100 * n))).collect();
        assert_eq!(renewed, vec![6, 12, 18]);
        // Never later than the lease minus a third and one interval, whatever the interval.
        for int in [10u64, 30, 100, 250, 500, 1000, 2000].map(ms) {
            let lease = derived(int);
            let mut r = Renewal::new(lease, int);
            r.added(t0);
            let mut last = t0;
            for n in 1..400u32 {
                let at = t0 + int * n;
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
