//! The SQLite backend: the embedded default.
//!
//! One connection behind a `std::sync::Mutex`; every call runs on tokio's
//! blocking pool. The file is in WAL mode, so readers (the CLI, opening the
//! same file) never wait for the writer, and `synchronous=NORMAL`: a power
//! cut may lose the last transactions, never corrupt the file. The busy
//! timeout is short (250 ms) because the writer retries a failed batch
//! anyway, and a long wait would only hold the blocking thread.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, TransactionBehavior, params_from_iter};

use crate::error::Repr;
use crate::sql::{self, Dialect, Query, Value};

const BUSY_TIMEOUT: Duration = Duration::from_millis(250);

/// Migration steps, in order: step `i` is schema version `i + 1`. Append,
/// never edit: a database remembers which versions it has run.
const MIGRATIONS: &[&str] = &["
CREATE TABLE requests (
    id            TEXT PRIMARY KEY,
    trace_id      TEXT NOT NULL,
    time_ms       INTEGER NOT NULL,
    session       TEXT,
    key_id        TEXT,
    front         TEXT NOT NULL,
    op            TEXT NOT NULL,
    route         TEXT,
    model         TEXT NOT NULL,
    target        TEXT,
    status        INTEGER NOT NULL,
    error_kind    TEXT,
    error         TEXT,
    degraded      TEXT,
    stream        INTEGER NOT NULL,
    latency_ms    REAL NOT NULL,
    ttft_ms       REAL,
    upstream_ms   REAL NOT NULL,
    overhead_ms   REAL NOT NULL,
    input_tokens  INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL,
    cached_tokens INTEGER NOT NULL,
    cost_usd      REAL,
    cache_hit     INTEGER NOT NULL,
    fallback      INTEGER NOT NULL,
    reasks        INTEGER NOT NULL,
    record        TEXT NOT NULL
);
CREATE INDEX requests_time ON requests (time_ms, id);
CREATE INDEX requests_model ON requests (model);
CREATE INDEX requests_key ON requests (key_id);
CREATE INDEX requests_status ON requests (status);
CREATE TABLE feedback (
    id         INTEGER PRIMARY KEY,
    request_id TEXT NOT NULL,
    time_ms    INTEGER NOT NULL,
    score      REAL,
    label      TEXT,
    comment    TEXT
);
CREATE INDEX feedback_request ON feedback (request_id);
", "
-- A client may reuse a request id: every request keeps its own row, keyed
-- by insertion order; `id` is indexed, not unique.
CREATE TABLE requests_v2 (
    seq           INTEGER PRIMARY KEY,
    id            TEXT NOT NULL,
    trace_id      TEXT NOT NULL,
    time_ms       INTEGER NOT NULL,
    session       TEXT,
    key_id        TEXT,
    front         TEXT NOT NULL,
    op            TEXT NOT NULL,
    route         TEXT,
    model         TEXT NOT NULL,
    target        TEXT,
    status        INTEGER NOT NULL,
    error_kind    TEXT,
    error         TEXT,
    degraded      TEXT,
    stream        INTEGER NOT NULL,
    latency_ms    REAL NOT NULL,
    ttft_ms       REAL,
    upstream_ms   REAL NOT NULL,
    overhead_ms   REAL NOT NULL,
    input_tokens  INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL,
    cached_tokens INTEGER NOT NULL,
    cost_usd      REAL,
    cache_hit     INTEGER NOT NULL,
    fallback      INTEGER NOT NULL,
    reasks        INTEGER NOT NULL,
    record        TEXT NOT NULL
);
INSERT INTO requests_v2 (id, trace_id, time_ms, session, key_id, front, op, route, model, target, status, error_kind, error, degraded, stream, latency_ms, ttft_ms, upstream_ms, overhead_ms, input_tokens, output_tokens, cached_tokens, cost_usd, cache_hit, fallback, reasks, record)
    SELECT id, trace_id, time_ms, session, key_id, front, op, route, model, target, status, error_kind, error, degraded, stream, latency_ms, ttft_ms, upstream_ms, overhead_ms, input_tokens, output_tokens, cached_tokens, cost_usd, cache_hit, fallback, reasks, record FROM requests ORDER BY time_ms;
DROP TABLE requests;
ALTER TABLE requests_v2 RENAME TO requests;
CREATE INDEX requests_id ON requests (id);
CREATE INDEX requests_time ON requests (time_ms, id);
CREATE INDEX requests_model ON requests (model);
CREATE INDEX requests_key ON requests (key_id);
CREATE INDEX requests_status ON requests (status);
", sql::KEYS_TABLE];

#[derive(Clone)]
pub(crate) struct Sqlite {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    conn: Mutex<Connection>,
}

impl Sqlite {
    /// Opens (creating file and directory when missing), configures and
    /// migrates.
    pub(crate) async fn open(path: &Path) -> Result<Sqlite, Repr> {
        let path = path.to_owned();
        let target = path.display().to_string();
        let opened = tokio::task::spawn_blocking(move || {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)?;
            }
            let mut conn = Connection::open(&path)?;
            conn.busy_timeout(BUSY_TIMEOUT)?;
            conn.pragma_update(None, "journal_mode", "WAL")?;
            conn.pragma_update(None, "synchronous", "NORMAL")?;
            // Checkpoint every ~40 MB of WAL instead of ~4 MB: index pages
            // that random request ids touch again and again are copied into
            // the database once per checkpoint, not ten times (a fifth less
            // CPU per record, measured).
            conn.pragma_update(None, "wal_autocheckpoint", 10_000)?;
            migrate(&mut conn)?;
            Ok(Sqlite {
                inner: Arc::new(Inner {
                    path,
                    conn: Mutex::new(conn),
                }),
            })
        })
        .await;
        opened
            .map_err(Repr::from)
            .and_then(|r| r)
            .map_err(|e| e.opening(&target))
    }

    pub(crate) fn target(&self) -> String {
        self.inner.path.display().to_string()
    }

    pub(crate) async fn query(&self, q: Query) -> Result<Vec<Vec<Value>>, Repr> {
        self.run(move |conn| {
            let mut stmt = conn.prepare_cached(&q.sql)?;
            let width = stmt.column_count();
            let mut rows = stmt.query(params_from_iter(&q.params))?;
            let mut out = Vec::new();
            while let Some(row) = rows.next()? {
                out.push(
                    (0..width)
                        .map(|i| row.get_ref(i).map(cell))
                        .collect::<Result<_, _>>()?,
                );
            }
            Ok(out)
        })
        .await
    }

    pub(crate) async fn transaction(&self, qs: Vec<Query>) -> Result<Vec<u64>, Repr> {
        self.run(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let mut counts = Vec::with_capacity(qs.len());
            for q in &qs {
                let n = tx
                    .prepare_cached(&q.sql)?
                    .execute(params_from_iter(&q.params))?;
                counts.push(n as u64);
            }
            tx.commit()?;
            Ok(counts)
        })
        .await
    }

    /// Runs `f` on the connection, on the blocking pool.
    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, Repr> {
        let inner = Arc::clone(&self.inner);
        let done = tokio::task::spawn_blocking(move || {
            // A panic while holding the lock leaves the connection usable
            // (SQLite rolls back an unfinished transaction on the next BEGIN).
            let mut conn = inner.conn.lock().unwrap_or_else(PoisonError::into_inner);
            f(&mut conn)
        })
        .await?;
        Ok(done?)
    }
}

