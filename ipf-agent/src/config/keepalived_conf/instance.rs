//! Reading one `vrrp_instance` block into an instance, and completing it with the global defaults
//! and keepalived's own adjustments.

use std::{collections::HashMap, time::Duration};

use super::{ConfError, keywords::*, lex::*, read::*};
use crate::{
    config::{CheckSpec, InitialState, InstanceSpec, Notify, Vip, parse_vip},
    datapath::Family,
    vrrp::Preempt,
};

impl Reader {
    /// Records `keyword` in `raw.seen`, rejecting a second occurrence.
    pub(super) fn once(&self, raw: &mut RawInstance, keyword: &str, loc: Loc) -> Result<(), ConfError> {
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

    pub(super) fn vrrp_instance(&mut self, node: &Node) -> Result<RawInstance, ConfError> {
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
    pub(super) fn preemption(&self, raw: &mut RawInstance, node: &Node) -> Result<(), ConfError> {
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
    pub(super) fn authentication(&mut self, raw: &mut RawInstance, node: &Node) -> Result<(), ConfError> {
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
    pub(super) fn unicast_peers(&mut self, raw: &mut RawInstance, node: &Node) -> Result<(), ConfError> {
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
    pub(super) fn addresses(&self, raw: &mut RawInstance, node: &Node) -> Result<(), ConfError> {
        let keyword = node.keyword();
        for line in self.value_lines(node)? {
            let text = line_text(line);
            if let Some(option) = unsupported_vip_option(&line.words) {
                return Err(self.error(
                    option.loc,
                    format!("{keyword} {text:?}: option {:?} is not supported by ipf", option.text),
                ));
            }
            // parse_vip names the value as `vip="..."`; here the keyword does.
            let vip =
                parse_vip(&text).map_err(|e| self.error(line.loc(), format!("{keyword} {text:?}: {}", e.why())))?;
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
    pub(super) fn notify(&mut self, raw: &mut RawInstance, node: &Node) -> Result<(), ConfError> {
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
    pub(super) fn password(&mut self, text: &str, loc: Loc) -> Result<String, ConfError> {
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
    pub(super) fn complete_instance(
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
pub(super) fn unsupported_vip_option(words: &[Word]) -> Option<&Word> {
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
