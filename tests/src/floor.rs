//! The kernel's floor under a node's adverts, for `bench-scale`: the VRRP adverts a running agent
//! sends, captured as they leave its interface and replayed on that interface with the same batch
//! size, once per interval, by a thread that does nothing else. The thread's CPU time is then the
//! kernel's work for those packets (the send path, and on a veth the switch and the receivers'
//! input, which the kernel runs in the sender's context) and almost nothing of its own: what any
//! VRRP implementation pays for sending them, whatever its design. The caller stops the agents
//! (SIGSTOP) between capture and replay: their XDP programs stay attached, so the receivers meet the
//! copies as the adverts of a known master, as they met the originals, and nothing else runs.

use std::{
    collections::HashSet,
    io,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail, ensure};

const IPPROTO_VRRP: u8 = 112;
const ETH_HLEN: usize = 14;

fn cvt(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// Sets a socket option from its bytes.
fn set_opt(fd: &OwnedFd, level: libc::c_int, name: libc::c_int, value: &[u8]) -> io::Result<()> {
    // SAFETY: valid fd; the pointer and length describe `value`, alive for the call.
    cvt(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            value.as_ptr().cast(),
            value.len() as libc::socklen_t,
        )
    })
    .map(drop)
}

/// The IPv4 VRRP packets (IP header included) leaving `ifname` in the calling thread's namespace
/// during `span`, one per VRID: a Master sends one an interval, so a span over an interval catches
/// every Master's.
pub fn capture(ifname: &str, span: Duration) -> Result<Vec<Vec<u8>>> {
    let fd = crate::trace::open_packet_socket(&std::ffi::CString::new(ifname)?);
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    let mut buf = vec![0u8; 2048];
    let end = Instant::now() + span;
    while Instant::now() < end {
        // SAFETY: an all-zero sockaddr_ll is valid; `recvfrom` fills it in.
        let mut from: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::sockaddr_ll>() as u32;
        // SAFETY: valid fd; the buffer and address pointers describe live, writable memory.
        let n = unsafe {
            libc::recvfrom(
                fd.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                0,
                (&raw mut from).cast(),
                &raw mut len,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted) {
                continue;
            }
            return Err(e).context("capturing adverts");
        }
        // The Ethernet header off: the replay sends from the IP header on.
        let Some(p) = buf[..n as usize].get(ETH_HLEN..) else {
            continue;
        };
        if from.sll_pkttype != libc::PACKET_OUTGOING
            || from.sll_protocol != (libc::ETH_P_IP as u16).to_be()
            || p.len() < 22
            || p[0] >> 4 != 4
            || p[9] != IPPROTO_VRRP
        {
            continue;
        }
        let ihl = usize::from(p[0] & 0x0f) * 4;
        // One per VRID (the byte after the advert's version and type).
        if let Some(&vrid) = p.get(ihl + 1)
            && seen.insert(vrid)
        {
            out.push(p.to_vec());
        }
    }
    Ok(out)
}

/// Sends `packets` (IPv4, header included) out of `ifname` every `interval` for `duration`, in
/// `sendmmsg` batches of at most `batch`, from the calling thread; returns the thread's CPU seconds
/// over that time.
pub fn replay(ifname: &str, packets: &[Vec<u8>], interval: Duration, batch: usize, duration: Duration) -> Result<f64> {
    ensure!(batch > 0, "a batch holds at least one advert");
    if packets.is_empty() {
        // A node that is Master of no group sends no adverts: its floor is nothing.
        return Ok(0.0);
    }
    // IPPROTO_RAW: the header comes with the packet (IP_HDRINCL) and the socket never receives.
    // SAFETY: plain socket call; the descriptor is owned at once.
    let fd = unsafe {
        OwnedFd::from_raw_fd(
            cvt(libc::socket(
                libc::AF_INET,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::IPPROTO_RAW,
            ))
            .context("raw IPv4 socket")?,
        )
    };
    let name = std::ffi::CString::new(ifname)?;
    set_opt(&fd, libc::SOL_SOCKET, libc::SO_BINDTODEVICE, name.as_bytes_with_nul()).context("SO_BINDTODEVICE")?;
    // As the agent's socket: its own node's stack does not get the copies back.
    set_opt(&fd, libc::IPPROTO_IP, libc::IP_MULTICAST_LOOP, &0i32.to_ne_bytes()).context("IP_MULTICAST_LOOP")?;
    let dsts: Vec<libc::sockaddr_in> = packets
        .iter()
        .map(|p| libc::sockaddr_in {
            sin_family: libc::AF_INET as u16,
            sin_port: 0,
            sin_addr: libc::in_addr {
                s_addr: u32::from_ne_bytes([p[16], p[17], p[18], p[19]]),
            },
            sin_zero: [0; 8],
        })
        .collect();
    let mut iovs: Vec<libc::iovec> = packets
        .iter()
        .map(|p| libc::iovec {
            iov_base: p.as_ptr().cast_mut().cast(),
            iov_len: p.len(),
        })
        .collect();
    let mut msgs: Vec<libc::mmsghdr> = iovs
        .iter_mut()
        .zip(&dsts)
        .map(|(iov, dst)| {
            // SAFETY: an all-zero msghdr is valid; name and data are set here.
            let mut h: libc::msghdr = unsafe { std::mem::zeroed() };
            h.msg_name = std::ptr::from_ref(dst).cast_mut().cast();
            h.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as u32;
            h.msg_iov = iov;
            h.msg_iovlen = 1;
            libc::mmsghdr { msg_hdr: h, msg_len: 0 }
        })
        .collect();
    let cpu0 = thread_cpu_secs()?;
    let start = Instant::now();
    let mut tick = start;
    while tick < start + duration {
        for chunk in msgs.chunks_mut(batch) {
            // SAFETY: valid fd; every header points into `dsts`, `iovs` and `packets`, all alive
            // and unmoved for the call.
            let n = unsafe { libc::sendmmsg(fd.as_raw_fd(), chunk.as_mut_ptr(), chunk.len() as u32, 0) };
            if n < 0 {
                let e = io::Error::last_os_error();
                // A full queue loses a batch, as it would the agent's; the floor is still the floor.
                if e.kind() != io::ErrorKind::WouldBlock {
                    return Err(e).context("replaying adverts");
                }
            }
        }
        tick += interval;
        if let Some(wait) = tick.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
    let cpu = thread_cpu_secs()? - cpu0;
    if start.elapsed() > duration + interval * 2 + Duration::from_secs(1) {
        bail!("replaying on {ifname} fell behind its schedule");
    }
    Ok(cpu)
}

/// The calling thread's CPU time (the scheduler's, to the nanosecond).
fn thread_cpu_secs() -> Result<f64> {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: a valid clock id and a writable timespec.
    cvt(unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &raw mut ts) }).context("thread CPU clock")?;
    Ok(ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9)
}
