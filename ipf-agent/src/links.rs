//! Tracked interfaces (keepalived's track_interface): link state from rtnetlink's link multicast group,
//! so a link going down is noticed when the kernel says so, not at the next poll.

use std::collections::HashMap;

use anyhow::{Context as _, Result};
use futures_util::{StreamExt as _, TryStreamExt as _};
use rtnetlink::{
    MulticastGroup,
    packet_core::NetlinkPayload,
    packet_route::{
        RouteNetlinkMessage,
        link::{LinkAttribute, LinkFlags, LinkMessage},
    },
};
use tokio::sync::mpsc;

/// A tracked link's state (sent once at start, then on each change).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkEvent {
    pub ifname: String,
    pub up: bool,
}

fn name_of(l: &LinkMessage) -> Option<&str> {
    l.attributes.iter().find_map(|a| match a {
        LinkAttribute::IfName(n) => Some(n.as_str()),
        _ => None,
    })
}

/// Up means administratively up with carrier (IFF_UP and IFF_LOWER_UP).
fn is_up(l: &LinkMessage) -> bool {
    l.header.flags.contains(LinkFlags::Up) && l.header.flags.contains(LinkFlags::LowerUp)
}

/// A running watch; dropping it stops it (a reload that changes the tracked links starts another).
pub struct LinkWatch {
    tasks: [tokio::task::JoinHandle<()>; 2],
}

impl Drop for LinkWatch {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Watches `names`; must run inside a tokio runtime.
pub fn watch(names: Vec<String>, tx: mpsc::UnboundedSender<LinkEvent>) -> Result<LinkWatch> {
    let (conn, handle, mut messages) =
        rtnetlink::new_multicast_connection(&[MulticastGroup::Link]).context("rtnetlink link events")?;
    let conn = tokio::spawn(conn);
    let events = tokio::spawn(async move {
        let mut state: HashMap<String, bool> = HashMap::new();
        for name in &names {
            let up = match handle.link().get().match_name(name.clone()).execute().try_next().await {
                Ok(Some(l)) => is_up(&l),
                _ => false,
            };
            state.insert(name.clone(), up);
            if tx
                .send(LinkEvent {
                    ifname: name.clone(),
                    up,
                })
                .is_err()
            {
                return;
            }
        }
        while let Some((msg, _)) = messages.next().await {
            let (link, deleted) = match msg.payload {
                NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(l)) => (l, false),
                NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelLink(l)) => (l, true),
                _ => continue,
            };
            let Some(name) = name_of(&link).map(str::to_owned) else {
                continue;
            };
            let Some(was) = state.get_mut(&name) else { continue };
            let up = !deleted && is_up(&link);
            if *was != up {
                *was = up;
                tracing::info!("tracked interface {name} is {}", if up { "up" } else { "down" });
                if tx.send(LinkEvent { ifname: name, up }).is_err() {
                    return;
                }
            }
        }
    });
    Ok(LinkWatch { tasks: [conn, events] })
}
