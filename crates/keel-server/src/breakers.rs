//! Circuit breakers shared by replicas, when `[redis]` is set: every
//! [`SYNC_EVERY`] each replica tells the others which of its breakers are
//! open (and for how much longer), and opens its own breaker for a target
//! another replica found broken — so a dead provider is found out once,
//! not once per replica. Each breaker still half-opens and probes on its
//! own.
//!
//! Choices: a background sync rather than a Redis call per attempt keeps
//! Redis off the request path, at the price of up to [`SYNC_EVERY`] of lag.
//! Redis down: breakers are simply per process again, and the failed syncs
//! count in `keel_redis_errors_total{op="breaker"}`.

use std::sync::{Arc, Weak};
use std::time::Duration;

use keel_policy::shared::Shared;

use crate::state::{Gateway, Inner};

pub(crate) const SYNC_EVERY: Duration = Duration::from_secs(1);

/// Starts the sync for `gw` (a no-op without Redis or outside a runtime);
/// it ends by itself when the gateway is dropped.
pub(crate) fn spawn_sync(gw: &Gateway) {
    let Some(shared) = gw.inner.shared.clone() else {
        return;
    };
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let weak = Arc::downgrade(&gw.inner);
    runtime.spawn(async move {
        loop {
            tokio::time::sleep(SYNC_EVERY).await;
            if !sync(&weak, &shared).await {
                return;
            }
        }
    });
}

/// One round; `false` once the gateway is gone.
async fn sync(weak: &Weak<Inner>, shared: &Shared) -> bool {
    let Some(inner) = weak.upgrade() else {
        return false;
    };
    for (name, upstream) in &inner.upstreams {
        let Some(breaker) = &upstream.breaker else {
            continue;
        };
        let synced = match breaker.open_remaining() {
            Some(left) => shared.breaker_open(name, left).await,
            None => shared.breaker_open_for(name).await.map(|open| {
                if let Some(left) = open {
                    breaker.open_for(left, "open on another replica");
                }
            }),
        };
        if let Err(e) = synced {
            inner.sinks.metrics.shared_error("breaker");
            tracing::debug!(error = %e, provider = %name, "breaker sync failed");
        }
    }
    true
}
