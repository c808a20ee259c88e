//! ipf's XDP program: classifies VRRP adverts and ARP/NA claims, drops invalid VRRP before the stack,
//! keeps per-VRID advert state in maps and wakes userspace through a ring buffer only on changes.
//!
//! All parsing and validation is the pure code of `ipf-common`; this file only does bounds-checked
//! header access, map lookups, counters and the ring buffer.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]

#[cfg(target_arch = "bpf")]
mod xdp;

#[cfg(not(target_arch = "bpf"))]
fn main() {
    eprintln!("ipf-xdp is an eBPF program: it is built for bpfel-unknown-none by ipf-agent's build script");
}

#[cfg(target_arch = "bpf")]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // SAFETY: the verifier rejects any program with a reachable panic path; none is left after
    // optimisation because every index is checked by explicit branches first.
    unsafe { core::hint::unreachable_unchecked() }
}
