//! The answer to a request: a script rule's, or the default one derived from
//! the request itself (tool call, schema-shaped JSON, or text), then cut to
//! `max_tokens` and stop sequences, optionally made to break its schema, and
//! counted.

use keel_protocol::chat::{
    ChatRequest, FinishReason, ResponseFormat, Role, ToolCall, ToolChoice, Usage,
};
use keel_protocol::tokens::estimate;
use rand::Rng;
use rand::rngs::SmallRng;
use serde_json::{Value, json};

use crate::script::{Answer, Rule};
use crate::{schema, seed, words};

/// Everything about a reply except its id and timestamp.
pub(crate) struct Reply {
    pub(crate) text: String,
    pub(crate) tool_calls: Vec<ToolCall>,
    pub(crate) finish_reason: FinishReason,
    pub(crate) usage: Usage,
}

/// The reply to `req`. `content_seed` must depend only on the request's
/// content and the configured seed, so identical requests get identical replies.
pub(crate) fn reply(
    req: &ChatRequest,
    rule: Option<&Rule>,
    content_seed: u64,
    break_schema: bool,
) -> Reply {
    let mut rng = seed::rng(content_seed, 0);
    let (mut text, mut tool_calls) = match rule.map(|r| &r.answer) {
        Some(Answer::Reply(text)) => (text.clone(), Vec::new()),
        Some(Answer::Json(value)) => (value.to_string(), Vec::new()),
        Some(Answer::ToolCall { name, arguments }) => (
            String::new(),
            vec![tool_call(content_seed, name, arguments.to_string())],
        ),
        None => default_answer(req, content_seed, &mut rng),
    };
    let mut finish_reason = if tool_calls.is_empty() {
        FinishReason::Stop
    } else {
        FinishReason::ToolCalls
    };
    if let Some(at) = req
        .stop
        .iter()
        .filter(|s| !s.is_empty())
        .filter_map(|s| text.find(s.as_str()))
        .min()
    {
        text.truncate(at);
    }
    if let Some(max) = req.max_tokens
        && estimate(&text) > max
    {
        text = truncate(&text, max);
        finish_reason = FinishReason::Length;
    }
    if break_schema {
        violate(req, &mut text, &mut tool_calls);
    }
    let mut usage = Usage {
        input_tokens: input_tokens(req),
        output_tokens: tool_calls
            .iter()
            .map(|c| estimate(&c.arguments))
            .fold(estimate(&text), u32::saturating_add),
        cached_input_tokens: 0,
    };
    if let Some(o) = rule.and_then(|r| r.usage) {
        usage.input_tokens = o.input_tokens.unwrap_or(usage.input_tokens);
        usage.output_tokens = o.output_tokens.unwrap_or(usage.output_tokens);
    }
    Reply {
        text,
        tool_calls,
        finish_reason,
        usage,
    }
}

/// The text of the last user message, what script rules match against.
pub(crate) fn last_user_text(req: &ChatRequest) -> String {
    req.messages
        .iter()
        .rev()
        .find(|m| m.role == Role::User)
        .map(|m| m.joined_text())
        .unwrap_or_default()
}

fn default_answer(
    req: &ChatRequest,
    content_seed: u64,
    rng: &mut SmallRng,
) -> (String, Vec<ToolCall>) {
    let last = req.messages.last();
    let user_turn = last.is_some_and(|m| m.role == Role::User);
    if user_turn && !req.tools.is_empty() && req.tool_choice != Some(ToolChoice::None) {
        let forced = match &req.tool_choice {
            Some(ToolChoice::Tool(name)) => Some(name),
            _ => None,
        };
        let tool = match forced {
            Some(name) => req.tools.iter().find(|t| &t.name == name),
            None => req.tools.first(),
        };
        // A forced tool the request did not declare is still called, with
        // no arguments: the simulator answers, the gateway decides.
        let (name, arguments) = match (tool, forced) {
            (Some(t), _) => (&t.name, schema::generate(&t.parameters, rng)),
            (None, Some(name)) => (name, json!({})),
            (None, None) => return (String::new(), Vec::new()),
        };
        return (
            String::new(),
            vec![tool_call(content_seed, name, arguments.to_string())],
        );
    }
    let prose = match last {
        Some(m) if m.role == Role::Tool => format!(
            "Simulated reply using the tool result: \"{}\".",
            words::clip(&m.joined_text(), 60)
        ),
        _ => format!(
            "Simulated reply to: \"{}\".",
            words::clip(&last_user_text(req), 60)
        ),
    };
    let text = match &req.response_format {
        Some(ResponseFormat::JsonSchema { schema, .. }) => {
            schema::generate(schema, rng).to_string()
        }
        Some(ResponseFormat::JsonObject) => {
            json!({"reply": prose, "mood": words::pick(rng)}).to_string()
        }
        Some(ResponseFormat::Text) | None => {
            let n = rng.random_range(4..=8);
            format!("{prose} {}.", words::phrase(rng, n))
        }
    };
    (text, Vec::new())
}

fn tool_call(content_seed: u64, name: &str, arguments: String) -> ToolCall {
    ToolCall {
        id: format!("call_{:016x}", seed::mix(content_seed, 1)),
        name: name.to_owned(),
        arguments,
    }
}

/// The longest prefix of whole chunks within `max` tokens, or the first
/// `max * 4` bytes when even the first chunk is longer.
fn truncate(text: &str, max: u32) -> String {
    let mut end = 0;
    for chunk in words::chunks(text) {
        let next = end + chunk.len();
        if estimate(&text[..next]) > max {
            break;
        }
        end = next;
    }
    if end == 0 {
        let budget = usize::try_from(max).unwrap_or(usize::MAX).saturating_mul(4);
        end = text
            .char_indices()
            .map(|(i, _)| i)
            .take_while(|i| *i <= budget)
            .last()
            .unwrap_or(0);
    }
    text[..end].to_owned()
}

/// The `schema-violation` fault: the first tool call's arguments break its
/// tool's parameters, else the text breaks the requested format. Text that is
/// already not JSON (cut by `max_tokens`) is left as it is.
fn violate(req: &ChatRequest, text: &mut String, tool_calls: &mut [ToolCall]) {
    if let Some(call) = tool_calls.first_mut() {
        let params = req
            .tools
            .iter()
            .find(|t| t.name == call.name)
            .map(|t| &t.parameters);
        let schema = params.cloned().unwrap_or_else(|| json!({"type": "object"}));
        if let Ok(args) = serde_json::from_str::<Value>(&call.arguments) {
            call.arguments = schema::violate(&schema, args).to_string();
        }
        return;
    }
    match &req.response_format {
        Some(ResponseFormat::JsonSchema { schema, .. }) => {
            if let Ok(value) = serde_json::from_str::<Value>(text) {
                *text = schema::violate(schema, value).to_string();
            }
        }
        Some(ResponseFormat::JsonObject) => *text = json!(["sim: not an object"]).to_string(),
        Some(ResponseFormat::Text) | None => {}
    }
}

/// Estimated over the system prompt and every message's text.
fn input_tokens(req: &ChatRequest) -> u32 {
    let texts = req
        .system
        .iter()
        .cloned()
        .chain(req.messages.iter().map(|m| m.joined_text()));
    estimate(&texts.collect::<Vec<_>>().join("\n"))
}
