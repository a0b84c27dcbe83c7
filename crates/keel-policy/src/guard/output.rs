//! Checks on a model's answer (some apply to any text): a leaked system
//! prompt, a refusal, denied terms, a length cap.
//!
//! - [`system_prompt_leak`]: both texts are cut into words (letters and
//!   digits, each word [`fold`]ed: NFKC, homoglyphs, lowercase), and the
//!   system prompt's word 5-grams (shingles) are looked up in the output's.
//!   The overlap ratio is the share of the prompt's distinct shingles that
//!   appear in the output; a finding when it reaches `min_overlap`, or when
//!   the output repeats [`LONG_RUN_WORDS`] or more consecutive words of the
//!   prompt (a long prompt leaks meaningfully before half of it does).
//!   Prompts under [`MIN_PROMPT_WORDS`] words are never reported: a short
//!   prompt ("You are a helpful assistant.") is repeated by chance and
//!   reveals nothing. Limits: a paraphrase, a translation or a summary of
//!   the prompt is not a leak here; the verbatim run is measured in chained
//!   shingles, so it may join two separate pieces of the prompt.
//! - [`refusal`]: case-insensitive refusal phrases ("I'm sorry, but I
//!   can't", "As an AI language model, I cannot", "I must decline", "I
//!   won't be able to assist"), weighted; a phrase in the first
//!   [`REFUSAL_WINDOW`] characters counts fully, later ones at 60% (an
//!   answer that helps and then declines one part is not a refusal). English
//!   only; "I can't help but…" and "I can't believe…" are not refusals.
//! - [`DeniedTerms`]: terms matched on whole words after folding, leetspeak
//!   read as letters (`b0mb` is `bomb`), and, for terms of
//!   [`FUZZY_MIN_CHARS`]+ characters, within `max_distance` edits (optimal
//!   string alignment: insertions, deletions, substitutions, transpositions)
//!   to catch `expl0iit`-style evasions; multi-word terms match word by
//!   word. Terms with characters other than letters, digits and spaces
//!   (`c++`, `rm -rf`) are matched literally, case-insensitively, on the
//!   original text only. Patterns are regexes over the original text.
//!   Limits: fuzzy matching also catches real words near a term (`attach`
//!   is one edit from `attack`): keep `max_distance` at 1, or 0 for common
//!   words; short terms get no fuzzy matching (`bommb` is not `bomb`), nor
//!   plurals.
//! - [`max_length`]: one `TOO_LONG` finding over `max_chars` characters.

use std::collections::HashSet;
use std::sync::LazyLock;

use regex::Regex;
use unicode_normalization::char::is_combining_mark;

use super::normalize::{fold, unleet};
use super::{Finding, Span, compile, is_invisible};

/// System prompts shorter than this many words are never reported.
pub const MIN_PROMPT_WORDS: usize = 8;
/// Words per shingle.
pub const SHINGLE_WORDS: usize = 5;
/// This many consecutive words of the prompt in the output is a leak,
/// whatever the overlap ratio.
pub const LONG_RUN_WORDS: usize = 40;
/// The default `min_overlap` for [`system_prompt_leak`].
pub const DEFAULT_MIN_OVERLAP: f64 = 0.5;
/// Refusal phrases starting within this many characters count fully.
pub const REFUSAL_WINDOW: usize = 300;
/// Terms at least this long (in characters, after folding) get fuzzy
/// matching.
pub const FUZZY_MIN_CHARS: usize = 5;

/// A word of a text: where it is, and its folded form.
struct Word {
    span: Span,
    folded: String,
}

