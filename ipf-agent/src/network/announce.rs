//! Gratuitous ARP and unsolicited neighbour advertisements as whole Ethernet frames.

use std::{
    io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    os::fd::{AsRawFd, OwnedFd},
};

use ipf_common::{
    checksum,
    frame::{ETH_P_ARP, ETH_P_IPV4, ETH_P_IPV6, ICMPV6_NEIGHBOR_ADVERT, IPPROTO_ICMPV6},
};

use super::{
    NetError,
    sys::{check_sent, index_of, link_addr, socket},
};

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

    /// Sends a complete Ethernet frame (announcements; conflict probes).
    pub fn send_frame(&self, ether_type: u16, frame: &[u8], op: &'static str, ip: IpAddr) -> Result<(), NetError> {
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
    arp_request_frame(mac, ip, ETH_BROADCAST, ip)
}

/// An ARP probe (RFC 5227 §2.1.1): a broadcast ARP request from `mac` with sender protocol address
/// 0.0.0.0 and target hardware address zero, so no receiver's ARP cache changes; a holder of `ip`
/// answers.
pub fn arp_probe_frame(ip: Ipv4Addr, mac: [u8; 6]) -> [u8; ARP_FRAME_LEN] {
    arp_request_frame(mac, Ipv4Addr::UNSPECIFIED, [0; 6], ip)
}

/// A broadcast Ethernet ARP request.
fn arp_request_frame(mac: [u8; 6], sender: Ipv4Addr, target_mac: [u8; 6], target: Ipv4Addr) -> [u8; ARP_FRAME_LEN] {
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
    arp[14..18].copy_from_slice(&sender.octets());
    arp[18..24].copy_from_slice(&target_mac);
    arp[24..28].copy_from_slice(&target.octets());
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
}
