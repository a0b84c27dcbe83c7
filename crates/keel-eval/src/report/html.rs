//! The HTML report: one self-contained file — inline CSS and one inline
//! script, no font, image, stylesheet or script fetched — to open from
//! disk or keep as a CI artefact.
//!
//! From top to bottom: the eval's name, time, target and verdict; the
//! variants' summary (pass rate with its 95 % interval drawn as a bar, mean
//! score, latency, tokens, cost) and scorers; the comparisons with the
//! cases that regressed or were fixed; consistency under `--perturb` and
//! the cases whose answer flipped; the criteria; then a row per case with
//! the variants side by side — each with a pass/fail badge, score, output,
//! error, per-scorer scores, details and judge reasoning, perturbations,
//! and a word diff of the output against the expected answer and against
//! the first variant's output — next to the case's input and expected
//! answer.
//!
//! Filters (failures only, regressions only, flipped under perturbation, a
//! tag, free text) hide rows client-side and update `#shown-count`; a case
//! *regressed* when it passed in the first variant but failed in another,
//! or when a comparison lists it as a regression. The page works without
//! its script too (everything shown). Once the script has run it sets
//! `<body data-ready="1">`, which `scripts/check-report` looks for.
//!
//! Every value from the results is HTML-escaped: outputs are untrusted
//! model text. As a second line of defence the page carries a
//! Content-Security-Policy that allows no fetch at all and only its own
//! script, by hash, so even markup that slipped through could neither run
//! nor load anything.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::time::Duration;

use base64::Engine as _;
use serde_json::Value;
use sha2::{Digest, Sha256};
use similar::{ChangeTag, TextDiff};

use super::{flipped_kinds, money, output_text, pct, verdict_figures};
use crate::gate::Flip;
use crate::results::{CaseRecord, Comparison, Results, VariantSummary};

/// A word diff gives up refining after this long (the result is then
/// coarser, never wrong).
const DIFF_TIMEOUT: Duration = Duration::from_millis(200);

/// The self-contained HTML report of a run (see the module docs).
pub fn html(results: &Results) -> String {
    let view = View::new(results);
    let verdict = if results.passed { "PASSED" } else { "FAILED" };
    let script_hash =
        base64::engine::general_purpose::STANDARD.encode(Sha256::digest(SCRIPT.as_bytes()));

    let mut h = String::with_capacity(64 * 1024);
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; \
         style-src 'unsafe-inline'; script-src 'sha256-{script_hash}'\">\n\
         <title>{} · keel eval · {verdict}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n",
        esc(&results.eval)
    );

    // Header.
    let _ = write!(
        h,
        "<header><div><h1>{}</h1><p class=\"dim\">{} · {:.1} s · target {}",
        esc(&results.eval),
        esc(&results.started_at),
        results.duration_ms / 1000.0,
        esc(&results.target),
    );
    if let Some(c) = &results.cassette {
        let _ = write!(h, " · cassette {}", esc(c));
    }
    let _ = write!(
        h,
        " · keel {} · {}</p></div><span class=\"verdict {}\">{verdict}</span></header>\n<main>\n",
        esc(&results.keel_version),
        esc(&results.format),
        if results.passed { "pass" } else { "fail" },
    );

    summary(&mut h, results);
    comparisons(&mut h, results, &view);
    robustness(&mut h, results, &view);
    criteria(&mut h, results);
    cases(&mut h, results, &view);

    let _ = write!(h, "</main>\n<script>{SCRIPT}</script>\n</body>\n</html>\n");
    h
}

/// The cases grouped by id (in dataset order) with a column per variant,
/// and what the filters need.
struct View<'a> {
    variants: Vec<&'a str>,
    rows: Vec<Row<'a>>,
    /// Case id → row index, for links.
    index: HashMap<&'a str, usize>,
    /// `(variant, case id)` pairs that regressed.
    regressed: HashSet<(&'a str, &'a str)>,
}

struct Row<'a> {
    id: &'a str,
    /// One per variant of `View::variants`.
    records: Vec<Option<&'a CaseRecord>>,
}

impl<'a> View<'a> {
    fn new(results: &'a Results) -> Self {
        let mut variants: Vec<&str> = results.variants.iter().map(|v| v.name.as_str()).collect();
        for c in &results.cases {
            if !variants.contains(&c.variant.as_str()) {
                variants.push(&c.variant);
            }
        }
        let mut rows: Vec<Row> = Vec::new();
        let mut index: HashMap<&str, usize> = HashMap::new();
        for c in &results.cases {
            let i = *index.entry(c.id.as_str()).or_insert_with(|| {
                rows.push(Row {
                    id: &c.id,
                    records: vec![None; variants.len()],
                });
                rows.len() - 1
            });
            if let Some(v) = variants.iter().position(|v| *v == c.variant) {
                rows[i].records[v].get_or_insert(c);
            }
        }
        let mut regressed: HashSet<(&str, &str)> = results
            .comparisons
            .iter()
            .flat_map(|c| {
                c.verdict
                    .regressions
                    .iter()
                    .map(|f| (c.candidate.as_str(), f.id.as_str()))
            })
            .collect();
        for row in &rows {
            if let Some(Some(first)) = row.records.first()
                && first.passed
            {
                for (v, r) in variants.iter().zip(&row.records).skip(1) {
                    if r.is_some_and(|r| !r.passed) {
                        regressed.insert((v, row.id));
                    }
                }
            }
        }
        View {
            variants,
            rows,
            index,
            regressed,
        }
    }

