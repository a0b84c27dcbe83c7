//! Masking for what keel keeps: request records, log lines and captured
//! bodies.
//!
//! [`secrets`] masks credentials (provider and virtual keys, bearer
//! tokens, cloud keys, private-key blocks) and runs on every free-text field
//! keel stores or logs, an upstream's error message included (some echo the
//! key they rejected). [`personal`] also masks contact and payment data
//! (e-mail addresses, card numbers, phone numbers) for the `redacted`
//! capture policy. Both are pattern-based and lean towards masking too much:
//! a false positive costs a log reader a few characters, a miss leaks.

use std::borrow::Cow;
use std::sync::LazyLock;

use regex::{Regex, RegexSet};

/// Credentials. Each pattern masks the whole match.
const SECRET_PATTERNS: &[&str] = &[
    // OpenAI (`sk-`, `sk-proj-`), Anthropic (`sk-ant-`) and keel's own
    // virtual keys (`kk-`), which share the shape.
    r"\b(?:sk|kk)-[A-Za-z0-9_\-]{8,}",
    // `Authorization: Bearer …` and the like.
    r"(?i)\bbearer\s+[A-Za-z0-9._~+/\-]{8,}=*",
    // AWS access key ids.
    r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b",
    // Google API keys.
    r"\bAIza[0-9A-Za-z_\-]{30,}",
    // GitHub and Slack tokens.
    r"\b(?:gh[pousr]_[A-Za-z0-9]{20,}|xox[abprs]-[A-Za-z0-9\-]{10,})",
    // `api_key=…`, `"x-api-key": "…"`, `password: …`.
    r#"(?i)\b(?:api[_-]?key|x-api-key|secret|password|passwd|token)\b["']?\s*[:=]\s*["']?[^\s"',;&]{6,}"#,
    // PEM private keys.
    r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----",
];

/// Contact and payment data.
const PERSONAL_PATTERNS: &[&str] = &[
    r"\b[A-Za-z0-9._%+\-]+@[A-Za-z0-9.\-]+\.[A-Za-z]{2,}\b",
    // 13 to 19 digits, optionally grouped by spaces or dashes: card numbers.
    r"\b(?:\d[ \-]?){12,18}\d\b",
    // Phone numbers: an optional +country code, then 9 to 14 digits in groups.
    r"(?:\+\d{1,3}[ .\-]?)?(?:\(\d{2,4}\)[ .\-]?)?\d{2,4}[ .\-]\d{3,4}[ .\-]\d{3,4}\b",
];

const MASK: &str = "[REDACTED]";

struct Patterns {
    any: RegexSet,
    each: Vec<Regex>,
}

impl Patterns {
    fn new(patterns: &[&str]) -> Patterns {
        // The patterns are constants, checked by the tests below; a
        // pattern that failed to compile would mask nothing, so fail loud in
        // the tests instead of here.
        Patterns {
            any: RegexSet::new(patterns).unwrap_or_else(|_| RegexSet::empty()),
            each: patterns.iter().filter_map(|p| Regex::new(p).ok()).collect(),
        }
    }

    fn mask<'a>(&self, text: &'a str) -> Cow<'a, str> {
        if !self.any.is_match(text) {
            return Cow::Borrowed(text);
        }
        let mut out = text.to_owned();
        for re in &self.each {
            if let Cow::Owned(masked) = re.replace_all(&out, MASK) {
                out = masked;
            }
        }
        Cow::Owned(out)
    }
}

static SECRETS: LazyLock<Patterns> = LazyLock::new(|| Patterns::new(SECRET_PATTERNS));
static PERSONAL: LazyLock<Patterns> = LazyLock::new(|| Patterns::new(PERSONAL_PATTERNS));

/// `text` with credentials masked.
pub fn secrets(text: &str) -> Cow<'_, str> {
    SECRETS.mask(text)
}

/// `text` with credentials and contact/payment data masked.
pub fn personal(text: &str) -> String {
    PERSONAL.mask(&secrets(text)).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_pattern_compiles() {
        assert_eq!(SECRETS.each.len(), SECRET_PATTERNS.len());
        assert_eq!(PERSONAL.each.len(), PERSONAL_PATTERNS.len());
    }

    #[test]
    fn credentials_are_masked() {
        for (text, leaked) in [
            (
                "Incorrect API key provided: sk-proj-AbC123xyz789QQ. You can find",
                "AbC123xyz789QQ",
            ),
            ("key sk-ant-api03-abcdefghijkl rejected", "abcdefghijkl"),
            ("Authorization: Bearer eyJhbGciOi.abc.def", "eyJhbGciOi"),
            ("use kk-live-0123456789abcdef", "0123456789abcdef"),
            ("aws AKIAIOSFODNN7EXAMPLE here", "AKIAIOSFODNN7EXAMPLE"),
            (r#"{"api_key": "hunter2hunter2"}"#, "hunter2hunter2"),
            ("password=correcthorse", "correcthorse"),
        ] {
            let masked = secrets(text);
            assert!(!masked.contains(leaked), "{text} -> {masked}");
            assert!(masked.contains(MASK), "{masked}");
        }
    }

    #[test]
    fn ordinary_text_is_left_alone() {
        for text in [
            "The answer is 42.",
            "ask the skeleton key maker",
            "task-force meeting at 10:30",
            "tokens: 1200",
        ] {
            assert!(matches!(secrets(text), Cow::Borrowed(_)), "{text}");
        }
    }

    #[test]
    fn personal_data_is_masked() {
        let masked =
            personal("mail jane.doe@example.com, card 4111 1111 1111 1111, call +1 415-555-0134");
        for leaked in ["jane.doe", "4111", "555-0134"] {
            assert!(!masked.contains(leaked), "{masked}");
        }
        assert!(masked.starts_with("mail [REDACTED]"), "{masked}");
    }
}
