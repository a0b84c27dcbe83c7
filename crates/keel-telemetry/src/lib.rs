//! keel's telemetry: what a request looks like from outside.
//!
//! - [`metrics`]: the Prometheus registry behind `GET /metrics` — request,
//!   latency, token, cost, attempt and verdict series counted from each
//!   request's record, live state read at scrape time, labels bounded to
//!   names the config knows;
//! - [`trace`]: OpenTelemetry traces over OTLP/HTTP, one span tree per
//!   request (phases and upstream attempts) with the GenAI conventions,
//!   built after the request from its recorded timings; W3C `traceparent`
//!   in and out.
//!
//! Logs are `tracing` events emitted where things happen; the subscriber
//! that writes them (JSON lines or text) is process-global and so is set up
//! by the binary, not here.

pub mod metrics;
pub mod trace;
