//! VRRP advertisements out: a raw IP socket for protocol 112 per interface, family and source address
//! (the instances sharing them share it), sending a batch of adverts with one `sendmmsg`.

use std::{
    io,
    net::IpAddr,
    os::fd::{AsRawFd, OwnedFd},
};

use ipf_common::vrrp::{IPPROTO_VRRP, VRRP_TTL};

use super::{
    NetError,
    sys::{SockAddr, attach_filter, bind_to_device, check_sent, index_of, set_int, setsockopt, socket},
};
use crate::datapath::Family;

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
        // One socket carries the adverts of every instance with this source, and a burst (hundreds
        // of groups taking over at once) must not find the default send buffer (~200 KiB, a few
        // hundred small packets' worth) full. SO_SNDBUFFORCE goes past wmem_max with CAP_NET_ADMIN,
        // which the agent has; without it the kernel caps SO_SNDBUF at wmem_max.
        let room: libc::c_int = 1 << 20;
        if set_int(&fd, libc::SOL_SOCKET, libc::SO_SNDBUFFORCE, room).is_err() {
            let _ = set_int(&fd, libc::SOL_SOCKET, libc::SO_SNDBUF, room);
        }
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

    fn check_family(&self, dst: IpAddr) -> Result<(), NetError> {
        if Family::of(&dst) != self.family {
            return Err(NetError::WrongFamily {
                op: "sending an advert",
                iface: self.iface.clone(),
                addr: dst,
                family: self.family,
            });
        }
        Ok(())
    }

    fn send_error(&self, dst: IpAddr, source: io::Error) -> NetError {
        NetError::Socket {
            op: "sending an advert",
            iface: self.iface.clone(),
            addr: Some(dst),
            source,
        }
    }

    /// Sends encoded VRRP messages, each to its destination, with as few `sendmmsg` calls as the
    /// kernel takes them in; one result per message, in order.
    pub fn send_many(&self, msgs: &[(IpAddr, &[u8])]) -> Vec<Result<(), NetError>> {
        let mut results: Vec<Result<(), NetError>> = msgs.iter().map(|(dst, _)| self.check_family(*dst)).collect();
        let todo: Vec<usize> = (0..msgs.len()).filter(|i| results[*i].is_ok()).collect();
        let addrs: Vec<SockAddr> = todo.iter().map(|i| SockAddr::new(msgs[*i].0, self.ifindex)).collect();
        let mut iovs: Vec<libc::iovec> = todo
            .iter()
            .map(|i| libc::iovec {
                iov_base: msgs[*i].1.as_ptr().cast_mut().cast(),
                iov_len: msgs[*i].1.len(),
            })
            .collect();
        let mut hdrs: Vec<libc::mmsghdr> = addrs
            .iter()
            .zip(iovs.iter_mut())
            .map(|(sa, iov)| {
                // SAFETY: all-zero is a valid msghdr (no control data, no flags); the fields that
                // matter are set below.
                let mut h: libc::mmsghdr = unsafe { std::mem::zeroed() };
                h.msg_hdr.msg_name = sa.as_ptr().cast_mut().cast();
                h.msg_hdr.msg_namelen = sa.len();
                h.msg_hdr.msg_iov = iov;
                h.msg_hdr.msg_iovlen = 1;
                h
            })
            .collect();
        let mut at = 0;
        while at < hdrs.len() {
            let left = &mut hdrs[at..];
            let count = u32::try_from(left.len()).unwrap_or(u32::MAX);
            // SAFETY: valid fd; every header points at a live address, iovec and message (`addrs`,
            // `iovs`, `msgs`), all alive until after the call; the kernel writes only `msg_len`.
            let n = unsafe { libc::sendmmsg(self.fd.as_raw_fd(), left.as_mut_ptr(), count, 0) };
            if n <= 0 {
                // The first message of the rest failed: report it and go on with the next one.
                let i = todo[at];
                let e = if n < 0 {
                    io::Error::last_os_error()
                } else {
                    io::Error::new(io::ErrorKind::WriteZero, "sendmmsg sent nothing")
                };
                results[i] = Err(self.send_error(msgs[i].0, e));
                at += 1;
                continue;
            }
            for k in 0..n as usize {
                let i = todo[at + k];
                let sent = hdrs[at + k].msg_len as isize;
                results[i] = check_sent(sent, msgs[i].1.len()).map_err(|e| self.send_error(msgs[i].0, e));
            }
            at += n as usize;
        }
        results
    }

    /// Sends one encoded VRRP message to `dst` (the VRRP group or a unicast peer).
    pub fn send(&self, dst: IpAddr, msg: &[u8]) -> Result<(), NetError> {
        self.check_family(dst)?;
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
        check_sent(n, msg.len()).map_err(|source| self.send_error(dst, source))
    }
}
