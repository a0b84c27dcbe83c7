//! Everything that depends on the client's protocol, in one place: decoding
//! its request, encoding the answer, the stream encoder, and the error shape.

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use keel_core::Error;
use keel_protocol::chat::{ChatRequest, ChatResponse, Protocol, StreamEvent};
use keel_protocol::{WireError, anthropic, openai};

use crate::error;

/// A front door: which protocol the client speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Front(pub Protocol);

impl Front {
    pub const OPENAI: Front = Front(Protocol::OpenAi);
    pub const ANTHROPIC: Front = Front(Protocol::Anthropic);

    pub fn name(self) -> &'static str {
        self.0.as_str()
    }

    pub fn decode(self, body: &[u8]) -> Result<ChatRequest, Error> {
        let decoded = match self.0 {
            Protocol::OpenAi => openai::decode_request(body),
            Protocol::Anthropic => anthropic::decode_request(body),
        };
        decoded.map_err(|e| {
            let err = Error::invalid_request(e.message);
            match e.param {
                Some(p) => err.with_param(p),
                None => err,
            }
        })
    }

    pub fn encode(self, resp: &ChatResponse) -> Vec<u8> {
        match self.0 {
            Protocol::OpenAi => openai::encode_response(resp),
            Protocol::Anthropic => anthropic::encode_response(resp),
        }
    }

    pub fn encoder(self, include_usage: bool) -> Encoder {
        match self.0 {
            Protocol::OpenAi => Encoder::OpenAi(openai::StreamEncoder::new(include_usage)),
            Protocol::Anthropic => Encoder::Anthropic(anthropic::StreamEncoder::new()),
        }
    }

    pub fn error_body(self, err: &WireError) -> Vec<u8> {
        match self.0 {
            Protocol::OpenAi => openai::encode_error(err),
            Protocol::Anthropic => anthropic::encode_error(err),
        }
    }

    /// A complete error response in this protocol's shape.
    pub fn error_response(self, err: &Error) -> Response {
        let wire = error::wire(err);
        let status = StatusCode::from_u16(wire.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (
            status,
            [(header::CONTENT_TYPE, "application/json")],
            self.error_body(&wire),
        )
            .into_response();
        error::decorate(err, &mut response);
        response
    }
}

/// The client's stream encoder.
pub(crate) enum Encoder {
    OpenAi(openai::StreamEncoder),
    Anthropic(anthropic::StreamEncoder),
}

impl Encoder {
    pub fn event(&mut self, ev: &StreamEvent, out: &mut Vec<u8>) {
        match self {
            Encoder::OpenAi(e) => e.event(ev, out),
            Encoder::Anthropic(e) => e.event(ev, out),
        }
    }

    pub fn error(&mut self, err: &Error, out: &mut Vec<u8>) {
        let wire = error::wire(err);
        match self {
            Encoder::OpenAi(e) => e.error(&wire, out),
            Encoder::Anthropic(e) => e.error(&wire, out),
        }
    }
}
