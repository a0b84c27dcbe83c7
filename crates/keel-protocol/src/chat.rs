//! The internal chat model: what every front door decodes into and every
//! provider encodes from. It holds the union of what the OpenAI and Anthropic
//! protocols can express that keel translates; parameters only one side knows
//! travel in `extra` and are passed through when the upstream speaks the same
//! protocol as the client.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Which wire protocol a front door or an upstream speaks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    #[default]
    OpenAi,
    Anthropic,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::OpenAi => "openai",
            Protocol::Anthropic => "anthropic",
        }
    }
}

/// A chat request in keel's own terms.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChatRequest {
    /// The model as the client named it (a keel alias before routing, the
    /// upstream model name after).
    pub model: String,
    /// System instructions, in order. OpenAI `system`/`developer` messages and
    /// the Anthropic `system` parameter both land here.
    pub system: Vec<String>,
    /// The conversation, without system messages.
    pub messages: Vec<Message>,
    pub max_tokens: Option<u32>,
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub stop: Vec<String>,
    pub stream: bool,
    /// OpenAI `stream_options.include_usage`: the client wants a final usage chunk.
    pub include_usage: bool,
    pub tools: Vec<Tool>,
    pub tool_choice: Option<ToolChoice>,
    pub response_format: Option<ResponseFormat>,
    /// End-user identifier (OpenAI `user`, Anthropic `metadata.user_id`).
    pub user: Option<String>,
    /// Parameters of the client's protocol that keel does not model, passed
    /// through untouched when the upstream speaks the same protocol.
    pub extra: Map<String, Value>,
    /// The protocol `extra` belongs to (the client's).
    pub protocol: Protocol,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    User,
    Assistant,
    /// The result of a tool call (OpenAI `tool` role; Anthropic `tool_result`
    /// blocks in a user turn).
    Tool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub role: Role,
    pub content: Vec<Part>,
    /// Tool calls made by the assistant in this turn.
    pub tool_calls: Vec<ToolCall>,
    /// For `Role::Tool`: which call this is the result of.
    pub tool_call_id: Option<String>,
    /// For `Role::Tool`: the result reported an error (Anthropic `is_error`).
    pub is_error: bool,
}

impl Message {
    pub fn text(role: Role, text: impl Into<String>) -> Self {
        Message {
            role,
            content: vec![Part::Text(text.into())],
            tool_calls: Vec::new(),
            tool_call_id: None,
            is_error: false,
        }
    }

