//! The writer: records go from the request path to the store without ever
//! blocking or failing a request.
//!
//! [`Recorder::push`] is a `try_send` on a bounded queue: it never waits,
//! and when the queue is full the record is dropped and counted. One
//! writer task takes records off the queue in batches (up to `batch`, or
//! what arrived within `flush_every` of the first) and inserts each batch
//! in one transaction. A failed insert keeps the batch, counts a failure,
//! warns (at most once per [`LOG_EVERY`]) and retries with capped
//! exponential backoff while new records wait in the queue; when the store
//! is back, one info line says so. Drops are reported the same throttled
//! way. The task also prunes by the retention policy every `prune_every`.
//!
//! Capacity while the store is down is exact: the queue's `queue` records
//! plus the batch the writer holds (taken off the queue before the store
//! failed; it is not topped up while retrying). Every record pushed beyond
//! that is dropped and counted, none is lost silently.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};

use crate::record::RequestRecord;
use crate::store::{Retention, Store};

/// Warnings about failures and drops: at most one per this period.
const LOG_EVERY: Duration = Duration::from_secs(5);
const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(2);

#[derive(Clone)]
pub struct WriterConfig {
    /// Records the queue holds (at least 1).
    pub queue: usize,
    /// Records per insert (at least 1).
    pub batch: usize,
    /// How long a batch waits to fill after its first record.
    pub flush_every: Duration,
    pub retention: Retention,
    /// How often to prune (also once at start); never when `retention` sets
    /// nothing.
    pub prune_every: Duration,
    /// Applied to each record on the writer task, before it is stored:
    /// work the request path should not wait for (the gateway masks and
    /// hashes captured bodies here).
    pub prepare: Option<Prepare>,
}

impl std::fmt::Debug for WriterConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriterConfig")
            .field("queue", &self.queue)
            .field("batch", &self.batch)
            .field("flush_every", &self.flush_every)
            .field("retention", &self.retention)
            .field("prune_every", &self.prune_every)
            .field("prepare", &self.prepare.is_some())
            .finish()
    }
}

/// See [`WriterConfig::prepare`].
pub type Prepare = Arc<dyn Fn(&mut RequestRecord) + Send + Sync>;

impl Default for WriterConfig {
    fn default() -> Self {
        WriterConfig {
            queue: 10_000,
            batch: 500,
            flush_every: Duration::from_millis(200),
            retention: Retention::default(),
            prune_every: Duration::from_secs(600),
            prepare: None,
        }
    }
}

/// The request path's handle: push records, read the counters. Cheap to
/// clone.
#[derive(Clone)]
pub struct Recorder {
    tx: mpsc::Sender<RequestRecord>,
    shared: Arc<Shared>,
    store: Store,
}

/// Owns the writer task; [`Writer::shutdown`] drains it. Dropped without
/// a shutdown, the task goes on until every [`Recorder`] is gone, then
/// writes what is left and ends.
pub struct Writer {
    task: JoinHandle<()>,
    shared: Arc<Shared>,
}

/// State shared by the recorders, the task and the writer handle.
struct Shared {
    /// Records in the queue or past it. A push counts itself before its
    /// `try_send` (and takes the count back if the send fails), so a flush
    /// never misses a record pushed before it.
    accepted: AtomicU64,
    dropped: AtomicU64,
    written: AtomicU64,
    failures: AtomicU64,
    /// Records the task is done with (stored, or skipped as duplicate ids);
    /// it never runs ahead of the queue's order, so "settled ≥ n" means the
    /// first n accepted records are stored.
    settled: watch::Sender<u64>,
    /// Asks the task to insert the batch it is filling now (flush).
    flush_now: Notify,
    /// Asks the task to close the queue, drain it and stop.
    stop: Notify,
}

