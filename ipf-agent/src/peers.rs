//! Unicast peers learned from adverts heard on the multicast path. A multicast instance also sends
//! each advert by unicast to them, so when multicast stops getting through (a switch's IGMP
//! snooping, a cloud network, a firewall rule for 224.0.0.18) the nodes that have been heard keep
//! electing: a Master that was heard is still heard by unicast, and a node that takes over while cut
//! off is heard by the Master it learned, which answers and makes it yield at once.
//!
//! Only Masters advertise, so a node learns the nodes it has seen as Master. The set is bounded
//! ([`MAX_LEARNED`], the oldest goes first) and a peer not heard as Master for [`FORGET_AFTER`] is
//! forgotten, so a node that left the network is not sent adverts forever.

use std::{net::IpAddr, time::Duration};

use tokio::time::Instant;

/// Most peers learned per instance.
pub const MAX_LEARNED: usize = 16;
/// A peer not heard advertising for this long is forgotten.
pub const FORGET_AFTER: Duration = Duration::from_secs(600);

#[derive(Debug)]
pub struct Learned {
    /// This node's own advert source: never a peer.
    own: IpAddr,
    /// Configured peers and multicast destinations: not repeated.
    known: Vec<IpAddr>,
    peers: Vec<(IpAddr, Instant)>,
}

impl Learned {
    pub fn new(own: IpAddr, known: Vec<IpAddr>) -> Self {
        Learned {
            own,
            known,
            peers: Vec::new(),
        }
    }

    /// An advert from `src` was heard at `now`; true when `src` is new.
    pub fn heard(&mut self, src: IpAddr, now: Instant) -> bool {
        if src == self.own || self.known.contains(&src) || src.is_unspecified() || src.is_multicast() {
            return false;
        }
        if let Some(p) = self.peers.iter_mut().find(|(a, _)| *a == src) {
            p.1 = now;
            return false;
        }
        if self.peers.len() >= MAX_LEARNED
            && let Some(oldest) = self
                .peers
                .iter()
                .enumerate()
                .min_by_key(|(_, (_, t))| *t)
                .map(|(i, _)| i)
        {
            self.peers.swap_remove(oldest);
        }
        self.peers.push((src, now));
        true
    }

    /// The datapath still hears `current` as master at `now` (its adverts wake nobody in steady state,
    /// so this is how a long-lived master stays known); peers silent for [`FORGET_AFTER`] go.
    /// Returns the forgotten ones.
    pub fn refresh(&mut self, current: Option<IpAddr>, now: Instant) -> Vec<IpAddr> {
        if let Some(c) = current
            && let Some(p) = self.peers.iter_mut().find(|(a, _)| *a == c)
        {
            p.1 = now;
        }
        let mut gone = Vec::new();
        self.peers.retain(|(a, t)| {
            let keep = now.duration_since(*t) < FORGET_AFTER;
            if !keep {
                gone.push(*a);
            }
            keep
        });
        gone
    }

    pub fn addrs(&self) -> impl Iterator<Item = IpAddr> + '_ {
        self.peers.iter().map(|(a, _)| *a)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(n: u8) -> IpAddr {
        IpAddr::from([192, 0, 2, n])
    }

    #[tokio::test(start_paused = true)]
    async fn learns_bounded_and_forgets_the_silent() {
        let t0 = Instant::now();
        let mut l = Learned::new(ip(1), vec![IpAddr::from([224, 0, 0, 18])]);
        assert!(!l.heard(ip(1), t0), "own address");
        assert!(!l.heard(IpAddr::from([224, 0, 0, 18]), t0));
        assert!(l.heard(ip(2), t0));
        assert!(!l.heard(ip(2), t0), "already known");
        for n in 3..(3 + MAX_LEARNED as u8) {
            l.heard(ip(n), t0 + Duration::from_secs(u64::from(n)));
        }
        assert_eq!(l.addrs().count(), MAX_LEARNED);
        assert!(!l.addrs().any(|a| a == ip(2)), "the oldest went first");
        // The current master stays; everyone else is forgotten after FORGET_AFTER.
        let later = t0 + FORGET_AFTER + Duration::from_secs(100);
        let gone = l.refresh(Some(ip(5)), later);
        assert_eq!(gone.len(), MAX_LEARNED - 1);
        assert_eq!(l.addrs().collect::<Vec<_>>(), vec![ip(5)]);
    }
}
