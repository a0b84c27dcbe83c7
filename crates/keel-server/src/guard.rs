//! Guardrails: phase 4 (**guard input**) and the output guard (part of
//! phase 8). A model or function names a `[guardrails.NAME]` set; its
//! checks run in order, each with its action:
//!
//! - input, before any upstream call: `block` (400 `guardrail_blocked`,
//!   naming the check), `redact` (found spans become typed placeholders in
//!   what is sent; `restore` puts the originals back into the answer),
//!   `flag` (recorded only), `route` (the request goes to another model);
//! - output, before the client sees it: `block` (422 `guardrail_blocked`;
//!   in a stream, an error event ends it), `redact`, `flag`, and `reask` /
//!   `fallback` through the validation loop (`validate.rs`), which then
//!   runs before any byte is sent — a streamed request is answered from the
//!   validated answer, still as a stream.
//!
//! Streams are checked as they go: the text is accumulated and every check
//! runs on all of it; output is released only `hold_back` characters
//! behind, so a check can still act on what it finds (never across a
//! placeholder or a redacted span).
//!
//! Every check that fires leaves a verdict (stage `input_guard` or
//! `output_guard`: check, what it did, score, what was found and where) in the
//! record, `keel_verdicts_total` and the `x-keel-guardrails` header.
//! The detectors themselves are `keel_policy::guard`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use keel_config::{CheckKind, GuardAction, GuardCheck, Guardrails};
use keel_core::{Error, EventStream};
use keel_policy::extract::Repair;
use keel_policy::guard::injection::InjectionConfig;
use keel_policy::guard::output::DeniedTerms;
use keel_policy::guard::redact::{redact_avoiding, restore};
use keel_policy::guard::{Finding, Span, injection, output, pii, secrets};
use keel_policy::rules::{RuleSpec, Rules};
use keel_protocol::chat::{ChatRequest, Part, StreamEvent};
use keel_store::Verdict;
use regex::Regex;
use serde_json::json;

use crate::state::Gateway;

/// A guardrail set, compiled once.
pub(crate) struct GuardSet {
    pub name: String,
    pub input: Vec<Check>,
    pub output: Vec<Check>,
    pub hold_back: usize,
}

pub(crate) struct Check {
    detector: Detector,
    pub action: GuardAction,
    name: String,
}

enum Detector {
    Pii(Vec<String>),
    Secrets,
    Injection(InjectionConfig),
    Leak(f64),
    Refusal,
    Denied(DeniedTerms),
    MaxLength(usize),
    Regex(Regex),
    Webhook {
        url: String,
        timeout: Duration,
        fail_open: bool,
    },
    Forbidden(Rules),
}

impl GuardSet {
    pub fn compile(g: &Guardrails) -> Result<GuardSet, String> {
        let compile = |checks: &[GuardCheck]| -> Result<Vec<Check>, String> {
            checks.iter().map(Check::compile).collect()
        };
        Ok(GuardSet {
            name: g.name.clone(),
            input: compile(&g.input)?,
            output: compile(&g.output)?,
            hold_back: g.hold_back,
        })
    }

    /// Whether an output check may re-ask or fall back: then the answer is
    /// validated whole before anything is sent.
    pub fn loops(&self) -> bool {
        self.output
            .iter()
            .any(|c| matches!(c.action, GuardAction::Reask | GuardAction::Fallback))
    }

    /// Whether answers are checked whole before anything is sent: when an
    /// output check may re-ask or fall back, or is a webhook (which cannot
    /// judge a stream piece by piece).
    pub fn whole(&self) -> bool {
        self.loops()
            || self
                .output
                .iter()
                .any(|c| matches!(c.detector, Detector::Webhook { .. }))
    }

    /// Whether an output check re-asks.
    pub fn reasks(&self) -> bool {
        self.output.iter().any(|c| c.action == GuardAction::Reask)
    }
}

