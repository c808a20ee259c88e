//! What health checks and tracked links say, turned into Fault and priority inputs; the checks as
//! tasks a reload can keep, replace or stop.

use std::{collections::HashMap, net::IpAddr};

use tokio::sync::mpsc;

use super::node::Running;
use crate::{
    checks::{self, CheckEvent},
    config::{CheckSpec, Config, InstanceSpec},
    metrics::Metrics,
    vrrp::Input,
};

/// What checks and tracked links say.
#[derive(Default)]
pub(super) struct Health {
    pub(super) check_ok: HashMap<String, bool>,
    /// Links not reported yet count as up.
    pub(super) link_up: HashMap<String, bool>,
}

impl Health {
    /// The Fault and effective priority `spec`'s checks and links call for.
    pub(super) fn verdict(&self, interface: &str, checks: &[CheckSpec], spec: &InstanceSpec) -> (bool, u8) {
        let tracked: Vec<(i32, bool)> = spec
            .tracks
            .iter()
            .filter_map(|t| checks.iter().find(|c| &c.name == t))
            .map(|c| (c.weight, self.check_ok.get(&c.name).copied().unwrap_or(true)))
            .collect();
        let (check_fault, priority) = checks::effect(spec.priority, &tracked);
        let link_down = std::iter::once(interface)
            .chain(spec.track_interfaces.iter().map(String::as_str))
            .any(|l| self.link_up.get(l) == Some(&false));
        (check_fault || link_down, priority)
    }

    /// Feeds each instance the Fault and priority its checks and links call for, when they change.
    pub(super) fn apply(&self, interface: &str, checks: &[CheckSpec], running: &mut [Running]) {
        for r in running {
            let (fault, priority) = self.verdict(interface, checks, &r.spec);
            let (was_fault, was_priority) = std::mem::replace(&mut r.applied, (fault, priority));
            if priority != was_priority {
                r.inst.handle(Input::Priority(priority));
            }
            if fault != was_fault {
                r.inst.handle(Input::Fault(fault));
            }
        }
    }
}

/// The health checks as running tasks, so a reload can keep, replace or stop each.
pub(super) struct CheckTasks {
    pub(super) tasks: HashMap<String, (CheckSpec, tokio::task::JoinHandle<()>)>,
    pub(super) target: Option<IpAddr>,
    pub(super) tx: mpsc::UnboundedSender<CheckEvent>,
}

impl CheckTasks {
    /// Starts, restarts or stops checks to match `checks`; returns the names whose status restarts.
    pub(super) fn sync(&mut self, checks: &[CheckSpec], metrics: &Metrics) -> Vec<String> {
        let mut restarted = Vec::new();
        self.tasks.retain(|name, (spec, task)| {
            let keep = checks.iter().any(|c| c == spec);
            if !keep {
                task.abort();
                if !checks.iter().any(|c| &c.name == name) {
                    metrics.remove_check(name);
                }
            }
            keep
        });
        let Some(target) = self.target else { return restarted };
        for c in checks {
            if !self.tasks.contains_key(&c.name) {
                let task = tokio::spawn(checks::run(c.clone(), target, self.tx.clone(), metrics.check(&c.name)));
                self.tasks.insert(c.name.clone(), (c.clone(), task));
                restarted.push(c.name.clone());
            }
        }
        restarted
    }
}

impl Drop for CheckTasks {
    fn drop(&mut self) {
        for (_, task) in self.tasks.values() {
            task.abort();
        }
    }
}

/// The links to watch: the VRRP interface itself (as keepalived) and every track_interface.
pub(super) fn tracked_links(config: &Config, interface: &str) -> Vec<String> {
    let mut out = vec![interface.to_owned()];
    for name in config.instances.iter().flat_map(|i| &i.track_interfaces) {
        if !out.contains(name) {
            out.push(name.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::{config::CheckKind, datapath::Family};

    fn check(name: &str, weight: i32) -> CheckSpec {
        CheckSpec {
            name: name.into(),
            kind: CheckKind::Tcp(80),
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            rise: 1,
            fall: 1,
            weight,
        }
    }

    fn spec(tracks: &[&str], links: &[&str]) -> InstanceSpec {
        let mut s = InstanceSpec::new("VI_1", "eth0", 51, Family::V4);
        s.priority = 100;
        s.tracks = tracks.iter().map(|t| (*t).to_owned()).collect();
        s.track_interfaces = links.iter().map(|t| (*t).to_owned()).collect();
        s
    }

    fn health(checks: &[(&str, bool)], links: &[(&str, bool)]) -> Health {
        Health {
            check_ok: checks.iter().map(|(n, ok)| ((*n).to_owned(), *ok)).collect(),
            link_up: links.iter().map(|(n, up)| ((*n).to_owned(), *up)).collect(),
        }
    }

    #[test]
    fn nothing_reported_is_healthy() {
        let checks = [check("chk", 0)];
        assert_eq!(
            Health::default().verdict("eth0", &checks, &spec(&["chk"], &["eth1"])),
            (false, 100)
        );
    }

    #[test]
    fn a_failing_weight_zero_check_means_fault() {
        let checks = [check("chk", 0)];
        let h = health(&[("chk", false)], &[]);
        assert_eq!(h.verdict("eth0", &checks, &spec(&["chk"], &[])), (true, 100));
        // A check the instance does not track changes nothing.
        assert_eq!(h.verdict("eth0", &checks, &spec(&[], &[])), (false, 100));
    }

    #[test]
    fn weights_move_the_priority_as_keepalived_does() {
        let checks = [check("down", -30), check("up", 20)];
        // keepalived: a negative weight applies while failing, a positive one while succeeding.
        let h = health(&[("down", false), ("up", true)], &[]);
        assert_eq!(
            h.verdict("eth0", &checks, &spec(&["down", "up"], &[])),
            (false, 100 - 30 + 20)
        );
        let h = health(&[("down", true), ("up", false)], &[]);
        assert_eq!(h.verdict("eth0", &checks, &spec(&["down", "up"], &[])), (false, 100));
    }

    #[test]
    fn a_down_link_means_fault_the_vrrp_one_always_counts() {
        let h = health(&[], &[("eth1", false)]);
        assert_eq!(h.verdict("eth0", &[], &spec(&[], &["eth1"])), (true, 100));
        assert_eq!(h.verdict("eth0", &[], &spec(&[], &[])), (false, 100));
        let h = health(&[], &[("eth0", false)]);
        assert_eq!(
            h.verdict("eth0", &[], &spec(&[], &[])),
            (true, 100),
            "the VRRP interface is always tracked"
        );
    }

    #[test]
    fn tracked_links_are_the_vrrp_interface_then_each_once() {
        let config = Config {
            instances: vec![spec(&[], &["eth1", "eth2"]), spec(&[], &["eth2", "eth0"])],
            ..Config::default()
        };
        assert_eq!(tracked_links(&config, "eth0"), ["eth0", "eth1", "eth2"]);
    }
}
