//! The Prometheus registry behind `GET /metrics`.
//!
//! Request series are counted from each request's record as it is emitted
//! ([`Metrics::observe`]); the live state (breakers, admission, the log
//! queue) is read at scrape time ([`Live`]). Labels hold only names from
//! the config (model aliases, provider names, function and workflow names)
//! and fixed vocabularies (front door, operation, status class, error kind,
//! attempt outcome); anything else a client sends becomes `other`, so the
//! number of series stays bounded whatever the traffic.
//!
//! Built on the `prometheus` crate rather than `metrics` with its exporter:
//! one registry per gateway (no process-global recorder, so two gateways in
//! one process keep their own series) and float counters for cost.

use std::collections::HashSet;

use keel_store::RequestRecord;
use prometheus::{
    CounterVec, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec,
    Opts, Registry, TextEncoder,
};

/// Latency buckets, seconds: from a cache hit to a long generation.
const LATENCY: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];
/// Gateway overhead buckets, seconds: it should sit in the first few.
const OVERHEAD: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
];

/// The label a name gets when it is not one the config knows.
const OTHER: &str = "other";

/// Names allowed in labels, from the config.
#[derive(Debug, Default, Clone)]
pub struct Names {
    pub models: HashSet<String>,
    pub providers: HashSet<String>,
    /// Functions and workflows.
    pub routes: HashSet<String>,
}

/// The live state read at scrape time.
#[derive(Debug, Default)]
pub struct Live {
    /// Per provider: breaker state (0 closed, 1 half-open, 2 open) and times opened.
    pub breakers: Vec<(String, i64, u64)>,
    /// Per provider with a `max_in_flight` cap: calls in flight.
    pub target_in_flight: Vec<(String, i64)>,
    pub in_flight: i64,
    pub queued: i64,
    pub log: Option<LogQueue>,
}

/// The request log's writer, as seen from the request path.
#[derive(Debug, Default)]
pub struct LogQueue {
    pub depth: i64,
    pub dropped: u64,
    pub written: u64,
    pub failures: u64,
}