impl Check {
    fn compile(c: &GuardCheck) -> Result<Check, String> {
        let at = |e: String| format!("check `{}`: {e}", c.check.name());
        let detector = match &c.check {
            CheckKind::Pii { entities } => Detector::Pii(entities.clone()),
            CheckKind::Secrets => Detector::Secrets,
            CheckKind::Injection { threshold } => Detector::Injection(InjectionConfig {
                threshold: *threshold,
            }),
            CheckKind::SystemPromptLeak { min_overlap } => Detector::Leak(*min_overlap),
            CheckKind::Refusal => Detector::Refusal,
            CheckKind::DeniedTerms {
                terms,
                patterns,
                max_distance,
            } => Detector::Denied(
                DeniedTerms::new(terms, patterns, *max_distance).map_err(|e| at(e.to_string()))?,
            ),
            CheckKind::MaxLength { max_chars } => Detector::MaxLength(*max_chars),
            CheckKind::Regex { pattern, .. } => {
                Detector::Regex(Regex::new(pattern).map_err(|e| at(e.to_string()))?)
            }
            CheckKind::Webhook {
                url,
                timeout,
                fail_open,
            } => Detector::Webhook {
                url: url.clone(),
                timeout: *timeout,
                fail_open: *fail_open,
            },
            CheckKind::ForbiddenJson { rules } => {
                let specs: Vec<RuleSpec> = rules
                    .iter()
                    .map(|r| RuleSpec {
                        name: r.name.clone(),
                        expr: r.expr.clone(),
                        regex: r.regex.clone(),
                        message: r.message.clone(),
                    })
                    .collect();
                Detector::Forbidden(Rules::compile(&[], &specs).map_err(|e| at(e.to_string()))?)
            }
        };
        Ok(Check {
            detector,
            action: c.action.clone(),
            name: c.check.name().to_owned(),
        })
    }

    /// What this check finds in `text` (`system`: the request's system
    /// prompt, for leak checks). Webhook checks are asynchronous: see
    /// [`Check::webhook`]; here they find nothing.
    fn detect(&self, text: &str, system: &str) -> Vec<Finding> {
        match &self.detector {
            Detector::Pii(entities) => pii::detect(text)
                .into_iter()
                .filter(|f| entities.is_empty() || entities.iter().any(|e| e == f.kind))
                .collect(),
            Detector::Secrets => secrets::detect(text),
            Detector::Injection(cfg) => injection::detect(text, cfg),
            Detector::Leak(min) => output::system_prompt_leak(text, system, *min),
            Detector::Refusal => output::refusal(text),
            Detector::Denied(terms) => terms.detect(text),
            Detector::MaxLength(max) => output::max_length(text, *max),
            Detector::Regex(re) => re
                .find_iter(text)
                .map(|m| Finding {
                    check: "regex",
                    kind: "MATCH",
                    span: Some(Span {
                        start: m.start(),
                        end: m.end(),
                    }),
                    score: 1.0,
                    detail: format!("matched /{}/", re.as_str()),
                })
                .collect(),
            Detector::Forbidden(rules) => {
                // The JSON as the validator finds it: in fences or prose too.
                let Some(value) = keel_policy::extract::extract(text, false).map(|f| f.value)
                else {
                    return Vec::new();
                };
                rules
                    .check(&value, &serde_json::Value::Null)
                    .into_iter()
                    .map(|f| Finding {
                        check: "forbidden_json",
                        kind: "FORBIDDEN_STATE",
                        span: None,
                        score: 1.0,
                        detail: format!("{}: {}", f.rule, f.message),
                    })
                    .collect()
            }
            Detector::Webhook { .. } => Vec::new(),
        }
    }

    /// An external check: `{"allow": false, "reason": "…"}` is a finding;
    /// no answer in time is one too unless the check fails open.
    async fn webhook(&self, gw: &Gateway, text: &str, side: &str) -> Vec<Finding> {
        let Detector::Webhook {
            url,
            timeout,
            fail_open,
        } = &self.detector
        else {
            return Vec::new();
        };
        let sent = gw
            .inner
            .http
            .post(url)
            .timeout(*timeout)
            .json(&json!({"text": text, "side": side, "check": self.name}))
            .send()
            .await
            .and_then(reqwest::Response::error_for_status);
        let verdict = match sent {
            Ok(resp) => resp.json::<serde_json::Value>().await.ok(),
            Err(_) => None,
        };
        let finding = |detail: String| {
            vec![Finding {
                check: "webhook",
                kind: "EXTERNAL",
                span: None,
                score: 1.0,
                detail,
            }]
        };
        match verdict {
            Some(v) if v["allow"] == json!(true) => Vec::new(),
            Some(v) => finding(format!(
                "the external check refused: {}",
                v["reason"].as_str().unwrap_or("no reason given")
            )),
            None if *fail_open => Vec::new(),
            None => finding("the external check did not answer (fails closed)".to_owned()),
        }
    }

