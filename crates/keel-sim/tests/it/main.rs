//! keel-sim's HTTP server, end to end over loopback with reqwest.

// All of this binary is test code, its helpers included: there an unwrap is
// the assertion (clippy's allow-unwrap-in-tests only sees `#[test]` fns).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod anthropic;
mod faults;
mod openai;
mod stats;
mod support;
