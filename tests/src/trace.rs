//! Observation of a failover from the outside, for the failover benchmark's per-trial breakdown:
//! a packet capture (ARP and VRRP, kernel timestamps) on an interface, `ip -ts monitor` in a
//! namespace, and the agent's own timestamped log lines. All times are wall-clock nanoseconds
//! (CLOCK_REALTIME), the clock the kernel stamps packets with and the agent and `ip` print.

use std::{
    net::{Ipv4Addr, Ipv6Addr},
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use ipf_testbed::{Netns, Proc};

/// Wall-clock nanoseconds since the epoch.
pub type Ns = i128;

pub fn now_ns() -> Ns {
    to_ns(SystemTime::now())
}

pub fn to_ns(t: SystemTime) -> Ns {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as Ns)
}

/// What the capture keeps of a frame.
#[derive(Clone, Debug)]
pub enum Seen {
    /// ARP: operation, sender hardware and protocol address, target protocol address.
    Arp {
        op: u16,
        sha: [u8; 6],
        spa: Ipv4Addr,
        tpa: Ipv4Addr,
    },
    /// An IPv6 neighbour advertisement for `target`.
    Na { target: Ipv6Addr },
    /// A VRRP advertisement from `src` with `priority` and the addresses it lists.
    Vrrp {
        src: Ipv4Addr,
        priority: u8,
        addrs: Vec<Ipv4Addr>,
    },
}

#[derive(Clone, Debug)]
pub struct Frame {
    pub at: Ns,
    pub src_mac: [u8; 6],
    pub seen: Seen,
}

