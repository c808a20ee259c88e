//! Network side effects of VRRP state changes: virtual addresses (rtnetlink), advertisements (raw IP
//! sockets, protocol 112) and address announcements (gratuitous ARP, unsolicited neighbour
//! advertisements, hand-built Ethernet frames on an AF_PACKET socket).
//!
//! Sockets and the netlink connection belong to the network namespace of the thread that creates them,
//! so everything here works on the namespace it was created in, whichever thread uses it later.

use std::{
    collections::HashMap,
    fmt,
    fs::{File, OpenOptions},
    io::{self, Read as _},
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    os::{
        fd::{AsRawFd, FromRawFd, OwnedFd},
        unix::fs::FileExt as _,
    },
    pin::pin,
    sync::{Mutex, MutexGuard},
    time::Duration,
};

use futures_util::TryStreamExt as _;
use ipf_common::{
    checksum,
    frame::{ETH_P_ARP, ETH_P_IPV4, ETH_P_IPV6, ICMPV6_NEIGHBOR_ADVERT, IPPROTO_ICMPV6},
    vrrp::{IPPROTO_VRRP, VRRP_TTL},
};
use rtnetlink::AddressMessageBuilder;
use rtnetlink::packet_route::{
    AddressFamily,
    address::{AddressAttribute, AddressFlags, AddressHeaderFlags, AddressMessage, AddressScope, CacheInfo},
    link::LinkAttribute,
};
use tokio::task::JoinHandle;

use crate::datapath::{Family, interface_index};

#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("interface {0:?} not found")]
    NoSuchInterface(String),
    #[error("the address manager needs a tokio runtime")]
    NoRuntime,
    #[error("opening a netlink connection: {0}")]
    Connect(#[source] io::Error),
    #[error("{op} {target} on interface #{ifindex}: {source}")]
    Netlink {
        op: &'static str,
        ifindex: u32,
        /// The address (with prefix and options) or what was listed.
        target: String,
        #[source]
        source: rtnetlink::Error,
    },
    #[error(
        "adding {vip} on interface #{ifindex}: {addr}/{existing_prefix} is already there with another prefix length"
    )]
    Conflict {
        ifindex: u32,
        vip: String,
        addr: IpAddr,
        existing_prefix: u8,
    },
    #[error("VIP {vip}: {reason}")]
    InvalidVip { vip: String, reason: &'static str },
    #[error("{op} on {iface}{}: {source}", for_addr(.addr))]
    Socket {
        op: &'static str,
        iface: String,
        addr: Option<IpAddr>,
        #[source]
        source: io::Error,
    },
    #[error("{op} on {iface}: {addr} is not {family:?}")]
    WrongFamily {
        op: &'static str,
        iface: String,
        addr: IpAddr,
        family: Family,
    },
}

fn for_addr(addr: &Option<IpAddr>) -> String {
    addr.map(|a| format!(" ({a})")).unwrap_or_default()
}

/// A virtual address as keepalived's `virtual_ipaddress` block describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Vip {
    pub addr: IpAddr,
    pub prefix_len: u8,
    /// IPv4 only. `None` sets no broadcast address, as `ip addr add` and keepalived do without `brd`.
    pub broadcast: Option<Ipv4Addr>,
    /// rtnetlink scope (`RT_SCOPE_*`: 0 global, 200 site, 253 link, 254 host); `None` = global. The
    /// kernel derives IPv6 scopes from the address itself, and rejects (EINVAL) an IPv4 address whose
    /// scope differs from the one of an address already in the same subnet.
    pub scope: Option<u8>,
    /// IPv4 only (the kernel keeps no IPv6 labels), at most 15 bytes, e.g. `eth0:vip`.
    pub label: Option<String>,
    /// The interface the address goes on when it is not the instance's (keepalived's `dev`).
    pub dev: Option<String>,
}

impl Vip {
    /// A global address with no broadcast and no label.
    pub fn new(addr: IpAddr, prefix_len: u8) -> Self {
        Vip {
            addr,
            prefix_len,
            broadcast: None,
            scope: None,
            label: None,
            dev: None,
        }
    }

