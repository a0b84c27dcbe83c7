//! Guardrail detectors: pure functions from text to [`Finding`]s, with no
//! I/O, no configuration parsing and no knowledge of the server. The server
//! decides what a finding means (block, redact, annotate); this module only
//! says what it saw, where, and how sure it is.
//!
//! - [`pii`]: e-mail addresses, phone numbers, card numbers (Luhn), IBANs
//!   (mod-97 and per-country format), US SSNs, IPv4/IPv6 addresses;
//! - [`secrets`]: provider API keys, cloud and chat tokens, JWTs, PEM
//!   private keys, and generic high-entropy tokens;
//! - [`normalize`]: the canonical text an injection detector reads (NFKC,
//!   invisible characters dropped, homoglyphs folded, lowercase, collapsed
//!   whitespace) and the decoded forms of base64/hex runs and rot13;
//! - [`injection`]: prompt injection and jailbreak phrasing, scored by
//!   weighted pattern families;
//! - [`output`]: checks on a model's answer: system-prompt leaks, refusals,
//!   denied terms, maximum length;
//! - [`redact`]: replace findings with typed placeholders (`[EMAIL_1]`) and
//!   put the originals back into the model's answer.
//!
//! Spans are byte offsets into the text the detector was given, always on
//! char boundaries. [`pii`] and [`secrets`] match the original text with its
//! invisible characters (zero-width spaces, bidi controls, soft hyphens)
//! skipped, so `john\u{200B}@example.com` is still an e-mail address and its
//! span covers the zero-width space too.
//!
//! Every detector is total: any `&str` input, however odd, returns findings
//! and never panics. Work is linear in the input (the `regex` crate has no
//! backtracking), with a few documented caps on decoded material.

pub mod injection;
pub mod normalize;
pub mod output;
pub mod pii;
pub mod redact;
pub mod secrets;

#[cfg(test)]
mod tests;

use serde::Serialize;

/// Byte offsets into the ORIGINAL text (always on char boundaries).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct Span {
    pub start: usize,
    pub end: usize,
}

impl Span {
    /// The spanned text, or `None` when the span does not fit `text` (out of
    /// range, inverted, or not on char boundaries).
    pub fn slice<'a>(&self, text: &'a str) -> Option<&'a str> {
        text.get(self.start..self.end)
    }
}

/// One thing a detector saw.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    /// Which detector: "pii", "secrets", "injection", "system_prompt_leak",
    /// "refusal", "denied_terms", "max_length".
    pub check: &'static str,
    /// What was found, from a fixed vocabulary: "EMAIL", "PHONE", "CARD",
    /// "IBAN", "US_SSN", "IP", "OPENAI_KEY", "ANTHROPIC_KEY",
    /// "AWS_ACCESS_KEY", "AWS_SECRET_KEY", "GITHUB_TOKEN", "SLACK_TOKEN",
    /// "JWT", "PRIVATE_KEY", "HIGH_ENTROPY", "INSTRUCTION_OVERRIDE",
    /// "ROLE_PLAY", "PROMPT_EXTRACTION", "DELIMITER_INJECTION",
    /// "TOOL_HIJACK", "SYSTEM_PROMPT", "REFUSAL", "DENIED_TERM", "TOO_LONG".
    pub kind: &'static str,
    /// Where, when the finding is a span of the original text (None for
    /// whole-text findings like a score or a length).
    pub span: Option<Span>,
    /// 0..=1 confidence (1.0 for checksum-validated entities).
    pub score: f64,
    /// Human explanation: which pattern/rule matched, on what (never the
    /// full secret: at most a short masked prefix).
    pub detail: String,
}

/// Characters that render as nothing (or only steer rendering) and are
/// dropped before matching: zero-width spaces and joiners, word joiner and
/// invisible operators, bidi embeddings/overrides/isolates and marks, the
/// byte-order mark, soft hyphen, Mongolian vowel separator, combining
/// grapheme joiner, Hangul fillers and variation selectors. Unicode tag
/// characters (U+E0000..U+E007F) are handled by [`normalize`], which maps
/// them to the ASCII they shadow.
pub(crate) fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{034F}'
            | '\u{061C}'
            | '\u{115F}'
            | '\u{1160}'
            | '\u{17B4}'
            | '\u{17B5}'
            | '\u{180B}'..='\u{180F}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{206F}'
            | '\u{3164}'
            | '\u{FE00}'..='\u{FE0F}'
            | '\u{FEFF}'
            | '\u{FFA0}'
            | '\u{E0000}'..='\u{E0FFF}'
    )
}

