//! Phase 10, record: every request leaves exactly one record, whatever its
//! outcome — emitted on completion, on error, or (through `Drop`) when the
//! client goes away mid-stream (status 499). Emitting is the one place
//! where a request becomes observable, and it never blocks or fails it:
//!
//! - one JSON log line (`target: keel::request`);
//! - the Prometheus series (`Metrics::observe`);
//! - the trace: a span per phase and per upstream attempt, built from the
//!   timings recorded here and handed to the OTLP exporter;
//! - the stored record, pushed onto the request log's bounded queue.
//!
//! Free text that could hold a secret (error messages, captured bodies,
//! tags) is scrubbed before it leaves; headers are never copied in.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::http::HeaderMap;
use bytes::Bytes;
use keel_config::Capture;
use keel_core::{Error, TraceIds};
use keel_protocol::chat::Usage;
use keel_store::{AttemptRecord, RequestRecord, Verdict, VirtualKey};
use keel_telemetry::trace::{AttrValue, SpanData, SpanKind, TraceContext, new_span_id};
use sha2::{Digest, Sha256};
use tokio::time::Instant;

use crate::attempt::Attempt;
use crate::error;
use crate::front::Front;
use crate::sinks::cut;
use crate::spend::{self, Hold};
use crate::stack::REQUEST_ID;
use crate::state::Gateway;

const SESSION_HEADER: &str = "x-keel-session";
const TAGS_HEADER: &str = "x-keel-tags";
const MAX_SESSION: usize = 128;
/// Longer than any credential the patterns mask.
const MASK_OVERLAP: usize = 512;
const MAX_TAGS: usize = 16;
const MAX_TAG_KEY: usize = 64;
const MAX_TAG_VALUE: usize = 256;

/// What the attempt and validate phases leave behind: every upstream call,
/// every check's verdict, the re-asks.
#[derive(Debug, Default)]
pub(crate) struct Trail {
    /// What validation verdicts are named for: the function, or the chat
    /// request's `response_format`.
    pub subject: String,
    pub attempts: Vec<Attempt>,
    pub verdicts: Vec<Verdict>,
    pub reasks: u32,
    /// Every validated call's usage, re-asks included: what a request that
    /// ends without a valid answer still consumed.
    pub usage: Usage,
    /// The part of `usage` that was paid for: answers replayed from the
    /// record/replay file cost nothing.
    pub paid: Usage,
    /// Asks of the validation loop answered from the record/replay file,
    /// with no upstream call (they are not in `attempts`).
    pub replayed: u32,
}

impl Trail {
    /// A validation outcome: `pass`, `repaired` (with what) or `fail` (with why).
    pub fn verdict(&mut self, name: &str, outcome: &str, detail: Option<String>) {
        self.verdicts.push(Verdict {
            stage: "validation".to_owned(),
            name: name.to_owned(),
            outcome: outcome.to_owned(),
            detail,
        });
    }
}

