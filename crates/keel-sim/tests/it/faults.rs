use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{body_json, datas, start};

fn openai(stream: bool) -> Value {
    json!({"model": "m", "stream": stream, "messages": [{"role": "user", "content": "hello"}]})
}

fn anthropic(stream: bool) -> Value {
    json!({"model": "m", "max_tokens": 100, "stream": stream, "messages": [{"role": "user", "content": "hello"}]})
}

#[tokio::test]
async fn status_faults_use_each_protocols_error_shape() {
    let sim = start().await;
    let resp = sim
        .post(
            "/v1/chat/completions",
            &openai(true),
            Some("status=429,retry-after=2"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 429);
    assert_eq!(resp.headers()["retry-after"], "2");
    let body = body_json(resp).await;
    assert_eq!(body["error"]["type"], "rate_limit_error", "{body}");

    let resp = sim
        .post("/v1/messages", &anthropic(false), Some("status=529"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 529);
    assert!(resp.headers().get("retry-after").is_none());
    let body = body_json(resp).await;
    assert_eq!(
        (body["type"].as_str(), body["error"]["type"].as_str()),
        (Some("error"), Some("overloaded_error"))
    );

    let (status, body) = sim
        .json(
            "/v1/embeddings",
            &json!({"model": "e", "input": "x"}),
            Some("status=503"),
        )
        .await;
    assert_eq!(
        (status, body["error"]["type"].as_str()),
        (503, Some("server_error"))
    );
}

#[tokio::test]
async fn reset_drops_the_connection_without_a_response() {
    let sim = start().await;
    for (path, body) in [
        ("/v1/chat/completions", openai(false)),
        ("/v1/messages", anthropic(true)),
    ] {
        let err = sim
            .post(path, &body, Some("reset"))
            .send()
            .await
            .unwrap_err();
        assert!(err.status().is_none() && !err.is_timeout(), "{err:?}");
        assert!(err.is_request(), "{err:?}");
    }
    // The server is still serving.
    assert_eq!(
        sim.json("/v1/chat/completions", &openai(false), None)
            .await
            .0,
        200
    );
}

#[tokio::test]
async fn hang_never_answers_and_does_not_block_others() {
    let sim = start().await;
    let hung = sim
        .post("/v1/chat/completions", &openai(false), Some("hang"))
        .timeout(Duration::from_millis(300))
        .send();
    let plain = openai(false);
    let other = sim.json("/v1/chat/completions", &plain, None);
    let (hung, other) = tokio::join!(hung, other);
    assert!(hung.unwrap_err().is_timeout());
    assert_eq!(other.0, 200);
}

#[tokio::test]
async fn cut_streams_end_without_a_terminal_event() {
    let sim = start().await;
    let data = datas(
        &sim.events("/v1/chat/completions", &openai(true), Some("cut=3"))
            .await,
    );
    assert_eq!(data.len(), 3, "{data:?}");
    assert!(data.iter().all(|d| d.is_object()), "no [DONE]: {data:?}");

    let events = sim
        .events("/v1/messages", &anthropic(true), Some("cut=100"))
        .await;
    let names: Vec<&str> = events.iter().filter_map(|e| e.event.as_deref()).collect();
    assert!(names.contains(&"content_block_delta"), "{names:?}");
    assert!(
        !names.contains(&"message_stop") && !names.contains(&"message_delta"),
        "{names:?}"
    );

    let resp = sim
        .post("/v1/chat/completions", &openai(false), Some("cut=1"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        resp.bytes().await.is_err(),
        "a cut body fails to read to the end"
    );
}

#[tokio::test]
async fn stream_errors_arrive_as_protocol_error_events() {
    let sim = start().await;
    let data = datas(
        &sim.events(
            "/v1/chat/completions",
            &openai(true),
            Some("stream-error=2"),
        )
        .await,
    );
    let error = data.iter().position(|d| d["error"].is_object()).unwrap();
    assert_eq!(error, 2, "{data:?}");
    assert_eq!(data[2]["error"]["type"], "server_error");
    assert!(data[..2].iter().all(|d| d["choices"].is_array()));

    let events = sim
        .events("/v1/messages", &anthropic(true), Some("stream-error=1"))
        .await;
    let last = events.last().unwrap();
    assert_eq!(last.event.as_deref(), Some("error"));
    assert_eq!(
        datas(std::slice::from_ref(last))[0]["error"]["type"],
        "api_error"
    );
    assert_eq!(events[0].event.as_deref(), Some("message_start"));

    let (status, _) = sim
        .json(
            "/v1/chat/completions",
            &openai(false),
            Some("stream-error=1"),
        )
        .await;
    assert_eq!(status, 500);
}

#[tokio::test]
async fn malformed_bodies_and_chunks_are_not_json() {
    let sim = start().await;
    let resp = sim
        .post("/v1/chat/completions", &openai(false), Some("malformed"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body = resp.bytes().await.unwrap();
    assert!(serde_json::from_slice::<Value>(&body).is_err());

    let events = sim
        .events("/v1/messages", &anthropic(true), Some("malformed"))
        .await;
    assert!(
        serde_json::from_str::<Value>(&events[1].data).is_err(),
        "{:?}",
        events[1]
    );
    assert_eq!(
        events.last().unwrap().event.as_deref(),
        Some("message_stop")
    );
}

#[tokio::test]
async fn schema_violation_breaks_the_requested_schema() {
    let sim = start().await;
    let mut req = openai(false);
    req["response_format"] = json!({"type": "json_schema", "json_schema": {"name": "p", "schema": {
        "type": "object", "required": ["name", "age"],
        "properties": {"name": {"type": "string"}, "age": {"type": "integer"}}
    }}});
    let content = |body: &Value| -> Value {
        serde_json::from_str(body["choices"][0]["message"]["content"].as_str().unwrap()).unwrap()
    };
    let (_, good) = sim.json("/v1/chat/completions", &req, None).await;
    let good = content(&good);
    assert!(good["name"].is_string() && good["age"].is_i64(), "{good}");
    let (_, bad) = sim
        .json("/v1/chat/completions", &req, Some("schema-violation"))
        .await;
    let bad = content(&bad);
    assert!(bad.get("name").is_none() && !bad["age"].is_i64(), "{bad}");
}

#[tokio::test]
async fn timings_delay_the_answer() {
    let sim = start().await;
    let started = Instant::now();
    let events = sim
        .events(
            "/v1/chat/completions",
            &openai(true),
            Some("latency=50ms,ttft=100ms,gap=10ms"),
        )
        .await;
    let elapsed = started.elapsed();
    let gaps = Duration::from_millis(10) * u32::try_from(events.len() - 2).unwrap();
    assert!(
        elapsed >= Duration::from_millis(150) + gaps,
        "{elapsed:?} for {} events",
        events.len()
    );

    let started = Instant::now();
    assert_eq!(
        sim.json("/v1/messages", &anthropic(false), Some("ttft=120ms"))
            .await
            .0,
        200
    );
    assert!(started.elapsed() >= Duration::from_millis(120));
}
