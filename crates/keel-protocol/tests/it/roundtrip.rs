//! decode → encode in the other protocol → decode gives back the same
//! internal model, except for the lossy points the encoders document.

use keel_protocol::chat::{
    ChatRequest, ChatResponse, FinishReason, Message, Part, ResponseFormat, Role, ToolChoice,
};
use keel_protocol::{anthropic, openai};
use serde_json::json;

use crate::translate::{
    anthropic_text_response, anthropic_tool_response, anthropic_tools_conversation,
    openai_text_response, openai_tool_response, openai_tools_conversation,
};
use crate::util::args_json;

fn via_anthropic(req: &ChatRequest) -> ChatRequest {
    anthropic::decode_request(&anthropic::encode_request(req)).unwrap()
}

fn via_openai(req: &ChatRequest) -> ChatRequest {
    openai::decode_request(&openai::encode_request(req)).unwrap()
}

/// Messages with tool-call arguments compared as JSON (Anthropic carries
/// them as objects, so their spelling may change).
fn normalized(messages: &[Message]) -> Vec<Message> {
    messages
        .iter()
        .map(|m| {
            let mut m = m.clone();
            for c in &mut m.tool_calls {
                let v: serde_json::Value = serde_json::from_str(&c.arguments).unwrap();
                c.arguments = v.to_string();
            }
            // An empty text part next to tool calls is dropped by the Anthropic encoder.
            m.content
                .retain(|p| !matches!(p, Part::Text(t) if t.is_empty()));
            m
        })
        .collect()
}

