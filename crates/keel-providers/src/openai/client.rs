//! The OpenAI-compatible [`Provider`].

use async_trait::async_trait;
use keel_config::{HttpProvider, ProviderConfig};
use keel_core::{CallContext, Error, EventStream, Provider};
use keel_protocol::chat::{ChatRequest, ChatResponse, EmbeddingsRequest, EmbeddingsResponse};
use reqwest::header::{AUTHORIZATION, HeaderMap};
use secrecy::ExposeSecret;

use crate::http::{self, Upstream, Wire};

#[derive(Debug)]
pub struct OpenAi {
    pub(super) up: Upstream,
    pub(super) chat_url: reqwest::Url,
    pub(super) embeddings_url: reqwest::Url,
    /// Authorization and configured headers, all marked sensitive.
    pub(super) headers: HeaderMap,
}

impl OpenAi {
    pub fn new(name: &str, http: &HttpProvider, config: &ProviderConfig) -> Result<Self, Error> {
        let mut headers = http::headers(name, http)?;
        if let Some(key) = &http.api_key {
            http::insert_secret(
                &mut headers,
                name,
                AUTHORIZATION.as_str(),
                &format!("Bearer {}", key.expose_secret()),
            )?;
        }
        let url = |path: &str| {
            reqwest::Url::parse_with_params(&format!("{}{path}", http.base_url), &http.query)
                .map_err(|e| Error::internal(format!("provider `{name}`: invalid base_url: {e}")))
        };
        Ok(OpenAi {
            up: Upstream::new(config, Wire::OpenAi)?,
            chat_url: url("/chat/completions")?,
            embeddings_url: url("/embeddings")?,
            headers,
        })
    }
}

#[async_trait]
impl Provider for OpenAi {
    async fn chat(&self, mut req: ChatRequest, ctx: &CallContext) -> Result<ChatResponse, Error> {
        req.stream = false;
        let response = self.up.send(self.chat_request(&req), ctx).await?;
        let body = self.up.body(response).await?;
        self.chat_response(&body)
    }

    async fn chat_stream(
        &self,
        mut req: ChatRequest,
        ctx: &CallContext,
    ) -> Result<EventStream, Error> {
        req.stream = true;
        let response = self.up.send(self.chat_request(&req), ctx).await?;
        self.events(response).await
    }

    async fn embed(
        &self,
        req: EmbeddingsRequest,
        ctx: &CallContext,
    ) -> Result<EmbeddingsResponse, Error> {
        let response = self.up.send(self.embeddings_request(&req), ctx).await?;
        let body = self.up.body(response).await?;
        self.embeddings_response(&body)
    }
}
