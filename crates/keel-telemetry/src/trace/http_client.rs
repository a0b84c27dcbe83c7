//! The blocking HTTP client the OTLP exporter posts batches with.
//!
//! opentelemetry-otlp's own `reqwest-blocking-client` feature is built on reqwest 0.13, whose
//! rustls backend brings in aws-lc-rs (a large C build). keel already compiles reqwest 0.12 with
//! rustls (ring) for the providers, so this adapts that client, with its `blocking` feature,
//! rather than compiling a second HTTP and TLS stack.
//!
//! Only the exporter's batch thread sends with it; nothing here runs on a tokio worker.

use std::fmt;
use std::io::Read as _;
use std::time::Duration;

use async_trait::async_trait;
use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};
use reqwest::header::HeaderMap;

use super::TraceError;

/// A collector answers with a small protobuf; a bigger body is not worth reading.
const MAX_RESPONSE_BYTES: u64 = 4 * 1024 * 1024;

pub(super) struct BlockingClient {
    client: reqwest::blocking::Client,
    /// The configured collector headers, values marked sensitive.
    headers: HeaderMap,
}

impl BlockingClient {
    /// `timeout` bounds each request, connect to last body byte. Redirects are not followed, so
    /// the collector headers (often credentials) never go to another host.
    pub(super) fn new(timeout: Duration, headers: HeaderMap) -> Result<Self, TraceError> {
        let build = || {
            reqwest::blocking::Client::builder()
                .timeout(timeout)
                .redirect(reqwest::redirect::Policy::none())
                .build()
        };
        // reqwest's blocking client panics when built inside a tokio runtime, and `Tracer::new`
        // may well be called from one: build it on a plain thread.
        let built = std::thread::scope(|scope| {
            std::thread::Builder::new()
                .name("keel-otlp-client".into())
                .spawn_scoped(scope, build)
                .map_err(|err| err.to_string())?
                .join()
                .map_err(|_| "the builder thread panicked".to_string())?
                .map_err(|err| err.to_string())
        });
        let client = built.map_err(TraceError::HttpClient)?;
        Ok(BlockingClient { client, headers })
    }
}

impl fmt::Debug for BlockingClient {
    /// Header values stay out of any log line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlockingClient").finish_non_exhaustive()
    }
}

#[async_trait]
impl HttpClient for BlockingClient {
    /// Blocks the calling thread: the batch span processor runs this future with
    /// `futures_executor::block_on` on its own thread.
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let mut request = reqwest::blocking::Request::try_from(request)?;
        for (name, value) in &self.headers {
            request.headers_mut().insert(name, value.clone());
        }
        let mut response = self.client.execute(request)?;
        let status = response.status();
        let headers = std::mem::take(response.headers_mut());
        let mut body = Vec::new();
        response
            .take(MAX_RESPONSE_BYTES + 1)
            .read_to_end(&mut body)?;
        if body.len() as u64 > MAX_RESPONSE_BYTES {
            return Err("collector response body over 4 MiB".into());
        }
        let mut response = Response::builder().status(status).body(Bytes::from(body))?;
        *response.headers_mut() = headers;
        Ok(response)
    }
}
