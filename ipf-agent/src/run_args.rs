//! Command-line form of the agent configuration (the environment and keepalived.conf front ends come
//! with the drop-in configuration work).

use std::{net::IpAddr, str::FromStr, time::Duration};

use crate::{
    agent::AgentConfig,
    config::{Config, InstanceSpec},
    datapath::{Family, XdpModeArg},
    network::Vip,
    vrrp::Preempt,
};

/// `--instance` value: comma-separated `key=value`: name, vrid (1..255), priority (1..255), version
/// (2|3), interval (ms), track (a --check name; repeatable), track_interface (repeatable), vip (ADDR[/PREFIX], repeatable), excluded (owned, not advertised;
/// repeatable), peer (repeatable), src, pass,
/// preempt (yes|no|DELAY_SECONDS).
#[derive(Clone, Debug)]
pub struct InstanceArg(pub InstanceSpec);

fn field<T: FromStr>(key: &str, value: &str, what: &str) -> Result<T, String> {
    value.parse().map_err(|_| format!("{key}={value:?}: {what}"))
}

/// A `virtual_ipaddress` line as keepalived reads it: `ADDR[/PREFIX] [brd ADDR|+|-] [scope SCOPE]
/// [label LABEL]`. Without a prefix, a host address (/32, /128) as keepalived does.
pub fn parse_vip(text: &str) -> Result<Vip, String> {
    let bad = |why: &str| format!("vip={text:?}: {why}");
    let mut words = text.split_whitespace();
    let first = words.next().ok_or_else(|| bad("empty"))?;
    let (addr, prefix) = match first.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (first, None),
    };
    let addr: IpAddr = addr.parse().map_err(|_| bad("not an IP address"))?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let prefix_len = match prefix {
        Some(p) => p
            .parse::<u8>()
            .ok()
            .filter(|p| *p <= max)
            .ok_or_else(|| bad(&format!("prefix must be 0..{max}")))?,
        None => max,
    };
    let mut vip = Vip {
        addr,
        prefix_len,
        broadcast: None,
        scope: None,
        label: None,
        dev: None,
    };
    while let Some(key) = words.next() {
        let value = words.next().ok_or_else(|| bad(&format!("{key} needs a value")))?;
        match key {
            "brd" | "broadcast" => {
                let IpAddr::V4(a) = addr else {
                    return Err(bad("brd is IPv4 only"));
                };
                let host_bits = 32 - u32::from(prefix_len);
                let mask = if host_bits == 32 { 0 } else { u32::MAX << host_bits };
                vip.broadcast = Some(match value {
                    "+" => (u32::from(a) | !mask).into(),
                    "-" => (u32::from(a) & mask).into(),
                    v => v
                        .parse()
                        .map_err(|_| bad(&format!("brd {v:?} is not an IPv4 address")))?,
                });
            }
            "scope" => {
                vip.scope = Some(match value {
                    "global" => 0,
                    "site" => 200,
                    "link" => 253,
                    "host" => 254,
                    "nowhere" => 255,
                    v => v
                        .parse()
                        .map_err(|_| bad(&format!("scope {v:?} is not global, site, link, host or 0..255")))?,
                })
            }
            "label" => vip.label = Some(value.to_owned()),
            "dev" => vip.dev = Some(value.to_owned()),
            other => return Err(bad(&format!("unknown option {other:?}"))),
        }
    }
    vip.validate().map_err(|e| bad(&e.to_string()))?;
    Ok(vip)
}