    fn row_regressed(&self, row: &Row) -> bool {
        self.variants
            .iter()
            .any(|v| self.regressed.contains(&(*v, row.id)))
    }

    /// A link to a case's row, or its id as text when it has none (a case
    /// only in a baseline file).
    fn link(&self, id: &str) -> String {
        match self.index.get(id) {
            Some(i) => format!("<a href=\"#case-{i}\">{}</a>", esc(id)),
            None => esc(id),
        }
    }

    fn links<'b>(&self, ids: impl Iterator<Item = &'b str>) -> String {
        let s: Vec<String> = ids.map(|id| self.link(id)).collect();
        if s.is_empty() {
            "—".to_owned()
        } else {
            s.join(", ")
        }
    }
}

fn row_failed(row: &Row) -> bool {
    row.records.iter().flatten().any(|r| !r.passed)
}

fn row_flipped(row: &Row) -> bool {
    row.records
        .iter()
        .flatten()
        .any(|r| !flipped_kinds(r).is_empty())
}

fn summary(h: &mut String, results: &Results) {
    h.push_str(
        "<section id=\"summary\"><h2>Variants</h2>\n<table class=\"grid\"><thead><tr>\
         <th>variant</th><th class=\"n\">cases</th><th class=\"n\">passed</th>\
         <th class=\"n\">errors</th><th>pass rate (95% CI)</th><th class=\"n\">score</th>\
         <th class=\"n\">p50</th><th class=\"n\">p95</th><th class=\"n\">tokens in / out</th>\
         <th class=\"n\">cost</th><th class=\"n\">consistency</th></tr></thead><tbody>\n",
    );
    for v in &results.variants {
        let [lo, hi] = v.pass_rate_ci;
        let _ = writeln!(
            h,
            "<tr><td><b>{}</b><div class=\"dim\">{}</div></td><td class=\"n\">{}</td>\
             <td class=\"n\">{}</td><td class=\"n\">{}</td><td>{}</td><td class=\"n\">{:.3}</td>\
             <td class=\"n\">{:.0} ms</td><td class=\"n\">{:.0} ms</td><td class=\"n\">{} / {}</td>\
             <td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
            esc(&v.name),
            esc(&v.call),
            v.cases,
            v.passed,
            v.errors,
            rate_bar(v.pass_rate, lo, hi),
            v.mean_score,
            v.latency_ms.p50,
            v.latency_ms.p95,
            v.tokens.input,
            v.tokens.output,
            money(v.cost_usd),
            v.consistency
                .map_or_else(|| "—".to_owned(), |c| format!("{c:.3}")),
        );
    }
    h.push_str("</tbody></table>\n");

    let mut scorers: BTreeMap<&str, Vec<Option<(f64, f64)>>> = BTreeMap::new();
    for (i, v) in results.variants.iter().enumerate() {
        for (name, s) in &v.scorers {
            scorers
                .entry(name)
                .or_insert_with(|| vec![None; results.variants.len()])[i] =
                Some((s.mean, s.pass_rate));
        }
    }
    if !scorers.is_empty() {
        h.push_str("<h3>Scorers</h3>\n<table class=\"grid\"><thead><tr><th>scorer</th>");
        for v in &results.variants {
            let _ = write!(h, "<th>{}</th>", esc(&v.name));
        }
        h.push_str("</tr></thead><tbody>\n");
        for (name, cells) in scorers {
            let _ = write!(h, "<tr><td><b>{}</b></td>", esc(name));
            for cell in cells {
                match cell {
                    Some((mean, rate)) => {
                        let _ = write!(
                            h,
                            "<td>mean {mean:.3} · {} pass {}</td>",
                            pct(rate),
                            bar(rate)
                        );
                    }
                    None => h.push_str("<td class=\"dim\">—</td>"),
                }
            }
            h.push_str("</tr>\n");
        }
        h.push_str("</tbody></table>\n");
    }
    h.push_str("</section>\n");
}

/// A pass rate with its interval, drawn as a shaded range and a tick.
fn rate_bar(rate: f64, lo: f64, hi: f64) -> String {
    format!(
        "<div class=\"rate\"><b>{}</b> <span class=\"dim\">{:.1}–{:.1}%</span></div>\
         <div class=\"cibar\"><span class=\"range\" style=\"left:{:.1}%;width:{:.1}%\"></span>\
         <span class=\"tick\" style=\"left:{:.1}%\"></span></div>",
        pct(rate),
        lo * 100.0,
        hi * 100.0,
        lo * 100.0,
        (hi - lo) * 100.0,
        rate * 100.0,
    )
}

