//! Upstream stream bytes → internal events → the client's stream, in every
//! pairing of keel's two stream decoders and two stream encoders, the way
//! `keel-providers/src/http.rs` and `keel-server/src/stream.rs` drive them.
//!
//! Input layout: byte 0 holds options (bit 0: the OpenAI client asked for
//! `include_usage`; bit 1: an Anthropic upstream answers a structured-output
//! request, so `StructuredStream` maps the forced tool named
//! `structured_output` back to text); the rest is the upstream's body: SSE,
//! or a whole JSON answer (an upstream that answered a stream request with
//! a whole body is turned into events with `ChatResponse::to_events`).
//!
//! Invariants:
//! - nothing panics;
//! - the decoders (and `StructuredStream` after them) keep `StreamEvent`'s
//!   contract: tool calls are numbered from 0 in the order they start, and
//!   arguments follow their call's start;
//! - every encoded stream is UTF-8 SSE that ends on an event boundary, and
//!   every event's data is JSON (or OpenAI's `[DONE]`);
//! - OpenAI streams end with `[DONE]`, once, and are chunks (or one error
//!   object); with `include_usage`, a stream that ended well has the usage
//!   chunk just before `[DONE]`;
//! - Anthropic streams: each event's name is its data's `type`; one
//!   `message_start`, first; blocks open one at a time, stop in order, and
//!   deltas go to a started block of their kind; a stream that ended well
//!   ends `message_delta`, `message_stop` with no block open; one that
//!   failed ends with `error`;
//! - decoding keel's own output again gives back the text, and each tool
//!   call's arguments, that went in;
//! - the assembled answer (what the cache stores and replays) has the
//!   stream's text and each tool call's arguments, encodes into bodies
//!   keel's decoders read back with the same text and tool calls, and
//!   `to_events` → assemble gives it back unchanged.

#![no_main]

mod common;

use keel_protocol::chat::{Assembler, ChatResponse, FinishReason, StreamEvent, Usage};
use keel_protocol::sse::{SseEvent, SseParser};
use keel_protocol::{StreamError, WireError, anthropic, openai};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

use common::parse_written_sse;

const FORCED_TOOL: &str = "structured_output";

fuzz_target!(|data: &[u8]| {
    let Some((&flags, body)) = data.split_first() else {
        return;
    };
    let include_usage = flags & 1 != 0;
    let structured = flags & 2 != 0;

    let sse = SseParser::new().push(body);
    for upstream in [Upstream::OpenAi, Upstream::Anthropic] {
        let (events, end) = decode_upstream(upstream, &sse, structured);
        translate(&events, &end, include_usage);
        if let End::Done = end {
            check_assembled(&events);
        }
    }
    // A whole answer where a stream was asked for.
    for resp in [
        openai::decode_response(body),
        anthropic::decode_response(body),
    ]
    .into_iter()
    .flatten()
    {
        let events = resp.to_events();
        translate(&events, &End::Done, include_usage);
        check_assembled(&events);
    }
});

#[derive(Debug, Clone, Copy)]
enum Upstream {
    OpenAi,
    Anthropic,
}

/// How the upstream stream ended.
#[derive(Debug)]
enum End {
    Done,
    Failed(StreamError),
    /// The body ended before a terminal event.
    Cut,
}

/// What `keel-providers/src/http.rs` does: decode event by event until the
/// first error or `Done`; events after `Done` are dropped.
fn decode_upstream(
    upstream: Upstream,
    sse: &[SseEvent],
    structured: bool,
) -> (Vec<StreamEvent>, End) {
    let mut oa = openai::StreamDecoder::new();
    let mut an = anthropic::StreamDecoder::new();
    // keel-providers/src/anthropic/stream.rs: only Anthropic upstreams are
    // asked for a forced tool.
    let mut map = (structured && matches!(upstream, Upstream::Anthropic))
        .then(|| anthropic::StructuredStream::new(FORCED_TOOL.to_owned()));
    let mut out = Vec::new();
    let mut calls = 0;
    let mut mapped_calls = 0;
    for ev in sse {
        let decoded = match upstream {
            Upstream::OpenAi => oa.event(ev),
            Upstream::Anthropic => an.event(ev),
        };
        match decoded {
            Err(e) => return (out, End::Failed(e)),
            Ok(events) => {
                let who = format!("{upstream:?} StreamDecoder");
                check_indices(&who, &events, &mut calls);
                for e in events {
                    let e = match &mut map {
                        Some(m) => match m.map(e) {
                            Some(e) => e,
                            None => continue,
                        },
                        None => e,
                    };
                    if e == StreamEvent::Done {
                        return (out, End::Done);
                    }
                    if map.is_some() {
                        let who = format!("StructuredStream after the {upstream:?} StreamDecoder");
                        check_indices(&who, std::slice::from_ref(&e), &mut mapped_calls);
                    }
                    out.push(e);
                }
            }
        }
    }
    (out, End::Cut)
}