/// A packet socket in `ns` on `ifname` keeping ARP and VRRP frames with their kernel receive time.
pub struct Capture {
    frames: Arc<Mutex<Vec<Frame>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

// Classic BPF: accept ARP, IPv4 with protocol 112 (VRRP) and IPv6 neighbour advertisements (ICMPv6
// type 136 right after the fixed header, as announcements send them); everything else stays in the
// kernel, so the probe's thousands of datagrams a second cost the capture nothing.
const FILTER: [libc::sock_filter; 12] = [
    op(0x28, 0, 0, 12),     // ldh [12] (ethertype)
    op(0x15, 8, 0, 0x0806), // ARP → accept
    op(0x15, 0, 2, 0x0800), // not IPv4 → IPv6?
    op(0x30, 0, 0, 23),     // ldb [23] (protocol)
    op(0x15, 5, 6, 112),    // VRRP → accept, else drop
    op(0x15, 0, 5, 0x86dd), // not IPv6 → drop
    op(0x30, 0, 0, 20),     // ldb [20] (next header)
    op(0x15, 0, 3, 58),     // not ICMPv6 → drop
    op(0x30, 0, 0, 54),     // ldb [54] (ICMPv6 type)
    op(0x15, 0, 1, 136),    // neighbour advertisement → accept, else drop
    op(0x06, 0, 0, 0xffff), // accept
    op(0x06, 0, 0, 0),      // drop
];

const fn op(code: u16, jt: u8, jf: u8, k: u32) -> libc::sock_filter {
    libc::sock_filter { code, jt, jf, k }
}

impl Capture {
    pub fn start(ns: &Netns, ifname: &str) -> Self {
        let frames = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let ns_path = format!("/var/run/netns/{}", ns.name);
        let ifname = std::ffi::CString::new(ifname).unwrap();
        let thread = {
            let frames = frames.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                let file = std::fs::File::open(&ns_path).unwrap();
                // SAFETY: valid namespace fd; affects only this thread.
                assert_eq!(unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) }, 0);
                let sock = open_packet_socket(&ifname);
                ready_tx.send(()).unwrap();
                let mut buf = [0u8; 2048];
                while !stop.load(Ordering::Relaxed) {
                    // SAFETY: valid socket and buffer.
                    let n = unsafe { libc::recv(sock.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
                    if n <= 0 {
                        continue; // the receive timeout: look at the stop flag
                    }
                    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
                    // SAFETY: SIOCGSTAMPNS fills a timespec with the last packet's receive time.
                    let ok = unsafe { libc::ioctl(sock.as_raw_fd(), SIOCGSTAMPNS, &mut ts) } == 0;
                    let at = if ok {
                        Ns::from(ts.tv_sec) * 1_000_000_000 + Ns::from(ts.tv_nsec)
                    } else {
                        now_ns()
                    };
                    if let Some(f) = parse(&buf[..n as usize], at) {
                        frames.lock().unwrap().push(f);
                    }
                }
            })
        };
        ready_rx.recv().unwrap();
        Capture {
            frames,
            stop,
            thread: Some(thread),
        }
    }

    /// Frames received between `from` and `to`.
    pub fn between(&self, from: Ns, to: Ns) -> Vec<Frame> {
        self.frames
            .lock()
            .unwrap()
            .iter()
            .filter(|f| f.at >= from && f.at <= to)
            .cloned()
            .collect()
    }

    /// Forgets frames older than `before` (a run keeps only what its trials look at).
    pub fn forget(&self, before: Ns) {
        self.frames.lock().unwrap().retain(|f| f.at >= before);
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

const SIOCGSTAMPNS: libc::c_ulong = 0x8907;

/// A packet socket on `ifname`, in the calling thread's namespace: ARP, VRRP and NA frames (see
/// [`FILTER`]) both ways, Ethernet header included, a 100 ms receive timeout, kernel receive
/// timestamps. The capture here and the floor's (`floor::capture`) read it.
pub(crate) fn open_packet_socket(ifname: &std::ffi::CStr) -> OwnedFd {
    let proto = (libc::ETH_P_ALL as u16).to_be();
    // SAFETY: plain syscalls on a descriptor we own; every return value is checked.
    unsafe {
        let fd = libc::socket(libc::AF_PACKET, libc::SOCK_RAW, i32::from(proto));
        assert!(fd >= 0, "packet socket: {}", std::io::Error::last_os_error());
        let sock = OwnedFd::from_raw_fd(fd);
        let prog = libc::sock_fprog {
            len: FILTER.len() as u16,
            filter: FILTER.as_ptr().cast_mut(),
        };
        let set = |level, name, val: *const libc::c_void, len: usize| {
            assert_eq!(
                libc::setsockopt(fd, level, name, val, len as libc::socklen_t),
                0,
                "setsockopt {name}: {}",
                std::io::Error::last_os_error()
            );
        };
        set(
            libc::SOL_SOCKET,
            libc::SO_ATTACH_FILTER,
            (&raw const prog).cast(),
            std::mem::size_of::<libc::sock_fprog>(),
        );
        let tv = libc::timeval {
            tv_sec: 0,
            tv_usec: 100_000,
        };
        set(
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&raw const tv).cast(),
            std::mem::size_of::<libc::timeval>(),
        );
        let ifindex = libc::if_nametoindex(ifname.as_ptr());
        assert!(ifindex != 0, "no interface {ifname:?}");
        let mut sll: libc::sockaddr_ll = std::mem::zeroed();
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = proto;
        sll.sll_ifindex = ifindex as i32;
        assert_eq!(
            libc::bind(
                fd,
                (&raw const sll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t
            ),
            0,
            "bind: {}",
            std::io::Error::last_os_error()
        );
        // The first SIOCGSTAMPNS turns receive timestamps on (and has none to give yet). Not
        // SO_TIMESTAMPNS: that hands them out as control messages and leaves the ioctl's empty.
        let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        libc::ioctl(fd, SIOCGSTAMPNS, &mut ts);
        sock
    }
}

fn parse(b: &[u8], at: Ns) -> Option<Frame> {
    let src_mac: [u8; 6] = b.get(6..12)?.try_into().ok()?;
    let ethertype = u16::from_be_bytes([*b.get(12)?, *b.get(13)?]);
    let seen = match ethertype {
        0x0806 => {
            let a = b.get(14..42)?;
            Seen::Arp {
                op: u16::from_be_bytes([a[6], a[7]]),
                sha: a[8..14].try_into().ok()?,
                spa: Ipv4Addr::new(a[14], a[15], a[16], a[17]),
                tpa: Ipv4Addr::new(a[24], a[25], a[26], a[27]),
            }
        }
        0x0800 => {
            let ip = b.get(14..)?;
            let ihl = usize::from(ip.first()? & 0x0f) * 4;
            let vrrp = ip.get(ihl..)?;
            // v2 and v3 alike: the count at byte 3, the addresses from byte 8.
            let count = usize::from(*vrrp.get(3)?);
            let addrs = vrrp
                .get(8..8 + 4 * count)?
                .chunks_exact(4)
                .map(|a| Ipv4Addr::new(a[0], a[1], a[2], a[3]))
                .collect();
            Seen::Vrrp {
                src: Ipv4Addr::new(*ip.get(12)?, *ip.get(13)?, *ip.get(14)?, *ip.get(15)?),
                priority: *vrrp.get(2)?,
                addrs,
            }
        }
        0x86dd => {
            let icmp = b.get(54..78)?;
            let target: [u8; 16] = icmp[8..24].try_into().ok()?;
            Seen::Na {
                target: Ipv6Addr::from(target),
            }
        }
        _ => return None,
    };
    Some(Frame { at, src_mac, seen })
}

/// `ip -ts monitor WHAT...` in a namespace; its lines carry wall-clock timestamps.
pub struct IpMonitor {
    proc: Proc,
}

impl IpMonitor {
    pub fn start(ns: &Netns, what: &[&str]) -> Self {
        let mut cmd = ns.command("ip");
        // `ip -ts` prints local time: make that UTC, as the agent prints.
        cmd.env("TZ", "UTC").arg("-ts").arg("monitor").args(what);
        IpMonitor {
            proc: Proc::spawn("ip-monitor", cmd),
        }
    }

    /// (time, rest of line) of every event line so far.
    pub fn events(&self) -> Vec<(Ns, String)> {
        self.proc
            .lines()
            .iter()
            .filter_map(|l| {
                let rest = l.strip_prefix('[')?;
                let (ts, rest) = rest.split_once(']')?;
                Some((parse_utc(ts)?, rest.trim().to_owned()))
            })
            .collect()
    }
}

/// The agent's log lines (tracing's default format: an RFC 3339 UTC timestamp first) as
/// (time, line), colour codes removed.
pub fn log_events(lines: &[String]) -> Vec<(Ns, String)> {
    lines
        .iter()
        .filter_map(|l| {
            let plain = strip_ansi(l);
            let (ts, rest) = plain.split_once(' ')?;
            Some((parse_utc(ts.trim_end_matches('Z'))?, rest.to_owned()))
        })
        .collect()
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// `YYYY-MM-DDTHH:MM:SS[.fraction]` in UTC → nanoseconds since the epoch.
pub fn parse_utc(s: &str) -> Option<Ns> {
    let (date, time) = s.split_once('T')?;
    let mut d = date.split('-').map(|p| p.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let mut t = hms.split(':').map(|p| p.parse::<i64>().ok());
    let (hh, mm, ss) = (t.next()??, t.next()??, t.next()??);
    let digits: String = frac.chars().take_while(char::is_ascii_digit).take(9).collect();
    let nanos = format!("{digits:0<9}").parse::<i64>().ok()?;
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + hh * 3_600 + mm * 60 + ss;
    Some(Ns::from(secs) * 1_000_000_000 + Ns::from(nanos))
}

/// The MAC address of `ifname` in `ns`.
pub fn mac_of(ns: &Netns, ifname: &str) -> [u8; 6] {
    let out = ns.ip(&["link", "show", "dev", ifname]);
    let hex = out
        .split_whitespace()
        .skip_while(|w| *w != "link/ether")
        .nth(1)
        .unwrap()
        .to_owned();
    let mut mac = [0u8; 6];
    for (b, h) in mac.iter_mut().zip(hex.split(':')) {
        *b = u8::from_str_radix(h, 16).unwrap();
    }
    mac
}

pub fn format_mac(mac: &[u8; 6]) -> String {
    mac.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

/// Milliseconds from `from` to `to`.
pub fn ms(from: Ns, to: Ns) -> f64 {
    (to - from) as f64 / 1e6
}

/// How long to wait for `ip monitor` and log lines of a moment to reach us.
pub const SETTLE: Duration = Duration::from_millis(30);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_utc_timestamps() {
        assert_eq!(parse_utc("1970-01-01T00:00:01.5"), Some(1_500_000_000));
        assert_eq!(parse_utc("2026-12-01T11:27:20.523932"), Some(1_796_124_440_523_932_000));
        let line =
            "\u{1b}[2m2026-12-01T11:27:21.055746Z\u{1b}[0m \u{1b}[32m INFO\u{1b}[0m (VI_51) Entering MASTER STATE";
        let ev = log_events(&[line.to_owned()]);
        assert_eq!(ev[0].0, parse_utc("2026-12-01T11:27:21.055746").unwrap());
        assert!(ev[0].1.contains("Entering MASTER STATE"));
    }
}
