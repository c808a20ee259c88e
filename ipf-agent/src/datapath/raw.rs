//! Raw-socket backend: an AF_PACKET socket on the interface, with a classic BPF filter that keeps only
//! VRRP, ARP and ICMPv6, running the same `ipf-common` classification and validation as the XDP program.
//! It cannot drop invalid packets before the stack (it only sees copies), but it counts and ignores them.

use std::{
    collections::HashMap,
    io,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    sync::{Arc, Mutex, MutexGuard},
    time::Instant,
};

use ipf_common::{
    Counter, DatapathEvent, IfaceConfig, VipKey, VipState, VridConfig, VridState,
    advert::{conflict_due, observe_advert},
    frame::{Frame, classify, vrrp_message},
    maps::{PeerKey, VRID_SLOTS, vrid_slot},
    vrrp::{RxError, VridLookup, validate_advert},
};
use tokio::{sync::mpsc, task::JoinHandle};

use super::{DatapathError, Tables};

/// The userspace twins of the BPF maps.
struct RawState {
    configs: Vec<VridConfig>,
    states: Vec<VridState>,
    iface: IfaceConfig,
    vips: HashMap<VipKey, VipState>,
    peers: HashMap<PeerKey, u8>,
    counters: Vec<u64>,
}

impl VridLookup for RawState {
    fn config(&self, family: u8, vrid: u8) -> Option<VridConfig> {
        self.configs.get(vrid_slot(family, vrid) as usize).copied()
    }

    fn is_peer(&self, family: u8, vrid: u8, addr: &[u8; 16]) -> bool {
        self.peers.contains_key(&PeerKey {
            family,
            vrid,
            _pad: [0; 2],
            addr: *addr,
        })
    }
}

impl RawState {
    fn count(&mut self, c: Counter) {
        if let Some(v) = self.counters.get_mut(c as usize) {
            *v += 1;
        }
    }

    /// One received frame, as the XDP program would handle it; returns the event to send, if any.
    fn handle_frame(&mut self, frame: &[u8], now_ns: u64) -> Option<DatapathEvent> {
        match classify(frame) {
            Frame::Other => None,
            Frame::Invalid(e) => {
                self.count(e.counter());
                None
            }
            Frame::Vrrp { ip, offset, src_mac } => {
                let Some(msg) = vrrp_message(frame, &ip, offset) else {
                    self.count(Counter::PacketLenErr);
                    return None;
                };
                let advert = match validate_advert(&ip, msg, self) {
                    Ok(a) => a,
                    Err(e) => {
                        self.count(e.counter());
                        if e != RxError::OwnAdvert {
                            tracing::debug!(counter = e.counter().name(), "raw path: VRRP packet ignored");
                        }
                        return None;
                    }
                };
                self.count(Counter::AdvertsRx);
                let slot = vrid_slot(ip.family, advert.vrid) as usize;
                let cfg = *self.configs.get(slot)?;
                let state = self.states.get_mut(slot)?;
                let kind = observe_advert(state, &cfg, &ip, &advert, &src_mac, now_ns);
                (kind != 0).then(|| DatapathEvent::advert(kind, &ip, &advert, src_mac, now_ns))
            }
            Frame::Claim(claim) => {
                self.count(if claim.family == ipf_common::maps::FAMILY_V6 {
                    Counter::NaRx
                } else {
                    Counter::ArpRx
                });
                let key = VipKey {
                    family: claim.family,
                    _pad: [0; 3],
                    addr: claim.addr,
                };
                let iface = self.iface;
                let vip = self.vips.get_mut(&key)?;
                let slot = vrid_slot(claim.family, vip.vrid) as usize;
                let (cfg, state) = (self.configs.get(slot)?, self.states.get(slot)?);
                if !conflict_due(vip, &iface, cfg, state, &claim.mac, now_ns) {
                    return None;
                }
                let vrid = vip.vrid;
                self.count(Counter::VipConflicts);
                Some(DatapathEvent::conflict(&claim, vrid, now_ns))
            }
        }
    }
}

