//! Types shared by the ipf XDP program (`ipf-ebpf`) and the agent (`ipf-agent`), and the pure packet
//! parsing and validation both of them run.
//!
//! Everything here is `no_std`, allocation-free and panic-free on any input, so the same code runs in
//! the kernel (on a copy of the packet in a map) and in userspace (raw-socket fallback, tests, fuzzing).
#![no_std]

#[cfg(any(feature = "user", feature = "testing"))]
extern crate std;

pub mod advert;
pub mod checksum;
pub mod consts;
pub mod frame;
pub mod maps;
#[cfg(feature = "testing")]
pub mod testing;
pub mod vrrp;

pub use advert::observe_advert;
pub use maps::{Counter, DatapathEvent, EventKind, IfaceConfig, VipKey, VipState, VridConfig, VridState};
pub use vrrp::{Advert, IpMeta, RxError, VridLookup, validate_advert};