pub(crate) struct Record {
    gw: Gateway,
    started: Instant,
    wall: SystemTime,
    trace: TraceContext,
    span_id: [u8; 8],
    /// Filled as the request goes; completed when emitted.
    pub data: RequestRecord,
    pub trail: Trail,
    pub usage: Usage,
    queued: Duration,
    /// Finished phases: name, start, end.
    phases: Vec<(&'static str, Instant, Instant)>,
    mark: Instant,
    first_byte: Option<Instant>,
    capture: Capture,
    input: Option<Bytes>,
    output: Option<String>,
    done: bool,
    /// The caller's virtual key, once authenticated.
    pub key: Option<Arc<VirtualKey>>,
    /// The budget reservation to settle when the request ends.
    pub hold: Option<Hold>,
    /// Verdicts given after the record left the pipeline's hands (a
    /// guarded stream's output checks), merged when it is emitted.
    late: Option<Arc<Mutex<Vec<Verdict>>>>,
}

impl Record {
    pub fn start(gw: &Gateway, front: Front, op: &'static str, headers: &HeaderMap) -> Self {
        let now = Instant::now();
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let trace = header("traceparent")
            .and_then(TraceContext::from_traceparent)
            .unwrap_or_else(TraceContext::new_root);
        let sinks = &gw.inner.sinks;
        let data = RequestRecord {
            id: header(REQUEST_ID.as_str()).unwrap_or_default().to_owned(),
            trace_id: trace.trace_id_hex(),
            session: header(SESSION_HEADER).map(|s| sinks.scrub(cut(s, MAX_SESSION))),
            tags: header(TAGS_HEADER)
                .map(|t| tags(t, |s| sinks.scrub(s)))
                .unwrap_or_default(),
            time_ms: unix_ms(SystemTime::now()),
            front: front.name().to_owned(),
            op: op.to_owned(),
            ..RequestRecord::default()
        };
        Record {
            gw: gw.clone(),
            started: now,
            wall: SystemTime::now(),
            trace,
            span_id: new_span_id(),
            data,
            trail: Trail::default(),
            usage: Usage::default(),
            queued: Duration::ZERO,
            phases: Vec::new(),
            mark: now,
            first_byte: None,
            capture: gw.config().log.capture,
            input: None,
            output: None,
            done: false,
            key: None,
            hold: None,
            late: None,
        }
    }

    pub fn request_id(&self) -> &str {
        &self.data.id
    }

    /// The trace ids upstream calls carry in `traceparent`.
    pub fn trace_ids(&self) -> TraceIds {
        TraceIds {
            trace_id: self.trace.trace_id,
            sampled: self.trace.sampled,
        }
    }

    /// The admission wait is over: it counts as queueing, not overhead.
    pub fn admitted(&mut self) {
        self.queued = self.started.elapsed();
        self.phase("admit");
    }

    /// Ends the current phase (it began where the last one ended).
    pub fn phase(&mut self, name: &'static str) {
        let now = Instant::now();
        self.phases.push((name, self.mark, now));
        self.mark = now;
    }

    /// A route's own capture policy, over `log.capture`.
    pub fn capture(&mut self, policy: Option<Capture>) {
        if let Some(p) = policy {
            self.capture = p;
        }
    }

    /// Whether bodies are kept at all: a request log is open and the
    /// policy keeps something (streams skip collecting text if not).
    pub fn wants_bodies(&self) -> bool {
        self.capture != Capture::Off && self.gw.inner.sinks.recorder.is_some()
    }

    /// The request body, kept (a reference, not a copy) until the route's
    /// capture policy is known.
    pub fn input(&mut self, body: Bytes) {
        self.input = Some(body);
    }

    pub fn output(&mut self, text: String) {
        if self.wants_bodies() {
            self.output = Some(text);
        }
    }

    /// The most of a body worth keeping raw: the capture size plus room for
    /// a credential that straddles the cut to still be masked whole (the
    /// writer masks, then cuts to the capture size). A hashed body is kept
    /// whole.
    pub fn capture_limit(&self) -> usize {
        match self.capture {
            Capture::Hashed => usize::MAX,
            _ => self
                .gw
                .config()
                .log
                .capture_max_bytes
                .saturating_add(MASK_OVERLAP),
        }
    }

    /// What the request cost so far: its usage at the served model's price
    /// (`None` when nothing served it or the model is unpriced). A workflow,
    /// whose steps may use several models, sets `data.cost_usd` itself.
    pub fn cost(&self) -> Option<f64> {
        if self.data.cost_usd.is_some() {
            return self.data.cost_usd;
        }
        match self.data.target.as_deref() {
            Some(target) => self.price(target.split_once('/')?.1, self.usage),
            // Nothing answered, yet the calls made may have been billed
            // (answers that failed validation): their usage, at the last
            // called model's price.
            None => self.trail_cost(),
        }
    }

    /// What the calls in the trail consumed, at the last called model's
    /// price (the one a failed or degraded request paid for last).
    pub fn trail_cost(&self) -> Option<f64> {
        let Some(last) = self.trail.attempts.last() else {
            // Only answers replayed from the record file: nothing was paid.
            return (self.trail.replayed > 0).then_some(0.0);
        };
        self.price(&last.model, self.trail.paid)
    }

