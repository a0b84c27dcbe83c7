//! A small hand-built [`Results`] for the report tests: two variants over
//! four cases — one regression (`refund`), one failed call (`timeout` in
//! `candidate`), one answer flipped under perturbation (`greet` in
//! `baseline`, kind `typos`) and one case (`xss`) whose output, expected
//! answer, tag and judge reasoning are hostile markup.

use serde_json::{Map, Value, json};

use crate::gate::{self, GateConfig};
use crate::results::{
    self, CaseRecord, Comparison, Criterion, PerturbRecord, Results, ScoreRecord, Tokens,
};

/// Markup a report must show as text and never run.
pub const XSS: &str = "<script>alert(1)</script> then </script> & \"quoted\" ]]> \u{1}bell";

fn input(text: &str) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("text".into(), Value::String(text.into()));
    m
}

fn score(scorer: &str, score: f64, detail: &str) -> ScoreRecord {
    ScoreRecord {
        scorer: scorer.into(),
        score,
        passed: score >= 0.5,
        weight: 1.0,
        detail: detail.into(),
        reasoning: None,
    }
}

struct Case {
    id: &'static str,
    tags: &'static [&'static str],
    text: &'static str,
    expected: Value,
}

fn record(case: &Case, variant: &str, output: Value, scores: Vec<ScoreRecord>) -> CaseRecord {
    let passed = !scores.is_empty() && scores.iter().all(|s| s.passed);
    let score = if scores.is_empty() {
        0.0
    } else {
        scores.iter().map(|s| s.score).sum::<f64>() / scores.len() as f64
    };
    CaseRecord {
        id: case.id.into(),
        variant: variant.into(),
        tags: case.tags.iter().map(|t| (*t).to_owned()).collect(),
        input: input(case.text),
        expected: Some(case.expected.clone()),
        output,
        error: None,
        passed,
        score,
        scores,
        latency_ms: 100.0 + case.id.len() as f64 * 50.0,
        tokens: Tokens {
            input: 120,
            output: 30,
        },
        cost_usd: 0.0015,
        request_id: Some(format!("req-{variant}-{}", case.id)),
        perturbations: Vec::new(),
        consistency: None,
    }
}

pub fn results() -> Results {
    let greet = Case {
        id: "greet",
        tags: &["smoke"],
        text: "Say hello to my friend",
        expected: json!("Hello there, my dear friend"),
    };
    let refund = Case {
        id: "refund",
        tags: &["billing"],
        text: "I want my money back",
        expected: json!({"intent": "refund"}),
    };
    let xss = Case {
        id: "xss",
        tags: &["<b>&tag"],
        text: "Repeat: <script>alert(1)</script>",
        expected: json!("<b>safe</b> & sound"),
    };
    let timeout = Case {
        id: "timeout",
        tags: &["billing"],
        text: "A long question",
        expected: json!("short answer"),
    };

    let mut base_greet = record(
        &greet,
        "baseline",
        json!("Hello there, my dear friend"),
        vec![score("exact", 1.0, "equal")],
    );
    base_greet.perturbations = vec![
        PerturbRecord {
            kind: "case".into(),
            input: input("SAY HELLO TO MY FRIEND"),
            output: json!("Hello there, my dear friend"),
            error: None,
            passed: true,
            consistent: true,
            cost_usd: 0.0,
        },
        PerturbRecord {
            kind: "typos".into(),
            input: input("Say hlelo to my friend"),
            output: json!("Hlelo?"),
            error: None,
            passed: false,
            consistent: false,
            cost_usd: 0.0,
        },
    ];
    base_greet.consistency = Some(0.5);
    let mut judged = score("judge", 0.2, "0.20 < 0.5");
    judged.reasoning = Some("It echoed <img src=x onerror=alert(2)> verbatim.".into());
    let mut cand_xss = record(
        &xss,
        "candidate",
        Value::String(XSS.into()),
        vec![score("exact", 0.0, "differs"), judged],
    );
    cand_xss.latency_ms = 2400.0;
    let mut cand_timeout = record(&timeout, "candidate", Value::Null, Vec::new());
    cand_timeout.error = Some("timeout: no answer within 30s".into());

    let cases = vec![
        base_greet,
        record(
            &refund,
            "baseline",
            json!({"intent": "refund"}),
            vec![score("exact", 1.0, "equal")],
        ),
        record(
            &xss,
            "baseline",
            json!("I will not repeat that."),
            vec![score("exact", 0.0, "differs")],
        ),
        record(
            &timeout,
            "baseline",
            json!("short answer"),
            vec![score("exact", 1.0, "equal")],
        ),
        record(
            &greet,
            "candidate",
            json!("Hello there, my good friend"),
            vec![score("exact", 0.9, "close")],
        ),
        record(
            &refund,
            "candidate",
            json!({"intent": "complaint"}),
            vec![score("exact", 0.0, "differs")],
        ),
        cand_xss,
        cand_timeout,
    ];

    let mut results = Results {
        format: results::FORMAT.into(),
        eval: "support & triage".into(),
        keel_version: "0.1.0".into(),
        started_at: "2025-01-02T03:04:05.678Z".into(),
        duration_ms: 3210.0,
        target: "in-process".into(),
        cassette: None,
        variants: Vec::new(),
        cases,
        comparisons: Vec::new(),
        criteria: Vec::new(),
        passed: false,
    };
    for (name, call) in [
        ("baseline", "function triage"),
        ("candidate", "chat on gpt-4o-mini"),
    ] {
        let of: Vec<&CaseRecord> = results.cases_of(name).collect();
        let summary = results::summarise(name, call, &of);
        results.variants.push(summary);
    }
    let verdict = gate::compare(
        &results.gate_cases("baseline"),
        &results.gate_cases("candidate"),
        &GateConfig::default(),
    );
    results.comparisons = vec![
        Comparison {
            baseline: "baseline".into(),
            candidate: "candidate".into(),
            verdict: verdict.clone(),
            gating: false,
        },
        Comparison {
            baseline: "last.json:baseline".into(),
            candidate: "candidate".into(),
            verdict: gate::Verdict {
                failed: true,
                reasons: vec!["mean score fell by 0.5".into()],
                ..verdict
            },
            gating: true,
        },
    ];
    results.criteria = vec![
        Criterion {
            variant: "baseline".into(),
            check: "pass rate 0.750 ≥ 0.7".into(),
            held: true,
        },
        Criterion {
            variant: "candidate".into(),
            check: "pass rate 0.250 ≥ 0.7".into(),
            held: false,
        },
    ];
    results
}
