use clap::Parser as _;
use ipf_agent::cli::{Cli, Command, Format, RunArgs};

fn keepalived_debug() -> bool {
    std::env::var("KEEPALIVED_DEBUG").is_ok_and(|v| v.trim().eq_ignore_ascii_case("true"))
}

async fn dispatch(command: Command) -> anyhow::Result<()> {
    let load = |args: &RunArgs| args.load().map_err(anyhow::Error::from);
    match command {
        Command::Run(args) => {
            let (config, source) = load(&args)?;
            tracing::info!("configuration from the {}", source.describe());
            let cfg = args.agent_config(config)?;
            ipf_agent::agent::run(cfg, || load(&args).map(|(c, _)| c)).await
        }
        Command::Monitor(args) => ipf_agent::monitor::run(args).await,
        Command::Status(args) => ipf_agent::status::run(args).await,
        Command::CheckConfig { args, format } => {
            let (config, source) = load(&args)?;
            ipf_agent::agent::check_system(&config)?;
            match format {
                Format::Text => {
                    println!("source: {}", source.describe());
                    print!("{}", config.describe());
                }
                Format::Json => println!("{}", config.to_json(source)?),
            }
            Ok(())
        }
        Command::RenderConfig(args) => {
            let (config, _) = load(&args)?;
            config.validate()?;
            // The TCP check's target, as the agent picks it: this node's IPv4 address on the interface.
            let interface = config.interface()?;
            let node = ipf_agent::config::host::interface_addresses()
                .into_iter()
                .find(|(name, a)| name == interface && a.is_ipv4())
                .map(|(_, a)| a);
            print!("{}", ipf_agent::config::keepalived_conf::render(&config, node));
            Ok(())
        }
        Command::Cleanup(args) => {
            let (config, _) = load(&args)?;
            config.validate()?;
            // A running agent would take the VIPs right back; its own stop releases them anyway.
            let runtime = args.agent_config(config.clone())?;
            if let Some(socket) = runtime.status_socket
                && std::os::unix::net::UnixStream::connect(&socket).is_ok()
            {
                anyhow::bail!(
                    "an ipf-agent is running (it answers on {}): stop it first, its shutdown releases its VIPs",
                    socket.display()
                );
            }
            print!("{}", ipf_agent::agent::cleanup(&config).await?);
            Ok(())
        }
    }
}

fn main() -> std::process::ExitCode {
    ipf_agent::memory::limit_arenas();
    let cli = Cli::parse();
    let level = cli
        .log_level
        .clone()
        .unwrap_or_else(|| if keepalived_debug() { "debug" } else { "info" }.to_owned());
    ipf_agent::logging::init(&level, cli.log_format);
    let json = cli.log_format == ipf_agent::logging::LogFormat::Json;
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: tokio runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    // The state machines and their effects are single-threaded: a LocalSet runs them.
    let local = tokio::task::LocalSet::new();
    match local.block_on(&rt, dispatch(cli.command)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // A collector parsing JSON lines gets the reason as one of them.
            if json {
                tracing::error!("{e:#}");
            }
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
