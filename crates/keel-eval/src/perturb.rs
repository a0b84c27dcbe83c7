//! Rephrasings for `--perturb`: the same request, worded a little
//! differently, should get the same answer.
//!
//! Five kinds are made here, deterministically from a seed (a rerun
//! perturbs the same way, so a replayed run finds its recordings):
//!
//! | kind | what changes |
//! |---|---|
//! | `case` | upper-cases the text (lower-cases it when it already is) |
//! | `whitespace` | doubles some spaces, adds a line break and trailing spaces |
//! | `punctuation` | drops sentence punctuation, or adds some when there is none |
//! | `typos` | swaps two inner letters in about one word in eight (at least one) |
//! | `reorder` | moves the last sentence first (a text of one sentence is left alone) |
//!
//! and `paraphrase` is written by a model the eval file names (the runner
//! asks it; see `run.rs`). A case's answer *flips* when its pass/fail
//! verdict differs from the unperturbed answer's, or when both answers are
//! JSON and differ; consistency is the share that do not flip.

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Case,
    Whitespace,
    Punctuation,
    Typos,
    Reorder,
    Paraphrase,
}

impl Kind {
    /// The kinds made without a model (the default set).
    pub const LOCAL: [Kind; 5] = [
        Kind::Case,
        Kind::Whitespace,
        Kind::Punctuation,
        Kind::Typos,
        Kind::Reorder,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Case => "case",
            Kind::Whitespace => "whitespace",
            Kind::Punctuation => "punctuation",
            Kind::Typos => "typos",
            Kind::Reorder => "reorder",
            Kind::Paraphrase => "paraphrase",
        }
    }
}

