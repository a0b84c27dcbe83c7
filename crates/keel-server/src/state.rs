//! The gateway's shared state: the validated config, the providers built
//! from it once at load, and the live reliability state around them
//! (breakers, retry budgets, in-flight limits, load balancers, the last good
//! answers kept for stale degradation).

use std::collections::HashMap;
use std::sync::Arc;

use keel_config::{Balance, Config, Link, Resilience, WhenDown};
use keel_core::{Error, Provider};
use keel_resilience::admission::{LimitConfig, Limiter};
use keel_resilience::balance::{Group, Strategy};
use keel_resilience::breaker::{Breaker, BreakerConfig};
use keel_resilience::budget::{BudgetConfig, RetryBudget};

use keel_policy::cache::ResponseCache;
use keel_policy::cassette::Cassette;
use keel_policy::pricing::Pricing;
use keel_policy::shared::{Shared, SharedConfig};
use keel_store::{Recorder, Writer};
use secrecy::ExposeSecret;

use crate::auth::Keys;
use crate::functions::Function;
use crate::guard::GuardSet;
use crate::rate::RateLimiters;
use crate::sinks::Sinks;
use crate::spend::Ledgers;
use crate::stale::StaleAnswers;
use crate::workflows::Workflow;

/// Everything a request needs, cheap to clone (one `Arc`).
#[derive(Clone)]
pub struct Gateway {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub config: Config,
    /// Available providers by name (those whose key is set).
    pub upstreams: HashMap<String, Upstream>,
    /// Load balancers by (model alias, index of the group in its chain).
    pub groups: HashMap<(String, usize), Group>,
    /// The gateway-wide in-flight limit.
    pub admission: Limiter,
    pub stale: StaleAnswers,
    /// Functions, compiled once (templates, schemas, rules).
    pub functions: HashMap<String, Function>,
    pub workflows: HashMap<String, Workflow>,
    /// Metrics, the request log, traces.
    pub sinks: Sinks,
    /// Prices per upstream model, for each request's cost.
    pub pricing: Pricing,
    /// Answers kept in memory (when there is no Redis).
    pub cache: ResponseCache,
    /// The record/replay file, when configured.
    pub cassette: Option<Arc<Cassette>>,
    /// Redis, when configured: rate limits, budgets and the cache shared
    /// by replicas.
    pub shared: Option<Shared>,
    /// keel's own rate limits, per model alias and per virtual key.
    pub rate_limits: RateLimiters,
    /// Virtual keys recently read from the store.
    pub keys: Keys,
    /// Budget ledgers.
    pub ledgers: Ledgers,
    /// For keel's own outbound calls (budget alerts, guardrail webhooks).
    pub http: reqwest::Client,
    /// Guardrail sets, compiled once, by name.
    pub guards: HashMap<String, Arc<GuardSet>>,
}

/// One provider and the reliability state that guards it.
pub(crate) struct Upstream {
    pub provider: Arc<dyn Provider>,
    pub breaker: Option<Breaker>,
    pub budget: RetryBudget,
    pub limiter: Option<Limiter>,
    pub settings: Resilience,
}

impl Gateway {
    /// Builds every available provider's client and its reliability state,
    /// metrics and trace export — everything but the request log's store
    /// (see [`Gateway::open`]). Fails only on a provider that cannot be
    /// built at all.
    pub fn new(config: Config) -> Result<Self, Error> {
        Self::build(config, None)
    }

    /// [`Gateway::new`] plus the configured request log: the store opened
    /// (and migrated) and its writer started. What `keel serve` runs.
    pub async fn open(config: Config) -> Result<Self, Error> {
        let log = Sinks::open_log(&config).await?;
        Self::build(config, log)
    }

