//! The LLM judge: a configured model grades an answer against a rubric.
//!
//! The judge is asked, through the gateway like any other call, for a JSON
//! verdict `{"reasoning": string, "score": number in 0..=1}` with a
//! `json_schema` response format. Its reply goes through keel's
//! structured-output pipeline — JSON found in the text and conservatively
//! repaired (`keel_policy::extract`), then checked against the verdict
//! schema (`keel_policy::schema`) — and an invalid verdict is re-asked with
//! the precise errors, `max_reasks` times, before the scorer gives up
//! (score 0, the errors in its detail). The reasoning is kept with the
//! score in the results.

use keel_policy::extract::extract;
use keel_policy::schema::{Schema, describe};
use serde_json::{Map, Value, json};

use crate::run::Client;
use crate::spec::JudgeSpec;

const INSTRUCTIONS: &str = "You are a strict, fair evaluator. Grade the ANSWER to the INPUT against the RUBRIC (and the EXPECTED answer, when one is given). Think it through in `reasoning`, then give `score`: a number from 0 (fails the rubric entirely) to 1 (meets it fully). Reply with one JSON object {\"reasoning\": \"...\", \"score\": 0.0} and nothing else.";

/// A validated verdict.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub score: f64,
    pub reasoning: String,
}

fn verdict_schema() -> Value {
    json!({
        "type": "object",
        "required": ["reasoning", "score"],
        "properties": {
            "reasoning": {"type": "string", "minLength": 1},
            "score": {"type": "number", "minimum": 0, "maximum": 1}
        },
        "additionalProperties": false
    })
}

/// The judge's prompt for one answer.
pub fn prompt(
    rubric: &str,
    input: &Map<String, Value>,
    expected: Option<&Value>,
    answer: &str,
) -> String {
    let mut p = format!(
        "RUBRIC:\n{}\n\nINPUT:\n{}\n",
        rubric.trim(),
        serde_json::to_string_pretty(input).unwrap_or_default()
    );
    if let Some(e) = expected {
        let e = match e {
            Value::String(s) => s.clone(),
            other => serde_json::to_string_pretty(other).unwrap_or_default(),
        };
        p.push_str(&format!("\nEXPECTED:\n{e}\n"));
    }
    p.push_str(&format!("\nANSWER:\n{answer}\n"));
    p
}

/// Checks one reply of the judge: the verdict, or the errors to re-ask with.
pub fn check(schema: &Schema, reply: &str) -> Result<Verdict, Vec<String>> {
    let Some(found) = extract(reply, true) else {
        return Err(vec!["the reply holds no JSON object".to_owned()]);
    };
    schema
        .validate(&found.value)
        .map_err(|v| describe(&v).lines().map(str::to_owned).collect::<Vec<_>>())?;
    Ok(Verdict {
        score: found.value["score"].as_f64().unwrap_or(0.0),
        reasoning: found.value["reasoning"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    })
}

/// Asks the judge about one answer.
pub(crate) async fn ask(
    client: &Client,
    judge: &JudgeSpec,
    input: &Map<String, Value>,
    expected: Option<&Value>,
    answer: &str,
) -> Result<Verdict, String> {
    let schema_value = verdict_schema();
    let schema = Schema::compile(&schema_value).map_err(|e| e.to_string())?;
    let mut messages = vec![
        json!({"role": "system", "content": INSTRUCTIONS}),
        json!({"role": "user", "content": prompt(&judge.rubric, input, expected, answer)}),
    ];
    let mut last = Vec::new();
    for _ in 0..=judge.max_reasks {
        let body = json!({
            "model": judge.model,
            "temperature": 0,
            "messages": messages,
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "verdict", "schema": schema_value, "strict": true}
            },
        });
        let out = client.chat(&body).await;
        if let Some(e) = out.error {
            return Err(e);
        }
        match check(&schema, &out.text) {
            Ok(v) => return Ok(v),
            Err(errors) => {
                messages.push(json!({"role": "assistant", "content": out.text}));
                messages.push(json!({
                    "role": "user",
                    "content": format!(
                        "That verdict was invalid:\n- {}\nReply again with only the JSON object.",
                        errors.join("\n- ")
                    ),
                }));
                last = errors;
            }
        }
    }
    Err(format!(
        "no valid verdict after {} ask(s): {}",
        judge.max_reasks + 1,
        last.join("; ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_are_validated_and_repaired() {
        let schema = Schema::compile(&verdict_schema()).unwrap();
        let v = check(
            &schema,
            "Here:\n```json\n{\"reasoning\": \"on topic\", \"score\": 0.75,}\n```",
        )
        .unwrap();
        assert_eq!(
            v,
            Verdict {
                score: 0.75,
                reasoning: "on topic".into()
            }
        );
        let e = check(&schema, "{\"reasoning\": \"x\", \"score\": 7}").unwrap_err();
        assert!(e.iter().any(|m| m.contains("score")), "{e:?}");
        assert!(check(&schema, "I think it is fine.").is_err());
        assert!(
            check(&schema, "{\"score\": 1}").is_err(),
            "reasoning is required"
        );
    }

    #[test]
    fn the_prompt_carries_rubric_input_expected_and_answer() {
        let input = serde_json::json!({"ticket": "refund please"});
        let p = prompt(
            "Be polite.",
            input.as_object().unwrap(),
            Some(&"billing".into()),
            "OK",
        );
        for part in [
            "RUBRIC:\nBe polite.",
            "refund please",
            "EXPECTED:\nbilling",
            "ANSWER:\nOK",
        ] {
            assert!(p.contains(part), "{part} missing from {p}");
        }
    }
}
