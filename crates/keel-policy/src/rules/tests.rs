use serde_json::json;

use super::*;

fn expr(name: &str, expr: &str) -> RuleSpec {
    RuleSpec {
        name: name.into(),
        expr: Some(expr.into()),
        regex: None,
        message: None,
    }
}

fn regex(name: &str, regex: &str) -> RuleSpec {
    RuleSpec {
        name: name.into(),
        expr: None,
        regex: Some(regex.into()),
        message: None,
    }
}

fn failed(rules: &Rules, output: serde_json::Value, input: serde_json::Value) -> Vec<String> {
    rules
        .check(&output, &input)
        .into_iter()
        .map(|f| f.rule)
        .collect()
}

fn invoice() -> serde_json::Value {
    json!({
        "customer": "ACME",
        "issue_date": "2024-03-01",
        "due_date": "2024-03-31",
        "items": [{"price": 40, "qty": 2}, {"price": 10.1, "qty": 1}],
        "subtotal": 90.1,
        "tax": 9,
        "total": 99.1,
        "quote": "pay within 30 days",
    })
}

fn invoice_input() -> serde_json::Value {
    json!({"customers": ["ACME", "Globex"], "text": "Terms: pay within 30 days. Thanks."})
}

#[test]
fn invariants_hold_on_a_consistent_invoice() {
    let rules = Rules::compile(
        &[
            // Tolerance: floating point sums are rarely exactly equal.
            expr(
                "total",
                "math.abs(output.total - (output.subtotal + output.tax)) < 0.01",
            ),
            expr(
                "total-no-math",
                "(output.total - (output.subtotal + output.tax)) < 0.01 && ((output.subtotal + output.tax) - output.total) < 0.01",
            ),
            expr(
                "lines",
                "math.abs(output.subtotal - output.items.map(i, i.price * i.qty).sum()) < 0.01",
            ),
            expr("dates", "output.due_date > output.issue_date"),
            expr("known-customer", "output.customer in input.customers"),
            expr("grounded-quote", "input.text.contains(output.quote)"),
            expr("int-compare", "size(output.items) == 2 && output.tax == 9"),
        ],
        &[],
    );
    let Ok(rules) = rules else {
        panic!("{rules:?}")
    };
    assert_eq!(
        failed(&rules, invoice(), invoice_input()),
        Vec::<String>::new()
    );
}

#[test]
fn invariants_fail_on_an_inconsistent_invoice() {
    let Ok(rules) = Rules::compile(
        &[
            expr(
                "total",
                "math.abs(output.total - (output.subtotal + output.tax)) < 0.01",
            ),
            expr("dates", "output.due_date > output.issue_date"),
            expr("known-customer", "output.customer in input.customers"),
            RuleSpec {
                message: Some("quote not in the source".into()),
                ..expr("grounded-quote", "input.text.contains(output.quote)")
            },
        ],
        &[],
    ) else {
        panic!("compile")
    };
    let mut bad = invoice();
    bad["total"] = json!(99.2);
    bad["due_date"] = json!("2024-02-28");
    bad["customer"] = json!("Initech");
    bad["quote"] = json!("pay within 60 days");
    let failures = rules.check(&bad, &invoice_input());
    let names: Vec<_> = failures.iter().map(|f| f.rule.as_str()).collect();
    assert_eq!(
        names,
        ["total", "dates", "known-customer", "grounded-quote"]
    );
    assert!(
        failures[0].message.contains("invariant `math.abs("),
        "{failures:?}"
    );
    assert_eq!(failures[3].message, "quote not in the source");
}

