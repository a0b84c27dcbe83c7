//! Credentials in free text: provider API keys, cloud and chat tokens,
//! JWTs, PEM private keys, and anything else that looks like a random
//! token.
//!
//! How: known token shapes first, each a regex over the text with its
//! invisible characters skipped (see the [`guard`](super) overview), some with a
//! validator:
//!
//! | kind | shape | extra check | score |
//! |---|---|---|---|
//! | `ANTHROPIC_KEY` | `sk-ant-` + 20+ | — | 0.99 |
//! | `OPENAI_KEY` | `sk-`, `sk-proj-`, `sk-svcacct-`, `sk-admin-` + 20+ | body has letters and digits | 0.95 |
//! | `AWS_ACCESS_KEY` | `AKIA`/`ASIA` + 16 uppercase alphanumerics | — | 0.95 |
//! | `AWS_SECRET_KEY` | exactly 40 `[A-Za-z0-9/+]` | "aws" or "secret" in the 80 bytes before; letters and digits | 0.9 |
//! | `GITHUB_TOKEN` | `ghp_`/`gho_`/`ghu_`/`ghs_`/`ghr_` + 30+, `github_pat_` + 22+ | — | 0.99 |
//! | `SLACK_TOKEN` | `xoxa-`/`xoxb-`/`xoxp-`/`xoxr-`/`xoxs-` + 10+ | — | 0.95 |
//! | `JWT` | three base64url parts | the header decodes to a JSON object with `"alg"` | 0.99 |
//! | `PRIVATE_KEY` | `-----BEGIN … PRIVATE KEY-----` to its `END` line (or, cut off, to the end of its base64 lines) | — | 1.0 |
//! | `HIGH_ENTROPY` | a run of 20+ `[A-Za-z0-9+/_=-]` | see below | 0.5–0.8 |
//!
//! The generic `HIGH_ENTROPY` check reports a run that no shape above
//! claimed when all of these hold: it has both letters and digits; it is
//! not hex only (git SHAs, digests and UUIDs are everywhere and benign — the
//! price is that hex-encoded secrets are missed); its longest piece between
//! `-`, `_`, `/` and `.` is at least 12 characters (so `x86_64-unknown-linux-gnu`
//! or a path is not a token); less than [`MAX_WORDINESS`] of it is in
//! word-like pieces (`[A-Z]?[a-z]{3,}`: `AbstractSingletonProxyFactoryBean2`
//! is an identifier); and its Shannon entropy is at least
//! [`ENTROPY_BITS`] bits per character, or, for runs shorter than 32
//! characters (whose entropy cannot reach that), at least
//! [`ENTROPY_SHORT_RATIO`] of the maximum `log2(length)`. Random base62 of
//! length 20 scores about 4.1 bits; English words and identifiers stay
//! near 3–3.5.
//!
//! Known limits: tokens split by spaces or line breaks are missed (a PEM
//! block is the exception); vendor keys without a prefix are only caught as
//! generic high entropy; a long random-looking identifier in code (a
//! base64 blob, a content hash in base64) is reported as `HIGH_ENTROPY`.
//! Details never show a secret: at most its first four characters.

use std::sync::LazyLock;

use base64::Engine as _;
use regex::Regex;

use super::{Cleaned, Finding, Found, Span, char_at, char_before, compile, finish, mask};

const CHECK: &str = "secrets";

/// The entropy, in bits per character, from which a long run is reported.
pub const ENTROPY_BITS: f64 = 4.0;
/// For runs shorter than 32 characters: the fraction of `log2(len)` (the
/// most a run of that length can have) from which it is reported.
pub const ENTROPY_SHORT_RATIO: f64 = 0.9;
/// Runs with at least this share of their characters in word-like pieces
/// (`[A-Z]?[a-z]{3,}`) are identifiers, not tokens
/// (`AbstractSingletonProxyFactoryBean2`); random base62 stays near 0.2.
pub const MAX_WORDINESS: f64 = 0.6;
/// Bytes of text before a 40-character candidate searched for "aws" or
/// "secret".
const AWS_CONTEXT: usize = 80;

