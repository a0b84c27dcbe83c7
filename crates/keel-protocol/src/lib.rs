//! keel's protocols, pure and synchronous: no tokio, no I/O.
//!
//! - [`chat`]: the internal chat model every request is decoded into.
//! - [`openai`] and [`anthropic`]: each protocol's wire types and the
//!   converters both ways (requests, responses, stream events, errors).
//! - [`sse`]: a push-based server-sent-events parser and encoder.
//! - [`tokens`]: token counts before any upstream has counted: exact for
//!   OpenAI models (tiktoken's encodings), an estimate for the rest.
//!
//! Everything here is tested with snapshots, properties (decode never panics
//! on arbitrary bytes) and chunk-boundary tests of the SSE codec.

pub mod anthropic;
pub mod chat;
pub mod openai;
pub mod sse;
pub mod tokens;

mod error;
mod json;

pub use error::{DecodeError, StreamError, WireError};
