//! The results of a run: the stable JSON format (`format: "keel-eval/1"`,
//! documented field by field in `docs/EVAL.md`) that reports are drawn
//! from and that `--baseline` and `keel eval compare` read back.
//!
//! Fields are only ever added within a format version; a reader ignores
//! fields it does not know.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::gate::{self, GateConfig, Verdict};

/// The format this build writes and reads.
pub const FORMAT: &str = "keel-eval/1";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Results {
    pub format: String,
    pub eval: String,
    pub keel_version: String,
    /// RFC 3339, UTC.
    pub started_at: String,
    pub duration_ms: f64,
    /// `in-process` or the gateway's URL.
    pub target: String,
    /// `record`/`replay` and the file, when the run used one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cassette: Option<String>,
    pub variants: Vec<VariantSummary>,
    pub cases: Vec<CaseRecord>,
    /// Each variant after the first against the first, and against the
    /// `--baseline` file when given.
    #[serde(default)]
    pub comparisons: Vec<Comparison>,
    /// The pass criteria, one line per bound checked.
    #[serde(default)]
    pub criteria: Vec<Criterion>,
    /// Every criterion held and no comparison against a baseline failed.
    pub passed: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VariantSummary {
    pub name: String,
    /// What the variant calls, in a few words.
    pub call: String,
    pub cases: usize,
    pub passed: usize,
    /// Cases whose call failed (counted as failures too).
    pub errors: usize,
    pub pass_rate: f64,
    /// Wilson score interval at 95 %.
    pub pass_rate_ci: [f64; 2],
    /// Mean weighted case score.
    pub mean_score: f64,
    pub scorers: BTreeMap<String, ScorerSummary>,
    pub latency_ms: Latency,
    pub tokens: Tokens,
    pub cost_usd: f64,
    /// Mean consistency under `--perturb`, when it ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consistency: Option<f64>,
    /// What answering the rephrased inputs cost, when `--perturb` ran (not
    /// in `cost_usd`, which stays comparable with unperturbed runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub perturbation_cost_usd: Option<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ScorerSummary {
    pub mean: f64,
    pub pass_rate: f64,
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
pub struct Latency {
    pub p50: f64,
    pub p95: f64,
    pub mean: f64,
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Tokens {
    pub input: u64,
    pub output: u64,
}

/// One case answered by one variant.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CaseRecord {
    pub id: String,
    pub variant: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    pub input: Map<String, Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected: Option<Value>,
    /// The answer: a function's output, or the chat reply's text as a
    /// string; `null` when the call failed.
    pub output: Value,
    /// Why the call failed (the error's kind and message).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub passed: bool,
    pub score: f64,
    pub scores: Vec<ScoreRecord>,
    pub latency_ms: f64,
    pub tokens: Tokens,
    pub cost_usd: f64,
    /// keel's request id (`keel show ID` tells the whole story).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub perturbations: Vec<PerturbRecord>,
    /// Share of perturbed inputs whose answer did not flip.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consistency: Option<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ScoreRecord {
    pub scorer: String,
    pub score: f64,
    pub passed: bool,
    pub weight: f64,
    pub detail: String,
    /// The LLM judge's reasoning.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PerturbRecord {
    pub kind: String,
    pub input: Map<String, Value>,
    pub output: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub passed: bool,
    /// False when the answer flipped (see `perturb.rs`) or either call
    /// failed.
    pub consistent: bool,
    /// What answering the rephrased input cost (not in the case's cost).
    #[serde(default)]
    pub cost_usd: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Comparison {
    /// `variant` or `baseline-file:variant`.
    pub baseline: String,
    pub candidate: String,
    pub verdict: Verdict,
    /// Whether this comparison decides the run's exit code (comparisons
    /// against `--baseline` do; variants against each other inform).
    pub gating: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Criterion {
    pub variant: String,
    /// e.g. `pass rate 0.82 ≥ 0.80`.
    pub check: String,
    pub held: bool,
}

impl Results {
    /// The cases of one variant, in dataset order.
    pub fn cases_of<'a>(&'a self, variant: &'a str) -> impl Iterator<Item = &'a CaseRecord> {
        self.cases.iter().filter(move |c| c.variant == variant)
    }

    /// The gate's view of one variant's cases.
    pub fn gate_cases(&self, variant: &str) -> Vec<gate::CaseResult> {
        self.cases_of(variant)
            .map(|c| gate::CaseResult {
                id: c.id.clone(),
                passed: c.passed,
                score: c.score,
                latency_ms: c.latency_ms,
                cost_usd: c.cost_usd,
            })
            .collect()
    }

    /// Reads a results file, refusing another format.
    pub fn from_json(text: &str) -> Result<Results, String> {
        let results: Results = serde_json::from_str(text).map_err(|e| e.to_string())?;
        if results.format != FORMAT {
            return Err(format!(
                "format `{}`; this keel reads `{FORMAT}`",
                results.format
            ));
        }
        Ok(results)
    }
}

/// Compares two result sets variant by variant: each candidate variant
/// against the baseline's variant of the same name, or — when each file
/// has exactly one variant — the one against the other. `label` names the
/// baseline (a file name).
pub fn compare_runs(
    baseline: &Results,
    candidate: &Results,
    label: &str,
    cfg: &GateConfig,
) -> Result<Vec<Comparison>, String> {
    let pairs: Vec<(&str, &str)> =
        match (baseline.variants.as_slice(), candidate.variants.as_slice()) {
            ([b], [c]) => vec![(b.name.as_str(), c.name.as_str())],
            _ => candidate
                .variants
                .iter()
                .filter(|c| baseline.variants.iter().any(|b| b.name == c.name))
                .map(|c| (c.name.as_str(), c.name.as_str()))
                .collect(),
        };
    if pairs.is_empty() {
        return Err(format!(
            "no variant of the candidate is in the baseline {label} (variants are paired by name)"
        ));
    }
    Ok(pairs
        .into_iter()
        .map(|(b, c)| Comparison {
            baseline: format!("{label}:{b}"),
            candidate: c.to_owned(),
            verdict: gate::compare(&baseline.gate_cases(b), &candidate.gate_cases(c), cfg),
            gating: true,
        })
        .collect())
}

/// Summarises one variant's cases.
pub fn summarise(name: &str, call: &str, cases: &[&CaseRecord]) -> VariantSummary {
    let n = cases.len();
    let passed = cases.iter().filter(|c| c.passed).count();
    let mut scorers: BTreeMap<String, (f64, usize, usize)> = BTreeMap::new();
    for s in cases.iter().flat_map(|c| &c.scores) {
        let e = scorers.entry(s.scorer.clone()).or_default();
        e.0 += s.score;
        e.1 += usize::from(s.passed);
        e.2 += 1;
    }
    let mut latencies: Vec<f64> = cases.iter().map(|c| c.latency_ms).collect();
    latencies.sort_by(f64::total_cmp);
    let consistencies: Vec<f64> = cases.iter().filter_map(|c| c.consistency).collect();
    VariantSummary {
        name: name.to_owned(),
        call: call.to_owned(),
        cases: n,
        passed,
        errors: cases.iter().filter(|c| c.error.is_some()).count(),
        pass_rate: ratio(passed, n),
        pass_rate_ci: wilson(passed, n),
        mean_score: mean(cases.iter().map(|c| c.score)),
        scorers: scorers
            .into_iter()
            .map(|(k, (sum, pass, count))| {
                (
                    k,
                    ScorerSummary {
                        mean: sum / count as f64,
                        pass_rate: ratio(pass, count),
                    },
                )
            })
            .collect(),
        latency_ms: Latency {
            p50: percentile(&latencies, 0.50),
            p95: percentile(&latencies, 0.95),
            mean: mean(latencies.iter().copied()),
        },
        tokens: Tokens {
            input: cases.iter().map(|c| c.tokens.input).sum(),
            output: cases.iter().map(|c| c.tokens.output).sum(),
        },
        cost_usd: cases.iter().map(|c| c.cost_usd).sum(),
        consistency: (!consistencies.is_empty()).then(|| mean(consistencies.into_iter())),
        perturbation_cost_usd: cases.iter().any(|c| !c.perturbations.is_empty()).then(|| {
            cases
                .iter()
                .flat_map(|c| &c.perturbations)
                .map(|p| p.cost_usd)
                .sum()
        }),
    }
}

fn ratio(k: usize, n: usize) -> f64 {
    if n == 0 { 0.0 } else { k as f64 / n as f64 }
}

/// The mean (0 when empty).
pub(crate) fn mean(values: impl Iterator<Item = f64>) -> f64 {
    let (sum, n) = values.fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    if n == 0 { 0.0 } else { sum / n as f64 }
}

/// Nearest-rank percentile of sorted values (0 when empty).
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// The Wilson score interval for `k` successes in `n` at 95 %: unlike the
/// normal approximation it stays inside 0..=1 and is honest at 0 % and
/// 100 % with few cases.
pub fn wilson(k: usize, n: usize) -> [f64; 2] {
    if n == 0 {
        return [0.0, 1.0];
    }
    const Z: f64 = 1.959_963_984_540_054;
    let (n, p) = (n as f64, k as f64 / n as f64);
    let denom = 1.0 + Z * Z / n;
    let centre = (p + Z * Z / (2.0 * n)) / denom;
    let half = Z * (p * (1.0 - p) / n + Z * Z / (4.0 * n * n)).sqrt() / denom;
    [(centre - half).max(0.0), (centre + half).min(1.0)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wilson_matches_known_values() {
        // 8 of 10: the textbook interval is 0.490..0.943.
        let [lo, hi] = wilson(8, 10);
        assert!(
            (lo - 0.4902).abs() < 1e-3 && (hi - 0.9433).abs() < 1e-3,
            "{lo} {hi}"
        );
        let [lo, hi] = wilson(0, 20);
        assert!(lo == 0.0 && (hi - 0.1611).abs() < 1e-3, "{hi}");
        let [lo, hi] = wilson(20, 20);
        assert!((lo - 0.8389).abs() < 1e-3 && hi == 1.0, "{lo}");
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 0.5), 50.0);
        assert_eq!(percentile(&v, 0.95), 95.0);
        assert_eq!(percentile(&[7.0], 0.95), 7.0);
        assert_eq!(percentile(&[], 0.5), 0.0);
    }
}
