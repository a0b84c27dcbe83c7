//! OTLP trace export: each request's span tree, built after the request ends.
//!
//! # Spans after the fact
//!
//! keel does not open and close live spans while a request runs. The pipeline records what
//! happened: a start and end [`SystemTime`] per phase and per upstream attempt, each with a span
//! id drawn up front by [`new_span_id`]. When the request is over it assembles one [`SpanData`]
//! tree from those records and hands it to [`Tracer::export`], which turns every node into a
//! finished OpenTelemetry span with exactly the given ids and timestamps and queues it for the
//! batch exporter. So:
//!
//! - tracing depends on no task-local or thread-local subscriber state: a request can hop tokio
//!   tasks and threads (retries, hedges, a streaming body outliving its handler) and still
//!   produce one well-formed tree;
//! - the trace id is known from the first moment ([`TraceContext::from_traceparent`] or
//!   [`TraceContext::new_root`]), so the `traceparent` sent to the provider
//!   ([`TraceContext::traceparent`] with the attempt's pre-drawn span id) names a span that the
//!   export later fills in;
//! - sampling is decided once per request by the context's `sampled` flag; an unsampled request
//!   costs nothing at export.
//!
//! The nodes become the SDK's finished-span record (`opentelemetry_sdk::trace::SpanData`) and go
//! straight to the SDK's batch span processor, the same path a live span takes when it ends. The
//! SDK's `Tracer`/`SpanBuilder` API is not used: its tracer draws every span id from its id
//! generator and ignores `SpanBuilder::span_id`, so it cannot honour ids handed out up front.
//!
//! Export never waits on the network and never fails the request: spans go into the processor's
//! bounded queue (full queue: dropped and counted by the SDK), and its own thread posts them as
//! OTLP/HTTP protobuf with a blocking client. Each [`Tracer`] owns its processor and exporter;
//! nothing is installed globally, so several gateways can run in one process.
//!
//! # GenAI semantic conventions
//!
//! Span shapes follow the OpenTelemetry GenAI conventions (keys in [`attr`]):
//!
//! - the **root** span is kind `Server`, named `{gen_ai.operation.name} {gen_ai.request.model}`
//!   (`chat gpt-4o`), with the model the client asked for, the model that answered
//!   (`gen_ai.response.model`), token usage (`gen_ai.usage.input_tokens`,
//!   `gen_ai.usage.output_tokens`) and the HTTP status returned to the client;
//! - each **lifecycle phase** worth seeing (`decode`, `route`, …) is an `Internal` child span
//!   named after the phase;
//! - each **upstream attempt** is a `Client` child span named `{operation} {provider model}`,
//!   with the provider (`gen_ai.provider.name`, and the older `gen_ai.system` that many backends
//!   still read), `server.address`/`server.port`,
//!   `http.response.status_code` and, when it failed, `error.type` plus an error status
//!   ([`SpanData::error`]); retries and fallbacks show as sibling attempts.
//!
//! Prompts and completions are never recorded: they are content, not telemetry.

