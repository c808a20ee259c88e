//! `tracing` set-up; kernel (aya-log) records arrive through the `log` bridge.

use tracing_subscriber::EnvFilter;

/// Logs to stderr at `default_level` unless `RUST_LOG` says otherwise.
pub fn init(default_level: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    // try_init: tests may have installed a subscriber already.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
