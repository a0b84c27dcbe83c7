//! Acting out a [`Plan`] over HTTP: the waits, the early endings (status,
//! reset, hang) and the body, whole or streamed, as the outcome shapes it.

use std::convert::Infallible;
use std::time::Duration;

use axum::body::Body;
use axum::http::header::{CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER};
use axum::http::{HeaderValue, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use futures::StreamExt;
use keel_protocol::WireError;
use keel_protocol::sse::write_event;

use super::ResetConnection;
use super::wire::{Encoder, Wire};
use crate::fault::{Fault, Outcome};
use crate::stats::DisconnectGuard;
use crate::{MALFORMED, Plan, StreamStep, cut_body};

/// The answer in wire form, before faults shape it.
pub(super) enum Payload {
    Json(Vec<u8>),
    Stream {
        steps: Vec<StreamStep>,
        encoder: Encoder,
    },
}

/// Acts out `plan` with `payload` as its answer. `guard` counts a disconnect
/// if the client leaves before the response is complete.
pub(super) async fn act<R>(
    wire: Wire,
    plan: &Plan<R>,
    payload: Payload,
    guard: DisconnectGuard,
) -> Response {
    tokio::time::sleep(plan.fault.latency).await;
    let streaming = matches!(payload, Payload::Stream { .. });
    let early = match plan.fault.outcome {
        Outcome::Reset => Some(reset()),
        Outcome::Hang => {
            // Holding `guard`: the client giving up counts as a disconnect.
            let never: Infallible = std::future::pending().await;
            match never {}
        }
        Outcome::Status { retry_after, .. } => plan.error().map(|e| error(wire, &e, retry_after)),
        Outcome::StreamError(_) if !streaming => plan.error().map(|e| error(wire, &e, None)),
        _ => None,
    };
    if let Some(response) = early {
        guard.finish();
        return response;
    }
    match payload {
        Payload::Stream { steps, encoder } => stream(steps, encoder, plan.fault.clone(), guard),
        Payload::Json(body) => {
            tokio::time::sleep(plan.fault.pause_before(0)).await;
            let response = match plan.fault.outcome {
                Outcome::Malformed => json(StatusCode::OK, MALFORMED.as_bytes().to_vec()),
                Outcome::Cut(_) => cut(body),
                _ => json(StatusCode::OK, body),
            };
            guard.finish();
            response
        }
    }
}

/// An error in the protocol's shape, with `Retry-After` when given.
pub(super) fn error(wire: Wire, err: &WireError, retry_after: Option<u64>) -> Response {
    let status = StatusCode::from_u16(err.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = json(status, wire.encode_error(err));
    if let Some(secs) = retry_after {
        response
            .headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from(secs));
    }
    response
}

/// A 400 for a request the simulator cannot serve.
pub(super) fn bad_request(wire: Wire, message: String, param: Option<String>) -> Response {
    let err = WireError {
        status: 400,
        message,
        param,
        code: None,
    };
    error(wire, &err, None)
}

pub(super) fn json(status: StatusCode, body: Vec<u8>) -> Response {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

fn reset() -> Response {
    let mut response = Response::new(Body::empty());
    response.extensions_mut().insert(ResetConnection);
    response
}

/// Announces the whole body's length, sends half, then fails the body so
/// hyper drops the connection: the client sees a body cut short.
fn cut(body: Vec<u8>) -> Response {
    let full = body.len();
    let head = Bytes::copy_from_slice(cut_body(&body));
    // Pending once between the two, so hyper flushes the headers and the
    // head before the error makes it drop the connection.
    let fail = futures::stream::once(async {
        tokio::task::yield_now().await;
        Err(std::io::Error::other("simulated cut"))
    });
    let parts = futures::stream::iter([Ok(head)]).chain(fail);
    let mut response = Response::new(Body::from_stream(parts));
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(CONTENT_LENGTH, HeaderValue::from(full));
    response
}

/// Writes each step as SSE after its pause; the guard is finished when the
/// last step is written, so an early drop of the body counts a disconnect.
fn stream(
    steps: Vec<StreamStep>,
    encoder: Encoder,
    fault: Fault,
    guard: DisconnectGuard,
) -> Response {
    struct State {
        steps: std::iter::Enumerate<std::vec::IntoIter<StreamStep>>,
        encoder: Encoder,
        fault: Fault,
        guard: Option<DisconnectGuard>,
    }
    let state = State {
        steps: steps.into_iter().enumerate(),
        encoder,
        fault,
        guard: Some(guard),
    };
    let frames = futures::stream::unfold(state, |mut st| async move {
        let Some((index, step)) = st.steps.next() else {
            if let Some(guard) = st.guard.take() {
                guard.finish();
            }
            return None;
        };
        pause(st.fault.pause_before(index)).await;
        let mut out = Vec::new();
        match &step {
            StreamStep::Event(ev) => st.encoder.event(ev, &mut out),
            StreamStep::Malformed => write_event(&mut out, None, MALFORMED),
            StreamStep::Error(err) => st.encoder.error(err, &mut out),
        }
        Some((Ok::<_, Infallible>(Bytes::from(out)), st))
    });
    let mut response = Response::new(Body::from_stream(frames));
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// Skips the timer for a zero pause: most streams have no `gap`, and a
/// zero sleep still costs a trip through the timer wheel per event.
async fn pause(d: Duration) {
    if !d.is_zero() {
        tokio::time::sleep(d).await;
    }
}

#[cfg(test)]
mod tests {
    use keel_config::SimConfig;
    use keel_protocol::chat::{ChatRequest, Message, Role};
    use tokio::time::Instant;

    use super::*;
    use crate::Simulator;

    #[tokio::test(start_paused = true)]
    async fn streams_wait_latency_then_ttft_then_gaps() {
        let sim = Simulator::new(&SimConfig::default()).unwrap();
        let req = ChatRequest {
            messages: vec![Message::text(Role::User, "pace me")],
            stream: true,
            ..ChatRequest::default()
        };
        let plan = sim
            .plan(&req, Some("latency=1s,ttft=2s,gap=500ms"))
            .unwrap();
        let steps = plan.stream_steps();
        let payload = Payload::Stream {
            steps: steps.clone(),
            encoder: Wire::OpenAi.stream_encoder(false),
        };
        let started = Instant::now();
        let response = act(Wire::OpenAi, &plan, payload, sim.disconnect_guard()).await;
        assert_eq!(
            started.elapsed(),
            Duration::from_secs(1),
            "latency before headers"
        );

        let mut frames = response.into_body().into_data_stream();
        let mut at = Vec::new();
        while let Some(frame) = frames.next().await {
            frame.unwrap();
            at.push(started.elapsed());
        }
        assert_eq!(at.len(), steps.len());
        for (i, t) in at.iter().enumerate() {
            let want =
                Duration::from_secs(3) + Duration::from_millis(500) * u32::try_from(i).unwrap();
            assert_eq!(*t, want, "frame {i}");
        }
        assert_eq!(
            sim.stats().disconnects,
            0,
            "a finished stream is no disconnect"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_dropped_early_counts_a_disconnect() {
        let sim = Simulator::new(&SimConfig::default()).unwrap();
        let plan = sim.plan(&ChatRequest::default(), Some("gap=1s")).unwrap();
        let payload = Payload::Stream {
            steps: plan.stream_steps(),
            encoder: Wire::Anthropic.stream_encoder(false),
        };
        let response = act(Wire::Anthropic, &plan, payload, sim.disconnect_guard()).await;
        let mut frames = response.into_body().into_data_stream();
        frames.next().await.unwrap().unwrap();
        drop(frames);
        assert_eq!(sim.stats().disconnects, 1);
    }
}
