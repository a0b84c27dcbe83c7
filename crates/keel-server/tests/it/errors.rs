//! Everything a client can get wrong, and everything an upstream can do
//! wrong, reaches the client as a clear error in its own protocol's shape.

use keel_config::{FaultRule, SimConfig};
use serde_json::Value;

use crate::{Setup, anthropic_chat, client, json_of, openai_chat, setup, setup_with};

/// Asserts the OpenAI error shape and returns the `error` object.
fn openai_error(v: &Value) -> &Value {
    let e = &v["error"];
    assert!(
        e["message"].is_string() && e["type"].is_string(),
        "not the OpenAI shape: {v}"
    );
    assert!(
        e.get("param").is_some() && e.get("code").is_some(),
        "not the OpenAI shape: {v}"
    );
    e
}

/// Asserts the Anthropic error shape and returns the `error` object.
fn anthropic_error(v: &Value) -> &Value {
    assert_eq!(v["type"], "error", "not the Anthropic shape: {v}");
    let e = &v["error"];
    assert!(
        e["message"].is_string() && e["type"].is_string(),
        "not the Anthropic shape: {v}"
    );
    e
}

async fn raw(s: &Setup, path: &str, body: &'static [u8]) -> (u16, Value) {
    let resp = client()
        .post(s.url(path))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), json_of(resp).await)
}

