//! `openai::decode_request` on arbitrary bytes: a `POST /v1/chat/completions`
//! body as a client sends it.
//!
//! Invariants (see `common::check_request`): decoding never panics; what
//! decodes encodes into valid JSON in both protocols; keel's decoders
//! accept keel's own encodings of a non-empty conversation; decode → encode
//! in the client's protocol is a fixed point after one round.

#![no_main]

mod common;

use keel_protocol::openai;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(req) = openai::decode_request(data) {
        common::check_request(&req, common::Proto::OpenAi);
    }
});
