//! `keel eval`: run an eval file, compare two results files, capture
//! logged requests as cases.
//!
//! `run` starts the gateway in this process on a loopback port (the config
//! from `--config`, the eval file's `config:`, `./keel.toml`, else the
//! built-in default) — or talks to a running one with `--gateway URL` —
//! and sends every case through the same HTTP front doors production
//! uses. Function variants that change a prompt, the model or sampling
//! parameters are registered in the in-process gateway as copies of the
//! function named `FUNCTION@VARIANT`, so they run the function's schema,
//! rules, guardrails, re-asks and fallbacks unchanged.
//!
//! Exit codes: 0 passed; 1 a pass criterion or the regression gate failed;
//! 2 the eval could not run (a bad file, an unknown function or model, an
//! unreachable gateway).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use keel_config::{Cassette, CassetteMode, Config, Prompt};
use keel_eval::results::{self, Results};
use keel_eval::run::{self, Options, Target};
use keel_eval::spec::{Call, Eval, Variant};
use keel_eval::{gate, report};
use tokio::net::TcpListener;

use crate::capture;

#[derive(Debug, Subcommand)]
pub enum EvalCommand {
    /// Run an eval file: every case through every variant, scored,
    /// summarised, gated.
    Run(RunArgs),
    /// Compare two results files with the regression gate (exit 1 on a
    /// significant regression).
    Compare(CompareArgs),
    /// Turn logged requests into dataset cases (JSON lines).
    Capture(capture::Args),
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The eval file (.yaml, .yml or .toml).
    file: PathBuf,
    /// keel config for the in-process gateway (overrides the eval file's `config:`).
    #[arg(long, short, conflicts_with = "gateway")]
    config: Option<PathBuf>,
    /// Run against a running keel instead of one started in process.
    #[arg(long)]
    gateway: Option<String>,
    /// A keel virtual key, when the gateway requires one.
    #[arg(long, env = "KEEL_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// Write the results (JSON, format keel-eval/1) here.
    #[arg(long, short)]
    out: Option<PathBuf>,
    /// Write a JUnit XML report here.
    #[arg(long)]
    junit: Option<PathBuf>,
    /// Write the self-contained HTML report here.
    #[arg(long)]
    html: Option<PathBuf>,
    /// A previous results file: fail when this run is significantly worse.
    #[arg(long)]
    baseline: Option<PathBuf>,
    /// Cases in flight at once (default: the file's `run.concurrency`, else 4).
    #[arg(long)]
    concurrency: Option<usize>,
    /// Time limit per answer (default: the file's `run.timeout`, else 60s).
    #[arg(long, value_parser = humantime::parse_duration)]
    timeout: Option<Duration>,
    /// Also run rephrased inputs and report how consistent answers are.
    #[arg(long)]
    perturb: bool,
    /// Record every upstream answer to this file (in-process only).
    #[arg(long, conflicts_with_all = ["replay", "gateway"])]
    record: Option<PathBuf>,
    /// Answer only from this recorded file: no upstream call, no cost (in-process only).
    #[arg(long, conflicts_with = "gateway")]
    replay: Option<PathBuf>,
    /// Run only these variants (repeatable).
    #[arg(long = "variant")]
    variants: Vec<String>,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
}

#[derive(Debug, Args)]
pub struct CompareArgs {
    baseline: PathBuf,
    candidate: PathBuf,
    /// Significance level of the tests.
    #[arg(long, default_value_t = 0.05)]
    alpha: f64,
    /// Fail when the candidate's p95 latency is more than this ratio above
    /// the baseline's (0.2 = 20 %).
    #[arg(long)]
    max_latency_increase: Option<f64>,
    /// Fail when the candidate's total cost is more than this ratio above.
    #[arg(long)]
    max_cost_increase: Option<f64>,
    /// Print the verdicts as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(command: EvalCommand) -> anyhow::Result<ExitCode> {
    let rt = crate::cli::runtime()?;
    match command {
        EvalCommand::Run(args) => rt.block_on(run_eval(args)),
        EvalCommand::Compare(args) => compare(&args),
        EvalCommand::Capture(args) => rt.block_on(capture::run(&args)).map(|()| ExitCode::SUCCESS),
    }
}

/// A failure before any case ran: exit code 2.
fn unusable(e: impl std::fmt::Display) -> anyhow::Result<ExitCode> {
    eprintln!("keel eval: {e}");
    Ok(ExitCode::from(2))
}

