//! OpenAI chat-completion chunks: upstream SSE → internal events, internal
//! events → the client's SSE. Both sides keep a few fields of state and
//! translate chunk by chunk; nothing is buffered.

use serde::{Deserialize, Serialize};

use super::error::encode_error;
use super::response::{WireUsage, finish_from_wire, finish_to_wire};
use crate::chat::{StreamEvent, Usage};
use crate::sse::{SseEvent, write_event};
use crate::{StreamError, WireError};

/// Writes internal stream events as OpenAI `chat.completion.chunk` frames.
#[derive(Debug, Default)]
pub struct StreamEncoder {
    include_usage: bool,
    id: String,
    model: String,
    created: u64,
    usage: Option<Usage>,
}

#[derive(Serialize)]
struct Chunk<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: Vec<ChunkChoice<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<WireUsage>,
}

#[derive(Serialize)]
struct ChunkChoice<'a> {
    index: u32,
    delta: Delta<'a>,
    finish_reason: Option<&'static str>,
    logprobs: Option<()>,
}

#[derive(Serialize, Default)]
struct Delta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<&'a str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tool_calls: Vec<DeltaCall<'a>>,
}

#[derive(Serialize)]
struct DeltaCall<'a> {
    index: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    kind: Option<&'static str>,
    function: DeltaFunction<'a>,
}

#[derive(Serialize)]
struct DeltaFunction<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    arguments: &'a str,
}

impl StreamEncoder {
    /// `include_usage`: the client asked for a final usage chunk
    /// (`stream_options.include_usage`).
    pub fn new(include_usage: bool) -> Self {
        StreamEncoder {
            include_usage,
            ..Self::default()
        }
    }

    pub fn event(&mut self, ev: &StreamEvent, out: &mut Vec<u8>) {
        match ev {
            StreamEvent::Start {
                id, model, created, ..
            } => {
                self.id.clone_from(id);
                self.model.clone_from(model);
                self.created = *created;
                self.delta(
                    out,
                    Delta {
                        role: Some("assistant"),
                        content: Some(""),
                        ..Delta::default()
                    },
                    None,
                );
            }
            StreamEvent::TextDelta(text) => self.delta(
                out,
                Delta {
                    content: Some(text),
                    ..Delta::default()
                },
                None,
            ),
            StreamEvent::ToolCallStart { index, id, name } => self.delta(
                out,
                Delta {
                    tool_calls: vec![DeltaCall {
                        index: *index,
                        id: Some(id),
                        kind: Some("function"),
                        function: DeltaFunction {
                            name: Some(name),
                            arguments: "",
                        },
                    }],
                    ..Delta::default()
                },
                None,
            ),
            StreamEvent::ToolCallDelta { index, arguments } => self.delta(
                out,
                Delta {
                    tool_calls: vec![DeltaCall {
                        index: *index,
                        id: None,
                        kind: None,
                        function: DeltaFunction {
                            name: None,
                            arguments,
                        },
                    }],
                    ..Delta::default()
                },
                None,
            ),
            StreamEvent::Finish(reason) => {
                self.delta(out, Delta::default(), Some(finish_to_wire(*reason)))
            }
            StreamEvent::Usage(u) => self.usage = Some(*u),
            StreamEvent::Done => {
                if self.include_usage {
                    let chunk = Chunk {
                        id: &self.id,
                        object: "chat.completion.chunk",
                        created: self.created,
                        model: &self.model,
                        choices: Vec::new(),
                        usage: Some(self.usage.unwrap_or_default().into()),
                    };
                    write_json(out, &chunk);
                }
                write_event(out, None, "[DONE]");
            }
        }
    }

    /// Ends the stream with an error chunk (the official SDKs raise on it),
    /// then `[DONE]` so plain SSE readers see the end too.
    pub fn error(&mut self, err: &WireError, out: &mut Vec<u8>) {
        let body = encode_error(err);
        write_event(out, None, &String::from_utf8_lossy(&body));
        write_event(out, None, "[DONE]");
    }

    fn delta(&self, out: &mut Vec<u8>, delta: Delta<'_>, finish_reason: Option<&'static str>) {
        let chunk = Chunk {
            id: &self.id,
            object: "chat.completion.chunk",
            created: self.created,
            model: &self.model,
            choices: vec![ChunkChoice {
                index: 0,
                delta,
                finish_reason,
                logprobs: None,
            }],
            usage: None,
        };
        write_json(out, &chunk);
    }
}

