//! `NODE_IP`: this node's address as Kubernetes knows it (the downward API's `status.hostIP`).
//!
//! A node's VRRP interface often carries several addresses (a VIP left by another tool, a second
//! subnet, an address a CNI added); "the first one" is then whatever the kernel lists first, and peers
//! that expect the node's own address (unicast peer lists, firewalls) see another. How it combines
//! with the configuration front ends:
//! 1. an explicit source wins: `src=` (flags), `unicast_src_ip` / `mcast_src_ip` (keepalived.conf),
//!    `KEEPALIVED_UNICAST_SRC_IP`;
//! 2. else `NODE_IP`, for IPv4 instances, when it is an address of the VRRP interface;
//! 3. else the interface's first IPv4 address; IPv6 always advertises from its link-local address
//!    (RFC 5798 §5.1.2.1), so `NODE_IP` never applies there.
//!
//! With `OPENSHIFT_HA_*`, `NODE_IP` is also the node's identity: it is listed first among the node's
//! addresses, so the priority hash and the skipping of this node in `OPENSHIFT_HA_UNICAST_PEERS` use
//! it. A `NODE_IP` on another interface is warned about and the interface's first address is used.

use std::net::IpAddr;

pub const VAR: &str = "NODE_IP";

/// `NODE_IP` from the environment; unset or empty is `None`, a malformed value an error naming it.
pub fn from_env() -> Result<Option<IpAddr>, String> {
    parse(std::env::var(VAR).ok().as_deref())
}

pub fn parse(value: Option<&str>) -> Result<Option<IpAddr>, String> {
    match value.map(str::trim) {
        None | Some("") => Ok(None),
        Some(v) => v
            .parse()
            .map(Some)
            .map_err(|_| format!("{VAR}={v:?}: not an IP address (the downward API's status.hostIP)")),
    }
}

/// What the advert source of an IPv4 instance without an explicit source should be.
#[derive(Debug, PartialEq, Eq)]
pub enum Choice {
    /// `NODE_IP`, which is on the interface.
    NodeIp(IpAddr),
    /// `NODE_IP` is not on the interface: the caller warns and uses its default.
    NotOnInterface(IpAddr),
    /// No `NODE_IP` for this family: the default.
    Default,
}

/// Whether `node_ip` is usable as the source of an instance of `ipv4` family on an interface with
/// `on_interface` addresses.
pub fn choose(node_ip: Option<IpAddr>, ipv4: bool, on_interface: &[IpAddr]) -> Choice {
    match node_ip {
        Some(ip) if ip.is_ipv4() && ipv4 => {
            if on_interface.contains(&ip) {
                Choice::NodeIp(ip)
            } else {
                Choice::NotOnInterface(ip)
            }
        }
        _ => Choice::Default,
    }
}

/// Puts `node_ip` first among the node's addresses (the identity the OpenShift front end hashes).
pub fn prefer(addresses: &mut Vec<IpAddr>, node_ip: Option<IpAddr>) {
    if let Some(ip) = node_ip
        && let Some(pos) = addresses.iter().position(|a| *a == ip)
    {
        let a = addresses.remove(pos);
        addresses.insert(0, a);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("address")
    }

    #[test]
    fn malformed_node_ip_names_the_variable() {
        assert_eq!(parse(None), Ok(None));
        assert_eq!(parse(Some(" ")), Ok(None));
        assert_eq!(parse(Some("10.0.0.5")), Ok(Some(ip("10.0.0.5"))));
        let e = parse(Some("10.0.0.x")).expect_err("bad");
        assert!(e.starts_with("NODE_IP=\"10.0.0.x\""), "{e}");
    }

    #[test]
    fn node_ip_is_the_source_only_when_on_the_interface_and_ipv4() {
        let on = [ip("192.0.2.7"), ip("192.0.2.10"), ip("fe80::1")];
        assert_eq!(
            choose(Some(ip("192.0.2.10")), true, &on),
            Choice::NodeIp(ip("192.0.2.10"))
        );
        assert_eq!(
            choose(Some(ip("198.51.100.1")), true, &on),
            Choice::NotOnInterface(ip("198.51.100.1"))
        );
        assert_eq!(choose(None, true, &on), Choice::Default);
        // IPv6 instances advertise from the link-local address whatever NODE_IP says.
        assert_eq!(choose(Some(ip("192.0.2.10")), false, &on), Choice::Default);
        assert_eq!(choose(Some(ip("2001:db8::1")), false, &on), Choice::Default);
    }

    #[test]
    fn node_ip_becomes_the_node_identity() {
        let mut a = vec![ip("192.0.2.7"), ip("192.0.2.10")];
        prefer(&mut a, Some(ip("192.0.2.10")));
        assert_eq!(a, vec![ip("192.0.2.10"), ip("192.0.2.7")]);
        prefer(&mut a, Some(ip("203.0.113.1")));
        assert_eq!(a, vec![ip("192.0.2.10"), ip("192.0.2.7")]);
    }
}
