use aya_ebpf::{
    bindings::{BPF_F_MMAPABLE, xdp_action},
    helpers::{
        bpf_ktime_get_ns,
        generated::{bpf_csum_diff, bpf_xdp_load_bytes},
    },
    macros::{map, xdp},
    maps::{Array, HashMap, PerCpuArray, RingBuf},
    programs::XdpContext,
};
use aya_log_ebpf::debug;
use ipf_common::{
    Counter, DatapathEvent, IfaceConfig, VipKey, VipState, VridConfig, VridState,
    advert::{conflict_due, observe_advert},
    frame::{
        ArpEthIpv4, ETH_HDR_LEN, ETH_P_ARP, ETH_P_IPV4, ETH_P_IPV6, EthHdr, IPPROTO_ICMPV6, IPV6_HDR_LEN, Ipv4Hdr,
        Ipv6Hdr, NeighborAdvert, arp_claim, ipv4_vrrp, ipv6_vrrp, na_claim,
    },
    maps::{EVENT_RING_BYTES, MAX_PEERS, MAX_VIPS, MAX_VRRP_LEN, PeerKey, VRID_SLOTS, vrid_slot},
    vrrp::{IPPROTO_VRRP, IpMeta, RxError, VridLookup, validate_advert},
};

#[map]
static VRID_CONFIG: Array<VridConfig> = Array::with_max_entries(VRID_SLOTS, 0);
/// Mmapable: the agent reads a Backup's last-seen time from its own memory, without a syscall.
#[map]
static VRID_STATE: Array<VridState> = Array::with_max_entries(VRID_SLOTS, BPF_F_MMAPABLE);
#[map]
static IFACE_CONFIG: Array<IfaceConfig> = Array::with_max_entries(1, 0);
#[map]
static VIPS: HashMap<VipKey, VipState> = HashMap::with_max_entries(MAX_VIPS, 0);
#[map]
static PEERS: HashMap<PeerKey, u8> = HashMap::with_max_entries(MAX_PEERS, 0);
#[map]
static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(Counter::COUNT, 0);
/// Per-CPU copy of the VRRP message, so the pure validation runs on a plain byte slice.
#[map]
static SCRATCH: PerCpuArray<[u8; MAX_VRRP_LEN]> = PerCpuArray::with_max_entries(1, 0);
#[map]
static EVENTS: RingBuf = RingBuf::with_byte_size(EVENT_RING_BYTES, 0);

/// Why the program stops looking at a frame. Each maps to one XDP action in [`ipf_xdp`].
#[derive(Clone, Copy)]
enum Error {
    /// A VRRP packet failing validation.
    Invalid(RxError),
    /// Shorter than the headers it announces.
    Truncated,
    /// A map that must have an entry did not (cannot happen once loaded).
    MapLookup,
}

#[xdp]
pub fn ipf_xdp(ctx: XdpContext) -> u32 {
    match try_ipf_xdp(&ctx) {
        Ok(()) => xdp_action::XDP_PASS,
        Err(Error::Invalid(RxError::OwnAdvert)) => {
            count(Counter::OwnAdverts);
            xdp_action::XDP_PASS
        }
        Err(Error::Invalid(e)) => {
            count(e.counter());
            debug!(&ctx, "vrrp dropped: {}", e.counter().name());
            xdp_action::XDP_DROP
        }
        Err(Error::Truncated) => {
            count(Counter::PacketLenErr);
            xdp_action::XDP_DROP
        }
        // Not the packet's fault: let the stack have it.
        Err(Error::MapLookup) => xdp_action::XDP_PASS,
    }
}

