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
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// Largest request body accepted, in bytes; larger ones get 413.
    pub max_body_bytes: usize,
    /// How long shutdown waits for in-flight requests (streams included).
    pub shutdown_grace: Duration,
}

#[derive(Debug, Clone)]
pub struct ProviderConfig {
    pub name: String,
    pub kind: ProviderKind,
    pub connect_timeout: Duration,
    /// Upper bound on one upstream call, streams included.
    pub timeout: Duration,
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

/// A model alias: the name clients send, mapped to ordered targets.
#[derive(Debug, Clone)]
pub struct ModelConfig {
    pub name: String,
    pub targets: Vec<Target>,
}

#[derive(Debug, Clone)]
pub struct Target {
    pub provider: String,
    /// The model name the upstream knows.
    pub model: String,
    pub params: Params,
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
