//! The command line: subcommands and their arguments (clap). What the arguments mean for the
//! configuration is `config::source`'s business; this only carries them there.

use clap::{Parser, Subcommand};

use crate::{
    agent::AgentConfig,
    config::{Config, ConfigError, Selection, Source, flags::InstanceArg},
    datapath::XdpModeArg,
};

#[derive(Debug, Parser)]
#[command(name = "ipf-agent", version, about = "eBPF/XDP-accelerated VRRP failover agent")]
pub struct Cli {
    /// Log level (overridden by RUST_LOG; KEEPALIVED_DEBUG=true means debug).
    #[arg(long, global = true, env = "IPF_LOG_LEVEL")]
    pub log_level: Option<String>,
    /// Log line format: text, or one JSON object per line for log collectors.
    #[arg(long, global = true, value_enum, default_value = "text", env = "IPF_LOG_FORMAT")]
    pub log_format: crate::logging::LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the VRRP instances: elect, own the VIPs, announce them. SIGHUP reloads the configuration.
    Run(RunArgs),
    /// Attach the datapath and print the VRRP adverts and address claims it sees.
    Monitor(crate::monitor::MonitorArgs),
    /// Validate the configuration (--config, flags, OPENSHIFT_HA_* or KEEPALIVED_* environment) and
    /// print the effective configuration; non-zero on error.
    CheckConfig {
        #[command(flatten)]
        args: RunArgs,
        /// `text` for people, `json` for tools (fields documented in the README).
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
    /// Print the effective configuration as keepalived.conf (to diff against what an old image
    /// generated).
    RenderConfig(RunArgs),
    /// Remove this configuration's VIPs and firewall rule from the node (what the ipfailover image's
    /// remove-failover.sh did); idempotent.
    Cleanup(RunArgs),
    /// Show the running agent's instances (table, --json, or --brief as a probe).
    Status(crate::status::StatusArgs),
}

/// Output of `check-config`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// A keepalived.conf to run (the subset ipf supports; see the README).
    #[arg(long = "config", short = 'f', env = "IPF_CONFIG", value_name = "FILE")]
    pub config_file: Option<std::path::PathBuf>,
    /// A VRRP instance: `vrid=N,priority=P,vip=ADDR/PREFIX[,vip=...][,version=2|3][,interval=MS][,peer=ADDR]...`.
    /// Without --config or --instance, the configuration comes from the OPENSHIFT_HA_* environment
    /// (ipfailover image) or the KEEPALIVED_* environment (arcts/keepalived image).
    #[arg(long = "instance")]
    pub instances: Vec<InstanceArg>,
    /// Interface of the --instance instances (default eth0).
    #[arg(long, short = 'i', env = "IPF_INTERFACE")]
    pub interface: Option<String>,
    /// A health check for --instance: `name=N,tcp=PORT|script=CMD[,interval=S][,timeout=S][,rise=N][,fall=N][,weight=W]`
    /// (`script=` last: it takes the rest). Instances track it with `track=N`.
    #[arg(long = "check")]
    pub checks: Vec<crate::config::CheckSpec>,
    /// Script run on every state change of every instance: `SCRIPT INSTANCE <name> <MASTER|BACKUP|FAULT|STOP> <priority>`.
    #[arg(long)]
    pub notify: Option<String>,
    /// Gratuitous ARP / NA packets per burst on becoming Master (default 5, or the configuration's).
    #[arg(long)]
    pub garp_repeat: Option<u32>,
    /// Delay of the second gratuitous ARP / NA burst, in seconds (default 5, or the configuration's).
    #[arg(long)]
    pub garp_delay_secs: Option<u64>,
    /// Gratuitous ARP / NA refresh while Master, in seconds; 0: off (the default, or the configuration's).
    #[arg(long)]
    pub garp_refresh_secs: Option<u64>,
    /// XDP attach mode.
    #[arg(long, value_enum, default_value = "auto", env = "IPF_XDP_MODE")]
    pub xdp_mode: XdpModeArg,
    /// Lifetime of a VIP on the interface in seconds, renewed by the Master with its adverts; a
    /// killed agent's VIPs vanish after at most this long. `auto`: the longest that ends before a
    /// Backup can take over (2 s at 1 s adverts); 0: permanent addresses (keepalived's way).
    #[arg(long = "vip-lease-secs", default_value = "auto", env = "IPF_VIP_LEASE_SECS")]
    pub vip_lease: crate::lease::VipLease,
    /// Multicast instances also send each advert by unicast to the peers they have heard advertise,
    /// so elections go on when multicast stops getting through; `false` sends multicast only.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, env = "IPF_LEARN_PEERS")]
    pub learn_peers: bool,
    /// What a Master does about a split brain VRRP cannot settle (no advert path to the other
    /// holder of its VIPs): `report` it and keep the VIPs, or `yield`: the node with the lower MAC
    /// steps down until the other stops answering for them (README, "Split brain").
    #[arg(long, value_enum, default_value = "report", env = "IPF_SPLIT_BRAIN_POLICY")]
    pub split_brain_policy: crate::conflict::SplitBrainPolicy,
    /// A DNS name resolving to every node that runs ipf (a DaemonSet's headless Service): multicast
    /// instances also send each advert by unicast to its addresses, re-resolved in place.
    #[arg(long, value_name = "NAME", env = "IPF_PEERS_DNS")]
    pub peers_dns: Option<String>,
    /// Seconds between lookups of `--peers-dns`.
    #[arg(long, default_value_t = 30, value_name = "SECS", env = "IPF_PEERS_DNS_INTERVAL_SECS")]
    pub peers_dns_interval_secs: u64,
    /// The resolv.conf whose name servers answer `--peers-dns`.
    #[arg(
        long,
        default_value = "/etc/resolv.conf",
        value_name = "FILE",
        env = "IPF_RESOLV_CONF"
    )]
    pub resolv_conf: std::path::PathBuf,
    /// Socket `ipf-agent status` reads; `off` disables it.
    #[arg(long, default_value = crate::status::DEFAULT_SOCKET, env = "IPF_STATUS_SOCKET")]
    pub status_socket: String,
    /// Listen address of /metrics, /healthz and /readyz; `off` disables them.
    #[arg(long, default_value = crate::metrics::DEFAULT_ADDR, env = "IPF_METRICS_ADDR")]
    pub metrics_addr: String,
}

