//! Writing a configuration back as keepalived.conf, laid out like the ipfailover image's file.

use std::{
    fmt::Write as _,
    net::{IpAddr, Ipv4Addr},
    time::Duration,
};

use super::read::KUBE_APISERVER_SCRIPT;
use crate::{
    config::{CheckKind, Config, Firewall, Garp, InitialState, InstanceSpec},
    datapath::Family,
    vrrp::Preempt,
};

/// The address the rendered TCP check connects to when no node address is given: what the ipfailover
/// image wrote when it found no IPv4 on the interface.
pub const RENDER_DEFAULT_NODE: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// Writes `cfg` as keepalived.conf, laid out like the file the ipfailover image generated, so the two
/// can be diffed. A `CheckKind::Tcp` check is written as the image wrote it, `/bin/bash -c
/// '</dev/tcp/<node>/<port>'`, with `node` (the address the check connects to), or
/// [`RENDER_DEFAULT_NODE`] (127.0.0.1, the image's own fallback) when `None`. What keepalived has no
/// keyword for (the firewall rule, values keepalived would round) becomes `# ipf:` comments.
/// `global_defs` gets `script_user` (the configured user, else root) and `enable_script_security`
/// when scripts are configured:
/// keepalived refuses to run (and `keepalived -t` rejects) scripts without them.
pub fn render(cfg: &Config, node: Option<IpAddr>) -> String {
    let mut out = String::new();
    // Writing to a String cannot fail; `let _ =` keeps clippy quiet about the Result.
    let _ = render_into(&mut out, cfg, node.unwrap_or(RENDER_DEFAULT_NODE));
    out
}

/// A word as keepalived reads it back: quoted when it holds spaces, quotes, braces or comment marks.
pub(super) fn word(text: &str) -> String {
    let plain = !text.is_empty()
        && !text
            .chars()
            .any(|c| c.is_whitespace() || matches!(c, '"' | '{' | '}' | '#' | '!' | '\\'));
    if plain { text.to_owned() } else { quoted(text) }
}