mod context;
mod http_client;

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use opentelemetry::trace::{SpanContext, SpanId, Status, TraceFlags, TraceId, TraceState};
use opentelemetry::{InstrumentationScope, Key, KeyValue, StringValue, Value};
use opentelemetry_otlp::{Protocol, WithExportConfig as _, WithHttpConfig as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkError;
use opentelemetry_sdk::trace::{
    BatchSpanProcessor, SpanEvents, SpanExporter as _, SpanLinks, SpanProcessor as _,
};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

pub use context::{TraceContext, new_span_id};
use http_client::BlockingClient;

/// Attribute keys keel uses, from the OpenTelemetry semantic conventions.
pub mod attr {
    /// The operation: `chat`, `text_completion`, `embeddings`.
    pub const GEN_AI_OPERATION_NAME: &str = "gen_ai.operation.name";
    /// The provider of an attempt: `openai`, `anthropic`, …
    pub const GEN_AI_PROVIDER_NAME: &str = "gen_ai.provider.name";
    /// The provider under its older name, deprecated for [`GEN_AI_PROVIDER_NAME`] but still the
    /// one many backends read: attempt spans carry both.
    pub const GEN_AI_SYSTEM: &str = "gen_ai.system";
    /// The model asked for: the client's alias on the root, the provider's model on an attempt.
    pub const GEN_AI_REQUEST_MODEL: &str = "gen_ai.request.model";
    /// The model that answered, as the provider reports it.
    pub const GEN_AI_RESPONSE_MODEL: &str = "gen_ai.response.model";
    /// Why generation stopped, one entry per choice (a string list).
    pub const GEN_AI_RESPONSE_FINISH_REASONS: &str = "gen_ai.response.finish_reasons";
    /// Prompt tokens.
    pub const GEN_AI_USAGE_INPUT_TOKENS: &str = "gen_ai.usage.input_tokens";
    /// Completion tokens.
    pub const GEN_AI_USAGE_OUTPUT_TOKENS: &str = "gen_ai.usage.output_tokens";
    /// The upstream host of an attempt.
    pub const SERVER_ADDRESS: &str = "server.address";
    /// The upstream port of an attempt.
    pub const SERVER_PORT: &str = "server.port";
    /// The HTTP status: returned to the client on the root, received from upstream on an attempt.
    pub const HTTP_RESPONSE_STATUS_CODE: &str = "http.response.status_code";
    /// The class of a failure (`timeout`, `rate_limited`, …), on failed spans only.
    pub const ERROR_TYPE: &str = "error.type";
}

/// The role of a span, as OpenTelemetry's span kind.
#[derive(Clone, Debug)]
pub enum SpanKind {
    /// keel serving the client's request (the root).
    Server,
    /// keel calling an upstream (an attempt).
    Client,
    /// Work inside keel (a phase).
    Internal,
}

/// An attribute value.
#[derive(Clone, Debug)]
pub enum AttrValue {
    Str(String),
    I64(i64),
    F64(f64),
    Bool(bool),
    StrList(Vec<String>),
}

impl From<&str> for AttrValue {
    fn from(value: &str) -> Self {
        AttrValue::Str(value.to_owned())
    }
}

impl From<String> for AttrValue {
    fn from(value: String) -> Self {
        AttrValue::Str(value)
    }
}

impl From<i64> for AttrValue {
    fn from(value: i64) -> Self {
        AttrValue::I64(value)
    }
}

impl From<f64> for AttrValue {
    fn from(value: f64) -> Self {
        AttrValue::F64(value)
    }
}

impl From<bool> for AttrValue {
    fn from(value: bool) -> Self {
        AttrValue::Bool(value)
    }
}

/// One finished span and its children, as recorded by the pipeline.
#[derive(Clone, Debug)]
pub struct SpanData {
    /// Drawn with [`new_span_id`] when the work started.
    pub span_id: [u8; 8],
    pub name: String,
    pub kind: SpanKind,
    pub start: SystemTime,
    pub end: SystemTime,
    pub attributes: Vec<(&'static str, AttrValue)>,
    /// Some(message) → span status Error with that description; None → Ok/Unset.
    pub error: Option<String>,
    pub children: Vec<SpanData>,
}

/// Where and how to export.
#[derive(Clone)]
pub struct TraceConfig {
    /// Full OTLP/HTTP traces URL, e.g. `http://127.0.0.1:4318/v1/traces`.
    pub endpoint: String,
    pub service_name: String,
    /// Extra HTTP headers for the collector (e.g. an auth header). Never logged.
    pub headers: Vec<(String, String)>,
    /// Bounds each request to the collector and the retries of one export, and how long
    /// [`Tracer::shutdown`] waits.
    pub timeout: Duration,
}

impl fmt::Debug for TraceConfig {
    /// Shows header names only: values are often credentials.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let header_names: Vec<&str> = self.headers.iter().map(|(name, _)| name.as_str()).collect();
        f.debug_struct("TraceConfig")
            .field("endpoint", &self.endpoint)
            .field("service_name", &self.service_name)
            .field("headers", &header_names)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// Why a [`Tracer`] could not be built. The message never holds a header value.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    #[error("invalid OTLP traces endpoint: {0}")]
    Endpoint(String),
    /// Index into [`TraceConfig::headers`]: a malformed name may be a misplaced secret.
    #[error("collector header #{index} has an invalid name")]
    HeaderName { index: usize },
    #[error("collector header `{name}` has an invalid value")]
    HeaderValue { name: String },
    #[error("could not build the OTLP HTTP client: {0}")]
    HttpClient(String),
    #[error("could not build the OTLP exporter: {0}")]
    Exporter(String),
}

/// Exports span trees to one OTLP/HTTP collector. Cheap to clone; clones share the exporter.
///
/// Dropping the last clone stops the exporter without flushing; call [`Tracer::shutdown`] at
/// graceful shutdown.
#[derive(Clone)]
pub struct Tracer {
    inner: Arc<Inner>,
}

struct Inner {
    /// Owns the exporter and its thread; `on_end` only enqueues.
    processor: BatchSpanProcessor,
    scope: InstrumentationScope,
    timeout: Duration,
}

impl fmt::Debug for Tracer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tracer").finish_non_exhaustive()
    }
}

impl Tracer {
    /// Builds the exporter and starts its batch thread. Safe to call inside a tokio runtime.
    ///
    /// The SDK's standard `OTEL_BSP_*` variables tune the batching (queue size, delay), and
    /// `OTEL_RESOURCE_ATTRIBUTES` adds resource attributes; `service.name` is always
    /// `cfg.service_name`.
    pub fn new(cfg: &TraceConfig) -> Result<Tracer, TraceError> {
        check_endpoint(&cfg.endpoint)?;
        let client = BlockingClient::new(cfg.timeout, collector_headers(&cfg.headers)?)?;
        let mut exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_http_client(client)
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(cfg.endpoint.as_str())
            .with_timeout(cfg.timeout)
            .build()
            .map_err(|err| TraceError::Exporter(err.to_string()))?;
        exporter.set_resource(
            &Resource::builder()
                .with_service_name(cfg.service_name.clone())
                .build(),
        );
        let scope = InstrumentationScope::builder("keel")
            .with_version(env!("CARGO_PKG_VERSION"))
            .build();
        Ok(Tracer {
            inner: Arc::new(Inner {
                processor: BatchSpanProcessor::builder(exporter).build(),
                scope,
                timeout: cfg.timeout,
            }),
        })
    }

