use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "ipf-agent", version, about = "eBPF/XDP-accelerated VRRP failover agent")]
struct Cli {
    /// Log level (overridden by RUST_LOG).
    #[arg(long, global = true, default_value = "info", env = "IPF_LOG_LEVEL")]
    log_level: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the VRRP instances: elect, own the VIPs, announce them.
    Run(ipf_agent::run_args::RunArgs),
    /// Attach the datapath and print the VRRP adverts and address claims it sees.
    Monitor(ipf_agent::monitor::MonitorArgs),
    /// Validate the configuration (flags or OPENSHIFT_HA_* environment) and print it; non-zero on error.
    CheckConfig(ipf_agent::run_args::RunArgs),
    /// Show the running agent's instances (table, --json, or --brief as a probe).
    Status(ipf_agent::status::StatusArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    ipf_agent::logging::init(&cli.log_level);
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: tokio runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    // The state machines and their effects are single-threaded: a LocalSet runs them.
    let local = tokio::task::LocalSet::new();
    let result = local.block_on(&rt, async {
        match cli.command {
            Command::Run(args) => match args.config() {
                Ok(cfg) => ipf_agent::agent::run(cfg).await,
                Err(e) => Err(anyhow::anyhow!(e)),
            },
            Command::Monitor(args) => ipf_agent::monitor::run(args).await,
            Command::Status(args) => ipf_agent::status::run(args).await,
            Command::CheckConfig(args) => match args.config() {
                Ok(cfg) => cfg.validate().and_then(|()| {
                    ipf_agent::datapath::interface_index(&cfg.interface)?;
                    println!("{cfg:#?}");
                    Ok(())
                }),
                Err(e) => Err(anyhow::anyhow!(e)),
            },
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
