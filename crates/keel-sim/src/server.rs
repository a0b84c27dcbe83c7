//! The HTTP face: the engine behind OpenAI and Anthropic routes.
//!
//! Our own accept loop around hyper-util rather than `axum::serve`, for two
//! reasons: the `reset` fault must drop a connection without any response,
//! which only a service returning `Err` to hyper achieves; and every accepted
//! socket gets TCP_NODELAY.

mod respond;
mod routes;
mod wire;

use std::future::Future;
use std::io;
use std::time::Duration;

use axum::http::Request;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tower::ServiceExt;

use crate::Simulator;

/// The request header carrying a fault spec.
pub const FAULT_HEADER: &str = "x-keel-sim-fault";

/// Marks a response whose connection must be dropped instead; the service
/// around the router turns it into an error, on which hyper closes the
/// connection without writing anything.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("simulated connection reset")]
struct ResetConnection;

/// Serves the simulator on `listener` until `shutdown` completes; then open
/// connections are dropped, hung ones included (a simulator owes its
/// clients no graceful drain). Fails only if the listener has no address.
pub async fn serve(
    listener: TcpListener,
    sim: Simulator,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    tracing::info!(addr = %listener.local_addr()?, "sim: listening");
    let app = routes::router(sim);
    let builder = Builder::new(TokioExecutor::new());
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => return Ok(()),
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Accept errors are per-connection or resource exhaustion
                    // (out of file descriptors): pause, as axum::serve does,
                    // rather than spin or stop serving.
                    tracing::warn!(error = %e, "sim: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, %peer, "sim: TCP_NODELAY not set");
        }
        let app = app.clone();
        let service = hyper::service::service_fn(move |req: Request<Incoming>| {
            let app = app.clone();
            async move {
                let Ok(response) = app.oneshot(req).await;
                match response.extensions().get::<ResetConnection>() {
                    Some(reset) => Err(*reset),
                    None => Ok(response),
                }
            }
        });
        let builder = builder.clone();
        connections.spawn(async move {
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, %peer, "sim: connection ended");
            }
        });
    }
}
