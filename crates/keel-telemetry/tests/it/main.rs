//! keel-telemetry's integration tests: one binary, a module per topic.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod trace;
