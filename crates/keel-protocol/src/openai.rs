//! The OpenAI wire protocol (chat completions, embeddings, models, errors).
//! Every OpenAI-compatible server (vLLM, Ollama, llama.cpp, Groq, Together,
//! Azure deployments) speaks this.

mod embeddings;
mod error;
mod request;
mod response;
mod stream;

pub use embeddings::{
    decode_embeddings_request, decode_embeddings_response, encode_embeddings_request,
    encode_embeddings_response,
};
pub use error::{decode_error_message, encode_error};
pub use request::{decode_request, encode_request};
pub use response::{decode_response, encode_response};
pub use stream::{StreamDecoder, StreamEncoder};

/// Encodes a `GET /v1/models` list.
pub fn encode_models<'a>(ids: impl IntoIterator<Item = &'a str>, created: u64) -> Vec<u8> {
    let data: Vec<serde_json::Value> = ids
        .into_iter()
        .map(|id| serde_json::json!({"id": id, "object": "model", "created": created, "owned_by": "keel"}))
        .collect();
    serde_json::to_vec(&serde_json::json!({"object": "list", "data": data})).unwrap_or_default()
}
