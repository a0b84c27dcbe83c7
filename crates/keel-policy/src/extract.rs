//! Find the JSON in a model's reply and repair it conservatively.
//!
//! Candidates, in this order: the whole reply; each fenced block (```` ```json ````
//! or any info string, fences nested in fences too, an unclosed fence running
//! to the end); each `{...}`/`[...]` span in the prose. Every candidate is
//! first parsed as is; only when none parses are they parsed again after
//! repair, in the same order. The first that parses (and is an object when
//! `want_object`) wins: with several JSON objects in a reply, the first valid
//! one is taken.
//!
//! Repairs are recorded, never silent, and never invent a value: trailing
//! commas are dropped; single-quoted strings become double-quoted (only where
//! a key or value starts, and a `'` closes one only before `,:}]`, so
//! apostrophes in words survive); bare identifier keys get quotes; raw control
//! characters in strings are escaped; a reply cut off (by `max_tokens`) gets
//! its string and brackets closed in order, and if that does not parse, or it
//! ends in a number that may itself be cut (`12` of `125`), its last,
//! incomplete member is dropped instead.
//!
//! Bounded work: replies over [`MAX_INPUT`] bytes are only parsed as is; at
//! most [`MAX_CANDIDATES`] candidates; span scanning stops after a few passes'
//! worth of bytes; no recursion (serde_json caps nesting depth at 128).

mod repair;

use repair::{note, rewrite};
use serde::Serialize;
use serde_json::Value;

/// Longer replies are only parsed whole, as is.
pub const MAX_INPUT: usize = 1 << 20;
/// At most this many candidates (whole text, fences, spans) are tried.
pub const MAX_CANDIDATES: usize = 16;
/// Span scanning reads at most this many times the reply's length.
const SCAN_PASSES: usize = 4;

/// One repair applied to make a candidate parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Repair {
    /// The JSON was inside a ```` ``` ```` fence.
    StrippedFence,
    /// The JSON was a `{...}`/`[...]` span inside other text.
    StrippedProse,
    /// A `,` before `}` or `]` was dropped.
    TrailingComma,
    /// `'...'` strings were rewritten as `"..."`.
    SingleQuotes,
    /// Bare identifier keys (`{a: 1}`) were quoted.
    UnquotedKeys,
    /// Raw control characters (newlines, tabs) inside strings were escaped.
    EscapedControlChars,
    /// The text ended inside a string, which was closed.
    ClosedString,
    /// The text ended inside brackets, which were closed in order.
    ClosedBrackets,
    /// The last member of a cut-off container was incomplete and dropped.
    DroppedIncompleteMember,
}

/// A JSON value found in a reply, with what was done to find it.
#[derive(Debug, Clone, PartialEq)]
pub struct Extracted {
    pub value: Value,
    /// Empty when the whole reply parsed as is.
    pub repairs: Vec<Repair>,
}

/// The first candidate that parses (as is, or after conservative repair),
/// preferring ones that parse without repair. Candidates: the whole text;
/// each fenced block; each balanced `{...}` or `[...]` span found in prose.
/// `want_object`: only a JSON object is accepted (what a schema with
/// `"type": "object"` needs).
pub fn extract(text: &str, want_object: bool) -> Option<Extracted> {
    let accept = |v: &Value| !want_object || v.is_object();
    let candidates = candidates(text);
    for c in &candidates {
        if let Ok(value) = serde_json::from_str::<Value>(c.text)
            && accept(&value)
        {
            return Some(Extracted {
                value,
                repairs: c.base.into_iter().collect(),
            });
        }
    }
    if text.len() > MAX_INPUT {
        return None;
    }
    for c in &candidates {
        let Ok(rw) = rewrite(c.text.as_bytes()) else {
            continue;
        };
        if rw.len < c.text.len() {
            continue; // text after the container: a span candidate covers it
        }
        for (json, extra) in rw.attempts() {
            if let Ok(value) = serde_json::from_str::<Value>(json)
                && accept(&value)
            {
                let mut repairs: Vec<Repair> = c.base.into_iter().collect();
                for r in rw.repairs.iter().chain(extra) {
                    note(&mut repairs, *r);
                }
                return Some(Extracted { value, repairs });
            }
        }
    }
    None
}

