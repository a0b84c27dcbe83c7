//! The SQL both backends share. Statements are built here once, as text
//! plus owned parameters ([`Query`]); a backend only runs them and hands
//! rows back as [`Value`]s, which are mapped to records here too. The
//! dialect differences are confined to [`Dialect`]: placeholders, `LIKE`
//! versus `ILIKE`, and how the JSON `record` column is written and read.

use std::borrow::Cow;
use std::collections::HashMap;

use crate::error::Repr;
use crate::keys::VirtualKey;
use crate::record::{Feedback, RequestRecord};
use crate::store::{Filter, StatusFilter};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    /// The placeholder for the `n`th parameter (1-based). Numbered
    /// placeholders let one parameter appear several times.
    fn param(self, n: usize) -> String {
        match self {
            Dialect::Sqlite => format!("?{n}"),
            Dialect::Postgres => format!("${n}"),
        }
    }

    /// Case-insensitive `LIKE`. SQLite's `LIKE` folds ASCII letters only.
    fn like(self) -> &'static str {
        match self {
            Dialect::Sqlite => "LIKE",
            Dialect::Postgres => "ILIKE",
        }
    }

    /// A text parameter stored into the `record` column (JSONB on Postgres:
    /// the cast makes the parameter plain text, so no JSON type is needed
    /// on the client).
    fn json_param(self, placeholder: String) -> String {
        match self {
            Dialect::Sqlite => placeholder,
            Dialect::Postgres => format!("CAST({placeholder} AS text)::jsonb"),
        }
    }

    /// The `record` column read back as text.
    fn record(self) -> &'static str {
        match self {
            Dialect::Sqlite => "record",
            Dialect::Postgres => "record::text",
        }
    }

    /// A top-level string field of the `record` column.
    fn record_field(self, name: &str) -> String {
        match self {
            Dialect::Sqlite => format!("json_extract(record, '$.{name}')"),
            Dialect::Postgres => format!("(record->>'{name}')"),
        }
    }
}

/// A parameter or a result cell, in the few types the schema uses.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
    /// SQLite stores flags as 0/1 integers, Postgres as booleans.
    Flag(bool),
}

impl Value {
    fn text(s: &str) -> Value {
        Value::Text(s.to_owned())
    }

    fn opt_text(s: Option<&str>) -> Value {
        s.map_or(Value::Null, Value::text)
    }

    fn opt_real(v: Option<f64>) -> Value {
        v.map_or(Value::Null, Value::Real)
    }

    /// Token counts are `u64`; SQL integers are `i64`. Saturate.
    fn count(n: u64) -> Value {
        Value::Int(i64::try_from(n).unwrap_or(i64::MAX))
    }
}

/// Reads one result row, cell by cell, in `SELECT` order. Lenient about
/// types (a missing or mistyped cell reads as absent): the schema is ours
/// and the tests pin the mapping.
pub(crate) struct Cells(std::vec::IntoIter<Value>);

impl Cells {
    pub(crate) fn new(row: Vec<Value>) -> Cells {
        Cells(row.into_iter())
    }

    fn next(&mut self) -> Value {
        self.0.next().unwrap_or(Value::Null)
    }

    pub(crate) fn text(&mut self) -> Option<String> {
        match self.next() {
            Value::Text(s) => Some(s),
            _ => None,
        }
    }

    pub(crate) fn int(&mut self) -> Option<i64> {
        match self.next() {
            Value::Int(i) => Some(i),
            _ => None,
        }
    }

    pub(crate) fn real(&mut self) -> Option<f64> {
        match self.next() {
            Value::Real(r) => Some(r),
            Value::Int(i) => Some(i as f64),
            _ => None,
        }
    }

    pub(crate) fn flag(&mut self) -> bool {
        match self.next() {
            Value::Flag(b) => b,
            Value::Int(i) => i != 0,
            _ => false,
        }
    }