#[test]
fn openai_request_through_anthropic_keeps_messages_and_tools() {
    let original =
        openai::decode_request(openai_tools_conversation().to_string().as_bytes()).unwrap();
    let back = via_anthropic(&original);
    assert_eq!(normalized(&back.messages), normalized(&original.messages));
    assert_eq!(back.tools, original.tools);
    assert_eq!(back.system, original.system);
    assert_eq!(back.tool_choice, original.tool_choice);
    assert_eq!(back.max_tokens, Some(512));
    assert_eq!(back.model, original.model);
    // The tool results of one assistant turn share one user turn upstream.
    let wire: serde_json::Value =
        serde_json::from_slice(&anthropic::encode_request(&original)).unwrap();
    let roles: Vec<&str> = wire["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["user", "assistant", "user", "assistant", "user"]);
}

#[test]
fn anthropic_request_through_openai_keeps_messages_and_tools() {
    let original =
        anthropic::decode_request(anthropic_tools_conversation().to_string().as_bytes()).unwrap();
    let back = via_openai(&original);
    // Lossy: `is_error` has no OpenAI spelling (false here, so equal).
    assert_eq!(back.messages, original.messages);
    assert_eq!(back.tools, original.tools);
    assert_eq!(back.system, original.system);
    assert_eq!(back.tool_choice, original.tool_choice);
    assert_eq!(back.stop, original.stop);
    assert_eq!(back.user.as_deref(), Some("user-42"));
    assert_eq!(back.temperature, Some(0.2));
    assert_eq!(back.max_tokens, Some(1024));
    // `top_k` is Anthropic-only: kept in `extra`, not sent to OpenAI.
    assert_eq!(original.extra.get("top_k"), Some(&json!(40)));
    assert!(back.extra.is_empty(), "{:?}", back.extra);
}

#[test]
fn anthropic_tool_result_split_and_regrouped() {
    let original =
        anthropic::decode_request(anthropic_tools_conversation().to_string().as_bytes()).unwrap();
    let roles: Vec<Role> = original.messages.iter().map(|m| m.role).collect();
    assert_eq!(
        roles,
        [
            Role::User,
            Role::Assistant,
            Role::Tool,
            Role::Tool,
            Role::User
        ]
    );
    assert_eq!(
        original.messages[2].tool_call_id.as_deref(),
        Some("toolu_01A")
    );
    assert_eq!(original.messages[3].joined_text(), "64°F");
    // Anthropic → Anthropic keeps the turn structure.
    let wire: serde_json::Value =
        serde_json::from_slice(&anthropic::encode_request(&original)).unwrap();
    assert_eq!(wire["messages"].as_array().unwrap().len(), 3);
}

#[test]
fn tool_choice_round_trips_through_both_protocols() {
    for choice in [
        ToolChoice::Auto,
        ToolChoice::None,
        ToolChoice::Required,
        ToolChoice::Tool("get_weather".into()),
    ] {
        let mut req =
            openai::decode_request(openai_tools_conversation().to_string().as_bytes()).unwrap();
        req.tool_choice = Some(choice.clone());
        assert_eq!(via_anthropic(&req).tool_choice, Some(choice.clone()));
        assert_eq!(via_openai(&req).tool_choice, Some(choice));
    }
}

#[test]
fn images_round_trip() {
    let body = json!({
        "model": "gpt-4o",
        "messages": [{"role": "user", "content": [
            {"type": "text", "text": "Compare"},
            {"type": "image_url", "image_url": {"url": "https://example.com/a.jpg"}},
            {"type": "image_url", "image_url": {"url": "data:image/webp;base64,UklGRg=="}},
        ]}],
    });
    let original = openai::decode_request(body.to_string().as_bytes()).unwrap();
    assert_eq!(via_anthropic(&original).messages, original.messages);
    assert_eq!(via_openai(&original).messages, original.messages);
    assert_eq!(
        via_openai(&via_anthropic(&original)).messages,
        original.messages
    );
}

#[test]
fn documented_lossy_points_openai_to_anthropic() {
    let body = json!({
        "model": "gpt-4o",
        "messages": [
            {"role": "system", "content": "One."},
            {"role": "system", "content": "Two."},
            {"role": "user", "content": "hi"},
        ],
        "temperature": 1.7,
        "response_format": {"type": "json_object"},
        "stream": true,
    });
    let original = openai::decode_request(body.to_string().as_bytes()).unwrap();
    assert!(!original.include_usage);
    let back = via_anthropic(&original);
    // Several system prompts become one; JSON mode becomes an instruction.
    assert_eq!(
        back.system,
        vec!["One.\n\nTwo.\n\nRespond with a single JSON object and nothing else.".to_owned()]
    );
    assert_eq!(back.response_format, None);
    // Temperature is clamped to Anthropic's range; max_tokens gets a default.
    assert_eq!(back.temperature, Some(1.0));
    assert_eq!(back.max_tokens, Some(anthropic::DEFAULT_MAX_TOKENS));
    assert!(back.stream);
}

/// A cap keel sets (the client sent `max_completion_tokens: null`) goes out
/// in the client's spelling, never as a null that lifts every limit.
#[test]
fn a_cap_set_by_keel_replaces_a_null_max_completion_tokens() {
    let body = json!({"model": "o3-mini", "messages": [{"role": "user", "content": "hi"}],
        "max_completion_tokens": null});
    let mut req = openai::decode_request(body.to_string().as_bytes()).unwrap();
    assert_eq!(req.max_tokens, None);
    req.max_tokens = Some(64);
    let wire: serde_json::Value = serde_json::from_slice(&openai::encode_request(&req)).unwrap();
    assert_eq!(wire["max_completion_tokens"], json!(64));
    assert!(wire.get("max_tokens").is_none(), "{wire}");
}

#[test]
fn openai_to_openai_keeps_unknown_parameters_and_max_completion_tokens() {
    let body = json!({
        "model": "o3-mini",
        "messages": [{"role": "user", "content": "hi"}],
        "max_completion_tokens": 99,
        "reasoning_effort": "low",
        "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}, "strict": true}},
    });
    let original = openai::decode_request(body.to_string().as_bytes()).unwrap();
    assert_eq!(original.max_tokens, Some(99));
    let wire: serde_json::Value =
        serde_json::from_slice(&openai::encode_request(&original)).unwrap();
    assert_eq!(wire["max_completion_tokens"], json!(99));
    assert!(wire.get("max_tokens").is_none(), "{wire}");
    assert_eq!(wire["reasoning_effort"], json!("low"));
    let back = via_openai(&original);
    assert_eq!(
        back.response_format,
        Some(ResponseFormat::JsonSchema {
            name: "x".into(),
            schema: json!({"type": "object"}),
            strict: Some(true),
        })
    );
    assert_eq!(back.messages, original.messages);
}

#[test]
fn openai_stream_request_always_asks_upstream_for_usage() {
    let body = json!({"model": "claude", "max_tokens": 5, "stream": true, "messages": [{"role": "user", "content": "hi"}]});
    let req = anthropic::decode_request(body.to_string().as_bytes()).unwrap();
    let wire: serde_json::Value = serde_json::from_slice(&openai::encode_request(&req)).unwrap();
    assert_eq!(wire["stream_options"], json!({"include_usage": true}));
}

fn same_answer(a: &ChatResponse, b: &ChatResponse) {
    assert_eq!(a.id, b.id);
    assert_eq!(a.model, b.model);
    assert_eq!(a.text, b.text);
    assert_eq!(args_json(&a.tool_calls), args_json(&b.tool_calls));
    assert_eq!(a.finish_reason, b.finish_reason);
    assert_eq!(a.usage, b.usage);
}

#[test]
fn responses_round_trip_through_the_other_protocol() {
    for body in [openai_text_response(), openai_tool_response()] {
        let original = openai::decode_response(body.to_string().as_bytes()).unwrap();
        let back = anthropic::decode_response(&anthropic::encode_response(&original)).unwrap();
        same_answer(&original, &back);
        assert_eq!(back.created, 0, "Anthropic messages carry no timestamp");
        assert_eq!(
            openai::decode_response(&openai::encode_response(&original)).unwrap(),
            original
        );
    }
    for body in [anthropic_text_response(), anthropic_tool_response()] {
        let original = anthropic::decode_response(body.to_string().as_bytes()).unwrap();
        let back = openai::decode_response(&openai::encode_response(&original)).unwrap();
        same_answer(&original, &back);
        assert_eq!(
            anthropic::decode_response(&anthropic::encode_response(&original)).unwrap(),
            original
        );
    }
}

#[test]
fn anthropic_usage_counts_cached_input() {
    let resp =
        anthropic::decode_response(anthropic_text_response().to_string().as_bytes()).unwrap();
    assert_eq!(resp.usage.input_tokens, 2095 + 100 + 5);
    assert_eq!(resp.usage.output_tokens, 503);
}

#[test]
fn response_finish_reasons_map_both_ways() {
    let table = [
        (FinishReason::Stop, "stop", "end_turn"),
        (FinishReason::Length, "length", "max_tokens"),
        (FinishReason::ToolCalls, "tool_calls", "tool_use"),
        (FinishReason::ContentFilter, "content_filter", "refusal"),
    ];
    for (reason, openai_wire, anthropic_wire) in table {
        let mut o = openai_text_response();
        o["choices"][0]["finish_reason"] = json!(openai_wire);
        let decoded = openai::decode_response(o.to_string().as_bytes()).unwrap();
        assert_eq!(decoded.finish_reason, reason);
        let a: serde_json::Value =
            serde_json::from_slice(&anthropic::encode_response(&decoded)).unwrap();
        assert_eq!(a["stop_reason"], json!(anthropic_wire));

        let mut a = anthropic_text_response();
        a["stop_reason"] = json!(anthropic_wire);
        let decoded = anthropic::decode_response(a.to_string().as_bytes()).unwrap();
        assert_eq!(decoded.finish_reason, reason);
        let o: serde_json::Value =
            serde_json::from_slice(&openai::encode_response(&decoded)).unwrap();
        assert_eq!(o["choices"][0]["finish_reason"], json!(openai_wire));
    }
    // Anthropic-only reasons.
    for (wire, reason) in [
        ("stop_sequence", FinishReason::Stop),
        ("pause_turn", FinishReason::Stop),
        ("model_context_window_exceeded", FinishReason::Length),
    ] {
        let mut a = anthropic_text_response();
        a["stop_reason"] = json!(wire);
        assert_eq!(
            anthropic::decode_response(a.to_string().as_bytes())
                .unwrap()
                .finish_reason,
            reason
        );
    }
}
