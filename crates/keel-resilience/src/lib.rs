//! keel's reliability primitives, each small, in its own file, and tested
//! with tokio's paused time:
//!
//! - [`breaker`]: a circuit breaker per target (consecutive failures or a
//!   failure ratio over a window opens it; half-open probes close it);
//! - [`budget`]: a retry budget (retries ≤ a fraction of requests over a
//!   sliding window, plus a small floor), so a hard-down upstream never
//!   causes a retry storm;
//! - [`backoff`]: exponential backoff with full jitter, and `Retry-After`
//!   honoured within the remaining deadline;
//! - [`admission`]: limits on requests in flight with a bounded wait queue,
//!   shedding beyond it; permits live until the response body ends;
//! - [`balance`]: load balancing across equivalent targets (weighted,
//!   least-in-flight, latency EWMA).
//!
//! The server's attempt loop (`keel-server/src/attempt.rs`) composes them.

pub mod admission;
pub mod backoff;
pub mod balance;
pub mod breaker;
pub mod budget;
