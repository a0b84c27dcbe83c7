//! Phase 8, validate output: the loop shared by functions and the chat
//! endpoint's opt-in validation. Each answer is checked; an invalid one goes
//! back to the same target with its precise errors (re-ask) up to
//! `max_reasks`, then the chain falls back to its next link, and when
//! nothing valid came back the caller gets the last errors and raw text —
//! never the invalid output as if it were valid.
//!
//! For functions and workflows, every ask of the loop goes through the
//! record/replay file when one is configured (`[cache] file`): a recorded
//! answer is used without an upstream call, a miss while replaying fails
//! with 404 `replay_miss` before any call, and while recording every fresh
//! answer is appended — invalid ones too, so that a replay walks the same
//! re-asks. Only the file: the TTL cache (memory or Redis) is never asked
//! here. A chat request's validated answer is not replayed per ask: the
//! cache phase records and replays it whole, under the request's key
//! (which is its first ask's), so the loop must not record a first,
//! perhaps invalid, answer there.

use keel_config::ModelConfig;
use keel_core::{CallContext, Error};
use keel_policy::extract::{Repair, extract};
use keel_policy::schema::{Schema, describe};
use keel_protocol::chat::{ChatRequest, ChatResponse, Message, Role, Usage};
use serde_json::Value;
use tokio::time::Instant;

use crate::attempt::{self, Answer};
use crate::cache;
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
    /// `cache` when the accepted answer was replayed from the record file
    /// (`model` is then the model that recorded it).
    pub provider: String,
    pub model: String,
    pub reasks: u32,
    /// Every call's usage, re-asks included (replayed ones as recorded).
    pub usage: Usage,
    /// The part of `usage` paid for: not the replayed answers'.
    pub paid: Usage,
    /// Asks answered from the record/replay file, with no upstream call.
    pub replayed: u32,
    pub held: Held,
}

/// Whether the loop's asks go through the record/replay file one by one.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Replay {
    /// Functions and workflows.
    PerAsk,
    /// Chat: the cache phase replays the validated answer whole.
    Whole,
}

/// One ask's answer: fresh from an upstream, or replayed from the file.
struct Reply {
    response: ChatResponse,
    provider: String,
    model: String,
    link: usize,
    held: Held,
    replayed: bool,
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
    replay: Replay,
    trail: &mut Trail,
    check: &Check<'_>,
) -> Result<Accepted, Rejected> {
    let checked = trail.subject.clone();
    let checked = checked.as_str();
    let per_ask = replay == Replay::PerAsk && gw.inner.cassette.is_some();
    let mut usage = Usage::default();
    let mut paid = Usage::default();
    let mut replayed = 0;
    // Fall-backs after a link's re-asks ran out (part of an ask's key).
    let mut fallbacks = 0;
    let mut reasks_total = 0;
    let mut last_invalid: Option<(Vec<String>, String)> = None;
    let mut from = 0;
    let mut first = first.clone();
    first.stream = false; // validated before any byte reaches the client
    while from < model.chain.len() {
        let mut req = first.clone();
        let mut reasks = 0;
        loop {
            let key = per_ask.then(|| cache::ask_key(&req, fallbacks));
            // A replay miss is not an invalid answer: the recording lacks
            // this ask (a prompt, schema or model changed since).
            let recorded = match &key {
                Some(key) => cache::replayed(gw, key, &req.model).map_err(Rejected::Call)?,
                None => None,
            };
            let served = match recorded {
                Some(answer) => Reply {
                    response: (*answer).clone(),
                    // As a replayed chat answer says: served by the cache,
                    // with the model that recorded it.
                    provider: "cache".to_owned(),
                    model: answer.model.clone(),
                    // The link the ask started at (the file does not say
                    // which link answered: had a failing link been
                    // skipped while recording, the replay's fall-back
                    // may ask for a round that was never recorded).
                    link: from,
                    held: Vec::new(),
                    replayed: true,
                },
                None => {
                    let served = match attempt::run(
                        gw,
                        model,
                        &req,
                        ctx,
                        deadline,
                        from,
                        &mut trail.attempts,
                    )
                    .await
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
                    // Recorded before it is checked: an invalid answer
                    // is replayed too, and so is the re-ask after it.
                    if let Some(key) = key {
                        cache::record(gw, key, &req.model, &response);
                    }
                    Reply {
                        response,
                        provider: served.provider,
                        model: served.model,
                        link: served.link,
                        held: served.held,
                        replayed: false,
                    }
                }
            };
            let response = served.response;
            usage.add(response.usage);
            trail.usage.add(response.usage);
            if served.replayed {
                replayed += 1;
                trail.replayed += 1;
            } else {
                paid.add(response.usage);
                trail.paid.add(response.usage);
            }
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
                        paid,
                        replayed,
                        held: served.held,
                    });
                }
                Err(errors) => {
                    tracing::info!(provider = %served.provider, reasks, errors = ?errors, "invalid output");
                    trail.verdict(checked, "fail", Some(errors.join("; ")));
                    last_invalid = Some((errors.clone(), raw.clone()));
                    if reasks >= max_reasks {
                        from = served.link + 1;
                        fallbacks += 1;
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
