//! What a request cost: the served model's price (config over the shipped
//! table) times the usage, in `x-keel-cost`, the request record and
//! `keel_cost_usd_total`; unpriced models have no cost rather than zero.

use crate::{client, json_of, openai_chat};

#[tokio::test]
async fn cost_follows_the_served_model_s_price() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("cost.db");
    let keel = keel_testkit::keel_logged(
        &format!(
            r#"
            [log]
            path = "{}"
            [pricing."sim-priced"]
            input = 1.5
            output = 4.0
            [providers.sim]
            kind = "sim"
            [models.priced]
            targets = [{{ provider = "sim", model = "sim-priced-2025-01-01" }}]
            [models.free]
            targets = [{{ provider = "sim", model = "home-grown" }}]
            "#,
            db.display()
        ),
        &[],
    )
    .await;
    let post = |model: &str, id: &str| {
        client()
            .post(format!("{}/v1/chat/completions", keel.url()))
            .header("content-type", "application/json")
            .header("x-request-id", id)
            .body(openai_chat(model, "price me").to_string())
            .send()
    };
    let resp = post("priced", "priced-1").await.unwrap();
    assert_eq!(resp.status(), 200);
    let header = resp.headers()["x-keel-cost"].to_str().unwrap().to_owned();
    let body = json_of(resp).await;
    let (input, output) = (
        body["usage"]["prompt_tokens"].as_f64().unwrap(),
        body["usage"]["completion_tokens"].as_f64().unwrap(),
    );
    let expected = (input * 1.5 + output * 4.0) / 1e6;
    assert!(expected > 0.0);
    assert_eq!(header, format!("{expected:.8}"));

    let resp = post("free", "free-1").await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().get("x-keel-cost").is_none());

    let metrics = crate::metrics::scrape(&keel.url()).await;
    let spent = metrics.value("keel_cost_usd_total", &[("model", "priced")]);
    assert!((spent - expected).abs() < 1e-12, "{spent} vs {expected}");
    assert_eq!(
        metrics.value("keel_cost_usd_total", &[("model", "free")]),
        0.0
    );

    keel.shutdown().await.unwrap();
    let store = keel_store::Store::open(&keel_store::StoreConfig::Sqlite { path: db })
        .await
        .unwrap();
    let priced = store.get("priced-1").await.unwrap().unwrap();
    assert!((priced.cost_usd.unwrap() - expected).abs() < 1e-12);
    assert_eq!(store.get("free-1").await.unwrap().unwrap().cost_usd, None);
}

/// Cached prompt tokens, as an upstream reports them, are priced at the
/// cached rate and reach the client and the record.
#[tokio::test]
async fn cached_prompt_tokens_are_priced_at_their_own_rate() {
    use axum::routing::post;
    let upstream = keel_testkit::serve_router(axum::Router::new().route(
        "/v1/chat/completions",
        post(|| async {
            axum::Json(serde_json::json!({
                "id": "c", "object": "chat.completion", "created": 1, "model": "gpt-x",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 1000, "completion_tokens": 100, "total_tokens": 1100,
                          "prompt_tokens_details": {"cached_tokens": 400}}
            }))
        }),
    ))
    .await;
    let keel = keel_testkit::keel(&format!(
        r#"
        [pricing."gpt-x"]
        input = 2.0
        output = 8.0
        cached_input = 0.5
        [providers.up]
        kind = "openai"
        base_url = "{}/v1"
        [models.m]
        targets = [{{ provider = "up", model = "gpt-x" }}]
        "#,
        upstream.url()
    ))
    .await;
    let resp = client()
        .post(format!("{}/v1/chat/completions", keel.url()))
        .header("content-type", "application/json")
        .body(openai_chat("m", "hi").to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    // 600 fresh at $2, 400 cached at $0.50, 100 out at $8, per million.
    assert_eq!(resp.headers()["x-keel-cost"], "0.00220000");
    let body = json_of(resp).await;
    assert_eq!(body["usage"]["prompt_tokens_details"]["cached_tokens"], 400);
    let metrics = crate::metrics::scrape(&keel.url()).await;
    assert_eq!(
        metrics.value("keel_tokens_total", &[("model", "m"), ("kind", "cached")]),
        400.0
    );
}

