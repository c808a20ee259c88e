//! Adverts the state machines queue while the run loop handles a batch of inputs (the timers that fell
//! due together), sent with one `sendmmsg` per advert socket once the batch is handled. Instances
//! with the same family and source share the socket and its outbox.

use std::{cell::RefCell, collections::HashMap, net::IpAddr, ops::Range, rc::Rc};

use crate::{datapath::Family, metrics::Counter, network::AdvertSender};

/// Whose adverts an instance queues: named in a failure's log line, counted when one goes out.
/// Made once per instance and shared by its queued adverts, so queueing allocates nothing.
pub(super) struct Origin {
    pub(super) instance: String,
    pub(super) adverts_sent: Counter,
    pub(super) priority_zero_sent: Counter,
}

/// One encoded advert waiting for the flush: its bytes are `bytes` of the outbox's buffer.
struct Pending {
    dst: IpAddr,
    bytes: Range<usize>,
    origin: Rc<Origin>,
    priority_zero: bool,
}

/// An advert socket with its queue. Cheap to clone.
#[derive(Clone)]
pub(super) struct Outbox(Rc<Inner>);

struct Inner {
    sender: AdvertSender,
    queue: RefCell<Queue>,
}

/// The adverts waiting, their bytes back to back in one buffer; both keep their capacity from one
/// flush to the next.
#[derive(Default)]
struct Queue {
    pending: Vec<Pending>,
    buf: Vec<u8>,
}

impl Outbox {
    pub(super) fn sender(&self) -> &AdvertSender {
        &self.0.sender
    }

    /// Queues the advert `msg` to `dst` for the next flush.
    pub(super) fn queue(&self, dst: IpAddr, msg: &[u8], origin: &Rc<Origin>, priority_zero: bool) {
        let mut q = self.0.queue.borrow_mut();
        let start = q.buf.len();
        q.buf.extend_from_slice(msg);
        let bytes = start..q.buf.len();
        q.pending.push(Pending {
            dst,
            bytes,
            origin: origin.clone(),
            priority_zero,
        });
    }

    /// Sends everything queued.
    pub(super) fn flush(&self) {
        let mut q = self.0.queue.borrow_mut();
        if q.pending.is_empty() {
            return;
        }
        let msgs: Vec<(IpAddr, &[u8])> = q.pending.iter().map(|p| (p.dst, &q.buf[p.bytes.clone()])).collect();
        for (p, r) in q.pending.iter().zip(self.0.sender.send_many(&msgs)) {
            match r {
                Ok(()) => {
                    p.origin.adverts_sent.inc();
                    if p.priority_zero {
                        p.origin.priority_zero_sent.inc();
                    }
                }
                Err(e) => tracing::warn!(instance = %p.origin.instance, "sending advert to {}: {e}", p.dst),
            }
        }
        q.pending.clear();
        q.buf.clear();
    }
}

/// The node's outboxes, by family and source address.
#[derive(Default)]
pub(super) struct Outboxes(HashMap<(Family, IpAddr), Outbox>);

impl Outboxes {
    /// The outbox of adverts from `src` on `interface`, opened on first use.
    pub(super) fn get(&mut self, interface: &str, family: Family, src: IpAddr) -> anyhow::Result<Outbox> {
        if let Some(o) = self.0.get(&(family, src)) {
            return Ok(o.clone());
        }
        let o = Outbox(Rc::new(Inner {
            sender: AdvertSender::new(interface, family, src)?,
            queue: RefCell::default(),
        }));
        self.0.insert((family, src), o.clone());
        Ok(o)
    }

    /// Sends what every outbox holds; closes those no instance uses any more.
    pub(super) fn flush(&mut self) {
        for o in self.0.values() {
            o.flush();
        }
        self.0.retain(|_, o| Rc::strong_count(&o.0) > 1);
    }
}
