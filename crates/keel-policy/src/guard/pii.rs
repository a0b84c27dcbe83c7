//! Personal data in free text: e-mail addresses, phone numbers, payment card
//! numbers, IBANs, US social security numbers and IP addresses.
//!
//! How: one candidate regex per kind over the text with its invisible
//! characters skipped (see the [`guard`](super) overview), then a validator that
//! decides — a checksum wherever the format has one:
//!
//! | kind | candidate | validated by | score |
//! |---|---|---|---|
//! | `EMAIL` | `local@domain.tld` | shape only | 0.9 |
//! | `PHONE` | `+CC …`, `(AAA) …`, `AAA-EEE-NNNN`, `0… …` (trunk prefix) | 8–15 digits with a `+`, 9–15 without (E.164 allows 15), not part of a longer number | 0.6–0.9 |
//! | `CARD` | 13–19 digits, spaces or dashes between | Luhn, not all zeros | 1.0 with a known IIN prefix, else 0.8 |
//! | `IBAN` | 2 letters, 2 digits, 11–30 alphanumerics, spaces allowed | mod-97 and the country's BBAN format and length (`iban_validate`) | 1.0 |
//! | `US_SSN` | `AAA-GG-SSSS` | area not 000/666/9xx, group not 00, serial not 0000 | 0.85 |
//! | `IP` | dotted quad; hex groups with `:` | `std::net` parsing | 0.8 |
//!
//! When two candidates overlap, the more specific wins, in this order:
//! e-mail, IBAN, card, SSN, IPv6, IPv4, phone.
//!
//! Known limits and decisions:
//! - names and postal addresses are not detected;
//! - a dotted quad is an IPv4 address even when it is a version number
//!   (`1.2.3.4`), except right after `v`/`version`/`ver`; a longer dotted
//!   run (`1.2.3.4.5`) is not one;
//! - ISO dates (`2024-01-15`), versions and plain digit runs without a `+`
//!   or separators are not phone numbers; a grouped number of the right
//!   shape still is (`555 123 4567` reads like a US number);
//! - a 13–19 digit number that passes Luhn by chance (one in ten do) is a
//!   card, scored 0.8 unless its prefix is a known issuer's;
//! - SSNs must use dashes (`123 45 6789` with spaces is too ambiguous);
//! - full-width digits and homoglyphs are not folded here (the injection
//!   detector's [`super::normalize`] does that; personal data in
//!   full-width digits is rare and folding would move spans).

use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::LazyLock;

use iban::IbanLike as _;
use regex::Regex;

use super::{Cleaned, Finding, Found, Span, char_at, char_before, compile, finish};

const CHECK: &str = "pii";

static EMAIL: LazyLock<Option<Regex>> = LazyLock::new(|| {
    compile(
        r"(?i-u)\b[a-z0-9][a-z0-9._%+\-]{0,63}@(?:[a-z0-9](?:[a-z0-9\-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}\b",
    )
});

/// Phone candidates, each with its score and a name for the detail.
static PHONES: LazyLock<Vec<(&'static str, f64, Regex)>> = LazyLock::new(|| {
    [
        // International: `+` country code, then groups (one may be in
        // parentheses): "+44 20 7946 0958", "+1-555-123-4567", "+14155552671".
        (
            "international",
            0.9,
            r"\+[1-9][0-9]{0,2}(?:[ .\-]?(?:\([0-9]{1,4}\)|[0-9]{1,5})){1,6}",
        ),
        // An area code in parentheses: "(555) 123-4567", "1 (555) 123 4567".
        (
            "area code in parentheses",
            0.85,
            r"(?:1[ .\-]?)?\([0-9]{2,4}\)[ .\-]?[0-9]{3,4}[ .\-]?[0-9]{3,4}",
        ),
        // North American grouping: "555-123-4567", "555.123.4567".
        (
            "north american grouping",
            0.8,
            r"(?-u:\b)[0-9]{3}[ .\-][0-9]{3}[ .\-][0-9]{4}(?-u:\b)",
        ),
        // National numbers with a trunk prefix 0: "020 7946 0958",
        // "06 12 34 56 78".
        (
            "national with trunk prefix",
            0.6,
            r"(?-u:\b)0[0-9]{1,4}(?:[ .\-][0-9]{2,4}){2,4}(?-u:\b)",
        ),
    ]
    .into_iter()
    .filter_map(|(name, score, p)| compile(p).map(|re| (name, score, re)))
    .collect()
});

