//! Property tests: decoders never panic on arbitrary bytes or JSON-ish
//! values; the SSE parser is chunking-independent; stream encoders always
//! write a well-formed stream. Case counts are modest to stay fast on 2 cores.

use keel_protocol::chat::{FinishReason, StreamEvent, Usage};
use keel_protocol::sse::{SseEvent, SseParser, write_event};
use keel_protocol::{anthropic, openai};
use proptest::prelude::*;
use serde_json::{Map, Value};

const CASES: u32 = 256;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: CASES,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Keys the decoders look at, so generated objects reach past the first check.
const KEYS: &[&str] = &[
    "model",
    "messages",
    "role",
    "content",
    "type",
    "text",
    "image_url",
    "url",
    "tool_calls",
    "id",
    "function",
    "name",
    "arguments",
    "tool_call_id",
    "tools",
    "parameters",
    "description",
    "tool_choice",
    "response_format",
    "json_schema",
    "schema",
    "strict",
    "max_tokens",
    "max_completion_tokens",
    "n",
    "stop",
    "stream",
    "stream_options",
    "include_usage",
    "temperature",
    "top_p",
    "user",
    "system",
    "source",
    "media_type",
    "data",
    "tool_use_id",
    "is_error",
    "input",
    "input_schema",
    "metadata",
    "user_id",
    "stop_sequences",
    "choices",
    "message",
    "delta",
    "finish_reason",
    "index",
    "usage",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "refusal",
    "stop_reason",
    "input_tokens",
    "output_tokens",
    "cache_read_input_tokens",
    "cache_creation_input_tokens",
    "error",
    "content_block",
    "partial_json",
    "encoding_format",
    "dimensions",
    "embedding",
    "created",
    "object",
];

/// String values the decoders branch on.
const WORDS: &[&str] = &[
    "user",
    "assistant",
    "tool",
    "system",
    "developer",
    "text",
    "image",
    "image_url",
    "tool_use",
    "tool_result",
    "thinking",
    "function",
    "auto",
    "none",
    "required",
    "any",
    "json_object",
    "json_schema",
    "message_start",
    "content_block_start",
    "content_block_delta",
    "content_block_stop",
    "message_delta",
    "message_stop",
    "error",
    "ping",
    "text_delta",
    "input_json_delta",
    "stop",
    "length",
    "tool_calls",
    "content_filter",
    "end_turn",
    "max_tokens",
    "refusal",
    "data:image/png;base64,AAAA",
    "data:,x",
    "base64",
    "url",
    "float",
    "[DONE]",
    "{",
    "{\"a\":",
    "{\"a\":1}",
    "",
];

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (-1e9f64..1e9).prop_map(Value::from),
        prop::sample::select(WORDS).prop_map(Value::from),
        ".{0,12}".prop_map(Value::String),
    ]
}

/// JSON values whose objects use the protocol's keys.
fn json_value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(5, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::vec((prop::sample::select(KEYS), inner), 0..7).prop_map(|kv| {
                Value::Object(kv.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
            }),
        ]
    })
}

/// Either a well-typed word or anything.
fn word_or_any() -> impl Strategy<Value = Value> {
    prop_oneof![3 => prop::sample::select(WORDS).prop_map(Value::from), 1 => json_value()]
}

/// A content part / block: a known `type` with random other fields.
fn part() -> impl Strategy<Value = Value> {
    (
        word_or_any(),
        prop::collection::vec((prop::sample::select(KEYS), json_value()), 0..4),
    )
        .prop_map(|(t, kv)| {
            let mut m: Map<String, Value> =
                kv.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
            m.insert("type".into(), t);
            Value::Object(m)
        })
}

fn message() -> impl Strategy<Value = Value> {
    (
        word_or_any(),
        prop_oneof![
            ".{0,8}".prop_map(Value::String),
            prop::collection::vec(part(), 0..4).prop_map(Value::Array),
            json_value()
        ],
        prop::collection::vec((prop::sample::select(KEYS), json_value()), 0..3),
    )
        .prop_map(|(role, content, kv)| {
            let mut m: Map<String, Value> =
                kv.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
            m.insert("role".into(), role);
            m.insert("content".into(), content);
            Value::Object(m)
        })
}

