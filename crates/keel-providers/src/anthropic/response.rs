//! What comes back from the Anthropic API, as internal types. A body that
//! does not decode is the upstream's fault (502), not the client's.

use keel_core::Error;
use keel_protocol::anthropic;
use keel_protocol::chat::ChatResponse;

use super::client::Anthropic;

impl Anthropic {
    /// `forced`: the tool keel forced for a JSON-schema answer, whose input
    /// becomes the answer's text.
    pub(super) fn chat_response(
        &self,
        body: &[u8],
        forced: Option<&str>,
    ) -> Result<ChatResponse, Error> {
        let mut resp = anthropic::decode_response(body)
            .map_err(|e| Error::upstream_protocol(&self.up.name, e))?;
        if let Some(tool) = forced {
            anthropic::unwrap_structured(&mut resp, tool);
        }
        Ok(resp)
    }
}
