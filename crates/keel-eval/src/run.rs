//! The runner: every case through every variant, over HTTP to a keel
//! gateway — the one `keel eval run` starts in process on a loopback port,
//! or a running one (`--gateway URL`). Either way the call takes the
//! production path: input checks, guardrails, validation and re-asks,
//! retries and fallbacks, the cache and its record/replay file.
//!
//! - Concurrency is bounded (`run.concurrency`); results keep dataset order.
//! - Each answer (the call, then its judges and commands) has the per-case
//!   time limit; a call that fails or runs out of time is a failed case with
//!   its error recorded, never the end of the run.
//! - Judges and commands score answers; their own cost is not the
//!   variant's and is left out of the case's cost.
//! - A progress bar with an ETA goes to stderr when it is a terminal.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{Map, Value, json};

use crate::dataset::Case;
use crate::judge;
use crate::perturb::{self, Kind};
use crate::results::{
    self, CaseRecord, Comparison, Criterion, PerturbRecord, Results, ScoreRecord, Tokens,
};
use crate::scorers::Answer;
use crate::spec::{Call, Eval, ScorerKind, ScorerSpec, Variant};

/// Where the runner sends its requests.
#[derive(Debug, Clone)]
pub struct Target {
    /// e.g. `http://127.0.0.1:8080` (no trailing slash needed).
    pub base_url: String,
    /// A keel virtual key, when the gateway requires one.
    pub api_key: Option<String>,
    /// How the results name the target (`in-process` or the URL).
    pub label: String,
}

#[derive(Debug, Clone)]
pub struct Options {
    pub concurrency: usize,
    pub timeout: Duration,
    pub perturb: bool,
    /// Draw a progress bar on stderr (only shown on a terminal).
    pub progress: bool,
    /// `record FILE` / `replay FILE`, named in the results.
    pub cassette: Option<String>,
}

/// The function a variant calls: the configured one, or the copy with the
/// variant's changes that the in-process runner registers under this name.
pub fn function_route(variant: &Variant) -> Option<String> {
    match &variant.call {
        Call::Function(f) if f.overrides() => Some(format!("{}@{}", f.function, variant.name)),
        Call::Function(f) => Some(f.function.clone()),
        Call::Chat(_) => None,
    }
}

/// One answer, as the gateway gave it.
#[derive(Debug, Clone, Default)]
pub(crate) struct Outcome {
    pub output: Value,
    pub text: String,
    pub error: Option<String>,
    pub latency_ms: f64,
    pub tokens: Tokens,
    pub cost_usd: f64,
    pub request_id: Option<String>,
}

/// An HTTP client bound to a target.
#[derive(Debug, Clone)]
pub(crate) struct Client {
    http: reqwest::Client,
    target: Target,
}

impl Client {
    pub fn new(target: Target) -> Client {
        Client {
            // No overall timeout here: each case has its own.
            http: reqwest::Client::builder()
                .pool_max_idle_per_host(64)
                .build()
                .unwrap_or_default(),
            target,
        }
    }

    /// POSTs JSON to the target's URL plus `segments` (each percent-encoded
    /// as one path segment): `Ok((status, headers, body))`, `Err` when no
    /// answer came.
    pub async fn post(
        &self,
        segments: &[&str],
        body: &Value,
    ) -> Result<(u16, reqwest::header::HeaderMap, Value), String> {
        let mut url = reqwest::Url::parse(&self.target.base_url)
            .map_err(|e| format!("gateway URL {}: {e}", self.target.base_url))?;
        url.path_segments_mut()
            .map_err(|()| format!("gateway URL {}: cannot have a path", self.target.base_url))?
            .pop_if_empty()
            .extend(segments);
        let mut req = self.http.post(url).json(body);
        if let Some(key) = &self.target.api_key {
            req = req.bearer_auth(key);
        }
        let resp = req.send().await.map_err(|e| format!("transport: {e}"))?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let bytes = resp.bytes().await.map_err(|e| format!("transport: {e}"))?;
        let value = serde_json::from_slice(&bytes).unwrap_or_else(|_| {
            Value::String(String::from_utf8_lossy(&bytes[..bytes.len().min(500)]).into_owned())
        });
        Ok((status, headers, value))
    }

