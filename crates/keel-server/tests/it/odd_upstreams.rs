//! Upstreams that misbehave in ways the simulator was not written for,
//! played by a few lines of axum on 127.0.0.1: keel still answers correctly
//! or fails with a clear, mapped error.

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::post;
use serde_json::{Value, json};

use crate::{client, json_of, sse};

/// An OpenAI-compatible upstream answering every chat request with `reply`.
async fn upstream(reply: fn() -> axum::response::Response) -> keel_testkit::Running {
    let app = Router::new().route("/v1/chat/completions", post(move || async move { reply() }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    keel_testkit::keel(&format!(
        "[providers.odd]\nkind = \"openai\"\nbase_url = \"http://{addr}/v1\"\n\
         [models.m]\ntargets = [{{ provider = \"odd\", model = \"odd-1\" }}]\n"
    ))
    .await
}

async fn chat(keel: &keel_testkit::Running, stream: bool) -> reqwest::Response {
    let body =
        json!({"model": "m", "stream": stream, "messages": [{"role": "user", "content": "hi"}]});
    client()
        .post(format!("{}/v1/chat/completions", keel.url()))
        .body(serde_json::to_vec(&body).unwrap())
        .send()
        .await
        .unwrap()
}

fn completion() -> axum::response::Response {
    let body = json!({"id": "c1", "object": "chat.completion", "created": 1, "model": "odd-1",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "whole answer"}, "finish_reason": "stop"}]});
    (
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

#[tokio::test]
async fn an_upstream_that_ignores_stream_true_is_replayed_as_a_stream() {
    let keel = upstream(completion).await;
    let resp = chat(&keel, true).await;
    assert_eq!(resp.status(), 200);
    let events = sse(&resp.text().await.unwrap());
    let text: String = events
        .iter()
        .filter(|(_, d)| d != "[DONE]")
        .filter_map(|(_, d)| {
            serde_json::from_str::<Value>(d)
                .unwrap()
                .pointer("/choices/0/delta/content")
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .collect();
    assert_eq!(text, "whole answer");
    assert_eq!(events.last().unwrap().1, "[DONE]");
    // No usage reported upstream: keel estimates rather than bill zero.
    let v = json_of(chat(&keel, false).await).await;
    assert!(
        v.pointer("/usage/completion_tokens")
            .and_then(Value::as_u64)
            .unwrap()
            > 0,
        "{v}"
    );
}

fn done_without_finish() -> axum::response::Response {
    let body = "data: {\"id\":\"c2\",\"model\":\"odd-1\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"}}]}\n\ndata: [DONE]\n\n";
    ([(header::CONTENT_TYPE, "text/event-stream")], body).into_response()
}

#[tokio::test]
async fn a_stream_without_a_finish_reason_still_gets_one() {
    let keel = upstream(done_without_finish).await;
    let events = sse(&chat(&keel, true).await.text().await.unwrap());
    let reasons: Vec<String> = events
        .iter()
        .filter(|(_, d)| d != "[DONE]")
        .filter_map(|(_, d)| {
            serde_json::from_str::<Value>(d)
                .unwrap()
                .pointer("/choices/0/finish_reason")
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .collect();
    assert_eq!(reasons, ["stop"]);
}

fn vllm_error() -> axum::response::Response {
    let body = json!({"object": "error", "message": "This model's maximum context length is 4096 tokens", "type": "BadRequestError", "code": 400});
    (
        StatusCode::BAD_REQUEST,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

#[tokio::test]
async fn an_openai_compatible_error_body_keeps_its_message() {
    let keel = upstream(vllm_error).await;
    let resp = chat(&keel, false).await;
    assert_eq!(resp.status(), 400);
    let v = json_of(resp).await;
    let message = v.pointer("/error/message").and_then(Value::as_str).unwrap();
    assert!(message.contains("maximum context length"), "{message}");
    assert!(
        message.starts_with("upstream `odd` returned 400"),
        "{message}"
    );
}

fn html_page() -> axum::response::Response {
    (
        [(header::CONTENT_TYPE, "text/html")],
        "<html>502 Bad Gateway</html>",
    )
        .into_response()
}

#[tokio::test]
async fn a_non_json_200_is_a_502_not_a_crash() {
    let keel = upstream(html_page).await;
    let resp = chat(&keel, false).await;
    assert_eq!(resp.status(), 502);
    assert_eq!(
        json_of(resp).await.pointer("/error/code"),
        Some(&json!("upstream_invalid_response"))
    );
    // The same page to a stream request fails before any byte reached the
    // client: a plain error response, not a broken stream.
    let resp = chat(&keel, true).await;
    assert_eq!(resp.status(), 502);
    assert_eq!(
        json_of(resp).await.pointer("/error/code"),
        Some(&json!("upstream_invalid_response"))
    );
}
