//! Phase 5, **cache**: an exact-match answer, when the route or the request
//! asks for one, from three places in order:
//!
//! 1. the record/replay file (`[cache] file`), when configured — then every
//!    chat request goes through this phase; in `replay` mode a request not
//!    in the file ends here with 404 `replay_miss`, no upstream called;
//! 2. Redis, when `[redis]` is set (shared by replicas; an unreachable
//!    Redis is a miss, counted in `keel_redis_errors_total{op="cache"}`);
//! 3. else this process's memory (moka, bounded in bytes).
//!
//! Only fresh, whole, successful answers are stored (after validation,
//! never a degraded one, never a stream that did not end well); see the
//! callers in `pipeline.rs` and `stream.rs`.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::http::HeaderMap;
use keel_config::{CassetteMode, ModelConfig};
use keel_core::Error;
use keel_policy::cache::ResponseCache;
use keel_protocol::chat::{ChatRequest, ChatResponse};
use serde::{Deserialize, Serialize};

use crate::pipeline::unix_ms;
use crate::state::Gateway;

/// TTL for `x-keel-cache: use` on a route with no `cache_ttl`.
const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(300);

/// How a request uses the response cache: the route's `cache_ttl`, or
/// `x-keel-cache: use` (with the default TTL); `skip` bypasses it,
/// `refresh` calls the upstream and stores the new answer;
/// `x-keel-cache-max-age: SECONDS` refuses older answers.
pub(crate) struct Caching {
    pub key: [u8; 32],
    pub ttl: Duration,
    pub lookup: bool,
    pub max_age: Option<Duration>,
    /// The alias asked for (named in the record/replay file).
    pub model: String,
}

impl Caching {
    pub fn of(
        gw: &Gateway,
        headers: &HeaderMap,
        model: &ModelConfig,
        req: &ChatRequest,
    ) -> Option<Caching> {
        let asked = headers
            .get("x-keel-cache")
            .and_then(|v| v.to_str().ok())
            .map(|v| v.trim().to_ascii_lowercase());
        let replaying = gw.inner.cassette.is_some();
        let (lookup, ttl) = match (asked.as_deref(), model.cache_ttl) {
            // A record/replay file answers whatever the request says.
            _ if replaying => (true, model.cache_ttl.unwrap_or(DEFAULT_CACHE_TTL)),
            (Some("skip"), _) | (None, None) => return None,
            (Some("refresh"), ttl) => (false, ttl.unwrap_or(DEFAULT_CACHE_TTL)),
            (Some("use"), ttl) => (true, ttl.unwrap_or(DEFAULT_CACHE_TTL)),
            (_, Some(ttl)) => (true, ttl),
            (Some(_), None) => return None,
        };
        let max_age = headers
            .get("x-keel-cache-max-age")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        Some(Caching {
            key: ResponseCache::key(req),
            ttl,
            lookup,
            max_age,
            model: req.model.clone(),
        })
    }
}

/// What Redis holds per answer: when it was stored (for max-age) and the answer.
#[derive(Serialize, Deserialize)]
struct Stored {
    stored_ms: u64,
    response: ChatResponse,
}

/// The stored answer, if any; `Err` only for a replay miss.
pub(crate) async fn lookup(gw: &Gateway, c: &Caching) -> Result<Option<Arc<ChatResponse>>, Error> {
    if let Some(cassette) = &gw.inner.cassette {
        if let Some(answer) = cassette.get(&c.key) {
            return Ok(Some(answer));
        }
        if cassette.mode() == CassetteMode::Replay {
            return Err(Error::replay_miss(format!(
                "no recorded answer for this request to model `{}` in the replay file; record it first ([cache] mode = \"record\")",
                c.model
            )));
        }
    }
    if !c.lookup {
        return Ok(None);
    }
    let Some(shared) = &gw.inner.shared else {
        return Ok(gw.inner.cache.get(&c.key, c.max_age).map(|e| e.response));
    };
    let bytes = match shared.cache_get(&c.key).await {
        Ok(bytes) => bytes,
        Err(e) => {
            gw.inner.sinks.metrics.shared_error("cache");
            tracing::debug!(error = %e, "shared cache unreachable: a miss");
            None
        }
    };
    let Some(stored) = bytes.and_then(|b| serde_json::from_slice::<Stored>(&b).ok()) else {
        return Ok(None);
    };
    let age = Duration::from_millis(unix_ms(SystemTime::now()).saturating_sub(stored.stored_ms));
    Ok(c.max_age
        .is_none_or(|max| age <= max)
        .then(|| Arc::new(stored.response)))
}

/// Keeps a fresh answer: in the record file (record mode), and in Redis
/// (written off the request path) or memory.
pub(crate) fn store(gw: &Gateway, c: &Caching, answer: ChatResponse) {
    if let Some(cassette) = &gw.inner.cassette
        && let Err(e) = cassette.record(c.key, &c.model, &answer)
    {
        tracing::error!(error = %e, "could not append to the record file");
    }
    let Some(shared) = gw.inner.shared.clone() else {
        gw.inner.cache.put(c.key, answer, c.ttl);
        return;
    };
    let Ok(bytes) = serde_json::to_vec(&Stored {
        stored_ms: unix_ms(SystemTime::now()),
        response: answer,
    }) else {
        return;
    };
    let (gw, key, ttl) = (gw.clone(), c.key, c.ttl);
    tokio::spawn(async move {
        if let Err(e) = shared.cache_put(&key, &bytes, ttl).await {
            gw.inner.sinks.metrics.shared_error("cache");
            tracing::debug!(error = %e, "shared cache unreachable: answer not stored");
        }
    });
}
