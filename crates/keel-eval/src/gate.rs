//! The regression gate: is a candidate run worse than a baseline beyond
//! noise?
//!
//! Cases are paired by id (the first occurrence of an id in a run counts,
//! later duplicates are ignored; ids found in one run only are listed and
//! otherwise left out of every statistic). On the pairs:
//!
//! - pass/fail flips are tested with an exact two-sided McNemar test
//!   (binomial test on the discordant pairs), computed in log space;
//! - the mean score difference gets a paired percentile bootstrap
//!   confidence interval at `1 - alpha`, from a seeded rng so a verdict is
//!   reproducible;
//! - latency p95 and total cost are compared against optional ratio
//!   ceilings.
//!
//! The run fails when the pass rate dropped significantly, when the score
//! interval lies entirely below zero, or when a latency/cost ceiling is
//! exceeded. A handful of random flips both ways does not fail it.

use std::collections::{HashMap, HashSet};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::results::{mean, percentile};

/// How many regressed case ids a reason names before summarising.
const MAX_IDS_IN_REASON: usize = 10;

/// Slack on ratio ceilings so a value exactly at the limit does not fail on
/// floating-point noise.
const RATIO_EPSILON: f64 = 1e-9;

/// One case's result in a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CaseResult {
    pub id: String,
    pub passed: bool,
    /// In `0..=1`.
    pub score: f64,
    pub latency_ms: f64,
    pub cost_usd: f64,
}

/// How strict the gate is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GateConfig {
    /// Significance level for the McNemar test; the score interval is at
    /// `1 - alpha`.
    pub alpha: f64,
    pub bootstrap_samples: u32,
    pub seed: u64,
    /// Ratio: `0.2` fails when the candidate's latency p95 is more than
    /// 20 % above the baseline's.
    pub max_latency_increase: Option<f64>,
    /// Ratio on the total cost of the paired cases.
    pub max_cost_increase: Option<f64>,
}

impl Default for GateConfig {
    fn default() -> Self {
        Self {
            alpha: 0.05,
            bootstrap_samples: 2000,
            seed: 0,
            max_latency_increase: None,
            max_cost_increase: None,
        }
    }
}

/// A paired case whose pass/fail outcome changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Flip {
    pub id: String,
    pub baseline: bool,
    pub candidate: bool,
}

/// The gate's answer. Rates, scores, latency and cost are over paired cases
/// only; pairs are `(baseline, candidate)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    pub paired: usize,
    pub only_in_baseline: Vec<String>,
    pub only_in_candidate: Vec<String>,
    pub baseline_pass_rate: f64,
    pub candidate_pass_rate: f64,
    /// Passed in the baseline, failed in the candidate.
    pub regressions: Vec<Flip>,
    /// Failed in the baseline, passed in the candidate.
    pub fixes: Vec<Flip>,
    /// Exact two-sided McNemar p-value on the discordant pairs.
    pub mcnemar_p: f64,
    /// Mean of `candidate.score - baseline.score`.
    pub score_delta: f64,
    /// Paired percentile bootstrap interval at `1 - alpha`.
    pub score_delta_ci: (f64, f64),
    pub latency_p95: (f64, f64),
    pub cost_total: (f64, f64),
    pub failed: bool,
    pub reasons: Vec<String>,
}