    pub fn family(&self) -> Family {
        Family::of(&self.addr)
    }

    /// Checks what the kernel would reject or silently ignore.
    pub fn validate(&self) -> Result<(), NetError> {
        let invalid = |reason| {
            Err(NetError::InvalidVip {
                vip: self.to_string(),
                reason,
            })
        };
        let max_prefix = if self.addr.is_ipv4() { 32 } else { 128 };
        if self.prefix_len > max_prefix {
            return invalid("prefix length too long for the family");
        }
        if self.addr.is_ipv6() && self.broadcast.is_some() {
            return invalid("IPv6 has no broadcast address");
        }
        if self.addr.is_ipv6() && self.label.is_some() {
            return invalid("IPv6 addresses carry no label");
        }
        if self
            .label
            .as_ref()
            .is_some_and(|l| l.is_empty() || l.len() > 15 || l.contains('\0'))
        {
            return invalid("label must be 1 to 15 bytes");
        }
        Ok(())
    }
}

impl fmt::Display for Vip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)?;
        if let Some(b) = self.broadcast {
            write!(f, " brd {b}")?;
        }
        if let Some(s) = self.scope {
            match s {
                0 => f.write_str(" scope global")?,
                200 => f.write_str(" scope site")?,
                253 => f.write_str(" scope link")?,
                254 => f.write_str(" scope host")?,
                255 => f.write_str(" scope nowhere")?,
                other => write!(f, " scope {other}")?,
            }
        }
        if let Some(l) = &self.label {
            write!(f, " label {l}")?;
        }
        if let Some(d) = &self.dev {
            write!(f, " dev {d}")?;
        }
        Ok(())
    }
}

/// Adds and removes VIPs over rtnetlink. IPv6 VIPs skip duplicate address detection (`IFA_F_NODAD`):
/// VRRP itself decides who owns them, and a tentative address could not be used for the 1-2 s DAD takes.
pub struct AddressManager {
    handle: rtnetlink::Handle,
    connection: JoinHandle<()>,
    /// Interfaces whose `promote_secondaries` was checked, with the value to restore when we set it.
    promoted: Mutex<HashMap<u32, Option<Promoted>>>,
}

