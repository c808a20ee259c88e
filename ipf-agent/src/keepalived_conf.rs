//! keepalived.conf front end: reads the subset of keepalived's configuration language that the
//! ipfailover and arcts/keepalived images generate and that their users commonly hand-write
//! (compat-contract.md, "keepalived.conf subset") into the typed [`Config`], and writes a [`Config`]
//! back as keepalived.conf laid out like the ipfailover image's generated file, so users can diff the
//! old image's file against ipf's.
//!
//! Lexing follows keepalived: `!` and `#` start a comment anywhere outside double quotes, `{` and `}`
//! are tokens wherever they stand, a double-quoted string is one word, a line ending in `\` continues
//! on the next one, and a block's `{` may be on the line after its keyword. Every error names the file,
//! the line, the keyword and the offending value. Keywords outside the supported set are errors, except
//! those known to be harmless (mail, SNMP, process tuning...), which are accepted with a warning in
//! [`Config::warnings`].
//!
//! Where keepalived silently adjusts a combination (priority 255 without `state`, `nopreempt` with
//! `state MASTER`, authentication in VRRPv3...), the model gets what keepalived would run and a warning
//! says so.

use std::{
    collections::HashMap,
    fmt::Write as _,
    net::{IpAddr, Ipv4Addr},
    path::{Path, PathBuf},
    time::Duration,
};

use crate::{
    checks::{CheckKind, CheckSpec},
    config::{Config, Firewall, Garp, InitialState, InstanceSpec, Notify},
    datapath::Family,
    network::Vip,
    run_args::parse_vip,
    vrrp::Preempt,
};

/// A keepalived.conf that cannot be used as written.
#[derive(Debug, thiserror::Error)]
pub enum ConfError {
    /// A problem at a line of the file (or of a file it includes).
    #[error("{path}:{line}: {message}")]
    At { path: String, line: usize, message: String },
    /// The file given to [`parse_file`] cannot be read.
    #[error("{path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// Reads a keepalived.conf given as text; `path` is only used in messages. `include` needs the file
/// system: use [`parse_file`].
pub fn parse(text: &str, path: &str) -> Result<Config, ConfError> {
    let mut reader = Reader::new();
    reader.lex_file(path.to_owned(), None, text, &[])?;
    reader.finish()
}

/// Reads a keepalived.conf from `path`, following `include` lines: a relative path is taken from the
/// including file's directory, and the last component may be a glob (`*`, `?`); the matches are read
/// in name order and a pattern matching nothing is an error.
pub fn parse_file(path: &Path) -> Result<Config, ConfError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| ConfError::Read {
        path: shown.clone(),
        source,
    })?;
    let mut reader = Reader::new();
    let canonical = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    reader.lex_file(shown, Some(path.to_path_buf()), &text, &[canonical])?;
    reader.finish()
}

// ---------------------------------------------------------------------------------------------------
// Lexing

/// Where a token comes from: an index into the reader's file names, and a 1-based line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Loc {
    file: usize,
    line: usize,
}

#[derive(Clone, Debug)]
struct Word {
    text: String,
    loc: Loc,
}

#[derive(Clone, Debug)]
enum Tok {
    Word(Word),
    Open(Loc),
    Close(Loc),
    /// End of a line: a keyword's values never continue past it.
    Eol,
}

/// One line's tokens before they get a location.
enum LineTok {
    /// `quoted`: written in double quotes, so never an `include` or a conditional.
    Word {
        text: String,
        quoted: bool,
    },
    Open,
    Close,
}

/// Deepest `include` chain followed (keepalived's own limit is of the same order); deeper is taken
/// for a loop.
const MAX_INCLUDE_DEPTH: usize = 8;
/// Deepest `{` nesting accepted: keepalived's grammar needs three levels; this bounds the recursion.
const MAX_NESTING: usize = 16;

struct Reader {
    /// Names of the files read, as shown in messages; `Loc::file` indexes it.
    files: Vec<String>,
    /// File system paths of the files read, for resolving their includes (`None`: text given to
    /// `parse`).
    paths: Vec<Option<PathBuf>>,
    tokens: Vec<Tok>,
    /// Messages with their place, sorted by it at the end (instances are completed after reading).
    warnings: Vec<(Loc, String)>,
}

/// Splits one logical line into words and braces, dropping its comment.
fn tokenize_line(line: &str) -> Result<Vec<LineTok>, String> {
    let mut out = Vec::new();
    let mut chars = line.chars().peekable();
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut Vec<LineTok>| {
        if !word.is_empty() {
            out.push(LineTok::Word {
                text: std::mem::take(word),
                quoted: false,
            });
        }
    };
    while let Some(c) = chars.next() {
        match c {
            '!' | '#' => break,
            '{' => {
                flush(&mut word, &mut out);
                out.push(LineTok::Open);
            }
            '}' => {
                flush(&mut word, &mut out);
                out.push(LineTok::Close);
            }
            '"' => {
                // keepalived ends a word at a quote and takes the quoted text as the next word.
                flush(&mut word, &mut out);
                let mut text = String::new();
                let mut closed = false;
                while let Some(q) = chars.next() {
                    match q {
                        '"' => {
                            closed = true;
                            break;
                        }
                        // `\"` and `\\` stand for themselves; other escapes are left to the script's
                        // shell, as written.
                        '\\' if matches!(chars.peek(), Some('"' | '\\')) => {
                            if let Some(escaped) = chars.next() {
                                text.push(escaped);
                            }
                        }
                        other => text.push(other),
                    }
                }
                if !closed {
                    return Err(format!("unterminated quote in {:?}", line.trim()));
                }
                out.push(LineTok::Word { text, quoted: true });
            }
            // `\#` and `\!` are the characters themselves, not a comment (keepalived's escape).
            '\\' if matches!(chars.peek(), Some('#' | '!')) => {
                if let Some(escaped) = chars.next() {
                    word.push(escaped);
                }
            }
            c if c.is_whitespace() => flush(&mut word, &mut out),
            c => word.push(c),
        }
    }
    flush(&mut word, &mut out);
    Ok(out)
}

/// Whether `line` ends with an unescaped `\`: it continues on the next line.
fn continues(line: &str) -> bool {
    line.trim_end().chars().rev().take_while(|c| *c == '\\').count() % 2 == 1
}

