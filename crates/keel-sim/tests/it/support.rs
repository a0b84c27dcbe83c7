//! A simulator on 127.0.0.1:0 per test, stopped when dropped.

use std::time::Duration;

use keel_config::{FaultRule, SimConfig};
use keel_protocol::sse::{SseEvent, SseParser};
use keel_sim::{SimStats, Simulator};
use serde_json::Value;
use tokio::sync::oneshot;

pub struct Sim {
    pub base: String,
    pub client: reqwest::Client,
    _stop: oneshot::Sender<()>,
}

pub async fn start() -> Sim {
    start_with(SimConfig::default()).await
}

pub async fn start_with_faults(faults: &[(f64, &str)]) -> Sim {
    let faults = faults
        .iter()
        .map(|(rate, fault)| FaultRule {
            rate: *rate,
            fault: (*fault).to_owned(),
        })
        .collect();
    start_with(SimConfig {
        seed: 7,
        script: None,
        faults,
    })
    .await
}

pub async fn start_with(config: SimConfig) -> Sim {
    let sim = Simulator::new(&config).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(keel_sim::serve(listener, sim, async move {
        let _ = stopped.await;
    }));
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    Sim {
        base,
        client,
        _stop: stop,
    }
}

impl Sim {
    pub fn post(&self, path: &str, body: &Value, fault: Option<&str>) -> reqwest::RequestBuilder {
        let req = self
            .client
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .body(serde_json::to_vec(body).unwrap());
        match fault {
            Some(f) => req.header(keel_sim::FAULT_HEADER, f),
            None => req,
        }
    }

    /// POSTs and returns (status, body as JSON).
    pub async fn json(&self, path: &str, body: &Value, fault: Option<&str>) -> (u16, Value) {
        let resp = self.post(path, body, fault).send().await.unwrap();
        let status = resp.status().as_u16();
        (status, body_json(resp).await)
    }

    /// POSTs a streaming request and returns its SSE events.
    pub async fn events(&self, path: &str, body: &Value, fault: Option<&str>) -> Vec<SseEvent> {
        let resp = self.post(path, body, fault).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["content-type"], "text/event-stream");
        SseParser::new().push(&resp.bytes().await.unwrap())
    }

    pub async fn stats(&self) -> SimStats {
        let resp = self
            .client
            .get(format!("{}/_sim/stats", self.base))
            .send()
            .await
            .unwrap();
        serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap()
    }
}

/// The data of each event, parsed; `[DONE]` and non-JSON data as JSON strings.
pub fn datas(events: &[SseEvent]) -> Vec<Value> {
    events
        .iter()
        .map(|e| serde_json::from_str(&e.data).unwrap_or_else(|_| Value::String(e.data.clone())))
        .collect()
}

/// The response body as JSON (the workspace's reqwest has no `json` feature).
pub async fn body_json(resp: reqwest::Response) -> Value {
    serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap()
}