/// A `promote_secondaries` sysctl we turned on; the file stays open so the value is restored in the
/// namespace it was set in.
struct Promoted {
    file: File,
    original: String,
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
            promoted: Mutex::new(HashMap::new()),
        })
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
        let msg = req.message_mut();
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

    /// Removes `vip` (matched by address and prefix length) from the interface; absent is success.
    pub async fn remove(&self, ifindex: u32, vip: &Vip) -> Result<(), NetError> {
        vip.validate()?;
        // IFA_LOCAL and IFA_ADDRESS with the prefix length name the address exactly: the kernel
        // deletes only an address matching all three.
        let mut msg = match vip.addr {
            IpAddr::V4(a) => AddressMessageBuilder::<Ipv4Addr>::new()
                .index(ifindex)
                .address(a, vip.prefix_len)
                .build(),
            IpAddr::V6(a) => AddressMessageBuilder::<Ipv6Addr>::new()
                .index(ifindex)
                .address(a, vip.prefix_len)
                .build(),
        };
        msg.attributes.retain(|a| !matches!(a, AddressAttribute::Broadcast(_)));
        match self.handle.address().del(msg).execute().await {
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
            Err(e) => tracing::warn!(interface = %name, "setting {path}: {e}"),
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

fn index_of(ifname: &str) -> Result<u32, NetError> {
    interface_index(ifname).map_err(|_| NetError::NoSuchInterface(ifname.to_owned()))
}

/// Sends VRRP advertisements on one interface: a raw IP socket for protocol 112 bound to the device and
/// to our primary address, so the kernel writes the IP header with that source and TTL/hop limit 255
/// (RFC 3768 §5.2.3, RFC 5798 §5.1.1.3). The message is sent as given: its checksum already covers the
/// pseudo-header with this source.
pub struct AdvertSender {
    fd: OwnedFd,
    iface: String,
    ifindex: u32,
    family: Family,
    src: IpAddr,
}

impl AdvertSender {
    /// Opens the socket in the calling thread's network namespace.
    pub fn new(ifname: &str, family: Family, src: IpAddr) -> Result<Self, NetError> {
        if Family::of(&src) != family {
            return Err(NetError::WrongFamily {
                op: "advert source",
                iface: ifname.to_owned(),
                addr: src,
                family,
            });
        }
        let ifindex = index_of(ifname)?;
        let err = |op: &'static str| {
            move |source| NetError::Socket {
                op,
                iface: ifname.to_owned(),
                addr: Some(src),
                source,
            }
        };
        let domain = match family {
            Family::V4 => libc::AF_INET,
            Family::V6 => libc::AF_INET6,
        };
        // Nonblocking: a send that cannot be queued fails at once instead of stalling the caller; the
        // advert would be stale by the time the queue drains anyway.
        let fd = socket(
            domain,
            libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            i32::from(IPPROTO_VRRP),
        )
        .map_err(err("opening a raw VRRP socket"))?;
        // The socket only sends, but a raw socket is handed a copy of every VRRP packet on the host;
        // a drop-all filter keeps them from piling up in its receive queue.
        let drop_all = [libc::sock_filter {
            code: (libc::BPF_RET | libc::BPF_K) as u16,
            jt: 0,
            jf: 0,
            k: 0,
        }];
        attach_filter(&fd, &drop_all).map_err(err("attaching a drop-all filter"))?;
        bind_to_device(&fd, ifname).map_err(err("SO_BINDTODEVICE"))?;
        let ttl = libc::c_int::from(VRRP_TTL);
        // Network control precedence (CS6), as keepalived and other VRRP routers mark adverts, so QoS
        // does not queue them behind bulk traffic.
        let tos: libc::c_int = 0xc0;
        match family {
            Family::V4 => {
                use libc::{IP_MULTICAST_LOOP, IP_MULTICAST_TTL, IP_TOS, IP_TTL, IPPROTO_IP};
                set_int(&fd, IPPROTO_IP, IP_TTL, ttl).map_err(err("IP_TTL"))?;
                set_int(&fd, IPPROTO_IP, IP_MULTICAST_TTL, ttl).map_err(err("IP_MULTICAST_TTL"))?;
                // Our own adverts must not come back to our sockets as received ones.
                set_int(&fd, IPPROTO_IP, IP_MULTICAST_LOOP, 0).map_err(err("IP_MULTICAST_LOOP"))?;
                set_int(&fd, IPPROTO_IP, IP_TOS, tos).map_err(err("IP_TOS"))?;
                let mreqn = libc::ip_mreqn {
                    imr_multiaddr: libc::in_addr { s_addr: 0 },
                    imr_address: libc::in_addr { s_addr: 0 },
                    imr_ifindex: ifindex as libc::c_int,
                };
                setsockopt(&fd, IPPROTO_IP, libc::IP_MULTICAST_IF, &mreqn).map_err(err("IP_MULTICAST_IF"))?;
            }
            Family::V6 => {
                use libc::{
                    IPPROTO_IPV6, IPV6_MULTICAST_HOPS, IPV6_MULTICAST_IF, IPV6_MULTICAST_LOOP, IPV6_TCLASS,
                    IPV6_UNICAST_HOPS,
                };
                // IPV6_CHECKSUM stays off (the default for protocols other than ICMPv6): the message
                // carries its own checksum.
                set_int(&fd, IPPROTO_IPV6, IPV6_UNICAST_HOPS, ttl).map_err(err("IPV6_UNICAST_HOPS"))?;
                set_int(&fd, IPPROTO_IPV6, IPV6_MULTICAST_HOPS, ttl).map_err(err("IPV6_MULTICAST_HOPS"))?;
                set_int(&fd, IPPROTO_IPV6, IPV6_MULTICAST_LOOP, 0).map_err(err("IPV6_MULTICAST_LOOP"))?;
                set_int(&fd, IPPROTO_IPV6, IPV6_MULTICAST_IF, ifindex as libc::c_int)
                    .map_err(err("IPV6_MULTICAST_IF"))?;
                set_int(&fd, IPPROTO_IPV6, IPV6_TCLASS, tos).map_err(err("IPV6_TCLASS"))?;
            }
        }
        let sa = SockAddr::new(src, ifindex);
        // SAFETY: valid fd; the address pointer and length describe `sa`, alive for the call.
        let rc = unsafe { libc::bind(fd.as_raw_fd(), sa.as_ptr(), sa.len()) };
        if rc != 0 {
            return Err(err("binding the source address")(io::Error::last_os_error()));
        }
        Ok(AdvertSender {
            fd,
            iface: ifname.to_owned(),
            ifindex,
            family,
            src,
        })
    }

    /// The source address adverts carry.
    pub fn src(&self) -> IpAddr {
        self.src
    }

    pub fn family(&self) -> Family {
        self.family
    }

    pub fn interface(&self) -> &str {
        &self.iface
    }

    /// Sends one encoded VRRP message to `dst` (the VRRP group or a unicast peer).
    pub fn send(&self, dst: IpAddr, msg: &[u8]) -> Result<(), NetError> {
        if Family::of(&dst) != self.family {
            return Err(NetError::WrongFamily {
                op: "sending an advert",
                iface: self.iface.clone(),
                addr: dst,
                family: self.family,
            });
        }
        // The scope id picks the interface for ff02::12 and link-local peers; the kernel ignores it
        // for addresses that need none.
        let sa = SockAddr::new(dst, self.ifindex);
        // SAFETY: valid fd; `msg` and `sa` are valid for the lengths passed and outlive the call.
        let n = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                msg.as_ptr().cast(),
                msg.len(),
                0,
                sa.as_ptr(),
                sa.len(),
            )
        };
        check_sent(n, msg.len()).map_err(|source| NetError::Socket {
            op: "sending an advert",
            iface: self.iface.clone(),
            addr: Some(dst),
            source,
        })
    }
}

