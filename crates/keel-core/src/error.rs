//! The one error type of the request path.

use std::fmt;
use std::time::Duration;

use crate::redact;

/// Who caused the error. Decides whether the client or the upstream is blamed
/// in the message, and (with `retryable`) whether another attempt may help.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The request itself is wrong; no upstream can fix it.
    Client,
    /// An upstream failed or refused.
    Upstream,
    /// keel itself (configuration, a bug).
    Internal,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorKind {
    /// Malformed JSON, wrong types, missing or invalid fields. 400.
    InvalidRequest,
    /// The model alias is not configured. 404.
    ModelNotFound,
    /// No such route. 404.
    NotFound,
    /// The route exists, not with this method. 405.
    MethodNotAllowed,
    /// Body over `server.max_body_bytes`. 413.
    PayloadTooLarge,
    /// No valid virtual key where one is needed. 401.
    Unauthorized,
    /// The key may not do this (a model outside its allow-list). 403.
    Forbidden,
    /// A budget cannot cover the request's worst-case cost. 402.
    BudgetExceeded,
    /// The shared budget ledger cannot be reached and budgets fail closed. 503.
    BudgetUnavailable,
    /// Replay mode, and the request is not in the record/replay file. 404.
    ReplayMiss,
    /// An input guardrail refused the request. 400.
    InputBlocked,
    /// An output guardrail refused the answer. 422.
    OutputBlocked,
    /// The upstream (or keel) asked the client to slow down. 429.
    RateLimited,
    /// No target can serve the request right now. 503.
    Unavailable,
    /// keel is at its in-flight limit and the request was shed. 503.
    Overloaded,
    /// An upstream did not answer in time. 504.
    Timeout,
    /// Could not connect to, or lost the connection to, the upstream. 502.
    UpstreamConnection,
    /// The upstream answered with an error status.
    UpstreamStatus(u16),
    /// The upstream's answer was not valid protocol (bad JSON, a stream cut
    /// without its terminal event). 502.
    UpstreamProtocol,
    /// The upstream reported an error inside an accepted stream. 502.
    UpstreamStreamError,
    /// The answer did not validate against the promised schema or rules,
    /// after every re-ask and fallback. 422.
    OutputInvalid,
    /// A bug or a broken invariant in keel. 500.
    Internal,
}

/// A failure on the request path, typed so that retry, fallback and the
/// client's status are decided from fields rather than from messages.
#[derive(Debug, Clone)]
pub struct Error {
    pub kind: ErrorKind,
    pub source: Source,
    pub retryable: bool,
    /// Human-readable; never contains secrets.
    pub message: String,
    /// The request field at fault, when there is one (OpenAI `param`).
    pub param: Option<String>,
    /// The upstream's `Retry-After`, when it sent one.
    pub retry_after: Option<Duration>,
    /// The provider the error came from, for upstream errors.
    pub provider: Option<String>,
}

impl Error {
    fn new(kind: ErrorKind, source: Source, retryable: bool, message: String) -> Self {
        Error {
            kind,
            source,
            retryable,
            message,
            param: None,
            retry_after: None,
            provider: None,
        }
    }

    pub fn invalid_request(message: impl Into<String>) -> Self {
        Self::new(
            ErrorKind::InvalidRequest,
            Source::Client,
            false,
            message.into(),
        )
    }

