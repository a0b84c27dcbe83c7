//! Unit tests for each candidate kind and repair, and properties over
//! arbitrary text and arbitrary JSON values.

use super::*;
use Repair::*;
use proptest::prelude::*;
use serde_json::json;

fn found(text: &str, want_object: bool) -> (Value, Vec<Repair>) {
    let e = extract(text, want_object).unwrap_or_else(|| panic!("nothing found in {text:?}"));
    (e.value, e.repairs)
}

#[test]
fn whole_reply_as_is() {
    assert_eq!(
        found(" {\"a\": [1, 2.5, null]}\n", true),
        (json!({"a": [1, 2.5, null]}), vec![])
    );
    assert_eq!(
        found("\"just a string\"", false),
        (json!("just a string"), vec![])
    );
    assert_eq!(extract("\"just a string\"", true), None);
    assert_eq!(extract("", false), None);
    assert_eq!(extract("no json here, sorry", false), None);
}

#[test]
fn realistic_fenced_reply() {
    let reply = "Here is the JSON:\n```json\n{\n  \"name\": \"Zoë\",\n  \"tags\": [\"a\", \"b\"],\n  \"note\": \"use ``` for code\"\n}\n```\nLet me know if you need anything else!";
    let v = json!({"name": "Zoë", "tags": ["a", "b"], "note": "use ``` for code"});
    assert_eq!(found(reply, true), (v, vec![StrippedFence]));
}

#[test]
fn fences_bare_nested_unclosed_and_scalar() {
    assert_eq!(
        found("```\n[1, 2]\n```", false),
        (json!([1, 2]), vec![StrippedFence])
    );
    let nested = "````markdown\nSome docs\n```json\n{\"inner\": true}\n```\n````";
    assert_eq!(
        found(nested, true),
        (json!({"inner": true}), vec![StrippedFence])
    );
    assert_eq!(
        found("Answer:\n```json\n42\n```", false),
        (json!(42), vec![StrippedFence])
    );
    // The fence never closes: the reply was cut inside it.
    let cut = "```json\n{\"a\": \"b\"}";
    assert_eq!(found(cut, true), (json!({"a": "b"}), vec![StrippedFence]));
}

#[test]
fn spans_in_prose_first_valid_wins() {
    let text = "I'd say {\"x\": 1} or maybe {\"x\": 2}.";
    assert_eq!(found(text, true), (json!({"x": 1}), vec![StrippedProse]));
    // Unbalanced or invalid spans before the real one are skipped.
    let text = "Note [see above} and {not json} then [1, {\"ok\": \"yes\"}] end";
    assert_eq!(
        found(text, false),
        (json!([1, {"ok": "yes"}]), vec![StrippedProse])
    );
    // want_object skips the array and takes the object after it.
    assert_eq!(
        found("Steps [1, 2]; result {\"r\": 3}", true),
        (json!({"r": 3}), vec![StrippedProse])
    );
    // A valid candidate beats an earlier one that needs repair.
    let text = "{'a': 1} or {\"b\": 2}";
    assert_eq!(found(text, true), (json!({"b": 2}), vec![StrippedProse]));
    // An unclosed brace in prose does not hide a valid object inside it.
    assert_eq!(
        found("{ I think {\"a\": 1} is right", true),
        (json!({"a": 1}), vec![StrippedProse])
    );
}

#[test]
fn trailing_commas() {
    assert_eq!(
        found("{\"a\": [1, 2, ], \"b\": 3 ,\n}", true),
        (json!({"a": [1, 2], "b": 3}), vec![TrailingComma])
    );
    // A comma inside a string is data.
    assert_eq!(
        found("{\"a\": \",}\",}", true),
        (json!({"a": ",}"}), vec![TrailingComma])
    );
}

#[test]
fn single_quotes_and_apostrophes() {
    let (v, r) = found("{'name': 'it's \"fine\"', 'n': 2, \"q\": \"don't\"}", true);
    assert_eq!(v, json!({"name": "it's \"fine\"", "n": 2, "q": "don't"}));
    assert_eq!(r, vec![SingleQuotes]);
    assert_eq!(
        found("['a\\'b']", false),
        (json!(["a'b"]), vec![SingleQuotes])
    );
}

#[test]
fn unquoted_keys_and_control_chars() {
    let (v, r) = found("{name: \"x\", $id_2: 1, nested: {ok: true}}", true);
    assert_eq!(v, json!({"name": "x", "$id_2": 1, "nested": {"ok": true}}));
    assert_eq!(r, vec![UnquotedKeys]);
    let (v, r) = found("{\"text\": \"line 1\nline 2\ttab\"}", true);
    assert_eq!(
        (v, r),
        (
            json!({"text": "line 1\nline 2\ttab"}),
            vec![EscapedControlChars]
        )
    );
    // A bare word in value position is not invented into a string.
    assert_eq!(extract("{\"a\": yes}", true), None);
}