    /// Hands the tree to the batch exporter. Never blocks on the network, never fails the caller;
    /// a no-op when ctx.sampled is false. The root's parent is ctx.parent_span_id (remote parent).
    pub fn export(&self, ctx: &TraceContext, root: SpanData) {
        if !ctx.sampled {
            return;
        }
        let parent = ctx
            .parent_span_id
            .map_or(SpanId::INVALID, SpanId::from_bytes);
        self.enqueue(
            TraceId::from_bytes(ctx.trace_id),
            parent,
            ctx.parent_span_id.is_some(),
            root,
        );
    }

    fn enqueue(&self, trace_id: TraceId, parent: SpanId, parent_is_remote: bool, span: SpanData) {
        let span_id = SpanId::from_bytes(span.span_id);
        let span_context = SpanContext::new(
            trace_id,
            span_id,
            TraceFlags::SAMPLED,
            false,
            TraceState::NONE,
        );
        self.inner
            .processor
            .on_end(opentelemetry_sdk::trace::SpanData {
                span_context,
                parent_span_id: parent,
                parent_span_is_remote: parent_is_remote,
                span_kind: match span.kind {
                    SpanKind::Server => opentelemetry::trace::SpanKind::Server,
                    SpanKind::Client => opentelemetry::trace::SpanKind::Client,
                    SpanKind::Internal => opentelemetry::trace::SpanKind::Internal,
                },
                name: Cow::Owned(span.name),
                start_time: span.start,
                end_time: span.end,
                attributes: span
                    .attributes
                    .into_iter()
                    .map(|(key, value)| KeyValue::new(Key::from_static_str(key), otel_value(value)))
                    .collect(),
                dropped_attributes_count: 0,
                events: SpanEvents::default(),
                links: SpanLinks::default(),
                status: span.error.map_or(Status::Unset, Status::error),
                instrumentation_scope: self.inner.scope.clone(),
            });
        for child in span.children {
            self.enqueue(trace_id, span_id, false, child);
        }
    }

    /// Flushes and stops the exporter (bounded by the config timeout). Call at graceful shutdown.
    ///
    /// Blocks the calling thread: from async code, call it through `spawn_blocking`. Spans
    /// exported afterwards are dropped.
    pub fn shutdown(&self) {
        match self
            .inner
            .processor
            .shutdown_with_timeout(self.inner.timeout)
        {
            Ok(()) | Err(OTelSdkError::AlreadyShutdown) => {}
            Err(err) => tracing::warn!(error = %err, "trace exporter did not shut down cleanly"),
        }
    }

    /// Flushes what is queued (for tests and shutdown); bounded by the timeout. True when
    /// everything queued reached the collector.
    ///
    /// The exporter starts no retry after the config timeout (an attempt under way may take up
    /// to one more timeout), and the SDK stops waiting for its thread after 5 s. Blocks the
    /// calling thread: from async code, call it through `spawn_blocking`.
    pub fn force_flush(&self) -> bool {
        self.inner.processor.force_flush().is_ok()
    }
}

fn otel_value(value: AttrValue) -> Value {
    match value {
        AttrValue::Str(s) => Value::String(s.into()),
        AttrValue::I64(i) => Value::I64(i),
        AttrValue::F64(f) => Value::F64(f),
        AttrValue::Bool(b) => Value::Bool(b),
        AttrValue::StrList(list) => Value::Array(
            list.into_iter()
                .map(StringValue::from)
                .collect::<Vec<_>>()
                .into(),
        ),
    }
}

/// An absolute `http` or `https` URL. The URL itself stays out of the error: it may hold
/// credentials.
fn check_endpoint(endpoint: &str) -> Result<(), TraceError> {
    let url = reqwest::Url::parse(endpoint).map_err(|err| TraceError::Endpoint(err.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(TraceError::Endpoint(
            "the scheme must be http or https".into(),
        ));
    }
    Ok(())
}

/// Validates the collector headers once, so a bad one fails at startup rather than being
/// skipped at every export. Values are marked sensitive.
fn collector_headers(headers: &[(String, String)]) -> Result<HeaderMap, TraceError> {
    let mut map = HeaderMap::with_capacity(headers.len());
    for (index, (name, value)) in headers.iter().enumerate() {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| TraceError::HeaderName { index })?;
        let mut value = HeaderValue::from_str(value).map_err(|_| TraceError::HeaderValue {
            name: name.to_string(),
        })?;
        value.set_sensitive(true);
        map.insert(name, value);
    }
    Ok(map)
}