/// The words of `text`: runs of letters and digits (and of `extra`
/// characters), invisible characters and combining marks inside a word
/// kept in it, each folded; words that fold to nothing alphanumeric are
/// dropped.
fn words(text: &str, extra: fn(char) -> bool) -> Vec<Word> {
    let mut out = Vec::new();
    let mut start: Option<usize> = None;
    let mut end = 0;
    let push = |start: usize, end: usize, out: &mut Vec<Word>| {
        let Some(raw) = text.get(start..end) else {
            return;
        };
        let folded = fold(raw);
        if folded.chars().any(char::is_alphanumeric) {
            out.push(Word {
                span: Span { start, end },
                folded,
            });
        }
    };
    for (at, c) in text.char_indices() {
        if c.is_alphanumeric() || extra(c) {
            start.get_or_insert(at);
            end = at + c.len_utf8();
        } else if start.is_some() && (is_invisible(c) || is_combining_mark(c)) {
            if is_combining_mark(c) {
                end = at + c.len_utf8();
            }
        } else if let Some(s) = start.take() {
            push(s, end, &mut out);
        }
    }
    if let Some(s) = start {
        push(s, end, &mut out);
    }
    out
}

fn no_extra(_: char) -> bool {
    false
}

/// The output repeats the system prompt: the share of the prompt's word
/// 5-grams found in the output reaches `min_overlap` (a NaN falls back to
/// [`DEFAULT_MIN_OVERLAP`]), or the output repeats [`LONG_RUN_WORDS`]
/// consecutive words of it. Prompts under [`MIN_PROMPT_WORDS`] words are
/// never reported. The span runs from the first to the last output word of
/// a shared 5-gram.
pub fn system_prompt_leak(output: &str, system_prompt: &str, min_overlap: f64) -> Vec<Finding> {
    let min_overlap = if min_overlap.is_nan() {
        DEFAULT_MIN_OVERLAP
    } else {
        min_overlap
    };
    let prompt = words(system_prompt, no_extra);
    if prompt.len() < MIN_PROMPT_WORDS {
        return Vec::new();
    }
    let out = words(output, no_extra);
    let key = |w: &[Word]| -> Vec<String> { w.iter().map(|w| w.folded.clone()).collect() };
    let prompt_shingles: HashSet<Vec<String>> = prompt.windows(SHINGLE_WORDS).map(key).collect();
    if prompt_shingles.is_empty() {
        return Vec::new();
    }
    let mut seen: HashSet<Vec<String>> = HashSet::new();
    let mut region: Option<(usize, usize)> = None;
    let (mut run, mut longest) = (0usize, 0usize);
    for window in out.windows(SHINGLE_WORDS) {
        let shingle = key(window);
        if prompt_shingles.contains(&shingle) {
            let (first, last) = (
                window.first().map_or(0, |w| w.span.start),
                window.last().map_or(0, |w| w.span.end),
            );
            region = Some(region.map_or((first, last), |(a, b)| (a.min(first), b.max(last))));
            run = if run == 0 { SHINGLE_WORDS } else { run + 1 };
            longest = longest.max(run);
            seen.insert(shingle);
        } else {
            run = 0;
        }
    }
    let ratio = seen.len() as f64 / prompt_shingles.len() as f64;
    let long_run = longest >= LONG_RUN_WORDS;
    if ratio < min_overlap && !long_run {
        return Vec::new();
    }
    let score = if long_run { ratio.max(0.7) } else { ratio }.clamp(0.0, 1.0);
    vec![Finding {
        check: "system_prompt_leak",
        kind: "SYSTEM_PROMPT",
        span: region.map(|(start, end)| Span { start, end }),
        score,
        detail: format!(
            "{:.0}% of the system prompt's {SHINGLE_WORDS}-word phrases appear in the output \
             (longest verbatim run {longest} words, threshold {:.0}%)",
            ratio * 100.0,
            min_overlap * 100.0
        ),
    }]
}

