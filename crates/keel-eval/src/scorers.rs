//! Scorers: each judges one answer against one case and gives a score in
//! 0..=1 and whether it passed (score ≥ its threshold, 1.0 unless set).
//!
//! | scorer | score |
//! |---|---|
//! | `Equals { case_insensitive }` | 1 when the answer (trimmed) equals the expected text |
//! | `Contains { needles, all }` | the share of needles found (any: 1 if one is) |
//! | `Regex` | 1 when the pattern matches |
//! | `JsonValid { schema }` | 1 when the answer is JSON (found as the validator finds it) that the schema accepts |
//! | `JsonField { pointer, tolerance }` | 1 when the value at the JSON pointer equals the expected one (numbers within `tolerance`) |
//! | `SetOverlap` | F1 of the answer's items against the expected items (JSON arrays, or comma/newline-separated text) |
//! | `Similarity` | 1 − normalised Levenshtein distance (case and surrounding space ignored) |
//! | `Refusal { expected }` | 1 when the answer is (or, with `expected = false`, is not) a refusal |
//! | `MaxLatency` / `MaxCost` | 1 when within the ceiling |
//!
//! The LLM judge and the external-command scorer call out of process and
//! belong to the runner, which gives them the same [`Scored`] shape.

use keel_policy::extract::extract;
use keel_policy::guard::output;
use keel_policy::schema::Schema;
use serde_json::Value;

/// One answer and what it cost.
#[derive(Debug, Clone, Default)]
pub struct Answer<'a> {
    pub text: &'a str,
    pub latency_ms: f64,
    pub cost_usd: f64,
}

/// A scorer's judgement.
#[derive(Debug, Clone, PartialEq)]
pub struct Scored {
    pub score: f64,
    pub passed: bool,
    /// Why, in a few words (what differed, what matched).
    pub detail: String,
}

#[derive(Debug)]
pub enum Scorer {
    Equals { case_insensitive: bool },
    Contains { needles: Vec<String>, all: bool },
    Regex(regex::Regex),
    JsonValid(Box<Schema>),
    JsonField { pointer: String, tolerance: f64 },
    SetOverlap,
    Similarity,
    Refusal { expected: bool },
    MaxLatency { ms: f64 },
    MaxCost { usd: f64 },
}

impl Scorer {
    /// Scores `answer` against the case's `expected` output (text or JSON;
    /// `None` for scorers that need none). `threshold`: the score a pass
    /// needs.
    pub fn score(&self, answer: &Answer<'_>, expected: Option<&Value>, threshold: f64) -> Scored {
        let (score, detail) = self.raw(answer, expected);
        let score = if score.is_finite() {
            score.clamp(0.0, 1.0)
        } else {
            0.0
        };
        Scored {
            score,
            passed: score >= threshold,
            detail,
        }
    }