    /// The concatenated text parts of the message.
    pub fn joined_text(&self) -> String {
        text_of(&self.content)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Part {
    Text(String),
    /// An image, either by URL or inline (`data:` URLs are split into media
    /// type and base64 data so both protocols can express them).
    Image(Image),
}

/// The concatenated text of some parts (images are skipped).
pub fn text_of(parts: &[Part]) -> String {
    parts
        .iter()
        .filter_map(|p| match p {
            Part::Text(t) => Some(t.as_str()),
            Part::Image(_) => None,
        })
        .collect()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Image {
    Url(String),
    Base64 { media_type: String, data: String },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tool {
    pub name: String,
    pub description: Option<String>,
    /// JSON Schema of the arguments.
    pub parameters: Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ToolChoice {
    /// The model decides.
    Auto,
    /// The model must not call a tool.
    None,
    /// The model must call some tool.
    Required,
    /// The model must call this tool.
    Tool(String),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    /// The arguments as JSON text, exactly as the model produced them.
    pub arguments: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResponseFormat {
    Text,
    JsonObject,
    JsonSchema {
        name: String,
        schema: Value,
        strict: Option<bool>,
    },
}

/// Why the model stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// Natural end, or a stop sequence.
    Stop,
    /// `max_tokens` reached.
    Length,
    ToolCalls,
    ContentFilter,
}

/// Token counts. `input_tokens` counts every prompt token, cached or not;
/// `cached_input_tokens` says how many of them the provider served from its
/// prompt cache (priced lower), when it reports that.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub input_tokens: u32,
    pub output_tokens: u32,
    #[serde(default)]
    pub cached_input_tokens: u32,
}

impl Usage {
    /// Adds another call's usage (re-asks, workflow steps).
    pub fn add(&mut self, other: Usage) {
        self.input_tokens = self.input_tokens.saturating_add(other.input_tokens);
        self.output_tokens = self.output_tokens.saturating_add(other.output_tokens);
        self.cached_input_tokens = self
            .cached_input_tokens
            .saturating_add(other.cached_input_tokens);
    }
}

/// A complete (non-streamed) chat answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatResponse {
    pub id: String,
    /// The upstream model that answered.
    pub model: String,
    /// Unix seconds.
    pub created: u64,
    pub text: String,
    pub tool_calls: Vec<ToolCall>,
    pub finish_reason: FinishReason,
    pub usage: Usage,
}

impl ChatResponse {
    /// The answer as a well-formed stream: `Start`, the text in one delta,
    /// each tool call started and its arguments in one delta, `Finish`,
    /// `Usage`, `Done`. Used where an upstream answered a stream request
    /// with a whole body, and as the base of the simulator's streams.
    pub fn to_events(&self) -> Vec<StreamEvent> {
        let mut out = vec![StreamEvent::Start {
            id: self.id.clone(),
            model: self.model.clone(),
            created: self.created,
            input_tokens: Some(self.usage.input_tokens),
        }];
        if !self.text.is_empty() {
            out.push(StreamEvent::TextDelta(self.text.clone()));
        }
        for (index, call) in (0_u32..).zip(&self.tool_calls) {
            out.push(StreamEvent::ToolCallStart {
                index,
                id: call.id.clone(),
                name: call.name.clone(),
            });
            if !call.arguments.is_empty() {
                out.push(StreamEvent::ToolCallDelta {
                    index,
                    arguments: call.arguments.clone(),
                });
            }
        }
        out.push(StreamEvent::Finish(self.finish_reason));
        out.push(StreamEvent::Usage(self.usage));
        out.push(StreamEvent::Done);
        out
    }
}

/// The whole answer a stream adds up to (the inverse of
/// [`ChatResponse::to_events`]): what a streamed answer is cached as.
#[derive(Debug, Default)]
pub struct Assembler {
    id: String,
    model: String,
    created: u64,
    text: String,
    tool_calls: Vec<ToolCall>,
    finish_reason: Option<FinishReason>,
    usage: Usage,
}

impl Assembler {
    pub fn push(&mut self, event: &StreamEvent) {
        match event {
            StreamEvent::Start {
                id,
                model,
                created,
                input_tokens,
            } => {
                self.id.clone_from(id);
                self.model.clone_from(model);
                self.created = *created;
                self.usage.input_tokens = input_tokens.unwrap_or(0);
            }
            StreamEvent::TextDelta(t) => self.text.push_str(t),
            StreamEvent::ToolCallStart { id, name, .. } => self.tool_calls.push(ToolCall {
                id: id.clone(),
                name: name.clone(),
                arguments: String::new(),
            }),
            StreamEvent::ToolCallDelta { index, arguments } => {
                if let Some(call) = usize::try_from(*index)
                    .ok()
                    .and_then(|i| self.tool_calls.get_mut(i))
                {
                    call.arguments.push_str(arguments);
                }
            }
            StreamEvent::Finish(reason) => self.finish_reason = Some(*reason),
            StreamEvent::Usage(u) => self.usage = *u,
            StreamEvent::Done => {}
        }
    }

    pub fn finish(self) -> ChatResponse {
        ChatResponse {
            id: self.id,
            model: self.model,
            created: self.created,
            text: self.text,
            tool_calls: self.tool_calls,
            finish_reason: self.finish_reason.unwrap_or(FinishReason::Stop),
            usage: self.usage,
        }
    }
}

/// One step of a streamed answer, in keel's own terms. A well-formed stream is
/// `Start`, any number of deltas, `Finish`, optionally `Usage`, then `Done`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StreamEvent {
    Start {
        id: String,
        model: String,
        created: u64,
        /// Input tokens when the upstream reports them up front (Anthropic).
        input_tokens: Option<u32>,
    },
    TextDelta(String),
    /// A new tool call; `index` counts tool calls from 0 in this answer.
    ToolCallStart {
        index: u32,
        id: String,
        name: String,
    },
    ToolCallDelta {
        index: u32,
        arguments: String,
    },
    Finish(FinishReason),
    Usage(Usage),
    /// The upstream ended the stream properly.
    Done,
}

/// An embeddings request (OpenAI shape; Anthropic has no embeddings API).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmbeddingsRequest {
    pub model: String,
    pub input: Vec<String>,
    pub dimensions: Option<u32>,
    /// `"float"` (default) or `"base64"` (what the official OpenAI SDKs ask for).
    pub encoding_format: Option<String>,
    pub user: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmbeddingsResponse {
    pub model: String,
    pub data: Vec<Vec<f32>>,
    pub input_tokens: u32,
}

/// A name as both providers accept it for a tool or a `json_schema`
/// response format: `[a-zA-Z0-9_-]{1,64}` (other characters dropped, the
/// rest cut at 64; `structured_output` when nothing is left).
pub fn wire_name(name: &str) -> String {
    let clean: String = name
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
        .take(64)
        .collect();
    if clean.is_empty() {
        "structured_output".to_owned()
    } else {
        clean
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_assembles_back_into_its_answer() {
        let answer = ChatResponse {
            id: "r-1".to_owned(),
            model: "m".to_owned(),
            created: 7,
            text: "Checking the weather.".to_owned(),
            tool_calls: vec![
                ToolCall {
                    id: "c-1".to_owned(),
                    name: "weather".to_owned(),
                    arguments: r#"{"city":"Paris"}"#.to_owned(),
                },
                ToolCall {
                    id: "c-2".to_owned(),
                    name: "time".to_owned(),
                    arguments: String::new(),
                },
            ],
            finish_reason: FinishReason::ToolCalls,
            usage: Usage {
                input_tokens: 12,
                output_tokens: 30,
                cached_input_tokens: 4,
            },
        };
        let mut assembler = Assembler::default();
        for event in answer.to_events() {
            assembler.push(&event);
        }
        assert_eq!(assembler.finish(), answer);
    }
}