/// A text with its invisible characters removed, and the way back to the
/// original's byte offsets. `pii` and `secrets` match on `text` and report
/// [`Cleaned::span`]s of the original.
pub(crate) struct Cleaned<'a> {
    pub text: std::borrow::Cow<'a, str>,
    /// For each byte of `text`, the offset of the same byte in the original;
    /// empty when nothing was removed (the offsets are then the same).
    map: Vec<usize>,
}

impl<'a> Cleaned<'a> {
    pub fn new(original: &'a str) -> Cleaned<'a> {
        if !original.chars().any(is_invisible) {
            return Cleaned {
                text: std::borrow::Cow::Borrowed(original),
                map: Vec::new(),
            };
        }
        let mut text = String::with_capacity(original.len());
        let mut map = Vec::with_capacity(original.len());
        for (at, c) in original.char_indices() {
            if is_invisible(c) {
                continue;
            }
            text.push(c);
            map.extend(at..at + c.len_utf8());
        }
        Cleaned {
            text: std::borrow::Cow::Owned(text),
            map,
        }
    }

    /// The original span of the cleaned `start..end` (a non-empty range on
    /// char boundaries of the cleaned text): from the original offset of its
    /// first byte to just after the original offset of its last byte, so
    /// invisible characters inside the match are covered and those around
    /// it are not.
    pub fn span(&self, start: usize, end: usize) -> Span {
        if self.map.is_empty() || end <= start {
            return Span { start, end };
        }
        let first = self.map.get(start).copied().unwrap_or(start);
        let last = self
            .map
            .get(end.saturating_sub(1))
            .map_or(end, |at| at.saturating_add(1));
        Span {
            start: first,
            end: last.max(first),
        }
    }
}

/// A short, masked view of a secret for [`Finding::detail`]: its first four
/// characters and its length, never more (`"sk-p… (51 chars)"`).
pub(crate) fn mask(secret: &str) -> String {
    let prefix: String = secret.chars().take(4).collect();
    format!("{prefix}… ({} chars)", secret.chars().count())
}

/// Candidates of a span detector before overlap resolution: span in the
/// cleaned text, kind, score, detail.
pub(crate) type Found = Vec<(Span, &'static str, f64, String)>;

/// A span detector's candidates as findings of `check`, mapped back to
/// the original text and with overlaps dropped.
pub(crate) fn finish(check: &'static str, cleaned: &Cleaned<'_>, found: Found) -> Vec<Finding> {
    drop_overlapping(
        found
            .into_iter()
            .map(|(span, kind, score, detail)| Finding {
                check,
                kind,
                span: Some(cleaned.span(span.start, span.end)),
                score,
                detail,
            })
            .collect(),
    )
}

/// Drops findings whose span overlaps a span already kept, keeping the
/// earlier finding of each overlapping pair: callers push findings in order
/// of preference (specific before generic). Findings come back sorted by
/// span.
pub(crate) fn drop_overlapping(findings: Vec<Finding>) -> Vec<Finding> {
    // Kept spans are disjoint, so the kept span with the greatest start
    // before a new span's end is the only one that can overlap it.
    let mut kept: std::collections::BTreeMap<usize, (usize, Finding)> = Default::default();
    let mut unspanned = Vec::new();
    for finding in findings {
        let Some(span) = finding.span else {
            unspanned.push(finding);
            continue;
        };
        let clash = kept
            .range(..span.end)
            .next_back()
            .is_some_and(|(_, (end, _))| *end > span.start);
        if !clash {
            kept.insert(span.start, (span.end, finding));
        }
    }
    unspanned.extend(kept.into_values().map(|(_, finding)| finding));
    unspanned
}

/// Compiles a constant pattern. The patterns are literals checked by the
/// tests (`every_pattern_compiles`); a broken one yields `None` and detects
/// nothing rather than panicking at run time.
pub(crate) fn compile(pattern: &str) -> Option<regex::Regex> {
    regex::Regex::new(pattern).ok()
}

/// The character just before byte `at` of `text`, if any.
pub(crate) fn char_before(text: &str, at: usize) -> Option<char> {
    text.get(..at).and_then(|head| head.chars().next_back())
}

/// The character at byte `at` of `text`, if any.
pub(crate) fn char_at(text: &str, at: usize) -> Option<char> {
    text.get(at..).and_then(|tail| tail.chars().next())
}
