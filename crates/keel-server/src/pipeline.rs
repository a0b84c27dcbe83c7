//! The request lifecycle, phase by phase, for every front door:
//!
//! 1. **decode**: read the body under the size limit and parse the client's
//!    protocol into the internal model (`body.rs`, `front.rs`);
//! 2. authenticate, 3. admit, 4. guard input, 5. cache: not yet built;
//! 6. **route**: model alias → the first target whose provider is available;
//! 7. **attempt**: call the upstream with the target's model and defaults;
//! 8. validate output: not yet built;
//! 9. **translate**: internal answer → the client's protocol, stream or not
//!    (`front.rs`, `stream.rs`);
//! 10. **record**: one record per request (`record.rs`).
//!
//! Each phase ends the request with a typed [`Error`] when it fails.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use keel_config::Target;
use keel_core::{CallContext, Error, Provider};
use keel_protocol::chat::{ChatRequest, ChatResponse, Usage};
use keel_protocol::{openai, tokens};

use crate::front::Front;
use crate::record::Record;
use crate::stack::REQUEST_ID;
use crate::state::Gateway;
use crate::{body, stream};

/// Which header carries the simulator's fault spec through to a `sim` provider.
const SIM_FAULT: &str = "x-keel-sim-fault";

/// A chat request at either front door.
pub(crate) async fn chat(gw: Gateway, front: Front, headers: HeaderMap, body: Body) -> Response {
    let mut rec = Record::start(front, "chat", request_id(&headers));
    let ctx = context(&headers, &rec);
    let (req, routed) = match decode_and_route(&gw, front, &headers, body, &mut rec).await {
        Ok(x) => x,
        Err(e) => return failed(front, rec, &e),
    };
    let input_estimate = tokens::estimate_request(&req);
    // 7. attempt
    if req.stream {
        let include_usage = req.include_usage;
        match routed.provider.chat_stream(req, &ctx).await {
            Ok(events) => {
                let mut response =
                    stream::respond(front, events, rec, include_usage, input_estimate);
                served_headers(&mut response, &routed);
                response
            }
            Err(e) => failed(front, rec, &e),
        }
    } else {
        match routed.provider.chat(req, &ctx).await {
            Ok(mut resp) => {
                fill_usage(&mut resp, input_estimate);
                if resp.created == 0 {
                    resp.created = unix_now();
                }
                // 9. translate
                let mut response = json(front.encode(&resp));
                served_headers(&mut response, &routed);
                rec.usage = resp.usage;
                rec.ok();
                response
            }
            Err(e) => failed(front, rec, &e),
        }
    }
}

/// `POST /v1/embeddings` (OpenAI front door only).
pub(crate) async fn embeddings(gw: Gateway, headers: HeaderMap, body: Body) -> Response {
    let front = Front::OPENAI;
    let mut rec = Record::start(front, "embeddings", request_id(&headers));
    let ctx = context(&headers, &rec);
    let result = async {
        let bytes = body::read(&headers, body, gw.config().server.max_body_bytes).await?;
        let mut req = openai::decode_embeddings_request(&bytes).map_err(|e| {
            let err = Error::invalid_request(e.message);
            e.param.map_or(err.clone(), |p| err.with_param(p))
        })?;
        rec.model.clone_from(&req.model);
        let routed = route(&gw, &req.model)?;
        rec.provider = Some(routed.provider_name.clone());
        rec.upstream_model = Some(routed.target.model.clone());
        let base64 = req.encoding_format.as_deref() == Some("base64");
        let estimate = req
            .input
            .iter()
            .map(|s| tokens::estimate(s))
            .fold(0, u32::saturating_add);
        req.model.clone_from(&routed.target.model);
        let mut resp = routed.provider.embed(req, &ctx).await?;
        if resp.input_tokens == 0 {
            resp.input_tokens = estimate;
        }
        if resp.model.is_empty() {
            resp.model.clone_from(&routed.target.model);
        }
        Ok::<_, Error>((resp, base64, routed))
    }
    .await;
    match result {
        Ok((resp, base64, routed)) => {
            rec.usage = Usage {
                input_tokens: resp.input_tokens,
                output_tokens: 0,
            };
            rec.ok();
            let mut response = json(openai::encode_embeddings_response(&resp, base64));
            served_headers(&mut response, &routed);
            response
        }
        Err(e) => failed(front, rec, &e),
    }
}

