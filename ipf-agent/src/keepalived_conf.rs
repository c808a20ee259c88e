//! PLACEHOLDER replaced by wip-conf.
use crate::config::Config;
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfError(String);
pub fn parse_file(path: &std::path::Path) -> Result<Config, ConfError> {
    Err(ConfError(format!("{}: not integrated yet", path.display())))
}
pub fn render(_cfg: &Config, _node: Option<std::net::IpAddr>) -> String {
    String::new()
}
