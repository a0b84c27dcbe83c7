use serde_json::{Value, json};

use crate::support::{datas, start};

fn messages(stream: bool) -> Value {
    json!({
        "model": "claude-sim",
        "max_tokens": 256,
        "stream": stream,
        "system": "be brief",
        "messages": [{"role": "user", "content": "Name three rivers"}]
    })
}

#[tokio::test]
async fn message_and_its_stream_agree() {
    let sim = start().await;
    let (status, body) = sim.json("/v1/messages", &messages(false), None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["type"], "message");
    assert_eq!(body["stop_reason"], "end_turn");
    let text = body["content"][0]["text"].as_str().unwrap().to_owned();
    assert!(
        text.starts_with("Simulated reply to: \"Name three rivers\"."),
        "{text}"
    );

    let events = sim.events("/v1/messages", &messages(true), None).await;
    let names: Vec<&str> = events.iter().filter_map(|e| e.event.as_deref()).collect();
    assert_eq!(names.first(), Some(&"message_start"));
    assert_eq!(names[names.len() - 2..], ["message_delta", "message_stop"]);
    let streamed: String = datas(&events)
        .iter()
        .filter_map(|d| d["delta"]["text"].as_str())
        .collect();
    assert_eq!(streamed, text);
    let delta = datas(&events)
        .into_iter()
        .find(|d| d["type"] == "message_delta")
        .unwrap();
    assert_eq!(
        delta["usage"]["output_tokens"],
        body["usage"]["output_tokens"]
    );
}

#[tokio::test]
async fn bad_requests_get_anthropic_errors() {
    let sim = start().await;
    let (status, body) = sim.json("/v1/messages", &json!({"model": "m"}), None).await;
    assert_eq!(status, 400);
    assert_eq!(body["type"], "error");
    assert_eq!(body["error"]["type"], "invalid_request_error", "{body}");
}
