//! Acting out a simulated non-streamed answer: the body arrives after
//! `ttft`, whole, malformed, or cut short.

use keel_core::Error;
use keel_protocol::chat::{ChatResponse, EmbeddingsResponse};
use keel_sim::{Outcome, Plan};

use super::client::Sim;

impl Sim {
    pub(super) async fn respond(&self, plan: Plan) -> Result<ChatResponse, Error> {
        tokio::time::sleep(plan.fault.pause_before(0)).await;
        self.body_outcome(plan.fault.outcome)?;
        Ok(plan.response)
    }

    pub(super) async fn respond_embeddings(
        &self,
        plan: Plan<EmbeddingsResponse>,
    ) -> Result<EmbeddingsResponse, Error> {
        tokio::time::sleep(plan.fault.pause_before(0)).await;
        self.body_outcome(plan.fault.outcome)?;
        Ok(plan.response)
    }

    /// The error an HTTP provider would raise reading this body.
    fn body_outcome(&self, outcome: Outcome) -> Result<(), Error> {
        match outcome {
            Outcome::Malformed => Err(Error::upstream_protocol(
                &self.name,
                "body is not valid JSON (simulated)",
            )),
            Outcome::Cut(_) => Err(Error::upstream_connection(
                &self.name,
                "connection closed mid-body (simulated)",
            )),
            Outcome::StreamError(_) => Err(Error::upstream_status(
                &self.name,
                500,
                "simulated upstream error",
            )),
            Outcome::Reply | Outcome::Status { .. } | Outcome::Reset | Outcome::Hang => Ok(()),
        }
    }
}
