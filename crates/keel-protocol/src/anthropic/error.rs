//! Anthropic error bodies: `{"type": "error", "error": {"type", "message"}}`.

use serde_json::json;

use crate::WireError;

/// The error `type` Anthropic uses for a status.
pub(super) fn error_type(status: u16) -> &'static str {
    match status {
        401 => "authentication_error",
        402 => "billing_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        503 | 529 => "overloaded_error",
        500.. => "api_error",
        _ => "invalid_request_error",
    }
}

pub fn encode_error(err: &WireError) -> Vec<u8> {
    let body = json!({
        "type": "error",
        "error": {"type": error_type(err.status), "message": err.message},
    });
    serde_json::to_vec(&body).unwrap_or_default()
}

/// The message of an upstream's error body, if it is one.
pub fn decode_error_message(body: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    v.get("error")?.get("message")?.as_str().map(str::to_owned)
}