    fn build(config: Config, log: Option<(Recorder, Writer)>) -> Result<Self, Error> {
        if config.auth.require_key && log.is_none() {
            return Err(Error::internal(
                "[auth] require_key needs the store virtual keys live in, and the request log's store is off",
            ));
        }
        let mut upstreams = HashMap::new();
        for (name, p) in &config.providers {
            if p.availability.is_err() {
                continue;
            }
            let r = &p.resilience;
            let breaker = r.breaker.enabled.then(|| {
                Breaker::new(
                    name.clone(),
                    BreakerConfig {
                        consecutive_failures: r.breaker.consecutive_failures,
                        failure_ratio: r.breaker.failure_ratio,
                        min_requests: r.breaker.min_requests,
                        window: r.breaker.window,
                        open_for: r.breaker.open_for,
                        half_open_probes: r.breaker.half_open_probes,
                    },
                )
            });
            let budget = RetryBudget::new(BudgetConfig {
                ratio: r.budget_ratio,
                min_per_sec: r.budget_min_per_sec,
                window: r.budget_window,
            });
            let limiter = r.max_in_flight.map(|max| {
                Limiter::new(
                    name.clone(),
                    LimitConfig {
                        max_in_flight: max,
                        queue: 0,
                        max_wait: std::time::Duration::ZERO,
                    },
                )
            });
            upstreams.insert(
                name.clone(),
                Upstream {
                    provider: keel_providers::build(p)?,
                    breaker,
                    budget,
                    limiter,
                    settings: r.clone(),
                },
            );
        }
        let mut groups = HashMap::new();
        for (alias, model) in &config.models {
            for (i, link) in model.chain.iter().enumerate() {
                if let Link::Group { strategy, members } = link {
                    let strategy = match strategy {
                        Balance::Weighted => Strategy::Weighted,
                        Balance::LeastInFlight => Strategy::LeastInFlight,
                        Balance::LatencyEwma => Strategy::LatencyEwma,
                    };
                    let weights = members.iter().map(|m| m.weight).collect();
                    groups.insert((alias.clone(), i), Group::new(strategy, weights));
                }
            }
        }
        let a = &config.server.admission;
        let admission = Limiter::new(
            "gateway",
            LimitConfig {
                max_in_flight: a.max_in_flight,
                queue: a.queue,
                max_wait: a.max_wait,
            },
        );
        let mut functions = HashMap::new();
        for (name, f) in &config.functions {
            functions.insert(name.clone(), Function::compile(f).map_err(Error::internal)?);
        }
        let mut guards = HashMap::new();
        for (name, g) in &config.guardrails {
            let set = GuardSet::compile(g)
                .map_err(|e| Error::internal(format!("guardrails.{name}: {e}")))?;
            guards.insert(name.clone(), Arc::new(set));
        }
        let mut workflows = HashMap::new();
        for (name, w) in &config.workflows {
            workflows.insert(name.clone(), Workflow::compile(w).map_err(Error::internal)?);
        }
        let sinks = Sinks::new(&config, log)?;
        let cassette = match &config.cassette {
            None => None,
            Some(c) => Some(Arc::new(
                Cassette::open(&c.path, c.mode).map_err(|e| Error::internal(e.to_string()))?,
            )),
        };
        let shared = match &config.redis {
            None => None,
            Some(r) => Some(
                Shared::new(&SharedConfig {
                    url: r.url.expose_secret().to_owned(),
                    timeout: r.timeout,
                    prefix: r.prefix.clone(),
                })
                .map_err(|e| Error::internal(format!("redis: {e}")))?,
            ),
        };
        let gateway = Gateway {
            inner: Arc::new(Inner {
                sinks,
                pricing: Pricing::new(&config.pricing),
                cache: ResponseCache::new(config.cache_max_bytes),
                cassette,
                rate_limits: RateLimiters::new(&config.models, shared.clone()),
                keys: Keys::new(),
                ledgers: Ledgers::new(
                    shared.clone(),
                    config
                        .redis
                        .as_ref()
                        .map_or(WhenDown::Closed, |r| r.budgets_when_down),
                ),
                http: reqwest::Client::new(),
                guards,
                shared,
                functions,
                workflows,
                config,
                upstreams,
                groups,
                admission,
                stale: StaleAnswers::new(STALE_CAPACITY),
            }),
        };
        crate::breakers::spawn_sync(&gateway);
        Ok(gateway)
    }

    pub(crate) fn config(&self) -> &Config {
        &self.inner.config
    }
}

/// Last good answers kept for `on_failure = "stale"`: enough for the hot
/// requests of a busy service, bounded so memory stays flat.
const STALE_CAPACITY: usize = 1024;
