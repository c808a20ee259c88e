//! `ipf-agent monitor`: attach the datapath read-only and print what it sees (events as they happen,
//! per-VRID state and counters periodically and at exit).

use std::{net::IpAddr, str::FromStr, time::Duration};

use anyhow::{Context as _, bail};
use serde_json::json;

use crate::datapath::{Datapath, DatapathOptions, EventView, Family, StateView, VridSpec, XdpModeArg};

/// `--vrid` value: `VRID[,key=value...]` with keys version (2|3), family (ipv4|ipv6), interval (ms),
/// priority, pass, peer (repeatable), addr (repeatable; enables the address-list check), primary.
#[derive(Clone, Debug)]
pub struct VridArg(pub VridSpec);

impl FromStr for VridArg {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut parts = s.split(',');
        let vrid_text = parts.next().unwrap_or_default();
        let vrid: u8 = vrid_text
            .parse()
            .ok()
            .filter(|v| *v >= 1)
            .ok_or_else(|| format!("VRID {vrid_text:?} is not 1..255"))?;
        let mut spec = VridSpec {
            family: Family::V4,
            vrid,
            version: 3,
            priority: 100,
            adver_int: Duration::from_secs(1),
            primary_addr: None,
            unicast_peers: Vec::new(),
            auth_pass: None,
            expected_addrs: None,
            master: false,
            guard: false,
        };
        let addr = |k: &str, v: &str| {
            v.parse::<IpAddr>()
                .map_err(|_| format!("{k}={v:?} is not an IP address"))
        };
        for part in parts {
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| format!("{part:?} is not key=value"))?;
            match k {
                "version" => {
                    spec.version = v
                        .parse()
                        .ok()
                        .filter(|v| *v == 2 || *v == 3)
                        .ok_or_else(|| format!("version={v:?} is not 2 or 3"))?
                }
                "family" => {
                    spec.family = match v {
                        "ipv4" | "4" => Family::V4,
                        "ipv6" | "6" => Family::V6,
                        _ => return Err(format!("family={v:?} is not ipv4 or ipv6")),
                    }
                }
                "interval" => {
                    spec.adver_int =
                        Duration::from_millis(v.parse().map_err(|_| format!("interval={v:?} is not milliseconds"))?)
                }
                "priority" => spec.priority = v.parse().map_err(|_| format!("priority={v:?} is not 0..255"))?,
                "pass" => spec.auth_pass = Some(v.to_owned()),
                "peer" => spec.unicast_peers.push(addr(k, v)?),
                "addr" => spec.expected_addrs.get_or_insert_with(Vec::new).push(addr(k, v)?),
                "primary" => spec.primary_addr = Some(addr(k, v)?),
                _ => return Err(format!("unknown key {k:?}")),
            }
        }
        spec.validate().map_err(|e| e.to_string())?;
        Ok(VridArg(spec))
    }
}

#[derive(Debug, clap::Args)]
pub struct MonitorArgs {
    /// Interface to attach to.
    #[arg(long, short = 'i', env = "IPF_INTERFACE")]
    pub interface: String,
    /// XDP attach mode.
    #[arg(long, value_enum, default_value = "auto", env = "IPF_XDP_MODE")]
    pub xdp_mode: XdpModeArg,
    /// A VRRP instance to follow: `VRID[,version=2|3][,family=ipv4|ipv6][,interval=MS][,pass=P][,peer=ADDR]...`.
    #[arg(long = "vrid", required = true)]
    pub vrids: Vec<VridArg>,
    /// A VIP to watch for ARP/NA claims from other MACs.
    #[arg(long = "vip")]
    pub vips: Vec<IpAddr>,
    /// Print JSON lines instead of text.
    #[arg(long)]
    pub json: bool,
    /// Print per-VRID state and counters this often (milliseconds; 0: only at exit).
    #[arg(long, default_value_t = 0)]
    pub report_interval_ms: u64,
    /// Kernel log level kept at load time (lower levels are pruned by the verifier).
    #[arg(long, default_value = "warn")]
    pub kernel_log_level: log::LevelFilter,
}

pub async fn run(args: MonitorArgs) -> anyhow::Result<()> {
    let mut opts = DatapathOptions::new(&args.interface, args.xdp_mode);
    opts.kernel_log_level = args.kernel_log_level;
    let (mut dp, mut events) =
        Datapath::start(&opts).with_context(|| format!("starting the datapath on {}", args.interface))?;
    for VridArg(spec) in &args.vrids {
        dp.set_vrid(spec)
            .with_context(|| format!("configuring VRID {}", spec.vrid))?;
    }
    for vip in &args.vips {
        // VRID 0 is never configured: the monitor has no role, every foreign claim is reported.
        dp.add_vip(vip, 0).with_context(|| format!("registering VIP {vip}"))?;
    }
    print_line(
        args.json,
        &json!({"type": "ready", "interface": args.interface, "datapath": dp.mode()}),
        &format!("datapath on {}: {}", args.interface, dp.mode()),
    );
    let mut sigterm =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).context("SIGTERM handler")?;
    let mut report =
        (args.report_interval_ms > 0).then(|| tokio::time::interval(Duration::from_millis(args.report_interval_ms)));
    loop {
        tokio::select! {
            ev = events.recv() => {
                let Some(ev) = ev else { bail!("datapath event stream ended") };
                let view = EventView::from(&ev);
                print_line(args.json, &json!({"type": "event", "event": view}), &format!(
                    "event {:?} vrid {} from {} ({}) priority {} interval {} ms",
                    view.kinds, view.vrid, view.addr, view.mac, view.priority, view.adver_int_ms));
            }
            _ = async { match report.as_mut() { Some(r) => { r.tick().await; } None => std::future::pending().await } } => {
                print_report(&dp, args.json)?;
            }
            _ = tokio::signal::ctrl_c() => break,
            _ = sigterm.recv() => break,
        }
    }
    print_report(&dp, args.json)?;
    // Dropping the datapath detaches the program before we exit.
    drop(dp);
    Ok(())
}

fn print_report(dp: &Datapath, as_json: bool) -> anyhow::Result<()> {
    let mut states = Vec::new();
    for spec in dp.vrids() {
        states.push(StateView::new(
            spec.family,
            spec.vrid,
            &dp.vrid_state(spec.family, spec.vrid)?,
        ));
    }
    let counters: serde_json::Map<String, serde_json::Value> = dp
        .counters()?
        .into_iter()
        .map(|(c, v)| (c.name().to_owned(), v.into()))
        .collect();
    let text = states
        .iter()
        .map(|s| {
            format!(
                "vrid {} {:?}: master {:?} priority {} interval {} ms, {} adverts, {} events",
                s.vrid, s.family, s.master_addr, s.master_priority, s.adver_int_ms, s.adverts_rx, s.events
            )
        })
        .chain(std::iter::once(format!(
            "counters: {}",
            serde_json::Value::Object(counters.clone())
        )))
        .collect::<Vec<_>>()
        .join("\n");
    print_line(
        as_json,
        &json!({"type": "report", "datapath": dp.mode(), "vrids": states, "counters": counters}),
        &text,
    );
    Ok(())
}

fn print_line(as_json: bool, value: &serde_json::Value, text: &str) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    let _ = if as_json {
        writeln!(out, "{value}")
    } else {
        writeln!(out, "{text}")
    };
    let _ = out.flush();
}
