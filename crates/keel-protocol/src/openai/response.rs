//! OpenAI chat-completions responses: upstream wire → internal, internal →
//! the client's wire.

use serde::{Deserialize, Serialize};

use crate::DecodeError;
use crate::chat::{ChatResponse, FinishReason, ToolCall, Usage};

#[derive(Serialize, Deserialize)]
pub(super) struct WireUsage {
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    #[serde(default)]
    pub total_tokens: u32,
    /// `cached_tokens`: the part of `prompt_tokens` read from the prompt cache.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_tokens_details: Option<PromptDetails>,
}

#[derive(Serialize, Deserialize)]
pub(super) struct PromptDetails {
    #[serde(default)]
    pub cached_tokens: u32,
}

impl From<Usage> for WireUsage {
    fn from(u: Usage) -> Self {
        WireUsage {
            prompt_tokens: u.input_tokens,
            completion_tokens: u.output_tokens,
            total_tokens: u.input_tokens.saturating_add(u.output_tokens),
            prompt_tokens_details: (u.cached_input_tokens > 0).then_some(PromptDetails {
                cached_tokens: u.cached_input_tokens,
            }),
        }
    }
}

impl From<WireUsage> for Usage {
    fn from(u: WireUsage) -> Self {
        Usage {
            input_tokens: u.prompt_tokens,
            output_tokens: u.completion_tokens,
            cached_input_tokens: u
                .prompt_tokens_details
                .map_or(0, |d| d.cached_tokens.min(u.prompt_tokens)),
        }
    }
}

#[derive(Deserialize)]
struct WireResponse {
    #[serde(default)]
    id: String,
    #[serde(default)]
    created: u64,
    #[serde(default)]
    model: String,
    choices: Vec<WireChoice>,
    #[serde(default)]
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
struct WireChoice {
    message: WireMessage,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct WireMessage {
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    refusal: Option<String>,
    #[serde(default)]
    tool_calls: Option<Vec<WireToolCall>>,
}

#[derive(Serialize, Deserialize)]
pub(super) struct WireToolCall {
    pub id: String,
    #[serde(rename = "type", default = "function_type")]
    pub kind: String,
    pub function: WireFunctionCall,
}

impl From<WireToolCall> for ToolCall {
    fn from(c: WireToolCall) -> Self {
        ToolCall {
            id: c.id,
            name: c.function.name,
            arguments: c.function.arguments,
        }
    }
}

fn function_type() -> String {
    "function".to_owned()
}

#[derive(Serialize, Deserialize)]
pub(super) struct WireFunctionCall {
    pub name: String,
    #[serde(default)]
    pub arguments: String,
}

pub(super) fn finish_from_wire(reason: &str) -> FinishReason {
    match reason {
        "length" => FinishReason::Length,
        "tool_calls" | "function_call" => FinishReason::ToolCalls,
        "content_filter" => FinishReason::ContentFilter,
        _ => FinishReason::Stop,
    }
}

pub(super) fn finish_to_wire(reason: FinishReason) -> &'static str {
    match reason {
        FinishReason::Stop => "stop",
        FinishReason::Length => "length",
        FinishReason::ToolCalls => "tool_calls",
        FinishReason::ContentFilter => "content_filter",
    }
}

/// Decodes an upstream's chat completion. Missing usage decodes as zero; the
/// caller estimates it (a request is never recorded at zero tokens).
pub fn decode_response(body: &[u8]) -> Result<ChatResponse, DecodeError> {
    let wire: WireResponse = DecodeError::parse(body)?;
    let Some(choice) = wire.choices.into_iter().next() else {
        return Err(DecodeError::at("choices", "choices: empty"));
    };
    let refused = choice.message.content.is_none() && choice.message.refusal.is_some();
    let text = choice
        .message
        .content
        .or(choice.message.refusal)
        .unwrap_or_default();
    let finish_reason = match choice.finish_reason.as_deref() {
        _ if refused => FinishReason::ContentFilter,
        Some(r) => finish_from_wire(r),
        None => FinishReason::Stop,
    };
    Ok(ChatResponse {
        id: wire.id,
        model: wire.model,
        created: wire.created,
        text,
        tool_calls: choice
            .message
            .tool_calls
            .unwrap_or_default()
            .into_iter()
            .map(ToolCall::from)
            .collect(),
        finish_reason,
        usage: wire.usage.map(Usage::from).unwrap_or_default(),
    })
}

#[derive(Serialize)]
struct OutResponse<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: [OutChoice<'a>; 1],
    usage: WireUsage,
}

#[derive(Serialize)]
struct OutChoice<'a> {
    index: u32,
    message: OutMessage<'a>,
    finish_reason: &'static str,
    logprobs: Option<()>,
}

#[derive(Serialize)]
struct OutMessage<'a> {
    role: &'static str,
    content: Option<&'a str>,
    refusal: Option<()>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tool_calls: Vec<WireToolCall>,
}

/// Encodes a chat completion for an OpenAI client.
pub fn encode_response(resp: &ChatResponse) -> Vec<u8> {
    let content = if resp.text.is_empty() && !resp.tool_calls.is_empty() {
        None
    } else {
        Some(resp.text.as_str())
    };
    let out = OutResponse {
        id: &resp.id,
        object: "chat.completion",
        created: resp.created,
        model: &resp.model,
        choices: [OutChoice {
            index: 0,
            message: OutMessage {
                role: "assistant",
                content,
                refusal: None,
                tool_calls: resp.tool_calls.iter().map(wire_call).collect(),
            },
            finish_reason: finish_to_wire(resp.finish_reason),
            logprobs: None,
        }],
        usage: resp.usage.into(),
    };
    serde_json::to_vec(&out).unwrap_or_default()
}

fn wire_call(c: &ToolCall) -> WireToolCall {
    WireToolCall {
        id: c.id.clone(),
        kind: function_type(),
        function: WireFunctionCall {
            name: c.name.clone(),
            arguments: c.arguments.clone(),
        },
    }
}
