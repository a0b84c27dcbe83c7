//! keel's output policies, pure and compiled once at config load:
//!
//! - [`extract`]: find the JSON in a model's reply (code fences, prose
//!   around it, several candidates) and repair it conservatively (trailing
//!   commas, single quotes, unclosed brackets), saying what was repaired;
//! - [`schema`]: JSON Schema validation with every error's instance path;
//! - [`rules`]: invariants and forbidden states, as CEL expressions (or
//!   regexes) over the output and the input;
//! - [`cache`]: the exact-match response cache (canonical request hash,
//!   moka, bounded in bytes, a TTL per entry);
//! - [`pricing`]: what a request cost, from a shipped price table and the
//!   config's;
//! - [`rate`]: keel's own rate limits (GCRA): requests and tokens per minute;
//! - [`template`]: prompt templates (minijinja, strict about undefined
//!   variables), versioned by a content hash.

pub mod cache;
pub mod extract;
pub mod pricing;
pub mod rate;
pub mod rules;
pub mod schema;
pub mod template;
