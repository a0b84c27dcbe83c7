//! Upstream SSE transcripts, written as the real servers send them, decoded
//! into internal events and re-encoded in the other protocol. The produced
//! SSE text is snapshotted, then decoded again and compared with the source.

use insta::assert_snapshot;
use keel_protocol::chat::{FinishReason, StreamEvent, ToolCall, Usage};
use keel_protocol::sse::SseEvent;
use keel_protocol::{StreamError, WireError, anthropic, openai};

use crate::util::{
    Assembled, args_json, assemble, decode_anthropic_stream, decode_openai_stream,
    encode_anthropic_stream, encode_openai_stream, json,
};

/// gpt-4o with `stream_options.include_usage`: `usage: null` on every chunk,
/// then a usage chunk with no choices.
pub const OPENAI_TEXT: &str = r#"data: {"id":"chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG","object":"chat.completion.chunk","created":1741570283,"model":"gpt-4o-2024-08-06","service_tier":"default","system_fingerprint":"fp_eb9dce56a8","choices":[{"index":0,"delta":{"role":"assistant","content":"","refusal":null},"logprobs":null,"finish_reason":null}],"usage":null}

data: {"id":"chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG","object":"chat.completion.chunk","created":1741570283,"model":"gpt-4o-2024-08-06","service_tier":"default","system_fingerprint":"fp_eb9dce56a8","choices":[{"index":0,"delta":{"content":"Hello"},"logprobs":null,"finish_reason":null}],"usage":null}

data: {"id":"chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG","object":"chat.completion.chunk","created":1741570283,"model":"gpt-4o-2024-08-06","service_tier":"default","system_fingerprint":"fp_eb9dce56a8","choices":[{"index":0,"delta":{"content":"! How can I"},"logprobs":null,"finish_reason":null}],"usage":null}

data: {"id":"chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG","object":"chat.completion.chunk","created":1741570283,"model":"gpt-4o-2024-08-06","service_tier":"default","system_fingerprint":"fp_eb9dce56a8","choices":[{"index":0,"delta":{"content":" assist you \"today\"?\n"},"logprobs":null,"finish_reason":null}],"usage":null}

data: {"id":"chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG","object":"chat.completion.chunk","created":1741570283,"model":"gpt-4o-2024-08-06","service_tier":"default","system_fingerprint":"fp_eb9dce56a8","choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}],"usage":null}

data: {"id":"chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG","object":"chat.completion.chunk","created":1741570283,"model":"gpt-4o-2024-08-06","service_tier":"default","system_fingerprint":"fp_eb9dce56a8","choices":[],"usage":{"prompt_tokens":19,"completion_tokens":10,"total_tokens":29,"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}}}

data: [DONE]

"#;

/// Parallel tool calls, arguments in fragments (OpenAI splits anywhere,
/// including inside strings and escapes), then the usage chunk.
pub const OPENAI_TOOLS: &str = r#"data: {"id":"chatcmpl-9lB2","object":"chat.completion.chunk","created":1721075653,"model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_8b761cb050","choices":[{"index":0,"delta":{"role":"assistant","content":null,"tool_calls":[{"index":0,"id":"call_DdmO9pD3xa9XTPNJ32zg2hcA","type":"function","function":{"name":"get_weather","arguments":""}}],"refusal":null},"logprobs":null,"finish_reason":null}],"usage":null}

data: {"id":"chatcmpl-9lB2","object":"chat.completion.chunk","created":1721075653,"model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_8b761cb050","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\""}}]},"logprobs":null,"finish_reason":null}],"usage":null}

data: {"id":"chatcmpl-9lB2","object":"chat.completion.chunk","created":1721075653,"model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_8b761cb050","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"city"}}]},"logprobs":null,"finish_reason":null}],"usage":null}

data: {"id":"chatcmpl-9lB2","object":"chat.completion.chunk","created":1721075653,"model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_8b761cb050","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"\":\"Sa"}}]},"logprobs":null,"finish_reason":null}],"usage":null}

data: {"id":"chatcmpl-9lB2","object":"chat.completion.chunk","created":1721075653,"model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_8b761cb050","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"o Paulo\\u00e9\"}"}}]},"logprobs":null,"finish_reason":null}],"usage":null}

data: {"id":"chatcmpl-9lB2","object":"chat.completion.chunk","created":1721075653,"model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_8b761cb050","choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"id":"call_9sl3wnaJqzFWvvZ7CMSahr6K","type":"function","function":{"name":"get_time","arguments":""}}]},"logprobs":null,"finish_reason":null}],"usage":null}

data: {"id":"chatcmpl-9lB2","object":"chat.completion.chunk","created":1721075653,"model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_8b761cb050","choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"function":{"arguments":"{\"tz\": \"America/"}}]},"logprobs":null,"finish_reason":null}],"usage":null}