pub struct Metrics {
    registry: Registry,
    names: Names,
    requests: IntCounterVec,
    errors: IntCounterVec,
    duration: HistogramVec,
    ttft: HistogramVec,
    overhead: HistogramVec,
    tokens: IntCounterVec,
    cost: CounterVec,
    attempts: IntCounterVec,
    attempt_duration: HistogramVec,
    retries: IntCounterVec,
    fallbacks: IntCounterVec,
    reasks: IntCounterVec,
    shed: IntCounter,
    cache_hits: IntCounterVec,
    verdicts: IntCounterVec,
    breaker_state: IntGaugeVec,
    breaker_opened: IntCounterVec,
    target_in_flight: IntGaugeVec,
    in_flight: IntGauge,
    queued: IntGauge,
    log_depth: IntGauge,
    log_dropped: IntCounter,
    log_written: IntCounter,
    log_failures: IntCounter,
    budget_alerts: IntCounterVec,
    budget_refused: IntCounterVec,
    shared_errors: IntCounterVec,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

/// Registering a fixed, well-formed family cannot fail but for a name
/// registered twice, which the constructor below never does.
type Built<T> = Result<T, prometheus::Error>;

impl Metrics {
    pub fn new(names: Names) -> Result<Metrics, prometheus::Error> {
        let registry = Registry::new();
        let r = &registry;
        Ok(Metrics {
            requests: counter(
                r,
                "keel_requests_total",
                "Requests by front door, operation, model alias and status class.",
                &["front", "op", "model", "status"],
            )?,
            errors: counter(
                r,
                "keel_request_errors_total",
                "Failed requests by error kind.",
                &["op", "model", "kind"],
            )?,
            duration: histogram(
                r,
                "keel_request_duration_seconds",
                "Whole-request latency, as the client saw it.",
                &["op", "model"],
                LATENCY,
            )?,
            ttft: histogram(
                r,
                "keel_time_to_first_token_seconds",
                "Time to the first streamed byte sent to the client.",
                &["model"],
                LATENCY,
            )?,
            overhead: histogram(
                r,
                "keel_overhead_seconds",
                "Time keel added: latency minus upstream waits, queueing and back-off.",
                &["op"],
                OVERHEAD,
            )?,
            tokens: counter(
                r,
                "keel_tokens_total",
                "Tokens by model alias, serving provider and kind (input, output, cached).",
                &["model", "provider", "kind"],
            )?,
            cost: {
                let c = CounterVec::new(
                    Opts::new(
                        "keel_cost_usd_total",
                        "Spend in US dollars by model alias and serving provider.",
                    ),
                    &["model", "provider"],
                )?;
                r.register(Box::new(c.clone()))?;
                c
            },
            attempts: counter(
                r,
                "keel_attempts_total",
                "Upstream calls by provider and outcome (ok or the failure class).",
                &["provider", "outcome"],
            )?,
            attempt_duration: histogram(
                r,
                "keel_attempt_duration_seconds",
                "Upstream call latency by provider.",
                &["provider"],
                LATENCY,
            )?,
            retries: counter(
                r,
                "keel_retries_total",
                "Calls that retried the same provider after a failure.",
                &["provider"],
            )?,
            fallbacks: counter(
                r,
                "keel_fallbacks_total",
                "Requests answered by a target other than the first one tried.",
                &["model"],
            )?,
            reasks: counter(
                r,
                "keel_reasks_total",
                "Re-asks after output that failed validation.",
                &["model"],
            )?,
            shed: int_counter(
                r,
                "keel_shed_requests_total",
                "Requests shed by admission control (503 + Retry-After).",
            )?,
            cache_hits: counter(
                r,
                "keel_cache_hits_total",
                "Requests answered from the response cache.",
                &["model"],
            )?,
            verdicts: counter(
                r,
                "keel_verdicts_total",
                "Validation and guardrail outcomes by stage.",
                &["stage", "outcome"],
            )?,
            breaker_state: gauge(
                r,
                "keel_breaker_state",
                "Circuit breaker state per provider: 0 closed, 1 half-open, 2 open.",
                &["provider"],
            )?,
            breaker_opened: counter(
                r,
                "keel_breaker_opened_total",
                "Times each provider's circuit breaker opened.",
                &["provider"],
            )?,
            target_in_flight: gauge(
                r,
                "keel_target_in_flight",
                "Calls in flight to providers with a max_in_flight cap.",
                &["provider"],
            )?,
            in_flight: int_gauge(
                r,
                "keel_in_flight_requests",
                "Requests holding an admission permit.",
            )?,
            queued: int_gauge(
                r,
                "keel_queued_requests",
                "Requests waiting for an admission permit.",
            )?,
            log_depth: int_gauge(
                r,
                "keel_log_queue_depth",
                "Request records waiting to be written to the store.",
            )?,
            log_dropped: int_counter(
                r,
                "keel_log_dropped_total",
                "Request records dropped because the log queue was full.",
            )?,
            log_written: int_counter(
                r,
                "keel_log_written_total",
                "Request records written to the store.",
            )?,
            log_failures: int_counter(
                r,
                "keel_log_write_failures_total",
                "Failed writes to the store (each retried).",
            )?,
            budget_alerts: counter(
                r,
                "keel_budget_alerts_total",
                "Budget thresholds crossed, by scope kind (key, team, tag) and threshold.",
                &["scope", "threshold"],
            )?,
            budget_refused: counter(
                r,
                "keel_budget_refused_total",
                "Requests refused because a budget could not cover them, by scope kind.",
                &["scope"],
            )?,
            shared_errors: counter(
                r,
                "keel_redis_errors_total",
                "Redis calls that failed or timed out, by operation (rate_limit, reserve, settle, usage, cache, breaker).",
                &["op"],
            )?,
            registry,
            names,
        })
    }

