//! `ipf-agent status`: the running agent answers on a local (unix) socket with the state of its
//! instances as JSON; the command prints a table, the JSON, or a one-line-per-instance probe.

use std::{
    net::IpAddr,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use anyhow::{Context as _, Result, bail};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::datapath::{DatapathReader, Family, ip_from_wire};

/// Default socket path (per host; tests and several agents per host pass their own).
pub const DEFAULT_SOCKET: &str = "/run/ipf/ipf-agent.sock";

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct InstanceStatus {
    pub instance: String,
    pub interface: String,
    pub vrid: u8,
    pub family: String,
    /// keepalived's names: INIT, BACKUP, MASTER, FAULT.
    pub state: String,
    pub priority: u8,
    pub configured_priority: u8,
    /// Who is master: this node when MASTER, else the source of the last advert the datapath saw.
    pub master: Option<IpAddr>,
    pub vips: Vec<String>,
    /// Unix time of the last state change.
    pub last_transition: f64,
    /// Ongoing split-brain episodes: our VIPs another node claims while we are MASTER.
    #[serde(default)]
    pub conflicts: Vec<ConflictStatus>,
    /// Unicast peers from DNS this instance also advertises to (`--peers-dns`).
    #[serde(default)]
    pub dns_peers: Vec<IpAddr>,
    /// While BACKUP after yielding a split brain (`--split-brain-policy yield`): the MAC of the
    /// node holding the VIPs, which this node guards against taking them back while it answers.
    #[serde(default)]
    pub yielded_to: Option<String>,
    #[serde(skip)]
    pub src: Option<IpAddr>,
    #[serde(skip)]
    pub family_key: Option<Family>,
}

/// One VIP another node claims while this instance is MASTER.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ConflictStatus {
    pub vip: IpAddr,
    /// The other node's MAC address.
    pub other_mac: String,
    /// Its IP address, when the neighbour table knows it.
    pub other_ip: Option<IpAddr>,
    /// Unix time the episode started.
    pub since: f64,
    /// Claims seen (rate-limited by the datapath).
    pub claims: u64,
}

/// What the effects keep current and the status server reads.
pub type Board = Arc<Mutex<Vec<InstanceStatus>>>;

/// The datapaths, known only once attached (the socket is bound before, to fail early).
pub type Readers = Arc<Mutex<Vec<DatapathReader>>>;

pub fn lock(board: &Board) -> std::sync::MutexGuard<'_, Vec<InstanceStatus>> {
    board.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn snapshot(board: &Board, readers: &Readers) -> Vec<InstanceStatus> {
    let mut out = lock(board).clone();
    let readers = readers.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone();
    for s in &mut out {
        if s.state == "MASTER" {
            s.master = s.src;
        } else if let (Some(family), Some(dp)) = (s.family_key, readers.iter().find(|r| r.interface == s.interface))
            && let Ok(st) = dp.vrid_state(family, s.vrid)
        {
            s.master =
                (st.last_seen_ns != 0 && st.master_priority != 0).then(|| ip_from_wire(family.wire(), &st.master_addr));
        }
    }
    out
}

/// Serves the board on `path` from a dedicated thread. The socket is bound before returning.
pub fn serve(board: Board, readers: Readers, path: &Path) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    // A socket left by a killed agent is replaced; a live one belongs to another agent.
    if std::os::unix::net::UnixStream::connect(path).is_ok() {
        bail!(
            "another ipf-agent serves {}; give this one its own --status-socket",
            path.display()
        );
    }
    if std::fs::symlink_metadata(path).is_ok_and(|m| std::os::unix::fs::FileTypeExt::is_socket(&m.file_type())) {
        std::fs::remove_file(path).with_context(|| format!("removing the stale socket {}", path.display()))?;
    }
    let listener = std::os::unix::net::UnixListener::bind(path)
        .with_context(|| format!("binding the status socket {}", path.display()))?;
    listener.set_nonblocking(true)?;
    crate::metrics::on_own_thread("ipf-status", move || async move {
        let listener = match tokio::net::UnixListener::from_std(listener) {
            Ok(l) => l,
            Err(e) => return tracing::error!("status listener: {e}"),
        };
        while let Ok((mut conn, _)) = listener.accept().await {
            let body = serde_json::to_vec(&snapshot(&board, &readers)).unwrap_or_default();
            let _ = conn.write_all(&body).await;
        }
    })
}

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// The running agent's status socket.
    #[arg(long, default_value = DEFAULT_SOCKET, env = "IPF_STATUS_SOCKET")]
    pub socket: PathBuf,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// One line per instance; exit non-zero when any instance is in FAULT (a probe).
    #[arg(long)]
    pub brief: bool,
}

