//! A virtual address (keepalived's `virtual_ipaddress` line) and its parser, shared by every front end.

use std::{
    fmt,
    net::{IpAddr, Ipv4Addr},
};

use crate::datapath::Family;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum VipError {
    /// A line that does not read as a VIP; `why` says which part.
    #[error("vip={text:?}: {why}")]
    Parse { text: String, why: String },
    /// Something the kernel would reject or silently ignore.
    #[error("VIP {vip}: {reason}")]
    Invalid { vip: String, reason: &'static str },
}

impl VipError {
    /// What is wrong, without naming the value (for front ends that name it their own way).
    pub fn why(&self) -> String {
        match self {
            VipError::Parse { why, .. } => why.clone(),
            VipError::Invalid { .. } => self.to_string(),
        }
    }
}

/// A virtual address as keepalived's `virtual_ipaddress` block describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Vip {
    pub addr: IpAddr,
    pub prefix_len: u8,
    /// IPv4 only. `None` sets no broadcast address, as `ip addr add` and keepalived do without `brd`.
    pub broadcast: Option<Ipv4Addr>,
    /// rtnetlink scope (`RT_SCOPE_*`: 0 global, 200 site, 253 link, 254 host); `None` = global. The
    /// kernel derives IPv6 scopes from the address itself, and rejects (EINVAL) an IPv4 address whose
    /// scope differs from the one of an address already in the same subnet.
    pub scope: Option<u8>,
    /// IPv4 only (the kernel keeps no IPv6 labels), at most 15 bytes, e.g. `eth0:vip`.
    pub label: Option<String>,
    /// The interface the address goes on when it is not the instance's (keepalived's `dev`).
    pub dev: Option<String>,
}

impl Vip {
    /// A global address with no broadcast and no label.
    pub fn new(addr: IpAddr, prefix_len: u8) -> Self {
        Vip {
            addr,
            prefix_len,
            broadcast: None,
            scope: None,
            label: None,
            dev: None,
        }
    }

    pub fn family(&self) -> Family {
        Family::of(&self.addr)
    }

    /// Checks what the kernel would reject or silently ignore.
    pub fn validate(&self) -> Result<(), VipError> {
        let invalid = |reason| {
            Err(VipError::Invalid {
                vip: self.to_string(),
                reason,
            })
        };
        let max_prefix = if self.addr.is_ipv4() { 32 } else { 128 };
        if self.prefix_len > max_prefix {
            return invalid("prefix length too long for the family");
        }
        if self.addr.is_ipv6() && self.broadcast.is_some() {
            return invalid("IPv6 has no broadcast address");
        }
        if self.addr.is_ipv6() && self.label.is_some() {
            return invalid("IPv6 addresses carry no label");
        }
        if self
            .label
            .as_ref()
            .is_some_and(|l| l.is_empty() || l.len() > 15 || l.contains('\0'))
        {
            return invalid("label must be 1 to 15 bytes");
        }
        Ok(())
    }
}

impl fmt::Display for Vip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)?;
        if let Some(b) = self.broadcast {
            write!(f, " brd {b}")?;
        }
        if let Some(s) = self.scope {
            match s {
                0 => f.write_str(" scope global")?,
                200 => f.write_str(" scope site")?,
                253 => f.write_str(" scope link")?,
                254 => f.write_str(" scope host")?,
                255 => f.write_str(" scope nowhere")?,
                other => write!(f, " scope {other}")?,
            }
        }
        if let Some(l) = &self.label {
            write!(f, " label {l}")?;
        }
        if let Some(d) = &self.dev {
            write!(f, " dev {d}")?;
        }
        Ok(())
    }
}

