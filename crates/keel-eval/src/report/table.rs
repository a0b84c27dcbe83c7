//! The terminal summary: plain text in aligned columns, no colour codes,
//! compact enough to read at the end of a run or in a CI log.
//!
//! ```text
//! eval support · 2025-01-02T03:04:05Z · in-process · 3.2 s
//!
//! variant    cases  passed  errors  pass rate  95% CI        score  p50 ms  p95 ms  tokens in/out  cost
//! baseline       4       3       0      75.0%  30.1–95.4%    0.750     250     450  480/120        $0.006000
//! …
//! ```
//!
//! then the scorers (mean and pass rate per variant), the comparisons
//! (pass rates, McNemar p, score delta with its interval, the regressed and
//! fixed case ids; gating ones marked), consistency under `--perturb` with
//! the cases whose answer flipped, the criteria, and `PASSED`/`FAILED`.
//! Names and ids come from the eval file and the dataset: control
//! characters in them are replaced so they cannot drive the terminal.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use super::{flipped_kinds, money, pct, verdict_figures};
use crate::results::{Comparison, Results};

/// How many case ids a list names before summarising the rest.
const MAX_IDS: usize = 20;

/// The terminal summary of a run (see the module docs).
pub fn table(results: &Results) -> String {
    let mut out = String::new();
    let mut line = |s: &str| {
        out.push_str(s);
        out.push('\n');
    };

    let mut head = format!(
        "eval {} · {} · {} · {:.1} s",
        clean(&results.eval),
        clean(&results.started_at),
        clean(&results.target),
        results.duration_ms / 1000.0
    );
    if let Some(c) = &results.cassette {
        let _ = write!(head, " · cassette {}", clean(c));
    }
    line(&head);
    line("");

    let mut rows = vec![cells(&[
        "variant",
        "cases",
        "passed",
        "errors",
        "pass rate",
        "95% CI",
        "score",
        "p50 ms",
        "p95 ms",
        "tokens in/out",
        "cost",
    ])];
    for v in &results.variants {
        rows.push(vec![
            clean(&v.name),
            v.cases.to_string(),
            v.passed.to_string(),
            v.errors.to_string(),
            pct(v.pass_rate),
            format!(
                "{:.1}–{:.1}%",
                v.pass_rate_ci[0] * 100.0,
                v.pass_rate_ci[1] * 100.0
            ),
            format!("{:.3}", v.mean_score),
            format!("{:.0}", v.latency_ms.p50),
            format!("{:.0}", v.latency_ms.p95),
            format!("{}/{}", v.tokens.input, v.tokens.output),
            money(v.cost_usd),
        ]);
    }
    line(&grid(
        &rows,
        &[
            false, true, true, true, true, false, true, true, true, false, false,
        ],
    ));

    let scorers: BTreeSet<&str> = results
        .variants
        .iter()
        .flat_map(|v| v.scorers.keys().map(String::as_str))
        .collect();
    if !scorers.is_empty() {
        line("");
        let mut header = vec!["scorer (mean, pass rate)".to_owned()];
        header.extend(results.variants.iter().map(|v| clean(&v.name)));
        let mut rows = vec![header];
        for s in scorers {
            let mut row = vec![clean(s)];
            row.extend(results.variants.iter().map(|v| match v.scorers.get(s) {
                Some(sum) => format!("{:.3}  {}", sum.mean, pct(sum.pass_rate)),
                None => "—".to_owned(),
            }));
            rows.push(row);
        }
        line(&grid(&rows, &[]));
    }

    if !results.comparisons.is_empty() {
        line("");
        line(comparisons(&results.comparisons).trim_end());
    }

    let perturbed = results.variants.iter().any(|v| v.consistency.is_some())
        || results.cases.iter().any(|c| !c.perturbations.is_empty());
    if perturbed {
        line("");
        line("consistency under perturbation");
        let mut rows = Vec::new();
        for v in &results.variants {
            let flipped: Vec<String> = results
                .cases_of(&v.name)
                .filter_map(|c| {
                    let kinds = flipped_kinds(c);
                    (!kinds.is_empty()).then(|| format!("{} ({})", clean(&c.id), kinds.join(", ")))
                })
                .collect();
            rows.push(vec![
                format!("  {}", clean(&v.name)),
                v.consistency
                    .map_or_else(|| "—".to_owned(), |c| format!("{c:.3}")),
                format!("flipped ({}): {}", flipped.len(), list(flipped)),
            ]);
        }
        line(&grid(&rows, &[false, true, false]));
    }

    if !results.criteria.is_empty() {
        line("");
        line("criteria");
        for c in &results.criteria {
            let who = if c.variant.is_empty() {
                String::new()
            } else {
                format!("{}: ", clean(&c.variant))
            };
            line(&format!(
                "  {:<6}  {who}{}",
                if c.held { "held" } else { "FAILED" },
                clean(&c.check)
            ));
        }
    }

    line("");
    line(if results.passed { "PASSED" } else { "FAILED" });
    out
}