    /// A chat completion's text, usage and cost.
    pub async fn chat(&self, body: &Value) -> Outcome {
        let started = Instant::now();
        let mut out = match self.post(&["v1", "chat", "completions"], body).await {
            Ok((status, headers, value)) => {
                let mut out = http_outcome(status, &headers, &value);
                if out.error.is_none() {
                    out.text = value
                        .pointer("/choices/0/message/content")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned();
                    out.output = Value::String(out.text.clone());
                    out.tokens = Tokens {
                        input: u64_at(&value, "/usage/prompt_tokens"),
                        output: u64_at(&value, "/usage/completion_tokens"),
                    };
                }
                out
            }
            Err(e) => failed(e),
        };
        out.latency_ms = ms(started);
        out
    }

    async fn function(&self, name: &str, input: &Map<String, Value>) -> Outcome {
        let started = Instant::now();
        // The name is one path segment, percent-encoded.
        let path = ["v1", "functions", name];
        let mut out = match self.post(&path, &json!({ "input": input })).await {
            Ok((status, headers, value)) => {
                let mut out = http_outcome(status, &headers, &value);
                if out.error.is_none() {
                    out.output = value.get("output").cloned().unwrap_or(Value::Null);
                    out.text = match &out.output {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    out.tokens = Tokens {
                        input: u64_at(&value, "/meta/usage/input_tokens"),
                        output: u64_at(&value, "/meta/usage/output_tokens"),
                    };
                    out.cost_usd = value
                        .pointer("/meta/cost_usd")
                        .and_then(Value::as_f64)
                        .unwrap_or(out.cost_usd);
                }
                out
            }
            Err(e) => failed(e),
        };
        out.latency_ms = ms(started);
        out
    }
}

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1000.0
}

fn u64_at(v: &Value, pointer: &str) -> u64 {
    v.pointer(pointer).and_then(Value::as_u64).unwrap_or(0)
}

fn failed(error: String) -> Outcome {
    Outcome {
        output: Value::Null,
        error: Some(error),
        ..Outcome::default()
    }
}

/// Status, request id and cost common to every answer; an error for any
/// non-2xx status, named by keel's error code.
fn http_outcome(status: u16, headers: &reqwest::header::HeaderMap, body: &Value) -> Outcome {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let mut out = Outcome {
        request_id: header("x-request-id"),
        cost_usd: header("x-keel-cost")
            .and_then(|c| c.parse().ok())
            .unwrap_or(0.0),
        ..Outcome::default()
    };
    if !(200..300).contains(&status) {
        let code = body
            .pointer("/error/code")
            .or_else(|| body.pointer("/error/type"))
            .and_then(Value::as_str)
            .unwrap_or("error");
        let message = body
            .pointer("/error/message")
            .and_then(Value::as_str)
            .map_or_else(|| body.to_string(), str::to_owned);
        out.error = Some(format!("{status} {code}: {message}"));
    }
    out
}

/// Renders a chat variant's messages for one input.
fn chat_body(chat: &crate::spec::ChatVariant, input: &Map<String, Value>) -> Result<Value, String> {
    // Like function prompts: the input's fields at top level, the whole as `input`.
    let mut vars = input.clone();
    vars.insert("input".to_owned(), Value::Object(input.clone()));
    let vars = Value::Object(vars);
    let mut messages = Vec::new();
    for (role, template) in &chat.messages {
        let content = template.render(&vars).map_err(|e| e.to_string())?;
        messages.push(json!({"role": role, "content": content}));
    }
    let mut body = json!({"model": chat.model, "messages": messages});
    let p = &chat.params;
    for (key, value) in [
        ("temperature", p.temperature.map(Value::from)),
        ("top_p", p.top_p.map(Value::from)),
        ("max_tokens", p.max_tokens.map(Value::from)),
    ] {
        if let (Some(v), Some(obj)) = (value, body.as_object_mut()) {
            obj.insert(key.to_owned(), v);
        }
    }
    Ok(body)
}

