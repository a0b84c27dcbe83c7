//! `GET /metrics`: the reliability state in Prometheus text format, read
//! from the live state at scrape time (breakers, admission, per-target
//! in-flight). The request, latency, token and cost series come with the
//! observability work and its registry; these gauges and counters stay.

use std::fmt::Write as _;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use keel_resilience::breaker::State as Breaker;

use crate::state::Gateway;

pub(crate) async fn render(State(gw): State<Gateway>) -> Response {
    let mut out = String::new();
    let inner = &gw.inner;
    let mut upstreams: Vec<_> = inner.upstreams.iter().collect();
    upstreams.sort_by(|a, b| a.0.cmp(b.0));

    family(
        &mut out,
        "keel_breaker_state",
        "gauge",
        "Circuit breaker state per target: 0 closed, 1 half-open, 2 open.",
    );
    for (name, up) in &upstreams {
        if let Some(b) = &up.breaker {
            let value = match b.state() {
                Breaker::Closed => 0,
                Breaker::HalfOpen => 1,
                Breaker::Open => 2,
            };
            let _ = writeln!(
                out,
                "keel_breaker_state{{target=\"{}\"}} {value}",
                escape(name)
            );
        }
    }
    family(
        &mut out,
        "keel_breaker_opened_total",
        "counter",
        "Times each target's circuit breaker opened.",
    );
    for (name, up) in &upstreams {
        if let Some(b) = &up.breaker {
            let _ = writeln!(
                out,
                "keel_breaker_opened_total{{target=\"{}\"}} {}",
                escape(name),
                b.snapshot().opened_total
            );
        }
    }
    family(
        &mut out,
        "keel_target_in_flight",
        "gauge",
        "Calls in flight to targets with a max_in_flight cap.",
    );
    for (name, up) in &upstreams {
        if let Some(l) = &up.limiter {
            let _ = writeln!(
                out,
                "keel_target_in_flight{{target=\"{}\"}} {}",
                escape(name),
                l.in_flight()
            );
        }
    }
    family(
        &mut out,
        "keel_in_flight_requests",
        "gauge",
        "Requests holding an admission permit.",
    );
    let _ = writeln!(
        out,
        "keel_in_flight_requests {}",
        inner.admission.in_flight()
    );
    family(
        &mut out,
        "keel_queued_requests",
        "gauge",
        "Requests waiting for an admission permit.",
    );
    let _ = writeln!(out, "keel_queued_requests {}", inner.admission.queued());
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// Label values escaped as the exposition format requires.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
