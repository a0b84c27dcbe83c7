//! The request lifecycle, phase by phase, for every front door:
//!
//! 1. **admit**: a permit from the gateway-wide in-flight limit, waiting in
//!    a bounded queue at most `max_wait`, else shed with 503 + Retry-After.
//!    It comes first so that shedding costs nothing (the body is not even
//!    read), and the permit lives until the response body ends;
//! 2. **decode**: read the body under the size limit and parse the client's
//!    protocol into the internal model (`body.rs`, `front.rs`);
//! 3. **authenticate**: the caller's virtual key (`auth.rs`), or 401;
//! 4. guard input: not yet built;
//! 5. **cache**: an exact-match answer, when the route or the request
//!    asks for it (`Caching`);
//! 6. **route**: model alias → its fallback chain and deadline;
//! 7. **attempt**: the chain walked under timeouts, retries, budgets and
//!    breakers (`attempt.rs`); when every target fails, the model's
//!    degradation (`error`, `stale`, `static`);
//! 8. validate output: not yet built;
//! 9. **translate**: internal answer → the client's protocol, stream or not
//!    (`front.rs`, `stream.rs`);
//! 10. **record**: one record per request, emitted once as a log line,
//!     metrics, a trace and a stored row (`record.rs`, `sinks.rs`).
//!
//! Each phase ends the request with a typed [`Error`] when it fails.

use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use keel_config::{ModelConfig, OnFailure};
use keel_core::{CallContext, Error, ErrorKind};
use keel_policy::schema::Schema;
use keel_protocol::chat::{
    Assembler, ChatRequest, ChatResponse, FinishReason, Message, ResponseFormat, Role, Usage,
};
use keel_protocol::{openai, tokens};
use keel_resilience::admission::Permit;
use keel_store::VirtualKey;
use tokio::time::Instant;

use crate::attempt::{self, Answer, Served};
use crate::cache::{self, Caching};
use crate::front::Front;
use crate::guard::{self, GuardSet};
use crate::held::{self, Held};
use crate::record::{Record, Trail};
use crate::stale::StaleAnswers;
use crate::state::Gateway;
use crate::validate::{self, Rejected};
use crate::{auth, body, rate, spend, stream};

/// Which header carries the simulator's fault spec through to a `sim` provider.
const SIM_FAULT: &str = "x-keel-sim-fault";
/// A client may shorten (never lengthen) the model's deadline: `30s`, `500ms`, or seconds.
const TIMEOUT_HEADER: &str = "x-keel-timeout";

