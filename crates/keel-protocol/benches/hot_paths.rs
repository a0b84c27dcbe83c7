//! Micro-benchmarks of keel's per-request hot paths, with realistic payloads:
//!
//! - `request`: front-door decode → upstream encode, cross-protocol and same
//!   protocol, for a typical (2.6 KB) and a large (~65 KB) chat request, plus
//!   each step alone;
//! - `response`: upstream decode → client encode, both directions;
//! - `stream`: SSE bytes in network-sized reads → `SseParser` → upstream
//!   `StreamDecoder` → client `StreamEncoder`, both directions, plus each step;
//! - `tokens`: the offline token estimate.
//!
//! Run with `cargo bench -p keel-protocol --bench hot_paths` (add a filter such
//! as `-- stream` to run one group). Every payload is built once, outside the
//! timed code, from literal JSON. Values a benchmark returns are dropped by
//! divan outside the timing; intermediate values (the decoded `ChatRequest`)
//! are dropped inside it, as in the gateway.

// Fixtures are literals that must decode; a failure is a broken bench, so
// unwrap and the fixture asserts are the right tools here (the workspace
// denies unwrap in library code).
#![allow(clippy::unwrap_used)]

use std::hint::black_box;
use std::sync::LazyLock;
use std::time::Duration;

use divan::Bencher;
use divan::counter::{BytesCount, ItemsCount};
use keel_protocol::chat::{ChatRequest, ChatResponse, StreamEvent};
use keel_protocol::sse::{SseEvent, SseParser};
use keel_protocol::{anthropic, openai, tokens};
use serde_json::{Value, json};

fn main() {
    print_fixtures();
    // 500 samples and at most 1 s per benchmark keep the whole run well
    // under two minutes on 2 cores; CLI flags still override.
    divan::Divan::default()
        .sample_count(500)
        .max_time(Duration::from_secs(1))
        .config_with_args()
        .main();
}

/// Prints the fixture sizes (to stderr), so the figures can be read per payload.
fn print_fixtures() {
    let r = &*REQUESTS;
    let (o, a) = (&*OPENAI_STREAM, &*ANTHROPIC_STREAM);
    eprintln!(
        "fixtures: requests openai {} B / {} B, anthropic {} B / {} B (typical / large); \
             responses openai {} B, anthropic {} B; streams openai {} events {} B, anthropic {} events {} B",
        r.openai_typical.len(),
        r.openai_large.len(),
        r.anthropic_typical.len(),
        r.anthropic_large.len(),
        RESPONSES.0.len(),
        RESPONSES.1.len(),
        o.sse.len(),
        o.bytes.len(),
        a.sse.len(),
        a.bytes.len(),
    );
}

// ---------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------

const SYSTEM_PROMPT: &str = "You are Keel Assistant, a concise and accurate helper for the Acme Travel support team. \
Answer in the language of the user. When the user asks about the weather or about flights, call the matching tool \
instead of guessing, and never invent booking references or prices. Keep answers under 150 words unless the user \
asks for detail. If a tool returns an error, apologise briefly and suggest what the user can try next.";

