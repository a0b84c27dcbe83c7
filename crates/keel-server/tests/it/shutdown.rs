//! Graceful shutdown: in-flight streams finish, new connections are
//! refused, and a request that would never end is cut at the grace deadline.

use std::time::Duration;

use keel_config::SimConfig;
use serde_json::json;

use crate::{client, openai_chat, setup_with};

#[tokio::test]
async fn shutdown_drains_an_in_flight_stream() {
    let s = setup_with(SimConfig::default(), "[server]\nshutdown_grace = \"10s\"").await;
    let mut body = openai_chat("sim", "a slow answer please");
    body["stream"] = json!(true);
    // ~10 events, 100 ms apart: still streaming when shutdown begins.
    let resp = s.openai(&body, &[("x-keel-sim-fault", "gap=100ms")]).await;
    assert_eq!(resp.status(), 200);
    let url = s.url("/healthz");
    let stopped = s.keel.begin_shutdown();
    let text = resp.text().await.unwrap();
    assert!(text.ends_with("data: [DONE]\n\n"), "stream was cut: {text}");
    tokio::time::timeout(Duration::from_secs(10), stopped)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(
        client().get(url).send().await.is_err(),
        "still accepting after shutdown"
    );
}

#[tokio::test]
async fn shutdown_gives_up_on_requests_after_the_grace_period() {
    let s = setup_with(SimConfig::default(), "[server]\nshutdown_grace = \"300ms\"").await;
    let url = s.url("/v1/chat/completions");
    let hung = tokio::spawn(async move {
        client()
            .post(url)
            .header("x-keel-sim-fault", "hang")
            .body(serde_json::to_vec(&openai_chat("sim", "x")).unwrap())
            .send()
            .await
    });
    // Let the request reach the simulator before shutdown begins.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let stopped = s.keel.begin_shutdown();
    tokio::time::timeout(Duration::from_secs(5), stopped)
        .await
        .expect("shutdown hung")
        .unwrap()
        .unwrap();
    let _ = hung.await;
}
