//! Helpers shared by the fuzz targets (not a target itself).

#![allow(dead_code)]

use keel_protocol::chat::ChatRequest;
use keel_protocol::sse::{SseEvent, SseParser};
use keel_protocol::{DecodeError, anthropic, openai, tokens};
use serde_json::Value;

/// JSON equality where numbers are compared as numbers with a few ulps of
/// slack: serde_json (without `float_roundtrip`, as keel builds it) may read
/// a float it wrote back one ulp off. That is serde_json's documented
/// trade-off, not a keel bug, so the targets do not report it.
pub fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            if x == y {
                return true;
            }
            match (x.as_f64(), y.as_f64()) {
                (Some(x), Some(y)) => x == y || (x - y).abs() <= 1e-12 * x.abs().max(y.abs()),
                _ => false,
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| json_eq(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_eq(v, w)))
        }
        _ => a == b,
    }
}

/// Parses an SSE body keel wrote: it must end on an event boundary (nothing
/// left half-written) and every event must carry data.
pub fn parse_written_sse(out: &[u8], what: &str) -> Vec<SseEvent> {
    assert!(
        out.is_empty() || out.ends_with(b"\n\n"),
        "{what}: output does not end on an event boundary: {:?}",
        String::from_utf8_lossy(out)
    );
    let mut parser = SseParser::new();
    let events = parser.push(out);
    // A blank line flushes nothing more: every event was complete.
    assert!(
        parser.push(b"\n").is_empty(),
        "{what}: an event was left unterminated"
    );
    assert!(
        std::str::from_utf8(out).is_ok(),
        "{what}: output is not UTF-8"
    );
    events
}

/// A wire protocol, to run the same checks on both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    OpenAi,
    Anthropic,
}

impl Proto {
    pub fn decode_request(self, body: &[u8]) -> Result<ChatRequest, DecodeError> {
        match self {
            Proto::OpenAi => openai::decode_request(body),
            Proto::Anthropic => anthropic::decode_request(body),
        }
    }

    pub fn encode_request(self, req: &ChatRequest) -> Vec<u8> {
        match self {
            Proto::OpenAi => openai::encode_request(req),
            Proto::Anthropic => anthropic::encode_request(req),
        }
    }
}

/// The internal model as JSON, for comparisons tolerant of float spelling.
fn model(req: &ChatRequest) -> Value {
    let mut v = serde_json::to_value(req).unwrap_or(Value::Null);
    // Tool-call arguments are JSON text: compare them as JSON when they are.
    if let Some(messages) = v.get_mut("messages").and_then(Value::as_array_mut) {
        for m in messages {
            if let Some(calls) = m.get_mut("tool_calls").and_then(Value::as_array_mut) {
                for c in calls {
                    if let Some(args) = c.get("arguments").and_then(Value::as_str)
                        && let Ok(parsed) = serde_json::from_str::<Value>(args)
                    {
                        c["arguments"] = serde_json::json!({ "parsed": parsed });
                    }
                }
            }
        }
    }
    v
}

fn lossy(b: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(b)
}

/// What every request decoded from `own` must satisfy:
/// - it encodes, in both protocols, into a JSON object carrying its model
///   and a `messages` array;
/// - keel's decoder of each protocol accepts keel's own encoding in that
///   protocol whenever the encoded conversation is not empty (keel in front
///   of keel; an upstream exactly as strict as keel);
/// - in the client's own protocol, one more decode → encode round changes
///   nothing: the first round normalises (text parts joined, turns merged,
///   system prompts first), the second is a fixed point;
/// - the token estimate never panics.
pub fn check_request(req: &ChatRequest, own: Proto) {
    let _ = tokens::estimate_request(req);
    for target in [Proto::OpenAi, Proto::Anthropic] {
        let wire = target.encode_request(req);
        let v: Value = match serde_json::from_slice(&wire) {
            Ok(v) => v,
            Err(e) => panic!(
                "{target:?} encoder wrote invalid JSON ({e}): {}",
                lossy(&wire)
            ),
        };
        assert_eq!(
            v.get("model").and_then(Value::as_str),
            Some(req.model.as_str()),
            "{target:?} encoder: the model is not carried: {}",
            lossy(&wire)
        );
        let Some(messages) = v.get("messages").and_then(Value::as_array) else {
            panic!("{target:?} encoder: no messages array: {}", lossy(&wire));
        };
        if messages.is_empty() {
            // Nothing to send: the decoders rightly refuse an empty
            // conversation. (Possible when every turn decoded empty.)
            let _ = target.decode_request(&wire);
            continue;
        }
        let back = match target.decode_request(&wire) {
            Ok(r) => r,
            Err(e) => panic!(
                "keel's {target:?} encoding (from a {own:?} request) is refused by keel's {target:?} decoder: {e}\nbody: {}",
                lossy(&wire)
            ),
        };
        let _ = tokens::estimate_request(&back);
        if target != own {
            continue;
        }
        let wire2 = target.encode_request(&back);
        let third = match target.decode_request(&wire2) {
            Ok(r) => r,
            Err(e) => panic!(
                "second {target:?} round refused: {e}\nbody: {}",
                lossy(&wire2)
            ),
        };
        assert!(
            json_eq(&model(&third), &model(&back)),
            "{target:?}: decode → encode is not a fixed point after one round\nround 1: {}\nround 2: {}",
            lossy(&wire),
            lossy(&wire2)
        );
    }
}
