//! VIPs on interfaces over rtnetlink: add (optionally as a lease the Master renews), remove, list,
//! and the interface's primary address for adverts.

use std::{
    collections::HashMap,
    fs::{File, OpenOptions},
    io::{self, Read as _},
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    os::unix::fs::FileExt as _,
    pin::pin,
    sync::{Mutex, MutexGuard},
    time::Duration,
};

use futures_util::TryStreamExt as _;
use rtnetlink::packet_route::{
    AddressFamily, RouteNetlinkMessage,
    address::{AddressAttribute, AddressFlags, AddressHeaderFlags, AddressMessage, AddressScope, CacheInfo},
    link::LinkAttribute,
};
use rtnetlink::{
    AddressMessageBuilder,
    packet_core::{NLM_F_CREATE, NLM_F_REPLACE, NLM_F_REQUEST, NetlinkMessage, NetlinkPayload},
};
use tokio::task::JoinHandle;

use super::{NetError, Vip};
use crate::datapath::Family;

/// Adds and removes VIPs over rtnetlink. IPv6 VIPs skip duplicate address detection (`IFA_F_NODAD`):
/// VRRP itself decides who owns them, and a tentative address could not be used for the 1-2 s DAD takes.
pub struct AddressManager {
    handle: rtnetlink::Handle,
    connection: JoinHandle<()>,
    /// A plain netlink socket for requests sent as one batch (see [`AddressManager::batch`]).
    batch: Option<rtnetlink::sys::Socket>,
    /// Interfaces whose `promote_secondaries` was checked, with the value to restore when we set it.
    promoted: Mutex<HashMap<u32, Option<Promoted>>>,
}

/// A `promote_secondaries` sysctl we turned on; the file stays open so the value is restored in the
/// namespace it was set in.
struct Promoted {
    file: File,
    original: String,
}

/// A nonblocking NETLINK_ROUTE socket of its own (replies to it are ours alone).
fn batch_socket() -> io::Result<rtnetlink::sys::Socket> {
    let mut s = rtnetlink::sys::Socket::new(rtnetlink::sys::protocols::NETLINK_ROUTE)?;
    s.bind_auto()?;
    s.set_non_blocking(true)?;
    Ok(s)
}

impl AddressManager {
    /// Opens a netlink connection in the calling thread's network namespace and spawns its task on the
    /// current tokio runtime.
    pub fn new() -> Result<Self, NetError> {
        let rt = tokio::runtime::Handle::try_current().map_err(|_| NetError::NoRuntime)?;
        // Registering the socket with tokio needs the runtime context, hence the check above.
        let (connection, handle, _unsolicited) = rtnetlink::new_connection().map_err(NetError::Connect)?;
        Ok(AddressManager {
            handle,
            connection: rt.spawn(connection),
            batch: batch_socket()
                .map_err(|e| tracing::warn!("netlink socket for batched requests: {e}; sending them one by one"))
                .ok(),
            promoted: Mutex::new(HashMap::new()),
        })
    }

    /// The netlink handle, for other queries in the same namespace (neighbour lookups).
    pub fn handle(&self) -> rtnetlink::Handle {
        self.handle.clone()
    }

    /// Adds `vip` to the interface; an identical address already there is success.
    pub async fn add(&self, ifindex: u32, vip: &Vip) -> Result<(), NetError> {
        self.add_with_lease(ifindex, vip, None).await
    }

    /// Adds `vip` with a lifetime, or renews it: the kernel removes the address by itself when the
    /// lease runs out, so a VIP cannot outlive a killed agent by more than `lease` (whole seconds,
    /// at least one).
    pub async fn add_leased(&self, ifindex: u32, vip: &Vip, lease: Duration) -> Result<(), NetError> {
        self.add_with_lease(ifindex, vip, Some(lease)).await
    }

