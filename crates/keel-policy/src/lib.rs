//! keel's output policies, pure and compiled once at config load:
//!
//! - [`cassette`]: the record/replay file of answers (JSON lines);
//! - [`extract`]: find the JSON in a model's reply (code fences, prose
//!   around it, several candidates) and repair it conservatively (trailing
//!   commas, single quotes, unclosed brackets), saying what was repaired;
//! - [`guard`]: guardrail detectors over text (PII, secrets, prompt
//!   injection, system-prompt leaks, refusals, denied terms, length) and
//!   reversible redaction with typed placeholders;
//! - [`schema`]: JSON Schema validation with every error's instance path;
//! - [`rules`]: invariants and forbidden states, as CEL expressions (or
//!   regexes) over the output and the input;
//! - [`cache`]: the exact-match response cache (canonical request hash,
//!   moka, bounded in bytes, a TTL per entry);
//! - [`ledger`]: budget ledgers (reserve the worst case, settle the real
//!   cost) in process, in integer micro-dollars;
//! - [`pricing`]: what a request cost, from a shipped price table and the
//!   config's;
//! - [`rate`]: keel's own rate limits (GCRA): requests and tokens per minute;
//! - [`shared`]: state shared by all replicas in Redis: budget ledgers,
//!   GCRA rate limits and the response cache's bytes, each operation one
//!   atomic Lua script, bounded by a timeout;
//! - [`template`]: prompt templates (minijinja, strict about undefined
//!   variables), versioned by a content hash.

pub mod cache;
pub mod cassette;
pub mod extract;
pub mod guard;
pub mod ledger;
pub mod pricing;
pub mod rate;
pub mod rules;
pub mod schema;
pub mod shared;
pub mod template;
