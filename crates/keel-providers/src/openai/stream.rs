//! Streamed answers from an OpenAI-compatible upstream: `chat.completion.chunk`
//! SSE, ending with `data: [DONE]`. keel always asks for the usage chunk.

use keel_core::EventStream;

use super::client::OpenAi;
use crate::http;

impl OpenAi {
    pub(super) fn events(&self, response: reqwest::Response) -> EventStream {
        http::event_stream(&self.up, response)
    }
}
