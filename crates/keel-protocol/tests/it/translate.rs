//! Requests and responses translated between the protocols, snapshotted as
//! pretty JSON. Each snapshot was checked against the OpenAI and Anthropic
//! API references (what the official Python SDKs send and parse).

use insta::assert_snapshot;
use keel_protocol::{anthropic, openai};
use serde_json::{Value, json};

use crate::util::{json, pretty};

fn openai_to_anthropic(body: &Value) -> String {
    let req = openai::decode_request(body.to_string().as_bytes()).unwrap();
    pretty(&anthropic::encode_request(&req))
}

fn anthropic_to_openai(body: &Value) -> String {
    let req = anthropic::decode_request(body.to_string().as_bytes()).unwrap();
    pretty(&openai::encode_request(&req))
}

pub fn weather_tool_openai() -> Value {
    json!({
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather in a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["c", "f"]}},
                "required": ["city"],
            },
        },
    })
}

pub fn weather_tool_anthropic() -> Value {
    json!({
        "name": "get_weather",
        "description": "Current weather in a city",
        "input_schema": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["c", "f"]}},
            "required": ["city"],
        },
    })
}

/// OpenAI multi-turn with parallel tool calls and their results.
pub fn openai_tools_conversation() -> Value {
    json!({
        "model": "gpt-4o",
        "messages": [
            {"role": "system", "content": "You are a weather bot."},
            {"role": "user", "content": "Weather in Paris and Tokyo?"},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_Qx1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
                {"id": "call_Qx2", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Tokyo\",\"unit\":\"c\"}"}},
            ]},
            {"role": "tool", "tool_call_id": "call_Qx1", "content": "18°C, sunny"},
            {"role": "tool", "tool_call_id": "call_Qx2", "content": [{"type": "text", "text": "22°C, rain"}]},
            {"role": "assistant", "content": "Paris: 18°C and sunny. Tokyo: 22°C and rainy."},
            {"role": "user", "content": "Thanks! And Berlin?"},
        ],
        "tools": [weather_tool_openai()],
        "tool_choice": "auto",
        "max_tokens": 512,
    })
}

/// Anthropic multi-turn: text + tool_use, then tool_result + text in one user turn.
pub fn anthropic_tools_conversation() -> Value {
    json!({
        "model": "claude-sonnet-4-5",
        "max_tokens": 1024,
        "system": [{"type": "text", "text": "You are a weather bot.", "cache_control": {"type": "ephemeral"}}],
        "messages": [
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": [
                {"type": "text", "text": "Let me check."},
                {"type": "tool_use", "id": "toolu_01A", "name": "get_weather", "input": {"city": "Paris"}},
                {"type": "tool_use", "id": "toolu_01B", "name": "get_weather", "input": {"city": "Paris", "unit": "f"}},
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_01A", "content": "18°C"},
                {"type": "tool_result", "tool_use_id": "toolu_01B", "content": [{"type": "text", "text": "64°F"}], "is_error": false},
                {"type": "text", "text": "Which is warmer?"},
            ]},
        ],
        "tools": [weather_tool_anthropic()],
        "tool_choice": {"type": "auto"},
        "metadata": {"user_id": "user-42"},
        "stop_sequences": ["\n\nHuman:"],
        "temperature": 0.2,
        "top_k": 40,
    })
}

#[test]
fn openai_plain_text_to_anthropic() {
    let body = json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hello!"}]});
    assert_snapshot!(openai_to_anthropic(&body));
}

#[test]
fn anthropic_plain_text_to_openai() {
    let body = json!({
        "model": "claude-haiku-4-5",
        "max_tokens": 256,
        "messages": [{"role": "user", "content": "Hello!"}],
    });
    assert_snapshot!(anthropic_to_openai(&body));
}

#[test]
fn openai_system_prompts_and_parameters_to_anthropic() {
    let body = json!({
        "model": "gpt-4o",
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "developer", "content": [{"type": "text", "text": "Answer in French."}]},
            {"role": "user", "content": "What is the capital of Italy?"},
        ],
        "temperature": 1.5,
        "top_p": 0.9,
        "max_completion_tokens": 300,
        "stop": "END",
        "stream": true,
        "stream_options": {"include_usage": true},
        "user": "user-7",
        "seed": 3,
    });
    assert_snapshot!(openai_to_anthropic(&body));
}

#[test]
fn anthropic_system_prompt_to_openai() {
    let body = json!({
        "model": "claude-sonnet-4-5",
        "max_tokens": 100,
        "system": "You are terse.",
        "messages": [
            {"role": "user", "content": "Capital of Italy?"},
            {"role": "assistant", "content": "Rome."},
            {"role": "user", "content": [{"type": "text", "text": "And Spain?"}]},
        ],
        "stream": true,
    });
    assert_snapshot!(anthropic_to_openai(&body));
}

