//! The request record, end to end: every outcome leaves exactly one stored
//! record with the right fields; a store outage neither fails nor slows
//! requests; `/metrics` parses and moves; feedback attaches to records;
//! `traceparent` reaches the upstream; no secret is stored, logged or
//! exported.

use std::collections::HashMap;
use std::time::Duration;

use axum::http::HeaderMap;
use keel_store::{Filter, RequestRecord, Store, StoreConfig};
use keel_testkit::Running;
use serde_json::{Value, json};

use crate::{anthropic_chat, client, openai_chat, sse};

/// keel with its SQLite request log in `dir`, two sim providers (one good,
/// one that always fails) and a mock OpenAI-protocol upstream at
/// `upstream` that needs the key `PROVIDER_KEY`.
struct Logged {
    keel: Running,
    db: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

const PROVIDER_KEY: &str = "sk-proj-PROVIDERSECRET0123456789";
const ADMIN_TOKEN: &str = "admin-ADMINSECRET-0123456789";

async fn logged(upstream: &str) -> Logged {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("requests.db");
    let config = format!(
        r#"
        [server.admission]
        max_in_flight = 2
        queue = 0
        [auth]
        admin_token = {{ env = "ADMIN_TOKEN" }}
        [log]
        path = "{db}"
        flush_every = "10ms"
        capture = "full"
        [providers.good]
        kind = "sim"
        resilience = {{ max_retries = 0, breaker = {{ enabled = false }} }}
        [providers.bad]
        kind = "sim"
        faults = [{{ rate = 1.0, fault = "status=503" }}]
        resilience = {{ max_retries = 1, backoff_base = "1ms", breaker = {{ enabled = false }} }}
        [providers.mock]
        kind = "openai"
        base_url = "{upstream}/v1"
        api_key = {{ env = "MOCK_KEY" }}
        resilience = {{ max_retries = 0, breaker = {{ enabled = false }} }}
        [models.fast]
        targets = [{{ provider = "good", model = "sim-fast" }}]
        [models.flaky]
        targets = [{{ provider = "bad", model = "sim-a" }}, {{ provider = "good", model = "sim-b" }}]
        [models.broken]
        targets = [{{ provider = "bad", model = "sim-a" }}, {{ provider = "bad", model = "sim-c" }}]
        [models.mocked]
        targets = [{{ provider = "mock", model = "gpt-x" }}]
        [models.redacted]
        targets = [{{ provider = "good", model = "sim-fast" }}]
        capture = "redacted"
        [models.hashed]
        targets = [{{ provider = "good", model = "sim-fast" }}]
        capture = "hashed"
        [models.uncaptured]
        targets = [{{ provider = "good", model = "sim-fast" }}]
        capture = "off"
        "#,
        db = db.display()
    );
    let keel = keel_testkit::keel_logged(
        &config,
        &[("MOCK_KEY", PROVIDER_KEY), ("ADMIN_TOKEN", ADMIN_TOKEN)],
    )
    .await;
    Logged {
        keel,
        db,
        _dir: dir,
    }
}

impl Logged {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.keel.url())
    }

    async fn post(
        &self,
        path: &str,
        id: &str,
        body: Value,
        headers: &[(&str, &str)],
    ) -> reqwest::Response {
        let mut req = client()
            .post(self.url(path))
            .header("x-request-id", id)
            .header("content-type", "application/json")
            .body(body.to_string());
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        req.send().await.unwrap()
    }

    async fn chat(&self, id: &str, body: Value, headers: &[(&str, &str)]) -> reqwest::Response {
        self.post("/v1/chat/completions", id, body, headers).await
    }

    /// Stops keel (which flushes the log) and reads every record back.
    async fn records(self) -> (Vec<RequestRecord>, Store) {
        self.keel.shutdown().await.unwrap();
        let store = Store::open(&StoreConfig::Sqlite {
            path: self.db.clone(),
        })
        .await
        .unwrap();
        let all = store
            .list(&Filter {
                limit: 10_000,
                ..Filter::default()
            })
            .await
            .unwrap();
        std::mem::forget(self._dir); // read by the caller; removed with the process
        (all, store)
    }
}

