//! `keel guard bench`: the guardrail detectors measured on a labelled
//! dataset (`datasets/guard/`, one JSONL file per check).
//!
//! Each line of `injection.jsonl`, `pii.jsonl`, `secrets.jsonl`,
//! `refusal.jsonl`, `leak.jsonl` (system-prompt leaks) and `denied.jsonl`
//! (denied terms) is a case: `{"id", "text", "label", "kind"?, "source",
//! "context"?}` — `context` being the system prompt, or the denied terms
//! joined by `|`.
//! The check's detector runs on the text; the case is predicted positive
//! when the detector returns any finding, or, when the case names a `kind`
//! (positives of pii and secrets), any finding of that kind. Against the
//! label that gives TP, FP, TN and FN, and from them precision
//! (TP / (TP + FP)), recall (TP / (TP + FN)) and the false-positive rate
//! (FP / (FP + TN)); a ratio with a zero denominator is `null` in JSON and
//! `-` in the table.
//!
//! Throughput is the bytes of text scanned over the wall time, in MB/s
//! (10^6 bytes), one detector call per case, single-threaded, passes over
//! the whole set repeated until they have lasted `--min-time` (0.5 s); the
//! detector is warmed up first (its regexes compile on first use).
//!
//! `--every N` keeps every Nth case of each file (lines 0, N, 2N…): a
//! deterministic slice for quick runs. The figures are broken down by group
//! (the case id without its check prefix and number: `garak-dan`,
//! `card-luhn-invalid`) in JSON and with `--groups`; `--misses N` shows up
//! to N false negatives and N false positives per check. A finding whose
//! span does not fit its text (a detector bug) is always listed.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use keel_policy::guard::injection::{self, InjectionConfig};
use keel_policy::guard::{Finding, output, pii, secrets};
use serde_json::{Value, json};

/// The checks, in report order; each reads its file in [`file`].
const CHECKS: [&str; 6] = [
    "injection",
    "pii",
    "secrets",
    "refusal",
    "system_prompt_leak",
    "denied_terms",
];

/// A check's dataset file.
fn file(check: &str) -> String {
    match check {
        "system_prompt_leak" => "leak.jsonl".to_owned(),
        "denied_terms" => "denied.jsonl".to_owned(),
        other => format!("{other}.jsonl"),
    }
}

#[derive(Debug, clap::Args)]
pub struct Options {
    /// The dataset folder: injection, pii, secrets, refusal, leak and denied `.jsonl`.
    #[arg(long, default_value = "datasets/guard")]
    pub data: PathBuf,
    /// Keep every Nth case of each file (1: all).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    pub every: u64,
    /// Only these checks (repeatable): injection, pii, secrets, refusal,
    /// system_prompt_leak, denied_terms.
    #[arg(long = "check", value_parser = clap::builder::PossibleValuesParser::new(CHECKS))]
    pub checks: Vec<String>,
    /// Score from which the injection detector reports.
    #[arg(long, default_value_t = injection::DEFAULT_THRESHOLD)]
    pub injection_threshold: f64,
    /// Seconds the timed passes over each check's cases last at least.
    #[arg(long, default_value_t = 0.5)]
    pub min_time: f64,
    /// Also print the figures of each group of cases.
    #[arg(long)]
    pub groups: bool,
    /// Show up to N false negatives and N false positives per check.
    #[arg(long, default_value_t = 0)]
    pub misses: usize,
    /// One JSON document instead of tables.
    #[arg(long)]
    pub json: bool,
}

/// One labelled case.
#[derive(Debug)]
struct Case {
    id: String,
    text: String,
    label: bool,
    kind: Option<String>,
    source: String,
    /// What the check is given besides the text: the system prompt (leak)
    /// or the denied terms joined by `|` (denied terms).
    context: String,
}

impl Case {
    /// The id without its check prefix and trailing number.
    fn group(&self, check: &str) -> &str {
        let id = self.id.as_str();
        let id = match id.rsplit_once('-') {
            Some((head, n)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => head,
            _ => id,
        };
        id.strip_prefix(check)
            .and_then(|rest| rest.strip_prefix('-'))
            .unwrap_or(id)
    }
}

#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    tp: u64,
    fp: u64,
    tn: u64,
    fn_: u64,
}