/// Announces that addresses moved to us: gratuitous ARP for IPv4, unsolicited neighbour
/// advertisements for IPv6, as complete Ethernet frames on an AF_PACKET socket (so the frame's source
/// MAC can be a virtual one, and no neighbour or route lookup is involved).
pub struct Announcer {
    fd: OwnedFd,
    iface: String,
    ifindex: u32,
    router: bool,
}

impl Announcer {
    /// Opens the socket in the calling thread's network namespace. The NA Router flag follows the
    /// interface's IPv6 `forwarding` setting at this time, as keepalived does; see
    /// [`Announcer::set_router_flag`].
    pub fn new(ifname: &str) -> Result<Self, NetError> {
        let ifindex = index_of(ifname)?;
        let err = |op: &'static str| {
            move |source| NetError::Socket {
                op,
                iface: ifname.to_owned(),
                addr: None,
                source,
            }
        };
        // Protocol 0: the socket receives nothing, it only sends.
        let fd = socket(
            libc::AF_PACKET,
            libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
        .map_err(err("opening a packet socket"))?;
        let sll = link_addr(ifindex, 0, [0; 6]);
        // SAFETY: valid fd and a sockaddr_ll of the stated size.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&raw const sll).cast(),
                size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(err("binding the packet socket")(io::Error::last_os_error()));
        }
        let router = std::fs::read_to_string(format!("/proc/sys/net/ipv6/conf/{ifname}/forwarding"))
            .is_ok_and(|v| v.trim() != "0");
        Ok(Announcer {
            fd,
            iface: ifname.to_owned(),
            ifindex,
            router,
        })
    }

    /// Whether neighbour advertisements carry the Router flag.
    pub fn router_flag(&self) -> bool {
        self.router
    }

    /// RFC 5798 §6.4.2 asks for the Router flag on a VRRP router's NAs; a host sharing a service VIP
    /// is no router, and hosts would otherwise treat it as one.
    pub fn set_router_flag(&mut self, router: bool) {
        self.router = router;
    }

    /// Broadcasts a gratuitous ARP request for `ip` at `mac` (see [`gratuitous_arp_frame`]).
    pub fn gratuitous_arp(&self, ip: Ipv4Addr, mac: [u8; 6]) -> Result<(), NetError> {
        let frame = gratuitous_arp_frame(ip, mac);
        self.send_frame(ETH_P_ARP, &frame, "sending a gratuitous ARP", ip.into())
    }

    /// Multicasts an unsolicited neighbour advertisement for `ip` at `mac` to all nodes (see
    /// [`unsolicited_na_frame`]).
    pub fn unsolicited_na(&self, ip: Ipv6Addr, mac: [u8; 6]) -> Result<(), NetError> {
        let frame = unsolicited_na_frame(ip, mac, self.router);
        self.send_frame(ETH_P_IPV6, &frame, "sending a neighbour advert", ip.into())
    }

    fn send_frame(&self, ether_type: u16, frame: &[u8], op: &'static str, ip: IpAddr) -> Result<(), NetError> {
        let mut dst = [0u8; 6];
        dst.copy_from_slice(&frame[..6]);
        // The protocol sets the skb's protocol for the device and taps; the frame is sent as is.
        let sll = link_addr(self.ifindex, ether_type, dst);
        // SAFETY: valid fd; `frame` and `sll` are valid for the lengths passed and outlive the call.
        let n = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                frame.as_ptr().cast(),
                frame.len(),
                0,
                (&raw const sll).cast(),
                size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        check_sent(n, frame.len()).map_err(|source| NetError::Socket {
            op,
            iface: self.iface.clone(),
            addr: Some(ip),
            source,
        })
    }
}

