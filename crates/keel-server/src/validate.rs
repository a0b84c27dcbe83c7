//! Phase 8, validate output: the loop shared by functions and the chat
//! endpoint's opt-in validation. Each answer is checked; an invalid one goes
//! back to the same target with its precise errors (re-ask) up to
//! `max_reasks`, then the chain falls back to its next link, and when
//! nothing valid came back the caller gets the last errors and raw text —
//! never the invalid output as if it were valid.

use keel_config::ModelConfig;
use keel_core::{CallContext, Error};
use keel_policy::extract::{Repair, extract};
use keel_policy::schema::{Schema, describe};
use keel_protocol::chat::{ChatRequest, ChatResponse, Message, Role, Usage};
use serde_json::Value;
use tokio::time::Instant;

use crate::attempt::{self, Answer};
use crate::held::Held;
use crate::record::Trail;
use crate::state::Gateway;

/// What decides whether a reply is acceptable: the accepted value and the
/// repairs it needed, or every problem found.
pub(crate) type Check<'a> =
    dyn Fn(&str) -> Result<(Value, Vec<Repair>), Vec<String>> + Send + Sync + 'a;

/// A valid answer and where it came from.
pub(crate) struct Accepted {
    pub value: Value,
    pub repairs: Vec<Repair>,
    /// The answer as the upstream gave it (its usage is `usage`).
    pub response: ChatResponse,
    pub provider: String,
    pub model: String,
    pub reasks: u32,
    /// Every call's usage, re-asks included.
    pub usage: Usage,
    pub held: Held,
}

pub(crate) enum Rejected {
    Call(Error),
    /// The last errors and the last raw reply.
    Invalid {
        errors: Vec<String>,
        raw: String,
    },
}

/// Extracts the JSON from a reply (recording repairs) and validates it.
pub(crate) fn json_output(schema: &Schema, raw: &str) -> Result<(Value, Vec<Repair>), Vec<String>> {
    let Some(found) = extract(raw, schema.wants_object()) else {
        return Err(vec!["the reply contains no JSON".to_owned()]);
    };
    match schema.validate(&found.value) {
        Ok(()) => Ok((found.value, found.repairs)),
        Err(violations) => Err(describe(&violations).lines().map(str::to_owned).collect()),
    }
}

#[allow(clippy::too_many_arguments)] // the loop's whole context, passed once
pub(crate) async fn run(
    gw: &Gateway,
    model: &ModelConfig,
    first: &ChatRequest,
    ctx: &CallContext,
    deadline: Instant,
    max_reasks: u32,
    trail: &mut Trail,
    check: &Check<'_>,
) -> Result<Accepted, Rejected> {
    let checked = trail.subject.clone();
    let checked = checked.as_str();
    let mut usage = Usage::default();
    let mut reasks_total = 0;
    let mut last_invalid: Option<(Vec<String>, String)> = None;
    let mut from = 0;
    let mut first = first.clone();
    first.stream = false; // validated before any byte reaches the client
    while from < model.chain.len() {
        let mut req = first.clone();
        let mut reasks = 0;
        loop {
            let served =
                match attempt::run(gw, model, &req, ctx, deadline, from, &mut trail.attempts).await
                {
                    Ok(s) => s,
                    Err(e) => {
                        return Err(match last_invalid {
                            Some((errors, raw)) => Rejected::Invalid { errors, raw },
                            None => Rejected::Call(e),
                        });
                    }
                };
            let Answer::Full(response) = served.answer else {
                return Err(Rejected::Call(Error::internal(
                    "a validated call was answered as a stream",
                )));
            };
            usage.add(response.usage);
            trail.usage.add(response.usage);
            // A reply forced into a tool call carries its JSON as arguments.
            let raw = response
                .tool_calls
                .first()
                .map_or_else(|| response.text.clone(), |c| c.arguments.clone());
            match check(&raw) {
                Ok((value, repairs)) => {
                    match repairs.as_slice() {
                        [] => trail.verdict(checked, "pass", None),
                        done => trail.verdict(
                            checked,
                            "repaired",
                            Some(serde_json::to_string(done).unwrap_or_default()),
                        ),
                    }
                    trail.reasks = reasks_total;
                    return Ok(Accepted {
                        value,
                        repairs,
                        response,
                        provider: served.provider,
                        model: served.model,
                        reasks: reasks_total,
                        usage,
                        held: served.held,
                    });
                }
                Err(errors) => {
                    tracing::info!(provider = %served.provider, reasks, errors = ?errors, "invalid output");
                    trail.verdict(checked, "fail", Some(errors.join("; ")));
                    last_invalid = Some((errors.clone(), raw.clone()));
                    if reasks >= max_reasks {
                        from = served.link + 1;
                        break;
                    }
                    reasks += 1;
                    reasks_total += 1;
                    trail.reasks = reasks_total;
                    req.messages.push(Message::text(Role::Assistant, raw));
                    req.messages
                        .push(Message::text(Role::User, reask_prompt(&errors)));
                    from = served.link;
                }
            }
        }
    }
    let (errors, raw) = last_invalid.unwrap_or_default();
    Err(Rejected::Invalid { errors, raw })
}

fn reask_prompt(errors: &[String]) -> String {
    format!(
        "Your previous reply was invalid:\n{}\nReply again with only the corrected JSON, nothing else.",
        errors
            .iter()
            .map(|e| format!("- {e}"))
            .collect::<Vec<_>>()
            .join("\n")
    )
}
