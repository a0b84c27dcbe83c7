//! Streamed answers from the Anthropic API: `message_start` … `message_stop`.

use futures::StreamExt;
use keel_core::{Error, EventStream};
use keel_protocol::anthropic;

use super::client::Anthropic;
use crate::http;

impl Anthropic {
    /// `forced`: the tool keel forced for a JSON-schema answer, whose
    /// argument deltas become text deltas.
    pub(super) async fn events(
        &self,
        response: reqwest::Response,
        forced: Option<String>,
    ) -> Result<EventStream, Error> {
        let events = http::event_stream(&self.up, response).await?;
        Ok(match forced {
            None => events,
            Some(tool) => {
                let mut map = anthropic::StructuredStream::new(tool);
                events
                    .filter_map(move |item| {
                        futures::future::ready(match item {
                            Ok(ev) => map.map(ev).map(Ok),
                            Err(e) => Some(Err(e)),
                        })
                    })
                    .boxed()
            }
        })
    }
}