/// Refusal phrases: name, weight, pattern (case-insensitive, over the
/// original text; `['’]` takes either apostrophe).
static REFUSALS: LazyLock<Vec<(&'static str, f64, Regex)>> = LazyLock::new(|| {
    const CANT: &str = r"(?:cannot|can['’]?t|can\s+not|won['’]?t|will\s+not|am\s+unable\s+to|am\s+not\s+able\s+to|must\s+not|am\s+not\s+allowed\s+to|am\s+not\s+permitted\s+to)";
    const IM_CANT: &str =
        r"(?:unable\s+to|not\s+able\s+to|not\s+allowed\s+to|not\s+permitted\s+to)";
    const VERB: &str = r"(?:assist|comply|fulfill|fulfil|provide|engage|participate|generate|create|produce|share|continue|do\s+that|do\s+this|answer\s+that|support\s+that|help(?:\s+you)?\s+with|help\s*[.!])";
    [
        (
            "as an AI, I cannot",
            0.95,
            r"\bas\s+an\s+ai(?:\s+(?:language\s+model|assistant|model))?,?\s+i\s+(?:cannot|can['’]?t|can\s+not|am\s+not\s+able|am\s+unable|do\s+not|don['’]?t|won['’]?t|must\s+not|shouldn['’]?t)\b".to_owned(),
        ),
        (
            "I'm sorry, but I can't",
            0.9,
            r"\b(?:i['’]?m|i\s+am)\s+(?:\w+\s+)?sorry,?\s+(?:but\s+)?i\s+(?:cannot|can['’]?t|can\s+not|won['’]?t|will\s+not|am\s+(?:not\s+able|unable)|must\s+decline|must\s+respectfully)".to_owned(),
        ),
        (
            "I apologize, but I can't",
            0.9,
            r"\bi\s+apologi[sz]e,?\s+(?:but\s+)?i\s+(?:cannot|can['’]?t|can\s+not|won['’]?t|am\s+unable|am\s+not\s+able|must\s+decline)".to_owned(),
        ),
        (
            "sorry, but that's not something I can",
            0.85,
            r"\bsorry,?\s+but\s+(?:that|this)['’]?s?\s+(?:is\s+)?(?:not\s+something\s+i\s+can|something\s+i\s+can['’]?t|something\s+i\s+cannot)".to_owned(),
        ),
        (
            "I can't help with that",
            0.85,
            format!(r"\b(?:i\s+{CANT}|i['’]?m\s+{IM_CANT})\s+{VERB}"),
        ),
        (
            "I won't be able to assist",
            0.85,
            r"\b(?:i|we)\s+(?:won['’]?t|will\s+not)\s+be\s+able\s+to\s+(?:help|assist|provide|comply|fulfill|do\s+that|answer|support|create|generate)".to_owned(),
        ),
        (
            "I must decline",
            0.9,
            r"\bi\s+(?:must|have\s+to|need\s+to|will|['’]ll)\s+(?:respectfully\s+|politely\s+)?(?:decline|refuse)\b".to_owned(),
        ),
        (
            "I cannot comply",
            0.9,
            r"\bi\s+(?:cannot|can['’]?t|can\s+not|won['’]?t|will\s+not)\s+comply\b".to_owned(),
        ),
        (
            "this request violates",
            0.75,
            r"\b(?:this|that|your)\s+request\s+(?:violates|goes\s+against|is\s+against|conflicts\s+with)\b".to_owned(),
        ),
        (
            "against my guidelines",
            0.6,
            r"\bagainst\s+(?:my|openai['’]?s|anthropic['’]?s|our)\s+(?:guidelines|policies|usage\s+policies|content\s+polic(?:y|ies)|programming|principles|ethical\s+guidelines)".to_owned(),
        ),
        (
            "unfortunately, I can't",
            0.8,
            r"\bunfortunately,?\s+i\s+(?:can['’]?t|cannot|can\s+not|am\s+unable|am\s+not\s+able|won['’]?t)\b".to_owned(),
        ),
        (
            "I'm not comfortable",
            0.7,
            r"\b(?:i['’]?m|i\s+am)\s+not\s+comfortable\s+(?:with|providing|helping|doing|creating|writing|generating|sharing)".to_owned(),
        ),
        (
            "not something I can help with",
            0.85,
            r"\bnot\s+(?:something|a\s+request)\s+(?:that\s+)?i\s+(?:can|am\s+able\s+to|will|could)\s+(?:help|assist)".to_owned(),
        ),
    ]
    .into_iter()
    .filter_map(|(name, weight, p)| compile(&format!("(?i){p}")).map(|re| (name, weight, re)))
    .collect()
});

