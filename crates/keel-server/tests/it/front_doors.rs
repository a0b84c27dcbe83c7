//! Both front doors against every kind of upstream, stream and not: the
//! answer arrives whole, in the client's protocol, with usage.

use serde_json::{Value, json};

use crate::{MODELS, anthropic_chat, json_of, openai_chat, setup, sse};

fn openai_stream_text(body: &str) -> (String, Option<Value>, Vec<String>) {
    let mut text = String::new();
    let mut usage = None;
    let mut finish = Vec::new();
    for (_, data) in sse(body) {
        if data == "[DONE]" {
            continue;
        }
        let chunk: Value = serde_json::from_str(&data).unwrap();
        if let Some(c) = chunk
            .pointer("/choices/0/delta/content")
            .and_then(Value::as_str)
        {
            text.push_str(c);
        }
        if let Some(f) = chunk
            .pointer("/choices/0/finish_reason")
            .and_then(Value::as_str)
        {
            finish.push(f.to_owned());
        }
        if chunk.get("usage").is_some_and(|u| !u.is_null()) {
            usage = chunk.get("usage").cloned();
        }
    }
    (text, usage, finish)
}

#[tokio::test]
async fn openai_front_door_serves_every_upstream_kind() {
    let s = setup().await;
    for model in MODELS {
        let body = openai_chat(model, "Tell me about rivers");
        let resp = s.openai(&body, &[]).await;
        assert_eq!(resp.status(), 200, "{model}");
        let v = json_of(resp).await;
        let text = v
            .pointer("/choices/0/message/content")
            .and_then(Value::as_str)
            .unwrap()
            .to_owned();
        assert!(text.contains("Tell me about rivers"), "{model}: {text}");
        assert_eq!(
            v.pointer("/choices/0/finish_reason"),
            Some(&json!("stop")),
            "{model}"
        );
        assert!(
            v.pointer("/usage/prompt_tokens")
                .and_then(Value::as_u64)
                .unwrap()
                > 0,
            "{model}"
        );
        assert!(
            v.pointer("/usage/completion_tokens")
                .and_then(Value::as_u64)
                .unwrap()
                > 0,
            "{model}"
        );

        let mut streamed = body.clone();
        streamed["stream"] = json!(true);
        streamed["stream_options"] = json!({"include_usage": true});
        let resp = s.openai(&streamed, &[]).await;
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["content-type"], "text/event-stream");
        let body = resp.text().await.unwrap();
        assert!(body.ends_with("data: [DONE]\n\n"), "{model}: {body}");
        let (streamed_text, usage, finish) = openai_stream_text(&body);
        assert_eq!(streamed_text, text, "{model}: stream and non-stream differ");
        assert_eq!(finish, ["stop"], "{model}");
        let usage = usage.expect("usage chunk");
        assert!(usage["completion_tokens"].as_u64().unwrap() > 0, "{model}");
        assert!(usage["prompt_tokens"].as_u64().unwrap() > 0, "{model}");
    }
}

#[tokio::test]
async fn anthropic_front_door_serves_every_upstream_kind() {
    let s = setup().await;
    for model in MODELS {
        let mut body = anthropic_chat(model, "Tell me about mountains");
        body["system"] = json!("You are terse.");
        let resp = s.anthropic(&body, &[]).await;
        assert_eq!(resp.status(), 200, "{model}");
        let v = json_of(resp).await;
        assert_eq!(v["type"], "message");
        assert_eq!(v["stop_reason"], "end_turn", "{model}");
        let text = v
            .pointer("/content/0/text")
            .and_then(Value::as_str)
            .unwrap()
            .to_owned();
        assert!(text.contains("Tell me about mountains"), "{model}: {text}");
        assert!(
            v.pointer("/usage/input_tokens")
                .and_then(Value::as_u64)
                .unwrap()
                > 0
        );
        assert!(
            v.pointer("/usage/output_tokens")
                .and_then(Value::as_u64)
                .unwrap()
                > 0
        );

        body["stream"] = json!(true);
        let resp = s.anthropic(&body, &[]).await;
        assert_eq!(resp.status(), 200);
        let events = sse(&resp.text().await.unwrap());
        let names: Vec<&str> = events
            .iter()
            .map(|(e, _)| e.as_deref().unwrap_or(""))
            .collect();
        assert_eq!(names.first(), Some(&"message_start"), "{model}");
        assert_eq!(
            &names[names.len() - 2..],
            ["message_delta", "message_stop"],
            "{model}"
        );
        let mut streamed = String::new();
        for (_, data) in &events {
            let ev: Value = serde_json::from_str(data).unwrap();
            if let Some(t) = ev.pointer("/delta/text").and_then(Value::as_str) {
                streamed.push_str(t);
            }
            if ev["type"] == "message_delta" {
                assert_eq!(ev.pointer("/delta/stop_reason"), Some(&json!("end_turn")));
                assert!(
                    ev.pointer("/usage/output_tokens")
                        .and_then(Value::as_u64)
                        .unwrap()
                        > 0
                );
                assert!(
                    ev.pointer("/usage/input_tokens")
                        .and_then(Value::as_u64)
                        .unwrap()
                        > 0
                );
            }
        }
        assert_eq!(streamed, text, "{model}: stream and non-stream differ");
    }
}