pub(super) fn quoted(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        if matches!(c, '"' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// Seconds as keepalived writes them: `1`, `0.5`, `0.01`.
pub(super) fn seconds(d: Duration) -> String {
    let micros = d.as_micros();
    let (whole, fraction) = (micros / 1_000_000, micros % 1_000_000);
    if fraction == 0 {
        whole.to_string()
    } else {
        format!("{whole}.{fraction:06}").trim_end_matches('0').to_owned()
    }
}

/// `keyword N` in whole seconds, with an `# ipf:` note when keepalived's whole seconds cannot hold it.
pub(super) fn whole_seconds_line(out: &mut String, indent: &str, keyword: &str, d: Duration) -> std::fmt::Result {
    let rounded = Duration::from_secs(d.as_secs() + u64::from(d.subsec_nanos() > 0));
    if rounded != d {
        writeln!(
            out,
            "{indent}# ipf: {keyword} is {}s in ipf; keepalived takes whole seconds",
            seconds(d)
        )?;
    }
    writeln!(out, "{indent}{keyword} {}", rounded.as_secs())
}

pub(super) fn render_into(out: &mut String, cfg: &Config, node: IpAddr) -> std::fmt::Result {
    writeln!(out, "! Configuration File for keepalived")?;
    writeln!(
        out,
        "! Rendered by ipf from its configuration, to compare with keepalived's."
    )?;
    match &cfg.firewall {
        Some(Firewall::Iptables { chain }) => writeln!(
            out,
            "# ipf: firewall: accept VRRP multicast (224.0.0.18) with a rule in iptables chain {chain}"
        )?,
        Some(Firewall::Nftables) => writeln!(
            out,
            "# ipf: firewall: accept VRRP multicast (224.0.0.18) in an nftables table of ipf's own"
        )?,
        None => {}
    }
    writeln!(out)?;

    let has_scripts = !cfg.checks.is_empty()
        || cfg.instances.iter().any(|i| {
            let n = &i.notify;
            n.any.is_some() || n.master.is_some() || n.backup.is_some() || n.fault.is_some() || n.stop.is_some()
        });
    if cfg.router_id.is_some() || has_scripts {
        writeln!(out, "global_defs {{")?;
        if let Some(id) = &cfg.router_id {
            writeln!(out, "   router_id {}", word(id))?;
        }
        if has_scripts {
            match &cfg.script_security.run_as {
                Some(r) => writeln!(
                    out,
                    "   script_user {}{}",
                    word(&r.user),
                    r.group.as_ref().map(|g| format!(" {}", word(g))).unwrap_or_default()
                )?,
                None => writeln!(out, "   script_user root")?,
            }
            writeln!(out, "   enable_script_security")?;
        }
        writeln!(out, "}}")?;
        writeln!(out)?;
    }

    for check in &cfg.checks {
        writeln!(out, "vrrp_script {} {{", word(&check.name))?;
        let script = match &check.kind {
            CheckKind::Script(s) => s.clone(),
            CheckKind::Tcp(port) => format!("/bin/bash -c '</dev/tcp/{node}/{port}'"),
            CheckKind::KubeApiserver { address, port } => format!("{KUBE_APISERVER_SCRIPT} {address} {port}"),
        };
        writeln!(out, "   script {}", quoted(&script))?;
        whole_seconds_line(out, "   ", "interval", check.interval)?;
        if check.timeout != check.interval {
            whole_seconds_line(out, "   ", "timeout", check.timeout)?;
        }
        if check.weight != 0 {
            writeln!(out, "   weight {}", check.weight)?;
        }
        if check.rise != 1 {
            writeln!(out, "   rise {}", check.rise)?;
        }
        if check.fall != 1 {
            writeln!(out, "   fall {}", check.fall)?;
        }
        writeln!(out, "}}")?;
        writeln!(out)?;
    }

    for (n, i) in cfg.instances.iter().enumerate() {
        if n > 0 {
            writeln!(out)?;
        }
        render_instance(out, i)?;
    }
    Ok(())
}

pub(super) fn render_instance(out: &mut String, i: &InstanceSpec) -> std::fmt::Result {
    writeln!(out, "vrrp_instance {} {{", word(&i.name))?;
    writeln!(out, "   interface {}", word(&i.interface))?;
    let state = match i.initial_state {
        InitialState::Master => "MASTER",
        InitialState::Backup => "BACKUP",
    };
    writeln!(out, "   state {state}")?;
    writeln!(out, "   virtual_router_id {}", i.vrid)?;
    writeln!(out, "   priority {}", i.priority)?;
    if i.version == 3 || i.family == Family::V6 {
        writeln!(out, "   version 3")?;
    }
    let step = if i.version == 2 { 1_000_000 } else { 10_000 };
    if !i.adver_int.as_micros().is_multiple_of(step) {
        writeln!(
            out,
            "   # ipf: advert_int is {}s in ipf; keepalived rounds it",
            seconds(i.adver_int)
        )?;
    }
    writeln!(out, "   advert_int {}", seconds(i.adver_int))?;
    let preempt_ignored = i.initial_state == InitialState::Master || i.priority == 255;
    match i.preempt {
        Preempt::Yes => {}
        Preempt::No => {
            if preempt_ignored {
                writeln!(
                    out,
                    "   # ipf: keepalived ignores nopreempt with state MASTER or priority 255"
                )?;
            }
            writeln!(out, "   nopreempt")?;
        }
        Preempt::Delay(d) => {
            if i.initial_state == InitialState::Master {
                writeln!(out, "   # ipf: keepalived ignores preempt_delay with state MASTER")?;
            }
            writeln!(out, "   preempt_delay {}", seconds(d))?;
        }
    }
    if let Some(pass) = &i.auth_pass {
        if i.version == 2 && i.family == Family::V4 {
            writeln!(out, "   authentication {{")?;
            writeln!(out, "      auth_type PASS")?;
            writeln!(out, "      auth_pass {}", word(pass))?;
            writeln!(out, "   }}")?;
        } else {
            writeln!(out, "   # ipf: auth_pass is set, but VRRPv3 has no authentication")?;
        }
    }
    if !i.tracks.is_empty() {
        writeln!(out, "   track_script {{")?;
        for t in &i.tracks {
            writeln!(out, "      {}", word(t))?;
        }
        writeln!(out, "   }}")?;
    }
    for (keyword, script) in [
        ("notify", &i.notify.any),
        ("notify_master", &i.notify.master),
        ("notify_backup", &i.notify.backup),
        ("notify_fault", &i.notify.fault),
        ("notify_stop", &i.notify.stop),
    ] {
        if let Some(s) = script {
            writeln!(out, "   {keyword} {}", quoted(s))?;
        }
    }
    if let Some(src) = i.src {
        // Without peers keepalived takes unicast_src_ip as a deprecated multicast setting.
        let keyword = if i.unicast_peers.is_empty() {
            "mcast_src_ip"
        } else {
            "unicast_src_ip"
        };
        writeln!(out, "   {keyword} {src}")?;
    }
    if !i.unicast_peers.is_empty() {
        writeln!(out, "   unicast_peer {{")?;
        for p in &i.unicast_peers {
            writeln!(out, "      {p}")?;
        }
        writeln!(out, "   }}")?;
    }
    for (keyword, list) in [
        ("virtual_ipaddress", &i.vips),
        ("virtual_ipaddress_excluded", &i.excluded),
    ] {
        if list.is_empty() {
            continue;
        }
        writeln!(out, "   {keyword} {{")?;
        for v in list {
            let mut v = v.clone();
            // Every address names its interface, as the image's file did.
            v.dev = Some(i.vip_interface(&v).to_owned());
            writeln!(out, "      {v}")?;
        }
        writeln!(out, "   }}")?;
    }
    // The own interface is always tracked, and keepalived rejects it in the list.
    let tracked: Vec<&String> = i.track_interfaces.iter().filter(|t| **t != i.interface).collect();
    if !tracked.is_empty() {
        writeln!(out, "   track_interface {{")?;
        for t in tracked {
            writeln!(out, "      {}", word(t))?;
        }
        writeln!(out, "   }}")?;
    }
    let default = Garp::default();
    if i.garp.delay != default.delay {
        whole_seconds_line(out, "   ", "garp_master_delay", i.garp.delay)?;
    }
    if i.garp.repeat != default.repeat {
        writeln!(out, "   garp_master_repeat {}", i.garp.repeat)?;
    }
    if i.garp.refresh != default.refresh {
        whole_seconds_line(out, "   ", "garp_master_refresh", i.garp.refresh.unwrap_or_default())?;
    }
    writeln!(out, "}}")
}