impl FromStr for InstanceArg {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // The interface comes from --interface when the configuration is assembled.
        let mut spec = InstanceSpec::new(String::new(), String::new(), 0, Family::V4);
        spec.version = 3;
        for part in s.split(',').filter(|p| !p.is_empty()) {
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| format!("{part:?} is not key=value"))?;
            match k {
                "name" => spec.name = v.to_owned(),
                "vrid" => {
                    spec.vrid = v
                        .parse()
                        .ok()
                        .filter(|n| *n >= 1)
                        .ok_or_else(|| format!("vrid={v:?}: must be 1..255"))?
                }
                "priority" => {
                    spec.priority = v
                        .parse()
                        .ok()
                        .filter(|n| *n >= 1)
                        .ok_or_else(|| format!("priority={v:?}: must be 1..255"))?
                }
                "version" => {
                    spec.version = v
                        .parse()
                        .ok()
                        .filter(|n| *n == 2 || *n == 3)
                        .ok_or_else(|| format!("version={v:?}: must be 2 or 3"))?
                }
                "interval" => spec.adver_int = Duration::from_millis(field(k, v, "milliseconds expected")?),
                "vip" => spec.vips.push(parse_vip(v)?),
                "excluded" => spec.excluded.push(parse_vip(v)?),
                "peer" => spec.unicast_peers.push(field(k, v, "not an IP address")?),
                "src" => spec.src = Some(field(k, v, "not an IP address")?),
                "pass" => spec.auth_pass = Some(v.to_owned()),
                "track" => spec.tracks.push(v.to_owned()),
                "track_interface" => spec.track_interfaces.push(v.to_owned()),
                "preempt" => {
                    spec.preempt = match v {
                        "yes" | "true" => Preempt::Yes,
                        "no" | "false" => Preempt::No,
                        d => Preempt::Delay(Duration::from_secs(field(k, d, "yes, no or a delay in seconds")?)),
                    }
                }
                _ => return Err(format!("unknown key {k:?}")),
            }
        }
        if spec.vrid == 0 {
            return Err("vrid is required".into());
        }
        if spec.name.is_empty() {
            spec.name = format!("VI_{}", spec.vrid);
        }
        if let Some(first) = spec.vips.first() {
            spec.family = Family::of(&first.addr);
        }
        Ok(InstanceArg(spec))
    }
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// A keepalived.conf to run (the subset ipf supports; see the README).
    #[arg(long = "config", short = 'f', env = "IPF_CONFIG", value_name = "FILE")]
    pub config_file: Option<std::path::PathBuf>,
    /// A VRRP instance: `vrid=N,priority=P,vip=ADDR/PREFIX[,vip=...][,version=2|3][,interval=MS][,peer=ADDR]...`.
    /// Without --config or --instance, the configuration comes from the OPENSHIFT_HA_* environment
    /// (ipfailover image) or the KEEPALIVED_* environment (arcts/keepalived image).
    #[arg(long = "instance")]
    pub instances: Vec<InstanceArg>,
    /// Interface of the --instance instances (default eth0).
    #[arg(long, short = 'i', env = "IPF_INTERFACE")]
    pub interface: Option<String>,
    /// A health check for --instance: `name=N,tcp=PORT|script=CMD[,interval=S][,timeout=S][,rise=N][,fall=N][,weight=W]`
    /// (`script=` last: it takes the rest). Instances track it with `track=N`.
    #[arg(long = "check")]
    pub checks: Vec<crate::checks::CheckSpec>,
    /// Script run on every state change of every instance: `SCRIPT INSTANCE <name> <MASTER|BACKUP|FAULT|STOP> <priority>`.
    #[arg(long)]
    pub notify: Option<String>,
    /// Gratuitous ARP / NA packets per burst on becoming Master (default 5, or the configuration's).
    #[arg(long)]
    pub garp_repeat: Option<u32>,
    /// Delay of the second gratuitous ARP / NA burst, in seconds (default 5, or the configuration's).
    #[arg(long)]
    pub garp_delay_secs: Option<u64>,
    /// Gratuitous ARP / NA refresh while Master, in seconds; 0: off (the default, or the configuration's).
    #[arg(long)]
    pub garp_refresh_secs: Option<u64>,
    /// XDP attach mode.
    #[arg(long, value_enum, default_value = "auto", env = "IPF_XDP_MODE")]
    pub xdp_mode: XdpModeArg,
    /// Lifetime of a VIP on the interface in seconds, renewed by the Master every quarter of it; a
    /// killed agent's VIPs vanish after at most this long. 0: permanent addresses (keepalived's way).
    #[arg(long, default_value_t = 4, env = "IPF_VIP_LEASE_SECS")]
    pub vip_lease_secs: u64,
    /// Socket `ipf-agent status` reads; `off` disables it.
    #[arg(long, default_value = crate::status::DEFAULT_SOCKET, env = "IPF_STATUS_SOCKET")]
    pub status_socket: String,
    /// Listen address of /metrics, /healthz and /readyz; `off` disables them.
    #[arg(long, default_value = crate::metrics::DEFAULT_ADDR, env = "IPF_METRICS_ADDR")]
    pub metrics_addr: String,
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

impl RunArgs {
    /// Reads the configuration from its source (again, on reload): `--config`, else `--instance`,
    /// else the OPENSHIFT_HA_* or KEEPALIVED_* environment.
    pub fn load(&self) -> Result<(Config, Source), String> {
        self.load_from(&std::env::vars().collect(), &crate::openshift::host())
    }

