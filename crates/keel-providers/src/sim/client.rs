//! The simulator [`Provider`].

use async_trait::async_trait;
use keel_config::SimConfig;
use keel_core::{CallContext, Error, EventStream, Provider};
use keel_protocol::chat::{ChatRequest, ChatResponse, EmbeddingsRequest, EmbeddingsResponse};
use keel_sim::Simulator;

#[derive(Debug)]
pub struct Sim {
    pub(super) name: String,
    pub(super) sim: Simulator,
}

impl Sim {
    pub fn new(name: &str, config: &SimConfig) -> Result<Self, Error> {
        let sim = Simulator::new(config)
            .map_err(|e| Error::internal(format!("provider `{name}`: {e}")))?;
        Ok(Sim {
            name: name.to_owned(),
            sim,
        })
    }
}

#[async_trait]
impl Provider for Sim {
    async fn chat(&self, req: ChatRequest, ctx: &CallContext) -> Result<ChatResponse, Error> {
        let plan = self.plan(&req, ctx)?;
        // A whole answer's first byte is its body: `ttft` bounds all of it.
        self.within_ttft(ctx, async {
            self.before_headers(&plan.fault).await?;
            self.respond(plan).await
        })
        .await
    }

    async fn chat_stream(&self, req: ChatRequest, ctx: &CallContext) -> Result<EventStream, Error> {
        let plan = self.plan(&req, ctx)?;
        self.within_ttft(ctx, self.before_headers(&plan.fault))
            .await?;
        Ok(self.events(plan))
    }

    async fn embed(
        &self,
        req: EmbeddingsRequest,
        ctx: &CallContext,
    ) -> Result<EmbeddingsResponse, Error> {
        let plan = self
            .sim
            .embed(&req, ctx.sim_fault.as_deref())
            .map_err(|e| self.plan_error(e))?;
        self.within_ttft(ctx, async {
            self.before_headers(&plan.fault).await?;
            self.respond_embeddings(plan).await
        })
        .await
    }
}
