//! keel's configuration: `keel.toml` is parsed into raw serde types
//! ([`raw`], `deny_unknown_fields` everywhere) and then validated into a
//! [`Config`] whose invariants the rest of keel relies on: every model target
//! names a known provider, durations and sizes are sane, secrets are resolved
//! from the environment and held as [`secrecy::SecretString`].
//!
//! Validation collects every problem, each with its location, instead of
//! stopping at the first (`keel config check`).

mod raw;
mod validate;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::SecretString;
use serde::{Deserialize, Serialize};

pub use validate::{Issue, Severity};

/// The configuration keel runs on, after validation.
#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerConfig,
    pub providers: BTreeMap<String, ProviderConfig>,
    pub models: BTreeMap<String, ModelConfig>,
    pub functions: BTreeMap<String, FunctionConfig>,
    pub workflows: BTreeMap<String, WorkflowConfig>,
    pub log: LogConfig,
    pub telemetry: TelemetryConfig,
    /// `[pricing."MODEL"]`: prices per upstream model name (a prefix:
    /// `"gpt-4o"` also prices `gpt-4o-2024-08-06`), over keel's shipped table.
    pub pricing: BTreeMap<String, Price>,
    /// `[cache] max_bytes`: the response cache's size bound.
    pub cache_max_bytes: u64,
    /// `[cache] file` and `mode`: a record/replay file of answers.
    pub cassette: Option<Cassette>,
    /// `[auth]`: virtual keys and the admin API.
    pub auth: AuthConfig,
    /// `[budgets]`: team and tag budgets, reservations and alerts.
    pub budgets: BudgetsConfig,
    /// `[redis]`: rate limits, budget ledgers and the cache shared by replicas.
    pub redis: Option<RedisConfig>,
    /// `[guardrails.NAME]`: named sets of input and output checks that
    /// models and functions refer to.
    pub guardrails: BTreeMap<String, Guardrails>,
}

