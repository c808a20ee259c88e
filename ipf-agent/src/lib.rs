//! ipf-agent: the userspace side of ipf.
//!
//! Rooms, from the top: `cli` (arguments) → `agent` (the run loop and its effects) → `config` (the
//! typed configuration and its front ends), `vrrp` (the election), `datapath` (XDP or the raw-socket
//! fallback), `network` (addresses, adverts, announcements), `checks`, `links`, `firewall`,
//! `metrics`, `status`, `monitor`, `logging`, `container` (what a container's privileges and mounts
//! change, in the manifest's terms). Imports only go down this list's arrows.
pub mod agent;
pub mod checks;
pub mod cli;
pub mod config;
pub mod container;
pub mod datapath;
pub mod firewall;
pub mod links;
pub mod logging;
pub mod metrics;
pub mod monitor;
pub mod network;
pub mod status;
pub mod vrrp;