/// A typical OpenAI chat request: system prompt, 6 turns (one tool call and
/// its result), 2 tools, sampling parameters and two parameters keel does not
/// model (`seed`, `parallel_tool_calls`, passed through in `extra`).
const OPENAI_REQUEST: &str = r#"{
  "model": "gpt-4o-mini",
  "messages": [
    {"role": "system", "content": "SYSTEM_PROMPT"},
    {"role": "user", "content": "Hi! I'm flying from Lisbon to Berlin next Friday morning. Can you tell me what the weather will be like when I land?"},
    {"role": "assistant", "content": "Sure. Which flight are you on, so I can check the arrival time in Berlin?"},
    {"role": "user", "content": "It's TP 548, departing 07:25 from LIS."},
    {"role": "assistant", "content": null, "tool_calls": [{"id": "call_9kXq2LrT4mB7vN1s", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Berlin\",\"date\":\"2025-06-13\",\"hour\":11,\"unit\":\"celsius\"}"}}]},
    {"role": "tool", "tool_call_id": "call_9kXq2LrT4mB7vN1s", "content": "{\"city\":\"Berlin\",\"date\":\"2025-06-13\",\"hour\":11,\"temperature\":19.5,\"feels_like\":18.9,\"condition\":\"partly cloudy\",\"precipitation_probability\":0.2,\"wind_kph\":14}"},
    {"role": "user", "content": "Great, thanks. And should I pack an umbrella for the rest of the weekend too?"}
  ],
  "tools": [
    {"type": "function", "function": {"name": "get_weather", "description": "Get the weather forecast for a city at a given date and local hour.", "parameters": {"type": "object", "properties": {"city": {"type": "string", "description": "City name, e.g. Berlin"}, "date": {"type": "string", "format": "date"}, "hour": {"type": "integer", "minimum": 0, "maximum": 23}, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}}, "required": ["city", "date"], "additionalProperties": false}}},
    {"type": "function", "function": {"name": "search_flights", "description": "Search scheduled flights by number or by route and date.", "parameters": {"type": "object", "properties": {"flight_number": {"type": "string", "pattern": "^[A-Z0-9]{2}\\s?[0-9]{1,4}$"}, "from": {"type": "string", "description": "IATA airport code"}, "to": {"type": "string", "description": "IATA airport code"}, "date": {"type": "string", "format": "date"}}, "additionalProperties": false}}}
  ],
  "tool_choice": "auto",
  "temperature": 0.7,
  "top_p": 0.95,
  "max_tokens": 1024,
  "user": "user-4821",
  "seed": 42,
  "parallel_tool_calls": false
}"#;

/// The same conversation as an Anthropic messages request. The tool result
/// and the follow-up question share one user turn (Anthropic requires
/// alternation), so it is 5 turns for the same 6 OpenAI messages.
const ANTHROPIC_REQUEST: &str = r#"{
  "model": "claude-sonnet-4-20250514",
  "max_tokens": 1024,
  "system": "SYSTEM_PROMPT",
  "messages": [
    {"role": "user", "content": "Hi! I'm flying from Lisbon to Berlin next Friday morning. Can you tell me what the weather will be like when I land?"},
    {"role": "assistant", "content": [{"type": "text", "text": "Sure. Which flight are you on, so I can check the arrival time in Berlin?"}]},
    {"role": "user", "content": [{"type": "text", "text": "It's TP 548, departing 07:25 from LIS."}]},
    {"role": "assistant", "content": [{"type": "text", "text": "Let me check the forecast for your arrival."}, {"type": "tool_use", "id": "toolu_01A09q90qw90lq917835lq9", "name": "get_weather", "input": {"city": "Berlin", "date": "2025-06-13", "hour": 11, "unit": "celsius"}}]},
    {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_01A09q90qw90lq917835lq9", "content": "{\"city\":\"Berlin\",\"date\":\"2025-06-13\",\"hour\":11,\"temperature\":19.5,\"feels_like\":18.9,\"condition\":\"partly cloudy\",\"precipitation_probability\":0.2,\"wind_kph\":14}"}, {"type": "text", "text": "Great, thanks. And should I pack an umbrella for the rest of the weekend too?"}]}
  ],
  "tools": [
    {"name": "get_weather", "description": "Get the weather forecast for a city at a given date and local hour.", "input_schema": {"type": "object", "properties": {"city": {"type": "string", "description": "City name, e.g. Berlin"}, "date": {"type": "string", "format": "date"}, "hour": {"type": "integer", "minimum": 0, "maximum": 23}, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}}, "required": ["city", "date"], "additionalProperties": false}},
    {"name": "search_flights", "description": "Search scheduled flights by number or by route and date.", "input_schema": {"type": "object", "properties": {"flight_number": {"type": "string", "pattern": "^[A-Z0-9]{2}\\s?[0-9]{1,4}$"}, "from": {"type": "string", "description": "IATA airport code"}, "to": {"type": "string", "description": "IATA airport code"}, "date": {"type": "string", "format": "date"}}, "additionalProperties": false}}
  ],
  "tool_choice": {"type": "auto"},
  "temperature": 0.7,
  "top_p": 0.95,
  "metadata": {"user_id": "user-4821"},
  "stop_sequences": ["\n\nHuman:"]
}"#;

/// A source file an agent reads with a tool: the bulk of a large request.
const SOURCE_FILE: &str = r#"use std::collections::HashMap;