/// The token shapes that need no validator: kind, name, score, pattern.
static SHAPES: LazyLock<Vec<(&'static str, &'static str, f64, Regex)>> = LazyLock::new(|| {
    [
        (
            "ANTHROPIC_KEY",
            "sk-ant- prefix",
            0.99,
            r"(?-u:\b)sk-ant-[A-Za-z0-9_\-]{20,}",
        ),
        (
            "AWS_ACCESS_KEY",
            "AKIA/ASIA access key id",
            0.95,
            r"(?-u:\b)(?:AKIA|ASIA)[A-Z0-9]{16}(?-u:\b)",
        ),
        (
            "GITHUB_TOKEN",
            "gh*_ / github_pat_ prefix",
            0.99,
            r"(?-u:\b)(?:gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{22,})",
        ),
        (
            "SLACK_TOKEN",
            "xox*- prefix",
            0.95,
            r"(?-u:\b)xox[abprs]-[A-Za-z0-9\-]{10,}",
        ),
        (
            "PRIVATE_KEY",
            "PEM private key block",
            1.0,
            // The whole block when it has its END line; else, cut off, the
            // BEGIN line and the base64 lines that follow it.
            r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----(?:[\s\S]*?-----END [A-Z0-9 ]*PRIVATE KEY-----|(?:\r?\n[A-Za-z0-9+/=:,\-]{1,100})*)",
        ),
    ]
    .into_iter()
    .filter_map(|(kind, name, score, p)| compile(p).map(|re| (kind, name, score, re)))
    .collect()
});

static OPENAI: LazyLock<Option<Regex>> =
    LazyLock::new(|| compile(r"(?-u:\b)sk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_\-]{20,}"));

static JWT: LazyLock<Option<Regex>> = LazyLock::new(|| {
    compile(r"(?-u:\b)eyJ[A-Za-z0-9_\-]{5,}={0,2}\.[A-Za-z0-9_\-]{2,}={0,2}\.[A-Za-z0-9_\-]*={0,2}")
});

static RUN: LazyLock<Option<Regex>> = LazyLock::new(|| compile(r"[A-Za-z0-9+/_\-]{20,}={0,2}"));

/// Credentials in `text`; spans are byte offsets into `text`.
pub fn detect(text: &str) -> Vec<Finding> {
    let cleaned = Cleaned::new(text);
    let t: &str = &cleaned.text;
    let mut found: Found = Vec::new();
    for (kind, name, score, re) in SHAPES.iter() {
        for m in re.find_iter(t) {
            found.push((
                Span {
                    start: m.start(),
                    end: m.end(),
                },
                kind,
                *score,
                format!("{name}: {}", mask(m.as_str())),
            ));
        }
    }
    openai_keys(t, &mut found);
    jwts(t, &mut found);
    let runs = runs(t);
    aws_secrets(t, &runs, &mut found);
    high_entropy(t, &runs, &mut found);
    finish(CHECK, &cleaned, found)
}

fn openai_keys(t: &str, found: &mut Found) {
    let Some(re) = OPENAI.as_ref() else { return };
    for m in re.find_iter(t) {
        let key = m.as_str();
        if key.starts_with("sk-ant-") {
            continue;
        }
        // Random keys have letters and digits; "sk-learn-is-a-python-library"
        // has no digit.
        let body = key.trim_start_matches("sk-");
        if !has_letters_and_digits(body) {
            continue;
        }
        found.push((
            Span {
                start: m.start(),
                end: m.end(),
            },
            "OPENAI_KEY",
            0.95,
            format!("sk- prefix: {}", mask(key)),
        ));
    }
}

fn jwts(t: &str, found: &mut Found) {
    let Some(re) = JWT.as_ref() else { return };
    for m in re.find_iter(t) {
        let header = m.as_str().split('.').next().unwrap_or("");
        let header = header.trim_end_matches('=');
        let Ok(bytes) = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(header) else {
            continue;
        };
        let is_jwt_header = serde_json::from_slice::<serde_json::Value>(&bytes)
            .is_ok_and(|v| v.get("alg").is_some());
        if !is_jwt_header {
            continue;
        }
        found.push((
            Span {
                start: m.start(),
                end: m.end(),
            },
            "JWT",
            0.99,
            format!("JWT (header has \"alg\"): {}", mask(m.as_str())),
        ));
    }
}

/// Maximal runs of token characters, not glued to other word characters.
fn runs(t: &str) -> Vec<Span> {
    let Some(re) = RUN.as_ref() else {
        return Vec::new();
    };
    re.find_iter(t)
        .filter(|m| {
            let glued = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric());
            !glued(char_before(t, m.start())) && !glued(char_at(t, m.end()))
        })
        .map(|m| Span {
            start: m.start(),
            end: m.end(),
        })
        .collect()
}

