//! keel's guardrail detectors (`keel_policy::guard`) on arbitrary text: a
//! prompt or an answer, bytes read as UTF-8 with invalid sequences replaced.
//!
//! Invariants, from the module's documentation:
//! - every detector is total: nothing panics;
//! - every span is a non-empty, in-range byte range of the text on char
//!   boundaries (`Span::slice` is `Some`), and scores are within 0..=1;
//!   `pii`/`secrets` findings do not overlap and come in order;
//! - `normalize(text).text` is `fold(text)`: no ASCII uppercase, whitespace
//!   collapsed to single spaces and trimmed; at most `MAX_DECODED` decoded
//!   forms, each marked base64, hex or rot13;
//! - `redact` is reversible: `restore(redacted.text, redacted.restore)` is
//!   the original text; every placeholder is distinct, is not in the
//!   original, and appears in the redacted text.

#![no_main]

use keel_policy::guard::{self, Finding, injection, normalize, output, pii, redact, secrets};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let text: &str = &text;

    let n = normalize::normalize(text);
    assert_eq!(n.text, normalize::fold(text), "normalize and fold disagree");
    assert!(
        !n.text.chars().any(|c| c.is_ascii_uppercase()),
        "not lowercased: {:?}",
        n.text
    );
    assert!(
        !n.text.starts_with(' ') && !n.text.ends_with(' ') && !n.text.contains("  "),
        "whitespace not collapsed: {:?}",
        n.text
    );
    assert!(
        !n.text.chars().any(|c| c.is_whitespace() && c != ' '),
        "whitespace other than a space left: {:?}",
        n.text
    );
    assert!(
        n.decoded.len() <= normalize::MAX_DECODED,
        "{} decoded forms",
        n.decoded.len()
    );
    for (how, _) in &n.decoded {
        assert!(
            matches!(*how, "base64" | "hex" | "rot13"),
            "decoded as {how}"
        );
    }

    let pii = pii::detect(text);
    let secrets = secrets::detect(text);
    check(text, &pii, "pii", true);
    check(text, &secrets, "secrets", true);
    check(
        text,
        &injection::detect(text, &Default::default()),
        "injection",
        false,
    );
    check(text, &output::refusal(text), "refusal", false);
    // The text's two halves as a system prompt and an answer.
    let mid = (0..=text.len() / 2)
        .rev()
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(0);
    let (prompt, answer) = text.split_at(mid);
    check(
        answer,
        &output::system_prompt_leak(answer, prompt, 0.5),
        "system_prompt_leak",
        false,
    );

    let findings: Vec<Finding> = pii.iter().chain(&secrets).cloned().collect();
    let r = redact::redact(text, &findings);
    for (i, (placeholder, _)) in r.restore.iter().enumerate() {
        assert!(
            !text.contains(placeholder.as_str()),
            "placeholder {placeholder} was in the text"
        );
        assert!(
            r.text.contains(placeholder.as_str()),
            "placeholder {placeholder} not used"
        );
        assert!(
            !r.restore[..i].iter().any(|(p, _)| p == placeholder),
            "placeholder {placeholder} given twice"
        );
    }
    assert_eq!(
        redact::restore(&r.text, &r.restore),
        text,
        "restore(redact(text)) is not the text; redacted: {:?}",
        r.text
    );
});

fn check(text: &str, findings: &[Finding], what: &str, spans_required: bool) {
    let mut prev: Option<guard::Span> = None;
    for f in findings {
        assert!(
            (0.0..=1.0).contains(&f.score),
            "{what}: score {} out of 0..=1: {f:?}",
            f.score
        );
        let Some(span) = f.span else {
            assert!(!spans_required, "{what}: finding without a span: {f:?}");
            continue;
        };
        assert!(
            span.start < span.end,
            "{what}: empty or inverted span: {f:?}"
        );
        assert!(
            span.slice(text).is_some(),
            "{what}: span {span:?} does not fit the text ({} bytes) on char boundaries: {f:?}",
            text.len()
        );
        if spans_required {
            if let Some(p) = prev {
                assert!(
                    p.end <= span.start,
                    "{what}: spans overlap or are out of order: {p:?} then {span:?}"
                );
            }
            prev = Some(span);
        }
    }
}
