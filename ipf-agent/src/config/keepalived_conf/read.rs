//! Reading the keyword tree into the typed configuration, with keepalived 2.2.7's own
//! adjustments.

use std::{collections::HashMap, net::IpAddr, time::Duration};

use super::ConfError;
use super::{keywords::*, lex::*};
use crate::{
    config::{CheckKind, CheckSpec, Config, Garp, InitialState, InstanceSpec, Notify, Vip},
    datapath::Family,
    vrrp::Preempt,
};

/// global_defs values the instances take as defaults.
#[derive(Default)]
pub(super) struct Globals {
    /// First line of each keyword, to reject a second one.
    pub(super) seen: HashMap<String, Loc>,
    pub(super) router_id: Option<String>,
    pub(super) version: Option<u8>,
    pub(super) default_interface: Option<String>,
    pub(super) garp: GarpSettings,
    pub(super) script_security: crate::script_security::ScriptSecurity,
}

/// GARP settings as written; unset ones come from global_defs, then from keepalived's defaults.
#[derive(Clone, Copy, Default)]
pub(super) struct GarpSettings {
    pub(super) delay: Option<Duration>,
    pub(super) repeat: Option<u32>,
    pub(super) refresh: Option<Option<Duration>>,
}

impl GarpSettings {
    pub(super) fn or(self, fallback: GarpSettings) -> GarpSettings {
        GarpSettings {
            delay: self.delay.or(fallback.delay),
            repeat: self.repeat.or(fallback.repeat),
            refresh: self.refresh.or(fallback.refresh),
        }
    }

    pub(super) fn resolve(self) -> Garp {
        let default = Garp::default();
        Garp {
            repeat: self.repeat.unwrap_or(default.repeat),
            delay: self.delay.unwrap_or(default.delay),
            refresh: self.refresh.unwrap_or(default.refresh),
        }
    }
}

/// An instance as written, before defaults and cross-checks.
pub(super) struct RawInstance {
    pub(super) name: String,
    pub(super) loc: Loc,
    pub(super) state: Option<InitialState>,
    pub(super) interface: Option<(String, Loc)>,
    pub(super) vrid: Option<u8>,
    pub(super) priority: Option<u8>,
    pub(super) advert: Option<(u64, String, Loc)>,
    pub(super) version: Option<(u8, Loc)>,
    pub(super) preempt: Option<(Preempt, String, Loc)>,
    pub(super) auth_type: Option<Loc>,
    pub(super) auth_pass: Option<(String, Loc)>,
    pub(super) src: Option<(IpAddr, String, Loc)>,
    pub(super) peers: Vec<(IpAddr, Loc)>,
    pub(super) peer_block: Option<Loc>,
    pub(super) vips: Vec<(Vip, String, Loc)>,
    pub(super) excluded: Vec<(Vip, String, Loc)>,
    pub(super) tracks: Vec<(String, Loc)>,
    pub(super) track_interfaces: Vec<(String, Loc)>,
    pub(super) notify: Notify,
    pub(super) garp: GarpSettings,
    /// First line of each single-valued keyword, to reject a second one.
    pub(super) seen: HashMap<String, Loc>,
}