    async fn add_with_lease(&self, ifindex: u32, vip: &Vip, lease: Option<Duration>) -> Result<(), NetError> {
        vip.validate()?;
        if vip.addr.is_ipv4() {
            self.promote_secondaries(ifindex).await;
        }
        let mut req = self.handle.address().add(ifindex, vip.addr, vip.prefix_len);
        if lease.is_some() {
            // Create or update in place: a renewal must not fail with EEXIST.
            req = req.replace();
        }
        *req.message_mut() = add_message(ifindex, vip, lease);
        let source = match req.execute().await {
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
        if errno(&source) != Some(libc::EEXIST) {
            return Err(NetError::Netlink {
                op: "adding",
                ifindex,
                target: vip.to_string(),
                source,
            });
        }
        // IPv4 says EEXIST only for the same address and prefix; IPv6 also for the same address under
        // another prefix, which is a conflict rather than the VIP asked for.
        let present = self.list(ifindex).await?;
        if present.contains(&(vip.addr, vip.prefix_len)) {
            return Ok(());
        }
        match present.iter().find(|(a, _)| *a == vip.addr) {
            Some(&(addr, existing_prefix)) => Err(NetError::Conflict {
                ifindex,
                vip: vip.to_string(),
                addr,
                existing_prefix,
            }),
            None => Err(NetError::Netlink {
                op: "adding",
                ifindex,
                target: vip.to_string(),
                source,
            }),
        }
    }

    /// Renews the leases of VIPs a Master holds, as one batch (see [`Self::batch`]). Returns the
    /// failed ones (their index in `due`) with the error; the caller retries them one by one, which
    /// also adds a VIP that went missing.
    pub fn renew(&self, due: &[(u32, &Vip, Duration)]) -> Vec<(usize, io::Error)> {
        self.batch(due.iter().map(|(ifindex, vip, lease)| {
            let mut req = NetlinkMessage::from(RouteNetlinkMessage::NewAddress(add_message(
                *ifindex,
                vip,
                Some(*lease),
            )));
            req.header.flags = NLM_F_REQUEST | NLM_F_CREATE | NLM_F_REPLACE;
            req
        }))
    }

    /// Removes VIPs as one batch (see [`Self::batch`]); one already absent is no failure. Returns
    /// the failed ones (their index in `due`) with the error, for the caller to retry one by one.
    pub fn remove_all(&self, due: &[(u32, &Vip)]) -> Vec<(usize, io::Error)> {
        let mut failed = self.batch(due.iter().map(|(ifindex, vip)| {
            let mut req = NetlinkMessage::from(RouteNetlinkMessage::DelAddress(del_message(*ifindex, vip)));
            req.header.flags = NLM_F_REQUEST;
            req
        }));
        failed.retain(|(_, e)| !matches!(e.raw_os_error(), Some(libc::EADDRNOTAVAIL | libc::ENOENT)));
        failed
    }

    /// Sends `requests` in as few netlink sends as fit, without acknowledgements: the kernel handles
    /// them within the send and queues a reply only for a failure, read right after. Returns the
    /// failed ones (their index) with the error. A Master's renewals every interval and a stop's
    /// removals of hundreds of VIPs each cost one system call instead of a round trip per VIP.
    fn batch(&self, requests: impl Iterator<Item = NetlinkMessage<RouteNetlinkMessage>>) -> Vec<(usize, io::Error)> {
        let mut requests: Vec<_> = requests.collect();
        let mut failed = Vec::new();
        let Some(socket) = &self.batch else {
            return (0..requests.len())
                .map(|i| (i, io::Error::other("no netlink socket for batched requests")))
                .collect();
        };
        let mut buf = Vec::new();
        // One send stays well below the socket's send buffer (about 100 bytes a request).
        for (chunk_no, chunk) in requests.chunks_mut(BATCH_CHUNK).enumerate() {
            buf.clear();
            for (k, req) in chunk.iter_mut().enumerate() {
                // The sequence number is the index, plus one (0 is never a request here).
                req.header.sequence_number = u32::try_from(chunk_no * BATCH_CHUNK + k + 1).unwrap_or(u32::MAX);
                req.finalize();
                let at = buf.len();
                buf.resize(at + req.buffer_len(), 0);
                req.serialize(&mut buf[at..]);
            }
            if let Err(e) = socket.send(&buf, 0) {
                let base = chunk_no * BATCH_CHUNK;
                failed.extend((base..base + chunk.len()).map(|i| (i, io::Error::new(e.kind(), e.to_string()))));
            }
        }
        // Failures were queued during the send; nothing more comes.
        let mut reply = Vec::with_capacity(8192);
        loop {
            reply.clear();
            match socket.recv(&mut reply, libc::MSG_DONTWAIT) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    tracing::warn!("reading netlink batch replies: {e}");
                    break;
                }
            }
            let Ok(msg) = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&reply) else {
                continue;
            };
            if let NetlinkPayload::Error(err) = msg.payload
                && let Some(code) = err.code
                && let Some(i) = (msg.header.sequence_number as usize).checked_sub(1)
                && i < requests.len()
                && !failed.iter().any(|(f, _)| *f == i)
            {
                failed.push((i, io::Error::from_raw_os_error(-code.get())));
            }
        }
        failed
    }

    /// Removes `vip` (matched by address and prefix length) from the interface; absent is success.
    pub async fn remove(&self, ifindex: u32, vip: &Vip) -> Result<(), NetError> {
        vip.validate()?;
        match self.handle.address().del(del_message(ifindex, vip)).execute().await {
            Ok(()) => Ok(()),
            Err(e) if matches!(errno(&e), Some(libc::EADDRNOTAVAIL | libc::ENOENT)) => Ok(()),
            Err(source) => Err(NetError::Netlink {
                op: "removing",
                ifindex,
                target: vip.to_string(),
                source,
            }),
        }
    }

    /// Every address on the interface with its prefix length, in the kernel's order.
    pub async fn list(&self, ifindex: u32) -> Result<Vec<(IpAddr, u8)>, NetError> {
        Ok(self
            .dump(ifindex, None)
            .await?
            .iter()
            .filter_map(|m| address_of(m).map(|a| (a, m.header.prefix_len)))
            .collect())
    }

    /// Every address on every interface of this node (DNS peers skip them).
    pub async fn local_addresses(&self) -> Result<Vec<IpAddr>, NetError> {
        let mut stream = pin!(self.handle.address().get().execute());
        let mut out = Vec::new();
        loop {
            match stream.try_next().await {
                Ok(Some(m)) => out.extend(address_of(&m)),
                Ok(None) => return Ok(out),
                Err(source) => {
                    return Err(NetError::Netlink {
                        op: "listing",
                        ifindex: 0,
                        target: "addresses".to_owned(),
                        source,
                    });
                }
            }
        }
    }

    /// The address adverts of `family` are sent from: for IPv4 the first global address, for IPv6 the
    /// link-local one (RFC 5798 §5.1.2.1), never one of `exclude` (the VIPs). Addresses still in
    /// duplicate address detection are skipped (they cannot be bound yet), so `None` may only mean
    /// "not yet".
    pub async fn primary_address(
        &self,
        ifindex: u32,
        family: Family,
        exclude: &[IpAddr],
    ) -> Result<Option<IpAddr>, NetError> {
        let msgs = self.dump(ifindex, Some(family)).await?;
        Ok(msgs.iter().find_map(|m| {
            let addr = address_of(m)?;
            let flags = flags_of(m);
            let usable = !flags.contains(AddressFlags::Dadfailed)
                && (!flags.contains(AddressFlags::Tentative) || flags.contains(AddressFlags::Optimistic));
            let wanted = match addr {
                IpAddr::V4(_) => m.header.scope == AddressScope::Universe,
                IpAddr::V6(a) => a.is_unicast_link_local(),
            };
            (usable && wanted && !exclude.contains(&addr)).then_some(addr)
        }))
    }

    async fn dump(&self, ifindex: u32, family: Option<Family>) -> Result<Vec<AddressMessage>, NetError> {
        let mut req = self.handle.address().get().set_link_index_filter(ifindex);
        // The kernel dumps only the requested family; the index is filtered by rtnetlink.
        req.message_mut().header.family = match family {
            None => AddressFamily::Unspec,
            Some(Family::V4) => AddressFamily::Inet,
            Some(Family::V6) => AddressFamily::Inet6,
        };
        let mut stream = pin!(req.execute());
        let mut out = Vec::new();
        loop {
            match stream.try_next().await {
                Ok(Some(m)) => out.push(m),
                Ok(None) => return Ok(out),
                Err(source) => {
                    return Err(NetError::Netlink {
                        op: "listing",
                        ifindex,
                        target: "addresses".to_owned(),
                        source,
                    });
                }
            }
        }
    }

    async fn link_name(&self, ifindex: u32) -> Result<Option<String>, rtnetlink::Error> {
        let mut stream = pin!(self.handle.link().get().match_index(ifindex).execute());
        while let Some(link) = stream.try_next().await? {
            for attr in link.attributes {
                if let LinkAttribute::IfName(name) = attr {
                    return Ok(Some(name));
                }
            }
        }
        Ok(None)
    }

    /// Turns on `net.ipv4.conf.IF.promote_secondaries`, as keepalived does: without it, removing the
    /// first (primary) address of a subnet makes the kernel remove every other address of that subnet,
    /// including other VIPs. Failing is logged, not fatal: the VIP is still better added.
    async fn promote_secondaries(&self, ifindex: u32) {
        if self.promoted().contains_key(&ifindex) {
            return;
        }
        let name = match self.link_name(ifindex).await {
            Ok(Some(name)) => name,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(ifindex, "promote_secondaries: interface name: {e}");
                return;
            }
        };
        let path = format!("/proc/sys/net/ipv4/conf/{name}/promote_secondaries");
        match enable_sysctl(&path) {
            Ok(set) => {
                if set.is_some() {
                    tracing::debug!(interface = %name, "promote_secondaries turned on");
                }
                // The first caller's record wins, so a concurrent add cannot lose the original value.
                self.promoted().entry(ifindex).or_insert(set);
            }
            Err(e) => {
                // Already on (a node set-up did it) is all that matters; otherwise say so once.
                if std::fs::read_to_string(&path).is_ok_and(|v| v.trim() != "1") {
                    crate::container::sysctl_write_failed(&path, "1", &e);
                }
                self.promoted().entry(ifindex).or_insert(None);
            }
        }
    }

    fn promoted(&self) -> MutexGuard<'_, HashMap<u32, Option<Promoted>>> {
        // Plain map operations cannot leave it inconsistent; a poisoned lock is still usable.
        self.promoted.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Drop for AddressManager {
    fn drop(&mut self) {
        self.connection.abort();
        for p in self.promoted().values().flatten() {
            if let Err(e) = p.file.write_at(format!("{}\n", p.original).as_bytes(), 0) {
                tracing::warn!("restoring promote_secondaries: {e}");
            }
        }
    }
}

