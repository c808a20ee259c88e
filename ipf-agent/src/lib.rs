//! ipf-agent: the userspace side of ipf.
pub mod datapath;
pub mod logging;
pub mod monitor;
pub mod vrrp;
