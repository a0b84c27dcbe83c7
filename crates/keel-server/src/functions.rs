//! Functions: named, typed LLM calls (`POST /v1/functions/{name}` and
//! `keel call`). The input is checked against its schema before any token is
//! spent; the prompts are rendered from compiled templates; the reply goes
//! through the validated-output pipeline — extract, conservative repair
//! (recorded), JSON Schema, invariants and forbidden states — and an invalid
//! one is re-asked with its precise errors, then fallen back to the next link
//! of the model's chain, then answered with a typed 422 `output_invalid`.
//! Unvalidated output is never returned where a schema was promised.
//! With a record/replay file (`[cache] file`), every ask — re-asks
//! included — is recorded or replayed on its own (see `validate.rs`).

use std::collections::BTreeMap;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use keel_config::{FunctionConfig, Rule, Structured};
use keel_core::{CallContext, Error};
use keel_policy::extract::Repair;
use keel_policy::rules::{RuleSpec, Rules};
use keel_policy::schema::{Schema, Violation};
use keel_policy::template::Template;
use keel_protocol::chat::{ChatRequest, Message, Protocol, ResponseFormat, Role, Usage};
use serde::Serialize;
use serde_json::{Value, json};

use crate::front::Front;
use crate::pipeline::{admit, admit_call, cost_header, deadline, json_holding, set_headers};
use crate::record::{Record, Trail};
use crate::state::Gateway;
use crate::validate::{self, Rejected};
use crate::{body, guard};

/// A function compiled at config load: templates, validators and rules.
pub(crate) struct Function {
    pub config: FunctionConfig,
    system: Option<Template>,
    user: Template,
    input_schema: Option<Schema>,
    output_schema: Option<Schema>,
    rules: Rules,
    /// The config's version label plus the prompts' content hash.
    pub version: String,
}

impl Function {
    pub fn compile(config: &FunctionConfig) -> Result<Function, String> {
        let at = |what: &str| format!("functions.{}.{what}", config.name);
        let system = match &config.system {
            Some(p) => Some(
                Template::compile(&p.path.display().to_string(), &p.source, &config.version)
                    .map_err(|e| format!("{}: {e}", at("system")))?,
            ),
            None => None,
        };
        let user = Template::compile(
            &config.user.path.display().to_string(),
            &config.user.source,
            &config.version,
        )
        .map_err(|e| format!("{}: {e}", at("user")))?;
        let schema = |s: &Option<Value>, what: &str| -> Result<Option<Schema>, String> {
            s.as_ref()
                .map(|v| Schema::compile(v).map_err(|e| format!("{}: {e}", at(what))))
                .transpose()
        };
        let spec = |r: &Rule| RuleSpec {
            name: r.name.clone(),
            expr: r.expr.clone(),
            regex: r.regex.clone(),
            message: r.message.clone(),
        };
        let invariants: Vec<RuleSpec> = config.invariants.iter().map(spec).collect();
        let forbidden: Vec<RuleSpec> = config.forbidden.iter().map(spec).collect();
        let rules =
            Rules::compile(&invariants, &forbidden).map_err(|e| format!("{}: {e}", at("rules")))?;
        let version = match &system {
            Some(s) => format!("{}/{}", user.version(), s.version()),
            None => user.version().to_owned(),
        };
        Ok(Function {
            config: config.clone(),
            system,
            user,
            input_schema: schema(&config.input_schema, "input_schema")?,
            output_schema: schema(&config.output_schema, "output_schema")?,
            rules,
            version,
        })
    }
}

/// What a successful call returns.
#[derive(Debug, Serialize)]
pub struct FunctionOutput {
    pub output: Value,
    pub meta: Meta,
}

