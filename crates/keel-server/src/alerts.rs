//! Budget alerts: when a settle carries a budget's spend across one of
//! `[budgets] alert_at` (a fraction of the cap), keel logs a `warn` event
//! (target `keel::budget`), counts `keel_budget_alerts_total`, and POSTs
//! the alert to `[budgets] webhook` if one is set.
//!
//! Each crossing fires once: settles are atomic (in process and in Redis),
//! so exactly one of them sees the spend go from below a threshold to at or
//! above it. The webhook is sent off the request path, retried with
//! back-off ([`ATTEMPTS`] tries); a webhook that stays down loses the alert
//! after a logged error — the log event and the metric remain.
//!
//! The body:
//! `{"scope": "team:search", "kind": "team", "threshold": 0.8, "spent_usd": 81.2,
//! "limit_usd": 100.0, "period": "month", "time_ms": 1795446245000}`

use std::time::{Duration, SystemTime};

use keel_config::Budget;
use keel_policy::ledger::{Micros, Settled};
use serde_json::json;

use crate::pipeline::unix_ms;
use crate::state::Gateway;

/// Tries per alert.
const ATTEMPTS: u32 = 5;
/// Back-off before the second try; doubled for each one after.
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
/// Each try's own time limit.
const TIMEOUT: Duration = Duration::from_secs(5);

/// The thresholds a settle crossed: those `t` with `before < t × limit ≤ after`.
pub(crate) fn crossed(at: &[f64], limit: Micros, s: Settled) -> Vec<f64> {
    at.iter()
        .copied()
        .filter(|t| {
            let mark = (t * limit as f64).ceil() as Micros;
            s.before < mark && mark <= s.after
        })
        .collect()
}

/// Logs, counts and (if configured) sends one alert.
pub(crate) fn fire(gw: &Gateway, scope: &str, budget: &Budget, threshold: f64, spent: Micros) {
    let kind = scope.split_once(':').map_or(scope, |(k, _)| k);
    let spent_usd = spent as f64 / 1e6;
    tracing::warn!(
        target: "keel::budget",
        scope,
        threshold,
        spent_usd,
        limit_usd = budget.usd,
        period = %budget.period,
        "budget alert: {scope} crossed {:.0} % of ${} per {}",
        threshold * 100.0,
        budget.usd,
        budget.period
    );
    gw.inner.sinks.metrics.budget_alert(kind, threshold);
    let Some(url) = gw.config().budgets.webhook.clone() else {
        return;
    };
    let body = json!({
        "scope": scope,
        "kind": kind,
        "threshold": threshold,
        "spent_usd": spent_usd,
        "limit_usd": budget.usd,
        "period": budget.period.to_string(),
        "time_ms": unix_ms(SystemTime::now()),
    });
    let client = gw.inner.http.clone();
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    runtime.spawn(async move {
        let mut backoff = FIRST_BACKOFF;
        for attempt in 1..=ATTEMPTS {
            let sent = client
                .post(&url)
                .timeout(TIMEOUT)
                .json(&body)
                .send()
                .await
                .and_then(reqwest::Response::error_for_status)
                // Never the URL in a log line: a webhook URL is a credential.
                .map_err(reqwest::Error::without_url);
            match sent {
                Ok(_) => return,
                Err(e) if attempt == ATTEMPTS => {
                    tracing::error!(target: "keel::budget", error = %e, attempts = ATTEMPTS, "budget alert webhook failed; alert not delivered");
                }
                Err(e) => {
                    tracing::debug!(target: "keel::budget", error = %e, attempt, "budget alert webhook failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff *= 2;
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_threshold_fires_on_the_settle_that_crosses_it() {
        let at = [0.5, 0.8, 1.0];
        let s = |before, after| Settled { before, after };
        assert_eq!(crossed(&at, 100, s(0, 49)), Vec::<f64>::new());
        assert_eq!(crossed(&at, 100, s(49, 50)), [0.5]);
        assert_eq!(crossed(&at, 100, s(50, 79)), Vec::<f64>::new());
        assert_eq!(crossed(&at, 100, s(10, 100)), [0.5, 0.8, 1.0]);
        assert_eq!(crossed(&at, 100, s(100, 150)), Vec::<f64>::new());
    }
}
