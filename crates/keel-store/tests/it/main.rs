//! keel-store's integration tests, one binary (link time on 2 cores).
//!
//! The API checks (`api`, `stats`) are written once against a `Store` and
//! run on both backends: `sqlite` (a file in a tempdir) and `postgres` (a
//! real server from `KEEL_TEST_PG_URL`, see `scripts/postgres`). `writer`
//! covers the background writer, outages and overflow included, on SQLite.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod api;
mod errors;
mod postgres;
mod sqlite;
mod stats;
mod writer;

use std::collections::BTreeMap;
use std::time::Duration;

use keel_store::{AttemptRecord, Capture, RequestRecord, Verdict};

/// A plain successful request.
pub fn rec(id: &str, time_ms: i64) -> RequestRecord {
    RequestRecord {
        id: id.to_owned(),
        trace_id: "4bf92f3577b34da6a3ce929d0e0e4736".to_owned(),
        time_ms,
        front: "openai".to_owned(),
        op: "chat".to_owned(),
        model: "gpt".to_owned(),
        target: Some("openai/gpt-4o-mini".to_owned()),
        status: 200,
        latency_ms: 12.5,
        upstream_ms: 11.25,
        overhead_ms: 1.25,
        input_tokens: 10,
        output_tokens: 5,
        ..RequestRecord::default()
    }
}

/// A request with every part filled: attempts, verdicts, tags, bodies.
pub fn rich(id: &str, time_ms: i64) -> RequestRecord {
    RequestRecord {
        session: Some("sess-1".to_owned()),
        tags: BTreeMap::from([
            ("team".to_owned(), "search".to_owned()),
            ("env".to_owned(), "prod".to_owned()),
        ]),
        key_id: Some("key-7".to_owned()),
        front: "anthropic".to_owned(),
        op: "function".to_owned(),
        route: Some("summarize".to_owned()),
        route_version: Some("v3".to_owned()),
        stream: true,
        attempts: vec![
            AttemptRecord {
                provider: "openai".to_owned(),
                model: "gpt-4o".to_owned(),
                outcome: "timeout".to_owned(),
                status: None,
                start_ms: 0.5,
                latency_ms: 1000.0,
                ttft_ms: None,
                error: Some("no first byte within 1s".to_owned()),
            },
            AttemptRecord {
                provider: "anthropic".to_owned(),
                model: "claude-sonnet".to_owned(),
                outcome: "ok".to_owned(),
                status: Some(200),
                start_ms: 1001.25,
                latency_ms: 840.125,
                ttft_ms: Some(310.0),
                error: None,
            },
        ],
        target: Some("anthropic/claude-sonnet".to_owned()),
        degraded: Some("stale".to_owned()),
        ttft_ms: Some(1311.5),
        cached_tokens: u64::MAX,
        cost_usd: Some(0.001_234),
        cache_hit: false,
        reasks: 2,
        fallback: true,
        verdicts: vec![
            Verdict {
                stage: "validation".to_owned(),
                name: "schema".to_owned(),
                outcome: "repaired".to_owned(),
                detail: Some("trailing comma".to_owned()),
            },
            Verdict {
                stage: "output_guard".to_owned(),
                name: "pii".to_owned(),
                outcome: "redacted".to_owned(),
                detail: None,
            },
        ],
        capture: Capture::Hashed,
        input: Some("sha256:9f86d08".to_owned()),
        output: Some("sha256:60303ae".to_owned()),
        ..rec(id, time_ms)
    }
}

/// Polls `cond` every 10 ms; panics after `timeout`.
pub async fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + timeout;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The ids of records, in order.
pub fn ids(records: &[RequestRecord]) -> Vec<&str> {
    records.iter().map(|r| r.id.as_str()).collect()
}