#[tokio::test]
async fn tool_calls_cross_protocols_both_ways() {
    let s = setup().await;
    let tools = json!([{"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]);
    for model in MODELS {
        let body = json!({"model": model, "tools": tools, "messages": [{"role": "user", "content": "weather?"}]});
        let v = json_of(s.openai(&body, &[]).await).await;
        assert_eq!(
            v.pointer("/choices/0/finish_reason"),
            Some(&json!("tool_calls")),
            "{model}: {v}"
        );
        let call = &v.pointer("/choices/0/message/tool_calls/0").unwrap();
        assert_eq!(call.pointer("/function/name"), Some(&json!("get_weather")));
        let args: Value = serde_json::from_str(
            call.pointer("/function/arguments")
                .and_then(Value::as_str)
                .unwrap(),
        )
        .unwrap();
        assert!(args["city"].is_string(), "{model}: {args}");

        // Second leg: the tool result goes back, a text answer comes out.
        let follow = json!({"model": model, "tools": tools, "messages": [
            {"role": "user", "content": "weather?"},
            {"role": "assistant", "content": null, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": call["id"], "content": "sunny, 21C"},
        ]});
        let v = json_of(s.openai(&follow, &[]).await).await;
        assert_eq!(
            v.pointer("/choices/0/finish_reason"),
            Some(&json!("stop")),
            "{model}: {v}"
        );

        // The Anthropic door, same upstream.
        let body = json!({"model": model, "max_tokens": 100, "messages": [{"role": "user", "content": "weather?"}],
            "tools": [{"name": "get_weather", "input_schema": tools[0]["function"]["parameters"]}]});
        let v = json_of(s.anthropic(&body, &[]).await).await;
        assert_eq!(v["stop_reason"], "tool_use", "{model}: {v}");
        let block = v["content"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["type"] == "tool_use")
            .unwrap()
            .clone();
        assert!(
            block.pointer("/input/city").is_some_and(Value::is_string),
            "{model}: {block}"
        );
    }
}

#[tokio::test]
async fn models_and_embeddings() {
    let s = setup().await;
    let v = json_of(
        crate::client()
            .get(s.url("/v1/models"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let ids: Vec<&str> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["keyless", "sim", "via-anthropic", "via-openai"]);
    let v = json_of(
        crate::client()
            .get(s.url("/v1/models"))
            .header("anthropic-version", "2023-06-01")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(v["data"][0]["type"], "model");
    assert_eq!(v["has_more"], false);

    for model in ["sim", "via-openai"] {
        let v = json_of(
            s.post(
                "/v1/embeddings",
                &json!({"model": model, "input": ["a", "b"]}),
                &[],
            )
            .await,
        )
        .await;
        let data = v["data"].as_array().unwrap();
        assert_eq!(data.len(), 2, "{model}");
        assert!(data[0]["embedding"].as_array().unwrap().len() > 1);
        let v = json_of(
            s.post(
                "/v1/embeddings",
                &json!({"model": model, "input": "a", "encoding_format": "base64"}),
                &[],
            )
            .await,
        )
        .await;
        assert!(
            v.pointer("/data/0/embedding").unwrap().is_string(),
            "{model}: base64 asked"
        );
    }
    let resp = s
        .post(
            "/v1/embeddings",
            &json!({"model": "via-anthropic", "input": "a"}),
            &[],
        )
        .await;
    assert_eq!(resp.status(), 400, "Anthropic has no embeddings API");
}