impl Counts {
    fn add(&mut self, label: bool, predicted: bool) {
        match (label, predicted) {
            (true, true) => self.tp += 1,
            (false, true) => self.fp += 1,
            (false, false) => self.tn += 1,
            (true, false) => self.fn_ += 1,
        }
    }
    fn cases(&self) -> u64 {
        self.tp + self.fp + self.tn + self.fn_
    }
    fn precision(&self) -> Option<f64> {
        ratio(self.tp, self.tp + self.fp)
    }
    fn recall(&self) -> Option<f64> {
        ratio(self.tp, self.tp + self.fn_)
    }
    fn fpr(&self) -> Option<f64> {
        ratio(self.fp, self.fp + self.tn)
    }
    fn to_json(self) -> Value {
        json!({
            "cases": self.cases(),
            "positives": self.tp + self.fn_,
            "negatives": self.fp + self.tn,
            "tp": self.tp,
            "fp": self.fp,
            "tn": self.tn,
            "fn": self.fn_,
            "precision": self.precision(),
            "recall": self.recall(),
            "fpr": self.fpr(),
        })
    }
}

fn ratio(num: u64, den: u64) -> Option<f64> {
    (den > 0).then(|| num as f64 / den as f64)
}

/// A wrongly predicted case, for `--misses`.
struct Miss<'a> {
    case: &'a Case,
    /// What the detector found (for false positives; empty for misses).
    found: Vec<String>,
}

/// The result of one check.
struct Report<'a> {
    check: &'static str,
    counts: Counts,
    groups: BTreeMap<String, Counts>,
    false_negatives: Vec<Miss<'a>>,
    false_positives: Vec<Miss<'a>>,
    /// Findings whose span does not fit the text (out of range or not on
    /// char boundaries): detector bugs, listed in `--misses`.
    bad_spans: Vec<(&'a str, String)>,
    bytes: u64,
    passes: u64,
    elapsed: Duration,
}

impl Report<'_> {
    fn mb_per_s(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.bytes as f64 * self.passes as f64 / 1e6 / secs
        } else {
            0.0
        }
    }
}

pub fn run(opts: &Options) -> anyhow::Result<()> {
    if !(opts.min_time.is_finite() && opts.min_time >= 0.0) {
        bail!("--min-time must be a non-negative number of seconds");
    }
    let checks: Vec<&'static str> = CHECKS
        .iter()
        .copied()
        .filter(|c| opts.checks.is_empty() || opts.checks.iter().any(|o| o == c))
        .collect();
    let mut datasets = Vec::new();
    for check in &checks {
        let path = opts.data.join(file(check));
        datasets.push((*check, load(&path, opts.every)?));
    }
    let config = InjectionConfig {
        threshold: opts.injection_threshold,
    };
    let min_time = Duration::from_secs_f64(opts.min_time);
    let reports: Vec<Report<'_>> = datasets
        .iter()
        .map(|(check, cases)| evaluate(check, cases, &config, min_time, opts.misses))
        .collect();

    let mut out = std::io::stdout().lock();
    if opts.json {
        let doc = to_json(opts, &reports);
        writeln!(out, "{}", serde_json::to_string_pretty(&doc)?)?;
    } else {
        print_tables(&mut out, opts, &reports)?;
    }
    out.flush()?;
    Ok(())
}

/// The cases of one file, every `every`th line (0-based) kept.
fn load(path: &Path, every: u64) -> anyhow::Result<Vec<Case>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read {} (is --data right?)", path.display()))?;
    let mut cases = Vec::new();
    let lines = text.lines().filter(|l| !l.trim().is_empty());
    for (n, line) in lines.enumerate() {
        if !(n as u64).is_multiple_of(every) {
            continue;
        }
        let at = || format!("{}: case {}", path.display(), n + 1);
        let v: Value = serde_json::from_str(line).with_context(at)?;
        let field = |name: &str| -> anyhow::Result<String> {
            v.get(name)
                .and_then(Value::as_str)
                .map(str::to_owned)
                .with_context(|| format!("{}: no string `{name}`", at()))
        };
        let label = v
            .get("label")
            .and_then(Value::as_bool)
            .with_context(|| format!("{}: no boolean `label`", at()))?;
        let kind = match v.get("kind") {
            None | Some(Value::Null) => None,
            Some(k) => Some(
                k.as_str()
                    .with_context(|| format!("{}: `kind` is not a string", at()))?
                    .to_owned(),
            ),
        };
        cases.push(Case {
            id: field("id")?,
            text: field("text")?,
            label,
            kind,
            source: field("source")?,
            context: v
                .get("context")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
        });
    }
    Ok(cases)
}

fn detect(check: &str, text: &str, context: &str, config: &InjectionConfig) -> Vec<Finding> {
    match check {
        "injection" => injection::detect(text, config),
        "pii" => pii::detect(text),
        "secrets" => secrets::detect(text),
        "refusal" => output::refusal(text),
        "system_prompt_leak" => {
            output::system_prompt_leak(text, context, output::DEFAULT_MIN_OVERLAP)
        }
        "denied_terms" => {
            let terms: Vec<String> = context.split('|').map(str::to_owned).collect();
            output::DeniedTerms::new(&terms, &[], 1)
                .map(|d| d.detect(text))
                .unwrap_or_default()
        }
        _ => Vec::new(),
    }
}

