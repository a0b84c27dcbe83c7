//! The repair pass of [`super::extract`]: one left-to-right rewrite of a
//! `{...}`/`[...]` container, no recursion, that applies the repairs listed
//! on [`Repair`] and, for a reply cut off mid-way, prepares both the closed
//! text and the text without its incomplete last member.
//!
//! It works on bytes: every byte it looks at is ASCII, and non-ASCII bytes
//! (always >= 0x80 in UTF-8) are copied whole, so the output stays UTF-8.

use super::Repair;

/// The container at the start of a candidate, rewritten with repairs.
pub(super) struct Rewrite {
    /// Input bytes it spans (all of them when truncated).
    pub(super) len: usize,
    pub(super) repairs: Vec<Repair>,
    /// The rewritten text; closed when the input was cut off.
    json: String,
    pub(super) truncated: Option<Truncated>,
}

pub(super) struct Truncated {
    in_string: bool,
    /// Ends in a digit: the number may be cut, so `json` is not tried.
    number_tail: bool,
    /// `json` without the innermost container's last member.
    without_last: String,
}

impl Rewrite {
    /// Texts to parse, best first, each with the repairs it adds.
    pub(super) fn attempts(&self) -> Vec<(&str, &'static [Repair])> {
        use Repair::{ClosedBrackets, ClosedString, DroppedIncompleteMember};
        let Some(t) = &self.truncated else {
            return vec![(&self.json, &[])];
        };
        let mut out = Vec::new();
        if !t.number_tail {
            let closed: &'static [Repair] = if t.in_string {
                &[ClosedString, ClosedBrackets]
            } else {
                &[ClosedBrackets]
            };
            out.push((self.json.as_str(), closed));
        }
        out.push((
            t.without_last.as_str(),
            &[ClosedBrackets, DroppedIncompleteMember],
        ));
        out
    }
}

pub(super) fn note(repairs: &mut Vec<Repair>, r: Repair) {
    if !repairs.contains(&r) {
        repairs.push(r);
    }
}

/// The next byte at or after `i` that is not whitespace.
fn next_significant(s: &[u8], i: usize) -> Option<u8> {
    s.get(i..)?
        .iter()
        .copied()
        .find(|b| !b.is_ascii_whitespace())
}

/// Rewrites the `{...}`/`[...]` container that starts `s`, one pass, no
/// recursion. `Err(bytes read)` when `s` does not start with a bracket or a
/// closer does not match.
pub(super) fn rewrite(s: &[u8]) -> Result<Rewrite, usize> {
    if !matches!(s.first(), Some(b'{' | b'[')) {
        return Err(1);
    }
    let mut out: Vec<u8> = Vec::with_capacity(s.len() + 8);
    let mut repairs = Vec::new();
    // Per open container: its closer and where its current member starts in `out`.
    let mut frames: Vec<(u8, usize)> = Vec::new();
    let mut quote: Option<u8> = None;
    // Position in `out` of a pending escape's backslash, and hex digits it still needs.
    let mut escape: Option<usize> = None;
    let mut hex_left = 0u8;
    let mut prev = 0u8; // last significant byte outside strings
    let mut i = 0;
    while let Some(&b) = s.get(i) {
        i += 1;
        if let Some(q) = quote {
            if let Some(at) = escape {
                if hex_left > 0 {
                    hex_left -= 1;
                } else if b == b'u' {
                    hex_left = 4;
                } else if b == b'\'' && q == b'\'' {
                    out.truncate(at); // `\'` is not a JSON escape
                }
                if hex_left == 0 {
                    escape = None;
                }
                out.push(b);
            } else if b == b'\\' {
                escape = Some(out.len());
                out.push(b);
            } else if b == q
                && (q == b'"'
                    || matches!(
                        next_significant(s, i),
                        None | Some(b',' | b':' | b'}' | b']')
                    ))
            {
                quote = None;
                prev = b'"';
                out.push(b'"');
            } else if b == b'"' {
                out.extend_from_slice(b"\\\"");
            } else if b < 0x20 {
                note(&mut repairs, Repair::EscapedControlChars);
                match b {
                    b'\n' => out.extend_from_slice(b"\\n"),
                    b'\r' => out.extend_from_slice(b"\\r"),
                    b'\t' => out.extend_from_slice(b"\\t"),
                    _ => out.extend_from_slice(format!("\\u{b:04x}").as_bytes()),
                }
            } else {
                out.push(b);
            }
            continue;
        }
        match b {
            b'"' => quote = Some(b'"'),
            b'\'' if matches!(prev, b'{' | b'[' | b',' | b':') => {
                note(&mut repairs, Repair::SingleQuotes);
                quote = Some(b'\'');
                out.push(b'"');
                continue;
            }
            b'{' | b'[' => {
                out.push(b);
                frames.push((if b == b'{' { b'}' } else { b']' }, out.len()));
                prev = b;
                continue;
            }
            b'}' | b']' => {
                if frames.pop().map(|f| f.0) != Some(b) {
                    return Err(i);
                }
                if frames.is_empty() {
                    out.push(b);
                    let json = String::from_utf8(out).map_err(|_| i)?;
                    return Ok(Rewrite {
                        len: i,
                        repairs,
                        json,
                        truncated: None,
                    });
                }
            }
            b',' if matches!(next_significant(s, i), Some(b'}' | b']')) => {
                note(&mut repairs, Repair::TrailingComma);
                continue;
            }
            b',' => {
                out.push(b);
                if let Some(f) = frames.last_mut() {
                    f.1 = out.len();
                }
                prev = b;
                continue;
            }
            b'a'..=b'z' | b'A'..=b'Z' | b'_' | b'$'
                if matches!(prev, b'{' | b',') && frames.last().is_some_and(|f| f.0 == b'}') =>
            {
                let len = s
                    .get(i - 1..)
                    .unwrap_or_default()
                    .iter()
                    .take_while(|c| c.is_ascii_alphanumeric() || **c == b'_' || **c == b'$')
                    .count();
                if next_significant(s, i - 1 + len) == Some(b':') {
                    note(&mut repairs, Repair::UnquotedKeys);
                    out.push(b'"');
                    out.extend_from_slice(s.get(i - 1..i - 1 + len).unwrap_or_default());
                    out.push(b'"');
                    i += len - 1;
                    prev = b'"';
                    continue;
                }
            }
            _ => {}
        }
        out.push(b);
        if !b.is_ascii_whitespace() {
            prev = b;
        }
    }
    // Cut off: close the string, drop a dangling comma, close the brackets.
    let number_tail = quote.is_none() && s.last().is_some_and(u8::is_ascii_digit);
    let in_string = quote.is_some();
    if in_string {
        if let Some(at) = escape {
            out.truncate(at);
        }
        out.push(b'"');
    }
    let closers: Vec<u8> = frames.iter().rev().map(|f| f.0).collect();
    let close = |mut v: Vec<u8>| {
        while v
            .last()
            .is_some_and(|b| b.is_ascii_whitespace() || *b == b',')
        {
            v.pop();
        }
        v.extend_from_slice(&closers);
        String::from_utf8(v).map_err(|_| s.len())
    };
    let member = frames.last().map_or(0, |f| f.1).min(out.len());
    let without_last = close(out.get(..member).unwrap_or_default().to_vec())?;
    let truncated = Some(Truncated {
        in_string,
        number_tail,
        without_last,
    });
    Ok(Rewrite {
        len: s.len(),
        repairs,
        json: close(out)?,
        truncated,
    })
}