/// A chat request at either front door.
pub(crate) async fn chat(gw: Gateway, front: Front, headers: HeaderMap, body: Body) -> Response {
    // 1. admit
    let (mut rec, ctx, permit) = match admit(&gw, front, "chat", &headers).await {
        Ok(x) => x,
        Err(shed) => return shed,
    };
    // 2. decode
    let mut req = match decode(&gw, front, &headers, body, &mut rec).await {
        Ok(r) => r,
        Err(e) => return failed(front, rec, &e),
    };
    rec.phase("decode");
    rec.data.model.clone_from(&req.model);
    rec.data.stream = req.stream;
    // 6. route
    let Some(model) = gw.config().models.get(&req.model) else {
        return failed(front, rec, &Error::model_not_found(&req.model));
    };
    rec.capture(model.capture);
    // The guardrails of the model the client asked for, whatever model
    // `on_oversize` or a `route` action then sends the request to.
    let guards = model
        .guardrails
        .as_ref()
        .and_then(|name| gw.inner.guards.get(name))
        .cloned();
    let key = rec.key.clone();
    let (mut model, counted) =
        match admit_chat(&gw, model, key.as_deref(), &mut req, &mut rec).await {
            Ok(m) => m,
            Err(e) => return failed(front, rec, &e),
        };
    // 4. guard input
    let mut restore_map = Vec::new();
    if let Some(set) = &guards {
        match guard::input(&gw, set, &mut req, &mut rec.trail.verdicts).await {
            Ok(admitted) => {
                restore_map = admitted.restore;
                if let Some(alias) = admitted.route
                    && let Some(stricter) = gw.config().models.get(&alias)
                {
                    model = stricter;
                }
            }
            Err(e) => {
                let fired: Vec<_> = guard::header(&rec.trail.verdicts).into_iter().collect();
                let mut response = failed(front, rec, &e);
                set_headers(&mut response, &fired);
                return response;
            }
        }
        rec.phase("guard");
    }
    let deadline = deadline(&headers, model);
    // 5. cache
    let caching = Caching::of(&gw, &headers, model, &req);
    let hit = match &caching {
        Some(c) => match cache::lookup(&gw, c).await {
            Ok(hit) => hit,
            Err(e) => return failed(front, rec, &e),
        },
        None => None,
    };
    if hit.is_none() {
        let within = deadline.saturating_duration_since(Instant::now());
        let validated = (model.validate_output
            && matches!(req.response_format, Some(ResponseFormat::JsonSchema { .. })))
            || guards.as_ref().is_some_and(|g| g.whole());
        // Validation may re-ask every link of the chain.
        let calls = if validated {
            (model.max_reasks + 1)
                .saturating_mul(u32::try_from(model.chain.len()).unwrap_or(u32::MAX))
        } else {
            1
        };
        let worst = spend::Worst::chat(&req, counted, calls);
        match spend::reserve_worst(&gw, key.as_ref(), model, worst, within).await {
            Ok(hold) => rec.hold = hold,
            Err(e) => return failed(front, rec, &e),
        }
    }
    // 7. attempt (`looped`: through the validation loop, which ran the
    // synchronous output checks)
    let mut looped = false;
    let result = match (&hit, &req.response_format) {
        (Some(answer), _) => {
            rec.data.cache_hit = true;
            // Nothing was paid for this answer.
            rec.data.cost_usd = Some(0.0);
            Ok(Served {
                provider: "cache".to_owned(),
                model: answer.model.clone(),
                link: 0,
                answer: Answer::Full((**answer).clone()),
                held: Vec::new(),
            })
        }
        // 8. validate output, when the route opted in or an output
        // guardrail may re-ask or fall back.
        (None, format)
            if validates(model, format).is_some() || guards.as_ref().is_some_and(|g| g.whole()) =>
        {
            looped = true;
            let schema = validates(model, format);
            rec.trail.subject = if schema.is_some() {
                "response_format"
            } else {
                "guardrails"
            }
            .to_owned();
            let checks = Checks {
                schema,
                guards: guards.as_deref(),
                taken: &restore_map,
            };
            validated(&gw, model, &req, &ctx, deadline, checks, &mut rec.trail).await
        }
        (None, _) => {
            attempt::run(&gw, model, &req, &ctx, deadline, 0, &mut rec.trail.attempts).await
        }
    };
    rec.phase("attempt");
    let count = rec.trail.attempts.len();
    let input_estimate = tokens::estimate_request(&req);
    let mut held: Held = vec![Box::new(permit)];
    let (served, degraded) = match result {
        Ok(served) => (served, None),
        // An answer a guardrail refused is not replaced by a stale one.
        Err(e) => match (e.kind != ErrorKind::OutputBlocked)
            .then(|| degrade(&gw, model, &req, &rec))
            .flatten()
        {
            Some((served, how)) => (served, Some(how)),
            None => {
                let mut response = failed(front, rec, &e);
                set_headers(&mut response, &[("x-keel-attempts", count.to_string())]);
                return response;
            }
        },
    };
    rec.served(&served.provider, &served.model);
    if let Some(how) = degraded {
        rec.data.degraded = Some(how.to_owned());
        // The stale or static answer cost nothing; the failed calls before
        // it may have (answers that failed validation).
        rec.data.cost_usd = Some(rec.trail_cost().unwrap_or(0.0));
    }
    let mut names = vec![
        ("x-keel-provider", served.provider.clone()),
        ("x-keel-model", served.model.clone()),
        ("x-keel-attempts", count.to_string()),
    ];
    if let Some(how) = degraded {
        names.push(("x-keel-degraded", how.to_owned()));
    }
    if let Some(c) = &caching {
        let state = match (&hit, c.lookup) {
            (Some(_), _) => "hit",
            (None, true) => "miss",
            (None, false) => "refresh",
        };
        names.push(("x-keel-cache", state.to_owned()));
    }
    held.extend(served.held);
    // A streamed upstream answer is cached once it ends well.
    let mut fill = None;
    // 9. translate
    let events: keel_core::EventStream = match served.answer {
        Answer::Full(mut resp) => {
            fill_usage(&mut resp, input_estimate);
            // Output guardrails on a whole answer (the validation loop ran
            // the synchronous ones already, and redacted).
            if let Some(set) = &guards
                && degraded.is_none()
            {
                let system = req.system.join("\n");
                // The text and every tool call's arguments.
                // (The loop ran the synchronous checks on the text; tool
                // calls get every check here.)
                let mut pieces: Vec<(&mut String, bool)> = vec![(&mut resp.text, looped)];
                pieces.extend(
                    resp.tool_calls
                        .iter_mut()
                        .map(|c| (&mut c.arguments, false)),
                );
                let mut refused = None;
                for (piece, only_async) in pieces {
                    let verdicts = &mut rec.trail.verdicts;
                    match guard::output_whole(
                        &gw,
                        set,
                        piece,
                        &system,
                        only_async,
                        &restore_map,
                        verdicts,
                    )
                    .await
                    {
                        Ok(text) => *piece = text,
                        Err(e) => {
                            refused = Some(e);
                            break;
                        }
                    }
                }
                if let Some(e) = refused {
                    // The refused answer was paid for.
                    rec.usage = resp.usage;
                    let mut fired: Vec<_> =
                        guard::header(&rec.trail.verdicts).into_iter().collect();
                    fired.push(("x-keel-attempts", count.to_string()));
                    let mut response = failed(front, rec, &e);
                    set_headers(&mut response, &fired);
                    return response;
                }
            }
            names.extend(guard::header(&rec.trail.verdicts));
            if model_keeps_stale(model) && degraded.is_none() {
                gw.inner
                    .stale
                    .put(StaleAnswers::key(&model.name, &req), &resp);
            }
            // Only a fresh, whole, successful answer is cached.
            if let Some(c) = &caching
                && hit.is_none()
                && degraded.is_none()
                && resp.finish_reason != FinishReason::ContentFilter
            {
                cache::store(&gw, c, resp.clone());
            }
            // Placeholders back to what the input redaction took out — only
            // now: what is cached or kept for staleness is the redacted answer
            // (another user's redacted request may match it).
            resp.text = guard::restored(&resp.text, &restore_map);
            if !req.stream {
                rec.usage = resp.usage;
                names.extend(cost_header(&rec));
                let body = front.encode(&resp);
                if rec.wants_bodies() {
                    rec.output(String::from_utf8_lossy(&body).into_owned());
                }
                rec.ok();
                let mut response = json_holding(body, held);
                set_headers(&mut response, &names);
                return response;
            }
            // A degraded (or JSON-replayed) answer to a stream request is
            // still a stream.
            Box::pin(futures::stream::iter(resp.to_events().into_iter().map(Ok)))
        }
        Answer::Stream(first, rest) => {
            // What the input checks did (the output checks' verdicts come
            // after the headers: they are in the record).
            names.extend(guard::header(&rec.trail.verdicts));
            let events: keel_core::EventStream =
                Box::pin(futures::stream::once(async move { Ok(first) }).chain(rest));
            let guarded = guards
                .clone()
                .filter(|g| !g.output.is_empty() || !restore_map.is_empty());
            match guarded {
                // A guarded stream is not cached: what it sends is what the
                // checks let through, decided as it goes.
                Some(set) => {
                    let verdicts = rec.late_verdicts();
                    guard::stream(set, events, req.system.join("\n"), restore_map, verdicts)
                }
                None => {
                    if let Some(c) = caching
                        && degraded.is_none()
                    {
                        fill = Some(stream::CacheFill {
                            gw: gw.clone(),
                            caching: c,
                            answer: Assembler::default(),
                        });
                    }
                    events
                }
            }
        }
    };
    let mut response = stream::respond(
        front,
        events,
        rec,
        stream::Options {
            include_usage: req.include_usage,
            input_estimate,
            fill,
        },
        held,
    );
    set_headers(&mut response, &names);
    response
}

