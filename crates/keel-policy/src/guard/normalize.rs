//! The canonical text an injection detector reads, so that one pattern
//! catches its disguises.
//!
//! [`fold`] turns text into its canonical form, in this order:
//! 1. Unicode tag characters (U+E0020..U+E007E, invisible "ASCII
//!    smuggling") become the ASCII they shadow; other invisible characters
//!    (zero-width spaces and joiners, bidi controls, soft hyphens, variation
//!    selectors) are dropped;
//! 2. NFKC (`unicode-normalization`): full-width `ｉｇｎｏｒｅ`, mathematical
//!    `𝐢𝐠𝐧𝐨𝐫𝐞`, ligatures and the like become plain letters;
//! 3. homoglyphs are folded to ASCII: each non-ASCII character is
//!    lowercased and replaced by its UTS #39 confusable skeleton
//!    (`unicode-security`, the Unicode consortium's `confusables.txt`) with
//!    combining marks dropped, when that skeleton is ASCII — Cyrillic
//!    `і`/`о`/`е`, Greek `ο`, accented `ï` all become `i`/`o`/`e`/`i`; a
//!    character whose skeleton is not ASCII (CJK, most scripts) is kept.
//!    ASCII is never changed by this step (the skeleton would turn `m` into
//!    `rn` and `1` into `l`);
//! 4. lowercase;
//! 5. every run of whitespace becomes one space, trimmed at both ends.
//!
//! [`normalize`] also returns the decoded forms of what may hide an
//! instruction, each folded the same way and marked with how it was
//! decoded:
//! - `"base64"`: runs of 16+ base64 characters (standard or URL-safe
//!   alphabet, padding optional, lines of a wrapped block joined);
//! - `"hex"`: runs of 16+ hex digits, plain (`69676e6f7265`), `\x`-escaped
//!   or space-separated pairs;
//! - `"rot13"`: the whole folded text, rot13'd (when it has letters).
//!
//! A base64 or hex run counts only when it decodes to UTF-8 that is mostly
//! printable (at least 90% of its characters, with at least one letter):
//! git SHAs, UUIDs and random keys decode to binary and are skipped.
//! Decoded text is searched once more for base64/hex inside it (two layers
//! at most).
//!
//! Limits: at most [`MAX_DECODED`] decoded forms and [`MAX_DECODED_BYTES`]
//! decoded bytes per call; leetspeak (`1gn0re`) and spaced-out letters
//! (`i g n o r e`) are not undone here (the injection detector reads a
//! leet-folded copy itself); other encodings (URL-encoding, morse,
//! reversed text, other ciphers) are not decoded.

use std::sync::LazyLock;

use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use regex::Regex;
use unicode_normalization::UnicodeNormalization as _;
use unicode_normalization::char::is_combining_mark;

use super::{compile, is_invisible};

/// At most this many decoded forms per call.
pub const MAX_DECODED: usize = 32;
/// At most this many decoded bytes per call, all forms together.
pub const MAX_DECODED_BYTES: usize = 1 << 20;
/// Shortest base64 or hex run that is decoded.
const MIN_RUN: usize = 16;
/// Layers of encoding undone (base64 inside base64 is two).
const MAX_DEPTH: usize = 2;

/// The text an injection detector reads, and its decoded forms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Normalized {
    /// NFKC, zero-width and bidi controls removed, homoglyphs folded to
    /// ASCII, lowercased, whitespace collapsed: see [`fold`].
    pub text: String,
    /// Decoded forms of suspicious runs, each folded like `text`, marked
    /// with how it was decoded: `"base64"`, `"hex"` or `"rot13"`.
    pub decoded: Vec<(&'static str, String)>,
}

/// The text an injection detector reads: NFKC, zero-width and bidi controls
/// removed, homoglyphs folded to ASCII, lowercased, whitespace collapsed;
/// plus decoded forms of suspicious runs (base64 >= 16 chars that decodes to
/// mostly printable UTF-8, hex >= 16 chars likewise, and the whole text
/// rot13'd), each marked with how it was decoded.
pub fn normalize(text: &str) -> Normalized {
    let folded = fold(text);
    let mut decoded = Decoded::default();
    decoded.scan(&unhide(text), 1);
    if folded.chars().any(|c| c.is_ascii_alphabetic()) {
        decoded.push("rot13", rot13(&folded));
    }
    Normalized {
        text: folded,
        decoded: decoded.forms,
    }
}

