//! `keel eval capture`: logged requests turned into dataset cases (JSON
//! lines, the format `keel eval run` reads), so that what went wrong in
//! production becomes a regression test.
//!
//! **Which requests**: those of the request log (`--db`, or the config's
//! `[log]`, as for `keel logs`) that are chat, function or workflow calls
//! and match every filter given: `--route` (function or workflow name),
//! `--model`, `--status` (`error` for any failure), `--error-kind`,
//! `--since`/`--until`, `--grep`, and `--min-feedback`/`--max-feedback` on
//! the latest feedback score (requests without a scored feedback are left
//! out when either is given). Successes and failures alike by default, over
//! the whole log: `--limit` (default 1000) keeps the newest.
//!
//! **One case per request**, oldest first:
//! - `id`: the request id (a reused id keeps its newest request);
//! - `input`: a function's or workflow's input object, or for a chat
//!   request `{"messages": [...], "model": ALIAS}` with the messages in the
//!   OpenAI shape whichever front door took them, system messages included;
//! - `expected`: none by default — a logged answer is what the model said,
//!   not what it should have said. `--expected output` copies the answer of
//!   a successful request (the function's output, the last workflow step's
//!   output, the assistant's text), for datasets of answers a person
//!   approved (e.g. with `--min-feedback 1`);
//! - `tags`: `route:NAME`, `model:ALIAS`, `status:CODE`, `error:KIND`,
//!   `feedback:LABEL`;
//! - `metadata`: the request's time, op, status, error kind, the target
//!   that served it, the capture policy, the latest feedback score and
//!   comment.
//!
//! **Redaction**: a case is rebuilt from the bodies the capture policy
//! kept. `hashed` and `off` kept none: those requests are skipped, and
//! counted. Credentials are masked in every string of a case, always;
//! contact and payment data (e-mail addresses, card and phone numbers) too
//! unless `--no-redact` — the masking the `redacted` policy applies, so a
//! `full` capture comes out as a `redacted` one would have. Running it on
//! decoded JSON again also catches what escapes hid from the raw text. As a
//! last check each case is scanned whole for credentials and skipped if
//! one still shows.
//!
//! The cases go to stdout, or to `--out FILE` (never overwritten without
//! `--force`); a summary of what was written and skipped, and why, goes to
//! stderr.

use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, anyhow};
use keel_config::Capture;
use keel_core::redact;
use keel_eval::dataset::{self, Case};
use keel_protocol::{anthropic, openai};
use keel_store::RequestRecord;
use serde_json::{Map, Value, json};

use crate::inspect;

/// The ops a case can be rebuilt from.
const OPS: [&str; 3] = ["chat", "function", "workflow"];

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    source: inspect::Source,
    #[command(flatten)]
    select: inspect::Select,
    /// Only calls of this function or workflow.
    #[arg(long)]
    route: Option<String>,
    /// Only failures of this kind (`output_invalid`, `timeout`, …).
    #[arg(long)]
    error_kind: Option<String>,
    /// Only requests whose latest feedback score is at least this.
    #[arg(long)]
    min_feedback: Option<f64>,
    /// Only requests whose latest feedback score is at most this.
    #[arg(long)]
    max_feedback: Option<f64>,
    /// How many of the newest matching requests to turn into cases (0: all).
    #[arg(long, short = 'n', default_value_t = 1000)]
    limit: usize,
    /// What `expected` holds: nothing, or the logged answer of a successful
    /// request.
    #[arg(long, value_enum, default_value_t = Expected::None)]
    expected: Expected,
    /// Keep contact and payment data that a `full` capture kept
    /// (credentials are masked regardless).
    #[arg(long)]
    no_redact: bool,
    /// Write the cases to this file (JSON lines) instead of stdout.
    #[arg(long, short)]
    out: Option<PathBuf>,
    /// Overwrite `--out` if it exists.
    #[arg(long, requires = "out")]
    force: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Expected {
    None,
    Output,
}

