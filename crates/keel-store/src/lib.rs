//! keel's request log: one [`RequestRecord`] per request, whatever its
//! outcome, written off the request path and read back by the CLI
//! (`keel logs`, `keel show`, `keel stats`) and the feedback endpoint.
//!
//! **The record** holds what an operator needs to answer "what
//! happened to this request, where, and why": ids, route, every upstream
//! attempt, status and error, latencies, tokens, cost, cache and fallback,
//! guardrail and validation verdicts, and the bodies as the capture policy
//! allows. Secrets never enter it. Feedback is attached later by request id.
//!
//! **Two backends** behind one [`Store`], with the same logical schema,
//! created and upgraded by numbered migrations (`schema_migrations`):
//! - SQLite, the embedded default: a WAL-mode file the CLI can read while
//!   the server writes ([`StoreConfig::Sqlite`]).
//! - Postgres, for replicas sharing one log ([`StoreConfig::Postgres`]):
//!   one plain connection (no TLS, no pool: loopback or a sidecar proxy),
//!   reopened on the next call after the server went away.
//!
//! Each request is a row with a column per field that is filtered on or
//! aggregated, plus the whole record as JSON. [`Store::list`] filters
//! ([`Filter`]); [`Store::stats`] aggregates per model, target or key
//! ([`Stats`]), with exact percentiles computed in Rust the same way for
//! both backends; [`Store::prune`] applies a [`Retention`].
//!
//! **Virtual keys** ([`VirtualKey`]) live in the same database: issued by
//! keel, stored as a digest of their secret, revocable.
//!
//! **The writer** ([`spawn`]) keeps recording from ever blocking or failing
//! a request: [`Recorder::push`] never waits — the queue is bounded and a
//! record that does not fit is dropped and counted ([`Recorder::dropped`]);
//! one task writes batches, and when the store fails it keeps the batch and
//! retries with capped backoff, with throttled warnings, until the store is
//! back. [`Recorder::flush`] waits for what was pushed; [`Writer::shutdown`]
//! drains the queue within a grace period. The task also prunes by the
//! retention policy.

#![forbid(unsafe_code)]

mod error;
mod keys;
mod postgres;
mod record;
mod sql;
mod sqlite;
mod stats;
mod store;
mod writer;

pub use error::StoreError;
pub use keys::{KeySettings, VirtualKey, looks_like_key, parse as parse_key};
pub use record::{AttemptRecord, Capture, Feedback, RequestRecord, Verdict};
pub use stats::{GroupBy, Percentiles, Stats};
pub use store::{Filter, Retention, StatusFilter, Store, StoreConfig};
pub use writer::{Prepare, Recorder, Writer, WriterConfig, spawn};
