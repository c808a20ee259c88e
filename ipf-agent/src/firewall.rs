//! The firewall rule accepting VRRP multicast that the ipfailover image added (`OPENSHIFT_HA_IPTABLES_CHAIN`,
//! `OPENSHIFT_HA_NFTABLES_RULE`; origin PR #11327: with 224.0.0.18 blocked every node reported master).
//!
//! ipf itself reads adverts in XDP or on an AF_PACKET socket, both ahead of netfilter, so it hears its peers
//! either way; the rule is kept because the contract promises it and keepalived (a rollback, a mixed node)
//! needs it.
//!
//! The rules, ipf's own and nobody else's:
//! - iptables (filter table, `chain`, position 1):
//!   `-d 224.0.0.18/32 -p 112 -m comment --comment "ipf: accept VRRP" -j ACCEPT`, and with IPv6 instances
//!   the ip6tables twin for `ff02::12/128`. The comment is part of the match, so `-C`/`-D` never touch the
//!   old image's uncommented `-d 224.0.0.18/32 -j ACCEPT` or a user's rule.
//! - nftables: the table `inet ipf_failover` (the newer image's `inet keepalived` is left alone), replaced
//!   as a whole in one `nft -f -` transaction, so applying twice leaves one copy and a changed family set
//!   takes effect without a window with no rule.
//!
//! Protocol 112 only: the old image accepted everything sent to 224.0.0.18, but that group is VRRP's
//! (RFC 5798; CARP shares protocol 112), ipf parses nothing else, and keepalived's only other use of it,
//! VRRPv2 `auth_type AH` (protocol 51), is unsupported by ipf. The number rather than `vrrp` keeps the rule
//! independent of /etc/protocols. A caveat inherited from the newer image: an nftables `accept` ends only its
//! own base chain, so a drop in another table on the input hook (iptables-nft's included) still drops.
//!
//! The command-line tools, not netlink: they are what the images ran, `iptables` writes to whichever backend
//! (legacy or nft) the node uses and everyone else's tooling reads, and the Rust nftables netlink crates are
//! either libnftnl bindings or thinly maintained. The functions block (they wait for the tools); call them
//! from `spawn_blocking` in async code.

use std::{
    io::{self, Write as _},
    path::Path,
    process::{Command, Output, Stdio},
};

use crate::{config::Firewall, datapath::Family};

/// The comment on ipf's iptables rules and nftables rules.
pub const COMMENT: &str = "ipf: accept VRRP";
/// ipf's nftables table (family inet).
pub const NFT_TABLE: &str = "ipf_failover";
/// The chain in [`NFT_TABLE`].
pub const NFT_CHAIN: &str = "input";
/// VRRP's IP protocol number (RFC 5798).
const VRRP_PROTO: &str = "112";
/// Seconds iptables waits for the xtables lock before failing: long enough for kube-proxy's restores,
/// short enough not to hang the agent on a stuck holder.
const XTABLES_WAIT_SECS: &str = "10";

#[derive(Debug, thiserror::Error)]
pub enum FirewallError {
    #[error("`{tool}` not found (install the Debian/RHEL package `{package}`); it is needed for {setting}")]
    MissingTool {
        tool: &'static str,
        package: &'static str,
        setting: &'static str,
    },
    #[error("running `{tool}`: {source}")]
    Spawn {
        tool: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("`{command}` failed ({status}): {stderr}")]
    Command {
        command: String,
        status: String,
        stderr: String,
    },
    #[error("OPENSHIFT_HA_IPTABLES_CHAIN: chain {chain:?} does not exist in {tool}'s filter table ({stderr})")]
    MissingChain {
        chain: String,
        tool: &'static str,
        stderr: String,
    },
    #[error("OPENSHIFT_HA_IPTABLES_CHAIN: {chain:?} is not a usable iptables chain name")]
    InvalidChain { chain: String },
}