/// Compares a candidate run with a baseline run (see the module docs).
pub fn compare(baseline: &[CaseResult], candidate: &[CaseResult], cfg: &GateConfig) -> Verdict {
    let cand_by_id = first_by_id(candidate);
    let base_ids: HashSet<&str> = baseline.iter().map(|c| c.id.as_str()).collect();

    let mut seen = HashSet::new();
    let mut pairs: Vec<(&CaseResult, &CaseResult)> = Vec::new();
    let mut only_in_baseline = Vec::new();
    for b in baseline {
        if !seen.insert(b.id.as_str()) {
            continue;
        }
        match cand_by_id.get(b.id.as_str()) {
            Some(c) => pairs.push((b, c)),
            None => only_in_baseline.push(b.id.clone()),
        }
    }
    let mut seen = HashSet::new();
    let only_in_candidate: Vec<String> = candidate
        .iter()
        .filter(|c| seen.insert(c.id.as_str()) && !base_ids.contains(c.id.as_str()))
        .map(|c| c.id.clone())
        .collect();

    let paired = pairs.len();
    let rate = |pick: fn(&(&CaseResult, &CaseResult)) -> bool| {
        if paired == 0 {
            0.0
        } else {
            pairs.iter().filter(|p| pick(p)).count() as f64 / paired as f64
        }
    };
    let baseline_pass_rate = rate(|(b, _)| b.passed);
    let candidate_pass_rate = rate(|(_, c)| c.passed);

    let flip = |(b, c): &(&CaseResult, &CaseResult)| Flip {
        id: b.id.clone(),
        baseline: b.passed,
        candidate: c.passed,
    };
    let regressions: Vec<Flip> = pairs
        .iter()
        .filter(|(b, c)| b.passed && !c.passed)
        .map(flip)
        .collect();
    let fixes: Vec<Flip> = pairs
        .iter()
        .filter(|(b, c)| !b.passed && c.passed)
        .map(flip)
        .collect();
    let mcnemar_p = mcnemar_exact(fixes.len() as u64, regressions.len() as u64);

    let diffs: Vec<f64> = pairs.iter().map(|(b, c)| c.score - b.score).collect();
    let score_delta = mean(diffs.iter().copied());
    let score_delta_ci = bootstrap_mean_ci(&diffs, cfg.alpha, cfg.bootstrap_samples, cfg.seed);

    // The p95 the summaries report (nearest rank), so the gate and the
    // table agree on one run's figure.
    let lat = |pick: fn(&(&CaseResult, &CaseResult)) -> f64| {
        let mut v: Vec<f64> = pairs.iter().map(pick).collect();
        v.sort_by(f64::total_cmp);
        percentile(&v, 0.95)
    };
    let latency_p95 = (lat(|(b, _)| b.latency_ms), lat(|(_, c)| c.latency_ms));
    let cost_total = (
        pairs.iter().map(|(b, _)| b.cost_usd).sum::<f64>(),
        pairs.iter().map(|(_, c)| c.cost_usd).sum::<f64>(),
    );

    let mut reasons = Vec::new();
    if candidate_pass_rate < baseline_pass_rate && mcnemar_p < cfg.alpha {
        reasons.push(format!(
            "pass rate fell from {:.1}% to {:.1}% ({} regressions, {} fixes; exact McNemar p = {:.4} < alpha {}); regressed: {}",
            baseline_pass_rate * 100.0,
            candidate_pass_rate * 100.0,
            regressions.len(),
            fixes.len(),
            mcnemar_p,
            cfg.alpha,
            list_ids(&regressions),
        ));
    }
    if score_delta_ci.1 < 0.0 {
        reasons.push(format!(
            "mean score fell by {:.4} ({:.0}% bootstrap CI {:.4} to {:.4}, entirely below 0)",
            -score_delta,
            (1.0 - cfg.alpha) * 100.0,
            score_delta_ci.0,
            score_delta_ci.1,
        ));
    }
    if let Some(max) = cfg.max_latency_increase
        && let Some(inc) = exceeded(latency_p95.0, latency_p95.1, max)
    {
        reasons.push(format!(
            "latency p95 rose from {:.1} ms to {:.1} ms ({}, limit +{:.1}%)",
            latency_p95.0,
            latency_p95.1,
            describe_increase(inc),
            max * 100.0,
        ));
    }
    if let Some(max) = cfg.max_cost_increase
        && let Some(inc) = exceeded(cost_total.0, cost_total.1, max)
    {
        reasons.push(format!(
            "total cost rose from ${:.4} to ${:.4} ({}, limit +{:.1}%)",
            cost_total.0,
            cost_total.1,
            describe_increase(inc),
            max * 100.0,
        ));
    }

    Verdict {
        paired,
        only_in_baseline,
        only_in_candidate,
        baseline_pass_rate,
        candidate_pass_rate,
        regressions,
        fixes,
        mcnemar_p,
        score_delta,
        score_delta_ci,
        latency_p95,
        cost_total,
        failed: !reasons.is_empty(),
        reasons,
    }
}

