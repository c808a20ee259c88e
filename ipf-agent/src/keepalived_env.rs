//! PLACEHOLDER replaced by wip-env.
use crate::config::Config;
pub enum Source {
    Autoconf(Config),
    File(std::path::PathBuf),
}
pub fn from_env(
    _vars: &std::collections::BTreeMap<String, String>,
    _host: &crate::openshift::Host,
) -> Result<Source, String> {
    Err("not integrated yet".into())
}
