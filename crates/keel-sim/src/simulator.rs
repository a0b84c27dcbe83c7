//! The engine: a request (and an optional fault spec) in, a [`Plan`] out.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use keel_config::SimConfig;
use keel_protocol::chat::{ChatRequest, ChatResponse, EmbeddingsRequest, EmbeddingsResponse};
use keel_protocol::tokens::estimate;
use rand::Rng;

use crate::embed::{self, DEFAULT_DIMENSIONS, MAX_DIMENSIONS};
use crate::fault::{Fault, Outcome};
use crate::reply::{self, last_user_text};
use crate::script::{Rule, Script};
use crate::stats::{Counters, DisconnectGuard, SimStats};
use crate::{Plan, SimError, seed};

/// The simulator. Cheap to clone: clones share the script, rules and counters.
#[derive(Debug, Clone)]
pub struct Simulator {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    seed: u64,
    script: Script,
    /// Config fault rules: (rate, fault), drawn in order, first hit wins.
    rules: Vec<(f64, Fault)>,
    counters: Arc<Counters>,
}

impl Simulator {
    /// Loads the script and parses the fault rules; errors name the rule.
    pub fn new(config: &SimConfig) -> Result<Simulator, SimError> {
        let script = match &config.script {
            Some(path) => Script::load(path)?,
            None => Script::default(),
        };
        let rules = config
            .faults
            .iter()
            .enumerate()
            .map(|(index, rule)| {
                if !(0.0..=1.0).contains(&rule.rate) {
                    return Err(SimError::FaultRate {
                        index,
                        rate: rule.rate,
                    });
                }
                let fault = Fault::parse(&rule.fault)
                    .map_err(|source| SimError::FaultRule { index, source })?;
                Ok((rule.rate, fault))
            })
            .collect::<Result<_, _>>()?;
        Ok(Simulator {
            inner: Arc::new(Inner {
                seed: config.seed,
                script,
                rules,
                counters: Arc::default(),
            }),
        })
    }

    /// Decides what happens to a chat request. `fault` is the
    /// `x-keel-sim-fault` header: when present (even empty) it replaces any
    /// script or config fault. Errors only for an invalid `fault`.
    pub fn plan(&self, req: &ChatRequest, fault: Option<&str>) -> Result<Plan, SimError> {
        let index = self.inner.counters.next_request();
        let rule = self.inner.script.find(&last_user_text(req));
        let fault = self.choose_fault(index, fault, rule)?;
        let reply = reply::reply(req, rule, self.content_seed(req), fault.schema_violation);
        let response = ChatResponse {
            id: format!("sim-{:016x}", seed::mix(self.inner.seed, index)),
            model: req.model.clone(),
            created: now(),
            text: reply.text,
            tool_calls: reply.tool_calls,
            finish_reason: reply.finish_reason,
            usage: reply.usage,
        };
        Ok(Plan { fault, response })
    }

    /// Embeddings for each input, with the same fault selection as chat
    /// (no script: embeddings have no user message).
    pub fn embed(
        &self,
        req: &EmbeddingsRequest,
        fault: Option<&str>,
    ) -> Result<Plan<EmbeddingsResponse>, SimError> {
        let index = self.inner.counters.next_request();
        let fault = self.choose_fault(index, fault, None)?;
        let dims = req.dimensions.unwrap_or(DEFAULT_DIMENSIONS);
        if !(1..=MAX_DIMENSIONS).contains(&dims) {
            return Err(SimError::InvalidRequest(format!(
                "dimensions must be between 1 and {MAX_DIMENSIONS}"
            )));
        }
        let response = EmbeddingsResponse {
            model: req.model.clone(),
            data: req
                .input
                .iter()
                .map(|text| embed::vector(self.inner.seed, text, dims))
                .collect(),
            input_tokens: req
                .input
                .iter()
                .map(|t| estimate(t))
                .fold(0, u32::saturating_add),
        };
        Ok(Plan { fault, response })
    }

    pub fn stats(&self) -> SimStats {
        self.inner.counters.snapshot()
    }

    /// Counts an HTTP request under its route pattern.
    pub(crate) fn count_path(&self, path: &str) {
        self.inner.counters.path(path);
    }

    pub(crate) fn disconnect_guard(&self) -> DisconnectGuard {
        DisconnectGuard::new(Arc::clone(&self.inner.counters))
    }

    /// Header first, then the matched script rule's fault, then the config
    /// rules drawn with an RNG seeded by the request index (so the same seed
    /// and request sequence inject the same faults).
    fn choose_fault(
        &self,
        index: u64,
        header: Option<&str>,
        rule: Option<&Rule>,
    ) -> Result<Fault, SimError> {
        let (fault, source) = match (header, rule.and_then(|r| r.fault.as_ref())) {
            (Some(spec), _) => (Fault::parse(spec)?, "header"),
            (None, Some(f)) => (f.clone(), "script"),
            (None, None) => {
                let mut rng = seed::rng(self.inner.seed, index);
                let hit = self
                    .inner
                    .rules
                    .iter()
                    .find(|(rate, _)| rng.random::<f64>() < *rate);
                (hit.map(|(_, f)| f.clone()).unwrap_or_default(), "config")
            }
        };
        if fault.outcome != Outcome::Reply {
            self.inner.counters.fault(fault.outcome.name());
        }
        if fault.schema_violation {
            self.inner.counters.fault("schema-violation");
        }
        tracing::debug!(request = index, fault = ?fault, source, "sim: planned");
        Ok(fault)
    }

    /// Seeds the default reply from the seed and what the request asks
    /// (not `stream` nor the request index), so asking twice, streamed or
    /// not, gives the same answer.
    fn content_seed(&self, req: &ChatRequest) -> u64 {
        let content = (
            &req.model,
            &req.system,
            &req.messages,
            &req.tools,
            &req.tool_choice,
            &req.response_format,
            req.max_tokens,
            &req.stop,
        );
        // Serialising these plain data types cannot fail; an empty hash
        // input would still give a valid (if shared) seed.
        let bytes = serde_json::to_vec(&content).unwrap_or_default();
        seed::mix(self.inner.seed, seed::hash(&bytes))
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests;