/// A named set of checks: on the input before any call, on the output
/// before it reaches the client. Each check runs in order with its action.
#[derive(Debug, Clone, Default)]
pub struct Guardrails {
    pub name: String,
    pub input: Vec<GuardCheck>,
    pub output: Vec<GuardCheck>,
    /// Streams: characters of output held back (not yet sent) so that an
    /// output check can still act on them.
    pub hold_back: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct GuardCheck {
    pub check: CheckKind,
    pub action: GuardAction,
}

/// What a check looks for.
#[derive(Debug, Clone, PartialEq)]
pub enum CheckKind {
    /// Personal data; `entities` narrows it (`EMAIL`, `PHONE`, `CARD`, `IBAN`, `US_SSN`, `IP`).
    Pii { entities: Vec<String> },
    /// Credentials: provider keys, cloud and VCS tokens, JWTs, private keys, high-entropy tokens.
    Secrets,
    /// Prompt injection and jailbreaks, scored against `threshold`.
    Injection { threshold: f64 },
    /// The output repeats the system prompt (word overlap of at least `min_overlap`).
    SystemPromptLeak { min_overlap: f64 },
    /// The model refused.
    Refusal,
    /// Terms (exact and near misses within `max_distance` edits) and regexes.
    DeniedTerms {
        terms: Vec<String>,
        patterns: Vec<String>,
        max_distance: usize,
    },
    /// More than `max_chars` characters.
    MaxLength { max_chars: usize },
    /// A custom regex, named.
    Regex { name: String, pattern: String },
    /// An external check: the text is POSTed to `url`, which answers
    /// `{"allow": bool, "reason": "…"}` within `timeout`; `fail_open`
    /// decides what an unanswered call means.
    Webhook {
        url: String,
        timeout: Duration,
        fail_open: bool,
    },
    /// Forbidden states of a JSON output, as CEL expressions over `output`
    /// (the structured-output rules' syntax).
    ForbiddenJson { rules: Vec<Rule> },
}

/// What happens when a check fires.
#[derive(Debug, Clone, PartialEq)]
pub enum GuardAction {
    /// Refuse with a typed error naming the check (no upstream call for input).
    Block,
    /// Replace the found spans with typed placeholders; `restore` puts the
    /// originals back into the output.
    Redact { restore: bool },
    /// Let it through; record the verdict.
    Flag,
    /// Output only: ask the same target again, with why.
    Reask,
    /// Output only: try the next target in the chain.
    Fallback,
    /// Input only: send the request to another (stricter) model alias.
    Route { model: String },
}

impl CheckKind {
    /// The name configs and verdicts use.
    pub fn name(&self) -> &str {
        match self {
            CheckKind::Pii { .. } => "pii",
            CheckKind::Secrets => "secrets",
            CheckKind::Injection { .. } => "injection",
            CheckKind::SystemPromptLeak { .. } => "system_prompt_leak",
            CheckKind::Refusal => "refusal",
            CheckKind::DeniedTerms { .. } => "denied_terms",
            CheckKind::MaxLength { .. } => "max_length",
            CheckKind::Regex { name, .. } => name,
            CheckKind::Webhook { .. } => "webhook",
            CheckKind::ForbiddenJson { .. } => "forbidden_json",
        }
    }
}

/// `[cache] file = "answers.jsonl"`, `mode = "record" | "replay"`: answers
/// recorded once (against real providers) and replayed later, so evals and
/// tests are deterministic and free.
#[derive(Debug, Clone, PartialEq)]
pub struct Cassette {
    pub path: PathBuf,
    pub mode: CassetteMode,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CassetteMode {
    /// Every fresh successful answer is appended to the file (requests go
    /// upstream as usual; answers already in the file are replayed).
    Record,
    /// Answers come only from the file; a request not in it fails with
    /// `replay_miss` and no upstream call.
    Replay,
}

/// `[auth]`: who may call keel.
#[derive(Debug, Clone, Default)]
pub struct AuthConfig {
    /// Enables the admin API (`/admin/…`): its bearer token.
    pub admin_token: Option<SecretString>,
    /// Every request must carry a valid virtual key (else 401). Off: a
    /// request without a keel key is anonymous; one with a keel key that is
    /// unknown or revoked is still refused.
    pub require_key: bool,
}

/// `[budgets]`.
#[derive(Debug, Clone)]
pub struct BudgetsConfig {
    /// Budgets shared by every key of a team (`[budgets.teams.NAME]`).
    pub teams: BTreeMap<String, Budget>,
    /// Budgets shared by every key with a tag (`[budgets.tags.NAME]`).
    pub tags: BTreeMap<String, Budget>,
    /// A budgeted request without `max_tokens` is sent with this one, so
    /// that its worst case — what is reserved — is bounded.
    pub default_max_tokens: u32,
    /// Fractions of a budget whose crossing fires an alert.
    pub alert_at: Vec<f64>,
    /// Where alerts are POSTed (JSON), retried with back-off, never waited for.
    pub webhook: Option<String>,
}

/// A spending cap for a period.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Budget {
    /// US dollars per period.
    pub usd: f64,
    pub period: Period,
}

impl Budget {
    /// A budget from anywhere (config, a key made over the admin API) is a
    /// positive, finite amount.
    pub fn check(&self) -> Result<(), &'static str> {
        if self.usd.is_finite() && self.usd > 0.0 {
            Ok(())
        } else {
            Err("a budget must be a number of dollars, more than 0")
        }
    }
}

/// A budget's period, in UTC: `"day"`, `"month"`, or `"Nd"` — a rolling
/// window of the last N days (today included).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    Day,
    Month,
    RollingDays(u32),
}

impl std::str::FromStr for Period {
    type Err = String;
    fn from_str(s: &str) -> Result<Period, String> {
        match s {
            "day" => Ok(Period::Day),
            "month" => Ok(Period::Month),
            _ => s
                .strip_suffix('d')
                .and_then(|n| n.parse::<u32>().ok())
                .filter(|n| (1..=366).contains(n))
                .map(Period::RollingDays)
                .ok_or_else(|| {
                    format!("`{s}` is not a period: day, month, or Nd (rolling N days, 1-366)")
                }),
        }
    }
}

impl std::fmt::Display for Period {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Period::Day => f.write_str("day"),
            Period::Month => f.write_str("month"),
            Period::RollingDays(n) => write!(f, "{n}d"),
        }
    }
}

