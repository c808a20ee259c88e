//! What runs without an election: checking the configuration against the system, and
//! `ipf-agent cleanup`.

use anyhow::{Context as _, Result};

use crate::{config::Config, firewall, network::AddressManager};

/// Checks the configuration against the system without changing anything: every interface it
/// names must exist.
pub fn check_system(config: &Config) -> Result<()> {
    config.validate()?;
    for name in config.interfaces() {
        crate::datapath::interface_index(name).with_context(|| format!("interface {name:?}"))?;
    }
    Ok(())
}

/// `ipf-agent cleanup`: removes every address `config` manages from its interface, a crashed agent's
/// XDP program and the firewall rule, whoever put them there; absent ones are fine. Returns what was done, a line each.
pub async fn cleanup(config: &Config) -> Result<String> {
    let addrs = AddressManager::new().context("rtnetlink")?;
    let mut report = String::new();
    for i in &config.instances {
        for v in i.owned() {
            let name = i.vip_interface(v);
            let Ok(ifindex) = crate::datapath::interface_index(name) else {
                report.push_str(&format!("{v}: interface {name} is gone\n"));
                continue;
            };
            let present = addrs.list(ifindex).await?.contains(&(v.addr, v.prefix_len));
            addrs
                .remove(ifindex, v)
                .await
                .with_context(|| format!("removing {v} from {name}"))?;
            if present {
                report.push_str(&format!("removed {}/{} from {name}\n", v.addr, v.prefix_len));
            }
        }
    }
    if let Ok(name) = config.interface()
        && let Ok(ifindex) = crate::datapath::interface_index(name)
        && let Some(id) = crate::datapath::attach::remove_ours(ifindex)
            .with_context(|| format!("detaching the XDP program from {name}"))?
    {
        report.push_str(&format!("detached XDP program {id} from {name}\n"));
    }
    if let Some(rule) = &config.firewall {
        firewall::remove(rule).context("removing the firewall accept rule")?;
        report.push_str("firewall accept rule removed (if it was there)\n");
    }
    if report.is_empty() {
        report.push_str("nothing to remove\n");
    }
    Ok(report)
}