/// Refusals ("I'm sorry, but I can't help with that", "As an AI language
/// model, I cannot", "I cannot comply", "I won't be able to assist"…): the
/// best-scoring phrase, counted fully in the first [`REFUSAL_WINDOW`]
/// characters and at 60% after. One finding or none.
pub fn refusal(output: &str) -> Vec<Finding> {
    let window_end = output
        .char_indices()
        .nth(REFUSAL_WINDOW)
        .map_or(output.len(), |(at, _)| at);
    let mut best: Option<(f64, &'static str, Span, bool)> = None;
    for (name, weight, re) in REFUSALS.iter() {
        let Some(m) = re.find(output) else { continue };
        let early = m.start() < window_end;
        let score = if early { *weight } else { weight * 0.6 };
        if best.is_none_or(|(b, ..)| score > b) {
            best = Some((
                score,
                name,
                Span {
                    start: m.start(),
                    end: m.end(),
                },
                early,
            ));
        }
    }
    best.map(|(score, name, span, early)| Finding {
        check: "refusal",
        kind: "REFUSAL",
        span: Some(span),
        score,
        detail: format!(
            "refusal phrase \"{name}\" {}",
            if early {
                "at the start of the output"
            } else {
                "late in the output (counted at 60%)"
            }
        ),
    })
    .into_iter()
    .collect()
}

/// A denied term, ready to match.
#[derive(Debug, Clone)]
struct Term {
    /// As configured, for the finding's detail.
    original: String,
    /// Its folded, leet-read words (empty for a literal term).
    words: Vec<String>,
    /// For terms with symbols: a case-insensitive literal regex.
    literal: Option<Regex>,
}

/// Denied topics and terms, compiled once.
#[derive(Debug, Clone)]
pub struct DeniedTerms {
    terms: Vec<Term>,
    patterns: Vec<Regex>,
    max_distance: usize,
}

impl DeniedTerms {
    /// `terms` are matched on word boundaries after folding (plus fuzzy
    /// matching within `max_distance` edits for words of
    /// [`FUZZY_MIN_CHARS`]+ characters); `patterns` are regexes over the
    /// original text. Fails on the first pattern that does not compile.
    pub fn new(
        terms: &[String],
        patterns: &[String],
        max_distance: usize,
    ) -> Result<DeniedTerms, regex::Error> {
        let mut compiled = Vec::with_capacity(terms.len());
        for term in terms {
            let folded = fold(term);
            if folded.is_empty() {
                continue;
            }
            let plain = folded
                .chars()
                .all(|c| c.is_alphanumeric() || c == ' ' || is_leet(c));
            if plain {
                let words: Vec<String> = words(term, is_leet)
                    .into_iter()
                    .map(|w| unleet(&w.folded))
                    .collect();
                if !words.is_empty() {
                    compiled.push(Term {
                        original: term.clone(),
                        words,
                        literal: None,
                    });
                }
            } else {
                let body: Vec<String> = term.split_whitespace().map(regex::escape).collect();
                // A word boundary on each side that is a word character.
                let edge = |c: Option<char>| {
                    if c.is_some_and(char::is_alphanumeric) {
                        r"\b"
                    } else {
                        ""
                    }
                };
                let trimmed = term.trim();
                let pattern = format!(
                    "(?i){}{}{}",
                    edge(trimmed.chars().next()),
                    body.join(r"\s+"),
                    edge(trimmed.chars().next_back())
                );
                compiled.push(Term {
                    original: term.clone(),
                    words: Vec::new(),
                    literal: Some(Regex::new(&pattern)?),
                });
            }
        }
        let patterns = patterns
            .iter()
            .map(|p| Regex::new(p))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(DeniedTerms {
            terms: compiled,
            patterns,
            max_distance,
        })
    }

    /// Every occurrence of a denied term or pattern in `text`, with its
    /// span in `text`: score 1.0 for an exact (or leetspeak) match, `1 -
    /// edits / term length` for a fuzzy one, 1.0 for a pattern.
    pub fn detect(&self, text: &str) -> Vec<Finding> {
        let mut found = Vec::new();
        let tokens: Vec<(Span, String, String)> = words(text, is_leet)
            .into_iter()
            .map(|w| {
                let leet = unleet(&w.folded);
                (w.span, w.folded, leet)
            })
            .collect();
        for term in &self.terms {
            if let Some(literal) = &term.literal {
                for m in literal.find_iter(text) {
                    found.push(denied(
                        Span {
                            start: m.start(),
                            end: m.end(),
                        },
                        1.0,
                        format!("denied term \"{}\" (literal)", term.original),
                    ));
                }
                continue;
            }
            let n = term.words.len();
            for window in tokens.windows(n) {
                let mut edits = 0;
                let matched = window
                    .iter()
                    .zip(&term.words)
                    .all(
                        |((_, folded, leet), word)| match self.distance(folded, leet, word) {
                            Some(d) => {
                                edits += d;
                                true
                            }
                            None => false,
                        },
                    );
                if !matched {
                    continue;
                }
                let (Some(first), Some(last)) = (window.first(), window.last()) else {
                    continue;
                };
                let span = Span {
                    start: first.0.start,
                    end: last.0.end,
                };
                let chars: usize = term.words.iter().map(|w| w.chars().count()).sum();
                let (score, how) = if edits == 0 {
                    (1.0, "exact".to_owned())
                } else {
                    (
                        (1.0 - edits as f64 / chars.max(1) as f64).clamp(0.0, 1.0),
                        format!("fuzzy, {edits} edit{}", if edits == 1 { "" } else { "s" }),
                    )
                };
                found.push(denied(
                    span,
                    score,
                    format!("denied term \"{}\" ({how})", term.original),
                ));
            }
        }
        for (i, pattern) in self.patterns.iter().enumerate() {
            for m in pattern.find_iter(text) {
                if m.is_empty() {
                    continue;
                }
                found.push(denied(
                    Span {
                        start: m.start(),
                        end: m.end(),
                    },
                    1.0,
                    format!("denied pattern #{} (`{}`)", i + 1, pattern.as_str()),
                ));
            }
        }
        found.sort_by_key(|f| f.span.map(|s| (s.start, s.end)));
        found
    }

    /// Edits between a text word (folded, and leet-read) and a term word:
    /// 0 when either form is equal; else, for long enough terms, the
    /// optimal-string-alignment distance when within `max_distance`.
    fn distance(&self, folded: &str, leet: &str, word: &str) -> Option<usize> {
        if folded == word || leet == word {
            return Some(0);
        }
        let len = word.chars().count();
        if self.max_distance == 0 || len < FUZZY_MIN_CHARS {
            return None;
        }
        let other = leet.chars().count();
        if other.abs_diff(len) > self.max_distance {
            return None;
        }
        let d = strsim::osa_distance(leet, word).min(strsim::osa_distance(folded, word));
        (d <= self.max_distance).then_some(d)
    }
}

fn denied(span: Span, score: f64, detail: String) -> Finding {
    Finding {
        check: "denied_terms",
        kind: "DENIED_TERM",
        span: Some(span),
        score,
        detail,
    }
}

/// Characters leetspeak uses for letters, kept inside words for
/// denied-term matching.
fn is_leet(c: char) -> bool {
    matches!(c, '@' | '$')
}

/// One `TOO_LONG` finding (no span) when `text` has more than `max_chars`
/// characters.
pub fn max_length(text: &str, max_chars: usize) -> Vec<Finding> {
    // Bytes bound chars from above: no counting when the bytes fit.
    if text.len() <= max_chars {
        return Vec::new();
    }
    let chars = text.chars().count();
    if chars <= max_chars {
        return Vec::new();
    }
    vec![Finding {
        check: "max_length",
        kind: "TOO_LONG",
        span: None,
        score: 1.0,
        detail: format!("{chars} characters, over the limit of {max_chars}"),
    }]
}

#[cfg(test)]
pub(crate) fn refusal_pattern_count() -> usize {
    REFUSALS.len()
}