    pub fn model_not_found(model: &str) -> Self {
        Self::new(
            ErrorKind::ModelNotFound,
            Source::Client,
            false,
            format!("model `{model}` is not configured in keel"),
        )
        .with_param("model")
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, Source::Client, false, message.into())
    }

    pub fn method_not_allowed(message: impl Into<String>) -> Self {
        Self::new(
            ErrorKind::MethodNotAllowed,
            Source::Client,
            false,
            message.into(),
        )
    }

    pub fn payload_too_large(limit: usize) -> Self {
        Self::new(
            ErrorKind::PayloadTooLarge,
            Source::Client,
            false,
            format!("request body is larger than the limit of {limit} bytes"),
        )
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(
            ErrorKind::Unavailable,
            Source::Internal,
            true,
            message.into(),
        )
    }

    /// Shed at admission; `retry_after` tells the client when to come back.
    pub fn overloaded(retry_after: Duration) -> Self {
        Self::new(
            ErrorKind::Overloaded,
            Source::Internal,
            true,
            "keel is at its in-flight request limit; retry later".to_owned(),
        )
        .with_retry_after(Some(retry_after))
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(
            ErrorKind::Unauthorized,
            Source::Client,
            false,
            message.into(),
        )
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Forbidden, Source::Client, false, message.into())
    }

    pub fn input_blocked(message: impl Into<String>) -> Self {
        Self::new(
            ErrorKind::InputBlocked,
            Source::Client,
            false,
            message.into(),
        )
    }

    pub fn output_blocked(message: impl Into<String>) -> Self {
        Self::new(
            ErrorKind::OutputBlocked,
            Source::Upstream,
            false,
            message.into(),
        )
    }

    pub fn replay_miss(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::ReplayMiss, Source::Client, false, message.into())
    }

    /// A hard cap reached: `retry_after` is when the budget resets.
    pub fn budget_exceeded(message: impl Into<String>, resets_in: Duration) -> Self {
        Self::new(
            ErrorKind::BudgetExceeded,
            Source::Client,
            false,
            message.into(),
        )
        .with_retry_after(Some(resets_in))
    }

    pub fn budget_unavailable(message: impl Into<String>) -> Self {
        Self::new(
            ErrorKind::BudgetUnavailable,
            Source::Internal,
            true,
            message.into(),
        )
    }

    /// keel's own rate limit (not a provider's): 429 + `Retry-After`.
    pub fn rate_limited(message: impl Into<String>, retry_after: Duration) -> Self {
        Self::new(
            ErrorKind::RateLimited,
            Source::Client,
            false,
            message.into(),
        )
        .with_retry_after(Some(retry_after))
    }

    /// The request's deadline passed before an answer arrived.
    pub fn deadline_exceeded(after: Duration, attempts: usize) -> Self {
        Self::new(
            ErrorKind::Timeout,
            Source::Upstream,
            false,
            format!("deadline of {after:?} exceeded after {attempts} attempt(s)"),
        )
    }

    pub fn output_invalid(message: impl Into<String>) -> Self {
        Self::new(
            ErrorKind::OutputInvalid,
            Source::Upstream,
            false,
            message.into(),
        )
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, Source::Internal, false, message.into())
    }

    /// The upstream answered `status`. Retryable for 408, 409, 429, 5xx and 529.
    pub fn upstream_status(provider: &str, status: u16, upstream_message: &str) -> Self {
        let retryable = matches!(status, 408 | 409 | 429) || status >= 500;
        let kind = if status == 429 {
            ErrorKind::RateLimited
        } else {
            ErrorKind::UpstreamStatus(status)
        };
        Self::new(
            kind,
            Source::Upstream,
            retryable,
            format!(
                "upstream `{provider}` returned {status}: {}",
                redact::secrets(upstream_message)
            ),
        )
        .with_provider(provider)
    }

    pub fn upstream_connection(provider: &str, what: impl fmt::Display) -> Self {
        Self::new(
            ErrorKind::UpstreamConnection,
            Source::Upstream,
            true,
            format!("upstream `{provider}` connection failed: {what}"),
        )
        .with_provider(provider)
    }

    pub fn upstream_timeout(provider: &str, after: Duration) -> Self {
        Self::new(
            ErrorKind::Timeout,
            Source::Upstream,
            true,
            format!("upstream `{provider}` did not answer within {after:?}"),
        )
        .with_provider(provider)
    }

    pub fn upstream_protocol(provider: &str, what: impl fmt::Display) -> Self {
        Self::new(
            ErrorKind::UpstreamProtocol,
            Source::Upstream,
            true,
            format!(
                "upstream `{provider}` sent an invalid response: {}",
                redact::secrets(&what.to_string())
            ),
        )
        .with_provider(provider)
    }

    pub fn upstream_stream_error(provider: &str, upstream_message: &str) -> Self {
        Self::new(
            ErrorKind::UpstreamStreamError,
            Source::Upstream,
            true,
            format!(
                "upstream `{provider}` sent an error event: {}",
                redact::secrets(upstream_message)
            ),
        )
        .with_provider(provider)
    }

    pub fn with_message(mut self, message: impl Into<String>) -> Self {
        self.message = message.into();
        self
    }

    pub fn with_param(mut self, param: impl Into<String>) -> Self {
        self.param = Some(param.into());
        self
    }

    pub fn with_retry_after(mut self, after: Option<Duration>) -> Self {
        self.retry_after = after;
        self
    }

    pub fn with_provider(mut self, provider: &str) -> Self {
        self.provider = Some(provider.to_owned());
        self
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_statuses_are_retryable_only_when_trying_again_can_help() {
        for status in [408, 409, 429, 500, 502, 503, 529] {
            assert!(
                Error::upstream_status("p", status, "x").retryable,
                "{status}"
            );
        }
        for status in [400, 401, 403, 404, 413, 422] {
            assert!(
                !Error::upstream_status("p", status, "x").retryable,
                "{status}"
            );
        }
        assert_eq!(
            Error::upstream_status("p", 429, "x").kind,
            ErrorKind::RateLimited
        );
    }
}
