//! Binding the router to a listener (plain, or TLS with `[server.tls]`),
//! with graceful shutdown: when
//! `shutdown` resolves, keel stops accepting, lets in-flight requests
//! (streams included) finish, and gives up on them after
//! `server.shutdown_grace`; then budget settles still on their way to
//! Redis, the request log and the trace exporter are flushed (each within
//! the same grace again).

use std::future::Future;

use axum::serve::{Listener, ListenerExt};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::state::Gateway;
use crate::tls::{self, TlsListener};
use crate::{routes, spend};

pub async fn serve(
    gw: Gateway,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let grace = gw.config().server.shutdown_grace;
    let app = routes::router(gw.clone());
    let (started_tx, started_rx) = oneshot::channel::<()>();
    let signal = async move {
        shutdown.await;
        tracing::info!(
            grace_secs = grace.as_secs_f64(),
            "shutting down: draining in-flight requests"
        );
        let _ = started_tx.send(());
    };
    let result = match &gw.config().server.tls {
        Some(config) => {
            let listener = TlsListener::new(listener, tls::config(config)?)?;
            drive(listener, app, signal, started_rx, grace).await
        }
        None => {
            // Headers and body go out in separate writes; without
            // TCP_NODELAY a keep-alive client's delayed ACK stalls each
            // response ~40 ms.
            let listener = listener.tap_io(|tcp| {
                if let Err(e) = tcp.set_nodelay(true) {
                    tracing::warn!(error = %e, "could not set TCP_NODELAY");
                }
            });
            drive(listener, app, signal, started_rx, grace).await
        }
    };
    // Every request has emitted its record by now: book the spend still
    // on its way to Redis, then write the records out.
    spend::drain(&gw, grace).await;
    gw.inner.sinks.shutdown(grace).await;
    result
}

/// Serves until `signal`, then waits at most `grace` (from when the signal
/// came, `started`) for in-flight requests.
async fn drive<L>(
    listener: L,
    app: axum::Router,
    signal: impl Future<Output = ()> + Send + 'static,
    started: oneshot::Receiver<()>,
    grace: std::time::Duration,
) -> std::io::Result<()>
where
    L: Listener,
    L::Addr: std::fmt::Debug,
{
    let server = axum::serve(listener, app).with_graceful_shutdown(signal);
    tokio::select! {
        result = server => result,
        () = async {
            if started.await.is_ok() {
                tokio::time::sleep(grace).await;
            } else {
                std::future::pending::<()>().await;
            }
        } => {
            tracing::warn!("shutdown grace expired: closing the requests still in flight");
            Ok(())
        }
    }
}