data: {"id":"chatcmpl-9lB2","object":"chat.completion.chunk","created":1721075653,"model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_8b761cb050","choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"function":{"arguments":"Sao_Paulo\", \"n\": [1, 2.5, null]}"}}]},"logprobs":null,"finish_reason":null}],"usage":null}

data: {"id":"chatcmpl-9lB2","object":"chat.completion.chunk","created":1721075653,"model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_8b761cb050","choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"tool_calls"}],"usage":null}

data: {"id":"chatcmpl-9lB2","object":"chat.completion.chunk","created":1721075653,"model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_8b761cb050","choices":[],"usage":{"prompt_tokens":82,"completion_tokens":37,"total_tokens":119}}

data: [DONE]

"#;

/// claude-sonnet-4-5 text stream, with a ping, as the API sends it.
pub const ANTHROPIC_TEXT: &str = r#"event: message_start
data: {"type":"message_start","message":{"id":"msg_01XFDUDYJgAACzvnptvVoYEL","type":"message","role":"assistant","content":[],"model":"claude-sonnet-4-5-20250929","stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":25,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":1}}}

event: content_block_start
data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}

event: ping
data: {"type": "ping"}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hello"}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"! Ça va? \"日本\"\n"}}

event: content_block_stop
data: {"type":"content_block_stop","index":0}

event: message_delta
data: {"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":15}}

event: message_stop
data: {"type":"message_stop"}

"#;

/// Thinking, text, then a tool_use whose input arrives as `input_json_delta`
/// fragments (the first one empty, as the API sends it).
pub const ANTHROPIC_TOOLS: &str = r#"event: message_start
data: {"type":"message_start","message":{"id":"msg_014p7gG3wDgGV9EUtLvnow3U","type":"message","role":"assistant","model":"claude-sonnet-4-5-20250929","stop_sequence":null,"usage":{"input_tokens":472,"cache_creation_input_tokens":0,"cache_read_input_tokens":100,"output_tokens":2},"content":[],"stop_reason":null}}

event: content_block_start
data: {"type":"content_block_start","index":0,"content_block":{"type":"thinking","thinking":"","signature":""}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"The user wants the weather."}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"signature_delta","signature":"EqQBCgIYAhIM1gbcDa9GJwZA2b3h"}}

event: content_block_stop
data: {"type":"content_block_stop","index":0}

event: content_block_start
data: {"type":"content_block_start","index":1,"content_block":{"type":"text","text":""}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"text_delta","text":"Okay, let's check"}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"text_delta","text":" the weather."}}

event: content_block_stop
data: {"type":"content_block_stop","index":1}

event: ping
data: {"type": "ping"}

event: content_block_start
data: {"type":"content_block_start","index":2,"content_block":{"type":"tool_use","id":"toolu_01T1x1fJ34qAmk2tNTrN7Up6","name":"get_weather","input":{}}}

event: content_block_delta
data: {"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":""}}

event: content_block_delta
data: {"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":"{\"city\": \"San Fra"}}

event: content_block_delta
data: {"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":"ncisco, CA\", \"unit\": \"f"}}

event: content_block_delta
data: {"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":"ahrenheit\"}"}}

event: content_block_stop
data: {"type":"content_block_stop","index":2}

event: message_delta
data: {"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":89}}

event: message_stop
data: {"type":"message_stop"}

"#;

// ---- snapshots of the translated SSE ----

#[test]
fn openai_text_stream_to_anthropic() {
    assert_snapshot!(encode_anthropic_stream(&decode_openai_stream(OPENAI_TEXT)));
}

#[test]
fn openai_tool_stream_to_anthropic() {
    assert_snapshot!(encode_anthropic_stream(&decode_openai_stream(OPENAI_TOOLS)));
}

#[test]
fn anthropic_text_stream_to_openai_with_usage() {
    assert_snapshot!(encode_openai_stream(
        &decode_anthropic_stream(ANTHROPIC_TEXT),
        true
    ));
}

#[test]
fn anthropic_text_stream_to_openai_without_usage() {
    assert_snapshot!(encode_openai_stream(
        &decode_anthropic_stream(ANTHROPIC_TEXT),
        false
    ));
}

#[test]
fn anthropic_tool_stream_to_openai_with_usage() {
    assert_snapshot!(encode_openai_stream(
        &decode_anthropic_stream(ANTHROPIC_TOOLS),
        true
    ));
}

