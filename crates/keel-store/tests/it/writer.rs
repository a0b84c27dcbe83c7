//! The writer on SQLite: batching, flush, shutdown, and what happens while
//! the store is unavailable. The outage is real: a second connection holds
//! `BEGIN EXCLUSIVE` on the file (we run as root, so a read-only file
//! would not stop us).

use std::path::Path;
use std::time::{Duration, Instant};

use keel_store::{Filter, Recorder, Retention, Store, WriterConfig, spawn};

use crate::{rec, sqlite, wait_until};

fn config(queue: usize, batch: usize) -> WriterConfig {
    WriterConfig {
        queue,
        batch,
        flush_every: Duration::from_millis(20),
        retention: Retention::default(),
        prune_every: Duration::from_secs(3600),
        prepare: None,
    }
}

/// Holds the file's write lock until `release`.
struct Outage(rusqlite::Connection);

impl Outage {
    fn start(path: &Path) -> Outage {
        let conn = rusqlite::Connection::open(path).unwrap();
        conn.execute_batch("BEGIN EXCLUSIVE").unwrap();
        Outage(conn)
    }

    fn release(self) {
        self.0.execute_batch("COMMIT").unwrap();
    }
}

/// Pushes `ids`, asserting each push returns at once; the push results.
fn push_all(recorder: &Recorder, ids: impl IntoIterator<Item = String>) -> Vec<bool> {
    ids.into_iter()
        .map(|id| {
            let started = Instant::now();
            let ok = recorder.push(rec(&id, 1));
            // The store's busy timeout is 250 ms: a push that waited on the
            // store would take that long.
            assert!(
                started.elapsed() < Duration::from_millis(100),
                "push blocked"
            );
            ok
        })
        .collect()
}

async fn count(store: &Store) -> usize {
    store.list(&Filter::default()).await.unwrap().len()
}

#[tokio::test]
async fn writes_in_batches_and_flushes() {
    let (_dir, _path, store) = sqlite::store().await;
    let (recorder, writer) = spawn(store.clone(), config(100, 10));
    assert!(
        recorder.flush(Duration::from_secs(1)).await,
        "nothing to flush"
    );
    assert!(
        push_all(&recorder, (0..25).map(|i| format!("r{i}")))
            .iter()
            .all(|&ok| ok)
    );
    assert!(recorder.flush(Duration::from_secs(5)).await);
    assert_eq!(count(&store).await, 25);
    assert_eq!((recorder.written(), recorder.depth()), (25, 0));
    assert_eq!((recorder.dropped(), recorder.failures()), (0, 0));
    assert_eq!(recorder.store().kind(), "sqlite");
    assert!(writer.shutdown(Duration::from_secs(5)).await);
}

/// The prepare hook runs on every record before it is stored.
#[tokio::test]
async fn prepare_runs_before_each_record_is_stored() {
    let (_dir, _path, store) = sqlite::store().await;
    let cfg = WriterConfig {
        prepare: Some(std::sync::Arc::new(|r: &mut keel_store::RequestRecord| {
            r.input = r.input.take().map(|i| i.to_uppercase());
        })),
        ..config(100, 10)
    };
    let (recorder, writer) = spawn(store.clone(), cfg);
    let mut r = rec("p1", 1);
    r.input = Some("quiet".to_owned());
    assert!(recorder.push(r));
    assert!(recorder.flush(Duration::from_secs(5)).await);
    let stored = store.get("p1").await.unwrap().unwrap();
    assert_eq!(stored.input.as_deref(), Some("QUIET"));
    assert!(writer.shutdown(Duration::from_secs(5)).await);
}

/// flush cuts a batch short instead of waiting out flush_every.
#[tokio::test]
async fn flush_does_not_wait_for_the_batch_to_fill() {
    let (_dir, _path, store) = sqlite::store().await;
    let cfg = WriterConfig {
        flush_every: Duration::from_secs(60),
        ..config(100, 100)
    };
    let (recorder, _writer) = spawn(store.clone(), cfg);
    assert!(recorder.push(rec("one", 1)));
    assert!(recorder.flush(Duration::from_secs(5)).await);
    assert!(store.exists("one").await.unwrap());
}