/// Starts the writer task. Must be called inside a tokio runtime.
pub fn spawn(store: Store, cfg: WriterConfig) -> (Recorder, Writer) {
    let (tx, rx) = mpsc::channel(cfg.queue.max(1));
    let shared = Arc::new(Shared {
        accepted: AtomicU64::new(0),
        dropped: AtomicU64::new(0),
        written: AtomicU64::new(0),
        failures: AtomicU64::new(0),
        settled: watch::Sender::new(0),
        flush_now: Notify::new(),
        stop: Notify::new(),
    });
    let task = Task {
        rx,
        shared: Arc::clone(&shared),
        store: store.clone(),
        batch_size: cfg.batch.max(1),
        cfg,
        closing: false,
        failure_log: Throttle::default(),
        drop_log: Throttle::default(),
        prune_log: Throttle::default(),
        drops_reported: 0,
    };
    let task = tokio::spawn(task.run());
    let recorder = Recorder {
        tx,
        shared: Arc::clone(&shared),
        store,
    };
    (recorder, Writer { task, shared })
}

impl Recorder {
    /// Queues a record without waiting. `false`: the queue was full (or
    /// the writer shut down) and the record was dropped and counted.
    pub fn push(&self, rec: RequestRecord) -> bool {
        self.shared.accepted.fetch_add(1, Ordering::SeqCst);
        if self.tx.try_send(rec).is_ok() {
            return true;
        }
        self.shared.accepted.fetch_sub(1, Ordering::SeqCst);
        self.shared.dropped.fetch_add(1, Ordering::Relaxed);
        false
    }

    /// Records pushed and not yet stored: queued, in the batch being
    /// filled, or in the batch being retried.
    pub fn depth(&self) -> usize {
        self.shared.depth()
    }

    /// Records dropped because the queue was full or closed.
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// Records in successful inserts (a duplicate id, skipped by the store,
    /// counts too).
    pub fn written(&self) -> u64 {
        self.shared.written.load(Ordering::Relaxed)
    }

    /// Failed insert attempts (a batch retried five times counts five).
    pub fn failures(&self) -> u64 {
        self.shared.failures.load(Ordering::Relaxed)
    }

    /// Waits until every record pushed before this call is stored, or the
    /// timeout passes; `true` in the first case. Cuts the batch being
    /// filled short instead of waiting out `flush_every`.
    ///
    /// A push being dropped concurrently (queue full) may make it wait for
    /// one more record than needed.
    pub async fn flush(&self, timeout: Duration) -> bool {
        let target = self.shared.accepted.load(Ordering::SeqCst);
        let mut settled = self.shared.settled.subscribe();
        self.shared.flush_now.notify_one();
        tokio::time::timeout(timeout, settled.wait_for(|&n| n >= target))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    pub fn store(&self) -> &Store {
        &self.store
    }
}

impl Writer {
    /// Closes the queue (later pushes are dropped and counted), then
    /// writes what is queued and the batch in hand, retrying as usual,
    /// within `grace`. `false` if records were left unwritten (the task is
    /// then stopped and a warning says how many).
    pub async fn shutdown(mut self, grace: Duration) -> bool {
        self.shared.stop.notify_one();
        match tokio::time::timeout(grace, &mut self.task).await {
            Ok(finished) => finished.is_ok(),
            Err(_) => {
                self.task.abort();
                let left = self.shared.depth();
                tracing::warn!(
                    left,
                    "{left} request records not written: log store shutdown grace ran out"
                );
                false
            }
        }
    }
}

impl Shared {
    fn depth(&self) -> usize {
        let accepted = self.accepted.load(Ordering::SeqCst);
        let pending = accepted.saturating_sub(*self.settled.borrow());
        usize::try_from(pending).unwrap_or(usize::MAX)
    }
}

/// The writer task.
struct Task {
    rx: mpsc::Receiver<RequestRecord>,
    shared: Arc<Shared>,
    store: Store,
    cfg: WriterConfig,
    batch_size: usize,
    /// Shutdown asked: the queue is closed, being drained without waiting.
    closing: bool,
    failure_log: Throttle,
    drop_log: Throttle,
    prune_log: Throttle,
    /// Drops already reported in a warning.
    drops_reported: u64,
}

impl Task {
    async fn run(mut self) {
        let mut prune = tokio::time::interval(self.cfg.prune_every.max(Duration::from_millis(1)));
        prune.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let prune_enabled = self.cfg.retention.is_set();
        let mut batch = Vec::with_capacity(self.batch_size);
        loop {
            let shared = Arc::clone(&self.shared);
            tokio::select! {
                biased;
                () = shared.stop.notified(), if !self.closing => self.close(),
                _ = prune.tick(), if prune_enabled && !self.closing => self.prune().await,
                n = self.rx.recv_many(&mut batch, self.batch_size) => {
                    if n == 0 {
                        break; // closed and drained
                    }
                    self.fill(&mut batch).await;
                    if let Some(prepare) = &self.cfg.prepare {
                        batch.iter_mut().for_each(|r| prepare(r));
                    }
                    self.write(&mut batch).await;
                    self.report_drops();
                }
            }
        }
        self.drop_log = Throttle::default();
        self.report_drops();
    }