async fn run_eval(args: RunArgs) -> anyhow::Result<ExitCode> {
    let eval = match Eval::load(&args.file) {
        Ok(e) => e,
        Err(e) => return unusable(e),
    };
    let variants: Vec<&Variant> = eval
        .variants
        .iter()
        .filter(|v| args.variants.is_empty() || args.variants.contains(&v.name))
        .collect();
    if let Some(unknown) = args
        .variants
        .iter()
        .find(|n| !eval.variants.iter().any(|v| &&v.name == n))
    {
        return unusable(format!("no variant is named `{unknown}`"));
    }
    let baseline = match &args.baseline {
        Some(path) => match read_results(path) {
            Ok(r) => Some(r),
            Err(e) => return unusable(e),
        },
        None => None,
    };
    let cassette = match (&args.record, &args.replay) {
        (Some(p), _) => Some((p.clone(), CassetteMode::Record)),
        (None, Some(p)) => Some((p.clone(), CassetteMode::Replay)),
        _ => None,
    };
    let timeout = args.timeout.unwrap_or(eval.run.timeout);
    if timeout.is_zero() {
        return unusable("--timeout must be above 0");
    }
    let mut options = Options {
        concurrency: args.concurrency.unwrap_or(eval.run.concurrency).max(1),
        timeout,
        perturb: args.perturb,
        progress: !args.quiet,
        cassette: None,
    };
    let label = args.baseline.as_ref().map(|p| p.display().to_string());
    let baseline = baseline.as_ref().zip(label.as_deref());

    let results = match &args.gateway {
        Some(url) => {
            if let Some(v) = variants
                .iter()
                .find(|v| matches!(&v.call, Call::Function(f) if f.overrides()))
            {
                return unusable(format!(
                    "variant `{}` changes its function's prompt, model or parameters: that needs the in-process gateway (drop --gateway), or configure the change as its own function on the gateway",
                    v.name
                ));
            }
            let target = Target {
                base_url: url.trim_end_matches('/').to_owned(),
                api_key: args.api_key.clone(),
                label: url.clone(),
            };
            if let Err(e) = reachable(&target.base_url).await {
                return unusable(e);
            }
            run::run(&eval, &variants, target, &options, baseline).await
        }
        None => {
            let config_path = args.config.clone().or_else(|| eval.config.clone());
            let config = match in_process_config(config_path.as_deref(), &eval, &variants, cassette)
            {
                Ok(c) => c,
                Err(e) => return unusable(format!("{e:#}")),
            };
            // Named from the config the gateway runs: its own `[cache] file`
            // replays too.
            options.cassette = config.cassette.as_ref().map(|c| {
                let mode = match c.mode {
                    CassetteMode::Record => "record",
                    CassetteMode::Replay => "replay",
                };
                format!("{mode} {}", c.path.display())
            });
            let gateway = match keel_server::Gateway::open(config).await {
                Ok(g) => g,
                Err(e) => return unusable(format!("cannot start the in-process gateway: {e}")),
            };
            let listener = match TcpListener::bind("127.0.0.1:0").await {
                Ok(l) => l,
                Err(e) => return unusable(format!("cannot listen on 127.0.0.1: {e}")),
            };
            let addr = listener.local_addr()?;
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            let server = tokio::spawn(keel_server::serve(gateway, listener, async {
                let _ = stopped.await;
            }));
            let target = Target {
                base_url: format!("http://{addr}"),
                api_key: args.api_key.clone(),
                label: "in-process".to_owned(),
            };
            let results = run::run(&eval, &variants, target, &options, baseline).await;
            let _ = stop.send(());
            // Graceful: the request log is flushed before the process ends.
            // The results are kept whatever happens to it.
            match server.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "the in-process gateway stopped badly"),
                Err(e) => tracing::warn!(error = %e, "the in-process gateway failed"),
            }
            results
        }
    };
    print!("{}", report::table(&results));
    if let Err(e) = write_reports(&args, &results) {
        return unusable(format!("{e:#}"));
    }
    Ok(if results.passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn write_reports(args: &RunArgs, results: &Results) -> anyhow::Result<()> {
    let write = |path: &Option<PathBuf>, text: String| -> anyhow::Result<()> {
        if let Some(path) = path {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("cannot create {}", dir.display()))?;
            }
            std::fs::write(path, text)
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        Ok(())
    };
    write(&args.out, serde_json::to_string_pretty(results)? + "\n")?;
    write(&args.junit, report::junit(results))?;
    write(&args.html, report::html(results))?;
    Ok(())
}