/// An OpenAI-protocol upstream that answers only its key and, like OpenAI,
/// echoes the key it rejected in the error message. It records the
/// `traceparent` of every call.
async fn mock_upstream() -> (Running, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use axum::routing::post;
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen2 = seen.clone();
    let app = axum::Router::new().route(
        "/v1/chat/completions",
        post(move |headers: HeaderMap, body: String| {
            let seen = seen2.clone();
            async move {
                if let Some(tp) = headers.get("traceparent").and_then(|v| v.to_str().ok()) {
                    seen.lock().unwrap().push(tp.to_owned());
                }
                let auth = headers
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned();
                if body.contains("wrong key") || auth != format!("Bearer {PROVIDER_KEY}") {
                    let msg = format!("Incorrect API key provided: {}", auth.trim_start_matches("Bearer "));
                    return (
                        axum::http::StatusCode::UNAUTHORIZED,
                        axum::Json(json!({"error": {"message": msg, "type": "invalid_request_error", "code": "invalid_api_key"}})),
                    );
                }
                (
                    axum::http::StatusCode::OK,
                    axum::Json(json!({
                        "id": "cmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-x",
                        "choices": [{"index": 0, "message": {"role": "assistant", "content": "fine"}, "finish_reason": "stop"}],
                        "usage": {"prompt_tokens": 7, "completion_tokens": 2, "total_tokens": 9}
                    })),
                )
            }
        }),
    );
    let running = keel_testkit::serve_router(app).await;
    (running, seen)
}

fn by_id(records: &[RequestRecord]) -> HashMap<&str, Vec<&RequestRecord>> {
    let mut map: HashMap<&str, Vec<&RequestRecord>> = HashMap::new();
    for r in records {
        map.entry(r.id.as_str()).or_default().push(r);
    }
    map
}