struct Candidate<'a> {
    start: usize,
    text: &'a str,
    base: Option<Repair>,
}

fn candidates(text: &str) -> Vec<Candidate<'_>> {
    let mut out = Vec::new();
    push(&mut out, text, 0, text.len(), None);
    if text.len() <= MAX_INPUT {
        fences(text, &mut out);
        spans(text, &mut out);
    }
    out
}

/// Adds `text[start..end]`, trimmed, unless empty, already there or over the cap.
fn push<'a>(
    out: &mut Vec<Candidate<'a>>,
    text: &'a str,
    start: usize,
    end: usize,
    base: Option<Repair>,
) {
    let Some(slice) = text.get(start..end) else {
        return;
    };
    let trimmed = slice.trim();
    let start = start + (slice.len() - slice.trim_start().len());
    let duplicate = out
        .iter()
        .any(|c| c.start == start && c.text.len() == trimmed.len());
    if !trimmed.is_empty() && !duplicate && out.len() < MAX_CANDIDATES {
        out.push(Candidate {
            start,
            text: trimmed,
            base,
        });
    }
}

/// Fenced blocks: a line of 3+ backticks (and an info string) opens, a line
/// of at least as many backticks closes. Each block's content is searched
/// again for fences inside it.
fn fences<'a>(text: &'a str, out: &mut Vec<Candidate<'a>>) {
    let mut regions = vec![(0, text.len())];
    while let Some((mut pos, end)) = regions.pop() {
        while out.len() < MAX_CANDIDATES {
            let opener = |n: usize, rest: &str| n >= 3 && !rest.contains('`');
            let Some((_, open, width)) = find_line(text, pos, end, opener) else {
                break;
            };
            let closer = |n: usize, rest: &str| n >= width && rest.trim().is_empty();
            let (close, next) =
                find_line(text, open, end, closer).map_or((end, end), |(at, next, _)| (at, next));
            push(out, text, open, close, Some(Repair::StrippedFence));
            regions.push((open, close));
            pos = next;
        }
    }
}

/// The first line in `text[pos..end]` (`pos` at a line start) whose leading
/// backtick run `n` and the rest after it satisfy `is_fence`: where that line
/// starts, where the next one starts, and `n`.
fn find_line(
    text: &str,
    mut pos: usize,
    end: usize,
    is_fence: impl Fn(usize, &str) -> bool,
) -> Option<(usize, usize, usize)> {
    while pos < end {
        let line_end = text.get(pos..end)?.find('\n').map_or(end, |i| pos + i);
        let line = text.get(pos..line_end)?.trim_start();
        let n = line.len() - line.trim_start_matches('`').len();
        let next = (line_end + 1).min(end);
        if is_fence(n, line.get(n..)?) {
            return Some((pos, next, n));
        }
        pos = next;
    }
    None
}

/// `{...}`/`[...]` spans: a balanced one is skipped as a whole; an unclosed or
/// mismatched one lets scanning go on inside it, within a byte budget.
fn spans<'a>(text: &'a str, out: &mut Vec<Candidate<'a>>) {
    let bytes = text.as_bytes();
    let mut budget = SCAN_PASSES.saturating_mul(text.len());
    let mut i = 0;
    while out.len() < MAX_CANDIDATES {
        let Some(at) = bytes
            .get(i..)
            .and_then(|b| b.iter().position(|&c| c == b'{' || c == b'['))
        else {
            break;
        };
        let start = i + at;
        let (read, span) = match rewrite(bytes.get(start..).unwrap_or_default()) {
            Ok(rw) => (rw.len, Some((rw.len, rw.truncated.is_none()))),
            Err(read) => (read, None),
        };
        budget = budget.saturating_sub(read.max(1));
        if let Some((len, _)) = span {
            push(out, text, start, start + len, Some(Repair::StrippedProse));
        }
        i = match span {
            Some((len, true)) => start + len,
            _ => start + 1,
        };
        if budget == 0 {
            break;
        }
    }
}

#[cfg(test)]
mod tests;
