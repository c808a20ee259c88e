//! A generator of invalid VRRP for `cargo xtask bench flood`: prebuilt Ethernet frames sent in
//! batches with `sendmmsg` on an AF_PACKET socket that bypasses the qdisc, as fast as one core can.
//! The frames come from ipf-common's builders, each made wrong in exactly one way so that a receiver
//! that validates in RFC order counts it under one reason.

use std::{
    net::IpAddr,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use ipf_common::testing::{Advert, ip_frame};

/// One kind of flood packet and the ipf drop counter it is meant to land in.
pub struct Kind {
    pub name: &'static str,
    pub reason: &'static str,
    pub frame: Vec<u8>,
}

/// The VRRP instance under attack: a VRRPv2 unicast instance with PASS authentication.
pub struct Target {
    pub vrid: u8,
    pub interval_s: u8,
    pub password: [u8; 8],
    /// The backup's address (the flood's destination) and MAC.
    pub dst: IpAddr,
    pub dst_mac: [u8; 6],
    /// The real master's address (a peer: invalid packets claim to come from it).
    pub peer: IpAddr,
    /// The generator's own address (not a peer) and MAC.
    pub own: IpAddr,
    pub own_mac: [u8; 6],
}

/// The seven kinds. Everything but the flaw is right (priority 1, lower than the backup's, so that an
/// advert wrongly accepted neither refreshes nor ends the backup's wait for the master).
pub fn kinds(t: &Target) -> Vec<Kind> {
    let base = || {
        let mut a = Advert::v2(t.vrid, 1, &t.peer.to_string(), &["192.0.2.100"]);
        a.dst = Some(t.dst);
        a.adver_int_cs = u16::from(t.interval_s) * 100;
        a.auth_pass = Some(t.password);
        a
    };
    let ttl = Advert { ttl: 64, ..base() };
    let vrid = Advert {
        vrid: t.vrid.wrapping_add(1).max(1),
        ..base()
    };
    let mut bad_sum = base().message();
    bad_sum[6] ^= 0x5a;
    let mut wrong_pass = t.password;
    wrong_pass[0] ^= 0x20;
    let auth = Advert {
        auth_pass: Some(wrong_pass),
        ..base()
    };
    let truncated = base().message()[..6].to_vec();
    let v3 = Advert {
        version: 3,
        auth_pass: None,
        ..base()
    };
    let non_peer = Advert { src: t.own, ..base() };
    let raw = |payload: &[u8]| ip_frame(&t.peer, &t.dst, ipf_common::vrrp::IPPROTO_VRRP, 255, payload);
    let mut out = vec![
        Kind {
            name: "TTL 64",
            reason: "ip_ttl_err",
            frame: ttl.frame(),
        },
        Kind {
            name: "unknown VRID",
            reason: "vrid_unknown",
            frame: vrid.frame(),
        },
        Kind {
            name: "bad checksum",
            reason: "checksum_err",
            frame: raw(&bad_sum),
        },
        Kind {
            name: "wrong password",
            reason: "auth_failure",
            frame: auth.frame(),
        },
        Kind {
            name: "truncated (6 B)",
            reason: "packet_len_err",
            frame: raw(&truncated),
        },
        Kind {
            name: "wrong version (v3)",
            reason: "version_err",
            frame: v3.frame(),
        },
        Kind {
            name: "valid, from a non-peer",
            reason: "peer_unknown",
            frame: non_peer.frame(),
        },
    ];
    for k in &mut out {
        k.frame[0..6].copy_from_slice(&t.dst_mac);
        k.frame[6..12].copy_from_slice(&t.own_mac);
    }
    out
}

/// Frames per `sendmmsg` call.
const BATCH: usize = 512;

/// Sends `kinds` round-robin on `ifname` (in the calling thread's network namespace) until `duration`
/// has passed; returns how many of each kind the kernel took, and the time taken.
pub fn send(ifname: &str, kinds: &[Kind], duration: Duration) -> Result<(Vec<u64>, Duration)> {
    let ifname_c = std::ffi::CString::new(ifname)?;
    // SAFETY: plain libc calls on a socket we own; every pointer passed lives across the call.
    unsafe {
        let ifindex = libc::if_nametoindex(ifname_c.as_ptr());
        if ifindex == 0 {
            bail!("no interface {ifname}");
        }
        // Protocol 0: send only, nothing is queued to this socket on receive.
        let fd = libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(std::io::Error::last_os_error()).context("AF_PACKET socket");
        }
        // Owned from here on: closed on every return.
        let fd = <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd);
        let raw = std::os::fd::AsRawFd::as_raw_fd(&fd);
        let mut sll: libc::sockaddr_ll = std::mem::zeroed();
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_ifindex = ifindex as i32;
        if libc::bind(
            raw,
            (&raw const sll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as u32,
        ) != 0
        {
            return Err(std::io::Error::last_os_error()).context("bind AF_PACKET");
        }
        // Straight to the driver: the qdisc would only add a lock and a queue per packet.
        let one: libc::c_int = 1;
        libc::setsockopt(
            raw,
            libc::SOL_PACKET,
            libc::PACKET_QDISC_BYPASS,
            (&raw const one).cast(),
            std::mem::size_of::<libc::c_int>() as u32,
        );
        let mut iovs: Vec<libc::iovec> = (0..BATCH)
            .map(|i| {
                let f = &kinds[i % kinds.len()].frame;
                libc::iovec {
                    iov_base: f.as_ptr() as *mut libc::c_void,
                    iov_len: f.len(),
                }
            })
            .collect();
        let mut msgs: Vec<libc::mmsghdr> = iovs
            .iter_mut()
            .map(|iov| {
                let mut m: libc::mmsghdr = std::mem::zeroed();
                m.msg_hdr.msg_iov = iov;
                m.msg_hdr.msg_iovlen = 1;
                m
            })
            .collect();
        let mut counts = vec![0u64; kinds.len()];
        let start = Instant::now();
        let mut next = 0usize;
        while start.elapsed() < duration {
            // Each call starts where the last one stopped, so the kinds stay evenly mixed.
            let offset = next % kinds.len();
            let n = libc::sendmmsg(raw, msgs.as_mut_ptr().add(offset), (BATCH - offset) as u32, 0);
            if n < 0 {
                let e = std::io::Error::last_os_error();
                match e.raw_os_error() {
                    Some(libc::ENOBUFS | libc::EAGAIN | libc::EINTR) => continue,
                    _ => return Err(e).context("sendmmsg"),
                }
            }
            for i in 0..n as usize {
                counts[(offset + i) % kinds.len()] += 1;
            }
            next = offset + n as usize;
        }
        Ok((counts, start.elapsed()))
    }
}