/// Shared handle on the userspace tables.
#[derive(Clone)]
pub struct RawTables(Arc<Mutex<RawState>>);

impl RawTables {
    fn new() -> Self {
        RawTables(Arc::new(Mutex::new(RawState {
            configs: vec![VridConfig::default(); VRID_SLOTS as usize],
            states: vec![VridState::default(); VRID_SLOTS as usize],
            iface: IfaceConfig::default(),
            vips: HashMap::new(),
            peers: HashMap::new(),
            counters: vec![0; Counter::COUNT as usize],
        })))
    }

    fn lock(&self) -> MutexGuard<'_, RawState> {
        // A panic while holding the lock cannot leave the tables inconsistent (plain stores).
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Tables for RawTables {
    fn set_iface(&mut self, cfg: IfaceConfig) -> Result<(), DatapathError> {
        self.lock().iface = cfg;
        Ok(())
    }

    fn set_config(&mut self, slot: u32, cfg: VridConfig) -> Result<(), DatapathError> {
        if let Some(c) = self.lock().configs.get_mut(slot as usize) {
            *c = cfg;
        }
        Ok(())
    }

    fn reset_state(&mut self, slot: u32) -> Result<(), DatapathError> {
        if let Some(s) = self.lock().states.get_mut(slot as usize) {
            *s = VridState::default();
        }
        Ok(())
    }

    fn state(&self, slot: u32) -> Result<VridState, DatapathError> {
        Ok(self.lock().states.get(slot as usize).copied().unwrap_or_default())
    }

    fn insert_peer(&mut self, key: PeerKey) -> Result<(), DatapathError> {
        self.lock().peers.insert(key, 1);
        Ok(())
    }

    fn remove_peer(&mut self, key: &PeerKey) -> Result<(), DatapathError> {
        self.lock().peers.remove(key);
        Ok(())
    }

    fn insert_vip(&mut self, key: VipKey, vrid: u8) -> Result<(), DatapathError> {
        self.lock().vips.insert(key, VipState::owned_by(vrid));
        Ok(())
    }

    fn remove_vip(&mut self, key: &VipKey) -> Result<(), DatapathError> {
        self.lock().vips.remove(key);
        Ok(())
    }

    fn counters(&self) -> Result<Vec<u64>, DatapathError> {
        Ok(self.lock().counters.clone())
    }
}

/// Keeps the receive task alive.
pub struct RawHandle {
    task: JoinHandle<()>,
}

impl Drop for RawHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Classic BPF: accept IPv4 proto 112, IPv6 next header 112 or 58, and ARP; drop the rest in the kernel
/// so the agent is not woken by unrelated traffic.
fn socket_filter() -> Vec<libc::sock_filter> {
    const LDH: u16 = (libc::BPF_LD | libc::BPF_H | libc::BPF_ABS) as u16;
    const LDB: u16 = (libc::BPF_LD | libc::BPF_B | libc::BPF_ABS) as u16;
    const JEQ: u16 = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
    const RET: u16 = (libc::BPF_RET | libc::BPF_K) as u16;
    let op = |code, jt, jf, k| libc::sock_filter { code, jt, jf, k };
    vec![
        op(LDH, 0, 0, 12),     // 0: ethertype
        op(JEQ, 0, 2, 0x0800), // 1: IPv4?
        op(LDB, 0, 0, 23),     // 2: IPv4 protocol
        op(JEQ, 5, 6, 112),    // 3: VRRP → accept (9) else drop (10)
        op(JEQ, 0, 3, 0x86dd), // 4: IPv6?
        op(LDB, 0, 0, 20),     // 5: next header
        op(JEQ, 2, 0, 112),    // 6: VRRP → accept
        op(JEQ, 1, 2, 58),     // 7: ICMPv6 → accept else drop
        op(JEQ, 0, 1, 0x0806), // 8: ARP? (reached from 4 with A = ethertype)
        op(RET, 0, 0, 0xffff), // 9: accept
        op(RET, 0, 0, 0),      // 10: drop
    ]
}

fn open_socket(ifindex: u32) -> io::Result<OwnedFd> {
    let proto = (libc::ETH_P_ALL as u16).to_be();
    // SAFETY: plain syscall.
    let fd = unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            proto as i32,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd was just returned by socket() and is owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let filter = socket_filter();
    let prog = libc::sock_fprog {
        len: filter.len() as u16,
        filter: filter.as_ptr() as *mut _,
    };
    // SAFETY: valid fd and pointer to a sock_fprog that outlives the call.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ATTACH_FILTER,
            &prog as *const _ as *const _,
            std::mem::size_of::<libc::sock_fprog>() as u32,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: zeroed sockaddr_ll is valid; fields set below.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = proto;
    sll.sll_ifindex = ifindex as i32;
    // SAFETY: valid fd and sockaddr_ll of the stated size.
    let rc = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            &sll as *const _ as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_ll>() as u32,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fd)
}