    /// Everything this check finds, webhook included.
    async fn scan(&self, gw: &Gateway, text: &str, system: &str, side: &str) -> Vec<Finding> {
        match self.detector {
            Detector::Webhook { .. } => self.webhook(gw, text, side).await,
            _ => self.detect(text, system),
        }
    }
}

/// What the input guard decided.
#[derive(Default)]
pub(crate) struct Admitted {
    /// `route`: the model the request goes to instead.
    pub route: Option<String>,
    /// `redact` with `restore`: placeholders to put back into the answer.
    pub restore: Vec<(String, String)>,
}

/// Phase 4: every input check on the request's text, in order.
pub(crate) async fn input(
    gw: &Gateway,
    set: &GuardSet,
    req: &mut ChatRequest,
    verdicts: &mut Vec<Verdict>,
) -> Result<Admitted, Error> {
    let mut admitted = Admitted::default();
    let system = req.system.join("\n");
    // Placeholders handed out so far in this request (never reused).
    let mut handed: Vec<(String, String)> = Vec::new();
    for check in &set.input {
        // Whole-text checks read everything the client sent, together: an
        // injection split across turns, or hidden in a tool result or an
        // assistant turn the client wrote, is one; a length is the total.
        // Span checks read (and redact) each text where it is.
        let found = if matches!(
            check.detector,
            Detector::Injection(_) | Detector::Webhook { .. } | Detector::MaxLength(_)
        ) {
            let all: Vec<&str> = texts(req).collect();
            check.scan(gw, &all.join("\n"), &system, "input").await
        } else {
            let mut found = Vec::new();
            for text in texts_mut(req) {
                let here = check.scan(gw, text, &system, "input").await;
                if let (GuardAction::Redact { restore: keep }, false) =
                    (&check.action, here.is_empty())
                {
                    let r = redact_avoiding(text, &here, &handed);
                    *text = r.text;
                    if *keep {
                        admitted.restore.extend(r.restore.iter().cloned());
                    }
                    handed.extend(r.restore);
                }
                found.extend(here);
            }
            found
        };
        if found.is_empty() {
            continue;
        }
        verdicts.push(verdict("input_guard", check, &found));
        match &check.action {
            GuardAction::Block => return Err(blocked(set, check, &found, "input")),
            GuardAction::Route { model } => admitted.route = Some(model.clone()),
            GuardAction::Redact { .. } | GuardAction::Flag => {}
            // Refused at config load: reask and fallback are output actions.
            GuardAction::Reask | GuardAction::Fallback => {}
        }
    }
    Ok(admitted)
}

/// What the output guard made of a whole answer.
pub(crate) enum Judged {
    /// The text to send (redacted where a check said so).
    Pass(String),
    Block(Error),
    /// A reask or fallback check fired: why, for the validation loop.
    Retry(Vec<String>),
}

/// The output checks on a whole answer: the text to send (redacted where
/// a check said so), or why it may not be sent. `only_async`: the
/// validation loop already ran the others, so only webhooks remain. A
/// reask or fallback check cannot act here (no loop): it blocks.
pub(crate) async fn output_whole(
    gw: &Gateway,
    set: &GuardSet,
    text: &str,
    system: &str,
    only_async: bool,
    taken: &[(String, String)],
    verdicts: &mut Vec<Verdict>,
) -> Result<String, Error> {
    let mut text = text.to_owned();
    for check in &set.output {
        let is_async = matches!(check.detector, Detector::Webhook { .. });
        if only_async && !is_async {
            continue;
        }
        let found = check.scan(gw, &text, system, "output").await;
        match act(set, check, &found, &mut text, taken, verdicts) {
            None => {}
            Some(Judged::Block(e)) => return Err(e),
            Some(Judged::Retry(_)) => return Err(blocked(set, check, &found, "output")),
            Some(Judged::Pass(t)) => text = t,
        }
    }
    Ok(text)
}

/// The output checks that can run inside the validation loop (all but
/// webhooks, which are asynchronous and run after it).
pub(crate) fn output_sync(
    set: &GuardSet,
    text: &str,
    system: &str,
    taken: &[(String, String)],
    verdicts: &mut Vec<Verdict>,
) -> Judged {
    let mut text = text.to_owned();
    for check in &set.output {
        let found = check.detect(&text, system);
        if let Some(judged) = act(set, check, &found, &mut text, taken, verdicts) {
            return judged;
        }
    }
    Judged::Pass(text)
}

