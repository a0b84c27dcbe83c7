//! A circuit breaker per target. Closed, it lets every call through and opens
//! after `consecutive_failures` failures in a row, or when the failures over a
//! sliding `window` reach `failure_ratio` of at least `min_requests` calls.
//! Open, it refuses at once (`try_acquire` → `None`, so the caller skips the
//! target) until `open_for` has passed; then it is half-open and lets
//! `half_open_probes` calls through: a probe success closes it, a probe
//! failure opens it again for another `open_for`.
//!
//! Choices:
//! - One `std::sync::Mutex` around a small struct; the Open → HalfOpen move is
//!   made lazily by whoever looks next, so there is no timer task.
//! - Every state change bumps a generation that permits carry: an outcome
//!   reported after the state changed (a call started while closed that ends
//!   while open or half-open) is ignored, so it can neither reopen a breaker
//!   nor pass for a probe.
//! - A permit dropped unreported (client went away) counts as neither success
//!   nor failure and frees its half-open probe slot.
//! - Closing clears the window and the consecutive count; `half_open_probes`
//!   of 0 is taken as 1 (else the breaker could never close), and a
//!   `failure_ratio` of 0 or less disables the ratio rule.
//! - State changes are logged after the lock is released: `warn!` when it
//!   opens, `info!` otherwise, with fields `breaker`, `from`, `to`, `why`.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

use crate::budget::Window;

#[derive(Debug, Clone, PartialEq)]
pub struct BreakerConfig {
    /// Open after this many failures in a row (0 = off).
    pub consecutive_failures: u32,
    /// Or when failures / requests over `window` reach this ratio ...
    pub failure_ratio: f64,
    /// ... with at least this many requests in the window.
    pub min_requests: u32,
    pub window: Duration,
    /// How long it stays open before turning half-open.
    pub open_for: Duration,
    /// Calls let through while half-open.
    pub half_open_probes: u32,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            consecutive_failures: 5,
            failure_ratio: 0.5,
            min_requests: 20,
            window: Duration::from_secs(30),
            open_for: Duration::from_secs(30),
            half_open_probes: 1,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Closed,
    Open,
    HalfOpen,
}

/// What /readyz shows for one breaker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BreakerSnapshot {
    pub state: State,
    /// Times the breaker has opened since start (a counter for metrics).
    pub opened_total: u64,
    pub consecutive_failures: u32,
    pub window_requests: u64,
    pub window_failures: u64,
}

#[derive(Debug)]
pub struct Breaker {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    name: String,
    config: BreakerConfig,
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    state: State,
    generation: u64,
    consecutive_failures: u32,
    /// `total` = reported calls, `marked` = failures.
    window: Window,
    opened_at: Instant,
    opened_total: u64,
    probes_in_flight: u32,
}

struct Transition {
    from: State,
    to: State,
    why: String,
}

impl Breaker {
    pub fn new(name: impl Into<String>, config: BreakerConfig) -> Self {
        let now = Instant::now();
        let inner = Inner {
            state: State::Closed,
            generation: 0,
            consecutive_failures: 0,
            window: Window::new(config.window, now),
            opened_at: now,
            opened_total: 0,
            probes_in_flight: 0,
        };
        let shared = Shared {
            name: name.into(),
            config,
            inner: Mutex::new(inner),
        };
        Self {
            shared: Arc::new(shared),
        }
    }

    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The current state; Open turns HalfOpen once `open_for` has passed.
    pub fn state(&self) -> State {
        self.shared.with(|inner, _| (inner.state, None))
    }

    /// `None` when open (or half-open with every probe slot taken): skip this target at once.
    pub fn try_acquire(&self) -> Option<BreakerPermit> {
        let probes = self.shared.config.half_open_probes.max(1);
        let (generation, probe) = self.shared.with(|inner, _| {
            let taken = match inner.state {
                State::Closed => Some(false),
                State::HalfOpen if inner.probes_in_flight < probes => {
                    inner.probes_in_flight += 1;
                    Some(true)
                }
                State::HalfOpen | State::Open => None,
            };
            (taken.map(|probe| (inner.generation, probe)), None)
        })?;
        Some(BreakerPermit {
            shared: Arc::clone(&self.shared),
            generation,
            probe,
            reported: false,
        })
    }

    /// How much longer it stays open, when open.
    pub fn open_remaining(&self) -> Option<Duration> {
        self.shared.with(|inner, now| {
            let open = inner.state == State::Open;
            let left = self
                .shared
                .config
                .open_for
                .saturating_sub(now.duration_since(inner.opened_at));
            (open.then_some(left), None)
        })
    }