/// A request-shaped object: model, max_tokens and messages mostly valid,
/// plus random top-level fields.
fn request() -> impl Strategy<Value = Value> {
    (
        prop_oneof![3 => Just(Value::from("m")), 1 => json_value()],
        prop_oneof![3 => (0u32..10_000).prop_map(Value::from), 1 => json_value()],
        prop::collection::vec(message(), 0..5),
        prop::collection::vec((prop::sample::select(KEYS), json_value()), 0..6),
    )
        .prop_map(|(model, max_tokens, messages, kv)| {
            let mut m: Map<String, Value> =
                kv.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
            m.insert("model".into(), model);
            m.insert("max_tokens".into(), max_tokens);
            m.insert("messages".into(), Value::Array(messages));
            Value::Object(m)
        })
}

/// Decodes with every request/response decoder; whatever decodes must also
/// encode into valid JSON in both protocols.
fn decode_everything(bytes: &[u8]) {
    for req in [
        openai::decode_request(bytes),
        anthropic::decode_request(bytes),
    ]
    .into_iter()
    .flatten()
    {
        for wire in [
            openai::encode_request(&req),
            anthropic::encode_request(&req),
        ] {
            assert!(serde_json::from_slice::<Value>(&wire).is_ok());
        }
    }
    for resp in [
        openai::decode_response(bytes),
        anthropic::decode_response(bytes),
    ]
    .into_iter()
    .flatten()
    {
        for wire in [
            openai::encode_response(&resp),
            anthropic::encode_response(&resp),
        ] {
            assert!(serde_json::from_slice::<Value>(&wire).is_ok());
        }
    }
    if let Ok(req) = openai::decode_embeddings_request(bytes) {
        assert!(serde_json::from_slice::<Value>(&openai::encode_embeddings_request(&req)).is_ok());
    }
    let _ = openai::decode_embeddings_response(bytes);
    let _ = openai::decode_error_message(bytes);
    let _ = anthropic::decode_error_message(bytes);
}

/// Runs bytes through the SSE parser and both stream decoders.
fn decode_stream(bytes: &[u8]) {
    let mut parser = SseParser::new();
    let mut o = openai::StreamDecoder::new();
    let mut a = anthropic::StreamDecoder::new();
    for ev in parser.push(bytes) {
        let _ = o.event(&ev);
        let _ = a.event(&ev);
    }
}

/// Stream events from a decoder, in random order and content.
fn stream_event() -> impl Strategy<Value = StreamEvent> {
    let finish = prop::sample::select(vec![
        FinishReason::Stop,
        FinishReason::Length,
        FinishReason::ToolCalls,
        FinishReason::ContentFilter,
    ]);
    prop_oneof![
        1 => (".{0,6}", ".{0,6}", any::<u64>(), any::<Option<u32>>()).prop_map(|(id, model, created, input_tokens)| {
            StreamEvent::Start { id, model, created, input_tokens }
        }),
        4 => any::<String>().prop_map(StreamEvent::TextDelta),
        1 => (0u32..4, ".{0,6}", ".{0,6}").prop_map(|(index, id, name)| StreamEvent::ToolCallStart { index, id, name }),
        3 => (0u32..4, any::<String>()).prop_map(|(index, arguments)| StreamEvent::ToolCallDelta { index, arguments }),
        1 => finish.prop_map(StreamEvent::Finish),
        1 => (any::<u32>(), any::<u32>())
            .prop_map(|(input_tokens, output_tokens)| StreamEvent::Usage(Usage { input_tokens, output_tokens, cached_input_tokens: 0 })),
    ]
}

/// Any events, then `Done` (what a decoder ends every proper stream with).
fn stream_events() -> impl Strategy<Value = Vec<StreamEvent>> {
    prop::collection::vec(stream_event(), 0..24).prop_map(|mut v| {
        v.push(StreamEvent::Done);
        v
    })
}

fn sse_event() -> impl Strategy<Value = SseEvent> {
    (prop::option::of("[a-z_ :]{0,12}"), "[^\r]{0,40}")
        .prop_map(|(event, data)| SseEvent { event, data })
}

