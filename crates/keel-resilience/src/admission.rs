//! Admission: a limit on requests in flight, a bounded wait queue, and
//! shedding beyond it.
//!
//! Choices:
//! - Built on `tokio::sync::Semaphore`, which is fair (FIFO): a permit freed
//!   while requests wait goes to the oldest waiter, and `try_acquire` fails
//!   while anyone waits, so nobody jumps the queue.
//! - The queue is bounded in count (`queue`) and in time (`max_wait`). The
//!   slot is held by a guard inside the `acquire` future, so a waiter that is
//!   dropped (client gone, deadline) leaves the queue at once: the count is
//!   exact under cancellation.
//! - [`Permit`] is owned (`'static`) and released only on drop: the server
//!   moves it into the streaming response body, so the slot is held until
//!   the body ends (DESIGN.md invariant).
//! - [`Shed::retry_after`] is `max_wait` rounded up to whole seconds, at
//!   least 1 s: every queued request leaves the queue within `max_wait`, so
//!   by then the queue has turned over and a retry has a fair chance. Whole
//!   seconds because it becomes a `Retry-After` header.
//! - `max_in_flight == 0` admits nothing (every request is shed); config
//!   validation should reject it.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

#[derive(Debug, Clone, PartialEq)]
pub struct LimitConfig {
    /// Requests holding a permit at once.
    pub max_in_flight: usize,
    /// How many may wait for a permit (0 = shed at once when full).
    pub queue: usize,
    /// Longest a request waits in the queue before it is shed.
    pub max_wait: Duration,
}

/// Why a request was shed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShedReason {
    /// All permits taken and the wait queue full.
    QueueFull,
    /// Waited `max_wait` in the queue without getting a permit.
    WaitTimedOut,
}

/// A request refused by a [`Limiter`] (maps to 429/503 with `Retry-After`).
#[derive(Debug, Clone, PartialEq)]
pub struct Shed {
    pub retry_after: Duration,
    pub reason: ShedReason,
}

impl fmt::Display for Shed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let why = match self.reason {
            ShedReason::QueueFull => "concurrency limit reached and wait queue full",
            ShedReason::WaitTimedOut => "timed out waiting for a concurrency slot",
        };
        write!(f, "{why} (retry after {}s)", self.retry_after.as_secs())
    }
}

impl std::error::Error for Shed {}

/// A concurrency limit with a bounded wait queue. Share it behind an `Arc`.
#[derive(Debug)]
pub struct Limiter {
    name: String,
    config: LimitConfig,
    semaphore: Arc<Semaphore>,
    queued: AtomicUsize,
    retry_after: Duration,
}

/// A slot in the limit, released when dropped. Move it into the response
/// body so it lives until the body ends.
#[derive(Debug)]
pub struct Permit {
    _permit: OwnedSemaphorePermit,
}

/// Holds one queue slot; gives it back on drop (including cancellation).
struct QueueSlot<'a>(&'a AtomicUsize);

impl Drop for QueueSlot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Limiter {
    pub fn new(name: impl Into<String>, config: LimitConfig) -> Self {
        let secs = config.max_wait.as_secs() + u64::from(config.max_wait.subsec_nanos() > 0);
        Self {
            name: name.into(),
            semaphore: Arc::new(Semaphore::new(
                config.max_in_flight.min(Semaphore::MAX_PERMITS),
            )),
            queued: AtomicUsize::new(0),
            retry_after: Duration::from_secs(secs.max(1)),
            config,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn config(&self) -> &LimitConfig {
        &self.config
    }

    /// A permit at once if one is free; otherwise wait in the queue (bounded
    /// in count and time); otherwise [`Shed`]. Cancel-safe.
    pub async fn acquire(&self) -> Result<Permit, Shed> {
        if let Some(permit) = self.try_acquire() {
            return Ok(permit);
        }
        let Some(_slot) = self.enter_queue() else {
            return Err(self.shed(ShedReason::QueueFull));
        };
        let wait = self.semaphore.clone().acquire_owned();
        match tokio::time::timeout(self.config.max_wait, wait).await {
            Ok(Ok(permit)) => Ok(Permit { _permit: permit }),
            // The semaphore is never closed; treat it as a timeout all the same.
            Ok(Err(_)) | Err(_) => Err(self.shed(ShedReason::WaitTimedOut)),
        }
    }

    /// A permit only if one is free right now (and nobody is waiting).
    pub fn try_acquire(&self) -> Option<Permit> {
        let permit = self.semaphore.clone().try_acquire_owned().ok()?;
        Some(Permit { _permit: permit })
    }

    /// Requests holding a permit.
    pub fn in_flight(&self) -> usize {
        self.config
            .max_in_flight
            .min(Semaphore::MAX_PERMITS)
            .saturating_sub(self.semaphore.available_permits())
    }

    /// Requests waiting for a permit.
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::Acquire)
    }