/// The gateway answers its health check.
async fn reachable(base_url: &str) -> Result<(), String> {
    let url = format!("{base_url}/healthz");
    let resp = reqwest::Client::new()
        .get(&url)
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .map_err(|e| format!("cannot reach the gateway at {base_url}: {e}"))?;
    if resp.status().is_success() {
        Ok(())
    } else {
        Err(format!("{url} answered {}", resp.status()))
    }
}

/// The in-process gateway's config: the record/replay file, and a copy of
/// each function a variant changes.
fn in_process_config(
    path: Option<&Path>,
    eval: &Eval,
    variants: &[&Variant],
    cassette: Option<(PathBuf, CassetteMode)>,
) -> anyhow::Result<Config> {
    let (mut config, _warnings, source) = match crate::cli::load(path) {
        Ok(x) => x,
        Err(e) => bail!("invalid config:\n{e}"),
    };
    if let Some((path, mode)) = cassette {
        config.cassette = Some(Cassette { path, mode });
    }
    let model = |alias: &str, what: &str| -> anyhow::Result<()> {
        if config.models.contains_key(alias) {
            Ok(())
        } else {
            bail!("{what} names model `{alias}`, which {source} does not configure")
        }
    };
    for spec in &eval.scorers {
        if let keel_eval::spec::ScorerKind::Judge(j) = &spec.kind {
            model(&j.model, &format!("scorer `{}`", spec.name))?;
        }
    }
    if let Some(m) = &eval.perturb.paraphrase_model {
        model(m, "perturb.paraphrase_model")?;
    }
    let mut derived = Vec::new();
    for v in variants {
        let here = format!("variant `{}`", v.name);
        match &v.call {
            Call::Chat(chat) => model(&chat.model, &here)?,
            Call::Function(f) => {
                let Some(base) = config.functions.get(&f.function) else {
                    bail!(
                        "{here} calls function `{}`, which {source} does not configure",
                        f.function
                    );
                };
                if !f.overrides() {
                    continue;
                }
                // Registered under `FUNCTION@VARIANT`; its own name stays the
                // function's, so what goes upstream (the schema's name) is
                // what production sends.
                let mut copy = base.clone();
                if let Some(version) = &f.version {
                    copy.version.clone_from(version);
                }
                if let Some((path, source)) = &f.system {
                    copy.system = Some(Prompt {
                        path: path.clone(),
                        source: source.clone(),
                    });
                }
                if let Some((path, source)) = &f.user {
                    copy.user = Prompt {
                        path: path.clone(),
                        source: source.clone(),
                    };
                }
                if let Some(m) = &f.model {
                    model(m, &here)?;
                    copy.model.clone_from(m);
                }
                copy.temperature = f.params.temperature.or(copy.temperature);
                copy.top_p = f.params.top_p.or(copy.top_p);
                copy.max_tokens = f.params.max_tokens.or(copy.max_tokens);
                derived.push((run::function_route(v).unwrap_or_default(), copy));
            }
        }
    }
    for (route, f) in derived {
        config.functions.insert(route, f);
    }
    Ok(config)
}

fn read_results(path: &Path) -> anyhow::Result<Results> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    Results::from_json(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

fn compare(args: &CompareArgs) -> anyhow::Result<ExitCode> {
    let (baseline, candidate) = match (read_results(&args.baseline), read_results(&args.candidate))
    {
        (Ok(b), Ok(c)) => (b, c),
        (Err(e), _) | (_, Err(e)) => return unusable(format!("{e:#}")),
    };
    if !(args.alpha > 0.0 && args.alpha < 1.0) {
        return unusable("--alpha must be between 0 and 1");
    }
    let cfg = gate::GateConfig {
        alpha: args.alpha,
        max_latency_increase: args.max_latency_increase,
        max_cost_increase: args.max_cost_increase,
        ..gate::GateConfig::default()
    };
    let label = args.baseline.display().to_string();
    let comparisons = match results::compare_runs(&baseline, &candidate, &label, &cfg) {
        Ok(c) => c,
        Err(e) => return unusable(e),
    };
    let failed = comparisons.iter().any(|c| c.verdict.failed);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&comparisons)?);
    } else {
        print!("{}", report::comparisons(&comparisons));
        println!("{}", if failed { "FAILED" } else { "PASSED" });
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