impl Serialize for Period {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Period {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Period, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// `[redis]`: state shared by every replica.
#[derive(Debug, Clone)]
pub struct RedisConfig {
    pub url: SecretString,
    /// The longest any Redis call may take before keel acts as if Redis
    /// were down.
    pub timeout: Duration,
    /// Prefix of every key keel writes (several deployments, one Redis).
    pub prefix: String,
    /// Budgets while Redis is unreachable: refuse budgeted requests
    /// (`closed`, the default: no spend past a cap) or let them through
    /// unbudgeted (`open`). Rate limits always fall back to per-process ones.
    pub budgets_when_down: WhenDown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WhenDown {
    Closed,
    Open,
}

/// US dollars per million tokens.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Price {
    pub input: f64,
    pub output: f64,
    /// Cached prompt tokens, where the provider reports them; `input` if unset.
    #[serde(default)]
    pub cached_input: Option<f64>,
}

/// `[log]`: where request records go and what of the bodies they keep.
#[derive(Debug, Clone)]
pub struct LogConfig {
    pub store: StoreKind,
    /// Records waiting to be written; past it, new records are dropped (and
    /// counted), never waited for.
    pub queue: usize,
    /// Records per insert.
    pub batch: usize,
    /// Longest a record waits before its batch is written.
    pub flush_every: Duration,
    /// Records older than this are pruned.
    pub max_age: Option<Duration>,
    /// At most this many records are kept (the oldest go first).
    pub max_records: Option<u64>,
    /// What is kept of bodies, unless a model or function says otherwise.
    pub capture: Capture,
    /// Each captured body is cut to this many bytes.
    pub capture_max_bytes: usize,
}

#[derive(Debug, Clone)]
pub enum StoreKind {
    Off,
    /// A SQLite file (relative paths are relative to the config file).
    Sqlite(PathBuf),
    /// A `postgres://` URL, read from the environment (it may hold a password).
    Postgres(SecretString),
}

/// What a request record keeps of request and response bodies.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Capture {
    /// Bodies as sent and received (size-capped).
    Full,
    /// Bodies with keys, tokens and personal data masked (size-capped).
    #[default]
    Redacted,
    /// Only a SHA-256 of each body: equal inputs can be matched, none read.
    Hashed,
    /// Nothing.
    Off,
}

impl Capture {
    pub fn name(self) -> &'static str {
        match self {
            Capture::Full => "full",
            Capture::Redacted => "redacted",
            Capture::Hashed => "hashed",
            Capture::Off => "off",
        }
    }
}

/// `[telemetry]`: trace export. Off unless an endpoint is set.
#[derive(Debug, Clone, Default)]
pub struct TelemetryConfig {
    pub otlp: Option<OtlpConfig>,
}

#[derive(Debug, Clone)]
pub struct OtlpConfig {
    /// The OTLP/HTTP traces URL, e.g. `http://127.0.0.1:4318/v1/traces`.
    pub endpoint: String,
    pub service_name: String,
    /// Headers for the collector (auth), values possibly from the environment.
    pub headers: Vec<(String, SecretString)>,
    pub timeout: Duration,
}

/// A named sequence of function calls, each with its own validation and
/// retry policy (its function's), inputs mapped from the workflow input and
/// earlier outputs, and an optional condition.
#[derive(Debug, Clone)]
pub struct WorkflowConfig {
    pub name: String,
    pub steps: Vec<Step>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    pub name: String,
    pub function: String,
    /// The step's input: each field a literal JSON value, or `{ from =
    /// "/input/…" }` / `{ from = "/steps/NAME/output/…" }` (a JSON pointer
    /// into the workflow input and earlier steps' outputs).
    #[serde(default)]
    pub input: serde_json::Map<String, serde_json::Value>,
    /// A CEL condition over `input` (the workflow's) and `steps` (earlier
    /// outputs by step name); the step is skipped when false.
    #[serde(default)]
    pub when: Option<String>,
}

