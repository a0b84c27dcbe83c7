//! Raw → validated. Every check pushes an [`Issue`] with the key path it is
//! about, so one run of `keel config check` shows every problem at once.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use secrecy::SecretString;

use crate::raw::{RawConfig, RawHttpProvider, RawProvider, RawSecretOrValue};
use crate::{
    Config, ConfigError, HttpProvider, ModelConfig, Params, ProviderConfig, ProviderKind,
    ServerConfig, SimConfig, Target,
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
    };

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
        if model.targets.is_empty() {
            issues.push(Issue::error(
                format!("{at}.targets"),
                "needs at least one target",
            ));
        }
        let mut targets = Vec::new();
        for (i, t) in model.targets.into_iter().enumerate() {
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
            check_params(&t.params, &format!("{tat}.params"), &mut issues);
            targets.push(Target {
                provider: t.provider,
                model: t.model,
                params: t.params,
            });
        }
        let usable = targets.iter().any(|t| {
            providers
                .get(&t.provider)
                .is_some_and(|p| p.availability.is_ok())
        });
        if !usable && !targets.is_empty() {
            issues.push(Issue::warning(
                at.clone(),
                "no target is available: requests for this model get 503",
            ));
        }
        models.insert(name.clone(), ModelConfig { name, targets });
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
        },
        issues,
    ))
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
        availability,
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

    fn parse(text: &str, env: &[(&str, &str)]) -> Result<(Config, Vec<Issue>), ConfigError> {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Config::parse(text, Path::new("."), &move |k| {
            env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
        })
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
        let locations: Vec<&str> = err
            .issues
            .iter()
            .filter(|i| i.severity == Severity::Error)
            .map(|i| i.location.as_str())
            .collect();
        assert_eq!(
            locations,
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
}