fn act(
    set: &GuardSet,
    check: &Check,
    found: &[Finding],
    text: &mut String,
    taken: &[(String, String)],
    verdicts: &mut Vec<Verdict>,
) -> Option<Judged> {
    if found.is_empty() {
        return None;
    }
    verdicts.push(verdict("output_guard", check, found));
    match &check.action {
        GuardAction::Block => Some(Judged::Block(blocked(set, check, found, "output"))),
        GuardAction::Reask | GuardAction::Fallback => Some(Judged::Retry(
            found
                .iter()
                .map(|f| format!("guardrail `{}`: {}", check.name, f.detail))
                .collect(),
        )),
        GuardAction::Redact { .. } => {
            *text = redact_avoiding(text, found, taken).text;
            None
        }
        GuardAction::Flag | GuardAction::Route { .. } => None,
    }
}

/// The output checks inside the validation loop (`validate.rs`), after a
/// reply passed its schema and rules: a reask or fallback check rejects it
/// with why (so it is re-asked, or the next target tried), a redact check
/// rewrites a text output, and a block is remembered — the reply is
/// accepted to end the loop, then refused by [`LoopGuard::finish`].
pub(crate) struct LoopGuard<'a> {
    set: Option<&'a GuardSet>,
    system: String,
    /// Placeholders the input redaction handed out (not to be reused).
    taken: &'a [(String, String)],
    state: Mutex<(Vec<Verdict>, Option<Error>)>,
}

impl<'a> LoopGuard<'a> {
    pub fn new(
        set: Option<&'a GuardSet>,
        req: &ChatRequest,
        taken: &'a [(String, String)],
    ) -> Self {
        LoopGuard {
            set,
            system: req.system.join("\n"),
            taken,
            state: Mutex::default(),
        }
    }

