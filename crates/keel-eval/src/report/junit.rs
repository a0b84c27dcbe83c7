//! JUnit XML for CI systems (GitLab, Jenkins, GitHub test reporters).
//!
//! - `<testsuites name="EVAL">` with the run's totals;
//! - a `<testsuite name="EVAL/VARIANT">` per variant and in it a
//!   `<testcase name="CASE ID" classname="EVAL.VARIANT" time="SECONDS">`
//!   per case: a failed case holds a `<failure>` naming the failed scorers
//!   with their scores and details (the judge's reasoning, the output and
//!   the expected answer in the body); a case whose call failed holds an
//!   `<error>` with the error instead. A case whose answer flipped under
//!   `--perturb` says so in `<system-out>`;
//! - a `<testsuite name="EVAL/gate">` with a test case per pass criterion
//!   and per gating comparison (its reasons and regressed cases in the
//!   `<failure>`), when there are any.
//!
//! Written by hand rather than with an XML crate: the format is a handful
//! of elements, and the one subtle part — characters XML 1.0 cannot carry
//! at all, such as the control characters a model may emit — has to be
//! handled here whichever writer is used (see [`escape`]).

use std::fmt::Write as _;

use super::{flipped_kinds, output_text, verdict_figures};
use crate::results::{CaseRecord, Results};

/// The JUnit XML of a run (see the module docs).
pub fn junit(results: &Results) -> String {
    let eval = &results.eval;
    let mut suites = String::new();
    let (mut tests, mut failures, mut errors) = (0, 0, 0);

    for v in &results.variants {
        let cases: Vec<&CaseRecord> = results.cases_of(&v.name).collect();
        let errs = cases.iter().filter(|c| c.error.is_some()).count();
        let fails = cases
            .iter()
            .filter(|c| !c.passed && c.error.is_none())
            .count();
        let time: f64 = cases.iter().map(|c| c.latency_ms).sum::<f64>() / 1000.0;
        tests += cases.len();
        failures += fails;
        errors += errs;
        let _ = writeln!(
            suites,
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{fails}\" errors=\"{errs}\" skipped=\"0\" time=\"{time:.3}\" timestamp=\"{}\">",
            attr(&format!("{eval}/{}", v.name)),
            cases.len(),
            attr(&results.started_at),
        );
        suites.push_str("    <properties>\n");
        for (name, value) in [
            ("call", v.call.clone()),
            ("pass_rate", format!("{:.4}", v.pass_rate)),
            (
                "pass_rate_ci95",
                format!("{:.4}..{:.4}", v.pass_rate_ci[0], v.pass_rate_ci[1]),
            ),
            ("mean_score", format!("{:.4}", v.mean_score)),
            ("cost_usd", format!("{:.6}", v.cost_usd)),
        ] {
            let _ = writeln!(
                suites,
                "      <property name=\"{name}\" value=\"{}\"/>",
                attr(&value)
            );
        }
        suites.push_str("    </properties>\n");
        let classname = attr(&format!("{eval}.{}", v.name));
        for c in cases {
            let _ = write!(
                suites,
                "    <testcase name=\"{}\" classname=\"{classname}\" time=\"{:.3}\"",
                attr(&c.id),
                c.latency_ms / 1000.0
            );
            let body = case_body(c);
            if body.is_empty() {
                suites.push_str("/>\n");
            } else {
                let _ = write!(suites, ">\n{body}    </testcase>\n");
            }
        }
        suites.push_str("  </testsuite>\n");
    }

    let gate = gate_suite(results);
    if let Some((suite, n, fails)) = gate {
        suites.push_str(&suite);
        tests += n;
        failures += fails;
    }

    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        out,
        "<testsuites name=\"{}\" tests=\"{tests}\" failures=\"{failures}\" errors=\"{errors}\" time=\"{:.3}\">",
        attr(eval),
        results.duration_ms / 1000.0,
    );
    out.push_str(&suites);
    out.push_str("</testsuites>\n");
    out
}

/// What goes inside one case's `<testcase>`: nothing when it passed
/// steadily.
fn case_body(c: &CaseRecord) -> String {
    let mut body = String::new();
    if let Some(e) = &c.error {
        let _ = writeln!(
            body,
            "      <error type=\"call\" message=\"{}\">{}</error>",
            attr(e),
            text(e)
        );
    } else if !c.passed {
        let failed: Vec<String> = c
            .scores
            .iter()
            .filter(|s| !s.passed)
            .map(|s| format!("{} {:.3} ({})", s.scorer, s.score, s.detail))
            .collect();
        let message = if failed.is_empty() {
            format!("case score {:.3} below the bar", c.score)
        } else {
            format!("failed: {}", failed.join("; "))
        };
        let mut detail = format!("case score {:.3}\n", c.score);
        for s in &c.scores {
            let _ = writeln!(
                detail,
                "{} {}: {:.3} × {} — {}",
                if s.passed { "pass" } else { "FAIL" },
                s.scorer,
                s.score,
                s.weight,
                s.detail
            );
            if let Some(r) = &s.reasoning {
                let _ = writeln!(detail, "  reasoning: {r}");
            }
        }
        let _ = write!(detail, "output:\n{}\n", output_text(&c.output));
        if let Some(e) = &c.expected {
            let _ = write!(detail, "expected:\n{}\n", output_text(e));
        }
        let _ = writeln!(
            body,
            "      <failure type=\"score\" message=\"{}\">{}</failure>",
            attr(&message),
            text(&detail)
        );
    }
    let kinds = flipped_kinds(c);
    if !kinds.is_empty() {
        let _ = writeln!(
            body,
            "      <system-out>answer flipped under perturbation: {}{}</system-out>",
            text(&kinds.join(", ")),
            c.consistency
                .map(|x| format!(" (consistency {x:.3})"))
                .unwrap_or_default()
        );
    }
    body
}

