//! ipf-agent: the userspace side of ipf.
pub mod agent;
pub mod checks;
pub mod config;
pub mod datapath;
pub mod keepalived_conf;
pub mod links;
pub mod logging;
pub mod metrics;
pub mod monitor;
pub mod network;
pub mod openshift;
pub mod run_args;
pub mod status;
pub mod vrrp;
