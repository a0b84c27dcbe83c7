//! The Anthropic messages API.

mod client;
mod request;
mod response;
mod stream;

pub use client::Anthropic;
