//! What comes back from an OpenAI-compatible upstream, as internal types.
//! A body that does not decode is the upstream's fault (502), not the client's.

use keel_core::Error;
use keel_protocol::chat::{ChatResponse, EmbeddingsResponse};
use keel_protocol::openai;

use super::client::OpenAi;

impl OpenAi {
    pub(super) fn chat_response(&self, body: &[u8]) -> Result<ChatResponse, Error> {
        openai::decode_response(body).map_err(|e| Error::upstream_protocol(&self.up.name, e))
    }

    pub(super) fn embeddings_response(&self, body: &[u8]) -> Result<EmbeddingsResponse, Error> {
        openai::decode_embeddings_response(body)
            .map_err(|e| Error::upstream_protocol(&self.up.name, e))
    }
}
