//! OpenAI error bodies: `{"error": {"message", "type", "param", "code"}}`.

use serde::Serialize;

use crate::WireError;

#[derive(Serialize)]
struct Body<'a> {
    error: Inner<'a>,
}

#[derive(Serialize)]
struct Inner<'a> {
    message: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    param: Option<&'a str>,
    code: Option<&'a str>,
}

/// The `type` OpenAI uses for a status.
fn error_type(status: u16) -> &'static str {
    match status {
        401 => "authentication_error",
        402 => "insufficient_quota",
        403 => "permission_error",
        429 => "rate_limit_error",
        500.. => "server_error",
        _ => "invalid_request_error",
    }
}

pub fn encode_error(err: &WireError) -> Vec<u8> {
    let body = Body {
        error: Inner {
            message: &err.message,
            kind: error_type(err.status),
            param: err.param.as_deref(),
            code: err.code.as_deref(),
        },
    };
    serde_json::to_vec(&body).unwrap_or_default()
}

/// The message of an upstream's error body, if it is one; used to say what
/// the upstream said without passing its raw body through. Besides OpenAI's
/// `{"error": {"message"}}` it reads the shapes OpenAI-compatible servers
/// use: `{"error": "…"}`, vLLM's `{"object": "error", "message"}` and
/// FastAPI's `{"detail": "…"}`.
pub fn decode_error_message(body: &[u8]) -> Option<String> {
    use serde_json::Value;
    let v: Value = serde_json::from_slice(body).ok()?;
    let text = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_owned);
    text(v.pointer("/error/message"))
        .or_else(|| text(v.get("error")))
        .or_else(|| text(v.get("message")))
        .or_else(|| text(v.get("detail")))
}
