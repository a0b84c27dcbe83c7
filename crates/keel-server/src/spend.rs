//! Budgets with hard caps, per virtual key, team and tag (the admit
//! phase's last step, after the cache missed).
//!
//! A chat request *reserves* its worst case on every budget that covers its
//! key — counted input tokens (plus an allowance per image) and
//! `max_tokens` (which the route phase sets when the client sent none, so
//! the worst case is bounded), at the dearest price in the model's chain,
//! times the calls validation may make — and is refused
//! with 402 when any of them cannot cover it, naming the budget and when
//! it resets. When the request ends, its record's real cost *settles* the
//! hold (off the request path), and crossed alert thresholds fire
//! ([`crate::alerts`]).
//!
//! Embeddings reserve their estimated input the same way.
//!
//! Function and workflow calls make a varying number of upstream calls, so
//! they have no worst case to reserve: they are admitted while every budget
//! has room left, and settle their real cost the same way.
//!
//! Ledgers live in process, or in Redis when `[redis]` is set, so that
//! replicas share them. An in-process ledger starts from what the request
//! log says its keys spent in the current window (read once per budget,
//! at its first use), so a restart does not reset a budget. Redis unreachable: budgeted requests are refused
//! with 503 (`budgets_when_down = "closed"`, the default) or let through
//! unbudgeted (`"open"`); either way `keel_redis_errors_total` counts it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use keel_config::{Budget, ModelConfig, WhenDown};
use keel_core::Error;
use keel_policy::ledger::{self, LocalLedger, Micros, ScopeWindow, Settled, Short, micros};
use keel_policy::shared::Shared;
use keel_protocol::chat::{ChatRequest, Part};
use keel_store::{Store, StoreError, VirtualKey};
use tokio::sync::OnceCell;
use tokio_util::task::TaskTracker;

use crate::pipeline::unix_ms;
use crate::state::Gateway;
use crate::{alerts, auth};

/// What a hold outlives its request's deadline by before it expires on
/// its own (a process that died between reserve and settle).
const HOLD_MARGIN: Duration = Duration::from_secs(60);
/// A hold for calls without a deadline of their own (functions, workflows).
const CALL_HOLD: Duration = Duration::from_secs(600);
/// The longest reading a budget's earlier spend may take.
const SEED_WAIT: Duration = Duration::from_secs(5);
/// Settles to Redis are retried this many times.
const SETTLE_ATTEMPTS: u32 = 3;

/// The budget ledgers and where they live.
pub(crate) struct Ledgers {
    local: LocalLedger,
    shared: Option<Shared>,
    when_down: WhenDown,
    next_hold: AtomicU64,
    /// Tells this process's holds apart from other replicas' in Redis.
    process: String,
    /// Settles on their way to Redis, waited for at shutdown.
    settling: TaskTracker,
    /// In-process scopes whose earlier spend was read back from the
    /// request log (once each, before their first reserve).
    seeded: Mutex<HashMap<String, Arc<OnceCell<()>>>>,
}

impl Ledgers {
    pub fn new(shared: Option<Shared>, when_down: WhenDown) -> Ledgers {
        Ledgers {
            local: LocalLedger::default(),
            shared,
            when_down,
            next_hold: AtomicU64::new(0),
            process: uuid::Uuid::new_v4().simple().to_string(),
            settling: TaskTracker::new(),
            seeded: Mutex::default(),
        }
    }
}

/// A reservation to settle when the request ends.
#[derive(Debug)]
pub(crate) struct Hold {
    id: String,
    key: Arc<VirtualKey>,
    /// The covering budgets (their windows are taken anew at the settle:
    /// spend goes into the bucket of the moment it is booked).
    scopes: Vec<(String, Budget)>,
    amount: Micros,
    /// Reserved in Redis (else in process).
    shared: bool,
}

/// What a request may cost at most: `calls` upstream calls, each with
/// `input` tokens in and `output` out, at the dearest price in the chain.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Worst {
    pub input: u32,
    pub output: u32,
    pub calls: u32,
}

/// An image's tokens, for reservations: about what the largest image
/// either provider accepts without downscaling costs (Anthropic: ~1,600;
/// OpenAI high detail stays below that). Images are not in the token count.
const IMAGE_TOKENS: u32 = 1_600;

