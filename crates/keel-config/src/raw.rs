//! The file as written: serde types that mirror `keel.toml` one to one.
//! Nothing here is trusted until `validate` has looked at it.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use crate::{
    Admission, Balance, Budget, Capture, CassetteMode, FaultRule, Params, Price, RateLimit,
    Resilience, Rule, Step, Structured, Tls, Trigger, WhenDown,
};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfig {
    #[serde(default)]
    pub server: RawServer,
    #[serde(default)]
    pub providers: BTreeMap<String, RawProvider>,
    #[serde(default)]
    pub models: BTreeMap<String, RawModel>,
    #[serde(default)]
    pub functions: BTreeMap<String, RawFunction>,
    #[serde(default)]
    pub workflows: BTreeMap<String, RawWorkflow>,
    #[serde(default)]
    pub log: RawLog,
    #[serde(default)]
    pub telemetry: RawTelemetry,
    #[serde(default)]
    pub pricing: BTreeMap<String, Price>,
    #[serde(default)]
    pub cache: RawCache,
    #[serde(default)]
    pub auth: RawAuth,
    #[serde(default)]
    pub budgets: RawBudgets,
    #[serde(default)]
    pub redis: Option<RawRedis>,
    #[serde(default)]
    pub guardrails: BTreeMap<String, RawGuardrails>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawGuardrails {
    #[serde(default)]
    pub input: Vec<RawGuardCheck>,
    #[serde(default)]
    pub output: Vec<RawGuardCheck>,
    #[serde(default)]
    pub hold_back: Option<usize>,
}

/// One check, flat: `check` and `action`, and the fields its kind takes.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawGuardCheck {
    pub check: String,
    pub action: String,
    #[serde(default)]
    pub restore: Option<bool>,
    /// `action = "route"`: the model alias to send the request to.
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub entities: Option<Vec<String>>,
    #[serde(default)]
    pub threshold: Option<f64>,
    #[serde(default)]
    pub min_overlap: Option<f64>,
    #[serde(default)]
    pub terms: Option<Vec<String>>,
    #[serde(default)]
    pub patterns: Option<Vec<String>>,
    #[serde(default)]
    pub max_distance: Option<usize>,
    #[serde(default)]
    pub max_chars: Option<usize>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub pattern: Option<String>,
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default, with = "humantime_serde")]
    pub timeout: Option<Duration>,
    #[serde(default)]
    pub fail_open: Option<bool>,
    #[serde(default)]
    pub rules: Option<Vec<Rule>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAuth {
    #[serde(default)]
    pub admin_token: Option<RawSecret>,
    #[serde(default)]
    pub require_key: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawBudgets {
    #[serde(default)]
    pub teams: BTreeMap<String, Budget>,
    #[serde(default)]
    pub tags: BTreeMap<String, Budget>,
    #[serde(default)]
    pub default_max_tokens: Option<u32>,
    #[serde(default)]
    pub alert_at: Option<Vec<f64>>,
    #[serde(default)]
    pub webhook: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRedis {
    /// A plain `redis://` URL, or `{ env = "VAR" }` when it holds a password.
    pub url: RawSecretOrValue,
    #[serde(default, with = "humantime_serde")]
    pub timeout: Option<Duration>,
    #[serde(default)]
    pub prefix: Option<String>,
    #[serde(default)]
    pub budgets_when_down: Option<WhenDown>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCache {
    /// Answers kept in memory, in bytes (about).
    #[serde(default = "default_cache_bytes")]
    pub max_bytes: u64,
    /// A record/replay file of answers.
    #[serde(default)]
    pub file: Option<std::path::PathBuf>,
    #[serde(default)]
    pub mode: Option<CassetteMode>,
}

/// Enough for tens of thousands of typical answers.
fn default_cache_bytes() -> u64 {
    64 * 1024 * 1024
}

impl Default for RawCache {
    fn default() -> Self {
        RawCache {
            max_bytes: default_cache_bytes(),
            file: None,
            mode: None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLog {
    /// `sqlite` (default), `postgres` or `off`.
    #[serde(default = "default_store")]
    pub store: String,
    #[serde(default)]
    pub path: Option<std::path::PathBuf>,
    #[serde(default)]
    pub url: Option<RawSecret>,
    #[serde(default = "default_queue")]
    pub queue: usize,
    #[serde(default = "default_batch")]
    pub batch: usize,
    #[serde(default = "default_flush_every", with = "humantime_serde")]
    pub flush_every: Duration,
    #[serde(default = "default_max_age", with = "humantime_serde")]
    pub max_age: Option<Duration>,
    #[serde(default = "default_max_records")]
    pub max_records: Option<u64>,
    #[serde(default)]
    pub capture: Capture,
    #[serde(default = "default_capture_max_bytes")]
    pub capture_max_bytes: usize,
}

/// The embedded store, on by default: every request leaves a record.
fn default_store() -> String {
    "sqlite".to_owned()
}
/// Minutes of a typical gateway's records (seconds of a saturated one) ride
/// out a store outage; memory stays bounded: each record holds at most two
/// bodies of `capture_max_bytes`.
fn default_queue() -> usize {
    10_000
}
fn default_batch() -> usize {
    512
}
fn default_flush_every() -> Duration {
    Duration::from_millis(500)
}
fn default_max_age() -> Option<Duration> {
    Some(Duration::from_secs(30 * 86_400))
}
fn default_max_records() -> Option<u64> {
    Some(5_000_000)
}
/// Enough for a long prompt or answer; a pasted book is cut.
fn default_capture_max_bytes() -> usize {
    32 * 1024
}

impl Default for RawLog {
    fn default() -> Self {
        RawLog {
            store: default_store(),
            path: None,
            url: None,
            queue: default_queue(),
            batch: default_batch(),
            flush_every: default_flush_every(),
            max_age: default_max_age(),
            max_records: default_max_records(),
            capture: Capture::default(),
            capture_max_bytes: default_capture_max_bytes(),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTelemetry {
    #[serde(default)]
    pub otlp: Option<RawOtlp>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawOtlp {
    pub endpoint: String,
    #[serde(default)]
    pub service_name: Option<String>,
    #[serde(default)]
    pub headers: BTreeMap<String, RawSecretOrValue>,
    #[serde(default, with = "humantime_serde")]
    pub timeout: Option<Duration>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawWorkflow {
    pub steps: Vec<Step>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawFunction {
    pub model: String,
    #[serde(default)]
    pub version: String,
    /// Template files, relative to the config file.
    pub system: Option<std::path::PathBuf>,
    pub user: std::path::PathBuf,
    /// A JSON Schema inline (a table) or a file path (a string).
    pub input_schema: Option<RawSchema>,
    pub output_schema: Option<RawSchema>,
    #[serde(default)]
    pub structured: Option<Structured>,
    #[serde(default)]
    pub max_reasks: Option<u32>,
    #[serde(default)]
    pub invariants: Vec<Rule>,
    #[serde(default)]
    pub forbidden: Vec<Rule>,
    #[serde(default)]
    pub capture: Option<Capture>,
    #[serde(default)]
    pub guardrails: Option<String>,
    #[serde(default)]
    pub temperature: Option<f64>,
    #[serde(default)]
    pub top_p: Option<f64>,
    #[serde(default)]
    pub max_tokens: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum RawSchema {
    File(std::path::PathBuf),
    Inline(serde_json::Value),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawServer {
    #[serde(default = "default_listen")]
    pub listen: String,
    #[serde(default = "default_max_body")]
    pub max_body_bytes: u64,
    #[serde(default = "default_grace", with = "humantime_serde")]
    pub shutdown_grace: Duration,
    #[serde(default = "default_admission")]
    pub admission: Admission,
    #[serde(default)]
    pub tls: Option<Tls>,
}

/// Room for a busy gateway on one machine; past it, shed rather than queue
/// without bound.
fn default_admission() -> Admission {
    Admission {
        max_in_flight: 4096,
        queue: 1024,
        max_wait: Duration::from_secs(1),
    }
}

impl Default for RawServer {
    fn default() -> Self {
        RawServer {
            listen: default_listen(),
            max_body_bytes: default_max_body(),
            shutdown_grace: default_grace(),
            admission: default_admission(),
            tls: None,
        }
    }
}

fn default_listen() -> String {
    "127.0.0.1:8080".to_owned()
}

/// 8 MiB: room for long contexts and a few inline images.
fn default_max_body() -> u64 {
    8 * 1024 * 1024
}

fn default_grace() -> Duration {
    Duration::from_secs(30)
}

#[derive(Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub(crate) enum RawProvider {
    #[serde(rename = "openai")]
    OpenAi(RawHttpProvider),
    Anthropic(RawHttpProvider),
    Sim(RawSim),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHttpProvider {
    pub base_url: Option<String>,
    pub api_key: Option<RawSecret>,
    #[serde(default)]
    pub headers: BTreeMap<String, RawSecretOrValue>,
    #[serde(default)]
    pub query: BTreeMap<String, String>,
    #[serde(default, with = "humantime_serde")]
    pub connect_timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub timeout: Option<Duration>,
    /// `[providers.NAME.resilience]`: timeouts, retries, budget, breaker.
    #[serde(default)]
    pub resilience: Resilience,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSim {
    #[serde(default)]
    pub seed: u64,
    pub script: Option<std::path::PathBuf>,
    #[serde(default)]
    pub faults: Vec<FaultRule>,
    #[serde(default, with = "humantime_serde")]
    pub timeout: Option<Duration>,
    /// `[providers.NAME.resilience]`: timeouts, retries, budget, breaker.
    #[serde(default)]
    pub resilience: Resilience,
}

/// A secret is never written into the file: it names where to read it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSecret {
    pub env: String,
}

/// Header values may be plain (not secret) or read from the environment.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum RawSecretOrValue {
    Value(String),
    Secret(RawSecret),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawModel {
    pub targets: Vec<RawTarget>,
    #[serde(default, with = "humantime_serde")]
    pub timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub ttft_timeout: Option<Duration>,
    #[serde(default)]
    pub fallback_on: Option<Vec<Trigger>>,
    /// `"error"` (default), `"stale"` or `"static"` (with `static_message`).
    #[serde(default)]
    pub on_failure: Option<String>,
    #[serde(default)]
    pub static_message: Option<String>,
    #[serde(default)]
    pub capture: Option<Capture>,
    /// How groups (targets sharing a `group` name) share load.
    #[serde(default)]
    pub balance: Option<Balance>,
    #[serde(default)]
    pub validate_output: bool,
    #[serde(default)]
    pub max_reasks: Option<u32>,
    #[serde(default)]
    pub max_input_tokens: Option<u32>,
    #[serde(default)]
    pub max_output_tokens: Option<u32>,
    #[serde(default)]
    pub on_oversize: Option<String>,
    #[serde(default, with = "humantime_serde")]
    pub cache_ttl: Option<Duration>,
    #[serde(default)]
    pub rate_limit: Option<RateLimit>,
    #[serde(default)]
    pub guardrails: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTarget {
    pub provider: String,
    pub model: String,
    #[serde(default)]
    pub params: Params,
    /// Targets with the same group name form one load-balanced link.
    #[serde(default)]
    pub group: Option<String>,
    #[serde(default)]
    pub weight: Option<u32>,
}
