//! Cost control: `[auth]` (virtual keys, the admin token), `[budgets]`,
//! `[redis]` (state shared by replicas) and `[cache]`'s record/replay file.

use std::path::Path;
use std::time::Duration;

use secrecy::SecretString;

use super::Issue;
use crate::raw::{RawAuth, RawBudgets, RawCache, RawRedis, RawSecret, RawSecretOrValue};
use crate::{AuthConfig, Budget, BudgetsConfig, Cassette, RedisConfig, WhenDown};

const DEFAULT_MAX_TOKENS: u32 = 4096;
const DEFAULT_ALERTS: [f64; 3] = [0.5, 0.8, 1.0];
/// Redis answers in well under a millisecond on a healthy network; a
/// quarter second means it is not healthy.
const DEFAULT_REDIS_TIMEOUT: Duration = Duration::from_millis(250);
/// Shorter than this, an admin token is guessable.
const MIN_ADMIN_TOKEN: usize = 16;

pub(super) fn auth_config(
    raw: RawAuth,
    env: &dyn Fn(&str) -> Option<String>,
    issues: &mut Vec<Issue>,
) -> AuthConfig {
    let admin_token = raw.admin_token.and_then(|s| {
        let token = secret(&s, "auth.admin_token", env, issues)?;
        if token.len() < MIN_ADMIN_TOKEN {
            issues.push(Issue::error(
                "auth.admin_token",
                format!("must be at least {MIN_ADMIN_TOKEN} characters"),
            ));
        }
        Some(SecretString::from(token))
    });
    AuthConfig {
        admin_token,
        require_key: raw.require_key,
    }
}

pub(super) fn budgets_config(raw: RawBudgets, issues: &mut Vec<Issue>) -> BudgetsConfig {
    let groups = [("teams", &raw.teams), ("tags", &raw.tags)];
    for (kind, budgets) in groups {
        for (name, budget) in budgets {
            check_budget(budget, &format!("budgets.{kind}.{name}"), issues);
        }
    }
    let alert_at = raw.alert_at.unwrap_or_else(|| DEFAULT_ALERTS.to_vec());
    if alert_at.iter().any(|a| !a.is_finite() || *a <= 0.0) {
        issues.push(Issue::error(
            "budgets.alert_at",
            "each threshold is a fraction of the budget, more than 0 (0.8 = 80 %)",
        ));
    }
    if let Some(url) = &raw.webhook
        && !(url.starts_with("http://") || url.starts_with("https://"))
    {
        issues.push(Issue::error(
            "budgets.webhook",
            format!("`{url}` must start with http:// or https://"),
        ));
    }
    let default_max_tokens = raw.default_max_tokens.unwrap_or(DEFAULT_MAX_TOKENS);
    if default_max_tokens == 0 {
        issues.push(Issue::error(
            "budgets.default_max_tokens",
            "must be at least 1",
        ));
    }
    BudgetsConfig {
        teams: raw.teams,
        tags: raw.tags,
        default_max_tokens,
        alert_at,
        webhook: raw.webhook,
    }
}

fn check_budget(budget: &Budget, at: &str, issues: &mut Vec<Issue>) {
    if let Err(e) = budget.check() {
        issues.push(Issue::error(format!("{at}.usd"), e));
    }
}

pub(super) fn redis_config(
    raw: Option<RawRedis>,
    env: &dyn Fn(&str) -> Option<String>,
    issues: &mut Vec<Issue>,
) -> Option<RedisConfig> {
    let raw = raw?;
    let url = match raw.url {
        RawSecretOrValue::Value(v) => v,
        RawSecretOrValue::Secret(s) => secret(&s, "redis.url", env, issues)?,
    };
    // No TLS client is built in: a `rediss://` URL would fail at start.
    if !url.starts_with("redis://") {
        issues.push(Issue::error(
            "redis.url",
            "must start with redis:// (TLS to Redis, rediss://, is not supported: use a local TLS proxy)",
        ));
    }
    let timeout = raw.timeout.unwrap_or(DEFAULT_REDIS_TIMEOUT);
    if timeout.is_zero() {
        issues.push(Issue::error("redis.timeout", "must be more than 0"));
    }
    Some(RedisConfig {
        url: SecretString::from(url),
        timeout,
        prefix: raw.prefix.unwrap_or_else(|| "keel".to_owned()),
        budgets_when_down: raw.budgets_when_down.unwrap_or(WhenDown::Closed),
    })
}

pub(super) fn cassette(
    raw: &RawCache,
    base_dir: &Path,
    issues: &mut Vec<Issue>,
) -> Option<Cassette> {
    match (&raw.file, raw.mode) {
        (None, None) => None,
        (Some(path), Some(mode)) => Some(Cassette {
            path: if path.is_relative() {
                base_dir.join(path)
            } else {
                path.clone()
            },
            mode,
        }),
        (Some(_), None) | (None, Some(_)) => {
            issues.push(Issue::error(
                "cache",
                "a record/replay file needs both `file` and `mode` (record or replay)",
            ));
            None
        }
    }
}

fn secret(
    s: &RawSecret,
    at: &str,
    env: &dyn Fn(&str) -> Option<String>,
    issues: &mut Vec<Issue>,
) -> Option<String> {
    let value = env(&s.env).filter(|v| !v.is_empty());
    if value.is_none() {
        issues.push(Issue::error(
            at,
            format!("environment variable {} is not set", s.env),
        ));
    }
    value
}