fn bar(rate: f64) -> String {
    format!(
        "<span class=\"minibar\"><span style=\"width:{:.1}%\"></span></span>",
        rate.clamp(0.0, 1.0) * 100.0
    )
}

fn comparisons(h: &mut String, results: &Results, view: &View) {
    if results.comparisons.is_empty() {
        return;
    }
    h.push_str("<section id=\"comparisons\"><h2>Comparisons</h2>\n");
    for c in &results.comparisons {
        comparison(h, c, view);
    }
    h.push_str("</section>\n");
}

fn comparison(h: &mut String, c: &Comparison, view: &View) {
    let v = &c.verdict;
    let ids = |f: &[Flip]| view.links(f.iter().map(|f| f.id.as_str()));
    let _ = write!(
        h,
        "<div class=\"card {}\"><div class=\"card-h\"><b>{}</b> → <b>{}</b> {}\
         <span class=\"badge {}\">{}</span></div>\n\
         <p>{} · latency p95 {:.0} → {:.0} ms · cost {} → {}</p>\n",
        if v.failed { "fail" } else { "ok" },
        esc(&c.baseline),
        esc(&c.candidate),
        if c.gating {
            "<span class=\"badge gating\">gating</span> "
        } else {
            ""
        },
        if v.failed { "fail" } else { "pass" },
        if v.failed { "FAIL" } else { "ok" },
        verdict_figures(v),
        v.latency_p95.0,
        v.latency_p95.1,
        money(v.cost_total.0),
        money(v.cost_total.1),
    );
    if !v.reasons.is_empty() {
        h.push_str("<ul class=\"reasons\">");
        for r in &v.reasons {
            let _ = write!(h, "<li>{}</li>", esc(r));
        }
        h.push_str("</ul>\n");
    }
    let _ = write!(
        h,
        "<p><span class=\"badge fail\">regressed {}</span> {}</p>\n\
         <p><span class=\"badge pass\">fixed {}</span> {}</p>\n",
        v.regressions.len(),
        ids(&v.regressions),
        v.fixes.len(),
        ids(&v.fixes),
    );
    if !v.only_in_baseline.is_empty() || !v.only_in_candidate.is_empty() {
        let _ = writeln!(
            h,
            "<p class=\"dim\">only in baseline ({}): {} · only in candidate ({}): {}</p>",
            v.only_in_baseline.len(),
            view.links(v.only_in_baseline.iter().map(String::as_str)),
            v.only_in_candidate.len(),
            view.links(v.only_in_candidate.iter().map(String::as_str)),
        );
    }
    h.push_str("</div>\n");
}

fn robustness(h: &mut String, results: &Results, view: &View) {
    let perturbed: Vec<&VariantSummary> = results
        .variants
        .iter()
        .filter(|v| {
            v.consistency.is_some()
                || results
                    .cases_of(&v.name)
                    .any(|c| !c.perturbations.is_empty())
        })
        .collect();
    if perturbed.is_empty() {
        return;
    }
    h.push_str(
        "<section id=\"robustness\"><h2>Consistency under perturbation</h2>\n\
         <table class=\"grid\"><thead><tr><th>variant</th><th class=\"n\">consistency</th>\
         <th>answers that flipped</th></tr></thead><tbody>\n",
    );
    for v in perturbed {
        let flipped: Vec<String> = results
            .cases_of(&v.name)
            .filter_map(|c| {
                let kinds = flipped_kinds(c);
                (!kinds.is_empty()).then(|| {
                    format!(
                        "{} <span class=\"dim\">({})</span>",
                        view.link(&c.id),
                        esc(&kinds.join(", "))
                    )
                })
            })
            .collect();
        let _ = writeln!(
            h,
            "<tr><td><b>{}</b></td><td class=\"n\">{}</td><td>{}</td></tr>",
            esc(&v.name),
            v.consistency
                .map_or_else(|| "—".to_owned(), |c| format!("{c:.3}")),
            if flipped.is_empty() {
                "none".to_owned()
            } else {
                flipped.join(", ")
            },
        );
    }
    h.push_str("</tbody></table></section>\n");
}

fn criteria(h: &mut String, results: &Results) {
    if results.criteria.is_empty() {
        return;
    }
    h.push_str("<section id=\"criteria\"><h2>Criteria</h2><ul class=\"criteria\">\n");
    for c in &results.criteria {
        let _ = writeln!(
            h,
            "<li><span class=\"badge {}\">{}</span> {}{}</li>",
            if c.held { "pass" } else { "fail" },
            if c.held { "held" } else { "FAILED" },
            if c.variant.is_empty() {
                String::new()
            } else {
                format!("<b>{}</b>: ", esc(&c.variant))
            },
            esc(&c.check),
        );
    }
    h.push_str("</ul></section>\n");
}