    pub(crate) fn count(&mut self) -> u64 {
        self.int().map_or(0, |i| u64::try_from(i).unwrap_or(0))
    }
}

/// One statement with its parameters.
#[derive(Debug, Clone)]
pub(crate) struct Query {
    dialect: Dialect,
    pub(crate) sql: String,
    pub(crate) params: Vec<Value>,
}

impl Query {
    pub(crate) fn new(dialect: Dialect, sql: impl Into<String>) -> Query {
        Query {
            dialect,
            sql: sql.into(),
            params: Vec::new(),
        }
    }

    /// Adds a parameter; returns its placeholder.
    fn bind(&mut self, v: Value) -> String {
        self.params.push(v);
        self.dialect.param(self.params.len())
    }
}

/// The table that records which migrations ran; the same on both backends.
pub(crate) const MIGRATIONS_TABLE: &str = "CREATE TABLE IF NOT EXISTS schema_migrations (\
     version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)";

pub(crate) const CURRENT_VERSION: &str = "SELECT coalesce(max(version), 0) FROM schema_migrations";

pub(crate) fn record_migration(dialect: Dialect, version: i64) -> Query {
    let mut q = Query::new(dialect, "");
    let (v, at) = (q.bind(Value::Int(version)), q.bind(Value::Int(now_ms())));
    q.sql = format!("INSERT INTO schema_migrations (version, applied_at) VALUES ({v}, {at})");
    q
}

