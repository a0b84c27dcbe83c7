//! The Anthropic [`Provider`].

use async_trait::async_trait;
use keel_config::{HttpProvider, ProviderConfig};
use keel_core::{CallContext, Error, EventStream, Provider};
use keel_protocol::anthropic;
use keel_protocol::chat::{ChatRequest, ChatResponse, EmbeddingsRequest, EmbeddingsResponse};
use reqwest::header::{HeaderMap, HeaderValue};
use secrecy::ExposeSecret;

use crate::http::{self, Upstream, Wire};

/// The API version keel speaks; a configured `anthropic-version` header wins.
const API_VERSION: &str = "2023-06-01";

#[derive(Debug)]
pub struct Anthropic {
    pub(super) up: Upstream,
    pub(super) messages_url: reqwest::Url,
    /// `x-api-key`, `anthropic-version` and configured headers, all sensitive.
    pub(super) headers: HeaderMap,
}

impl Anthropic {
    pub fn new(name: &str, http: &HttpProvider, config: &ProviderConfig) -> Result<Self, Error> {
        let mut headers = http::headers(name, http)?;
        if let Some(key) = &http.api_key {
            http::insert_secret(&mut headers, name, "x-api-key", key.expose_secret())?;
        }
        headers
            .entry("anthropic-version")
            .or_insert(HeaderValue::from_static(API_VERSION));
        let messages_url =
            reqwest::Url::parse_with_params(&format!("{}/v1/messages", http.base_url), &http.query)
                .map_err(|e| {
                    Error::internal(format!("provider `{name}`: invalid base_url: {e}"))
                })?;
        Ok(Anthropic {
            up: Upstream::new(config, Wire::Anthropic)?,
            messages_url,
            headers,
        })
    }
}

#[async_trait]
impl Provider for Anthropic {
    async fn chat(&self, mut req: ChatRequest, ctx: &CallContext) -> Result<ChatResponse, Error> {
        req.stream = false;
        let forced = anthropic::structured_tool(&req).map(|(name, _)| name);
        let response = self.up.send(self.messages_request(&req), ctx).await?;
        let body = self.up.body(response).await?;
        self.chat_response(&body, forced.as_deref())
    }

    async fn chat_stream(
        &self,
        mut req: ChatRequest,
        ctx: &CallContext,
    ) -> Result<EventStream, Error> {
        req.stream = true;
        let forced = anthropic::structured_tool(&req).map(|(name, _)| name);
        let response = self.up.send(self.messages_request(&req), ctx).await?;
        self.events(response, forced).await
    }

    async fn embed(
        &self,
        req: EmbeddingsRequest,
        _ctx: &CallContext,
    ) -> Result<EmbeddingsResponse, Error> {
        Err(Error::invalid_request(format!(
            "model `{}` is served by Anthropic (provider `{}`), which has no embeddings API",
            req.model, self.up.name
        ))
        .with_param("model"))
    }
}
