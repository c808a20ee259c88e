//! ipf-agent's network side effects between two network namespaces: VIPs over rtnetlink, VRRP adverts
//! from the raw sender, gratuitous ARP and unsolicited NAs, each captured on the peer and parsed with the
//! datapath's own classification and validation. Needs root.
#![allow(clippy::unwrap_used, reason = "tests")]

use std::{
    future::Future,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    time::{Duration, Instant},
};

use ipf_agent::{
    datapath::{Family, wire_addr},
    network::{AddressManager, AdvertSender, Announcer, NetError, Vip},
};
use ipf_common::{
    VridConfig, checksum,
    frame::{Claim, Frame, IPPROTO_ICMPV6, classify, vrrp_message},
    maps::{FAMILY_V4, FAMILY_V6, addr16, vrid_flags},
    vrrp::{Advert, AdvertFields, MCAST_V4, MCAST_V6, VridLookup, encode_advert, validate_advert},
};
use ipf_testbed::{Netns, in_netns, veth, wait_for};

const T: Duration = Duration::from_secs(10);

/// Runs the future `f` makes on a current-thread runtime inside `ns`.
fn block_on_in<F: Future>(ns: &Netns, f: impl FnOnce() -> F + Send) -> F::Output
where
    F::Output: Send,
{
    in_netns(ns, || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(f())
    })
}

/// Polls `f` until it returns `Some`, for at most `T`.
async fn eventually<R, Fut: Future<Output = Option<R>>>(what: &str, mut f: impl FnMut() -> Fut) -> R {
    let deadline = Instant::now() + T;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out after {T:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `ip -o link show dev IF`: "N: IF@peer: <...> ... link/ether MAC brd ..."
fn link_line(ns: &Netns, ifname: &str) -> String {
    ns.ip(&["-o", "link", "show", "dev", ifname])
}

fn link_index(ns: &Netns, ifname: &str) -> u32 {
    link_line(ns, ifname).split(':').next().unwrap().trim().parse().unwrap()
}

fn link_mac(ns: &Netns, ifname: &str) -> [u8; 6] {
    let line = link_line(ns, ifname);
    let text = line
        .split_whitespace()
        .skip_while(|w| *w != "link/ether")
        .nth(1)
        .unwrap();
    let mut mac = [0u8; 6];
    for (b, part) in mac.iter_mut().zip(text.split(':')) {
        *b = u8::from_str_radix(part, 16).unwrap();
    }
    mac
}

fn mac_text(mac: &[u8; 6]) -> String {
    ipf_agent::datapath::format_mac(mac)
}

fn sysctl(ns: &Netns, key: &str) -> String {
    ns.exec("sysctl", &["-n", key]).trim().to_owned()
}

fn v4(s: &str) -> IpAddr {
    IpAddr::V4(s.parse().unwrap())
}

fn v6(s: &str) -> IpAddr {
    IpAddr::V6(s.parse().unwrap())
}

/// An AF_PACKET socket on one interface of a namespace, receiving every frame.
struct Capture {
    fd: OwnedFd,
}

impl Capture {
    fn open(ns: &Netns, ifname: &str) -> Self {
        let ifindex = link_index(ns, ifname);
        in_netns(ns, || {
            let proto = (libc::ETH_P_ALL as u16).to_be();
            // SAFETY: plain syscall.
            let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, i32::from(proto)) };
            assert!(fd >= 0, "packet socket: {}", std::io::Error::last_os_error());
            // SAFETY: fd was just returned by socket() and is owned by nobody else.
            let fd = unsafe { OwnedFd::from_raw_fd(fd) };
            // SAFETY: all-zero is a valid sockaddr_ll; the fields that matter are set below.
            let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
            sll.sll_family = libc::AF_PACKET as u16;
            sll.sll_protocol = proto;
            sll.sll_ifindex = ifindex as i32;
            // SAFETY: valid fd and a sockaddr_ll of the stated size.
            let rc = unsafe {
                libc::bind(
                    fd.as_raw_fd(),
                    (&raw const sll).cast(),
                    size_of::<libc::sockaddr_ll>() as u32,
                )
            };
            assert_eq!(rc, 0, "bind: {}", std::io::Error::last_os_error());
            // A short receive time-out so `wait` can check its deadline and poke the sender.
            let tv = libc::timeval {
                tv_sec: 0,
                tv_usec: 50_000,
            };
            // SAFETY: valid fd and a timeval of the stated size.
            let rc = unsafe {
                libc::setsockopt(
                    fd.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_RCVTIMEO,
                    (&raw const tv).cast(),
                    size_of::<libc::timeval>() as u32,
                )
            };
            assert_eq!(rc, 0, "SO_RCVTIMEO: {}", std::io::Error::last_os_error());
            Capture { fd }
        })
    }

    /// One received frame, or `None` after the receive time-out.
    fn recv(&self, buf: &mut [u8]) -> Option<usize> {
        // SAFETY: valid fd and buffer.
        let n = unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        usize::try_from(n).ok()
    }

    /// Calls `poke` (which sends) every 250 ms until `pick` accepts a received frame.
    fn wait<R>(&self, what: &str, mut poke: impl FnMut(), mut pick: impl FnMut(&[u8]) -> Option<R>) -> R {
        let deadline = Instant::now() + T;
        let mut next_poke = Instant::now();
        let mut buf = vec![0u8; 65536];
        loop {
            let now = Instant::now();
            assert!(now < deadline, "timed out after {T:?} waiting for {what}");
            if now >= next_poke {
                poke();
                next_poke = now + Duration::from_millis(250);
            }
            if let Some(n) = self.recv(&mut buf)
                && let Some(v) = pick(&buf[..n])
            {
                return v;
            }
        }
    }
}

