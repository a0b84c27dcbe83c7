//! Reports drawn from a run's [`Results`](crate::results::Results), each a
//! pure function of them:
//!
//! - [`table`]: plain text for a terminal — a row per variant (pass rate
//!   with its 95 % Wilson interval, mean score, latency p50/p95, tokens,
//!   cost), the scorers, the comparisons with the cases that regressed or
//!   were fixed, consistency under `--perturb` with the cases whose answer
//!   flipped, the criteria and the verdict.
//! - [`junit`]: JUnit XML for CI systems — a test suite per variant, a test
//!   case per case (failed scorers as `<failure>`, failed calls as
//!   `<error>`), and a `gate` suite for the criteria and gating comparisons.
//! - [`html`]: one self-contained HTML file (inline CSS and JS, nothing
//!   fetched) with the variants side by side, per-case outputs, word diffs
//!   against the expected answer and the first variant, and filters.
//!
//! The JSON report is the results file itself: `Results` serialised, in the
//! stable format documented in `results.rs`.
//!
//! Everything a model wrote is untrusted text: the XML and HTML writers
//! escape every value taken from the results, and the terminal table
//! replaces control characters.

mod html;
mod junit;
mod table;

#[cfg(test)]
mod fixture;

pub use html::html;
pub use junit::junit;
pub use table::{comparisons, table};

use serde_json::Value;

use crate::results::CaseRecord;

/// An answer as text: a string as it is, `null` as nothing, other JSON
/// pretty-printed.
fn output_text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => format!("{other:#}"),
    }
}

/// A verdict's figures in one line, the same in every report: the pass
/// rates, the McNemar p-value, the score difference with its interval and
/// how many cases were paired.
fn verdict_figures(v: &crate::gate::Verdict) -> String {
    format!(
        "pass rate {} → {} · exact McNemar p {:.4} · score Δ {:+.3} (CI {:+.3} to {:+.3}) · {} paired",
        pct(v.baseline_pass_rate),
        pct(v.candidate_pass_rate),
        v.mcnemar_p,
        v.score_delta,
        v.score_delta_ci.0,
        v.score_delta_ci.1,
        v.paired,
    )
}

/// `0.825` → `82.5%`.
fn pct(x: f64) -> String {
    format!("{:.1}%", x * 100.0)
}

/// Dollars, with more digits for the sub-cent costs of small runs.
fn money(x: f64) -> String {
    if x != 0.0 && x.abs() < 0.01 {
        format!("${x:.6}")
    } else {
        format!("${x:.4}")
    }
}

/// The perturbation kinds under which a case's answer flipped.
fn flipped_kinds(case: &CaseRecord) -> Vec<&str> {
    case.perturbations
        .iter()
        .filter(|p| !p.consistent)
        .map(|p| p.kind.as_str())
        .collect()
}
