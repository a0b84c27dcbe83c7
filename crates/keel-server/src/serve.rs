//! Binding the router to a listener, with graceful shutdown: when
//! `shutdown` resolves, keel stops accepting, lets in-flight requests
//! (streams included) finish, and gives up on them after
//! `server.shutdown_grace`; then budget settles still on their way to
//! Redis, the request log and the trace exporter are flushed (each within
//! the same grace again).

use std::future::Future;

use axum::serve::ListenerExt;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::state::Gateway;
use crate::{routes, spend};

pub async fn serve(
    gw: Gateway,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let grace = gw.config().server.shutdown_grace;
    let app = routes::router(gw.clone());
    // Headers and body go out in separate writes; without TCP_NODELAY a
    // keep-alive client's delayed ACK stalls each response ~40 ms.
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::warn!(error = %e, "could not set TCP_NODELAY");
        }
    });
    let (started_tx, started_rx) = oneshot::channel::<()>();
    let signal = async move {
        shutdown.await;
        tracing::info!(
            grace_secs = grace.as_secs_f64(),
            "shutting down: draining in-flight requests"
        );
        let _ = started_tx.send(());
    };
    let server = axum::serve(listener, app).with_graceful_shutdown(signal);
    let result = tokio::select! {
        result = server => result,
        () = async {
            if started_rx.await.is_ok() {
                tokio::time::sleep(grace).await;
            } else {
                std::future::pending::<()>().await;
            }
        } => {
            tracing::warn!("shutdown grace expired: closing the requests still in flight");
            Ok(())
        }
    };
    // Every request has emitted its record by now: book the spend still
    // on its way to Redis, then write the records out.
    spend::drain(&gw, grace).await;
    gw.inner.sinks.shutdown(grace).await;
    result
}
