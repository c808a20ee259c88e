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

use crate::metrics::Counter;
use tokio::sync::mpsc;

use crate::network::{AddressManager, Announcer, Vip};

/// Ordered VIP and announcement work, done by one task so netlink calls happen in the order the state
/// machine asked for them.
#[derive(Clone)]
pub(super) enum VipOp {
    /// Adds `vips` with this lease (`None`: permanent).
    Add(Rc<[Vip]>, Option<Duration>),
    /// Renews the leases of `vips` unless the instance left Master since (`epoch` changed).
    Renew {
        vips: Rc<[Vip]>,
        lease: Duration,
        epoch: u64,
        epoch_now: Arc<AtomicU64>,
    },
    Remove(Rc<[Vip]>),
    /// Announce `vips` `burst` times unless the instance left Master since (`epoch` changed).
    Announce {
        vips: Rc<[Vip]>,
        epoch: u64,
        epoch_now: Arc<AtomicU64>,
        burst: u32,
        sent: Counter,
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

/// `first` and the ops queued right behind it that `same` takes (it hands back any other): work
/// queued together goes as one netlink batch. The first op of another kind is left in `next`, to
/// be done after them, so no renewal overtakes a removal queued after it, nor the reverse.
fn queued_together<T>(
    first: VipOp,
    rx: &mut mpsc::UnboundedReceiver<VipOp>,
    next: &mut Option<VipOp>,
    mut same: impl FnMut(VipOp) -> Result<T, VipOp>,
) -> Vec<T> {
    let mut taken = Vec::new();
    let mut op = first;
    loop {
        match same(op) {
            Ok(t) => taken.push(t),
            Err(other) => {
                *next = Some(other);
                break;
            }
        }
        match rx.try_recv() {
            Ok(queued) => op = queued,
            Err(_) => break,
        }
    }
    taken
}

pub(super) async fn vip_worker(mut rx: mpsc::UnboundedReceiver<VipOp>, addrs: Rc<AddressManager>) {
    let mut interfaces: HashMap<String, VipInterface> = HashMap::new();
    let add = async |ifindex: u32, v: &Vip, lease: Option<Duration>| match lease {
        Some(l) => addrs.add_leased(ifindex, v, l).await,
        None => addrs.add(ifindex, v).await,
    };
    // An op taken from the queue while batching renewals or removals, to be done next.
    let mut next: Option<VipOp> = None;
    loop {
        let op = match next.take() {
            Some(op) => op,
            None => match rx.recv().await {
                Some(op) => op,
                None => break,
            },
        };
        match op {
            VipOp::Add(vips, lease) => {
                for v in vips.iter() {
                    let Some(ifindex) = vip_interface(&mut interfaces, v).map(|i| i.ifindex) else {
                        continue;
                    };
                    if let Err(e) = add(ifindex, v, lease).await {
                        tracing::error!("adding VIP {v}: {e}");
                    }
                }
            }
            op @ VipOp::Renew { .. } => {
                // The renewals of one advert batch are queued in the run loop's turn that sent its
                // adverts, and go as one netlink send (see `AddressManager::renew`). A node's
                // batches lie within 14 ms (`vrrp::timers::BATCH_GAP`), and the kernel's check
                // deletes in one pass what runs out within 20 ms of it (see `lease.rs`), so a
                // cluster's renewals need no gathering across its batches (waiting for them cost a
                // wake-up per cluster).
                let lists: Vec<(Rc<[Vip]>, Duration)> = queued_together(op, &mut rx, &mut next, |op| match op {
                    // A Master that left since its advert (its epoch moved on) is not renewed.
                    VipOp::Renew {
                        vips,
                        lease,
                        epoch,
                        epoch_now,
                    } => Ok((epoch_now.load(Ordering::SeqCst) == epoch).then_some((vips, lease))),
                    other => Err(other),
                })
                .into_iter()
                .flatten()
                .collect();
                let mut batch: Vec<(u32, &Vip, Duration)> = Vec::new();
                for (vips, lease) in &lists {
                    for v in vips.iter() {
                        if let Some(i) = vip_interface(&mut interfaces, v) {
                            batch.push((i.ifindex, v, *lease));
                        }
                    }
                }
                // A renewal that failed in the batch is tried alone (that also adds an address
                // someone removed); only a second failure is an error.
                for (i, e) in addrs.renew(&batch) {
                    let (ifindex, v, lease) = batch[i];
                    tracing::debug!("renewing VIP {v} in a batch: {e}; trying it alone");
                    if let Err(e) = add(ifindex, v, Some(lease)).await {
                        tracing::error!("renewing VIP {v}: {e}");
                    }
                }
            }
            op @ VipOp::Remove(_) => {
                // Removals queued together (a stop of every instance, a release of many groups)
                // go as one batch, as renewals do; a failed one is tried alone.
                let lists = queued_together(op, &mut rx, &mut next, |op| match op {
                    VipOp::Remove(vips) => Ok(vips),
                    other => Err(other),
                });
                let mut batch: Vec<(u32, &Vip)> = Vec::new();
                for v in lists.iter().flat_map(|vips| vips.iter()) {
                    if let Some(i) = vip_interface(&mut interfaces, v) {
                        batch.push((i.ifindex, v));
                    }
                }
                for (i, e) in addrs.remove_all(&batch) {
                    let (ifindex, v) = batch[i];
                    tracing::debug!("removing VIP {v} in a batch: {e}; trying it alone");
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
                    for v in vips.iter() {
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
