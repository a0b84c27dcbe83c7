//! `keel logs`, `keel show` and `keel stats`: the request log, read back
//! for an operator. Each prints a readable table (or story) by default and
//! JSON with `--json`. The store is the one the config names (`[log]`), or
//! `--db` (a SQLite path or a `postgres://` URL).

use std::collections::HashSet;
use std::io::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use keel_config::StoreKind;
use keel_store::{
    Filter, GroupBy, Percentiles, RequestRecord, Stats, StatusFilter, Store, StoreConfig,
};
use secrecy::ExposeSecret;

/// Where the records are and which of them to read.
#[derive(Debug, clap::Args)]
pub struct Source {
    /// Config file whose `[log]` names the store. Default: ./keel.toml if
    /// present, else the built-in default.
    #[arg(long, short)]
    pub config: Option<std::path::PathBuf>,
    /// The store itself: a SQLite file or a postgres:// URL (overrides the config).
    #[arg(long, env = "KEEL_DB", hide_env_values = true)]
    pub db: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct Select {
    /// Only requests for this model alias.
    #[arg(long)]
    pub model: Option<String>,
    /// Only requests served by this target (`provider/model`).
    #[arg(long)]
    pub target: Option<String>,
    /// Only requests made with this virtual key id.
    #[arg(long)]
    pub key: Option<String>,
    /// `2xx`, `4xx`, `5xx`, `error` (any 4xx/5xx) or an exact status.
    #[arg(long, value_parser = parse_status)]
    pub status: Option<StatusFilter>,
    /// From this long ago (`15m`, `2h`, `7d`) or this time (RFC 3339).
    #[arg(long, value_parser = parse_time)]
    pub since: Option<i64>,
    /// Until this long ago or this time.
    #[arg(long, value_parser = parse_time)]
    pub until: Option<i64>,
    /// Text in the id, model, target, error or captured bodies.
    #[arg(long)]
    pub grep: Option<String>,
}

impl Select {
    /// Without a window, the last day.
    pub fn default_window(&mut self) {
        if self.since.is_none() && self.until.is_none() {
            self.since = Some(ago(DAY));
        }
    }