pub async fn run(args: &Args) -> anyhow::Result<()> {
    let store = inspect::open(&args.source, || crate::cli::config_of(&args.source)).await?;
    let mut filter = args.select.filter(args.limit);
    filter.route.clone_from(&args.route);
    filter.error_kind.clone_from(&args.error_kind);
    filter.min_score = args.min_feedback;
    filter.max_score = args.max_feedback;
    filter.ops = OPS.map(str::to_owned).to_vec();
    let records = store
        .list(&filter)
        .await
        .context("cannot read the request log")?;

    let mask = Mask {
        personal: !args.no_redact,
    };
    let mut seen = HashSet::new();
    let mut cases = Vec::new();
    let mut skipped: BTreeMap<String, usize> = BTreeMap::new();
    // Newest first: a reused id keeps its newest request.
    for rec in &records {
        let built = if seen.insert(rec.id.as_str()) {
            case(rec, args.expected, mask)
        } else {
            Err("whose request id was reused by a newer request".to_owned())
        };
        match built {
            Ok(c) => cases.push(c),
            Err(why) => *skipped.entry(why).or_default() += 1,
        }
    }
    cases.reverse();

    match &args.out {
        Some(path) => {
            let file = if args.force {
                std::fs::File::create(path)
            } else {
                std::fs::File::create_new(path)
            };
            let file = file.map_err(|e| match e.kind() {
                std::io::ErrorKind::AlreadyExists => {
                    anyhow!("{} exists (--force overwrites it)", path.display())
                }
                _ => anyhow!("cannot write {}: {e}", path.display()),
            })?;
            let mut out = std::io::BufWriter::new(file);
            dataset::write_jsonl(&cases, &mut out)?;
            out.flush()
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        None => {
            let mut out = std::io::stdout().lock();
            dataset::write_jsonl(&cases, &mut out)?;
            out.flush()?;
        }
    }
    eprintln!("{}", summary(cases.len(), args.out.as_ref(), &skipped));
    Ok(())
}

/// `keel eval capture: 4 cases written to FILE; skipped 2 requests whose …`
fn summary(written: usize, out: Option<&PathBuf>, skipped: &BTreeMap<String, usize>) -> String {
    let plural =
        |n: usize, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
    let mut line = format!(
        "keel eval capture: {} written to {}",
        plural(written, "case", "cases"),
        out.map_or("stdout".to_owned(), |p| p.display().to_string())
    );
    if !skipped.is_empty() {
        let why: Vec<String> = skipped
            .iter()
            .map(|(why, n)| format!("{} {why}", plural(*n, "request", "requests")))
            .collect();
        line.push_str(&format!("; skipped {}", why.join(", ")));
    }
    line
}

/// The case a record makes, or why it makes none (completing "skipped N
/// requests …").
fn case(rec: &RequestRecord, expected: Expected, mask: Mask) -> Result<Case, String> {
    if matches!(rec.capture, Capture::Hashed | Capture::Off) {
        return Err(format!(
            "whose bodies were not captured (capture = {})",
            rec.capture.name()
        ));
    }
    let body = rec
        .input
        .as_deref()
        .ok_or("whose request body was not logged")?;
    let input = mask.object(input(rec, body)?);
    let expected = match expected {
        Expected::Output if (200..300).contains(&rec.status) => rec
            .output
            .as_deref()
            .and_then(|out| answer(rec, out))
            .map(|mut v| {
                mask.value(&mut v);
                v
            }),
        _ => None,
    };

    let mut tags = Vec::new();
    tags.extend(rec.route.iter().map(|r| format!("route:{r}")));
    if !rec.model.is_empty() {
        tags.push(format!("model:{}", rec.model));
    }
    tags.push(format!("status:{}", rec.status));
    tags.extend(rec.error_kind.iter().map(|k| format!("error:{k}")));
    for label in rec.feedback.iter().filter_map(|f| f.label.as_deref()) {
        let tag = format!("feedback:{}", mask.text(label));
        if !tags.contains(&tag) {
            tags.push(tag);
        }
    }

    let mut metadata = Map::new();
    let mut meta = |key: &str, value: Value| {
        metadata.insert(key.to_owned(), value);
    };
    meta("request_time", json!(inspect::time(rec.time_ms)));
    meta("op", json!(rec.op));
    meta("status", json!(rec.status));
    meta("capture", json!(rec.capture.name()));
    if let Some(kind) = &rec.error_kind {
        meta("error_kind", json!(kind));
    }
    if let Some(target) = &rec.target {
        meta("served_by", json!(target));
    }
    if let Some(score) = rec.feedback.iter().rev().find_map(|f| f.score) {
        meta("feedback_score", json!(score));
    }
    if let Some(comment) = rec.feedback.iter().rev().find_map(|f| f.comment.as_deref()) {
        meta("feedback_comment", json!(mask.text(comment)));
    }

    let case = Case {
        id: rec.id.clone(),
        input,
        expected,
        tags,
        metadata,
    };
    // The last check, on the case as written: a credential may straddle
    // JSON syntax (`"password": "…"`) that no single string shows.
    let line = serde_json::to_string(&case).map_err(|e| e.to_string())?;
    if line != redact::secrets(&line) {
        return Err("whose case still held a credential after masking".to_owned());
    }
    Ok(case)
}

const UNREADABLE: &str = "whose logged request body is not JSON (cut at capture_max_bytes?)";

/// The case's input from the logged request body: a function's or
/// workflow's `input`; a chat request's messages (OpenAI shape) and model.
fn input(rec: &RequestRecord, body: &str) -> Result<Map<String, Value>, String> {
    if rec.op == "chat" {
        let decoded = match rec.front.as_str() {
            "anthropic" => anthropic::decode_request(body.as_bytes()),
            _ => openai::decode_request(body.as_bytes()),
        };
        let req = decoded.map_err(|_| UNREADABLE.to_owned())?;
        let mut encoded: Map<String, Value> =
            serde_json::from_slice(&openai::encode_request(&req)).unwrap_or_default();
        let messages = encoded.remove("messages").unwrap_or_default();
        return Ok(Map::from_iter([
            ("messages".to_owned(), messages),
            ("model".to_owned(), json!(rec.model)),
        ]));
    }
    let body: Value = serde_json::from_str(body).map_err(|_| UNREADABLE.to_owned())?;
    match body.get("input") {
        Some(Value::Object(input)) => Ok(input.clone()),
        _ => Err("whose request body holds no input object".to_owned()),
    }
}

/// The answer a record holds: a function's output, the last workflow
/// step's output, the assistant's text. `None` when it does not decode
/// (a body cut at the capture size, say); a streamed reply is logged as
/// its text, which a cut leaves shorter with no mark — so `--expected
/// output` needs `capture_max_bytes` above the longest streamed answer.
fn answer(rec: &RequestRecord, output: &str) -> Option<Value> {
    match rec.op.as_str() {
        "chat" if rec.stream => Some(json!(output)),
        "chat" => {
            let decoded = match rec.front.as_str() {
                "anthropic" => anthropic::decode_response(output.as_bytes()),
                _ => openai::decode_response(output.as_bytes()),
            };
            decoded.ok().map(|resp| json!(resp.text))
        }
        "workflow" => {
            let mut body: Value = serde_json::from_str(output).ok()?;
            body.get_mut("steps")?
                .as_array_mut()?
                .pop()?
                .get_mut("output")
                .map(Value::take)
        }
        _ => {
            let mut body: Value = serde_json::from_str(output).ok()?;
            body.get_mut("output").map(Value::take)
        }
    }
}

/// What is masked in a case: credentials always, contact and payment data
/// when `personal`.
#[derive(Debug, Clone, Copy)]
struct Mask {
    personal: bool,
}

impl Mask {
    fn text(self, s: &str) -> String {
        if self.personal {
            redact::personal(s)
        } else {
            redact::secrets(s).into_owned()
        }
    }

    /// Every string in `v`, keys included; a number that reads as a card or
    /// phone number becomes the mask, as text.
    fn value(self, v: &mut Value) {
        match v {
            Value::String(s) => *s = self.text(s),
            Value::Number(n) => {
                let (text, masked) = (n.to_string(), self.text(&n.to_string()));
                if masked != text {
                    *v = Value::String(masked);
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|i| self.value(i)),
            Value::Object(map) => *map = self.object(std::mem::take(map)),
            Value::Bool(_) | Value::Null => {}
        }
    }

    fn object(self, map: Map<String, Value>) -> Map<String, Value> {
        map.into_iter()
            .map(|(k, mut v)| {
                self.value(&mut v);
                (self.text(&k), v)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chat(front: &str, input: &str, output: &str) -> RequestRecord {
        RequestRecord {
            id: "r1".to_owned(),
            front: front.to_owned(),
            op: "chat".to_owned(),
            model: "m".to_owned(),
            status: 200,
            capture: Capture::Full,
            input: Some(input.to_owned()),
            output: Some(output.to_owned()),
            ..RequestRecord::default()
        }
    }

    const MASK: Mask = Mask { personal: true };

    #[test]
    fn chat_messages_come_out_in_the_openai_shape_from_either_front() {
        let openai = chat(
            "openai",
            r#"{"model": "m", "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]}"#,
            r#"{"id": "x", "object": "chat.completion", "created": 1, "model": "u", "choices": [{"index": 0, "message": {"role": "assistant", "content": "hello"}, "finish_reason": "stop"}]}"#,
        );
        let anthropic = chat(
            "anthropic",
            r#"{"model": "m", "max_tokens": 10, "system": "be brief", "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]}"#,
            r#"{"id": "x", "type": "message", "role": "assistant", "model": "u", "content": [{"type": "text", "text": "hello"}], "stop_reason": "end_turn", "usage": {"input_tokens": 1, "output_tokens": 1}}"#,
        );
        for rec in [openai, anthropic] {
            let c = case(&rec, Expected::Output, MASK).unwrap();
            assert_eq!(
                Value::Object(c.input),
                json!({"messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}], "model": "m"}),
                "{}",
                rec.front
            );
            assert_eq!(c.expected, Some(json!("hello")), "{}", rec.front);
        }
        let mut streamed = chat(
            "openai",
            r#"{"model": "m", "stream": true, "messages": [{"role": "user", "content": "hi"}]}"#,
            "streamed text",
        );
        streamed.stream = true;
        let c = case(&streamed, Expected::Output, MASK).unwrap();
        assert_eq!(c.expected, Some(json!("streamed text")));
        assert_eq!(
            case(&streamed, Expected::None, MASK).unwrap().expected,
            None
        );
    }

    #[test]
    fn workflows_expect_the_last_step_and_failures_expect_nothing() {
        let mut rec = chat(
            "openai",
            r#"{"input": {"ticket": "t"}}"#,
            r#"{"workflow": "w", "steps": [{"output": {"a": 1}}, {"output": "reply"}]}"#,
        );
        rec.op = "workflow".to_owned();
        let c = case(&rec, Expected::Output, MASK).unwrap();
        assert_eq!(c.expected, Some(json!("reply")));
        rec.status = 422;
        assert_eq!(case(&rec, Expected::Output, MASK).unwrap().expected, None);
    }

    #[test]
    fn masking_reaches_escaped_text_numbers_and_keys_and_secrets_always() {
        let mut rec = chat(
            "openai",
            r#"{"input": {"mail": "jane\u0040example.com", "card": 4111111111111111, "jo@x.org": 1, "key": "sk-proj-AbC123xyz789QQ"}}"#,
            "",
        );
        rec.op = "function".to_owned();
        let c = case(&rec, Expected::None, MASK).unwrap();
        let line = serde_json::to_string(&c.input).unwrap();
        for leaked in ["jane", "4111", "jo@x.org", "AbC123"] {
            assert!(!line.contains(leaked), "{line}");
        }
        let kept = case(&rec, Expected::None, Mask { personal: false }).unwrap();
        let line = serde_json::to_string(&kept.input).unwrap();
        assert!(
            line.contains("jane@example.com") && !line.contains("AbC123"),
            "{line}"
        );

        // A credential only the JSON around it reveals: skipped.
        rec.input = Some(r#"{"input": {"pass\u0077ord": "hunter2hunter2"}}"#.to_owned());
        let why = case(&rec, Expected::None, Mask { personal: false }).unwrap_err();
        assert!(why.contains("credential"), "{why}");
    }
}