/// Cut points (possibly repeated, giving empty chunks) in `0..=len`.
fn split(bytes: &[u8], cuts: &[usize]) -> Vec<Vec<u8>> {
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
    cuts.sort_unstable();
    let mut chunks = Vec::new();
    let mut prev = 0;
    for c in cuts {
        chunks.push(bytes[prev..c].to_vec());
        prev = c;
    }
    chunks.push(bytes[prev..].to_vec());
    chunks
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn decoders_never_panic_on_bytes(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        decode_everything(&bytes);
        decode_stream(&bytes);
    }

    #[test]
    fn decoders_never_panic_on_json(v in json_value()) {
        decode_everything(v.to_string().as_bytes());
    }

    #[test]
    fn request_decoders_never_panic_on_request_shapes(v in request()) {
        decode_everything(v.to_string().as_bytes());
    }

    #[test]
    fn stream_decoders_never_panic_on_json_events(
        events in prop::collection::vec((prop::option::of(prop::sample::select(WORDS)), json_value()), 0..12),
    ) {
        let mut o = openai::StreamDecoder::new();
        let mut a = anthropic::StreamDecoder::new();
        for (event, data) in events {
            let ev = SseEvent { event: event.map(str::to_owned), data: data.to_string() };
            let _ = o.event(&ev);
            let _ = a.event(&ev);
        }
    }

    #[test]
    fn stream_decoders_never_panic_on_sse_text(text in "(event: [a-z_]{0,8}\n|data: .{0,30}\n|\n|: .{0,5}\r\n|data: \\[DONE\\]\n){0,20}") {
        decode_stream(text.as_bytes());
    }

    #[test]
    fn sse_parser_is_independent_of_chunking(
        events in prop::collection::vec(sse_event(), 0..8),
        line_end in prop::sample::select(vec!["\n", "\r\n", "\r"]),
        bom in any::<bool>(),
        cuts in prop::collection::vec(any::<usize>(), 0..12),
    ) {
        let mut wire = Vec::new();
        if bom {
            wire.extend_from_slice("\u{feff}".as_bytes());
        }
        wire.extend_from_slice(b": comment\n\n");
        for e in &events {
            write_event(&mut wire, e.event.as_deref(), &e.data);
        }
        let wire = String::from_utf8(wire).unwrap().replace('\n', line_end).into_bytes();
        let whole = SseParser::new().push(&wire);
        prop_assert_eq!(&whole, &events);
        let mut parser = SseParser::new();
        let chunked: Vec<SseEvent> = split(&wire, &cuts).iter().flat_map(|c| parser.push(c)).collect();
        prop_assert_eq!(chunked, events);
    }

    #[test]
    fn openai_encoder_writes_well_formed_streams(events in stream_events(), include_usage in any::<bool>()) {
        let mut enc = openai::StreamEncoder::new(include_usage);
        let mut out = Vec::new();
        for e in &events {
            enc.event(e, &mut out);
        }
        let parsed = SseParser::new().push(&out);
        prop_assert!(!parsed.is_empty());
        let (last, rest) = parsed.split_last().unwrap();
        prop_assert_eq!(last.data.as_str(), "[DONE]");
        for (i, e) in rest.iter().enumerate() {
            prop_assert_eq!(e.event.as_deref(), None);
            let v: Value = serde_json::from_str(&e.data).map_err(|err| TestCaseError::fail(format!("{err}: {}", e.data)))?;
            prop_assert_eq!(&v["object"], "chat.completion.chunk");
            let is_usage_chunk = v["choices"].as_array().is_some_and(Vec::is_empty);
            prop_assert_eq!(is_usage_chunk, include_usage && i == rest.len() - 1, "{}", e.data);
        }
        // Re-decoding gives back the text and the tool-call arguments.
        let mut dec = openai::StreamDecoder::new();
        let back: Vec<StreamEvent> = parsed.iter().flat_map(|e| dec.event(e).unwrap()).collect();
        let text = |evs: &[StreamEvent]| -> String {
            evs.iter().filter_map(|e| if let StreamEvent::TextDelta(t) = e { Some(t.as_str()) } else { None }).collect()
        };
        prop_assert_eq!(text(&back), text(&events));
    }

    #[test]
    fn anthropic_encoder_writes_well_formed_streams(events in stream_events()) {
        let mut enc = anthropic::StreamEncoder::new();
        let mut out = Vec::new();
        for e in &events {
            enc.event(e, &mut out);
        }
        let parsed = SseParser::new().push(&out);
        let types: Vec<String> = parsed
            .iter()
            .map(|e| {
                let v: Value = serde_json::from_str(&e.data).unwrap();
                let t = v["type"].as_str().unwrap().to_owned();
                assert_eq!(e.event.as_deref(), Some(t.as_str()), "event name and data type differ");
                t
            })
            .collect();
        prop_assert_eq!(types.first().map(String::as_str), Some("message_start"));
        prop_assert_eq!(types.iter().filter(|t| *t == "message_start").count(), 1);
        prop_assert_eq!(&types[types.len() - 2..], &["message_delta".to_owned(), "message_stop".to_owned()][..]);
        prop_assert_eq!(types.iter().filter(|t| *t == "message_stop").count(), 1);
        // Blocks open one at a time, close in order, and deltas target a
        // started block of the right kind.
        let mut open: Option<(u64, String)> = None;
        let mut started: Vec<(u64, String)> = Vec::new();
        for e in &parsed {
            let v: Value = serde_json::from_str(&e.data).unwrap();
            match v["type"].as_str().unwrap() {
                "content_block_start" => {
                    prop_assert!(open.is_none(), "block opened while another is open");
                    let index = v["index"].as_u64().unwrap();
                    prop_assert_eq!(index, started.len() as u64, "block indices count from 0");
                    let kind = v["content_block"]["type"].as_str().unwrap().to_owned();
                    open = Some((index, kind.clone()));
                    started.push((index, kind));
                }
                "content_block_stop" => {
                    let (index, _) = open.take().expect("stop without an open block");
                    prop_assert_eq!(v["index"].as_u64(), Some(index));
                }
                "content_block_delta" => {
                    let index = v["index"].as_u64().unwrap();
                    let kind = &started.iter().find(|(i, _)| *i == index).expect("delta for a block never started").1;
                    let expected = if kind == "text" { "text_delta" } else { "input_json_delta" };
                    prop_assert_eq!(v["delta"]["type"].as_str(), Some(expected));
                }
                "message_delta" => prop_assert!(open.is_none(), "message_delta with a block open"),
                _ => {}
            }
        }
        prop_assert!(open.is_none());
    }
}