/// The perturbed inputs of a case, each with its kind.
type Perturbed = Vec<(Kind, Result<Map<String, Value>, String>)>;

/// The shared state of a run.
struct Ctx<'a> {
    eval: &'a Eval,
    client: Client,
    timeout: Duration,
    /// Per case, made once and given to every variant: each variant answers
    /// the same rephrasings (a paraphrase model need not be deterministic).
    perturbed: Vec<tokio::sync::OnceCell<Perturbed>>,
}

impl Ctx<'_> {
    /// One variant's answer to one input, within the time limit, then
    /// scored (each judge and command within the time limit too: a slow
    /// scorer fails its score, not the answer).
    async fn answer(
        &self,
        variant: &Variant,
        case: &Case,
        input: &Map<String, Value>,
    ) -> (Outcome, Vec<ScoreRecord>) {
        let call = async {
            match &variant.call {
                Call::Function(_) => {
                    let route = function_route(variant).unwrap_or_default();
                    self.client.function(&route, input).await
                }
                Call::Chat(chat) => match chat_body(chat, input) {
                    Ok(body) => self.client.chat(&body).await,
                    Err(e) => failed(e),
                },
            }
        };
        let outcome = match tokio::time::timeout(self.timeout, call).await {
            Ok(outcome) => outcome,
            Err(_) => Outcome {
                latency_ms: self.timeout.as_secs_f64() * 1000.0,
                ..failed(format!("timeout: no answer within {:?}", self.timeout))
            },
        };
        let scores = match outcome.error {
            Some(_) => Vec::new(),
            None => self.score(&outcome, case, input).await,
        };
        (outcome, scores)
    }

    async fn score(
        &self,
        outcome: &Outcome,
        case: &Case,
        input: &Map<String, Value>,
    ) -> Vec<ScoreRecord> {
        let mut scores = Vec::with_capacity(self.eval.scorers.len());
        for spec in &self.eval.scorers {
            let scored =
                tokio::time::timeout(self.timeout, self.score_one(spec, outcome, case, input))
                    .await;
            scores.push(scored.unwrap_or_else(|_| ScoreRecord {
                scorer: spec.name.clone(),
                score: 0.0,
                passed: false,
                weight: spec.weight,
                detail: format!("timeout: no score within {:?}", self.timeout),
                reasoning: None,
            }));
        }
        scores
    }

    async fn score_one(
        &self,
        spec: &ScorerSpec,
        outcome: &Outcome,
        case: &Case,
        input: &Map<String, Value>,
    ) -> ScoreRecord {
        // The part of the answer this scorer reads.
        let (output, text) = match &spec.field {
            None => (outcome.output.clone(), outcome.text.clone()),
            Some(p) => {
                let v = outcome.output.pointer(p).cloned().unwrap_or(Value::Null);
                let t = match &v {
                    Value::String(s) => s.clone(),
                    Value::Null => String::new(),
                    other => other.to_string(),
                };
                (v, t)
            }
        };
        let expected = match (&spec.expected, &case.expected) {
            (Some(p), Some(e)) => e.pointer(p).cloned(),
            (None, e) => e.clone(),
            (Some(_), None) => None,
        };
        let record = |score: f64, detail: String, reasoning: Option<String>| {
            let score = if score.is_finite() {
                score.clamp(0.0, 1.0)
            } else {
                0.0
            };
            ScoreRecord {
                scorer: spec.name.clone(),
                score,
                passed: score >= spec.threshold,
                weight: spec.weight,
                detail,
                reasoning,
            }
        };
        match &spec.kind {
            ScorerKind::Local(scorer) => {
                let answer = Answer {
                    text: &text,
                    latency_ms: outcome.latency_ms,
                    cost_usd: outcome.cost_usd,
                };
                let s = scorer.score(&answer, expected.as_ref(), spec.threshold);
                record(s.score, s.detail, None)
            }
            ScorerKind::Judge(judge) => {
                match judge::ask(&self.client, judge, input, expected.as_ref(), &text).await {
                    Ok(v) => record(
                        v.score,
                        format!("judge `{}`", judge.model),
                        Some(v.reasoning),
                    ),
                    Err(e) => record(0.0, format!("judge failed: {e}"), None),
                }
            }
            ScorerKind::Command(cmd) => {
                let stdin = json!({
                    "id": case.id,
                    "input": input,
                    "expected": expected,
                    "output": output,
                    "text": text,
                    "tags": case.tags,
                    "metadata": case.metadata,
                    "latency_ms": outcome.latency_ms,
                    "cost_usd": outcome.cost_usd,
                });
                match crate::command::score(cmd, &stdin).await {
                    Ok(s) => record(s.score, s.detail, None),
                    Err(e) => record(0.0, format!("command failed: {e}"), None),
                }
            }
        }
    }

    /// Asks the paraphrase model to reword one text.
    async fn paraphrase(&self, model: &str, text: &str) -> Result<String, String> {
        let body = json!({
            "model": model,
            "temperature": 0,
            "messages": [
                {"role": "system", "content": "Rewrite the user's text so it means exactly the same but is worded differently. Keep every fact, name, number and instruction. Reply with the rewritten text only."},
                {"role": "user", "content": text},
            ],
        });
        let Ok(out) = tokio::time::timeout(self.timeout, self.client.chat(&body)).await else {
            return Err(format!("timeout: no paraphrase within {:?}", self.timeout));
        };
        match out.error {
            Some(e) => Err(e),
            None if out.text.trim().is_empty() => Err("empty paraphrase".into()),
            None => Ok(out.text.trim().to_owned()),
        }
    }

    /// The perturbed inputs of a case (see `perturbed`); a paraphrase that
    /// changes nothing is left out, like a local kind that changes nothing.
    async fn perturbed_inputs(&self, case: &Case) -> Perturbed {
        let opts = &self.eval.perturb;
        let seed = opts.seed ^ fxhash(&case.id);
        let mut inputs = Vec::new();
        for &kind in &opts.kinds {
            if kind != Kind::Paraphrase {
                if let Some(p) = perturb::perturb(&case.input, &opts.fields, kind, seed) {
                    inputs.push((kind, Ok(p)));
                }
                continue;
            }
            let Some(model) = &opts.paraphrase_model else {
                continue;
            };
            let mut input = case.input.clone();
            let mut result = Ok(());
            let mut changed = false;
            for (key, value) in &mut input {
                if !opts.fields.is_empty() && !opts.fields.contains(key) {
                    continue;
                }
                if let Value::String(text) = value {
                    match self.paraphrase(model, text).await {
                        Ok(p) => {
                            changed |= p != *text;
                            *text = p;
                        }
                        Err(e) => result = Err(format!("paraphrase: {e}")),
                    }
                }
            }
            if changed || result.is_err() {
                inputs.push((kind, result.map(|()| input)));
            }
        }
        inputs
    }

    async fn case(&self, variant: &Variant, at: usize, perturb: bool) -> CaseRecord {
        let case = &self.eval.cases[at];
        let (outcome, scores) = self.answer(variant, case, &case.input).await;
        let (passed, score) = verdict(&outcome, &scores);
        let mut record = CaseRecord {
            id: case.id.clone(),
            variant: variant.name.clone(),
            tags: case.tags.clone(),
            input: case.input.clone(),
            expected: case.expected.clone(),
            output: outcome.output.clone(),
            error: outcome.error.clone(),
            passed,
            score,
            scores,
            latency_ms: outcome.latency_ms,
            tokens: outcome.tokens,
            cost_usd: outcome.cost_usd,
            request_id: outcome.request_id.clone(),
            perturbations: Vec::new(),
            consistency: None,
        };
        if !perturb {
            return record;
        }
        let perturbed = self.perturbed[at]
            .get_or_init(|| self.perturbed_inputs(case))
            .await;
        for (kind, input) in perturbed {
            let p = match input {
                Ok(input) => {
                    let (o, s) = self.answer(variant, case, input).await;
                    let (p_passed, _) = verdict(&o, &s);
                    PerturbRecord {
                        kind: kind.name().to_owned(),
                        // A failed call on either side is a flip: no
                        // answer is not the same answer.
                        consistent: record.error.is_none()
                            && o.error.is_none()
                            && perturb::consistent(
                                (&record.output, record.passed),
                                (&o.output, p_passed),
                            ),
                        input: input.clone(),
                        output: o.output,
                        error: o.error,
                        passed: p_passed,
                        cost_usd: o.cost_usd,
                    }
                }
                Err(e) => PerturbRecord {
                    kind: kind.name().to_owned(),
                    input: Map::new(),
                    output: Value::Null,
                    error: Some(e.clone()),
                    passed: false,
                    consistent: false,
                    cost_usd: 0.0,
                },
            };
            record.perturbations.push(p);
        }
        let n = record.perturbations.len();
        if n > 0 {
            let same = record.perturbations.iter().filter(|p| p.consistent).count();
            record.consistency = Some(same as f64 / n as f64);
        }
        record
    }
}

