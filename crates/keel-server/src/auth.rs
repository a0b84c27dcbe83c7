//! Phase 3, **authenticate**: the caller's virtual key, if any, and what it
//! may do.
//!
//! The key is read from `Authorization: Bearer …` or `x-api-key` (what the
//! OpenAI and Anthropic SDKs send). A string shaped like a keel key
//! (`kk-…`) must be a valid, unrevoked key, else 401. Anything else (no
//! header, or some other token an SDK insisted on) is anonymous — refused
//! with 401 when `[auth] require_key` is on.
//!
//! Keys are read from the store and kept for [`KEY_TTL`]: revoking a key
//! on this process takes effect at once, on other replicas within that
//! time. Lookups that miss the cache are bounded by [`STORE_WAIT`].

use std::sync::Arc;
use std::time::Duration;

use axum::http::HeaderMap;
use keel_core::Error;
use keel_protocol::chat::ChatRequest;
use keel_store::{Store, VirtualKey};
use moka::sync::Cache;

use crate::state::Gateway;

/// How long a key read from the store is trusted before it is read again.
pub(crate) const KEY_TTL: Duration = Duration::from_secs(10);
/// Keys kept in memory at most.
const KEY_CAPACITY: u64 = 100_000;
/// The longest a key lookup may wait for the store.
const STORE_WAIT: Duration = Duration::from_secs(2);

/// Keys recently read from the store, by id — and ids the store does not
/// know (ids are random, so a miss is a guess: cached, guessing costs no
/// store query).
pub(crate) struct Keys {
    cache: Cache<String, Option<Arc<VirtualKey>>>,
}

impl Keys {
    pub fn new() -> Keys {
        Keys {
            cache: Cache::builder()
                .max_capacity(KEY_CAPACITY)
                .time_to_live(KEY_TTL)
                .build(),
        }
    }

    /// Forgets a key (after it was revoked here).
    pub fn forget(&self, id: &str) {
        self.cache.invalidate(id);
    }
}

/// The caller's key: `None` for an anonymous caller (allowed only when
/// keys are not required).
pub(crate) async fn authenticate(
    gw: &Gateway,
    headers: &HeaderMap,
) -> Result<Option<Arc<VirtualKey>>, Error> {
    let presented = presented(headers).filter(|k| keel_store::looks_like_key(k));
    let Some(presented) = presented else {
        if gw.config().auth.require_key {
            return Err(Error::unauthorized(
                "this keel needs a virtual key: send `Authorization: Bearer kk-…` (or `x-api-key`)",
            ));
        }
        return Ok(None);
    };
    let invalid = || Error::unauthorized("the virtual key is not valid");
    let (id, secret) = keel_store::parse_key(presented).ok_or_else(invalid)?;
    let key = lookup(gw, id).await?.ok_or_else(invalid)?;
    if !key.verify(secret) {
        return Err(invalid());
    }
    if key.revoked_ms.is_some() {
        return Err(Error::unauthorized(format!(
            "the virtual key {id} has been revoked"
        )));
    }
    Ok(Some(key))
}

/// 403 unless the key may call `model`.
pub(crate) fn allow(key: Option<&VirtualKey>, model: &str) -> Result<(), Error> {
    match key {
        Some(k)
            if !k.settings.models.is_empty() && !k.settings.models.iter().any(|m| m == model) =>
        {
            Err(Error::forbidden(format!(
                "the virtual key {} may not call model `{model}` (it may call: {})",
                k.id,
                k.settings.models.join(", ")
            )))
        }
        _ => Ok(()),
    }
}

/// The key's own input limits, like a model's but never rerouted: a
/// `max_tokens` over its `max_output_tokens` gets 400, an input over its
/// `max_input_tokens` 413.
pub(crate) fn limits(
    key: Option<&VirtualKey>,
    req: &ChatRequest,
    counted: u32,
) -> Result<(), Error> {
    let Some(k) = key else { return Ok(()) };
    if let (Some(max), Some(asked)) = (k.settings.max_output_tokens, req.max_tokens)
        && asked > max
    {
        return Err(Error::invalid_request(format!(
            "max_tokens {asked} is over the virtual key {}'s limit of {max}",
            k.id
        ))
        .with_param("max_tokens"));
    }
    match k.settings.max_input_tokens {
        Some(max) if counted > max => Err(Error::payload_too_large(0).with_message(format!(
            "the input is {counted} tokens, over the virtual key {}'s limit of {max}",
            k.id
        ))),
        _ => Ok(()),
    }
}

async fn lookup(gw: &Gateway, id: &str) -> Result<Option<Arc<VirtualKey>>, Error> {
    if let Some(known) = gw.inner.keys.cache.get(id) {
        return Ok(known);
    }
    let store = store(gw)?;
    let found = tokio::time::timeout(STORE_WAIT, store.key(id))
        .await
        .map_err(|_| Error::unavailable("the key store did not answer in time"))?
        .map_err(|e| {
            tracing::warn!(error = %e, "key lookup failed");
            Error::unavailable("the key store is unavailable")
        })?;
    let found = found.map(Arc::new);
    gw.inner.keys.cache.insert(id.to_owned(), found.clone());
    Ok(found)
}

/// The store keys live in: the request log's.
pub(crate) fn store(gw: &Gateway) -> Result<&Store, Error> {
    gw.inner
        .sinks
        .recorder
        .as_ref()
        .map(keel_store::Recorder::store)
        .ok_or_else(|| Error::unavailable("virtual keys need a store, and log.store is off"))
}

/// The presented credential: a keel-shaped one wherever it is (an SDK may
/// also send a placeholder in the other header), else whatever was sent.
fn presented(headers: &HeaderMap) -> Option<&str> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let bearer = header("authorization")
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim);
    let api_key = header("x-api-key").map(str::trim);
    [bearer, api_key]
        .into_iter()
        .flatten()
        .find(|k| keel_store::looks_like_key(k))
        .or(bearer)
        .or(api_key)
}
