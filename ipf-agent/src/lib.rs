//! ipf-agent: the userspace side of ipf.
//!
//! Rooms, from the top: `cli` (arguments) → `agent` (the run loop and its effects) → `config` (the
//! typed configuration and its front ends), `vrrp` (the election), `datapath` (XDP or the raw-socket
//! fallback), `network` (addresses, adverts, announcements), `checks`, `script_security` (who
//! scripts run as, and which ones are refused), `links`, `firewall`, `metrics`, `status`, `monitor`,
//! `logging`, `memory`, `container` (what a container's privileges and mounts change, in the manifest's
//! terms); the agent's split-brain helpers `conflict` (probes and episodes), `lease` (VIP lifetimes),
//! `peers` (learned unicast peers) and `dns_peers` (unicast peers from DNS) sit beside it. Imports
//! only go down this list's arrows.
pub mod agent;
pub mod checks;
pub mod cli;
pub mod config;
pub mod conflict;
pub mod container;
pub mod datapath;
pub mod dns_peers;
pub mod firewall;
pub mod lease;
pub mod links;
pub mod logging;
pub mod memory;
pub mod metrics;
pub mod monitor;
pub mod network;
pub mod peers;
pub mod script_security;
pub mod status;
pub mod vrrp;
