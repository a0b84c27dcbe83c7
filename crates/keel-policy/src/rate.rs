//! keel's own rate limits (in process, GCRA via governor): requests and
//! tokens per minute, each smooth with a burst of one minute's worth. A
//! request is admitted only if every limit has room, and the caller learns
//! how long to wait when it is not.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{Quota, RateLimiter};
use keel_config::RateLimit;

type Gcra = RateLimiter<governor::state::NotKeyed, governor::state::InMemoryState, DefaultClock>;

pub struct RateLimits {
    requests: Option<(Gcra, u32)>,
    tokens: Option<(Gcra, u32)>,
    clock: DefaultClock,
}

impl std::fmt::Debug for RateLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimits")
            .field("requests_per_minute", &self.requests.as_ref().map(|r| r.1))
            .field("tokens_per_minute", &self.tokens.as_ref().map(|t| t.1))
            .finish()
    }
}

/// Why a request was refused: which limit, and when to retry.
#[derive(Debug, Clone, PartialEq)]
pub struct Refused {
    pub limit: &'static str,
    pub per_minute: u32,
    pub retry_after: Duration,
}

impl RateLimits {
    pub fn new(config: &RateLimit) -> RateLimits {
        let limiter = |per_minute: Option<u32>| {
            per_minute
                .and_then(NonZeroU32::new)
                .map(|n| (RateLimiter::direct(Quota::per_minute(n)), n.get()))
        };
        RateLimits {
            requests: limiter(config.requests_per_minute),
            tokens: limiter(config.tokens_per_minute),
            clock: DefaultClock::default(),
        }
    }

    /// Takes one request and `tokens` tokens, or says why not. The request
    /// limit is checked first: a request it refuses takes no tokens (one the
    /// token limit refuses has used a request slot, the cheaper waste).
    pub fn admit(&self, tokens: u32) -> Result<(), Refused> {
        if let Some((gcra, per_minute)) = &self.requests
            && let Err(not_until) = gcra.check()
        {
            return Err(Refused {
                limit: "requests_per_minute",
                per_minute: *per_minute,
                retry_after: not_until.wait_time_from(self.clock.now()),
            });
        }
        let Some((gcra, per_minute)) = &self.tokens else {
            return Ok(());
        };
        let n = NonZeroU32::new(tokens.max(1)).unwrap_or(NonZeroU32::MIN);
        let retry_after = match gcra.check_n(n) {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(not_until)) => not_until.wait_time_from(self.clock.now()),
            // More tokens than a minute's worth can never fit.
            Err(_) => Duration::from_secs(60),
        };
        Err(Refused {
            limit: "tokens_per_minute",
            per_minute: *per_minute,
            retry_after,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_minute_s_burst_then_refusals_that_say_when() {
        let limits = RateLimits::new(&RateLimit {
            requests_per_minute: Some(3),
            tokens_per_minute: None,
        });
        for _ in 0..3 {
            assert!(limits.admit(10).is_ok());
        }
        let refused = limits.admit(10).unwrap_err();
        assert_eq!(
            (refused.limit, refused.per_minute),
            ("requests_per_minute", 3)
        );
        assert!(
            refused.retry_after > Duration::ZERO && refused.retry_after <= Duration::from_secs(20)
        );
    }

    #[test]
    fn tokens_are_counted_and_an_oversized_request_never_fits() {
        let limits = RateLimits::new(&RateLimit {
            requests_per_minute: None,
            tokens_per_minute: Some(1000),
        });
        assert!(limits.admit(600).is_ok());
        assert_eq!(limits.admit(600).unwrap_err().limit, "tokens_per_minute");
        assert!(limits.admit(300).is_ok());
        assert_eq!(
            limits.admit(5000).unwrap_err().retry_after,
            Duration::from_secs(60)
        );
    }
}