    /// A budget's alert threshold was crossed. `scope` is `key`, `team` or `tag`.
    pub fn budget_alert(&self, scope: &str, threshold: f64) {
        self.budget_alerts
            .with_label_values(&[fixed(scope, SCOPES), &format!("{threshold}")])
            .inc();
    }

    /// A request was refused by a budget of this scope kind.
    pub fn budget_refused(&self, scope: &str) {
        self.budget_refused
            .with_label_values(&[fixed(scope, SCOPES)])
            .inc();
    }

    /// A Redis call failed; `op` is one of a fixed set.
    pub fn shared_error(&self, op: &'static str) {
        self.shared_errors.with_label_values(&[op]).inc();
    }

    /// Counts one finished request.
    pub fn observe(&self, rec: &RequestRecord) {
        let model = label(&self.names.models, &rec.model);
        let op = op_label(&rec.op);
        let front = match rec.front.as_str() {
            "openai" | "anthropic" => rec.front.as_str(),
            _ => OTHER,
        };
        let class = status_class(rec.status);
        self.requests
            .with_label_values(&[front, op, model, class])
            .inc();
        if let Some(kind) = &rec.error_kind {
            self.errors
                .with_label_values(&[op, model, error_kind(kind)])
                .inc();
            if kind == "overloaded" && rec.attempts.is_empty() {
                self.shed.inc();
            }
        }
        self.duration
            .with_label_values(&[op, model])
            .observe(rec.latency_ms / 1000.0);
        if let Some(ttft) = rec.ttft_ms {
            self.ttft.with_label_values(&[model]).observe(ttft / 1000.0);
        }
        self.overhead
            .with_label_values(&[op])
            .observe(rec.overhead_ms.max(0.0) / 1000.0);

        let provider = rec
            .target
            .as_deref()
            .and_then(|t| t.split_once('/').map(|(p, _)| p))
            .map_or(OTHER, |p| label(&self.names.providers, p));
        for (kind, n) in [
            ("input", rec.input_tokens),
            ("output", rec.output_tokens),
            ("cached", rec.cached_tokens),
        ] {
            if n > 0 {
                self.tokens
                    .with_label_values(&[model, provider, kind])
                    .inc_by(n);
            }
        }
        if let Some(cost) = rec.cost_usd.filter(|c| c.is_finite() && *c > 0.0) {
            self.cost.with_label_values(&[model, provider]).inc_by(cost);
        }

        let mut previous: Option<&str> = None;
        for a in &rec.attempts {
            let p = label(&self.names.providers, &a.provider);
            self.attempts
                .with_label_values(&[p, outcome_label(&a.outcome)])
                .inc();
            self.attempt_duration
                .with_label_values(&[p])
                .observe(a.latency_ms / 1000.0);
            if previous == Some(a.provider.as_str()) {
                self.retries.with_label_values(&[p]).inc();
            }
            previous = Some(a.provider.as_str());
        }
        if rec.fallback {
            self.fallbacks.with_label_values(&[model]).inc();
        }
        if rec.reasks > 0 {
            self.reasks
                .with_label_values(&[model])
                .inc_by(u64::from(rec.reasks));
        }
        if rec.cache_hit {
            self.cache_hits.with_label_values(&[model]).inc();
        }
        for v in &rec.verdicts {
            self.verdicts
                .with_label_values(&[fixed(&v.stage, STAGES), fixed(&v.outcome, VERDICTS)])
                .inc();
        }
    }

