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
//!
//! Functions (and so workflows) do not pass this phase: their validation
//! loop consults the record/replay file — and only it — for every ask
//! ([`ask_key`], [`replayed`], [`record`]; see `validate.rs`).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::http::HeaderMap;
use keel_config::{CassetteMode, ModelConfig};
use keel_core::Error;
use keel_policy::cache::ResponseCache;
use keel_protocol::chat::{ChatRequest, ChatResponse};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

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

/// The record/replay file's answer under `key` (`model`: the alias asked,
/// for the miss's message): `None` without a file, or on a miss while
/// recording; `Err` (404 `replay_miss`) on a miss while replaying — the
/// caller then calls no upstream.
pub(crate) fn replayed(
    gw: &Gateway,
    key: &[u8; 32],
    model: &str,
) -> Result<Option<Arc<ChatResponse>>, Error> {
    let Some(cassette) = &gw.inner.cassette else {
        return Ok(None);
    };
    if let Some(answer) = cassette.get(key) {
        return Ok(Some(answer));
    }
    if cassette.mode() == CassetteMode::Replay {
        return Err(Error::replay_miss(format!(
            "no recorded answer for this request to model `{model}` in the replay file; record it first ([cache] mode = \"record\", or `keel eval run --record FILE`)"
        )));
    }
    Ok(None)
}

/// Appends a fresh answer to the record file (record mode only, once per
/// key; a failed write is logged: the request has its answer).
pub(crate) fn record(gw: &Gateway, key: [u8; 32], model: &str, answer: &ChatResponse) {
    if let Some(cassette) = &gw.inner.cassette
        && let Err(e) = cassette.record(key, model, answer)
    {
        tracing::error!(error = %e, "could not append to the record file");
    }
}

/// The record/replay file's key for one ask of the validation loop: the
/// ask as built (the alias as asked, re-ask turns included), hashed like
/// any request. After a link's re-asks ran out, the loop falls back and
/// asks the first conversation again: asks after the `fallbacks`-th such
/// fall-back have the count in their key too, so that each round is
/// recorded and replayed as its own answers rather than the first round's.
/// (The round, not the link: the file does not say which link answered.)
pub(crate) fn ask_key(req: &ChatRequest, fallbacks: u32) -> [u8; 32] {
    let key = ResponseCache::key(req);
    if fallbacks == 0 {
        return key;
    }
    let mut hash = Sha256::new();
    hash.update(key);
    hash.update(format!("fallback:{fallbacks}").as_bytes());
    hash.finalize().into()
}

/// The stored answer, if any; `Err` only for a replay miss.
pub(crate) async fn lookup(gw: &Gateway, c: &Caching) -> Result<Option<Arc<ChatResponse>>, Error> {
    if let Some(answer) = replayed(gw, &c.key, &c.model)? {
        return Ok(Some(answer));
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
    record(gw, c.key, &c.model, &answer);
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
