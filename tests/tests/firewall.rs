//! ipf-agent's VRRP multicast accept rule (OPENSHIFT_HA_IPTABLES_CHAIN, OPENSHIFT_HA_NFTABLES_RULE) in
//! throw-away network namespaces: firewall state is per namespace, so the host's is never touched. Needs
//! root, iptables and nft (`cargo xtask setup`).
#![allow(clippy::unwrap_used, reason = "tests")]

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    process::Output,
    time::{Duration, Instant},
};

use ipf_agent::{
    config::Firewall,
    datapath::Family,
    firewall::{self, FirewallError},
    network::AdvertSender,
};
use ipf_common::vrrp::{MCAST_V4, MCAST_V6};
use ipf_testbed::{Netns, in_netns, veth, wait_for};

const V4: &[Family] = &[Family::V4];
const BOTH: &[Family] = &[Family::V4, Family::V6];
const IPF_MARK: &str = "--comment \"ipf: accept VRRP\"";

fn iptables(chain: &str) -> Firewall {
    Firewall::Iptables { chain: chain.into() }
}

/// `tool -S chain` lines.
fn rules(ns: &Netns, tool: &str, chain: &str) -> Vec<String> {
    ns.exec(tool, &["-w", "-S", chain]).lines().map(str::to_owned).collect()
}

/// ipf's rules in `chain`, with their positions among the chain's rules (1 = first).
fn ipf_rules(ns: &Netns, tool: &str, chain: &str) -> Vec<(usize, String)> {
    rules(ns, tool, chain)
        .into_iter()
        .filter(|l| l.starts_with("-A "))
        .enumerate()
        .filter(|(_, l)| l.contains(IPF_MARK))
        .map(|(i, l)| (i + 1, l))
        .collect()
}

/// Exactly one ipf rule, first in the chain, for `dest`, restricted to VRRP.
fn assert_one_ipf_rule(ns: &Netns, tool: &str, chain: &str, dest: &str) {
    let found = ipf_rules(ns, tool, chain);
    assert_eq!(found.len(), 1, "{tool} {chain}: {found:?}");
    let (pos, line) = &found[0];
    assert_eq!(*pos, 1, "{tool} {chain}: ipf's rule is not first: {found:?}");
    assert!(
        line.contains(&format!("-d {dest}")) && (line.contains("-p vrrp") || line.contains("-p 112")),
        "{line}"
    );
    assert!(line.ends_with("-j ACCEPT"), "{line}");
}

fn run(ns: &Netns, program: &str, args: &[&str]) -> Output {
    ns.command(program).args(args).output().unwrap()
}