/// A function: a named, typed LLM call. Its prompts are templates (read
/// here, compiled by the server with `keel-policy`), its input and output
/// JSON Schemas, and the rules its output must satisfy.
#[derive(Debug, Clone)]
pub struct FunctionConfig {
    pub name: String,
    /// The model alias (and so its fallback chain) to call.
    pub model: String,
    /// Explicit version label, recorded with a content hash of the prompts.
    pub version: String,
    pub system: Option<Prompt>,
    pub user: Prompt,
    pub input_schema: Option<serde_json::Value>,
    /// `None`: free text output.
    pub output_schema: Option<serde_json::Value>,
    pub structured: Structured,
    /// Re-asks on one target after an invalid output, before falling back.
    pub max_reasks: u32,
    pub invariants: Vec<Rule>,
    pub forbidden: Vec<Rule>,
    /// Overrides `log.capture` for calls to this function.
    pub capture: Option<Capture>,
    /// The `[guardrails.NAME]` set its calls pass (else its model's).
    pub guardrails: Option<String>,
    /// Sampling temperature sent with every ask (0 to 2); `None`: the
    /// target's `params`, else the provider's default.
    pub temperature: Option<f64>,
    /// Nucleus sampling sent with every ask (0 to 1); `None` as above.
    pub top_p: Option<f64>,
    /// The most output tokens per ask (greater than zero); `None` as above.
    pub max_tokens: Option<u32>,
}

/// A prompt template: where it came from and its text.
#[derive(Debug, Clone)]
pub struct Prompt {
    pub path: PathBuf,
    pub source: String,
}

/// How a JSON function asks the provider for structured output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Structured {
    /// `response_format: json_schema` (strict), which keel translates for
    /// Anthropic upstreams into an instruction.
    JsonSchema,
    /// `response_format: json_object`, the schema stated in the prompt.
    JsonObject,
    /// Nothing beyond the prompt.
    Prompt,
}

/// An invariant (must hold) or forbidden state (must never hold): a CEL
/// expression over `output` and `input`, or a regex over the output's JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    pub name: String,
    #[serde(default)]
    pub expr: Option<String>,
    #[serde(default)]
    pub regex: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// Largest request body accepted, in bytes; larger ones get 413.
    pub max_body_bytes: usize,
    /// How long shutdown waits for in-flight requests (streams included).
    pub shutdown_grace: Duration,
    /// Admission: requests in flight at once across the gateway, and the
    /// bounded queue beyond them; past that requests are shed with 503.
    pub admission: Admission,
    /// `[server.tls]`: serve HTTPS (rustls) with this certificate chain and
    /// key (PEM files); plain HTTP when unset.
    pub tls: Option<Tls>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tls {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A limit on requests in flight with a bounded wait queue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Admission {
    /// Requests holding a permit at once (held until the response body ends).
    pub max_in_flight: usize,
    /// Requests that may wait for a permit; 0 sheds at once when full.
    #[serde(default)]
    pub queue: usize,
    /// Longest a request waits in the queue before it is shed.
    #[serde(default = "default_max_wait", with = "humantime_serde")]
    pub max_wait: Duration,
}

fn default_max_wait() -> Duration {
    Duration::from_secs(1)
}

/// How keel treats one upstream: timeouts, retries, the retry budget, the
/// circuit breaker and an optional cap on requests in flight to it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Resilience {
    /// Until the first byte of the upstream's answer (a stream's first
    /// event; a whole body's headers).
    #[serde(with = "humantime_serde")]
    pub ttft_timeout: Duration,
    /// Longest silence between two stream events.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Retries on this target after a retryable failure, before falling back.
    pub max_retries: u32,
    #[serde(with = "humantime_serde")]
    pub backoff_base: Duration,
    #[serde(with = "humantime_serde")]
    pub backoff_max: Duration,
    /// Retry budget: retries may add at most this fraction of requests…
    pub budget_ratio: f64,
    /// …plus this many retries per second whatever the traffic.
    pub budget_min_per_sec: u32,
    #[serde(with = "humantime_serde")]
    pub budget_window: Duration,
    pub breaker: Breaker,
    /// Requests in flight to this target at once; a full target is skipped.
    pub max_in_flight: Option<usize>,
}

impl Default for Resilience {
    fn default() -> Self {
        Resilience {
            ttft_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(60),
            max_retries: 1,
            backoff_base: Duration::from_millis(100),
            backoff_max: Duration::from_secs(2),
            budget_ratio: 0.2,
            budget_min_per_sec: 1,
            budget_window: Duration::from_secs(10),
            breaker: Breaker::default(),
            max_in_flight: None,
        }
    }
}