/// Requests per netlink send of a batch (see `AddressManager::batch`).
const BATCH_CHUNK: usize = 256;

/// The address message naming `vip` on `ifindex` (IFA_LOCAL, IFA_ADDRESS, the prefix length).
fn address_message(ifindex: u32, vip: &Vip) -> AddressMessage {
    match vip.addr {
        IpAddr::V4(a) => AddressMessageBuilder::<Ipv4Addr>::new()
            .index(ifindex)
            .address(a, vip.prefix_len)
            .build(),
        IpAddr::V6(a) => AddressMessageBuilder::<Ipv6Addr>::new()
            .index(ifindex)
            .address(a, vip.prefix_len)
            .build(),
    }
}

/// The RTM_NEWADDR message for `vip` on `ifindex`, with a lifetime when leased.
/// The deletion of `vip`: IFA_LOCAL and IFA_ADDRESS with the prefix length name the address
/// exactly; the kernel deletes only an address matching all three.
fn del_message(ifindex: u32, vip: &Vip) -> AddressMessage {
    let mut msg = address_message(ifindex, vip);
    msg.attributes.retain(|a| !matches!(a, AddressAttribute::Broadcast(_)));
    msg
}

fn add_message(ifindex: u32, vip: &Vip, lease: Option<Duration>) -> AddressMessage {
    let mut msg = address_message(ifindex, vip);
    if let Some(lease) = lease {
        let secs = u32::try_from(lease.as_secs().max(1)).unwrap_or(u32::MAX);
        let mut info = CacheInfo::default();
        info.ifa_preferred = secs;
        info.ifa_valid = secs;
        msg.attributes.push(AddressAttribute::CacheInfo(info));
    }
    // rtnetlink's builder adds a computed broadcast below /31; only a configured one is wanted.
    msg.attributes.retain(|a| !matches!(a, AddressAttribute::Broadcast(_)));
    if let Some(b) = vip.broadcast {
        msg.attributes.push(AddressAttribute::Broadcast(b));
    }
    if let Some(l) = &vip.label {
        msg.attributes.push(AddressAttribute::Label(l.clone()));
    }
    if let Some(s) = vip.scope {
        msg.header.scope = AddressScope::from(s);
    }
    if vip.addr.is_ipv6() {
        // Both places: the header byte for old kernels, the attribute for current ones.
        msg.header.flags.insert(AddressHeaderFlags::Nodad);
        msg.attributes.push(AddressAttribute::Flags(AddressFlags::Nodad));
    }
    msg
}

