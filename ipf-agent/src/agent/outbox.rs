//! Adverts the state machines queue while the run loop handles a batch of inputs (the timers that fell
//! due together), sent with one `sendmmsg` per advert socket once the batch is handled. Instances
//! with the same family and source share the socket and its outbox.

use std::{cell::RefCell, collections::HashMap, net::IpAddr, rc::Rc};

use crate::metrics::Counter;

use crate::{datapath::Family, network::AdvertSender};

/// One encoded advert waiting for the flush.
pub(super) struct Pending {
    pub(super) dst: IpAddr,
    pub(super) msg: Vec<u8>,
    /// Logged with a failure.
    pub(super) instance: String,
    /// Incremented when it went out.
    pub(super) sent: Vec<Counter>,
}

/// An advert socket with its queue. Cheap to clone.
#[derive(Clone)]
pub(super) struct Outbox(Rc<Inner>);

struct Inner {
    sender: AdvertSender,
    pending: RefCell<Vec<Pending>>,
}

impl Outbox {
    pub(super) fn sender(&self) -> &AdvertSender {
        &self.0.sender
    }

    pub(super) fn queue(&self, p: Pending) {
        self.0.pending.borrow_mut().push(p);
    }

    /// Sends everything queued.
    pub(super) fn flush(&self) {
        let pending = std::mem::take(&mut *self.0.pending.borrow_mut());
        if pending.is_empty() {
            return;
        }
        let msgs: Vec<(IpAddr, &[u8])> = pending.iter().map(|p| (p.dst, p.msg.as_slice())).collect();
        for (p, r) in pending.iter().zip(self.0.sender.send_many(&msgs)) {
            match r {
                Ok(()) => p.sent.iter().for_each(Counter::inc),
                Err(e) => tracing::warn!(instance = %p.instance, "sending advert to {}: {e}", p.dst),
            }
        }
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
            pending: RefCell::default(),
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