    /// Opens it for `remaining` (unless it is open already): another
    /// replica's breaker for the same target opened. Then it half-opens and
    /// probes on its own.
    pub fn open_for(&self, remaining: Duration, why: &str) {
        let open_for = self.shared.config.open_for;
        self.shared.with(|inner, now| {
            if inner.state == State::Open {
                return ((), None);
            }
            let changed = inner.open(now, why.to_owned());
            // Backdated so that it half-opens `remaining` from now.
            let elapsed = open_for.saturating_sub(remaining.min(open_for));
            inner.opened_at = now.checked_sub(elapsed).unwrap_or(now);
            ((), changed)
        });
    }

    pub fn snapshot(&self) -> BreakerSnapshot {
        self.shared.with(|inner, now| {
            let counts = inner.window.sum(now);
            let snapshot = BreakerSnapshot {
                state: inner.state,
                opened_total: inner.opened_total,
                consecutive_failures: inner.consecutive_failures,
                window_requests: counts.total,
                window_failures: counts.marked,
            };
            (snapshot, None)
        })
    }
}

impl Shared {
    /// Runs `f` under the lock after the lazy Open → HalfOpen check, then logs
    /// any state change outside the lock.
    fn with<T>(&self, f: impl FnOnce(&mut Inner, Instant) -> (T, Option<Transition>)) -> T {
        let now = Instant::now();
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let half_open = (inner.state == State::Open
            && now.duration_since(inner.opened_at) >= self.config.open_for)
            .then(|| inner.set(State::HalfOpen, "open_for elapsed".to_owned()));
        let (value, changed) = f(&mut inner, now);
        drop(inner);
        for t in [half_open, changed].into_iter().flatten() {
            if t.to == State::Open {
                tracing::warn!(breaker = %self.name, from = ?t.from, to = ?t.to, why = %t.why, "circuit breaker opened");
            } else {
                tracing::info!(breaker = %self.name, from = ?t.from, to = ?t.to, why = %t.why, "circuit breaker state changed");
            }
        }
        value
    }
}

impl Inner {
    fn set(&mut self, to: State, why: String) -> Transition {
        let from = self.state;
        self.state = to;
        self.generation += 1;
        self.probes_in_flight = 0;
        Transition { from, to, why }
    }

    fn open(&mut self, now: Instant, why: String) -> Option<Transition> {
        self.opened_at = now;
        self.opened_total += 1;
        Some(self.set(State::Open, why))
    }

    fn report(&mut self, config: &BreakerConfig, now: Instant, failed: bool) -> Option<Transition> {
        match self.state {
            State::HalfOpen if failed => self.open(now, "half-open probe failed".to_owned()),
            State::HalfOpen => {
                self.consecutive_failures = 0;
                self.window.clear();
                Some(self.set(State::Closed, "half-open probe succeeded".to_owned()))
            }
            State::Open => None,
            State::Closed => {
                self.window.add(now, 1, u64::from(failed));
                if !failed {
                    self.consecutive_failures = 0;
                    return None;
                }
                self.consecutive_failures = self.consecutive_failures.saturating_add(1);
                let n = config.consecutive_failures;
                if n > 0 && self.consecutive_failures >= n {
                    return self.open(now, format!("{n} consecutive failures"));
                }
                let counts = self.window.sum(now);
                let ratio_hit = config.failure_ratio > 0.0
                    && counts.total >= u64::from(config.min_requests)
                    && counts.marked as f64 >= config.failure_ratio * counts.total as f64;
                if !ratio_hit {
                    return None;
                }
                let (failures, total) = (counts.marked, counts.total);
                self.open(
                    now,
                    format!(
                        "{failures} of {total} calls failed within {:?}",
                        config.window
                    ),
                )
            }
        }
    }
}

/// Leave to call one target; report its outcome with [`success`](Self::success)
/// or [`failure`](Self::failure). `Send + 'static`: it may live inside a response stream.
#[derive(Debug)]
pub struct BreakerPermit {
    shared: Arc<Shared>,
    generation: u64,
    probe: bool,
    reported: bool,
}

impl BreakerPermit {
    /// Half-open: closes the breaker; closed: resets the consecutive count.
    pub fn success(mut self) {
        self.finish(false);
    }

    /// Half-open: reopens the breaker; closed: counts toward opening it.
    pub fn failure(mut self) {
        self.finish(true);
    }

    fn finish(&mut self, failed: bool) {
        self.reported = true;
        let generation = self.generation;
        self.shared.with(|inner, now| {
            let stale = inner.generation != generation;
            (
                (),
                if stale {
                    None
                } else {
                    inner.report(&self.shared.config, now, failed)
                },
            )
        });
    }
}

impl Drop for BreakerPermit {
    /// Unreported: neither success nor failure; a probe frees its slot.
    fn drop(&mut self) {
        if self.reported || !self.probe {
            return;
        }
        let generation = self.generation;
        self.shared.with(|inner, _| {
            if inner.generation == generation {
                inner.probes_in_flight = inner.probes_in_flight.saturating_sub(1);
            }
            ((), None)
        });
    }
}

#[cfg(test)]
mod tests;