/// A degraded (static or stale) answer cost nothing, whatever its model.
#[tokio::test]
async fn a_degraded_answer_costs_nothing() {
    let keel = keel_testkit::keel(
        r#"
        [pricing."priced"]
        input = 5.0
        output = 5.0
        [providers.sim]
        kind = "sim"
        resilience = { max_retries = 0, breaker = { enabled = false } }
        [models.priced]
        targets = [{ provider = "sim", model = "priced" }]
        on_failure = "static"
        static_message = "Please try again later."
        "#,
    )
    .await;
    let resp = client()
        .post(format!("{}/v1/chat/completions", keel.url()))
        .header("content-type", "application/json")
        .header("x-keel-sim-fault", "status=503")
        .body(openai_chat("priced", "hi").to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-keel-degraded"], "static");
    assert_eq!(resp.headers()["x-keel-cost"], "0.00000000");
}

/// Every combination of front door, upstream protocol and streaming: the
/// record holds the tokens the client was told (non-zero), and the cost
/// is exactly those tokens at the price.
#[tokio::test]
async fn streamed_and_whole_answers_record_their_tokens_and_cost() {
    use keel_store::{Filter, Store, StoreConfig};
    use serde_json::{Value, json};

    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("cost.db");
    let (server, _sim) = keel_testkit::sim(keel_config::SimConfig::default()).await;
    let keel = keel_testkit::keel_logged(
        &format!(
            r#"
            [log]
            path = "{db}"
            flush_every = "10ms"
            [pricing."up-model"]
            input = 2.0
            output = 8.0
            [providers.oai]
            kind = "openai"
            base_url = "{url}/v1"
            [providers.ant]
            kind = "anthropic"
            base_url = "{url}"
            [models.via-openai]
            targets = [{{ provider = "oai", model = "up-model" }}]
            [models.via-anthropic]
            targets = [{{ provider = "ant", model = "up-model" }}]
            "#,
            db = db.display(),
            url = server.url()
        ),
        &[],
    )
    .await;
    let mut told = Vec::new();
    for model in ["via-openai", "via-anthropic"] {
        for (path, stream) in [
            ("/v1/chat/completions", false),
            ("/v1/chat/completions", true),
            ("/v1/messages", false),
            ("/v1/messages", true),
        ] {
            let id = format!("{model}-{}-{stream}", path.rsplit('/').next().unwrap());
            let mut body = if path == "/v1/messages" {
                crate::anthropic_chat(model, "count my tokens please")
            } else {
                openai_chat(model, "count my tokens please")
            };
            if stream {
                body["stream"] = json!(true);
                body["stream_options"] = json!({"include_usage": true});
            }
            let resp = client()
                .post(format!("{}{path}", keel.url()))
                .header("x-request-id", &id)
                .json(&body)
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 200, "{id}");
            let text = resp.text().await.unwrap();
            // What the client was told, in its own protocol.
            let (input, output) = if !stream {
                let v: Value = serde_json::from_str(&text).unwrap();
                let u = &v["usage"];
                match path {
                    "/v1/messages" => (u["input_tokens"].as_u64(), u["output_tokens"].as_u64()),
                    _ => (u["prompt_tokens"].as_u64(), u["completion_tokens"].as_u64()),
                }
            } else {
                let events: Vec<Value> = crate::sse(&text)
                    .into_iter()
                    .filter_map(|(_, d)| serde_json::from_str(&d).ok())
                    .collect();
                match path {
                    "/v1/messages" => (
                        events
                            .iter()
                            .find_map(|e| e["message"]["usage"]["input_tokens"].as_u64()),
                        events
                            .iter()
                            .filter(|e| e["type"] == "message_delta")
                            .find_map(|e| e["usage"]["output_tokens"].as_u64()),
                    ),
                    _ => (
                        events
                            .iter()
                            .find_map(|e| e["usage"]["prompt_tokens"].as_u64()),
                        events
                            .iter()
                            .find_map(|e| e["usage"]["completion_tokens"].as_u64()),
                    ),
                }
            };
            let (input, output) = (input.unwrap(), output.unwrap());
            assert!(input > 0 && output > 0, "{id}: {text}");
            told.push((id, input, output));
        }
    }
    keel.shutdown().await.unwrap();
    let store = Store::open(&StoreConfig::Sqlite { path: db })
        .await
        .unwrap();
    let records = store.list(&Filter::default()).await.unwrap();
    for (id, input, output) in told {
        let r = records.iter().find(|r| r.id == id).unwrap();
        assert_eq!((r.input_tokens, r.output_tokens), (input, output), "{id}");
        let expected = (input as f64 * 2.0 + output as f64 * 8.0) / 1e6;
        let cost = r.cost_usd.unwrap();
        assert!(
            (cost - expected).abs() < 1e-12,
            "{id}: {cost} vs {expected}"
        );
    }
}