#[derive(Debug, Serialize)]
pub struct Meta {
    pub request_id: String,
    pub function: String,
    pub version: String,
    /// `cache` when the accepted answer was replayed from the record file.
    pub provider: String,
    pub model: String,
    /// Calls made, every re-ask and fallback included: upstream calls plus
    /// asks answered from the record/replay file (so that a replay counts
    /// what the recording did, unless the recording retried a call).
    pub attempts: usize,
    /// Of `attempts`, the asks answered from the record/replay file.
    pub replayed: u32,
    pub reasks: u32,
    /// Conservative repairs applied to the accepted output.
    pub repairs: Vec<Repair>,
    pub usage: Usage,
    /// US dollars for every call (re-asks included) at the serving model's
    /// price; `null` when the model is unpriced. Replayed answers cost
    /// nothing (a call answered wholly from the record file costs 0).
    pub cost_usd: Option<f64>,
}

/// Why a call failed, typed for the HTTP status and the CLI's exit code.
#[derive(Debug)]
pub enum FunctionError {
    NotFound(String),
    /// 400, before any upstream call.
    InputInvalid(Vec<Violation>),
    /// 422 after every re-ask and fallback: the last errors and raw text.
    OutputInvalid {
        errors: Vec<String>,
        raw: String,
        attempts: usize,
    },
    /// The call itself failed (status from the error).
    Call(Error),
}