/// Writes 1 to a boolean sysctl; returns the open file and old value when it was not 1 already.
fn enable_sysctl(path: &str) -> io::Result<Option<Promoted>> {
    let mut file = OpenOptions::new().read(true).write(true).open(path)?;
    let mut current = String::new();
    file.read_to_string(&mut current)?;
    let current = current.trim();
    if current == "1" {
        return Ok(None);
    }
    // Sysctls take writes at offset 0 only.
    file.write_at(b"1\n", 0)?;
    Ok(Some(Promoted {
        file,
        original: current.to_owned(),
    }))
}

/// The local address of a message: IFA_LOCAL, else IFA_ADDRESS (IPv6 sends only the latter; on
/// point-to-point IPv4 links IFA_ADDRESS is the peer).
fn address_of(m: &AddressMessage) -> Option<IpAddr> {
    let local = m.attributes.iter().find_map(|a| match a {
        AddressAttribute::Local(a) => Some(*a),
        _ => None,
    });
    local.or_else(|| {
        m.attributes.iter().find_map(|a| match a {
            AddressAttribute::Address(a) => Some(*a),
            _ => None,
        })
    })
}

/// IFA_FLAGS (32 bits), else the header's 8-bit flags.
fn flags_of(m: &AddressMessage) -> AddressFlags {
    m.attributes
        .iter()
        .find_map(|a| match a {
            AddressAttribute::Flags(f) => Some(*f),
            _ => None,
        })
        .unwrap_or_else(|| AddressFlags::from_bits_retain(u32::from(m.header.flags.bits())))
}

/// The errno of a netlink error reply.
fn errno(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(m) => m.code.map(|c| -c.get()),
        _ => None,
    }
}