pub const ARP_FRAME_LEN: usize = 14 + 28;
pub const NA_FRAME_LEN: usize = 14 + 40 + 24 + 8;
const ETH_BROADCAST: [u8; 6] = [0xff; 6];
/// ff02::1, all nodes.
const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);

/// A gratuitous ARP as keepalived sends it: an Ethernet broadcast ARP request with sender and target
/// protocol address `ip`, sender hardware address `mac` and target hardware address all ones.
pub fn gratuitous_arp_frame(ip: Ipv4Addr, mac: [u8; 6]) -> [u8; ARP_FRAME_LEN] {
    let mut f = [0u8; ARP_FRAME_LEN];
    f[0..6].copy_from_slice(&ETH_BROADCAST);
    f[6..12].copy_from_slice(&mac);
    f[12..14].copy_from_slice(&ETH_P_ARP.to_be_bytes());
    let arp = &mut f[14..];
    arp[0..2].copy_from_slice(&1u16.to_be_bytes()); // Ethernet
    arp[2..4].copy_from_slice(&ETH_P_IPV4.to_be_bytes());
    arp[4] = 6;
    arp[5] = 4;
    arp[6..8].copy_from_slice(&1u16.to_be_bytes()); // request
    arp[8..14].copy_from_slice(&mac);
    arp[14..18].copy_from_slice(&ip.octets());
    arp[18..24].copy_from_slice(&ETH_BROADCAST);
    arp[24..28].copy_from_slice(&ip.octets());
    f
}

