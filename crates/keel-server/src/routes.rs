//! The route table. Handlers are thin: they pick the front door and hand
//! the request to the pipeline.

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, Method, Uri};
use axum::response::Response;
use axum::routing::{get, post};
use keel_core::Error;

use crate::front::Front;
use crate::record::Record;
use crate::state::Gateway;
use crate::{admin, feedback, functions, health, metrics, models, pipeline, stack, workflows};

pub(crate) fn router(gw: Gateway) -> Router {
    let routes = Router::new()
        .route("/v1/chat/completions", post(openai_chat))
        .route("/v1/messages", post(anthropic_messages))
        .route("/v1/embeddings", post(embeddings))
        .route("/v1/functions/{name}", post(functions::invoke))
        .route("/v1/workflows/{name}", post(workflows::invoke))
        .route("/v1/feedback", post(feedback::submit))
        .route("/v1/models", get(models::list))
        .route("/v1/models/{id}", get(models::get))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(metrics::render))
        .merge(admin::routes())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(gw);
    stack::layer(routes)
}

async fn openai_chat(State(gw): State<Gateway>, headers: HeaderMap, body: Body) -> Response {
    pipeline::chat(gw, Front::OPENAI, headers, body).await
}

async fn anthropic_messages(State(gw): State<Gateway>, headers: HeaderMap, body: Body) -> Response {
    pipeline::chat(gw, Front::ANTHROPIC, headers, body).await
}

async fn embeddings(State(gw): State<Gateway>, headers: HeaderMap, body: Body) -> Response {
    pipeline::embeddings(gw, headers, body).await
}

/// Unknown paths get a 404, known paths with the wrong method a 405, in the
/// shape of the protocol the client appears to speak. Both leave a record:
/// a client calling the wrong URL is worth seeing.
async fn not_found(
    State(gw): State<Gateway>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let err = Error::not_found(format!("no route for {method} {}", uri.path()));
    refuse(&gw, &headers, &err)
}

async fn method_not_allowed(
    State(gw): State<Gateway>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let err = Error::method_not_allowed(format!("{} does not accept {method}", uri.path()));
    refuse(&gw, &headers, &err)
}

fn refuse(gw: &Gateway, headers: &HeaderMap, err: &Error) -> Response {
    let front = models::front_of(headers);
    Record::start(gw, front, "other", headers).fail(err);
    front.error_response(err)
}
