//! Acting out a simulated stream: each step after its pause (`ttft` first,
//! then `gap`); a cut stream ends with the same error an HTTP provider
//! raises for a body that stops before its terminal event.

use futures::StreamExt;
use keel_core::{Error, EventStream};
use keel_protocol::chat::StreamEvent;
use keel_sim::{Outcome, Plan, StreamStep};

use super::client::Sim;

impl Sim {
    pub(super) fn events(&self, plan: Plan) -> EventStream {
        let name = self.name.clone();
        let cut = matches!(plan.fault.outcome, Outcome::Cut(_));
        let steps: Vec<(std::time::Duration, StreamStep)> = plan
            .stream_steps()
            .into_iter()
            .enumerate()
            .map(|(i, step)| (plan.fault.pause_before(i), step))
            .collect();
        let tail = cut
            .then(|| Error::upstream_protocol(&name, "the stream ended before its terminal event"));
        let stepped = futures::stream::iter(steps).then(move |(pause, step)| {
            let name = name.clone();
            async move {
                tokio::time::sleep(pause).await;
                match step {
                    StreamStep::Event(ev) => Ok(ev),
                    StreamStep::Malformed => Err(Error::upstream_protocol(
                        &name,
                        "stream event is not valid JSON (simulated)",
                    )),
                    StreamStep::Error(wire) => {
                        Err(Error::upstream_stream_error(&name, &wire.message))
                    }
                }
            }
        });
        // An error ends the stream: nothing after it is delivered.
        let mut failed = false;
        stepped
            .chain(futures::stream::iter(tail.map(Err)))
            .take_while(move |item: &Result<StreamEvent, Error>| {
                let keep = !failed;
                failed |= item.is_err();
                futures::future::ready(keep)
            })
            .boxed()
    }
}