/// Two namespaces joined by `eth0`s; A is 192.0.2.1 and 2001:db8::1, B is .2 and ::2.
fn pair(prefix: &str) -> (Netns, Netns) {
    let a = Netns::new(&format!("{prefix}a"));
    let b = Netns::new(&format!("{prefix}b"));
    veth(
        &a,
        "eth0",
        &["192.0.2.1/24", "2001:db8::1/64"],
        &b,
        "eth0",
        &["192.0.2.2/24", "2001:db8::2/64"],
    );
    (a, b)
}

#[test]
fn vips_add_list_remove_idempotent_and_primary_address() {
    ipf_testbed::skip_unless_root!();
    let a = Netns::new("ipf-va");
    let b = Netns::new("ipf-vb");
    // A starts without IPv4, so the first VIP lands before its own address in the kernel's list.
    veth(&a, "eth0", &["2001:db8::1/64"], &b, "eth0", &["2001:db8::2/64"]);
    // New namespaces inherit IPv4 settings from the host (often 1 here, via systemd): start from the
    // kernel default so the test shows the manager turning it on.
    a.exec("sysctl", &["-qw", "net.ipv4.conf.all.promote_secondaries=0"]);
    a.exec("sysctl", &["-qw", "net.ipv4.conf.eth0.promote_secondaries=0"]);
    let ifindex = link_index(&a, "eth0");

    let vip4 = Vip {
        label: Some("eth0:vip".into()),
        ..Vip::new(v4("192.0.2.200"), 24)
    };
    // The second VIP of the subnet is a secondary of the first.
    let vip4b = Vip {
        broadcast: Some(Ipv4Addr::new(192, 0, 2, 255)),
        ..Vip::new(v4("192.0.2.201"), 24)
    };
    // Its own subnet (/32), as the kernel wants one scope per subnet.
    let vip4_link = Vip {
        scope: Some(253),
        ..Vip::new(v4("192.0.2.202"), 32)
    };
    let vip6 = Vip::new(v6("2001:db8::100"), 64);
    let vip6_ll = Vip::new(v6("fe80::100"), 64);
    let own4 = v4("192.0.2.1");
    let own6 = v6("2001:db8::1");

    block_on_in(&a, || async {
        let mgr = AddressManager::new().unwrap();
        let mgr = &mgr;
        let count = |addr: IpAddr, prefix: u8| async move {
            mgr.list(ifindex)
                .await
                .unwrap()
                .iter()
                .filter(|p| **p == (addr, prefix))
                .count()
        };

        // IPv4 with a label, added twice: one address.
        mgr.add(ifindex, &vip4).await.unwrap();
        mgr.add(ifindex, &vip4).await.unwrap();
        assert_eq!(count(vip4.addr, 24).await, 1);
        let shown = a.ip(&["-4", "-o", "addr", "show", "dev", "eth0"]);
        let line = shown.lines().find(|l| l.contains("192.0.2.200/24"));
        assert!(
            line.is_some_and(|l| l.contains("eth0:vip") && !l.contains(" brd ")),
            "labelled, no broadcast unless configured: {shown}"
        );
        assert_eq!(
            sysctl(&a, "net.ipv4.conf.eth0.promote_secondaries"),
            "1",
            "the manager turns promote_secondaries on"
        );
        mgr.add(ifindex, &vip4b).await.unwrap();
        let shown = a.ip(&["-4", "-o", "addr", "show", "dev", "eth0"]);
        let line = shown.lines().find(|l| l.contains("192.0.2.201/24"));
        assert!(
            line.is_some_and(|l| l.contains("brd 192.0.2.255 scope global")),
            "{shown}"
        );
        mgr.add(ifindex, &vip4_link).await.unwrap();
        let shown = a.ip(&["-4", "-o", "addr", "show", "dev", "eth0"]);
        assert!(shown.contains("192.0.2.202/32 scope link"), "{shown}");

        // The interface's own address comes after the VIP: only the exclusion keeps the VIP out.
        a.ip(&["addr", "add", "192.0.2.1/24", "dev", "eth0"]);
        assert_eq!(count(own4, 24).await, 1);
        assert_eq!(
            mgr.primary_address(ifindex, Family::V4, &[]).await.unwrap(),
            Some(vip4.addr),
            "kernel order: the VIP came first"
        );
        assert_eq!(
            mgr.primary_address(ifindex, Family::V4, &[vip4.addr, vip4b.addr])
                .await
                .unwrap(),
            Some(own4)
        );

        // IPv6, added twice, usable at once (no DAD); a link-local VIP too.
        mgr.add(ifindex, &vip6).await.unwrap();
        mgr.add(ifindex, &vip6).await.unwrap();
        mgr.add(ifindex, &vip6_ll).await.unwrap();
        assert_eq!(count(vip6.addr, 64).await, 1);
        assert_eq!(count(vip6_ll.addr, 64).await, 1);
        for line in a.ip(&["-6", "-o", "addr", "show", "dev", "eth0"]).lines() {
            if line.contains("2001:db8::100/64") || line.contains("fe80::100/64") {
                assert!(line.contains("nodad") && !line.contains("tentative"), "{line}");
            }
        }
        // Same address, other prefix: not the VIP asked for.
        let err = mgr.add(ifindex, &Vip::new(vip6.addr, 96)).await.unwrap_err();
        assert!(
            matches!(
                err,
                NetError::Conflict {
                    existing_prefix: 64,
                    ..
                }
            ),
            "{err}"
        );

        // The link-local source is the kernel's own fe80 address once DAD is done, never a VIP.
        let exclude = [vip6.addr, vip6_ll.addr];
        let exclude = &exclude;
        let ll = eventually("a usable link-local address", || async move {
            mgr.primary_address(ifindex, Family::V6, exclude).await.unwrap()
        })
        .await;
        let IpAddr::V6(ll6) = ll else {
            panic!("{ll} is not IPv6")
        };
        assert!(ll6.is_unicast_link_local() && ll != vip6_ll.addr, "{ll}");
        let scoped = a.ip(&["-6", "-o", "addr", "show", "dev", "eth0", "scope", "link"]);
        let line = scoped
            .lines()
            .find(|l| l.contains(&format!(" {ll}/64")))
            .unwrap_or_else(|| panic!("{ll} not in {scoped}"));
        assert!(!line.contains("tentative"), "{line}");

        // Removing the first VIP of 192.0.2.0/24 (the subnet's primary) keeps every other address.
        mgr.remove(ifindex, &vip4).await.unwrap();
        mgr.remove(ifindex, &vip4).await.unwrap();
        let left = mgr.list(ifindex).await.unwrap();
        for kept in [(vip4b.addr, 24), (own4, 24), (own6, 64), (vip6.addr, 64), (ll, 64)] {
            assert!(left.contains(&kept), "{kept:?} gone: {left:?}");
        }
        assert!(!left.iter().any(|(a, _)| *a == vip4.addr), "{left:?}");
        // A VIP is matched by prefix too: the interface's address under another prefix stays.
        mgr.remove(ifindex, &Vip::new(own4, 25)).await.unwrap();
        mgr.remove(ifindex, &Vip::new(own6, 128)).await.unwrap();
        assert_eq!(count(own4, 24).await, 1);
        assert_eq!(count(own6, 64).await, 1);

        for vip in [&vip4b, &vip4_link, &vip6, &vip6_ll] {
            mgr.remove(ifindex, vip).await.unwrap();
            mgr.remove(ifindex, vip).await.unwrap();
        }
        let left = mgr.list(ifindex).await.unwrap();
        let mut want = vec![(own4, 24), (own6, 64), (ll, 64)];
        let mut got = left.clone();
        want.sort();
        got.sort();
        assert_eq!(got, want, "only the interface's own addresses are left");
    });
    assert_eq!(
        sysctl(&a, "net.ipv4.conf.eth0.promote_secondaries"),
        "0",
        "restored when the manager is dropped"
    );
}

