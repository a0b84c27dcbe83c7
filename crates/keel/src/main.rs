//! The `keel` binary: a thin command line over the library crates.
//!
//! - `keel serve`: run the gateway (default config built in);
//! - `keel sim`: run the provider simulator as an HTTP upstream;
//! - `keel call`: call a configured function in process;
//! - `keel logs`, `keel show`, `keel stats`: read the request log;
//! - `keel config check`: validate a config and list every problem;
//! - `keel guard bench`: measure the guardrail detectors on a labelled dataset;
//! - `keel eval run|compare|capture`: evaluation (keel-eval) and its gate.
//!
//! `anyhow` lives here only; the libraries return typed errors.

mod capture;
mod cli;
mod eval;
mod guard_bench;
mod inspect;
mod keys;
mod logging;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    logging::init(cli.log_format, cli.default_log_level());
    match cli::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("keel: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
