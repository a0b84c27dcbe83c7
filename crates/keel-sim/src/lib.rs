//! keel-sim: keel's provider simulator, the upstream every keel test runs
//! against. Deterministic for a seed, scriptable, and able to misbehave on
//! demand in every way a real provider does.
//!
//! Two faces:
//! - the **engine**, [`Simulator`]: a [`ChatRequest`](keel_protocol::chat::ChatRequest)
//!   and an optional fault spec in, a transport-neutral [`Plan`] out (the
//!   reply, its stream form, and the faults to act out). keel's in-process
//!   `sim` provider executes plans directly;
//! - the **HTTP server**, [`serve`]: the OpenAI (`POST /v1/chat/completions`,
//!   `POST /v1/embeddings`, `GET /v1/models`) and Anthropic (`POST /v1/messages`)
//!   protocols, streamed or not, plus `GET /_sim/stats` and `GET /healthz`.
//!
//! # Replies
//!
//! The first script rule matching the last user message answers. Otherwise
//! the default answer depends only on the request's content and the seed:
//! - tools declared, `tool_choice` not `none`, the last message from the user:
//!   a call to the forced tool (or the first), arguments generated from its
//!   JSON Schema;
//! - `response_format` `json_schema`: a JSON value satisfying the schema;
//!   `json_object`: a small JSON object;
//! - else text: `Simulated reply to: "<first 60 chars>".` (or `…using the tool
//!   result…` after a tool message) and a few seeded words.
//!
//! Stop sequences cut the text; `max_tokens` below the reply cuts it to about
//! that many tokens with finish reason `length`. Usage is estimated with
//! [`keel_protocol::tokens::estimate`]: input over the system prompt and every
//! message, output over the text and tool arguments.
//!
//! Embeddings are unit-length vectors drawn from a hash of (seed, input),
//! `dimensions` long (default 16, at most 8192): identical inputs match.
//!
//! [`Simulator::stats`] (and `GET /_sim/stats`) counts planned requests,
//! HTTP requests per route, injected faults and responses the client
//! abandoned.
//!
//! # Script file (TOML)
//!
//! ```toml
//! [[rule]]
//! contains = "weather"            # case-insensitive substring, or:
//! # regex = '^order \d+$'         # regex on the last user message; neither = any
//! tool_call = { name = "get_weather", arguments = { city = "Paris" } }
//! # exactly one of: reply = "text" | tool_call = {…} | json = <any value>
//! fault = "ttft=300ms"            # optional, header syntax
//! usage = { input_tokens = 10, output_tokens = 5 }   # optional, either field
//! ```
//!
//! Unknown keys, a bad regex or fault, or a rule without exactly one answer
//! fail [`Simulator::new`], naming the rule's index.
//!
//! # Faults
//!
//! Per request, from the `x-keel-sim-fault` header (present, even empty, it
//! wins), else the matched script rule's `fault`, else the config rules
//! `{ rate, fault }` drawn in order with an RNG seeded by the seed and the
//! request index. Comma-separated items, e.g. `latency=200ms,status=503,retry-after=2`:
//!
//! | item | effect |
//! |---|---|
//! | `latency=D` | wait before anything, even response headers (`D`: `200ms`, `2s`, `1.5s`; ≤ 1h) |
//! | `ttft=D` | wait before the first stream event, or before a non-stream body |
//! | `gap=D` | wait between stream events |
//! | `status=N` | answer status N (400–599) with the protocol's error body |
//! | `retry-after=S` | with `status=`: a `Retry-After: S` header |
//! | `reset` | drop the connection without any response |
//! | `hang` | never answer |
//! | `malformed` | a 200 whose body is not JSON; in a stream, a non-JSON event after the first |
//! | `schema-violation` | JSON breaking the requested schema (tool arguments first, else `json_schema`/`json_object` text): a required property dropped and another mistyped |
//! | `cut=N` | the stream ends after N events with no terminal event; a non-stream body is cut in half and the connection dropped |
//! | `stream-error=N` | after N events, the protocol's error event (OpenAI `data: {"error":…}`, Anthropic `event: error`); non-stream: a 500 |
//!
//! `N` in `cut`/`stream-error` counts keel's stream events
//! ([`StreamEvent`](keel_protocol::chat::StreamEvent): `Start`, each delta,
//! `Finish`, `Usage`), not SSE frames: the protocol's encoder decides the
//! frames (Anthropic folds `Finish` and `Usage` into its closing ones). The header is
//! [`FAULT_HEADER`]; [`Fault::parse`] parses a spec.
//!
//! At most one of `status`, `reset`, `hang`, `malformed`, `cut`,
//! `stream-error`; timings and `schema-violation` combine with any. An
//! unknown or malformed item is an error (the server answers 400 naming it).

mod embed;
mod error;
mod fault;
mod plan;
mod reply;
mod schema;
mod script;
mod seed;
mod server;
mod simulator;
mod stats;
mod words;

pub use error::SimError;
pub use fault::{Fault, FaultError, Outcome};
pub use plan::{MALFORMED, Plan, StreamStep, cut_body};
pub use server::{FAULT_HEADER, serve};
pub use simulator::Simulator;
pub use stats::SimStats;