/// Exact two-sided McNemar test: `2 · P(X ≤ min(b, c))` for
/// `X ~ Binomial(b + c, 1/2)`, capped at 1. Computed in log space so it
/// stays accurate for thousands of discordant pairs.
pub fn mcnemar_exact(b: u64, c: u64) -> f64 {
    let n = b + c;
    if n == 0 {
        return 1.0;
    }
    let k = b.min(c);
    // ln(i!) for i in 0..=n, by a running sum.
    let mut ln_fact = Vec::with_capacity(n as usize + 1);
    let mut acc = 0.0_f64;
    ln_fact.push(acc);
    for i in 1..=n {
        acc += (i as f64).ln();
        ln_fact.push(acc);
    }
    let ln_fact = |i: u64| ln_fact[i as usize];
    let ln_half_n = n as f64 * std::f64::consts::LN_2;
    let terms: Vec<f64> = (0..=k)
        .map(|i| ln_fact(n) - ln_fact(i) - ln_fact(n - i) - ln_half_n)
        .collect();
    // log-sum-exp; the largest term is the last (i = k ≤ n/2).
    let max = terms.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let sum: f64 = terms.iter().map(|t| (t - max).exp()).sum();
    let p = 2.0 * (max + sum.ln()).exp();
    p.min(1.0)
}

fn first_by_id(run: &[CaseResult]) -> HashMap<&str, &CaseResult> {
    let mut map = HashMap::new();
    for c in run {
        map.entry(c.id.as_str()).or_insert(c);
    }
    map
}