/// The gate's verdicts, each with the cases that regressed or were fixed
/// (what `keel eval compare` prints).
pub fn comparisons(comparisons: &[Comparison]) -> String {
    let mut out = String::new();
    let mut line = |s: &str| {
        out.push_str(s);
        out.push('\n');
    };
    line("comparisons");
    for c in comparisons {
        let v = &c.verdict;
        line(&format!(
            "  {} → {}{}  {}",
            clean(&c.baseline),
            clean(&c.candidate),
            if c.gating { " [gating]" } else { "" },
            if v.failed { "FAIL" } else { "ok" },
        ));
        line(&format!("    {}", verdict_figures(v)));
        let ids = |flips: &[crate::gate::Flip]| ids(flips.iter().map(|f| f.id.as_str()));
        line(&format!(
            "    regressed ({}): {}",
            v.regressions.len(),
            ids(&v.regressions)
        ));
        line(&format!("    fixed ({}): {}", v.fixes.len(), ids(&v.fixes)));
        if !v.only_in_baseline.is_empty() || !v.only_in_candidate.is_empty() {
            line(&format!(
                "    unpaired: {} only in baseline, {} only in candidate",
                v.only_in_baseline.len(),
                v.only_in_candidate.len()
            ));
        }
        for r in &v.reasons {
            line(&format!("    ✗ {}", clean(r)));
        }
    }
    out
}

fn cells(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| (*s).to_owned()).collect()
}

/// Rows padded into columns (by character, not byte); `right[i]` aligns
/// column `i` to the right. Trailing spaces are trimmed.
fn grid(rows: &[Vec<String>], right: &[bool]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|i| {
            rows.iter()
                .filter_map(|r| r.get(i))
                .map(|c| c.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    rows.iter()
        .map(|row| {
            let mut s = String::new();
            for (i, cell) in row.iter().enumerate() {
                let pad = widths[i].saturating_sub(cell.chars().count());
                if i > 0 {
                    s.push_str("  ");
                }
                if right.get(i).copied().unwrap_or(false) {
                    s.push_str(&" ".repeat(pad));
                    s.push_str(cell);
                } else {
                    s.push_str(cell);
                    s.push_str(&" ".repeat(pad));
                }
            }
            s.trim_end().to_owned()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn ids<'a>(ids: impl Iterator<Item = &'a str>) -> String {
    list(ids.map(clean).collect())
}

/// Items joined by commas, `—` when none, summarised past [`MAX_IDS`].
fn list(items: Vec<String>) -> String {
    if items.is_empty() {
        return "—".to_owned();
    }
    let n = items.len();
    let mut s = items
        .into_iter()
        .take(MAX_IDS)
        .collect::<Vec<_>>()
        .join(", ");
    if n > MAX_IDS {
        let _ = write!(s, " … and {} more", n - MAX_IDS);
    }
    s
}

/// Control characters (escape sequences, line breaks) replaced by `�`.
fn clean(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { '\u{FFFD}' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::fixture;
    use super::*;

    #[test]
    fn table_has_rates_intervals_and_flipped_cases() {
        let r = fixture::results();
        let t = table(&r);
        println!("{t}");
        // Each variant's pass rate and Wilson interval, on its own row.
        for v in &r.variants {
            let row = t
                .lines()
                .find(|l| l.starts_with(&format!("{} ", v.name)))
                .unwrap_or_else(|| panic!("no row for {}:\n{t}", v.name));
            assert!(row.contains(&pct(v.pass_rate)), "{row}");
            let ci = format!(
                "{:.1}–{:.1}%",
                v.pass_rate_ci[0] * 100.0,
                v.pass_rate_ci[1] * 100.0
            );
            assert!(row.contains(&ci), "{row}");
        }
        assert!(t.contains("75.0%") && t.contains("25.0%"), "{t}");
        // The comparison names the regressed cases; the gating one is marked.
        assert!(t.contains("regressed (2): refund, timeout"), "{t}");
        assert!(t.contains("fixed (0): —"), "{t}");
        assert!(
            t.contains("last.json:baseline → candidate [gating]  FAIL"),
            "{t}"
        );
        assert!(t.contains("baseline → candidate  ok"), "{t}");
        assert!(t.contains("✗ mean score fell by 0.5"), "{t}");
        // Perturbation: consistency and the flipped case with its kind.
        assert!(t.contains("flipped (1): greet (typos)"), "{t}");
        assert!(t.contains("0.500"), "{t}");
        // Scorers, criteria, verdict.
        assert!(t.contains("judge"), "{t}");
        assert!(t.contains("FAILED  candidate: pass rate 0.250"), "{t}");
        assert!(t.contains("held    baseline: pass rate 0.750"), "{t}");
        assert_eq!(t.lines().last(), Some("FAILED"));
    }

    #[test]
    fn table_columns_align_and_control_characters_are_replaced() {
        let mut r = fixture::results();
        r.variants[1].name = "a-much-longer-candidate\u{1b}[31m".into();
        let t = table(&r);
        assert!(!t.contains('\u{1b}'), "{t}");
        assert!(t.contains("a-much-longer-candidate\u{FFFD}[31m"), "{t}");
        // The pass rates sit in the same column whatever the name's length.
        let at = |row: &str, needle: &str| {
            let line = t.lines().find(|l| l.starts_with(row)).unwrap();
            line[..line.find(needle).unwrap()].chars().count()
        };
        assert_eq!(
            at("baseline ", "75.0%"),
            at("a-much-longer", "25.0%"),
            "{t}"
        );
        assert_eq!(
            at("variant ", "pass rate") + 4,
            at("baseline ", "75.0%"),
            "{t}"
        );
    }

    #[test]
    fn passing_run_without_extras_is_short() {
        let mut r = fixture::results();
        r.comparisons.clear();
        r.criteria.clear();
        r.cases.iter_mut().for_each(|c| c.perturbations.clear());
        r.variants.iter_mut().for_each(|v| v.consistency = None);
        r.passed = true;
        let t = table(&r);
        assert!(!t.contains("comparisons") && !t.contains("criteria"), "{t}");
        assert!(!t.contains("consistency"), "{t}");
        assert_eq!(t.lines().last(), Some("PASSED"));
    }
}
