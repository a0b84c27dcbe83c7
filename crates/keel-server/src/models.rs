//! `GET /v1/models`: the configured aliases, in the OpenAI list shape, or in
//! Anthropic's when the client sends `anthropic-version` (as the Anthropic
//! SDK does), so both SDKs' `models.list()` work on the same path.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use keel_core::Error;
use keel_store::VirtualKey;
use serde_json::{Value, json};

use crate::auth;
use crate::front::Front;
use crate::state::Gateway;

/// keel's aliases have no creation date; they report the Unix epoch.
const CREATED: u64 = 0;

pub(crate) fn front_of(headers: &HeaderMap) -> Front {
    if headers.contains_key("anthropic-version") {
        Front::ANTHROPIC
    } else {
        Front::OPENAI
    }
}

fn entry(front: Front, id: &str) -> Value {
    if front == Front::ANTHROPIC {
        json!({"type": "model", "id": id, "display_name": id, "created_at": "1970-01-01T00:00:00Z"})
    } else {
        json!({"id": id, "object": "model", "created": CREATED, "owned_by": "keel"})
    }
}

/// The caller's key when keys are in use: the list shows what it may call,
/// and with `require_key` a caller without one is refused like anywhere
/// under `/v1`.
async fn caller(gw: &Gateway, headers: &HeaderMap) -> Result<Option<Arc<VirtualKey>>, Error> {
    auth::authenticate(gw, headers).await
}

pub(crate) async fn list(State(gw): State<Gateway>, headers: HeaderMap) -> Response {
    let front = front_of(&headers);
    let key = match caller(&gw, &headers).await {
        Ok(k) => k,
        Err(e) => return front.error_response(&e),
    };
    let ids: Vec<&str> = gw
        .config()
        .models
        .keys()
        .map(String::as_str)
        .filter(|m| auth::allow(key.as_deref(), m).is_ok())
        .collect();
    let data: Vec<Value> = ids.iter().map(|id| entry(front, id)).collect();
    let body = if front == Front::ANTHROPIC {
        json!({"data": data, "has_more": false, "first_id": ids.first(), "last_id": ids.last()})
    } else {
        json!({"object": "list", "data": data})
    };
    Json(body).into_response()
}

pub(crate) async fn get(
    State(gw): State<Gateway>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let front = front_of(&headers);
    let key = match caller(&gw, &headers).await {
        Ok(k) => k,
        Err(e) => return front.error_response(&e),
    };
    if gw.config().models.contains_key(&id) && auth::allow(key.as_deref(), &id).is_ok() {
        Json(entry(front, &id)).into_response()
    } else {
        front.error_response(&Error::model_not_found(&id))
    }
}