/// Circuit-breaker settings; see `keel_resilience::breaker`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Breaker {
    pub enabled: bool,
    /// Opens after this many failures in a row…
    pub consecutive_failures: u32,
    /// …or when this fraction of calls failed over `window`…
    pub failure_ratio: f64,
    /// …with at least this many calls in the window.
    pub min_requests: u32,
    #[serde(with = "humantime_serde")]
    pub window: Duration,
    /// How long it stays open before letting probes through.
    #[serde(with = "humantime_serde")]
    pub open_for: Duration,
    pub half_open_probes: u32,
}

impl Default for Breaker {
    fn default() -> Self {
        Breaker {
            enabled: true,
            consecutive_failures: 5,
            failure_ratio: 0.5,
            min_requests: 20,
            window: Duration::from_secs(30),
            open_for: Duration::from_secs(30),
            half_open_probes: 1,
        }
    }
}

#[derive(Debug, Clone)]
pub struct ProviderConfig {
    pub name: String,
    pub kind: ProviderKind,
    pub connect_timeout: Duration,
    /// Upper bound on one upstream call, streams included.
    pub timeout: Duration,
    pub resilience: Resilience,
    /// `Err(reason)` when the provider cannot be used as configured (its key
    /// is not in the environment). Targets on it are skipped.
    pub availability: Result<(), String>,
}

#[derive(Debug, Clone)]
pub enum ProviderKind {
    /// Any OpenAI-compatible server.
    OpenAi(HttpProvider),
    Anthropic(HttpProvider),
    /// keel's built-in simulator, in process.
    Sim(SimConfig),
}

impl ProviderKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            ProviderKind::OpenAi(_) => "openai",
            ProviderKind::Anthropic(_) => "anthropic",
            ProviderKind::Sim(_) => "sim",
        }
    }
}

/// An upstream reached over HTTP.
#[derive(Debug, Clone)]
pub struct HttpProvider {
    /// Base URL without a trailing slash, e.g. `https://api.openai.com/v1`.
    pub base_url: String,
    pub api_key: Option<SecretString>,
    /// Extra headers sent on every call (Azure `api-key`, organisation ids…).
    pub headers: Vec<(String, SecretString)>,
    /// Extra query parameters on every call (Azure `api-version`).
    pub query: Vec<(String, String)>,
}

/// The simulator's settings, shared by `kind = "sim"` providers and `keel sim`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimConfig {
    /// Seed for every random choice (fault rates, default replies).
    #[serde(default)]
    pub seed: u64,
    /// A script file of rules: last user message → reply, tool call or JSON.
    #[serde(default)]
    pub script: Option<PathBuf>,
    /// Faults injected at a rate, checked in order; the first that fires wins.
    #[serde(default)]
    pub faults: Vec<FaultRule>,
}

/// `fault` uses the same syntax as the `x-keel-sim-fault` header.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultRule {
    /// Probability in [0, 1] that the fault applies to a request.
    pub rate: f64,
    pub fault: String,
}

/// A model alias: the name clients send, mapped to an ordered fallback
/// chain of targets.
#[derive(Debug, Clone)]
pub struct ModelConfig {
    pub name: String,
    /// Chain elements in order; a group balances load across its members.
    pub chain: Vec<Link>,
    /// Deadline for the whole request, every attempt included.
    pub timeout: Duration,
    /// Overrides the providers' `ttft_timeout` for this model.
    pub ttft_timeout: Option<Duration>,
    /// Which failures move on to the next link of the chain.
    pub fallback_on: Vec<Trigger>,
    /// What the client gets when every link failed.
    pub on_failure: OnFailure,
    /// Validate chat answers to `response_format: json_schema` requests
    /// like a function's output (extract, repair, schema, re-ask, 422).
    pub validate_output: bool,
    /// Re-asks per target for that validation.
    pub max_reasks: u32,
    /// Overrides `log.capture` for requests to this model.
    pub capture: Option<Capture>,
    /// Input larger than this (tokens, counted before any call) is refused
    /// with 413, or sent to `on_oversize`.
    pub max_input_tokens: Option<u32>,
    /// A `max_tokens` above this is refused with 400.
    pub max_output_tokens: Option<u32>,
    /// The model alias (e.g. a cheaper long-context one) that takes inputs
    /// over `max_input_tokens` instead of refusing them.
    pub on_oversize: Option<String>,
    /// Answers are cached this long (off when unset, unless a request asks
    /// with `x-keel-cache: use`).
    pub cache_ttl: Option<Duration>,
    /// keel's own limits for this model, whoever calls it.
    pub rate_limit: Option<RateLimit>,
    /// The `[guardrails.NAME]` set its requests pass.
    pub guardrails: Option<String>,
}

