//! `GET /metrics`: Prometheus text format. Request series come from each
//! request's record (`keel_telemetry::metrics`); the live state — breakers,
//! admission, per-provider in-flight, the log queue — is read at scrape time.

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use keel_resilience::breaker::State as Breaker;
use keel_telemetry::metrics::{Live, LogQueue};

use crate::state::Gateway;

pub(crate) async fn render(State(gw): State<Gateway>) -> Response {
    let inner = &gw.inner;
    let mut live = Live {
        in_flight: to_i64(inner.admission.in_flight()),
        queued: to_i64(inner.admission.queued()),
        ..Live::default()
    };
    for (name, up) in &inner.upstreams {
        if let Some(b) = &up.breaker {
            let state = match b.state() {
                Breaker::Closed => 0,
                Breaker::HalfOpen => 1,
                Breaker::Open => 2,
            };
            live.breakers
                .push((name.clone(), state, b.snapshot().opened_total));
        }
        if let Some(l) = &up.limiter {
            live.target_in_flight
                .push((name.clone(), to_i64(l.in_flight())));
        }
    }
    let sinks = &inner.sinks;
    live.log = sinks.recorder.as_ref().map(|r| LogQueue {
        depth: to_i64(r.depth()),
        dropped: r.dropped(),
        written: r.written(),
        failures: r.failures(),
    });
    (
        [(header::CONTENT_TYPE, sinks.metrics.content_type())],
        sinks.metrics.render(&live),
    )
        .into_response()
}

fn to_i64(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}