/// Validation configuration for one VRID, as the receiving datapath would hold it.
struct OneVrid(u8, VridConfig);

impl VridLookup for OneVrid {
    fn config(&self, _family: u8, vrid: u8) -> Option<VridConfig> {
        (vrid == self.0).then_some(self.1)
    }

    fn is_peer(&self, _family: u8, _vrid: u8, _addr: &[u8; 16]) -> bool {
        false
    }
}

fn encode(family: u8, src: IpAddr, dst: IpAddr, vip: IpAddr) -> Vec<u8> {
    let len = if family == FAMILY_V6 { 16 } else { 4 };
    let mut buf = [0u8; 64];
    let n = encode_advert(
        &AdvertFields {
            version: 3,
            family,
            vrid: 51,
            priority: 200,
            adver_int_cs: 100,
            addrs: &wire_addr(&vip)[..len],
            auth_pass: None,
            src: wire_addr(&src),
            dst: wire_addr(&dst),
        },
        &mut buf,
    )
    .unwrap();
    buf[..n].to_vec()
}

/// Sends `msg` until B captures it; returns the frame, its IP facts and the message offset.
fn capture_advert(
    cap: &Capture,
    sender: &AdvertSender,
    dst: IpAddr,
    msg: &[u8],
) -> (Vec<u8>, ipf_common::vrrp::IpMeta, usize) {
    let src = wire_addr(&sender.src());
    cap.wait(
        &format!("an advert from {}", sender.src()),
        || sender.send(dst, msg).unwrap(),
        |f| match classify(f) {
            Frame::Vrrp { ip, offset, .. } if ip.src == src => Some((f.to_vec(), ip, offset)),
            _ => None,
        },
    )
}