    /// [`RunArgs::load`] with the environment and the host given (tests).
    pub fn load_from(
        &self,
        env: &std::collections::BTreeMap<String, String>,
        host: &crate::openshift::Host,
    ) -> Result<(Config, Source), String> {
        let openshift = env.contains_key("OPENSHIFT_HA_VIRTUAL_IPS");
        let keepalived = env.keys().any(|k| k.starts_with("KEEPALIVED_"));
        if self.interface.is_some() && self.instances.is_empty() {
            return Err("--interface (IPF_INTERFACE) applies to --instance; the configuration names its own".into());
        }
        if (!self.checks.is_empty()) && self.instances.is_empty() {
            return Err("--check applies to --instance; the configuration has its own checks".into());
        }
        let (mut config, source) = if let Some(path) = &self.config_file {
            if !self.instances.is_empty() {
                return Err("--config and --instance exclude each other".into());
            }
            (
                crate::keepalived_conf::parse_file(path).map_err(|e| e.to_string())?,
                Source::File,
            )
        } else if !self.instances.is_empty() {
            let interface = self.interface.clone().unwrap_or_else(|| "eth0".to_owned());
            let instances = self
                .instances
                .iter()
                .map(|i| InstanceSpec {
                    interface: interface.clone(),
                    ..i.0.clone()
                })
                .collect();
            let config = Config {
                instances,
                checks: self.checks.clone(),
                ..Config::default()
            };
            (config, Source::Flags)
        } else if openshift && keepalived {
            return Err(
                "both OPENSHIFT_HA_VIRTUAL_IPS and KEEPALIVED_* variables are set: keep the ones of one image".into(),
            );
        } else if openshift {
            (
                crate::openshift::from_env(|k| env.get(k).cloned(), host)?,
                Source::OpenshiftEnv,
            )
        } else if keepalived {
            // KEEPALIVED_DEBUG is applied by main, before logging starts.
            match crate::keepalived_env::from_env(env, host)?.source {
                crate::keepalived_env::Source::Autoconf(c) => (c, Source::KeepalivedEnv),
                crate::keepalived_env::Source::File { path, warnings } => {
                    let mut c = crate::keepalived_conf::parse_file(&path).map_err(|e| e.to_string())?;
                    c.warnings.extend(warnings);
                    (c, Source::File)
                }
            }
        } else {
            return Err(
                "no configuration: give --config FILE or --instance, or set OPENSHIFT_HA_VIRTUAL_IPS \
                 (ipfailover) or KEEPALIVED_VIRTUAL_IPADDRESS_<n> (arcts/keepalived)"
                    .into(),
            );
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

    /// The configuration and the runtime options of `run`.
    pub fn agent_config(&self, config: Config) -> Result<AgentConfig, String> {
        let metrics_addr = match self.metrics_addr.as_str() {
            "off" | "" => None,
            a => Some(
                a.parse()
                    .map_err(|_| format!("--metrics-addr {a:?}: not an address:port (or off)"))?,
            ),
        };
        Ok(AgentConfig {
            config,
            metrics_addr,
            status_socket: (!matches!(self.status_socket.as_str(), "off" | ""))
                .then(|| self.status_socket.clone().into()),
            xdp_mode: self.xdp_mode,
            vip_lease: (self.vip_lease_secs > 0).then(|| Duration::from_secs(self.vip_lease_secs)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_field_and_value() {
        for (text, needle) in [
            ("vrid=0", "vrid=\"0\""),
            ("vrid=256", "vrid=\"256\""),
            ("vrid=5,priority=0", "priority=\"0\""),
            ("vrid=5,priority=300", "priority=\"300\""),
            ("vrid=5,version=4", "version=\"4\""),
            ("vrid=5,vip=10.0.0.300", "vip=\"10.0.0.300\""),
            ("vrid=5,vip=192.0.2.1/33", "vip=\"192.0.2.1/33\""),
            ("vrid=5,bogus=1", "bogus"),
        ] {
            let err = text.parse::<InstanceArg>().expect_err(text);
            assert!(err.contains(needle), "{text}: {err}");
        }
    }

    #[test]
    fn keepalived_virtual_ipaddress_lines() {
        let v = parse_vip("192.0.2.100/24 brd + scope link label eth0:vip").expect("valid");
        assert_eq!(v.broadcast, Some([192, 0, 2, 255].into()));
        assert_eq!(v.scope, Some(253));
        assert_eq!(v.label.as_deref(), Some("eth0:vip"));
        assert_eq!(
            parse_vip("192.0.2.100/24 brd 192.0.2.127").expect("valid").broadcast,
            Some([192, 0, 2, 127].into())
        );
        assert_eq!(parse_vip("2001:db8::1").expect("valid").prefix_len, 128);
        for (text, needle) in [
            ("192.0.2.100/24 brd", "brd needs a value"),
            ("2001:db8::1/64 brd +", "IPv4 only"),
            ("192.0.2.100/24 scope galaxy", "scope \"galaxy\""),
            ("192.0.2.100/24 colour red", "unknown option"),
            ("192.0.2.100/24 label this-label-is-far-too-long", "label"),
        ] {
            let err = parse_vip(text).expect_err(text);
            assert!(err.contains(needle) && err.contains("vip="), "{text}: {err}");
        }
    }

    #[test]
    fn family_follows_the_vips() {
        let i = "vrid=7,vip=2001:db8::1/64".parse::<InstanceArg>().expect("valid").0;
        assert_eq!(i.family, Family::V6);
        assert_eq!(i.vips[0].prefix_len, 64);
        assert_eq!(i.name, "VI_7");
    }
}