static CARD: LazyLock<Option<Regex>> =
    LazyLock::new(|| compile(r"(?-u:\b)[0-9](?:[ \-]?[0-9]){12,18}(?-u:\b)"));

static IBAN: LazyLock<Option<Regex>> =
    LazyLock::new(|| compile(r"(?-u:\b)[A-Z]{2}[0-9]{2}(?: ?[A-Za-z0-9]){11,30}(?-u:\b)"));

static SSN: LazyLock<Option<Regex>> =
    LazyLock::new(|| compile(r"(?-u:\b)([0-9]{3})-([0-9]{2})-([0-9]{4})(?-u:\b)"));

static IPV4: LazyLock<Option<Regex>> =
    LazyLock::new(|| compile(r"(?-u:\b)(?:[0-9]{1,3}\.){3}[0-9]{1,3}(?-u:\b)"));

static IPV6: LazyLock<Option<Regex>> =
    LazyLock::new(|| compile(r"[0-9A-Fa-f:]{2,}(?:\.[0-9]{1,3}){0,3}"));

/// Personal data in `text`; spans are byte offsets into `text`.
pub fn detect(text: &str) -> Vec<Finding> {
    let cleaned = Cleaned::new(text);
    let t: &str = &cleaned.text;
    let mut found: Found = Vec::new();
    // Pushed in order of preference; `drop_overlapping` keeps the first.
    emails(t, &mut found);
    ibans(t, &mut found);
    cards(t, &mut found);
    ssns(t, &mut found);
    ipv6s(t, &mut found);
    ipv4s(t, &mut found);
    phones(t, &mut found);
    finish(CHECK, &cleaned, found)
}

fn emails(t: &str, found: &mut Found) {
    let Some(re) = EMAIL.as_ref() else { return };
    for m in re.find_iter(t) {
        found.push((
            Span {
                start: m.start(),
                end: m.end(),
            },
            "EMAIL",
            0.9,
            "e-mail address".to_owned(),
        ));
    }
}

/// The ends to try for a candidate at `start..end`: the whole of it, then
/// without its trailing space- or dash-separated groups, longest first, so
/// that one failing validation is retried shorter ("4111 1111 1111 1111 20"
/// is a card and the start of something else).
fn shorter_candidates(t: &str, start: usize, end: usize) -> Vec<usize> {
    let mut ends = vec![end];
    if let Some(s) = t.get(start..end) {
        let mut cuts: Vec<usize> = s
            .char_indices()
            .filter(|&(_, c)| c == ' ' || c == '-')
            .map(|(at, _)| start + at)
            .collect();
        cuts.reverse();
        ends.extend(cuts);
    }
    ends
}

fn cards(t: &str, found: &mut Found) {
    let Some(re) = CARD.as_ref() else { return };
    for m in re.find_iter(t) {
        if continues_number(t, m.start(), m.end()) {
            continue;
        }
        for end in shorter_candidates(t, m.start(), m.end()) {
            let Some(candidate) = t.get(m.start()..end) else {
                continue;
            };
            let digits: Vec<u32> = candidate.chars().filter_map(|c| c.to_digit(10)).collect();
            if !(13..=19).contains(&digits.len()) {
                continue;
            }
            if digits.iter().all(|&d| d == 0) || !luhn(&digits) {
                continue;
            }
            let (score, detail) = match issuer(&digits) {
                Some(brand) => (1.0, format!("card number ({brand}, Luhn-valid)")),
                None => (0.8, "card number (Luhn-valid, unknown issuer)".to_owned()),
            };
            found.push((
                Span {
                    start: m.start(),
                    end,
                },
                "CARD",
                score,
                detail,
            ));
            break;
        }
    }
}