    pub fn check(
        &self,
        value: serde_json::Value,
        repairs: Vec<Repair>,
    ) -> Result<(serde_json::Value, Vec<Repair>), Vec<String>> {
        let Some(set) = self.set else {
            return Ok((value, repairs));
        };
        let text = match &value {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match output_sync(set, &text, &self.system, self.taken, &mut state.0) {
            Judged::Pass(redacted) if value.is_string() => {
                Ok((serde_json::Value::String(redacted), repairs))
            }
            // A JSON answer: the redacting checks rewrite each string in it
            // (its structure stays valid).
            Judged::Pass(_) => {
                let mut value = value;
                redact_strings(set, &mut value, &self.system, self.taken);
                Ok((value, repairs))
            }
            Judged::Retry(why) => Err(why),
            Judged::Block(e) => {
                state.1 = Some(e);
                Ok((value, repairs))
            }
        }
    }

    /// The loop's verdicts into `verdicts`; the block, if one fired.
    pub fn finish(self, verdicts: &mut Vec<Verdict>) -> Result<(), Error> {
        let (given, block) = self
            .state
            .into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        verdicts.extend(given);
        block.map_or(Ok(()), Err)
    }
}

/// Every string in a JSON value through the output checks that redact.
fn redact_strings(
    set: &GuardSet,
    value: &mut serde_json::Value,
    system: &str,
    taken: &[(String, String)],
) {
    match value {
        serde_json::Value::String(s) => {
            for check in set
                .output
                .iter()
                .filter(|c| matches!(c.action, GuardAction::Redact { .. }))
            {
                let found = check.detect(s, system);
                if !found.is_empty() {
                    *s = redact_avoiding(s, &found, taken).text;
                }
            }
        }
        serde_json::Value::Array(items) => {
            for item in items {
                redact_strings(set, item, system, taken);
            }
        }
        serde_json::Value::Object(map) => {
            for item in map.values_mut() {
                redact_strings(set, item, system, taken);
            }
        }
        _ => {}
    }
}

/// Puts back what input redaction took out (`restore = true`).
pub(crate) fn restored(text: &str, map: &[(String, String)]) -> String {
    if map.is_empty() {
        text.to_owned()
    } else {
        restore(text, map)
    }
}

/// The `x-keel-guardrails` header: `check=action` for every check that fired.
pub(crate) fn header(verdicts: &[Verdict]) -> Option<(&'static str, String)> {
    let fired: Vec<String> = verdicts
        .iter()
        .filter(|v| v.stage.ends_with("_guard"))
        .map(|v| format!("{}={}", v.name, v.outcome))
        .collect();
    (!fired.is_empty()).then(|| ("x-keel-guardrails", fired.join(",")))
}

/// A streamed answer checked as it goes: text deltas are held back
/// `hold_back` characters, the checks rerun on all the text so far (every
/// [`SCAN_STEP`] bytes, and at the end), and a blocking check ends the
/// stream with an error event. Released text is redacted piece by piece
/// with one placeholder per original for the whole answer. Tool-call
/// deltas pass unchecked (the text before them is released first).
/// Verdicts go to `verdicts`, which the request's record reads when it
/// ends.
pub(crate) fn stream(
    set: Arc<GuardSet>,
    events: EventStream,
    system: String,
    restore_map: Vec<(String, String)>,
    verdicts: Arc<Mutex<Vec<Verdict>>>,
) -> EventStream {
    use futures::StreamExt;
    let mut guard = Streamed {
        set,
        system,
        restore_map,
        verdicts,
        text: String::new(),
        sent: 0,
        scanned: 0,
        handed: Vec::new(),
        fired: Vec::new(),
        ended: false,
    };
    Box::pin(events.flat_map(move |event| {
        let out: Vec<Result<StreamEvent, Error>> = match event {
            Ok(StreamEvent::TextDelta(t)) => guard.push(&t, false),
            // The end of the text: everything held is checked and released
            // (or blocked) before what follows.
            Ok(
                ev @ (StreamEvent::Finish(_)
                | StreamEvent::Done
                | StreamEvent::ToolCallStart { .. }),
            ) => {
                let mut out = guard.push("", true);
                if out.iter().all(Result::is_ok) {
                    out.push(Ok(ev));
                }
                out
            }
            other => vec![other],
        };
        futures::stream::iter(out)
    }))
}

/// Checks rerun at most once per this many new bytes (and at the end): a
/// long answer costs O(n²/step), not O(n²/delta).
const SCAN_STEP: usize = 256;

struct Streamed {
    set: Arc<GuardSet>,
    system: String,
    restore_map: Vec<(String, String)>,
    verdicts: Arc<Mutex<Vec<Verdict>>>,
    /// Everything the upstream sent so far.
    text: String,
    /// How much of `text` (bytes) has been released.
    sent: usize,
    /// How much of `text` the checks last read.
    scanned: usize,
    /// Output placeholders handed out so far (original → placeholder).
    handed: Vec<(String, String)>,
    /// Indexes of the checks that already left a verdict (one each).
    fired: Vec<usize>,
    /// Blocked: nothing more is sent.
    ended: bool,
}

impl Streamed {
    /// Takes a piece of text; returns what may be sent now.
    fn push(&mut self, piece: &str, last: bool) -> Vec<Result<StreamEvent, Error>> {
        if self.ended {
            return Vec::new();
        }
        self.text.push_str(piece);
        if !last && self.text.len() < self.scanned + SCAN_STEP {
            return Vec::new();
        }
        self.scanned = self.text.len();
        let mut redactions: Vec<Finding> = Vec::new();
        for (index, check) in self.set.output.iter().enumerate() {
            let found = check.detect(&self.text, &self.system);
            if found.is_empty() {
                continue;
            }
            if !self.fired.contains(&index) {
                self.fired.push(index);
                if let Ok(mut v) = self.verdicts.lock() {
                    v.push(verdict("output_guard", check, &found));
                }
            }
            match &check.action {
                GuardAction::Block => {
                    self.ended = true;
                    return vec![Err(blocked(&self.set, check, &found, "output"))];
                }
                GuardAction::Redact { .. } => {
                    redactions.extend(found.into_iter().filter(|f| f.span.is_some()));
                }
                _ => {}
            }
        }
        let until = self.release_point(&redactions, last);
        if until <= self.sent {
            return Vec::new();
        }
        let Some(chunk) = self.text.get(self.sent..until) else {
            return Vec::new();
        };
        // The redactions inside this chunk, relative to it. (A span that
        // began in text already sent cannot be taken back: the release
        // point never passes into one, so only a detection that appears
        // late can do that.)
        let offset = self.sent;
        let local: Vec<Finding> = redactions
            .into_iter()
            .filter_map(|mut f| {
                let s = f.span?;
                (s.start >= offset && s.end <= until).then(|| {
                    f.span = Some(Span {
                        start: s.start - offset,
                        end: s.end - offset,
                    });
                    f
                })
            })
            .collect();
        let mut taken = self.restore_map.clone();
        taken.extend(self.handed.iter().map(|(o, p)| (p.clone(), o.clone())));
        let r = redact_avoiding(chunk, &local, &taken);
        let mut out = r.text;
        // One placeholder per original for the whole answer.
        for (placeholder, original) in r.restore {
            match self.handed.iter().find(|(o, _)| *o == original) {
                Some((_, earlier)) => out = out.replace(&placeholder, earlier),
                None => self.handed.push((original, placeholder)),
            }
        }
        self.sent = until;
        vec![Ok(StreamEvent::TextDelta(restored(
            &out,
            &self.restore_map,
        )))]
    }