/// Phases 1 and 6: decode the body, resolve the model, apply the target.
async fn decode_and_route(
    gw: &Gateway,
    front: Front,
    headers: &HeaderMap,
    body: Body,
    rec: &mut Record,
) -> Result<(ChatRequest, Routed), Error> {
    // 1. decode
    let bytes = body::read(headers, body, gw.config().server.max_body_bytes).await?;
    let mut req = front.decode(&bytes)?;
    rec.model.clone_from(&req.model);
    rec.stream = req.stream;
    // 6. route
    let routed = route(gw, &req.model)?;
    rec.provider = Some(routed.provider_name.clone());
    rec.upstream_model = Some(routed.target.model.clone());
    apply_target(&mut req, &routed.target);
    Ok((req, routed))
}

/// The target a request goes to.
pub(crate) struct Routed {
    pub provider_name: String,
    pub provider: Arc<dyn Provider>,
    pub target: Target,
}

/// The first target of the alias whose provider is available. Retries and
/// fallback across targets belong to the reliability engine.
fn route(gw: &Gateway, alias: &str) -> Result<Routed, Error> {
    let model = gw
        .config()
        .models
        .get(alias)
        .ok_or_else(|| Error::model_not_found(alias))?;
    for target in &model.targets {
        if let Some(provider) = gw.inner.providers.get(&target.provider) {
            return Ok(Routed {
                provider_name: target.provider.clone(),
                provider: Arc::clone(provider),
                target: target.clone(),
            });
        }
    }
    let reasons: Vec<String> = model
        .targets
        .iter()
        .map(|t| {
            let why = gw
                .config()
                .providers
                .get(&t.provider)
                .and_then(|p| p.availability.clone().err())
                .unwrap_or_else(|| "not configured".to_owned());
            format!("`{}`: {why}", t.provider)
        })
        .collect();
    Err(Error::unavailable(format!(
        "no provider is available for model `{alias}` ({})",
        reasons.join("; ")
    )))
}

/// The upstream's model name, and the target's defaults where the client
/// set nothing.
fn apply_target(req: &mut ChatRequest, target: &Target) {
    req.model.clone_from(&target.model);
    let p = &target.params;
    req.max_tokens = req.max_tokens.or(p.max_tokens);
    req.temperature = req.temperature.or(p.temperature);
    req.top_p = req.top_p.or(p.top_p);
}

/// An upstream that reports no usage is billed by estimate, never at zero.
fn fill_usage(resp: &mut ChatResponse, input_estimate: u32) {
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
}

/// Anthropic answers carry no creation time; OpenAI clients expect one.
pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn request_id(headers: &HeaderMap) -> String {
    headers
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

fn context(headers: &HeaderMap, rec: &Record) -> CallContext {
    CallContext {
        request_id: rec.request_id().to_owned(),
        sim_fault: headers
            .get(SIM_FAULT)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
    }
}

fn failed(front: Front, rec: Record, err: &Error) -> Response {
    rec.fail(err);
    front.error_response(err)
}

fn json(body: Vec<u8>) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// Names the provider and upstream model that served the request.
fn served_headers(response: &mut Response, routed: &Routed) {
    let headers = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&routed.provider_name) {
        headers.insert("x-keel-provider", v);
    }
    if let Ok(v) = HeaderValue::from_str(&routed.target.model) {
        headers.insert("x-keel-model", v);
    }
}
