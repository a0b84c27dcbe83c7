//! keel-protocol's integration tests, one binary (link time on 2 cores):
//!
//! - [`translate`]: snapshots of requests and responses translated between
//!   OpenAI and Anthropic, as the official SDKs and APIs must accept them;
//! - [`stream`]: hand-written upstream SSE transcripts run through a decoder
//!   and the other protocol's encoder, snapshotted and re-assembled;
//! - [`roundtrip`]: decode → encode → decode gives back the same internal
//!   model, modulo the documented lossy points; finish-reason mapping;
//! - [`decode_errors`]: bad bodies give a `DecodeError` naming the field;
//! - [`props`]: property tests (no panics on arbitrary input, SSE chunking,
//!   encoders always write well-formed streams).

// All of this binary is test code, its helpers included: there an unwrap is
// the assertion (clippy's allow-unwrap-in-tests only sees `#[test]` fns).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod decode_errors;
mod props;
mod roundtrip;
mod stream;
mod translate;
mod util;
