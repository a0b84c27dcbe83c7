//! `POST /v1/feedback`: a user's judgement of an answer, attached to its
//! request record so that bad answers can be found (`keel show`, `keel
//! logs`) and later turned into eval cases.
//!
//! ```json
//! {"request_id": "…", "score": 0, "label": "wrong_answer", "comment": "…"}
//! ```
//!
//! At least one of `score` (a finite number), `label` (≤ 64 bytes) and
//! `comment` (≤ 4 KiB, scrubbed of credentials) is required. The request id
//! must be in the request log: 404 otherwise, 201 when stored. Without a
//! request log (`log.store = "off"`) the endpoint answers 404.

use std::time::{Duration, SystemTime};

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use keel_core::Error;
use keel_store::Feedback;
use serde::Deserialize;
use serde_json::json;

use crate::body;
use crate::front::Front;
use crate::pipeline::{admit, failed, json_holding};
use crate::state::Gateway;

const MAX_ID: usize = 256;
const MAX_LABEL: usize = 64;
const MAX_COMMENT: usize = 4096;
/// How long to wait for the writer to store a request answered moments ago.
const FLUSH_WAIT: Duration = Duration::from_secs(2);
/// The longest a store query may take before the client gets 503.
const STORE_WAIT: Duration = Duration::from_secs(5);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FeedbackIn {
    request_id: String,
    #[serde(default)]
    score: Option<f64>,
    #[serde(default)]
    label: Option<String>,
    #[serde(default)]
    comment: Option<String>,
}

pub(crate) async fn submit(State(gw): State<Gateway>, headers: HeaderMap, body: Body) -> Response {
    let front = Front::OPENAI;
    let (rec, _ctx, permit) = match admit(&gw, front, "feedback", &headers).await {
        Ok(x) => x,
        Err(shed) => return shed,
    };
    match store(&gw, &headers, body).await {
        Ok(id) => {
            rec.ok_with(StatusCode::CREATED.as_u16());
            let mut response = json_holding(
                json!({"request_id": id, "stored": true})
                    .to_string()
                    .into_bytes(),
                vec![Box::new(permit)],
            );
            *response.status_mut() = StatusCode::CREATED;
            response
        }
        Err(e) => failed(front, rec, &e),
    }
}

async fn store(gw: &Gateway, headers: &HeaderMap, body: Body) -> Result<String, Error> {
    let bytes = body::read(headers, body, gw.config().server.max_body_bytes).await?;
    let input: FeedbackIn = serde_json::from_slice(&bytes)
        .map_err(|e| Error::invalid_request(format!("invalid feedback: {e}")))?;
    let id = input.request_id.trim();
    if id.is_empty() || id.len() > MAX_ID {
        return Err(
            Error::invalid_request(format!("request_id must be 1 to {MAX_ID} bytes"))
                .with_param("request_id"),
        );
    }
    let texts = [
        Some(input.request_id.as_str()),
        input.label.as_deref(),
        input.comment.as_deref(),
    ];
    if texts.iter().flatten().any(|t| t.contains('\0')) {
        return Err(Error::invalid_request(
            "feedback text must not contain NUL characters",
        ));
    }
    if input.score.is_none() && input.label.is_none() && input.comment.is_none() {
        return Err(Error::invalid_request(
            "feedback needs at least one of score, label, comment",
        ));
    }
    if input.score.is_some_and(|s| !s.is_finite()) {
        return Err(Error::invalid_request("score must be a finite number").with_param("score"));
    }
    if input.label.as_ref().is_some_and(|l| l.len() > MAX_LABEL) {
        return Err(
            Error::invalid_request(format!("label is longer than {MAX_LABEL} bytes"))
                .with_param("label"),
        );
    }
    if input
        .comment
        .as_ref()
        .is_some_and(|c| c.len() > MAX_COMMENT)
    {
        return Err(
            Error::invalid_request(format!("comment is longer than {MAX_COMMENT} bytes"))
                .with_param("comment"),
        );
    }
    let sinks = &gw.inner.sinks;
    let Some(recorder) = &sinks.recorder else {
        return Err(Error::not_found(
            "feedback needs the request log, and log.store is off",
        ));
    };
    // The request may have been answered a moment ago: let its record land.
    recorder.flush(FLUSH_WAIT).await;
    let unavailable = |e: &dyn std::fmt::Display| {
        Error::unavailable(format!("the request log is unavailable: {e}"))
    };
    // A store that stops answering must not hold the request forever.
    let exists = tokio::time::timeout(STORE_WAIT, recorder.store().exists(id))
        .await
        .map_err(|e| unavailable(&e))?
        .map_err(|e| unavailable(&e))?;
    if !exists {
        return Err(
            Error::not_found(format!("no request `{id}` in the request log"))
                .with_param("request_id"),
        );
    }
    let feedback = Feedback {
        request_id: id.to_owned(),
        time_ms: SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
        score: input.score,
        label: input.label.map(|l| sinks.scrub(&l)),
        comment: input.comment.map(|c| sinks.scrub(&c)),
    };
    tokio::time::timeout(STORE_WAIT, recorder.store().add_feedback(&feedback))
        .await
        .map_err(|e| unavailable(&e))?
        .map_err(|e| unavailable(&e))?;
    Ok(id.to_owned())
}
