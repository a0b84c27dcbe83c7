//! The eval file: what to run, on which cases, judged how, passing when.
//!
//! YAML (`.yaml`/`.yml`) or TOML (`.toml`), the same fields; every path in
//! it is relative to the file. The whole format is documented, with an
//! example, in `docs/EVAL.md`; unknown fields are refused so a typo does
//! not silently turn a scorer off.
//!
//! Loading resolves everything a run needs up front — the dataset is read,
//! scorers compiled, templates parsed, prompt files read — so a bad file
//! fails before the first call, with the field that is wrong.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use keel_policy::schema::Schema;
use keel_policy::template::Template;
use serde::Deserialize;
use serde_json::Value;

use crate::dataset::{self, Case};
use crate::gate::GateConfig;
use crate::scorers::Scorer;

/// Re-asks a judge may be given: a judge that cannot produce a valid
/// verdict in a few tries will not in many.
pub const MAX_JUDGE_REASKS: u32 = 5;
/// Concurrent cases when neither the file nor the command line says.
pub const DEFAULT_CONCURRENCY: usize = 4;
/// Per-case time limit (every call the case makes, judges included).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// A loaded, checked eval file.
#[derive(Debug)]
pub struct Eval {
    pub name: String,
    pub description: Option<String>,
    /// The directory paths in the file are relative to.
    pub base_dir: PathBuf,
    /// The keel config the in-process gateway runs (`config:`), resolved.
    pub config: Option<PathBuf>,
    pub cases: Vec<Case>,
    pub variants: Vec<Variant>,
    pub scorers: Vec<ScorerSpec>,
    pub pass: PassCriteria,
    pub run: RunOptions,
    pub gate: GateConfig,
    pub perturb: PerturbOptions,
}

/// One way of answering the cases, compared with the others.
#[derive(Debug, Clone)]
pub struct Variant {
    pub name: String,
    pub call: Call,
}

#[derive(Debug, Clone)]
pub enum Call {
    /// A configured function, optionally with its prompts, model or
    /// sampling parameters replaced (in-process runs only).
    Function(FunctionVariant),
    /// A chat request rendered from templates for each case.
    Chat(ChatVariant),
}

#[derive(Debug, Clone, Default)]
pub struct FunctionVariant {
    pub function: String,
    /// The version label the variant's prompts are recorded under.
    pub version: Option<String>,
    /// Replacement prompt templates: (path, text).
    pub system: Option<(PathBuf, String)>,
    pub user: Option<(PathBuf, String)>,
    pub model: Option<String>,
    pub params: Params,
}

impl FunctionVariant {
    /// True when the variant changes the configured function, so the
    /// runner must call a derived copy rather than the function itself.
    pub fn overrides(&self) -> bool {
        self.version.is_some()
            || self.system.is_some()
            || self.user.is_some()
            || self.model.is_some()
            || !self.params.is_empty()
    }
}

#[derive(Debug, Clone)]
pub struct ChatVariant {
    /// The model alias on the gateway.
    pub model: String,
    /// `(role, template)` in order; roles are `system`, `user`, `assistant`.
    /// Templates render like function prompts (strict: a variable the
    /// case's input lacks is an error, recorded as the case's failure).
    pub messages: Vec<(String, Arc<Template>)>,
    pub params: Params,
}

/// Sampling parameters a variant sets.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub max_tokens: Option<u32>,
}

impl Params {
    pub fn is_empty(&self) -> bool {
        *self == Params::default()
    }
}

/// A compiled scorer with its place in the case's verdict.
#[derive(Debug)]
pub struct ScorerSpec {
    pub name: String,
    pub kind: ScorerKind,
    pub weight: f64,
    pub threshold: f64,
    /// Score this JSON pointer of the output instead of the whole answer.
    pub field: Option<String>,
    /// Take the expected value at this pointer of the case's `expected`.
    pub expected: Option<String>,
}

#[derive(Debug)]
pub enum ScorerKind {
    /// Scored in process (`scorers.rs`).
    Local(Scorer),
    /// An LLM judge: a rubric, a judge model alias.
    Judge(JudgeSpec),
    /// An external program: case and answer as JSON on stdin, a score on stdout.
    Command(CommandSpec),
}

#[derive(Debug, Clone)]
pub struct JudgeSpec {
    pub model: String,
    pub rubric: String,
    /// Re-asks after a verdict that does not validate.
    pub max_reasks: u32,
}

