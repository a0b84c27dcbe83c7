//! `GET /healthz`: the process is up. `GET /readyz`: the config is loaded
//! and at least one model has an available provider to route to.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::state::Gateway;

pub(crate) async fn healthz() -> Response {
    Json(json!({"status": "ok"})).into_response()
}

pub(crate) async fn readyz(State(gw): State<Gateway>) -> Response {
    let config = gw.config();
    let routable = config
        .models
        .values()
        .filter(|m| {
            m.targets()
                .any(|t| gw.inner.upstreams.contains_key(&t.provider))
        })
        .count();
    let providers: Vec<_> = config
        .providers
        .values()
        .map(|p| {
            json!({
                "name": p.name,
                "kind": p.kind.as_str(),
                "available": p.availability.is_ok(),
                "reason": p.availability.clone().err(),
                "breaker": gw.inner.upstreams.get(&p.name).and_then(|u| u.breaker.as_ref()).map(|b| b.snapshot()),
            })
        })
        .collect();
    let status = if routable > 0 {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({
        "status": if routable > 0 { "ready" } else { "not_ready" },
        "models": config.models.len(),
        "routable_models": routable,
        "providers": providers,
    });
    (status, Json(body)).into_response()
}