#[tokio::test]
async fn bad_requests_get_400_naming_the_field() {
    let s = setup().await;
    let cases: [(&[u8], Option<&str>); 6] = [
        (b"{not json", None),
        (b"[1, 2]", None),
        (br#"{"messages": [{"role": "user", "content": "x"}]}"#, Some("model")),
        (br#"{"model": "sim"}"#, Some("messages")),
        (br#"{"model": "sim", "messages": "hello"}"#, Some("messages")),
        (br#"{"model": "sim", "messages": [{"role": "user", "content": "x"}], "temperature": "hot"}"#, Some("temperature")),
    ];
    for (body, param) in cases {
        let (status, v) = raw(&s, "/v1/chat/completions", body).await;
        assert_eq!(status, 400, "{}", String::from_utf8_lossy(body));
        let e = openai_error(&v);
        assert_eq!(e["type"], "invalid_request_error");
        assert_eq!(e["param"].as_str(), param, "{v}");
    }
    let cases: [&[u8]; 4] = [
        b"{not json",
        br#"{"model": "sim", "messages": [{"role": "user", "content": "x"}]}"#, // no max_tokens
        br#"{"model": "sim", "max_tokens": "many", "messages": []}"#,
        br#"{"model": "sim", "max_tokens": 5, "messages": [{"role": "system", "content": "x"}]}"#,
    ];
    for body in cases {
        let (status, v) = raw(&s, "/v1/messages", body).await;
        assert_eq!(status, 400, "{}", String::from_utf8_lossy(body));
        assert_eq!(anthropic_error(&v)["type"], "invalid_request_error");
    }
}

#[tokio::test]
async fn unknown_models_routes_and_unavailable_providers() {
    let s = setup().await;
    let resp = s.openai(&openai_chat("no-such-model", "x"), &[]).await;
    assert_eq!(resp.status(), 404);
    assert_eq!(
        openai_error(&json_of(resp).await)["code"],
        "model_not_found"
    );
    let resp = s
        .anthropic(&anthropic_chat("no-such-model", "x"), &[])
        .await;
    assert_eq!(resp.status(), 404);
    assert_eq!(
        anthropic_error(&json_of(resp).await)["type"],
        "not_found_error"
    );

    let resp = s.openai(&openai_chat("keyless", "x"), &[]).await;
    assert_eq!(resp.status(), 503);
    let v = json_of(resp).await;
    assert!(
        openai_error(&v)["message"]
            .as_str()
            .unwrap()
            .contains("KEEL_TEST_UNSET_KEY"),
        "{v}"
    );

    let resp = client()
        .get(s.url("/v1/nothing-here"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    openai_error(&json_of(resp).await);
    let resp = client()
        .get(s.url("/v1/messages"))
        .header("anthropic-version", "2023-06-01")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 405);
    anthropic_error(&json_of(resp).await);
}

#[tokio::test]
async fn oversized_bodies_get_413_in_each_shape() {
    let s = setup_with(SimConfig::default(), "[server]\nmax_body_bytes = 4096").await;
    let big = "x".repeat(10_000);
    let resp = s.openai(&openai_chat("sim", &big), &[]).await;
    assert_eq!(resp.status(), 413);
    openai_error(&json_of(resp).await);
    let resp = s.anthropic(&anthropic_chat("sim", &big), &[]).await;
    assert_eq!(resp.status(), 413);
    assert_eq!(
        anthropic_error(&json_of(resp).await)["type"],
        "request_too_large"
    );
    // Chunked, with no Content-Length to reject it early.
    let chunks = futures::stream::iter((0..20).map(|_| Ok::<_, std::io::Error>(vec![b' '; 1000])));
    let resp = client()
        .post(s.url("/v1/chat/completions"))
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
}

#[tokio::test]
async fn upstream_faults_are_mapped_not_passed_through() {
    let s = setup().await;
    // (fault, status the client sees, error-source header)
    let cases = [
        ("status=503", 502, "upstream"),
        ("status=500", 502, "upstream"),
        ("status=529", 503, "upstream"),
        ("status=400", 400, "upstream"),
        ("status=401", 502, "upstream"),
        ("reset", 502, "upstream"),
        ("malformed", 502, "upstream"),
        ("bogus-fault", 400, "client"),
    ];
    for (fault, status, source) in cases {
        let resp = s
            .openai(&openai_chat("sim", "hi"), &[("x-keel-sim-fault", fault)])
            .await;
        assert_eq!(resp.status(), status, "{fault}");
        assert_eq!(resp.headers()["x-keel-error-source"], source, "{fault}");
        let v = json_of(resp).await;
        let message = openai_error(&v)["message"].as_str().unwrap();
        if source == "upstream" {
            assert!(message.starts_with("upstream `sim`"), "{fault}: {message}");
        }
        let resp = s
            .anthropic(&anthropic_chat("sim", "hi"), &[("x-keel-sim-fault", fault)])
            .await;
        assert_eq!(resp.status(), status, "{fault}");
        anthropic_error(&json_of(resp).await);
    }
    let resp = s
        .openai(
            &openai_chat("sim", "hi"),
            &[("x-keel-sim-fault", "status=429,retry-after=7")],
        )
        .await;
    assert_eq!(resp.status(), 429);
    assert_eq!(resp.headers()["retry-after"], "7");
    assert_eq!(
        openai_error(&json_of(resp).await)["code"],
        "upstream_rate_limited"
    );
}

#[tokio::test]
async fn http_upstream_errors_are_mapped_for_both_protocols() {
    let upstream = SimConfig {
        faults: vec![FaultRule {
            rate: 1.0,
            fault: "status=503".into(),
        }],
        ..SimConfig::default()
    };
    let s = setup_with(upstream, "").await;
    for model in ["via-openai", "via-anthropic"] {
        let resp = s.openai(&openai_chat(model, "hi"), &[]).await;
        assert_eq!(resp.status(), 502, "{model}");
        let v = json_of(resp).await;
        let message = openai_error(&v)["message"].as_str().unwrap();
        assert!(message.contains("returned 503"), "{model}: {message}");
        assert!(
            !message.contains("{\""),
            "raw upstream body leaked: {message}"
        );
        let resp = s.anthropic(&anthropic_chat(model, "hi"), &[]).await;
        assert_eq!(resp.status(), 502, "{model}");
        anthropic_error(&json_of(resp).await);
    }

    let unreachable = keel_testkit::keel(
        r#"
        [providers.gone]
        kind = "openai"
        base_url = "http://127.0.0.1:9/v1"
        [models.m]
        targets = [{ provider = "gone", model = "x" }]
        "#,
    )
    .await;
    let resp = client()
        .post(format!("{}/v1/chat/completions", unreachable.url()))
        .body(serde_json::to_vec(&openai_chat("m", "hi")).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 502);
    assert_eq!(
        openai_error(&json_of(resp).await)["code"],
        "upstream_connection_error"
    );
}