/// `StreamEvent::ToolCallStart`'s contract: "`index` counts tool calls from
/// 0 in this answer" (what `chat::Assembler`, the cache's copy of a streamed
/// answer, relies on); a delta belongs to a call already started.
fn check_indices(who: &str, events: &[StreamEvent], calls: &mut u32) {
    for e in events {
        match e {
            StreamEvent::ToolCallStart { index, .. } => {
                assert_eq!(
                    *index, *calls,
                    "{who}: tool call #{calls} of the answer has index {index}: {e:?}"
                );
                *calls += 1;
            }
            StreamEvent::ToolCallDelta { index, .. } => assert!(
                *index < *calls,
                "{who}: arguments for a call never started: {e:?}"
            ),
            _ => {}
        }
    }
}

/// What `keel-server/src/stream.rs` does with the events, for each client
/// protocol, then the checks on what it wrote.
fn translate(events: &[StreamEvent], end: &End, include_usage: bool) {
    let mut oa = openai::StreamEncoder::new(include_usage);
    let mut an = anthropic::StreamEncoder::new();
    let mut oa_out = Vec::new();
    let mut an_out = Vec::new();
    let mut usage: Option<Usage> = None;
    let mut finished = false;
    let mut saw_tool_call = false;
    let mut fed = Vec::new();
    for ev in events {
        let mut ev = ev.clone();
        match &mut ev {
            // The end: what follows is the server's tail below.
            StreamEvent::Done => break,
            StreamEvent::Usage(u) => {
                usage = Some(*u);
                continue;
            }
            StreamEvent::Start {
                created,
                input_tokens,
                ..
            } => {
                if *created == 0 {
                    *created = 1_700_000_000;
                }
                if input_tokens.is_none_or(|n| n == 0) {
                    *input_tokens = Some(7);
                }
            }
            StreamEvent::Finish(_) => finished = true,
            StreamEvent::ToolCallStart { .. } => saw_tool_call = true,
            _ => {}
        }
        oa.event(&ev, &mut oa_out);
        an.event(&ev, &mut an_out);
        fed.push(ev);
    }
    let ended_well = matches!(end, End::Done);
    if ended_well {
        let mut tail = Vec::new();
        if !finished {
            tail.push(StreamEvent::Finish(if saw_tool_call {
                FinishReason::ToolCalls
            } else {
                FinishReason::Stop
            }));
        }
        tail.push(StreamEvent::Usage(usage.unwrap_or(Usage {
            input_tokens: 7,
            output_tokens: 1,
            cached_input_tokens: 0,
        })));
        tail.push(StreamEvent::Done);
        for ev in &tail {
            oa.event(ev, &mut oa_out);
            an.event(ev, &mut an_out);
        }
        fed.extend(tail);
    } else {
        let message = match end {
            End::Failed(e) => e.to_string(),
            _ => "the stream ended before its terminal event".to_owned(),
        };
        let err = WireError {
            status: 502,
            message,
            param: None,
            code: Some("upstream_error".to_owned()),
        };
        oa.error(&err, &mut oa_out);
        an.error(&err, &mut an_out);
    }
    check_openai(&oa_out, &fed, ended_well, include_usage);
    check_anthropic(&an_out, &fed, ended_well);
}

fn text_of(events: &[StreamEvent]) -> String {
    events
        .iter()
        .filter_map(|e| match e {
            StreamEvent::TextDelta(t) => Some(t.as_str()),
            _ => None,
        })
        .collect()
}