/// With the decoder's real output (each call's deltas follow its start),
/// every delta goes to the block that is open.
#[test]
fn anthropic_encoder_deltas_target_the_open_block_for_decoded_streams() {
    for transcript in [crate::stream::OPENAI_TEXT, crate::stream::OPENAI_TOOLS] {
        let out =
            crate::util::encode_anthropic_stream(&crate::util::decode_openai_stream(transcript));
        let mut open = None;
        for e in SseParser::new().push(out.as_bytes()) {
            let v: Value = serde_json::from_str(&e.data).unwrap();
            match v["type"].as_str().unwrap() {
                "content_block_start" => open = v["index"].as_u64(),
                "content_block_stop" => open = None,
                "content_block_delta" => assert_eq!(v["index"].as_u64(), open, "{}", e.data),
                _ => {}
            }
        }
    }
}

/// A BOM split across chunks is still stripped, and an empty chunk after a
/// `\r` does not make the following `\n` a second line end.
#[test]
fn sse_parser_edge_chunkings() {
    let wire = "\u{feff}data: a\r\n\r\nevent: e\r\ndata: b\r\n\r\n".as_bytes();
    let expected = vec![
        SseEvent {
            event: None,
            data: "a".into(),
        },
        SseEvent {
            event: Some("e".into()),
            data: "b".into(),
        },
    ];
    for i in 0..=wire.len() {
        let mut p = SseParser::new();
        let mut got = p.push(&wire[..i]);
        got.extend(p.push(&[]));
        got.extend(p.push(&wire[i..]));
        assert_eq!(got, expected, "split at {i}");
    }
}