/// The Luhn check (ISO/IEC 7812): double every second digit from the
/// right, subtract 9 from doubles over 9; the sum must end in 0. A dozen
/// lines, so hand-written rather than a dependency.
fn luhn(digits: &[u32]) -> bool {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            if i % 2 == 1 {
                let doubled = d * 2;
                if doubled > 9 { doubled - 9 } else { doubled }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// The card brand from the issuer identification number (leading digits),
/// for the major networks only; `None` is not a reason to drop a
/// Luhn-valid number, only to score it lower.
fn issuer(digits: &[u32]) -> Option<&'static str> {
    let prefix = |n: usize| -> u32 { digits.iter().take(n).fold(0, |acc, &d| acc * 10 + d) };
    let (p1, p2, p3, p4, p6) = (prefix(1), prefix(2), prefix(3), prefix(4), prefix(6));
    let brand = if p1 == 4 {
        "visa"
    } else if (51..=55).contains(&p2) || (2221..=2720).contains(&p4) {
        "mastercard"
    } else if p2 == 34 || p2 == 37 {
        "amex"
    } else if p4 == 6011 || p2 == 65 || (644..=649).contains(&p3) {
        "discover"
    } else if (622_126..=622_925).contains(&p6) || p2 == 62 {
        "unionpay"
    } else if (3528..=3589).contains(&p4) {
        "jcb"
    } else if (300..=305).contains(&p3) || p2 == 36 || p2 == 38 {
        "diners"
    } else if p2 == 50 || (56..=58).contains(&p2) || p2 == 63 || p2 == 67 {
        "maestro"
    } else {
        return None;
    };
    Some(brand)
}

fn ibans(t: &str, found: &mut Found) {
    let Some(re) = IBAN.as_ref() else { return };
    for m in re.find_iter(t) {
        for end in shorter_candidates(t, m.start(), m.end()) {
            let Some(candidate) = t.get(m.start()..end) else {
                continue;
            };
            let compact: String = candidate
                .chars()
                .filter(|c| *c != ' ')
                .map(|c| c.to_ascii_uppercase())
                .collect();
            // `iban_validate` checks the mod-97 check digits and the
            // country's registered BBAN format and length.
            if let Ok(iban) = compact.parse::<iban::Iban>() {
                found.push((
                    Span {
                        start: m.start(),
                        end,
                    },
                    "IBAN",
                    1.0,
                    format!("IBAN ({}, mod-97 valid)", iban.country_code()),
                ));
                break;
            }
        }
    }
}

fn ssns(t: &str, found: &mut Found) {
    let Some(re) = SSN.as_ref() else { return };
    for caps in re.captures_iter(t) {
        let (Some(all), Some(area), Some(group), Some(serial)) =
            (caps.get(0), caps.get(1), caps.get(2), caps.get(3))
        else {
            continue;
        };
        if continues_number(t, all.start(), all.end()) {
            continue;
        }
        let area = area.as_str();
        // Never issued: area 000, 666 and 900–999, group 00, serial 0000.
        if area == "000"
            || area == "666"
            || area.starts_with('9')
            || group.as_str() == "00"
            || serial.as_str() == "0000"
        {
            continue;
        }
        found.push((
            Span {
                start: all.start(),
                end: all.end(),
            },
            "US_SSN",
            0.85,
            "US social security number (valid area/group/serial)".to_owned(),
        ));
    }
}

fn ipv4s(t: &str, found: &mut Found) {
    let Some(re) = IPV4.as_ref() else { return };
    for m in re.find_iter(t) {
        if continues_number(t, m.start(), m.end()) || after_version_word(t, m.start()) {
            continue;
        }
        if let Ok(ip) = m.as_str().parse::<Ipv4Addr>() {
            let class = if ip.is_loopback() {
                "loopback"
            } else if ip.is_private() {
                "private"
            } else {
                "public"
            };
            found.push((
                Span {
                    start: m.start(),
                    end: m.end(),
                },
                "IP",
                0.8,
                format!("IPv4 address ({class})"),
            ));
        }
    }
}

fn ipv6s(t: &str, found: &mut Found) {
    let Some(re) = IPV6.as_ref() else { return };
    for m in re.find_iter(t) {
        let (mut start, mut end) = (m.start(), m.end());
        // "addr:fe80::1": a single leading colon belongs to the prose.
        if t.get(start..end)
            .is_some_and(|s| s.starts_with(':') && !s.starts_with("::"))
        {
            start += 1;
        }
        // A sentence may end right after the address: drop trailing dots
        // and colons that would make it unparsable.
        while let Some(c) = char_before(t, end).filter(|c| *c == '.' || *c == ':') {
            if end <= start + 2 {
                break;
            }
            // "::" at the end is part of the address ("fe80::").
            if c == ':' && t.get(..end).is_some_and(|h| h.ends_with("::")) {
                break;
            }
            end -= 1;
        }
        let Some(candidate) = t.get(start..end) else {
            continue;
        };
        let word = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
        if word(char_before(t, start)) || word(char_at(t, end)) {
            continue;
        }
        // At least two colons and a digit: "a::b" in code, "12:30" times and
        // lone "::" are not addresses worth reporting.
        if candidate.matches(':').count() < 2 || !candidate.chars().any(|c| c.is_ascii_digit()) {
            continue;
        }
        if candidate.parse::<Ipv6Addr>().is_ok() {
            found.push((Span { start, end }, "IP", 0.8, "IPv6 address".to_owned()));
        }
    }
}

fn phones(t: &str, found: &mut Found) {
    for (name, score, re) in PHONES.iter() {
        for m in re.find_iter(t) {
            if continues_number(t, m.start(), m.end()) {
                continue;
            }
            // "+1 (555)…" starts with a `+` the regex may not have taken.
            if m.as_str().starts_with('(') && char_before(t, m.start()) == Some('+') {
                continue;
            }
            let digits = m.as_str().chars().filter(char::is_ascii_digit).count();
            let enough = if m.as_str().starts_with('+') { 8 } else { 9 };
            if !(enough..=15).contains(&digits) {
                continue;
            }
            found.push((
                Span {
                    start: m.start(),
                    end: m.end(),
                },
                "PHONE",
                *score,
                format!("phone number ({name})"),
            ));
        }
    }
}

/// Whether `start..end` is only part of a longer number: digits, or a
/// separator followed by a digit, right before or after it ("1-555-123-4567"
/// seen from "555-123-4567", "1.2.3.4.5", "ID 12345-678-90-1234").
fn continues_number(t: &str, start: usize, end: usize) -> bool {
    let is_sep = |c: char| matches!(c, '.' | '-' | '/' | ':' | ',');
    let before = char_before(t, start);
    let after = char_at(t, end);
    if before.is_some_and(|c| c.is_ascii_digit() || c.is_alphabetic())
        || after.is_some_and(|c| c.is_ascii_digit() || c.is_alphabetic())
    {
        return true;
    }
    if before.is_some_and(is_sep) {
        let head = t.get(..start.saturating_sub(1)).unwrap_or("");
        if head.chars().next_back().is_some_and(|c| c.is_ascii_digit()) {
            return true;
        }
    }
    if after.is_some_and(is_sep) {
        let tail = t.get(end.saturating_add(1)..).unwrap_or("");
        if tail.chars().next().is_some_and(|c| c.is_ascii_digit()) {
            return true;
        }
    }
    false
}

/// Whether the dotted quad at `start` follows the word `v`, `ver` or
/// `version` ("version 1.2.3.4", "ver: 1.2.3.4"): a version number, not an
/// address.
fn after_version_word(t: &str, start: usize) -> bool {
    let head = t.get(..start).unwrap_or("");
    let word = head
        .trim_end_matches([' ', ':', '='])
        .rsplit(|c: char| !c.is_alphanumeric())
        .next()
        .unwrap_or("")
        .to_ascii_lowercase();
    matches!(word.as_str(), "v" | "ver" | "version")
}

#[cfg(test)]
pub(crate) fn patterns_compile() -> bool {
    EMAIL.is_some()
        && PHONES.len() == 4
        && CARD.is_some()
        && IBAN.is_some()
        && SSN.is_some()
        && IPV4.is_some()
        && IPV6.is_some()
}