/// Each tool call's arguments, in the order the calls started.
fn calls_of(events: &[StreamEvent]) -> Vec<String> {
    let mut order: Vec<(u32, String)> = Vec::new();
    for e in events {
        match e {
            StreamEvent::ToolCallStart { index, .. } => order.push((*index, String::new())),
            StreamEvent::ToolCallDelta { index, arguments } => {
                if let Some((_, args)) = order.iter_mut().find(|(i, _)| i == index) {
                    args.push_str(arguments);
                }
            }
            _ => {}
        }
    }
    order.into_iter().map(|(_, a)| a).collect()
}

fn check_openai(out: &[u8], fed: &[StreamEvent], ended_well: bool, include_usage: bool) {
    let parsed = parse_written_sse(out, "openai stream");
    let Some((last, rest)) = parsed.split_last() else {
        panic!("openai stream is empty");
    };
    assert_eq!(
        last.data, "[DONE]",
        "openai stream does not end with [DONE]"
    );
    for (i, e) in rest.iter().enumerate() {
        assert_eq!(e.event, None, "openai stream has a named event: {e:?}");
        assert_ne!(e.data, "[DONE]", "[DONE] before the end");
        let v: Value = serde_json::from_str(&e.data)
            .unwrap_or_else(|err| panic!("openai stream data is not JSON ({err}): {:?}", e.data));
        if v.get("error").is_some() {
            assert!(
                !ended_well && i == rest.len() - 1,
                "error chunk in a good stream"
            );
            continue;
        }
        assert_eq!(v["object"], "chat.completion.chunk", "{}", e.data);
        let usage_chunk = v["choices"].as_array().is_some_and(Vec::is_empty);
        assert_eq!(
            usage_chunk,
            ended_well && include_usage && i == rest.len() - 1,
            "usage chunk misplaced: {}",
            e.data
        );
    }
    // Reading keel's own stream back.
    let mut dec = openai::StreamDecoder::new();
    let mut back = Vec::new();
    for e in &parsed {
        match dec.event(e) {
            Ok(evs) => back.extend(evs),
            Err(StreamError::Upstream { .. }) if !ended_well => break,
            Err(err) => panic!("keel's openai stream does not decode: {err}: {:?}", e.data),
        }
    }
    assert_eq!(text_of(&back), text_of(fed), "openai stream: text changed");
    assert_eq!(
        calls_of(&back),
        calls_of(fed),
        "openai stream: tool arguments changed"
    );
}