/// A batch leaves with one call: each message to its own destination, unaltered; a message of the
/// wrong family is refused alone and the rest still go.
#[test]
fn a_batch_of_adverts_reaches_each_destination() {
    ipf_testbed::skip_unless_root!();
    let (a, b) = pair("ipf-m");
    let cap = Capture::open(&b, "eth0");
    let s4 = block_on_in(&a, || async {
        let mgr = AddressManager::new().unwrap();
        let src4 = mgr
            .primary_address(link_index(&a, "eth0"), Family::V4, &[])
            .await
            .unwrap()
            .unwrap();
        AdvertSender::new("eth0", Family::V4, src4).unwrap()
    });
    let (group, peer) = (IpAddr::from(MCAST_V4), v4("192.0.2.2"));
    let to_group = encode(FAMILY_V4, s4.src(), group, v4("192.0.2.100"));
    let to_peer = encode(FAMILY_V4, s4.src(), peer, v4("192.0.2.101"));
    let src = wire_addr(&s4.src());
    let (mut got_group, mut got_peer) = (None, None);
    cap.wait(
        "both adverts of a batch",
        || {
            let r = s4.send_many(&[(v6("ff02::12"), &to_group), (group, &to_group), (peer, &to_peer)]);
            assert!(matches!(r[0], Err(NetError::WrongFamily { .. })), "{:?}", r[0]);
            assert!(r[1].is_ok() && r[2].is_ok(), "{r:?}");
        },
        |f| {
            if let Frame::Vrrp { ip, offset, .. } = classify(f)
                && ip.src == src
            {
                let msg = vrrp_message(f, &ip, offset).unwrap().to_vec();
                if ip.dst == wire_addr(&group) {
                    got_group = Some(msg);
                } else if ip.dst == wire_addr(&peer) {
                    got_peer = Some(msg);
                }
            }
            (got_group.is_some() && got_peer.is_some()).then_some(())
        },
    );
    assert_eq!(got_group.unwrap(), to_group, "sent unaltered");
    assert_eq!(got_peer.unwrap(), to_peer, "sent unaltered");
}

