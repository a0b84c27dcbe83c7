//! Planning a simulated call, and acting out what happens before an HTTP
//! upstream would send response headers: latency, error statuses, resets
//! and hangs.

use keel_core::{CallContext, Error};
use keel_protocol::chat::ChatRequest;
use keel_sim::{Fault, Outcome, Plan, SimError};

use super::client::Sim;

impl Sim {
    pub(super) fn plan(&self, req: &ChatRequest, ctx: &CallContext) -> Result<Plan, Error> {
        self.sim
            .plan(req, ctx.sim_fault.as_deref())
            .map_err(|e| self.plan_error(e))
    }

    /// A bad fault header or a request the simulator refuses is the client's
    /// error (400); anything else would be a bug in the simulator.
    pub(super) fn plan_error(&self, e: SimError) -> Error {
        match e {
            SimError::Fault(_) | SimError::InvalidRequest(_) => {
                Error::invalid_request(e.to_string())
            }
            other => Error::internal(format!("provider `{}`: {other}", self.name)),
        }
    }

    /// Bounds what happens before the first byte by `ctx.ttft`, as an HTTP
    /// provider bounds the wait for response headers.
    pub(super) async fn within_ttft<T>(
        &self,
        ctx: &CallContext,
        work: impl std::future::Future<Output = Result<T, Error>>,
    ) -> Result<T, Error> {
        match ctx.ttft {
            None => work.await,
            Some(limit) => tokio::time::timeout(limit, work)
                .await
                .map_err(|_| Error::upstream_timeout(&self.name, limit))?,
        }
    }

    pub(super) async fn before_headers(&self, fault: &Fault) -> Result<(), Error> {
        tokio::time::sleep(fault.latency).await;
        match fault.outcome {
            Outcome::Status {
                status,
                retry_after,
            } => Err(Error::upstream_status(
                &self.name,
                status,
                &format!("simulated upstream error (status={status})"),
            )
            .with_retry_after(retry_after.map(std::time::Duration::from_secs))),
            Outcome::Reset => Err(Error::upstream_connection(
                &self.name,
                "connection reset (simulated)",
            )),
            Outcome::Hang => std::future::pending().await,
            Outcome::Reply | Outcome::Malformed | Outcome::Cut(_) | Outcome::StreamError(_) => {
                Ok(())
            }
        }
    }
}