/// Receives one frame; returns its length and whether it was sent by this host.
fn recv_frame(fd: &OwnedFd, buf: &mut [u8]) -> io::Result<(usize, bool)> {
    // SAFETY: zeroed sockaddr_ll is a valid out-parameter.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
    // SAFETY: valid fd, buffer and address out-parameters.
    let n = unsafe {
        libc::recvfrom(
            fd.as_raw_fd(),
            buf.as_mut_ptr() as *mut _,
            buf.len(),
            0,
            &mut sll as *mut _ as *mut libc::sockaddr,
            &mut len,
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((n as usize, sll.sll_pkttype == libc::PACKET_OUTGOING))
}

impl RawHandle {
    pub(super) fn start(
        iface: &str,
        ifindex: u32,
        tx: mpsc::Sender<DatapathEvent>,
    ) -> Result<(Self, RawTables), DatapathError> {
        let err = |source| DatapathError::RawSocket {
            iface: iface.to_owned(),
            source,
        };
        let fd = super::readable_fd(open_socket(ifindex).map_err(err)?).map_err(err)?;
        let tables = RawTables::new();
        let shared = tables.clone();
        let epoch = Instant::now();
        let task = tokio::spawn(async move {
            let mut buf = vec![0u8; 65536];
            loop {
                let Ok(mut guard) = fd.readable().await else {
                    break;
                };
                loop {
                    match recv_frame(fd.get_ref(), &mut buf) {
                        // Our own transmissions are not received adverts.
                        Ok((_, true)) => continue,
                        Ok((n, false)) => {
                            let now = monotonic_ns().unwrap_or_else(|| epoch.elapsed().as_nanos() as u64);
                            let event = shared.lock().handle_frame(&buf[..n], now);
                            if let Some(event) = event
                                && tx.send(event).await.is_err()
                            {
                                return;
                            }
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                            guard.clear_ready();
                            break;
                        }
                        Err(e) => {
                            tracing::warn!("raw receive: {e}");
                            guard.clear_ready();
                            break;
                        }
                    }
                }
            }
        });
        Ok((RawHandle { task }, tables))
    }
}

/// CLOCK_MONOTONIC in ns, the clock `bpf_ktime_get_ns` uses, so both paths report comparable times.
pub fn monotonic_ns() -> Option<u64> {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: valid timespec out-parameter.
    if unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) } != 0 {
        return None;
    }
    Some(ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_jumps_stay_in_program() {
        let f = socket_filter();
        for (i, ins) in f.iter().enumerate() {
            if ins.code == (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16 {
                assert!(i + 1 + (ins.jt as usize) < f.len());
                assert!(i + 1 + (ins.jf as usize) < f.len());
            }
        }
    }
}