/// Calls a function: the one code path behind the HTTP endpoint and `keel call`.
pub async fn call(
    gw: &Gateway,
    name: &str,
    input: Value,
    ctx: &CallContext,
    headers: &HeaderMap,
    trail: &mut Trail,
) -> Result<FunctionOutput, FunctionError> {
    let Some(function) = gw.inner.functions.get(name) else {
        return Err(FunctionError::NotFound(name.to_owned()));
    };
    trail.subject = name.to_owned();
    if let Some(schema) = &function.input_schema {
        schema
            .validate(&input)
            .map_err(FunctionError::InputInvalid)?;
    }
    let Some(mut model) = gw.config().models.get(&function.config.model) else {
        return Err(FunctionError::Call(Error::model_not_found(
            &function.config.model,
        )));
    };
    let mut first = render(function, &input).map_err(FunctionError::Call)?;
    // The function's guardrails, else its model's: input checks on the
    // rendered prompt, output checks inside the validation loop.
    let guards = function
        .config
        .guardrails
        .as_ref()
        .or(model.guardrails.as_ref())
        .and_then(|name| gw.inner.guards.get(name))
        .cloned();
    let mut restore_map = Vec::new();
    if let Some(set) = &guards {
        let admitted = guard::input(gw, set, &mut first, &mut trail.verdicts)
            .await
            .map_err(FunctionError::Call)?;
        restore_map = admitted.restore;
        if let Some(stricter) = admitted
            .route
            .and_then(|alias| gw.config().models.get(&alias))
        {
            model = stricter;
        }
    }
    let deadline = deadline(headers, model);
    // A workflow's steps share one trail.
    let before = trail.attempts.len();
    let replayed_before = trail.replayed;
    let calls =
        |trail: &Trail| trail.attempts.len() - before + (trail.replayed - replayed_before) as usize;
    let guarded = guard::LoopGuard::new(guards.as_deref(), &first, &restore_map);
    let check = |raw: &str| {
        let (value, repairs) = check(function, raw, &input)?;
        guarded.check(value, repairs)
    };
    let result = validate::run(
        gw,
        model,
        &first,
        ctx,
        deadline,
        function.config.max_reasks,
        validate::Replay::PerAsk,
        trail,
        &check,
    )
    .await;
    guarded
        .finish(&mut trail.verdicts)
        .map_err(FunctionError::Call)?;
    let guarded_output = guards.as_ref().is_some_and(|g| !g.output.is_empty());
    let mut result = result;
    // The output webhooks (asynchronous: they run after the loop).
    if let (Some(set), Ok(accepted)) = (&guards, &mut result) {
        let text = match &accepted.value {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let system = first.system.join("\n");
        guard::output_whole(
            gw,
            set,
            &text,
            &system,
            true,
            &restore_map,
            &mut trail.verdicts,
        )
        .await
        .map_err(FunctionError::Call)?;
    }
    match result {
        Ok(accepted) => Ok(FunctionOutput {
            meta: Meta {
                // Like a replayed chat answer: what was replayed is free.
                cost_usd: if accepted.paid == Usage::default() && accepted.replayed > 0 {
                    Some(0.0)
                } else {
                    gw.inner.pricing.cost(
                        &accepted.model,
                        u64::from(accepted.paid.input_tokens),
                        u64::from(accepted.paid.cached_input_tokens),
                        u64::from(accepted.paid.output_tokens),
                    )
                },
                request_id: ctx.request_id.clone(),
                function: name.to_owned(),
                version: function.version.clone(),
                provider: accepted.provider,
                model: accepted.model,
                attempts: calls(trail),
                replayed: accepted.replayed,
                reasks: accepted.reasks,
                repairs: accepted.repairs,
                usage: accepted.usage,
            },
            // A text output gets back what the input redaction took out.
            output: match accepted.value {
                Value::String(text) => Value::String(guard::restored(&text, &restore_map)),
                other => other,
            },
        }),
        Err(Rejected::Call(e)) => Err(FunctionError::Call(e)),
        Err(Rejected::Invalid { errors, raw }) => Err(FunctionError::OutputInvalid {
            errors,
            // What output guardrails refused is not handed out with the 422.
            raw: if guarded_output {
                "(withheld: the function's output guardrails refused it)".to_owned()
            } else {
                raw
            },
            attempts: calls(trail),
        }),
    }
}

/// The conversation for the first ask.
fn render(function: &Function, input: &Value) -> Result<ChatRequest, Error> {
    // Templates see the input's fields at top level and the whole as `input`.
    let mut vars = match input {
        Value::Object(map) => map.clone(),
        _ => serde_json::Map::new(),
    };
    vars.insert("input".to_owned(), input.clone());
    let vars = Value::Object(vars);
    let bad = |e: keel_policy::template::TemplateError| {
        Error::invalid_request(format!("cannot render the prompt: {e}"))
    };
    let system = match &function.system {
        Some(t) => vec![t.render(&vars).map_err(bad)?],
        None => Vec::new(),
    };
    let user = function.user.render(&vars).map_err(bad)?;
    let response_format = match (&function.config.output_schema, function.config.structured) {
        (Some(schema), Structured::JsonSchema) => Some(ResponseFormat::JsonSchema {
            // Eval variants are named `FUNCTION@VARIANT`: not a name
            // providers accept for a schema.
            name: keel_protocol::chat::wire_name(&function.config.name),
            schema: schema.clone(),
            strict: Some(true),
        }),
        (Some(_), Structured::JsonObject) => Some(ResponseFormat::JsonObject),
        _ => None,
    };
    Ok(ChatRequest {
        model: function.config.model.clone(),
        system,
        messages: vec![Message::text(Role::User, user)],
        response_format,
        // The function's sampling parameters (else the target's defaults).
        temperature: function.config.temperature,
        top_p: function.config.top_p,
        max_tokens: function.config.max_tokens,
        protocol: Protocol::OpenAi,
        ..ChatRequest::default()
    })
}

/// The validated-output pipeline for one reply: the JSON and its schema
/// (or the text), then the function's rules. `Err` carries every problem,
/// worded for a re-ask.
fn check(
    function: &Function,
    raw: &str,
    input: &Value,
) -> Result<(Value, Vec<Repair>), Vec<String>> {
    let (output, repairs) = match &function.output_schema {
        None => (Value::String(raw.to_owned()), Vec::new()),
        Some(schema) => validate::json_output(schema, raw)?,
    };
    let failures = function.rules.check(&output, input);
    if failures.is_empty() {
        Ok((output, repairs))
    } else {
        Err(failures
            .into_iter()
            .map(|f| format!("rule `{}`: {}", f.rule, f.message))
            .collect())
    }
}

/// `POST /v1/functions/{name}` with `{"input": {...}}`.
pub(crate) async fn invoke(
    State(gw): State<Gateway>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let (mut rec, ctx, permit) = match admit(&gw, Front::OPENAI, "function", &headers).await {
        Ok(x) => x,
        Err(shed) => return shed,
    };
    rec.data.route = Some(name.clone());
    if let Some(f) = gw.inner.functions.get(&name) {
        rec.data.route_version = Some(f.version.clone());
        rec.data.model.clone_from(&f.config.model);
        rec.capture(
            gw.config()
                .models
                .get(&f.config.model)
                .and_then(|m| m.capture),
        );
        rec.capture(f.config.capture);
    }
    let input = match read_input(&gw, &headers, body, &mut rec).await {
        Ok(v) => v,
        Err(e) => return crate::pipeline::failed(Front::OPENAI, rec, &e),
    };
    rec.phase("decode");
    let model = gw
        .inner
        .functions
        .get(&name)
        .map(|f| f.config.model.clone());
    if let Err(e) = admit_call(&gw, &mut rec, &Vec::from_iter(model.as_deref())).await {
        return crate::pipeline::failed(Front::OPENAI, rec, &e);
    }
    let result = call(&gw, &name, input, &ctx, &headers, &mut rec.trail).await;
    rec.phase("attempt");
    match result {
        Ok(out) => {
            rec.usage = out.meta.usage;
            rec.served(&out.meta.provider, &out.meta.model);
            rec.data.cost_usd = out.meta.cost_usd;
            let cost = cost_header(&rec);
            let body = serde_json::to_vec(&out).unwrap_or_default();
            if rec.wants_bodies() {
                rec.output(String::from_utf8_lossy(&body).into_owned());
            }
            rec.ok();
            let mut response = json_holding(body, vec![Box::new(permit)]);
            set_headers(&mut response, &Vec::from_iter(cost));
            response
        }
        Err(FunctionError::Call(e)) => crate::pipeline::failed(Front::OPENAI, rec, &e),
        Err(FunctionError::NotFound(name)) => crate::pipeline::failed(
            Front::OPENAI,
            rec,
            &Error::not_found(format!("function `{name}` is not configured")),
        ),
        Err(FunctionError::InputInvalid(violations)) => {
            let err = Error::invalid_request(format!(
                "input does not match the input schema of `{name}`"
            ));
            rec.fail(&err);
            let details: Vec<BTreeMap<&str, &str>> = violations
                .iter()
                .map(|v| {
                    BTreeMap::from([("path", v.path.as_str()), ("message", v.message.as_str())])
                })
                .collect();
            error_body(
                StatusCode::BAD_REQUEST,
                "input_invalid",
                &err.message,
                json!({"errors": details}),
            )
        }
        Err(FunctionError::OutputInvalid {
            errors,
            raw,
            attempts,
        }) => {
            let message =
                format!("the output of `{name}` did not validate after {attempts} call(s)");
            rec.output(raw.clone());
            rec.fail(&Error::output_invalid(message.clone()));
            error_body(
                StatusCode::UNPROCESSABLE_ENTITY,
                "output_invalid",
                &message,
                json!({"errors": errors, "raw": raw}),
            )
        }
    }
}

pub(crate) async fn read_input(
    gw: &Gateway,
    headers: &HeaderMap,
    body: Body,
    rec: &mut Record,
) -> Result<Value, Error> {
    let bytes = body::read(headers, body, gw.config().server.max_body_bytes).await?;
    rec.input(bytes.clone());
    let v: Value = serde_json::from_slice(&bytes)
        .map_err(|e| Error::invalid_request(format!("body is not valid JSON: {e}")))?;
    match v {
        Value::Object(mut o) => Ok(o.remove("input").unwrap_or(Value::Null)),
        _ => Err(Error::invalid_request(
            "body must be a JSON object: {\"input\": {...}}",
        )),
    }
}

/// keel's error shape (the OpenAI one) with the details a function error
/// carries beside it.
fn error_body(status: StatusCode, code: &str, message: &str, details: Value) -> Response {
    let mut error =
        json!({"message": message, "type": "invalid_request_error", "param": null, "code": code});
    if let (Some(e), Value::Object(d)) = (error.as_object_mut(), details) {
        e.extend(d);
    }
    let body = serde_json::to_vec(&json!({"error": error})).unwrap_or_default();
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}
