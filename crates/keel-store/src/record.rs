//! The request record: everything an operator needs to answer "what
//! happened to this request, where, and why" — one per request, whatever
//! its outcome. Secrets never enter it: the gateway fills it from parsed
//! fields, never from raw headers, and scrubs free text before it gets here.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One request, as stored. Times are milliseconds; `time_ms` is Unix time
/// at arrival, the other `*_ms` fields are durations.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RequestRecord {
    /// The request id (`x-request-id`, the client's own when it sent one).
    pub id: String,
    /// W3C trace id, 32 lowercase hex digits (the client's `traceparent`
    /// when it sent one).
    pub trace_id: String,
    /// `x-keel-session`: groups the requests of one conversation or episode.
    pub session: Option<String>,
    /// `x-keel-tags` (`k=v,k2=v2`), bounded in count and size.
    pub tags: BTreeMap<String, String>,
    pub time_ms: i64,
    /// The virtual key's id (never the key itself).
    pub key_id: Option<String>,
    /// Front door: `openai` or `anthropic`.
    pub front: String,
    /// `chat`, `embeddings`, `function`, `workflow`, `feedback`, `other`.
    pub op: String,
    /// Function or workflow name, when `op` is one.
    pub route: Option<String>,
    pub route_version: Option<String>,
    /// The model alias the client asked for.
    pub model: String,
    pub stream: bool,
    /// Every upstream call, in order.
    pub attempts: Vec<AttemptRecord>,
    /// `provider/model` that served the answer.
    pub target: Option<String>,
    /// HTTP status sent (499: the client went away first).
    pub status: u16,
    /// The error's kind (`rate_limit`, `timeout`, …) when it failed.
    pub error_kind: Option<String>,
    pub error: Option<String>,
    /// How the answer was degraded (`stale`, `static`), if it was.
    pub degraded: Option<String>,
    pub latency_ms: f64,
    /// Time to the first byte of the answer sent to the client (streams).
    pub ttft_ms: Option<f64>,
    /// Time spent waiting on upstreams.
    pub upstream_ms: f64,
    /// Time keel itself added: total minus upstream waits, admission queue
    /// and retry back-off.
    pub overhead_ms: f64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cached_tokens: u64,
    pub cost_usd: Option<f64>,
    pub cache_hit: bool,
    /// Re-asks after invalid output.
    pub reasks: u32,
    /// Whether a target other than the first one tried served the answer.
    pub fallback: bool,
    /// Guardrail and validation outcomes, in order.
    pub verdicts: Vec<Verdict>,
    /// The capture policy the bodies below were kept under.
    pub capture: Capture,
    pub input: Option<String>,
    pub output: Option<String>,
    /// Feedback attached later (filled when read back, not when written).
    pub feedback: Vec<Feedback>,
}

/// One call to one upstream target.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AttemptRecord {
    pub provider: String,
    pub model: String,
    /// `ok`, or the failure class (`timeout`, `rate_limit`, `open_circuit`, …).
    pub outcome: String,
    /// The upstream's HTTP status, when it answered with one.
    pub status: Option<u16>,
    /// When the attempt started, counted from the request's arrival.
    pub start_ms: f64,
    pub latency_ms: f64,
    pub ttft_ms: Option<f64>,
    pub error: Option<String>,
}

/// A check's outcome: schema validation, an invariant, a guardrail.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Verdict {
    /// `validation`, `invariant`, `input_guard`, `output_guard`.
    pub stage: String,
    pub name: String,
    /// `pass`, `repaired`, `fail`, `blocked`, `redacted`.
    pub outcome: String,
    pub detail: Option<String>,
}

/// A user's judgement of an answer, attached by request id.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Feedback {
    pub request_id: String,
    pub time_ms: i64,
    pub score: Option<f64>,
    pub label: Option<String>,
    pub comment: Option<String>,
}

/// What is kept of request and response bodies: the config's policy.
pub use keel_config::Capture;
