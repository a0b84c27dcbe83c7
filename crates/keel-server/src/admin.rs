//! The admin API, behind its own bearer token (`[auth] admin_token`, never
//! a virtual key): virtual keys and their usage. Off (404) when no admin
//! token is configured. `keel keys …` is its client.
//!
//! - `POST /admin/keys` with [`KeySettings`] → 201 with the key itself,
//!   shown this once (`"key": "kk-…"`), and its id and settings;
//! - `GET /admin/keys` → every key (never a secret or its digest);
//! - `GET /admin/keys/{id}` → one key;
//! - `DELETE /admin/keys/{id}` → revokes it (200; 404 if unknown or
//!   already revoked);
//! - `GET /admin/keys/{id}/usage` → each budget's spend, holds and reset
//!   time, and the key's requests from the log (count, errors, tokens, cost).
//!
//! Errors use the OpenAI error shape. Every call leaves a request record
//! (op `admin`).

use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use keel_core::Error;
use keel_store::{Filter, GroupBy, KeySettings, Store, VirtualKey};
use secrecy::ExposeSecret;
use serde_json::json;
use subtle::ConstantTimeEq;

use crate::front::Front;
use crate::record::Record;
use crate::state::Gateway;
use crate::{auth, body, spend};

/// Admin bodies are small.
const MAX_BODY: usize = 64 * 1024;
/// Names and tags are labels, not documents.
const MAX_NAME: usize = 128;
/// The longest an admin call may wait for the store.
const STORE_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

pub(crate) fn routes() -> Router<Gateway> {
    Router::new()
        .route("/admin/keys", get(list).post(create))
        .route("/admin/keys/{id}", get(show).delete(revoke))
        .route("/admin/keys/{id}/usage", get(usage))
}

async fn create(State(gw): State<Gateway>, headers: HeaderMap, body: Body) -> Response {
    run(&gw, &headers, async {
        let bytes = body::read(&headers, body, MAX_BODY).await?;
        let settings: KeySettings = serde_json::from_slice(&bytes)
            .map_err(|e| Error::invalid_request(format!("not valid key settings: {e}")))?;
        check(&gw, &settings)?;
        let (key, shown) = VirtualKey::generate(settings);
        store(&gw)?.insert_key(&key).await.map_err(store_error)?;
        tracing::info!(target: "keel::admin", key_id = %key.id, name = %key.settings.name, "virtual key created");
        let mut body = json!(key);
        body["key"] = json!(shown);
        Ok((StatusCode::CREATED, Json(body)).into_response())
    })
    .await
}

async fn list(State(gw): State<Gateway>, headers: HeaderMap) -> Response {
    run(&gw, &headers, async {
        let keys = store(&gw)?.keys().await.map_err(store_error)?;
        Ok(Json(json!({ "keys": keys })).into_response())
    })
    .await
}

async fn show(State(gw): State<Gateway>, Path(id): Path<String>, headers: HeaderMap) -> Response {
    run(&gw, &headers, async {
        Ok(Json(json!(find(&gw, &id).await?)).into_response())
    })
    .await
}

async fn revoke(State(gw): State<Gateway>, Path(id): Path<String>, headers: HeaderMap) -> Response {
    run(&gw, &headers, async {
        if !store(&gw)?.revoke_key(&id).await.map_err(store_error)? {
            return Err(Error::not_found(format!(
                "no active virtual key {id} (unknown, or already revoked)"
            )));
        }
        gw.inner.keys.forget(&id);
        tracing::info!(target: "keel::admin", key_id = %id, "virtual key revoked");
        Ok(Json(json!({ "id": id, "revoked": true })).into_response())
    })
    .await
}

