//! XDP attached through rtnetlink, owned by the interface instead of by the agent's process.
//!
//! A `bpf_link` (aya's default) is released by the kernel when its process dies, and that release
//! runs `dev_xdp_install` → `bpf_dispatcher_change_prog` → `synchronize_rcu` with `rtnl_mutex`
//! held: a whole RCU grace period (7–30 ms measured) during which no address can be added on that
//! kernel. A crash of the agent therefore stalled every takeover on the same host (in the failover
//! bench, the peer's VIP add). Attached through netlink, the program stays on the interface when the
//! agent crashes, as Cilium-style datapaths survive agent restarts, and the teardown cost is paid
//! only where someone asks for it:
//! - a restarted agent replaces the program atomically ([`attach`]; same mode) or detaches and
//!   re-attaches it (mode changed);
//! - a graceful stop detaches it ([`Attached`]'s `Drop`);
//! - `ipf-agent cleanup` removes it ([`remove_ours`]).
//!
//! Only a program named [`PROGRAM_NAME`] that no live process holds is ever replaced
//! or removed; anyone else's program, or a running agent's, makes the attach fail as before.

use std::{
    io,
    os::fd::{AsFd, AsRawFd, BorrowedFd},
    time::Duration,
};

use aya::programs::{ProgramInfo, xdp::XdpMode};
use rtnetlink::{
    packet_core::{NLM_F_ACK, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload},
    packet_route::{
        RouteNetlinkMessage,
        link::{LinkAttribute, LinkMessage, LinkXdp, XdpAttached},
    },
    sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE},
};

/// Name of the XDP function in the object: how an attached program is recognised as ipf's.
pub const PROGRAM_NAME: &str = "ipf_xdp";

// linux/if_link.h
const XDP_FLAGS_UPDATE_IF_NOEXIST: u32 = 1 << 0;
const XDP_FLAGS_SKB_MODE: u32 = 1 << 1;
const XDP_FLAGS_DRV_MODE: u32 = 1 << 2;
const XDP_FLAGS_REPLACE: u32 = 1 << 4;

fn mode_flags(mode: XdpMode) -> u32 {
    match mode {
        XdpMode::Skb => XDP_FLAGS_SKB_MODE,
        _ => XDP_FLAGS_DRV_MODE,
    }
}

/// The program attached to an interface, as the kernel reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Current {
    pub prog_id: u32,
    /// `XDP_FLAGS_SKB_MODE` or `XDP_FLAGS_DRV_MODE`.
    flags: u32,
}

impl Current {
    pub fn mode_label(&self) -> &'static str {
        if self.flags == XDP_FLAGS_SKB_MODE {
            "skb"
        } else {
            "driver"
        }
    }
}

/// One request on a fresh NETLINK_ROUTE socket of the calling thread's namespace; returns the
/// replies (an ACK is checked and not returned).
fn request(msg: RouteNetlinkMessage, flags: u16) -> io::Result<Vec<RouteNetlinkMessage>> {
    let mut socket = Socket::new(NETLINK_ROUTE)?;
    socket.bind_auto()?;
    socket.connect(&SocketAddr::new(0, 0))?;
    let mut header = NetlinkHeader::default();
    header.flags = flags;
    header.sequence_number = 1;
    let mut packet = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(msg));
    packet.finalize();
    let mut buf = vec![0u8; packet.buffer_len()];
    packet.serialize(&mut buf);
    socket.send(&buf, 0)?;
    let mut replies = Vec::new();
    loop {
        let (bytes, _) = socket.recv_from_full()?;
        let mut offset = 0;
        while offset < bytes.len() {
            let reply = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&bytes[offset..])
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
            let len = reply.header.length as usize;
            match reply.payload {
                NetlinkPayload::Error(e) if e.code.is_some() => return Err(e.to_io()),
                // An ACK ends a SETLINK, DONE a dump.
                NetlinkPayload::Error(_) | NetlinkPayload::Done(_) => return Ok(replies),
                NetlinkPayload::InnerMessage(m) => {
                    replies.push(m);
                    // A GETLINK of one index answers with a single message and no DONE.
                    if flags & NLM_F_ACK == 0 {
                        return Ok(replies);
                    }
                }
                _ => {}
            }
            if len == 0 {
                break;
            }
            offset += len;
        }
    }
}

