//! keel's HTTP server: the front doors (OpenAI `/v1/chat/completions`,
//! `/v1/embeddings`, `/v1/models`; Anthropic `/v1/messages`), health
//! endpoints, and the request pipeline behind them.
//!
//! - [`stack`](crate::stack) lists the tower layers, in order, with why.
//! - [`pipeline`](crate::pipeline) runs the named phases of a request.
//! - [`front`](crate::front) is everything that depends on the client's protocol.
//! - [`serve`] binds the router to a listener with graceful shutdown.
//!
//! Only this crate knows axum.

mod admin;
mod alerts;
mod attempt;
mod auth;
mod body;
mod breakers;
mod cache;
mod error;
mod feedback;
mod front;
mod functions;
mod guard;
mod health;
mod held;
mod metrics;
mod models;
mod pipeline;
mod rate;
mod record;
mod routes;
mod serve;
mod sinks;
mod spend;
mod stack;
mod stale;
mod state;
mod stream;
mod tls;
mod validate;
mod workflows;

pub use functions::{FunctionError, FunctionOutput, Meta as FunctionMeta};
pub use serve::serve;
pub use state::Gateway;

impl Gateway {
    /// Calls a configured function in process (what `keel call` does).
    pub async fn call_function(
        &self,
        name: &str,
        input: serde_json::Value,
    ) -> Result<FunctionOutput, FunctionError> {
        let ctx = keel_core::CallContext {
            request_id: uuid::Uuid::new_v4().to_string(),
            ..keel_core::CallContext::default()
        };
        let mut trail = record::Trail::default();
        functions::call(
            self,
            name,
            input,
            &ctx,
            &axum::http::HeaderMap::new(),
            &mut trail,
        )
        .await
    }
}
