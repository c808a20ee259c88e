//! What the front ends need to know about this node (interfaces, default route, addresses), read
//! once per load so the readers themselves stay pure.

use std::net::IpAddr;

/// What the environment needs to know about this node.
#[derive(Clone, Debug, Default)]
pub struct Host {
    pub interfaces: Vec<String>,
    /// The interface of the default route, for when `OPENSHIFT_HA_NETWORK_INTERFACE` is unset and eth0
    /// does not exist.
    pub default_route_interface: Option<String>,
    /// This node's addresses (skipped in the unicast peer list; the node's identity for priorities).
    pub addresses: Vec<IpAddr>,
}

/// Whether `name` can be a Linux interface name (the kernel's dev_valid_name): 1 to 15 bytes, not `.`
/// or `..`, no '/', ':' or whitespace; nor control characters, quotes, braces or comment marks ('!',
/// '#'), which keepalived.conf cannot carry in a VIP line, nor a backslash (one ending a line
/// continues it), nor a leading '@' (a line starting with it is one of keepalived's conditional
/// configuration ids). The fuzzer found renderings that did not read back for each.
pub fn valid_interface_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 15
        && name != "."
        && name != ".."
        && !name.starts_with('@')
        && !name.contains(|c: char| {
            c.is_whitespace() || c.is_control() || matches!(c, '/' | ':' | '"' | '!' | '#' | '{' | '}' | '\\')
        })
}

/// This node's interfaces, default-route interface and addresses.
pub fn host() -> Host {
    let interfaces = std::fs::read_dir("/sys/class/net")
        .map(|d| {
            d.filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
                .collect()
        })
        .unwrap_or_default();
    let default_route_interface = std::fs::read_to_string("/proc/net/route").ok().and_then(|t| {
        t.lines().skip(1).find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.get(1) == Some(&"00000000")).then(|| f[0].to_owned())
        })
    });
    let mut addresses = local_addresses();
    addresses.retain(|a| !a.is_loopback());
    // A malformed NODE_IP is `run`'s error to report (agent sources); here it just does not apply.
    super::node_ip::prefer(&mut addresses, super::node_ip::from_env().ok().flatten());
    Host {
        interfaces,
        default_route_interface,
        addresses,
    }
}

/// This node's addresses now (all interfaces, loopback included). Empty when getifaddrs fails.
pub fn local_addresses() -> Vec<IpAddr> {
    interface_addresses().into_iter().map(|(_, a)| a).collect()
}

/// Every (interface name, address) pair of this network namespace, from getifaddrs.
pub fn interface_addresses() -> Vec<(String, IpAddr)> {
    let mut out = Vec::new();
    let mut ifap: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills a list we walk read-only and free with freeifaddrs.
    unsafe {
        if libc::getifaddrs(&mut ifap) != 0 {
            return out;
        }
        let mut p = ifap;
        while !p.is_null() {
            let a = (*p).ifa_addr;
            let name = if (*p).ifa_name.is_null() {
                String::new()
            } else {
                std::ffi::CStr::from_ptr((*p).ifa_name).to_string_lossy().into_owned()
            };
            if !a.is_null() {
                match i32::from((*a).sa_family) {
                    libc::AF_INET => {
                        let sin = &*(a as *const libc::sockaddr_in);
                        out.push((name, IpAddr::from(u32::from_be(sin.sin_addr.s_addr).to_be_bytes())));
                    }
                    libc::AF_INET6 => {
                        let sin6 = &*(a as *const libc::sockaddr_in6);
                        out.push((name, IpAddr::from(sin6.sin6_addr.s6_addr)));
                    }
                    _ => {}
                }
            }
            p = (*p).ifa_next;
        }
        libc::freeifaddrs(ifap);
    }
    out
}