    pub(crate) fn filter(&self, limit: usize) -> Filter {
        Filter {
            since_ms: self.since,
            until_ms: self.until,
            model: self.model.clone(),
            key_id: self.key.clone(),
            target: self.target.clone(),
            status: self.status,
            text: self.grep.clone(),
            limit,
            ..Filter::default()
        }
    }
}

/// `--db` / `KEEL_DB`: a `postgres://` URL, else a SQLite path. "off"
/// turns the request log off.
pub fn store_kind(db: &str) -> StoreKind {
    if db.starts_with("postgres://") || db.starts_with("postgresql://") {
        StoreKind::Postgres(db.to_owned().into())
    } else if db == "off" {
        StoreKind::Off
    } else {
        StoreKind::Sqlite(db.into())
    }
}

pub async fn open(
    source: &Source,
    load: impl Fn() -> anyhow::Result<keel_config::Config>,
) -> anyhow::Result<Store> {
    let kind = match &source.db {
        Some(db) => store_kind(db),
        None => load()?.log.store,
    };
    let config = match kind {
        StoreKind::Off => bail!("the request log is off (log.store = \"off\"); pass --db"),
        // Reading must not create an empty log somewhere unexpected.
        StoreKind::Sqlite(path) if !path.is_file() => {
            bail!(
                "no request log at {} (has keel served any request with it?)",
                path.display()
            )
        }
        StoreKind::Sqlite(path) => StoreConfig::Sqlite { path },
        StoreKind::Postgres(url) => StoreConfig::Postgres {
            url: url.expose_secret().to_owned(),
        },
    };
    Store::open(&config)
        .await
        .context("cannot open the request log")
}

/// `keel logs`: newest first; `--follow` prints new ones as they land.
pub async fn logs(
    store: &Store,
    select: &Select,
    limit: usize,
    follow: bool,
    json: bool,
) -> anyhow::Result<()> {
    let mut rows = store.list(&select.filter(limit)).await?;
    rows.reverse(); // oldest first on screen, the newest last
    let mut out = std::io::stdout().lock();
    if !json {
        writeln!(out, "{}", row_header())?;
    }
    print_rows(&mut out, &rows, json)?;
    drop(out);
    if !follow {
        return Ok(());
    }
    // A record lands when its request ends, so a slow request shows up after
    // faster, newer ones: each poll looks back FOLLOW_LOOKBACK by arrival
    // time and skips what was already printed.
    let mut seen: HashSet<(i64, String)> = rows.into_iter().map(|r| (r.time_ms, r.id)).collect();
    loop {
        tokio::time::sleep(FOLLOW_EVERY).await;
        let horizon = unix_ms(SystemTime::now()) - millis(FOLLOW_LOOKBACK);
        let mut filter = select.filter(FOLLOW_MAX);
        filter.since_ms = Some(select.since.map_or(horizon, |s| s.max(horizon)));
        let mut rows = store.list(&filter).await?;
        rows.reverse();
        rows.retain(|r| seen.insert((r.time_ms, r.id.clone())));
        print_rows(&mut std::io::stdout().lock(), &rows, json)?;
        seen.retain(|(t, _)| *t >= horizon);
    }
}

const FOLLOW_EVERY: Duration = Duration::from_secs(1);
/// Longer than any request keel lets run with the default timeouts.
const FOLLOW_LOOKBACK: Duration = Duration::from_secs(600);
/// At most this many new records per poll.
const FOLLOW_MAX: usize = 10_000;

fn print_rows(out: &mut impl Write, rows: &[RequestRecord], json: bool) -> anyhow::Result<()> {
    for r in rows {
        if json {
            writeln!(out, "{}", serde_json::to_string(r)?)?;
        } else {
            writeln!(out, "{}", row(r))?;
        }
    }
    out.flush()?;
    Ok(())
}

fn row_header() -> String {
    format!(
        "{:<24} {:<36} {:<10} {:<16} {:<24} {:>6} {:>10} {:>13}  {}",
        "TIME", "REQUEST ID", "OP", "MODEL", "TARGET", "STATUS", "LATENCY", "TOKENS", "ERROR"
    )
}

fn row(r: &RequestRecord) -> String {
    format!(
        "{:<24} {:<36} {:<10} {:<16} {:<24} {:>6} {:>10} {:>13}  {}",
        time(r.time_ms),
        r.id,
        r.op,
        dash(&r.model),
        r.target.as_deref().unwrap_or("-"),
        r.status,
        format!("{:.1} ms", r.latency_ms),
        format!("{}→{}", r.input_tokens, r.output_tokens),
        r.error_kind.as_deref().unwrap_or(""),
    )
}

/// `keel show ID`: the whole story of one request.
pub async fn show(store: &Store, id: &str, json: bool) -> anyhow::Result<bool> {
    let Some(r) = store.get(id).await? else {
        eprintln!("keel: no request `{id}` in the request log");
        return Ok(false);
    };
    let mut out = std::io::stdout().lock();
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(&r)?)?;
        return Ok(true);
    }
    writeln!(out, "request   {}", r.id)?;
    writeln!(out, "trace     {}", r.trace_id)?;
    writeln!(
        out,
        "time      {}   front {}   op {}{}   model {}   stream {}",
        time(r.time_ms),
        r.front,
        r.op,
        r.route
            .as_deref()
            .map(|n| format!(
                " {n}{}",
                r.route_version
                    .as_deref()
                    .map(|v| format!(" ({v})"))
                    .unwrap_or_default()
            ))
            .unwrap_or_default(),
        dash(&r.model),
        yes(r.stream)
    )?;
    if r.session.is_some() || r.key_id.is_some() || !r.tags.is_empty() {
        let tags: Vec<String> = r.tags.iter().map(|(k, v)| format!("{k}={v}")).collect();
        writeln!(
            out,
            "who       session {}   key {}   tags {}",
            r.session.as_deref().unwrap_or("-"),
            r.key_id.as_deref().unwrap_or("-"),
            if tags.is_empty() {
                "-".to_owned()
            } else {
                tags.join(",")
            }
        )?;
    }
    match (&r.error_kind, &r.error) {
        (Some(kind), message) => writeln!(
            out,
            "status    {} {kind}: {}",
            r.status,
            message.as_deref().unwrap_or("")
        )?,
        (None, _) => writeln!(out, "status    {} ok", r.status)?,
    }
    writeln!(
        out,
        "latency   {:.1} ms   (upstream {:.1}, keel overhead {:.2}{})",
        r.latency_ms,
        r.upstream_ms,
        r.overhead_ms,
        r.ttft_ms
            .map(|t| format!(", first byte {t:.1}"))
            .unwrap_or_default()
    )?;
    writeln!(
        out,
        "tokens    in {}   out {}   cached {}   cost {}",
        r.input_tokens,
        r.output_tokens,
        r.cached_tokens,
        r.cost_usd.map_or("-".to_owned(), |c| format!("${c:.6}"))
    )?;
    writeln!(
        out,
        "served    {}   fallback {}   cache hit {}   re-asks {}{}",
        r.target.as_deref().unwrap_or("-"),
        yes(r.fallback),
        yes(r.cache_hit),
        r.reasks,
        r.degraded
            .as_deref()
            .map(|d| format!("   degraded {d}"))
            .unwrap_or_default()
    )?;
    if !r.attempts.is_empty() {
        writeln!(out, "attempts")?;
        for (i, a) in r.attempts.iter().enumerate() {
            writeln!(
                out,
                "  {:>2}  at +{:<9} {:<28} {:<14} {:>10}{}{}",
                i + 1,
                format!("{:.1} ms", a.start_ms),
                format!("{}/{}", a.provider, a.model),
                a.outcome,
                format!("{:.1} ms", a.latency_ms),
                a.status.map(|s| format!("   HTTP {s}")).unwrap_or_default(),
                a.error
                    .as_deref()
                    .map(|e| format!("   {e}"))
                    .unwrap_or_default(),
            )?;
        }
    }
    if !r.verdicts.is_empty() {
        writeln!(out, "verdicts")?;
        for v in &r.verdicts {
            writeln!(
                out,
                "  {:<12} {:<24} {:<9} {}",
                v.stage,
                v.name,
                v.outcome,
                v.detail.as_deref().unwrap_or("")
            )?;
        }
    }
    if !r.feedback.is_empty() {
        writeln!(out, "feedback")?;
        for f in &r.feedback {
            writeln!(
                out,
                "  {}   score {}   label {}   {}",
                time(f.time_ms),
                f.score.map_or("-".to_owned(), |s| s.to_string()),
                f.label.as_deref().unwrap_or("-"),
                f.comment.as_deref().unwrap_or("")
            )?;
        }
    }
    for (name, body) in [("input", &r.input), ("output", &r.output)] {
        match body {
            Some(b) => {
                writeln!(out, "{name} ({})", r.capture.name())?;
                for line in b.lines() {
                    writeln!(out, "  {line}")?;
                }
            }
            None => writeln!(out, "{name}     not captured ({})", r.capture.name())?,
        }
    }
    Ok(true)
}

