//! `keel-bench`: keel's overhead measured side by side in one run, against
//! a direct call to the same upstream and against a peer gateway (LiteLLM).
//! Figures are ratios taken on one machine in one run; nothing here is a
//! test, nothing asserts a number.
//!
//! `scripts/bench` is the documented entry point (it builds keel in release
//! mode, installs nginx and the peer's venv if missing, then runs this).

mod load;
mod procstat;
mod report;
mod servers;
mod upstream;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use clap::Parser;
use serde_json::json;

use crate::load::Shot;
use crate::report::{Report, Row};
use crate::servers::Server;

#[derive(Debug, Parser)]
#[command(about = "keel's benchmark harness (loopback only, bounded in time)")]
struct Args {
    /// The keel binary to measure (a release build).
    #[arg(long, default_value = "target/release/keel")]
    keel: PathBuf,
    /// Seconds per load point.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Skip the peer gateway (its venv is not set up, or to save time).
    #[arg(long)]
    no_peer: bool,
    /// Where the report (markdown + JSON) and scratch files go.
    #[arg(long, default_value = "target/bench")]
    out: PathBuf,
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Json,
    Stream,
    Flaky,
}

#[derive(Clone, Copy)]
enum Load {
    Closed(usize),
    Open(u32),
}

impl Load {
    fn label(self) -> String {
        match self {
            Load::Closed(c) => format!("c={c}"),
            Load::Open(r) => format!("{r}/s"),
        }
    }
}

/// Where a target sends each kind of request.
struct Target<'a> {
    name: &'static str,
    server: Option<&'a Server>,
    url: Box<dyn Fn(Kind) -> String + 'a>,
    bearer: Option<&'static str>,
}

impl Target<'_> {
    fn shot(&self, kind: Kind) -> anyhow::Result<Shot> {
        let model = match kind {
            Kind::Json => "bench",
            Kind::Stream => "bench-stream",
            Kind::Flaky => "bench-flaky",
        };
        let mut body = json!({"model": model, "max_tokens": 16,
            "messages": [{"role": "user", "content": "Say hello"}]});
        if kind == Kind::Stream {
            body["stream"] = json!(true);
        }
        Ok(Shot {
            url: (self.url)(kind).parse().context("target url")?,
            body: Bytes::from(serde_json::to_vec(&body)?),
            bearer: self.bearer.map(str::to_owned),
        })
    }
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_default();
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    format!("{cores} cores ({cpu}); load generator, upstreams and gateways share them")
}

/// The load points, in the order they run.
fn points() -> Vec<(&'static str, Kind, Load)> {
    let mut points = Vec::new();
    for c in [1, 8, 64, 256] {
        points.push((
            "Non-streamed chat, closed loop",
            Kind::Json,
            Load::Closed(c),
        ));
    }
    for rate in [500, 2000, 5000] {
        points.push(("Non-streamed chat, open loop", Kind::Json, Load::Open(rate)));
    }
    for c in [1, 64, 256] {
        points.push((
            "Streamed chat (20 tokens, 2 ms apart upstream)",
            Kind::Stream,
            Load::Closed(c),
        ));
    }
    points.push((
        "Fault: upstream fails 20 % with 500, fallback target configured",
        Kind::Flaky,
        Load::Closed(8),
    ));
    points
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let repo = std::env::current_dir()?;
    std::fs::create_dir_all(&args.out)?;
    let scratch = std::fs::canonicalize(&args.out)?;
    let per_point = Duration::from_secs(args.seconds);

    let nginx = servers::nginx(&scratch.join("nginx"))?;
    let upstream: SocketAddr = upstream::spawn().await?;
    let keel = servers::keel(
        &args.keel,
        &scratch.join("keel"),
        nginx.addr,
        upstream,
        false,
    )?;
    let logged = servers::keel(
        &args.keel,
        &scratch.join("keel-sqlite"),
        nginx.addr,
        upstream,
        true,
    )?;
    let peer = if args.no_peer {
        None
    } else {
        Some(servers::litellm(&repo, nginx.addr, upstream)?)
    };

    let (n, u) = (nginx.addr, upstream);
    let mut targets = vec![
        Target {
            name: "direct",
            server: None,
            url: Box::new(move |k| match k {
                Kind::Json => format!("http://{n}/v1/chat/completions"),
                Kind::Stream => format!("http://{u}/sse/v1/chat/completions"),
                Kind::Flaky => format!("http://{u}/flaky/v1/chat/completions"),
            }),
            bearer: None,
        },
        Target {
            name: "keel",
            server: Some(&keel),
            url: Box::new(|_| format!("http://{}/v1/chat/completions", keel.addr)),
            bearer: None,
        },
        Target {
            name: "keel+sqlite",
            server: Some(&logged),
            url: Box::new(|_| format!("http://{}/v1/chat/completions", logged.addr)),
            bearer: None,
        },
    ];
    if let Some(p) = &peer {
        targets.push(Target {
            name: "litellm",
            server: Some(p),
            url: Box::new(move |_| format!("http://{}/v1/chat/completions", p.addr)),
            bearer: Some("sk-bench"),
        });
    }

    let mut report = Report {
        machine: machine(),
        ..Report::default()
    };
    for t in &targets {
        if let Some(s) = t.server {
            report
                .idle
                .push((t.name.to_owned(), procstat::read(s.pid())));
        }
    }
    // Warm every target (connections, lazy imports) before measuring.
    for t in &targets {
        load::closed_loop(&t.shot(Kind::Json)?, false, 8, Duration::from_secs(2)).await?;
    }

    for (scenario, kind, load) in points() {
        for t in &targets {
            let before = t.server.map(|s| procstat::read(s.pid()));
            let shot = t.shot(kind)?;
            let stats = match load {
                Load::Closed(c) => {
                    load::closed_loop(&shot, kind == Kind::Stream, c, per_point).await?
                }
                Load::Open(rate) => load::open_loop(&shot, rate, per_point, 4096).await?,
            };
            let usage = match (t.server, before) {
                (Some(s), Some(b)) => {
                    let mut after = procstat::read(s.pid());
                    after.cpu_s -= b.cpu_s;
                    after
                }
                _ => procstat::Usage::default(),
            };
            let row = Row {
                scenario: scenario.to_owned(),
                target: t.name.to_owned(),
                load: load.label(),
                result: stats.summary(),
                usage,
            };
            eprintln!(
                "{scenario} | {} | {} | {:.0} req/s | errors {}",
                row.target, row.load, row.result.rps, row.result.errors
            );
            report.rows.push(row);
        }
    }

    let md = report.markdown();
    std::fs::write(scratch.join("report.md"), &md)?;
    std::fs::write(
        scratch.join("report.json"),
        serde_json::to_vec_pretty(&report)?,
    )?;
    println!("{md}");
    eprintln!("written: {}/report.{{md,json}}", scratch.display());
    Ok(())
}
