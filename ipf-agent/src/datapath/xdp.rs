//! XDP backend: loads `ipf-xdp` with aya, attaches it, drains its ring buffer and reads its maps.

use std::os::fd::AsFd as _;

use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, HashMap, MapData, PerCpuArray, RingBuf},
    programs::{Xdp, xdp::XdpMode},
};
use ipf_common::{Counter, DatapathEvent, IfaceConfig, VipKey, VipState, VridConfig, VridState, maps::PeerKey};
use tokio::{sync::mpsc, task::JoinHandle};

use super::{ActiveMode, DatapathError, DatapathOptions, Tables};

/// The compiled XDP object, built by build.rs.
pub static PROGRAM: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/ipf-xdp"));

pub use super::attach::PROGRAM_NAME;

/// Keeps the program attached (the link lives in `Ebpf`, or in `_attached` when it outlives a crash)
/// and the drain tasks running.
pub struct XdpHandle {
    _attached: Option<super::attach::Attached>,
    _ebpf: Ebpf,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for XdpHandle {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// The BPF maps.
pub struct XdpTables {
    vrid_config: Array<MapData, VridConfig>,
    vrid_state: Array<MapData, VridState>,
    /// `VRID_STATE` mapped into our memory (the map is `BPF_F_MMAPABLE`): a Backup's master-down
    /// check reads it without a syscall. `None` when mapping failed (the lookups are syscalls then).
    state_view: Option<StateView>,
    iface: Array<MapData, IfaceConfig>,
    vips: HashMap<MapData, VipKey, VipState>,
    peers: HashMap<MapData, PeerKey, u8>,
    counters: PerCpuArray<MapData, u64>,
}

fn map_err(op: &'static str, map: &'static str) -> impl FnOnce(aya::maps::MapError) -> DatapathError {
    move |source| DatapathError::Map { op, map, source }
}

fn kernel_level(level: log::LevelFilter) -> u8 {
    // aya-log-common levels: Error=1 .. Trace=5; 0 disables all.
    match level {
        log::LevelFilter::Off => 0,
        log::LevelFilter::Error => 1,
        log::LevelFilter::Warn => 2,
        log::LevelFilter::Info => 3,
        log::LevelFilter::Debug => 4,
        log::LevelFilter::Trace => 5,
    }
}

/// Loads the program with verbose kernel logging pruned to `level`.
pub fn load(level: log::LevelFilter) -> Result<Ebpf, DatapathError> {
    raise_memlock_limit();
    let level = kernel_level(level);
    EbpfLoader::new()
        .override_global(aya_log::LEVEL, &level, false)
        .load(PROGRAM)
        .map_err(|e| DatapathError::Load(Box::new(e)))
}

/// Loads the XDP function into the kernel (verifier run), without attaching it.
pub fn load_program(ebpf: &mut Ebpf) -> Result<&mut Xdp, DatapathError> {
    let prog: &mut Xdp = ebpf
        .program_mut(PROGRAM_NAME)
        .ok_or_else(|| DatapathError::Load(format!("program {PROGRAM_NAME} missing from the object").into()))?
        .try_into()
        .map_err(|e: aya::programs::ProgramError| DatapathError::Load(Box::new(e)))?;
    prog.load().map_err(|e| DatapathError::Load(Box::new(e)))?;
    Ok(prog)
}

impl XdpTables {
    /// Takes the maps out of a loaded object.
    pub fn take(ebpf: &mut Ebpf) -> Result<Self, DatapathError> {
        fn take<T: TryFrom<aya::maps::Map, Error = aya::maps::MapError>>(
            ebpf: &mut Ebpf,
            name: &'static str,
        ) -> Result<T, DatapathError> {
            let map = ebpf
                .take_map(name)
                .ok_or_else(|| DatapathError::Load(format!("map {name} missing from the object").into()))?;
            T::try_from(map).map_err(map_err("open", name))
        }
        let vrid_state: Array<MapData, VridState> = take(ebpf, "VRID_STATE")?;
        let state_view = StateView::new(&vrid_state)
            .map_err(|e| tracing::debug!("VRID_STATE not mapped ({e}); reading it with lookups"))
            .ok();
        Ok(XdpTables {
            vrid_config: take(ebpf, "VRID_CONFIG")?,
            vrid_state,
            state_view,
            iface: take(ebpf, "IFACE_CONFIG")?,
            vips: take(ebpf, "VIPS")?,
            peers: take(ebpf, "PEERS")?,
            counters: take(ebpf, "COUNTERS")?,
        })
    }
}

impl Tables for XdpTables {
    fn set_iface(&mut self, cfg: IfaceConfig) -> Result<(), DatapathError> {
        self.iface.set(0, cfg, 0).map_err(map_err("set", "IFACE_CONFIG"))
    }

    fn set_config(&mut self, slot: u32, cfg: VridConfig) -> Result<(), DatapathError> {
        self.vrid_config
            .set(slot, cfg, 0)
            .map_err(map_err("set", "VRID_CONFIG"))
    }

    fn reset_state(&mut self, slot: u32) -> Result<(), DatapathError> {
        self.vrid_state
            .set(slot, VridState::default(), 0)
            .map_err(map_err("set", "VRID_STATE"))
    }

    fn state(&self, slot: u32) -> Result<VridState, DatapathError> {
        if let Some(v) = self.state_view.as_ref().and_then(|v| v.get(slot)) {
            return Ok(v);
        }
        self.vrid_state.get(&slot, 0).map_err(map_err("get", "VRID_STATE"))
    }

    fn insert_peer(&mut self, key: PeerKey) -> Result<(), DatapathError> {
        self.peers.insert(key, 1, 0).map_err(map_err("insert", "PEERS"))
    }

    fn remove_peer(&mut self, key: &PeerKey) -> Result<(), DatapathError> {
        match self.peers.remove(key) {
            Err(aya::maps::MapError::KeyNotFound) | Ok(()) => Ok(()),
            Err(e) => Err(map_err("remove", "PEERS")(e)),
        }
    }

    fn insert_vip(&mut self, key: VipKey, vrid: u8) -> Result<(), DatapathError> {
        self.vips
            .insert(key, VipState::owned_by(vrid), 0)
            .map_err(map_err("insert", "VIPS"))
    }

    fn remove_vip(&mut self, key: &VipKey) -> Result<(), DatapathError> {
        match self.vips.remove(key) {
            Err(aya::maps::MapError::KeyNotFound) | Ok(()) => Ok(()),
            Err(e) => Err(map_err("remove", "VIPS")(e)),
        }
    }

    fn counters(&self) -> Result<Vec<u64>, DatapathError> {
        Counter::ALL
            .iter()
            .map(|c| {
                let per_cpu = self.counters.get(&(*c as u32), 0).map_err(map_err("get", "COUNTERS"))?;
                Ok(per_cpu.iter().sum())
            })
            .collect()
    }
}

impl XdpHandle {
    /// Loads, attaches in the first mode that works, and starts draining events into `tx`.
    pub(super) fn start(
        opts: &DatapathOptions,
        ifindex: u32,
        modes: &[(XdpMode, &'static str)],
        tx: mpsc::Sender<DatapathEvent>,
    ) -> Result<(Self, XdpTables, ActiveMode), DatapathError> {
        let mut ebpf = load(opts.kernel_log_level)?;
        let mut tasks = Vec::new();
        // Kernel log records go to the `log` crate, which tracing-subscriber forwards. The program
        // logs at debug level only, and its level is fixed at load: below that nothing is ever
        // written, so the log ring (128 KiB, mapped twice) is not mapped at all.
        if opts.kernel_log_level >= log::LevelFilter::Debug {
            match aya_log::EbpfLogger::init(&mut ebpf) {
                Ok(logger) => match super::readable_fd(logger) {
                    Ok(mut logger) => tasks.push(tokio::spawn(async move {
                        while let Ok(mut guard) = logger.readable_mut().await {
                            guard.get_inner_mut().flush();
                            guard.clear_ready();
                        }
                    })),
                    Err(e) => tracing::warn!("eBPF log drain unavailable: {e}"),
                },
                Err(e) => tracing::debug!("eBPF logger not initialised: {e}"),
            }
        }
        let tables = XdpTables::take(&mut ebpf)?;
        let ring = ebpf
            .take_map("EVENTS")
            .ok_or_else(|| DatapathError::Load("map EVENTS missing from the object".into()))?;
        let ring = RingBuf::try_from(ring).map_err(map_err("open", "EVENTS"))?;
        let prog = load_program(&mut ebpf)?;
        let mut attached = None;
        let mut last_err = None;
        let mut nl_attached = None;
        for (mode, label) in modes {
            let result = if opts.outlive_crash {
                prog.fd()
                    .map_err(|source| DatapathError::Attach {
                        iface: opts.interface.clone(),
                        mode: label,
                        source,
                    })
                    .and_then(|fd| {
                        super::attach::attach(ifindex, fd.as_fd(), *mode).map_err(|source| {
                            DatapathError::NetlinkAttach {
                                iface: opts.interface.clone(),
                                mode: label,
                                source,
                            }
                        })
                    })
                    .map(|a| nl_attached = Some(a))
            } else {
                prog.attach_to_if_index(ifindex, *mode)
                    .map(drop)
                    .map_err(|source| DatapathError::Attach {
                        iface: opts.interface.clone(),
                        mode: label,
                        source,
                    })
            };
            match result {
                Ok(()) => {
                    attached = Some(if *mode == XdpMode::Skb {
                        ActiveMode::XdpSkb
                    } else {
                        ActiveMode::XdpDriver
                    });
                    break;
                }
                Err(e) => {
                    // The fallback's one log line says why; the per-mode detail is for debugging.
                    tracing::debug!(interface = %opts.interface, mode = label, "XDP attach failed: {e}");
                    last_err = Some(e);
                }
            }
        }
        let Some(mode) = attached else {
            return Err(last_err.unwrap_or_else(|| DatapathError::Spec("no XDP mode to try".into())));
        };
        let mut ring = super::readable_fd(ring).map_err(|source| DatapathError::RawSocket {
            iface: opts.interface.clone(),
            source,
        })?;
        tasks.push(tokio::spawn(async move {
            loop {
                let Ok(mut guard) = ring.readable_mut().await else {
                    break;
                };
                let rb = guard.get_inner_mut();
                while let Some(item) = rb.next() {
                    if let Some(event) = parse_event(&item)
                        && tx.send(event).await.is_err()
                    {
                        return;
                    }
                }
                guard.clear_ready();
            }
        }));
        Ok((
            XdpHandle {
                _attached: nl_attached,
                _ebpf: ebpf,
                tasks,
            },
            tables,
            mode,
        ))
    }
}

/// A read-only mapping of the `VRID_STATE` array (entries at a stride of their size rounded up to 8
/// bytes, as the kernel lays out an mmapable array).
struct StateView {
    base: std::ptr::NonNull<u8>,
    len: usize,
    entries: u32,
}

// SAFETY: the mapping is plain shared memory, read with volatile copies; it lives until `Drop`.
unsafe impl Send for StateView {}
// SAFETY: as above; nothing writes through it.
unsafe impl Sync for StateView {}

const STATE_STRIDE: usize = std::mem::size_of::<VridState>().next_multiple_of(8);

impl StateView {
    fn new(map: &Array<MapData, VridState>) -> std::io::Result<Self> {
        use aya::maps::IterableMap as _;
        use std::os::fd::AsRawFd as _;
        let entries = map.len();
        let len = STATE_STRIDE * entries as usize;
        let fd = map.map().fd().as_fd().as_raw_fd();
        // SAFETY: a fresh shared read-only mapping of a live map descriptor; the mapping holds its
        // own reference to the map, so it stays valid until unmapped whatever becomes of `map`. The
        // kernel refuses it unless the map is mmapable.
        let ptr = unsafe { libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ, libc::MAP_SHARED, fd, 0) };
        if ptr == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        let base = std::ptr::NonNull::new(ptr.cast::<u8>()).ok_or_else(|| std::io::Error::other("mmap gave null"))?;
        Ok(StateView { base, len, entries })
    }

    fn get(&self, slot: u32) -> Option<VridState> {
        if slot >= self.entries {
            return None;
        }
        // SAFETY: slot < entries, so the entry lies inside the mapping; VridState is plain data
        // (any bytes are a valid value). The datapath may be writing it meanwhile, as with a lookup
        // syscall, which copies without a lock too.
        Some(unsafe {
            std::ptr::read_volatile(self.base.as_ptr().add(slot as usize * STATE_STRIDE).cast::<VridState>())
        })
    }
}

impl Drop for StateView {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, unmapped once.
        unsafe { libc::munmap(self.base.as_ptr().cast(), self.len) };
    }
}

/// Copies an event out of a ring-buffer record (records are 8-byte aligned but copy anyway).
pub fn parse_event(bytes: &[u8]) -> Option<DatapathEvent> {
    if bytes.len() < std::mem::size_of::<DatapathEvent>() {
        return None;
    }
    // SAFETY: enough bytes for a DatapathEvent, which is Pod; read_unaligned handles any alignment.
    Some(unsafe { std::ptr::read_unaligned(bytes.as_ptr() as *const DatapathEvent) })
}

/// Kernels before 5.11 charge BPF memory to RLIMIT_MEMLOCK.
fn raise_memlock_limit() {
    let rlim = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: plain syscall with a valid struct.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &rlim) } != 0 {
        tracing::debug!("could not raise RLIMIT_MEMLOCK");
    }
}