async fn usage(State(gw): State<Gateway>, Path(id): Path<String>, headers: HeaderMap) -> Response {
    run(&gw, &headers, async {
        let key = find(&gw, &id).await?;
        let budgets = spend::usage(&gw, &key).await?;
        let filter = Filter {
            key_id: Some(id.clone()),
            ..Filter::default()
        };
        let requests = store(&gw)?
            .stats(&filter, GroupBy::None)
            .await
            .map_err(store_error)?
            .pop();
        Ok(Json(json!({
            "id": id,
            "budgets": budgets,
            "requests": requests.map(|s| json!({
                "count": s.count,
                "errors": s.errors,
                "input_tokens": s.input_tokens,
                "output_tokens": s.output_tokens,
                "cost_usd": s.cost_usd,
            })),
        }))
        .into_response())
    })
    .await
}

/// Checks the admin token, runs the call, and records it.
async fn run(
    gw: &Gateway,
    headers: &HeaderMap,
    call: impl Future<Output = Result<Response, Error>>,
) -> Response {
    let front = Front::OPENAI;
    let rec = Record::start(gw, front, "admin", headers);
    let result = match authorized(gw, headers) {
        Ok(()) => tokio::time::timeout(STORE_WAIT, call)
            .await
            .unwrap_or_else(|_| Err(Error::unavailable("the key store did not answer in time"))),
        Err(e) => Err(e),
    };
    match result {
        Ok(response) => {
            rec.ok_with(response.status().as_u16());
            response
        }
        Err(e) => {
            rec.fail(&e);
            front.error_response(&e)
        }
    }
}

fn authorized(gw: &Gateway, headers: &HeaderMap) -> Result<(), Error> {
    let Some(token) = &gw.config().auth.admin_token else {
        return Err(Error::not_found(
            "the admin API is off: set [auth] admin_token = { env = \"…\" }",
        ));
    };
    let presented = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    let expected = token.expose_secret().as_bytes();
    if bool::from(presented.as_bytes().ct_eq(expected)) {
        Ok(())
    } else {
        Err(Error::unauthorized(
            "the admin API needs `Authorization: Bearer <admin token>`",
        ))
    }
}

/// A key's settings must name configured models and be sane.
fn check(gw: &Gateway, s: &KeySettings) -> Result<(), Error> {
    let config = gw.config();
    if let Some(unknown) = s.models.iter().find(|m| !config.models.contains_key(*m)) {
        return Err(Error::invalid_request(format!(
            "models: `{unknown}` is not a configured model"
        )));
    }
    let labels = std::iter::once(&s.name).chain(&s.team).chain(&s.tags);
    if let Some(long) = labels.into_iter().find(|l| l.len() > MAX_NAME) {
        return Err(Error::invalid_request(format!(
            "`{}…` is longer than {MAX_NAME} bytes",
            crate::sinks::cut(long, 16)
        )));
    }
    if let Some(budget) = &s.budget {
        budget.check().map_err(Error::invalid_request)?;
    }
    if let Some((_, twice)) = s
        .tags
        .iter()
        .enumerate()
        .find(|(i, t)| s.tags[..*i].contains(t))
    {
        return Err(Error::invalid_request(format!(
            "tags: `{twice}` is given twice"
        )));
    }
    if s.rate_limit
        .is_some_and(|r| r.requests_per_minute == Some(0) || r.tokens_per_minute == Some(0))
    {
        return Err(Error::invalid_request(
            "rate_limit: a limit of 0 per minute would refuse everything; leave it out instead",
        ));
    }
    Ok(())
}

async fn find(gw: &Gateway, id: &str) -> Result<VirtualKey, Error> {
    store(gw)?
        .key(id)
        .await
        .map_err(store_error)?
        .ok_or_else(|| Error::not_found(format!("no virtual key {id}")))
}

fn store(gw: &Gateway) -> Result<&Store, Error> {
    auth::store(gw)
}

fn store_error(e: keel_store::StoreError) -> Error {
    tracing::warn!(target: "keel::admin", error = %e, "key store call failed");
    Error::unavailable("the key store is unavailable; retry shortly")
}