fn aws_secrets(t: &str, runs: &[Span], found: &mut Found) {
    for run in runs {
        let Some(s) = run.slice(t) else { continue };
        // A secret access key is exactly 40 characters of base64 (a run's
        // trailing `=` padding is not part of it).
        let key = s.trim_end_matches('=');
        if key.len() != 40
            || !key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '/' || c == '+')
        {
            continue;
        }
        if !has_letters_and_digits(key) {
            continue;
        }
        let from = floor_char_boundary(t, run.start.saturating_sub(AWS_CONTEXT));
        let context = t.get(from..run.start).unwrap_or("").to_ascii_lowercase();
        if !(context.contains("aws") || context.contains("secret")) {
            continue;
        }
        found.push((
            Span {
                start: run.start,
                end: run.start + key.len(),
            },
            "AWS_SECRET_KEY",
            0.9,
            format!("40-char key after \"aws\"/\"secret\": {}", mask(key)),
        ));
    }
}

fn high_entropy(t: &str, runs: &[Span], found: &mut Found) {
    for run in runs {
        let Some(s) = run.slice(t) else { continue };
        // Padding and separators at the edges carry no randomness.
        let s = s.trim_end_matches('=');
        if s.len() < 20 || !has_letters_and_digits(s) {
            continue;
        }
        if s.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
            continue;
        }
        let longest_piece = s
            .split(['-', '_', '/', '.'])
            .map(str::len)
            .max()
            .unwrap_or(0);
        if longest_piece < 12 || wordiness(s) >= MAX_WORDINESS {
            continue;
        }
        let bits = entropy(s);
        let max_bits = (s.len() as f64).log2();
        let threshold = if s.len() >= 32 {
            ENTROPY_BITS
        } else {
            (ENTROPY_SHORT_RATIO * max_bits).min(ENTROPY_BITS)
        };
        if bits < threshold {
            continue;
        }
        // 0.5 at the threshold, up to 0.8 a bit and a half above it.
        let score = (0.5 + (bits - threshold) * 0.2).clamp(0.5, 0.8);
        found.push((
            Span {
                start: run.start,
                end: run.start + s.len(),
            },
            "HIGH_ENTROPY",
            score,
            format!(
                "random-looking token, {bits:.2} bits/char (threshold {threshold:.2}): {}",
                mask(s)
            ),
        ));
    }
}

/// Shannon entropy of the characters of `s`, in bits per character.
pub(crate) fn entropy(s: &str) -> f64 {
    let mut counts = [0usize; 256];
    let mut n = 0usize;
    for b in s.bytes() {
        if let Some(slot) = counts.get_mut(usize::from(b)) {
            *slot += 1;
        }
        n += 1;
    }
    if n == 0 {
        return 0.0;
    }
    let n = n as f64;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = c as f64 / n;
            -p * p.log2()
        })
        .sum()
}

/// The share of `s`'s characters inside word-like pieces: an optional
/// capital then three or more lowercase letters.
fn wordiness(s: &str) -> f64 {
    let bytes = s.as_bytes();
    let mut in_words = 0usize;
    let mut i = 0usize;
    while i < bytes.len() {
        let start = i;
        if bytes.get(i).is_some_and(u8::is_ascii_uppercase) {
            i += 1;
        }
        let lower_start = i;
        while bytes.get(i).is_some_and(u8::is_ascii_lowercase) {
            i += 1;
        }
        if i - lower_start >= 3 {
            in_words += i - start;
        }
        if i == start {
            i += 1;
        }
    }
    in_words as f64 / bytes.len().max(1) as f64
}

fn has_letters_and_digits(s: &str) -> bool {
    s.chars().any(|c| c.is_ascii_alphabetic()) && s.chars().any(|c| c.is_ascii_digit())
}

/// The largest char boundary of `t` at or below `at`.
fn floor_char_boundary(t: &str, mut at: usize) -> usize {
    while at > 0 && !t.is_char_boundary(at) {
        at -= 1;
    }
    at
}

#[cfg(test)]
pub(crate) fn patterns_compile() -> bool {
    SHAPES.len() == 5 && OPENAI.is_some() && JWT.is_some() && RUN.is_some()
}
