//! The routes: each decodes its protocol, asks the engine for a plan and
//! hands it to [`respond::act`].

use axum::Router;
use axum::body::Bytes;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post};
use keel_protocol::openai;

use super::FAULT_HEADER;
use super::respond::{self, Payload};
use super::wire::Wire;
use crate::Simulator;

/// What `GET /v1/models` lists; any model name is accepted anyway.
const MODELS: [&str; 2] = ["keel-sim", "keel-sim-embed"];

pub(super) fn router(sim: Simulator) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(openai_chat))
        .route("/v1/messages", post(anthropic_chat))
        .route("/v1/embeddings", post(embeddings))
        .route("/v1/models", get(models))
        .route("/_sim/stats", get(stats))
        .route("/healthz", get(|| async { "ok" }))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(sim.clone(), count))
        .with_state(sim)
}

async fn count(State(sim): State<Simulator>, req: Request, next: Next) -> Response {
    let path = req.extensions().get::<MatchedPath>();
    sim.count_path(path.map_or("unmatched", MatchedPath::as_str));
    next.run(req).await
}

async fn openai_chat(State(sim): State<Simulator>, headers: HeaderMap, body: Bytes) -> Response {
    chat(Wire::OpenAi, &sim, &headers, &body).await
}

async fn anthropic_chat(State(sim): State<Simulator>, headers: HeaderMap, body: Bytes) -> Response {
    chat(Wire::Anthropic, &sim, &headers, &body).await
}

async fn chat(wire: Wire, sim: &Simulator, headers: &HeaderMap, body: &[u8]) -> Response {
    let fault = match fault_header(headers) {
        Ok(fault) => fault,
        Err(message) => return respond::bad_request(wire, message, None),
    };
    let req = match wire.decode(body) {
        Ok(req) => req,
        Err(e) => return respond::bad_request(wire, e.message, e.param),
    };
    let plan = match sim.plan(&req, fault) {
        Ok(plan) => plan,
        Err(e) => return respond::bad_request(wire, e.to_string(), None),
    };
    let payload = if req.stream {
        Payload::Stream {
            steps: plan.stream_steps(),
            encoder: wire.stream_encoder(req.include_usage),
        }
    } else {
        Payload::Json(wire.encode_response(&plan.response))
    };
    respond::act(wire, &plan, payload, sim.disconnect_guard()).await
}

async fn embeddings(State(sim): State<Simulator>, headers: HeaderMap, body: Bytes) -> Response {
    let wire = Wire::OpenAi;
    let fault = match fault_header(&headers) {
        Ok(fault) => fault,
        Err(message) => return respond::bad_request(wire, message, None),
    };
    let req = match openai::decode_embeddings_request(&body) {
        Ok(req) => req,
        Err(e) => return respond::bad_request(wire, e.message, e.param),
    };
    let plan = match sim.embed(&req, fault) {
        Ok(plan) => plan,
        Err(e) => return respond::bad_request(wire, e.to_string(), None),
    };
    let base64 = req.encoding_format.as_deref() == Some("base64");
    let payload = Payload::Json(openai::encode_embeddings_response(&plan.response, base64));
    respond::act(wire, &plan, payload, sim.disconnect_guard()).await
}

async fn models() -> Response {
    // A fixed timestamp keeps the listing byte-for-byte reproducible.
    respond::json(StatusCode::OK, openai::encode_models(MODELS, 1_700_000_000))
}

async fn stats(State(sim): State<Simulator>) -> Response {
    Json(sim.stats()).into_response()
}

async fn not_found() -> Response {
    let err = keel_protocol::WireError {
        status: 404,
        message: "no such route on the keel simulator".to_owned(),
        param: None,
        code: Some("not_found".to_owned()),
    };
    respond::error(Wire::OpenAi, &err, None)
}

/// The fault header's value; not visible ASCII is a client error.
fn fault_header(headers: &HeaderMap) -> Result<Option<&str>, String> {
    headers
        .get(FAULT_HEADER)
        .map(|v| {
            v.to_str()
                .map_err(|_| format!("{FAULT_HEADER} must be visible ASCII"))
        })
        .transpose()
}