fn check_anthropic(out: &[u8], fed: &[StreamEvent], ended_well: bool) {
    let parsed = parse_written_sse(out, "anthropic stream");
    let types: Vec<String> = parsed
        .iter()
        .map(|e| {
            let v: Value = serde_json::from_str(&e.data)
                .unwrap_or_else(|err| panic!("anthropic data is not JSON ({err}): {:?}", e.data));
            let t = v["type"].as_str().unwrap_or_default().to_owned();
            assert_eq!(
                e.event.as_deref(),
                Some(t.as_str()),
                "event name and type differ: {e:?}"
            );
            t
        })
        .collect();
    let starts = types.iter().filter(|t| *t == "message_start").count();
    if ended_well {
        assert_eq!(
            types.first().map(String::as_str),
            Some("message_start"),
            "{types:?}"
        );
        assert_eq!(starts, 1, "{types:?}");
        assert!(
            types.ends_with(&["message_delta".to_owned(), "message_stop".to_owned()]),
            "{types:?}"
        );
        assert_eq!(
            types.iter().filter(|t| *t == "message_stop").count(),
            1,
            "{types:?}"
        );
    } else {
        assert_eq!(types.last().map(String::as_str), Some("error"), "{types:?}");
        assert!(starts <= 1, "{types:?}");
        assert!(!types.iter().any(|t| t == "message_stop"), "{types:?}");
        if starts == 1 {
            assert_eq!(
                types.first().map(String::as_str),
                Some("message_start"),
                "{types:?}"
            );
        }
    }
    let mut open: Option<u64> = None;
    let mut started: Vec<(u64, String)> = Vec::new();
    for e in &parsed {
        let v: Value = serde_json::from_str(&e.data).unwrap_or_default();
        match v["type"].as_str().unwrap_or_default() {
            "content_block_start" => {
                assert!(open.is_none(), "block opened while another is open");
                let index = v["index"].as_u64().unwrap_or(u64::MAX);
                assert_eq!(index, started.len() as u64, "block indices count from 0");
                let kind = v["content_block"]["type"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                assert!(kind == "text" || kind == "tool_use", "{}", e.data);
                open = Some(index);
                started.push((index, kind));
            }
            "content_block_stop" => {
                let index = open.take();
                assert!(index.is_some(), "stop without an open block");
                assert_eq!(v["index"].as_u64(), index);
            }
            "content_block_delta" => {
                let index = v["index"].as_u64().unwrap_or(u64::MAX);
                let Some((_, kind)) = started.iter().find(|(i, _)| *i == index) else {
                    panic!("delta for a block never started: {}", e.data);
                };
                let expected = if kind == "text" {
                    "text_delta"
                } else {
                    "input_json_delta"
                };
                assert_eq!(v["delta"]["type"].as_str(), Some(expected), "{}", e.data);
            }
            "message_delta" => assert!(open.is_none(), "message_delta with a block open"),
            _ => {}
        }
    }
    // Reading keel's own stream back.
    let mut dec = anthropic::StreamDecoder::new();
    let mut back = Vec::new();
    for e in &parsed {
        match dec.event(e) {
            Ok(evs) => back.extend(evs),
            Err(StreamError::Upstream { .. }) if !ended_well => break,
            Err(err) => panic!(
                "keel's anthropic stream does not decode: {err}: {:?}",
                e.data
            ),
        }
    }
    assert_eq!(
        text_of(&back),
        text_of(fed),
        "anthropic stream: text changed"
    );
    assert_eq!(
        calls_of(&back),
        calls_of(fed),
        "anthropic stream: tool arguments changed"
    );
}

/// What the cache stores for a stream that ended well, encoded as a whole
/// answer in both protocols and read back.
fn check_assembled(events: &[StreamEvent]) {
    let mut asm = Assembler::default();
    for e in events {
        asm.push(e);
    }
    let resp = asm.finish();
    // The cache replays this answer for the same request: it must be the
    // one that was streamed.
    assert_eq!(
        resp.text,
        text_of(events),
        "assembled answer: text differs from the stream's"
    );
    let args: Vec<String> = resp
        .tool_calls
        .iter()
        .map(|c| c.arguments.clone())
        .collect();
    assert_eq!(
        args,
        calls_of(events),
        "assembled answer: tool arguments differ from the stream's"
    );
    let mut again = Assembler::default();
    for e in resp.to_events() {
        again.push(&e);
    }
    assert_eq!(
        again.finish(),
        resp,
        "to_events → assemble changed the answer"
    );

    let oa = openai::encode_response(&resp);
    let back = openai::decode_response(&oa).unwrap_or_else(|e| {
        panic!(
            "keel's openai answer does not decode: {e}: {}",
            String::from_utf8_lossy(&oa)
        )
    });
    same_answer(&back, &resp, "openai");
    let an = anthropic::encode_response(&resp);
    let back = anthropic::decode_response(&an).unwrap_or_else(|e| {
        panic!(
            "keel's anthropic answer does not decode: {e}: {}",
            String::from_utf8_lossy(&an)
        )
    });
    same_answer(&back, &resp, "anthropic");
}

fn same_answer(back: &ChatResponse, resp: &ChatResponse, what: &str) {
    assert_eq!(back.text, resp.text, "{what} answer: text changed");
    assert_eq!(
        back.tool_calls.len(),
        resp.tool_calls.len(),
        "{what} answer: tool calls lost"
    );
    for (b, r) in back.tool_calls.iter().zip(&resp.tool_calls) {
        assert_eq!(
            (&b.id, &b.name),
            (&r.id, &r.name),
            "{what} answer: tool call changed"
        );
    }
    assert_eq!(
        (&back.id, &back.model),
        (&resp.id, &resp.model),
        "{what} answer: id/model changed"
    );
}