#[test]
fn truncated_mid_string() {
    let cut =
        "Sure!\n```json\n{\"title\": \"Q3 report\", \"summary\": \"Revenue grew by 12% while cos";
    let (v, r) = found(cut, true);
    assert_eq!(
        v,
        json!({"title": "Q3 report", "summary": "Revenue grew by 12% while cos"})
    );
    assert_eq!(r, vec![StrippedFence, ClosedString, ClosedBrackets]);
    // A half-written escape is dropped, not guessed.
    assert_eq!(
        found("[\"ab\\u00", false),
        (json!(["ab"]), vec![ClosedString, ClosedBrackets])
    );
    assert_eq!(
        found("[\"ab\\", false),
        (json!(["ab"]), vec![ClosedString, ClosedBrackets])
    );
}

#[test]
fn truncated_closes_in_order_and_drops_incomplete_members() {
    let (v, r) = found("{\"a\": [1, {\"b\": [true, null,", true);
    assert_eq!(
        (v, r),
        (json!({"a": [1, {"b": [true, null]}]}), vec![ClosedBrackets])
    );
    // A key with no value, or a number that may be cut (12 of 125), is dropped.
    let dropped = vec![ClosedBrackets, DroppedIncompleteMember];
    assert_eq!(
        found("{\"a\": 1, \"b\"", true),
        (json!({"a": 1}), dropped.clone())
    );
    assert_eq!(
        found("{\"a\": 1, \"b\": ", true),
        (json!({"a": 1}), dropped.clone())
    );
    assert_eq!(
        found("{\"a\": \"x\", \"n\": 12", true),
        (json!({"a": "x"}), dropped.clone())
    );
    assert_eq!(found("[1, 2, tr", false), (json!([1, 2]), dropped));
}

#[test]
fn mismatched_brackets_are_not_repaired() {
    assert_eq!(extract("{\"a\": [1, 2}", false), None);
}

#[test]
fn bounded_on_hostile_input() {
    for text in [
        "{".repeat(100_000),
        "[{".repeat(50_000),
        "{]".repeat(50_000),
        "```\n".repeat(10_000),
        "'".repeat(100_000),
    ] {
        let _ = extract(&text, false);
        assert!(candidates(&text).len() <= MAX_CANDIDATES);
    }
    // Past MAX_INPUT only the whole text, as is, is tried.
    let big = format!("{{\"a\": \"{}\"}}", "x".repeat(MAX_INPUT));
    assert!(extract(&big, true).is_some_and(|e| e.repairs.is_empty()));
    assert_eq!(extract(&format!("Here: {big}"), true), None);
}

#[test]
fn repairs_serialize_snake_case() {
    assert_eq!(
        serde_json::to_string(&[StrippedFence, ClosedBrackets])
            .ok()
            .as_deref(),
        Some("[\"stripped_fence\",\"closed_brackets\"]")
    );
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        ".*".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(".*", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn json_object() -> impl Strategy<Value = Value> {
    prop::collection::btree_map("[a-z]{1,8}", json_value(), 0..6)
        .prop_map(|m| Value::Object(m.into_iter().collect()))
}

fn roundtrips(v: &Value) -> bool {
    serde_json::to_string(v)
        .ok()
        .and_then(|s| serde_json::from_str::<Value>(&s).ok())
        .as_ref()
        == Some(v)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn never_panics_and_returns_json(text in prop_oneof![any::<String>(), "[\\[\\]{}\"':,a-z0-9 \\\\\n`]{0,80}"]) {
        for want_object in [false, true] {
            if let Some(e) = extract(&text, want_object) {
                prop_assert!(roundtrips(&e.value));
                prop_assert!(!want_object || e.value.is_object());
            }
        }
    }

    #[test]
    fn serialized_value_is_found_as_is(v in json_value()) {
        let text = serde_json::to_string(&v).unwrap_or_default();
        prop_assert_eq!(extract(&text, v.is_object()), Some(Extracted { value: v.clone(), repairs: vec![] }));
        let pretty = serde_json::to_string_pretty(&v).unwrap_or_default();
        let fenced = format!("Here you go:\n```json\n{pretty}\n```\nAnything else?");
        prop_assert_eq!(extract(&fenced, v.is_object()), Some(Extracted { value: v, repairs: vec![StrippedFence] }));
    }

    #[test]
    fn object_in_prose_is_found(v in json_object()) {
        let text = format!("Sure, it's below: {} Hope that's what you wanted.", serde_json::to_string(&v).unwrap_or_default());
        prop_assert_eq!(extract(&text, true), Some(Extracted { value: v, repairs: vec![StrippedProse] }));
    }

    #[test]
    fn cut_off_object_yields_an_object_or_nothing(v in json_object(), cut in 0.0..1.0f64) {
        let text = serde_json::to_string(&v).unwrap_or_default();
        let at = (text.len() as f64 * cut) as usize;
        let at = (0..=at).rev().find(|i| text.is_char_boundary(*i)).unwrap_or(0);
        if let Some(e) = extract(&text[..at], true) {
            prop_assert!(e.value.is_object());
            prop_assert!(roundtrips(&e.value));
        }
    }
}