/// Makes ipf's accept rule for VRRP multicast present exactly once: IPv4 always, IPv6 when `families`
/// has [`Family::V6`] (an IPv6 rule from an earlier call without it is removed). Nothing is added when the
/// iptables chain is missing in any family needed.
pub fn apply(rule: &Firewall, families: &[Family]) -> Result<(), FirewallError> {
    let v6 = families.contains(&Family::V6);
    match rule {
        Firewall::Iptables { chain } => iptables_apply(chain, v6),
        Firewall::Nftables => nft_apply(v6),
    }
}

/// Removes ipf's rules (both families); Ok when there are none. Other rules, the old image's included,
/// stay.
pub fn remove(rule: &Firewall) -> Result<(), FirewallError> {
    match rule {
        Firewall::Iptables { chain } => {
            valid_chain(chain)?;
            for &family in present_families() {
                iptables_delete_all(family, chain)?;
            }
            Ok(())
        }
        // Adding the table first makes the deletion succeed when it is absent, in one transaction.
        Firewall::Nftables => nft_script(&format!("table inet {NFT_TABLE}\ndelete table inet {NFT_TABLE}\n")),
    }
}

/// Whether any of ipf's rules (either family) is in place.
pub fn is_present(rule: &Firewall) -> Result<bool, FirewallError> {
    match rule {
        Firewall::Iptables { chain } => {
            valid_chain(chain)?;
            for &family in present_families() {
                if iptables_check(family, chain)? {
                    return Ok(true);
                }
            }
            Ok(false)
        }
        Firewall::Nftables => {
            let out = run(&NFT, &["list", "tables", "inet"], None)?;
            let out = success(&NFT, &["list", "tables", "inet"], out)?;
            let want = format!("table inet {NFT_TABLE}");
            Ok(String::from_utf8_lossy(&out.stdout).lines().any(|l| l.trim() == want))
        }
    }
}

/// A program ipf runs, with what to tell the operator when it is missing.
struct Tool {
    name: &'static str,
    package: &'static str,
    setting: &'static str,
}

const IPTABLES: Tool = Tool {
    name: "iptables",
    package: "iptables",
    setting: "OPENSHIFT_HA_IPTABLES_CHAIN",
};
const IP6TABLES: Tool = Tool {
    name: "ip6tables",
    package: "iptables",
    setting: "OPENSHIFT_HA_IPTABLES_CHAIN with IPv6 instances",
};
const NFT: Tool = Tool {
    name: "nft",
    package: "nftables",
    setting: "OPENSHIFT_HA_NFTABLES_RULE",
};

fn xtables(family: Family) -> &'static Tool {
    match family {
        Family::V4 => &IPTABLES,
        Family::V6 => &IP6TABLES,
    }
}

/// `ipv6.disable=1` removes /proc/sys/net/ipv6; ip6tables fails there, so removal and checks skip it.
fn ipv6_enabled() -> bool {
    Path::new("/proc/sys/net/ipv6").exists()
}

/// The families whose rules may exist: removal and checks must not fail on IPv6-less nodes.
fn present_families() -> &'static [Family] {
    if ipv6_enabled() {
        &[Family::V4, Family::V6]
    } else {
        &[Family::V4]
    }
}

/// A name starting with `-` would be read as an option; iptables rejects the rest itself.
fn valid_chain(chain: &str) -> Result<(), FirewallError> {
    if chain.is_empty() || chain.starts_with('-') || chain.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(FirewallError::InvalidChain { chain: chain.into() });
    }
    Ok(())
}

/// The match and target of ipf's rule, as given to `-C`, `-I` and `-D`.
fn iptables_spec(family: Family) -> [&'static str; 10] {
    let dest = match family {
        Family::V4 => "224.0.0.18/32",
        Family::V6 => "ff02::12/128",
    };
    [
        "-d",
        dest,
        "-p",
        VRRP_PROTO,
        "-m",
        "comment",
        "--comment",
        COMMENT,
        "-j",
        "ACCEPT",
    ]
}

fn iptables_args<'a>(op: &'a str, chain: &'a str, position: Option<&'a str>, family: Family) -> Vec<&'a str> {
    let mut args = vec!["-w", XTABLES_WAIT_SECS, "-t", "filter", op, chain];
    args.extend(position);
    args.extend(iptables_spec(family));
    args
}