#[tokio::test]
async fn every_outcome_leaves_exactly_one_record() {
    let (upstream, _) = mock_upstream().await;
    let k = logged(&upstream.url()).await;

    // success, both front doors, stream and not
    assert_eq!(
        k.chat("ok-1", openai_chat("fast", "hi"), &[])
            .await
            .status(),
        200
    );
    let mut streamed = anthropic_chat("fast", "tell me a story");
    streamed["stream"] = json!(true);
    let resp = k.post("/v1/messages", "stream-1", streamed, &[]).await;
    assert_eq!(resp.status(), 200);
    let events = sse(&resp.text().await.unwrap());
    assert!(
        events
            .iter()
            .any(|(e, _)| e.as_deref() == Some("message_stop"))
    );
    // 4xx decode error
    let resp = client()
        .post(k.url("/v1/chat/completions"))
        .header("x-request-id", "bad-json")
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    // unknown model, unknown route
    assert_eq!(
        k.chat("no-model", openai_chat("nope", "hi"), &[])
            .await
            .status(),
        404
    );
    assert_eq!(
        k.post("/v1/nothing-here", "no-route", json!({}), &[])
            .await
            .status(),
        404
    );
    // upstream auth failure
    // (keel's key, not the client's: a 502 to the client, the 401 in the record)
    let resp = k
        .chat("auth-fail", openai_chat("mocked", "wrong key"), &[])
        .await;
    assert_eq!(resp.status(), 502);
    let body = resp.text().await.unwrap();
    assert!(
        body.contains("Incorrect API key") && !body.contains("PROVIDERSECRET"),
        "{body}"
    );
    // fell back and succeeded; failed after every fallback
    assert_eq!(
        k.chat("fell-back", openai_chat("flaky", "hi"), &[])
            .await
            .status(),
        200
    );
    assert_eq!(
        k.chat("all-failed", openai_chat("broken", "hi"), &[])
            .await
            .status(),
        502
    );
    // a stream cut mid-way by the upstream
    let mut cut = openai_chat("fast", "a long answer please");
    cut["stream"] = json!(true);
    let resp = k
        .chat("stream-cut", cut, &[("x-keel-sim-fault", "cut=3")])
        .await;
    assert_eq!(resp.status(), 200);
    let body = resp.text().await.unwrap();
    assert!(body.contains("error"), "{body}");
    // shed: two slow requests hold both permits, the third is shed
    let slow = |id: &'static str| {
        let body = openai_chat("fast", "slow");
        let url = k.url("/v1/chat/completions");
        async move {
            client()
                .post(url)
                .header("x-request-id", id)
                .header("x-keel-sim-fault", "latency=600ms")
                .header("content-type", "application/json")
                .body(body.to_string())
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    let (a, b) = (tokio::spawn(slow("slow-1")), tokio::spawn(slow("slow-2")));
    let mut shed = None;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let resp = k.chat("shed-1", openai_chat("fast", "hi"), &[]).await;
        if resp.status() == 503 {
            shed = Some(resp);
            break;
        }
    }
    assert!(shed.is_some(), "never shed");
    assert_eq!(a.await.unwrap(), 200);
    assert_eq!(b.await.unwrap(), 200);

    let (records, _store) = k.records().await;
    let ids = by_id(&records);
    for id in [
        "ok-1",
        "stream-1",
        "bad-json",
        "no-model",
        "no-route",
        "auth-fail",
        "fell-back",
        "all-failed",
        "stream-cut",
        "slow-1",
        "slow-2",
    ] {
        assert_eq!(
            ids.get(id).map(Vec::len),
            Some(1),
            "{id}: {:?}",
            ids.get(id)
        );
    }
    let one = |id: &str| ids[id][0];

    let ok = one("ok-1");
    assert_eq!(
        (
            ok.status,
            ok.front.as_str(),
            ok.op.as_str(),
            ok.model.as_str()
        ),
        (200, "openai", "chat", "fast")
    );
    assert_eq!(ok.target.as_deref(), Some("good/sim-fast"));
    assert_eq!(ok.attempts.len(), 1);
    assert!(ok.input_tokens > 0 && ok.output_tokens > 0);
    assert_eq!(ok.trace_id.len(), 32);
    assert!(ok.latency_ms >= ok.upstream_ms && ok.overhead_ms >= 0.0);
    assert!(ok.input.as_deref().unwrap().contains("\"hi\""));
    assert!(ok.output.as_deref().unwrap().contains("choices"));

    let st = one("stream-1");
    assert_eq!(
        (st.status, st.front.as_str(), st.stream),
        (200, "anthropic", true)
    );
    assert!(st.input_tokens > 0 && st.output_tokens > 0, "{st:?}");
    assert!(st.ttft_ms.is_some_and(|t| t <= st.latency_ms));
    assert!(!st.output.as_deref().unwrap_or_default().is_empty());

    let bad = one("bad-json");
    assert_eq!(
        (bad.status, bad.error_kind.as_deref()),
        (400, Some("invalid_request"))
    );
    assert!(bad.attempts.is_empty());
    assert_eq!(
        one("no-model").error_kind.as_deref(),
        Some("model_not_found")
    );
    assert_eq!(
        (one("no-route").status, one("no-route").op.as_str()),
        (404, "other")
    );

    let auth = one("auth-fail");
    assert_eq!(auth.status, 502);
    assert_eq!(auth.attempts[0].status, Some(401));

    let fb = one("fell-back");
    assert!(fb.fallback);
    assert_eq!(fb.target.as_deref(), Some("good/sim-b"));
    // bad/sim-a twice (one retry), then good/sim-b
    let outcomes: Vec<_> = fb
        .attempts
        .iter()
        .map(|a| (a.provider.as_str(), a.outcome.as_str()))
        .collect();
    assert_eq!(
        outcomes,
        [("bad", "error"), ("bad", "error"), ("good", "ok")]
    );
    assert!(
        fb.attempts
            .windows(2)
            .all(|w| w[0].start_ms <= w[1].start_ms)
    );

    let failed = one("all-failed");
    assert_eq!(failed.status, 502);
    assert_eq!(failed.attempts.len(), 4);
    assert!(failed.target.is_none());
    assert!(failed.error.is_some());

    let cut = one("stream-cut");
    assert!(cut.stream && cut.error_kind.is_some(), "{cut:?}");
    assert!(cut.output_tokens > 0 && cut.input_tokens > 0);

    let shed: Vec<_> = records
        .iter()
        .filter(|r| r.error_kind.as_deref() == Some("overloaded"))
        .collect();
    assert!(!shed.is_empty());
    assert!(
        shed.iter()
            .all(|r| r.status == 503 && r.attempts.is_empty() && r.id == "shed-1")
    );
}

