//! keel's upstreams. Each provider lives in its own folder with the same
//! file set: `client.rs` (the [`Provider`] impl), `request.rs` (what is sent),
//! `response.rs` (what comes back, mapped to internal types or a typed
//! [`Error`]) and `stream.rs` (streamed answers).
//!
//! - [`openai`]: any OpenAI-compatible server (OpenAI, vLLM, Ollama,
//!   llama.cpp, Groq, Together, Azure deployments via base URL + headers);
//! - [`anthropic`]: the Anthropic messages API;
//! - [`sim`]: keel's simulator, in process.
//!
//! HTTP providers share one pooled client per provider (keep-alive, HTTP/2
//! where the server offers it, TCP_NODELAY), built once at config load.

pub mod anthropic;
mod http;
pub mod openai;
pub mod sim;

use std::sync::Arc;

use keel_config::{ProviderConfig, ProviderKind};
use keel_core::{Error, Provider};

/// Builds the provider a config entry describes.
pub fn build(config: &ProviderConfig) -> Result<Arc<dyn Provider>, Error> {
    Ok(match &config.kind {
        ProviderKind::OpenAi(http) => Arc::new(openai::OpenAi::new(&config.name, http, config)?),
        ProviderKind::Anthropic(http) => {
            Arc::new(anthropic::Anthropic::new(&config.name, http, config)?)
        }
        ProviderKind::Sim(sim) => Arc::new(sim::Sim::new(&config.name, sim)?),
    })
}