    fn price(&self, model: &str, usage: Usage) -> Option<f64> {
        self.gw.inner.pricing.cost(
            model,
            u64::from(usage.input_tokens),
            u64::from(usage.cached_input_tokens),
            u64::from(usage.output_tokens),
        )
    }

    pub fn served(&mut self, provider: &str, model: &str) {
        self.data.target = Some(format!("{provider}/{model}"));
    }

    /// The first byte of the answer is on its way to the client.
    /// Where verdicts given later (by a guarded stream) go.
    pub fn late_verdicts(&mut self) -> Arc<Mutex<Vec<Verdict>>> {
        self.late.get_or_insert_with(Arc::default).clone()
    }

    pub fn first_byte(&mut self) {
        self.first_byte.get_or_insert_with(Instant::now);
    }

    pub fn ok(self) {
        self.ok_with(200);
    }

    pub fn ok_with(mut self, status: u16) {
        self.emit(status, None);
    }

    pub fn fail(self, err: &Error) {
        self.fail_as(error::status(err).as_u16(), error::code(err), &err.message);
    }

    /// A failure whose response was built outside the error table (the
    /// function and workflow endpoints' detailed errors).
    pub fn fail_as(mut self, status: u16, kind: &str, message: &str) {
        self.emit(status, Some((kind, message)));
    }

    fn emit(&mut self, status: u16, err: Option<(&str, &str)>) {
        self.done = true;
        let end = Instant::now();
        let rec = self.complete(status, err, end);
        // A client gone before the answer: calls were in flight, and what
        // they cost is unknown; the budget keeps what was held for them.
        let unknown = status == 499 && !rec.attempts.is_empty() && self.usage == Usage::default();
        spend::settle(&self.gw, self.hold.take(), rec.cost_usd, unknown);
        let sinks = &self.gw.inner.sinks;
        // provider/model:outcome:ms per attempt, in order.
        let attempts = rec
            .attempts
            .iter()
            .map(|a| {
                format!(
                    "{}/{}:{}:{:.0}",
                    a.provider, a.model, a.outcome, a.latency_ms
                )
            })
            .collect::<Vec<_>>()
            .join(",");
        let error = rec.error.as_deref().unwrap_or("");
        macro_rules! request_line {
            ($level:ident) => {
                tracing::$level!(
                    target: "keel::request",
                    request_id = %rec.id,
                    trace_id = %rec.trace_id,
                    front = %rec.front,
                    op = %rec.op,
                    route = rec.route.as_deref().unwrap_or(""),
                    model = %rec.model,
                    stream = rec.stream,
                    target = rec.target.as_deref().unwrap_or(""),
                    status,
                    error_kind = rec.error_kind.as_deref().unwrap_or(""),
                    error,
                    input_tokens = rec.input_tokens,
                    output_tokens = rec.output_tokens,
                    latency_ms = rec.latency_ms,
                    overhead_ms = rec.overhead_ms,
                    attempts = %attempts,
                    "request"
                )
            };
        }
        // 5xx and disconnects are worth a look; the rest is traffic.
        if status >= 499 {
            request_line!(warn);
        } else {
            request_line!(info);
        }
        sinks.metrics.observe(&rec);
        if let Some(tracer) = &sinks.tracer {
            tracer.export(&self.trace, self.spans(&rec, end));
        }
        if let Some(recorder) = &sinks.recorder {
            // A full queue is counted and logged by the recorder; the
            // request goes on regardless.
            recorder.push(rec);
        }
    }

