//! The API checks against a real Postgres, plus migrations and a server
//! restart under the writer.
//!
//! `KEEL_TEST_PG_URL` is a superuser URL (`postgres://postgres@127.0.0.1:PORT/postgres`);
//! each test creates its own database and drops it at the end.
//! `KEEL_TEST_PG_CTL` is the `pg_ctl` command line (without an action) that
//! stops and starts that server, for the restart test. `scripts/postgres
//! start` prints both. Unset, the tests are skipped — unless `CI` is set,
//! where they fail.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use keel_store::{Filter, Store, StoreConfig, WriterConfig, spawn};
use tokio::sync::RwLock;
use tokio_postgres::NoTls;

use crate::{api, rec, stats, wait_until};

/// The restart test stops the server every other test uses: it takes this
/// lock for writing, the others for reading.
static SERVER: RwLock<()> = RwLock::const_new(());

/// The variable's value; `None` (and a line saying the test was skipped)
/// when unset, or a failure under CI.
fn setting(name: &str) -> Option<String> {
    if let Some(v) = std::env::var(name).ok().filter(|v| !v.is_empty()) {
        return Some(v);
    }
    if std::env::var_os("CI").is_some() {
        panic!(
            "{name} is not set, and CI must run the Postgres tests: eval \"$(scripts/postgres start)\" first"
        );
    }
    println!(
        "skipped: {name} is not set (eval \"$(scripts/postgres start)\" to run the Postgres tests)"
    );
    None
}

/// A database of its own for one test.
struct TestDb {
    admin: String,
    name: String,
    url: String,
}

impl TestDb {
    async fn create() -> Option<TestDb> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let admin = setting("KEEL_TEST_PG_URL")?;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let name = format!(
            "keel_test_{}_{}_{nanos}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        execute(&admin, &format!("CREATE DATABASE {name}")).await;
        let url = with_database(&admin, &name);
        Some(TestDb { admin, name, url })
    }

    async fn open(&self) -> Store {
        Store::open(&StoreConfig::Postgres {
            url: self.url.clone(),
        })
        .await
        .unwrap()
    }

    async fn drop(self) {
        execute(
            &self.admin,
            &format!("DROP DATABASE {} WITH (FORCE)", self.name),
        )
        .await;
    }
}

/// The URL with its database (path) replaced.
fn with_database(url: &str, name: &str) -> String {
    let after_scheme = url
        .find("://")
        .expect("KEEL_TEST_PG_URL must be a postgres:// URL")
        + 3;
    let path = url[after_scheme..]
        .find(['/', '?'])
        .map_or(url.len(), |i| after_scheme + i);
    let query = url[path..].find('?').map_or(url.len(), |i| path + i);
    format!("{}/{name}{}", &url[..path], &url[query..])
}

async fn client(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await.unwrap();
    tokio::spawn(connection);
    client
}

async fn execute(url: &str, sql: &str) {
    client(url).await.batch_execute(sql).await.unwrap();
}

macro_rules! checks {
    ($($name:ident => $check:path;)*) => {$(
        #[tokio::test]
        async fn $name() {
            let _server = SERVER.read().await;
            let Some(db) = TestDb::create().await else { return };
            let store = db.open().await;
            $check(&store).await;
            drop(store);
            db.drop().await;
        }
    )*};
}

checks! {
    round_trip => api::round_trip;
    large_batch => api::large_batch;
    duplicate_ids => api::duplicate_ids;
    feedback => api::feedback;
    list_filters => api::list_filters;
    capture_filters => api::capture_filters;
    prune => api::prune;
    nul_bytes => api::nul_bytes;
    keys => api::keys;
    spend_by_day => api::spend_by_day;
    stats => stats::grouped;
}

async fn migrations(url: &str) -> Vec<(i64, i64)> {
    client(url)
        .await
        .query(
            "SELECT version, applied_at FROM schema_migrations ORDER BY version",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect()
}

#[tokio::test]
async fn migrates_from_empty_and_reopens_as_a_no_op() {
    let _server = SERVER.read().await;
    let Some(db) = TestDb::create().await else {
        return;
    };
    let store = db.open().await;
    assert_eq!(store.kind(), "postgres");
    let applied = migrations(&db.url).await;
    assert_eq!(applied.iter().map(|m| m.0).collect::<Vec<_>>(), [1, 2, 3]);
    assert!(applied[0].1 > 1_700_000_000_000, "applied_at is Unix ms");
    store.insert(&[rec("kept", 1)]).await.unwrap();

    let second = db.open().await;
    assert_eq!(migrations(&db.url).await, applied);
    assert!(second.exists("kept").await.unwrap());

    // The record column is JSONB: queryable in SQL.
    let model: String = client(&db.url)
        .await
        .query_one(
            "SELECT record->>'model' FROM requests WHERE id = 'kept'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(model, "gpt");

    execute(&db.url, "INSERT INTO schema_migrations VALUES (99, 0)").await;
    let err = Store::open(&StoreConfig::Postgres {
        url: db.url.clone(),
    })
    .await
    .unwrap_err()
    .to_string();
    assert!(err.contains("schema version 99"), "{err}");
    drop((store, second));
    db.drop().await;
}

/// Runs `$KEEL_TEST_PG_CTL <action>`; its output when it fails.
fn pg_ctl(ctl: &str, action: &str) -> Result<(), String> {
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("{ctl} {action}"))
        .output()
        .unwrap();
    if out.status.success() {
        return Ok(());
    }
    Err(format!(
        "{ctl} {action}: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    ))
}

/// Starts the server again however the test ends (without a panic in
/// `drop`: it may run while a failed assertion unwinds).
struct Restart<'a>(Option<&'a str>);

impl Restart<'_> {
    fn now(mut self) -> Result<(), String> {
        self.0.take().map_or(Ok(()), |ctl| pg_ctl(ctl, "start"))
    }
}

impl Drop for Restart<'_> {
    fn drop(&mut self) {
        if let Some(Err(e)) = self.0.map(|ctl| pg_ctl(ctl, "start")) {
            eprintln!("{e}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writer_survives_a_server_restart() {
    let _server = SERVER.write().await;
    let Some(ctl) = setting("KEEL_TEST_PG_CTL") else {
        return;
    };
    let Some(db) = TestDb::create().await else {
        return;
    };
    let store = db.open().await;
    let cfg = WriterConfig {
        flush_every: Duration::from_millis(20),
        ..WriterConfig::default()
    };
    let (recorder, writer) = spawn(store.clone(), cfg);
    assert!(recorder.push(rec("before", 1)));
    assert!(recorder.flush(Duration::from_secs(5)).await);

    pg_ctl(&ctl, "stop -m fast").unwrap();
    let restart = Restart(Some(&ctl));
    for i in 0..100 {
        let started = Instant::now();
        assert!(recorder.push(rec(&format!("during{i}"), 2)));
        assert!(
            started.elapsed() < Duration::from_millis(100),
            "push blocked"
        );
    }
    wait_until("failed writes", Duration::from_secs(20), || {
        recorder.failures() >= 2
    })
    .await;
    assert!(
        store.list(&Filter::default()).await.is_err(),
        "the server is down"
    );
    assert_eq!((recorder.depth(), recorder.dropped()), (100, 0));

    restart.now().unwrap();
    assert!(recorder.flush(Duration::from_secs(30)).await);
    assert_eq!(store.list(&Filter::default()).await.unwrap().len(), 101);
    assert_eq!((recorder.written(), recorder.dropped()), (101, 0));
    assert!(writer.shutdown(Duration::from_secs(5)).await);
    drop(store);
    db.drop().await;
}