/// An unsolicited neighbour advertisement (RFC 4861 §7.2.6) for `ip` at `mac`: from `ip` itself to
/// ff02::1 (33:33:00:00:00:01), hop limit 255, Override set, Solicited clear, Router as given, with
/// the target link-layer address option.
///
/// The source is the target address rather than the interface's link-local one keepalived uses: RFC
/// 4861 allows any address of the interface, and the VIP is one as soon as it is added (without DAD),
/// so no lookup is needed. The ICMPv6 checksum covers the pseudo-header with that source.
pub fn unsolicited_na_frame(ip: Ipv6Addr, mac: [u8; 6], router: bool) -> [u8; NA_FRAME_LEN] {
    const ICMP_LEN: usize = 24 + 8;
    let mut f = [0u8; NA_FRAME_LEN];
    f[0..6].copy_from_slice(&[0x33, 0x33, 0, 0, 0, 1]);
    f[6..12].copy_from_slice(&mac);
    f[12..14].copy_from_slice(&ETH_P_IPV6.to_be_bytes());
    let src = ip.octets();
    let dst = ALL_NODES.octets();
    {
        let ip6 = &mut f[14..54];
        ip6[0] = 0x60;
        ip6[4..6].copy_from_slice(&(ICMP_LEN as u16).to_be_bytes());
        ip6[6] = IPPROTO_ICMPV6;
        // RFC 4861 §7.1.2: receivers drop NAs with any other hop limit.
        ip6[7] = 255;
        ip6[8..24].copy_from_slice(&src);
        ip6[24..40].copy_from_slice(&dst);
    }
    let icmp = &mut f[54..];
    icmp[0] = ICMPV6_NEIGHBOR_ADVERT;
    icmp[4] = 0x20 | if router { 0x80 } else { 0 }; // Override, Router
    icmp[8..24].copy_from_slice(&src);
    icmp[24] = 2; // target link-layer address option
    icmp[25] = 1; // length in units of 8 bytes
    icmp[26..32].copy_from_slice(&mac);
    let mut acc = checksum::sum(&src, 0);
    acc = checksum::sum(&dst, acc);
    acc += ICMP_LEN as u32 + u32::from(IPPROTO_ICMPV6);
    let csum = checksum::fold(checksum::sum(icmp, acc));
    icmp[2..4].copy_from_slice(&csum.to_be_bytes());
    f
}

/// An IPv4 or IPv6 socket address; IPv6 carries `scope_id`, which only scoped addresses use.
enum SockAddr {
    V4(libc::sockaddr_in),
    V6(libc::sockaddr_in6),
}

impl SockAddr {
    fn new(addr: IpAddr, scope_id: u32) -> Self {
        match addr {
            IpAddr::V4(a) => {
                // SAFETY: all-zero is a valid sockaddr_in; the fields that matter are set below.
                let mut sin: libc::sockaddr_in = unsafe { std::mem::zeroed() };
                sin.sin_family = libc::AF_INET as libc::sa_family_t;
                sin.sin_addr.s_addr = u32::from_ne_bytes(a.octets());
                SockAddr::V4(sin)
            }
            IpAddr::V6(a) => {
                // SAFETY: all-zero is a valid sockaddr_in6; the fields that matter are set below.
                let mut sin6: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
                sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
                sin6.sin6_addr.s6_addr = a.octets();
                sin6.sin6_scope_id = scope_id;
                SockAddr::V6(sin6)
            }
        }
    }

    fn as_ptr(&self) -> *const libc::sockaddr {
        match self {
            SockAddr::V4(s) => (s as *const libc::sockaddr_in).cast(),
            SockAddr::V6(s) => (s as *const libc::sockaddr_in6).cast(),
        }
    }

    fn len(&self) -> libc::socklen_t {
        (match self {
            SockAddr::V4(_) => size_of::<libc::sockaddr_in>(),
            SockAddr::V6(_) => size_of::<libc::sockaddr_in6>(),
        }) as libc::socklen_t
    }
}

fn link_addr(ifindex: u32, ether_type: u16, dst: [u8; 6]) -> libc::sockaddr_ll {
    // SAFETY: all-zero is a valid sockaddr_ll; the fields that matter are set below.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = ether_type.to_be();
    sll.sll_ifindex = ifindex as i32;
    sll.sll_halen = 6;
    sll.sll_addr[..6].copy_from_slice(&dst);
    sll
}