/// `-C`: exit 0 present, 1 absent (also when the chain is missing); anything else is a real failure
/// (2 bad arguments, 3/4 permission or lock).
fn iptables_check(family: Family, chain: &str) -> Result<bool, FirewallError> {
    let tool = xtables(family);
    let args = iptables_args("-C", chain, None, family);
    let out = run(tool, &args, None)?;
    match out.status.code() {
        Some(0) => Ok(true),
        Some(1) => Ok(false),
        _ => Err(failed(tool, &args, &out)),
    }
}

/// `-D` until it reports nothing left, so copies from racing applies go too.
fn iptables_delete_all(family: Family, chain: &str) -> Result<(), FirewallError> {
    let tool = xtables(family);
    let args = iptables_args("-D", chain, None, family);
    // Bounded: a rule that keeps coming back is someone else's loop, not ours to chase.
    for _ in 0..16 {
        let out = run(tool, &args, None)?;
        match out.status.code() {
            Some(0) => tracing::info!(tool = tool.name, chain, "firewall: removed ipf's VRRP accept rule"),
            Some(1) => return Ok(()),
            _ => return Err(failed(tool, &args, &out)),
        }
    }
    Ok(())
}

fn iptables_apply(chain: &str, v6: bool) -> Result<(), FirewallError> {
    valid_chain(chain)?;
    let wanted: &[Family] = if v6 { &[Family::V4, Family::V6] } else { &[Family::V4] };
    let mut missing = Vec::new();
    for &family in wanted {
        if !iptables_check(family, chain)? {
            missing.push(family);
        }
    }
    // Every chain is checked before anything is inserted, so a missing one leaves no half-applied state.
    for &family in &missing {
        let tool = xtables(family);
        let args = ["-w", XTABLES_WAIT_SECS, "-t", "filter", "-S", chain];
        let out = run(tool, &args, None)?;
        match out.status.code() {
            Some(0) => {}
            Some(1) => {
                return Err(FirewallError::MissingChain {
                    chain: chain.into(),
                    tool: tool.name,
                    stderr: stderr_of(&out),
                });
            }
            _ => return Err(failed(tool, &args, &out)),
        }
    }
    for family in missing {
        let tool = xtables(family);
        let args = iptables_args("-I", chain, Some("1"), family);
        let out = run(tool, &args, None)?;
        success(tool, &args, out)?;
        tracing::info!(tool = tool.name, chain, "firewall: inserted ipf's VRRP accept rule");
    }
    if !v6 && ipv6_enabled() {
        iptables_delete_all(Family::V6, chain)?;
    }
    Ok(())
}

/// The whole of ipf's nftables table.
fn nft_ruleset(v6: bool) -> String {
    let mut rules = format!("\t\tip daddr 224.0.0.18 meta l4proto {VRRP_PROTO} counter accept comment \"{COMMENT}\"\n");
    if v6 {
        rules.push_str(&format!(
            "\t\tip6 daddr ff02::12 meta l4proto {VRRP_PROTO} counter accept comment \"{COMMENT}\"\n"
        ));
    }
    // Add-delete-add in one transaction: replaces an existing table atomically (no `destroy` before
    // nft 1.0.8); priority 0 and policy accept as the newer image's `inet keepalived`.
    format!(
        "table inet {NFT_TABLE}\ndelete table inet {NFT_TABLE}\ntable inet {NFT_TABLE} {{\n\tchain {NFT_CHAIN} {{\n\t\ttype filter hook input priority 0; policy accept;\n{rules}\t}}\n}}\n"
    )
}

fn nft_apply(v6: bool) -> Result<(), FirewallError> {
    nft_script(&nft_ruleset(v6))?;
    tracing::info!(
        table = NFT_TABLE,
        ipv6 = v6,
        "firewall: nftables VRRP accept table in place"
    );
    Ok(())
}

fn nft_script(script: &str) -> Result<(), FirewallError> {
    let args = ["-f", "-"];
    let out = run(&NFT, &args, Some(script))?;
    success(&NFT, &args, out).map(drop)
}

