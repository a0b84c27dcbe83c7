//! keel's own rate limits, per model alias (`rate_limit` in `[models.*]`)
//! and per virtual key (its `rate_limit`): requests and tokens per minute,
//! GCRA with a minute's burst. A request takes one request slot and its
//! tokens (counted input plus `max_tokens`) from each, or gets 429 +
//! `Retry-After` naming keel's limit (not a provider's).
//!
//! In process they are governor limiters; with `[redis]` they are one GCRA
//! per limit in Redis, shared by every replica. A Redis call that fails
//! falls back to this process's own limiter for that request (a limit per
//! replica, not none) and counts `keel_redis_errors_total{op="rate_limit"}`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use keel_config::{ModelConfig, RateLimit};
use keel_core::Error;
use keel_policy::rate::{RateLimits, Refused};
use keel_policy::shared::Shared;
use keel_store::VirtualKey;
use moka::sync::Cache;

use crate::state::Gateway;

/// Per-key limiters kept at most (idle ones expire).
const KEY_LIMITERS: u64 = 100_000;
const KEY_IDLE: Duration = Duration::from_secs(600);

pub(crate) struct RateLimiters {
    models: HashMap<String, RateLimits>,
    keys: Cache<String, Arc<RateLimits>>,
    shared: Option<Shared>,
}

impl RateLimiters {
    pub fn new(
        models: &std::collections::BTreeMap<String, ModelConfig>,
        shared: Option<Shared>,
    ) -> Self {
        RateLimiters {
            models: models
                .iter()
                .filter_map(|(alias, m)| m.rate_limit.map(|r| (alias.clone(), RateLimits::new(&r))))
                .collect(),
            keys: Cache::builder()
                .max_capacity(KEY_LIMITERS)
                .time_to_idle(KEY_IDLE)
                .build(),
            shared,
        }
    }
}

/// Takes the request from the model's limits, then the key's.
pub(crate) async fn admit(
    gw: &Gateway,
    model: &ModelConfig,
    key: Option<&VirtualKey>,
    tokens: u32,
) -> Result<(), Error> {
    let limiters = &gw.inner.rate_limits;
    if let (Some(rate), Some(local)) = (model.rate_limit, limiters.models.get(&model.name)) {
        let who = format!("model `{}`", model.name);
        take(gw, &format!("model:{}", model.name), &rate, local, tokens)
            .await
            .map_err(|r| refused(&who, &r))?;
    }
    if let Some(key) = key
        && let Some(rate) = key.settings.rate_limit
    {
        let local = limiters
            .keys
            .get_with(key.id.clone(), || Arc::new(RateLimits::new(&rate)));
        let who = format!("virtual key {}", key.id);
        take(gw, &format!("key:{}", key.id), &rate, &local, tokens)
            .await
            .map_err(|r| refused(&who, &r))?;
    }
    Ok(())
}

async fn take(
    gw: &Gateway,
    name: &str,
    rate: &RateLimit,
    local: &RateLimits,
    tokens: u32,
) -> Result<(), Refused> {
    let Some(shared) = &gw.inner.rate_limits.shared else {
        return local.admit(tokens);
    };
    let limits = [
        ("requests_per_minute", rate.requests_per_minute, 1),
        ("tokens_per_minute", rate.tokens_per_minute, tokens),
    ];
    for (limit, per_minute, cost) in limits {
        let Some(per_minute) = per_minute.filter(|n| *n > 0) else {
            continue;
        };
        match shared
            .gcra(&format!("{name}:{limit}"), per_minute, cost)
            .await
        {
            Ok(Ok(())) => {}
            Ok(Err(retry_after)) => {
                return Err(Refused {
                    limit,
                    per_minute,
                    retry_after,
                });
            }
            Err(e) => {
                gw.inner.sinks.metrics.shared_error("rate_limit");
                tracing::warn!(error = %e, limit = name, "shared rate limit unreachable; using this process's");
                return local.admit(tokens);
            }
        }
    }
    Ok(())
}

fn refused(who: &str, r: &Refused) -> Error {
    Error::rate_limited(
        format!(
            "keel's rate limit for {who} ({} {}) is reached; retry in {:.1} s",
            r.per_minute,
            r.limit.replace('_', " "),
            r.retry_after.as_secs_f64()
        ),
        r.retry_after,
    )
}
