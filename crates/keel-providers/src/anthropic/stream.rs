//! Streamed answers from the Anthropic API: `message_start` … `message_stop`.

use keel_core::EventStream;

use super::client::Anthropic;
use crate::http;

impl Anthropic {
    pub(super) fn events(&self, response: reqwest::Response) -> EventStream {
        http::event_stream(&self.up, response)
    }
}