/// A fixed-window rate limiter keyed by API key.
pub struct RateLimiter {
    limit: u32,
    window_secs: u64,
    counts: HashMap<String, (u64, u32)>,
}

impl RateLimiter {
    pub fn new(limit: u32, window_secs: u64) -> Self {
        Self { limit, window_secs, counts: HashMap::new() }
    }

    /// Returns true when the request is allowed.
    pub fn check(&mut self, key: &str, now: u64) -> bool {
        let window = now / self.window_secs;
        let entry = self.counts.entry(key.to_owned()).or_insert((window, 0));
        if entry.0 != window {
            *entry = (window, 0);
        }
        if entry.1 >= self.limit {
            return false;
        }
        entry.1 += 1;
        true
    }
}
"#;

const LARGE_TARGET: usize = 64 * 1024;

/// One round of an agentic coding session in OpenAI messages: a question, a
/// tool call reading a file, the file (~1 KB), and the assistant's analysis.
fn openai_round(i: usize) -> [Value; 4] {
    let id = format!("call_r{i:04}xq2LrT4mB7vN1s");
    [
        json!({"role": "user", "content": format!("Now look at src/limits/module_{i}.rs and tell me whether the window reset is correct when the clock goes backwards.")}),
        json!({"role": "assistant", "content": null, "tool_calls": [{"id": id, "type": "function", "function": {"name": "read_file", "arguments": format!("{{\"path\":\"src/limits/module_{i}.rs\"}}")}}]}),
        json!({"role": "tool", "tool_call_id": id, "content": SOURCE_FILE}),
        json!({"role": "assistant", "content": format!("In module_{i}.rs the window index is derived from `now / window_secs`, so a clock that goes backwards yields a smaller window and the entry is reset to zero: the caller gets a fresh budget early. Using a monotonic clock, or keeping the maximum window seen per key, fixes it.")}),
    ]
}

/// The same round as Anthropic turns.
fn anthropic_round(i: usize) -> [Value; 4] {
    let id = format!("toolu_r{i:04}09q90qw90lq917835");
    [
        json!({"role": "user", "content": [{"type": "text", "text": format!("Now look at src/limits/module_{i}.rs and tell me whether the window reset is correct when the clock goes backwards.")}]}),
        json!({"role": "assistant", "content": [{"type": "tool_use", "id": id, "name": "read_file", "input": {"path": format!("src/limits/module_{i}.rs")}}]}),
        json!({"role": "user", "content": [{"type": "tool_result", "tool_use_id": id, "content": SOURCE_FILE}]}),
        json!({"role": "assistant", "content": [{"type": "text", "text": format!("In module_{i}.rs the window index is derived from `now / window_secs`, so a clock that goes backwards yields a smaller window and the entry is reset to zero: the caller gets a fresh budget early. Using a monotonic clock, or keeping the maximum window seen per key, fixes it.")}]}),
    ]
}

/// The typical request grown to ~64 KB with earlier rounds of the session
/// inserted before its conversation (after `skip` leading system messages):
/// a long session is what makes requests large. Each round ends with an
/// assistant turn, so roles still alternate.
fn grow(typical: &str, skip: usize, round: impl Fn(usize) -> Vec<Value>) -> Vec<u8> {
    let mut body: Value = serde_json::from_str(typical).unwrap();
    let mut at = skip;
    let mut i = 0;
    loop {
        let messages = body["messages"].as_array_mut().unwrap();
        for m in round(i) {
            messages.insert(at, m);
            at += 1;
        }
        i += 1;
        let bytes = serde_json::to_vec(&body).unwrap();
        if bytes.len() >= LARGE_TARGET {
            return bytes;
        }
    }
}

struct Requests {
    openai_typical: Vec<u8>,
    openai_large: Vec<u8>,
    anthropic_typical: Vec<u8>,
    anthropic_large: Vec<u8>,
}