impl Worst {
    /// A chat request's worst case: its counted input (plus an allowance per
    /// image) and its `max_tokens`, for every call validation may make.
    pub fn chat(req: &ChatRequest, counted: u32, calls: u32) -> Worst {
        let images = req
            .messages
            .iter()
            .flat_map(|m| &m.content)
            .filter(|p| matches!(p, Part::Image(_)))
            .count();
        let images = u32::try_from(images).unwrap_or(u32::MAX);
        Worst {
            input: counted.saturating_add(images.saturating_mul(IMAGE_TOKENS)),
            output: req.max_tokens.unwrap_or(0),
            calls,
        }
    }
}

/// Whether any budget covers `key`.
pub(crate) fn budgeted(gw: &Gateway, key: &VirtualKey) -> bool {
    !budgets(gw, key).is_empty()
}

/// Reserves a request's worst case on every budget covering its key.
/// `None`: nothing to settle (no key, no budget, or ledgers down and open).
pub(crate) async fn reserve_worst(
    gw: &Gateway,
    key: Option<&Arc<VirtualKey>>,
    model: &ModelConfig,
    worst: Worst,
    deadline: Duration,
) -> Result<Option<Hold>, Error> {
    let Some(key) = key.filter(|k| budgeted(gw, k)) else {
        return Ok(None);
    };
    let pricing = &gw.inner.pricing;
    let one = model
        .targets()
        .filter_map(|t| pricing.cost(&t.model, u64::from(worst.input), 0, u64::from(worst.output)))
        .fold(0.0, f64::max);
    let amount = micros(one).saturating_mul(i64::from(worst.calls.max(1)));
    reserve(gw, key, amount, deadline + HOLD_MARGIN).await
}

/// Admits a function or workflow call while every budget of its key has
/// room left (a one-micro-dollar hold).
pub(crate) async fn reserve_call(
    gw: &Gateway,
    key: Option<&Arc<VirtualKey>>,
) -> Result<Option<Hold>, Error> {
    match key.filter(|k| budgeted(gw, k)) {
        Some(key) => reserve(gw, key, 1, CALL_HOLD).await,
        None => Ok(None),
    }
}

async fn reserve(
    gw: &Gateway,
    key: &Arc<VirtualKey>,
    amount: Micros,
    ttl: Duration,
) -> Result<Option<Hold>, Error> {
    let ledgers = &gw.inner.ledgers;
    let now = SystemTime::now();
    let named = windows(gw, key, now);
    let scopes: Vec<ScopeWindow> = named.iter().map(|(w, _, _)| w.clone()).collect();
    let id = format!(
        "{}-{}",
        ledgers.process,
        ledgers.next_hold.fetch_add(1, Ordering::Relaxed)
    );
    let outcome = match &ledgers.shared {
        None => {
            seed(gw, &named, now).await?;
            ledgers.local.reserve(&id, amount, &scopes, ttl)
        }
        Some(shared) => match shared.reserve(&id, amount, &scopes, ttl).await {
            Ok(outcome) => outcome,
            Err(e) => {
                gw.inner.sinks.metrics.shared_error("reserve");
                tracing::warn!(error = %e, key_id = %key.id, "budget ledger unreachable");
                return match ledgers.when_down {
                    WhenDown::Closed => Err(Error::budget_unavailable(
                        "the budget ledger is unreachable and budgets fail closed; retry shortly",
                    )),
                    WhenDown::Open => Ok(None),
                };
            }
        },
    };
    match outcome {
        Ok(()) => Ok(Some(Hold {
            id,
            key: key.clone(),
            scopes: named.into_iter().map(|(w, _, b)| (w.scope, b)).collect(),
            amount,
            shared: ledgers.shared.is_some(),
        })),
        Err(short) => Err(refusal(gw, &named, short, amount, now)),
    }
}