/// Linear-interpolation quantile (type 7) of sorted values: the bootstrap
/// interval's bounds.
fn quantile_sorted(s: &[f64], q: f64) -> f64 {
    let Some(&last) = s.last() else {
        return 0.0;
    };
    let pos = q.clamp(0.0, 1.0) * (s.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    match (s.get(lo), s.get(hi)) {
        (Some(&a), Some(&b)) => a + (b - a) * (pos - lo as f64),
        _ => last,
    }
}

/// Percentile bootstrap interval at `1 - alpha` for the mean of `diffs`,
/// resampling with replacement from a rng seeded with `seed`.
fn bootstrap_mean_ci(diffs: &[f64], alpha: f64, samples: u32, seed: u64) -> (f64, f64) {
    if diffs.is_empty() {
        return (0.0, 0.0);
    }
    if samples == 0 {
        let m = mean(diffs.iter().copied());
        return (m, m);
    }
    let n = diffs.len();
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut means: Vec<f64> = (0..samples)
        .map(|_| {
            let sum: f64 = (0..n).map(|_| diffs[rng.random_range(0..n)]).sum();
            sum / n as f64
        })
        .collect();
    means.sort_by(f64::total_cmp);
    let half = (alpha / 2.0).clamp(0.0, 0.5);
    (
        quantile_sorted(&means, half),
        quantile_sorted(&means, 1.0 - half),
    )
}

/// The relative increase from `base` to `cand` when it exceeds `max`
/// (infinite when rising from zero).
fn exceeded(base: f64, cand: f64, max: f64) -> Option<f64> {
    let inc = if base > 0.0 {
        cand / base - 1.0
    } else if cand > base {
        f64::INFINITY
    } else {
        0.0
    };
    (inc > max + RATIO_EPSILON).then_some(inc)
}

fn describe_increase(inc: f64) -> String {
    if inc.is_finite() {
        format!("+{:.1}%", inc * 100.0)
    } else {
        "up from zero".to_owned()
    }
}

fn list_ids(flips: &[Flip]) -> String {
    let mut s = flips
        .iter()
        .take(MAX_IDS_IN_REASON)
        .map(|f| f.id.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    if flips.len() > MAX_IDS_IN_REASON {
        s.push_str(&format!(" (and {} more)", flips.len() - MAX_IDS_IN_REASON));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn case(id: &str, passed: bool, score: f64) -> CaseResult {
        CaseResult {
            id: id.to_owned(),
            passed,
            score,
            latency_ms: 100.0,
            cost_usd: 0.01,
        }
    }

    /// `n` cases all passing (score 1.0) in the baseline.
    fn all_pass(n: usize) -> Vec<CaseResult> {
        (0..n)
            .map(|i| case(&format!("c{i:03}"), true, 1.0))
            .collect()
    }

    /// Flips case `i` to `passed`, with a matching score.
    fn set(run: &mut [CaseResult], i: usize, passed: bool) {
        run[i].passed = passed;
        run[i].score = if passed { 1.0 } else { 0.0 };
    }

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol
    }

    #[test]
    fn mcnemar_known_values() {
        assert!(close(mcnemar_exact(0, 10), 2.0 / 1024.0, 1e-12));
        assert!(close(mcnemar_exact(10, 0), 2.0 / 1024.0, 1e-12));
        assert_eq!(mcnemar_exact(7, 7), 1.0);
        assert_eq!(mcnemar_exact(0, 0), 1.0);
        assert_eq!(mcnemar_exact(3, 4), 1.0);
        // 2 · (1 + 20 + 190 + 1140 + 4845 + 15504) / 2^20
        assert!(close(mcnemar_exact(5, 15), 43_400.0 / 1_048_576.0, 1e-12));
        // 2 · (1 + 6 + 15) / 64
        assert!(close(mcnemar_exact(2, 4), 0.6875, 1e-12));
    }

    #[test]
    fn mcnemar_is_accurate_for_thousands_of_pairs() {
        // Symmetric and balanced: p = 1.
        assert_eq!(mcnemar_exact(1500, 1500), 1.0);
        // 2 · 2^-3000 underflows to zero cleanly rather than NaN.
        let p = mcnemar_exact(0, 3000);
        assert!((0.0..1e-300).contains(&p), "{p}");
        // Normal approximation: b=1400, c=1600, z ≈ -3.651 → p ≈ 2.6e-4.
        let p = mcnemar_exact(1400, 1600);
        assert!(p > 2.0e-4 && p < 3.2e-4, "{p}");
        // Monotone in imbalance.
        assert!(mcnemar_exact(1450, 1550) > p);
    }

    #[test]
    fn real_regression_fails_and_lists_flips() {
        let base = {
            let mut b = all_pass(100);
            for i in 90..100 {
                set(&mut b, i, false);
            }
            b
        };
        let mut cand = base.clone();
        for i in 0..20 {
            set(&mut cand, i, false);
        }
        set(&mut cand, 90, true);
        set(&mut cand, 91, true);
        let v = compare(&base, &cand, &GateConfig::default());
        assert!(v.failed, "{v:?}");
        assert_eq!(v.paired, 100);
        assert!(close(v.baseline_pass_rate, 0.90, 1e-12));
        assert!(close(v.candidate_pass_rate, 0.72, 1e-12));
        let reg: Vec<&str> = v.regressions.iter().map(|f| f.id.as_str()).collect();
        let want: Vec<String> = (0..20).map(|i| format!("c{i:03}")).collect();
        assert_eq!(reg, want);
        assert!(v.regressions.iter().all(|f| f.baseline && !f.candidate));
        let fixes: Vec<&str> = v.fixes.iter().map(|f| f.id.as_str()).collect();
        assert_eq!(fixes, ["c090", "c091"]);
        assert!(v.fixes.iter().all(|f| !f.baseline && f.candidate));
        assert!(v.mcnemar_p < 0.001, "{}", v.mcnemar_p);
        let pass_reason = v
            .reasons
            .iter()
            .find(|r| r.starts_with("pass rate fell"))
            .unwrap();
        // First 10 ids named, the rest summarised.
        assert!(pass_reason.contains("c000, c001"), "{pass_reason}");
        assert!(pass_reason.contains("c009"), "{pass_reason}");
        assert!(!pass_reason.contains("c010"), "{pass_reason}");
        assert!(pass_reason.contains("and 10 more"), "{pass_reason}");
        assert!(pass_reason.contains("90.0% to 72.0%"), "{pass_reason}");
    }

    #[test]
    fn noise_does_not_fail() {
        let base = {
            let mut b = all_pass(100);
            for i in 80..100 {
                set(&mut b, i, false);
            }
            b
        };
        // 3 flips each way.
        let mut cand = base.clone();
        for i in 0..3 {
            set(&mut cand, i, false);
        }
        for i in 80..83 {
            set(&mut cand, i, true);
        }
        let v = compare(&base, &cand, &GateConfig::default());
        assert!(!v.failed, "{:?}", v.reasons);
        assert_eq!(v.regressions.len(), 3);
        assert_eq!(v.fixes.len(), 3);
        assert_eq!(v.mcnemar_p, 1.0);
        assert!(v.score_delta_ci.0 < 0.0 && v.score_delta_ci.1 > 0.0);

        // A drop that is not significant: 4 regressions, 2 fixes.
        set(&mut cand, 3, false);
        set(&mut cand, 82, false);
        let v = compare(&base, &cand, &GateConfig::default());
        assert!(v.candidate_pass_rate < v.baseline_pass_rate);
        assert!(!v.failed, "{:?}", v.reasons);
        assert!(close(v.mcnemar_p, 0.6875, 1e-12));
    }

    #[test]
    fn significant_improvement_does_not_fail() {
        let mut base = all_pass(100);
        for i in 0..30 {
            set(&mut base, i, false);
        }
        let mut cand = base.clone();
        for i in 0..20 {
            set(&mut cand, i, true);
        }
        set(&mut cand, 50, false);
        set(&mut cand, 51, false);
        let v = compare(&base, &cand, &GateConfig::default());
        assert!(v.mcnemar_p < 0.001);
        assert!(v.candidate_pass_rate > v.baseline_pass_rate);
        assert!(!v.failed, "{:?}", v.reasons);
        assert_eq!(v.regressions.len(), 2);
    }

    #[test]
    fn identical_runs_do_not_fail() {
        let mut base = all_pass(50);
        for (i, c) in base.iter_mut().enumerate() {
            c.score = (i % 7) as f64 / 7.0;
            c.passed = i % 3 != 0;
        }
        let v = compare(&base, &base, &GateConfig::default());
        assert!(!v.failed, "{:?}", v.reasons);
        assert!(v.reasons.is_empty());
        assert_eq!(v.score_delta, 0.0);
        assert_eq!(v.score_delta_ci, (0.0, 0.0));
        assert_eq!(v.mcnemar_p, 1.0);
        assert!(v.regressions.is_empty() && v.fixes.is_empty());
        assert_eq!(v.baseline_pass_rate, v.candidate_pass_rate);
    }

    /// Baseline scores vary per case; the candidate is lower by `shift`,
    /// plus zero-mean jitter.
    fn shifted(shift: f64, jitter: f64) -> (Vec<CaseResult>, Vec<CaseResult>) {
        let base: Vec<CaseResult> = (0..60)
            .map(|i| case(&format!("s{i}"), true, 0.5 + (i % 5) as f64 * 0.1))
            .collect();
        let cand = base
            .iter()
            .enumerate()
            .map(|(i, b)| {
                let j = if i % 2 == 0 { jitter } else { -jitter };
                CaseResult {
                    score: b.score - shift + j,
                    ..b.clone()
                }
            })
            .collect();
        (base, cand)
    }

    #[test]
    fn uniformly_lower_scores_fail_on_the_bootstrap() {
        let (base, cand) = shifted(0.1, 0.0);
        let v = compare(&base, &cand, &GateConfig::default());
        assert!(v.failed);
        assert!(close(v.score_delta, -0.1, 1e-9));
        assert!(v.score_delta_ci.1 < 0.0, "{:?}", v.score_delta_ci);
        assert!(v.reasons.iter().any(|r| r.starts_with("mean score fell")));
        // Pass/fail did not change: only the score reason.
        assert_eq!(v.reasons.len(), 1, "{:?}", v.reasons);

        // With jitter larger than the shift the CI is wider but still below 0.
        let (base, cand) = shifted(0.1, 0.15);
        let v = compare(&base, &cand, &GateConfig::default());
        assert!(v.failed, "{:?}", v.score_delta_ci);
        assert!(v.score_delta_ci.0 < -0.1 && v.score_delta_ci.1 > -0.1);
        assert!(v.score_delta_ci.1 < 0.0);

        // Jitter alone does not fail.
        let (base, cand) = shifted(0.0, 0.15);
        let v = compare(&base, &cand, &GateConfig::default());
        assert!(!v.failed, "{:?}", v.reasons);
        assert!(v.score_delta_ci.0 < 0.0 && v.score_delta_ci.1 > 0.0);
    }

    #[test]
    fn bootstrap_is_deterministic_for_a_seed() {
        let base: Vec<CaseResult> = (0..40).map(|i| case(&format!("d{i}"), true, 0.5)).collect();
        let cand: Vec<CaseResult> = base
            .iter()
            .enumerate()
            .map(|(i, b)| CaseResult {
                score: ((i * 37) % 11) as f64 / 10.0,
                ..b.clone()
            })
            .collect();
        let cfg = GateConfig {
            seed: 42,
            ..GateConfig::default()
        };
        let a = compare(&base, &cand, &cfg);
        let b = compare(&base, &cand, &cfg);
        assert_eq!(a, b);
        let other = compare(
            &base,
            &cand,
            &GateConfig {
                seed: 43,
                ..cfg.clone()
            },
        );
        assert_ne!(a.score_delta_ci, other.score_delta_ci);
        // A narrower confidence level gives a narrower interval.
        let narrow = compare(
            &base,
            &cand,
            &GateConfig {
                alpha: 0.5,
                ..cfg.clone()
            },
        );
        assert!(narrow.score_delta_ci.0 > a.score_delta_ci.0);
        assert!(narrow.score_delta_ci.1 < a.score_delta_ci.1);
    }

    fn with_latency(run: &[CaseResult], f: impl Fn(f64) -> f64) -> Vec<CaseResult> {
        run.iter()
            .map(|c| CaseResult {
                latency_ms: f(c.latency_ms),
                ..c.clone()
            })
            .collect()
    }

    #[test]
    fn latency_threshold_trips_above_the_ratio_only() {
        let base: Vec<CaseResult> = all_pass(20)
            .into_iter()
            .enumerate()
            .map(|(i, c)| CaseResult {
                latency_ms: 100.0 + i as f64 * 10.0,
                ..c
            })
            .collect();
        let cfg = GateConfig {
            max_latency_increase: Some(0.2),
            ..GateConfig::default()
        };
        // p95 of 100..=290 step 10 (nearest rank, as the summaries
        // report it): the 19th of 20 values, 280.
        let v = compare(&base, &base, &cfg);
        assert!(close(v.latency_p95.0, 280.0, 1e-9), "{:?}", v.latency_p95);

        let at = compare(&base, &with_latency(&base, |l| l * 1.2), &cfg);
        assert!(!at.failed, "{:?}", at.reasons);
        let below = compare(&base, &with_latency(&base, |l| l * 1.19), &cfg);
        assert!(!below.failed, "{:?}", below.reasons);
        let above = compare(&base, &with_latency(&base, |l| l * 1.21), &cfg);
        assert!(above.failed);
        assert!(
            above.reasons.len() == 1 && above.reasons[0].starts_with("latency p95 rose"),
            "{:?}",
            above.reasons
        );
        // No ceiling configured: never trips.
        let off = compare(
            &base,
            &with_latency(&base, |l| l * 10.0),
            &GateConfig::default(),
        );
        assert!(!off.failed);
    }

    #[test]
    fn cost_threshold_trips_above_the_ratio_only() {
        let base = all_pass(10); // 10 × $0.01
        let cfg = GateConfig {
            max_cost_increase: Some(0.5),
            ..GateConfig::default()
        };
        let scaled = |k: f64| -> Vec<CaseResult> {
            base.iter()
                .map(|c| CaseResult {
                    cost_usd: c.cost_usd * k,
                    ..c.clone()
                })
                .collect()
        };
        assert!(close(compare(&base, &base, &cfg).cost_total.0, 0.1, 1e-12));
        assert!(!compare(&base, &scaled(1.5), &cfg).failed);
        assert!(!compare(&base, &scaled(1.4), &cfg).failed);
        let v = compare(&base, &scaled(1.6), &cfg);
        assert!(v.failed);
        assert!(
            v.reasons[0].starts_with("total cost rose"),
            "{:?}",
            v.reasons
        );
        // Cheaper is fine.
        assert!(!compare(&base, &scaled(0.5), &cfg).failed);
        // From zero to anything is an infinite increase.
        let free = scaled(0.0);
        let v = compare(&free, &base, &cfg);
        assert!(v.failed && v.reasons[0].contains("up from zero"));
        assert!(!compare(&free, &free, &cfg).failed);
    }

    #[test]
    fn unpaired_ids_are_reported_and_not_counted() {
        let mut base = all_pass(10);
        base.push(case("gone", true, 1.0));
        base.push(case("gone2", true, 1.0));
        let mut cand = all_pass(10);
        // Failing, slow, expensive unpaired cases would trip every check if
        // they were counted.
        for id in ["new", "new2"] {
            cand.push(CaseResult {
                latency_ms: 1e9,
                cost_usd: 1e9,
                ..case(id, false, 0.0)
            });
        }
        // A duplicate id: the first occurrence counts.
        cand.push(case("c000", false, 0.0));
        let cfg = GateConfig {
            max_cost_increase: Some(0.1),
            max_latency_increase: Some(0.1),
            ..GateConfig::default()
        };
        let v = compare(&base, &cand, &cfg);
        assert_eq!(v.paired, 10);
        assert_eq!(v.only_in_baseline, ["gone", "gone2"]);
        assert_eq!(v.only_in_candidate, ["new", "new2"]);
        assert_eq!(v.baseline_pass_rate, 1.0);
        assert_eq!(v.candidate_pass_rate, 1.0);
        assert!(v.regressions.is_empty() && v.fixes.is_empty());
        assert!(close(v.cost_total.0, 0.1, 1e-12) && close(v.cost_total.1, 0.1, 1e-12));
        assert_eq!(v.latency_p95, (100.0, 100.0));
        assert!(!v.failed, "{:?}", v.reasons);
    }
}