static REQUESTS: LazyLock<Requests> = LazyLock::new(|| {
    // The prompt is spliced in as JSON so it stays one readable constant.
    let prompt = serde_json::to_string(SYSTEM_PROMPT).unwrap();
    let splice = |s: &str| s.replace("\"SYSTEM_PROMPT\"", &prompt);
    let openai = splice(OPENAI_REQUEST);
    let anthropic = splice(ANTHROPIC_REQUEST);
    Requests {
        openai_large: grow(&openai, 1, |i| openai_round(i).into()),
        anthropic_large: grow(&anthropic, 0, |i| anthropic_round(i).into()),
        openai_typical: openai.into_bytes(),
        anthropic_typical: anthropic.into_bytes(),
    }
});

const SIZES: [&str; 2] = ["typical", "large"];

fn openai_request(size: &str) -> &'static [u8] {
    match size {
        "typical" => &REQUESTS.openai_typical,
        _ => &REQUESTS.openai_large,
    }
}

fn anthropic_request(size: &str) -> &'static [u8] {
    match size {
        "typical" => &REQUESTS.anthropic_typical,
        _ => &REQUESTS.anthropic_large,
    }
}

const ANSWER: &str = "It looks like a mixed weekend in Berlin. Friday stays mostly dry after you land, with \
partly cloudy skies and around 19 °C, but a weather front arrives on Saturday afternoon: expect showers from \
about 15:00 and a 70% chance of rain in the evening, with gusts up to 35 km/h. Sunday starts wet and clears \
by midday, with highs near 17 °C. So yes, pack a compact umbrella and a light waterproof jacket; the wind \
will make a large umbrella awkward. If you plan to visit the Museum Island or walk along the Spree on \
Saturday, go in the morning. I can also check the forecast for your return flight, or look for an earlier \
connection if you would rather leave before the rain. From the airport, the FEX express train to the \
centre runs every 30 minutes and takes about half an hour, so you should reach your hotel well before the \
first clouds arrive.";

/// A complete OpenAI chat completion: the answer and one tool call.
fn openai_response() -> Vec<u8> {
    serde_json::to_vec(&json!({
        "id": "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT",
        "object": "chat.completion",
        "created": 1_741_569_952,
        "model": "gpt-4o-2024-08-06",
        "choices": [{
            "index": 0,
            "message": {
                "role": "assistant",
                "content": ANSWER,
                "refusal": null,
                "tool_calls": [{"id": "call_9kXq2LrT4mB7vN1s", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Berlin\",\"date\":\"2025-06-15\",\"hour\":18,\"unit\":\"celsius\"}"}}],
                "annotations": []
            },
            "logprobs": null,
            "finish_reason": "tool_calls"
        }],
        "usage": {
            "prompt_tokens": 472, "completion_tokens": 189, "total_tokens": 661,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0, "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}
        },
        "service_tier": "default",
        "system_fingerprint": "fp_f9f4fb6dbf"
    }))
    .unwrap()
}

/// The same answer as an Anthropic message.
fn anthropic_response() -> Vec<u8> {
    serde_json::to_vec(&json!({
        "id": "msg_01XFDUDYJgAACzvnptvVoYEL",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-20250514",
        "content": [
            {"type": "text", "text": ANSWER},
            {"type": "tool_use", "id": "toolu_01A09q90qw90lq917835lq9", "name": "get_weather", "input": {"city": "Berlin", "date": "2025-06-15", "hour": 18, "unit": "celsius"}}
        ],
        "stop_reason": "tool_use",
        "stop_sequence": null,
        "usage": {"input_tokens": 472, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0, "output_tokens": 189, "service_tier": "standard"}
    }))
    .unwrap()
}

static RESPONSES: LazyLock<(Vec<u8>, Vec<u8>)> =
    LazyLock::new(|| (openai_response(), anthropic_response()));

/// The answer as model tokens: words with their leading space, punctuation
/// on its own, as tokenizers split English.
fn answer_tokens() -> Vec<String> {
    let mut out = Vec::new();
    for (n, word) in ANSWER.split(' ').enumerate() {
        let (body, punct) = match word.char_indices().last() {
            Some((i, c)) if ",.:;".contains(c) => (&word[..i], Some(&word[i..])),
            _ => (word, None),
        };
        out.push(if n == 0 {
            body.to_owned()
        } else {
            format!(" {body}")
        });
        if let Some(p) = punct {
            out.push(p.to_owned());
        }
    }
    out
}