fn cases(h: &mut String, results: &Results, view: &View) {
    let total = view.rows.len();
    let failed = view.rows.iter().filter(|r| row_failed(r)).count();
    let regressed = view.rows.iter().filter(|r| view.row_regressed(r)).count();
    let flipped = view.rows.iter().filter(|r| row_flipped(r)).count();
    let mut tags: BTreeMap<&str, usize> = BTreeMap::new();
    for row in &view.rows {
        let mut seen = HashSet::new();
        for t in row.records.iter().flatten().flat_map(|r| &r.tags) {
            if seen.insert(t.as_str()) {
                *tags.entry(t).or_default() += 1;
            }
        }
    }

    let _ = write!(
        h,
        "<section id=\"cases\"><h2>Cases</h2>\n<div class=\"filters\">\
         <label><input type=\"checkbox\" id=\"f-failed\"> failures only <span class=\"dim\">({failed})</span></label>\
         <label><input type=\"checkbox\" id=\"f-regressed\"> regressions only <span class=\"dim\">({regressed})</span></label>\
         <label><input type=\"checkbox\" id=\"f-flipped\"> flipped under perturbation <span class=\"dim\">({flipped})</span></label>\
         <select id=\"f-tag\"><option value=\"\">all tags</option>"
    );
    for (t, n) in &tags {
        let _ = write!(h, "<option value=\"{}\">{} ({n})</option>", esc(t), esc(t));
    }
    let _ = write!(
        h,
        "</select><input type=\"search\" id=\"f-text\" placeholder=\"search ids, inputs, outputs…\">\
         <span id=\"shown-count\">{total} of {total} cases shown</span></div>\n\
         <table class=\"cases\"><colgroup><col class=\"meta\">"
    );
    for _ in &view.variants {
        h.push_str("<col>");
    }
    h.push_str("</colgroup><thead><tr><th>case</th>");
    for v in &view.variants {
        let summary = results.variants.iter().find(|s| s.name == *v);
        let _ = write!(
            h,
            "<th>{}{}</th>",
            esc(v),
            summary.map_or_else(String::new, |s| format!(
                " <span class=\"dim\">{} · {}</span>",
                pct(s.pass_rate),
                esc(&s.call)
            )),
        );
    }
    h.push_str("</tr></thead>\n<tbody>\n");
    for (i, row) in view.rows.iter().enumerate() {
        case_row(h, i, row, view);
    }
    let _ = write!(
        h,
        "<tr id=\"no-match\" hidden><td colspan=\"{}\" class=\"dim\">No case matches the filters.</td></tr>\n\
         </tbody></table></section>\n",
        view.variants.len() + 1
    );
}

fn case_row(h: &mut String, i: usize, row: &Row, view: &View) {
    let (failed, regressed, flipped) = (row_failed(row), view.row_regressed(row), row_flipped(row));
    let mut tags: Vec<&str> = Vec::new();
    for t in row.records.iter().flatten().flat_map(|r| &r.tags) {
        if !tags.contains(&t.as_str()) {
            tags.push(t);
        }
    }
    let _ = write!(
        h,
        "<tr class=\"case{}\" id=\"case-{i}\" data-failed=\"{}\" data-regressed=\"{}\" \
         data-flipped=\"{}\" data-tags=\"{}\">",
        if failed { " failed" } else { "" },
        u8::from(failed),
        u8::from(regressed),
        u8::from(flipped),
        esc(&tags.join("\n")),
    );

    // The case: id, tags, input, expected (from its first record).
    let first = row.records.iter().flatten().next();
    let _ = write!(
        h,
        "<td class=\"meta\"><a class=\"id\" href=\"#case-{i}\">{}</a>",
        esc(row.id)
    );
    for t in &tags {
        let _ = write!(h, " <span class=\"tag\">{}</span>", esc(t));
    }
    if let Some(first) = first {
        h.push_str("<div class=\"lbl\">input</div><dl>");
        for (k, v) in &first.input {
            let _ = write!(
                h,
                "<dt>{}</dt><dd><pre>{}</pre></dd>",
                esc(k),
                esc(&output_text(v))
            );
        }
        h.push_str("</dl>");
        if let Some(e) = &first.expected {
            let _ = write!(
                h,
                "<div class=\"lbl\">expected</div><pre class=\"expected\">{}</pre>",
                esc(&output_text(e))
            );
        }
    }
    h.push_str("</td>");

    let base = row.records.first().copied().flatten();
    for (j, (v, rec)) in view.variants.iter().zip(&row.records).enumerate() {
        match rec {
            None => h.push_str("<td class=\"v missing dim\">not run</td>"),
            Some(r) => {
                let against = if j == 0 {
                    None
                } else {
                    base.map(|b| (view.variants[0], b))
                };
                variant_cell(h, r, view.regressed.contains(&(*v, row.id)), against);
            }
        }
    }
    h.push_str("</tr>\n");
}

