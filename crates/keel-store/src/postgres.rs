//! The Postgres backend, for several gateway replicas sharing one log.
//!
//! One plain connection (`NoTls`), no pool: keel expects the server on
//! loopback or a sidecar proxy that does TLS and pooling. Operations hold
//! the connection one at a time (a transaction must not interleave with
//! another caller's statements).
//!
//! The server may go away and come back: a call that finds the connection
//! closed opens a new one first, so the first call after an outage fails
//! and a later one reconnects; nothing reconnects in the background.
//!
//! Batches are written as multi-row `INSERT` statements
//! ([`crate::sql::insert_requests`]) rather than `COPY`: a batch of a few
//! hundred rows is one round trip either way, and the statement shares its
//! SQL with SQLite.

use std::error::Error as StdError;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::sync::{MappedMutexGuard, Mutex, MutexGuard};
use tokio_postgres::types::{IsNull, ToSql, Type, to_sql_checked};
use tokio_postgres::{Client, Config, NoTls, Row};

use crate::error::{Repr, chain, redact};
use crate::sql::{self, Dialect, Query, Value};

/// Used when the URL sets no `connect_timeout`.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The advisory lock that serialises migrations between replicas starting
/// together (an arbitrary constant: "keel" in ASCII).
const MIGRATION_LOCK: i64 = 0x6b65_656c;

/// Migration steps, in order: step `i` is schema version `i + 1`. Append,
/// never edit: a database remembers which versions it has run. Integers
/// are all BIGINT, so every integer parameter is an `i64`.
const MIGRATIONS: &[&str] = &[
    "
CREATE TABLE requests (
    id            TEXT PRIMARY KEY,
    trace_id      TEXT NOT NULL,
    time_ms       BIGINT NOT NULL,
    session       TEXT,
    key_id        TEXT,
    front         TEXT NOT NULL,
    op            TEXT NOT NULL,
    route         TEXT,
    model         TEXT NOT NULL,
    target        TEXT,
    status        BIGINT NOT NULL,
    error_kind    TEXT,
    error         TEXT,
    degraded      TEXT,
    stream        BOOLEAN NOT NULL,
    latency_ms    DOUBLE PRECISION NOT NULL,
    ttft_ms       DOUBLE PRECISION,
    upstream_ms   DOUBLE PRECISION NOT NULL,
    overhead_ms   DOUBLE PRECISION NOT NULL,
    input_tokens  BIGINT NOT NULL,
    output_tokens BIGINT NOT NULL,
    cached_tokens BIGINT NOT NULL,
    cost_usd      DOUBLE PRECISION,
    cache_hit     BOOLEAN NOT NULL,
    fallback      BOOLEAN NOT NULL,
    reasks        BIGINT NOT NULL,
    record        JSONB NOT NULL
);
CREATE INDEX requests_time ON requests (time_ms, id);
CREATE INDEX requests_model ON requests (model);
CREATE INDEX requests_key ON requests (key_id);
CREATE INDEX requests_status ON requests (status);
CREATE TABLE feedback (
    id         BIGSERIAL PRIMARY KEY,
    request_id TEXT NOT NULL,
    time_ms    BIGINT NOT NULL,
    score      DOUBLE PRECISION,
    label      TEXT,
    comment    TEXT
);
CREATE INDEX feedback_request ON feedback (request_id);
",
    "
-- A client may reuse a request id: every request keeps its own row, keyed
-- by insertion order; `id` is indexed, not unique.
ALTER TABLE requests DROP CONSTRAINT requests_pkey;
ALTER TABLE requests ADD COLUMN seq BIGSERIAL PRIMARY KEY;
CREATE INDEX requests_id ON requests (id);
",
    sql::KEYS_TABLE,
];

#[derive(Clone)]
pub(crate) struct Postgres {
    inner: Arc<Inner>,
}

struct Inner {
    config: Config,
    /// The URL with its password redacted: the only form ever printed.
    target: String,
    /// `None` until the first call, and after a connection error.
    client: Mutex<Option<Client>>,
}

