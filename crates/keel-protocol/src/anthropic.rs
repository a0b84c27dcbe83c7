//! The Anthropic messages protocol (requests, responses, stream events,
//! errors). Anthropic has no embeddings API.

mod error;
mod request;
mod response;
mod stream;
mod structured;

pub use error::{decode_error_message, encode_error};
pub use request::{DEFAULT_MAX_TOKENS, decode_request, encode_request};
pub use response::{decode_response, encode_response};
pub use stream::{StreamDecoder, StreamEncoder};
pub use structured::{StructuredStream, structured_tool, unwrap_structured};
