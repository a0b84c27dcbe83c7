//! A retry budget, as in Finagle and linkerd: retries may add at most
//! `ratio` of the original requests seen over a sliding window, plus a small
//! floor of `min_per_sec` retries per second so that low traffic can still
//! retry. A hard-down upstream therefore costs at most `ratio` extra load,
//! never a retry storm.
//!
//! Choices:
//! - Requests and retries are counted in a sliding window of [`BUCKETS`]
//!   buckets ([`Window`], also used by the circuit breaker). The window covers
//!   the current bucket plus the `BUCKETS - 1` before it, so an event leaves
//!   it between `window - window/BUCKETS` and `window` after it happened.
//! - Only originals are deposited; a retry is not a request that earns more
//!   retries.
//! - `ratio * requests` is compared with a 1e-9 tolerance so that float
//!   rounding (0.29 × 100 = 28.999…) never costs a retry.
//! - All time comes from `tokio::time::Instant`, so tests use paused time.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

/// Number of buckets in a sliding [`Window`].
pub(crate) const BUCKETS: usize = 10;

#[derive(Debug, Clone, PartialEq)]
pub struct BudgetConfig {
    /// Retries may add at most this fraction of requests (0.2 = 20 %).
    pub ratio: f64,
    /// ... plus this many retries per second regardless of traffic.
    pub min_per_sec: u32,
    /// Sliding window for counting requests and retries.
    pub window: Duration,
}

impl Default for BudgetConfig {
    fn default() -> Self {
        Self {
            ratio: 0.2,
            min_per_sec: 1,
            window: Duration::from_secs(10),
        }
    }
}

/// A retry budget shared by every request to one route (thread-safe).
#[derive(Debug)]
pub struct RetryBudget {
    /// `ratio`, and the floor `min_per_sec * window` in retries.
    ratio: f64,
    floor: f64,
    /// `total` = original requests, `marked` = retries.
    window: Mutex<Window>,
}

impl RetryBudget {
    pub fn new(config: BudgetConfig) -> Self {
        Self {
            ratio: config.ratio.max(0.0),
            floor: f64::from(config.min_per_sec) * config.window.as_secs_f64(),
            window: Mutex::new(Window::new(config.window, Instant::now())),
        }
    }

    /// Counts one original request.
    pub fn deposit(&self) {
        let mut window = self.window.lock().unwrap_or_else(PoisonError::into_inner);
        window.add(Instant::now(), 1, 0);
    }

    /// Asks for one retry; `true` (and counted) iff
    /// `retries + 1 <= ratio * requests + min_per_sec * window_secs` over the window.
    pub fn try_withdraw(&self) -> bool {
        let now = Instant::now();
        let mut window = self.window.lock().unwrap_or_else(PoisonError::into_inner);
        let counts = window.sum(now);
        let allowed = self.ratio * counts.total as f64 + self.floor + 1e-9;
        let ok = (counts.marked + 1) as f64 <= allowed;
        if ok {
            window.add(now, 0, 1);
        }
        ok
    }
}

/// Two counters summed over a [`Window`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    pub(crate) total: u64,
    pub(crate) marked: u64,
}

/// A sliding window of [`BUCKETS`] buckets of two counters each. Not
/// thread-safe by itself: callers keep it inside their own mutex.
#[derive(Debug)]
pub(crate) struct Window {
    origin: Instant,
    bucket_nanos: u128,
    /// Absolute index (since `origin`) of the newest bucket.
    head: u64,
    buckets: [Counts; BUCKETS],
}

impl Window {
    pub(crate) fn new(window: Duration, now: Instant) -> Self {
        let bucket_nanos = (window.as_nanos() / BUCKETS as u128).max(1);
        Self {
            origin: now,
            bucket_nanos,
            head: 0,
            buckets: [Counts::default(); BUCKETS],
        }
    }

    pub(crate) fn add(&mut self, now: Instant, total: u64, marked: u64) {
        let bucket = self.advance(now);
        bucket.total = bucket.total.saturating_add(total);
        bucket.marked = bucket.marked.saturating_add(marked);
    }

    pub(crate) fn sum(&mut self, now: Instant) -> Counts {
        self.advance(now);
        self.buckets
            .iter()
            .fold(Counts::default(), |acc, b| Counts {
                total: acc.total.saturating_add(b.total),
                marked: acc.marked.saturating_add(b.marked),
            })
    }