/// A `virtual_ipaddress` line as keepalived reads it: `ADDR[/PREFIX] [brd ADDR|+|-] [scope SCOPE]
/// [label LABEL]`. Without a prefix, a host address (/32, /128) as keepalived does.
pub fn parse_vip(text: &str) -> Result<Vip, VipError> {
    let bad = |why: &str| VipError::Parse {
        text: text.to_owned(),
        why: why.to_owned(),
    };
    let mut words = text.split_whitespace();
    let first = words.next().ok_or_else(|| bad("empty"))?;
    let (addr, prefix) = match first.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (first, None),
    };
    let addr: IpAddr = addr.parse().map_err(|_| bad("not an IP address"))?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let prefix_len = match prefix {
        Some(p) => p
            .parse::<u8>()
            .ok()
            .filter(|p| *p <= max)
            .ok_or_else(|| bad(&format!("prefix must be 0..{max}")))?,
        None => max,
    };
    let mut vip = Vip {
        addr,
        prefix_len,
        broadcast: None,
        scope: None,
        label: None,
        dev: None,
    };
    while let Some(key) = words.next() {
        let value = words.next().ok_or_else(|| bad(&format!("{key} needs a value")))?;
        match key {
            "brd" | "broadcast" => {
                let IpAddr::V4(a) = addr else {
                    return Err(bad("brd is IPv4 only"));
                };
                let host_bits = 32 - u32::from(prefix_len);
                let mask = if host_bits == 32 { 0 } else { u32::MAX << host_bits };
                vip.broadcast = Some(match value {
                    "+" => (u32::from(a) | !mask).into(),
                    "-" => (u32::from(a) & mask).into(),
                    v => v
                        .parse()
                        .map_err(|_| bad(&format!("brd {v:?} is not an IPv4 address")))?,
                });
            }
            "scope" => {
                vip.scope = Some(match value {
                    "global" => 0,
                    "site" => 200,
                    "link" => 253,
                    "host" => 254,
                    "nowhere" => 255,
                    v => v
                        .parse()
                        .map_err(|_| bad(&format!("scope {v:?} is not global, site, link, host or 0..255")))?,
                })
            }
            // The kernel takes at most 15 bytes for either (the fuzzer found any text taken, which the
            // rendered keepalived.conf could not carry).
            "label" if value.len() <= 15 && !value.contains(|c: char| c.is_control() || c == '"') => {
                vip.label = Some(value.to_owned())
            }
            "label" => {
                return Err(bad(&format!(
                    "label {value:?}: at most 15 bytes, no quotes or control characters"
                )));
            }
            "dev" if super::host::valid_interface_name(value) => vip.dev = Some(value.to_owned()),
            "dev" => {
                return Err(bad(&format!(
                    "dev {value:?}: not an interface name (1 to 15 bytes, no '/' or ':')"
                )));
            }
            other => return Err(bad(&format!("unknown option {other:?}"))),
        }
    }
    vip.validate().map_err(|e| bad(&e.to_string()))?;
    Ok(vip)
}

#[cfg(test)]
mod tests {
    use std::net::Ipv6Addr;

    use super::*;

    /// Regression (fuzzing): `dev` and `label` took any text, and the rendered keepalived.conf did not
    /// read back.
    #[test]
    fn dev_and_label_must_fit_the_kernel() {
        assert_eq!(
            parse_vip("192.0.2.1/24 dev eth0").map(|v| v.dev),
            Ok(Some("eth0".to_owned()))
        );
        for (line, why) in [
            ("192.0.2.1 dev a/b", "dev \"a/b\": not an interface name"),
            ("192.0.2.1 dev averyveryverylongname", "not an interface name"),
            ("192.0.2.1 dev eth0:1", "not an interface name"),
            ("192.0.2.1 dev e\u{1}", "not an interface name"),
            ("192.0.2.1 dev !true", "not an interface name"),
            ("192.0.2.1 label averyveryverylongname", "at most 15 bytes"),
            ("192.0.2.1 label a\"b", "no quotes"),
        ] {
            let e = parse_vip(line).expect_err(line).to_string();
            assert!(e.contains(why), "{line}: {e}");
        }
    }

    #[test]
    fn vip_display_and_validation() {
        let mut v = Vip::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 100)), 24);
        v.broadcast = Some(Ipv4Addr::new(192, 0, 2, 255));
        v.scope = Some(253);
        v.label = Some("eth0:vip".into());
        assert_eq!(
            v.to_string(),
            "192.0.2.100/24 brd 192.0.2.255 scope link label eth0:vip"
        );
        assert!(v.validate().is_ok());
        v.prefix_len = 33;
        assert!(v.validate().is_err());
        let mut v6 = Vip::new(IpAddr::V6(Ipv6Addr::LOCALHOST), 64);
        assert!(v6.validate().is_ok());
        v6.label = Some("eth0:x".into());
        assert!(v6.validate().is_err());
    }

    #[test]
    fn keepalived_virtual_ipaddress_lines() {
        let v = parse_vip("192.0.2.100/24 brd + scope link label eth0:vip").expect("valid");
        assert_eq!(v.broadcast, Some([192, 0, 2, 255].into()));
        assert_eq!(v.scope, Some(253));
        assert_eq!(v.label.as_deref(), Some("eth0:vip"));
        assert_eq!(
            parse_vip("192.0.2.100/24 brd 192.0.2.127").expect("valid").broadcast,
            Some([192, 0, 2, 127].into())
        );
        assert_eq!(parse_vip("2001:db8::1").expect("valid").prefix_len, 128);
        for (text, needle) in [
            ("192.0.2.100/24 brd", "brd needs a value"),
            ("2001:db8::1/64 brd +", "IPv4 only"),
            ("192.0.2.100/24 scope galaxy", "scope \"galaxy\""),
            ("192.0.2.100/24 colour red", "unknown option"),
            ("192.0.2.100/24 label this-label-is-far-too-long", "label"),
        ] {
            let err = parse_vip(text).expect_err(text);
            let err = err.to_string();
            assert!(err.contains(needle) && err.contains("vip="), "{text}: {err}");
        }
    }
}