impl Reader {
    pub(super) fn finish(mut self) -> Result<Config, ConfError> {
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
        self.check_scripts(&globals.script_security, &checks, &raws)?;
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
            script_security: globals.script_security,
            warnings: self.warnings.into_iter().map(|(_, w)| w).collect(),
        })
    }

    /// With enable_script_security, every check and notify script that would run with root's powers
    /// is checked (see `script_security`) and refused at the line that names it.
    fn check_scripts(
        &self,
        security: &crate::script_security::ScriptSecurity,
        checks: &[(CheckSpec, Loc)],
        raws: &[RawInstance],
    ) -> Result<(), ConfError> {
        for (check, loc) in checks {
            if let CheckKind::Script(line) = &check.kind {
                security
                    .check(&format!("vrrp_script {}", check.name), line)
                    .map_err(|e| self.error(*loc, e))?;
            }
        }
        for raw in raws {
            let n = &raw.notify;
            for (keyword, line) in [
                ("notify", &n.any),
                ("notify_master", &n.master),
                ("notify_backup", &n.backup),
                ("notify_fault", &n.fault),
                ("notify_stop", &n.stop),
            ] {
                if let Some(line) = line {
                    let loc = raw.seen.get(keyword).copied().unwrap_or(raw.loc);
                    security
                        .check(&format!("{keyword} of vrrp_instance {}", raw.name), line)
                        .map_err(|e| self.error(loc, e))?;
                }
            }
        }
        Ok(())
    }

    /// The single value of `node`, which takes no block.
    pub(super) fn one_value<'n>(&self, node: &'n Node) -> Result<&'n Word, ConfError> {
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

    pub(super) fn no_value(&self, node: &Node) -> Result<(), ConfError> {
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

    pub(super) fn no_block(&self, node: &Node) -> Result<(), ConfError> {
        match node.block {
            None => Ok(()),
            Some(_) => Err(self.error(node.loc(), format!("{}: takes no \"{{\" block", node.keyword()))),
        }
    }

    pub(super) fn block<'n>(&self, node: &'n Node) -> Result<&'n [Node], ConfError> {
        match &node.block {
            Some(children) => Ok(children),
            None => Err(self.error(node.loc(), format!("{}: needs a \"{{ ... }}\" block", node.keyword()))),
        }
    }

    /// The name after a block keyword (`vrrp_script NAME {`).
    pub(super) fn block_name<'n>(&self, node: &'n Node) -> Result<&'n str, ConfError> {
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
    pub(super) fn value_lines<'n>(&self, node: &'n Node) -> Result<&'n [Node], ConfError> {
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

    pub(super) fn number<T: std::str::FromStr + PartialOrd + std::fmt::Display>(
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

    pub(super) fn whole_seconds(&self, node: &Node, min: u64, max: u64) -> Result<Duration, ConfError> {
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

    pub(super) fn address(&self, node: &Node, word: &Word) -> Result<IpAddr, ConfError> {
        word.text.parse().map_err(|_| {
            self.error(
                word.loc,
                format!("{} {:?}: not an IP address", node.keyword(), word.text),
            )
        })
    }

    pub(super) fn interface_name(&self, node: &Node, word: &Word) -> Result<String, ConfError> {
        // The same rule as every other front end's and the VIP's `dev`: what is accepted here must
        // read back from the rendering (the fuzzer found an `interface` with control characters that
        // a VIP's `dev` then refused).
        if !crate::config::host::valid_interface_name(&word.text) {
            return Err(self.error(
                word.loc,
                format!(
                    "{} {:?}: not an interface name (1 to {MAX_IFNAME} bytes, no '/', ':', spaces, quotes, braces or control characters)",
                    node.keyword(),
                    word.text
                ),
            ));
        }
        Ok(word.text.clone())
    }

    pub(super) fn ignored(&mut self, node: &Node, context: &str) {
        let what = shown(node);
        let extra = if node.block.is_some() { " (with its block)" } else { "" };
        self.warn(
            node.loc(),
            format!("{what}{extra} in {context}: accepted and ignored, ipf has no use for it"),
        );
    }

    pub(super) fn global_defs(&mut self, node: &Node, globals: &mut Globals) -> Result<(), ConfError> {
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
                "script_user" => {
                    self.no_block(child)?;
                    let run_as = match child.args() {
                        [user] => crate::script_security::resolve(&user.text, None),
                        [user, group] => crate::script_security::resolve(&user.text, Some(&group.text)),
                        _ => Err(format!("script_user {:?}: USER [GROUP] expected", child.value_text())),
                    };
                    globals.script_security.run_as = Some(run_as.map_err(|e| self.error(loc, e))?);
                }
                "enable_script_security" => {
                    self.no_block(child)?;
                    if !child.args().is_empty() {
                        return Err(self.error(loc, "enable_script_security takes no value"));
                    }
                    globals.script_security.enforce = true;
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

    pub(super) fn vrrp_script(&mut self, node: &Node) -> Result<CheckSpec, ConfError> {
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
}

/// What the ipfailover image's default check looks like: `</dev/tcp/<node>/<port>`, run by bash.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum TcpScript {
    Port { port: u16, host: String },
    BadPort(String),
}

/// Recognises `</dev/tcp/HOST/PORT`, bare or as `[/usr]/bin/bash -c '...'` (the image's form).
pub(super) fn tcp_check_port(script: &str) -> Option<TcpScript> {
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
pub(super) fn kube_apiserver_check(script: &str) -> Option<CheckKind> {
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
pub(super) fn decimal_micros(text: &str) -> Option<u64> {
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