/// Settles a hold at the request's real cost — or, when that is `unknown`
/// (calls in flight when the client left), at what was held. Never blocks.
pub(crate) fn settle(gw: &Gateway, hold: Option<Hold>, cost_usd: Option<f64>, unknown: bool) {
    let Some(hold) = hold else { return };
    let actual = if unknown {
        hold.amount
    } else {
        micros(cost_usd.unwrap_or(0.0))
    };
    let gw = gw.clone();
    let now = SystemTime::now();
    let scopes: Vec<ScopeWindow> = hold
        .scopes
        .iter()
        .map(|(scope, budget)| ScopeWindow::at(scope.clone(), budget, now).0)
        .collect();
    if !hold.shared {
        let settled = gw.inner.ledgers.local.settle(&hold.id, actual, &scopes);
        alert(&gw, &hold, &scopes, &settled);
        return;
    }
    // Redis: off the request path, retried (a settle is idempotent per
    // hold); a lost one leaves its hold to expire and the spend unbooked,
    // which the log says.
    if tokio::runtime::Handle::try_current().is_err() {
        return;
    }
    let tracker = gw.inner.ledgers.settling.clone();
    tracker.spawn(async move {
        let Some(shared) = &gw.inner.ledgers.shared else {
            return;
        };
        for attempt in 1..=SETTLE_ATTEMPTS {
            match shared.settle(&hold.id, actual, &scopes).await {
                Ok(settled) => return alert(&gw, &hold, &scopes, &settled),
                Err(e) => {
                    gw.inner.sinks.metrics.shared_error("settle");
                    if attempt == SETTLE_ATTEMPTS {
                        tracing::error!(error = %e, key_id = %hold.key.id, actual_micros = actual, "budget settle failed; this spend is not booked");
                    } else {
                        tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
                    }
                }
            }
        }
    });
}

/// Reads back, once per scope, what its keys spent in the current window
/// before this process started — so that in-process budgets survive a
/// restart. Needs the request log; a store that cannot answer fails the
/// request as an unreachable Redis would (`budgets_when_down`).
async fn seed(
    gw: &Gateway,
    named: &[(ScopeWindow, SystemTime, Budget)],
    now: SystemTime,
) -> Result<(), Error> {
    let Ok(store) = auth::store(gw) else {
        return Ok(());
    };
    let ledgers = &gw.inner.ledgers;
    for (window, _, budget) in named {
        let cell = ledgers
            .seeded
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(window.scope.clone())
            .or_default()
            .clone();
        let read = cell.get_or_try_init(|| async {
            let since = ScopeWindow::start(budget, now);
            let spend = tokio::time::timeout(SEED_WAIT, spent_since(store, &window.scope, since))
                .await
                .map_err(|_| "the request log did not answer in time".to_owned())?
                .map_err(|e| e.to_string())?;
            let mut buckets: Vec<(String, Micros)> = Vec::new();
            for (day, usd) in spend {
                let Some(bucket) = ledger::bucket_of_day(budget.period, day) else {
                    continue;
                };
                match buckets.iter_mut().find(|(b, _)| *b == bucket) {
                    Some((_, sum)) => *sum += micros(usd),
                    None => buckets.push((bucket, micros(usd))),
                }
            }
            ledgers.local.seed(&window.scope, &buckets);
            Ok::<(), String>(())
        });
        if let Err(e) = read.await {
            tracing::warn!(error = %e, scope = %window.scope, "cannot read a budget's earlier spend");
            if ledgers.when_down == WhenDown::Closed {
                return Err(Error::budget_unavailable(format!(
                    "cannot read budget {}'s earlier spend from the request log; retry shortly",
                    window.scope
                )));
            }
        }
    }
    Ok(())
}

/// Per UTC day since `since`, what the keys a scope covers spent.
async fn spent_since(
    store: &Store,
    scope: &str,
    since: SystemTime,
) -> Result<Vec<(i64, f64)>, StoreError> {
    let ids: Vec<String> = match scope.split_once(':') {
        Some(("key", id)) => vec![id.to_owned()],
        Some(("team", team)) => store
            .keys()
            .await?
            .into_iter()
            .filter(|k| k.settings.team.as_deref() == Some(team))
            .map(|k| k.id)
            .collect(),
        Some(("tag", tag)) => store
            .keys()
            .await?
            .into_iter()
            .filter(|k| k.settings.tags.iter().any(|t| t == tag))
            .map(|k| k.id)
            .collect(),
        _ => Vec::new(),
    };
    let since_ms = i64::try_from(unix_ms(since)).unwrap_or(i64::MAX);
    store.spend_by_day(&ids, since_ms).await
}

/// Waits (at most `grace`) for the settles still on their way to Redis.
pub(crate) async fn drain(gw: &Gateway, grace: Duration) {
    let settling = &gw.inner.ledgers.settling;
    settling.close();
    if tokio::time::timeout(grace, settling.wait()).await.is_err() {
        tracing::warn!(
            left = settling.len(),
            "shutdown grace expired: budget settles not booked"
        );
    }
}

