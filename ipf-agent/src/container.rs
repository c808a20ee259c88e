//! What running in a container changes, and what the agent says about it.
//!
//! A DaemonSet gives the agent a capability set, a seccomp filter and a read-only /proc/sys. Each can
//! break it in a way that surfaces as a bare `EPERM` or `EROFS` deep inside a syscall; this module
//! turns them into errors that name the cause and the line of the manifest to change:
//! - CAP_NET_ADMIN (addresses, XDP attach) and CAP_NET_RAW (VRRP and ARP sockets) are required:
//!   without them `run` exits non-zero before touching any address or firewall rule;
//! - CAP_BPF (or CAP_SYS_ADMIN before kernel 5.8) is needed for XDP only: without it, or with a
//!   seccomp filter that blocks `bpf()`, the agent says so and uses the raw-socket receive path;
//! - a read-only /proc/sys gets one warning (what to set on the node), not one per VIP.

use std::{
    collections::HashSet,
    sync::atomic::{AtomicBool, Ordering},
};

use caps::{CapSet, Capability};

/// The manifest's capability list, for messages.
const MANIFEST_CAPS: &str = "securityContext.capabilities.add";
/// The seccomp fix, for messages.
const SECCOMP_FIX: &str = "set securityContext.seccompProfile to type: Unconfined (as deploy/base does), or to a \
     Localhost profile that is the runtime default plus bpf";

/// The process's privileges as the kernel sees them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Privileges {
    pub effective: HashSet<Capability>,
    /// `Seccomp:` of /proc/self/status: 0 none, 1 strict, 2 filter.
    pub seccomp_mode: u8,
}

impl Privileges {
    pub fn current() -> Self {
        Privileges {
            // Unreadable only without /proc: then assume everything and let the syscalls speak.
            effective: caps::read(None, CapSet::Effective).unwrap_or_else(|_| caps::all()),
            seccomp_mode: std::fs::read_to_string("/proc/self/status")
                .ok()
                .and_then(|s| parse_seccomp(&s))
                .unwrap_or(0),
        }
    }

    fn has(&self, c: Capability) -> bool {
        self.effective.contains(&c)
    }

    /// CAP_BPF, or CAP_SYS_ADMIN which implies it (and is all kernels before 5.8 know).
    fn has_bpf(&self) -> bool {
        self.has(Capability::CAP_BPF) || self.has(Capability::CAP_SYS_ADMIN)
    }
}

fn parse_seccomp(status: &str) -> Option<u8> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("Seccomp:"))
        .and_then(|v| v.trim().parse().ok())
}

/// A missing privilege `run` cannot do without.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MissingPrivilege {
    #[error(
        "ipf-agent run needs {cap} ({why}) and does not have it: add {name} to {MANIFEST_CAPS} in the DaemonSet \
         (or `--cap-add={name}`); nothing was changed on the node"
    )]
    Capability {
        cap: &'static str,
        name: &'static str,
        why: &'static str,
    },
}

/// Checks what `run` needs before anything on the node is touched.
pub fn require_for_run(p: &Privileges) -> Result<(), MissingPrivilege> {
    let needed = [
        (
            Capability::CAP_NET_ADMIN,
            "CAP_NET_ADMIN",
            "NET_ADMIN",
            "adding and removing VIPs, attaching XDP",
        ),
        (
            Capability::CAP_NET_RAW,
            "CAP_NET_RAW",
            "NET_RAW",
            "sending VRRP adverts and gratuitous ARP on raw sockets",
        ),
    ];
    for (cap, cap_name, name, why) in needed {
        if !p.has(cap) {
            return Err(MissingPrivilege::Capability {
                cap: cap_name,
                name,
                why,
            });
        }
    }
    Ok(())
}

/// Why XDP cannot be used, when the reason is the container's set-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum XdpBlocked {
    /// Neither CAP_BPF nor CAP_SYS_ADMIN.
    NoBpfCapability,
    /// The capabilities are there but `bpf()` fails with EPERM under a seccomp filter.
    Seccomp,
    /// Another program holds the interface's XDP slot (a CNI's, typically).
    SlotHeld { interface: String },
}

impl std::fmt::Display for XdpBlocked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            XdpBlocked::NoBpfCapability => write!(
                f,
                "XDP needs CAP_BPF (kernel 5.8 and later; CAP_SYS_ADMIN before) and the process has neither: \
                 add BPF to {MANIFEST_CAPS} (PERFMON too, for the verifier's relaxed checks)"
            ),
            XdpBlocked::Seccomp => write!(
                f,
                "bpf() is blocked by the container's seccomp profile (EPERM although CAP_BPF is held; the \
                 runtime's default profile allows bpf only with CAP_SYS_ADMIN): {SECCOMP_FIX}"
            ),
            XdpBlocked::SlotHeld { interface } => write!(
                f,
                "the XDP slot of {interface} is held by another program (a CNI's?); ipf does not replace it \
                 (`ip link show dev {interface}` shows it)"
            ),
        }
    }
}

/// Whether `bpf()` works here, probed with the smallest map the kernel accepts; `Err(errno)`.
pub fn probe_bpf() -> Result<(), i32> {
    // union bpf_attr for BPF_MAP_CREATE: map_type, key_size, value_size, max_entries.
    let mut attr = [0u32; 32];
    attr[0] = 2; // BPF_MAP_TYPE_ARRAY
    attr[1] = 4;
    attr[2] = 4;
    attr[3] = 1;
    // SAFETY: a zeroed bpf_attr large enough for BPF_MAP_CREATE, of the size passed.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            0, // BPF_MAP_CREATE
            attr.as_mut_ptr(),
            std::mem::size_of_val(&attr) as u32,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EPERM));
    }
    // SAFETY: the descriptor the kernel just returned, closed once.
    unsafe { libc::close(fd as i32) };
    Ok(())
}