/// The canonical form of `text` (steps 1 to 5 above), without decoding.
pub fn fold(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut space = false;
    for c in unhide(text).nfkc() {
        if c.is_whitespace() {
            space = !out.is_empty();
            continue;
        }
        if space {
            out.push(' ');
            space = false;
        }
        if c.is_ascii() {
            out.push(c.to_ascii_lowercase());
        } else {
            for lower in c.to_lowercase() {
                push_folded(&mut out, lower);
            }
        }
    }
    out
}

/// Step 1: tag characters become ASCII, other invisible characters go.
fn unhide(text: &str) -> String {
    text.chars()
        .filter_map(|c| match u32::from(c) {
            tag @ 0xE0020..=0xE007E => char::from_u32(tag - 0xE0000),
            _ if is_invisible(c) => None,
            _ => Some(c),
        })
        .collect()
}

/// Step 3 for one lowercased non-ASCII character: its confusable skeleton
/// without combining marks, when that is printable ASCII; else the
/// character.
fn push_folded(out: &mut String, c: char) {
    let mut buf = [0u8; 4];
    let one: &str = c.encode_utf8(&mut buf);
    let skeleton: String = unicode_security::skeleton(one)
        .filter(|s| !is_combining_mark(*s))
        .collect();
    // Only printable ASCII: a skeleton with a space or a control character
    // would break the collapsed whitespace.
    if !skeleton.is_empty() && skeleton.chars().all(|s| s.is_ascii_graphic()) {
        out.extend(skeleton.chars().map(|s| s.to_ascii_lowercase()));
    } else {
        out.push(c);
    }
}

/// rot13 of the ASCII letters; everything else as is.
pub fn rot13(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            'a'..='z' => rotate(c, b'a'),
            'A'..='Z' => rotate(c, b'A'),
            _ => c,
        })
        .collect()
}

fn rotate(c: char, base: u8) -> char {
    let offset = (c as u8).wrapping_sub(base);
    char::from(base + (offset + 13) % 26)
}

static BASE64_RUN: LazyLock<Option<Regex>> =
    LazyLock::new(|| compile(r"[A-Za-z0-9+/_\-]{16,}={0,2}(?:\r?\n[A-Za-z0-9+/_\-]{4,}={0,2})*"));

static HEX_RUN: LazyLock<Option<Regex>> = LazyLock::new(|| {
    compile(
        r"(?:[0-9A-Fa-f]{2}){8,}|(?:\\x[0-9A-Fa-f]{2}){8,}|(?:[0-9A-Fa-f]{2}[ :]){7,}[0-9A-Fa-f]{2}",
    )
});

/// Base64 decoding that takes either padding and ignores stray low bits.
fn engine(alphabet: &base64::alphabet::Alphabet) -> GeneralPurpose {
    GeneralPurpose::new(
        alphabet,
        GeneralPurposeConfig::new()
            .with_decode_padding_mode(DecodePaddingMode::Indifferent)
            .with_decode_allow_trailing_bits(true),
    )
}

static STANDARD: LazyLock<GeneralPurpose> = LazyLock::new(|| engine(&base64::alphabet::STANDARD));
static URL_SAFE: LazyLock<GeneralPurpose> = LazyLock::new(|| engine(&base64::alphabet::URL_SAFE));

#[derive(Default)]
struct Decoded {
    forms: Vec<(&'static str, String)>,
    bytes: usize,
}

impl Decoded {
    fn full(&self) -> bool {
        self.forms.len() >= MAX_DECODED || self.bytes >= MAX_DECODED_BYTES
    }

    fn push(&mut self, how: &'static str, folded: String) {
        if self.full() || folded.is_empty() || self.forms.iter().any(|(_, f)| *f == folded) {
            return;
        }
        self.bytes = self.bytes.saturating_add(folded.len());
        self.forms.push((how, folded));
    }

