//! Anthropic messages responses: upstream wire → internal, internal → the
//! client's wire.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::request::tool_input;
use crate::DecodeError;
use crate::chat::{ChatResponse, FinishReason, ToolCall, Usage};

#[derive(Deserialize, Default)]
pub(super) struct WireUsage {
    #[serde(default)]
    pub input_tokens: u32,
    #[serde(default)]
    pub output_tokens: u32,
    #[serde(default)]
    pub cache_creation_input_tokens: Option<u32>,
    #[serde(default)]
    pub cache_read_input_tokens: Option<u32>,
}

impl WireUsage {
    /// All input tokens, cached or not: what the request consumed.
    pub fn total_input(&self) -> u32 {
        self.input_tokens
            .saturating_add(self.cache_creation_input_tokens.unwrap_or(0))
            .saturating_add(self.cache_read_input_tokens.unwrap_or(0))
    }
}

#[derive(Deserialize)]
struct WireResponse {
    #[serde(default)]
    id: String,
    #[serde(default)]
    model: String,
    content: Vec<Value>,
    #[serde(default)]
    stop_reason: Option<String>,
    #[serde(default)]
    usage: WireUsage,
}

pub(super) fn finish_from_wire(reason: &str) -> FinishReason {
    match reason {
        "max_tokens" | "model_context_window_exceeded" => FinishReason::Length,
        "tool_use" => FinishReason::ToolCalls,
        "refusal" => FinishReason::ContentFilter,
        _ => FinishReason::Stop,
    }
}

pub(super) fn finish_to_wire(reason: FinishReason) -> &'static str {
    match reason {
        FinishReason::Stop => "end_turn",
        FinishReason::Length => "max_tokens",
        FinishReason::ToolCalls => "tool_use",
        FinishReason::ContentFilter => "refusal",
    }
}

pub fn decode_response(body: &[u8]) -> Result<ChatResponse, DecodeError> {
    let wire: WireResponse = DecodeError::parse(body)?;
    let mut text = String::new();
    let mut tool_calls = Vec::new();
    for block in &wire.content {
        match block.get("type").and_then(Value::as_str) {
            Some("text") => text.push_str(block.get("text").and_then(Value::as_str).unwrap_or("")),
            Some("tool_use") => tool_calls.push(ToolCall {
                id: str_field(block, "id"),
                name: str_field(block, "name"),
                arguments: block
                    .get("input")
                    .map_or_else(|| "{}".to_owned(), Value::to_string),
            }),
            _ => {} // thinking and server-tool blocks have no OpenAI equivalent
        }
    }
    Ok(ChatResponse {
        id: wire.id,
        model: wire.model,
        created: 0,
        text,
        tool_calls,
        finish_reason: wire
            .stop_reason
            .as_deref()
            .map_or(FinishReason::Stop, finish_from_wire),
        usage: Usage {
            input_tokens: wire.usage.total_input(),
            output_tokens: wire.usage.output_tokens,
            cached_input_tokens: wire.usage.cache_read_input_tokens.unwrap_or(0),
        },
    })
}

fn str_field(v: &Value, key: &str) -> String {
    v.get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

/// Anthropic counts cache reads apart from `input_tokens`.
#[derive(Serialize)]
pub(super) struct OutUsage {
    pub input_tokens: u32,
    pub output_tokens: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_read_input_tokens: Option<u32>,
}

impl From<Usage> for OutUsage {
    fn from(u: Usage) -> Self {
        let cached = u.cached_input_tokens.min(u.input_tokens);
        OutUsage {
            input_tokens: u.input_tokens - cached,
            output_tokens: u.output_tokens,
            cache_read_input_tokens: (cached > 0).then_some(cached),
        }
    }
}

#[derive(Serialize)]
struct OutMessage<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    role: &'static str,
    model: &'a str,
    content: Vec<Value>,
    stop_reason: &'static str,
    stop_sequence: Option<()>,
    usage: OutUsage,
}

pub fn encode_response(resp: &ChatResponse) -> Vec<u8> {
    let mut content = Vec::new();
    if !resp.text.is_empty() || resp.tool_calls.is_empty() {
        content.push(serde_json::json!({"type": "text", "text": resp.text}));
    }
    content.extend(resp.tool_calls.iter().map(|c| {
        serde_json::json!({"type": "tool_use", "id": c.id, "name": c.name, "input": tool_input(&c.arguments)})
    }));
    let out = OutMessage {
        id: &resp.id,
        kind: "message",
        role: "assistant",
        model: &resp.model,
        content,
        stop_reason: finish_to_wire(resp.finish_reason),
        stop_sequence: None,
        usage: resp.usage.into(),
    };
    serde_json::to_vec(&out).unwrap_or_default()
}