/// Tool-call arguments as a model streams them, a few characters at a time.
const TOOL_ARGS: [&str; 20] = [
    "{\"",
    "city",
    "\":\"",
    "Ber",
    "lin",
    "\",\"",
    "date",
    "\":\"",
    "202",
    "5",
    "-",
    "06",
    "-",
    "15",
    "\",\"",
    "hour",
    "\":",
    "18",
    ",\"unit\":\"",
    "celsius\"}",
];

/// An OpenAI stream as api.openai.com sends it with `include_usage`: a role
/// chunk, the text token by token, a tool call streamed in pieces, the finish
/// chunk, the usage chunk and `[DONE]` (~200 events).
fn openai_transcript() -> Vec<u8> {
    let mut out = Vec::new();
    let mut chunk = |choices: Value, usage: Value| {
        let v = json!({
            "id": "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT", "object": "chat.completion.chunk",
            "created": 1_741_569_952, "model": "gpt-4o-2024-08-06", "service_tier": "default",
            "system_fingerprint": "fp_f9f4fb6dbf", "choices": choices, "usage": usage,
        });
        out.extend_from_slice(format!("data: {v}\n\n").as_bytes());
    };
    let delta = |d: Value, finish: Value| json!([{"index": 0, "delta": d, "logprobs": null, "finish_reason": finish}]);
    chunk(
        delta(
            json!({"role": "assistant", "content": "", "refusal": null}),
            Value::Null,
        ),
        Value::Null,
    );
    for t in answer_tokens() {
        chunk(delta(json!({"content": t}), Value::Null), Value::Null);
    }
    chunk(
        delta(
            json!({"tool_calls": [{"index": 0, "id": "call_9kXq2LrT4mB7vN1s", "type": "function", "function": {"name": "get_weather", "arguments": ""}}]}),
            Value::Null,
        ),
        Value::Null,
    );
    for a in TOOL_ARGS {
        chunk(
            delta(
                json!({"tool_calls": [{"index": 0, "function": {"arguments": a}}]}),
                Value::Null,
            ),
            Value::Null,
        );
    }
    chunk(delta(json!({}), json!("tool_calls")), Value::Null);
    chunk(
        json!([]),
        json!({
            "prompt_tokens": 472, "completion_tokens": 189, "total_tokens": 661,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0, "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}
        }),
    );
    out.extend_from_slice(b"data: [DONE]\n\n");
    out
}

/// The same answer as an Anthropic stream: `message_start`, a `ping`, a text
/// block delta by delta, a `tool_use` block streamed as `input_json_delta`,
/// `message_delta` and `message_stop`.
fn anthropic_transcript() -> Vec<u8> {
    let mut out = Vec::new();
    let mut event = |name: &str, data: Value| {
        out.extend_from_slice(format!("event: {name}\ndata: {data}\n\n").as_bytes());
    };
    event(
        "message_start",
        json!({"type": "message_start", "message": {
            "id": "msg_01XFDUDYJgAACzvnptvVoYEL", "type": "message", "role": "assistant",
            "model": "claude-sonnet-4-20250514", "content": [], "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": 472, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0, "output_tokens": 2, "service_tier": "standard"}
        }}),
    );
    event(
        "content_block_start",
        json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
    );
    event("ping", json!({"type": "ping"}));
    for t in answer_tokens() {
        event(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": t}}),
        );
    }
    event(
        "content_block_stop",
        json!({"type": "content_block_stop", "index": 0}),
    );
    event(
        "content_block_start",
        json!({"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use", "id": "toolu_01A09q90qw90lq917835lq9", "name": "get_weather", "input": {}}}),
    );
    for a in std::iter::once("").chain(TOOL_ARGS) {
        event(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": a}}),
        );
    }
    event(
        "content_block_stop",
        json!({"type": "content_block_stop", "index": 1}),
    );
    event(
        "message_delta",
        json!({"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": null}, "usage": {"output_tokens": 189}}),
    );
    event("message_stop", json!({"type": "message_stop"}));
    out
}

/// A transcript with everything derived from it once: its SSE events and
/// the internal events they decode to.
struct Transcript {
    bytes: Vec<u8>,
    sse: Vec<SseEvent>,
    events: Vec<StreamEvent>,
}

