//! Command-line parsing and the subcommands.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use keel_config::{Config, FaultRule, Issue, ProviderKind, Severity, SimConfig};
use tokio::net::TcpListener;

use crate::logging::LogFormat;
use crate::{eval, guard_bench, inspect, keys};

/// The default config, built in so `keel serve` works from any directory.
const DEFAULT_CONFIG: &str = include_str!("../../../keel.toml");

#[derive(Debug, Parser)]
#[command(
    name = "keel",
    version,
    about = "A production runtime for LLM applications"
)]
pub struct Cli {
    /// Log format on stderr: JSON lines, human text, or auto (text on a terminal).
    #[arg(long, global = true, value_enum, default_value = "auto")]
    pub log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the gateway.
    Serve {
        /// Config file. Default: ./keel.toml if present, else the built-in default.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Override `server.listen` (e.g. 127.0.0.1:0 for an ephemeral port).
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Override the request log's store: a SQLite file or a
        /// postgres:// URL (`keel logs` reads the same variable).
        #[arg(long, env = "KEEL_DB", hide_env_values = true)]
        db: Option<String>,
    },
    /// Run the provider simulator as an HTTP upstream (OpenAI and Anthropic protocols).
    Sim {
        #[arg(long, default_value = "127.0.0.1")]
        host: std::net::IpAddr,
        /// Port to listen on; 0 picks a free one (printed on stdout).
        #[arg(long, default_value_t = 0)]
        port: u16,
        /// Seed for every random choice.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Script file: last user message → reply, tool call or JSON.
        #[arg(long)]
        script: Option<PathBuf>,
        /// A fault injected at a rate, as RATE:SPEC (e.g. `0.3:status=503`). Repeatable.
        #[arg(long = "fault", value_parser = parse_fault_rule)]
        faults: Vec<FaultRule>,
    },
    /// Call a configured function in process and print its output and meta.
    Call {
        /// The function's name.
        function: String,
        /// The function's input, as JSON.
        #[arg(long, default_value = "{}")]
        input: String,
        /// Config file. Default: ./keel.toml if present, else the built-in default.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// The request log, newest last: filter by model, target, key, status,
    /// time window and text.
    Logs {
        #[command(flatten)]
        source: inspect::Source,
        #[command(flatten)]
        select: inspect::Select,
        /// How many of the newest requests to show.
        #[arg(long, short = 'n', default_value_t = 50)]
        limit: usize,
        /// Keep printing requests as they are recorded.
        #[arg(long, short)]
        follow: bool,
        /// One JSON record per line.
        #[arg(long)]
        json: bool,
    },
    /// The whole story of one request: phases, attempts, verdicts, bodies.
    Show {
        /// The request id (`x-request-id`).
        id: String,
        #[command(flatten)]
        source: inspect::Source,
        #[arg(long)]
        json: bool,
    },
    /// Counts, error rates, latency and TTFT percentiles, tokens, cost,
    /// cache and fallback rates, per model, target or key over a window.
    Stats {
        #[command(flatten)]
        source: inspect::Source,
        #[command(flatten)]
        select: inspect::Select,
        /// Group by `model`, `target`, `key` or `none`.
        #[arg(long, default_value = "model", value_parser = inspect::parse_group)]
        by: keel_store::GroupBy,
        #[arg(long)]
        json: bool,
    },
    /// Virtual keys, through a running keel's admin API.
    Keys {
        #[command(flatten)]
        admin: keys::Admin,
        #[command(subcommand)]
        command: keys::KeysCommand,
    },
    /// Configuration tools.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Guardrail tools.
    Guard {
        #[command(subcommand)]
        command: GuardCommand,
    },
    /// Evaluation: run eval files, compare results, capture logged requests.
    Eval {
        #[command(subcommand)]
        command: eval::EvalCommand,
    },
}

impl Cli {
    /// The log level when neither KEEL_LOG nor RUST_LOG says: `warn` for
    /// `keel eval`, whose in-process gateway would otherwise log a record
    /// line per case over the report.
    pub fn default_log_level(&self) -> &'static str {
        match self.command {
            Command::Eval { .. } => "warn",
            _ => "info",
        }
    }
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Validate a config file and report every problem with its location.
    Check {
        #[arg(default_value = "keel.toml")]
        path: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum GuardCommand {
    /// Measure the guardrail detectors on a labelled dataset: precision,
    /// recall, false-positive rate and throughput per check.
    Bench {
        #[command(flatten)]
        options: guard_bench::Options,
    },
}

fn parse_fault_rule(s: &str) -> Result<FaultRule, String> {
    let (rate, fault) = s
        .split_once(':')
        .ok_or_else(|| "expected RATE:SPEC, e.g. 0.3:status=503".to_owned())?;
    let rate: f64 = rate
        .parse()
        .map_err(|_| format!("`{rate}` is not a number"))?;
    Ok(FaultRule {
        rate,
        fault: fault.to_owned(),
    })
}

pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Config {
            command: ConfigCommand::Check { path },
        } => Ok(check(&path)),
        Command::Guard {
            command: GuardCommand::Bench { options },
        } => guard_bench::run(&options).map(|()| ExitCode::SUCCESS),
        Command::Eval { command } => eval::run(command),
        Command::Serve { config, listen, db } => runtime()?.block_on(serve(config, listen, db)),
        Command::Logs {
            source,
            mut select,
            limit,
            follow,
            json,
        } => runtime()?.block_on(async {
            select.default_window();
            let store = inspect::open(&source, || config_of(&source)).await?;
            inspect::logs(&store, &select, limit, follow, json).await?;
            Ok(ExitCode::SUCCESS)
        }),
        Command::Keys { admin, command } => runtime()?
            .block_on(keys::run(admin, command))
            .map(|()| ExitCode::SUCCESS),
        Command::Show { id, source, json } => runtime()?.block_on(async {
            let store = inspect::open(&source, || config_of(&source)).await?;
            Ok(if inspect::show(&store, &id, json).await? {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }),
        Command::Stats {
            source,
            mut select,
            by,
            json,
        } => runtime()?.block_on(async {
            select.default_window();
            let store = inspect::open(&source, || config_of(&source)).await?;
            inspect::stats(&store, &select, by, json).await?;
            Ok(ExitCode::SUCCESS)
        }),
        Command::Call {
            function,
            input,
            config,
        } => runtime()?.block_on(call(config, &function, &input)),
        Command::Sim {
            host,
            port,
            seed,
            script,
            faults,
        } => {
            let config = SimConfig {
                seed,
                script,
                faults,
            };
            runtime()?.block_on(sim(SocketAddr::new(host, port), &config))
        }
    }
}

pub(crate) fn config_of(source: &inspect::Source) -> anyhow::Result<Config> {
    match load(source.config.as_deref()) {
        Ok((config, _, _)) => Ok(config),
        Err(e) => bail!("invalid config:\n{e}"),
    }
}

pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

pub(crate) fn load(
    path: Option<&Path>,
) -> Result<(Config, Vec<Issue>, String), keel_config::ConfigError> {
    match path {
        Some(p) => Config::load(p).map(|(c, w)| (c, w, p.display().to_string())),
        None if Path::new("keel.toml").is_file() => {
            Config::load(Path::new("keel.toml")).map(|(c, w)| (c, w, "keel.toml".to_owned()))
        }
        None => Config::parse(DEFAULT_CONFIG, Path::new("."), &|k| std::env::var(k).ok())
            .map(|(c, w)| (c, w, "built-in default".to_owned())),
    }
}

/// Config validation plus what only the simulator can check (fault specs,
/// script rules).
fn check(path: &Path) -> ExitCode {
    let (config, mut issues) = match Config::load(path) {
        Ok((c, w)) => (Some(c), w),
        Err(e) => (None, e.issues),
    };
    for p in config.iter().flat_map(|c| c.providers.values()) {
        if let ProviderKind::Sim(sim) = &p.kind
            && let Err(e) = keel_sim::Simulator::new(sim)
        {
            issues.push(Issue::error(format!("providers.{}", p.name), e.to_string()));
        }
    }
    // Templates, schemas and rules compile only in the gateway: build it to
    // report their errors too.
    let clean = issues.iter().all(|i| i.severity != Severity::Error);
    if let (Some(config), true) = (config, clean)
        && let Err(e) = keel_server::Gateway::new(config)
    {
        issues.push(Issue::error("functions", e.message));
    }
    let errors = issues
        .iter()
        .filter(|i| i.severity == Severity::Error)
        .count();
    for issue in &issues {
        println!("{}: {issue}", path.display());
    }
    if errors > 0 {
        println!("{}: {errors} error(s)", path.display());
        ExitCode::FAILURE
    } else {
        println!("{}: ok ({} warning(s))", path.display(), issues.len());
        ExitCode::SUCCESS
    }
}

async fn serve(
    config_path: Option<PathBuf>,
    listen: Option<SocketAddr>,
    db: Option<String>,
) -> anyhow::Result<ExitCode> {
    let (mut config, warnings, source) = match load(config_path.as_deref()) {
        Ok(x) => x,
        Err(e) => bail!("invalid config:\n{e}"),
    };
    for w in &warnings {
        tracing::warn!(config = %source, "{w}");
    }
    if let Some(addr) = listen {
        config.server.listen = addr;
    }
    if let Some(db) = &db {
        config.log.store = inspect::store_kind(db);
    }
    let addr = config.server.listen;
    let gateway = keel_server::Gateway::open(config)
        .await
        .context("cannot start the gateway")?;
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let local = listener.local_addr()?;
    tracing::info!(addr = %local, config = %source, "keel listening");
    let shutdown = shutdown_signal()?;
    announce(local)?;
    keel_server::serve(gateway, listener, shutdown).await?;
    tracing::info!("keel stopped");
    Ok(ExitCode::SUCCESS)
}

/// Exit codes of `keel call`: 2 input invalid, 3 output invalid after every
/// re-ask and fallback, 1 anything else.
async fn call(
    config_path: Option<PathBuf>,
    function: &str,
    input: &str,
) -> anyhow::Result<ExitCode> {
    let input: serde_json::Value =
        serde_json::from_str(input).context("--input is not valid JSON")?;
    let (config, _warnings, _) = match load(config_path.as_deref()) {
        Ok(x) => x,
        Err(e) => bail!("invalid config:\n{e}"),
    };
    let gateway = keel_server::Gateway::new(config).context("cannot build the gateway")?;
    let result = gateway.call_function(function, input).await;
    let (code, value) = match result {
        Ok(out) => (0, serde_json::to_value(&out)?),
        Err(keel_server::FunctionError::InputInvalid(v)) => (
            2,
            serde_json::json!({"error": "input_invalid", "errors": v}),
        ),
        Err(keel_server::FunctionError::OutputInvalid {
            errors,
            raw,
            attempts,
        }) => (
            3,
            serde_json::json!({"error": "output_invalid", "errors": errors, "raw": raw, "attempts": attempts}),
        ),
        Err(keel_server::FunctionError::NotFound(name)) => (
            1,
            serde_json::json!({"error": format!("function `{name}` is not configured")}),
        ),
        Err(keel_server::FunctionError::Call(e)) => (1, serde_json::json!({"error": e.message})),
    };
    println!("{}", serde_json::to_string_pretty(&value)?);
    Ok(ExitCode::from(code))
}

async fn sim(addr: SocketAddr, config: &SimConfig) -> anyhow::Result<ExitCode> {
    let sim = keel_sim::Simulator::new(config)?;
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let shutdown = shutdown_signal()?;
    announce(listener.local_addr()?)?;
    keel_sim::serve(listener, sim, shutdown).await?;
    Ok(ExitCode::SUCCESS)
}

/// One line on stdout with the bound address, for scripts and tests that
/// start keel on port 0.
fn announce(addr: SocketAddr) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "listening on http://{addr}")?;
    out.flush()?;
    Ok(())
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM. The handlers are installed
/// here, synchronously, before keel announces its address: a signal sent as
/// soon as the address is known must start a graceful shutdown, not kill
/// the process with the default action.
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()> + Send + 'static> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    let mut terminate = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => {},
            _ = terminate.recv() => {},
        }
    })
}