    /// Decodes the base64 and hex runs of `text` (invisible characters
    /// already removed, case kept), and the runs inside what they decode
    /// to, down to `MAX_DEPTH` layers.
    fn scan(&mut self, text: &str, depth: usize) {
        let mut found: Vec<(&'static str, String)> = Vec::new();
        if let Some(re) = BASE64_RUN.as_ref() {
            for m in re.find_iter(text) {
                if self.full() || found.len() >= MAX_DECODED {
                    break;
                }
                if let Some(plain) = decode_base64_run(m.as_str()) {
                    found.push(("base64", plain));
                }
            }
        }
        if let Some(re) = HEX_RUN.as_ref() {
            for m in re.find_iter(text) {
                if self.full() || found.len() >= MAX_DECODED {
                    break;
                }
                if let Some(plain) = decode_hex(m.as_str()) {
                    found.push(("hex", plain));
                }
            }
        }
        for (how, plain) in found {
            if self.full() {
                break;
            }
            self.push(how, fold(&plain));
            if depth < MAX_DEPTH {
                self.scan(&plain, depth + 1);
            }
        }
    }
}

/// A base64 run as text: the joined lines first, else the first line
/// alone (a wrapped block may have picked up a following word).
fn decode_base64_run(run: &str) -> Option<String> {
    let joined: String = run.chars().filter(|c| !c.is_whitespace()).collect();
    decode_base64(&joined).or_else(|| {
        let first = run.lines().next()?;
        (first.len() < joined.len())
            .then(|| decode_base64(first))
            .flatten()
    })
}

fn decode_base64(run: &str) -> Option<String> {
    let body = run.trim_end_matches('=');
    if body.len() < MIN_RUN {
        return None;
    }
    // A length of 4n+1 cannot be base64: the last character is a stray.
    let body = if body.len() % 4 == 1 {
        body.get(..body.len() - 1)?
    } else {
        body
    };
    let url_safe = body.contains(['-', '_']);
    let standard = body.contains(['+', '/']);
    let bytes = match (standard, url_safe) {
        (true, true) => return None,
        (false, true) => URL_SAFE.decode(body).ok()?,
        _ => STANDARD.decode(body).ok()?,
    };
    printable(bytes)
}

fn decode_hex(run: &str) -> Option<String> {
    let digits: Vec<u8> = run
        .replace("\\x", "")
        .bytes()
        .filter(u8::is_ascii_hexdigit)
        .collect();
    if digits.len() < MIN_RUN || digits.len() % 2 == 1 {
        return None;
    }
    let value = |d: u8| {
        char::from(d)
            .to_digit(16)
            .and_then(|v| u8::try_from(v).ok())
    };
    let bytes: Option<Vec<u8>> = digits
        .chunks_exact(2)
        .map(|pair| match pair {
            [hi, lo] => Some((value(*hi)? << 4) | value(*lo)?),
            _ => None,
        })
        .collect();
    printable(bytes?)
}

/// `bytes` as text when they are UTF-8, at least 90% printable (whitespace
/// counts as printable), with at least one letter.
fn printable(bytes: Vec<u8>) -> Option<String> {
    let text = String::from_utf8(bytes).ok()?;
    let total = text.chars().count();
    let shown = text
        .chars()
        .filter(|c| !c.is_control() || c.is_whitespace())
        .count();
    let ok = total > 0 && shown * 10 >= total * 9 && text.chars().any(char::is_alphabetic);
    ok.then_some(text)
}

#[cfg(test)]
pub(crate) fn patterns_compile() -> bool {
    BASE64_RUN.is_some() && HEX_RUN.is_some()
}

/// Leetspeak digits and symbols read as the letters they stand for.
pub(crate) fn unleet(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '0' => 'o',
            '1' => 'i',
            '3' => 'e',
            '4' => 'a',
            '5' => 's',
            '7' => 't',
            '@' => 'a',
            '$' => 's',
            _ => c,
        })
        .collect()
}