    fn raw(&self, answer: &Answer<'_>, expected: Option<&Value>) -> (f64, String) {
        let text = answer.text.trim();
        let expected_text = expected.map(as_text).unwrap_or_default();
        match self {
            Scorer::Equals { case_insensitive } => {
                let same = if *case_insensitive {
                    text.to_lowercase() == expected_text.trim().to_lowercase()
                } else {
                    text == expected_text.trim()
                };
                (
                    bool_score(same),
                    format!("expected {:?}", cut(expected_text.trim())),
                )
            }
            Scorer::Contains { needles, all } => {
                let lower = text.to_lowercase();
                let found: Vec<&String> = needles
                    .iter()
                    .filter(|n| lower.contains(&n.to_lowercase()))
                    .collect();
                let score = match (all, needles.len()) {
                    (_, 0) => 1.0,
                    (true, n) => found.len() as f64 / n as f64,
                    (false, _) => bool_score(!found.is_empty()),
                };
                (score, format!("found {} of {}", found.len(), needles.len()))
            }
            Scorer::Regex(re) => (bool_score(re.is_match(text)), format!("/{}/", re.as_str())),
            Scorer::JsonValid(schema) => match extract(text, schema.wants_object()) {
                None => (0.0, "no JSON in the answer".to_owned()),
                Some(found) => match schema.validate(&found.value) {
                    Ok(()) => (1.0, "valid".to_owned()),
                    Err(violations) => (0.0, format!("{} schema violation(s)", violations.len())),
                },
            },
            Scorer::JsonField { pointer, tolerance } => {
                let Some(found) = extract(text, false) else {
                    return (0.0, "no JSON in the answer".to_owned());
                };
                let got = found.value.pointer(pointer);
                let want = expected.and_then(|e| e.pointer(pointer).or(Some(e)));
                let same = match (got, want) {
                    (Some(Value::Number(a)), Some(Value::Number(b))) => {
                        match (a.as_f64(), b.as_f64()) {
                            (Some(a), Some(b)) => (a - b).abs() <= *tolerance,
                            _ => false,
                        }
                    }
                    (Some(a), Some(b)) => a == b,
                    _ => false,
                };
                (
                    bool_score(same),
                    format!(
                        "{pointer}: got {}",
                        got.map_or("nothing".to_owned(), |v| cut(&v.to_string()).to_owned())
                    ),
                )
            }
            Scorer::SetOverlap => {
                let got = items_of(text);
                let want = expected.map_or_else(Vec::new, |e| items_of(&as_text(e)));
                let common = got.iter().filter(|g| want.contains(g)).count() as f64;
                let f1 = if got.is_empty() && want.is_empty() {
                    1.0
                } else if common == 0.0 {
                    0.0
                } else {
                    let (p, r) = (common / got.len() as f64, common / want.len() as f64);
                    2.0 * p * r / (p + r)
                };
                (
                    f1,
                    format!(
                        "{common} in common, {} given, {} expected",
                        got.len(),
                        want.len()
                    ),
                )
            }
            Scorer::Similarity => {
                let s = strsim::normalized_levenshtein(
                    &text.to_lowercase(),
                    &expected_text.trim().to_lowercase(),
                );
                (s, format!("similarity {s:.2}"))
            }
            Scorer::Refusal { expected } => {
                let refused = !output::refusal(text).is_empty();
                (
                    bool_score(refused == *expected),
                    format!("refused: {refused}"),
                )
            }
            Scorer::MaxLatency { ms } => (
                bool_score(answer.latency_ms <= *ms),
                format!("{:.0} ms of at most {ms:.0}", answer.latency_ms),
            ),
            Scorer::MaxCost { usd } => (
                bool_score(answer.cost_usd <= *usd),
                format!("${:.6} of at most ${usd}", answer.cost_usd),
            ),
        }
    }
}

fn bool_score(b: bool) -> f64 {
    if b { 1.0 } else { 0.0 }
}

/// A JSON string as its text, anything else as compact JSON.
fn as_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Distinct, normalised items: a JSON array's elements, else the text split
/// on commas and new lines.
fn items_of(text: &str) -> Vec<String> {
    let raw: Vec<String> = match serde_json::from_str::<Value>(text.trim()) {
        Ok(Value::Array(items)) => items.iter().map(as_text).collect(),
        _ => text.split([',', '\n']).map(str::to_owned).collect(),
    };
    let mut items: Vec<String> = Vec::new();
    for item in raw {
        let item = item.trim().trim_matches('"').to_lowercase();
        if !item.is_empty() && !items.contains(&item) {
            items.push(item);
        }
    }
    items
}

