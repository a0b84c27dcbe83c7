//! Streamed answers from an OpenAI-compatible upstream: `chat.completion.chunk`
//! SSE, ending with `data: [DONE]`. keel always asks for the usage chunk.

use keel_core::{Error, EventStream};

use super::client::OpenAi;
use crate::http;

impl OpenAi {
    pub(super) async fn events(&self, response: reqwest::Response) -> Result<EventStream, Error> {
        http::event_stream(&self.up, response).await
    }
}
