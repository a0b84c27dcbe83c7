//! Reversible redaction: findings' spans become typed placeholders before a
//! text goes upstream, and the originals are put back into the answer.
//!
//! [`redact`] replaces each finding's span with `[KIND_n]` (`[EMAIL_1]`,
//! `[CARD_1]`, `[EMAIL_2]`), numbered per kind in order of appearance; the
//! same original text always gets the same placeholder, so the model can
//! still tell that two mentions are one address. Overlapping spans are
//! merged into one (the union of their extents, so no part of either
//! leaks), named after the longest of them, the earliest on a tie. A
//! placeholder that already occurs in the text is skipped (numbering goes
//! on), so restoring never rewrites text the user wrote. Findings without a
//! span, or whose span does not fit the text (out of range, not on char
//! boundaries), are ignored.
//!
//! [`restore`] puts the originals back wherever their placeholders appear
//! in the model's output — several times or not at all — in one pass, so an
//! original that itself looks like a placeholder is never expanded again.
//! Limit: a placeholder the model altered (`[email_1]`, `[EMAIL 1]`) is
//! left as is.

use std::collections::HashMap;

use super::{Finding, Span};

/// A redacted text and the map back to the originals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redacted {
    /// The text with each finding replaced by its placeholder.
    pub text: String,
    /// (placeholder, original), one per distinct original, in order of
    /// first appearance.
    pub restore: Vec<(String, String)>,
}

/// Replaces each finding's span with a typed placeholder `[EMAIL_1]`,
/// `[CARD_1]`, `[EMAIL_2]` (numbered per kind, the same original → the same
/// placeholder), merging overlapping spans (the longer/earlier wins);
/// returns the text and the map to restore.
pub fn redact(text: &str, findings: &[Finding]) -> Redacted {
    redact_avoiding(text, findings, &[])
}

/// [`redact`], with placeholders that are never one of `taken` (those an
/// earlier redaction of the same conversation handed out: an output
/// redacted after its input must not reuse the input's placeholders, or
/// restoring the input would fill them in).
pub fn redact_avoiding(text: &str, findings: &[Finding], taken: &[(String, String)]) -> Redacted {
    let mut spans: Vec<(Span, &'static str)> = findings
        .iter()
        .filter_map(|f| {
            let span = f.span?;
            (span.start < span.end && span.slice(text).is_some()).then_some((span, f.kind))
        })
        .collect();
    // By start, longer first: the first span of a cluster is the earliest
    // and, among the earliest, the longest.
    spans.sort_by_key(|(s, _)| (s.start, std::cmp::Reverse(s.end)));

    // Clusters of overlapping spans: (union, kind of the longest member,
    // length of that member).
    let mut clusters: Vec<(Span, &'static str, usize)> = Vec::new();
    for (span, kind) in spans {
        let len = span.end - span.start;
        match clusters.last_mut() {
            Some((union, winner, winner_len)) if span.start < union.end => {
                union.end = union.end.max(span.end);
                if len > *winner_len {
                    *winner = kind;
                    *winner_len = len;
                }
            }
            _ => clusters.push((span, kind, len)),
        }
    }

    // Placeholder-shaped tokens already in the text, read once: a text full
    // of `[EMAIL_1][EMAIL_2]…` must not make numbering quadratic.
    let present = bracketed(text);
    let mut out = String::with_capacity(text.len());
    let mut restore: Vec<(String, String)> = Vec::new();
    let mut by_original: HashMap<&str, usize> = HashMap::new();
    let mut counters: HashMap<&'static str, usize> = HashMap::new();
    let mut at = 0;
    for (span, kind, _) in clusters {
        let (Some(before), Some(original)) = (text.get(at..span.start), span.slice(text)) else {
            continue;
        };
        out.push_str(before);
        let entry = match by_original.get(original) {
            Some(&entry) => entry,
            None => {
                let counter = counters.entry(kind).or_insert(0);
                let placeholder = loop {
                    *counter += 1;
                    let candidate = format!("[{kind}_{counter}]");
                    if !present.contains(candidate.as_str())
                        && !taken.iter().any(|(p, _)| *p == candidate)
                    {
                        break candidate;
                    }
                };
                restore.push((placeholder, original.to_owned()));
                by_original.insert(original, restore.len() - 1);
                restore.len() - 1
            }
        };
        if let Some((placeholder, _)) = restore.get(entry) {
            out.push_str(placeholder);
        }
        at = span.end;
    }
    out.push_str(text.get(at..).unwrap_or(""));
    Redacted { text: out, restore }
}

/// Every `[…]` of at most 64 bytes in `text` (placeholders among them).
fn bracketed(text: &str) -> std::collections::HashSet<&str> {
    let mut found = std::collections::HashSet::new();
    for (open, _) in text.match_indices('[') {
        let Some(rest) = text.get(open..) else {
            continue;
        };
        let close = rest
            .char_indices()
            .take_while(|(i, _)| *i < 64)
            .find(|(_, c)| *c == ']')
            .map(|(i, _)| i);
        if let Some(close) = close
            && let Some(token) = rest.get(..=close)
        {
            found.insert(token);
        }
    }
    found
}

/// Puts originals back where their placeholders appear (in model output,
/// possibly several times or not at all).
pub fn restore(text: &str, map: &[(String, String)]) -> String {
    if map.is_empty() {
        return text.to_owned();
    }
    let lookup: HashMap<&str, &str> = map
        .iter()
        .map(|(placeholder, original)| (placeholder.as_str(), original.as_str()))
        .collect();
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    // A placeholder has one `[` (its first character) and ends at the first
    // `]` after it: look each `[..]` up, else keep the `[` and go on.
    while let Some(open) = rest.find('[') {
        let (head, tail) = rest.split_at(open);
        out.push_str(head);
        let candidate = tail.find(']').and_then(|close| tail.get(..=close));
        match candidate.and_then(|c| lookup.get(c).map(|original| (c.len(), *original))) {
            Some((len, original)) => {
                out.push_str(original);
                rest = tail.get(len..).unwrap_or("");
            }
            None => {
                out.push('[');
                rest = tail.get(1..).unwrap_or("");
            }
        }
    }
    out.push_str(rest);
    out
}
