//! The VIP worker: one task doing the VIP and announcement work in the order the state machines
//! asked for it, so netlink calls for one instance never overtake each other.

use std::{
    collections::HashMap,
    net::IpAddr,
    rc::Rc,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use futures_util::future::join_all;
use prometheus::IntCounter;
use tokio::sync::mpsc;

use crate::network::{AddressManager, Announcer, Vip};

/// Ordered VIP and announcement work, done by one task so netlink calls happen in the order the state
/// machine asked for them.
#[derive(Clone)]
pub(super) enum VipOp {
    Add(Vec<Vip>),
    /// Keeps the leases of `vips` renewed until the instance's epoch moves from `epoch` (it left
    /// Master, or took another set of addresses).
    Lease {
        vips: Vec<Vip>,
        epoch: u64,
        epoch_now: Arc<AtomicU64>,
    },
    Remove(Vec<Vip>),
    /// Announce `vips` `burst` times unless the instance left Master since (`epoch` changed).
    Announce {
        vips: Vec<Vip>,
        epoch: u64,
        epoch_now: Arc<AtomicU64>,
        burst: u32,
        sent: IntCounter,
    },
}

/// An interface VIPs go on, opened on first use.
struct VipInterface {
    ifindex: u32,
    mac: [u8; 6],
    announcer: Announcer,
}

/// The interface of `v` (its `dev`, set by `placed_vips`), opened on first use.
fn vip_interface<'a>(interfaces: &'a mut HashMap<String, VipInterface>, v: &Vip) -> Option<&'a VipInterface> {
    let name = v.dev.as_deref()?;
    if !interfaces.contains_key(name) {
        let opened = crate::datapath::interface_index(name)
            .map_err(|e| e.to_string())
            .and_then(|ifindex| {
                Announcer::new(name)
                    .map_err(|e| e.to_string())
                    .map(|announcer| VipInterface {
                        ifindex,
                        mac: crate::datapath::interface_mac(name),
                        announcer,
                    })
            });
        match opened {
            Ok(i) => {
                interfaces.insert(name.to_owned(), i);
            }
            Err(e) => {
                tracing::error!("VIP {v}: {e}");
                return None;
            }
        }
    }
    interfaces.get(name)
}

/// A Master's leased VIPs, renewed while its epoch stays.
struct Lease {
    vips: Vec<Vip>,
    epoch: u64,
    epoch_now: Arc<AtomicU64>,
}

impl Lease {
    fn current(&self) -> bool {
        self.epoch_now.load(Ordering::SeqCst) == self.epoch
    }
}

pub(super) async fn vip_worker(
    mut rx: mpsc::UnboundedReceiver<VipOp>,
    addrs: Rc<AddressManager>,
    lease: Option<Duration>,
) {
    let mut interfaces: HashMap<String, VipInterface> = HashMap::new();
    let add = async |ifindex: u32, v: &Vip| match lease {
        Some(l) => addrs.add_leased(ifindex, v, l).await,
        None => addrs.add(ifindex, v).await,
    };
    // One timer renews every lease, a quarter of the lease apart, instead of a task and a wake-up per
    // Master; renewals run here, in queue order, so none lands after a removal (a removal moves the
    // epoch before it is queued).
    let mut leases: Vec<Lease> = Vec::new();
    let mut tick = tokio::time::interval(lease.map_or(Duration::from_secs(3600), |l| l / 4));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let op = tokio::select! {
            op = rx.recv() => match op {
                Some(op) => op,
                None => break,
            },
            _ = tick.tick(), if !leases.is_empty() => {
                leases.retain(Lease::current);
                let due: Vec<(u32, &Vip)> = leases
                    .iter()
                    .flat_map(|l| l.vips.iter())
                    .filter_map(|v| Some((vip_interface(&mut interfaces, v)?.ifindex, v)))
                    .collect();
                // All requests go out before the first ack is awaited: one batch on the socket.
                let results = join_all(due.iter().map(|(ifindex, v)| add(*ifindex, v))).await;
                for ((_, v), r) in due.iter().zip(results) {
                    if let Err(e) = r {
                        tracing::error!("renewing VIP {v}: {e}");
                    }
                }
                continue;
            }
        };
        match op {
            VipOp::Add(vips) => {
                for v in &vips {
                    let Some(ifindex) = vip_interface(&mut interfaces, v).map(|i| i.ifindex) else {
                        continue;
                    };
                    if let Err(e) = add(ifindex, v).await {
                        tracing::error!("adding VIP {v}: {e}");
                    }
                }
            }
            VipOp::Lease { vips, epoch, epoch_now } => leases.push(Lease { vips, epoch, epoch_now }),
            VipOp::Remove(vips) => {
                for v in &vips {
                    let Some(ifindex) = vip_interface(&mut interfaces, v).map(|i| i.ifindex) else {
                        continue;
                    };
                    if let Err(e) = addrs.remove(ifindex, v).await {
                        tracing::error!("removing VIP {v}: {e}");
                    }
                }
            }
            VipOp::Announce {
                vips,
                epoch,
                epoch_now,
                burst,
                sent,
            } => {
                if epoch_now.load(Ordering::SeqCst) == epoch {
                    for v in &vips {
                        if let Some(i) = vip_interface(&mut interfaces, v) {
                            sent.inc_by(announce(&i.announcer, v, i.mac, burst));
                        }
                    }
                }
            }
        }
    }
}

/// Sends `burst` gratuitous ARPs / unsolicited NAs for `vip`; returns how many went out.
fn announce(announcer: &Announcer, vip: &Vip, mac: [u8; 6], burst: u32) -> u64 {
    let mut sent = 0;
    for _ in 0..burst {
        let r = match vip.addr {
            IpAddr::V4(a) => announcer.gratuitous_arp(a, mac),
            IpAddr::V6(a) => announcer.unsolicited_na(a, mac),
        };
        match r {
            Ok(()) => sent += 1,
            Err(e) => tracing::warn!("announcing {}: {e}", vip.addr),
        }
    }
    sent
}
