//! Structured logs on stderr: JSON lines when stderr is not a terminal (what
//! log shippers want), human-readable text on a terminal. `KEEL_LOG` (or
//! `RUST_LOG`) sets the filter, `info` by default.
//!
//! Set up here, in the binary, because a subscriber is process-global: the
//! libraries only emit events (`tracing`), they never install one. Nothing
//! secret reaches a log line: headers are never logged, and request records
//! scrub free text before emitting it.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum LogFormat {
    Auto,
    Json,
    Text,
}

pub fn init(format: LogFormat, default_level: &str) {
    let filter = EnvFilter::try_from_env("KEEL_LOG")
        .or_else(|_| EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| EnvFilter::new(default_level));
    let json = match format {
        LogFormat::Json => true,
        LogFormat::Text => false,
        LogFormat::Auto => !std::io::stderr().is_terminal(),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder
            .json()
            .flatten_event(true)
            // The request's span (request id, method, path) on every line
            // logged while serving it.
            .with_current_span(true)
            .with_span_list(false)
            .init();
    } else {
        builder.init();
    }
}