/// `POST /v1/embeddings` (OpenAI front door only): admitted like chat, sent
/// to the first available target of the model's chain.
pub(crate) async fn embeddings(gw: Gateway, headers: HeaderMap, body: Body) -> Response {
    let front = Front::OPENAI;
    let (mut rec, ctx, permit) = match admit(&gw, front, "embeddings", &headers).await {
        Ok(x) => x,
        Err(shed) => return shed,
    };
    let result = async {
        let bytes = body::read(&headers, body, gw.config().server.max_body_bytes).await?;
        rec.input(bytes.clone());
        let mut req = openai::decode_embeddings_request(&bytes).map_err(|e| {
            let err = Error::invalid_request(e.message);
            e.param.map_or(err.clone(), |p| err.with_param(p))
        })?;
        rec.data.model.clone_from(&req.model);
        let model = gw
            .config()
            .models
            .get(&req.model)
            .ok_or_else(|| Error::model_not_found(&req.model))?;
        rec.capture(model.capture);
        auth::allow(rec.key.as_deref(), &model.name)?;
        // The model's input guardrails read every input (block, redact,
        // flag; there is no answer to restore into, nor another route).
        if let Some(set) = model
            .guardrails
            .as_ref()
            .and_then(|n| gw.inner.guards.get(n))
        {
            let mut texts = ChatRequest {
                messages: req
                    .input
                    .iter()
                    .map(|t| Message::text(Role::User, t.clone()))
                    .collect(),
                ..ChatRequest::default()
            };
            guard::input(&gw, set, &mut texts, &mut rec.trail.verdicts).await?;
            req.input = texts.messages.iter().map(Message::joined_text).collect();
        }
        let (target, up) = model
            .targets()
            .find_map(|t| gw.inner.upstreams.get(&t.provider).map(|up| (t, up)))
            .ok_or_else(|| {
                Error::unavailable(format!(
                    "no provider is available for model `{}`",
                    model.name
                ))
            })?;
        rec.served(&target.provider, &target.model);
        let base64 = req.encoding_format.as_deref() == Some("base64");
        let estimate = req
            .input
            .iter()
            .map(|s| tokens::estimate(s))
            .fold(0, u32::saturating_add);
        // Limits and budgets as for chat: the input is all an embedding costs.
        let key = rec.key.clone();
        rate::admit(&gw, model, key.as_deref(), estimate).await?;
        let worst = spend::Worst {
            input: estimate,
            output: 0,
            calls: 1,
        };
        let within = deadline(&headers, model).saturating_duration_since(Instant::now());
        rec.hold = spend::reserve_worst(&gw, key.as_ref(), model, worst, within).await?;
        req.model.clone_from(&target.model);
        let mut resp = up.provider.embed(req, &ctx).await?;
        if resp.input_tokens == 0 {
            resp.input_tokens = estimate;
        }
        if resp.model.is_empty() {
            resp.model.clone_from(&target.model);
        }
        Ok::<_, Error>((resp, base64, target.provider.clone(), target.model.clone()))
    }
    .await;
    match result {
        Ok((resp, base64, provider, upstream_model)) => {
            rec.usage = Usage {
                input_tokens: resp.input_tokens,
                ..Usage::default()
            };
            let cost = cost_header(&rec);
            let guarded = guard::header(&rec.trail.verdicts);
            rec.ok();
            let mut response = json_holding(
                openai::encode_embeddings_response(&resp, base64),
                vec![Box::new(permit)],
            );
            set_headers(
                &mut response,
                &[
                    ("x-keel-provider", provider),
                    ("x-keel-model", upstream_model),
                ]
                .into_iter()
                .chain(cost)
                .chain(guarded)
                .collect::<Vec<_>>(),
            );
            response
        }
        Err(e) => failed(front, rec, &e),
    }
}

