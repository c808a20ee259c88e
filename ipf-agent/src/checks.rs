//! Health checks as keepalived's `vrrp_script` runs them: a script (exit 0 = healthy) or a TCP connect
//! to this node's own address and a port (the ipfailover monitor port), every `interval`, killed and
//! counted as failed after `timeout`; `rise` successes / `fall` failures in a row change the status.
//! A status change is logged as keepalived does (`VRRP_Script(<name>) succeeded|failed`) and sent to
//! the agent, which turns it into Fault (weight 0) or a priority change (weight ≠ 0).

use std::{net::IpAddr, str::FromStr, time::Duration};

use tokio::sync::mpsc;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CheckKind {
    /// Run through `sh -c` (keepalived passes the script line to a shell too).
    Script(String),
    /// TCP connect to the node's primary address on this port.
    Tcp(u16),
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
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
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

/// A check's series: its status, results and run time.
#[derive(Clone)]
pub struct CheckMetrics {
    pub up: prometheus::IntGauge,
    pub successes: prometheus::IntCounter,
    pub failures: prometheus::IntCounter,
    pub duration: prometheus::Histogram,
}

/// A check's status change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckEvent {
    pub name: String,
    pub ok: bool,
}

async fn run_once(spec: &CheckSpec, target: IpAddr) -> bool {
    match &spec.kind {
        CheckKind::Tcp(port) => {
            matches!(
                tokio::time::timeout(spec.timeout, tokio::net::TcpStream::connect((target, *port))).await,
                Ok(Ok(_))
            )
        }
        CheckKind::Script(cmd) => {
            let mut c = tokio::process::Command::new("sh");
            c.arg("-c")
                .arg(cmd)
                .kill_on_drop(true)
                .stdin(std::process::Stdio::null());
            // Its own process group, so a timeout kills whatever the script started too.
            c.process_group(0);
            let Ok(mut child) = c.spawn() else {
                tracing::warn!("VRRP_Script({}) cannot be started", spec.name);
                return false;
            };
            match tokio::time::timeout(spec.timeout, child.wait()).await {
                Ok(Ok(status)) => status.success(),
                Ok(Err(_)) => false,
                Err(_) => {
                    if let Some(pid) = child.id() {
                        // SAFETY: signalling the process group we created.
                        unsafe { libc::kill(-(pid as i32), libc::SIGKILL) };
                    }
                    let _ = child.wait().await;
                    tracing::warn!("VRRP_Script({}) timed out after {:?}", spec.name, spec.timeout);
                    false
                }
            }
        }
    }
}

/// Runs `spec` forever (until `tx` closes), starting healthy as keepalived does, and reports status
/// changes.
pub async fn run(spec: CheckSpec, target: IpAddr, tx: mpsc::UnboundedSender<CheckEvent>, metrics: CheckMetrics) {
    let mut ok = true;
    metrics.up.set(1);
    let (mut successes, mut failures) = (0u32, 0u32);
    let mut tick = tokio::time::interval(spec.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let started = std::time::Instant::now();
        let passed = run_once(&spec, target).await;
        metrics.duration.observe(started.elapsed().as_secs_f64());
        if passed { &metrics.successes } else { &metrics.failures }.inc();
        if passed {
            successes += 1;
            failures = 0;
        } else {
            failures += 1;
            successes = 0;
        }
        let now_ok = if ok {
            failures < spec.fall
        } else {
            successes >= spec.rise
        };
        if now_ok != ok {
            ok = now_ok;
            metrics.up.set(i64::from(ok));
            // keepalived's wording, which existing tooling greps for.
            if ok {
                tracing::info!("VRRP_Script({}) succeeded", spec.name);
            } else {
                tracing::info!("VRRP_Script({}) failed", spec.name);
            }
            if tx
                .send(CheckEvent {
                    name: spec.name.clone(),
                    ok,
                })
                .is_err()
            {
                return;
            }
        }
    }
}

/// What the tracked checks mean for an instance: Fault (a failing weight-0 check), and its priority.
pub fn effect(configured: u8, tracked: &[(i32, bool)]) -> (bool, u8) {
    let fault = tracked.iter().any(|(w, ok)| *w == 0 && !ok);
    let delta: i32 = tracked
        .iter()
        .map(|(w, ok)| if (*w > 0 && *ok) || (*w < 0 && !ok) { *w } else { 0 })
        .sum();
    // The address owner keeps 255; others stay within 1..254 (keepalived's clamp).
    let priority = if configured == 255 {
        255
    } else {
        (i32::from(configured) + delta).clamp(1, 254) as u8
    };
    (fault, priority)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_names_bad_values() {
        let c: CheckSpec = "name=port,tcp=80,interval=2,fall=3,rise=2,weight=-20"
            .parse()
            .expect("valid");
        assert_eq!(
            (c.kind.clone(), c.fall, c.rise, c.weight, c.timeout),
            (CheckKind::Tcp(80), 3, 2, -20, Duration::from_secs(2))
        );
        let s: CheckSpec = "name=s,interval=1,script=test -f /a,b".parse().expect("valid");
        assert_eq!(s.kind, CheckKind::Script("test -f /a,b".into()));
        for (text, needle) in [
            ("name=x,tcp=0", "tcp=\"0\""),
            ("name=x,tcp=80,interval=-1", "interval=\"-1\""),
            ("name=x,tcp=80,fall=0", "fall=\"0\""),
            ("name=x,tcp=80,weight=300", "weight=\"300\""),
            ("tcp=80", "name="),
            ("name=x", "script= or tcp="),
        ] {
            let e = text.parse::<CheckSpec>().expect_err(text);
            assert!(e.contains(needle), "{text}: {e}");
        }
    }

    #[test]
    fn weights_follow_keepalived() {
        assert_eq!(effect(100, &[]), (false, 100));
        assert_eq!(effect(100, &[(0, false)]), (true, 100));
        assert_eq!(effect(100, &[(-30, false), (10, true)]), (false, 80));
        assert_eq!(effect(100, &[(-30, true), (10, false)]), (false, 100));
        assert_eq!(effect(20, &[(-50, false)]), (false, 1));
        assert_eq!(effect(250, &[(20, true)]), (false, 254));
        assert_eq!(effect(255, &[(-50, false)]), (false, 255));
    }
}
