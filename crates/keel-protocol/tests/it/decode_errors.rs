//! Bodies that are not valid requests give a `DecodeError` naming the field
//! (its `param`), never a panic.

use keel_protocol::{DecodeError, anthropic, openai};
use serde_json::{Value, json};

fn openai_err(body: &Value) -> DecodeError {
    openai::decode_request(body.to_string().as_bytes()).unwrap_err()
}

fn anthropic_err(body: &Value) -> DecodeError {
    anthropic::decode_request(body.to_string().as_bytes()).unwrap_err()
}

fn user_hi() -> Value {
    json!([{"role": "user", "content": "hi"}])
}

#[track_caller]
fn assert_param(err: &DecodeError, param: &str) {
    assert_eq!(err.param.as_deref(), Some(param), "{err:?}");
    assert!(
        err.message.contains(param),
        "message does not name {param}: {}",
        err.message
    );
}

#[test]
fn malformed_json() {
    for body in [
        &b"{\"model\": "[..],
        b"",
        b"not json",
        b"{\"a\":1} trailing",
        b"\xff\xfe",
    ] {
        let e = openai::decode_request(body).unwrap_err();
        assert!(e.message.contains("not valid JSON"), "{e:?}");
        // A syntax error may name where it broke (`model` for `{"model": `).
        let e = anthropic::decode_request(body).unwrap_err();
        assert!(e.message.contains("not valid JSON"), "{e:?}");
        assert!(openai::decode_embeddings_request(body).is_err());
        assert!(openai::decode_response(body).is_err());
        assert!(anthropic::decode_response(body).is_err());
    }
}

#[test]
fn body_not_an_object() {
    for body in ["[]", "\"hi\"", "42", "null", "true"] {
        let e = openai::decode_request(body.as_bytes()).unwrap_err();
        assert!(e.message.contains("must be a JSON object"), "{e:?}");
        let e = anthropic::decode_request(body.as_bytes()).unwrap_err();
        assert!(e.message.contains("must be a JSON object"), "{e:?}");
        assert!(openai::decode_embeddings_request(body.as_bytes()).is_err());
    }
}