#[test]
fn stream_errors_in_each_protocol() {
    let err = WireError {
        status: 502,
        message: "upstream closed the stream".into(),
        param: None,
        code: Some("upstream_error".into()),
    };
    let mut openai_out = Vec::new();
    let mut enc = openai::StreamEncoder::new(true);
    enc.event(
        &StreamEvent::Start {
            id: "chatcmpl-1".into(),
            model: "m".into(),
            created: 1,
            input_tokens: None,
        },
        &mut openai_out,
    );
    enc.error(&err, &mut openai_out);
    let mut anthropic_out = Vec::new();
    let mut enc = anthropic::StreamEncoder::new();
    enc.event(
        &StreamEvent::Start {
            id: "msg_1".into(),
            model: "m".into(),
            created: 1,
            input_tokens: Some(3),
        },
        &mut anthropic_out,
    );
    enc.error(&WireError { status: 529, ..err }, &mut anthropic_out);
    assert_snapshot!(format!(
        "--- openai ---\n{}--- anthropic ---\n{}",
        String::from_utf8(openai_out).unwrap(),
        String::from_utf8(anthropic_out).unwrap()
    ));
}

// ---- decoded events and re-assembly ----

#[test]
fn openai_text_stream_decodes_to_the_non_stream_answer() {
    let events = decode_openai_stream(OPENAI_TEXT);
    let a = assemble(&events);
    assert_eq!(a.id, "chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG");
    assert_eq!(a.model, "gpt-4o-2024-08-06");
    assert_eq!(a.text, "Hello! How can I assist you \"today\"?\n");
    assert_eq!(a.finish, Some(FinishReason::Stop));
    assert_eq!(
        a.usage,
        Some(Usage {
            input_tokens: 19,
            output_tokens: 10,
            cached_input_tokens: 0,
        })
    );
    assert!(a.done);
    // The shape of a well-formed stream: Start, deltas, Finish, Usage, Done.
    assert!(matches!(
        events.first(),
        Some(StreamEvent::Start {
            created: 1741570283,
            ..
        })
    ));
    assert_eq!(
        &events[events.len() - 3..],
        &[
            StreamEvent::Finish(FinishReason::Stop),
            StreamEvent::Usage(Usage {
                input_tokens: 19,
                output_tokens: 10,
                cached_input_tokens: 0,
            }),
            StreamEvent::Done,
        ]
    );
}

#[test]
fn openai_tool_stream_reassembles_arguments() {
    let a = assemble(&decode_openai_stream(OPENAI_TOOLS));
    assert_eq!(a.text, "");
    assert_eq!(a.finish, Some(FinishReason::ToolCalls));
    assert_eq!(
        a.usage,
        Some(Usage {
            input_tokens: 82,
            output_tokens: 37,
            cached_input_tokens: 0,
        })
    );
    assert_eq!(
        args_json(&a.tool_calls),
        vec![
            (
                "call_DdmO9pD3xa9XTPNJ32zg2hcA".into(),
                "get_weather".into(),
                serde_json::json!({"city": "Sao Pauloé"})
            ),
            (
                "call_9sl3wnaJqzFWvvZ7CMSahr6K".into(),
                "get_time".into(),
                serde_json::json!({"tz": "America/Sao_Paulo", "n": [1, 2.5, null]})
            ),
        ]
    );
}