fn socket(domain: libc::c_int, ty: libc::c_int, proto: libc::c_int) -> io::Result<OwnedFd> {
    // SAFETY: plain syscall.
    let fd = unsafe { libc::socket(domain, ty, proto) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd was just returned by socket() and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn setsockopt<T>(fd: &OwnedFd, level: libc::c_int, name: libc::c_int, value: &T) -> io::Result<()> {
    // SAFETY: valid fd; the pointer and length describe `value`, alive for the call.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (value as *const T).cast(),
            size_of::<T>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn set_int(fd: &OwnedFd, level: libc::c_int, name: libc::c_int, v: libc::c_int) -> io::Result<()> {
    setsockopt(fd, level, name, &v)
}

fn attach_filter(fd: &OwnedFd, filter: &[libc::sock_filter]) -> io::Result<()> {
    let prog = libc::sock_fprog {
        len: filter.len() as u16,
        // The kernel copies the program and never writes through this pointer.
        filter: filter.as_ptr().cast_mut(),
    };
    setsockopt(fd, libc::SOL_SOCKET, libc::SO_ATTACH_FILTER, &prog)
}

fn bind_to_device(fd: &OwnedFd, ifname: &str) -> io::Result<()> {
    // SAFETY: valid fd; the pointer and length describe the name's bytes (no NUL needed).
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_BINDTODEVICE,
            ifname.as_ptr().cast(),
            ifname.len() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn check_sent(n: isize, len: usize) -> io::Result<()> {
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    if n as usize != len {
        return Err(io::Error::new(
            io::ErrorKind::WriteZero,
            format!("sent {n} of {len} bytes"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use ipf_common::{
        frame::{Claim, Frame, classify},
        maps::{FAMILY_V4, FAMILY_V6, addr16},
    };

    use super::*;

    const MAC: [u8; 6] = [0x02, 0, 0x5e, 0x10, 0x20, 0x30];

    #[test]
    fn gratuitous_arp_is_a_claim() {
        let ip = Ipv4Addr::new(192, 0, 2, 100);
        let f = gratuitous_arp_frame(ip, MAC);
        assert_eq!(
            classify(&f),
            Frame::Claim(Claim {
                family: FAMILY_V4,
                addr: addr16(&ip.octets()),
                mac: MAC,
            })
        );
        assert_eq!(&f[..6], &ETH_BROADCAST);
        assert_eq!(&f[14 + 24..], &ip.octets(), "target = sender");
    }

    #[test]
    fn unsolicited_na_is_a_claim_with_a_valid_checksum() {
        let ip: Ipv6Addr = "2001:db8::100".parse().unwrap_or(Ipv6Addr::UNSPECIFIED);
        for router in [false, true] {
            let f = unsolicited_na_frame(ip, MAC, router);
            assert_eq!(
                classify(&f),
                Frame::Claim(Claim {
                    family: FAMILY_V6,
                    addr: ip.octets(),
                    mac: MAC,
                })
            );
            let icmp = &f[54..];
            let mut acc = checksum::sum(&f[22..54], 0);
            acc += icmp.len() as u32 + u32::from(IPPROTO_ICMPV6);
            assert_eq!(checksum::fold(checksum::sum(icmp, acc)), 0);
            assert_eq!(icmp[4], if router { 0xa0 } else { 0x20 });
            assert_eq!(f[21], 255);
        }
    }

    #[test]
    fn vip_display_and_validation() {
        let mut v = Vip::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 100)), 24);
        v.broadcast = Some(Ipv4Addr::new(192, 0, 2, 255));
        v.scope = Some(253);
        v.label = Some("eth0:vip".into());
        assert_eq!(
            v.to_string(),
            "192.0.2.100/24 brd 192.0.2.255 scope link label eth0:vip"
        );
        assert!(v.validate().is_ok());
        v.prefix_len = 33;
        assert!(v.validate().is_err());
        let mut v6 = Vip::new(IpAddr::V6(Ipv6Addr::LOCALHOST), 64);
        assert!(v6.validate().is_ok());
        v6.label = Some("eth0:x".into());
        assert!(v6.validate().is_err());
    }
}