/// A chat answer held to the client's `response_format.json_schema`: asked
/// whole, validated (repairs allowed), re-asked and fallen back like a
/// function's output; the client gets the validated JSON, or a 422.
/// The schema a chat answer is validated against: the request's
/// `response_format` json_schema, when the route opted in.
fn validates<'a>(
    model: &ModelConfig,
    format: &'a Option<ResponseFormat>,
) -> Option<&'a serde_json::Value> {
    match format {
        Some(ResponseFormat::JsonSchema { schema, .. }) if model.validate_output => Some(schema),
        _ => None,
    }
}

/// What the validation loop checks a chat answer against.
struct Checks<'a> {
    schema: Option<&'a serde_json::Value>,
    /// Output guardrails that may re-ask or fall back.
    guards: Option<&'a GuardSet>,
    /// Placeholders the input redaction handed out.
    taken: &'a [(String, String)],
}

async fn validated(
    gw: &Gateway,
    model: &ModelConfig,
    req: &ChatRequest,
    ctx: &CallContext,
    deadline: Instant,
    checks: Checks<'_>,
    trail: &mut Trail,
) -> Result<Served, Error> {
    let schema = checks
        .schema
        .map(|s| {
            Schema::compile(s).map_err(|e| {
                Error::invalid_request(format!("response_format.json_schema.schema: {e}"))
                    .with_param("response_format")
            })
        })
        .transpose()?;
    let guarded = guard::LoopGuard::new(checks.guards, req, checks.taken);
    let check = |raw: &str| {
        let (value, repairs) = match &schema {
            Some(s) => validate::json_output(s, raw)?,
            None => (serde_json::Value::String(raw.to_owned()), Vec::new()),
        };
        guarded.check(value, repairs)
    };
    // Guardrails alone re-ask only when a check says `reask` (at least
    // once), and go straight to the next target when they say `fallback`.
    let reasks = match (&schema, checks.guards) {
        (None, Some(g)) if g.reasks() => model.max_reasks.max(1),
        (None, Some(_)) => 0,
        _ => model.max_reasks,
    };
    // The cache phase replayed (or records) the validated answer whole.
    let result = validate::run(
        gw,
        model,
        req,
        ctx,
        deadline,
        reasks,
        validate::Replay::Whole,
        trail,
        &check,
    )
    .await;
    guarded.finish(&mut trail.verdicts)?;
    match result {
        Ok(accepted) => {
            let mut response = accepted.response;
            match (schema.is_some(), accepted.value) {
                // The validated (possibly repaired) JSON, not the raw reply.
                (true, value) => {
                    response.text = value.to_string();
                    response.tool_calls.clear();
                }
                // Guardrails alone: the answer as it came (tool calls kept;
                // the output checks run on them after the loop), its text
                // as the checks left it.
                (false, serde_json::Value::String(text)) if response.tool_calls.is_empty() => {
                    response.text = text;
                }
                (false, _) => {}
            }
            response.usage = accepted.usage;
            Ok(Served {
                provider: accepted.provider,
                model: accepted.model,
                link: 0,
                answer: Answer::Full(response),
                held: accepted.held,
            })
        }
        Err(Rejected::Call(e)) => Err(e),
        Err(Rejected::Invalid { errors, .. }) => Err(Error::output_invalid(format!(
            "the answer did not pass {} after {} call(s): {}",
            if schema.is_some() {
                "response_format.json_schema"
            } else {
                "the output guardrails"
            },
            trail.attempts.len(),
            errors.join("; ")
        ))),
    }
}