#[cfg(test)]
mod tests {
    use ipf_agent::datapath::{Family, VridSpec};
    use ipf_common::{
        VridConfig, VridLookup,
        frame::{Frame, classify, vrrp_message},
        maps::addr16,
        testing::octets,
        validate_advert,
    };

    use super::*;

    /// The backup as the bench configures it, with the real master as its only peer.
    struct Backup {
        cfg: VridConfig,
        peer: [u8; 16],
    }

    impl VridLookup for Backup {
        fn config(&self, _family: u8, vrid: u8) -> Option<VridConfig> {
            (vrid == 51).then_some(self.cfg)
        }

        fn is_peer(&self, _family: u8, vrid: u8, addr: &[u8; 16]) -> bool {
            vrid == 51 && *addr == self.peer
        }
    }

    /// Each kind is rejected for the reason it is named after, and the advert they are all made from
    /// would be accepted.
    #[test]
    fn each_kind_fails_for_its_reason() {
        let peer = IpAddr::from([192, 0, 2, 1]);
        let t = Target {
            vrid: 51,
            interval_s: 1,
            password: *b"secret\0\0",
            dst: IpAddr::from([192, 0, 2, 2]),
            dst_mac: [2, 0, 0, 0, 0, 2],
            peer,
            own: IpAddr::from([192, 0, 2, 9]),
            own_mac: [2, 0, 0, 0, 0, 9],
        };
        let spec = VridSpec {
            family: Family::V4,
            vrid: 51,
            version: 2,
            priority: 100,
            adver_int: Duration::from_secs(1),
            primary_addr: Some(t.dst),
            unicast_peers: vec![peer],
            auth_pass: Some("secret".into()),
            expected_addrs: None,
            master: false,
            guard: false,
        };
        let backup = Backup {
            cfg: spec.config(),
            peer: addr16(&octets(&peer)),
        };
        let verdict = |frame: &[u8]| match classify(frame) {
            Frame::Invalid(e) => Err(e.counter().name()),
            Frame::Vrrp { ip, offset, .. } => {
                let msg = vrrp_message(frame, &ip, offset).ok_or("packet_len_err")?;
                validate_advert(&ip, msg, &backup).map_err(|e| e.counter().name())
            }
            _ => Err("not VRRP"),
        };
        let ks = kinds(&t);
        assert_eq!(ks.len(), 7);
        for k in &ks {
            assert_eq!(&k.frame[0..6], &t.dst_mac, "{}", k.name);
            assert_eq!(verdict(&k.frame).map(|a| a.vrid), Err(k.reason), "{}", k.name);
        }
        // The non-peer's advert is otherwise valid: from the peer's address it would be accepted.
        let mut from_peer = Advert::v2(51, 1, "192.0.2.1", &["192.0.2.100"]);
        from_peer.dst = Some(t.dst);
        from_peer.auth_pass = Some(t.password);
        assert!(verdict(&from_peer.frame()).is_ok());
    }
}
