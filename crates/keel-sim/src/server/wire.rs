//! The two chat protocols behind one interface, so each route's logic is
//! written once.

use keel_protocol::chat::{ChatRequest, ChatResponse, StreamEvent};
use keel_protocol::{DecodeError, WireError, anthropic, openai};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Wire {
    OpenAi,
    Anthropic,
}

impl Wire {
    pub(super) fn decode(self, body: &[u8]) -> Result<ChatRequest, DecodeError> {
        match self {
            Wire::OpenAi => openai::decode_request(body),
            Wire::Anthropic => anthropic::decode_request(body),
        }
    }

    pub(super) fn encode_response(self, resp: &ChatResponse) -> Vec<u8> {
        match self {
            Wire::OpenAi => openai::encode_response(resp),
            Wire::Anthropic => anthropic::encode_response(resp),
        }
    }

    pub(super) fn encode_error(self, err: &WireError) -> Vec<u8> {
        match self {
            Wire::OpenAi => openai::encode_error(err),
            Wire::Anthropic => anthropic::encode_error(err),
        }
    }

    pub(super) fn stream_encoder(self, include_usage: bool) -> Encoder {
        match self {
            Wire::OpenAi => Encoder::OpenAi(openai::StreamEncoder::new(include_usage)),
            // Anthropic streams always carry usage (message_delta).
            Wire::Anthropic => Encoder::Anthropic(anthropic::StreamEncoder::new()),
        }
    }
}

pub(super) enum Encoder {
    OpenAi(openai::StreamEncoder),
    Anthropic(anthropic::StreamEncoder),
}

impl Encoder {
    pub(super) fn event(&mut self, ev: &StreamEvent, out: &mut Vec<u8>) {
        match self {
            Encoder::OpenAi(e) => e.event(ev, out),
            Encoder::Anthropic(e) => e.event(ev, out),
        }
    }

    pub(super) fn error(&mut self, err: &WireError, out: &mut Vec<u8>) {
        match self {
            Encoder::OpenAi(e) => e.error(err, out),
            Encoder::Anthropic(e) => e.error(err, out),
        }
    }
}