/// The migration steps still to run on a database at version `current`,
/// with their version numbers (step `i` of `steps` is version `i + 1`).
pub(crate) fn pending(
    current: i64,
    steps: &'static [&'static str],
) -> Result<impl Iterator<Item = (i64, &'static str)>, Repr> {
    let known = i64::try_from(steps.len()).unwrap_or(i64::MAX);
    if current > known {
        return Err(Repr::Schema(format!(
            "the database is at schema version {current}, newer than this keel knows ({known}): upgrade keel"
        )));
    }
    let done = usize::try_from(current).unwrap_or(0);
    Ok((1..).zip(steps.iter().copied()).skip(done))
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The `requests` columns in insert order. `record`, the whole record as
/// JSON, comes last; the others are copies of the fields that are filtered
/// on or aggregated.
const REQUEST_COLUMNS: [&str; 27] = [
    "id",
    "trace_id",
    "time_ms",
    "session",
    "key_id",
    "front",
    "op",
    "route",
    "model",
    "target",
    "status",
    "error_kind",
    "error",
    "degraded",
    "stream",
    "latency_ms",
    "ttft_ms",
    "upstream_ms",
    "overhead_ms",
    "input_tokens",
    "output_tokens",
    "cached_tokens",
    "cost_usd",
    "cache_hit",
    "fallback",
    "reasks",
    "record",
];

/// Rows per `INSERT` statement: 500 × 27 parameters stays under both
/// SQLite's (32766) and Postgres's (65535) limits.
const INSERT_CHUNK: usize = 500;

/// Inserts for a batch of records, to run in one transaction. Ids are not
/// unique: clients choose request ids and may reuse one, and each request
/// keeps its own row (`get` returns the latest).
pub(crate) fn insert_requests(
    dialect: Dialect,
    records: &[RequestRecord],
) -> Result<Vec<Query>, Repr> {
    // Postgres pays a round trip per statement: many rows per INSERT.
    // SQLite runs in process: a one-row statement, prepared once and re-run,
    // needs no statement journal (a many-row one writes one to disk).
    let rows_per_insert = match dialect {
        Dialect::Sqlite => 1,
        Dialect::Postgres => INSERT_CHUNK,
    };
    records
        .chunks(rows_per_insert)
        .map(|chunk| {
            let mut q = Query::new(dialect, "");
            let mut rows = Vec::with_capacity(chunk.len());
            for rec in chunk {
                let mut cells: Vec<String> =
                    request_row(rec)?.into_iter().map(|v| q.bind(v)).collect();
                if let Some(record) = cells.pop() {
                    cells.push(dialect.json_param(record));
                }
                rows.push(format!("({})", cells.join(", ")));
            }
            q.sql = format!(
                "INSERT INTO requests ({}) VALUES {}",
                REQUEST_COLUMNS.join(", "),
                rows.join(", ")
            );
            Ok(q)
        })
        .collect()
}

/// One record as the values of [`REQUEST_COLUMNS`].
fn request_row(rec: &RequestRecord) -> Result<[Value; 27], Repr> {
    let json = encode(rec)?;
    // Postgres cannot store NUL in text or JSONB, so a record holding one
    // would fail its batch forever. serde_json writes NUL as `\u0000`; on
    // the rare record that has it, NUL becomes U+FFFD (on both backends,
    // so a record reads back the same from either).
    let (rec, json) = if json.contains("\\u0000") {
        let clean = without_nul(rec)?;
        let json = encode(&clean)?;
        (Cow::Owned(clean), json)
    } else {
        (Cow::Borrowed(rec), json)
    };
    Ok([
        Value::text(&rec.id),
        Value::text(&rec.trace_id),
        Value::Int(rec.time_ms),
        Value::opt_text(rec.session.as_deref()),
        Value::opt_text(rec.key_id.as_deref()),
        Value::text(&rec.front),
        Value::text(&rec.op),
        Value::opt_text(rec.route.as_deref()),
        Value::text(&rec.model),
        Value::opt_text(rec.target.as_deref()),
        Value::Int(rec.status.into()),
        Value::opt_text(rec.error_kind.as_deref()),
        Value::opt_text(rec.error.as_deref()),
        Value::opt_text(rec.degraded.as_deref()),
        Value::Flag(rec.stream),
        Value::Real(rec.latency_ms),
        Value::opt_real(rec.ttft_ms),
        Value::Real(rec.upstream_ms),
        Value::Real(rec.overhead_ms),
        Value::count(rec.input_tokens),
        Value::count(rec.output_tokens),
        Value::count(rec.cached_tokens),
        Value::opt_real(rec.cost_usd),
        Value::Flag(rec.cache_hit),
        Value::Flag(rec.fallback),
        Value::Int(rec.reasks.into()),
        Value::Text(json),
    ])
}

fn encode(rec: &RequestRecord) -> Result<String, Repr> {
    serde_json::to_string(rec).map_err(|error| Repr::Encode {
        id: rec.id.clone(),
        error,
    })
}

/// The record with every NUL in its strings (keys included) replaced.
fn without_nul(rec: &RequestRecord) -> Result<RequestRecord, Repr> {
    fn scrub(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::String(s) => *s = s.replace('\0', "\u{FFFD}"),
            serde_json::Value::Array(items) => items.iter_mut().for_each(scrub),
            serde_json::Value::Object(map) => {
                *map = std::mem::take(map)
                    .into_iter()
                    .map(|(k, mut v)| {
                        scrub(&mut v);
                        (k.replace('\0', "\u{FFFD}"), v)
                    })
                    .collect();
            }
            _ => {}
        }
    }
    let failed = |error| Repr::Encode {
        id: rec.id.clone(),
        error,
    };
    let mut value = serde_json::to_value(rec).map_err(failed)?;
    scrub(&mut value);
    serde_json::from_value(value).map_err(failed)
}

pub(crate) fn insert_feedback(dialect: Dialect, fb: &Feedback) -> Query {
    let mut q = Query::new(dialect, "");
    let values = [
        q.bind(Value::text(&fb.request_id)),
        q.bind(Value::Int(fb.time_ms)),
        q.bind(Value::opt_real(fb.score)),
        q.bind(Value::opt_text(fb.label.as_deref())),
        q.bind(Value::opt_text(fb.comment.as_deref())),
    ];
    q.sql = format!(
        "INSERT INTO feedback (request_id, time_ms, score, label, comment) VALUES ({})",
        values.join(", ")
    );
    q
}