fn set_xdp(ifindex: u32, xdp: Vec<LinkXdp>) -> io::Result<()> {
    let mut msg = LinkMessage::default();
    msg.header.index = ifindex;
    msg.attributes.push(LinkAttribute::Xdp(xdp));
    request(RouteNetlinkMessage::SetLink(msg), NLM_F_REQUEST | NLM_F_ACK).map(drop)
}

/// The XDP program attached to `ifindex`, if any.
pub fn current(ifindex: u32) -> io::Result<Option<Current>> {
    let mut msg = LinkMessage::default();
    msg.header.index = ifindex;
    for reply in request(RouteNetlinkMessage::GetLink(msg), NLM_F_REQUEST)? {
        let RouteNetlinkMessage::NewLink(link) = reply else {
            continue;
        };
        for attr in link.attributes {
            let LinkAttribute::Xdp(xdp) = attr else { continue };
            let mut attached = None;
            let mut prog_id = None;
            for x in xdp {
                match x {
                    LinkXdp::Attached(a) => attached = Some(a),
                    LinkXdp::ProgId(id) => prog_id = Some(id),
                    _ => {}
                }
            }
            let flags = match attached {
                Some(XdpAttached::Driver) => XDP_FLAGS_DRV_MODE,
                Some(XdpAttached::SocketBuffer) => XDP_FLAGS_SKB_MODE,
                // None, or offloaded / several programs: nothing this agent attaches.
                _ => return Ok(None),
            };
            return Ok(prog_id.map(|prog_id| Current { prog_id, flags }));
        }
    }
    Ok(None)
}

/// Whether program `id` is ipf's (by name: each agent run loads its own copy).
fn program_if_ours(id: u32) -> Option<ProgramInfo> {
    aya::programs::loaded_programs()
        .flatten()
        .find(|p| p.id() == id)
        .filter(|p| p.name_as_str() == Some(PROGRAM_NAME))
}

/// A process other than this one holding a descriptor of program `id`: a running agent, whose
/// program must not be taken over (its tables would no longer be the ones the kernel uses).
fn live_holder(id: u32) -> Option<u32> {
    let me = std::process::id();
    let needle = format!("prog_id:\t{id}");
    for pid in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = pid.file_name().to_str().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            let is_prog = std::fs::read_link(fd.path()).is_ok_and(|t| t.as_os_str() == "anon_inode:bpf-prog");
            if is_prog
                && std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{}", fd.file_name().to_string_lossy()))
                    .is_ok_and(|info| info.lines().any(|l| l == needle))
            {
                return Some(pid);
            }
        }
    }
    None
}

fn in_use(id: u32, pid: u32) -> io::Error {
    io::Error::new(
        io::ErrorKind::ResourceBusy,
        format!("XDP program {id} is in use by process {pid} (another agent on this interface?)"),
    )
}

/// An attachment made by [`attach`]; dropping it detaches the program (a graceful stop). A process
/// that dies without dropping it leaves the program attached for the next agent or `cleanup`.
#[derive(Debug)]
pub struct Attached {
    ifindex: u32,
    flags: u32,
    /// A duplicate of the program's descriptor, so the detach removes this program and no other.
    prog: std::os::fd::OwnedFd,
}

impl Drop for Attached {
    fn drop(&mut self) {
        if let Err(e) = detach(self.ifindex, self.flags, self.prog.as_fd()) {
            tracing::warn!(ifindex = self.ifindex, "detaching XDP: {e}");
        }
    }
}