/// `keel stats`: per group over the window.
pub async fn stats(store: &Store, select: &Select, by: GroupBy, json: bool) -> anyhow::Result<()> {
    let rows = store.stats(&select.filter(usize::MAX), by).await?;
    let mut out = std::io::stdout().lock();
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(&rows)?)?;
        return Ok(());
    }
    writeln!(
        out,
        "{:<24} {:>7} {:>6}  {:>22}  {:>22}  {:>17}  {:>9} {:>6} {:>6}  ERRORS",
        "GROUP",
        "COUNT",
        "ERR%",
        "LATENCY p50/p95/p99",
        "TTFT p50/p95/p99",
        "TOKENS in/out",
        "COST $",
        "CACHE%",
        "FALLB%",
    )?;
    for s in &rows {
        writeln!(out, "{}", stats_row(s))?;
    }
    if rows.is_empty() {
        writeln!(out, "(no requests in the window)")?;
    }
    Ok(())
}

fn stats_row(s: &Stats) -> String {
    let errors: Vec<String> = s
        .errors_by_kind
        .iter()
        .map(|(k, n)| format!("{k}={n}"))
        .collect();
    format!(
        "{:<24} {:>7} {:>6.1}  {:>22}  {:>22}  {:>17}  {:>9.4} {:>6.1} {:>6.1}  {}",
        dash(&s.group),
        s.count,
        s.error_rate * 100.0,
        percentiles(Some(&s.latency_ms)),
        percentiles(s.ttft_ms.as_ref()),
        format!("{}/{}", s.input_tokens, s.output_tokens),
        s.cost_usd,
        s.cache_hit_rate * 100.0,
        s.fallback_rate * 100.0,
        errors.join(" ")
    )
}

fn percentiles(p: Option<&Percentiles>) -> String {
    p.map_or("-".to_owned(), |p| {
        format!("{:.0}/{:.0}/{:.0} ms", p.p50, p.p95, p.p99)
    })
}

pub fn parse_group(s: &str) -> Result<GroupBy, String> {
    match s {
        "model" => Ok(GroupBy::Model),
        "target" => Ok(GroupBy::Target),
        "key" => Ok(GroupBy::Key),
        "none" => Ok(GroupBy::None),
        _ => Err("expected model, target, key or none".to_owned()),
    }
}

fn parse_status(s: &str) -> Result<StatusFilter, String> {
    match s {
        "2xx" => Ok(StatusFilter::Class(2)),
        "4xx" => Ok(StatusFilter::Class(4)),
        "5xx" => Ok(StatusFilter::Class(5)),
        "error" | "errors" => Ok(StatusFilter::Errors),
        n => n
            .parse::<u16>()
            .ok()
            .filter(|n| (100..=599).contains(n))
            .map(StatusFilter::Exact)
            .ok_or_else(|| "expected 2xx, 4xx, 5xx, error or a status such as 429".to_owned()),
    }
}

/// `15m` (that long ago) or an RFC 3339 time, as Unix milliseconds.
fn parse_time(s: &str) -> Result<i64, String> {
    let at = match humantime::parse_duration(s) {
        Ok(ago) => SystemTime::now()
            .checked_sub(ago)
            .ok_or_else(|| format!("`{s}` is too long ago"))?,
        Err(_) => humantime::parse_rfc3339_weak(s).map_err(|_| {
            format!("`{s}` is neither a duration (15m, 2h, 7d) nor an RFC 3339 time")
        })?,
    };
    Ok(unix_ms(at))
}

const DAY: Duration = Duration::from_secs(86_400);

/// Unix milliseconds `d` ago.
fn ago(d: Duration) -> i64 {
    unix_ms(SystemTime::now().checked_sub(d).unwrap_or(UNIX_EPOCH))
}

fn unix_ms(t: SystemTime) -> i64 {
    millis(t.duration_since(UNIX_EPOCH).unwrap_or_default())
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

pub(crate) fn time(ms: i64) -> String {
    let t = UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0));
    humantime::format_rfc3339_millis(t).to_string()
}

fn dash(s: &str) -> &str {
    if s.is_empty() { "-" } else { s }
}

fn yes(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}