#[test]
fn openai_tool_conversation_to_anthropic() {
    assert_snapshot!(openai_to_anthropic(&openai_tools_conversation()));
}

#[test]
fn anthropic_tool_conversation_to_openai() {
    assert_snapshot!(anthropic_to_openai(&anthropic_tools_conversation()));
}

#[test]
fn openai_images_to_anthropic() {
    let body = json!({
        "model": "gpt-4o",
        "messages": [{"role": "user", "content": [
            {"type": "text", "text": "Compare these two images."},
            {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg", "detail": "high"}},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
        ]}],
    });
    assert_snapshot!(openai_to_anthropic(&body));
}

#[test]
fn anthropic_images_to_openai() {
    let body = json!({
        "model": "claude-sonnet-4-5",
        "max_tokens": 100,
        "messages": [{"role": "user", "content": [
            {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "/9j/4AAQSkZJRg=="}},
            {"type": "image", "source": {"type": "url", "url": "https://example.com/dog.png"}},
            {"type": "text", "text": "What animals are these?"},
        ]}],
    });
    assert_snapshot!(anthropic_to_openai(&body));
}

#[test]
fn tool_choice_variants() {
    let mut out = serde_json::Map::new();
    for choice in [
        json!("auto"),
        json!("none"),
        json!("required"),
        json!({"type": "function", "function": {"name": "get_weather"}}),
    ] {
        let body = json!({
            "model": "gpt-4o",
            "messages": [{"role": "user", "content": "hi"}],
            "tools": [weather_tool_openai()],
            "tool_choice": choice,
        });
        let req = openai::decode_request(body.to_string().as_bytes()).unwrap();
        let wire = json(&anthropic::encode_request(&req));
        out.insert(
            format!("openai {choice} -> anthropic"),
            wire["tool_choice"].clone(),
        );
    }
    for choice in [
        json!({"type": "auto"}),
        json!({"type": "any"}),
        json!({"type": "none"}),
        json!({"type": "tool", "name": "get_weather"}),
    ] {
        let body = json!({
            "model": "claude-sonnet-4-5",
            "max_tokens": 10,
            "messages": [{"role": "user", "content": "hi"}],
            "tools": [weather_tool_anthropic()],
            "tool_choice": choice,
        });
        let req = anthropic::decode_request(body.to_string().as_bytes()).unwrap();
        let wire = json(&openai::encode_request(&req));
        out.insert(
            format!("anthropic {choice} -> openai"),
            wire["tool_choice"].clone(),
        );
    }
    assert_snapshot!(serde_json::to_string_pretty(&out).unwrap());
}

#[test]
fn response_format_to_anthropic_system_prompt() {
    let mut out = serde_json::Map::new();
    for format in [
        json!({"type": "text"}),
        json!({"type": "json_object"}),
        json!({"type": "json_schema", "json_schema": {
            "name": "city", "strict": true,
            "schema": {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"], "additionalProperties": false},
        }}),
    ] {
        let body = json!({
            "model": "gpt-4o",
            "messages": [{"role": "system", "content": "Be helpful."}, {"role": "user", "content": "A city?"}],
            "response_format": format,
        });
        let req = openai::decode_request(body.to_string().as_bytes()).unwrap();
        let wire = json(&anthropic::encode_request(&req));
        out.insert(
            format["type"].as_str().unwrap().to_owned(),
            json!({"system": wire["system"], "tools": wire.get("tools"), "tool_choice": wire.get("tool_choice")}),
        );
    }
    assert_snapshot!(serde_json::to_string_pretty(&out).unwrap());
}

#[test]
fn response_format_passes_through_openai_to_openai() {
    let body = json!({
        "model": "gpt-4o",
        "messages": [{"role": "user", "content": "A city?"}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "city", "strict": true, "schema": {"type": "object"}}},
        "max_completion_tokens": 50,
        "parallel_tool_calls": false,
        "logprobs": true,
    });
    let req = openai::decode_request(body.to_string().as_bytes()).unwrap();
    assert_snapshot!(pretty(&openai::encode_request(&req)));
}

// ---- non-stream responses ----

fn openai_response_to_anthropic(body: &Value) -> String {
    let resp = openai::decode_response(body.to_string().as_bytes()).unwrap();
    pretty(&anthropic::encode_response(&resp))
}

fn anthropic_response_to_openai(body: &Value) -> String {
    let resp = anthropic::decode_response(body.to_string().as_bytes()).unwrap();
    pretty(&openai::encode_response(&resp))
}

pub fn openai_text_response() -> Value {
    json!({
        "id": "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT",
        "object": "chat.completion",
        "created": 1741569952,
        "model": "gpt-4o-2024-08-06",
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": "Hello! How can I assist you today?", "refusal": null, "annotations": []},
            "logprobs": null,
            "finish_reason": "stop",
        }],
        "usage": {
            "prompt_tokens": 19, "completion_tokens": 10, "total_tokens": 29,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0, "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0},
        },
        "service_tier": "default",
        "system_fingerprint": "fp_fc9f1d7035",
    })
}

