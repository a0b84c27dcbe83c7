//! Helpers shared by the test modules.

use keel_protocol::chat::{FinishReason, StreamEvent, ToolCall, Usage};
use keel_protocol::sse::{SseEvent, SseParser};
use keel_protocol::{anthropic, openai};
use serde_json::Value;

/// Parses JSON bytes an encoder produced (panics with the text if invalid).
pub fn json(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(bytes)))
}

/// Pretty JSON of encoder output, for snapshots.
pub fn pretty(bytes: &[u8]) -> String {
    serde_json::to_string_pretty(&json(bytes)).unwrap()
}

/// All events of a complete SSE text.
pub fn sse_events(wire: &[u8]) -> Vec<SseEvent> {
    SseParser::new().push(wire)
}

pub fn decode_openai_stream(transcript: &str) -> Vec<StreamEvent> {
    let mut decoder = openai::StreamDecoder::new();
    sse_events(transcript.as_bytes())
        .iter()
        .flat_map(|e| decoder.event(e).unwrap())
        .collect()
}

pub fn decode_anthropic_stream(transcript: &str) -> Vec<StreamEvent> {
    let mut decoder = anthropic::StreamDecoder::new();
    sse_events(transcript.as_bytes())
        .iter()
        .flat_map(|e| decoder.event(e).unwrap())
        .collect()
}

pub fn encode_openai_stream(events: &[StreamEvent], include_usage: bool) -> String {
    let mut encoder = openai::StreamEncoder::new(include_usage);
    let mut out = Vec::new();
    for e in events {
        encoder.event(e, &mut out);
    }
    String::from_utf8(out).unwrap()
}

pub fn encode_anthropic_stream(events: &[StreamEvent]) -> String {
    let mut encoder = anthropic::StreamEncoder::new();
    let mut out = Vec::new();
    for e in events {
        encoder.event(e, &mut out);
    }
    String::from_utf8(out).unwrap()
}

/// A stream folded back into one answer, as an SDK's accumulator would.
#[derive(Debug, Default, PartialEq)]
pub struct Assembled {
    pub id: String,
    pub model: String,
    pub text: String,
    pub tool_calls: Vec<ToolCall>,
    pub finish: Option<FinishReason>,
    pub usage: Option<Usage>,
    pub done: bool,
}

pub fn assemble(events: &[StreamEvent]) -> Assembled {
    let mut a = Assembled::default();
    let mut indices: Vec<u32> = Vec::new();
    for e in events {
        assert!(!a.done, "event after Done: {e:?}");
        match e {
            StreamEvent::Start { id, model, .. } => {
                a.id.clone_from(id);
                a.model.clone_from(model);
            }
            StreamEvent::TextDelta(t) => a.text.push_str(t),
            StreamEvent::ToolCallStart { index, id, name } => {
                indices.push(*index);
                a.tool_calls.push(ToolCall {
                    id: id.clone(),
                    name: name.clone(),
                    arguments: String::new(),
                });
            }
            StreamEvent::ToolCallDelta { index, arguments } => {
                let pos = indices
                    .iter()
                    .position(|i| i == index)
                    .expect("delta before start");
                a.tool_calls[pos].arguments.push_str(arguments);
            }
            StreamEvent::Finish(r) => a.finish = Some(*r),
            StreamEvent::Usage(u) => a.usage = Some(*u),
            StreamEvent::Done => a.done = true,
        }
    }
    a
}

/// Tool-call arguments as JSON values (translation may re-serialize them).
pub fn args_json(calls: &[ToolCall]) -> Vec<(String, String, Value)> {
    calls
        .iter()
        .map(|c| {
            (
                c.id.clone(),
                c.name.clone(),
                serde_json::from_str(&c.arguments).unwrap(),
            )
        })
        .collect()
}
