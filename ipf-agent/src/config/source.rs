//! Which front end applies, and the flags that override what it says. The command line gives a
//! [`Selection`]; [`Selection::load`] reads the configuration from the first source that applies
//! (again on every reload).

use std::{collections::BTreeMap, path::PathBuf, time::Duration};

use super::{CheckSpec, Config, ConfigError, Host, InstanceSpec, keepalived_conf, keepalived_env, openshift};

/// What the command line says about the configuration.
#[derive(Clone, Debug, Default)]
pub struct Selection {
    /// `--config`: a keepalived.conf.
    pub config_file: Option<PathBuf>,
    /// `--instance` (their interface is `interface`).
    pub instances: Vec<InstanceSpec>,
    /// `--interface`, for `--instance` only.
    pub interface: Option<String>,
    /// `--check`, for `--instance` only.
    pub checks: Vec<CheckSpec>,
    /// `--notify`, `--garp-*`: win over any source.
    pub notify: Option<String>,
    pub garp_repeat: Option<u32>,
    pub garp_delay_secs: Option<u64>,
    pub garp_refresh_secs: Option<u64>,
}

/// Where the configuration came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    File,
    Flags,
    OpenshiftEnv,
    KeepalivedEnv,
}

impl Source {
    pub fn describe(self) -> &'static str {
        match self {
            Source::File => "keepalived.conf",
            Source::Flags => "command-line flags",
            Source::OpenshiftEnv => "OPENSHIFT_HA_* environment",
            Source::KeepalivedEnv => "KEEPALIVED_* environment",
        }
    }
}

impl Selection {
    /// Reads the configuration from its source (again, on reload): `--config`, else `--instance`,
    /// else the OPENSHIFT_HA_* or KEEPALIVED_* environment.
    pub fn load(&self) -> Result<(Config, Source), ConfigError> {
        self.load_from(&std::env::vars().collect(), &super::host::host())
    }

    /// [`RunArgs::load`] with the environment and the host given (tests).
    pub fn load_from(&self, env: &BTreeMap<String, String>, host: &Host) -> Result<(Config, Source), ConfigError> {
        let openshift = env.contains_key("OPENSHIFT_HA_VIRTUAL_IPS");
        let keepalived = env.keys().any(|k| k.starts_with("KEEPALIVED_"));
        if self.interface.is_some() && self.instances.is_empty() {
            return Err(usage(
                "--interface (IPF_INTERFACE) applies to --instance; the configuration names its own",
            ));
        }
        if (!self.checks.is_empty()) && self.instances.is_empty() {
            return Err(usage(
                "--check applies to --instance; the configuration has its own checks",
            ));
        }
        let (mut config, source) = if let Some(path) = &self.config_file {
            if !self.instances.is_empty() {
                return Err(usage("--config and --instance exclude each other"));
            }
            (keepalived_conf::parse_file(path)?, Source::File)
        } else if !self.instances.is_empty() {
            let interface = self.interface.clone().unwrap_or_else(|| "eth0".to_owned());
            let instances = self
                .instances
                .iter()
                .map(|i| InstanceSpec {
                    interface: interface.clone(),
                    ..i.clone()
                })
                .collect();
            let config = Config {
                instances,
                checks: self.checks.clone(),
                ..Config::default()
            };
            (config, Source::Flags)
        } else if openshift && keepalived {
            return Err(usage(
                "both OPENSHIFT_HA_VIRTUAL_IPS and KEEPALIVED_* variables are set: keep the ones of one image",
            ));
        } else if openshift {
            (openshift::from_env(env, host)?, Source::OpenshiftEnv)
        } else if keepalived {
            // KEEPALIVED_DEBUG is applied by main, before logging starts.
            match keepalived_env::from_env(env, host)?.source {
                keepalived_env::Source::Autoconf(c) => (c, Source::KeepalivedEnv),
                keepalived_env::Source::File { path, warnings } => {
                    let mut c = keepalived_conf::parse_file(&path)?;
                    c.warnings.extend(warnings);
                    (c, Source::File)
                }
            }
        } else {
            return Err(usage(
                "no configuration: give --config FILE or --instance, or set OPENSHIFT_HA_VIRTUAL_IPS \
                 (ipfailover) or KEEPALIVED_VIRTUAL_IPADDRESS_<n> (arcts/keepalived)",
            ));
        };
        // Explicit flags win over what the configuration says.
        for i in &mut config.instances {
            if let Some(n) = &self.notify {
                i.notify.any = Some(n.clone());
            }
            if let Some(r) = self.garp_repeat {
                i.garp.repeat = r;
            }
            if let Some(d) = self.garp_delay_secs {
                i.garp.delay = Duration::from_secs(d);
            }
            if let Some(r) = self.garp_refresh_secs {
                i.garp.refresh = (r > 0).then(|| Duration::from_secs(r));
            }
        }
        Ok((config, source))
    }
}

fn usage(text: &str) -> ConfigError {
    ConfigError::Usage(text.to_owned())
}