pub fn openai_tool_response() -> Value {
    json!({
        "id": "chatcmpl-abc123",
        "object": "chat.completion",
        "created": 1699896916,
        "model": "gpt-4o-mini",
        "choices": [{
            "index": 0,
            "message": {
                "role": "assistant",
                "content": null,
                "tool_calls": [
                    {"id": "call_abc123", "type": "function", "function": {"name": "get_weather", "arguments": "{\n\"city\": \"Boston\"\n}"}},
                    {"id": "call_def456", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\",\"unit\":\"c\"}"}},
                ],
            },
            "logprobs": null,
            "finish_reason": "tool_calls",
        }],
        "usage": {"prompt_tokens": 82, "completion_tokens": 17, "total_tokens": 99},
    })
}

pub fn anthropic_text_response() -> Value {
    json!({
        "id": "msg_013Zva2CMHLNnXjNJJKqJ2EF",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5-20250929",
        "content": [{"type": "text", "text": "Hi! My name is Claude."}],
        "stop_reason": "end_turn",
        "stop_sequence": null,
        "usage": {"input_tokens": 2095, "output_tokens": 503, "cache_creation_input_tokens": 100, "cache_read_input_tokens": 5},
    })
}

pub fn anthropic_tool_response() -> Value {
    json!({
        "id": "msg_01Aq9w938a90dw8q",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5-20250929",
        "content": [
            {"type": "thinking", "thinking": "The user wants weather.", "signature": "EqQB"},
            {"type": "text", "text": "I'll check the weather."},
            {"type": "tool_use", "id": "toolu_01A09q90qw90lq917835lq9", "name": "get_weather", "input": {"city": "San Francisco, CA", "unit": "c"}},
        ],
        "stop_reason": "tool_use",
        "stop_sequence": null,
        "usage": {"input_tokens": 472, "output_tokens": 89},
    })
}

#[test]
fn openai_text_response_to_anthropic() {
    assert_snapshot!(openai_response_to_anthropic(&openai_text_response()));
}

#[test]
fn openai_tool_response_to_anthropic() {
    assert_snapshot!(openai_response_to_anthropic(&openai_tool_response()));
}

#[test]
fn openai_refusal_response_to_anthropic() {
    let body = json!({
        "id": "chatcmpl-r", "object": "chat.completion", "created": 1, "model": "gpt-4o",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": null, "refusal": "I can't help with that."}, "logprobs": null, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 6, "total_tokens": 11},
    });
    assert_snapshot!(openai_response_to_anthropic(&body));
}

#[test]
fn anthropic_text_response_to_openai() {
    assert_snapshot!(anthropic_response_to_openai(&anthropic_text_response()));
}

#[test]
fn anthropic_tool_response_to_openai() {
    assert_snapshot!(anthropic_response_to_openai(&anthropic_tool_response()));
}

#[test]
fn error_bodies() {
    let err = keel_protocol::WireError {
        status: 429,
        message: "rate limit exceeded for key `team-a`".into(),
        param: None,
        code: Some("rate_limit_exceeded".into()),
    };
    let bad = keel_protocol::WireError {
        status: 400,
        message: "messages[0].content: invalid type".into(),
        param: Some("messages[0].content".into()),
        code: None,
    };
    let out = json!({
        "openai 429": json(&openai::encode_error(&err)),
        "openai 400": json(&openai::encode_error(&bad)),
        "anthropic 429": json(&anthropic::encode_error(&err)),
        "anthropic 529": json(&anthropic::encode_error(&keel_protocol::WireError { status: 529, ..err.clone() })),
    });
    assert_snapshot!(serde_json::to_string_pretty(&out).unwrap());
}

/// Cached prompt tokens survive translation both ways: OpenAI counts them
/// inside `prompt_tokens`, Anthropic beside `input_tokens`.
#[test]
fn cached_prompt_tokens_translate_both_ways() {
    let mut body = openai_text_response();
    body["usage"] = json!({"prompt_tokens": 100, "completion_tokens": 7, "total_tokens": 107,
        "prompt_tokens_details": {"cached_tokens": 30}});
    let resp = openai::decode_response(body.to_string().as_bytes()).unwrap();
    assert_eq!(
        (resp.usage.input_tokens, resp.usage.cached_input_tokens),
        (100, 30)
    );
    let anthropic: Value = serde_json::from_slice(&anthropic::encode_response(&resp)).unwrap();
    assert_eq!(anthropic["usage"]["input_tokens"], 70);
    assert_eq!(anthropic["usage"]["cache_read_input_tokens"], 30);
    let back = anthropic::decode_response(&anthropic::encode_response(&resp)).unwrap();
    assert_eq!(back.usage, resp.usage);
}