    pub(crate) fn clear(&mut self) {
        self.buckets = [Counts::default(); BUCKETS];
    }

    /// Moves the head to `now`'s bucket, zeroing the buckets skipped over,
    /// and returns the current bucket.
    fn advance(&mut self, now: Instant) -> &mut Counts {
        let elapsed = now.duration_since(self.origin).as_nanos() / self.bucket_nanos;
        let index = u64::try_from(elapsed).unwrap_or(u64::MAX);
        if index > self.head {
            let stale = (index - self.head).min(BUCKETS as u64);
            for i in 1..=stale {
                self.buckets[slot(self.head + i)] = Counts::default();
            }
            self.head = index;
        }
        &mut self.buckets[slot(self.head)]
    }
}

fn slot(index: u64) -> usize {
    (index % BUCKETS as u64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::time::advance;

    fn budget(ratio: f64, min_per_sec: u32) -> RetryBudget {
        RetryBudget::new(BudgetConfig {
            ratio,
            min_per_sec,
            window: Duration::from_secs(10),
        })
    }

    fn withdraw_all(budget: &RetryBudget) -> u32 {
        let mut n = 0;
        while budget.try_withdraw() {
            n += 1;
            assert!(n <= 10_000, "budget never runs out");
        }
        n
    }

    #[tokio::test(start_paused = true)]
    async fn ratio_allows_exactly_its_share() {
        let budget = budget(0.2, 0);
        assert!(!budget.try_withdraw(), "no requests, no floor: no retries");
        for _ in 0..100 {
            budget.deposit();
        }
        assert_eq!(withdraw_all(&budget), 20);
        // Float rounding never costs a retry: 0.29 × 100 = 28.999… in f64.
        let budget = self::budget(0.29, 0);
        (0..100).for_each(|_| budget.deposit());
        assert_eq!(withdraw_all(&budget), 29);
    }

    #[tokio::test(start_paused = true)]
    async fn floor_allows_retries_without_traffic_and_refills() {
        let budget = budget(0.2, 2);
        assert_eq!(withdraw_all(&budget), 20, "2/s over 10 s");
        advance(Duration::from_secs(5)).await;
        assert!(
            !budget.try_withdraw(),
            "the retries are still in the window"
        );
        advance(Duration::from_secs(5)).await;
        assert_eq!(withdraw_all(&budget), 20, "old retries aged out");
    }

    #[tokio::test(start_paused = true)]
    async fn old_requests_age_out() {
        let budget = budget(0.2, 0);
        (0..100).for_each(|_| budget.deposit());
        advance(Duration::from_secs(9)).await;
        assert!(budget.try_withdraw(), "requests from 9 s ago still count");
        advance(Duration::from_secs(2)).await;
        assert!(
            !budget.try_withdraw(),
            "requests from 11 s ago no longer count"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn hard_down_upstream_never_causes_a_retry_storm() {
        // 1000 requests over 5 s to an upstream that always fails; each
        // retries up to 3 times while the budget allows.
        let budget = budget(0.2, 1);
        let mut retries = 0;
        for _ in 0..1000 {
            budget.deposit();
            for _ in 0..3 {
                if !budget.try_withdraw() {
                    break;
                }
                retries += 1;
            }
            advance(Duration::from_millis(5)).await;
        }
        let bound = 0.2 * 1000.0 + 10.0; // ratio × N + floor
        assert!(f64::from(retries) <= bound, "{retries} retries > {bound}");
        assert!(retries >= 200, "the budget should be used, got {retries}");
    }

    #[tokio::test(start_paused = true)]
    async fn window_slides_bucket_by_bucket() {
        let mut window = Window::new(Duration::from_secs(10), Instant::now());
        window.add(Instant::now(), 1, 1);
        advance(Duration::from_secs(5)).await;
        window.add(Instant::now(), 2, 0);
        assert_eq!(
            window.sum(Instant::now()),
            Counts {
                total: 3,
                marked: 1
            }
        );
        advance(Duration::from_secs(5)).await;
        assert_eq!(
            window.sum(Instant::now()),
            Counts {
                total: 2,
                marked: 0
            }
        );
        advance(Duration::from_secs(3600)).await;
        assert_eq!(window.sum(Instant::now()), Counts::default());
    }
}
