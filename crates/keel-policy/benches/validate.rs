//! The validated-output pipeline on a typical 2 KB structured answer:
//! extract (clean and fenced-with-repairs), JSON Schema, CEL rules. The
//! target: well under a millisecond per answer on top of the call.
//!
//!     cargo bench -p keel-policy --bench validate

// Fixtures are literals: a failure to build them is the bench's own bug.
#![allow(clippy::unwrap_used)]

use divan::Bencher;
use keel_policy::extract::extract;
use keel_policy::rules::{RuleSpec, Rules};
use keel_policy::schema::Schema;
use serde_json::{Value, json};

fn main() {
    divan::main();
}

fn invoice() -> Value {
    let items: Vec<Value> = (0..18)
        .map(|i| json!({"sku": format!("SKU-{i:04}"), "description": format!("Widget model {i} with a longer description"), "quantity": i + 1, "unit_price": 9.5}))
        .collect();
    json!({"invoice_number": "INV-2026-0042", "vendor": "Acme Industrial Supplies Ltd.", "currency": "EUR",
           "issue_date": "2026-11-01", "due_date": "2026-12-01", "items": items,
           "subtotal": 1624.5, "tax": 324.9, "total": 1949.4})
}

fn schema() -> Schema {
    Schema::compile(&json!({
        "type": "object",
        "required": ["invoice_number", "vendor", "currency", "issue_date", "due_date", "items", "subtotal", "tax", "total"],
        "properties": {
            "invoice_number": {"type": "string"}, "vendor": {"type": "string"},
            "currency": {"type": "string", "pattern": "^[A-Z]{3}$"},
            "issue_date": {"type": "string", "format": "date"}, "due_date": {"type": "string", "format": "date"},
            "items": {"type": "array", "items": {"type": "object", "required": ["sku", "quantity", "unit_price"],
                "properties": {"sku": {"type": "string"}, "description": {"type": "string"},
                    "quantity": {"type": "integer", "minimum": 1}, "unit_price": {"type": "number"}}}},
            "subtotal": {"type": "number"}, "tax": {"type": "number"}, "total": {"type": "number"}
        }
    }))
    .unwrap()
}

fn rules() -> Rules {
    let rule = |name: &str, expr: &str| RuleSpec {
        name: name.into(),
        expr: Some(expr.into()),
        regex: None,
        message: None,
    };
    Rules::compile(
        &[
            rule("adds_up", "math.abs(output.subtotal + output.tax - output.total) < 0.01"),
            rule("due_after_issue", "output.due_date > output.issue_date"),
            rule("items_sum", "math.abs(output.items.map(i, i.quantity * i.unit_price).sum() - output.subtotal) < 0.01"),
        ],
        &[RuleSpec { name: "no_card".into(), expr: None, regex: Some(r"\b\d{16}\b".into()), message: None }],
    )
    .unwrap()
}

#[divan::bench]
fn extract_clean(b: Bencher) {
    let text = invoice().to_string();
    assert!(text.len() > 1500, "about 2 KB: {}", text.len());
    b.counter(divan::counter::BytesCount::of_str(&text))
        .bench(|| extract(divan::black_box(&text), true));
}

#[divan::bench]
fn extract_fenced_with_repairs(b: Bencher) {
    let json = invoice().to_string().replacen('}', ",}", 1);
    let text =
        format!("Here is the invoice:\n```json\n{json}\n```\nLet me know if anything is off.");
    assert!(!extract(&text, true).unwrap().repairs.is_empty());
    b.counter(divan::counter::BytesCount::of_str(&text))
        .bench(|| extract(divan::black_box(&text), true));
}

#[divan::bench]
fn schema_validate(b: Bencher) {
    let (schema, value) = (schema(), invoice());
    assert!(schema.validate(&value).is_ok());
    b.bench(|| schema.validate(divan::black_box(&value)));
}

#[divan::bench]
fn rules_check(b: Bencher) {
    let (rules, value, input) = (rules(), invoice(), json!({"text": "…"}));
    assert!(rules.check(&value, &input).is_empty());
    b.bench(|| rules.check(divan::black_box(&value), &input));
}

#[divan::bench]
fn whole_pipeline(b: Bencher) {
    let (schema, rules, input) = (schema(), rules(), json!({}));
    let text = format!("```json\n{}\n```", invoice());
    b.bench(|| {
        let found = extract(divan::black_box(&text), true).unwrap();
        schema.validate(&found.value).unwrap();
        rules.check(&found.value, &input)
    });
}
