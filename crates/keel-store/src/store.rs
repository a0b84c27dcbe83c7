//! [`Store`]: one cheap-to-clone handle over either backend, and the query
//! types of its API. Every operation is written once here against
//! [`crate::sql`]; a backend only connects, migrates, and runs statements.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::error::{StoreError, redact};
use crate::keys::VirtualKey;
use crate::postgres::Postgres;
use crate::record::{Feedback, RequestRecord};
use crate::sql::{self, Cells, Dialect, Prune, Query, Selection, Value};
use crate::sqlite::Sqlite;
use crate::stats::{self, GroupBy, Stats};

/// Where the request log lives.
#[derive(Clone, PartialEq, Eq)]
pub enum StoreConfig {
    /// A SQLite file (created, with its directory, when missing).
    Sqlite { path: PathBuf },
    /// A Postgres connection string (`postgres://user:pass@host:port/db`
    /// or `key=value` form). No TLS and no pool: keel keeps one plain
    /// connection, so use a server on loopback or reach it through a
    /// sidecar proxy that provides TLS.
    Postgres { url: String },
}

/// Prints a Postgres URL with its password redacted.
impl fmt::Debug for StoreConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreConfig::Sqlite { path } => f.debug_struct("Sqlite").field("path", path).finish(),
            StoreConfig::Postgres { url } => f
                .debug_struct("Postgres")
                .field("url", &redact(url))
                .finish(),
        }
    }
}

/// Which requests [`Store::list`] and [`Store::stats`] look at. Every field
/// set narrows the selection; the default selects everything.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Filter {
    /// Arrived at or after (Unix ms).
    pub since_ms: Option<i64>,
    /// Arrived before (Unix ms, exclusive).
    pub until_ms: Option<i64>,
    pub model: Option<String>,
    pub key_id: Option<String>,
    pub target: Option<String>,
    /// The function or workflow name.
    pub route: Option<String>,
    /// Only requests of these ops (`chat`, `function`, …); empty: any.
    pub ops: Vec<String>,
    pub status: Option<StatusFilter>,
    pub error_kind: Option<String>,
    /// Only requests whose latest scored feedback is at least this score.
    /// Either bound leaves out the requests without a scored feedback.
    pub min_score: Option<f64>,
    /// Only requests whose latest scored feedback is at most this score.
    pub max_score: Option<f64>,
    /// Case-insensitive substring of the id, model, target, error, input or
    /// output (`%` and `_` match literally). On SQLite only ASCII letters
    /// fold case.
    pub text: Option<String>,
    /// Only requests strictly after this `(time_ms, id)`, in list order
    /// (`time_ms`, then id): the cursor of `keel logs --follow`, set to the
    /// newest record seen. Records newer than the cursor still come newest
    /// first and at most `limit` of them, so a follower should use a
    /// generous limit.
    pub after_time_ms: Option<(i64, String)>,
    /// At most this many records from [`Store::list`]; 0 means no limit.
    /// [`Store::stats`] ignores it.
    pub limit: usize,
}

/// A status condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusFilter {
    Exact(u16),
    /// A class by its first digit: 2 is 200–299, 4 is 400–499, …
    Class(u8),
    /// Any status of 400 or more.
    Errors,
}

/// How much of the log to keep. Pruning removes the oldest requests first,
/// with their feedback.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Retention {
    pub max_age: Option<Duration>,
    pub max_records: Option<u64>,
}

impl Retention {
    /// Whether anything would ever be pruned.
    pub(crate) fn is_set(&self) -> bool {
        self.max_age.is_some() || self.max_records.is_some()
    }
}

/// The request log. Cloning is cheap and clones share one connection:
/// operations on one `Store` run one at a time. A process that only reads
/// (the CLI) opens its own.
#[derive(Clone)]
pub struct Store {
    backend: Backend,
}

#[derive(Clone)]
enum Backend {
    Sqlite(Sqlite),
    Postgres(Postgres),
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let target = match &self.backend {
            Backend::Sqlite(s) => s.target(),
            Backend::Postgres(p) => p.target(),
        };
        f.debug_struct("Store")
            .field("kind", &self.kind())
            .field("target", &target)
            .finish()
    }
}

impl Store {
    /// Connects and brings the schema up to date (running the migrations
    /// it lacks; an empty database gets them all).
    pub async fn open(cfg: &StoreConfig) -> Result<Store, StoreError> {
        let backend = match cfg {
            StoreConfig::Sqlite { path } => Backend::Sqlite(Sqlite::open(path).await?),
            StoreConfig::Postgres { url } => Backend::Postgres(Postgres::open(url).await?),
        };
        Ok(Store { backend })
    }

