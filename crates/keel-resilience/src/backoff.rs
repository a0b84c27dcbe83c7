//! Exponential backoff with full jitter (AWS Architecture Blog, "Exponential
//! Backoff And Jitter"), and an upstream's `Retry-After` honoured only when
//! it fits in the request's remaining deadline.
//!
//! Choices:
//! - Full jitter: the delay is uniform in `[0, min(max, base * 2^retry)]`,
//!   which spreads retries of many clients best for the least total wait.
//! - Overflow-safe: a shift or multiplication that would overflow is
//!   simply the cap; durations beyond `u64` nanoseconds (584 years) are
//!   clamped there.
//! - The random source is passed in, so tests use a seeded `SmallRng` and the
//!   server can use a cheap thread-local one.
//! - `wait_before_retry` never waits when the wait would leave less than
//!   `min_attempt` for the attempt itself: the caller falls back instead
//!   (a request must not outlive its deadline).

use std::time::Duration;

#[derive(Debug, Clone, PartialEq)]
pub struct Backoff {
    pub base: Duration,
    pub max: Duration,
}

impl Backoff {
    /// Delay before retry number `retry` (0 = first retry): uniform in
    /// `[0, min(max, base * 2^retry)]`. Overflow-safe for big `retry`.
    pub fn delay(&self, retry: u32, rng: &mut impl rand::Rng) -> Duration {
        let cap = 1u32
            .checked_shl(retry)
            .and_then(|factor| self.base.checked_mul(factor))
            .map_or(self.max, |d| d.min(self.max));
        let cap_nanos = u64::try_from(cap.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(rng.random_range(0..=cap_nanos))
    }
}

/// How long to wait before retrying, honouring an upstream's Retry-After: the
/// larger of `backoff` and `retry_after`, or `None` when that wait would not
/// leave `min_attempt` of the `remaining` deadline (then the caller falls back
/// instead of waiting).
pub fn wait_before_retry(
    backoff: Duration,
    retry_after: Option<Duration>,
    remaining: Duration,
    min_attempt: Duration,
) -> Option<Duration> {
    let wait = backoff.max(retry_after.unwrap_or_default());
    let needed = wait.checked_add(min_attempt)?;
    (needed <= remaining).then_some(wait)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::SmallRng;

    const MS: Duration = Duration::from_millis(1);

    fn backoff() -> Backoff {
        Backoff {
            base: 100 * MS,
            max: Duration::from_secs(10),
        }
    }

    #[test]
    fn delays_are_full_jitter_within_the_doubling_bound() {
        let mut rng = SmallRng::seed_from_u64(7);
        for retry in 0..7 {
            let bound = 100 * MS * 2u32.pow(retry); // 100 ms .. 6.4 s, under max
            let draws: Vec<_> = (0..1000)
                .map(|_| backoff().delay(retry, &mut rng))
                .collect();
            assert!(
                draws.iter().all(|d| *d <= bound),
                "retry {retry}: over {bound:?}"
            );
            // Full jitter: spread over the whole range, not bunched at either end.
            assert!(
                draws.iter().any(|d| *d < bound / 10),
                "retry {retry}: none small"
            );
            assert!(
                draws.iter().any(|d| *d > bound * 9 / 10),
                "retry {retry}: none large"
            );
        }
    }

    #[test]
    fn cap_is_respected() {
        let mut rng = SmallRng::seed_from_u64(1);
        let draws: Vec<_> = (0..1000).map(|_| backoff().delay(10, &mut rng)).collect();
        assert!(draws.iter().all(|d| *d <= Duration::from_secs(10)));
        assert!(
            draws.iter().any(|d| *d > Duration::from_secs(9)),
            "the cap is reached"
        );
    }

    #[test]
    fn huge_retry_numbers_do_not_overflow() {
        let mut rng = SmallRng::seed_from_u64(2);
        for retry in [31, 32, 63, 64, 1000, u32::MAX] {
            assert!(backoff().delay(retry, &mut rng) <= Duration::from_secs(10));
        }
        let unbounded = Backoff {
            base: Duration::from_secs(1),
            max: Duration::MAX,
        };
        let delay = unbounded.delay(u32::MAX, &mut rng);
        assert!(delay <= Duration::from_nanos(u64::MAX));
        let zero = Backoff {
            base: Duration::ZERO,
            max: Duration::from_secs(1),
        };
        assert_eq!(zero.delay(5, &mut rng), Duration::ZERO);
    }

    #[test]
    fn retry_after_is_honoured_when_it_fits() {
        let s = Duration::from_secs;
        // Retry-After longer than the backoff wins.
        assert_eq!(
            wait_before_retry(100 * MS, Some(s(2)), s(10), s(1)),
            Some(s(2))
        );
        // Backoff longer than Retry-After wins.
        assert_eq!(wait_before_retry(s(3), Some(s(1)), s(10), s(1)), Some(s(3)));
        assert_eq!(
            wait_before_retry(300 * MS, None, s(10), s(1)),
            Some(300 * MS)
        );
        // Exactly fits: wait 9 s, then 1 s for the attempt.
        assert_eq!(wait_before_retry(MS, Some(s(9)), s(10), s(1)), Some(s(9)));
    }

    #[test]
    fn no_wait_when_it_would_not_leave_time_for_the_attempt() {
        let s = Duration::from_secs;
        assert_eq!(
            wait_before_retry(100 * MS, Some(9500 * MS), s(10), s(1)),
            None
        );
        assert_eq!(wait_before_retry(s(5), None, s(5), s(1)), None);
        assert_eq!(
            wait_before_retry(Duration::ZERO, None, 500 * MS, s(1)),
            None
        );
        assert_eq!(
            wait_before_retry(MS, Some(Duration::MAX), s(10), s(1)),
            None
        );
    }
}