/// One variant's answer to one case. `against`: the first variant's name
/// and answer, to diff with.
fn variant_cell(
    h: &mut String,
    r: &CaseRecord,
    regressed: bool,
    against: Option<(&str, &CaseRecord)>,
) {
    let (class, label) = match (&r.error, r.passed) {
        (Some(_), _) => ("fail", "error"),
        (None, true) => ("pass", "pass"),
        (None, false) => ("fail", "fail"),
    };
    let _ = write!(
        h,
        "<td class=\"v\"><div class=\"vh\"><span class=\"badge {class}\">{label}</span>{}\
         <b class=\"score\">{:.3}</b><span class=\"dim\">{:.0} ms · {}+{} tok · {}</span></div>",
        if regressed {
            "<span class=\"badge reg\">regressed</span>"
        } else {
            ""
        },
        r.score,
        r.latency_ms,
        r.tokens.input,
        r.tokens.output,
        money(r.cost_usd),
    );
    if let Some(e) = &r.error {
        let _ = write!(h, "<div class=\"err\">{}</div>", esc(e));
    }
    let out = output_text(&r.output);
    if r.error.is_none() || !r.output.is_null() {
        let _ = write!(h, "<pre class=\"out\">{}</pre>", esc(&out));
    }
    if !r.output.is_null() {
        if let Some(e) = &r.expected {
            diff_block(h, "expected", &output_text(e), &out, !r.passed);
        }
        if let Some((name, b)) = against
            && !b.output.is_null()
        {
            diff_block(h, name, &output_text(&b.output), &out, b.passed != r.passed);
        }
    }
    if !r.scores.is_empty() {
        h.push_str("<ul class=\"scores\">");
        for s in &r.scores {
            let _ = write!(
                h,
                "<li><span class=\"dot {}\"></span><b>{}</b> {:.3} <span class=\"dim\">× {} · {}</span>",
                if s.passed { "pass" } else { "fail" },
                esc(&s.scorer),
                s.score,
                s.weight,
                esc(&s.detail),
            );
            if let Some(reason) = &s.reasoning {
                let _ = write!(
                    h,
                    "<details class=\"reasoning\"{}><summary>judge reasoning</summary><p>{}</p></details>",
                    if s.passed { "" } else { " open" },
                    esc(reason)
                );
            }
            h.push_str("</li>");
        }
        h.push_str("</ul>");
    }
    if !r.perturbations.is_empty() {
        let flips = flipped_kinds(r).len();
        let _ = write!(
            h,
            "<details class=\"perturb{}\"><summary>perturbed ×{}: {}{}</summary><ul>",
            if flips > 0 { " flipped" } else { "" },
            r.perturbations.len(),
            if flips > 0 {
                format!("<b>{flips} flipped</b>")
            } else {
                "consistent".to_owned()
            },
            r.consistency
                .map(|c| format!(" · consistency {c:.2}"))
                .unwrap_or_default(),
        );
        for p in &r.perturbations {
            let _ = write!(
                h,
                "<li><span class=\"badge {}\">{}</span> <b>{}</b><div class=\"lbl\">input</div><pre>{}</pre>\
                 <div class=\"lbl\">answer</div><pre>{}</pre>{}</li>",
                if p.consistent { "pass" } else { "fail" },
                if p.consistent { "same" } else { "flipped" },
                esc(&p.kind),
                esc(&input_text(&p.input)),
                esc(&output_text(&p.output)),
                p.error
                    .as_ref()
                    .map(|e| format!("<div class=\"err\">{}</div>", esc(e)))
                    .unwrap_or_default(),
            );
        }
        h.push_str("</ul></details>");
    }
    h.push_str("</td>");
}