    /// How far text may be released: `hold_back` characters behind (all of
    /// it at the end), never inside a span still to redact nor inside a
    /// placeholder still to restore — both moved back until neither holds.
    fn release_point(&self, redactions: &[Finding], last: bool) -> usize {
        let mut until = if last {
            self.text.len()
        } else {
            back_chars(&self.text, self.set.hold_back)
        };
        loop {
            let before = until;
            if let Some(start) = redactions
                .iter()
                .filter_map(|f| f.span)
                .filter(|s| s.start < until && until < s.end)
                .map(|s| s.start)
                .min()
            {
                until = start;
            }
            // A placeholder (`[KIND_N]`) being written: wait for its `]`.
            if !last
                && !self.restore_map.is_empty()
                && let Some(open) = self.text.get(..until).and_then(|t| t.rfind('['))
                && until - open <= MAX_PLACEHOLDER
                && !self.text.get(open..until).is_some_and(|t| t.contains(']'))
            {
                until = open;
            }
            if until == before {
                return until;
            }
        }
    }
}

/// The longest placeholder a restore can be waiting for, in bytes.
const MAX_PLACEHOLDER: usize = 40;

/// The byte offset `n` characters before the end of `text`.
fn back_chars(text: &str, n: usize) -> usize {
    text.char_indices()
        .rev()
        .nth(n.saturating_sub(1))
        .map_or(0, |(i, _)| i)
        .min(text.len())
}

fn verdict(stage: &str, check: &Check, found: &[Finding]) -> Verdict {
    let score = found.iter().map(|f| f.score).fold(0.0, f64::max);
    let what: Vec<String> = found
        .iter()
        .take(8)
        .map(|f| match f.span {
            Some(s) => format!("{} at {}..{} ({})", f.kind, s.start, s.end, f.detail),
            None => format!("{} ({})", f.kind, f.detail),
        })
        .collect();
    Verdict {
        stage: stage.to_owned(),
        name: check.name.clone(),
        outcome: done(&check.action).to_owned(),
        detail: Some(format!("score {score:.2}: {}", what.join("; "))),
    }
}

/// What an action did, as verdicts say it.
fn done(action: &GuardAction) -> &'static str {
    match action {
        GuardAction::Block => "blocked",
        GuardAction::Redact { .. } => "redacted",
        GuardAction::Flag => "flagged",
        GuardAction::Reask => "reasked",
        GuardAction::Fallback => "fell_back",
        GuardAction::Route { .. } => "rerouted",
    }
}

fn blocked(set: &GuardSet, check: &Check, found: &[Finding], side: &str) -> Error {
    let kinds: Vec<&str> = found.iter().map(|f| f.kind).collect();
    let message = format!(
        "blocked by guardrail `{}` ({side} check `{}`: {})",
        set.name,
        check.name,
        kinds.join(", ")
    );
    if side == "input" {
        Error::input_blocked(message)
    } else {
        Error::output_blocked(message)
    }
}

/// Every piece of text in a request that input checks read and redaction
/// may rewrite: system prompts, message text parts (every role: tool
/// results and assistant turns come from the client too) and the arguments
/// of tool calls in the history. Images and tool definitions are not read.
fn texts_mut(req: &mut ChatRequest) -> impl Iterator<Item = &mut String> {
    let messages = req.messages.iter_mut().flat_map(|m| {
        let parts = m.content.iter_mut().filter_map(|p| match p {
            Part::Text(t) => Some(t),
            Part::Image(_) => None,
        });
        parts.chain(m.tool_calls.iter_mut().map(|c| &mut c.arguments))
    });
    req.system.iter_mut().chain(messages)
}

/// The same texts, read only.
fn texts(req: &ChatRequest) -> impl Iterator<Item = &str> {
    let messages = req.messages.iter().flat_map(|m| {
        let parts = m.content.iter().filter_map(|p| match p {
            Part::Text(t) => Some(t.as_str()),
            Part::Image(_) => None,
        });
        parts.chain(m.tool_calls.iter().map(|c| c.arguments.as_str()))
    });
    req.system.iter().map(String::as_str).chain(messages)
}