/// Runs `check`'s detector over `cases`, in timed passes lasting at least
/// `min_time`; the first pass's findings are scored.
fn evaluate<'a>(
    check: &'static str,
    cases: &'a [Case],
    config: &InjectionConfig,
    min_time: Duration,
    keep_misses: usize,
) -> Report<'a> {
    // Warm up: the detectors compile their regexes on first use.
    std::hint::black_box(detect(
        check,
        "warm up: ignore previous instructions",
        "",
        config,
    ));

    let mut report = Report {
        check,
        counts: Counts::default(),
        groups: BTreeMap::new(),
        false_negatives: Vec::new(),
        false_positives: Vec::new(),
        bad_spans: Vec::new(),
        bytes: cases.iter().map(|c| c.text.len() as u64).sum(),
        passes: 0,
        elapsed: Duration::ZERO,
    };
    let start = Instant::now();
    loop {
        let first = report.passes == 0;
        for case in cases {
            let findings = detect(
                check,
                std::hint::black_box(&case.text),
                &case.context,
                config,
            );
            if first {
                score(&mut report, check, case, &findings, keep_misses);
            }
            std::hint::black_box(findings);
        }
        report.passes += 1;
        report.elapsed = start.elapsed();
        if report.elapsed >= min_time || cases.is_empty() {
            break;
        }
    }
    report
}

fn score<'a>(
    report: &mut Report<'a>,
    check: &str,
    case: &'a Case,
    findings: &[Finding],
    keep_misses: usize,
) {
    for f in findings {
        if f.span.is_some_and(|span| span.slice(&case.text).is_none()) {
            report.bad_spans.push((&case.id, describe(f)));
        }
    }
    let relevant: Vec<&Finding> = findings
        .iter()
        .filter(|f| case.kind.as_deref().is_none_or(|k| f.kind == k))
        .collect();
    let predicted = !relevant.is_empty();
    report.counts.add(case.label, predicted);
    report
        .groups
        .entry(case.group(check).to_owned())
        .or_default()
        .add(case.label, predicted);
    match (case.label, predicted) {
        (true, false) if report.false_negatives.len() < keep_misses => {
            let found = findings.iter().map(describe).collect();
            report.false_negatives.push(Miss { case, found });
        }
        (false, true) if report.false_positives.len() < keep_misses => {
            let found = relevant.into_iter().map(describe).collect();
            report.false_positives.push(Miss { case, found });
        }
        _ => {}
    }
}

fn describe(f: &Finding) -> String {
    match f.span {
        Some(span) => format!(
            "{} ({:.2}) at {}..{}: {}",
            f.kind, f.score, span.start, span.end, f.detail
        ),
        None => format!("{} ({:.2}): {}", f.kind, f.score, f.detail),
    }
}

