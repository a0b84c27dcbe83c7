//! What keel sends to an OpenAI-compatible upstream.

use keel_protocol::chat::{ChatRequest, EmbeddingsRequest};
use keel_protocol::openai;
use reqwest::header::CONTENT_TYPE;

use super::client::OpenAi;

impl OpenAi {
    pub(super) fn chat_request(&self, req: &ChatRequest) -> reqwest::RequestBuilder {
        self.post(self.chat_url.clone(), openai::encode_request(req))
    }

    pub(super) fn embeddings_request(&self, req: &EmbeddingsRequest) -> reqwest::RequestBuilder {
        self.post(
            self.embeddings_url.clone(),
            openai::encode_embeddings_request(req),
        )
    }

    fn post(&self, url: reqwest::Url, body: Vec<u8>) -> reqwest::RequestBuilder {
        self.up
            .client
            .post(url)
            .headers(self.headers.clone())
            .header(CONTENT_TYPE, "application/json")
            .body(body)
    }
}
