//! The exact-match response cache: a second identical request is answered
//! with zero upstream calls (through either front door, streamed or not),
//! parameters that change the answer change the key, `skip`/`refresh`
//! bypass it, and failed answers are never cached.

use serde_json::json;

use crate::{OverSim, json_of, openai_chat, over_sim, post_json, sse};

#[tokio::test]
async fn identical_requests_are_answered_from_the_cache() {
    let OverSim {
        keel,
        sim,
        server: _server,
    } = over_sim(
        r#"
        [models.cached]
        targets = [{ provider = "up", model = "m" }]
        cache_ttl = "10m"
        [models.plain]
        targets = [{ provider = "up", model = "m" }]
        [providers.local]
        kind = "sim"
        resilience = { max_retries = 0, breaker = { enabled = false } }
        [models.local]
        targets = [{ provider = "local", model = "m" }]
        cache_ttl = "10m"
        "#,
    )
    .await;
    let base = keel.url();
    let post = |path: &'static str,
                body: serde_json::Value,
                headers: Vec<(&'static str, &'static str)>| {
        let base = base.clone();
        async move { post_json(&base, path, &body, &headers).await }
    };
    let calls = || sim.stats().requests;

    let first = post(
        "/v1/chat/completions",
        openai_chat("cached", "what is 2+2?"),
        vec![],
    )
    .await
    .unwrap();
    assert_eq!(first.headers()["x-keel-cache"], "miss");
    let first = json_of(first).await;
    let after_first = calls();

    // Same request: a hit, no upstream call, the same answer, cost zero.
    let again = post(
        "/v1/chat/completions",
        openai_chat("cached", "what is 2+2?"),
        vec![],
    )
    .await
    .unwrap();
    assert_eq!(again.headers()["x-keel-cache"], "hit");
    assert_eq!(again.headers()["x-keel-cost"], "0.00000000");
    let again = json_of(again).await;
    assert_eq!(
        again["choices"][0]["message"]["content"],
        first["choices"][0]["message"]["content"]
    );
    assert_eq!(calls(), after_first);

    // Streamed: a proper stream of the same text.
    let mut as_openai = openai_chat("cached", "what is 2+2?");
    as_openai["stream"] = json!(true);
    let resp = post("/v1/chat/completions", as_openai, vec![])
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-keel-cache"], "hit");
    let events = sse(&resp.text().await.unwrap());
    let text: String = events
        .iter()
        .filter_map(|(_, data)| serde_json::from_str::<serde_json::Value>(data).ok())
        .filter_map(|v| {
            v["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    assert_eq!(
        text,
        first["choices"][0]["message"]["content"].as_str().unwrap()
    );
    assert_eq!(events.last().unwrap().1, "[DONE]");
    assert_eq!(calls(), after_first);

    // A parameter that changes the answer changes the key.
    let mut warmer = openai_chat("cached", "what is 2+2?");
    warmer["temperature"] = json!(0.9);
    let resp = post("/v1/chat/completions", warmer, vec![]).await.unwrap();
    assert_eq!(resp.headers()["x-keel-cache"], "miss");
    assert_eq!(calls(), after_first + 1);

    // skip bypasses; refresh calls and stores; a route without cache_ttl
    // caches only when asked.
    let resp = post(
        "/v1/chat/completions",
        openai_chat("cached", "what is 2+2?"),
        vec![("x-keel-cache", "skip")],
    )
    .await
    .unwrap();
    assert!(resp.headers().get("x-keel-cache").is_none());
    let resp = post(
        "/v1/chat/completions",
        openai_chat("cached", "what is 2+2?"),
        vec![("x-keel-cache", "refresh")],
    )
    .await
    .unwrap();
    assert_eq!(resp.headers()["x-keel-cache"], "refresh");
    assert_eq!(calls(), after_first + 3);
    let resp = post("/v1/chat/completions", openai_chat("plain", "hi"), vec![])
        .await
        .unwrap();
    assert!(resp.headers().get("x-keel-cache").is_none());
    for expected in ["miss", "hit"] {
        let resp = post(
            "/v1/chat/completions",
            openai_chat("plain", "hi"),
            vec![("x-keel-cache", "use")],
        )
        .await
        .unwrap();
        assert_eq!(resp.headers()["x-keel-cache"], expected);
    }

    // Failures are never cached: after a failed call, the same request is a
    // miss that reaches the upstream.
    let resp = post(
        "/v1/chat/completions",
        openai_chat("local", "fail me"),
        vec![("x-keel-sim-fault", "status=500")],
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 502);
    let resp = post(
        "/v1/chat/completions",
        openai_chat("local", "fail me"),
        vec![],
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-keel-cache"], "miss");
    assert_eq!(resp.headers()["x-keel-provider"], "local");
}

/// A streamed answer fills the cache once it ends well (the next request,
/// streamed or not, is a hit); a stream cut mid-way never does.
#[tokio::test]
async fn streamed_answers_fill_the_cache_only_when_whole() {
    let keel = keel_testkit::keel(
        r#"
        [providers.local]
        kind = "sim"
        resilience = { max_retries = 0, breaker = { enabled = false } }
        [models.m]
        targets = [{ provider = "local", model = "m" }]
        cache_ttl = "10m"
        "#,
    )
    .await;
    let base = keel.url();
    let post = |body: serde_json::Value, fault: Option<&'static str>| {
        let base = base.clone();
        let headers: Vec<(&str, &str)> =
            fault.map(|f| ("x-keel-sim-fault", f)).into_iter().collect();
        async move { post_json(&base, "/v1/chat/completions", &body, &headers).await }
    };
    let streamed = |text: &str| {
        let mut b = openai_chat("m", text);
        b["stream"] = json!(true);
        b
    };
    // Whole stream: stored; a non-streamed request then hits with the same text.
    let resp = post(streamed("tell me a story"), None).await.unwrap();
    assert_eq!(resp.headers()["x-keel-cache"], "miss");
    let text: String = sse(&resp.text().await.unwrap())
        .iter()
        .filter_map(|(_, d)| serde_json::from_str::<serde_json::Value>(d).ok())
        .filter_map(|v| {
            v["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    let resp = post(openai_chat("m", "tell me a story"), None)
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-keel-cache"], "hit");
    assert_eq!(
        json_of(resp).await["choices"][0]["message"]["content"],
        text.as_str()
    );

    // Cut stream: not stored; the next identical request is a miss.
    let resp = post(streamed("another story"), Some("cut=3"))
        .await
        .unwrap();
    let _ = resp.text().await;
    let resp = post(streamed("another story"), None).await.unwrap();
    assert_eq!(resp.headers()["x-keel-cache"], "miss");
}
