//! Raw → validated. Every check pushes an [`Issue`] with the key path it is
//! about, so one run of `keel config check` shows every problem at once.

mod cost;
mod guard;
mod observability;

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use secrecy::SecretString;

use crate::raw::{
    RawConfig, RawFunction, RawHttpProvider, RawModel, RawProvider, RawSchema, RawSecretOrValue,
};
use crate::{
    Balance, Config, ConfigError, FunctionConfig, HttpProvider, Link, ModelConfig, OnFailure,
    Params, Prompt, ProviderConfig, ProviderKind, Resilience, ServerConfig, SimConfig, Step,
    Structured, Target, Trigger, WorkflowConfig,
};

const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);
const MAX_BODY_CEILING: u64 = 1024 * 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Error,
    Warning,
}

/// One problem found in a config, with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    pub severity: Severity,
    /// A key path such as `models.gpt-4o.targets[0].provider`, or a line and column.
    pub location: String,
    pub message: String,
}

impl Issue {
    pub fn error(location: impl Into<String>, message: impl Into<String>) -> Self {
        Issue {
            severity: Severity::Error,
            location: location.into(),
            message: message.into(),
        }
    }

    pub fn warning(location: impl Into<String>, message: impl Into<String>) -> Self {
        Issue {
            severity: Severity::Warning,
            location: location.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Issue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let level = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(f, "{level}: {}: {}", self.location, self.message)
    }
}

pub(crate) fn validate(
    raw: RawConfig,
    base_dir: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(Config, Vec<Issue>), ConfigError> {
    let mut issues = Vec::new();

    let listen = raw.server.listen.parse::<SocketAddr>().unwrap_or_else(|e| {
        issues.push(Issue::error(
            "server.listen",
            format!("`{}` is not an address:port ({e})", raw.server.listen),
        ));
        SocketAddr::from(([127, 0, 0, 1], 8080))
    });
    if raw.server.max_body_bytes == 0 || raw.server.max_body_bytes > MAX_BODY_CEILING {
        issues.push(Issue::error(
            "server.max_body_bytes",
            format!("must be between 1 and {MAX_BODY_CEILING}"),
        ));
    }
    let server = ServerConfig {
        listen,
        max_body_bytes: usize::try_from(raw.server.max_body_bytes).unwrap_or(usize::MAX),
        shutdown_grace: raw.server.shutdown_grace,
        admission: raw.server.admission,
        tls: raw.server.tls.map(|t| crate::Tls {
            cert: relative_to(base_dir, t.cert),
            key: relative_to(base_dir, t.key),
        }),
    };
    if let Some(t) = &server.tls {
        for (path, what) in [(&t.cert, "cert"), (&t.key, "key")] {
            if !path.is_file() {
                issues.push(Issue::error(
                    format!("server.tls.{what}"),
                    format!("{} is not a readable file", path.display()),
                ));
            }
        }
    }
    if server.admission.max_in_flight == 0 {
        issues.push(Issue::error(
            "server.admission.max_in_flight",
            "must be at least 1",
        ));
    }

    let mut providers = BTreeMap::new();
    for (name, provider) in raw.providers {
        let at = format!("providers.{name}");
        providers.insert(
            name.clone(),
            provider_config(name, provider, &at, base_dir, env, &mut issues),
        );
    }

    let mut models = BTreeMap::new();
    for (name, model) in raw.models {
        let at = format!("models.{name}");
        let config = model_config(name.clone(), model, &at, &providers, &mut issues);
        models.insert(name, config);
    }
    for (name, model) in &models {
        if let Some(other) = &model.on_oversize
            && (other == name || !models.contains_key(other))
        {
            issues.push(Issue::error(
                format!("models.{name}.on_oversize"),
                format!("`{other}` is not another configured model"),
            ));
        }
    }
    let mut functions = BTreeMap::new();
    for (name, f) in raw.functions {
        let at = format!("functions.{name}");
        if let Some(config) = function_config(name.clone(), f, &at, base_dir, &models, &mut issues)
        {
            functions.insert(name, config);
        }
    }
    let mut workflows = BTreeMap::new();
    for (name, w) in raw.workflows {
        let at = format!("workflows.{name}");
        check_steps(&w.steps, &at, &functions, &mut issues);
        workflows.insert(
            name.clone(),
            WorkflowConfig {
                name,
                steps: w.steps,
            },
        );
    }
    let log = observability::log_config(raw.log, base_dir, env, &mut issues);
    let telemetry = observability::telemetry_config(raw.telemetry, env, &mut issues);
    let auth = cost::auth_config(raw.auth, env, &mut issues);
    let budgets = cost::budgets_config(raw.budgets, &mut issues);
    let redis = cost::redis_config(raw.redis, env, &mut issues);
    let cassette = cost::cassette(&raw.cache, base_dir, &mut issues);
    let guardrails = guard::guardrails(raw.guardrails, &models, &mut issues);
    let named = |set: &Option<String>, at: String, issues: &mut Vec<Issue>| {
        if let Some(name) = set
            && !guardrails.contains_key(name)
        {
            issues.push(Issue::error(
                at,
                format!("`{name}` is not a [guardrails.…] set"),
            ));
        }
    };
    for (name, m) in &models {
        named(
            &m.guardrails,
            format!("models.{name}.guardrails"),
            &mut issues,
        );
    }
    for (name, f) in &functions {
        named(
            &f.guardrails,
            format!("functions.{name}.guardrails"),
            &mut issues,
        );
    }
    for (model, price) in &raw.pricing {
        let rates = [
            ("input", Some(price.input)),
            ("output", Some(price.output)),
            ("cached_input", price.cached_input),
        ];
        for (what, rate) in rates {
            if rate.is_some_and(|r| !r.is_finite() || r < 0.0) {
                issues.push(Issue::error(
                    format!("pricing.{model}.{what}"),
                    "must be a number of dollars per million tokens, 0 or more",
                ));
            }
        }
    }
    if models.is_empty() {
        issues.push(Issue::warning(
            "models",
            "no models configured: every request gets 404",
        ));
    }

    if issues.iter().any(|i| i.severity == Severity::Error) {
        return Err(ConfigError { issues });
    }
    Ok((
        Config {
            server,
            providers,
            models,
            functions,
            workflows,
            log,
            telemetry,
            pricing: raw.pricing,
            cache_max_bytes: raw.cache.max_bytes,
            cassette,
            auth,
            budgets,
            redis,
            guardrails,
        },
        issues,
    ))
}

/// A path from the config, relative to the config file's directory.
fn relative_to(base_dir: &Path, path: std::path::PathBuf) -> std::path::PathBuf {
    if path.is_relative() {
        base_dir.join(path)
    } else {
        path
    }
}

fn provider_config(
    name: String,
    raw: RawProvider,
    at: &str,
    base_dir: &Path,
    env: &dyn Fn(&str) -> Option<String>,
    issues: &mut Vec<Issue>,
) -> ProviderConfig {
    let mut availability = Ok(());
    let resilience = match &raw {
        RawProvider::OpenAi(h) | RawProvider::Anthropic(h) => h.resilience.clone(),
        RawProvider::Sim(s) => s.resilience.clone(),
    };
    check_resilience(&resilience, &format!("{at}.resilience"), issues);
    let (kind, connect_timeout, timeout) = match raw {
        RawProvider::OpenAi(http) => {
            let (p, c, t) = http_provider(
                http,
                "https://api.openai.com/v1",
                at,
                env,
                issues,
                &mut availability,
            );
            (ProviderKind::OpenAi(p), c, t)
        }
        RawProvider::Anthropic(http) => {
            let (p, c, t) = http_provider(
                http,
                "https://api.anthropic.com",
                at,
                env,
                issues,
                &mut availability,
            );
            (ProviderKind::Anthropic(p), c, t)
        }
        RawProvider::Sim(sim) => {
            let script = sim
                .script
                .map(|s| if s.is_relative() { base_dir.join(s) } else { s });
            if let Some(s) = &script
                && !s.is_file()
            {
                issues.push(Issue::error(
                    format!("{at}.script"),
                    format!("no such file: {}", s.display()),
                ));
            }
            for (i, f) in sim.faults.iter().enumerate() {
                if !(0.0..=1.0).contains(&f.rate) {
                    issues.push(Issue::error(
                        format!("{at}.faults[{i}].rate"),
                        "must be between 0 and 1",
                    ));
                }
            }
            let config = SimConfig {
                seed: sim.seed,
                script,
                faults: sim.faults,
            };
            (
                ProviderKind::Sim(config),
                DEFAULT_CONNECT_TIMEOUT,
                sim.timeout.unwrap_or(DEFAULT_TIMEOUT),
            )
        }
    };
    ProviderConfig {
        name,
        kind,
        connect_timeout,
        timeout,
        resilience,
        availability,
    }
}

/// The default model deadline: long generations take minutes.
const DEFAULT_MODEL_TIMEOUT: Duration = Duration::from_secs(600);

/// Every failure class but content-filter refusals falls back by default:
/// a refusal is usually the right answer, so moving on is opt-in.
const DEFAULT_TRIGGERS: [Trigger; 5] = [
    Trigger::Error,
    Trigger::Timeout,
    Trigger::OpenCircuit,
    Trigger::RateLimit,
    Trigger::ContextLength,
];

fn model_config(
    name: String,
    raw: RawModel,
    at: &str,
    providers: &BTreeMap<String, ProviderConfig>,
    issues: &mut Vec<Issue>,
) -> ModelConfig {
    if raw.targets.is_empty() {
        issues.push(Issue::error(
            format!("{at}.targets"),
            "needs at least one target",
        ));
    }
    // Targets sharing a group name form one link, at the place of the first.
    let mut chain: Vec<Link> = Vec::new();
    let mut groups: Vec<(String, usize)> = Vec::new();
    for (i, t) in raw.targets.into_iter().enumerate() {
        let tat = format!("{at}.targets[{i}]");
        match providers.get(&t.provider) {
            None => issues.push(Issue::error(
                format!("{tat}.provider"),
                format!("unknown provider `{}`", t.provider),
            )),
            Some(p) => {
                if let Err(why) = &p.availability {
                    issues.push(Issue::warning(
                        format!("{tat}.provider"),
                        format!(
                            "`{}` is unavailable ({why}); this target is skipped",
                            t.provider
                        ),
                    ));
                }
            }
        }
        if t.model.trim().is_empty() {
            issues.push(Issue::error(format!("{tat}.model"), "must not be empty"));
        }
        if t.weight == Some(0) {
            issues.push(Issue::error(format!("{tat}.weight"), "must be at least 1"));
        }
        check_params(&t.params, &format!("{tat}.params"), issues);
        let target = Target {
            provider: t.provider,
            model: t.model,
            params: t.params,
            weight: t.weight.unwrap_or(1).max(1),
        };
        match t.group {
            None => chain.push(Link::Single(target)),
            Some(g) => match groups.iter().find(|(name, _)| *name == g) {
                Some((_, index)) => {
                    if let Some(Link::Group { members, .. }) = chain.get_mut(*index) {
                        members.push(target);
                    }
                }
                None => {
                    groups.push((g, chain.len()));
                    chain.push(Link::Group {
                        strategy: raw.balance.unwrap_or(Balance::LeastInFlight),
                        members: vec![target],
                    });
                }
            },
        }
    }
    let on_failure = match (raw.on_failure.as_deref(), raw.static_message) {
        (None | Some("error"), None) => OnFailure::Error,
        (Some("stale"), None) => OnFailure::Stale,
        (Some("static"), Some(message)) => OnFailure::Static(message),
        (Some("static"), None) => {
            issues.push(Issue::error(
                format!("{at}.static_message"),
                "required with on_failure = \"static\"",
            ));
            OnFailure::Error
        }
        (_, Some(_)) => {
            issues.push(Issue::error(
                format!("{at}.static_message"),
                "only with on_failure = \"static\"",
            ));
            OnFailure::Error
        }
        (Some(other), None) => {
            issues.push(Issue::error(
                format!("{at}.on_failure"),
                format!("`{other}` is not one of error, stale, static"),
            ));
            OnFailure::Error
        }
    };
    for (what, d) in [("timeout", raw.timeout), ("ttft_timeout", raw.ttft_timeout)] {
        if d.is_some_and(|d| d.is_zero()) {
            issues.push(Issue::error(
                format!("{at}.{what}"),
                "must be greater than zero",
            ));
        }
    }
    let config = ModelConfig {
        name,
        chain,
        timeout: raw.timeout.unwrap_or(DEFAULT_MODEL_TIMEOUT),
        ttft_timeout: raw.ttft_timeout,
        fallback_on: raw.fallback_on.unwrap_or_else(|| DEFAULT_TRIGGERS.to_vec()),
        on_failure,
        validate_output: raw.validate_output,
        max_reasks: raw.max_reasks.unwrap_or(DEFAULT_MAX_REASKS),
        capture: raw.capture,
        max_input_tokens: raw.max_input_tokens,
        max_output_tokens: raw.max_output_tokens,
        on_oversize: raw.on_oversize,
        cache_ttl: raw.cache_ttl,
        rate_limit: raw.rate_limit,
        guardrails: raw.guardrails,
    };
    if let Some(r) = &config.rate_limit {
        for (value, what) in [
            (r.requests_per_minute, "requests_per_minute"),
            (r.tokens_per_minute, "tokens_per_minute"),
        ] {
            if value == Some(0) {
                issues.push(Issue::error(
                    format!("{at}.rate_limit.{what}"),
                    "must be at least 1",
                ));
            }
        }
    }
    for (limit, what) in [
        (config.max_input_tokens, "max_input_tokens"),
        (config.max_output_tokens, "max_output_tokens"),
    ] {
        if limit == Some(0) {
            issues.push(Issue::error(format!("{at}.{what}"), "must be at least 1"));
        }
    }
    if config.on_oversize.is_some() && config.max_input_tokens.is_none() {
        issues.push(Issue::error(
            format!("{at}.on_oversize"),
            "needs max_input_tokens (what counts as oversized)",
        ));
    }
    let usable = config.targets().any(|t| {
        providers
            .get(&t.provider)
            .is_some_and(|p| p.availability.is_ok())
    });
    if !usable && !config.chain.is_empty() {
        issues.push(Issue::warning(
            at.to_owned(),
            "no target is available: requests for this model get 503",
        ));
    }
    config
}

/// Each step names a known function, a unique name, and inputs drawn only
/// from the workflow input or steps before it.
fn check_steps(
    steps: &[Step],
    at: &str,
    functions: &BTreeMap<String, FunctionConfig>,
    issues: &mut Vec<Issue>,
) {
    if steps.is_empty() {
        issues.push(Issue::error(
            format!("{at}.steps"),
            "needs at least one step",
        ));
    }
    let mut seen: Vec<&str> = Vec::new();
    for (i, step) in steps.iter().enumerate() {
        let sat = format!("{at}.steps[{i}]");
        if !functions.contains_key(&step.function) {
            issues.push(Issue::error(
                format!("{sat}.function"),
                format!("unknown function `{}`", step.function),
            ));
        }
        if seen.contains(&step.name.as_str()) {
            issues.push(Issue::error(
                format!("{sat}.name"),
                format!("duplicate step name `{}`", step.name),
            ));
        }
        for (field, value) in &step.input {
            let Some(from) = value.get("from").and_then(serde_json::Value::as_str) else {
                continue;
            };
            let ok = from == "/input"
                || from.starts_with("/input/")
                || seen.iter().any(|s| {
                    from == format!("/steps/{s}/output")
                        || from.starts_with(&format!("/steps/{s}/output/"))
                });
            if !ok {
                issues.push(Issue::error(
                    format!("{sat}.input.{field}"),
                    format!("`{from}` must point into /input or /steps/<an earlier step>/output"),
                ));
            }
        }
        seen.push(&step.name);
    }
}

/// Two re-asks: enough for a model to fix what it was told, few enough that
/// a model that cannot do it moves on to the next target quickly.
const DEFAULT_MAX_REASKS: u32 = 2;

fn function_config(
    name: String,
    raw: RawFunction,
    at: &str,
    base_dir: &Path,
    models: &BTreeMap<String, ModelConfig>,
    issues: &mut Vec<Issue>,
) -> Option<FunctionConfig> {
    if !models.contains_key(&raw.model) {
        issues.push(Issue::error(
            format!("{at}.model"),
            format!("unknown model `{}`", raw.model),
        ));
    }
    let mut read = |path: &Path, what: &str| -> Option<Prompt> {
        let full = base_dir.join(path);
        match std::fs::read_to_string(&full) {
            Ok(source) => Some(Prompt { path: full, source }),
            Err(e) => {
                issues.push(Issue::error(
                    format!("{at}.{what}"),
                    format!("cannot read {}: {e}", full.display()),
                ));
                None
            }
        }
    };
    let system = match &raw.system {
        Some(p) => Some(read(p, "system")?),
        None => None,
    };
    let user = read(&raw.user, "user")?;
    let mut schema = |s: Option<RawSchema>, what: &str| -> Option<serde_json::Value> {
        match s? {
            RawSchema::Inline(v) => Some(v),
            RawSchema::File(p) => {
                let full = base_dir.join(p);
                let text = std::fs::read_to_string(&full)
                    .map_err(|e| format!("cannot read {}: {e}", full.display()))
                    .and_then(|t| {
                        serde_json::from_str(&t)
                            .map_err(|e| format!("{}: not JSON: {e}", full.display()))
                    });
                match text {
                    Ok(v) => Some(v),
                    Err(e) => {
                        issues.push(Issue::error(format!("{at}.{what}"), e));
                        None
                    }
                }
            }
        }
    };
    let input_schema = schema(raw.input_schema, "input_schema");
    let output_schema = schema(raw.output_schema, "output_schema");
    for (kind, rules) in [
        ("invariants", &raw.invariants),
        ("forbidden", &raw.forbidden),
    ] {
        for (i, r) in rules.iter().enumerate() {
            if r.expr.is_some() == r.regex.is_some() {
                issues.push(Issue::error(
                    format!("{at}.{kind}[{i}]"),
                    "needs exactly one of expr, regex",
                ));
            }
        }
    }
    // The same bounds as a target's `params`, named under the function.
    let params = Params {
        max_tokens: raw.max_tokens,
        temperature: raw.temperature,
        top_p: raw.top_p,
    };
    check_params(&params, at, issues);
    Some(FunctionConfig {
        name,
        model: raw.model,
        version: raw.version,
        system,
        user,
        structured: raw.structured.unwrap_or(if output_schema.is_some() {
            Structured::JsonSchema
        } else {
            Structured::Prompt
        }),
        input_schema,
        output_schema,
        max_reasks: raw.max_reasks.unwrap_or(DEFAULT_MAX_REASKS),
        invariants: raw.invariants,
        forbidden: raw.forbidden,
        capture: raw.capture,
        guardrails: raw.guardrails,
        temperature: params.temperature,
        top_p: params.top_p,
        max_tokens: params.max_tokens,
    })
}

fn check_resilience(r: &Resilience, at: &str, issues: &mut Vec<Issue>) {
    for (what, d) in [
        ("ttft_timeout", r.ttft_timeout),
        ("idle_timeout", r.idle_timeout),
        ("budget_window", r.budget_window),
        ("breaker.window", r.breaker.window),
        ("breaker.open_for", r.breaker.open_for),
    ] {
        if d.is_zero() {
            issues.push(Issue::error(
                format!("{at}.{what}"),
                "must be greater than zero",
            ));
        }
    }
    if r.backoff_base > r.backoff_max {
        issues.push(Issue::error(
            format!("{at}.backoff_base"),
            "must not exceed backoff_max",
        ));
    }
    if !(0.0..=1.0).contains(&r.budget_ratio) {
        issues.push(Issue::error(
            format!("{at}.budget_ratio"),
            "must be between 0 and 1",
        ));
    }
    if !(r.breaker.failure_ratio > 0.0 && r.breaker.failure_ratio <= 1.0) {
        issues.push(Issue::error(
            format!("{at}.breaker.failure_ratio"),
            "must be in (0, 1]",
        ));
    }
    if r.breaker.half_open_probes == 0 {
        issues.push(Issue::error(
            format!("{at}.breaker.half_open_probes"),
            "must be at least 1",
        ));
    }
    if r.max_in_flight == Some(0) {
        issues.push(Issue::error(
            format!("{at}.max_in_flight"),
            "must be at least 1",
        ));
    }
}

fn http_provider(
    raw: RawHttpProvider,
    default_base: &str,
    at: &str,
    env: &dyn Fn(&str) -> Option<String>,
    issues: &mut Vec<Issue>,
    availability: &mut Result<(), String>,
) -> (HttpProvider, Duration, Duration) {
    let base_url = raw
        .base_url
        .unwrap_or_else(|| default_base.to_owned())
        .trim_end_matches('/')
        .to_owned();
    if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
        issues.push(Issue::error(
            format!("{at}.base_url"),
            format!("`{base_url}` must start with http:// or https://"),
        ));
    }
    let mut resolve = |var: &str, what: &str, issues: &mut Vec<Issue>| -> Option<SecretString> {
        let value = env(var).filter(|v| !v.is_empty());
        if value.is_none() {
            if availability.is_ok() {
                *availability = Err(format!("{var} is not set"));
            }
            issues.push(Issue::warning(
                format!("{at}.{what}"),
                format!("environment variable {var} is not set"),
            ));
        }
        value.map(SecretString::from)
    };
    let api_key = raw.api_key.and_then(|s| resolve(&s.env, "api_key", issues));
    let mut headers = Vec::new();
    for (h, v) in raw.headers {
        if http_header_name_ok(&h) {
            let value = match v {
                RawSecretOrValue::Value(v) => Some(SecretString::from(v)),
                RawSecretOrValue::Secret(s) => resolve(&s.env, &format!("headers.{h}"), issues),
            };
            if let Some(value) = value {
                headers.push((h, value));
            }
        } else {
            issues.push(Issue::error(
                format!("{at}.headers.{h}"),
                "not a valid header name",
            ));
        }
    }
    let connect = raw.connect_timeout.unwrap_or(DEFAULT_CONNECT_TIMEOUT);
    let total = raw.timeout.unwrap_or(DEFAULT_TIMEOUT);
    for (what, d) in [("connect_timeout", connect), ("timeout", total)] {
        if d.is_zero() {
            issues.push(Issue::error(
                format!("{at}.{what}"),
                "must be greater than zero",
            ));
        }
    }
    (
        HttpProvider {
            base_url,
            api_key,
            headers,
            query: raw.query.into_iter().collect(),
        },
        connect,
        total,
    )
}

fn http_header_name_ok(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn check_params(p: &Params, at: &str, issues: &mut Vec<Issue>) {
    if p.max_tokens == Some(0) {
        issues.push(Issue::error(
            format!("{at}.max_tokens"),
            "must be greater than zero",
        ));
    }
    if p.temperature.is_some_and(|t| !(0.0..=2.0).contains(&t)) {
        issues.push(Issue::error(
            format!("{at}.temperature"),
            "must be between 0 and 2",
        ));
    }
    if p.top_p.is_some_and(|t| !(0.0..=1.0).contains(&t)) {
        issues.push(Issue::error(
            format!("{at}.top_p"),
            "must be between 0 and 1",
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Config;
    use crate::{Balance, Capture, Link, OnFailure, StoreKind, Trigger};

    fn parse(text: &str, env: &[(&str, &str)]) -> Result<(Config, Vec<Issue>), ConfigError> {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Config::parse(text, Path::new("."), &move |k| {
            env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
        })
    }

    fn error_locations(err: &ConfigError) -> Vec<&str> {
        err.issues
            .iter()
            .filter(|i| i.severity == Severity::Error)
            .map(|i| i.location.as_str())
            .collect()
    }

    #[test]
    fn reports_every_problem_with_its_location() {
        let err = parse(
            r#"
            [server]
            listen = "nowhere"
            [providers.o]
            kind = "openai"
            base_url = "ftp://x"
            [models.m]
            targets = [{ provider = "missing", model = "" , params = { temperature = 3.0 } }]
            "#,
            &[],
        )
        .unwrap_err();
        assert_eq!(
            error_locations(&err),
            [
                "server.listen",
                "providers.o.base_url",
                "models.m.targets[0].provider",
                "models.m.targets[0].model",
                "models.m.targets[0].params.temperature",
            ]
        );
    }

    #[test]
    fn missing_key_makes_provider_unavailable_not_invalid() {
        let text = r#"
            [providers.openai]
            kind = "openai"
            api_key = { env = "KEEL_TEST_KEY" }
            [providers.sim]
            kind = "sim"
            [models.m]
            targets = [{ provider = "openai", model = "gpt-4o" }, { provider = "sim", model = "gpt-4o" }]
        "#;
        let (config, warnings) = parse(text, &[]).unwrap();
        assert_eq!(
            config.providers["openai"].availability,
            Err("KEEL_TEST_KEY is not set".to_owned())
        );
        assert!(
            warnings
                .iter()
                .any(|w| w.location == "models.m.targets[0].provider")
        );
        let (config, _) = parse(text, &[("KEEL_TEST_KEY", "sk-test")]).unwrap();
        assert!(config.providers["openai"].availability.is_ok());
    }

    #[test]
    fn unknown_fields_are_rejected_with_a_line() {
        let err = parse("[server]\nlisten = \"127.0.0.1:1\"\nlisen = 3\n", &[]).unwrap_err();
        assert_eq!(err.issues.len(), 1);
        assert!(
            err.issues[0].location.starts_with("line 3"),
            "{:?}",
            err.issues
        );
        assert!(err.issues[0].message.contains("lisen"));
    }

    #[test]
    fn chains_groups_triggers_and_degradation_are_read() {
        let (config, _) = parse(
            r#"
            [providers.a]
            kind = "sim"
            [providers.a.resilience]
            ttft_timeout = "2s"
            breaker = { consecutive_failures = 3 }
            [providers.b]
            kind = "sim"
            [models.m]
            targets = [
              { provider = "a", model = "x", group = "pool", weight = 3 },
              { provider = "b", model = "y" },
              { provider = "b", model = "z", group = "pool" },
            ]
            balance = "weighted"
            timeout = "30s"
            fallback_on = ["error", "content_filter"]
            on_failure = "static"
            static_message = "busy"
            "#,
            &[],
        )
        .unwrap();
        let a = &config.providers["a"].resilience;
        assert_eq!(a.ttft_timeout, Duration::from_secs(2));
        assert_eq!(a.breaker.consecutive_failures, 3);
        assert_eq!(
            a.breaker.open_for,
            Duration::from_secs(30),
            "unset fields keep defaults"
        );
        let m = &config.models["m"];
        assert_eq!(
            m.chain.len(),
            2,
            "the group is one link, at its first member's place"
        );
        match &m.chain[0] {
            Link::Group { strategy, members } => {
                assert_eq!(*strategy, Balance::Weighted);
                let names: Vec<(&str, u32)> = members
                    .iter()
                    .map(|t| (t.model.as_str(), t.weight))
                    .collect();
                assert_eq!(names, [("x", 3), ("z", 1)]);
            }
            other => panic!("expected a group, got {other:?}"),
        }
        assert_eq!(m.timeout, Duration::from_secs(30));
        assert_eq!(m.fallback_on, [Trigger::Error, Trigger::ContentFilter]);
        assert_eq!(m.on_failure, OnFailure::Static("busy".into()));
        assert_eq!(m.targets().count(), 3);
    }

    #[test]
    fn bad_reliability_settings_are_reported() {
        let err = parse(
            r#"
            [server.admission]
            max_in_flight = 0
            [providers.a]
            kind = "sim"
            [providers.a.resilience]
            budget_ratio = 2.0
            backoff_base = "5s"
            backoff_max = "1s"
            [models.m]
            targets = [{ provider = "a", model = "x", weight = 0 }]
            on_failure = "static"
            "#,
            &[],
        )
        .unwrap_err();
        assert_eq!(
            error_locations(&err),
            [
                "server.admission.max_in_flight",
                "providers.a.resilience.backoff_base",
                "providers.a.resilience.budget_ratio",
                "models.m.targets[0].weight",
                "models.m.static_message",
            ]
        );
    }

    #[test]
    fn base_url_trailing_slash_is_trimmed() {
        let (config, _) = parse(
            "[providers.v]\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:8000/v1/\"\n",
            &[],
        )
        .unwrap();
        match &config.providers["v"].kind {
            ProviderKind::OpenAi(p) => assert_eq!(p.base_url, "http://127.0.0.1:8000/v1"),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn the_request_log_and_traces_are_read_and_checked() {
        // By default: a SQLite file beside the config, redacted bodies, no traces.
        let (config, _) = parse("", &[]).unwrap();
        match &config.log.store {
            StoreKind::Sqlite(p) => assert_eq!(p, &Path::new(".").join("keel.db")),
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(config.log.capture, Capture::Redacted);
        assert!(config.telemetry.otlp.is_none());

        let (config, _) = parse(
            r#"
            [log]
            store = "postgres"
            url = { env = "PG" }
            capture = "hashed"
            [telemetry.otlp]
            endpoint = "http://127.0.0.1:4318/v1/traces"
            headers = { authorization = { env = "OTLP_TOKEN" } }
            [providers.s]
            kind = "sim"
            [models.m]
            targets = [{ provider = "s", model = "x" }]
            capture = "off"
            "#,
            &[
                ("PG", "postgres://u:pw@127.0.0.1/keel"),
                ("OTLP_TOKEN", "t0k3n"),
            ],
        )
        .unwrap();
        assert!(matches!(config.log.store, StoreKind::Postgres(_)));
        assert_eq!(config.log.capture, Capture::Hashed);
        assert_eq!(config.models["m"].capture, Some(Capture::Off));
        let otlp = config.telemetry.otlp.unwrap();
        assert_eq!(otlp.service_name, "keel");
        assert_eq!(otlp.headers.len(), 1);

        let err = parse(
            r#"
            [log]
            store = "postgres"
            url = { env = "UNSET" }
            queue = 0
            [telemetry.otlp]
            endpoint = "127.0.0.1:4318"
            headers = { authorization = { env = "UNSET_TOO" } }
            "#,
            &[],
        )
        .unwrap_err();
        assert_eq!(
            error_locations(&err),
            [
                "log.url",
                "log.queue",
                "telemetry.otlp.endpoint",
                "telemetry.otlp.headers.authorization"
            ]
        );
        let err = parse("[log]\nstore = \"mysql\"\n", &[]).unwrap_err();
        assert_eq!(error_locations(&err), ["log.store"]);
    }

    #[test]
    fn input_limits_are_checked() {
        let err = parse(
            r#"
            [providers.s]
            kind = "sim"
            [models.a]
            targets = [{ provider = "s", model = "x" }]
            max_input_tokens = 0
            on_oversize = "nowhere"
            [models.b]
            targets = [{ provider = "s", model = "x" }]
            on_oversize = "a"
            rate_limit = { requests_per_minute = 0 }
            "#,
            &[],
        )
        .unwrap_err();
        assert_eq!(
            error_locations(&err),
            [
                "models.a.max_input_tokens",
                "models.b.rate_limit.requests_per_minute",
                "models.b.on_oversize",
                "models.a.on_oversize"
            ]
        );
    }

    #[test]
    fn function_sampling_parameters_are_read_and_bounded() {
        // Tests run in the crate's directory: any readable file will do as
        // the prompt (the config reads templates; the server compiles them).
        let function = |params: &str| {
            format!(
                r#"
                [providers.s]
                kind = "sim"
                [models.m]
                targets = [{{ provider = "s", model = "x" }}]
                [functions.f]
                model = "m"
                user = "Cargo.toml"
                {params}
                "#
            )
        };
        let (c, _) = parse(
            &function(
                "temperature = 0.2
top_p = 0.9
max_tokens = 300",
            ),
            &[],
        )
        .unwrap();
        let f = &c.functions["f"];
        assert_eq!(
            (f.temperature, f.top_p, f.max_tokens),
            (Some(0.2), Some(0.9), Some(300))
        );
        let (c, _) = parse(&function(""), &[]).unwrap();
        let f = &c.functions["f"];
        assert_eq!((f.temperature, f.top_p, f.max_tokens), (None, None, None));

        let err = parse(&function("temperature = 5"), &[]).unwrap_err();
        assert_eq!(error_locations(&err), ["functions.f.temperature"]);
        assert!(err.to_string().contains("between 0 and 2"), "{err}");
        let err = parse(
            &function(
                "temperature = -0.1
top_p = 1.5
max_tokens = 0",
            ),
            &[],
        )
        .unwrap_err();
        assert_eq!(
            error_locations(&err),
            [
                "functions.f.max_tokens",
                "functions.f.temperature",
                "functions.f.top_p"
            ]
        );
    }

    #[test]
    fn keys_budgets_redis_and_the_replay_file_are_read_and_checked() {
        let (c, _) = parse(
            r#"
            [auth]
            admin_token = { env = "ADMIN" }
            require_key = true
            [budgets]
            alert_at = [0.9]
            webhook = "http://127.0.0.1:9/alerts"
            [budgets.teams.search]
            usd = 100
            period = "month"
            [budgets.tags.batch]
            usd = 5
            period = "7d"
            [redis]
            url = { env = "REDIS" }
            budgets_when_down = "open"
            [cache]
            file = "answers.jsonl"
            mode = "replay"
            "#,
            &[
                ("ADMIN", "a-long-enough-admin-token"),
                ("REDIS", "redis://127.0.0.1:6379"),
            ],
        )
        .unwrap();
        assert!(c.auth.require_key && c.auth.admin_token.is_some());
        assert_eq!(c.budgets.teams["search"].period, crate::Period::Month);
        assert_eq!(
            c.budgets.tags["batch"].period,
            crate::Period::RollingDays(7)
        );
        assert_eq!(
            (c.budgets.alert_at.as_slice(), c.budgets.default_max_tokens),
            (&[0.9][..], 4096)
        );
        let redis = c.redis.unwrap();
        assert_eq!(redis.budgets_when_down, crate::WhenDown::Open);
        assert_eq!(
            (redis.prefix.as_str(), redis.timeout),
            ("keel", Duration::from_millis(250))
        );
        assert_eq!(c.cassette.unwrap().mode, crate::CassetteMode::Replay);

        let err = parse(
            r#"
            [auth]
            admin_token = { env = "SHORT" }
            [budgets]
            alert_at = [0]
            webhook = "ftp://x"
            [budgets.teams.t]
            usd = -1
            period = "day"
            [redis]
            url = "http://not-redis"
            timeout = "0s"
            [cache]
            file = "answers.jsonl"
            "#,
            &[("SHORT", "short")],
        )
        .unwrap_err();
        assert_eq!(
            error_locations(&err),
            [
                "auth.admin_token",
                "budgets.teams.t.usd",
                "budgets.alert_at",
                "budgets.webhook",
                "redis.url",
                "redis.timeout",
                "cache"
            ]
        );
        let err = parse("[budgets.tags.x]\nusd = 1\nperiod = \"fortnight\"\n", &[]).unwrap_err();
        assert!(err.to_string().contains("not a period"), "{err}");
    }

    #[test]
    fn guardrails_are_read_and_each_action_fits_its_check_and_side() {
        let base = r#"
            [providers.s]
            kind = "sim"
            [models.safe]
            targets = [{ provider = "s", model = "x" }]
            [models.m]
            targets = [{ provider = "s", model = "x" }]
            guardrails = "g"
        "#;
        let (c, _) = parse(
            &format!(
                r#"{base}
                [guardrails.g]
                hold_back = 80
                input = [
                  {{ check = "pii", action = "redact", restore = true, entities = ["EMAIL"] }},
                  {{ check = "injection", action = "route", model = "safe", threshold = 0.7 }},
                  {{ check = "webhook", url = "http://127.0.0.1:9/check", action = "block", fail_open = true }},
                ]
                output = [
                  {{ check = "refusal", action = "reask" }},
                  {{ check = "denied_terms", terms = ["bomb"], action = "block" }},
                  {{ check = "forbidden_json", rules = [{{ name = "no_admin", expr = "output.role == 'admin'" }}], action = "fallback" }},
                ]
                "#
            ),
            &[],
        )
        .unwrap();
        let g = &c.guardrails["g"];
        assert_eq!((g.input.len(), g.output.len(), g.hold_back), (3, 3, 80));
        assert_eq!(
            g.input[0].action,
            crate::GuardAction::Redact { restore: true }
        );
        assert_eq!(
            g.input[1].check,
            crate::CheckKind::Injection { threshold: 0.7 }
        );
        assert_eq!(c.models["m"].guardrails.as_deref(), Some("g"));

        let err = parse(
            &format!(
                r#"{base}
                [guardrails.g]
                input = [
                  {{ check = "refusal", action = "block" }},
                  {{ check = "pii", action = "reask" }},
                  {{ check = "injection", action = "redact" }},
                  {{ check = "telepathy", action = "block" }},
                  {{ check = "pii", action = "explode" }},
                  {{ check = "injection", action = "route", model = "nowhere" }},
                  {{ check = "pii", action = "block", entities = ["SHOE_SIZE"] }},
                ]
                output = [
                  {{ check = "pii", action = "route", model = "safe" }},
                  {{ check = "regex", pattern = "(", action = "flag" }},
                  {{ check = "max_length", action = "block" }},
                  {{ check = "webhook", url = "http://127.0.0.1:9/c", action = "reask" }},
                  {{ check = "pii", action = "block", threshold = 0.9 }},
                  {{ check = "secrets", action = "flag", restore = true }},
                ]
                [models.n]
                targets = [{{ provider = "s", model = "x" }}]
                guardrails = "missing"
                "#
            ),
            &[],
        )
        .unwrap_err();
        assert_eq!(
            error_locations(&err),
            [
                "guardrails.g.input[0].check",
                "guardrails.g.input[1].action",
                "guardrails.g.input[2].action",
                "guardrails.g.input[3].check",
                "guardrails.g.input[4].action",
                "guardrails.g.input[5].model",
                "guardrails.g.input[6].entities",
                "guardrails.g.output[0].action",
                "guardrails.g.output[1].pattern",
                "guardrails.g.output[2].max_chars",
                "guardrails.g.output[3].action",
                "guardrails.g.output[4].threshold",
                "guardrails.g.output[5].restore",
                "models.n.guardrails"
            ]
        );
    }
}