    fn enter_queue(&self) -> Option<QueueSlot<'_>> {
        let max = self.config.queue;
        self.queued
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()?;
        Some(QueueSlot(&self.queued))
    }

    fn shed(&self, reason: ShedReason) -> Shed {
        tracing::debug!(limiter = %self.name, ?reason, "request shed");
        Shed {
            retry_after: self.retry_after,
            reason,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::task::yield_now;

    fn limiter(max_in_flight: usize, queue: usize, max_wait_ms: u64) -> Arc<Limiter> {
        let max_wait = Duration::from_millis(max_wait_ms);
        Arc::new(Limiter::new(
            "test",
            LimitConfig {
                max_in_flight,
                queue,
                max_wait,
            },
        ))
    }

    async fn settle() {
        for _ in 0..10 {
            yield_now().await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn waiter_gets_the_permit_a_holder_drops() {
        let lim = limiter(2, 1, 5_000);
        let a = lim.acquire().await.unwrap();
        let _b = lim.acquire().await.unwrap();
        assert_eq!((lim.in_flight(), lim.queued()), (2, 0));
        assert!(lim.try_acquire().is_none());
        let waiter = tokio::spawn({
            let lim = lim.clone();
            async move { lim.acquire().await }
        });
        settle().await;
        assert_eq!((lim.in_flight(), lim.queued()), (2, 1));
        drop(a);
        let c = waiter.await.unwrap().unwrap();
        assert_eq!((lim.in_flight(), lim.queued()), (2, 0));
        drop(c);
        assert_eq!(lim.in_flight(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn full_queue_sheds_at_once() {
        let lim = limiter(1, 0, 5_000);
        let _a = lim.acquire().await.unwrap();
        let shed = lim.acquire().await.unwrap_err();
        assert_eq!(shed.reason, ShedReason::QueueFull);
        assert_eq!(shed.retry_after, Duration::from_secs(5));
        assert_eq!(lim.queued(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn waiting_past_max_wait_sheds() {
        let lim = limiter(1, 4, 1_500);
        let _a = lim.acquire().await.unwrap();
        let start = tokio::time::Instant::now();
        let shed = lim.acquire().await.unwrap_err();
        assert_eq!(shed.reason, ShedReason::WaitTimedOut);
        assert_eq!(start.elapsed(), Duration::from_millis(1_500));
        assert_eq!(shed.retry_after, Duration::from_secs(2), "rounded up");
        assert_eq!(lim.queued(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn retry_after_is_at_least_a_second() {
        let lim = limiter(0, 0, 0);
        let shed = lim.acquire().await.unwrap_err();
        assert_eq!(shed.retry_after, Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn cancelled_waiter_frees_its_slot() {
        let lim = limiter(1, 1, 60_000);
        let a = lim.acquire().await.unwrap();
        let waiter = tokio::spawn({
            let lim = lim.clone();
            async move { lim.acquire().await }
        });
        settle().await;
        assert_eq!(lim.queued(), 1);
        assert_eq!(
            lim.acquire().await.unwrap_err().reason,
            ShedReason::QueueFull
        );
        waiter.abort();
        assert!(waiter.await.unwrap_err().is_cancelled());
        assert_eq!(lim.queued(), 0);
        // The freed slot is usable, and the permit goes to the live waiter.
        let next = tokio::spawn({
            let lim = lim.clone();
            async move { lim.acquire().await.map(|_| ()) }
        });
        settle().await;
        assert_eq!(lim.queued(), 1);
        drop(a);
        next.await.unwrap().unwrap();
        assert_eq!((lim.in_flight(), lim.queued()), (0, 0));
    }

    #[tokio::test(start_paused = true)]
    async fn permit_in_a_spawned_task_holds_until_dropped() {
        let lim = limiter(1, 0, 0);
        let permit = lim.acquire().await.unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let body = tokio::spawn(async move {
            let _permit = permit; // like a streaming body owning its permit
            let _ = rx.await;
        });
        tokio::time::advance(Duration::from_secs(3_600)).await;
        settle().await;
        assert_eq!(lim.in_flight(), 1);
        assert!(lim.try_acquire().is_none());
        tx.send(()).unwrap();
        body.await.unwrap();
        assert_eq!(lim.in_flight(), 0);
        assert!(lim.try_acquire().is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn burst_admits_capacity_queues_queue_sheds_the_rest() {
        let (cap, queue) = (4, 3);
        let lim = limiter(cap, queue, 60_000);
        let (release, _) = tokio::sync::watch::channel(false);
        let shed = Arc::new(AtomicUsize::new(0));
        let admitted = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..4 * cap)
            .map(|_| {
                let (lim, shed, admitted) = (lim.clone(), shed.clone(), admitted.clone());
                let mut release = release.subscribe();
                tokio::spawn(async move {
                    match lim.acquire().await {
                        Ok(_permit) => {
                            admitted.fetch_add(1, Ordering::SeqCst);
                            let _ = release.wait_for(|go| *go).await;
                        }
                        Err(s) => {
                            assert_eq!(s.reason, ShedReason::QueueFull);
                            shed.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                })
            })
            .collect();
        settle().await;
        assert_eq!(admitted.load(Ordering::SeqCst), cap);
        assert_eq!((lim.in_flight(), lim.queued()), (cap, queue));
        assert_eq!(shed.load(Ordering::SeqCst), 4 * cap - cap - queue);
        release.send_replace(true);
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(admitted.load(Ordering::SeqCst), cap + queue);
        assert_eq!((lim.in_flight(), lim.queued()), (0, 0));
    }

    #[test]
    fn permit_is_send_sync_static() {
        fn check<T: Send + Sync + 'static>() {}
        check::<Permit>();
        check::<Limiter>();
    }
}