#[inline(always)]
fn try_ipf_xdp(ctx: &XdpContext) -> Result<(), Error> {
    let Ok(eth) = header_at::<EthHdr>(ctx, 0) else {
        return Ok(());
    };
    // Pass-through traffic leaves after one or two loads and compares.
    match eth.ether_type() {
        ETH_P_IPV4 => {
            let Ok(ip) = header_at::<Ipv4Hdr>(ctx, ETH_HDR_LEN) else {
                return Ok(());
            };
            if ip.proto != IPPROTO_VRRP {
                return Ok(());
            }
            match ipv4_vrrp(ip) {
                Ok(Some((meta, ihl))) => on_vrrp(ctx, &meta, ETH_HDR_LEN + ihl, &eth.src),
                Ok(None) => Ok(()),
                Err(e) => Err(Error::Invalid(e)),
            }
        }
        ETH_P_IPV6 => {
            let Ok(ip) = header_at::<Ipv6Hdr>(ctx, ETH_HDR_LEN) else {
                return Ok(());
            };
            if ip.next_header == IPPROTO_VRRP {
                match ipv6_vrrp(ip) {
                    Ok(Some(meta)) => on_vrrp(ctx, &meta, ETH_HDR_LEN + IPV6_HDR_LEN, &eth.src),
                    Ok(None) => Ok(()),
                    Err(e) => Err(Error::Invalid(e)),
                }
            } else if ip.next_header == IPPROTO_ICMPV6 {
                let Ok(na) = header_at::<NeighborAdvert>(ctx, ETH_HDR_LEN + IPV6_HDR_LEN) else {
                    return Ok(());
                };
                if let Some(claim) = na_claim(ip, na, &eth.src) {
                    count(Counter::NaRx);
                    on_claim(ctx, &claim)?;
                }
                Ok(())
            } else {
                Ok(())
            }
        }
        ETH_P_ARP => {
            let Ok(arp) = header_at::<ArpEthIpv4>(ctx, ETH_HDR_LEN) else {
                return Ok(());
            };
            if let Some(claim) = arp_claim(arp) {
                count(Counter::ArpRx);
                on_claim(ctx, &claim)?;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Maps as the validation's view of configuration.
struct Maps;

impl VridLookup for Maps {
    #[inline(always)]
    fn config(&self, family: u8, vrid: u8) -> Option<VridConfig> {
        VRID_CONFIG.get(vrid_slot(family, vrid)).copied()
    }

    #[inline(always)]
    fn is_peer(&self, family: u8, vrid: u8, addr: &[u8; 16]) -> bool {
        let key = PeerKey {
            family,
            vrid,
            _pad: [0; 2],
            addr: *addr,
        };
        // SAFETY: the value is a plain u8 read immediately; concurrent deletion cannot free it under us
        // within this RCU read section.
        unsafe { PEERS.get(key) }.is_some()
    }

    /// The kernel's checksum helper instead of a byte loop: fewer instructions, and no loop whose bound
    /// the verifier would have to prove.
    #[inline(always)]
    fn ones_sum(&self, msg: &[u8]) -> u16 {
        // bpf_csum_diff accepts at most 512 bytes per call on older kernels.
        const CHUNK: usize = 512;
        let mut acc: u32 = 0;
        let mut k = 0;
        while k < MAX_VRRP_LEN / CHUNK {
            // SAFETY: reading a local. Volatile keeps the plain counter the verifier can bound.
            let start = unsafe { core::ptr::read_volatile(&k) } * CHUNK;
            if start >= msg.len() {
                break;
            }
            let rest = msg.len() - start;
            let size = if rest > CHUNK { CHUNK } else { rest };
            // SAFETY: `msg` lies in the per-CPU scratch map value; start + size <= msg.len() <= its size.
            let r = unsafe {
                bpf_csum_diff(
                    core::ptr::null_mut(),
                    0,
                    msg.as_ptr().add(start) as *mut _,
                    size as u32,
                    acc,
                )
            };
            if r < 0 {
                // Size not a multiple of 4 cannot happen after the length check; fail the checksum.
                return 0;
            }
            acc = r as u32;
            k += 1;
        }
        // The helper sums little-endian words: fold, then swap to the big-endian view.
        let mut folded = (acc & 0xffff) + (acc >> 16);
        folded = (folded & 0xffff) + (folded >> 16);
        (folded as u16).swap_bytes()
    }
}

#[inline(always)]
fn on_vrrp(ctx: &XdpContext, ip: &IpMeta, offset: usize, src_mac: &[u8; 6]) -> Result<(), Error> {
    // A volatile read keeps the compiler from rewriting the range check in terms of other registers
    // (e.g. `total == ihl`), which the verifier could not connect to the helper's size argument.
    // SAFETY: reading a local.
    let len = unsafe { core::ptr::read_volatile(&(ip.payload_len as usize)) };
    if len == 0 || len > MAX_VRRP_LEN {
        return Err(Error::Invalid(RxError::PacketLen));
    }
    let scratch = SCRATCH.get_ptr_mut(0).ok_or(Error::MapLookup)?;
    // SAFETY: per-CPU scratch, used only by this invocation (XDP runs with preemption disabled).
    let scratch = unsafe { &mut *scratch };
    // SAFETY: helper call with a pointer into a map value of MAX_VRRP_LEN bytes and 0 < len <= MAX_VRRP_LEN.
    let rc = unsafe { bpf_xdp_load_bytes(ctx.ctx, offset as u32, scratch.as_mut_ptr() as *mut _, len as u32) };
    if rc != 0 {
        // The frame is shorter than the IP header says.
        return Err(Error::Truncated);
    }
    let advert = validate_advert(ip, &scratch[..len], &Maps).map_err(Error::Invalid)?;
    count(Counter::AdvertsRx);
    let slot = vrid_slot(ip.family, advert.vrid);
    let cfg = VRID_CONFIG.get(slot).ok_or(Error::MapLookup)?;
    let state = VRID_STATE.get_ptr_mut(slot).ok_or(Error::MapLookup)?;
    // SAFETY: pointer to an array map value; concurrent updates from other CPUs only race on
    // statistics of the same VRID, which userspace tolerates.
    let state = unsafe { &mut *state };
    // SAFETY: plain helper call.
    let now = unsafe { bpf_ktime_get_ns() };
    let kind = observe_advert(state, cfg, ip, &advert, src_mac, now);
    if kind != 0 {
        emit(&DatapathEvent::advert(kind, ip, &advert, *src_mac, now));
    }
    Ok(())
}

#[inline(always)]
fn on_claim(_ctx: &XdpContext, claim: &ipf_common::frame::Claim) -> Result<(), Error> {
    let key = VipKey {
        family: claim.family,
        _pad: [0; 3],
        addr: claim.addr,
    };
    let Some(vip) = VIPS.get_ptr_mut(key) else {
        return Ok(());
    };
    let iface = IFACE_CONFIG.get(0).ok_or(Error::MapLookup)?;
    // SAFETY: pointer to a hash map value, valid for this RCU read section.
    let vip = unsafe { &mut *vip };
    let slot = vrid_slot(claim.family, vip.vrid);
    let cfg = VRID_CONFIG.get(slot).ok_or(Error::MapLookup)?;
    let state = VRID_STATE.get(slot).ok_or(Error::MapLookup)?;
    // SAFETY: plain helper call.
    let now = unsafe { bpf_ktime_get_ns() };
    if conflict_due(vip, iface, cfg, state, &claim.mac, now) {
        count(Counter::VipConflicts);
        emit(&DatapathEvent::conflict(claim, vip.vrid, now));
    }
    Ok(())
}

#[inline(always)]
fn emit(event: &DatapathEvent) {
    match EVENTS.reserve::<DatapathEvent>(0) {
        Some(mut entry) => {
            entry.write(*event);
            entry.submit(0);
            count(Counter::EventsSent);
        }
        None => count(Counter::RingbufFull),
    }
}

#[inline(always)]
fn count(counter: Counter) {
    if let Some(c) = COUNTERS.get_ptr_mut(counter as u32) {
        // SAFETY: per-CPU value, no concurrent writer.
        unsafe { *c += 1 };
    }
}

/// The one bounds-checked accessor: a reference to header `T` at `offset` in the frame.
#[inline(always)]
fn header_at<T: ipf_common::frame::Header>(ctx: &XdpContext, offset: usize) -> Result<&T, Error> {
    let start = ctx.data();
    let end = ctx.data_end();
    if start + offset + core::mem::size_of::<T>() > end {
        return Err(Error::Truncated);
    }
    // SAFETY: the range is inside the packet (checked above, in the form the verifier tracks), and T has
    // alignment 1 with no invalid bit patterns (`Header`).
    Ok(unsafe { &*((start + offset) as *const T) })
}
