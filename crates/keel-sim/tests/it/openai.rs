use serde_json::{Value, json};

use crate::support::{body_json, datas, start};

fn chat(stream: bool) -> Value {
    json!({
        "model": "gpt-sim",
        "stream": stream,
        "stream_options": if stream { json!({"include_usage": true}) } else { Value::Null },
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "What is the capital of France?"}
        ]
    })
}

#[tokio::test]
async fn chat_completion_and_its_stream_agree() {
    let sim = start().await;
    let (status, body) = sim.json("/v1/chat/completions", &chat(false), None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["object"], "chat.completion");
    let text = body["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        text.starts_with("Simulated reply to: \"What is the capital of France?\"."),
        "{text}"
    );
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    assert!(body["usage"]["prompt_tokens"].as_u64().unwrap() > 0);

    let events = sim.events("/v1/chat/completions", &chat(true), None).await;
    let data = datas(&events);
    assert_eq!(data.last().unwrap(), "[DONE]");
    let streamed: String = data
        .iter()
        .filter_map(|d| d["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(streamed, text);
    assert!(
        data.iter()
            .filter(|d| d["choices"][0]["delta"]["content"].is_string())
            .count()
            >= 3
    );
    let usage = data.iter().find(|d| d["usage"].is_object()).unwrap();
    assert_eq!(usage["usage"], body["usage"]);
}

#[tokio::test]
async fn tools_stream_as_tool_call_deltas() {
    let sim = start().await;
    let mut req = chat(true);
    req["tools"] = json!([{"type": "function", "function": {
        "name": "lookup",
        "parameters": {"type": "object", "required": ["q"], "properties": {"q": {"type": "string"}}}
    }}]);
    let data = datas(&sim.events("/v1/chat/completions", &req, None).await);
    let calls: Vec<&Value> = data
        .iter()
        .filter_map(|d| d["choices"][0]["delta"]["tool_calls"].get(0))
        .collect();
    assert_eq!(calls[0]["function"]["name"], "lookup");
    let args: String = calls
        .iter()
        .filter_map(|c| c["function"]["arguments"].as_str())
        .collect();
    let args: Value = serde_json::from_str(&args).unwrap();
    assert!(args["q"].is_string(), "{args}");
    assert!(
        data.iter()
            .any(|d| d["choices"][0]["finish_reason"] == "tool_calls")
    );
}

#[tokio::test]
async fn embeddings_models_and_bad_requests() {
    let sim = start().await;
    let req = json!({"model": "e", "input": ["a", "b"], "dimensions": 4});
    let (status, body) = sim.json("/v1/embeddings", &req, None).await;
    assert_eq!(status, 200, "{body}");
    let v = body["data"][1]["embedding"].as_array().unwrap();
    assert_eq!(v.len(), 4);
    let b64 = json!({"model": "e", "input": "a", "encoding_format": "base64"});
    let (_, body) = sim.json("/v1/embeddings", &b64, None).await;
    assert!(body["data"][0]["embedding"].is_string(), "{body}");

    let models = body_json(
        sim.client
            .get(format!("{}/v1/models", sim.base))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(models["data"][0]["id"], "keel-sim");

    let (status, body) = sim
        .json(
            "/v1/chat/completions",
            &json!({"model": "m", "messages": 3}),
            None,
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["type"], "invalid_request_error", "{body}");
    let (status, body) = sim
        .json(
            "/v1/chat/completions",
            &chat(false),
            Some("latency=5ms,explode"),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(
        body["error"]["message"],
        "invalid x-keel-sim-fault: `explode`: unknown fault"
    );
    let (status, body) = sim
        .json(
            "/v1/embeddings",
            &json!({"model": "e", "input": "a", "dimensions": 100000}),
            None,
        )
        .await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = sim.json("/nope", &json!({}), None).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("not_found"))
    );
}
