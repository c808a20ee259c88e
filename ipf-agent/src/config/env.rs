//! What both environment front ends (`openshift`, `keepalived_env`) read variables with: an empty
//! value counts as unset (the images' `${VAR:-default}`), and a bad value is an error naming the
//! variable and the value.

use std::{collections::BTreeMap, fmt::Display, net::IpAddr, ops::RangeInclusive, str::FromStr};

use super::ConfigError;

/// The error for a variable whose value cannot be used.
pub(super) fn err(var: &str, value: &str, why: impl Display) -> ConfigError {
    ConfigError::Env {
        var: var.to_owned(),
        value: value.to_owned(),
        why: why.to_string(),
    }
}

/// A Linux interface name (the kernel's dev_valid_name).
pub(super) fn interface_name(var: &str, value: &str) -> Result<String, ConfigError> {
    let name = value.trim();
    if !super::host::valid_interface_name(name) {
        return Err(err(
            var,
            value,
            "not an interface name (at most 15 bytes, no '/', ':' or spaces)",
        ));
    }
    Ok(name.to_owned())
}

/// Lookups in the environment; an empty value counts as unset, as the image's `${VAR:-default}`.
pub(super) struct Vars<'a>(pub(super) &'a BTreeMap<String, String>);

impl<'a> Vars<'a> {
    pub(super) fn get(&self, name: &str) -> Option<&'a str> {
        self.0.get(name).map(String::as_str).filter(|v| !v.trim().is_empty())
    }

    /// `true` / `false`, any case. The image took anything but `true` for false; here it is an error.
    pub(super) fn boolean(&self, name: &str, default: bool) -> Result<bool, ConfigError> {
        match self.get(name) {
            None => Ok(default),
            Some(v) if v.trim().eq_ignore_ascii_case("true") => Ok(true),
            Some(v) if v.trim().eq_ignore_ascii_case("false") => Ok(false),
            Some(v) => Err(err(name, v, "true or false expected")),
        }
    }

    pub(super) fn number<T>(&self, name: &str, default: T, range: RangeInclusive<T>) -> Result<T, ConfigError>
    where
        T: FromStr + PartialOrd + Display,
    {
        match self.get(name) {
            None => Ok(default),
            Some(v) => v.trim().parse::<T>().ok().filter(|n| range.contains(n)).ok_or_else(|| {
                err(
                    name,
                    v,
                    format!("a whole number {}..{} expected", range.start(), range.end()),
                )
            }),
        }
    }

    pub(super) fn address(&self, name: &str) -> Result<Option<IpAddr>, ConfigError> {
        self.get(name)
            .map(|v| v.trim().parse().map_err(|_| err(name, v, "not an IP address")))
            .transpose()
    }
}
