//! The VRRP engine: one state machine per instance (RFC 3768, RFC 5798), driven by inputs (datapath
//! events, timers, health, shutdown) and acting on the world only through [`instance::Effects`].
//!
//! ```text
//!  datapath events ─┐                       ┌─► Effects::send_advert / add_vips / remove_vips
//!  timers (owned) ──┼─► Instance::handle ───┼─► Effects::announce / set_role / guard
//!  health, signals, ┘   (events.rs)         └─► Effects::state_changed (logs, notify)
//!  conflict watch
//! ```
//! A Backup is not woken per advert: the datapath reports only changes, and the master-down timer,
//! when it fires, reads the last-seen time the datapath keeps before declaring the master dead.

pub mod events;
pub mod instance;
pub mod timers;

pub use instance::{AdvertSource, Effects, GUARD_HOLD, Input, Instance, InstanceConfig, LastAdvert, Preempt, State};

#[cfg(test)]
mod sim;
#[cfg(test)]
mod tests;
