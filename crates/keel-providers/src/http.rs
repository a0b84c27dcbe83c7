//! What the HTTP providers share: the pooled client, sending with errors
//! classified, upstream error bodies mapped to typed errors, and SSE bodies
//! turned into internal event streams.

use std::collections::VecDeque;
use std::time::Duration;

use futures::StreamExt;
use keel_config::{HttpProvider, ProviderConfig, ProviderKind};
use keel_core::{CallContext, Error, EventStream};
use keel_protocol::chat::StreamEvent;
use keel_protocol::sse::{SseEvent, SseParser};
use keel_protocol::{StreamError, anthropic, openai};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, RETRY_AFTER};
use secrecy::{ExposeSecret, SecretString};

/// One HTTP upstream: its name, pooled client and protocol.
#[derive(Debug, Clone)]
pub(crate) struct Upstream {
    pub name: String,
    pub client: reqwest::Client,
    timeout: Duration,
    wire: Wire,
    /// The key and secret header values, masked in upstream error messages
    /// (some upstreams echo the key they rejected).
    secrets: Vec<SecretString>,
}

impl Upstream {
    /// Builds the provider's pooled client. Its timeout bounds a whole call,
    /// body (and stream) included.
    pub fn new(config: &ProviderConfig, wire: Wire) -> Result<Self, Error> {
        let client = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .timeout(config.timeout)
            .tcp_nodelay(true)
            .pool_idle_timeout(Duration::from_secs(90))
            .build()
            .map_err(|e| {
                Error::internal(format!(
                    "provider `{}`: cannot build HTTP client: {e}",
                    config.name
                ))
            })?;
        let secrets = match &config.kind {
            ProviderKind::OpenAi(h) | ProviderKind::Anthropic(h) => h
                .api_key
                .iter()
                .chain(h.headers.iter().map(|(_, v)| v))
                .cloned()
                .collect(),
            ProviderKind::Sim(_) => Vec::new(),
        };
        Ok(Upstream {
            name: config.name.clone(),
            client,
            timeout: config.timeout,
            wire,
            secrets,
        })
    }

    /// Sends a request with the call's `traceparent`; on a non-success
    /// status, returns the typed upstream error. `ctx.ttft` bounds the wait
    /// for the response headers.
    pub async fn send(
        &self,
        request: reqwest::RequestBuilder,
        ctx: &CallContext,
    ) -> Result<reqwest::Response, Error> {
        let request = match &ctx.traceparent {
            Some(tp) => request.header("traceparent", tp),
            None => request,
        };
        match ctx.ttft {
            None => send(self, request).await,
            Some(limit) => tokio::time::timeout(limit, send(self, request))
                .await
                .map_err(|_| Error::upstream_timeout(&self.name, limit))?,
        }
    }

    /// Reads a whole (non-streamed) body.
    pub async fn body(&self, response: reqwest::Response) -> Result<bytes::Bytes, Error> {
        response.bytes().await.map_err(|e| self.transport_error(&e))
    }

    fn transport_error(&self, e: &reqwest::Error) -> Error {
        if e.is_timeout() {
            Error::upstream_timeout(&self.name, self.timeout)
        } else {
            // Walk to the root cause: reqwest's top-level text is generic.
            let mut cause: &dyn std::error::Error = e;
            while let Some(next) = cause.source() {
                cause = next;
            }
            Error::upstream_connection(&self.name, cause)
        }
    }
}

/// The configured extra headers, marked sensitive so they never print.
pub(crate) fn headers(name: &str, http: &HttpProvider) -> Result<HeaderMap, Error> {
    let mut map = HeaderMap::new();
    for (k, v) in &http.headers {
        insert_secret(&mut map, name, k, v.expose_secret())?;
    }
    Ok(map)
}

pub(crate) fn insert_secret(
    map: &mut HeaderMap,
    provider: &str,
    key: &str,
    value: &str,
) -> Result<(), Error> {
    let name = HeaderName::from_bytes(key.as_bytes()).map_err(|_| {
        Error::internal(format!(
            "provider `{provider}`: invalid header name `{key}`"
        ))
    })?;
    let mut value = HeaderValue::from_str(value).map_err(|_| {
        Error::internal(format!(
            "provider `{provider}`: header `{key}` has an invalid value"
        ))
    })?;
    value.set_sensitive(true);
    map.insert(name, value);
    Ok(())
}

/// The two protocols differ only in how an error body and a stream read.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Wire {
    OpenAi,
    Anthropic,
}