/// What every entry point starts with: the request's record and call
/// context, phase 1 — an admission permit, or the shed response — and
/// phase 3, the caller's virtual key (`rec.key`), or 401.
pub(crate) async fn admit(
    gw: &Gateway,
    front: Front,
    op: &'static str,
    headers: &HeaderMap,
) -> Result<(Record, CallContext, Permit), Response> {
    let mut rec = Record::start(gw, front, op, headers);
    let ctx = context(headers, &rec);
    let permit = match gw.inner.admission.acquire().await {
        Ok(permit) => permit,
        Err(shed) => return Err(failed(front, rec, &Error::overloaded(shed.retry_after))),
    };
    rec.admitted();
    match auth::authenticate(gw, headers).await {
        Ok(key) => rec.key = key,
        Err(e) => return Err(failed(front, rec, &e)),
    }
    rec.phase("authenticate");
    Ok((rec, ctx, permit))
}

/// Phase 2: the body under the size limit, in the client's protocol.
async fn decode(
    gw: &Gateway,
    front: Front,
    headers: &HeaderMap,
    body: Body,
    rec: &mut Record,
) -> Result<ChatRequest, Error> {
    let bytes = body::read(headers, body, gw.config().server.max_body_bytes).await?;
    rec.input(bytes.clone());
    front.decode(&bytes)
}

