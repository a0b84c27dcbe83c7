//! keel over real HTTP on 127.0.0.1: the front doors against every kind of
//! upstream, error shapes and statuses, streams that break, headers, and
//! graceful shutdown, and what every request leaves behind (records,
//! metrics, traces). One test binary, a module per topic.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod budgets;
mod cache;
mod chaos;
mod cost;
mod errors;
mod front_doors;
mod functions;
mod guardrails;
mod headers;
mod keys;
mod limits;
mod logs;
mod metrics;
mod observability;
mod odd_upstreams;
mod redis;
mod replay;
mod security;
mod shutdown;
mod streams;
mod traces;
mod workflows;

use keel_config::SimConfig;
use keel_sim::Simulator;
use keel_testkit::Running;
use serde_json::{Value, json};

/// keel with three routes to the same simulator: in process (`sim`), over
/// the OpenAI protocol (`via-openai`) and over the Anthropic protocol
/// (`via-anthropic`), plus a model whose only provider has no key.
pub struct Setup {
    pub keel: Running,
    pub sim: Simulator,
    _sim_server: Running,
}

pub const MODELS: [&str; 3] = ["sim", "via-openai", "via-anthropic"];

/// These modules test protocols and error mapping, one call per request:
/// no retries, no breaker (the `chaos` module tests those).
const PLAIN: &str = "max_retries = 0, breaker = { enabled = false }";

pub async fn setup() -> Setup {
    setup_with(SimConfig::default(), "").await
}

/// `extra` is appended to the config (e.g. a `[server]` table).
pub async fn setup_with(upstream: SimConfig, extra: &str) -> Setup {
    let (sim_server, sim) = keel_testkit::sim(upstream).await;
    let config = format!(
        r#"
        {extra}
        [providers.sim]
        kind = "sim"
        resilience = {{ {plain} }}
        [providers.up-openai]
        kind = "openai"
        base_url = "{url}/v1"
        resilience = {{ {plain} }}
        [providers.up-anthropic]
        kind = "anthropic"
        base_url = "{url}"
        resilience = {{ {plain} }}
        [providers.keyless]
        kind = "openai"
        api_key = {{ env = "KEEL_TEST_UNSET_KEY" }}
        [models.sim]
        targets = [{{ provider = "sim", model = "sim-model" }}]
        [models.via-openai]
        targets = [{{ provider = "up-openai", model = "upstream-openai-model" }}]
        [models.via-anthropic]
        targets = [{{ provider = "up-anthropic", model = "upstream-anthropic-model" }}]
        [models.keyless]
        targets = [{{ provider = "keyless", model = "gpt-4o" }}]
        "#,
        url = sim_server.url(),
        plain = PLAIN,
    );
    Setup {
        keel: keel_testkit::keel(&config).await,
        sim,
        _sim_server: sim_server,
    }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(10))
        .build()
        .unwrap()
}

impl Setup {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.keel.url())
    }

    pub async fn post(
        &self,
        path: &str,
        body: &Value,
        headers: &[(&str, &str)],
    ) -> reqwest::Response {
        post_json(&self.keel.url(), path, body, headers)
            .await
            .unwrap()
    }

    pub async fn openai(&self, body: &Value, headers: &[(&str, &str)]) -> reqwest::Response {
        self.post("/v1/chat/completions", body, headers).await
    }

    pub async fn anthropic(&self, body: &Value, headers: &[(&str, &str)]) -> reqwest::Response {
        self.post("/v1/messages", body, headers).await
    }
}

pub fn openai_chat(model: &str, text: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": text}]})
}

pub fn anthropic_chat(model: &str, text: &str) -> Value {
    json!({"model": model, "max_tokens": 256, "messages": [{"role": "user", "content": text}]})
}

/// The `data:` payloads of an SSE body, with their event names.
pub fn sse(body: &str) -> Vec<(Option<String>, String)> {
    let mut parser = keel_protocol::sse::SseParser::new();
    parser
        .push(body.as_bytes())
        .into_iter()
        .map(|e| (e.event, e.data))
        .collect()
}

pub async fn json_of(resp: reqwest::Response) -> Value {
    let bytes = resp.bytes().await.unwrap();
    serde_json::from_slice(&bytes)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&bytes)))
}

/// Writes `text` to `name` in `dir`; returns the absolute path.
pub fn write_file(dir: &tempfile::TempDir, name: &str, text: &str) -> String {
    let p = dir.path().join(name);
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

/// The simulator's HTTP server answering from the script file at `path`.
pub async fn scripted_sim(path: &str) -> (Running, Simulator) {
    keel_testkit::sim(SimConfig {
        script: Some(path.into()),
        ..SimConfig::default()
    })
    .await
}

/// POSTs `body` as JSON to `base` + `path`, with `headers`.
pub async fn post_json(
    base: &str,
    path: &str,
    body: &Value,
    headers: &[(&str, &str)],
) -> reqwest::Result<reqwest::Response> {
    let mut req = client()
        .post(format!("{base}{path}"))
        .header("content-type", "application/json")
        .body(body.to_string());
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.send().await
}

/// keel whose provider `up` is the simulator's HTTP server over the OpenAI
/// protocol (one call per request: no retries, no breaker), plus `rest`
/// (models and other providers), and the simulator's counters.
pub struct OverSim {
    pub keel: Running,
    pub sim: Simulator,
    /// The simulator's server: keep it bound for as long as keel is used.
    pub server: Running,
}

pub async fn over_sim(rest: &str) -> OverSim {
    let (server, sim) = keel_testkit::sim(SimConfig::default()).await;
    let keel = keel_testkit::keel(&format!(
        "[providers.up]\nkind = \"openai\"\nbase_url = \"{}/v1\"\nresilience = {{ {PLAIN} }}\n{rest}",
        server.url()
    ))
    .await;
    OverSim { keel, sim, server }
}
