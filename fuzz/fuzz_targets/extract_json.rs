//! `keel_policy::extract::extract` on arbitrary text (a model's reply).
//!
//! Invariants, from the module's documentation:
//! - nothing panics, with or without `want_object`;
//! - with `want_object`, only an object is returned;
//! - the value re-serializes and reads back as itself;
//! - repairs are recorded once each; `StrippedFence` / `StrippedProse` (the
//!   candidate's origin) come first and never both; closing a string or
//!   dropping an incomplete member always comes with `ClosedBrackets`;
//! - no repairs at all means the whole reply parses, as is, to the value
//!   (once trimmed of Unicode whitespace, as `str::trim` does);
//! - only an origin (fence or prose) and no real repair means the value is
//!   in the reply verbatim: parsing from some position of the text reads it;
//! - `want_object` only filters: when the unfiltered answer is an object,
//!   the filtered one is the same; when the filtered one exists, so does the
//!   unfiltered one.

#![no_main]

mod common;

use keel_policy::extract::{Extracted, Repair, extract};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let any = extract(text, false);
    let object = extract(text, true);
    for (found, want_object) in [(&any, false), (&object, true)] {
        if let Some(e) = found {
            check(text, e, want_object);
        }
    }
    if let Some(a) = &any
        && a.value.is_object()
    {
        assert_eq!(
            object.as_ref(),
            Some(a),
            "want_object changed an object answer"
        );
    }
    if object.is_some() {
        assert!(
            any.is_some(),
            "an object was found only when asking for an object"
        );
    }
});

fn check(text: &str, e: &Extracted, want_object: bool) {
    assert!(
        !want_object || e.value.is_object(),
        "want_object returned {}",
        e.value
    );

    let written = match serde_json::to_string(&e.value) {
        Ok(s) => s,
        Err(err) => panic!("the value does not serialize: {err}"),
    };
    match serde_json::from_str::<Value>(&written) {
        Ok(back) => assert!(
            common::json_eq(&back, &e.value),
            "{written} does not read back"
        ),
        Err(err) => panic!("re-serialized value does not parse ({err}): {written}"),
    }

    for (i, r) in e.repairs.iter().enumerate() {
        assert!(
            !e.repairs[..i].contains(r),
            "repair {r:?} recorded twice: {:?}",
            e.repairs
        );
        if matches!(r, Repair::StrippedFence | Repair::StrippedProse) {
            assert_eq!(i, 0, "origin not first: {:?}", e.repairs);
        }
    }
    for needs_close in [Repair::ClosedString, Repair::DroppedIncompleteMember] {
        if e.repairs.contains(&needs_close) {
            assert!(
                e.repairs.contains(&Repair::ClosedBrackets),
                "{needs_close:?} without ClosedBrackets: {:?}",
                e.repairs
            );
        }
    }

    let origin_only = e
        .repairs
        .iter()
        .all(|r| matches!(r, Repair::StrippedFence | Repair::StrippedProse));
    if e.repairs.is_empty() {
        // Trimmed as Rust trims (Unicode whitespace: a form feed or a
        // no-break space around the JSON is not recorded as a repair).
        match serde_json::from_str::<Value>(text.trim()) {
            Ok(v) => assert_eq!(
                v, e.value,
                "no repairs, yet the reply parses to another value"
            ),
            Err(err) => panic!("no repairs recorded, yet the reply does not parse: {err}"),
        }
    } else if origin_only {
        assert!(
            verbatim(text, &e.value),
            "{:?} and no repair, yet {} is not in the reply verbatim",
            e.repairs,
            e.value
        );
    }
}

/// Some position of `text` (its start, a bracket, or after whitespace) starts
/// a JSON value equal to `value`.
fn verbatim(text: &str, value: &Value) -> bool {
    let mut prev: Option<char> = None;
    text.char_indices().any(|(p, c)| {
        let plausible = p == 0
            || matches!(c, '{' | '[')
            || (!c.is_whitespace() && prev.is_some_and(char::is_whitespace));
        prev = Some(c);
        if !plausible {
            return false;
        }
        let rest = &text[p..];
        // serde_json wants a number or literal followed by JSON whitespace
        // or a delimiter, while a candidate is trimmed of any Unicode
        // whitespace (`\x0b8\x0b`): read those as their own run of characters.
        let self_delimited = value.is_object() || value.is_array() || value.is_string();
        let rest = if self_delimited {
            rest
        } else {
            let end = rest
                .find(|c: char| c.is_whitespace() || ",:[]{}\"".contains(c))
                .unwrap_or(rest.len());
            &rest[..end]
        };
        serde_json::Deserializer::from_str(rest)
            .into_iter::<Value>()
            .next()
            .is_some_and(|v| v.is_ok_and(|v| v == *value))
    })
}
