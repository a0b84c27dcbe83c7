//! Workflows: a named sequence of function calls with a check at every
//! step (`POST /v1/workflows/{name}`). Each step's input is mapped from the
//! workflow input and earlier outputs; a step may be skipped by a CEL
//! condition; a failing step stops the run with a typed error naming it, and
//! nothing after it runs. Every step leaves its own request record, all
//! under the workflow's request id.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use keel_config::{Step, WorkflowConfig};
use keel_core::Error;
use keel_policy::rules::Condition;
use serde_json::{Map, Value, json};

use crate::front::Front;
use crate::functions::{self, FunctionError};
use crate::pipeline::{admit, admit_call, cost_header, failed, json_holding, set_headers};
use crate::record::Record;
use crate::state::Gateway;

/// A workflow with its conditions compiled at config load.
pub(crate) struct Workflow {
    pub config: WorkflowConfig,
    conditions: Vec<Option<Condition>>,
}

impl Workflow {
    pub fn compile(config: &WorkflowConfig) -> Result<Workflow, String> {
        let conditions = config
            .steps
            .iter()
            .map(|s| {
                s.when
                    .as_deref()
                    .map(|w| {
                        Condition::compile(w)
                            .map_err(|e| format!("workflows.{}.{}: {e}", config.name, s.name))
                    })
                    .transpose()
            })
            .collect::<Result<_, _>>()?;
        Ok(Workflow {
            config: config.clone(),
            conditions,
        })
    }
}

/// `POST /v1/workflows/{name}` with `{"input": {...}}` → every step's
/// output and meta, in order.
pub(crate) async fn invoke(
    State(gw): State<Gateway>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    // Admitted once for the whole run: its steps are one request's work.
    let (mut rec, ctx, permit) = match admit(&gw, Front::OPENAI, "workflow", &headers).await {
        Ok(x) => x,
        Err(shed) => return shed,
    };
    rec.data.route = Some(name.clone());
    let Some(workflow) = gw.inner.workflows.get(&name) else {
        return failed(
            Front::OPENAI,
            rec,
            &Error::not_found(format!("workflow `{name}` is not configured")),
        );
    };
    let input = match functions::read_input(&gw, &headers, body, &mut rec).await {
        Ok(v) => v,
        Err(e) => return failed(Front::OPENAI, rec, &e),
    };
    rec.phase("decode");
    let models: Vec<&str> = workflow
        .config
        .steps
        .iter()
        .filter_map(|step| gw.config().functions.get(&step.function))
        .map(|f| f.model.as_str())
        .collect();
    if let Err(e) = admit_call(&gw, &mut rec, &models).await {
        return failed(Front::OPENAI, rec, &e);
    }
    // The run's cost: every step's, known only if every step's model is priced.
    let mut cost = Some(0.0);
    let mut outputs = Map::new(); // step name → {"output": …}, for mapping and conditions
    let mut report: Vec<Value> = Vec::new();
    for (step, condition) in workflow.config.steps.iter().zip(&workflow.conditions) {
        let steps = Value::Object(outputs.clone());
        if let Some(c) = condition {
            match c.holds(&input, &steps) {
                Ok(true) => {}
                Ok(false) => {
                    report.push(json!({"step": step.name, "status": "skipped"}));
                    continue;
                }
                Err(e) => {
                    return step_failed(
                        rec,
                        step,
                        StatusCode::BAD_REQUEST,
                        "condition_failed",
                        &e,
                        json!(null),
                        report,
                    );
                }
            }
        }
        let step_input = map_input(step, &input, &steps);
        // Every step's calls and verdicts go into the workflow's one record.
        match functions::call(
            &gw,
            &step.function,
            step_input,
            &ctx,
            &headers,
            &mut rec.trail,
        )
        .await
        {
            Ok(out) => {
                rec.usage.add(out.meta.usage);
                rec.served(&out.meta.provider, &out.meta.model);
                cost = cost.zip(out.meta.cost_usd).map(|(a, b)| a + b);
                outputs.insert(step.name.clone(), json!({"output": out.output}));
                report.push(json!({"step": step.name, "status": "ok", "output": out.output, "meta": out.meta}));
            }
            Err(e) => {
                let (status, code, message, details) = match e {
                    FunctionError::InputInvalid(v) => (
                        StatusCode::BAD_REQUEST,
                        "input_invalid",
                        "the step's input does not match its function's schema".to_owned(),
                        json!(v),
                    ),
                    FunctionError::OutputInvalid { errors, raw, .. } => (
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "output_invalid",
                        "the step's output did not validate".to_owned(),
                        json!({"errors": errors, "raw": raw}),
                    ),
                    FunctionError::NotFound(f) => (
                        StatusCode::NOT_FOUND,
                        "not_found",
                        format!("function `{f}` is not configured"),
                        json!(null),
                    ),
                    FunctionError::Call(e) => (
                        crate::error::status(&e),
                        crate::error::code(&e),
                        e.message,
                        json!(null),
                    ),
                };
                // What the completed steps cost (the failed one's calls are
                // in the record's usage, unpriced).
                rec.data.cost_usd = cost;
                return step_failed(rec, step, status, code, &message, details, report);
            }
        }
    }
    rec.phase("attempt");
    rec.data.cost_usd = cost;
    let names = Vec::from_iter(cost_header(&rec));
    let body = json!({"workflow": name, "request_id": ctx.request_id, "steps": report});
    let body = serde_json::to_vec(&body).unwrap_or_default();
    if rec.wants_bodies() {
        rec.output(String::from_utf8_lossy(&body).into_owned());
    }
    rec.ok();
    let mut response = json_holding(body, vec![Box::new(permit)]);
    set_headers(&mut response, &names);
    response
}

/// The step's input: literals as written, `{ from = pointer }` resolved
/// against `{"input": …, "steps": …}` (a missing value is `null`, which the
/// function's input schema then judges).
fn map_input(step: &Step, input: &Value, steps: &Value) -> Value {
    let scope = json!({"input": input, "steps": steps});
    let mapped = step
        .input
        .iter()
        .map(|(k, v)| {
            let value = match v.get("from").and_then(Value::as_str) {
                Some(pointer) => scope.pointer(pointer).cloned().unwrap_or(Value::Null),
                None => v.clone(),
            };
            (k.clone(), value)
        })
        .collect();
    Value::Object(mapped)
}

fn step_failed(
    rec: Record,
    step: &Step,
    status: StatusCode,
    code: &str,
    message: &str,
    details: Value,
    done: Vec<Value>,
) -> Response {
    rec.fail_as(
        status.as_u16(),
        code,
        &format!("step `{}`: {message}", step.name),
    );
    let body = json!({"error": {
        "message": format!("workflow stopped at step `{}`: {message}", step.name),
        "type": "invalid_request_error", "param": null, "code": code,
        "step": step.name, "details": details, "completed": done,
    }});
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::to_vec(&body).unwrap_or_default(),
    )
        .into_response()
}
