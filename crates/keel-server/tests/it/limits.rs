//! Input limits per route, enforced before any upstream call: an input over
//! `max_input_tokens` is refused with 413 (or sent to `on_oversize`), a
//! `max_tokens` over `max_output_tokens` with 400, each naming the limit.

use serde_json::json;

use crate::{OverSim, anthropic_chat, json_of, openai_chat, over_sim, post_json};

#[tokio::test]
async fn oversized_input_is_refused_or_rerouted_with_no_upstream_call() {
    let OverSim {
        keel,
        sim,
        server: _server,
    } = over_sim(
        r#"
        [models.small]
        targets = [{ provider = "up", model = "gpt-4o-mini" }]
        max_input_tokens = 40
        max_output_tokens = 100
        [models.guarded]
        targets = [{ provider = "up", model = "gpt-4o-mini" }]
        max_input_tokens = 40
        on_oversize = "long"
        [models.long]
        targets = [{ provider = "up", model = "long-context-model" }]
        max_input_tokens = 100000
        "#,
    )
    .await;
    let base = keel.url();
    let post = |path: &'static str, body: serde_json::Value| {
        let base = base.clone();
        async move { post_json(&base, path, &body, &[]).await }
    };
    let book = "It was the best of times, it was the worst of times. ".repeat(40);

    // Within the limits: answered.
    assert_eq!(
        post("/v1/chat/completions", openai_chat("small", "hi"))
            .await
            .unwrap()
            .status(),
        200
    );
    let calls = sim.stats().requests;

    // Too much input, both front doors: 413 naming the limit, nothing sent.
    let resp = post("/v1/chat/completions", openai_chat("small", &book))
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    let body = json_of(resp).await;
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("models.small.max_input_tokens") && message.contains("40"),
        "{message}"
    );
    let mut long = anthropic_chat("small", &book);
    long["max_tokens"] = json!(50);
    let resp = post("/v1/messages", long).await.unwrap();
    assert_eq!(resp.status(), 413);
    assert_eq!(json_of(resp).await["type"], "error");

    // max_tokens over the route's limit: 400 on that parameter.
    let mut greedy = openai_chat("small", "hi");
    greedy["max_tokens"] = json!(5000);
    let resp = post("/v1/chat/completions", greedy).await.unwrap();
    assert_eq!(resp.status(), 400);
    let body = json_of(resp).await;
    assert_eq!(body["error"]["param"], "max_tokens");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("max_output_tokens")
    );
    assert_eq!(
        sim.stats().requests,
        calls,
        "no upstream call for refused requests"
    );

    // With on_oversize, the long input goes to the long-context route.
    let resp = post("/v1/chat/completions", openai_chat("guarded", &book))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-keel-model"], "long-context-model");
    assert_eq!(sim.stats().requests, calls + 1);
    // Short inputs stay on the route.
    let resp = post("/v1/chat/completions", openai_chat("guarded", "hi"))
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-keel-model"], "gpt-4o-mini");
}

/// keel's own rate limit: past the minute's burst, 429 + Retry-After in the
/// client's error shape, saying it is keel's limit, with no upstream call.
#[tokio::test]
async fn keel_s_rate_limit_answers_429_in_the_client_s_shape() {
    let OverSim {
        keel,
        sim,
        server: _server,
    } = over_sim(
        r#"
        [models.limited]
        targets = [{ provider = "up", model = "m" }]
        rate_limit = { requests_per_minute = 2 }
        "#,
    )
    .await;
    let base = keel.url();
    let post = |path: &'static str, body: serde_json::Value| {
        let base = base.clone();
        async move { post_json(&base, path, &body, &[]).await }
    };
    for _ in 0..2 {
        let resp = post("/v1/chat/completions", openai_chat("limited", "hi"))
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
    }
    let calls = sim.stats().requests;
    let resp = post("/v1/chat/completions", openai_chat("limited", "hi"))
        .await
        .unwrap();
    assert_eq!(resp.status(), 429);
    let retry_after: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=30).contains(&retry_after), "{retry_after}");
    let body = json_of(resp).await;
    assert_eq!(body["error"]["code"], "rate_limited");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("keel's rate limit")
    );
    let resp = post("/v1/messages", anthropic_chat("limited", "hi"))
        .await
        .unwrap();
    assert_eq!(resp.status(), 429);
    let body = json_of(resp).await;
    assert_eq!(body["error"]["type"], "rate_limit_error");
    assert_eq!(sim.stats().requests, calls);
}