    /// `sqlite` or `postgres`.
    pub fn kind(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite(_) => "sqlite",
            Backend::Postgres(_) => "postgres",
        }
    }

    /// Stores a batch in one transaction. Ids need not be unique (clients
    /// choose request ids and may reuse one): every record is kept, and
    /// [`Store::get`] returns the latest under an id.
    pub async fn insert(&self, records: &[RequestRecord]) -> Result<(), StoreError> {
        if records.is_empty() {
            return Ok(());
        }
        self.transaction(sql::insert_requests(self.dialect(), records)?)
            .await?;
        Ok(())
    }

    /// One request, with its feedback (oldest first).
    pub async fn get(&self, id: &str) -> Result<Option<RequestRecord>, StoreError> {
        Ok(self.select(&Selection::Id(id)).await?.pop())
    }

    pub async fn exists(&self, id: &str) -> Result<bool, StoreError> {
        let rows = self.query(sql::exists(self.dialect(), id)).await?;
        Ok(!rows.is_empty())
    }

    /// Attaches feedback to a request id. The request need not be stored
    /// yet (its record may still be queued in the writer); feedback for an
    /// id never stored is kept but never shown.
    pub async fn add_feedback(&self, fb: &Feedback) -> Result<(), StoreError> {
        self.transaction(vec![sql::insert_feedback(self.dialect(), fb)])
            .await?;
        Ok(())
    }

    /// The matching requests, newest first (ties by id, descending), each
    /// with its feedback; at most `filter.limit` of them (0: all).
    pub async fn list(&self, filter: &Filter) -> Result<Vec<RequestRecord>, StoreError> {
        self.select(&Selection::Filter(filter)).await
    }

    /// Aggregates over the matching requests, one [`Stats`] per group,
    /// most requests first.
    pub async fn stats(&self, filter: &Filter, by: GroupBy) -> Result<Vec<Stats>, StoreError> {
        let rows = self.query(sql::select_slim(self.dialect(), filter)).await?;
        Ok(stats::aggregate(rows, by))
    }

    /// Removes requests older than `max_age`, then the oldest beyond
    /// `max_records`, each with its feedback. Returns how many requests
    /// went (feedback rows are not counted).
    pub async fn prune(&self, retention: &Retention) -> Result<u64, StoreError> {
        let mut removed = 0;
        if let Some(age) = retention.max_age {
            let age = i64::try_from(age.as_millis()).unwrap_or(i64::MAX);
            let cutoff = sql::now_ms().saturating_sub(age);
            removed += self.delete(Prune::OlderThan(cutoff)).await?;
        }
        if let Some(keep) = retention.max_records {
            let rows = self.query(sql::nth_newest(self.dialect(), keep)).await?;
            if let Some(row) = rows.into_iter().next() {
                let mut c = Cells::new(row);
                if let (Some(time_ms), Some(id)) = (c.int(), c.text()) {
                    removed += self.delete(Prune::UpTo(time_ms, id)).await?;
                }
            }
        }
        Ok(removed)
    }

    /// Stores a new virtual key.
    pub async fn insert_key(&self, key: &VirtualKey) -> Result<(), StoreError> {
        self.transaction(vec![sql::insert_key(self.dialect(), key)?])
            .await?;
        Ok(())
    }

    /// A key by id, revoked or not.
    pub async fn key(&self, id: &str) -> Result<Option<VirtualKey>, StoreError> {
        let rows = self
            .query(sql::select_keys(self.dialect(), Some(id)))
            .await?;
        Ok(sql::decode_keys(rows)?.pop())
    }

    /// What the requests made with any of `key_ids` since `since_ms` cost,
    /// per UTC day (days since the Unix epoch, in dollars): what budgets
    /// kept in a process's memory start from.
    pub async fn spend_by_day(
        &self,
        key_ids: &[String],
        since_ms: i64,
    ) -> Result<Vec<(i64, f64)>, StoreError> {
        if key_ids.is_empty() {
            return Ok(Vec::new());
        }
        let rows = self
            .query(sql::spend_by_day(self.dialect(), key_ids, since_ms))
            .await?;
        Ok(rows
            .into_iter()
            .filter_map(|row| {
                let mut c = Cells::new(row);
                Some((c.int()?, c.real()?))
            })
            .collect())
    }

    /// Every key, oldest first.
    pub async fn keys(&self) -> Result<Vec<VirtualKey>, StoreError> {
        let rows = self.query(sql::select_keys(self.dialect(), None)).await?;
        Ok(sql::decode_keys(rows)?)
    }

    /// Revokes a key; `false` when there is no such key or it was already
    /// revoked.
    pub async fn revoke_key(&self, id: &str) -> Result<bool, StoreError> {
        let counts = self
            .transaction(vec![sql::revoke_key(self.dialect(), id)])
            .await?;
        Ok(counts.first().copied().unwrap_or(0) > 0)
    }

    async fn select(&self, sel: &Selection<'_>) -> Result<Vec<RequestRecord>, StoreError> {
        let d = self.dialect();
        let rows = self.query(sql::select_records(d, sel)).await?;
        let feedback = if rows.is_empty() {
            Vec::new()
        } else {
            self.query(sql::select_feedback(d, sel)).await?
        };
        Ok(sql::decode_records(rows, feedback)?)
    }

    async fn delete(&self, which: Prune) -> Result<u64, StoreError> {
        let counts = self
            .transaction(sql::prune(self.dialect(), &which).into())
            .await?;
        Ok(counts.last().copied().unwrap_or(0))
    }

    fn dialect(&self) -> Dialect {
        match self.backend {
            Backend::Sqlite(_) => Dialect::Sqlite,
            Backend::Postgres(_) => Dialect::Postgres,
        }
    }

    async fn query(&self, q: Query) -> Result<Vec<Vec<Value>>, StoreError> {
        Ok(match &self.backend {
            Backend::Sqlite(s) => s.query(q).await?,
            Backend::Postgres(p) => p.query(q).await?,
        })
    }

    /// Runs the statements in one transaction; rows affected by each.
    async fn transaction(&self, qs: Vec<Query>) -> Result<Vec<u64>, StoreError> {
        Ok(match &self.backend {
            Backend::Sqlite(s) => s.transaction(qs).await?,
            Backend::Postgres(p) => p.transaction(qs).await?,
        })
    }
}
