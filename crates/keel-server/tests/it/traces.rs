//! OTLP export from a real request: a test receiver on 127.0.0.1 decodes
//! the protobuf and checks the span tree (root server span, a span per
//! phase, client spans per upstream attempt under the `attempt` phase), the
//! GenAI attributes, and that the `traceparent` the upstream received names
//! the attempt's span.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::routing::post;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use opentelemetry_proto::tonic::trace::v1::{Span, span, status};
use prost::Message as _;
use serde_json::json;

use crate::{client, openai_chat};

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn attr<'a>(span: &'a Span, key: &str) -> Option<&'a Any> {
    span.attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| v.value.as_ref())
}

fn str_attr<'a>(span: &'a Span, key: &str) -> &'a str {
    match attr(span, key) {
        Some(Any::StringValue(s)) => s,
        other => panic!("{key}: {other:?} on {}", span.name),
    }
}

fn int_attr(span: &Span, key: &str) -> i64 {
    match attr(span, key) {
        Some(Any::IntValue(n)) => *n,
        other => panic!("{key}: {other:?} on {}", span.name),
    }
}

#[tokio::test]
async fn a_request_is_exported_as_one_span_tree_with_genai_attributes() {
    // The collector.
    let spans: Arc<Mutex<Vec<Span>>> = Arc::default();
    let sink = spans.clone();
    let collector = keel_testkit::serve_router(axum::Router::new().route(
        "/v1/traces",
        post(move |body: Bytes| {
            let sink = sink.clone();
            async move {
                let req = ExportTraceServiceRequest::decode(body).unwrap();
                for rs in req.resource_spans {
                    for ss in rs.scope_spans {
                        sink.lock().unwrap().extend(ss.spans);
                    }
                }
                ""
            }
        }),
    ))
    .await;
    // An upstream that fails the first call (retried) and records traceparents.
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let calls = seen.clone();
    let upstream = keel_testkit::serve_router(axum::Router::new().route(
        "/v1/chat/completions",
        post(move |headers: axum::http::HeaderMap| {
            let calls = calls.clone();
            async move {
                let mut calls = calls.lock().unwrap();
                calls.push(headers["traceparent"].to_str().unwrap().to_owned());
                if calls.len() == 1 {
                    return (
                        axum::http::StatusCode::SERVICE_UNAVAILABLE,
                        axum::Json(json!({"error": {"message": "busy"}})),
                    );
                }
                (
                    axum::http::StatusCode::OK,
                    axum::Json(json!({
                        "id": "c", "object": "chat.completion", "created": 1, "model": "gpt-x-2",
                        "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
                        "usage": {"prompt_tokens": 11, "completion_tokens": 3, "total_tokens": 14}
                    })),
                )
            }
        }),
    ))
    .await;
    let keel = keel_testkit::keel(&format!(
        r#"
        [telemetry.otlp]
        endpoint = "{}/v1/traces"
        service_name = "keel-under-test"
        [providers.up]
        kind = "openai"
        base_url = "{}/v1"
        resilience = {{ max_retries = 1, backoff_base = "1ms", breaker = {{ enabled = false }} }}
        [models.m]
        targets = [{{ provider = "up", model = "gpt-x" }}]
        "#,
        collector.url(),
        upstream.url()
    ))
    .await;
    let incoming = "00-11112222333344445555666677778888-aaaabbbbccccdddd-01";
    let resp = client()
        .post(format!("{}/v1/chat/completions", keel.url()))
        .header("content-type", "application/json")
        .header("traceparent", incoming)
        .body(openai_chat("m", "hi").to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    keel.shutdown().await.unwrap(); // flushes the exporter

    let spans = spans.lock().unwrap().clone();
    assert!(
        spans
            .iter()
            .all(|s| hex(&s.trace_id) == "11112222333344445555666677778888")
    );
    let by_id: HashMap<String, &Span> = spans.iter().map(|s| (hex(&s.span_id), s)).collect();
    let root = spans
        .iter()
        .find(|s| s.kind == span::SpanKind::Server as i32)
        .expect("a server span");
    assert_eq!(hex(&root.parent_span_id), "aaaabbbbccccdddd");
    assert_eq!(root.name, "chat m");
    assert_eq!(str_attr(root, "gen_ai.operation.name"), "chat");
    assert_eq!(str_attr(root, "gen_ai.request.model"), "m");
    assert_eq!(str_attr(root, "gen_ai.response.model"), "gpt-x");
    assert_eq!(str_attr(root, "gen_ai.provider.name"), "up");
    assert_eq!(int_attr(root, "gen_ai.usage.input_tokens"), 11);
    assert_eq!(int_attr(root, "gen_ai.usage.output_tokens"), 3);
    assert_eq!(int_attr(root, "http.response.status_code"), 200);

    let children = |parent: &Span| -> Vec<&Span> {
        let mut c: Vec<&Span> = spans
            .iter()
            .filter(|s| s.parent_span_id == parent.span_id)
            .collect();
        c.sort_by_key(|s| s.start_time_unix_nano);
        c
    };
    let phases: Vec<&str> = children(root).iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        phases,
        ["admit", "authenticate", "decode", "attempt", "respond"]
    );
    let attempt_phase = children(root)[3];
    let attempts = children(attempt_phase);
    assert_eq!(attempts.len(), 2, "a failed call and its retry");
    for a in &attempts {
        assert_eq!(a.kind, span::SpanKind::Client as i32);
        assert_eq!(a.name, "chat gpt-x");
        assert_eq!(str_attr(a, "gen_ai.request.model"), "gpt-x");
        assert_eq!(str_attr(a, "gen_ai.provider.name"), "up");
        assert!(a.start_time_unix_nano >= attempt_phase.start_time_unix_nano);
        assert!(a.end_time_unix_nano <= attempt_phase.end_time_unix_nano);
    }
    assert_eq!(int_attr(attempts[0], "http.response.status_code"), 503);
    assert_eq!(
        attempts[0].status.as_ref().map(|s| s.code),
        Some(status::StatusCode::Error as i32)
    );
    assert_eq!(str_attr(attempts[0], "error.type"), "error");
    // Each upstream call named its own attempt span as parent.
    let sent = seen.lock().unwrap().clone();
    for (tp, a) in sent.iter().zip(&attempts) {
        assert_eq!(
            tp,
            &format!("00-11112222333344445555666677778888-{}-01", hex(&a.span_id))
        );
    }
    // Every span's parent is in the tree (or is the remote caller).
    for s in &spans {
        let parent = hex(&s.parent_span_id);
        assert!(
            parent == "aaaabbbbccccdddd" || by_id.contains_key(&parent),
            "{}",
            s.name
        );
    }
}
