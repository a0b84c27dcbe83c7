//! Any OpenAI-compatible upstream: OpenAI itself, vLLM, Ollama, llama.cpp
//! server, Groq, Together, Azure-style deployments (base URL + `api-key`
//! header + `api-version` query in config).

mod client;
mod request;
mod response;
mod stream;

pub use client::OpenAi;