/// The spend and live holds of every budget covering `key`, now.
pub(crate) async fn usage(gw: &Gateway, key: &VirtualKey) -> Result<Vec<Usage>, Error> {
    let now = SystemTime::now();
    let named = windows(gw, key, now);
    if gw.inner.ledgers.shared.is_none() {
        seed(gw, &named, now).await?;
    }
    let mut out = Vec::new();
    for (window, resets, budget) in named {
        let (spent, reserved) = match &gw.inner.ledgers.shared {
            None => gw.inner.ledgers.local.usage(&window),
            Some(shared) => shared.usage(&window).await.map_err(|e| {
                gw.inner.sinks.metrics.shared_error("usage");
                Error::budget_unavailable(format!("the budget ledger is unreachable: {e}"))
            })?,
        };
        out.push(Usage {
            scope: window.scope,
            period: budget.period.to_string(),
            limit_usd: budget.usd,
            spent_usd: spent as f64 / 1e6,
            reserved_usd: reserved as f64 / 1e6,
            resets_at_ms: unix_ms(resets),
        });
    }
    Ok(out)
}

/// One budget's state, as the admin API shows it.
#[derive(Debug, serde::Serialize)]
pub(crate) struct Usage {
    pub scope: String,
    pub period: String,
    pub limit_usd: f64,
    pub spent_usd: f64,
    pub reserved_usd: f64,
    pub resets_at_ms: u64,
}

/// Every budget covering `key`: its own, its team's, its tags' (each once).
fn budgets(gw: &Gateway, key: &VirtualKey) -> Vec<(String, Budget)> {
    let config = &gw.config().budgets;
    let s = &key.settings;
    let own = s.budget.map(|b| (format!("key:{}", key.id), b));
    let team = s
        .team
        .as_ref()
        .and_then(|t| config.teams.get(t).map(|b| (format!("team:{t}"), *b)));
    let tags = s
        .tags
        .iter()
        .filter_map(|t| config.tags.get(t).map(|b| (format!("tag:{t}"), *b)));
    let mut all: Vec<(String, Budget)> = Vec::new();
    for (scope, budget) in own.into_iter().chain(team).chain(tags) {
        if !all.iter().any(|(s, _)| *s == scope) {
            all.push((scope, budget));
        }
    }
    all
}

fn windows(
    gw: &Gateway,
    key: &VirtualKey,
    now: SystemTime,
) -> Vec<(ScopeWindow, SystemTime, Budget)> {
    budgets(gw, key)
        .into_iter()
        .map(|(scope, budget)| {
            let (window, resets) = ScopeWindow::at(scope, &budget, now);
            (window, resets, budget)
        })
        .collect()
}

fn refusal(
    gw: &Gateway,
    named: &[(ScopeWindow, SystemTime, Budget)],
    short: Short,
    amount: Micros,
    now: SystemTime,
) -> Error {
    let Some((window, resets, budget)) = named.get(short.index) else {
        return Error::internal("budget refusal for an unknown scope");
    };
    let kind = window.scope.split_once(':').map_or("", |(k, _)| k);
    gw.inner.sinks.metrics.budget_refused(kind);
    let usd = |m: Micros| m as f64 / 1e6;
    Error::budget_exceeded(
        format!(
            "budget {} (${} per {}) cannot cover this request: ${:.6} spent and ${:.6} held by requests in flight, \
             this request may cost up to ${:.6}; the budget resets in {} s (unix {})",
            window.scope,
            budget.usd,
            budget.period,
            usd(short.spent),
            usd(short.reserved),
            usd(amount),
            resets.duration_since(now).unwrap_or_default().as_secs(),
            unix_ms(*resets) / 1000,
        ),
        resets.duration_since(now).unwrap_or_default(),
    )
}

fn alert(gw: &Gateway, hold: &Hold, windows: &[ScopeWindow], settled: &[Settled]) {
    let at = &gw.config().budgets.alert_at;
    for ((window, s), (_, budget)) in windows.iter().zip(settled).zip(&hold.scopes) {
        for threshold in alerts::crossed(at, window.limit, *s) {
            alerts::fire(gw, &window.scope, budget, threshold, s.after);
        }
    }
}