    /// The stored form: timings settled, text scrubbed, bodies captured.
    fn complete(&mut self, status: u16, err: Option<(&str, &str)>, end: Instant) -> RequestRecord {
        let sinks = &self.gw.inner.sinks;
        let since = |t: Instant| ms(t.saturating_duration_since(self.started));
        if self.usage == Usage::default() {
            self.usage = self.trail.usage;
        }
        let cost = self.cost();
        let mut rec = std::mem::take(&mut self.data);
        rec.key_id = self.key.as_ref().map(|k| k.id.clone());
        rec.status = status;
        rec.latency_ms = since(end);
        rec.ttft_ms = self.first_byte.map(since);
        rec.attempts = self
            .trail
            .attempts
            .iter()
            .map(|a| AttemptRecord {
                provider: a.provider.clone(),
                model: a.model.clone(),
                outcome: a.outcome.to_owned(),
                status: a.status,
                start_ms: since(a.started),
                latency_ms: ms(a.latency),
                ttft_ms: (a.stream && a.outcome == "ok").then(|| ms(a.latency)),
                error: a.error.as_deref().map(|e| sinks.scrub(e)),
            })
            .collect();
        // Upstream time: every call, plus the rest of a streamed answer
        // after its first event (keel relays it as it comes).
        let calls: Duration = self.trail.attempts.iter().map(|a| a.latency).sum();
        let stream_tail = match (rec.stream, self.first_byte) {
            (true, Some(first)) => end.saturating_duration_since(first),
            _ => Duration::ZERO,
        };
        let waited: Duration = self.trail.attempts.iter().map(|a| a.waited).sum();
        rec.upstream_ms = ms(calls + stream_tail);
        rec.overhead_ms =
            (rec.latency_ms - rec.upstream_ms - ms(self.queued) - ms(waited)).max(0.0);
        rec.cost_usd = cost;
        rec.input_tokens = u64::from(self.usage.input_tokens);
        rec.output_tokens = u64::from(self.usage.output_tokens);
        rec.cached_tokens = u64::from(self.usage.cached_input_tokens);
        rec.fallback = match (self.trail.attempts.first(), &rec.target) {
            (Some(first), Some(target)) => *target != format!("{}/{}", first.provider, first.model),
            _ => false,
        };
        if let Some((kind, message)) = err {
            rec.error_kind = Some(kind.to_owned());
            rec.error = Some(sinks.scrub(message));
        }
        rec.verdicts = std::mem::take(&mut self.trail.verdicts);
        if let Some(late) = &self.late {
            rec.verdicts.extend(
                late.lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .drain(..),
            );
        }
        rec.reasks = self.trail.reasks;
        // A function or workflow answered from the record/replay file alone
        // is a cache hit, like a replayed chat request.
        rec.cache_hit |= self.trail.replayed > 0 && self.trail.attempts.is_empty();
        for v in &mut rec.verdicts {
            v.detail = v.detail.as_deref().map(|d| sinks.scrub(d));
        }
        // Bodies go raw, cut (unless hashed whole); the writer applies the
        // capture policy off the request path (`Scrubber::capture`).
        rec.capture = self.capture;
        let (input, output) = (self.input.take(), self.output.take());
        if self.wants_bodies() {
            if self.capture == Capture::Hashed {
                // Hashed whole, here: only the digest waits in the queue.
                rec.input = input.map(|b| sha256(&b));
                rec.output = output.map(|t| sha256(t.as_bytes()));
            } else {
                let limit = self.capture_limit();
                rec.input =
                    input.map(|b| String::from_utf8_lossy(&b[..b.len().min(limit)]).into_owned());
                rec.output = output.map(|mut t| {
                    t.truncate(cut(&t, limit).len());
                    t
                });
            }
        }
        rec
    }