/// Found by the `stream_translate` fuzz target: an upstream that numbers
/// its tool calls from 1 (or out of order) must still give calls counted
/// from 0 in the order they start, or the cached copy of the answer loses
/// their arguments.
#[test]
fn openai_tool_calls_are_numbered_from_zero_whatever_the_upstream_says() {
    let chunk = |index: u32, id: &str, args: &str| {
        format!(
            r#"data: {{"id":"c","model":"m","choices":[{{"index":0,"delta":{{"tool_calls":[{{"index":{index},"id":"{id}","type":"function","function":{{"name":"f","arguments":"{args}"}}}}]}}}}]}}"#
        ) + "\n\n"
    };
    let body =
        chunk(7, "second", "") + &chunk(3, "first", "") + &chunk(7, "", "{}") + "data: [DONE]\n\n";
    let events = decode_openai_stream(&body);
    let starts: Vec<(u32, String)> = events
        .iter()
        .filter_map(|e| match e {
            StreamEvent::ToolCallStart { index, id, .. } => Some((*index, id.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(starts, [(0, "second".to_owned()), (1, "first".to_owned())]);
    assert!(events.contains(&StreamEvent::ToolCallDelta {
        index: 0,
        arguments: "{}".to_owned()
    }));
}

#[test]
fn anthropic_tool_stream_reassembles_arguments_and_counts_cached_input() {
    let events = decode_anthropic_stream(ANTHROPIC_TOOLS);
    assert!(
        matches!(
            &events[0],
            StreamEvent::Start {
                input_tokens: Some(572),
                ..
            }
        ),
        "{:?}",
        events[0]
    );
    let a = assemble(&events);
    assert_eq!(a.text, "Okay, let's check the weather.");
    assert_eq!(a.finish, Some(FinishReason::ToolCalls));
    assert_eq!(
        a.usage,
        Some(Usage {
            input_tokens: 572,
            output_tokens: 89,
            cached_input_tokens: 100,
        })
    );
    assert_eq!(
        args_json(&a.tool_calls),
        vec![(
            "toolu_01T1x1fJ34qAmk2tNTrN7Up6".into(),
            "get_weather".into(),
            serde_json::json!({"city": "San Francisco, CA", "unit": "fahrenheit"}),
        )]
    );
}

/// Since 2025 `message_delta.usage` is cumulative and carries the input and
/// cache counts too; the cached tokens must not be lost when it does.
#[test]
fn anthropic_message_delta_with_cumulative_input_usage() {
    let transcript = r#"event: message_start
data: {"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","content":[],"model":"claude-sonnet-4-5","stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":10,"cache_creation_input_tokens":0,"cache_read_input_tokens":2000,"output_tokens":1}}}

event: content_block_start
data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi"}}

event: content_block_stop
data: {"type":"content_block_stop","index":0}

event: message_delta
data: {"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"input_tokens":10,"cache_creation_input_tokens":0,"cache_read_input_tokens":2000,"output_tokens":7}}

event: message_stop
data: {"type":"message_stop"}

"#;
    let a = assemble(&decode_anthropic_stream(transcript));
    assert_eq!(
        a.usage,
        Some(Usage {
            input_tokens: 2010,
            output_tokens: 7,
            cached_input_tokens: 2000,
        })
    );
}

/// OpenAI upstream → Anthropic client → (an Anthropic SDK reading it) gives
/// the same answer as reading the upstream directly.
#[test]
fn openai_streams_survive_translation_to_anthropic() {
    for transcript in [OPENAI_TEXT, OPENAI_TOOLS] {
        let direct = assemble(&decode_openai_stream(transcript));
        let translated = encode_anthropic_stream(&decode_openai_stream(transcript));
        let back = assemble(&decode_anthropic_stream(&translated));
        assert_same_answer(&direct, &back);
    }
}

#[test]
fn anthropic_streams_survive_translation_to_openai() {
    for transcript in [ANTHROPIC_TEXT, ANTHROPIC_TOOLS] {
        let direct = assemble(&decode_anthropic_stream(transcript));
        let translated = encode_openai_stream(&decode_anthropic_stream(transcript), true);
        let back = assemble(&decode_openai_stream(&translated));
        assert_same_answer(&direct, &back);
    }
}

#[test]
fn without_include_usage_the_openai_client_gets_no_usage_chunk() {
    let translated = encode_openai_stream(&decode_anthropic_stream(ANTHROPIC_TEXT), false);
    let back = assemble(&decode_openai_stream(&translated));
    assert_eq!(back.usage, None);
    assert!(back.done);
    assert!(!translated.contains("\"usage\""));
}

fn assert_same_answer(a: &Assembled, b: &Assembled) {
    assert_eq!(a.id, b.id);
    assert_eq!(a.model, b.model);
    assert_eq!(a.text, b.text);
    assert_eq!(args_json(&a.tool_calls), args_json(&b.tool_calls));
    assert_eq!(a.finish, b.finish);
    assert_eq!(a.usage, b.usage);
    assert!(a.done && b.done);
}

/// The translated stream carries the same text, byte for byte, as the
/// non-stream answer the same upstream would have given.
#[test]
fn streamed_text_equals_non_stream_text() {
    let non_stream = openai::decode_response(
        br#"{"id":"chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG","object":"chat.completion","created":1741570283,"model":"gpt-4o-2024-08-06","choices":[{"index":0,"message":{"role":"assistant","content":"Hello! How can I assist you \"today\"?\n"},"finish_reason":"stop"}],"usage":{"prompt_tokens":19,"completion_tokens":10,"total_tokens":29}}"#,
    )
    .unwrap();
    let streamed = assemble(&decode_openai_stream(OPENAI_TEXT));
    assert_eq!(streamed.text, non_stream.text);
    assert_eq!(streamed.finish, Some(non_stream.finish_reason));
    assert_eq!(streamed.usage, Some(non_stream.usage));

    let non_stream = anthropic::decode_response(
        br#"{"id":"msg_014p7gG3wDgGV9EUtLvnow3U","type":"message","role":"assistant","model":"claude-sonnet-4-5-20250929","content":[{"type":"thinking","thinking":"The user wants the weather.","signature":"EqQB"},{"type":"text","text":"Okay, let's check the weather."},{"type":"tool_use","id":"toolu_01T1x1fJ34qAmk2tNTrN7Up6","name":"get_weather","input":{"city":"San Francisco, CA","unit":"fahrenheit"}}],"stop_reason":"tool_use","stop_sequence":null,"usage":{"input_tokens":472,"cache_read_input_tokens":100,"output_tokens":89}}"#,
    )
    .unwrap();
    let streamed = assemble(&decode_anthropic_stream(ANTHROPIC_TOOLS));
    assert_eq!(streamed.text, non_stream.text);
    assert_eq!(
        args_json(&streamed.tool_calls),
        args_json(&non_stream.tool_calls)
    );
    assert_eq!(streamed.finish, Some(non_stream.finish_reason));
    assert_eq!(streamed.usage, Some(non_stream.usage));
}

fn finish_stream(reason: FinishReason) -> Vec<StreamEvent> {
    vec![
        StreamEvent::Start {
            id: "x".into(),
            model: "m".into(),
            created: 1,
            input_tokens: Some(1),
        },
        StreamEvent::TextDelta("t".into()),
        StreamEvent::Finish(reason),
        StreamEvent::Usage(Usage {
            input_tokens: 1,
            output_tokens: 1,
            cached_input_tokens: 0,
        }),
        StreamEvent::Done,
    ]
}

#[test]
fn stream_finish_reasons_map_both_ways() {
    let table = [
        (FinishReason::Stop, "stop", "end_turn"),
        (FinishReason::Length, "length", "max_tokens"),
        (FinishReason::ToolCalls, "tool_calls", "tool_use"),
        (FinishReason::ContentFilter, "content_filter", "refusal"),
    ];
    for (reason, openai_wire, anthropic_wire) in table {
        let events = finish_stream(reason);
        let o = encode_openai_stream(&events, false);
        assert!(
            o.contains(&format!("\"finish_reason\":\"{openai_wire}\"")),
            "{o}"
        );
        assert_eq!(assemble(&decode_openai_stream(&o)).finish, Some(reason));
        let a = encode_anthropic_stream(&events);
        assert!(
            a.contains(&format!("\"stop_reason\":\"{anthropic_wire}\"")),
            "{a}"
        );
        assert_eq!(assemble(&decode_anthropic_stream(&a)).finish, Some(reason));
    }
}

#[test]
fn upstream_error_events_become_stream_errors() {
    let mut d = anthropic::StreamDecoder::new();
    let ev = SseEvent {
        event: Some("error".into()),
        data: r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#
            .into(),
    };
    assert_eq!(
        d.event(&ev),
        Err(StreamError::Upstream {
            message: "Overloaded".into()
        })
    );
    let mut d = openai::StreamDecoder::new();
    let ev = SseEvent {
        event: None,
        data: r#"{"error":{"message":"The server had an error","type":"server_error","param":null,"code":null}}"#.into(),
    };
    assert_eq!(
        d.event(&ev),
        Err(StreamError::Upstream {
            message: "The server had an error".into()
        })
    );
    assert!(matches!(
        d.event(&SseEvent {
            event: None,
            data: "{not json".into()
        }),
        Err(StreamError::Malformed(_))
    ));
}

#[test]
fn anthropic_encoder_sends_one_tool_use_block_per_call() {
    let out = encode_anthropic_stream(&decode_openai_stream(OPENAI_TOOLS));
    let starts: Vec<serde_json::Value> = crate::util::sse_events(out.as_bytes())
        .iter()
        .filter(|e| e.event.as_deref() == Some("content_block_start"))
        .map(|e| json(e.data.as_bytes()))
        .collect();
    let blocks: Vec<(u64, ToolCall)> = starts
        .iter()
        .map(|s| {
            (
                s["index"].as_u64().unwrap(),
                ToolCall {
                    id: s["content_block"]["id"].as_str().unwrap().into(),
                    name: s["content_block"]["name"].as_str().unwrap().into(),
                    arguments: String::new(),
                },
            )
        })
        .collect();
    assert_eq!(blocks.len(), 2);
    assert_eq!((blocks[0].0, blocks[1].0), (0, 1));
}