/// Requests and tokens per minute (GCRA: smooth, with a burst of a minute's
/// worth). A request's tokens are its counted input plus its `max_tokens`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    #[serde(default)]
    pub requests_per_minute: Option<u32>,
    #[serde(default)]
    pub tokens_per_minute: Option<u32>,
}

impl ModelConfig {
    /// Every target, in chain order.
    pub fn targets(&self) -> impl Iterator<Item = &Target> {
        self.chain.iter().flat_map(|l| match l {
            Link::Single(t) => std::slice::from_ref(t),
            Link::Group { members, .. } => members.as_slice(),
        })
    }
}

/// One element of a fallback chain.
#[derive(Debug, Clone)]
pub enum Link {
    Single(Target),
    /// Equivalent targets sharing the load; they fall back among themselves
    /// before the chain moves on.
    Group {
        strategy: Balance,
        members: Vec<Target>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Balance {
    Weighted,
    LeastInFlight,
    LatencyEwma,
}

/// A failure class that may trigger fallback to the next link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// Connection errors, 5xx, broken streams, invalid responses.
    Error,
    Timeout,
    /// The target's circuit breaker is open (or its in-flight cap is full).
    OpenCircuit,
    /// 429 from the upstream.
    RateLimit,
    /// The input is too long for the target (go to a larger-context one).
    ContextLength,
    /// The upstream refused on content policy.
    ContentFilter,
}

/// Degradation when every link failed.
#[derive(Debug, Clone, PartialEq)]
pub enum OnFailure {
    /// The last error, typed, in the client's format (default).
    Error,
    /// The last good answer to the same request, marked stale; else the error.
    Stale,
    /// A fixed answer, marked degraded.
    Static(String),
}

#[derive(Debug, Clone)]
pub struct Target {
    pub provider: String,
    /// The model name the upstream knows.
    pub model: String,
    pub params: Params,
    /// Share of traffic within a group.
    pub weight: u32,
}

/// Default request parameters for a target, used where the client set none.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    pub max_tokens: Option<u32>,
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
}

/// A configuration that failed to load: every problem found.
#[derive(Debug, thiserror::Error)]
#[error("{}", render(.issues))]
pub struct ConfigError {
    pub issues: Vec<Issue>,
}

fn render(issues: &[Issue]) -> String {
    issues
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

impl Config {
    /// Reads and validates a config file. Relative paths inside it (sim
    /// scripts) are resolved against the file's directory.
    pub fn load(path: &Path) -> Result<(Config, Vec<Issue>), ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            issues: vec![Issue::error(
                path.display().to_string(),
                format!("cannot read: {e}"),
            )],
        })?;
        let base = path.parent().unwrap_or_else(|| Path::new("."));
        Self::parse(&text, base, &|name| std::env::var(name).ok())
    }

    /// Parses and validates config text. `env` looks up environment
    /// variables (injected so tests do not touch the process environment).
    /// On success, also returns the warnings found.
    pub fn parse(
        text: &str,
        base_dir: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<(Config, Vec<Issue>), ConfigError> {
        let raw: raw::RawConfig = toml::from_str(text).map_err(|e| ConfigError {
            issues: vec![Issue::error(
                toml_location(&e, text),
                e.message().to_owned(),
            )],
        })?;
        validate::validate(raw, base_dir, env)
    }
}

fn toml_location(e: &toml::de::Error, text: &str) -> String {
    match e.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let col = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            format!("line {line}, column {col}")
        }
        None => "config".to_owned(),
    }
}