#[tokio::test]
async fn keeps_everything_through_an_outage() {
    let (_dir, path, store) = sqlite::store().await;
    let (recorder, writer) = spawn(store.clone(), config(1_000, 50));
    assert!(recorder.push(rec("before", 1)));
    assert!(recorder.flush(Duration::from_secs(5)).await);

    let outage = Outage::start(&path);
    let pushed = push_all(&recorder, (0..200).map(|i| format!("during{i}")));
    assert!(pushed.iter().all(|&ok| ok));
    wait_until("failed writes", Duration::from_secs(10), || {
        recorder.failures() >= 2
    })
    .await;
    assert!(
        !recorder.flush(Duration::from_millis(100)).await,
        "nothing can be stored yet"
    );
    assert_eq!(recorder.depth(), 200);
    assert_eq!(recorder.dropped(), 0);
    assert_eq!(recorder.written(), 1);

    outage.release();
    assert!(recorder.flush(Duration::from_secs(10)).await);
    assert_eq!(count(&store).await, 201);
    assert_eq!(
        (recorder.written(), recorder.depth(), recorder.dropped()),
        (201, 0, 0)
    );
    let failures = recorder.failures();
    assert!(recorder.push(rec("after", 2)));
    assert!(recorder.flush(Duration::from_secs(5)).await);
    assert_eq!(recorder.failures(), failures, "recovered");
    assert!(writer.shutdown(Duration::from_secs(5)).await);
}

/// With the store down, capacity is the queue plus the batch in the
/// writer's hands; every record beyond is dropped and counted, exactly.
#[tokio::test]
async fn overflow_drops_exactly_what_does_not_fit() {
    let (_dir, path, store) = sqlite::store().await;
    let (recorder, writer) = spawn(store.clone(), config(4, 10));
    let outage = Outage::start(&path);
    assert!(recorder.push(rec("in-hand", 1)));
    // Once a write failed, the writer holds that batch and takes no more.
    wait_until("a failed write", Duration::from_secs(10), || {
        recorder.failures() >= 1
    })
    .await;

    let pushed = push_all(&recorder, (0..10).map(|i| format!("q{i}")));
    assert_eq!(
        pushed,
        [
            true, true, true, true, false, false, false, false, false, false
        ]
    );
    assert_eq!(recorder.dropped(), 6);
    assert_eq!(recorder.depth(), 5);

    // Shutdown waits for the store within its grace, and writes it all.
    outage.release();
    assert!(writer.shutdown(Duration::from_secs(10)).await);
    let mut stored: Vec<String> = store
        .list(&Filter::default())
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    stored.sort();
    assert_eq!(stored, ["in-hand", "q0", "q1", "q2", "q3"]);
    assert_eq!((recorder.written(), recorder.depth()), (5, 0));

    // After shutdown the queue is closed: pushes are dropped, counted.
    assert!(!recorder.push(rec("late", 1)));
    assert_eq!(recorder.dropped(), 7);
}

#[tokio::test]
async fn shutdown_reports_records_it_could_not_write() {
    let (_dir, path, store) = sqlite::store().await;
    let (recorder, writer) = spawn(store.clone(), config(100, 10));
    let outage = Outage::start(&path);
    assert!(
        push_all(&recorder, (0..3).map(|i| format!("r{i}")))
            .iter()
            .all(|&ok| ok)
    );
    let started = Instant::now();
    assert!(!writer.shutdown(Duration::from_millis(400)).await);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "shutdown keeps its grace"
    );
    assert_eq!(recorder.depth(), 3);
    // An insert already running when the task was stopped gives up within
    // the busy timeout (250 ms); none starts after.
    tokio::time::sleep(Duration::from_millis(400)).await;
    outage.release();
    assert_eq!(count(&store).await, 0);
}

#[tokio::test]
async fn prunes_by_retention() {
    let (_dir, _path, store) = sqlite::store().await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    // Stored before the writer starts: it prunes once at start, then on
    // every tick.
    store
        .insert(
            &(0..5)
                .map(|i| rec(&format!("old{i}"), now - 1_000 + i))
                .collect::<Vec<_>>(),
        )
        .await
        .unwrap();
    let cfg = WriterConfig {
        retention: Retention {
            max_age: None,
            max_records: Some(3),
        },
        prune_every: Duration::from_millis(50),
        ..config(100, 10)
    };
    let (recorder, writer) = spawn(store.clone(), cfg);
    for i in 0..5 {
        assert!(recorder.push(rec(&format!("new{i}"), now + i)));
    }
    assert!(recorder.flush(Duration::from_secs(5)).await);
    let deadline = Instant::now() + Duration::from_secs(10);
    while count(&store).await > 3 {
        assert!(Instant::now() < deadline, "not pruned");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let left = store.list(&Filter::default()).await.unwrap();
    assert_eq!(crate::ids(&left), ["new4", "new3", "new2"]);
    assert!(writer.shutdown(Duration::from_secs(5)).await);
}