/// The route's input limits, before any call: a `max_tokens` over
/// `max_output_tokens` is refused (400); an input over `max_input_tokens`
/// (counted in the encoding of the route's first target) goes to
/// `on_oversize` when set, else is refused (413). Either way no upstream
/// is called.
fn limits<'a>(
    gw: &'a Gateway,
    model: &'a ModelConfig,
    req: &ChatRequest,
    rec: &mut Record,
) -> Result<&'a ModelConfig, Error> {
    if let (Some(max), Some(asked)) = (model.max_output_tokens, req.max_tokens)
        && asked > max
    {
        return Err(Error::invalid_request(format!(
            "max_tokens {asked} is over this model's limit of {max} (models.{}.max_output_tokens)",
            model.name
        ))
        .with_param("max_tokens"));
    }
    let Some(max) = model.max_input_tokens else {
        return Ok(model);
    };
    let encoding = model.targets().next().map_or("", |t| t.model.as_str());
    let counted = tokens::count_request(req, encoding);
    if counted <= max {
        return Ok(model);
    }
    let oversize = || {
        Error::payload_too_large(0).with_message(format!(
            "the input is {counted} tokens, over this model's limit of {max} (models.{}.max_input_tokens)",
            model.name
        ))
    };
    let Some(other) = model
        .on_oversize
        .as_ref()
        .and_then(|alias| gw.config().models.get(alias))
    else {
        return Err(oversize());
    };
    rec.trail.verdicts.push(keel_store::Verdict {
        stage: "input_limit".to_owned(),
        name: other.name.clone(),
        outcome: "rerouted".to_owned(),
        detail: Some(format!("{counted} input tokens > {max}")),
    });
    // The long-context route has its own limit, checked the same way.
    limits(gw, other, req, rec)
}

/// What a chat request must pass once its model is known: the key's
/// allow-list (403), the model's and the key's input limits (400/413, or
/// the model's `on_oversize` route), and keel's rate limits (429). Returns
/// the model that will serve it and the input's token count.
async fn admit_chat<'a>(
    gw: &'a Gateway,
    model: &'a ModelConfig,
    key: Option<&VirtualKey>,
    req: &mut ChatRequest,
    rec: &mut Record,
) -> Result<(&'a ModelConfig, u32), Error> {
    auth::allow(key, &model.name)?;
    let model = limits(gw, model, req, rec)?;
    // `on_oversize` may have chosen another model: the key must be allowed it too.
    auth::allow(key, &model.name)?;
    let encoding = model.targets().next().map_or("", |t| t.model.as_str());
    let counted = tokens::count_request(req, encoding);
    auth::limits(key, req, counted)?;
    if req.max_tokens.is_none() {
        req.max_tokens = output_cap(gw, model, key);
    }
    let tokens = counted.saturating_add(req.max_tokens.unwrap_or(0));
    rate::admit(gw, model, key, tokens).await?;
    Ok((model, counted))
}

/// The `max_tokens` keel sends when the client sent none: the lowest of
/// the model's and the key's `max_output_tokens` and, for a budgeted key,
/// `[budgets] default_max_tokens` — an output cap is a cap, and a budget
/// needs a bounded worst case. `None`: no cap applies, the upstream's
/// default stands.
fn output_cap(gw: &Gateway, model: &ModelConfig, key: Option<&VirtualKey>) -> Option<u32> {
    let budget = key
        .filter(|k| spend::budgeted(gw, k))
        .map(|_| gw.config().budgets.default_max_tokens);
    [
        model.max_output_tokens,
        key.and_then(|k| k.settings.max_output_tokens),
        budget,
    ]
    .into_iter()
    .flatten()
    .min()
}

/// What a function or workflow call must pass before it runs: the key's
/// allow-list for every model it may call (403), keel's request rate
/// limits for each (429; their input is not known yet, so token limits
/// count one), and room in the key's budgets (402, see [`spend`]).
pub(crate) async fn admit_call(
    gw: &Gateway,
    rec: &mut Record,
    models: &[&str],
) -> Result<(), Error> {
    let key = rec.key.clone();
    for name in models {
        auth::allow(key.as_deref(), name)?;
        if let Some(model) = gw.config().models.get(*name) {
            rate::admit(gw, model, key.as_deref(), 0).await?;
        }
    }
    rec.hold = spend::reserve_call(gw, key.as_ref()).await?;
    Ok(())
}

