//! The tower layers around every route, in one place. Listed outermost
//! first; each comment says why the layer sits where it does.

use axum::Router;
use axum::body::Body;
use axum::http::HeaderName;
use axum::http::Request;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;
use tracing::Span;

use crate::error;

pub(crate) const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

fn span(req: &Request<Body>) -> Span {
    let id = req
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    tracing::info_span!("request", request_id = %id, method = %req.method(), path = %req.uri().path())
}

pub(crate) fn layer(router: Router) -> Router {
    router.layer(
        ServiceBuilder::new()
            // 1. Request id first: every later layer, log line and error
            //    carries it. A client's own `x-request-id` is kept.
            .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
            // 2. Echo it on the response, including on caught panics below.
            .layer(PropagateRequestIdLayer::new(REQUEST_ID))
            // 3. One span per request, inside the id so it can carry it:
            //    every log line of the request names its request id.
            .layer(TraceLayer::new_for_http().make_span_with(span))
            // 4. Innermost: a panic in a handler becomes a 500 in the
            //    OpenAI error shape instead of a dropped connection. It
            //    should never fire (no unwrap on the request path); it is the
            //    last line of defence for the "never a panic" invariant.
            .layer(CatchPanicLayer::custom(error::panic_response)),
    )
}