#[derive(Debug, Clone)]
pub struct CommandSpec {
    /// Program and arguments (not run through a shell).
    pub argv: Vec<String>,
    pub timeout: Duration,
    /// Where it runs: the eval file's directory, so relative paths in the
    /// command mean what they mean in the rest of the file.
    pub dir: PathBuf,
}

/// When a run passes (each bound optional; a variant failing one fails the
/// run).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PassCriteria {
    /// Share of cases that pass, in 0..=1.
    pub min_pass_rate: Option<f64>,
    /// Mean weighted score, in 0..=1.
    pub min_score: Option<f64>,
    pub max_p95_latency_ms: Option<f64>,
    pub max_cost_usd: Option<f64>,
    /// Variants the criteria apply to; all when empty.
    #[serde(default)]
    pub variants: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct RunOptions {
    pub concurrency: usize,
    pub timeout: Duration,
}

/// How `--perturb` rephrases inputs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PerturbOptions {
    pub kinds: Vec<crate::perturb::Kind>,
    /// Input fields (top level) to rephrase; every string field when empty.
    pub fields: Vec<String>,
    /// The model alias that writes paraphrases (needed for `paraphrase`).
    pub paraphrase_model: Option<String>,
    pub seed: u64,
}

impl Default for PerturbOptions {
    fn default() -> Self {
        PerturbOptions {
            kinds: crate::perturb::Kind::LOCAL.to_vec(),
            fields: Vec::new(),
            paraphrase_model: None,
            seed: 0,
        }
    }
}

/// A problem in the eval file, naming the field.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {at}: {message}")]
pub struct SpecError {
    pub file: String,
    pub at: String,
    pub message: String,
}