/// The model's deadline, shortened by the client's `x-keel-timeout` if it
/// asked for less.
pub(crate) fn deadline(headers: &HeaderMap, model: &ModelConfig) -> Instant {
    let asked = headers
        .get(TIMEOUT_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_duration);
    let timeout = asked.map_or(model.timeout, |a| a.min(model.timeout));
    Instant::now() + timeout
}

/// `250ms`, `30s`, `1.5s` or a plain number of seconds.
fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let (number, scale) = if let Some(ms) = s.strip_suffix("ms") {
        (ms, 0.001)
    } else if let Some(secs) = s.strip_suffix('s') {
        (secs, 1.0)
    } else {
        (s, 1.0)
    };
    let value: f64 = number.trim().parse().ok()?;
    (value.is_finite() && value > 0.0)
        .then(|| Duration::from_secs_f64((value * scale).min(86_400.0)))
}

fn model_keeps_stale(model: &ModelConfig) -> bool {
    model.on_failure == OnFailure::Stale
}

/// Phase 7's last resort: the model's configured degradation.
fn degrade(
    gw: &Gateway,
    model: &ModelConfig,
    req: &ChatRequest,
    rec: &Record,
) -> Option<(Served, &'static str)> {
    let (answer, how) = match &model.on_failure {
        OnFailure::Error => return None,
        OnFailure::Stale => (
            gw.inner.stale.get(StaleAnswers::key(&model.name, req))?,
            "stale",
        ),
        OnFailure::Static(message) => (
            ChatResponse {
                id: format!("keel-static-{}", rec.request_id()),
                model: model.name.clone(),
                created: unix_now(),
                text: message.clone(),
                tool_calls: Vec::new(),
                finish_reason: FinishReason::Stop,
                usage: Usage::default(),
            },
            "static",
        ),
    };
    Some((
        Served {
            provider: "keel".to_owned(),
            model: answer.model.clone(),
            link: 0,
            answer: Answer::Full(answer),
            held: Vec::new(),
        },
        how,
    ))
}

/// An upstream that reports no usage is billed by estimate, never at zero.
pub(crate) fn fill_usage(resp: &mut ChatResponse, input_estimate: u32) {
    if resp.usage.input_tokens == 0 {
        resp.usage.input_tokens = input_estimate;
    }
    if resp.usage.output_tokens == 0 {
        let args = resp
            .tool_calls
            .iter()
            .map(|c| tokens::estimate(&c.arguments));
        resp.usage.output_tokens = tokens::estimate(&resp.text).saturating_add(args.sum());
    }
    if resp.created == 0 {
        resp.created = unix_now();
    }
}

/// Anthropic answers carry no creation time; OpenAI clients expect one.
pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `t` in milliseconds since the Unix epoch (0 before it).
pub(crate) fn unix_ms(t: std::time::SystemTime) -> u64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

pub(crate) fn context(headers: &HeaderMap, rec: &Record) -> CallContext {
    CallContext {
        request_id: rec.request_id().to_owned(),
        ttft: None,
        sim_fault: headers
            .get(SIM_FAULT)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        trace: Some(rec.trace_ids()),
        traceparent: None,
    }
}

pub(crate) fn failed(front: Front, rec: Record, err: &Error) -> Response {
    rec.fail(err);
    front.error_response(err)
}

/// A JSON answer whose `held` values (permits) drop once it has been sent.
pub(crate) fn json_holding(body: Vec<u8>, held: Held) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        held::body(body, held),
    )
        .into_response()
}

/// `x-keel-cost`: the request's cost in US dollars, when its model is
/// priced. Streams carry it in their record and metrics only: their headers
/// leave before the usage is known.
pub(crate) fn cost_header(rec: &Record) -> Option<(&'static str, String)> {
    rec.cost().map(|c| ("x-keel-cost", format!("{c:.8}")))
}

pub(crate) fn set_headers(response: &mut Response, names: &[(&'static str, String)]) {
    let headers = response.headers_mut();
    for (name, value) in names {
        if let Ok(v) = HeaderValue::from_str(value) {
            headers.insert(*name, v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parse_duration;
    use std::time::Duration;

    #[test]
    fn client_deadlines_parse_and_nonsense_is_ignored() {
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("30s"), Some(Duration::from_secs(30)));
        assert_eq!(parse_duration("1.5"), Some(Duration::from_millis(1500)));
        for bad in ["", "soon", "-1s", "0", "NaN", "inf"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }
}
