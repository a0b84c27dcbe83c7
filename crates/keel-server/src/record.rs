//! The record phase: one structured log line per request, whatever its
//! outcome, emitted exactly once: on completion, on error, or (through
//! `Drop`) when the client goes away mid-stream. The persistent request log
//! (SQLite/Postgres) builds on this record.

use std::time::Instant;

use keel_core::Error;
use keel_protocol::chat::Usage;

use crate::attempt::Attempt;
use crate::error;
use crate::front::Front;

#[derive(Debug)]
pub(crate) struct Record {
    request_id: String,
    front: &'static str,
    op: &'static str,
    started: Instant,
    pub model: String,
    pub stream: bool,
    pub provider: Option<String>,
    pub upstream_model: Option<String>,
    pub usage: Usage,
    pub attempts: Vec<Attempt>,
    done: bool,
}

impl Record {
    pub fn start(front: Front, op: &'static str, request_id: String) -> Self {
        Record {
            request_id,
            front: front.name(),
            op,
            started: Instant::now(),
            model: String::new(),
            stream: false,
            provider: None,
            upstream_model: None,
            usage: Usage::default(),
            attempts: Vec::new(),
            done: false,
        }
    }

    pub fn request_id(&self) -> &str {
        &self.request_id
    }

    pub fn ok(mut self) {
        self.emit(200, "ok", None);
    }

    pub fn fail(mut self, err: &Error) {
        let status = error::status(err).as_u16();
        self.emit(status, error::code(err), Some(&err.message));
    }

    fn emit(&mut self, status: u16, outcome: &str, error: Option<&str>) {
        self.done = true;
        let latency_ms = self.started.elapsed().as_secs_f64() * 1000.0;
        // provider/model:outcome:ms per attempt, in order.
        let attempts = self
            .attempts
            .iter()
            .map(|a| {
                format!(
                    "{}/{}:{}:{}",
                    a.provider,
                    a.model,
                    a.outcome,
                    a.latency.as_millis()
                )
            })
            .collect::<Vec<_>>()
            .join(",");
        tracing::info!(
            target: "keel::request",
            request_id = %self.request_id,
            front = self.front,
            op = self.op,
            model = %self.model,
            stream = self.stream,
            provider = self.provider.as_deref().unwrap_or(""),
            upstream_model = self.upstream_model.as_deref().unwrap_or(""),
            status,
            outcome,
            error = error.unwrap_or(""),
            input_tokens = self.usage.input_tokens,
            output_tokens = self.usage.output_tokens,
            latency_ms,
            attempts = %attempts,
            "request"
        );
    }
}

impl Drop for Record {
    fn drop(&mut self) {
        if !self.done {
            // 499: the client closed the connection before the answer ended
            // (the convention nginx made common).
            self.emit(499, "client_disconnected", None);
        }
    }
}