/// Runs `tool args`, feeding `stdin`. A tool missing from PATH is also looked for in the sbin directories,
/// which a non-root PATH may lack.
fn run(tool: &Tool, args: &[&str], stdin: Option<&str>) -> Result<Output, FirewallError> {
    let candidates = [
        tool.name.to_owned(),
        format!("/usr/sbin/{}", tool.name),
        format!("/sbin/{}", tool.name),
    ];
    for program in &candidates {
        let mut cmd = Command::new(program);
        cmd.args(args)
            .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(source) => {
                return Err(FirewallError::Spawn {
                    tool: tool.name,
                    source,
                });
            }
        };
        // The script is far below a pipe's capacity, so writing before reading cannot deadlock. A tool that
        // exits without reading (broken pipe) says why through its status and stderr.
        let written = match (stdin, child.stdin.take()) {
            (Some(input), Some(mut pipe)) => match pipe.write_all(input.as_bytes()) {
                Err(e) if e.kind() != io::ErrorKind::BrokenPipe => Err(e),
                _ => Ok(()),
            },
            _ => Ok(()),
        };
        // Waited for even after a failed write, so no child is left behind.
        let out = child.wait_with_output();
        return written.and(out).map_err(|source| FirewallError::Spawn {
            tool: tool.name,
            source,
        });
    }
    Err(FirewallError::MissingTool {
        tool: tool.name,
        package: tool.package,
        setting: tool.setting,
    })
}

fn success(tool: &Tool, args: &[&str], out: Output) -> Result<Output, FirewallError> {
    if out.status.success() {
        Ok(out)
    } else {
        Err(failed(tool, args, &out))
    }
}

fn failed(tool: &Tool, args: &[&str], out: &Output) -> FirewallError {
    FirewallError::Command {
        command: std::iter::once(tool.name)
            .chain(args.iter().copied())
            .collect::<Vec<_>>()
            .join(" "),
        status: out.status.to_string(),
        stderr: stderr_of(out),
    }
}

fn stderr_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).trim().to_owned()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;

    #[test]
    fn chain_names() {
        for bad in ["", "-F", "IN PUT", "a\nb"] {
            assert!(
                matches!(valid_chain(bad), Err(FirewallError::InvalidChain { .. })),
                "{bad:?}"
            );
        }
        for good in ["INPUT", "OPENSHIFT-HA", "my_chain"] {
            assert!(valid_chain(good).is_ok(), "{good:?}");
        }
    }

    #[test]
    fn nft_ruleset_families() {
        let v4 = nft_ruleset(false);
        assert!(v4.contains("ip daddr 224.0.0.18 meta l4proto 112 counter accept"));
        assert!(!v4.contains("ff02::12"));
        assert!(v4.starts_with("table inet ipf_failover\ndelete table inet ipf_failover\n"));
        assert!(nft_ruleset(true).contains("ip6 daddr ff02::12 meta l4proto 112 counter accept"));
    }

    #[test]
    fn missing_tool_names_the_package() {
        let tool = Tool {
            name: "ipf-no-such-firewall-tool",
            package: "ipf-pkg",
            setting: "OPENSHIFT_HA_X",
        };
        let err = run(&tool, &[], None).unwrap_err();
        assert!(matches!(err, FirewallError::MissingTool { .. }), "{err:?}");
        let text = err.to_string();
        assert!(
            text.contains("ipf-no-such-firewall-tool") && text.contains("`ipf-pkg`"),
            "{text}"
        );
    }

    #[test]
    fn failure_carries_stderr_and_stdin_is_fed() {
        let sh = Tool {
            name: "sh",
            package: "dash",
            setting: "tests",
        };
        let args = ["-c", "read line; echo \"no: $line\" >&2; exit 3"];
        let out = run(&sh, &args, Some("stdin text\n")).unwrap();
        let err = success(&sh, &args, out).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("no: stdin text") && text.contains("exit status: 3"),
            "{text}"
        );
    }

    #[test]
    fn iptables_rule_is_marked() {
        let args = iptables_args("-I", "INPUT", Some("1"), Family::V6);
        assert_eq!(
            args.join(" "),
            "-w 10 -t filter -I INPUT 1 -d ff02::12/128 -p 112 -m comment --comment ipf: accept VRRP -j ACCEPT"
        );
    }
}