fn write_json<T: Serialize>(out: &mut Vec<u8>, value: &T) {
    let data = serde_json::to_string(value).unwrap_or_default();
    write_event(out, None, &data);
}

/// Reads an upstream's OpenAI chunks into internal events.
#[derive(Debug, Default)]
pub struct StreamDecoder {
    started: bool,
    /// The upstream's index of each call announced with `ToolCallStart`,
    /// at keel's index (the order they started).
    tools_seen: Vec<u32>,
}

#[derive(Deserialize)]
struct InChunk {
    #[serde(default)]
    id: String,
    #[serde(default)]
    model: String,
    #[serde(default)]
    created: u64,
    #[serde(default)]
    choices: Vec<InChoice>,
    #[serde(default)]
    usage: Option<WireUsage>,
    #[serde(default)]
    error: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct InChoice {
    #[serde(default)]
    delta: Option<InDelta>,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize, Default)]
struct InDelta {
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    refusal: Option<String>,
    #[serde(default)]
    tool_calls: Option<Vec<InCall>>,
}

#[derive(Deserialize)]
struct InCall {
    #[serde(default)]
    index: Option<u32>,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    function: Option<InFunction>,
}

#[derive(Deserialize)]
struct InFunction {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    arguments: Option<String>,
}

impl StreamDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Translates one SSE event. `[DONE]` becomes `StreamEvent::Done`.
    pub fn event(&mut self, sse: &SseEvent) -> Result<Vec<StreamEvent>, StreamError> {
        let data = sse.data.trim();
        if data == "[DONE]" {
            return Ok(vec![StreamEvent::Done]);
        }
        let chunk: InChunk =
            serde_json::from_str(data).map_err(|e| StreamError::Malformed(e.to_string()))?;
        if let Some(error) = chunk.error {
            let message = error
                .get("message")
                .and_then(serde_json::Value::as_str)
                .map_or_else(|| error.to_string(), str::to_owned);
            return Err(StreamError::Upstream { message });
        }
        let mut out = Vec::new();
        // Azure sends a first chunk with no id, no model and no choices
        // (`prompt_filter_results`): the answer starts with the next one.
        if !self.started && chunk.choices.is_empty() && chunk.usage.is_none() {
            return Ok(Vec::new());
        }
        if !self.started {
            self.started = true;
            out.push(StreamEvent::Start {
                id: chunk.id,
                model: chunk.model,
                created: chunk.created,
                input_tokens: None,
            });
        }
        for choice in chunk.choices.into_iter().take(1) {
            let delta = choice.delta.unwrap_or_default();
            for text in [delta.content, delta.refusal].into_iter().flatten() {
                if !text.is_empty() {
                    out.push(StreamEvent::TextDelta(text));
                }
            }
            for (pos, call) in delta.tool_calls.unwrap_or_default().into_iter().enumerate() {
                // The upstream's index names a call; keel numbers calls from
                // 0 in the order they start (`StreamEvent::ToolCallStart`),
                // whatever numbers the upstream used.
                let theirs = call.index.unwrap_or(u32::try_from(pos).unwrap_or(u32::MAX));
                let (name, arguments) = call
                    .function
                    .map(|f| (f.name, f.arguments))
                    .unwrap_or_default();
                let index = match self.tools_seen.iter().position(|t| *t == theirs) {
                    Some(ours) => u32::try_from(ours).unwrap_or(u32::MAX),
                    None => {
                        let ours = u32::try_from(self.tools_seen.len()).unwrap_or(u32::MAX);
                        self.tools_seen.push(theirs);
                        out.push(StreamEvent::ToolCallStart {
                            index: ours,
                            id: call.id.unwrap_or_default(),
                            name: name.unwrap_or_default(),
                        });
                        ours
                    }
                };
                if let Some(arguments) = arguments.filter(|a| !a.is_empty()) {
                    out.push(StreamEvent::ToolCallDelta { index, arguments });
                }
            }
            if let Some(reason) = choice.finish_reason {
                out.push(StreamEvent::Finish(finish_from_wire(&reason)));
            }
        }
        if let Some(usage) = chunk.usage {
            out.push(StreamEvent::Usage(usage.into()));
        }
        Ok(out)
    }
}