    /// The text exposition (format 0.0.4), with the live state as of now.
    pub fn render(&self, live: &Live) -> String {
        for (provider, state, opened) in &live.breakers {
            self.breaker_state
                .with_label_values(&[provider.as_str()])
                .set(*state);
            catch_up(
                &self.breaker_opened.with_label_values(&[provider.as_str()]),
                *opened,
            );
        }
        for (provider, n) in &live.target_in_flight {
            self.target_in_flight
                .with_label_values(&[provider.as_str()])
                .set(*n);
        }
        self.in_flight.set(live.in_flight);
        self.queued.set(live.queued);
        if let Some(log) = &live.log {
            self.log_depth.set(log.depth);
            catch_up(&self.log_dropped, log.dropped);
            catch_up(&self.log_written, log.written);
            catch_up(&self.log_failures, log.failures);
        }
        let mut out = String::new();
        // Encoding well-formed families into a String cannot fail.
        let _ = TextEncoder::new().encode_utf8(&self.registry.gather(), &mut out);
        out
    }

    /// The content type of [`Metrics::render`]'s output.
    pub fn content_type(&self) -> &'static str {
        prometheus::TEXT_FORMAT
    }
}

/// Counters read from elsewhere (the breaker, the log writer) are moved up
/// to their current total; they only ever grow.
fn catch_up(counter: &prometheus::core::GenericCounter<prometheus::core::AtomicU64>, total: u64) {
    let now = counter.get();
    if total > now {
        counter.inc_by(total - now);
    }
}

fn label<'a>(known: &HashSet<String>, name: &'a str) -> &'a str {
    if known.contains(name) { name } else { OTHER }
}

fn status_class(status: u16) -> &'static str {
    match status {
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        500..=599 => "5xx",
        _ => OTHER,
    }
}

fn op_label(op: &str) -> &'static str {
    fixed(
        op,
        &[
            "chat",
            "embeddings",
            "function",
            "workflow",
            "feedback",
            "admin",
            "other",
        ],
    )
}

const SCOPES: &[&str] = &["key", "team", "tag"];
const STAGES: &[&str] = &[
    "validation",
    "invariant",
    "input_guard",
    "output_guard",
    "input_limit",
];
const VERDICTS: &[&str] = &[
    "pass",
    "repaired",
    "fail",
    "blocked",
    "redacted",
    "rerouted",
    "flagged",
    "reasked",
    "fell_back",
];

/// Error kinds and attempt outcomes are keel's own short snake_case codes;
/// anything longer or stranger is not one of them.
fn error_kind(kind: &str) -> &str {
    code_like(kind)
}

fn outcome_label(outcome: &str) -> &str {
    code_like(outcome)
}

fn code_like(s: &str) -> &str {
    if !s.is_empty() && s.len() <= 32 && s.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
        s
    } else {
        OTHER
    }
}

fn fixed<'a>(value: &str, allowed: &[&'a str]) -> &'a str {
    allowed
        .iter()
        .find(|a| **a == value)
        .copied()
        .unwrap_or(OTHER)
}

fn counter(r: &Registry, name: &str, help: &str, labels: &[&str]) -> Built<IntCounterVec> {
    let c = IntCounterVec::new(Opts::new(name, help), labels)?;
    r.register(Box::new(c.clone()))?;
    Ok(c)
}

fn gauge(r: &Registry, name: &str, help: &str, labels: &[&str]) -> Built<IntGaugeVec> {
    let g = IntGaugeVec::new(Opts::new(name, help), labels)?;
    r.register(Box::new(g.clone()))?;
    Ok(g)
}

fn int_counter(r: &Registry, name: &str, help: &str) -> Built<IntCounter> {
    let c = IntCounter::new(name, help)?;
    r.register(Box::new(c.clone()))?;
    Ok(c)
}

fn int_gauge(r: &Registry, name: &str, help: &str) -> Built<IntGauge> {
    let g = IntGauge::new(name, help)?;
    r.register(Box::new(g.clone()))?;
    Ok(g)
}

fn histogram(
    r: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
    buckets: &[f64],
) -> Built<HistogramVec> {
    let h = HistogramVec::new(
        HistogramOpts::new(name, help).buckets(buckets.to_vec()),
        labels,
    )?;
    r.register(Box::new(h.clone()))?;
    Ok(h)
}
