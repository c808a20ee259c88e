//! A health check as the configuration describes it (keepalived's `vrrp_script`, the ipfailover
//! monitor port, the arcts kube-apiserver check) and the `--check` flag's syntax. Running checks is
//! `crate::checks`' job.

use std::{net::IpAddr, str::FromStr, time::Duration};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CheckKind {
    /// Run through `sh -c` (keepalived passes the script line to a shell too).
    Script(String),
    /// TCP connect to the node's primary address on this port.
    Tcp(u16),
    /// The arcts/keepalived image's `chk_kube_apiserver.sh`, natively: HTTPS GET `/healthz` on
    /// `localhost:port` and, while this node holds `address` (the API server's VIP), on
    /// `address:port`; healthy when every request answers 200 within the timeout.
    KubeApiserver { address: IpAddr, port: u16 },
}

/// `--check name=N,script=CMD|tcp=PORT[,interval=S][,timeout=S][,rise=N][,fall=N][,weight=W]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckSpec {
    pub name: String,
    pub kind: CheckKind,
    pub interval: Duration,
    pub timeout: Duration,
    pub rise: u32,
    pub fall: u32,
    /// 0: failing puts tracking instances in FAULT; < 0: lowers their priority while failing; > 0:
    /// raises it while succeeding (keepalived's semantics).
    pub weight: i32,
}

impl FromStr for CheckSpec {
    type Err = super::ConfigError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_check(s).map_err(super::ConfigError::Flag)
    }
}

fn parse_check(s: &str) -> Result<CheckSpec, String> {
    {
        let mut name = None;
        let mut kind = None;
        let (mut interval, mut timeout, mut rise, mut fall, mut weight) = (Duration::from_secs(2), None, 1, 1, 0);
        let secs = |k: &str, v: &str| {
            v.parse::<f64>()
                .ok()
                .filter(|s| *s > 0.0 && s.is_finite())
                .map(Duration::from_secs_f64)
                .ok_or_else(|| format!("check {k}={v:?}: seconds > 0 expected"))
        };
        let count = |k: &str, v: &str| {
            v.parse::<u32>()
                .ok()
                .filter(|n| *n >= 1)
                .ok_or_else(|| format!("check {k}={v:?}: a count >= 1 expected"))
        };
        // A script may contain commas: `script=` takes the rest of the value.
        let mut rest = s;
        while !rest.is_empty() {
            let (part, tail) = if rest.starts_with("script=") {
                (rest, "")
            } else {
                rest.split_once(',').unwrap_or((rest, ""))
            };
            rest = tail;
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| format!("check {part:?} is not key=value"))?;
            match k {
                "name" => name = Some(v.to_owned()),
                "script" => kind = Some(CheckKind::Script(v.to_owned())),
                "tcp" => {
                    kind = Some(CheckKind::Tcp(
                        v.parse()
                            .ok()
                            .filter(|p| *p > 0)
                            .ok_or_else(|| format!("check tcp={v:?}: a port 1..65535 expected"))?,
                    ))
                }
                "interval" => interval = secs(k, v)?,
                "timeout" => timeout = Some(secs(k, v)?),
                "rise" => rise = count(k, v)?,
                "fall" => fall = count(k, v)?,
                "weight" => {
                    weight = v
                        .parse()
                        .ok()
                        .filter(|w: &i32| (-253..=253).contains(w))
                        .ok_or_else(|| format!("check weight={v:?}: -253..253 expected"))?
                }
                _ => return Err(format!("check: unknown key {k:?}")),
            }
        }
        let name = name.ok_or("check: name= is required")?;
        let kind = kind.ok_or_else(|| format!("check {name}: script= or tcp= is required"))?;
        Ok(CheckSpec {
            name,
            kind,
            interval,
            timeout: timeout.unwrap_or(interval),
            rise,
            fall,
            weight,
        })
    }
}
