//! Anthropic stream events: upstream SSE → internal events, internal events
//! → the client's SSE (`message_start`, `content_block_start/delta/stop`,
//! `message_delta`, `message_stop`, `error`). Translation is event by event.

use serde_json::{Value, json};

use super::error::encode_error;
use super::response::{OutUsage, WireUsage, finish_from_wire, finish_to_wire};
use crate::chat::{FinishReason, StreamEvent, Usage};
use crate::sse::{SseEvent, write_event};
use crate::{StreamError, WireError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Block {
    Text(u32),
    Tool { tool: u32, block: u32 },
}

/// Writes internal stream events as Anthropic SSE events.
#[derive(Debug, Default)]
pub struct StreamEncoder {
    started: bool,
    open: Option<Block>,
    next_block: u32,
    /// Tool-call index → content-block index.
    tool_blocks: Vec<(u32, u32)>,
    finish: Option<FinishReason>,
    usage: Usage,
}

impl StreamEncoder {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn event(&mut self, ev: &StreamEvent, out: &mut Vec<u8>) {
        match ev {
            StreamEvent::Start {
                id,
                model,
                input_tokens,
                ..
            } => {
                self.usage.input_tokens = input_tokens.unwrap_or(0);
                self.start(out, id, model);
            }
            StreamEvent::TextDelta(text) => {
                self.start(out, "", "");
                let block = match self.open {
                    Some(Block::Text(b)) => b,
                    _ => self.open_block(out, None, json!({"type": "text", "text": ""})),
                };
                emit(
                    out,
                    "content_block_delta",
                    &json!({
                        "type": "content_block_delta", "index": block,
                        "delta": {"type": "text_delta", "text": text},
                    }),
                );
            }
            StreamEvent::ToolCallStart { index, id, name } => {
                self.start(out, "", "");
                let block = self.open_block(
                    out,
                    Some(*index),
                    json!({"type": "tool_use", "id": id, "name": name, "input": {}}),
                );
                self.tool_blocks.push((*index, block));
            }
            StreamEvent::ToolCallDelta { index, arguments } => {
                let Some(&(_, block)) = self.tool_blocks.iter().find(|(t, _)| t == index) else {
                    return; // arguments for a call that never started: nothing to attach them to
                };
                emit(
                    out,
                    "content_block_delta",
                    &json!({
                        "type": "content_block_delta", "index": block,
                        "delta": {"type": "input_json_delta", "partial_json": arguments},
                    }),
                );
            }
            StreamEvent::Finish(reason) => self.finish = Some(*reason),
            StreamEvent::Usage(u) => {
                if u.input_tokens > 0 {
                    self.usage.input_tokens = u.input_tokens;
                    self.usage.cached_input_tokens = u.cached_input_tokens;
                }
                self.usage.output_tokens = u.output_tokens;
            }
            StreamEvent::Done => {
                self.start(out, "", "");
                self.close_block(out);
                let reason = self.finish.unwrap_or(FinishReason::Stop);
                emit(
                    out,
                    "message_delta",
                    &json!({
                        "type": "message_delta",
                        "delta": {"stop_reason": finish_to_wire(reason), "stop_sequence": null},
                        "usage": OutUsage::from(self.usage),
                    }),
                );
                emit(out, "message_stop", &json!({"type": "message_stop"}));
            }
        }
    }

    /// Ends the stream with an `error` event (the official SDKs raise on it).
    pub fn error(&mut self, err: &WireError, out: &mut Vec<u8>) {
        let body = encode_error(err);
        write_event(out, Some("error"), &String::from_utf8_lossy(&body));
    }

    fn start(&mut self, out: &mut Vec<u8>, id: &str, model: &str) {
        if self.started {
            return;
        }
        self.started = true;
        emit(
            out,
            "message_start",
            &json!({
                "type": "message_start",
                "message": {
                    "id": id, "type": "message", "role": "assistant", "model": model,
                    "content": [], "stop_reason": null, "stop_sequence": null,
                    "usage": {"input_tokens": self.usage.input_tokens, "output_tokens": 0},
                },
            }),
        );
    }

    fn open_block(&mut self, out: &mut Vec<u8>, tool: Option<u32>, block: Value) -> u32 {
        self.close_block(out);
        let index = self.next_block;
        self.next_block += 1;
        self.open = Some(match tool {
            Some(tool) => Block::Tool { tool, block: index },
            None => Block::Text(index),
        });
        emit(
            out,
            "content_block_start",
            &json!({
                "type": "content_block_start", "index": index, "content_block": block,
            }),
        );
        index
    }

    fn close_block(&mut self, out: &mut Vec<u8>) {
        if let Some(Block::Text(index) | Block::Tool { block: index, .. }) = self.open.take() {
            emit(
                out,
                "content_block_stop",
                &json!({"type": "content_block_stop", "index": index}),
            );
        }
    }
}

fn emit(out: &mut Vec<u8>, event: &str, data: &Value) {
    write_event(out, Some(event), &data.to_string());
}

/// Reads an upstream's Anthropic events into internal events.
#[derive(Debug, Default)]
pub struct StreamDecoder {
    input_tokens: u32,
    cached_input_tokens: u32,
    /// Content-block index → tool-call index.
    tool_blocks: Vec<(u64, u32)>,
}

impl StreamDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn event(&mut self, sse: &SseEvent) -> Result<Vec<StreamEvent>, StreamError> {
        let data: Value =
            serde_json::from_str(&sse.data).map_err(|e| StreamError::Malformed(e.to_string()))?;
        let kind = data.get("type").and_then(Value::as_str).unwrap_or_default();
        let mut out = Vec::new();
        match kind {
            "message_start" => {
                let message = data.get("message").cloned().unwrap_or(Value::Null);
                let usage: WireUsage = message
                    .get("usage")
                    .and_then(|u| serde_json::from_value(u.clone()).ok())
                    .unwrap_or_default();
                self.input_tokens = usage.total_input();
                self.cached_input_tokens = usage.cache_read_input_tokens.unwrap_or(0);
                out.push(StreamEvent::Start {
                    id: str_at(&message, "id"),
                    model: str_at(&message, "model"),
                    created: 0,
                    input_tokens: Some(self.input_tokens),
                });
            }
            "content_block_start" => {
                let index = data.get("index").and_then(Value::as_u64).unwrap_or(0);
                let block = data.get("content_block").cloned().unwrap_or(Value::Null);
                match block.get("type").and_then(Value::as_str) {
                    Some("text") => {
                        let text = str_at(&block, "text");
                        if !text.is_empty() {
                            out.push(StreamEvent::TextDelta(text));
                        }
                    }
                    Some("tool_use") => {
                        let tool = u32::try_from(self.tool_blocks.len()).unwrap_or(u32::MAX);
                        self.tool_blocks.push((index, tool));
                        out.push(StreamEvent::ToolCallStart {
                            index: tool,
                            id: str_at(&block, "id"),
                            name: str_at(&block, "name"),
                        });
                    }
                    _ => {}
                }
            }
            "content_block_delta" => {
                let index = data.get("index").and_then(Value::as_u64).unwrap_or(0);
                let delta = data.get("delta").cloned().unwrap_or(Value::Null);
                match delta.get("type").and_then(Value::as_str) {
                    Some("text_delta") => out.push(StreamEvent::TextDelta(str_at(&delta, "text"))),
                    Some("input_json_delta") => {
                        if let Some(&(_, tool)) = self.tool_blocks.iter().find(|(b, _)| *b == index)
                        {
                            let arguments = str_at(&delta, "partial_json");
                            if !arguments.is_empty() {
                                out.push(StreamEvent::ToolCallDelta {
                                    index: tool,
                                    arguments,
                                });
                            }
                        }
                    }
                    _ => {} // thinking and signature deltas have no OpenAI equivalent
                }
            }
            "message_delta" => {
                if let Some(reason) = data.pointer("/delta/stop_reason").and_then(Value::as_str) {
                    out.push(StreamEvent::Finish(finish_from_wire(reason)));
                }
                if let Some(usage) = data.get("usage") {
                    let count = |key: &str| usage.get(key).and_then(Value::as_u64).unwrap_or(0);
                    let output = count("output_tokens");
                    // The counts are cumulative; when input is reported here,
                    // cached input is too, and counts as in `message_start`.
                    let input = count("input_tokens")
                        .saturating_add(count("cache_creation_input_tokens"))
                        .saturating_add(count("cache_read_input_tokens"));
                    if input > 0 {
                        self.input_tokens = u32::try_from(input).unwrap_or(u32::MAX);
                        self.cached_input_tokens =
                            u32::try_from(count("cache_read_input_tokens")).unwrap_or(u32::MAX);
                    }
                    out.push(StreamEvent::Usage(Usage {
                        input_tokens: self.input_tokens,
                        output_tokens: u32::try_from(output).unwrap_or(u32::MAX),
                        cached_input_tokens: self.cached_input_tokens,
                    }));
                }
            }
            "message_stop" => out.push(StreamEvent::Done),
            "error" => {
                let message = data
                    .pointer("/error/message")
                    .and_then(Value::as_str)
                    .map_or_else(|| data.to_string(), str::to_owned);
                return Err(StreamError::Upstream { message });
            }
            _ => {} // ping, content_block_stop and future event types
        }
        Ok(out)
    }
}

fn str_at(v: &Value, key: &str) -> String {
    v.get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}
