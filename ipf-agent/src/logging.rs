//! `tracing` set-up; kernel (aya-log) records arrive through the `log` bridge.
//!
//! In a container stderr is a pipe read by the runtime (`kubectl logs`, a log collector): escape
//! sequences there are noise, so colour is used only on a terminal, and never with `NO_COLOR` set.
//! `--log-format json` writes one JSON object per line for collectors that parse fields.

use std::io::IsTerminal as _;

use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// keepalived-like lines for people and grep (OpenShift's e2e tests grep the state lines).
    #[default]
    Text,
    /// One JSON object per line: timestamp, level, target, fields (the message in `fields.message`).
    Json,
}

/// Colour only for a person at a terminal who has not asked for none (<https://no-color.org>).
pub fn use_ansi(stderr_is_terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    stderr_is_terminal && no_color.is_none_or(|v| v.is_empty())
}

/// Logs to stderr at `default_level` unless `RUST_LOG` says otherwise.
pub fn init(default_level: &str, format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // try_init: tests may have installed a subscriber already.
    let _ = match format {
        LogFormat::Text => builder
            .with_ansi(use_ansi(
                std::io::stderr().is_terminal(),
                std::env::var_os("NO_COLOR").as_deref(),
            ))
            .try_init(),
        LogFormat::Json => builder.json().with_ansi(false).try_init(),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        assert!(use_ansi(true, None));
        assert!(use_ansi(true, Some("".as_ref())));
        assert!(!use_ansi(true, Some("1".as_ref())));
        assert!(!use_ansi(false, None));
        assert!(!use_ansi(false, Some("1".as_ref())));
    }
}
