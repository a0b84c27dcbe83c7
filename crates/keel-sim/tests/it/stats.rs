use std::time::Duration;

use futures::StreamExt;
use serde_json::json;

use crate::support::{start, start_with_faults};

#[tokio::test]
async fn counts_requests_paths_faults_and_disconnects() {
    let sim = start().await;
    let chat = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
    for _ in 0..3 {
        assert_eq!(sim.json("/v1/chat/completions", &chat, None).await.0, 200);
    }
    assert_eq!(
        sim.json("/v1/chat/completions", &chat, Some("status=500"))
            .await
            .0,
        500
    );
    let _ = sim
        .client
        .get(format!("{}/healthz", sim.base))
        .send()
        .await
        .unwrap();
    let _ = sim
        .client
        .get(format!("{}/missing", sim.base))
        .send()
        .await
        .unwrap();

    // A stream abandoned mid-way and a hang the client gives up on.
    let mut slow =
        json!({"model": "m", "stream": true, "messages": [{"role": "user", "content": "hi"}]});
    let resp = sim
        .post("/v1/chat/completions", &slow, Some("gap=200ms"))
        .send()
        .await
        .unwrap();
    let mut body = resp.bytes_stream();
    body.next().await.unwrap().unwrap();
    drop(body);
    slow["stream"] = json!(false);
    let hung = sim
        .post("/v1/chat/completions", &slow, Some("hang"))
        .timeout(Duration::from_millis(100))
        .send()
        .await;
    assert!(hung.unwrap_err().is_timeout());

    let mut stats = sim.stats().await;
    for _ in 0..100 {
        if stats.disconnects >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        stats = sim.stats().await;
    }
    assert_eq!(stats.disconnects, 2, "{stats:?}");
    assert_eq!(stats.requests, 6);
    assert_eq!(stats.by_path["/v1/chat/completions"], 6);
    assert_eq!(stats.by_path["/healthz"], 1);
    assert_eq!(stats.by_path["unmatched"], 1);
    assert!(stats.by_path["/_sim/stats"] >= 1);
    assert_eq!((stats.faults["status"], stats.faults["hang"]), (1, 1));
}

#[tokio::test]
async fn rate_faults_fire_at_about_their_rate() {
    let sim = start_with_faults(&[(0.5, "status=503")]).await;
    let chat = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
    let mut failed = 0;
    for _ in 0..40 {
        if sim.json("/v1/chat/completions", &chat, None).await.0 == 503 {
            failed += 1;
        }
    }
    assert!((8..=32).contains(&failed), "{failed} of 40 at rate 0.5");
    assert_eq!(sim.stats().await.faults["status"], failed);
}