#[test]
fn forbidden_states_by_expression_and_regex() {
    let Ok(rules) = Rules::compile(
        &[],
        &[
            expr("negative-total", "output.total < 0"),
            regex("placeholder", r"(?i)lorem ipsum|\bTODO\b"),
        ],
    ) else {
        panic!("compile")
    };
    assert!(failed(&rules, invoice(), json!({})).is_empty());
    let mut bad = invoice();
    bad["total"] = json!(-1);
    bad["quote"] = json!("Lorem Ipsum dolor");
    let failures = rules.check(&bad, &json!({}));
    assert_eq!(failures.len(), 2, "{failures:?}");
    assert_eq!(
        failures[0].message,
        "forbidden state `output.total < 0` holds"
    );
    assert!(
        failures[1]
            .message
            .starts_with("forbidden pattern /(?i)lorem"),
        "{failures:?}"
    );
}

#[test]
fn regex_sees_the_output_as_json_text() {
    let Ok(rules) = Rules::compile(&[regex("has-total", r#""total":"#)], &[]) else {
        panic!("compile")
    };
    assert!(failed(&rules, invoice(), json!({})).is_empty());
    assert_eq!(failed(&rules, json!({"sum": 1}), json!({})), ["has-total"]);
}

#[test]
fn runtime_errors_are_failures_not_panics() {
    let Ok(rules) = Rules::compile(
        &[
            expr("missing-field", "output.nope > 1"),
            expr("not-a-bool", "output.total"),
            expr("bad-sum", "output.items.sum() > 0.0"),
        ],
        &[expr("forbidden-missing", "output.status == 'void'")],
    ) else {
        panic!("compile")
    };
    let failures = rules.check(&invoice(), &json!(null));
    let names: Vec<_> = failures.iter().map(|f| f.rule.as_str()).collect();
    assert_eq!(
        names,
        [
            "missing-field",
            "not-a-bool",
            "bad-sum",
            "forbidden-missing"
        ]
    );
    assert!(
        failures[0].message.contains("could not be evaluated"),
        "{failures:?}"
    );
    assert!(failures[0].message.contains("nope"), "{failures:?}");
    assert!(failures[1].message.contains("not a bool"), "{failures:?}");
    assert!(failures[2].message.contains("sum"), "{failures:?}");
}

#[test]
fn compile_errors_name_the_rule() {
    let cases = [
        (
            vec![expr("ok", "true"), expr("broken", "output.total +")],
            vec![],
            "broken",
        ),
        (vec![], vec![regex("bad-re", "(unclosed")], "bad-re"),
        (
            vec![RuleSpec {
                regex: Some("x".into()),
                ..expr("both", "true")
            }],
            vec![],
            "both",
        ),
        (
            vec![RuleSpec {
                expr: None,
                ..expr("neither", "true")
            }],
            vec![],
            "neither",
        ),
    ];
    for (invariants, forbidden, name) in cases {
        match Rules::compile(&invariants, &forbidden) {
            Ok(_) => panic!("{name} compiled"),
            Err(err) => {
                assert_eq!(err.rule, name);
                assert!(
                    err.to_string().starts_with(&format!("rule `{name}`: ")),
                    "{err}"
                );
            }
        }
    }
}

#[test]
fn rules_are_shareable_across_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Rules>();
}

#[test]
fn conditions_see_input_and_steps_and_errors_are_not_guesses() {
    use crate::rules::Condition;
    let c = Condition::compile("steps.classify.output.category == 'bug' && input.priority > 1")
        .unwrap();
    let input = serde_json::json!({"priority": 2});
    let bug = serde_json::json!({"classify": {"output": {"category": "bug"}}});
    let billing = serde_json::json!({"classify": {"output": {"category": "billing"}}});
    assert_eq!(c.holds(&input, &bug), Ok(true));
    assert_eq!(c.holds(&input, &billing), Ok(false));
    assert!(
        c.holds(&input, &serde_json::json!({})).is_err(),
        "a missing step is an error"
    );
    assert!(Condition::compile("steps.(").is_err());
    assert!(
        Condition::compile("1 + 1")
            .unwrap()
            .holds(&input, &bug)
            .is_err(),
        "not a bool"
    );
}