    /// The request's span tree: the root (server) span, a span per phase,
    /// and a client span per upstream attempt (under the `attempt` phase
    /// when there is one).
    fn spans(&self, rec: &RequestRecord, end: Instant) -> SpanData {
        let at = |t: Instant| self.wall + t.saturating_duration_since(self.started);
        let operation = match rec.op.as_str() {
            "chat" | "function" | "workflow" => "chat",
            other => other,
        };
        let mut attempts: Vec<SpanData> = self
            .trail
            .attempts
            .iter()
            .zip(&rec.attempts)
            .map(|(a, r)| {
                let mut attributes = vec![
                    ("gen_ai.operation.name", str(operation)),
                    ("gen_ai.provider.name", str(&a.provider)),
                    ("gen_ai.request.model", str(&a.model)),
                    ("keel.attempt.outcome", str(a.outcome)),
                ];
                if let Some(s) = a.status {
                    attributes.push(("http.response.status_code", AttrValue::I64(s.into())));
                }
                if a.outcome != "ok" {
                    attributes.push(("error.type", str(a.outcome)));
                }
                SpanData {
                    span_id: a.span_id,
                    name: format!("{operation} {}", a.model),
                    kind: SpanKind::Client,
                    start: at(a.started),
                    end: at(a.started + a.latency),
                    attributes,
                    error: (a.outcome != "ok")
                        .then(|| r.error.clone().unwrap_or_else(|| a.outcome.to_owned())),
                    children: Vec::new(),
                }
            })
            .collect();
        let mut phases: Vec<SpanData> = self
            .phases
            .iter()
            .chain(std::iter::once(&("respond", self.mark, end)))
            .map(|(name, start, stop)| SpanData {
                span_id: new_span_id(),
                name: (*name).to_owned(),
                kind: SpanKind::Internal,
                start: at(*start),
                end: at(*stop),
                attributes: Vec::new(),
                error: None,
                children: Vec::new(),
            })
            .collect();
        match phases.iter_mut().find(|p| p.name == "attempt") {
            Some(p) => p.children.append(&mut attempts),
            None => phases.append(&mut attempts),
        }
        let mut attributes = vec![
            ("gen_ai.operation.name", str(operation)),
            ("gen_ai.request.model", str(&rec.model)),
            (
                "gen_ai.usage.input_tokens",
                AttrValue::I64(to_i64(rec.input_tokens)),
            ),
            (
                "gen_ai.usage.output_tokens",
                AttrValue::I64(to_i64(rec.output_tokens)),
            ),
            (
                "http.response.status_code",
                AttrValue::I64(rec.status.into()),
            ),
            ("keel.request_id", str(&rec.id)),
            ("keel.front", str(&rec.front)),
            ("keel.op", str(&rec.op)),
        ];
        if let Some((provider, model)) = rec.target.as_deref().and_then(|t| t.split_once('/')) {
            attributes.push(("gen_ai.provider.name", str(provider)));
            attributes.push(("gen_ai.response.model", str(model)));
        }
        if let Some(route) = &rec.route {
            attributes.push(("keel.route", str(route)));
        }
        if let Some(kind) = &rec.error_kind {
            attributes.push(("error.type", str(kind)));
        }
        SpanData {
            span_id: self.span_id,
            name: if rec.model.is_empty() {
                operation.to_owned()
            } else {
                format!("{operation} {}", rec.model)
            },
            kind: SpanKind::Server,
            start: self.wall,
            end: at(end),
            attributes,
            error: rec.error.clone(),
            children: phases,
        }
    }
}

impl Drop for Record {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        if std::thread::panicking() {
            // A bug: catch-panic answers 500; the record says so too.
            self.emit(
                500,
                Some(("internal_error", "keel panicked serving this request")),
            );
        } else {
            // 499: the client closed the connection before the answer ended
            // (the convention nginx made common).
            self.emit(499, None);
        }
    }
}

/// `key=value,key2=value2`, bounded in count and size; malformed pairs skipped.
fn tags(header: &str, scrub: impl Fn(&str) -> String) -> BTreeMap<String, String> {
    header
        .split(',')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (k.trim(), v.trim()))
        .filter(|(k, _)| !k.is_empty())
        .take(MAX_TAGS)
        .map(|(k, v)| (scrub(cut(k, MAX_TAG_KEY)), scrub(cut(v, MAX_TAG_VALUE))))
        .collect()
}

/// `sha256:` and the hex digest of `bytes`.
fn sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .fold(String::from("sha256:"), |mut hex, b| {
            let _ = write!(hex, "{b:02x}");
            hex
        })
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn unix_ms(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn str(s: &str) -> AttrValue {
    AttrValue::Str(s.to_owned())
}
