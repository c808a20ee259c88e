//! PLACEHOLDER replaced by the firewall work (wip-fw).
use crate::{config::Firewall, datapath::Family};

#[derive(Debug, thiserror::Error)]
#[error("firewall: {0}")]
pub struct FirewallError(String);

pub fn apply(_rule: &Firewall, _families: &[Family]) -> Result<(), FirewallError> {
    Err(FirewallError("not integrated yet".into()))
}

pub fn remove(_rule: &Firewall) -> Result<(), FirewallError> {
    Err(FirewallError("not integrated yet".into()))
}