/// Reads the running agent's status.
pub async fn query(socket: &Path) -> Result<Vec<InstanceStatus>> {
    let mut conn = tokio::net::UnixStream::connect(socket)
        .await
        .with_context(|| format!("connecting to {} (is ipf-agent running?)", socket.display()))?;
    let mut buf = Vec::new();
    conn.read_to_end(&mut buf).await?;
    decode(&buf)
}

/// The agent's answer as the client reads it (anything on the socket's path may answer).
pub fn decode(answer: &[u8]) -> Result<Vec<InstanceStatus>> {
    serde_json::from_slice(answer).context("decoding the agent's status")
}

/// How `status` prints the answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Table,
    Json,
    Brief,
}

/// The text `status` prints, and for `--brief` the instances in FAULT.
pub fn render(status: &[InstanceStatus], format: Format) -> Result<(String, Vec<&str>)> {
    use std::fmt::Write as _;
    let mut out = String::new();
    let mut faulty = Vec::new();
    match format {
        Format::Json => out = serde_json::to_string_pretty(status)? + "\n",
        Format::Brief => {
            for s in status {
                writeln!(out, "{} {}", s.instance, s.state)?;
            }
            faulty = status
                .iter()
                .filter(|s| s.state == "FAULT")
                .map(|s| s.instance.as_str())
                .collect();
        }
        Format::Table => {
            writeln!(
                out,
                "{:<16} {:<10} {:>4}  {:<7} {:>8}  {:<28} {:<20} VIPS",
                "INSTANCE", "INTERFACE", "VRID", "STATE", "PRIORITY", "MASTER", "SINCE"
            )?;
            for s in status {
                let since = since(s.last_transition);
                let master = s.master.map_or_else(|| "-".to_owned(), |m| m.to_string());
                writeln!(
                    out,
                    "{:<16} {:<10} {:>4}  {:<7} {:>8}  {:<28} {:<20} {}",
                    s.instance,
                    s.interface,
                    s.vrid,
                    s.state,
                    format!("{}/{}", s.priority, s.configured_priority),
                    master,
                    since,
                    s.vips.join(" ")
                )?;
                if let Some(mac) = &s.yielded_to {
                    writeln!(
                        out,
                        "  SPLIT BRAIN: VIPs yielded to {mac} (policy yield); taken back when it stops answering"
                    )?;
                }
                for c in &s.conflicts {
                    writeln!(
                        out,
                        "  SPLIT BRAIN: {} also claimed by {}{} since {} ({} claims)",
                        c.vip,
                        c.other_mac,
                        c.other_ip.map_or_else(String::new, |ip| format!(" ({ip})")),
                        self::since(c.since),
                        c.claims
                    )?;
                }
            }
        }
    }
    Ok((out, faulty))
}

pub async fn run(args: StatusArgs) -> Result<()> {
    let status = query(&args.socket).await?;
    let format = match (args.json, args.brief) {
        (true, _) => Format::Json,
        (false, true) => Format::Brief,
        (false, false) => Format::Table,
    };
    let (text, faulty) = render(&status, format)?;
    print!("{text}");
    if !faulty.is_empty() {
        bail!("in FAULT: {}", faulty.join(", "));
    }
    Ok(())
}

/// RFC 3339 (UTC, seconds) for a Unix time.
fn since(unix: f64) -> String {
    // The client prints whatever answered on the socket: a time before 1970 or after what RFC 3339
    // can write (year 9999) is shown as unknown instead of panicking.
    const LAST_RFC3339_SECOND: f64 = 253_402_300_799.0;
    if !(unix > 0.0 && unix <= LAST_RFC3339_SECOND) {
        return "-".into();
    }
    std::time::Duration::try_from_secs_f64(unix)
        .ok()
        .and_then(|d| std::time::UNIX_EPOCH.checked_add(d))
        .map_or_else(|| "-".into(), |t| humantime::format_rfc3339_seconds(t).to_string())
}

#[cfg(test)]
mod tests {
    #[test]
    fn transition_times() {
        assert_eq!(super::since(0.0), "-");
        assert_eq!(super::since(1_795_423_968.5), "2026-11-23T08:52:48Z");
        // Any answer decodes into a float: one too large for a date must not panic the client.
        for t in [1e300, 253_402_300_800.0, f64::MAX] {
            assert_eq!(super::since(t), "-");
        }
    }
}