#[tokio::test]
async fn a_locked_store_neither_fails_nor_slows_requests_and_loses_nothing() {
    let (upstream, _) = mock_upstream().await;
    let k = logged(&upstream.url()).await;
    // Warm up: the file exists and is migrated.
    assert_eq!(
        k.chat("warm", openai_chat("fast", "hi"), &[])
            .await
            .status(),
        200
    );
    tokio::time::sleep(Duration::from_millis(100)).await;

    // Another process holds the write lock: every insert fails (busy).
    let lock = rusqlite::Connection::open(&k.db).unwrap();
    lock.execute_batch("BEGIN EXCLUSIVE").unwrap();
    for i in 0..20 {
        let started = std::time::Instant::now();
        let resp = k
            .chat(&format!("during-{i}"), openai_chat("fast", "hi"), &[])
            .await;
        assert_eq!(resp.status(), 200);
        // Generous: what matters is that no request waits on the store.
        assert!(started.elapsed() < Duration::from_secs(2));
    }
    // The writer notices (bounded wait: its inserts time out on the lock).
    let mut failures = 0.0;
    for _ in 0..100 {
        let metrics = crate::metrics::scrape(&k.keel.url()).await;
        failures = metrics.value("keel_log_write_failures_total", &[]);
        if failures >= 1.0 {
            assert!(metrics.value("keel_log_queue_depth", &[]) >= 1.0);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(failures >= 1.0, "no write failure seen");
    lock.execute_batch("COMMIT").unwrap();
    drop(lock);

    let (records, _) = k.records().await;
    let ids = by_id(&records);
    for i in 0..20 {
        assert_eq!(
            ids.get(format!("during-{i}").as_str()).map(Vec::len),
            Some(1),
            "during-{i}"
        );
    }
}

#[tokio::test]
async fn a_full_log_queue_drops_and_counts_never_blocks() {
    // The store crate tests the exact drop accounting; here, the gateway's side.
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("small.db");
    let config = format!(
        r#"
        [log]
        path = "{}"
        queue = 3
        batch = 1
        flush_every = "10ms"
        [providers.good]
        kind = "sim"
        [models.fast]
        targets = [{{ provider = "good", model = "m" }}]
        "#,
        db.display(),
    );
    let keel = keel_testkit::keel_logged(&config, &[]).await;
    let post = |id: String| {
        let url = format!("{}/v1/chat/completions", keel.url());
        async move {
            client()
                .post(url)
                .header("x-request-id", id)
                .header("content-type", "application/json")
                .body(openai_chat("fast", "hi").to_string())
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(post("warm".into()).await, 200);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let lock = rusqlite::Connection::open(&db).unwrap();
    lock.execute_batch("BEGIN EXCLUSIVE").unwrap();
    for i in 0..30 {
        assert_eq!(post(format!("r-{i}")).await, 200);
    }
    let metrics = crate::metrics::scrape(&keel.url()).await;
    let dropped = metrics.value("keel_log_dropped_total", &[]);
    assert!(dropped >= 20.0, "dropped {dropped}");
    lock.execute_batch("COMMIT").unwrap();
    drop(lock);
    keel.shutdown().await.unwrap();
    let store = Store::open(&StoreConfig::Sqlite { path: db })
        .await
        .unwrap();
    let kept = store
        .list(&Filter {
            limit: 1000,
            ..Filter::default()
        })
        .await
        .unwrap()
        .iter()
        .filter(|r| r.id.starts_with("r-"))
        .count();
    // Every request is either stored or counted as dropped.
    assert_eq!(
        kept as f64 + dropped,
        30.0,
        "kept {kept}, dropped {dropped}"
    );
}

#[tokio::test]
async fn feedback_attaches_to_a_stored_request_and_is_validated() {
    let (upstream, _) = mock_upstream().await;
    let k = logged(&upstream.url()).await;
    assert_eq!(
        k.chat("judged", openai_chat("fast", "hi"), &[])
            .await
            .status(),
        200
    );
    let resp = k
        .post("/v1/feedback", "fb-1", json!({"request_id": "judged", "score": 0, "label": "wrong", "comment": "my key is sk-proj-LEAKEDINCOMMENT123"}), &[])
        .await;
    assert_eq!(resp.status(), 201, "{:?}", resp.text().await);
    let resp = k
        .post(
            "/v1/feedback",
            "fb-2",
            json!({"request_id": "no-such-request", "score": 1}),
            &[],
        )
        .await;
    assert_eq!(resp.status(), 404);
    for bad in [
        json!({"request_id": "judged"}),
        json!({"score": 1}),
        json!({"request_id": "judged", "score": "high"}),
        json!({"request_id": "judged", "label": "x".repeat(65)}),
        json!({"request_id": "judged", "score": 1, "extra": true}),
    ] {
        let resp = k.post("/v1/feedback", "fb-bad", bad.clone(), &[]).await;
        assert_eq!(resp.status(), 400, "{bad}");
        let body = crate::json_of(resp).await;
        assert!(body["error"]["message"].is_string());
    }
    let (records, store) = k.records().await;
    let judged = store.get("judged").await.unwrap().unwrap();
    assert_eq!(judged.feedback.len(), 1);
    let f = &judged.feedback[0];
    assert_eq!((f.score, f.label.as_deref()), (Some(0.0), Some("wrong")));
    assert!(!f.comment.as_deref().unwrap().contains("LEAKEDINCOMMENT"));
    // The feedback calls are requests too.
    assert!(
        records
            .iter()
            .any(|r| r.id == "fb-1" && r.op == "feedback" && r.status == 201)
    );
}

#[tokio::test]
async fn traceparent_is_honoured_and_sent_upstream() {
    let (upstream, seen) = mock_upstream().await;
    let k = logged(&upstream.url()).await;
    let incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let resp = k
        .chat(
            "traced",
            openai_chat("mocked", "hi"),
            &[("traceparent", incoming)],
        )
        .await;
    assert_eq!(resp.status(), 200);
    let sent = seen.lock().unwrap().clone();
    assert_eq!(sent.len(), 1);
    let parts: Vec<&str> = sent[0].split('-').collect();
    assert_eq!(parts[0], "00");
    assert_eq!(parts[1], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_ne!(
        parts[2], "00f067aa0ba902b7",
        "the upstream's parent is keel's attempt span"
    );
    assert_eq!(parts[3], "01");
    // Without one, keel starts a trace and still propagates it.
    k.chat("untraced", openai_chat("mocked", "hi"), &[]).await;
    let (records, _) = k.records().await;
    let traced = records.iter().find(|r| r.id == "traced").unwrap();
    assert_eq!(traced.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
    let untraced = records.iter().find(|r| r.id == "untraced").unwrap();
    let sent = seen.lock().unwrap().clone();
    assert_eq!(sent.len(), 2);
    assert!(sent[1].contains(&untraced.trace_id));
}

#[tokio::test]
async fn no_secret_is_stored_logged_or_exported() {
    crate::logs::install();
    let (upstream, _) = mock_upstream().await;
    let k = logged(&upstream.url()).await;
    // A virtual key issued by this keel, so that requests carrying it are
    // authenticated (and recorded with its id).
    let issued: Value = client()
        .post(k.url("/admin/keys"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"name": "leak-test"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let virtual_key = issued["key"].as_str().unwrap().to_owned();
    let key_secret = virtual_key.rsplit('-').next().unwrap().to_owned();
    let auth = format!("Bearer {virtual_key}");
    let headers = [
        ("authorization", auth.as_str()),
        ("x-api-key", virtual_key.as_str()),
        ("x-keel-session", "s-1"),
        ("x-keel-tags", &format!("team=search,leak={virtual_key}")),
    ];
    let prompt = format!("my keys are {PROVIDER_KEY} and {virtual_key}");
    assert_eq!(
        k.chat("s-ok", openai_chat("mocked", &prompt), &headers)
            .await
            .status(),
        200
    );
    // The upstream echoes the key it rejected in its error message; the
    // client never sees it either.
    let resp = k
        .chat(
            "s-fail",
            openai_chat("mocked", &format!("wrong key {PROVIDER_KEY}")),
            &headers,
        )
        .await;
    assert_eq!(resp.status(), 502);
    let body = resp.text().await.unwrap();
    assert!(!body.contains("PROVIDERSECRET"), "{body}");
    let mut streamed = anthropic_chat("fast", &prompt);
    streamed["stream"] = json!(true);
    let _ = k
        .post("/v1/messages", "s-stream", streamed, &headers)
        .await
        .text()
        .await;
    let metrics = client()
        .get(k.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let db = k.db.clone();
    let (records, _) = k.records().await;
    assert!(
        records
            .iter()
            .any(|r| r.id == "s-fail" && r.attempts[0].status == Some(401))
    );
    let stored = serde_json::to_string(&records).unwrap();
    let mut raw = Vec::new();
    for entry in std::fs::read_dir(db.parent().unwrap()).unwrap() {
        raw.extend(std::fs::read(entry.unwrap().path()).unwrap());
    }
    let raw = String::from_utf8_lossy(&raw);
    for secret in [
        PROVIDER_KEY,
        "PROVIDERSECRET",
        &virtual_key,
        &key_secret,
        ADMIN_TOKEN,
        "ADMINSECRET",
    ] {
        assert!(!stored.contains(secret), "record holds {secret}");
        assert!(!raw.contains(secret), "database file holds {secret}");
        assert!(!metrics.contains(secret), "metrics hold {secret}");
        assert!(
            !crate::logs::captured().contains(secret),
            "a log line holds {secret}"
        );
    }
    // The checks above looked at something: the request lines were logged.
    assert!(crate::logs::captured().contains("\"request_id\":\"s-ok\""));
    // The request is still recognisable.
    let ok = records.iter().find(|r| r.id == "s-ok").unwrap();
    assert_eq!(ok.key_id.as_deref(), issued["id"].as_str());
    assert_eq!(ok.session.as_deref(), Some("s-1"));
    assert_eq!(ok.tags.get("team").map(String::as_str), Some("search"));
    assert!(ok.input.as_deref().unwrap().contains("my keys are"));
}

#[tokio::test]
async fn bodies_are_kept_as_each_route_s_capture_policy_says() {
    use sha2::{Digest, Sha256};
    let (upstream, _) = mock_upstream().await;
    let k = logged(&upstream.url()).await;
    let text = "mail jane.doe@example.com, key sk-proj-CAPTURESECRET12345";
    for model in ["fast", "redacted", "hashed", "uncaptured"] {
        let resp = k.chat(model, openai_chat(model, text), &[]).await;
        assert_eq!(resp.status(), 200, "{model}");
    }
    let (records, _) = k.records().await;
    let get = |id: &str| records.iter().find(|r| r.id == id).unwrap();
    // full (the log's default here): as sent, but never a credential
    let full = get("fast").input.as_deref().unwrap();
    assert!(
        full.contains("jane.doe@example.com") && !full.contains("CAPTURESECRET"),
        "{full}"
    );
    // redacted: personal data masked too
    let redacted = get("redacted");
    let input = redacted.input.as_deref().unwrap();
    assert!(
        !input.contains("jane.doe") && !input.contains("CAPTURESECRET"),
        "{input}"
    );
    assert!(
        redacted
            .output
            .as_deref()
            .is_some_and(|o| !o.contains("jane.doe"))
    );
    // hashed: the SHA-256 of the exact body sent
    let body = openai_chat("hashed", text).to_string();
    let hex: String = Sha256::digest(body.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(
        get("hashed").input.as_deref(),
        Some(format!("sha256:{hex}").as_str())
    );
    // off: nothing
    let off = get("uncaptured");
    assert_eq!((off.input.as_deref(), off.output.as_deref()), (None, None));
    assert_eq!(off.capture, keel_config::Capture::Off);
}

/// A client that reuses its `x-request-id` still gets one record per request.
#[tokio::test]
async fn a_reused_request_id_keeps_a_record_per_request() {
    let (upstream, _) = mock_upstream().await;
    let k = logged(&upstream.url()).await;
    for text in ["first", "second"] {
        let resp = k.chat("reused", openai_chat("fast", text), &[]).await;
        assert_eq!(resp.status(), 200);
    }
    let (records, store) = k.records().await;
    let reused: Vec<_> = records.iter().filter(|r| r.id == "reused").collect();
    assert_eq!(reused.len(), 2);
    let latest = store.get("reused").await.unwrap().unwrap();
    assert!(latest.input.as_deref().unwrap().contains("second"));
}