/// Which requests a read is about.
pub(crate) enum Selection<'a> {
    Id(&'a str),
    Filter(&'a Filter),
}

/// `SELECT id, record`: the selected records, newest first.
pub(crate) fn select_records(dialect: Dialect, sel: &Selection<'_>) -> Query {
    let mut q = Query::new(dialect, format!("SELECT id, {} ", dialect.record()));
    select_from(&mut q, sel);
    q
}

/// The feedback of the selected records, oldest first.
pub(crate) fn select_feedback(dialect: Dialect, sel: &Selection<'_>) -> Query {
    let mut q = Query::new(
        dialect,
        "SELECT request_id, time_ms, score, label, comment FROM feedback \
         WHERE request_id IN (SELECT id ",
    );
    select_from(&mut q, sel);
    q.sql.push_str(") ORDER BY time_ms, id");
    q
}

/// `FROM requests WHERE … ORDER BY … LIMIT …` for a selection.
fn select_from(q: &mut Query, sel: &Selection<'_>) {
    q.sql.push_str("FROM requests");
    match sel {
        Selection::Id(id) => {
            let p = q.bind(Value::text(id));
            // A reused id: the latest request with it.
            q.sql.push_str(&format!(
                " WHERE id = {p} ORDER BY time_ms DESC, seq DESC LIMIT 1"
            ));
        }
        Selection::Filter(filter) => {
            push_where(q, filter);
            q.sql.push_str(" ORDER BY time_ms DESC, id DESC");
            if filter.limit > 0 {
                let p = q.bind(Value::count(filter.limit as u64));
                q.sql.push_str(&format!(" LIMIT {p}"));
            }
        }
    }
}

pub(crate) fn exists(dialect: Dialect, id: &str) -> Query {
    let mut q = Query::new(dialect, "");
    let p = q.bind(Value::text(id));
    q.sql = format!("SELECT 1 FROM requests WHERE id = {p} LIMIT 1");
    q
}

/// The slim columns [`crate::stats`] aggregates, in the order it reads them.
pub(crate) fn select_slim(dialect: Dialect, filter: &Filter) -> Query {
    let mut q = Query::new(
        dialect,
        "SELECT model, target, key_id, status, error_kind, latency_ms, ttft_ms, \
         input_tokens, output_tokens, cost_usd, cache_hit, fallback FROM requests",
    );
    push_where(&mut q, filter);
    q
}

/// Appends ` WHERE …` for every condition the filter sets.
fn push_where(q: &mut Query, f: &Filter) {
    let mut conds = Vec::new();
    if let Some(t) = f.since_ms {
        conds.push(format!("time_ms >= {}", q.bind(Value::Int(t))));
    }
    if let Some(t) = f.until_ms {
        conds.push(format!("time_ms < {}", q.bind(Value::Int(t))));
    }
    for (column, value) in [
        ("model", &f.model),
        ("key_id", &f.key_id),
        ("target", &f.target),
        ("route", &f.route),
        ("error_kind", &f.error_kind),
    ] {
        if let Some(v) = value {
            conds.push(format!("{column} = {}", q.bind(Value::text(v))));
        }
    }
    if !f.ops.is_empty() {
        let ops: Vec<String> = f.ops.iter().map(|op| q.bind(Value::text(op))).collect();
        conds.push(format!("op IN ({})", ops.join(", ")));
    }
    for (op, bound) in [(">=", f.min_score), ("<=", f.max_score)] {
        if let Some(b) = bound {
            let b = q.bind(Value::Real(b));
            conds.push(format!(
                "(SELECT score FROM feedback WHERE request_id = requests.id \
                 AND score IS NOT NULL ORDER BY time_ms DESC, id DESC LIMIT 1) {op} {b}"
            ));
        }
    }
    match f.status {
        Some(StatusFilter::Exact(code)) => {
            conds.push(format!("status = {}", q.bind(Value::Int(code.into()))));
        }
        Some(StatusFilter::Class(class)) => {
            let low = i64::from(class) * 100;
            let (from, to) = (q.bind(Value::Int(low)), q.bind(Value::Int(low + 100)));
            conds.push(format!("status >= {from} AND status < {to}"));
        }
        Some(StatusFilter::Errors) => conds.push(format!("status >= {}", q.bind(Value::Int(400)))),
        None => {}
    }
    if let Some(text) = &f.text {
        let p = q.bind(Value::Text(format!("%{}%", escape_like(text))));
        let like = q.dialect.like();
        let input = q.dialect.record_field("input");
        let output = q.dialect.record_field("output");
        let any: Vec<String> = ["id", "model", "target", "error", &input, &output]
            .iter()
            .map(|column| format!("{column} {like} {p} ESCAPE '\\'"))
            .collect();
        conds.push(format!("({})", any.join(" OR ")));
    }
    if let Some((t, id)) = &f.after_time_ms {
        let (t, id) = (q.bind(Value::Int(*t)), q.bind(Value::text(id)));
        conds.push(format!("(time_ms > {t} OR (time_ms = {t} AND id > {id}))"));
    }
    if !conds.is_empty() {
        q.sql.push_str(" WHERE ");
        q.sql.push_str(&conds.join(" AND "));
    }
}

/// `%`, `_` and the escape character itself match literally.
fn escape_like(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '\\' | '%' | '_') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The `time_ms, id` of the newest request beyond the `keep` newest ones:
/// it and everything older go when pruning by count.
pub(crate) fn nth_newest(dialect: Dialect, keep: u64) -> Query {
    let mut q = Query::new(dialect, "");
    let p = q.bind(Value::count(keep));
    q.sql = format!(
        "SELECT time_ms, id FROM requests ORDER BY time_ms DESC, id DESC LIMIT 1 OFFSET {p}"
    );
    q
}

/// Which requests a prune removes.
pub(crate) enum Prune {
    OlderThan(i64),
    UpTo(i64, String),
}

/// Deletes the pruned requests' feedback, then the requests (run in one
/// transaction; the second statement's row count is the requests removed).
pub(crate) fn prune(dialect: Dialect, which: &Prune) -> [Query; 2] {
    [
        "DELETE FROM feedback WHERE request_id IN (SELECT id FROM requests WHERE ",
        "DELETE FROM requests WHERE (",
    ]
    .map(|head| {
        let mut q = Query::new(dialect, head);
        let cond = match which {
            Prune::OlderThan(t) => format!("time_ms < {}", q.bind(Value::Int(*t))),
            Prune::UpTo(t, id) => {
                let (t, id) = (q.bind(Value::Int(*t)), q.bind(Value::text(id)));
                format!("time_ms < {t} OR (time_ms = {t} AND id <= {id})")
            }
        };
        q.sql.push_str(&cond);
        q.sql.push(')');
        q
    })
}

/// Records from `(id, record)` rows, each with its feedback (from
/// `(request_id, time_ms, score, label, comment)` rows, oldest first).
/// The feedback table is the truth: whatever `feedback` the JSON held when
/// written is replaced.
pub(crate) fn decode_records(
    rows: Vec<Vec<Value>>,
    feedback: Vec<Vec<Value>>,
) -> Result<Vec<RequestRecord>, Repr> {
    let mut by_request: HashMap<String, Vec<Feedback>> = HashMap::new();
    for row in feedback {
        let mut c = Cells::new(row);
        let fb = Feedback {
            request_id: c.text().unwrap_or_default(),
            time_ms: c.int().unwrap_or_default(),
            score: c.real(),
            label: c.text(),
            comment: c.text(),
        };
        by_request
            .entry(fb.request_id.clone())
            .or_default()
            .push(fb);
    }
    rows.into_iter()
        .map(|row| {
            let mut c = Cells::new(row);
            let id = c.text().unwrap_or_default();
            let json = c.text().unwrap_or_default();
            let mut rec: RequestRecord =
                serde_json::from_str(&json).map_err(|error| Repr::Decode {
                    id: id.clone(),
                    error,
                })?;
            rec.feedback = by_request.remove(&id).unwrap_or_default();
            Ok(rec)
        })
        .collect()
}

/// Migration 3 on both backends: virtual keys, the digest of each secret
/// (never the secret) and the settings as JSON.
pub(crate) const KEYS_TABLE: &str = "
CREATE TABLE keys (
    id         TEXT PRIMARY KEY,
    digest     TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    revoked_ms BIGINT,
    settings   TEXT NOT NULL
);
";

/// A new virtual key (its digest and settings).
pub(crate) fn insert_key(dialect: Dialect, key: &VirtualKey) -> Result<Query, Repr> {
    let settings = serde_json::to_string(&key.settings).map_err(|error| Repr::Key {
        id: key.id.clone(),
        error,
    })?;
    let mut q = Query::new(dialect, "");
    let values = [
        q.bind(Value::text(&key.id)),
        q.bind(Value::text(&key.digest)),
        q.bind(Value::Int(key.created_ms)),
        q.bind(Value::text(&settings)),
    ];
    q.sql = format!(
        "INSERT INTO keys (id, digest, created_ms, settings) VALUES ({})",
        values.join(", ")
    );
    Ok(q)
}

/// Spend per UTC day (days since the epoch) of the requests made with any
/// of `key_ids` since `since_ms`.
pub(crate) fn spend_by_day(dialect: Dialect, key_ids: &[String], since_ms: i64) -> Query {
    let mut q = Query::new(dialect, "");
    let ids: Vec<String> = key_ids.iter().map(|id| q.bind(Value::text(id))).collect();
    let since = q.bind(Value::Int(since_ms));
    q.sql = format!(
        "SELECT time_ms / 86400000 AS day, sum(cost_usd) FROM requests \
         WHERE key_id IN ({}) AND time_ms >= {since} AND cost_usd IS NOT NULL \
         GROUP BY time_ms / 86400000",
        ids.join(", ")
    );
    q
}

/// One key by id, or every key (oldest first).
pub(crate) fn select_keys(dialect: Dialect, id: Option<&str>) -> Query {
    let mut q = Query::new(dialect, "");
    let filter = id.map_or_else(String::new, |id| {
        format!(" WHERE id = {}", q.bind(Value::text(id)))
    });
    q.sql = format!(
        "SELECT id, digest, created_ms, revoked_ms, settings FROM keys{filter} ORDER BY created_ms, id"
    );
    q
}

/// Marks a key revoked (once: the first revocation time stays).
pub(crate) fn revoke_key(dialect: Dialect, id: &str) -> Query {
    let mut q = Query::new(dialect, "");
    let (at, id) = (q.bind(Value::Int(now_ms())), q.bind(Value::text(id)));
    q.sql = format!("UPDATE keys SET revoked_ms = {at} WHERE id = {id} AND revoked_ms IS NULL");
    q
}

pub(crate) fn decode_keys(rows: Vec<Vec<Value>>) -> Result<Vec<VirtualKey>, Repr> {
    rows.into_iter()
        .map(|row| {
            let mut c = Cells::new(row);
            let id = c.text().unwrap_or_default();
            let digest = c.text().unwrap_or_default();
            let created_ms = c.int().unwrap_or_default();
            let revoked_ms = c.int();
            let settings =
                serde_json::from_str(&c.text().unwrap_or_default()).map_err(|error| Repr::Key {
                    id: id.clone(),
                    error,
                })?;
            Ok(VirtualKey {
                id,
                settings,
                created_ms,
                revoked_ms,
                digest,
            })
        })
        .collect()
}