/// Before loading XDP: a cause that makes the attempt pointless, from the privileges and the probe.
pub fn xdp_preflight(p: &Privileges, probe: Result<(), i32>) -> Option<XdpBlocked> {
    if !p.has_bpf() {
        return Some(XdpBlocked::NoBpfCapability);
    }
    match probe {
        Err(libc::EPERM) if p.seccomp_mode == 2 => Some(XdpBlocked::Seccomp),
        _ => None,
    }
}

/// An attach failure with EBUSY / EEXIST: the slot is taken (the kernel refuses a second native
/// program, and generic XDP while a native one is attached).
pub fn slot_held(errno: Option<i32>) -> bool {
    matches!(errno, Some(libc::EBUSY) | Some(libc::EEXIST))
}

/// The errno at the bottom of an error chain, if one is there.
pub fn errno_of(e: &(dyn std::error::Error + 'static)) -> Option<i32> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>()
            && let Some(n) = io.raw_os_error()
        {
            return Some(n);
        }
        cur = err.source();
    }
    None
}

static SYSCTL_WARNED: AtomicBool = AtomicBool::new(false);

/// A sysctl write failed. On a read-only /proc/sys (every non-privileged container) this is said
/// once, with what to do instead; other errors are logged as they come.
pub fn sysctl_write_failed(path: &str, wanted: &str, err: &std::io::Error) {
    if err.raw_os_error() == Some(libc::EROFS) || err.raw_os_error() == Some(libc::EACCES) {
        if !SYSCTL_WARNED.swap(true, Ordering::Relaxed) {
            tracing::warn!("{}", read_only_advice(path, wanted));
        }
        return;
    }
    tracing::warn!("setting {path}: {err}");
}

pub fn read_only_advice(path: &str, wanted: &str) -> String {
    let name = path.trim_start_matches("/proc/sys/").replace('/', ".");
    format!(
        "/proc/sys is read-only in this container, so {name} stays off: removing the first address of a \
         subnet can take the VIPs of that subnet with it. Set it on the node ({name}={wanted}, or \
         net.ipv4.conf.all.promote_secondaries=1 in sysctl.d or a MachineConfig); a container cannot \
         mount /proc/sys writable without running privileged. This is said once."
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(caps: &[Capability], seccomp_mode: u8) -> Privileges {
        Privileges {
            effective: caps.iter().copied().collect(),
            seccomp_mode,
        }
    }

    #[test]
    fn run_needs_net_admin_and_net_raw_and_names_the_manifest_field() {
        use Capability::*;
        assert_eq!(require_for_run(&with(&[CAP_NET_ADMIN, CAP_NET_RAW], 2)), Ok(()));
        let e = require_for_run(&with(&[CAP_NET_ADMIN, CAP_BPF], 0)).expect_err("no NET_RAW");
        let text = e.to_string();
        assert!(
            text.contains("CAP_NET_RAW") && text.contains("add NET_RAW to securityContext.capabilities.add"),
            "{text}"
        );
        let e = require_for_run(&with(&[CAP_NET_RAW], 0)).expect_err("no NET_ADMIN");
        assert!(e.to_string().contains("CAP_NET_ADMIN"), "{e}");
    }

    #[test]
    fn xdp_preflight_tells_capability_from_seccomp() {
        use Capability::*;
        let bpf = [CAP_NET_ADMIN, CAP_NET_RAW, CAP_BPF];
        assert_eq!(
            xdp_preflight(&with(&[CAP_NET_ADMIN, CAP_NET_RAW], 0), Err(libc::EPERM)),
            Some(XdpBlocked::NoBpfCapability)
        );
        assert_eq!(
            xdp_preflight(&with(&bpf, 2), Err(libc::EPERM)),
            Some(XdpBlocked::Seccomp)
        );
        assert_eq!(xdp_preflight(&with(&bpf, 2), Ok(())), None);
        // EPERM without a filter is something else (lockdown, a LSM): let the load report it.
        assert_eq!(xdp_preflight(&with(&bpf, 0), Err(libc::EPERM)), None);
        // CAP_SYS_ADMIN stands in for CAP_BPF (kernels before 5.8).
        assert_eq!(xdp_preflight(&with(&[CAP_SYS_ADMIN], 0), Ok(())), None);
        let msg = XdpBlocked::Seccomp.to_string();
        assert!(msg.contains("seccompProfile") && msg.contains("Unconfined"), "{msg}");
        assert!(
            XdpBlocked::NoBpfCapability
                .to_string()
                .contains("add BPF to securityContext.capabilities.add")
        );
    }

    #[test]
    fn busy_slot_is_recognised_through_the_error_chain() {
        #[derive(Debug, thiserror::Error)]
        #[error("attach")]
        struct Outer(#[source] std::io::Error);
        let e = Outer(std::io::Error::from_raw_os_error(libc::EBUSY));
        assert!(slot_held(errno_of(&e)));
        let e = Outer(std::io::Error::from_raw_os_error(libc::EPERM));
        assert!(!slot_held(errno_of(&e)));
    }

    #[test]
    fn seccomp_mode_is_read_from_proc_status() {
        assert_eq!(parse_seccomp("Name:\tx\nSeccomp:\t2\nSeccomp_filters:\t1\n"), Some(2));
        assert_eq!(parse_seccomp("Name:\tx\n"), None);
    }

    #[test]
    fn read_only_advice_names_the_sysctl() {
        let t = read_only_advice("/proc/sys/net/ipv4/conf/eth0/promote_secondaries", "1");
        assert!(t.contains("net.ipv4.conf.eth0.promote_secondaries=1"), "{t}");
    }
}
