//! keel's shared core: the typed [`Error`] every phase returns, the
//! [`Provider`] trait every upstream implements, and the per-call context.
//!
//! An error carries where it came from ([`Source`]) and whether trying again
//! could help (`retryable`); those two fields, not string matching, decide
//! retries, fallback and the HTTP status a client sees.
//!
//! [`redact`] masks credentials (and, on request, personal data) in text
//! keel passes on, stores or logs; upstream error messages go through it
//! as the error is built, so a key an upstream echoes never reaches a
//! client.

mod error;
pub mod redact;

use async_trait::async_trait;
use futures::stream::BoxStream;
use keel_protocol::chat::{
    ChatRequest, ChatResponse, EmbeddingsRequest, EmbeddingsResponse, StreamEvent,
};

pub use error::{Error, ErrorKind, Source};

/// A streamed answer: events until `StreamEvent::Done`, or an error.
pub type EventStream = BoxStream<'static, Result<StreamEvent, Error>>;

/// What a provider needs to know about the request besides its body.
#[derive(Debug, Clone, Default)]
pub struct CallContext {
    pub request_id: String,
    /// Longest wait for the first byte of the upstream's answer (response
    /// headers; for the simulator, its pre-answer delays). `None`: no bound
    /// beyond the provider's own timeout.
    pub ttft: Option<std::time::Duration>,
    /// The client's `x-keel-sim-fault` header. Only the simulator reads it;
    /// HTTP providers never forward it.
    pub sim_fault: Option<String>,
    /// The request's trace, for the `traceparent` of each upstream call.
    pub trace: Option<TraceIds>,
    /// W3C `traceparent` for this call (set per attempt); HTTP providers
    /// send it upstream.
    pub traceparent: Option<String>,
}

/// The request's W3C trace id and sampling decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceIds {
    pub trace_id: [u8; 16],
    pub sampled: bool,
}

/// One upstream. `req.model` is already the upstream's model name.
#[async_trait]
pub trait Provider: Send + Sync + 'static {
    async fn chat(&self, req: ChatRequest, ctx: &CallContext) -> Result<ChatResponse, Error>;

    /// Starts a streamed answer. Returns once the upstream accepted the call
    /// (status received); failures after that arrive in the stream.
    async fn chat_stream(&self, req: ChatRequest, ctx: &CallContext) -> Result<EventStream, Error>;

    async fn embed(
        &self,
        req: EmbeddingsRequest,
        ctx: &CallContext,
    ) -> Result<EmbeddingsResponse, Error>;
}