/// Matches a file name against a glob of `*` and `?`.
fn glob_match(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    // Iterative matcher with backtracking to the last `*`.
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ni));
            pi += 1;
        } else if let Some((sp, sn)) = star {
            pi = sp + 1;
            ni = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

fn has_glob(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

impl Reader {
    fn new() -> Self {
        Reader {
            files: Vec::new(),
            paths: Vec::new(),
            tokens: Vec::new(),
            warnings: Vec::new(),
        }
    }

    fn error(&self, loc: Loc, message: impl Into<String>) -> ConfError {
        ConfError::At {
            path: self.files.get(loc.file).cloned().unwrap_or_default(),
            line: loc.line,
            message: message.into(),
        }
    }

    /// Where an earlier occurrence is, seen from `here`: `line N`, or `FILE:N` in another file.
    fn first_at(&self, first: Loc, here: Loc) -> String {
        if first.file == here.file {
            format!("line {}", first.line)
        } else {
            format!(
                "{}:{}",
                self.files.get(first.file).map_or("", String::as_str),
                first.line
            )
        }
    }

    fn warn(&mut self, loc: Loc, message: impl std::fmt::Display) {
        let path = self.files.get(loc.file).cloned().unwrap_or_default();
        self.warnings.push((loc, format!("{path}:{}: {message}", loc.line)));
    }

    /// Appends the tokens of one file; `chain` holds the canonical paths of the including files, to
    /// catch a file including itself.
    fn lex_file(
        &mut self,
        shown: String,
        path: Option<PathBuf>,
        text: &str,
        chain: &[PathBuf],
    ) -> Result<(), ConfError> {
        let file = self.files.len();
        self.files.push(shown);
        self.paths.push(path);
        let mut physical = text.lines().enumerate();
        while let Some((index, first)) = physical.next() {
            let loc = Loc { file, line: index + 1 };
            let mut logical = first.to_owned();
            while continues(&logical) {
                let trimmed = logical.trim_end().len();
                logical.truncate(trimmed - 1);
                match physical.next() {
                    Some((_, next)) => {
                        logical.push(' ');
                        logical.push_str(next);
                    }
                    None => break,
                }
            }
            let tokens = tokenize_line(&logical).map_err(|m| self.error(loc, m))?;
            if let Some(LineTok::Word { text, quoted: false }) = tokens.first() {
                if text == "include" {
                    self.include(loc, &tokens[1..], chain)?;
                    continue;
                }
                if text.starts_with('@') {
                    return Err(self.error(
                        loc,
                        format!("conditional line {text:?}: keepalived's @name configuration ids are not supported"),
                    ));
                }
                if text.starts_with('$') && text.contains('=') {
                    return Err(self.error(
                        loc,
                        format!("definition {text:?}: keepalived's $NAME=value definitions are not supported"),
                    ));
                }
            }
            for t in tokens {
                self.tokens.push(match t {
                    LineTok::Word { text, .. } => Tok::Word(Word { text, loc }),
                    LineTok::Open => Tok::Open(loc),
                    LineTok::Close => Tok::Close(loc),
                });
            }
            self.tokens.push(Tok::Eol);
        }
        Ok(())
    }

    fn include(&mut self, loc: Loc, args: &[LineTok], chain: &[PathBuf]) -> Result<(), ConfError> {
        let pattern = match args {
            [LineTok::Word { text, .. }] => text.clone(),
            [] => return Err(self.error(loc, "include: missing file name")),
            _ => return Err(self.error(loc, "include: takes one file name (a glob for several files)")),
        };
        let Some(including) = self.paths.get(loc.file).cloned().flatten() else {
            return Err(self.error(
                loc,
                format!("include {pattern:?}: includes are only followed when the configuration is read from a file"),
            ));
        };
        if chain.len() >= MAX_INCLUDE_DEPTH {
            return Err(self.error(
                loc,
                format!("include {pattern:?}: more than {MAX_INCLUDE_DEPTH} nested includes (a loop?)"),
            ));
        }
        let base = including.parent().map(Path::to_path_buf).unwrap_or_default();
        let target = base.join(&pattern);
        let dir = target.parent().map(Path::to_path_buf).unwrap_or_default();
        if has_glob(&dir.to_string_lossy()) {
            return Err(self.error(
                loc,
                format!("include {pattern:?}: globs are supported in the file name only, not in directories"),
            ));
        }
        let files = match target.file_name().map(|n| n.to_string_lossy().into_owned()) {
            Some(name) if has_glob(&name) => {
                if name.contains('[') {
                    return Err(self.error(
                        loc,
                        format!("include {pattern:?}: only the glob characters * and ? are supported"),
                    ));
                }
                let entries = std::fs::read_dir(&dir)
                    .map_err(|e| self.error(loc, format!("include {pattern:?}: cannot list {}: {e}", dir.display())))?;
                let mut names: Vec<String> = entries
                    .filter_map(|e| e.ok())
                    .filter(|e| e.file_type().is_ok_and(|t| !t.is_dir()))
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| glob_match(&name, n))
                    .collect();
                names.sort();
                if names.is_empty() {
                    return Err(self.error(loc, format!("include {pattern:?}: no file matches")));
                }
                names.into_iter().map(|n| dir.join(n)).collect()
            }
            _ => vec![target],
        };
        for path in files {
            let text = std::fs::read_to_string(&path)
                .map_err(|e| self.error(loc, format!("include {pattern:?}: cannot read {}: {e}", path.display())))?;
            let canonical = std::fs::canonicalize(&path).unwrap_or_else(|_| path.clone());
            if chain.contains(&canonical) {
                return Err(self.error(loc, format!("include {pattern:?}: {} includes itself", path.display())));
            }
            let mut nested = chain.to_vec();
            nested.push(canonical);
            // The included file's own includes resolve against its directory.
            self.lex_file(path.display().to_string(), Some(path.clone()), &text, &nested)?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------------
// Blocks

/// A keyword line with its values and, if a `{` follows, its block.
#[derive(Debug)]
struct Node {
    words: Vec<Word>,
    block: Option<Vec<Node>>,
}

impl Node {
    fn keyword(&self) -> &str {
        self.words.first().map_or("", |w| w.text.as_str())
    }

    fn loc(&self) -> Loc {
        self.words.first().map_or(Loc { file: 0, line: 0 }, |w| w.loc)
    }

    fn args(&self) -> &[Word] {
        self.words.get(1..).unwrap_or(&[])
    }

    /// The values joined as written, for messages.
    fn value_text(&self) -> String {
        self.args()
            .iter()
            .map(|w| w.text.as_str())
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// A value line (`192.0.2.1/24 dev eth0`) as written, for messages and `parse_vip`.
fn line_text(node: &Node) -> String {
    node.words.iter().map(|w| w.text.as_str()).collect::<Vec<_>>().join(" ")
}

/// `keyword "values"` for messages, or just the keyword when it has none.
fn shown(node: &Node) -> String {
    let value = node.value_text();
    if value.is_empty() {
        node.keyword().to_owned()
    } else {
        format!("{} {value:?}", node.keyword())
    }
}

impl Reader {
    fn build_tree(&self) -> Result<Vec<Node>, ConfError> {
        let mut pos = 0;
        self.nodes_until_close(&mut pos, None, 0)
    }

    fn nodes_until_close(&self, pos: &mut usize, open: Option<Loc>, depth: usize) -> Result<Vec<Node>, ConfError> {
        let mut nodes = Vec::new();
        loop {
            match self.tokens.get(*pos) {
                None => {
                    return match open {
                        Some(loc) => Err(self.error(loc, "\"{\" is never closed (a \"}\" is missing)")),
                        None => Ok(nodes),
                    };
                }
                Some(Tok::Eol) => *pos += 1,
                Some(Tok::Close(loc)) => {
                    *pos += 1;
                    return match open {
                        Some(_) => Ok(nodes),
                        None => Err(self.error(*loc, "unexpected \"}\": no block is open")),
                    };
                }
                Some(Tok::Open(loc)) => {
                    return Err(self.error(*loc, "unexpected \"{\": a block must follow a keyword"));
                }
                Some(Tok::Word(_)) => {
                    let mut words = Vec::new();
                    while let Some(Tok::Word(w)) = self.tokens.get(*pos) {
                        words.push(w.clone());
                        *pos += 1;
                    }
                    // keepalived accepts the `{` on the line after the keyword.
                    let mut ahead = *pos;
                    while matches!(self.tokens.get(ahead), Some(Tok::Eol)) {
                        ahead += 1;
                    }
                    let block = match self.tokens.get(ahead) {
                        Some(Tok::Open(loc)) => {
                            if depth + 1 > MAX_NESTING {
                                return Err(self.error(*loc, "blocks nested too deeply"));
                            }
                            *pos = ahead + 1;
                            Some(self.nodes_until_close(pos, Some(*loc), depth + 1)?)
                        }
                        _ => None,
                    };
                    nodes.push(Node { words, block });
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------------
// Keywords

/// global_defs keywords accepted and ignored: they configure mail, SNMP, D-Bus, process scheduling or
/// keepalived's own checks, none of which changes how ipf elects or what it puts on the wire.
const GLOBAL_IGNORED: &[&str] = &[
    "script_user",
    "enable_script_security",
    "max_auto_priority",
    "notification_email",
    "notification_email_from",
    "smtp_server",
    "smtp_helo_name",
    "smtp_connect_timeout",
    "smtp_alert",
    "smtp_alert_vrrp",
    "smtp_alert_checker",
    "lvs_id",
    "vrrp_skip_check_adv_addr",
    "vrrp_check_unicast_src",
    "vrrp_garp_master_refresh_repeat",
    "vrrp_garp_lower_prio_delay",
    "vrrp_garp_lower_prio_repeat",
    "vrrp_garp_interval",
    "vrrp_gna_interval",
    "vrrp_lower_prio_no_advert",
    "vrrp_higher_prio_send_advert",
    "vrrp_priority",
    "vrrp_no_swap",
    "vrrp_rt_priority",
    "vrrp_cpu_affinity",
    "vrrp_rlimit_rttime",
    "vrrp_rlimit_rtime",
    "vrrp_process_name",
    "process_names",
    "dynamic_interfaces",
    "enable_snmp_vrrp",
    "enable_snmp_keepalived",
    "enable_snmp_rfc",
    "enable_snmp_rfcv2",
    "enable_snmp_rfcv3",
    "enable_traps",
    "enable_dbus",
    "vrrp_startup_delay",
    "log_unknown_vrids",
    "vrrp_netlink_cmd_rcv_bufs",
    "vrrp_netlink_cmd_rcv_bufs_force",
    "vrrp_netlink_monitor_rcv_bufs",
    "vrrp_netlink_monitor_rcv_bufs_force",
    "vrrp_rx_bufs_policy",
    "vrrp_rx_bufs_multiplier",
    "vrrp_iptables",
    "vrrp_ipsets",
    "nftables",
];

/// keepalived features ipf does not have, with what to do instead.
const GLOBAL_UNSUPPORTED: &[(&str, &str)] = &[
    ("vrrp_strict", "strict RFC mode is not supported"),
    (
        "vrrp_mcast_group4",
        "ipf sends adverts to 224.0.0.18 (or to unicast peers)",
    ),
    (
        "vrrp_mcast_group6",
        "ipf sends adverts to ff02::12 (or to unicast peers)",
    ),
    ("notify_fifo", "notify FIFOs are not supported: use notify scripts"),
    (
        "notify_fifo_script",
        "notify FIFOs are not supported: use notify scripts",
    ),
    ("vrrp_notify_fifo", "notify FIFOs are not supported: use notify scripts"),
    (
        "vrrp_notify_fifo_script",
        "notify FIFOs are not supported: use notify scripts",
    ),
    ("startup_script", "startup scripts are not supported"),
    ("shutdown_script", "shutdown scripts are not supported"),
    (
        "vrrp_garp_extra_if",
        "gratuitous ARP on extra interfaces is not supported",
    ),
];

/// vrrp_instance keywords accepted and ignored: mail, logging, receive-side tolerances and GARP
/// fine-tuning that keep the election and the addresses as they are.
const INSTANCE_IGNORED: &[&str] = &[
    "smtp_alert",
    "debug",
    "accept",
    "skip_check_adv_addr",
    "check_unicast_src",
    "unicast_ttl",
    "unicast_fault_no_peer",
    "promote_secondaries",
    "garp_master_refresh_repeat",
    "garp_lower_prio_delay",
    "garp_lower_prio_repeat",
    "lower_prio_no_advert",
    "higher_prio_send_advert",
    "notify_priority_changes",
    "kernel_rx_buf_size",
    "linkbeat_use_polling",
    "lvs_sync_daemon_interface",
    "timer_expired_backup",
    "track_src_ip",
];

const INSTANCE_UNSUPPORTED: &[(&str, &str)] = &[
    (
        "dont_track_primary",
        "ipf always puts the instance in FAULT when its interface goes down",
    ),
    ("use_vmac", "virtual MAC interfaces are not supported"),
    ("use_vmac_addr", "virtual MAC interfaces are not supported"),
    ("vmac_xmit_base", "virtual MAC interfaces are not supported"),
    ("use_ipvlan", "ipvlan interfaces are not supported"),
    ("no_accept", "ipf always accepts traffic to the VIPs it holds"),
    ("strict_mode", "strict RFC mode is not supported"),
    (
        "mcast_dst_ip",
        "ipf sends adverts to the standard group (or to unicast peers)",
    ),
    ("track_file", "only track_script and track_interface are supported"),
    ("track_process", "only track_script and track_interface are supported"),
    ("track_bfd", "only track_script and track_interface are supported"),
    ("virtual_routes", "virtual routes are not supported"),
    ("virtual_rules", "virtual rules are not supported"),
    ("no_virtual_ipaddress", "an instance needs its addresses"),
    ("native_ipv6", "the family comes from the addresses"),
    ("down_timer_adverts", "ipf uses RFC 5798's three adverts"),
    ("old_unicast_checksum", "ipf computes the RFC checksum"),
    ("v3_checksum_as_v2", "ipf computes the RFC checksum"),
    ("vrf", "VRFs are not supported"),
    (
        "notify_deleted",
        "only notify, notify_master, notify_backup, notify_fault and notify_stop are supported",
    ),
    (
        "notify_master_rx_lower_pri",
        "only notify, notify_master, notify_backup, notify_fault and notify_stop are supported",
    ),
    ("auth_hmac", "only auth_type PASS is supported"),
    ("owner_ignore_adverts", "not supported"),
    ("garp_extra_if", "gratuitous ARP on extra interfaces is not supported"),
];

const TOP_UNSUPPORTED: &[(&str, &str)] = &[
    ("vrrp_sync_group", "sync groups are not supported"),
    ("virtual_server", "ipf does VRRP only, not LVS"),
    ("virtual_server_group", "ipf does VRRP only, not LVS"),
    ("static_ipaddress", "static addresses are not supported"),
    ("static_routes", "static routes are not supported"),
    ("static_rules", "static rules are not supported"),
    ("vrrp_track_file", "only vrrp_script checks are supported"),
    ("track_file", "only vrrp_script checks are supported"),
    ("vrrp_track_process", "only vrrp_script checks are supported"),
    ("garp_group", "gratuitous ARP groups are not supported"),
    ("linkbeat_interfaces", "not supported"),
    ("bfd_instance", "BFD is not supported"),
    ("net_namespace", "run ipf inside the namespace instead"),
];

/// keepalived's limit on interface names (IFNAMSIZ - 1).
const MAX_IFNAME: usize = 15;

/// global_defs values the instances take as defaults.
#[derive(Default)]
struct Globals {
    /// First line of each keyword, to reject a second one.
    seen: HashMap<String, Loc>,
    router_id: Option<String>,
    version: Option<u8>,
    default_interface: Option<String>,
    garp: GarpSettings,
}

/// GARP settings as written; unset ones come from global_defs, then from keepalived's defaults.
#[derive(Clone, Copy, Default)]
struct GarpSettings {
    delay: Option<Duration>,
    repeat: Option<u32>,
    refresh: Option<Option<Duration>>,
}

impl GarpSettings {
    fn or(self, fallback: GarpSettings) -> GarpSettings {
        GarpSettings {
            delay: self.delay.or(fallback.delay),
            repeat: self.repeat.or(fallback.repeat),
            refresh: self.refresh.or(fallback.refresh),
        }
    }

    fn resolve(self) -> Garp {
        let default = Garp::default();
        Garp {
            repeat: self.repeat.unwrap_or(default.repeat),
            delay: self.delay.unwrap_or(default.delay),
            refresh: self.refresh.unwrap_or(default.refresh),
        }
    }
}

/// An instance as written, before defaults and cross-checks.
struct RawInstance {
    name: String,
    loc: Loc,
    state: Option<InitialState>,
    interface: Option<(String, Loc)>,
    vrid: Option<u8>,
    priority: Option<u8>,
    advert: Option<(u64, String, Loc)>,
    version: Option<(u8, Loc)>,
    preempt: Option<(Preempt, String, Loc)>,
    auth_type: Option<Loc>,
    auth_pass: Option<(String, Loc)>,
    src: Option<(IpAddr, String, Loc)>,
    peers: Vec<(IpAddr, Loc)>,
    peer_block: Option<Loc>,
    vips: Vec<(Vip, String, Loc)>,
    excluded: Vec<(Vip, String, Loc)>,
    tracks: Vec<(String, Loc)>,
    track_interfaces: Vec<(String, Loc)>,
    notify: Notify,
    garp: GarpSettings,
    /// First line of each single-valued keyword, to reject a second one.
    seen: HashMap<String, Loc>,
}

impl Reader {
    fn finish(mut self) -> Result<Config, ConfError> {
        let tree = self.build_tree()?;
        let mut globals = Globals::default();
        let mut checks: Vec<(CheckSpec, Loc)> = Vec::new();
        let mut raws: Vec<RawInstance> = Vec::new();
        for node in &tree {
            let loc = node.loc();
            match node.keyword() {
                // keepalived takes several global_defs blocks; a keyword still counts once.
                "global_defs" => self.global_defs(node, &mut globals)?,
                "vrrp_script" => {
                    let check = self.vrrp_script(node)?;
                    if let Some((_, first)) = checks.iter().find(|(c, _)| c.name == check.name) {
                        return Err(self.error(
                            loc,
                            format!(
                                "vrrp_script {:?} defined twice (first at {})",
                                check.name,
                                self.first_at(*first, loc)
                            ),
                        ));
                    }
                    checks.push((check, loc));
                }
                "vrrp_instance" => {
                    let raw = self.vrrp_instance(node)?;
                    if let Some(first) = raws.iter().find(|r| r.name == raw.name) {
                        return Err(self.error(
                            loc,
                            format!(
                                "vrrp_instance {:?} defined twice (first at {})",
                                raw.name,
                                self.first_at(first.loc, loc)
                            ),
                        ));
                    }
                    raws.push(raw);
                }
                keyword => {
                    if let Some((_, why)) = TOP_UNSUPPORTED.iter().find(|(k, _)| *k == keyword) {
                        return Err(self.error(loc, format!("{}: {why}", shown(node))));
                    }
                    return Err(self.error(loc, format!("unknown keyword {keyword:?} at top level")));
                }
            }
        }
        let mut instances: Vec<InstanceSpec> = Vec::new();
        let mut vrids: HashMap<(String, Family, u8), String> = HashMap::new();
        for raw in raws {
            let vrid_loc = raw.seen.get("virtual_router_id").copied().unwrap_or(raw.loc);
            let instance = self.complete_instance(raw, &globals, &checks)?;
            let key = (instance.interface.clone(), instance.family, instance.vrid);
            if let Some(first) = vrids.insert(key, instance.name.clone()) {
                return Err(self.error(
                    vrid_loc,
                    format!(
                        "virtual_router_id \"{}\": vrrp_instance {first} already uses it for {} on {}",
                        instance.vrid,
                        if instance.family == Family::V4 { "IPv4" } else { "IPv6" },
                        instance.interface
                    ),
                ));
            }
            instances.push(instance);
        }
        // By file (in reading order), then line: as a reader goes through each file.
        self.warnings.sort_by_key(|(loc, _)| (loc.file, loc.line));
        Ok(Config {
            instances,
            checks: checks.into_iter().map(|(c, _)| c).collect(),
            firewall: None,
            router_id: globals.router_id,
            warnings: self.warnings.into_iter().map(|(_, w)| w).collect(),
        })
    }

    /// The single value of `node`, which takes no block.
    fn one_value<'n>(&self, node: &'n Node) -> Result<&'n Word, ConfError> {
        self.no_block(node)?;
        match node.args() {
            [value] => Ok(value),
            [] => Err(self.error(node.loc(), format!("{}: missing value", node.keyword()))),
            _ => Err(self.error(
                node.loc(),
                format!("{} {:?}: takes one value", node.keyword(), node.value_text()),
            )),
        }
    }

    fn no_value(&self, node: &Node) -> Result<(), ConfError> {
        self.no_block(node)?;
        if node.args().is_empty() {
            Ok(())
        } else {
            Err(self.error(
                node.loc(),
                format!("{} {:?}: takes no value", node.keyword(), node.value_text()),
            ))
        }
    }

    fn no_block(&self, node: &Node) -> Result<(), ConfError> {
        match node.block {
            None => Ok(()),
            Some(_) => Err(self.error(node.loc(), format!("{}: takes no \"{{\" block", node.keyword()))),
        }
    }

    fn block<'n>(&self, node: &'n Node) -> Result<&'n [Node], ConfError> {
        match &node.block {
            Some(children) => Ok(children),
            None => Err(self.error(node.loc(), format!("{}: needs a \"{{ ... }}\" block", node.keyword()))),
        }
    }

    /// The name after a block keyword (`vrrp_script NAME {`).
    fn block_name<'n>(&self, node: &'n Node) -> Result<&'n str, ConfError> {
        match node.args() {
            [name] => Ok(&name.text),
            [] => Err(self.error(node.loc(), format!("{}: missing name", node.keyword()))),
            _ => Err(self.error(
                node.loc(),
                format!("{} {:?}: takes one name", node.keyword(), node.value_text()),
            )),
        }
    }

    /// Lines of a value block (`virtual_ipaddress { ... }`): each a line of words, no nested blocks.
    fn value_lines<'n>(&self, node: &'n Node) -> Result<&'n [Node], ConfError> {
        if !node.args().is_empty() {
            return Err(self.error(
                node.loc(),
                format!("{} {:?}: values go inside the block", node.keyword(), node.value_text()),
            ));
        }
        let lines = self.block(node)?;
        for line in lines {
            self.no_block(line)?;
        }
        Ok(lines)
    }

    fn number<T: std::str::FromStr + PartialOrd + std::fmt::Display>(
        &self,
        node: &Node,
        min: T,
        max: T,
    ) -> Result<T, ConfError> {
        let word = self.one_value(node)?;
        word.text
            .parse::<T>()
            .ok()
            .filter(|n| *n >= min && *n <= max && !word.text.starts_with('+'))
            .ok_or_else(|| {
                self.error(
                    word.loc,
                    format!("{} {:?}: must be {min}..{max}", node.keyword(), word.text),
                )
            })
    }

    fn whole_seconds(&self, node: &Node, min: u64, max: u64) -> Result<Duration, ConfError> {
        let word = self.one_value(node)?;
        word.text
            .parse::<u64>()
            .ok()
            .filter(|n| (min..=max).contains(n) && !word.text.starts_with('+'))
            .map(Duration::from_secs)
            .ok_or_else(|| {
                self.error(
                    word.loc,
                    format!(
                        "{} {:?}: whole seconds {min}..{max} expected",
                        node.keyword(),
                        word.text
                    ),
                )
            })
    }

    fn address(&self, node: &Node, word: &Word) -> Result<IpAddr, ConfError> {
        word.text.parse().map_err(|_| {
            self.error(
                word.loc,
                format!("{} {:?}: not an IP address", node.keyword(), word.text),
            )
        })
    }

    fn interface_name(&self, node: &Node, word: &Word) -> Result<String, ConfError> {
        if word.text.is_empty() || word.text.len() > MAX_IFNAME || word.text.contains('/') {
            return Err(self.error(
                word.loc,
                format!(
                    "{} {:?}: not an interface name (1 to {MAX_IFNAME} bytes, no \"/\")",
                    node.keyword(),
                    word.text
                ),
            ));
        }
        Ok(word.text.clone())
    }

    fn ignored(&mut self, node: &Node, context: &str) {
        let what = shown(node);
        let extra = if node.block.is_some() { " (with its block)" } else { "" };
        self.warn(
            node.loc(),
            format!("{what}{extra} in {context}: accepted and ignored, ipf has no use for it"),
        );
    }

    fn global_defs(&mut self, node: &Node, globals: &mut Globals) -> Result<(), ConfError> {
        if !node.args().is_empty() {
            return Err(self.error(
                node.loc(),
                format!("global_defs {:?}: takes no name", node.value_text()),
            ));
        }
        for child in self.block(node)? {
            let keyword = child.keyword();
            let loc = child.loc();
            if let Some(first) = globals.seen.insert(keyword.to_owned(), loc) {
                return Err(self.error(
                    loc,
                    format!(
                        "{keyword} given twice in global_defs (first at {})",
                        self.first_at(first, loc)
                    ),
                ));
            }
            match keyword {
                "router_id" => globals.router_id = Some(self.one_value(child)?.text.clone()),
                "vrrp_version" => globals.version = Some(self.number::<u8>(child, 2, 3)?),
                "default_interface" => {
                    let word = self.one_value(child)?;
                    globals.default_interface = Some(self.interface_name(child, word)?);
                }
                "vrrp_garp_master_delay" => globals.garp.delay = Some(self.whole_seconds(child, 0, 3600)?),
                "vrrp_garp_master_repeat" => globals.garp.repeat = Some(self.number::<u32>(child, 1, 1000)?),
                "vrrp_garp_master_refresh" => {
                    let d = self.whole_seconds(child, 0, 86_400)?;
                    globals.garp.refresh = Some((!d.is_zero()).then_some(d));
                }
                "vrrp_min_garp" => {
                    self.no_block(child)?;
                    let on = match child.args() {
                        [] => true,
                        [w] if matches!(w.text.as_str(), "true" | "on" | "yes") => true,
                        [w] if matches!(w.text.as_str(), "false" | "off" | "no") => false,
                        _ => {
                            return Err(self.error(
                                loc,
                                format!("vrrp_min_garp {:?}: true or false expected", child.value_text()),
                            ));
                        }
                    };
                    // keepalived: one GARP, no second burst, no refresh, unless set explicitly.
                    if on {
                        let g = &mut globals.garp;
                        g.repeat = g.repeat.or(Some(1));
                        g.delay = g.delay.or(Some(Duration::ZERO));
                        g.refresh = g.refresh.or(Some(None));
                    }
                }
                k if GLOBAL_IGNORED.contains(&k) => self.ignored(child, "global_defs"),
                k => {
                    if let Some((_, why)) = GLOBAL_UNSUPPORTED.iter().find(|(u, _)| *u == k) {
                        return Err(self.error(loc, format!("{}: {why}", shown(child))));
                    }
                    return Err(self.error(loc, format!("unknown keyword {k:?} in global_defs")));
                }
            }
        }
        Ok(())
    }

    fn vrrp_script(&mut self, node: &Node) -> Result<CheckSpec, ConfError> {
        let name = self.block_name(node)?.to_owned();
        let context = format!("vrrp_script {name}");
        let mut script: Option<(String, Loc)> = None;
        let mut interval = Duration::from_secs(1);
        let mut timeout: Option<Duration> = None;
        let (mut weight, mut rise, mut fall) = (0i32, 1u32, 1u32);
        let mut seen: HashMap<String, Loc> = HashMap::new();
        for child in self.block(node)? {
            let keyword = child.keyword();
            let loc = child.loc();
            if let Some(first) = seen.insert(keyword.to_owned(), loc) {
                return Err(self.error(
                    loc,
                    format!(
                        "{keyword} given twice in {context} (first at {})",
                        self.first_at(first, loc)
                    ),
                ));
            }
            match keyword {
                "script" => {
                    self.no_block(child)?;
                    match child.args() {
                        [cmd] if !cmd.text.trim().is_empty() => script = Some((cmd.text.clone(), cmd.loc)),
                        [] | [_] => return Err(self.error(loc, "script: missing command")),
                        _ => {
                            return Err(self.error(
                                loc,
                                format!(
                                    "script {:?}: quote the command and its arguments as one string (keepalived would run only {:?})",
                                    child.value_text(),
                                    child.args()[0].text
                                ),
                            ));
                        }
                    }
                }
                "interval" => interval = self.whole_seconds(child, 1, 86_400)?,
                "timeout" => timeout = Some(self.whole_seconds(child, 1, 86_400)?),
                "weight" => {
                    self.no_block(child)?;
                    match child.args() {
                        [w] => {
                            weight = w
                                .text
                                .parse::<i32>()
                                .ok()
                                .filter(|v| (-253..=253).contains(v))
                                .ok_or_else(|| self.error(loc, format!("weight {:?}: must be -253..253", w.text)))?
                        }
                        [] => return Err(self.error(loc, "weight: missing value")),
                        _ => {
                            return Err(self.error(
                                loc,
                                format!(
                                    "weight {:?}: \"reverse\" and other options are not supported",
                                    child.value_text()
                                ),
                            ));
                        }
                    }
                }
                "rise" => rise = self.number::<u32>(child, 1, 1_000_000)?,
                "fall" => fall = self.number::<u32>(child, 1, 1_000_000)?,
                "user" => {
                    self.no_block(child)?;
                    self.warn(
                        loc,
                        format!(
                            "user {:?} in {context}: ignored, ipf runs checks as its own user",
                            child.value_text()
                        ),
                    );
                }
                "init_fail" => {
                    return Err(self.error(loc, "init_fail: not supported (ipf checks start healthy)"));
                }
                k => return Err(self.error(loc, format!("unknown keyword {k:?} in {context}"))),
            }
        }
        let (script, script_loc) =
            script.ok_or_else(|| self.error(node.loc(), format!("{context}: script is required")))?;
        let kind = match tcp_check_port(&script) {
            Some(TcpScript::Port { port, host }) => {
                let target = if host.is_empty() { "no address" } else { host.as_str() };
                self.warn(
                    script_loc,
                    format!(
                        "script {script:?} in {context}: run as ipf's native TCP check of port {port} on this node's address (the file names {target})"
                    ),
                );
                CheckKind::Tcp(port)
            }
            Some(TcpScript::BadPort(p)) => {
                return Err(self.error(
                    script_loc,
                    format!("script {script:?}: TCP port {p:?} must be 1..65535"),
                ));
            }
            None => match kube_apiserver_check(&script) {
                Some(kind) => {
                    self.warn(
                        script_loc,
                        format!("script {script:?} in {context}: run as ipf's native kube-apiserver check"),
                    );
                    kind
                }
                None => CheckKind::Script(script),
            },
        };
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

    /// Records `keyword` in `raw.seen`, rejecting a second occurrence.
    fn once(&self, raw: &mut RawInstance, keyword: &str, loc: Loc) -> Result<(), ConfError> {
        match raw.seen.insert(keyword.to_owned(), loc) {
            Some(first) => Err(self.error(
                loc,
                format!(
                    "{keyword} given twice in vrrp_instance {} (first at {})",
                    raw.name,
                    self.first_at(first, loc)
                ),
            )),
            None => Ok(()),
        }
    }

    fn vrrp_instance(&mut self, node: &Node) -> Result<RawInstance, ConfError> {
        let name = self.block_name(node)?.to_owned();
        let context = format!("vrrp_instance {name}");
        let mut raw = RawInstance {
            name,
            loc: node.loc(),
            state: None,
            interface: None,
            vrid: None,
            priority: None,
            advert: None,
            version: None,
            preempt: None,
            auth_type: None,
            auth_pass: None,
            src: None,
            peers: Vec::new(),
            peer_block: None,
            vips: Vec::new(),
            excluded: Vec::new(),
            tracks: Vec::new(),
            track_interfaces: Vec::new(),
            notify: Notify::default(),
            garp: GarpSettings::default(),
            seen: HashMap::new(),
        };
        for child in self.block(node)? {
            let keyword = child.keyword();
            let loc = child.loc();
            match keyword {
                "state" => {
                    self.once(&mut raw, keyword, loc)?;
                    let word = self.one_value(child)?;
                    raw.state = Some(match word.text.as_str() {
                        "MASTER" => InitialState::Master,
                        "BACKUP" => InitialState::Backup,
                        other => {
                            return Err(self.error(
                                word.loc,
                                format!("state {other:?}: MASTER or BACKUP expected (upper case, as keepalived wants)"),
                            ));
                        }
                    });
                }
                "interface" => {
                    self.once(&mut raw, keyword, loc)?;
                    let word = self.one_value(child)?;
                    raw.interface = Some((self.interface_name(child, word)?, loc));
                }
                "virtual_router_id" => {
                    self.once(&mut raw, keyword, loc)?;
                    raw.vrid = Some(self.number::<u8>(child, 1, 255)?);
                }
                "priority" => {
                    self.once(&mut raw, keyword, loc)?;
                    raw.priority = Some(self.number::<u8>(child, 1, 255)?);
                }
                "advert_int" => {
                    self.once(&mut raw, keyword, loc)?;
                    let word = self.one_value(child)?;
                    let micros = decimal_micros(&word.text)
                        .filter(|m| *m > 0)
                        .ok_or_else(|| self.error(loc, format!("advert_int {:?}: seconds > 0 expected", word.text)))?;
                    raw.advert = Some((micros, word.text.clone(), loc));
                }
                "version" => {
                    self.once(&mut raw, keyword, loc)?;
                    raw.version = Some((self.number::<u8>(child, 2, 3)?, loc));
                }
                "nopreempt" | "preempt" | "preempt_delay" => self.preemption(&mut raw, child)?,
                "authentication" => {
                    self.once(&mut raw, keyword, loc)?;
                    self.authentication(&mut raw, child)?;
                }
                "unicast_src_ip" | "mcast_src_ip" => {
                    let word = self.one_value(child)?;
                    let addr = self.address(child, word)?;
                    if let Some((first, first_kw, first_loc)) = &raw.src {
                        return Err(self.error(
                            loc,
                            format!(
                                "{keyword} {:?}: the source address is already {first} ({first_kw} at {})",
                                word.text,
                                self.first_at(*first_loc, loc)
                            ),
                        ));
                    }
                    raw.src = Some((addr, keyword.to_owned(), loc));
                }
                "unicast_peer" => self.unicast_peers(&mut raw, child)?,
                "virtual_ipaddress" | "virtual_ipaddress_excluded" => self.addresses(&mut raw, child)?,
                "track_script" => {
                    for line in self.value_lines(child)? {
                        match line.words.as_slice() {
                            [name] => raw.tracks.push((name.text.clone(), name.loc)),
                            [name, ..] => {
                                return Err(self.error(
                                    line.loc(),
                                    format!(
                                        "track_script {:?}: a per-instance weight is not supported by ipf; set weight in vrrp_script {}",
                                        line_text(line),
                                        name.text
                                    ),
                                ));
                            }
                            [] => {}
                        }
                    }
                }
                "track_interface" => {
                    for line in self.value_lines(child)? {
                        let [name] = line.words.as_slice() else {
                            return Err(self.error(
                                line.loc(),
                                format!(
                                    "track_interface {:?}: per-interface weights are not supported by ipf; a tracked interface going down puts the instance in FAULT",
                                    line_text(line)
                                ),
                            ));
                        };
                        let ifname = self.interface_name(child, name)?;
                        if !raw.track_interfaces.iter().any(|(t, _)| *t == ifname) {
                            raw.track_interfaces.push((ifname, name.loc));
                        }
                    }
                }
                "notify" | "notify_master" | "notify_backup" | "notify_fault" | "notify_stop" => {
                    self.once(&mut raw, keyword, loc)?;
                    self.notify(&mut raw, child)?;
                }
                "garp_master_delay" => {
                    self.once(&mut raw, keyword, loc)?;
                    raw.garp.delay = Some(self.whole_seconds(child, 0, 3600)?);
                }
                "garp_master_repeat" => {
                    self.once(&mut raw, keyword, loc)?;
                    raw.garp.repeat = Some(self.number::<u32>(child, 1, 1000)?);
                }
                "garp_master_refresh" => {
                    self.once(&mut raw, keyword, loc)?;
                    let d = self.whole_seconds(child, 0, 86_400)?;
                    raw.garp.refresh = Some((!d.is_zero()).then_some(d));
                }
                k if INSTANCE_IGNORED.contains(&k) => self.ignored(child, &context),
                k => {
                    if let Some((_, why)) = INSTANCE_UNSUPPORTED.iter().find(|(u, _)| *u == k) {
                        return Err(self.error(loc, format!("{}: {why}", shown(child))));
                    }
                    return Err(self.error(loc, format!("unknown keyword {k:?} in {context}")));
                }
            }
        }
        Ok(raw)
    }

    /// `nopreempt`, `preempt` or `preempt_delay S`: one of them at most.
    fn preemption(&self, raw: &mut RawInstance, node: &Node) -> Result<(), ConfError> {
        let (keyword, loc) = (node.keyword(), node.loc());
        let preempt = match keyword {
            "nopreempt" => {
                self.no_value(node)?;
                Preempt::No
            }
            "preempt" => {
                self.no_value(node)?;
                Preempt::Yes
            }
            _ => {
                let word = self.one_value(node)?;
                let micros = decimal_micros(&word.text)
                    .filter(|m| *m <= 1000 * 1_000_000)
                    .ok_or_else(|| {
                        self.error(loc, format!("preempt_delay {:?}: must be 0..1000 seconds", word.text))
                    })?;
                if micros == 0 {
                    Preempt::Yes
                } else {
                    Preempt::Delay(Duration::from_micros(micros))
                }
            }
        };
        if let Some((_, first_kw, first)) = &raw.preempt {
            return Err(self.error(
                loc,
                format!(
                    "{keyword}: preemption is already set by {first_kw} at {}",
                    self.first_at(*first, loc)
                ),
            ));
        }
        raw.preempt = Some((preempt, keyword.to_owned(), loc));
        Ok(())
    }

    /// `authentication { auth_type PASS; auth_pass X }`.
    fn authentication(&mut self, raw: &mut RawInstance, node: &Node) -> Result<(), ConfError> {
        if !node.args().is_empty() {
            return Err(self.error(
                node.loc(),
                format!("authentication {:?}: values go inside the block", node.value_text()),
            ));
        }
        for line in self.block(node)? {
            let loc = line.loc();
            match line.keyword() {
                "auth_type" => {
                    if raw.auth_type.is_some() {
                        return Err(self.error(loc, "auth_type given twice"));
                    }
                    let word = self.one_value(line)?;
                    match word.text.as_str() {
                        "PASS" => raw.auth_type = Some(loc),
                        "AH" => {
                            return Err(self.error(
                                loc,
                                "auth_type \"AH\": IPsec AH authentication is not supported (PASS is)",
                            ));
                        }
                        other => return Err(self.error(loc, format!("auth_type {other:?}: PASS expected"))),
                    }
                }
                "auth_pass" => {
                    if raw.auth_pass.is_some() {
                        return Err(self.error(loc, "auth_pass given twice"));
                    }
                    let word = self.one_value(line)?;
                    raw.auth_pass = Some((self.password(&word.text, loc)?, loc));
                }
                k => {
                    return Err(self.error(
                        loc,
                        format!("unknown keyword {k:?} in authentication of vrrp_instance {}", raw.name),
                    ));
                }
            }
        }
        Ok(())
    }

    /// `unicast_peer { ADDR [min_ttl N] [max_ttl N] ... }`; the TTL bounds are ignored.
    fn unicast_peers(&mut self, raw: &mut RawInstance, node: &Node) -> Result<(), ConfError> {
        raw.peer_block.get_or_insert(node.loc());
        for line in self.value_lines(node)? {
            let Some((first, options)) = line.words.split_first() else {
                continue;
            };
            let addr = self.address(node, first)?;
            let mut rest = options.iter();
            while let Some(option) = rest.next() {
                match option.text.as_str() {
                    "min_ttl" | "max_ttl" => {
                        let value = rest.next().ok_or_else(|| {
                            self.error(
                                option.loc,
                                format!("unicast_peer {}: {} needs a value", first.text, option.text),
                            )
                        })?;
                        self.warn(
                            option.loc,
                            format!(
                                "unicast_peer {} {} {}: ignored, ipf does not filter unicast adverts by TTL",
                                first.text, option.text, value.text
                            ),
                        );
                    }
                    other => {
                        return Err(self.error(
                            option.loc,
                            format!(
                                "unicast_peer {:?}: unknown option {other:?} (one address per line, optionally min_ttl/max_ttl)",
                                line_text(line)
                            ),
                        ));
                    }
                }
            }
            raw.peers.push((addr, line.loc()));
        }
        Ok(())
    }

    /// `virtual_ipaddress { ... }` or `virtual_ipaddress_excluded { ... }`: one address line each.
    fn addresses(&self, raw: &mut RawInstance, node: &Node) -> Result<(), ConfError> {
        let keyword = node.keyword();
        for line in self.value_lines(node)? {
            let text = line_text(line);
            if let Some(option) = unsupported_vip_option(&line.words) {
                return Err(self.error(
                    option.loc,
                    format!("{keyword} {text:?}: option {:?} is not supported by ipf", option.text),
                ));
            }
            let vip = parse_vip(&text).map_err(|e| {
                // parse_vip names the value as `vip="..."`; here the keyword does.
                let why = e.strip_prefix(&format!("vip={text:?}: ")).unwrap_or(&e).to_owned();
                self.error(line.loc(), format!("{keyword} {text:?}: {why}"))
            })?;
            let entry = (vip, text, line.loc());
            if keyword == "virtual_ipaddress" {
                raw.vips.push(entry);
            } else {
                raw.excluded.push(entry);
            }
        }
        Ok(())
    }

    /// `notify[_STATE] SCRIPT [USER [GROUP]]`: the user is ignored.
    fn notify(&mut self, raw: &mut RawInstance, node: &Node) -> Result<(), ConfError> {
        let keyword = node.keyword();
        self.no_block(node)?;
        let Some((script, user)) = node.args().split_first() else {
            return Err(self.error(node.loc(), format!("{keyword}: missing script")));
        };
        if !user.is_empty() {
            self.warn(
                node.loc(),
                format!(
                    "{keyword} user {:?} in vrrp_instance {}: ignored, ipf runs notify scripts as its own user",
                    user.iter().map(|w| w.text.as_str()).collect::<Vec<_>>().join(" "),
                    raw.name
                ),
            );
        }
        let slot = match keyword {
            "notify" => &mut raw.notify.any,
            "notify_master" => &mut raw.notify.master,
            "notify_backup" => &mut raw.notify.backup,
            "notify_fault" => &mut raw.notify.fault,
            _ => &mut raw.notify.stop,
        };
        *slot = Some(script.text.clone());
        Ok(())
    }

    /// keepalived sends the first 8 bytes of the password.
    fn password(&mut self, text: &str, loc: Loc) -> Result<String, ConfError> {
        if text.len() <= 8 {
            return Ok(text.to_owned());
        }
        let mut end = 8;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        if end < 8 {
            return Err(self.error(
                loc,
                format!("auth_pass {text:?}: longer than 8 bytes and the 8th byte splits a character"),
            ));
        }
        let kept = &text[..end];
        self.warn(
            loc,
            format!("auth_pass {text:?}: only the first 8 characters, {kept:?}, are used (as keepalived does)"),
        );
        Ok(kept.to_owned())
    }

    /// Applies keepalived's defaults and adjustments, and checks what spans several keywords.
    fn complete_instance(
        &mut self,
        raw: RawInstance,
        globals: &Globals,
        checks: &[(CheckSpec, Loc)],
    ) -> Result<InstanceSpec, ConfError> {
        let name = raw.name.clone();
        let interface = match (&raw.interface, &globals.default_interface) {
            (Some((i, _)), _) => i.clone(),
            (None, Some(d)) => d.clone(),
            (None, None) => {
                return Err(self.error(raw.loc, format!("vrrp_instance {name}: interface is required")));
            }
        };
        let vrid = raw
            .vrid
            .ok_or_else(|| self.error(raw.loc, format!("vrrp_instance {name}: virtual_router_id is required")))?;

        // The family is the addresses'; without any, the source's or a peer's, else IPv4 (keepalived).
        let family = raw
            .vips
            .first()
            .or(raw.excluded.first())
            .map(|(v, _, _)| v.family())
            .or(raw.src.as_ref().map(|(a, _, _)| Family::of(a)))
            .or(raw.peers.first().map(|(a, _)| Family::of(a)))
            .unwrap_or(Family::V4);
        let family_name = |f: Family| if f == Family::V4 { "IPv4" } else { "IPv6" };
        for (keyword, list) in [
            ("virtual_ipaddress", &raw.vips),
            ("virtual_ipaddress_excluded", &raw.excluded),
        ] {
            if let Some((vip, text, loc)) = list.iter().find(|(v, _, _)| v.family() != family) {
                return Err(self.error(
                    *loc,
                    format!(
                        "{keyword} {text:?}: {} address in the {} vrrp_instance {name}; ipf does not mix families in one instance, use a second vrrp_instance",
                        family_name(vip.family()),
                        family_name(family)
                    ),
                ));
            }
        }
        if let Some((addr, keyword, loc)) = &raw.src
            && Family::of(addr) != family
        {
            return Err(self.error(
                *loc,
                format!(
                    "{keyword} \"{addr}\": not {} like vrrp_instance {name}",
                    family_name(family)
                ),
            ));
        }
        if let Some((addr, loc)) = raw.peers.iter().find(|(a, _)| Family::of(a) != family) {
            return Err(self.error(
                *loc,
                format!(
                    "unicast_peer \"{addr}\": not {} like vrrp_instance {name}",
                    family_name(family)
                ),
            ));
        }
        if let (Some(loc), true) = (raw.peer_block, raw.peers.is_empty()) {
            self.warn(
                loc,
                format!("unicast_peer in vrrp_instance {name} is empty: adverts go to the multicast group (as keepalived does)"),
            );
        }

        if raw.vips.is_empty() {
            self.warn(
                raw.loc,
                format!("vrrp_instance {name} has no virtual_ipaddress: it elects a master but moves no address (keepalived warns too)"),
            );
        }

        let version = match (family, raw.version) {
            (Family::V6, Some((2, loc))) => {
                return Err(self.error(
                    loc,
                    format!("version \"2\": vrrp_instance {name} has IPv6 addresses, which need VRRPv3"),
                ));
            }
            (Family::V6, _) => 3,
            (Family::V4, Some((v, _))) => v,
            (Family::V4, None) => globals.version.unwrap_or(2),
        };

        let adver_int = match &raw.advert {
            None => Duration::from_secs(1),
            Some((micros, text, loc)) => {
                if version == 2 {
                    if !micros.is_multiple_of(1_000_000) || *micros > 255 * 1_000_000 {
                        return Err(self.error(
                            *loc,
                            format!(
                                "advert_int {text:?}: VRRPv2 needs whole seconds 1..255 (version 3 allows 0.01..40.95)"
                            ),
                        ));
                    }
                } else if !micros.is_multiple_of(10_000) || *micros > 40_950_000 {
                    return Err(self.error(
                        *loc,
                        format!("advert_int {text:?}: VRRPv3 needs 0.01..40.95 seconds in steps of 0.01"),
                    ));
                }
                Duration::from_micros(*micros)
            }
        };

        // keepalived: no priority and state MASTER make the address owner (255); priority 255 and no
        // state make a MASTER.
        let priority = match (raw.priority, raw.state) {
            (Some(p), _) => p,
            (None, Some(InitialState::Master)) => {
                self.warn(
                    raw.loc,
                    format!("vrrp_instance {name}: state MASTER without priority means priority 255, the address owner (keepalived's default)"),
                );
                255
            }
            (None, _) => 100,
        };
        let initial_state = raw.state.unwrap_or(if priority == 255 {
            InitialState::Master
        } else {
            InitialState::Backup
        });
        let mut preempt = raw.preempt.as_ref().map_or(Preempt::Yes, |(p, _, _)| *p);
        if let Some((_, keyword, loc)) = &raw.preempt {
            let reason = match (preempt, initial_state, priority) {
                (Preempt::No, _, 255) => Some("priority 255 always preempts"),
                (Preempt::No | Preempt::Delay(_), InitialState::Master, _) => {
                    Some("it does not work with state MASTER")
                }
                _ => None,
            };
            if let Some(reason) = reason {
                self.warn(
                    *loc,
                    format!("{keyword} in vrrp_instance {name}: ignored as keepalived does, {reason}"),
                );
                preempt = Preempt::Yes;
            }
        }

        let auth_pass = match (raw.auth_type, raw.auth_pass) {
            (None, None) => None,
            (Some(loc), None) => {
                return Err(self.error(loc, "auth_type \"PASS\": auth_pass is missing"));
            }
            (None, Some((_, loc))) => {
                return Err(self.error(
                    loc,
                    "auth_pass: auth_type PASS is missing (keepalived would send no authentication)",
                ));
            }
            (Some(_), Some((pass, loc))) => {
                if version == 3 {
                    self.warn(
                        loc,
                        format!("authentication in vrrp_instance {name}: ignored, VRRPv3 has none (keepalived ignores it too)"),
                    );
                    None
                } else {
                    Some(pass)
                }
            }
        };

        for (track, loc) in &raw.tracks {
            if !checks.iter().any(|(c, _)| &c.name == track) {
                return Err(self.error(*loc, format!("track_script {track:?}: no vrrp_script of that name")));
            }
        }
        let mut tracks: Vec<String> = Vec::new();
        for (track, _) in raw.tracks {
            if !tracks.contains(&track) {
                tracks.push(track);
            }
        }

        // The VRRP interface is always tracked; keepalived ignores it in track_interface (and
        // `keepalived -t` fails on it).
        let mut track_interfaces = Vec::new();
        for (t, loc) in raw.track_interfaces {
            if t == interface {
                self.warn(
                    loc,
                    format!("track_interface {t:?} in vrrp_instance {name}: ignored, the instance's own interface is always tracked (keepalived ignores it too)"),
                );
            } else {
                track_interfaces.push(t);
            }
        }

        // `dev` naming the instance's own interface says nothing more: keep the model canonical.
        let strip_own_dev = |(mut v, _, _): (Vip, String, Loc)| {
            if v.dev.as_deref() == Some(interface.as_str()) {
                v.dev = None;
            }
            v
        };
        let vips = raw.vips.into_iter().map(strip_own_dev).collect();
        let excluded = raw.excluded.into_iter().map(strip_own_dev).collect();

        Ok(InstanceSpec {
            name,
            interface,
            vrid,
            family,
            version,
            priority,
            adver_int,
            preempt,
            initial_state,
            vips,
            excluded,
            unicast_peers: raw.peers.into_iter().map(|(a, _)| a).collect(),
            src: raw.src.map(|(a, _, _)| a),
            auth_pass,
            tracks,
            track_interfaces,
            notify: raw.notify,
            garp: raw.garp.or(globals.garp).resolve(),
        })
    }
}

/// keepalived's `virtual_ipaddress` options that ipf does not have (`parse_vip` knows brd, scope,
/// label and dev); found here to name them clearly instead of as a malformed option.
fn unsupported_vip_option(words: &[Word]) -> Option<&Word> {
    const FLAGS: &[&str] = &[
        "no_track",
        "home",
        "-nodad",
        "nodad",
        "noprefixroute",
        "autojoin",
        "preferred_lft",
        "track_group",
        "peer",
        "protocol",
    ];
    let mut rest = words.iter().skip(1);
    while let Some(w) = rest.next() {
        match w.text.as_str() {
            // Options with a value: skip it, it may look like anything.
            "brd" | "broadcast" | "scope" | "label" | "dev" => {
                rest.next();
            }
            t if FLAGS.contains(&t) => return Some(w),
            _ => {}
        }
    }
    None
}

/// What the ipfailover image's default check looks like: `</dev/tcp/<node>/<port>`, run by bash.
#[derive(Debug, PartialEq, Eq)]
enum TcpScript {
    Port { port: u16, host: String },
    BadPort(String),
}

/// Recognises `</dev/tcp/HOST/PORT`, bare or as `[/usr]/bin/bash -c '...'` (the image's form).
fn tcp_check_port(script: &str) -> Option<TcpScript> {
    let script = script.trim();
    let inner = ["/bin/bash", "/usr/bin/bash", "bash"]
        .iter()
        .find_map(|shell| {
            let rest = script
                .strip_prefix(shell)?
                .trim_start()
                .strip_prefix("-c")?
                .trim_start();
            rest.strip_prefix('\'')?.strip_suffix('\'')
        })
        .unwrap_or(script)
        .trim();
    let target = inner.strip_prefix('<')?.trim_start().strip_prefix("/dev/tcp/")?;
    let (host, port) = target.rsplit_once('/')?;
    if host.contains(char::is_whitespace) || host.contains('/') || port.is_empty() || port.contains(char::is_whitespace)
    {
        return None;
    }
    Some(match port.parse::<u16>() {
        Ok(p) if p > 0 => TcpScript::Port {
            port: p,
            host: host.to_owned(),
        },
        _ => TcpScript::BadPort(port.to_owned()),
    })
}

/// The arcts/keepalived image's kube-apiserver check script, which ipf runs natively.
pub const KUBE_APISERVER_SCRIPT: &str = "/usr/lib/keepalived/scripts/chk_kube_apiserver.sh";

/// Recognises `chk_kube_apiserver.sh ADDRESS PORT` as the arcts image wrote it.
fn kube_apiserver_check(script: &str) -> Option<CheckKind> {
    let mut words = script.split_whitespace();
    let program = words.next()?;
    if program != KUBE_APISERVER_SCRIPT {
        return None;
    }
    let address = words.next()?.parse().ok()?;
    let port = words.next()?.parse().ok().filter(|p| *p > 0)?;
    words
        .next()
        .is_none()
        .then_some(CheckKind::KubeApiserver { address, port })
}

/// `N` or `N.F` seconds (F up to 6 digits) in microseconds.
fn decimal_micros(text: &str) -> Option<u64> {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    if whole.is_empty() && fraction.is_empty() {
        return None;
    }
    let digits = |s: &str| s.chars().all(|c| c.is_ascii_digit());
    if !digits(whole) || !digits(fraction) || fraction.len() > 6 || (text.contains('.') && fraction.is_empty()) {
        return None;
    }
    let whole: u64 = if whole.is_empty() { 0 } else { whole.parse().ok()? };
    let fraction_micros: u64 = if fraction.is_empty() {
        0
    } else {
        format!("{fraction:0<6}").parse().ok()?
    };
    whole.checked_mul(1_000_000)?.checked_add(fraction_micros)
}

// ---------------------------------------------------------------------------------------------------
// Rendering

/// The address the rendered TCP check connects to when no node address is given: what the ipfailover
/// image wrote when it found no IPv4 on the interface.
pub const RENDER_DEFAULT_NODE: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// Writes `cfg` as keepalived.conf, laid out like the file the ipfailover image generated, so the two
/// can be diffed. A `CheckKind::Tcp` check is written as the image wrote it, `/bin/bash -c
/// '</dev/tcp/<node>/<port>'`, with `node` (the address the check connects to), or
/// [`RENDER_DEFAULT_NODE`] (127.0.0.1, the image's own fallback) when `None`. What keepalived has no
/// keyword for (the firewall rule, values keepalived would round) becomes `# ipf:` comments.
/// `global_defs` gets `script_user root` and `enable_script_security` when scripts are configured:
/// keepalived refuses to run (and `keepalived -t` rejects) scripts without them.
pub fn render(cfg: &Config, node: Option<IpAddr>) -> String {
    let mut out = String::new();
    // Writing to a String cannot fail; `let _ =` keeps clippy quiet about the Result.
    let _ = render_into(&mut out, cfg, node.unwrap_or(RENDER_DEFAULT_NODE));
    out
}

/// A word as keepalived reads it back: quoted when it holds spaces, quotes, braces or comment marks.
fn word(text: &str) -> String {
    let plain = !text.is_empty()
        && !text
            .chars()
            .any(|c| c.is_whitespace() || matches!(c, '"' | '{' | '}' | '#' | '!' | '\\'));
    if plain { text.to_owned() } else { quoted(text) }
}

fn quoted(text: &str) -> String {
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
fn seconds(d: Duration) -> String {
    let micros = d.as_micros();
    let (whole, fraction) = (micros / 1_000_000, micros % 1_000_000);
    if fraction == 0 {
        whole.to_string()
    } else {
        format!("{whole}.{fraction:06}").trim_end_matches('0').to_owned()
    }
}

/// `keyword N` in whole seconds, with an `# ipf:` note when keepalived's whole seconds cannot hold it.
fn whole_seconds_line(out: &mut String, indent: &str, keyword: &str, d: Duration) -> std::fmt::Result {
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

fn render_into(out: &mut String, cfg: &Config, node: IpAddr) -> std::fmt::Result {
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
            writeln!(out, "   script_user root")?;
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

fn render_instance(out: &mut String, i: &InstanceSpec) -> std::fmt::Result {
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

#[cfg(test)]
mod tests;
