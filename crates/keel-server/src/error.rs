//! From a typed [`Error`] to what the client sees: the HTTP status, keel's
//! error code, and headers. The body shape is the front door's (see
//! `front.rs`). Upstream errors are mapped, never passed through raw.

use std::any::Any;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use keel_core::{Error, ErrorKind, Source};
use keel_protocol::{WireError, openai};

/// The status a client gets for an error.
///
/// Upstream statuses that describe the client's request (400, 413, 422) are
/// kept, so the SDK raises the same exception it would have without keel. An
/// upstream's 401/403/404 is keel's configuration at fault (its key, its
/// model name), so the client sees 502, not a claim that *its* key is wrong.
pub(crate) fn status(err: &Error) -> StatusCode {
    let code = match err.kind {
        ErrorKind::InvalidRequest | ErrorKind::InputBlocked => 400,
        ErrorKind::ModelNotFound | ErrorKind::NotFound | ErrorKind::ReplayMiss => 404,
        ErrorKind::MethodNotAllowed => 405,
        ErrorKind::PayloadTooLarge => 413,
        ErrorKind::Unauthorized => 401,
        ErrorKind::BudgetExceeded => 402,
        ErrorKind::Forbidden => 403,
        ErrorKind::RateLimited => 429,
        ErrorKind::Unavailable | ErrorKind::Overloaded | ErrorKind::BudgetUnavailable => 503,
        ErrorKind::Timeout => 504,
        ErrorKind::UpstreamStatus(s @ (400 | 413 | 422)) => s,
        ErrorKind::UpstreamStatus(529) => 503,
        ErrorKind::UpstreamStatus(_)
        | ErrorKind::UpstreamConnection
        | ErrorKind::UpstreamProtocol
        | ErrorKind::UpstreamStreamError => 502,
        ErrorKind::OutputInvalid | ErrorKind::OutputBlocked => 422,
        ErrorKind::Internal => 500,
    };
    StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

/// keel's machine-readable reason, sent as the OpenAI `code`.
pub(crate) fn code(err: &Error) -> &'static str {
    match err.kind {
        ErrorKind::InvalidRequest => "invalid_request",
        ErrorKind::ModelNotFound => "model_not_found",
        ErrorKind::NotFound => "not_found",
        ErrorKind::MethodNotAllowed => "method_not_allowed",
        ErrorKind::PayloadTooLarge => "payload_too_large",
        ErrorKind::RateLimited if err.source == Source::Upstream => "upstream_rate_limited",
        ErrorKind::RateLimited => "rate_limited",
        ErrorKind::Unauthorized => "invalid_api_key",
        ErrorKind::Forbidden => "forbidden",
        ErrorKind::BudgetExceeded => "budget_exceeded",
        ErrorKind::BudgetUnavailable => "budget_unavailable",
        ErrorKind::ReplayMiss => "replay_miss",
        ErrorKind::InputBlocked | ErrorKind::OutputBlocked => "guardrail_blocked",
        ErrorKind::Unavailable => "no_available_target",
        ErrorKind::Overloaded => "overloaded",
        ErrorKind::Timeout => "upstream_timeout",
        ErrorKind::UpstreamConnection => "upstream_connection_error",
        ErrorKind::UpstreamStatus(_) => "upstream_error",
        ErrorKind::UpstreamProtocol => "upstream_invalid_response",
        ErrorKind::UpstreamStreamError => "upstream_stream_error",
        ErrorKind::OutputInvalid => "output_invalid",
        ErrorKind::Internal => "internal_error",
    }
}

pub(crate) fn wire(err: &Error) -> WireError {
    WireError {
        status: status(err).as_u16(),
        message: err.message.clone(),
        param: err.param.clone(),
        code: Some(code(err).to_owned()),
    }
}

/// Headers every error response carries besides the body.
pub(crate) fn decorate(err: &Error, response: &mut Response) {
    let source = match err.source {
        Source::Client => "client",
        Source::Upstream => "upstream",
        Source::Internal => "internal",
    };
    let headers = response.headers_mut();
    headers.insert("x-keel-error-source", HeaderValue::from_static(source));
    if let Some(after) = err.retry_after {
        let secs = after.as_secs_f64().ceil().max(1.0);
        if let Ok(v) = HeaderValue::from_str(&format!("{secs:.0}")) {
            headers.insert(header::RETRY_AFTER, v);
        }
    }
    if let Some(provider) = err
        .provider
        .as_deref()
        .and_then(|p| HeaderValue::from_str(p).ok())
    {
        headers.insert("x-keel-provider", provider);
    }
}

/// The response for a caught panic: a 500 that says so, never the payload
/// (it could hold request data).
pub(crate) fn panic_response(_payload: Box<dyn Any + Send + 'static>) -> Response {
    tracing::error!("a request handler panicked; this is a bug in keel");
    let err =
        Error::internal("internal error in keel (a bug: please report it with the x-request-id)");
    let body = openai::encode_error(&wire(&err));
    let mut response = (
        status(&err),
        [(header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response();
    decorate(&err, &mut response);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_statuses_map_to_what_the_client_can_act_on() {
        let cases = [
            (400, 400),
            (401, 502),
            (403, 502),
            (404, 502),
            (413, 413),
            (422, 422),
            (429, 429),
            (500, 502),
            (503, 502),
            (529, 503),
        ];
        for (upstream, client) in cases {
            let err = Error::upstream_status("p", upstream, "x");
            assert_eq!(status(&err).as_u16(), client, "upstream {upstream}");
        }
    }
}
