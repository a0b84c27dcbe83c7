//! Streamed answers from the Anthropic API: `message_start` … `message_stop`.

use keel_core::{Error, EventStream};

use super::client::Anthropic;
use crate::http;

impl Anthropic {
    pub(super) async fn events(&self, response: reqwest::Response) -> Result<EventStream, Error> {
        http::event_stream(&self.up, response).await
    }
}