/// Detaches `prog` from `ifindex` only if it is still the attached program.
fn detach(ifindex: u32, flags: u32, prog: BorrowedFd<'_>) -> io::Result<()> {
    set_xdp(
        ifindex,
        vec![
            LinkXdp::Fd(-1),
            LinkXdp::Flags(flags | XDP_FLAGS_REPLACE),
            LinkXdp::ExpectedFd(prog.as_raw_fd() as u32),
        ],
    )
}

/// Attaches `prog` to `ifindex` in `mode`. A program of ipf's left by a crashed agent is replaced
/// (atomically when the mode is the same); anyone else's program makes this fail with `EBUSY`.
pub fn attach(ifindex: u32, prog: BorrowedFd<'_>, mode: XdpMode) -> io::Result<Attached> {
    let flags = mode_flags(mode);
    let owned = prog.try_clone_to_owned()?;
    if let Some(cur) = current(ifindex)?
        && let Some(old) = program_if_ours(cur.prog_id)
    {
        if let Some(pid) = live_holder(cur.prog_id) {
            return Err(in_use(cur.prog_id, pid));
        }
        let old_fd = old.fd().map_err(io::Error::other)?;
        let old_fd = old_fd.as_fd();
        if cur.flags == flags {
            tracing::info!(
                ifindex,
                old_prog_id = cur.prog_id,
                "XDP: replacing the program a previous agent left"
            );
            set_xdp(
                ifindex,
                vec![
                    LinkXdp::Fd(prog.as_raw_fd()),
                    LinkXdp::Flags(flags | XDP_FLAGS_REPLACE),
                    LinkXdp::ExpectedFd(old_fd.as_raw_fd() as u32),
                ],
            )?;
            return Ok(Attached {
                ifindex,
                flags,
                prog: owned,
            });
        }
        tracing::info!(
            ifindex,
            old_prog_id = cur.prog_id,
            old_mode = cur.mode_label(),
            "XDP: detaching the program a previous agent left in another mode"
        );
        detach(ifindex, cur.flags, old_fd)?;
    }
    set_xdp(
        ifindex,
        vec![
            LinkXdp::Fd(prog.as_raw_fd()),
            LinkXdp::Flags(flags | XDP_FLAGS_UPDATE_IF_NOEXIST),
        ],
    )?;
    Ok(Attached {
        ifindex,
        flags,
        prog: owned,
    })
}

/// `cleanup`: detaches ipf's program from `ifindex` if one is attached; returns its id.
pub fn remove_ours(ifindex: u32) -> io::Result<Option<u32>> {
    let Some(cur) = current(ifindex)? else { return Ok(None) };
    let Some(old) = program_if_ours(cur.prog_id) else {
        return Ok(None);
    };
    if let Some(pid) = live_holder(cur.prog_id) {
        return Err(in_use(cur.prog_id, pid));
    }
    let fd = old.fd().map_err(io::Error::other)?;
    detach(ifindex, cur.flags, fd.as_fd())?;
    Ok(Some(cur.prog_id))
}

/// How long a graceful stop waits after its priority-0 adverts before detaching. A peer takes over
/// within one advertisement interval (its Skew_Time is shorter); a detach holds `rtnl_mutex` for an
/// RCU grace period, which on a shared kernel (the bench, or several agents on one host) would
/// delay that peer's VIP add. Capped so the agent still exits well within a second.
pub fn graceful_detach_delay(intervals: impl IntoIterator<Item = Duration>) -> Duration {
    let longest = intervals.into_iter().max().unwrap_or_default();
    (longest + Duration::from_millis(2)).min(Duration::from_millis(300))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_graceful_detach_waits_one_interval_capped() {
        let ms = Duration::from_millis;
        assert_eq!(graceful_detach_delay([ms(10), ms(100)]), ms(102));
        assert_eq!(graceful_detach_delay([ms(1000)]), ms(300));
        assert_eq!(graceful_detach_delay([]), ms(2));
    }
}