/// A case passes when it has an answer and every scorer passed; its score
/// is the weighted mean (0 for an error).
fn verdict(outcome: &Outcome, scores: &[ScoreRecord]) -> (bool, f64) {
    if outcome.error.is_some() {
        return (false, 0.0);
    }
    let weight: f64 = scores.iter().map(|s| s.weight).sum();
    let score = if weight > 0.0 {
        scores.iter().map(|s| s.score * s.weight).sum::<f64>() / weight
    } else {
        scores.iter().map(|s| s.score).sum::<f64>() / scores.len().max(1) as f64
    };
    (scores.iter().all(|s| s.passed), score)
}

/// A stable 64-bit hash of a case id (FNV-1a; std's hasher is seeded per
/// process, and perturbations must be the same from run to run).
fn fxhash(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// A short description of what a variant calls.
pub fn describe(variant: &Variant) -> String {
    match &variant.call {
        Call::Function(f) => {
            let mut s = format!("function {}", f.function);
            if let Some(v) = &f.version {
                s.push_str(&format!(" version {v}"));
            }
            if let Some(m) = &f.model {
                s.push_str(&format!(" on {m}"));
            }
            s
        }
        Call::Chat(c) => format!("chat on {}", c.model),
    }
}

/// Runs every variant over every case, then summarises and checks the pass
/// criteria. `baseline`: a previous results file and its label; comparing
/// against it decides the exit code with the criteria.
pub async fn run(
    eval: &Eval,
    variants: &[&Variant],
    target: Target,
    options: &Options,
    baseline: Option<(&Results, &str)>,
) -> Results {
    let started_at = chrono::DateTime::<chrono::Utc>::from(std::time::SystemTime::now());
    let started = Instant::now();
    let ctx = Arc::new(Ctx {
        eval,
        client: Client::new(target.clone()),
        timeout: options.timeout,
        perturbed: eval
            .cases
            .iter()
            .map(|_| tokio::sync::OnceCell::new())
            .collect(),
    });
    let jobs: Vec<(usize, usize)> = (0..variants.len())
        .flat_map(|v| (0..eval.cases.len()).map(move |c| (v, c)))
        .collect();
    let bar = progress_bar(jobs.len(), options.progress);
    let failures = AtomicUsize::new(0);
    let mut records: Vec<((usize, usize), CaseRecord)> =
        futures::stream::iter(jobs.into_iter().map(|(v, c)| {
            let (ctx, bar, failures) = (ctx.clone(), bar.clone(), &failures);
            async move {
                let record = ctx.case(variants[v], c, options.perturb).await;
                bar.inc(1);
                if !record.passed {
                    let n = failures.fetch_add(1, Ordering::Relaxed) + 1;
                    bar.set_message(format!("· {n} failed"));
                }
                ((v, c), record)
            }
        }))
        .buffer_unordered(options.concurrency.max(1))
        .collect()
        .await;
    bar.finish_and_clear();
    records.sort_by_key(|(k, _)| *k);
    let cases: Vec<CaseRecord> = records.into_iter().map(|(_, r)| r).collect();
    let summaries = variants
        .iter()
        .map(|v| {
            let of: Vec<&CaseRecord> = cases.iter().filter(|c| c.variant == v.name).collect();
            results::summarise(&v.name, &describe(v), &of)
        })
        .collect();
    let mut results = Results {
        format: results::FORMAT.to_owned(),
        eval: eval.name.clone(),
        keel_version: env!("CARGO_PKG_VERSION").to_owned(),
        started_at: started_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        duration_ms: ms(started),
        target: target.label,
        cassette: options.cassette.clone(),
        variants: summaries,
        cases,
        comparisons: Vec::new(),
        criteria: Vec::new(),
        passed: true,
    };
    judge_run(eval, &mut results, baseline);
    results
}

/// Comparisons and criteria, and the run's verdict.
pub fn judge_run(eval: &Eval, results: &mut Results, baseline: Option<(&Results, &str)>) {
    let names: Vec<String> = results.variants.iter().map(|v| v.name.clone()).collect();
    if let Some(first) = names.first() {
        let base = results.gate_cases(first);
        for other in &names[1..] {
            results.comparisons.push(Comparison {
                baseline: first.clone(),
                candidate: other.clone(),
                verdict: crate::gate::compare(&base, &results.gate_cases(other), &eval.gate),
                gating: false,
            });
        }
    }
    if let Some((base, label)) = baseline {
        match results::compare_runs(base, results, label, &eval.gate) {
            Ok(c) => results.comparisons.extend(c),
            Err(e) => results.criteria.push(Criterion {
                variant: String::new(),
                check: format!("baseline: {e}"),
                held: false,
            }),
        }
    }
    for v in &results.variants {
        // Errors are failed cases, but a variant with no answer at all
        // measured nothing: a wrong URL, key or function name, most likely.
        if v.cases > 0 && v.errors == v.cases {
            results.criteria.push(Criterion {
                variant: v.name.clone(),
                check: format!("answered: none of {} calls succeeded", v.cases),
                held: false,
            });
        }
    }
    let p = &eval.pass;
    let bounded = p.min_pass_rate.is_some()
        || p.min_score.is_some()
        || p.max_p95_latency_ms.is_some()
        || p.max_cost_usd.is_some();
    if bounded
        && !results
            .variants
            .iter()
            .any(|v| p.variants.is_empty() || p.variants.contains(&v.name))
    {
        results.criteria.push(Criterion {
            variant: String::new(),
            check: format!(
                "no pass bound applies to the variants run (the bounds are for {})",
                p.variants.join(", ")
            ),
            held: true,
        });
    }
    for v in &results.variants {
        if !p.variants.is_empty() && !p.variants.contains(&v.name) {
            continue;
        }
        let mut check = |check: String, held: bool| {
            results.criteria.push(Criterion {
                variant: v.name.clone(),
                check,
                held,
            });
        };
        if let Some(min) = p.min_pass_rate {
            check(
                format!("pass rate {:.3} ≥ {min}", v.pass_rate),
                v.pass_rate >= min,
            );
        }
        if let Some(min) = p.min_score {
            check(
                format!("mean score {:.3} ≥ {min}", v.mean_score),
                v.mean_score >= min,
            );
        }
        if let Some(max) = p.max_p95_latency_ms {
            check(
                format!("p95 latency {:.0} ms ≤ {max} ms", v.latency_ms.p95),
                v.latency_ms.p95 <= max,
            );
        }
        if let Some(max) = p.max_cost_usd {
            check(
                format!("cost ${:.6} ≤ ${max}", v.cost_usd),
                v.cost_usd <= max,
            );
        }
    }
    results.passed = results.criteria.iter().all(|c| c.held)
        && results
            .comparisons
            .iter()
            .all(|c| !c.gating || !c.verdict.failed);
}

fn progress_bar(len: usize, show: bool) -> indicatif::ProgressBar {
    if !show {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(len as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} cases · ETA {eta} {msg}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar
}