#[test]
fn adverts_leave_with_ttl_255_and_validate_on_the_peer() {
    ipf_testbed::skip_unless_root!();
    let (a, b) = pair("ipf-s");
    let mac_a = link_mac(&a, "eth0");
    let cap = Capture::open(&b, "eth0");
    let (s4, s6) = block_on_in(&a, || async {
        let mgr = AddressManager::new().unwrap();
        let mgr = &mgr;
        let ifindex = link_index(&a, "eth0");
        let src4 = mgr.primary_address(ifindex, Family::V4, &[]).await.unwrap().unwrap();
        let src6 = eventually("a usable link-local address", || async move {
            mgr.primary_address(ifindex, Family::V6, &[]).await.unwrap()
        })
        .await;
        (
            AdvertSender::new("eth0", Family::V4, src4).unwrap(),
            AdvertSender::new("eth0", Family::V6, src6).unwrap(),
        )
    });
    // From here on the test thread, outside the namespaces: the sockets stay in A.
    assert_eq!(s4.src(), v4("192.0.2.1"));
    let err = s4.send(v6("ff02::12"), &[0; 12]).unwrap_err();
    assert!(matches!(err, NetError::WrongFamily { .. }), "{err}");

    let expected = |family| Advert {
        family,
        version: 3,
        vrid: 51,
        priority: 200,
        addr_count: 1,
        adver_int_cs: 100,
    };

    // IPv4: 224.0.0.18 at 01:00:5e:00:00:12, TTL 255, protocol 112, CS6.
    let dst4 = IpAddr::from(MCAST_V4);
    let msg = encode(FAMILY_V4, s4.src(), dst4, v4("192.0.2.100"));
    let (frame, ip, offset) = capture_advert(&cap, &s4, dst4, &msg);
    assert_eq!(&frame[0..6], &[0x01, 0x00, 0x5e, 0x00, 0x00, 0x12]);
    assert_eq!(&frame[6..12], &mac_a);
    assert_eq!(frame[14 + 1], 0xc0, "TOS");
    assert_eq!(frame[14 + 8], 255, "TTL");
    assert_eq!(frame[14 + 9], 112, "protocol");
    assert_eq!(&frame[14 + 16..14 + 20], &MCAST_V4);
    assert_eq!(ip.ttl, 255);
    let got = vrrp_message(&frame, &ip, offset).unwrap();
    assert_eq!(got, &msg[..], "sent unaltered");
    let cfg = VridConfig {
        flags: vrid_flags::CONFIGURED,
        version: 3,
        primary_addr: wire_addr(&v4("192.0.2.2")),
        ..VridConfig::default()
    };
    assert_eq!(validate_advert(&ip, got, &OneVrid(51, cfg)), Ok(expected(FAMILY_V4)));

    // IPv6: ff02::12 at 33:33:00:00:00:12 from A's link-local address, hop limit 255.
    let dst6 = IpAddr::from(MCAST_V6);
    let msg = encode(FAMILY_V6, s6.src(), dst6, v6("2001:db8::100"));
    let (frame, ip, offset) = capture_advert(&cap, &s6, dst6, &msg);
    assert_eq!(&frame[0..6], &[0x33, 0x33, 0, 0, 0, 0x12]);
    assert_eq!(((frame[14] & 0x0f) << 4) | (frame[15] >> 4), 0xc0, "traffic class");
    assert_eq!(frame[14 + 6], 112, "next header");
    assert_eq!(frame[14 + 7], 255, "hop limit");
    assert_eq!(ip.dst, MCAST_V6);
    let IpAddr::V6(src6) = s6.src() else {
        panic!("{} is not IPv6", s6.src())
    };
    assert!(src6.is_unicast_link_local(), "{src6}");
    let got = vrrp_message(&frame, &ip, offset).unwrap();
    assert_eq!(got, &msg[..], "sent unaltered");
    // Any primary but the sender's: adverts from our own primary address are ours, not received.
    let cfg = VridConfig {
        primary_addr: wire_addr(&v6("fe80::2")),
        ..cfg
    };
    assert_eq!(validate_advert(&ip, got, &OneVrid(51, cfg)), Ok(expected(FAMILY_V6)));
}