/// The `gate` suite, its test count and failures; `None` without criteria
/// or gating comparisons.
fn gate_suite(results: &Results) -> Option<(String, usize, usize)> {
    let classname = attr(&format!("{}.gate", results.eval));
    let mut cases = Vec::new();
    for c in &results.criteria {
        let name = if c.variant.is_empty() {
            c.check.clone()
        } else {
            format!("{}: {}", c.variant, c.check)
        };
        let failure = (!c.held).then(|| (format!("criterion not met: {name}"), String::new()));
        cases.push((name, failure));
    }
    for c in results.comparisons.iter().filter(|c| c.gating) {
        let v = &c.verdict;
        let name = format!("{} vs {}", c.baseline, c.candidate);
        let failure = v.failed.then(|| {
            let ids = |f: &[crate::gate::Flip]| {
                f.iter()
                    .map(|f| f.id.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let body = format!(
                "{}\nregressed ({}): {}\nfixed ({}): {}\n",
                verdict_figures(v),
                v.regressions.len(),
                ids(&v.regressions),
                v.fixes.len(),
                ids(&v.fixes),
            );
            (v.reasons.join("; "), body)
        });
        cases.push((name, failure));
    }
    if cases.is_empty() {
        return None;
    }
    let fails = cases.iter().filter(|(_, f)| f.is_some()).count();
    let mut s = format!(
        "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{fails}\" errors=\"0\" skipped=\"0\" time=\"0\">\n",
        attr(&format!("{}/gate", results.eval)),
        cases.len(),
    );
    for (name, failure) in &cases {
        let _ = write!(
            s,
            "    <testcase name=\"{}\" classname=\"{classname}\" time=\"0\"",
            attr(name)
        );
        match failure {
            None => s.push_str("/>\n"),
            Some((message, body)) => {
                let _ = write!(
                    s,
                    ">\n      <failure type=\"gate\" message=\"{}\">{}</failure>\n    </testcase>\n",
                    attr(message),
                    text(body)
                );
            }
        }
    }
    s.push_str("  </testsuite>\n");
    Some((s, cases.len(), fails))
}

fn attr(s: &str) -> String {
    escape(s, true)
}

fn text(s: &str) -> String {
    escape(s, false)
}

/// XML-escapes `s` for element text or (with `in_attr`) a double-quoted
/// attribute value, dropping the characters XML 1.0 forbids outright —
/// controls other than tab, line feed and carriage return, and U+FFFE/
/// U+FFFF — which no escape can carry. `>` is escaped too, so a `]]>` in a
/// model's output cannot end anything. In attributes, tab and line breaks
/// become character references so a parser's normalisation keeps them.
fn escape(s: &str, in_attr: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\r' => out.push_str("&#13;"),
            '\n' if in_attr => out.push_str("&#10;"),
            '\t' if in_attr => out.push_str("&#9;"),
            '\n' | '\t' => out.push(c),
            '\u{0}'..='\u{1f}' | '\u{fffe}' | '\u{ffff}' => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::fixture::{self, XSS};
    use super::*;

    fn suite<'a, 'i>(doc: &'a roxmltree::Document<'i>, name: &str) -> roxmltree::Node<'a, 'i> {
        doc.descendants()
            .find(|n| n.has_tag_name("testsuite") && n.attribute("name") == Some(name))
            .unwrap_or_else(|| panic!("no suite {name}"))
    }

    fn count(node: roxmltree::Node, tag: &str) -> usize {
        node.descendants().filter(|n| n.has_tag_name(tag)).count()
    }

    #[test]
    fn junit_parses_with_the_right_counts() {
        let r = fixture::results();
        let xml = junit(&r);
        let doc = roxmltree::Document::parse(&xml).unwrap_or_else(|e| panic!("{e}\n{xml}"));
        let root = doc.root_element();
        assert!(root.has_tag_name("testsuites"));
        // 4 + 4 cases, 2 criteria, 1 gating comparison (the other informs).
        assert_eq!(root.attribute("tests"), Some("11"), "{xml}");
        // baseline: xss; candidate: refund, xss; gate: a criterion and the
        // comparison. The timeout is an error, not a failure.
        assert_eq!(root.attribute("failures"), Some("5"), "{xml}");
        assert_eq!(root.attribute("errors"), Some("1"), "{xml}");
        assert_eq!(count(root, "testcase"), 11);
        assert_eq!(count(root, "failure"), 5);
        assert_eq!(count(root, "error"), 1);

        let base = suite(&doc, "support & triage/baseline");
        assert_eq!(base.attribute("tests"), Some("4"));
        assert_eq!(base.attribute("failures"), Some("1"));
        assert_eq!(count(base, "failure"), 1);
        let cand = suite(&doc, "support & triage/candidate");
        assert_eq!(cand.attribute("failures"), Some("2"));
        assert_eq!(cand.attribute("errors"), Some("1"));
        let timeout = cand
            .children()
            .find(|n| n.attribute("name") == Some("timeout"))
            .unwrap();
        assert_eq!(
            timeout.attribute("classname"),
            Some("support & triage.candidate")
        );
        let err = timeout
            .children()
            .find(|n| n.has_tag_name("error"))
            .unwrap();
        assert_eq!(
            err.attribute("message"),
            Some("timeout: no answer within 30s")
        );
        let refund = cand
            .children()
            .find(|n| n.attribute("name") == Some("refund"))
            .unwrap();
        let fail = refund
            .children()
            .find(|n| n.has_tag_name("failure"))
            .unwrap();
        assert_eq!(
            fail.attribute("message"),
            Some("failed: exact 0.000 (differs)")
        );
        assert!(fail.text().unwrap().contains("\"complaint\""));
        // Time is in seconds.
        let greet = base
            .children()
            .find(|n| n.attribute("name") == Some("greet"))
            .unwrap();
        assert_eq!(greet.attribute("time"), Some("0.350"));
        assert!(greet.children().any(|n| {
            n.has_tag_name("system-out")
                && n.text()
                    .unwrap()
                    .contains("flipped under perturbation: typos")
        }));

        let gate = suite(&doc, "support & triage/gate");
        assert_eq!(gate.attribute("tests"), Some("3"));
        assert_eq!(count(gate, "failure"), 2);
        let cmp = gate
            .children()
            .find(|n| n.attribute("name") == Some("last.json:baseline vs candidate"))
            .unwrap();
        let fail = cmp.children().find(|n| n.has_tag_name("failure")).unwrap();
        assert_eq!(fail.attribute("message"), Some("mean score fell by 0.5"));
        assert!(
            fail.text()
                .unwrap()
                .contains("regressed (2): refund, timeout")
        );
    }

    #[test]
    fn junit_survives_hostile_text() {
        let mut r = fixture::results();
        // Hostile text everywhere: ids, names, errors, attributes.
        r.cases[7].error = Some(format!("{XSS}\r\n\ttab"));
        r.cases[6].id = XSS.into();
        r.eval = "e\"v'a<l>".into();
        let xml = junit(&r);
        let doc = roxmltree::Document::parse(&xml).unwrap_or_else(|e| panic!("{e}\n{xml}"));
        assert!(!xml.contains('\u{1}'));
        assert!(!xml.contains("<script>") && !xml.contains("]]>"), "{xml}");
        // What parses back is the text less the forbidden character.
        let clean = XSS.replace('\u{1}', "");
        let xss = doc
            .descendants()
            .find(|n| n.has_tag_name("testcase") && n.attribute("name") == Some(clean.as_str()))
            .unwrap();
        let fail = xss.children().find(|n| n.has_tag_name("failure")).unwrap();
        assert!(fail.text().unwrap().contains(&clean), "{xml}");
        assert!(
            fail.text()
                .unwrap()
                .contains("reasoning: It echoed <img src=x onerror=alert(2)> verbatim.")
        );
        let err = doc.descendants().find(|n| n.has_tag_name("error")).unwrap();
        // Line breaks and tabs in an attribute survive normalisation.
        assert_eq!(
            err.attribute("message"),
            Some(format!("{clean}\r\n\ttab").as_str())
        );
        assert_eq!(doc.root_element().attribute("name"), Some("e\"v'a<l>"));
    }

    #[test]
    fn escape_drops_what_xml_forbids() {
        assert_eq!(text("a\u{0}b\u{8}c\u{1f}d\u{fffe}\u{ffff}e"), "abcde");
        assert_eq!(text("a\tb\nc"), "a\tb\nc");
        assert_eq!(attr("a\tb\nc\rd"), "a&#9;b&#10;c&#13;d");
        assert_eq!(text("x]]>y"), "x]]&gt;y");
        assert_eq!(text("é😀\u{10ffff}"), "é😀\u{10ffff}");
    }

    #[test]
    fn no_gate_suite_without_criteria_or_gating_comparisons() {
        let mut r = fixture::results();
        r.criteria.clear();
        r.comparisons.retain(|c| !c.gating);
        let xml = junit(&r);
        let doc = roxmltree::Document::parse(&xml).unwrap();
        assert_eq!(count(doc.root_element(), "testsuite"), 2);
        assert_eq!(doc.root_element().attribute("tests"), Some("8"));
    }
}