fn input_text(input: &serde_json::Map<String, Value>) -> String {
    input
        .iter()
        .map(|(k, v)| format!("{k}: {}", output_text(v)))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A word diff of `new` against `old` (named `name`), or a note that they
/// are the same; open when it matters.
fn diff_block(h: &mut String, name: &str, old: &str, new: &str, open: bool) {
    if old == new {
        let _ = write!(h, "<div class=\"same\">= {}</div>", esc(name));
        return;
    }
    let _ = write!(
        h,
        "<details class=\"diff\"{}><summary>diff vs {}</summary><pre>{}</pre></details>",
        if open { " open" } else { "" },
        esc(name),
        word_diff(old, new),
    );
}

/// A word-level diff as escaped HTML: words only in `old` in `<del>`,
/// words only in `new` in `<ins>`. Within a stretch of changes, the spaces
/// between changed words count as changed too, so a rewritten sentence
/// reads as one deletion and one insertion rather than alternating
/// fragments.
fn word_diff(old: &str, new: &str) -> String {
    let diff = TextDiff::configure()
        .timeout(DIFF_TIMEOUT)
        .diff_words(old, new);
    // Consecutive changes of one kind merged.
    let mut runs: Vec<(ChangeTag, String)> = Vec::new();
    for change in diff.iter_all_changes() {
        match runs.last_mut() {
            Some((tag, text)) if *tag == change.tag() => text.push_str(change.value()),
            _ => runs.push((change.tag(), change.value().to_owned())),
        }
    }
    let mut out = String::new();
    let (mut del, mut ins) = (String::new(), String::new());
    for (i, (tag, text)) in runs.iter().enumerate() {
        match tag {
            ChangeTag::Delete => del.push_str(text),
            ChangeTag::Insert => ins.push_str(text),
            ChangeTag::Equal => {
                let inside = !(del.is_empty() && ins.is_empty())
                    && text.trim().is_empty()
                    && runs.get(i + 1).is_some_and(|(t, _)| *t != ChangeTag::Equal);
                if inside {
                    del.push_str(text);
                    ins.push_str(text);
                } else {
                    flush(&mut out, &mut del, &mut ins);
                    out.push_str(&esc(text));
                }
            }
        }
    }
    flush(&mut out, &mut del, &mut ins);
    out
}

/// Writes and clears a pending deletion and insertion.
fn flush(out: &mut String, del: &mut String, ins: &mut String) {
    if !del.is_empty() {
        let _ = write!(out, "<del>{}</del>", esc(del));
        del.clear();
    }
    if !ins.is_empty() {
        let _ = write!(out, "<ins>{}</ins>", esc(ins));
        ins.clear();
    }
}

/// HTML-escapes text for element content and double- or single-quoted
/// attributes; control characters other than tab and line breaks become
/// `�`.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + s.len() / 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '\n' | '\t' | '\r' => out.push(c),
            c if c.is_control() => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = r#"
:root { --fg: #1f2328; --dim: #656d76; --line: #d0d7de; --bg2: #f6f8fa;
  --pass: #1a7f37; --pass-bg: #dafbe1; --fail: #cf222e; --fail-bg: #ffebe9;
  --reg: #9a6700; --reg-bg: #fff8c5; --accent: #0969da; }
* { box-sizing: border-box; }
body { margin: 0; color: var(--fg); background: #fff;
  font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
header { display: flex; justify-content: space-between; align-items: center; gap: 1em;
  padding: 14px 24px; border-bottom: 1px solid var(--line); background: var(--bg2); }
h1 { margin: 0; font-size: 22px; }
h2 { font-size: 17px; margin: 26px 0 10px; padding-bottom: 4px; border-bottom: 1px solid var(--line); }
h3 { font-size: 14px; margin: 16px 0 8px; }
header p { margin: 2px 0 0; }
main { padding: 0 24px 40px; }
a { color: var(--accent); text-decoration: none; }
a:hover { text-decoration: underline; }
.dim { color: var(--dim); font-weight: normal; font-size: 12px; }
.verdict { font-weight: 700; font-size: 18px; padding: 6px 16px; border-radius: 6px; color: #fff; }
.verdict.pass { background: var(--pass); } .verdict.fail { background: var(--fail); }
table.grid { border-collapse: collapse; }
table.grid th, table.grid td { padding: 5px 10px; border-bottom: 1px solid var(--line); text-align: left; vertical-align: top; }
table.grid th { background: var(--bg2); font-size: 12px; }
.n { text-align: right !important; font-variant-numeric: tabular-nums; white-space: nowrap; }
.cibar { position: relative; height: 6px; width: 140px; background: #eaeef2; border-radius: 3px; margin-top: 3px; }
.cibar .range { position: absolute; top: 0; bottom: 0; background: #8cc2ff; border-radius: 3px; }
.cibar .tick { position: absolute; top: -2px; width: 2px; height: 10px; margin-left: -1px; background: var(--accent); }
.minibar { display: inline-block; width: 60px; height: 6px; background: #eaeef2; border-radius: 3px; vertical-align: middle; }
.minibar span { display: block; height: 100%; background: var(--pass); border-radius: 3px; }
.badge { display: inline-block; font-size: 11px; font-weight: 600; padding: 1px 7px; border-radius: 10px;
  border: 1px solid transparent; margin-right: 4px; white-space: nowrap; }
.badge.pass { color: var(--pass); background: var(--pass-bg); border-color: #aceebb; }
.badge.fail { color: var(--fail); background: var(--fail-bg); border-color: #ffcecb; }
.badge.reg { color: var(--reg); background: var(--reg-bg); border-color: #eac54f; }
.badge.gating { color: var(--accent); background: #ddf4ff; border-color: #b6e3ff; }
.card { border: 1px solid var(--line); border-left: 4px solid var(--pass); border-radius: 6px; padding: 8px 14px; margin: 8px 0; }
.card.fail { border-left-color: var(--fail); }
.card p { margin: 4px 0; }
.card-h { font-size: 15px; }
.reasons { margin: 4px 0; color: var(--fail); }
.criteria { list-style: none; padding: 0; } .criteria li { margin: 3px 0; }
.filters { position: sticky; top: 0; z-index: 2; display: flex; flex-wrap: wrap; gap: 8px 18px; align-items: center;
  padding: 8px 10px; background: var(--bg2); border: 1px solid var(--line); border-radius: 6px; margin-bottom: 10px; }
.filters input[type=search] { width: 260px; padding: 3px 6px; }
#shown-count { margin-left: auto; font-weight: 600; }
table.cases { width: 100%; border-collapse: collapse; table-layout: fixed; }
table.cases col.meta { width: 24%; }
table.cases th { position: sticky; top: 46px; z-index: 1; background: #fff; text-align: left;
  padding: 6px 8px; border-bottom: 2px solid var(--line); }
table.cases td { vertical-align: top; padding: 8px; border-bottom: 1px solid var(--line); }
table.cases td + td { border-left: 1px solid #eaeef2; }
tr.case.failed td.meta { box-shadow: inset 3px 0 0 var(--fail); }
td.meta .id { font-weight: 700; font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; margin-right: 4px; }
.tag { display: inline-block; font-size: 11px; background: #eaeef2; border-radius: 4px; padding: 0 5px; margin: 0 2px; }
.lbl { font-size: 11px; text-transform: uppercase; letter-spacing: .04em; color: var(--dim); margin-top: 6px; }
dl { margin: 2px 0; } dt { font-size: 12px; color: var(--dim); } dd { margin: 0 0 4px; }
pre { margin: 2px 0; padding: 5px 7px; background: var(--bg2); border-radius: 4px; white-space: pre-wrap;
  overflow-wrap: anywhere; max-height: 18em; overflow: auto;
  font: 12px/1.4 ui-monospace, SFMono-Regular, Menlo, Consolas, "Liberation Mono", monospace; }
pre.out { background: #fff; border: 1px solid var(--line); }
.vh { display: flex; align-items: center; gap: 6px; flex-wrap: wrap; margin-bottom: 4px; }
.vh .score { font-variant-numeric: tabular-nums; }
.err { color: var(--fail); background: var(--fail-bg); border-radius: 4px; padding: 4px 7px; margin: 4px 0;
  font: 12px/1.4 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; overflow-wrap: anywhere; }
.same { font-size: 12px; color: var(--pass); margin: 3px 0; }
details { margin: 4px 0; } summary { cursor: pointer; font-size: 12px; color: var(--dim); }
details.perturb.flipped > summary { color: var(--reg); }
details.perturb ul { list-style: none; padding-left: 8px; margin: 4px 0; }
ins { background: #ccffd8; text-decoration: none; } del { background: #ffd7d5; color: #82071e; }
ul.scores { list-style: none; padding: 0; margin: 6px 0 0; font-size: 13px; }
ul.scores li { margin: 2px 0; overflow-wrap: anywhere; }
.dot { display: inline-block; width: 8px; height: 8px; border-radius: 50%; margin-right: 5px; }
.dot.pass { background: var(--pass); } .dot.fail { background: var(--fail); }
.reasoning p { margin: 2px 0 4px 13px; font-size: 12px; white-space: pre-wrap; }
td.missing { font-style: italic; }
"#;

/// The filters. It must never contain a closing tag: it is the page's only
/// script, allowed by its hash in the page's Content-Security-Policy.
const SCRIPT: &str = r#"
(function () {
  "use strict";
  var rows = Array.prototype.slice.call(document.querySelectorAll("tr.case"));
  var byId = function (id) { return document.getElementById(id); };
  var failed = byId("f-failed"), regressed = byId("f-regressed"), flipped = byId("f-flipped");
  var tag = byId("f-tag"), text = byId("f-text"), count = byId("shown-count"), none = byId("no-match");
  var haystack = rows.map(function (row) { return row.textContent.toLowerCase(); });
  function apply() {
    var needle = text.value.trim().toLowerCase(), want = tag.value, shown = 0;
    rows.forEach(function (row, i) {
      var d = row.dataset;
      var ok = (!failed.checked || d.failed === "1")
        && (!regressed.checked || d.regressed === "1")
        && (!flipped.checked || d.flipped === "1")
        && (want === "" || d.tags.split("\n").indexOf(want) >= 0)
        && (needle === "" || haystack[i].indexOf(needle) >= 0);
      row.hidden = !ok;
      if (ok) { shown += 1; }
    });
    count.textContent = shown + " of " + rows.length + " cases shown";
    none.hidden = shown !== 0;
  }
  [failed, regressed, flipped, tag].forEach(function (el) { el.addEventListener("change", apply); });
  text.addEventListener("input", apply);
  apply();
  document.body.dataset.ready = "1";
})();
"#;

#[cfg(test)]
mod tests {
    use super::super::fixture::{self, XSS};
    use super::*;

    #[test]
    fn hostile_output_appears_only_escaped() {
        let mut r = fixture::results();
        r.cases[0].id = "</script><script>alert(3)</script>".into();
        r.variants[0].call = "\"><img src=x onerror=alert(4)>".into();
        let page = html(&r);
        // The only script element is the report's own.
        assert_eq!(page.matches("<script").count(), 1, "{page}");
        assert_eq!(page.matches("</script>").count(), 1);
        assert!(!page.contains("<script>alert("));
        assert!(!page.contains("<img"));
        assert!(!page.contains("\u{1}"));
        // The output is there, as text.
        assert!(
            page.contains("&lt;script&gt;alert(1)&lt;/script&gt; then &lt;/script&gt; &amp; &quot;quoted&quot; ]]&gt; \u{FFFD}bell"),
            "{page}"
        );
        assert!(page.contains("It echoed &lt;img src=x onerror=alert(2)&gt; verbatim."));
        assert!(page.contains("&lt;/script&gt;&lt;script&gt;alert(3)&lt;/script&gt;"));
        assert!(page.contains("&quot;&gt;&lt;img src=x onerror=alert(4)&gt;"));
        assert!(page.contains("<option value=\"&lt;b&gt;&amp;tag\">"));
        // The raw strings never appear.
        assert!(!page.contains(XSS));
        assert!(!page.contains("</script> &"));
    }

    #[test]
    fn page_is_self_contained() {
        let page = html(&fixture::results());
        assert!(
            !page.contains("http://") && !page.contains("https://"),
            "{page}"
        );
        // Escaped text never holds a raw `"`, so these can only be markup.
        for fetch in [
            " src=\"",
            " href=\"http",
            "<link",
            "@import",
            "url(",
            "<iframe",
            "fetch(",
            "XMLHttpRequest",
        ] {
            assert!(!page.contains(fetch), "{fetch}");
        }
        assert!(page.contains("default-src 'none'"));
        // The policy allows exactly the script that is on the page.
        let hash =
            base64::engine::general_purpose::STANDARD.encode(Sha256::digest(SCRIPT.as_bytes()));
        assert!(page.contains(&format!("script-src 'sha256-{hash}'")));
        assert!(page.contains(&format!("<script>{SCRIPT}</script>")));
        assert!(!SCRIPT.contains("</"));
    }

    #[test]
    fn word_diff_marks_inserted_and_deleted_words() {
        assert_eq!(
            word_diff("Hello there, my dear friend", "Hello there, my good friend"),
            "Hello there, my <del>dear</del><ins>good</ins> friend"
        );
        assert_eq!(
            word_diff("a <b>", "a <i>"),
            "a <del>&lt;b&gt;</del><ins>&lt;i&gt;</ins>"
        );
        // A rewritten stretch is one deletion and one insertion; the space
        // between unchanged words stays unmarked.
        assert_eq!(
            word_diff("x <b>safe</b> & sound y", "x I will not repeat y"),
            "x <del>&lt;b&gt;safe&lt;/b&gt; &amp; sound</del><ins>I will not repeat</ins> y"
        );
        assert_eq!(word_diff("same words", "same words"), "same words");
        assert_eq!(word_diff("", "new"), "<ins>new</ins>");
        let page = html(&fixture::results());
        // The candidate's greeting against the expected answer and against
        // the baseline's, and the refund intent.
        assert!(page.contains("<del>dear</del><ins>good</ins>"), "{page}");
        assert!(
            page.contains("<del>&quot;refund&quot;</del><ins>&quot;complaint&quot;</ins>"),
            "{page}"
        );
        assert!(page.contains("diff vs expected") && page.contains("diff vs baseline"));
    }

    #[test]
    fn rows_carry_filter_flags_and_the_page_has_the_filters() {
        let page = html(&fixture::results());
        for id in [
            "f-failed",
            "f-regressed",
            "f-flipped",
            "f-tag",
            "f-text",
            "shown-count",
        ] {
            assert!(page.contains(&format!("id=\"{id}\"")), "{id}");
        }
        assert_eq!(page.matches("<tr class=\"case").count(), 4);
        // A row's opening tag and its id cell.
        let row = |id: &str| {
            let at = page.find("<a class=\"id\" href=\"#case-").unwrap();
            let at = at + page[at..].find(&format!(">{id}</a>")).unwrap();
            let start = page[..at].rfind("<tr class=\"case").unwrap();
            page[start..at].to_owned()
        };
        assert!(row("greet").contains(
            "data-failed=\"0\" data-regressed=\"0\" data-flipped=\"1\" data-tags=\"smoke\""
        ));
        assert!(
            row("refund").contains("data-failed=\"1\" data-regressed=\"1\" data-flipped=\"0\"")
        );
        // Failing everywhere is not a regression.
        assert!(row("xss").contains("data-failed=\"1\" data-regressed=\"0\""));
        assert!(row("timeout").contains("data-regressed=\"1\""));
        assert!(page.contains("4 of 4 cases shown"));
        assert!(page.contains("regressions only <span class=\"dim\">(2)</span>"));
        // Side by side: a header per variant, the error, the verdict.
        assert!(page.contains("<th>baseline <span") && page.contains("<th>candidate <span"));
        assert!(page.contains("timeout: no answer within 30s"));
        assert!(page.contains("<span class=\"verdict fail\">FAILED</span>"));
        // Comparisons link to the regressed rows.
        assert!(page.contains("<a href=\"#case-1\">refund</a>, <a href=\"#case-3\">timeout</a>"));
    }
}
