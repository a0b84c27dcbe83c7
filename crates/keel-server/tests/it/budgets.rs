//! Budgets with hard caps: each request reserves its worst case before its
//! upstream call and settles its real cost after; a budget that cannot
//! cover a request refuses it with 402, naming the budget and its reset;
//! crossing an alert threshold fires the webhook once.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::routing::post;
use keel_config::{FaultRule, SimConfig};
use serde_json::{Value, json};

use crate::keys::{Keyed, keyed};
use crate::{json_of, openai_chat};

/// Every token costs a thousandth of a dollar: costs are large, exact numbers.
const PRICED: &str = r#"
[pricing."sim-model"]
input = 1000.0
output = 1000.0
"#;

/// The upstream answers every call after `latency`.
fn slow(latency: &str) -> SimConfig {
    SimConfig {
        faults: vec![FaultRule {
            rate: 1.0,
            fault: format!("latency={latency}"),
        }],
        ..SimConfig::default()
    }
}

/// A request's worst case, as keel reserves it: read from the 402 a
/// one-micro-dollar budget answers with.
async fn worst_case(k: &Keyed, body: &Value) -> f64 {
    let (_, key) = k
        .issue(json!({"budget": {"usd": 0.000001, "period": "day"}}))
        .await;
    let resp = k.chat(&key, body).await;
    assert_eq!(resp.status(), 402);
    let message = json_of(resp).await["error"]["message"]
        .as_str()
        .unwrap()
        .to_owned();
    let after = message.split("may cost up to $").nth(1).unwrap();
    after.split([';', ' ']).next().unwrap().parse().unwrap()
}

/// The key's budgets as the admin API reports them.
async fn usage(k: &Keyed, id: &str) -> Value {
    json_of(
        k.admin(reqwest::Method::GET, &format!("/admin/keys/{id}/usage"))
            .await,
    )
    .await
}