#[test]
fn gratuitous_arp_and_unsolicited_na_move_the_peers_neighbour_entries() {
    ipf_testbed::skip_unless_root!();
    let (a, b) = pair("ipf-n");
    let mac = link_mac(&a, "eth0");
    let vip4 = Ipv4Addr::new(192, 0, 2, 100);
    let vip6: Ipv6Addr = "2001:db8::100".parse().unwrap();
    // B believes the VIPs are at another MAC; the announcements must move them to A's.
    for (fam, addr) in [("-4", vip4.to_string()), ("-6", vip6.to_string())] {
        b.ip(&[
            fam,
            "neigh",
            "add",
            &addr,
            "lladdr",
            "02:00:00:00:00:99",
            "dev",
            "eth0",
            "nud",
            "stale",
        ]);
    }
    let cap = Capture::open(&b, "eth0");
    let ann = in_netns(&a, || Announcer::new("eth0").unwrap());
    assert!(!ann.router_flag(), "IPv6 forwarding is off in a new namespace");

    let frame = cap.wait(
        "the gratuitous ARP",
        || ann.gratuitous_arp(vip4, mac).unwrap(),
        |f| {
            (classify(f)
                == Frame::Claim(Claim {
                    family: FAMILY_V4,
                    addr: addr16(&vip4.octets()),
                    mac,
                }))
            .then(|| f.to_vec())
        },
    );
    assert_eq!(&frame[0..6], &[0xff; 6], "broadcast");
    assert_eq!(&frame[6..12], &mac);
    assert_eq!(&frame[14 + 6..14 + 8], &[0, 1], "request");
    assert_eq!(&frame[14 + 24..14 + 28], &vip4.octets(), "target = sender");

    let frame = cap.wait(
        "the neighbour advertisement",
        || ann.unsolicited_na(vip6, mac).unwrap(),
        |f| {
            (classify(f)
                == Frame::Claim(Claim {
                    family: FAMILY_V6,
                    addr: vip6.octets(),
                    mac,
                }))
            .then(|| f.to_vec())
        },
    );
    assert_eq!(&frame[0..6], &[0x33, 0x33, 0, 0, 0, 1]);
    assert_eq!(frame[14 + 7], 255, "hop limit");
    assert_eq!(&frame[14 + 8..14 + 24], &vip6.octets(), "source: the VIP");
    assert_eq!(
        &frame[14 + 24..14 + 40],
        &[0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]
    );
    let icmp = &frame[54..];
    assert_eq!(icmp[4], 0x20, "Override only");
    assert_eq!(&icmp[24..32], &[2, 1, mac[0], mac[1], mac[2], mac[3], mac[4], mac[5]]);
    let mut acc = checksum::sum(&frame[14 + 8..14 + 40], 0);
    acc += icmp.len() as u32 + u32::from(IPPROTO_ICMPV6);
    assert_eq!(checksum::fold(checksum::sum(icmp, acc)), 0, "ICMPv6 checksum");

    // B's kernel took both (it checks the NA's hop limit and checksum).
    let want = mac_text(&mac);
    for (fam, addr) in [("-4", vip4.to_string()), ("-6", vip6.to_string())] {
        wait_for(&format!("B's entry for {addr} at {want}"), T, || {
            b.ip(&[fam, "neigh", "show", &addr, "dev", "eth0"])
                .contains(&want)
                .then_some(())
        });
    }
}
