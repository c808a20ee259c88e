//! The `--instance` flag: one VRRP instance as comma-separated `key=value` pairs.

use std::{str::FromStr, time::Duration};

use super::{ConfigError, InstanceSpec, parse_vip};
use crate::{datapath::Family, vrrp::Preempt};

/// `--instance` value: comma-separated `key=value`: name, vrid (1..255), priority (1..255), version
/// (2|3), interval (ms), track (a --check name; repeatable), track_interface (repeatable), vip (ADDR[/PREFIX], repeatable), excluded (owned, not advertised;
/// repeatable), peer (repeatable), src, pass,
/// preempt (yes|no|DELAY_SECONDS).
#[derive(Clone, Debug)]
pub struct InstanceArg(pub InstanceSpec);

fn field<T: FromStr>(key: &str, value: &str, what: &str) -> Result<T, String> {
    value.parse().map_err(|_| format!("{key}={value:?}: {what}"))
}

impl FromStr for InstanceArg {
    type Err = ConfigError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_instance(s).map(InstanceArg).map_err(ConfigError::Flag)
    }
}

fn parse_instance(s: &str) -> Result<InstanceSpec, String> {
    {
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
                "vip" => spec.vips.push(parse_vip(v).map_err(|e| e.to_string())?),
                "excluded" => spec.excluded.push(parse_vip(v).map_err(|e| e.to_string())?),
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
        Ok(spec)
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
            let err = text.parse::<InstanceArg>().expect_err(text).to_string();
            assert!(err.contains(needle), "{text}: {err}");
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