fn cut(s: &str) -> &str {
    let end = s.char_indices().nth(80).map_or(s.len(), |(i, _)| i);
    s.get(..end).unwrap_or(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn answer(text: &str) -> Answer<'_> {
        Answer {
            text,
            latency_ms: 120.0,
            cost_usd: 0.002,
        }
    }

    fn passes(s: &Scorer, text: &str, expected: Option<Value>) -> bool {
        s.score(&answer(text), expected.as_ref(), 1.0).passed
    }

    #[test]
    fn equality_and_containment() {
        let exact = Scorer::Equals {
            case_insensitive: false,
        };
        assert!(passes(&exact, " billing \n", Some(json!("billing"))));
        assert!(!passes(&exact, "Billing", Some(json!("billing"))));
        let loose = Scorer::Equals {
            case_insensitive: true,
        };
        assert!(passes(&loose, "Billing", Some(json!("billing"))));
        let any = Scorer::Contains {
            needles: vec!["refund".into(), "invoice".into()],
            all: false,
        };
        assert!(passes(&any, "Your INVOICE is attached", None));
        assert!(!passes(&any, "Hello", None));
        let all = Scorer::Contains {
            needles: vec!["refund".into(), "invoice".into()],
            all: true,
        };
        let half = all.score(&answer("refund only"), None, 1.0);
        assert_eq!((half.score, half.passed), (0.5, false));
        assert!(all.score(&answer("refund only"), None, 0.5).passed);
    }

    #[test]
    fn regexes_json_and_fields() {
        let re = Scorer::Regex(regex::Regex::new(r"^TICKET-\d+$").unwrap());
        assert!(passes(&re, "TICKET-42", None));
        assert!(!passes(&re, "ticket 42", None));
        let schema = Schema::compile(&json!({"type": "object", "required": ["label"]})).unwrap();
        let valid = Scorer::JsonValid(Box::new(schema));
        assert!(passes(
            &valid,
            "```json\n{\"label\": \"billing\"}\n```",
            None
        ));
        assert!(!passes(&valid, "{\"other\": 1}", None));
        assert!(!passes(&valid, "no json here", None));
        let field = Scorer::JsonField {
            pointer: "/total".into(),
            tolerance: 0.01,
        };
        assert!(passes(
            &field,
            r#"{"total": 10.004}"#,
            Some(json!({"total": 10.0}))
        ));
        assert!(!passes(
            &field,
            r#"{"total": 10.5}"#,
            Some(json!({"total": 10.0}))
        ));
        assert!(!passes(
            &field,
            r#"{"sum": 10}"#,
            Some(json!({"total": 10.0}))
        ));
        let label = Scorer::JsonField {
            pointer: "/label".into(),
            tolerance: 0.0,
        };
        assert!(passes(
            &label,
            r#"{"label": "billing"}"#,
            Some(json!("billing"))
        ));
    }

    #[test]
    fn overlap_similarity_refusal_and_ceilings() {
        let overlap = Scorer::SetOverlap;
        let s = overlap.score(
            &answer(r#"["a", "b", "c"]"#),
            Some(&json!(["b", "c", "d"])),
            0.6,
        );
        assert!((s.score - 2.0 / 3.0).abs() < 1e-9 && s.passed, "{s:?}");
        assert_eq!(
            overlap
                .score(&answer("x, y"), Some(&json!("X,y")), 1.0)
                .score,
            1.0
        );
        assert_eq!(
            overlap.score(&answer("x"), Some(&json!("z")), 1.0).score,
            0.0
        );
        let sim = Scorer::Similarity;
        let s = sim.score(&answer("Hello World"), Some(&json!("hello world!")), 0.9);
        assert!(s.passed && s.score < 1.0, "{s:?}");
        assert!(
            !sim.score(&answer("goodbye"), Some(&json!("hello world")), 0.9)
                .passed
        );
        let refusal = Scorer::Refusal { expected: true };
        assert!(passes(
            &refusal,
            "I'm sorry, but I can't help with that request.",
            None
        ));
        assert!(!passes(&refusal, "Sure, here it is.", None));
        assert!(passes(
            &Scorer::Refusal { expected: false },
            "Sure, here it is.",
            None
        ));
        assert!(passes(&Scorer::MaxLatency { ms: 200.0 }, "x", None));
        assert!(!passes(&Scorer::MaxLatency { ms: 100.0 }, "x", None));
        assert!(passes(&Scorer::MaxCost { usd: 0.01 }, "x", None));
        assert!(!passes(&Scorer::MaxCost { usd: 0.001 }, "x", None));
    }
}