impl Wire {
    fn error_message(self, body: &[u8]) -> Option<String> {
        match self {
            Wire::OpenAi => openai::decode_error_message(body),
            Wire::Anthropic => anthropic::decode_error_message(body),
        }
    }
}

async fn send(up: &Upstream, request: reqwest::RequestBuilder) -> Result<reqwest::Response, Error> {
    let response = request.send().await.map_err(|e| up.transport_error(&e))?;
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let retry_after = response
        .headers()
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(Duration::from_secs_f64);
    let body = response.bytes().await.unwrap_or_default();
    // The upstream's own message is kept (it helps whoever debugs), its raw
    // body is not passed through: the client gets keel's error shape.
    let mut message = up
        .wire
        .error_message(&body)
        .unwrap_or_else(|| status.canonical_reason().unwrap_or("error").to_owned());
    for secret in &up.secrets {
        let secret = secret.expose_secret();
        if !secret.is_empty() && message.contains(secret) {
            message = message.replace(secret, "[REDACTED]");
        }
    }
    Err(Error::upstream_status(&up.name, status.as_u16(), &message).with_retry_after(retry_after))
}

/// Turns a streamed response into internal events. The stream ends after
/// `Done`; a body that ends before it is an error, never a silent truncation.
///
/// Some OpenAI-compatible servers ignore `stream: true` and answer with one
/// JSON body: that answer is decoded and replayed as a stream rather than
/// failing a request that succeeded.
pub(crate) async fn event_stream(
    up: &Upstream,
    response: reqwest::Response,
) -> Result<EventStream, Error> {
    let is_json = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().starts_with("application/json"));
    if is_json {
        let body = up.body(response).await?;
        let decoded = match up.wire {
            Wire::OpenAi => openai::decode_response(&body),
            Wire::Anthropic => anthropic::decode_response(&body),
        };
        let answer = decoded.map_err(|e| Error::upstream_protocol(&up.name, e))?;
        let events = answer.to_events().into_iter().map(Ok);
        return Ok(futures::stream::iter(events).boxed());
    }
    let state = StreamState {
        upstream: up.clone(),
        body: response.bytes_stream().boxed(),
        parser: SseParser::new(),
        decoder: match up.wire {
            Wire::OpenAi => Decoder::OpenAi(openai::StreamDecoder::new()),
            Wire::Anthropic => Decoder::Anthropic(anthropic::StreamDecoder::new()),
        },
        pending: VecDeque::new(),
        finished: false,
    };
    Ok(futures::stream::unfold(state, |mut s| async move {
        let item = s.next().await?;
        Some((item, s))
    })
    .boxed())
}

enum Decoder {
    OpenAi(openai::StreamDecoder),
    Anthropic(anthropic::StreamDecoder),
}

impl Decoder {
    fn event(&mut self, sse: &SseEvent) -> Result<Vec<StreamEvent>, StreamError> {
        match self {
            Decoder::OpenAi(d) => d.event(sse),
            Decoder::Anthropic(d) => d.event(sse),
        }
    }
}

struct StreamState {
    upstream: Upstream,
    body: futures::stream::BoxStream<'static, reqwest::Result<bytes::Bytes>>,
    parser: SseParser,
    decoder: Decoder,
    pending: VecDeque<StreamEvent>,
    finished: bool,
}

impl StreamState {
    async fn next(&mut self) -> Option<Result<StreamEvent, Error>> {
        loop {
            if let Some(ev) = self.pending.pop_front() {
                if ev == StreamEvent::Done {
                    self.finished = true;
                    self.pending.clear();
                }
                return Some(Ok(ev));
            }
            if self.finished {
                return None;
            }
            match self.body.next().await {
                Some(Ok(chunk)) => {
                    for sse in self.parser.push(&chunk) {
                        match self.decoder.event(&sse) {
                            Ok(events) => self.pending.extend(events),
                            Err(e) => return Some(Err(self.fail(e))),
                        }
                    }
                }
                Some(Err(e)) => {
                    self.finished = true;
                    return Some(Err(self.upstream.transport_error(&e)));
                }
                None => {
                    self.finished = true;
                    return Some(Err(Error::upstream_protocol(
                        &self.upstream.name,
                        "the stream ended before its terminal event",
                    )));
                }
            }
        }
    }

    fn fail(&mut self, e: StreamError) -> Error {
        self.finished = true;
        match e {
            StreamError::Upstream { message } => {
                Error::upstream_stream_error(&self.upstream.name, &message)
            }
            StreamError::Malformed(what) => Error::upstream_protocol(&self.upstream.name, what),
        }
    }
}