#[test]
fn missing_required_fields() {
    assert_param(&openai_err(&json!({"messages": user_hi()})), "model");
    assert_param(&openai_err(&json!({"model": "m"})), "messages");
    assert_param(
        &openai_err(&json!({"model": "m", "messages": []})),
        "messages",
    );
    assert_param(
        &anthropic_err(&json!({"max_tokens": 5, "messages": user_hi()})),
        "model",
    );
    assert_param(
        &anthropic_err(&json!({"model": "m", "messages": user_hi()})),
        "max_tokens",
    );
    assert_param(
        &anthropic_err(&json!({"model": "m", "max_tokens": 5})),
        "messages",
    );
    assert_param(
        &anthropic_err(&json!({"model": "m", "max_tokens": 5, "messages": []})),
        "messages",
    );
    assert_param(
        &openai_err(&json!({"model": "m", "messages": [{"content": "hi"}]})),
        "messages[0].role",
    );
    assert_param(
        &anthropic_err(&json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user"}]})),
        "messages.0.content",
    );
    assert_param(
        &openai_err(&json!({"model": "m", "messages": [{"role": "tool", "content": "r"}]})),
        "messages[0].tool_call_id",
    );
    assert_param(
        &anthropic_err(
            &json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": [{"type": "tool_result", "content": "x"}]}]}),
        ),
        "messages.0.content.0.tool_use_id",
    );
}

#[test]
fn wrong_types() {
    assert_param(
        &openai_err(&json!({"model": "m", "messages": "hi"})),
        "messages",
    );
    assert_param(
        &openai_err(&json!({"model": 4, "messages": user_hi()})),
        "model",
    );
    assert_param(
        &openai_err(&json!({"model": "m", "messages": user_hi(), "temperature": "hot"})),
        "temperature",
    );
    assert_param(
        &openai_err(&json!({"model": "m", "messages": user_hi(), "max_tokens": -1})),
        "max_tokens",
    );
    assert_param(
        &openai_err(&json!({"model": "m", "messages": user_hi(), "max_completion_tokens": "x"})),
        "max_completion_tokens",
    );
    assert_param(
        &openai_err(&json!({"model": "m", "messages": user_hi(), "stream": "yes"})),
        "stream",
    );
    assert_param(
        &openai_err(&json!({"model": "m", "messages": user_hi(), "stop": 3})),
        "stop",
    );
    assert_param(
        &openai_err(&json!({"model": "m", "messages": ["hi"]})),
        "messages[0]",
    );
    assert_param(
        &openai_err(&json!({"model": "m", "messages": [{"role": "user", "content": 5}]})),
        "messages[0].content",
    );
    assert_param(
        &openai_err(&json!({"model": "m", "messages": [{"role": "robot", "content": "x"}]})),
        "messages[0].role",
    );
    assert_param(
        &openai_err(
            &json!({"model": "m", "messages": [{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "input_audio", "input_audio": {}}]}]}),
        ),
        "messages[0].content[1].type",
    );
    assert_param(
        &openai_err(
            &json!({"model": "m", "messages": [{"role": "user", "content": [{"type": "text", "text": 5}]}]}),
        ),
        "messages[0].content[0].text",
    );
    // serde names a missing field's parent; the message names the field.
    let e = openai_err(
        &json!({"model": "m", "messages": [{"role": "assistant", "tool_calls": [{"id": "c"}]}]}),
    );
    assert_param(&e, "messages[0].tool_calls[0]");
    assert!(e.message.contains("`function`"), "{e:?}");
    assert_param(
        &openai_err(
            &json!({"model": "m", "messages": user_hi(), "tools": [{"type": "code_interpreter", "function": {"name": "f"}}]}),
        ),
        "tools[0].type",
    );
    let e =
        openai_err(&json!({"model": "m", "messages": user_hi(), "tools": [{"type": "function"}]}));
    assert_param(&e, "tools[0]");
    assert!(e.message.contains("`function`"), "{e:?}");
    assert_param(
        &openai_err(&json!({"model": "m", "messages": user_hi(), "tool_choice": "sometimes"})),
        "tool_choice",
    );
    assert_param(
        &openai_err(&json!({"model": "m", "messages": user_hi(), "tool_choice": 1})),
        "tool_choice",
    );
    assert_param(
        &openai_err(
            &json!({"model": "m", "messages": user_hi(), "response_format": {"type": "yaml"}}),
        ),
        "response_format.type",
    );
    assert_param(
        &openai_err(
            &json!({"model": "m", "messages": user_hi(), "response_format": {"type": "json_schema"}}),
        ),
        "response_format.json_schema",
    );
    assert_param(
        &openai_err(
            &json!({"model": "m", "messages": user_hi(), "stream_options": {"include_usage": "y"}}),
        ),
        "stream_options.include_usage",
    );

    let base = |extra: Value| {
        let mut b = json!({"model": "m", "max_tokens": 5, "messages": user_hi()});
        for (k, v) in extra.as_object().unwrap() {
            b[k] = v.clone();
        }
        b
    };
    assert_param(&anthropic_err(&base(json!({"messages": "hi"}))), "messages");
    assert_param(
        &anthropic_err(&base(json!({"max_tokens": "many"}))),
        "max_tokens",
    );
    assert_param(
        &anthropic_err(&base(json!({"temperature": "warm"}))),
        "temperature",
    );
    assert_param(&anthropic_err(&base(json!({"system": 3}))), "system");
    assert_param(
        &anthropic_err(&base(json!({"stop_sequences": "x"}))),
        "stop_sequences",
    );
    assert_param(
        &anthropic_err(&base(json!({"tool_choice": {"type": "sometimes"}}))),
        "tool_choice.type",
    );
    assert_param(
        &anthropic_err(&base(json!({"tool_choice": {"type": "tool"}}))),
        "tool_choice.type",
    );
    let e = anthropic_err(&base(json!({"tools": [{"description": "no name"}]})));
    assert_param(&e, "tools[0]");
    assert!(e.message.contains("`name`"), "{e:?}");
    assert_param(
        &anthropic_err(&base(
            json!({"messages": [{"role": "system", "content": "x"}]}),
        )),
        "messages.0.role",
    );
    assert_param(
        &anthropic_err(&base(json!({"messages": [{"role": "user", "content": 1}]}))),
        "messages.0.content",
    );
    assert_param(
        &anthropic_err(&base(
            json!({"messages": [{"role": "user", "content": [{"type": "document", "source": {}}]}]}),
        )),
        "messages.0.content.0.type",
    );
    assert_param(
        &anthropic_err(&base(
            json!({"messages": [{"role": "user", "content": [{"type": "tool_use", "id": "a", "name": "b", "input": {}}]}]}),
        )),
        "messages.0.content.0.type",
    );
    assert_param(
        &anthropic_err(&base(
            json!({"messages": [{"role": "user", "content": [{"type": "image", "source": {"type": "file", "file_id": "f"}}]}]}),
        )),
        "messages.0.content.0.source.type",
    );
    assert_param(
        &anthropic_err(&base(
            json!({"messages": [{"role": "user", "content": ["hi"]}]}),
        )),
        "messages.0.content.0",
    );
}

#[test]
fn n_other_than_one_is_refused() {
    let e = openai_err(&json!({"model": "m", "messages": user_hi(), "n": 2}));
    assert_param(&e, "n");
    assert!(
        openai::decode_request(
            json!({"model": "m", "messages": user_hi(), "n": 1})
                .to_string()
                .as_bytes()
        )
        .is_ok()
    );
}

#[test]
fn embeddings_request_errors() {
    let err = |b: Value| openai::decode_embeddings_request(b.to_string().as_bytes()).unwrap_err();
    assert_param(&err(json!({"input": "x"})), "model");
    assert_param(&err(json!({"model": "e"})), "input");
    assert_param(&err(json!({"model": "e", "input": []})), "input");
    assert_param(&err(json!({"model": "e", "input": [[1, 2, 3]]})), "input");
    assert_param(
        &err(json!({"model": "e", "input": "x", "encoding_format": "int8"})),
        "encoding_format",
    );
    assert_param(
        &err(json!({"model": "e", "input": "x", "dimensions": "big"})),
        "dimensions",
    );
    let ok = openai::decode_embeddings_request(
        br#"{"model":"e","input":["a","b"],"encoding_format":"base64"}"#,
    )
    .unwrap();
    assert_eq!(ok.input, ["a", "b"]);
}

#[test]
fn response_errors() {
    let e = openai::decode_response(br#"{"id":"x","choices":[]}"#).unwrap_err();
    assert_eq!(e.param.as_deref(), Some("choices"));
    let e = openai::decode_response(br#"{"id":"x"}"#).unwrap_err();
    assert!(e.message.contains("choices"), "{e:?}");
    let e = anthropic::decode_response(br#"{"id":"x","content":"hi"}"#).unwrap_err();
    assert_eq!(e.param.as_deref(), Some("content"), "{e:?}");
    let e = openai::decode_response(br#"{"choices":[{"message":{"content":7}}]}"#).unwrap_err();
    assert_eq!(
        e.param.as_deref(),
        Some("choices[0].message.content"),
        "{e:?}"
    );
}