/// The input with its chosen string fields perturbed (`fields` empty: all
/// top-level string fields). `None` when the kind changes nothing (a
/// one-sentence text reordered, say) or for `paraphrase`, which a model does.
pub fn perturb(
    input: &Map<String, Value>,
    fields: &[String],
    kind: Kind,
    seed: u64,
) -> Option<Map<String, Value>> {
    let mut out = input.clone();
    let mut changed = false;
    for (i, (key, value)) in out.iter_mut().enumerate() {
        if !fields.is_empty() && !fields.contains(key) {
            continue;
        }
        let Value::String(text) = value else { continue };
        let mut rng =
            SmallRng::seed_from_u64(seed ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        if let Some(new) = text_perturb(text, kind, &mut rng)
            && new != *text
        {
            *text = new;
            changed = true;
        }
    }
    changed.then_some(out)
}

/// One text perturbed; `None` for `paraphrase`.
pub fn text_perturb(text: &str, kind: Kind, rng: &mut SmallRng) -> Option<String> {
    Some(match kind {
        Kind::Case => {
            let upper = text.to_uppercase();
            if upper == text {
                text.to_lowercase()
            } else {
                upper
            }
        }
        Kind::Whitespace => whitespace(text, rng),
        Kind::Punctuation => punctuation(text),
        Kind::Typos => typos(text, rng),
        Kind::Reorder => reorder(text),
        Kind::Paraphrase => return None,
    })
}

fn whitespace(text: &str, rng: &mut SmallRng) -> String {
    let mut out = String::with_capacity(text.len() + 16);
    for (i, word) in text.split(' ').enumerate() {
        if i > 0 {
            out.push(' ');
            if rng.random_bool(0.3) {
                out.push(' ');
            }
        }
        out.push_str(word);
    }
    format!("\n{out}  \n")
}

fn punctuation(text: &str) -> String {
    const MARKS: &[char] = &['.', ',', ';', ':', '!', '?'];
    if text.contains(MARKS) {
        text.chars().filter(|c| !MARKS.contains(c)).collect()
    } else {
        format!("{}!!", text.trim_end())
    }
}

/// Swaps two adjacent inner letters of words of four letters or more.
fn typos(text: &str, rng: &mut SmallRng) -> String {
    let words: Vec<&str> = text.split(' ').collect();
    let eligible: Vec<usize> = (0..words.len())
        .filter(|&i| words[i].chars().filter(|c| c.is_alphabetic()).count() >= 4)
        .collect();
    if eligible.is_empty() {
        return text.to_owned();
    }
    let mut chosen: Vec<usize> = eligible
        .iter()
        .copied()
        .filter(|_| rng.random_bool(0.125))
        .collect();
    if chosen.is_empty() {
        chosen.push(eligible[rng.random_range(0..eligible.len())]);
    }
    words
        .iter()
        .enumerate()
        .map(|(i, w)| {
            if !chosen.contains(&i) {
                return (*w).to_owned();
            }
            let mut chars: Vec<char> = w.chars().collect();
            let letters: Vec<usize> = (1..chars.len().saturating_sub(2))
                .filter(|&j| chars[j].is_alphabetic() && chars[j + 1].is_alphabetic())
                .collect();
            if let Some(&j) = letters.get(rng.random_range(0..letters.len().max(1))) {
                chars.swap(j, j + 1);
            }
            chars.into_iter().collect()
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Moves the last sentence (or line) to the front.
fn reorder(text: &str) -> String {
    let mut parts: Vec<String> = if text.trim().contains('\n') {
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(str::to_owned)
            .collect()
    } else {
        let mut parts = Vec::new();
        let mut current = String::new();
        for c in text.chars() {
            current.push(c);
            if matches!(c, '.' | '!' | '?') {
                parts.push(current.trim().to_owned());
                current.clear();
            }
        }
        if !current.trim().is_empty() {
            parts.push(current.trim().to_owned());
        }
        parts
    };
    if parts.len() < 2 {
        return text.to_owned();
    }
    let last = parts.pop().unwrap_or_default();
    parts.insert(0, last);
    let joiner = if text.trim().contains('\n') {
        "\n"
    } else {
        " "
    };
    parts.join(joiner)
}

/// Whether a perturbed answer agrees with the original: the same verdict,
/// and the same JSON when both are JSON objects or arrays.
pub fn consistent(original: (&Value, bool), perturbed: (&Value, bool)) -> bool {
    if original.1 != perturbed.1 {
        return false;
    }
    match (original.0, perturbed.0) {
        (a @ (Value::Object(_) | Value::Array(_)), b @ (Value::Object(_) | Value::Array(_))) => {
            a == b
        }
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn every_local_kind_changes_a_multi_sentence_text_and_keeps_its_words() {
        let input =
            map(json!({"ticket": "My invoice is wrong. Please refund the extra charge.", "n": 3}));
        for kind in Kind::LOCAL {
            let out =
                perturb(&input, &[], kind, 7).unwrap_or_else(|| panic!("{kind:?} changed nothing"));
            let text = out["ticket"].as_str().unwrap();
            assert_ne!(text, input["ticket"].as_str().unwrap(), "{kind:?}");
            assert_eq!(out["n"], json!(3), "non-text fields are kept");
            let letters = |s: &str| {
                let mut v: Vec<char> = s
                    .to_lowercase()
                    .chars()
                    .filter(|c| c.is_alphanumeric())
                    .collect();
                v.sort_unstable();
                v
            };
            assert_eq!(
                letters(text),
                letters(input["ticket"].as_str().unwrap()),
                "{kind:?}: {text}"
            );
        }
    }

    #[test]
    fn perturbations_are_reproducible_and_seeded() {
        let input =
            map(json!({"q": "please tell me about the weather tomorrow morning in London"}));
        let a = perturb(&input, &[], Kind::Typos, 1);
        assert_eq!(a, perturb(&input, &[], Kind::Typos, 1));
        let differs = (2..20).any(|s| perturb(&input, &[], Kind::Typos, s) != a);
        assert!(differs);
    }

    #[test]
    fn fields_limit_what_changes_and_no_op_kinds_say_none() {
        let input = map(json!({"a": "one sentence only", "b": "Keep. This."}));
        let out = perturb(&input, &["a".to_owned()], Kind::Case, 0).unwrap();
        assert_eq!(out["a"], json!("ONE SENTENCE ONLY"));
        assert_eq!(out["b"], json!("Keep. This."));
        assert!(perturb(&input, &["a".to_owned()], Kind::Reorder, 0).is_none());
        assert!(perturb(&input, &[], Kind::Paraphrase, 0).is_none());
    }

    #[test]
    fn flips_are_verdict_or_json_changes() {
        let a = json!({"category": "billing"});
        let b = json!({"category": "bug"});
        assert!(consistent((&a, true), (&a.clone(), true)));
        assert!(!consistent((&a, true), (&b, true)));
        assert!(!consistent((&a, true), (&a.clone(), false)));
        assert!(consistent(
            (&json!("Sure, here."), true),
            (&json!("Sure!"), true)
        ));
    }
}