#[tokio::test]
async fn two_hundred_concurrent_requests_never_spend_past_the_cap() {
    let k = keyed(slow("1s"), false, PRICED).await;
    let mut body = openai_chat("sim", "what does this cost?");
    body["max_tokens"] = json!(64);
    let worst = worst_case(&k, &body).await;
    assert!(worst > 0.0);
    // Room for 50 worst cases and a half.
    let cap = worst * 50.5;
    let (id, key) = k
        .issue(json!({"budget": {"usd": cap, "period": "month"}}))
        .await;
    let before = k.sim.stats().requests;
    let k = Arc::new(k);
    let tasks: Vec<_> = (0..200)
        .map(|_| {
            let (k, key, body) = (k.clone(), key.clone(), body.clone());
            tokio::spawn(async move {
                let resp = k.chat(&key, &body).await;
                let status = resp.status().as_u16();
                (status, json_of(resp).await)
            })
        })
        .collect();
    let mut admitted = 0;
    for t in tasks {
        let (status, body) = t.await.unwrap();
        match status {
            200 => admitted += 1,
            402 => {
                let message = body["error"]["message"].as_str().unwrap();
                assert!(
                    message.contains(&format!("budget key:{id}")) && message.contains("resets in"),
                    "{message}"
                );
                assert_eq!(body["error"]["code"], "budget_exceeded");
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    // Every request arrived while the first 50 were still in flight (the
    // upstream takes a second), so exactly 50 worst cases fit.
    assert_eq!(admitted, 50);
    assert_eq!(
        k.sim.stats().requests - before,
        50,
        "refusals never reach the upstream"
    );
    let usage = usage(&k, &id).await;
    let budget = &usage["budgets"][0];
    let spent = budget["spent_usd"].as_f64().unwrap();
    assert!(spent > 0.0 && spent <= cap, "spent {spent} of {cap}");
    assert_eq!(budget["reserved_usd"], 0.0, "every hold settled");
    assert_eq!(budget["scope"], format!("key:{id}"));
}

#[tokio::test]
async fn streams_and_team_budgets_settle_their_real_cost() {
    let k = keyed(
        SimConfig::default(),
        false,
        &format!("{PRICED}\n[budgets.teams.search]\nusd = 1000\nperiod = \"7d\""),
    )
    .await;
    let (id, key) = k.issue(json!({"team": "search"})).await;
    let mut body = openai_chat("sim", "stream me");
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    let text = k.chat(&key, &body).await.text().await.unwrap();
    let usage_chunk = crate::sse(&text)
        .into_iter()
        .filter_map(|(_, data)| serde_json::from_str::<Value>(&data).ok())
        .find(|v| v["usage"].is_object())
        .unwrap();
    let tokens = usage_chunk["usage"]["total_tokens"].as_f64().unwrap();
    assert!(tokens > 0.0);
    let budget = &usage(&k, &id).await["budgets"][0];
    assert_eq!(budget["scope"], "team:search");
    assert_eq!(budget["period"], "7d");
    let spent = budget["spent_usd"].as_f64().unwrap();
    assert!(
        (spent - tokens / 1000.0).abs() < 1e-6,
        "{spent} for {tokens} tokens"
    );
}

#[tokio::test]
async fn crossing_a_threshold_fires_the_webhook_once() {
    let received: Arc<Mutex<Vec<Value>>> = Arc::default();
    let sink = received.clone();
    let receiver = keel_testkit::serve_router(axum::Router::new().route(
        "/alerts",
        post(move |Json(alert): Json<Value>| {
            let sink = sink.clone();
            async move {
                sink.lock().unwrap().push(alert);
                "ok"
            }
        }),
    ))
    .await;
    let k = keyed(
        SimConfig::default(),
        false,
        &format!(
            "{PRICED}\n[budgets]\nalert_at = [0.5, 0.8]\nwebhook = \"{}/alerts\"",
            receiver.url()
        ),
    )
    .await;
    let mut body = openai_chat("sim", "hi");
    body["max_tokens"] = json!(16);
    let worst = worst_case(&k, &body).await;
    // Eight worst cases fit; each real request costs a little less.
    let (id, key) = k
        .issue(json!({"budget": {"usd": worst * 8.0, "period": "day"}}))
        .await;
    let mut answered = 0;
    while k.chat(&key, &body).await.status() == 200 {
        answered += 1;
        assert!(answered < 100, "the cap never refused");
    }
    assert!(answered >= 8, "{answered}");
    // The webhook is sent off the request path: wait for it, bounded.
    for _ in 0..200 {
        if received.lock().unwrap().len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let alerts = received.lock().unwrap().clone();
    let thresholds: Vec<f64> = alerts
        .iter()
        .map(|a| a["threshold"].as_f64().unwrap())
        .collect();
    assert_eq!(thresholds, [0.5, 0.8], "{alerts:?}");
    assert_eq!(alerts[0]["scope"], format!("key:{id}"));
    let metrics = crate::metrics::scrape(&k.keel.url()).await;
    assert_eq!(
        metrics.value(
            "keel_budget_alerts_total",
            &[("scope", "key"), ("threshold", "0.5")]
        ),
        1.0
    );
    assert!(metrics.value("keel_budget_refused_total", &[("scope", "key")]) >= 1.0);
}

/// Calls that were paid for count even when the request fails: answers
/// that never validate spend the budget (else a key could spend without
/// limit on a schema that can never be met), and embeddings are budgeted
/// like chat.
#[tokio::test]
async fn failed_validation_and_embeddings_spend_the_budget_too() {
    let dir = tempfile::tempdir().unwrap();
    let script = crate::write_file(
        &dir,
        "script.toml",
        "[[rule]]\nreply = \"I cannot produce JSON today.\"\n",
    );
    let k = keyed(
        SimConfig {
            script: Some(script.into()),
            ..SimConfig::default()
        },
        false,
        &format!(
            "{PRICED}\n[models.strict]\ntargets = [{{ provider = \"up\", model = \"sim-model\" }}]\n\
             validate_output = true\nmax_reasks = 1"
        ),
    )
    .await;
    let (id, key) = k
        .issue(json!({"budget": {"usd": 100, "period": "day"}}))
        .await;
    let mut body = openai_chat("strict", "give me JSON");
    body["max_tokens"] = json!(32);
    body["response_format"] = json!({"type": "json_schema", "json_schema": {"name": "r",
        "schema": {"type": "object", "required": ["a"]}}});
    assert_eq!(k.chat(&key, &body).await.status(), 422);
    let spent = usage(&k, &id).await["budgets"][0]["spent_usd"]
        .as_f64()
        .unwrap();
    assert!(spent > 0.0, "two billed calls, then 422: spent {spent}");

    // Embeddings: refused by a budget that cannot cover them.
    let (_, broke) = k
        .issue(json!({"budget": {"usd": 0.000001, "period": "day"}}))
        .await;
    let resp = crate::post_json(
        &k.keel.url(),
        "/v1/embeddings",
        &json!({"model": "sim", "input": "embed this sentence, please"}),
        &[("authorization", &format!("Bearer {broke}"))],
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 402);
}

/// In-process budgets survive a restart: what the keys spent this window
/// is read back from the request log.
#[tokio::test]
async fn a_restart_does_not_reset_a_budget() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("keel.db");
    let (server, _sim) = keel_testkit::sim(SimConfig::default()).await;
    let config = format!(
        r#"
        [auth]
        admin_token = {{ env = "ADMIN" }}
        [log]
        path = "{db}"
        flush_every = "10ms"
        {PRICED}
        [budgets.teams.search]
        usd = 1000
        period = "month"
        [providers.up]
        kind = "openai"
        base_url = "{url}/v1"
        [models.sim]
        targets = [{{ provider = "up", model = "sim-model" }}]
        "#,
        db = db.display(),
        url = server.url(),
    );
    let env = [("ADMIN", crate::keys::ADMIN)];
    let first = keel_testkit::keel_logged(&config, &env).await;
    let issued = crate::json_of(
        crate::client()
            .post(format!("{}/admin/keys", first.url()))
            .bearer_auth(crate::keys::ADMIN)
            .json(&json!({"team": "search", "budget": {"usd": 1000, "period": "7d"}}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let (id, key) = (
        issued["id"].as_str().unwrap(),
        issued["key"].as_str().unwrap(),
    );
    let auth = format!("Bearer {key}");
    for _ in 0..3 {
        let resp = crate::post_json(
            &first.url(),
            "/v1/chat/completions",
            &openai_chat("sim", "hi"),
            &[("authorization", &auth)],
        )
        .await
        .unwrap();
        assert_eq!(resp.status(), 200);
    }
    let usage = |base: String| {
        let id = id.to_owned();
        async move {
            crate::json_of(
                crate::client()
                    .get(format!("{base}/admin/keys/{id}/usage"))
                    .bearer_auth(crate::keys::ADMIN)
                    .send()
                    .await
                    .unwrap(),
            )
            .await
        }
    };
    let before = usage(first.url()).await;
    first.shutdown().await.unwrap();

    let second = keel_testkit::keel_logged(&config, &env).await;
    let after = usage(second.url()).await;
    for i in 0..2 {
        let (was, is) = (&before["budgets"][i], &after["budgets"][i]);
        assert_eq!(was["scope"], is["scope"]);
        let spent = was["spent_usd"].as_f64().unwrap();
        assert!(spent > 0.0);
        assert!(
            (is["spent_usd"].as_f64().unwrap() - spent).abs() < 1e-5,
            "{was} vs {is}"
        );
    }
}
