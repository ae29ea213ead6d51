//! Log set-up: `tracing` to stderr, text or JSON as `log.format` says.

use crate::config::Config;
use std::io::IsTerminal;
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. `RUST_LOG` overrides the level.
pub(crate) fn init(config: &Config, debug: bool) {
    let level = if debug || config.log.debug {
        "debug"
    } else {
        "info"
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        // Colour only for a person at a terminal: a log file, journald or
        // a container's log must not carry escape codes.
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let result = match (config.log.format.as_str(), config.log.timestamp) {
        ("json", true) => builder.json().try_init(),
        ("json", false) => builder.json().without_time().try_init(),
        (_, true) => builder.try_init(),
        (_, false) => builder.without_time().try_init(),
    };
    let _ = result;
}