impl Transcript {
    fn new(bytes: Vec<u8>, decode: impl FnMut(&SseEvent) -> Vec<StreamEvent>) -> Self {
        let sse = SseParser::new().push(&bytes);
        let events: Vec<StreamEvent> = sse.iter().flat_map(decode).collect();
        // The fixture must be a whole, well-formed answer or the numbers lie.
        let text: String = events
            .iter()
            .filter_map(|e| match e {
                StreamEvent::TextDelta(t) => Some(t.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(text, ANSWER);
        assert!(matches!(events.first(), Some(StreamEvent::Start { .. })));
        assert!(matches!(events.last(), Some(StreamEvent::Done)));
        Transcript { bytes, sse, events }
    }
}

static OPENAI_STREAM: LazyLock<Transcript> = LazyLock::new(|| {
    let mut d = openai::StreamDecoder::new();
    Transcript::new(openai_transcript(), |e| d.event(e).unwrap())
});

static ANTHROPIC_STREAM: LazyLock<Transcript> = LazyLock::new(|| {
    let mut d = anthropic::StreamDecoder::new();
    Transcript::new(anthropic_transcript(), |e| d.event(e).unwrap())
});

/// Network reads: bytes arrive in chunks of this size (TLS records and TCP
/// reads of a busy stream are 1–4 KB; the last chunk is shorter).
const CHUNKS: [usize; 2] = [1024, 4096];

// ---------------------------------------------------------------------------
// Benchmarks
// ---------------------------------------------------------------------------

/// Front door decode → upstream encode, throughput in request bytes.
mod request {
    use super::*;

    #[divan::bench(args = SIZES)]
    fn openai_to_anthropic(bencher: Bencher, size: &str) {
        let body = openai_request(size);
        bencher
            .counter(BytesCount::of_slice(body))
            .bench(|| anthropic::encode_request(&openai::decode_request(black_box(body)).unwrap()));
    }

    #[divan::bench(args = SIZES)]
    fn openai_to_openai(bencher: Bencher, size: &str) {
        let body = openai_request(size);
        bencher
            .counter(BytesCount::of_slice(body))
            .bench(|| openai::encode_request(&openai::decode_request(black_box(body)).unwrap()));
    }

    #[divan::bench(args = SIZES)]
    fn anthropic_to_openai(bencher: Bencher, size: &str) {
        let body = anthropic_request(size);
        bencher
            .counter(BytesCount::of_slice(body))
            .bench(|| openai::encode_request(&anthropic::decode_request(black_box(body)).unwrap()));
    }

    #[divan::bench(args = SIZES)]
    fn anthropic_to_anthropic(bencher: Bencher, size: &str) {
        let body = anthropic_request(size);
        bencher.counter(BytesCount::of_slice(body)).bench(|| {
            anthropic::encode_request(&anthropic::decode_request(black_box(body)).unwrap())
        });
    }

    /// Each step alone. A decode drops its `ChatRequest` inside the timing,
    /// so decode + encode adds up to the paths above.
    mod step {
        use super::*;

        fn bench_decode(bencher: Bencher, body: &[u8], decode: fn(&[u8]) -> ChatRequest) {
            bencher
                .counter(BytesCount::of_slice(body))
                .bench(|| drop(black_box(decode(black_box(body)))));
        }

        fn bench_encode(
            bencher: Bencher,
            body: &[u8],
            decode: fn(&[u8]) -> ChatRequest,
            encode: fn(&ChatRequest) -> Vec<u8>,
        ) {
            let req = decode(body);
            bencher
                .counter(BytesCount::of_slice(body))
                .bench(|| encode(black_box(&req)));
        }

        fn openai_decode(body: &[u8]) -> ChatRequest {
            openai::decode_request(body).unwrap()
        }

        fn anthropic_decode(body: &[u8]) -> ChatRequest {
            anthropic::decode_request(body).unwrap()
        }

        #[divan::bench(args = SIZES)]
        fn decode_openai(bencher: Bencher, size: &str) {
            bench_decode(bencher, openai_request(size), openai_decode);
        }

        #[divan::bench(args = SIZES)]
        fn decode_anthropic(bencher: Bencher, size: &str) {
            bench_decode(bencher, anthropic_request(size), anthropic_decode);
        }

        /// Encode for Anthropic a request that came in as OpenAI.
        #[divan::bench(args = SIZES)]
        fn encode_anthropic_from_openai(bencher: Bencher, size: &str) {
            let body = openai_request(size);
            bench_encode(bencher, body, openai_decode, anthropic::encode_request);
        }

        #[divan::bench(args = SIZES)]
        fn encode_openai_from_openai(bencher: Bencher, size: &str) {
            let body = openai_request(size);
            bench_encode(bencher, body, openai_decode, openai::encode_request);
        }

        #[divan::bench(args = SIZES)]
        fn encode_openai_from_anthropic(bencher: Bencher, size: &str) {
            let body = anthropic_request(size);
            bench_encode(bencher, body, anthropic_decode, openai::encode_request);
        }

        #[divan::bench(args = SIZES)]
        fn encode_anthropic_from_anthropic(bencher: Bencher, size: &str) {
            let body = anthropic_request(size);
            bench_encode(bencher, body, anthropic_decode, anthropic::encode_request);
        }
    }
}

/// Upstream body decode → client encode, throughput in upstream bytes.
mod response {
    use super::*;

    #[divan::bench]
    fn anthropic_to_openai(bencher: Bencher) {
        let body = &RESPONSES.1;
        bencher.counter(BytesCount::of_slice(body)).bench(|| {
            openai::encode_response(&anthropic::decode_response(black_box(body)).unwrap())
        });
    }

    #[divan::bench]
    fn openai_to_anthropic(bencher: Bencher) {
        let body = &RESPONSES.0;
        bencher.counter(BytesCount::of_slice(body)).bench(|| {
            anthropic::encode_response(&openai::decode_response(black_box(body)).unwrap())
        });
    }

    mod step {
        use super::*;

        #[divan::bench]
        fn decode_anthropic(bencher: Bencher) {
            let body = &RESPONSES.1;
            bencher.counter(BytesCount::of_slice(body)).bench(|| {
                drop(black_box(
                    anthropic::decode_response(black_box(body)).unwrap(),
                ))
            });
        }

        #[divan::bench]
        fn decode_openai(bencher: Bencher) {
            let body = &RESPONSES.0;
            bencher
                .counter(BytesCount::of_slice(body))
                .bench(|| drop(black_box(openai::decode_response(black_box(body)).unwrap())));
        }

        #[divan::bench]
        fn encode_openai(bencher: Bencher) {
            let resp: ChatResponse = anthropic::decode_response(&RESPONSES.1).unwrap();
            bencher.bench(|| openai::encode_response(black_box(&resp)));
        }

        #[divan::bench]
        fn encode_anthropic(bencher: Bencher) {
            let resp: ChatResponse = openai::decode_response(&RESPONSES.0).unwrap();
            bencher.bench(|| anthropic::encode_response(black_box(&resp)));
        }
    }
}

/// A whole streamed answer through the gateway: network reads of `chunk`
/// bytes → SSE parser → upstream decoder → client encoder, the output
/// buffer flushed (cleared) after each read. Counted per upstream SSE event
/// and per upstream byte.
mod stream {
    use super::*;

    fn counters<'a, 'b>(bencher: Bencher<'a, 'b>, t: &Transcript) -> Bencher<'a, 'b> {
        bencher
            .counter(ItemsCount::new(t.sse.len()))
            .counter(BytesCount::of_slice(&t.bytes))
    }

    #[divan::bench(args = CHUNKS)]
    fn openai_to_anthropic(bencher: Bencher, chunk: usize) {
        let t = &*OPENAI_STREAM;
        counters(bencher, t).bench(|| {
            let mut parser = SseParser::new();
            let mut decoder = openai::StreamDecoder::new();
            let mut encoder = anthropic::StreamEncoder::new();
            let mut out = Vec::with_capacity(8192);
            let mut written = 0;
            for read in black_box(&t.bytes).chunks(chunk) {
                for sse in parser.push(read) {
                    for ev in decoder.event(&sse).unwrap() {
                        encoder.event(&ev, &mut out);
                    }
                }
                written += out.len();
                out.clear();
            }
            written
        });
    }

    #[divan::bench(args = CHUNKS)]
    fn anthropic_to_openai(bencher: Bencher, chunk: usize) {
        let t = &*ANTHROPIC_STREAM;
        counters(bencher, t).bench(|| {
            let mut parser = SseParser::new();
            let mut decoder = anthropic::StreamDecoder::new();
            let mut encoder = openai::StreamEncoder::new(true);
            let mut out = Vec::with_capacity(8192);
            let mut written = 0;
            for read in black_box(&t.bytes).chunks(chunk) {
                for sse in parser.push(read) {
                    for ev in decoder.event(&sse).unwrap() {
                        encoder.event(&ev, &mut out);
                    }
                }
                written += out.len();
                out.clear();
            }
            written
        });
    }

    /// Each step alone over the whole transcript (parse in 4 KB reads).
    mod step {
        use super::*;

        fn parse(bencher: Bencher, t: &Transcript) {
            counters(bencher, t).bench(|| {
                let mut parser = SseParser::new();
                let mut n = 0;
                for read in black_box(&t.bytes).chunks(4096) {
                    n += parser.push(read).len();
                }
                n
            });
        }

        #[divan::bench]
        fn parse_openai(bencher: Bencher) {
            parse(bencher, &OPENAI_STREAM);
        }

        #[divan::bench]
        fn parse_anthropic(bencher: Bencher) {
            parse(bencher, &ANTHROPIC_STREAM);
        }

        #[divan::bench]
        fn decode_openai(bencher: Bencher) {
            let t = &*OPENAI_STREAM;
            counters(bencher, t).bench(|| {
                let mut decoder = openai::StreamDecoder::new();
                let mut n = 0;
                for sse in black_box(&t.sse) {
                    n += decoder.event(sse).unwrap().len();
                }
                n
            });
        }

        #[divan::bench]
        fn decode_anthropic(bencher: Bencher) {
            let t = &*ANTHROPIC_STREAM;
            counters(bencher, t).bench(|| {
                let mut decoder = anthropic::StreamDecoder::new();
                let mut n = 0;
                for sse in black_box(&t.sse) {
                    n += decoder.event(sse).unwrap().len();
                }
                n
            });
        }

        /// Encode for an Anthropic client the events an OpenAI upstream sent.
        #[divan::bench]
        fn encode_anthropic(bencher: Bencher) {
            let t = &*OPENAI_STREAM;
            counters(bencher, t).bench(|| {
                let mut encoder = anthropic::StreamEncoder::new();
                let mut out = Vec::with_capacity(8192);
                let mut written = 0;
                for ev in black_box(&t.events) {
                    encoder.event(ev, &mut out);
                    written += out.len();
                    out.clear();
                }
                written
            });
        }

        /// Encode for an OpenAI client the events an Anthropic upstream sent.
        #[divan::bench]
        fn encode_openai(bencher: Bencher) {
            let t = &*ANTHROPIC_STREAM;
            counters(bencher, t).bench(|| {
                let mut encoder = openai::StreamEncoder::new(true);
                let mut out = Vec::with_capacity(8192);
                let mut written = 0;
                for ev in black_box(&t.events) {
                    encoder.event(ev, &mut out);
                    written += out.len();
                    out.clear();
                }
                written
            });
        }
    }
}

/// The offline token estimate.
mod tokens_estimate {
    use super::*;

    const TEXT_SIZES: [usize; 2] = [1024, 64 * 1024];

    /// English-like text of exactly `len` bytes.
    fn text(len: usize) -> String {
        let mut s = String::with_capacity(len + ANSWER.len());
        while s.len() < len {
            s.push_str(ANSWER);
            s.push(' ');
        }
        let mut end = len;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s
    }

    #[divan::bench(args = TEXT_SIZES)]
    fn estimate(bencher: Bencher, len: usize) {
        let text = text(len);
        bencher
            .counter(BytesCount::of_str(&text))
            .bench(|| tokens::estimate(black_box(&text)));
    }

    /// On the decoded typical (~2 KB) and large (~64 KB) OpenAI requests.
    #[divan::bench(args = SIZES)]
    fn estimate_request(bencher: Bencher, size: &str) {
        let body = openai_request(size);
        let req = openai::decode_request(body).unwrap();
        bencher
            .counter(BytesCount::of_slice(body))
            .bench(|| tokens::estimate_request(black_box(&req)));
    }
}