    /// Shutdown: no more pushes; what is queued still gets written.
    fn close(&mut self) {
        self.closing = true;
        self.rx.close();
    }

    /// Tops the batch up until it is full, `flush_every` has passed since
    /// its first record, or a flush or shutdown asks to write now.
    ///
    /// It does not wait on the queue record by record: under load that is a
    /// task wake-up per request. It takes what is queued, and if that is not
    /// a full batch, sleeps until the deadline (or a flush) and takes again.
    async fn fill(&mut self, batch: &mut Vec<RequestRecord>) {
        let deadline = Instant::now() + self.cfg.flush_every;
        let shared = Arc::clone(&self.shared);
        self.take_queued(batch);
        if self.closing || batch.len() >= self.batch_size {
            return;
        }
        tokio::select! {
            biased;
            () = shared.stop.notified() => self.close(),
            () = shared.flush_now.notified() => {}
            () = tokio::time::sleep_until(deadline) => {}
        }
        self.take_queued(batch);
    }

    /// Moves what is queued into the batch, up to its size, without waiting.
    fn take_queued(&mut self, batch: &mut Vec<RequestRecord>) {
        while batch.len() < self.batch_size {
            match self.rx.try_recv() {
                Ok(rec) => batch.push(rec),
                Err(_) => break,
            }
        }
    }

    /// Inserts the batch, retrying until it is stored; then settles it.
    async fn write(&mut self, batch: &mut Vec<RequestRecord>) {
        let mut backoff = BACKOFF_MIN;
        let mut failed: u64 = 0;
        while let Err(e) = self.store.insert(batch).await {
            failed += 1;
            self.shared.failures.fetch_add(1, Ordering::Relaxed);
            if self.failure_log.ready() {
                tracing::warn!(
                    error = %e,
                    store = self.store.kind(),
                    attempts = failed,
                    queued = self.shared.depth(),
                    "request log write failed; retrying"
                );
            }
            self.report_drops();
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
        if failed > 0 {
            tracing::info!(
                store = self.store.kind(),
                failed_attempts = failed,
                "request log store recovered"
            );
            self.failure_log = Throttle::default();
        }
        let n = batch.len() as u64;
        batch.clear();
        self.shared.written.fetch_add(n, Ordering::Relaxed);
        self.shared.settled.send_modify(|settled| *settled += n);
    }

    async fn prune(&mut self) {
        match self.store.prune(&self.cfg.retention).await {
            Ok(0) => {}
            Ok(removed) => tracing::debug!(removed, "pruned the request log"),
            Err(e) => {
                if self.prune_log.ready() {
                    tracing::warn!(error = %e, "pruning the request log failed");
                }
            }
        }
    }

    /// Warns about drops since the last warning, throttled.
    fn report_drops(&mut self) {
        let total = self.shared.dropped.load(Ordering::Relaxed);
        let new = total.saturating_sub(self.drops_reported);
        if new > 0 && self.drop_log.ready() {
            tracing::warn!(
                dropped = new,
                total,
                "{new} records dropped: log queue full"
            );
            self.drops_reported = total;
        }
    }
}

/// Lets an event through at most once per [`LOG_EVERY`].
#[derive(Default)]
struct Throttle {
    last: Option<Instant>,
}

impl Throttle {
    fn ready(&mut self) -> bool {
        let now = Instant::now();
        if self.last.is_some_and(|last| now < last + LOG_EVERY) {
            return false;
        }
        self.last = Some(now);
        true
    }
}