impl RunArgs {
    /// What the arguments say about the configuration.
    pub fn selection(&self) -> Selection {
        Selection {
            config_file: self.config_file.clone(),
            instances: self.instances.iter().map(|i| i.0.clone()).collect(),
            interface: self.interface.clone(),
            checks: self.checks.clone(),
            notify: self.notify.clone(),
            garp_repeat: self.garp_repeat,
            garp_delay_secs: self.garp_delay_secs,
            garp_refresh_secs: self.garp_refresh_secs,
        }
    }

    /// Reads the configuration from its source (again, on reload).
    pub fn load(&self) -> Result<(Config, Source), ConfigError> {
        self.selection().load()
    }

    /// The configuration and the runtime options of `run`.
    pub fn agent_config(&self, config: Config) -> Result<AgentConfig, ConfigError> {
        let metrics_addr = match self.metrics_addr.as_str() {
            "off" | "" => None,
            a => Some(
                a.parse()
                    .map_err(|_| ConfigError::Flag(format!("--metrics-addr {a:?}: not an address:port (or off)")))?,
            ),
        };
        let peers_dns = match self.peers_dns.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(name) => Some(
                crate::dns_peers::DnsPeersConfig::new(name, self.peers_dns_interval_secs, self.resolv_conf.clone())
                    .map_err(|e| ConfigError::Flag(e.to_string()))?,
            ),
        };
        Ok(AgentConfig {
            peers_dns,
            config,
            metrics_addr,
            status_socket: (!matches!(self.status_socket.as_str(), "off" | ""))
                .then(|| self.status_socket.clone().into()),
            xdp_mode: self.xdp_mode,
            vip_lease: self.vip_lease,
            learn_peers: self.learn_peers,
            split_brain_policy: self.split_brain_policy,
        })
    }
}
