//! What keel sends to the Anthropic API.

use keel_protocol::anthropic;
use keel_protocol::chat::ChatRequest;
use reqwest::header::CONTENT_TYPE;

use super::client::Anthropic;

impl Anthropic {
    pub(super) fn messages_request(&self, req: &ChatRequest) -> reqwest::RequestBuilder {
        self.up
            .client
            .post(self.messages_url.clone())
            .headers(self.headers.clone())
            .header(CONTENT_TYPE, "application/json")
            .body(anthropic::encode_request(req))
    }
}