impl Postgres {
    /// Connects and migrates. Unlike later calls, this fails when the
    /// server is unreachable: the caller decides whether to start without
    /// a log.
    pub(crate) async fn open(url: &str) -> Result<Postgres, Repr> {
        let target = redact(url);
        let mut config: Config = url.parse().map_err(|e| Repr::from(e).opening(&target))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        if config.get_application_name().is_none() {
            config.application_name("keel");
        }
        let pg = Postgres {
            inner: Arc::new(Inner {
                config,
                target: target.clone(),
                client: Mutex::new(None),
            }),
        };
        pg.migrate().await.map_err(|e| e.opening(&target))?;
        Ok(pg)
    }

    pub(crate) fn target(&self) -> String {
        self.inner.target.clone()
    }

    pub(crate) async fn query(&self, q: Query) -> Result<Vec<Vec<Value>>, Repr> {
        let client = self.connection().await?;
        let rows = client.query(&q.sql, &params(&q.params)).await?;
        rows.iter().map(cells).collect()
    }

    pub(crate) async fn transaction(&self, qs: Vec<Query>) -> Result<Vec<u64>, Repr> {
        let mut client = self.connection().await?;
        let tx = client.transaction().await?;
        let mut counts = Vec::with_capacity(qs.len());
        for q in &qs {
            counts.push(tx.execute(&q.sql, &params(&q.params)).await?);
        }
        tx.commit().await?;
        Ok(counts)
    }

    /// The connection, opened first when there is none or it has closed.
    /// Held until the guard drops.
    async fn connection(&self) -> Result<MappedMutexGuard<'_, Client>, Repr> {
        let mut slot = self.inner.client.lock().await;
        let client = match slot.take() {
            Some(client) if !client.is_closed() => client,
            _ => {
                let (client, connection) = self.inner.config.connect(NoTls).await?;
                let target = self.inner.target.clone();
                tokio::spawn(async move {
                    if let Err(e) = connection.await {
                        tracing::debug!(%target, error = %chain(&e), "postgres connection ended");
                    }
                });
                client
            }
        };
        Ok(MutexGuard::map(slot, |slot| slot.insert(client)))
    }

    /// Runs the migrations the database lacks, in one transaction, under an
    /// advisory lock so replicas starting together don't race.
    async fn migrate(&self) -> Result<(), Repr> {
        let mut client = self.connection().await?;
        let tx = client.transaction().await?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .await?;
        tx.batch_execute(sql::MIGRATIONS_TABLE).await?;
        let current: i64 = tx.query_one(sql::CURRENT_VERSION, &[]).await?.try_get(0)?;
        for (version, step) in sql::pending(current, MIGRATIONS)? {
            tx.batch_execute(step).await?;
            let q = sql::record_migration(Dialect::Postgres, version);
            tx.execute(&q.sql, &params(&q.params)).await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

fn params(values: &[Value]) -> Vec<&(dyn ToSql + Sync)> {
    values.iter().map(|v| v as &(dyn ToSql + Sync)).collect()
}

/// A result row as [`Value`]s, by column type.
fn cells(row: &Row) -> Result<Vec<Value>, Repr> {
    let cell = |i: usize, ty: &Type| -> Result<Value, tokio_postgres::Error> {
        Ok(match *ty {
            Type::INT8 => row
                .try_get::<_, Option<i64>>(i)?
                .map_or(Value::Null, Value::Int),
            Type::INT4 => row
                .try_get::<_, Option<i32>>(i)?
                .map_or(Value::Null, |v| Value::Int(v.into())),
            Type::FLOAT8 => row
                .try_get::<_, Option<f64>>(i)?
                .map_or(Value::Null, Value::Real),
            Type::BOOL => row
                .try_get::<_, Option<bool>>(i)?
                .map_or(Value::Null, Value::Flag),
            _ => row
                .try_get::<_, Option<String>>(i)?
                .map_or(Value::Null, Value::Text),
        })
    };
    row.columns()
        .iter()
        .enumerate()
        .map(|(i, column)| cell(i, column.type_()).map_err(Repr::from))
        .collect()
}

/// Binds by the type the server inferred for the parameter, so one enum
/// can stand for every parameter.
impl ToSql for Value {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn StdError + Sync + Send>> {
        match self {
            Value::Null => Ok(IsNull::Yes),
            Value::Int(i) if *ty == Type::INT4 => i32::try_from(*i)?.to_sql(ty, out),
            Value::Int(i) => i.to_sql(ty, out),
            Value::Real(r) => r.to_sql(ty, out),
            Value::Text(s) => s.to_sql(ty, out),
            Value::Flag(b) => b.to_sql(ty, out),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}
