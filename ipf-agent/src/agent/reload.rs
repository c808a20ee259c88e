//! SIGHUP: load and check the new configuration before anything changes, then bring the running
//! instances to it — unchanged ones kept, changed ones updated in place or restarted, removed ones
//! released, new ones started.

use anyhow::{Result, bail};

use super::{
    check_system,
    node::{Node, Running},
};
use crate::config::{Config, InstanceSpec};

/// What a reload does to an instance.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Change {
    Keep,
    /// Priority, addresses, tracking, notify or announcements changed: applied in place, keeping
    /// the state.
    Update,
    /// Something on the wire or in the election changed: released and started again.
    Restart,
}

pub(super) fn change(old: &InstanceSpec, new: &InstanceSpec) -> Change {
    if old == new {
        return Change::Keep;
    }
    fn identity(s: &InstanceSpec) -> impl PartialEq + '_ {
        (
            &s.interface,
            s.vrid,
            s.family,
            s.version,
            s.adver_int,
            s.preempt,
            &s.unicast_peers,
            s.src,
            &s.auth_pass,
            // Becoming or ceasing to be the address owner changes the election itself.
            s.priority == 255,
        )
    }
    if identity(old) == identity(new) {
        Change::Update
    } else {
        Change::Restart
    }
}

/// Loads and checks the new configuration; it must keep the interface (the datapath is attached
/// there).
pub(super) fn reload_config(reload: &impl Fn() -> Result<Config>, interface: &str) -> Result<Config> {
    let new = reload()?;
    check_system(&new)?;
    let new_interface = new.interface()?;
    if new_interface != interface {
        bail!("the interface changed from {interface} to {new_interface}: restart the agent to move it");
    }
    Ok(new)
}

/// Brings the running instances to `new`: unchanged ones keep their state and VIPs, changed ones
/// are updated in place or restarted, removed ones released, added ones started. An error means
/// nothing was changed (it comes before the first change).
pub(super) async fn apply_reload(node: &mut Node, running: &mut Vec<Running>, new: &Config) -> Result<String> {
    // Sources of the instances that will start, before anything changes.
    let starting: Vec<&InstanceSpec> = new
        .instances
        .iter()
        .filter(|n| {
            running
                .iter()
                .find(|r| r.spec.name == n.name)
                .is_none_or(|r| change(&r.spec, n) == Change::Restart)
        })
        .collect();
    let sources = node.sources(&starting).await?;
    let (mut kept, mut updated, mut restarted, mut removed) = (0, 0, 0, 0);
    // Stops first, so a VRID can move between instances.
    let mut i = 0;
    while i < running.len() {
        let verdict = new
            .instances
            .iter()
            .find(|n| n.name == running[i].spec.name)
            .map(|n| change(&running[i].spec, n));
        match verdict {
            None => {
                removed += 1;
                let r = running.remove(i);
                node.stop(r);
            }
            Some(Change::Restart) => {
                restarted += 1;
                let r = running.remove(i);
                node.stop(r);
            }
            Some(Change::Keep) => {
                kept += 1;
                i += 1;
            }
            Some(Change::Update) => {
                updated += 1;
                if let Some(n) = new.instances.iter().find(|n| n.name == running[i].spec.name) {
                    node.update(&mut running[i], n);
                }
                i += 1;
            }
        }
    }
    // From here on the change is under way: an instance that cannot start is reported, the others
    // go on.
    let mut failed = Vec::new();
    for (spec, src) in starting.iter().zip(sources) {
        let started = async {
            node.remove_stale(spec).await?;
            node.start(spec, src)
        };
        match started.await {
            Ok(r) => running.push(r),
            Err(e) => {
                tracing::error!("({}) cannot start: {e:#}", spec.name);
                failed.push(spec.name.clone());
            }
        }
    }
    let added = starting.len() - restarted;
    let mut summary = format!(
        "{kept} unchanged, {updated} updated in place, {restarted} restarted, {removed} removed, {added} added"
    );
    if !failed.is_empty() {
        summary.push_str(&format!("; failed to start: {}", failed.join(", ")));
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::{config::parse_vip, datapath::Family, vrrp::Preempt};

    /// A named change to an instance.
    type Edit = (&'static str, fn(&mut InstanceSpec));

    fn spec() -> InstanceSpec {
        let mut s = InstanceSpec::new("VI_1", "eth0", 51, Family::V4);
        s.vips = vec![parse_vip("192.0.2.100/24").expect("vip")];
        s
    }

    #[test]
    fn unchanged_is_kept() {
        assert_eq!(change(&spec(), &spec()), Change::Keep);
    }

    #[test]
    fn what_the_election_does_not_see_is_updated_in_place() {
        let edits: [Edit; 6] = [
            ("priority", |s| s.priority = 150),
            ("vips", |s| s.vips.push(parse_vip("192.0.2.101/24").expect("vip"))),
            ("excluded", |s| {
                s.excluded.push(parse_vip("192.0.2.102/32").expect("vip"))
            }),
            ("tracking", |s| s.track_interfaces.push("eth1".into())),
            ("notify", |s| s.notify.master = Some("/bin/true".into())),
            ("garp", |s| s.garp.repeat = 2),
        ];
        for (what, edit) in edits {
            let mut new = spec();
            edit(&mut new);
            assert_eq!(change(&spec(), &new), Change::Update, "{what}");
        }
    }

    #[test]
    fn what_the_wire_or_the_election_sees_restarts() {
        let edits: [Edit; 10] = [
            ("vrid", |s| s.vrid = 52),
            ("version", |s| s.version = 3),
            ("interval", |s| s.adver_int = Duration::from_secs(2)),
            ("preempt", |s| s.preempt = Preempt::No),
            ("peers", |s| s.unicast_peers.push("192.0.2.2".parse().expect("addr"))),
            ("source", |s| s.src = Some("192.0.2.1".parse().expect("addr"))),
            ("password", |s| s.auth_pass = Some("x".into())),
            ("interface", |s| s.interface = "eth1".into()),
            ("becoming the address owner", |s| s.priority = 255),
            ("family", |s| s.family = Family::V6),
        ];
        for (what, edit) in edits {
            let mut new = spec();
            edit(&mut new);
            assert_eq!(change(&spec(), &new), Change::Restart, "{what}");
        }
        let mut owner = spec();
        owner.priority = 255;
        let mut not_owner = owner.clone();
        not_owner.priority = 254;
        assert_eq!(
            change(&owner, &not_owner),
            Change::Restart,
            "ceasing to be the address owner"
        );
    }
}