// ---- the file as written ----

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEval {
    name: String,
    description: Option<String>,
    config: Option<PathBuf>,
    dataset: RawDataset,
    variants: Vec<RawVariant>,
    scorers: Vec<RawScorer>,
    #[serde(default)]
    pass: PassCriteria,
    #[serde(default)]
    run: RawRun,
    #[serde(default)]
    gate: Option<GateConfig>,
    #[serde(default)]
    perturb: PerturbOptions,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDataset {
    file: Option<PathBuf>,
    cases: Option<Vec<Value>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRun {
    concurrency: Option<usize>,
    #[serde(default, with = "humantime_serde")]
    timeout: Option<Duration>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVariant {
    name: String,
    function: Option<String>,
    version: Option<String>,
    system: Option<PathBuf>,
    user: Option<PathBuf>,
    model: Option<String>,
    #[serde(default)]
    params: Params,
    chat: Option<RawChat>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawChat {
    model: String,
    system: Option<String>,
    /// Shorthand for one user message.
    user: Option<String>,
    #[serde(default)]
    messages: Vec<RawMessage>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMessage {
    role: String,
    content: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScorer {
    #[serde(rename = "type")]
    kind: String,
    name: Option<String>,
    weight: Option<f64>,
    threshold: Option<f64>,
    field: Option<String>,
    expected: Option<String>,
    // per kind
    case_insensitive: Option<bool>,
    needles: Option<Vec<String>>,
    all: Option<bool>,
    pattern: Option<String>,
    schema: Option<Value>,
    pointer: Option<String>,
    tolerance: Option<f64>,
    refused: Option<bool>,
    ms: Option<f64>,
    usd: Option<f64>,
    model: Option<String>,
    rubric: Option<String>,
    rubric_file: Option<PathBuf>,
    max_reasks: Option<u32>,
    command: Option<Vec<String>>,
    #[serde(default, with = "humantime_serde")]
    timeout: Option<Duration>,
}

impl Eval {
    /// Reads and checks an eval file.
    pub fn load(path: &Path) -> Result<Eval, SpecError> {
        let file = path.display().to_string();
        let err = |at: &str, message: String| SpecError {
            file: file.clone(),
            at: at.to_owned(),
            message,
        };
        let text = std::fs::read_to_string(path).map_err(|e| err("file", e.to_string()))?;
        let raw: RawEval = match path.extension().and_then(|e| e.to_str()) {
            Some("toml") => toml::from_str(&text).map_err(|e| err("toml", e.to_string()))?,
            Some("yaml" | "yml") => {
                serde_norway::from_str(&text).map_err(|e| err("yaml", e.to_string()))?
            }
            _ => {
                return Err(err(
                    "file",
                    "an eval file ends in .yaml, .yml or .toml".into(),
                ));
            }
        };
        let base_dir = path.parent().unwrap_or(Path::new(".")).to_path_buf();
        Eval::build(raw, base_dir).map_err(|(at, message)| err(&at, message))
    }

    fn build(raw: RawEval, base_dir: PathBuf) -> Result<Eval, (String, String)> {
        let at = |s: &str| s.to_owned();
        let cases = match (&raw.dataset.file, raw.dataset.cases) {
            (Some(file), None) => dataset::read(&base_dir.join(file))
                .map_err(|e| (at("dataset.file"), e.to_string()))?,
            (None, Some(inline)) => {
                dataset::from_values(inline).map_err(|e| (at("dataset.cases"), e.to_string()))?
            }
            _ => {
                return Err((
                    at("dataset"),
                    "give either `file` (JSONL or CSV) or inline `cases`".into(),
                ));
            }
        };
        if cases.is_empty() {
            return Err((at("dataset"), "no cases".into()));
        }
        if raw.variants.is_empty() {
            return Err((at("variants"), "at least one variant".into()));
        }
        let mut names = HashSet::new();
        let mut variants = Vec::new();
        for (i, v) in raw.variants.into_iter().enumerate() {
            let here = format!("variants[{i}]");
            if !valid_name(&v.name) {
                return Err((
                    here,
                    format!(
                        "name `{}`: letters, digits, `_`, `-` and `.` only (it names a function copy and a results column)",
                        v.name
                    ),
                ));
            }
            if !names.insert(v.name.clone()) {
                return Err((here, format!("two variants are named `{}`", v.name)));
            }
            variants.push(variant(v, &base_dir).map_err(|m| (here, m))?);
        }
        if raw.scorers.is_empty() {
            return Err((at("scorers"), "at least one scorer".into()));
        }
        let mut scorers = Vec::new();
        let mut scorer_names = HashSet::new();
        for (i, s) in raw.scorers.into_iter().enumerate() {
            let here = format!("scorers[{i}]");
            let s = scorer(s, &base_dir).map_err(|m| (here.clone(), m))?;
            if !scorer_names.insert(s.name.clone()) {
                return Err((
                    here,
                    format!("two scorers are named `{}`: name one", s.name),
                ));
            }
            scorers.push(s);
        }
        for v in &raw.pass.variants {
            if !names.contains(v) {
                return Err((at("pass.variants"), format!("no variant is named `{v}`")));
            }
        }
        for (field, value) in [
            ("pass.min_pass_rate", raw.pass.min_pass_rate),
            ("pass.min_score", raw.pass.min_score),
        ] {
            if value.is_some_and(|v| !(0.0..=1.0).contains(&v)) {
                return Err((at(field), "must be in 0..=1".into()));
            }
        }
        let gate = raw.gate.unwrap_or_default();
        if !(gate.alpha > 0.0 && gate.alpha < 1.0) {
            return Err((at("gate.alpha"), "must be between 0 and 1".into()));
        }
        let run = RunOptions {
            concurrency: raw.run.concurrency.unwrap_or(DEFAULT_CONCURRENCY),
            timeout: raw.run.timeout.unwrap_or(DEFAULT_TIMEOUT),
        };
        if run.concurrency == 0 || run.timeout.is_zero() {
            return Err((at("run"), "concurrency and timeout must be above 0".into()));
        }
        if raw
            .perturb
            .kinds
            .contains(&crate::perturb::Kind::Paraphrase)
            && raw.perturb.paraphrase_model.is_none()
        {
            return Err((
                at("perturb.paraphrase_model"),
                "`paraphrase` needs the model alias that writes the paraphrases".into(),
            ));
        }
        Ok(Eval {
            name: raw.name,
            description: raw.description,
            config: raw.config.map(|c| base_dir.join(c)),
            cases,
            variants,
            scorers,
            pass: raw.pass,
            run,
            gate,
            perturb: raw.perturb,
            base_dir,
        })
    }
}

fn variant(v: RawVariant, base_dir: &Path) -> Result<Variant, String> {
    let read = |p: &PathBuf| -> Result<(PathBuf, String), String> {
        let path = base_dir.join(p);
        std::fs::read_to_string(&path)
            .map(|text| (path.clone(), text))
            .map_err(|e| format!("{}: {e}", path.display()))
    };
    let call = match (v.function, v.chat) {
        (Some(function), None) => {
            let system = v.system.as_ref().map(read).transpose()?;
            let user = v.user.as_ref().map(read).transpose()?;
            for (path, text) in system.iter().chain(&user) {
                Template::compile(&path.display().to_string(), text, "")
                    .map_err(|e| e.to_string())?;
            }
            Call::Function(FunctionVariant {
                function,
                version: v.version,
                system,
                user,
                model: v.model,
                params: check_params(v.params)?,
            })
        }
        (None, Some(chat)) => {
            if v.version.is_some() || v.system.is_some() || v.user.is_some() || v.model.is_some() {
                return Err("`version`, `system`, `user` and `model` belong to function variants; a chat variant sets them under `chat`".into());
            }
            let mut messages = Vec::new();
            messages.extend(chat.system.map(|s| ("system".to_owned(), s)));
            for m in chat.messages {
                if !matches!(m.role.as_str(), "system" | "user" | "assistant") {
                    return Err(format!(
                        "message role `{}`: one of system, user, assistant",
                        m.role
                    ));
                }
                messages.push((m.role, m.content));
            }
            messages.extend(chat.user.map(|u| ("user".to_owned(), u)));
            if !messages.iter().any(|(role, _)| role == "user") {
                return Err("a chat variant needs a user message (`user` or `messages`)".into());
            }
            let messages = messages
                .into_iter()
                .enumerate()
                .map(|(i, (role, text))| {
                    Template::compile(&format!("chat.messages[{i}]"), &text, "")
                        .map(|t| (role, Arc::new(t)))
                        .map_err(|e| e.to_string())
                })
                .collect::<Result<Vec<_>, _>>()?;
            Call::Chat(ChatVariant {
                model: chat.model,
                messages,
                params: check_params(v.params)?,
            })
        }
        _ => return Err("a variant has exactly one of `function` or `chat`".into()),
    };
    Ok(Variant { name: v.name, call })
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

fn check_params(p: Params) -> Result<Params, String> {
    if p.temperature.is_some_and(|t| !(0.0..=2.0).contains(&t)) {
        return Err("params.temperature: in 0..=2".into());
    }
    if p.top_p.is_some_and(|t| !(0.0..=1.0).contains(&t)) {
        return Err("params.top_p: in 0..=1".into());
    }
    if p.max_tokens == Some(0) {
        return Err("params.max_tokens: above 0".into());
    }
    Ok(p)
}

/// The fields each scorer type takes beyond the common ones.
const FIELDS: &[(&str, &[&str])] = &[
    ("equals", &["case_insensitive"]),
    ("contains", &["needles", "all"]),
    ("regex", &["pattern"]),
    ("json_valid", &["schema"]),
    ("json_field", &["pointer", "tolerance"]),
    ("set_overlap", &[]),
    ("similarity", &[]),
    ("refusal", &["refused"]),
    ("max_latency", &["ms"]),
    ("max_cost", &["usd"]),
    ("judge", &["model", "rubric", "rubric_file", "max_reasks"]),
    ("command", &["command", "timeout"]),
];

fn scorer(s: RawScorer, base_dir: &Path) -> Result<ScorerSpec, String> {
    let Some((_, allowed)) = FIELDS.iter().find(|(k, _)| *k == s.kind) else {
        let kinds: Vec<&str> = FIELDS.iter().map(|(k, _)| *k).collect();
        return Err(format!(
            "unknown scorer type `{}`: one of {}",
            s.kind,
            kinds.join(", ")
        ));
    };
    let given = given_fields(&s);
    if let Some(extra) = given.iter().find(|f| !allowed.contains(f)) {
        return Err(format!("a `{}` scorer takes no `{extra}`", s.kind));
    }
    let need = |v: Option<f64>, what: &str| v.ok_or_else(|| format!("`{what}` is required"));
    let kind = match s.kind.as_str() {
        "equals" => ScorerKind::Local(Scorer::Equals {
            case_insensitive: s.case_insensitive.unwrap_or(false),
        }),
        "contains" => ScorerKind::Local(Scorer::Contains {
            needles: s.needles.ok_or("`needles` is required")?,
            all: s.all.unwrap_or(false),
        }),
        "regex" => ScorerKind::Local(Scorer::Regex(
            regex::Regex::new(s.pattern.as_deref().ok_or("`pattern` is required")?)
                .map_err(|e| format!("pattern: {e}"))?,
        )),
        "json_valid" => {
            let schema = match s.schema {
                Some(Value::String(path)) => {
                    let path = base_dir.join(path);
                    let text = std::fs::read_to_string(&path)
                        .map_err(|e| format!("schema {}: {e}", path.display()))?;
                    serde_json::from_str(&text)
                        .map_err(|e| format!("schema {}: {e}", path.display()))?
                }
                Some(inline) => inline,
                None => return Err("`schema` is required (a file or inline)".into()),
            };
            ScorerKind::Local(Scorer::JsonValid(Box::new(
                Schema::compile(&schema).map_err(|e| format!("schema: {e}"))?,
            )))
        }
        "json_field" => {
            let pointer = s.pointer.ok_or("`pointer` is required")?;
            if !pointer.is_empty() && !pointer.starts_with('/') {
                return Err(format!("pointer `{pointer}`: a JSON pointer starts with /"));
            }
            let tolerance = s.tolerance.unwrap_or(0.0);
            if !(tolerance.is_finite() && tolerance >= 0.0) {
                return Err("tolerance: 0 or more".into());
            }
            ScorerKind::Local(Scorer::JsonField { pointer, tolerance })
        }
        "set_overlap" => ScorerKind::Local(Scorer::SetOverlap),
        "similarity" => ScorerKind::Local(Scorer::Similarity),
        "refusal" => ScorerKind::Local(Scorer::Refusal {
            expected: s.refused.unwrap_or(true),
        }),
        "max_latency" => ScorerKind::Local(Scorer::MaxLatency {
            ms: need(s.ms, "ms")?,
        }),
        "max_cost" => ScorerKind::Local(Scorer::MaxCost {
            usd: need(s.usd, "usd")?,
        }),
        "judge" => {
            let rubric = match (s.rubric, s.rubric_file) {
                (Some(r), None) => r,
                (None, Some(f)) => {
                    let path = base_dir.join(f);
                    std::fs::read_to_string(&path)
                        .map_err(|e| format!("rubric_file {}: {e}", path.display()))?
                }
                _ => return Err("a judge needs exactly one of `rubric` or `rubric_file`".into()),
            };
            ScorerKind::Judge(JudgeSpec {
                model: s
                    .model
                    .ok_or("`model` (the judge's model alias) is required")?,
                rubric,
                max_reasks: match s.max_reasks.unwrap_or(1) {
                    n @ 0..=MAX_JUDGE_REASKS => n,
                    _ => return Err(format!("max_reasks: at most {MAX_JUDGE_REASKS}")),
                },
            })
        }
        "command" => {
            let argv = s.command.filter(|c| !c.is_empty()).ok_or(
                "`command` is required: the program and its arguments, e.g. [python3, score.py]",
            )?;
            let timeout = s.timeout.unwrap_or(Duration::from_secs(30));
            if timeout.is_zero() {
                return Err("timeout: above 0".into());
            }
            ScorerKind::Command(CommandSpec {
                argv,
                timeout,
                dir: base_dir.to_path_buf(),
            })
        }
        _ => unreachable!("checked against FIELDS"),
    };
    // Graded scorers pass at a share below 1 unless told otherwise.
    let default_threshold = match s.kind.as_str() {
        "similarity" | "set_overlap" => 0.8,
        "judge" => 0.5,
        _ => 1.0,
    };
    let threshold = s.threshold.unwrap_or(default_threshold);
    if !(0.0..=1.0).contains(&threshold) {
        return Err("threshold: in 0..=1".into());
    }
    let weight = s.weight.unwrap_or(1.0);
    if !(weight.is_finite() && weight >= 0.0) {
        return Err("weight: 0 or more".into());
    }
    for (what, p) in [("field", &s.field), ("expected", &s.expected)] {
        if let Some(p) = p
            && !p.starts_with('/')
        {
            return Err(format!("{what} `{p}`: a JSON pointer starts with /"));
        }
    }
    Ok(ScorerSpec {
        name: s.name.unwrap_or_else(|| s.kind.clone()),
        kind,
        weight,
        threshold,
        field: s.field,
        expected: s.expected,
    })
}

/// The type-specific fields a scorer entry sets.
fn given_fields(s: &RawScorer) -> Vec<&'static str> {
    let set = [
        ("case_insensitive", s.case_insensitive.is_some()),
        ("needles", s.needles.is_some()),
        ("all", s.all.is_some()),
        ("pattern", s.pattern.is_some()),
        ("schema", s.schema.is_some()),
        ("pointer", s.pointer.is_some()),
        ("tolerance", s.tolerance.is_some()),
        ("refused", s.refused.is_some()),
        ("ms", s.ms.is_some()),
        ("usd", s.usd.is_some()),
        ("model", s.model.is_some()),
        ("rubric", s.rubric.is_some()),
        ("rubric_file", s.rubric_file.is_some()),
        ("max_reasks", s.max_reasks.is_some()),
        ("command", s.command.is_some()),
        ("timeout", s.timeout.is_some()),
    ];
    set.into_iter()
        .filter(|(_, on)| *on)
        .map(|(k, _)| k)
        .collect()
}
