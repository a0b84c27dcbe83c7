//! The neutral upstreams every gateway is measured against. Not keel code:
//! fixed answers, as cheap as a server can make them.
//!
//! - nginx (Debian's package) serves the fixed chat completion (`nginx.rs`);
//! - this module's small hyper server serves what nginx cannot: an SSE
//!   stream with a fixed gap between tokens (`/sse/v1/...`), and a flaky
//!   upstream failing every fifth request with a 500 (`/flaky/v1/...`).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

/// The one chat completion every non-stream upstream returns.
pub const COMPLETION: &str = r#"{"id":"chatcmpl-bench","object":"chat.completion","created":1700000000,"model":"bench-upstream","choices":[{"index":0,"message":{"role":"assistant","content":"Hello! How can I help you today?"},"finish_reason":"stop"}],"usage":{"prompt_tokens":9,"completion_tokens":9,"total_tokens":18}}"#;

const ERROR: &str = r#"{"error":{"message":"bench: injected failure","type":"server_error","param":null,"code":null}}"#;

/// Tokens per streamed answer, and the upstream's pause between them.
pub const STREAM_TOKENS: usize = 20;
pub const STREAM_GAP: Duration = Duration::from_millis(2);

type Body = http_body_util::combinators::BoxBody<Bytes, Infallible>;

fn chunk(content: &str, finish: Option<&str>, usage: bool) -> Bytes {
    let finish = finish.map_or("null".to_owned(), |f| format!("\"{f}\""));
    let mut json = format!(
        r#"{{"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1700000000,"model":"bench-upstream","choices":[{{"index":0,"delta":{{"content":"{content}"}},"finish_reason":{finish}}}]}}"#
    );
    if usage {
        json = r#"{"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1700000000,"model":"bench-upstream","choices":[],"usage":{"prompt_tokens":9,"completion_tokens":20,"total_tokens":29}}"#.to_owned();
    }
    Bytes::from(format!("data: {json}\n\n"))
}

fn sse() -> Response<Body> {
    let frames = async_stream(move |tx| async move {
        let _ = tx.send(chunk("", None, false)).await;
        for i in 0..STREAM_TOKENS {
            tokio::time::sleep(STREAM_GAP).await;
            if tx
                .send(chunk(&format!("tok{i} "), None, false))
                .await
                .is_err()
            {
                return;
            }
        }
        let _ = tx.send(chunk("", Some("stop"), false)).await;
        let _ = tx.send(chunk("", None, true)).await;
        let _ = tx.send(Bytes::from_static(b"data: [DONE]\n\n")).await;
    });
    let mut resp = Response::new(StreamBody::new(frames).boxed());
    resp.headers_mut().insert(
        "content-type",
        hyper::header::HeaderValue::from_static("text/event-stream"),
    );
    resp
}

/// A channel-backed frame stream: the producer runs as its own task.
fn async_stream<F, Fut>(produce: F) -> impl futures::Stream<Item = Result<Frame<Bytes>, Infallible>>
where
    F: FnOnce(tokio::sync::mpsc::Sender<Bytes>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tokio::spawn(produce(tx));
    futures::stream::unfold(rx, |mut rx| async move {
        let bytes = rx.recv().await?;
        Some((Ok(Frame::data(bytes)), rx))
    })
}

fn json(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut resp = Response::new(Full::new(Bytes::from_static(body.as_bytes())).boxed());
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        "content-type",
        hyper::header::HeaderValue::from_static("application/json"),
    );
    resp
}

async fn handle(
    req: Request<Incoming>,
    requests: Arc<AtomicU64>,
) -> Result<Response<Body>, Infallible> {
    let path = req.uri().path().to_owned();
    // Drain the request body: a real upstream reads it.
    let _ = req.into_body().collect().await;
    Ok(match path.as_str() {
        "/sse/v1/chat/completions" => sse(),
        "/flaky/v1/chat/completions" => {
            if requests.fetch_add(1, Ordering::Relaxed) % 5 == 4 {
                json(StatusCode::INTERNAL_SERVER_ERROR, ERROR)
            } else {
                json(StatusCode::OK, COMPLETION)
            }
        }
        _ => json(StatusCode::NOT_FOUND, ERROR),
    })
}

/// Serves on an ephemeral 127.0.0.1 port until the process ends.
pub async fn spawn() -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let requests = Arc::new(AtomicU64::new(0));
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let _ = tcp.set_nodelay(true);
            let requests = Arc::clone(&requests);
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(move |req| handle(req, Arc::clone(&requests)));
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tcp), service)
                    .await;
            });
        }
    });
    Ok(addr)
}