/// Runs the migrations the file lacks, in one `BEGIN IMMEDIATE`
/// transaction so two processes opening a new file don't both run them.
/// An up-to-date file is only read (no write lock: a reader opening the
/// file while the server writes doesn't wait).
fn migrate(conn: &mut Connection) -> Result<(), Repr> {
    let latest = i64::try_from(MIGRATIONS.len()).unwrap_or(i64::MAX);
    if version(conn)? == latest {
        return Ok(());
    }
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.execute_batch(sql::MIGRATIONS_TABLE)?;
    for (version, step) in sql::pending(version(&tx)?, MIGRATIONS)? {
        tx.execute_batch(step)?;
        let q = sql::record_migration(Dialect::Sqlite, version);
        tx.execute(&q.sql, params_from_iter(&q.params))?;
    }
    tx.commit()?;
    Ok(())
}

/// The schema version: 0 for a file without `schema_migrations`.
fn version(conn: &Connection) -> rusqlite::Result<i64> {
    let has_table: bool = conn.query_row(
        "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'",
        [],
        |r| r.get(0),
    )?;
    if !has_table {
        return Ok(0);
    }
    conn.query_row(sql::CURRENT_VERSION, [], |r| r.get(0))
}

fn cell(v: ValueRef<'_>) -> Value {
    match v {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => Value::Int(i),
        ValueRef::Real(r) => Value::Real(r),
        ValueRef::Text(t) | ValueRef::Blob(t) => {
            Value::Text(String::from_utf8_lossy(t).into_owned())
        }
    }
}

impl rusqlite::ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match self {
            Value::Null => ValueRef::Null,
            Value::Int(i) => ValueRef::Integer(*i),
            Value::Real(r) => ValueRef::Real(*r),
            Value::Text(s) => ValueRef::Text(s.as_bytes()),
            Value::Flag(b) => ValueRef::Integer(i64::from(*b)),
        }))
    }
}