/// `nft list table inet NAME`, or `None` when there is no such table.
fn nft_table(ns: &Netns, name: &str) -> Option<String> {
    let out = run(ns, "nft", &["list", "table", "inet", name]);
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

fn count(haystack: &str, needle: &str) -> usize {
    haystack.lines().filter(|l| l.contains(needle)).count()
}

#[test]
fn iptables_input_apply_is_idempotent_and_remove_spares_other_rules() {
    ipf_testbed::skip_unless_root!();
    let ns = Netns::new("fwipt");
    let rule = iptables("INPUT");
    // The old image's rule and a user's own, both for 224.0.0.18 and neither ipf's.
    ns.exec(
        "iptables",
        &["-w", "-A", "INPUT", "-d", "224.0.0.18/32", "-j", "ACCEPT"],
    );
    ns.exec(
        "iptables",
        &["-w", "-A", "INPUT", "-d", "224.0.0.18/32", "-p", "112", "-j", "ACCEPT"],
    );
    assert!(!in_netns(&ns, || firewall::is_present(&rule)).unwrap());

    in_netns(&ns, || firewall::apply(&rule, V4)).unwrap();
    assert_one_ipf_rule(&ns, "iptables", "INPUT", "224.0.0.18/32");
    assert!(in_netns(&ns, || firewall::is_present(&rule)).unwrap());
    in_netns(&ns, || firewall::apply(&rule, V4)).unwrap();
    assert_one_ipf_rule(&ns, "iptables", "INPUT", "224.0.0.18/32");
    assert!(
        ipf_rules(&ns, "ip6tables", "INPUT").is_empty(),
        "no IPv6 instances, no IPv6 rule"
    );

    in_netns(&ns, || firewall::remove(&rule)).unwrap();
    assert!(ipf_rules(&ns, "iptables", "INPUT").is_empty());
    assert!(!in_netns(&ns, || firewall::is_present(&rule)).unwrap());
    let left = rules(&ns, "iptables", "INPUT");
    assert_eq!(
        left,
        [
            "-P INPUT ACCEPT",
            "-A INPUT -d 224.0.0.18/32 -j ACCEPT",
            "-A INPUT -d 224.0.0.18/32 -p vrrp -j ACCEPT",
        ],
        "the old image's and the user's rules stay"
    );
    in_netns(&ns, || firewall::remove(&rule)).unwrap();
    assert_eq!(rules(&ns, "iptables", "INPUT"), left);
}

#[test]
fn iptables_custom_chain_follows_the_families() {
    ipf_testbed::skip_unless_root!();
    let ns = Netns::new("fwiptc");
    let chain = "OPENSHIFT-VRRP";
    for tool in ["iptables", "ip6tables"] {
        ns.exec(tool, &["-w", "-N", chain]);
        ns.exec(tool, &["-w", "-A", chain, "-j", "RETURN"]);
    }
    let rule = iptables(chain);

    in_netns(&ns, || firewall::apply(&rule, BOTH)).unwrap();
    in_netns(&ns, || firewall::apply(&rule, BOTH)).unwrap();
    assert_one_ipf_rule(&ns, "iptables", chain, "224.0.0.18/32");
    assert_one_ipf_rule(&ns, "ip6tables", chain, "ff02::12/128");

    // The IPv6 instances went away (a reload): so does the IPv6 rule.
    in_netns(&ns, || firewall::apply(&rule, V4)).unwrap();
    assert_one_ipf_rule(&ns, "iptables", chain, "224.0.0.18/32");
    assert!(ipf_rules(&ns, "ip6tables", chain).is_empty());

    in_netns(&ns, || firewall::apply(&rule, BOTH)).unwrap();
    in_netns(&ns, || firewall::remove(&rule)).unwrap();
    in_netns(&ns, || firewall::remove(&rule)).unwrap();
    for tool in ["iptables", "ip6tables"] {
        assert_eq!(
            rules(&ns, tool, chain),
            [format!("-N {chain}"), format!("-A {chain} -j RETURN")]
        );
    }
    assert!(!in_netns(&ns, || firewall::is_present(&rule)).unwrap());
}

/// Everything ipf could have added anywhere in the filter tables.
fn any_ipf_rule(ns: &Netns) -> Vec<String> {
    ["iptables", "ip6tables"]
        .into_iter()
        .flat_map(|tool| {
            ns.exec(tool, &["-w", "-S"])
                .lines()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .filter(|l| l.contains(IPF_MARK))
        .collect()
}

#[test]
fn iptables_missing_chain_is_an_error_naming_it_and_adds_nothing() {
    ipf_testbed::skip_unless_root!();
    let ns = Netns::new("fwiptm");
    let err = in_netns(&ns, || firewall::apply(&iptables("NO-SUCH-CHAIN"), V4)).unwrap_err();
    assert!(
        matches!(&err, FirewallError::MissingChain { chain, tool: "iptables", .. } if chain == "NO-SUCH-CHAIN"),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(
        text.contains("OPENSHIFT_HA_IPTABLES_CHAIN") && text.contains("NO-SUCH-CHAIN"),
        "{text}"
    );
    assert!(any_ipf_rule(&ns).is_empty());

    // The chain exists for IPv4 only: the IPv6 half fails before the IPv4 half is added.
    ns.exec("iptables", &["-w", "-N", "V4-ONLY"]);
    let err = in_netns(&ns, || firewall::apply(&iptables("V4-ONLY"), BOTH)).unwrap_err();
    assert!(
        matches!(&err, FirewallError::MissingChain { chain, tool: "ip6tables", .. } if chain == "V4-ONLY"),
        "{err:?}"
    );
    assert!(any_ipf_rule(&ns).is_empty());

    // Nothing to remove is not an error, with or without the chain.
    in_netns(&ns, || firewall::remove(&iptables("NO-SUCH-CHAIN"))).unwrap();
    in_netns(&ns, || firewall::remove(&iptables("V4-ONLY"))).unwrap();
    assert!(!in_netns(&ns, || firewall::is_present(&iptables("NO-SUCH-CHAIN"))).unwrap());

    let err = in_netns(&ns, || firewall::apply(&iptables("-F"), V4)).unwrap_err();
    assert!(matches!(err, FirewallError::InvalidChain { .. }), "{err:?}");
}

#[test]
fn nftables_table_is_idempotent_and_remove_spares_the_old_images_table() {
    ipf_testbed::skip_unless_root!();
    let ns = Netns::new("fwnft");
    // The newer ipfailover image's table, which is not ipf's to remove.
    let theirs = "table inet keepalived { chain filter { type filter hook input priority 0; policy accept; ip daddr 224.0.0.18 accept; }; }";
    ns.exec("nft", &[theirs]);
    let rule = Firewall::Nftables;
    assert!(!in_netns(&ns, || firewall::is_present(&rule)).unwrap());

    in_netns(&ns, || firewall::apply(&rule, V4)).unwrap();
    in_netns(&ns, || firewall::apply(&rule, V4)).unwrap();
    let table = nft_table(&ns, firewall::NFT_TABLE).unwrap();
    assert_eq!(count(&table, "ip daddr 224.0.0.18"), 1, "{table}");
    assert_eq!(count(&table, "ff02::12"), 0, "{table}");
    assert_eq!(
        count(&table, "type filter hook input priority filter; policy accept;"),
        1,
        "{table}"
    );
    let v4_rule = table.lines().find(|l| l.contains("224.0.0.18")).unwrap();
    assert!(
        v4_rule.contains("meta l4proto vrrp") && v4_rule.contains("accept comment \"ipf: accept VRRP\""),
        "{table}"
    );
    assert!(in_netns(&ns, || firewall::is_present(&rule)).unwrap());

    in_netns(&ns, || firewall::apply(&rule, BOTH)).unwrap();
    in_netns(&ns, || firewall::apply(&rule, BOTH)).unwrap();
    let table = nft_table(&ns, firewall::NFT_TABLE).unwrap();
    assert_eq!(count(&table, "ip daddr 224.0.0.18"), 1, "{table}");
    assert_eq!(count(&table, "ip6 daddr ff02::12 meta l4proto vrrp"), 1, "{table}");
    assert_eq!(count(&table, "chain "), 1, "{table}");

    in_netns(&ns, || firewall::remove(&rule)).unwrap();
    assert_eq!(nft_table(&ns, firewall::NFT_TABLE), None);
    assert!(!in_netns(&ns, || firewall::is_present(&rule)).unwrap());
    in_netns(&ns, || firewall::remove(&rule)).unwrap();
    let kept = nft_table(&ns, "keepalived").expect("the old image's table stays");
    assert_eq!(count(&kept, "ip daddr 224.0.0.18 accept"), 1, "{kept}");
}

// --- behaviour: a VRRP packet through a DROP policy ---

const VRRP: i32 = 112;

fn check(rc: i32, what: &str) {
    assert!(rc >= 0, "{what}: {}", std::io::Error::last_os_error());
}

fn setsockopt<T>(fd: &OwnedFd, level: i32, name: i32, value: &T, what: &str) {
    // SAFETY: valid fd; `value` is the option's C type and size.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (value as *const T).cast(),
            size_of::<T>() as u32,
        )
    };
    check(rc, what);
}

fn raw_socket(domain: i32) -> OwnedFd {
    // SAFETY: plain syscall.
    let fd = unsafe { libc::socket(domain, libc::SOCK_RAW | libc::SOCK_CLOEXEC, VRRP) };
    check(fd, "raw socket");
    // SAFETY: fd was just returned by socket() and is owned by nobody else.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

fn ifindex(name: &str) -> u32 {
    let c = std::ffi::CString::new(name).unwrap();
    // SAFETY: NUL-terminated name.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    assert_ne!(i, 0, "{name}: {}", std::io::Error::last_os_error());
    i
}

/// A raw VRRP socket on `ifname` that joined the family's VRRP group (a host only takes link-local
/// multicast in for groups it joined): it sees what gets past the input hook.
fn vrrp_listener(family: Family, ifname: &str) -> OwnedFd {
    let idx = ifindex(ifname);
    let fd = match family {
        Family::V4 => {
            let fd = raw_socket(libc::AF_INET);
            let mreq = libc::ip_mreqn {
                imr_multiaddr: libc::in_addr {
                    s_addr: u32::from(Ipv4Addr::new(224, 0, 0, 18)).to_be(),
                },
                imr_address: libc::in_addr { s_addr: 0 },
                imr_ifindex: idx as i32,
            };
            setsockopt(
                &fd,
                libc::IPPROTO_IP,
                libc::IP_ADD_MEMBERSHIP,
                &mreq,
                "IP_ADD_MEMBERSHIP",
            );
            fd
        }
        Family::V6 => {
            let fd = raw_socket(libc::AF_INET6);
            let mreq = libc::ipv6_mreq {
                ipv6mr_multiaddr: libc::in6_addr {
                    s6_addr: "ff02::12".parse::<Ipv6Addr>().unwrap().octets(),
                },
                ipv6mr_interface: idx,
            };
            setsockopt(
                &fd,
                libc::IPPROTO_IPV6,
                libc::IPV6_ADD_MEMBERSHIP,
                &mreq,
                "IPV6_ADD_MEMBERSHIP",
            );
            fd
        }
    };
    let tv = libc::timeval {
        tv_sec: 0,
        tv_usec: 50_000,
    };
    setsockopt(&fd, libc::SOL_SOCKET, libc::SO_RCVTIMEO, &tv, "SO_RCVTIMEO");
    fd
}

/// Whether a packet carrying `payload` reaches `listener` within `within`.
fn received(listener: &OwnedFd, payload: &[u8], within: Duration) -> bool {
    let deadline = Instant::now() + within;
    let mut buf = [0u8; 2048];
    while Instant::now() < deadline {
        // SAFETY: valid fd and buffer.
        let n = unsafe { libc::recv(listener.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        // IPv4 raw sockets get the IP header too: look for the payload at the end.
        if let Ok(n) = usize::try_from(n)
            && buf[..n].ends_with(payload)
        {
            return true;
        }
    }
    false
}

/// The test's own counting rule (no target, after ipf's rule at the head): VRRP multicast that ipf's rule
/// did not accept and the DROP policy is about to drop.
const PROBE_MARK: &str = "ipf-test probe";

fn add_probe_counter(ns: &Netns, tool: &str, group: &str) {
    ns.exec(
        tool,
        &[
            "-w",
            "-A",
            "INPUT",
            "-d",
            group,
            "-p",
            "112",
            "-m",
            "comment",
            "--comment",
            PROBE_MARK,
        ],
    );
}

/// Packets the counting rule saw: `-A INPUT ... --comment "ipf-test probe" -c PKTS BYTES`.
fn probe_drops(ns: &Netns, tool: &str) -> u64 {
    let out = ns.exec(tool, &["-w", "-v", "-S", "INPUT"]);
    let line = out.lines().find(|l| l.contains(PROBE_MARK)).unwrap();
    let counters = line.split(" -c ").nth(1).unwrap_or_else(|| panic!("{line}"));
    counters.split_whitespace().next().unwrap().parse().unwrap()
}

#[test]
fn vrrp_multicast_passes_a_drop_policy_only_with_the_rule() {
    ipf_testbed::skip_unless_root!();
    let a = Netns::new("fwsnd");
    let b = Netns::new("fwrcv");
    veth(
        &a,
        "vrrp0",
        &["192.0.2.1/24", "fe80::a/64"],
        &b,
        "vrrp0",
        &["192.0.2.2/24", "fe80::b/64"],
    );
    for (tool, group) in [("iptables", "224.0.0.18/32"), ("ip6tables", "ff02::12/128")] {
        b.exec(tool, &["-w", "-P", "INPUT", "DROP"]);
        add_probe_counter(&b, tool, group);
    }
    let rule = iptables("INPUT");
    let families = [(Family::V4, "iptables"), (Family::V6, "ip6tables")];
    let listeners: Vec<OwnedFd> = families
        .iter()
        .map(|(f, _)| in_netns(&b, || vrrp_listener(*f, "vrrp0")))
        .collect();
    // The agent's own advert sender (raw VRRP, hop limit 255, out of vrrp0). The IPv6 source is
    // usable once duplicate address detection is over.
    let sources: [IpAddr; 2] = ["192.0.2.1".parse().unwrap(), "fe80::a".parse().unwrap()];
    let senders: Vec<AdvertSender> = families
        .iter()
        .zip(sources)
        .map(|((f, _), src)| {
            wait_for("a usable VRRP source address", Duration::from_secs(10), || {
                in_netns(&a, || AdvertSender::new("vrrp0", *f, src).ok())
            })
        })
        .collect();
    let groups: [IpAddr; 2] = [MCAST_V4.into(), MCAST_V6.into()];

    let mut seq = 0u32;
    // Probes until one passes (`expect`) or until the counting rule sees one that was not received;
    // retries also cover the first second of a new veth, whose packets can vanish before the peer's stack.
    let mut probe = |i: usize, expect: bool| {
        let (family, tool) = families[i];
        let drops = probe_drops(&b, tool);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            seq += 1;
            let payload = format!("ipf-firewall-test {seq}");
            senders[i].send(groups[i], payload.as_bytes()).unwrap();
            if received(&listeners[i], payload.as_bytes(), Duration::from_millis(200)) {
                assert!(
                    expect,
                    "{family:?}: VRRP multicast got through the DROP policy without the rule"
                );
                return;
            }
            if !expect && probe_drops(&b, tool) > drops {
                return;
            }
        }
        panic!(
            "{family:?}: {}",
            if expect {
                "VRRP multicast dropped despite ipf's rule"
            } else {
                "the probes never reached INPUT"
            }
        );
    };

    for i in 0..families.len() {
        probe(i, false);
    }
    in_netns(&b, || firewall::apply(&rule, BOTH)).unwrap();
    for i in 0..families.len() {
        probe(i, true);
    }
    in_netns(&b, || firewall::remove(&rule)).unwrap();
    for i in 0..families.len() {
        probe(i, false);
    }
}