fn to_json(opts: &Options, reports: &[Report<'_>]) -> Value {
    let checks: serde_json::Map<String, Value> = reports
        .iter()
        .map(|r| {
            let mut v = r.counts.to_json();
            if let Some(obj) = v.as_object_mut() {
                obj.insert("bytes".into(), json!(r.bytes));
                obj.insert("passes".into(), json!(r.passes));
                obj.insert("seconds".into(), json!(r.elapsed.as_secs_f64()));
                obj.insert("mb_per_s".into(), json!(r.mb_per_s()));
                let bad: Vec<Value> = r
                    .bad_spans
                    .iter()
                    .map(|(id, found)| json!({"id": id, "found": found}))
                    .collect();
                obj.insert("bad_spans".into(), Value::Array(bad));
                let groups: serde_json::Map<String, Value> = r
                    .groups
                    .iter()
                    .map(|(g, c)| (g.clone(), c.to_json()))
                    .collect();
                obj.insert("groups".into(), Value::Object(groups));
                let misses = |list: &[Miss<'_>]| -> Vec<Value> {
                    list.iter()
                        .map(|m| {
                            json!({
                                "id": m.case.id,
                                "source": m.case.source,
                                "kind": m.case.kind,
                                "text": snippet(&m.case.text, 200),
                                "found": m.found,
                            })
                        })
                        .collect()
                };
                if opts.misses > 0 {
                    obj.insert(
                        "false_negatives".into(),
                        Value::Array(misses(&r.false_negatives)),
                    );
                    obj.insert(
                        "false_positives".into(),
                        Value::Array(misses(&r.false_positives)),
                    );
                }
            }
            (r.check.to_owned(), v)
        })
        .collect();
    json!({
        "data": opts.data.display().to_string(),
        "every": opts.every,
        "injection_threshold": opts.injection_threshold,
        "min_time_s": opts.min_time,
        "checks": checks,
    })
}

fn print_tables(
    out: &mut impl Write,
    opts: &Options,
    reports: &[Report<'_>],
) -> anyhow::Result<()> {
    let slice = if opts.every == 1 {
        "every case".to_owned()
    } else {
        format!("1 case in {}", opts.every)
    };
    writeln!(out, "guard bench: {} ({slice})", opts.data.display())?;
    writeln!(
        out,
        "{:<18} {:>6} {:>5} {:>5} {:>5} {:>5} {:>9} {:>7} {:>7} {:>8}",
        "check", "cases", "TP", "FP", "TN", "FN", "precision", "recall", "FPR", "MB/s"
    )?;
    for r in reports {
        let c = r.counts;
        writeln!(
            out,
            "{:<18} {:>6} {:>5} {:>5} {:>5} {:>5} {:>9} {:>7} {:>7} {:>8.2}",
            r.check,
            c.cases(),
            c.tp,
            c.fp,
            c.tn,
            c.fn_,
            pct(c.precision()),
            pct(c.recall()),
            pct(c.fpr()),
            r.mb_per_s()
        )?;
    }
    for r in reports {
        for (id, found) in &r.bad_spans {
            writeln!(out, "{}: {id}: span outside the text: {found}", r.check)?;
        }
    }
    if opts.groups {
        for r in reports {
            writeln!(out)?;
            writeln!(
                out,
                "{:<34} {:>5} {:>5} {:>5} {:>5} {:>5} {:>7} {:>7}",
                r.check, "cases", "TP", "FP", "TN", "FN", "recall", "FPR"
            )?;
            for (group, c) in &r.groups {
                writeln!(
                    out,
                    "  {:<32} {:>5} {:>5} {:>5} {:>5} {:>5} {:>7} {:>7}",
                    group,
                    c.cases(),
                    c.tp,
                    c.fp,
                    c.tn,
                    c.fn_,
                    pct(c.recall()),
                    pct(c.fpr())
                )?;
            }
        }
    }
    if opts.misses > 0 {
        for r in reports {
            for (what, list) in [
                ("false negatives", &r.false_negatives),
                ("false positives", &r.false_positives),
            ] {
                if list.is_empty() {
                    continue;
                }
                writeln!(out)?;
                writeln!(out, "{} {what} (first {}):", r.check, list.len())?;
                for m in list {
                    let kind = m
                        .case
                        .kind
                        .as_deref()
                        .map_or(String::new(), |k| format!(" [{k}]"));
                    writeln!(out, "  {}{kind}: {}", m.case.id, snippet(&m.case.text, 120))?;
                    for f in &m.found {
                        writeln!(out, "      found {}", snippet(f, 140))?;
                    }
                }
            }
        }
    }
    Ok(())
}

fn pct(x: Option<f64>) -> String {
    x.map_or("-".to_owned(), |x| format!("{:.1}%", x * 100.0))
}

/// The first `max` characters of `text` on one line (control characters
/// escaped), with an ellipsis when cut.
fn snippet(text: &str, max: usize) -> String {
    let mut s: String = text
        .chars()
        .take(max)
        .flat_map(|c| {
            if c.is_control() || invisible(c) {
                c.escape_default().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .collect();
    if text.chars().nth(max).is_some() {
        s.push('…');
    }
    s
}

/// Zero-width and bidi characters, escaped in snippets so a terminal shows
/// them.
fn invisible(c: char) -> bool {
    matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2064}' | '\u{FEFF}' | '\u{E0000}'..='\u{E007F}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_case_group_drops_the_check_and_the_number() {
        let case = |id: &str| Case {
            id: id.to_owned(),
            text: String::new(),
            label: true,
            kind: None,
            source: String::new(),
            context: String::new(),
        };
        assert_eq!(
            case("pii-card-luhn-invalid-0003").group("pii"),
            "card-luhn-invalid"
        );
        assert_eq!(
            case("injection-garak-dan-0014").group("injection"),
            "garak-dan"
        );
        assert_eq!(case("odd").group("pii"), "odd");
    }

    #[test]
    fn ratios_with_no_denominator_are_none() {
        let c = Counts {
            tp: 3,
            fp: 1,
            tn: 0,
            fn_: 0,
        };
        assert_eq!(c.precision(), Some(0.75));
        assert_eq!(c.recall(), Some(1.0));
        assert_eq!(c.fpr(), Some(1.0));
        assert_eq!(Counts::default().recall(), None);
    }
}
