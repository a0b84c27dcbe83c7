//! Streams that break after they started still end with a terminal event
//! in the client's protocol: never a silent truncation, never a hang.

use keel_config::{FaultRule, SimConfig};
use serde_json::{Value, json};

use crate::{MODELS, anthropic_chat, openai_chat, setup_with, sse};

async fn check_broken_streams(fault: &str, upstream: SimConfig, header: bool) {
    let s = setup_with(upstream, "").await;
    let headers: &[(&str, &str)] = if header {
        &[("x-keel-sim-fault", fault)]
    } else {
        &[]
    };
    let models: &[&str] = if header { &["sim"] } else { &MODELS[1..] };
    for model in models {
        let mut body = openai_chat(model, "hello there");
        body["stream"] = json!(true);
        let resp = s.openai(&body, headers).await;
        assert_eq!(resp.status(), 200, "{fault} {model}");
        let events = sse(&resp.text().await.unwrap());
        let (_, last) = events.last().unwrap();
        assert_eq!(last, "[DONE]", "{fault} {model}");
        let (_, error) = &events[events.len() - 2];
        let error: Value = serde_json::from_str(error).unwrap();
        assert!(
            error
                .pointer("/error/message")
                .is_some_and(Value::is_string),
            "{fault} {model}: {error}"
        );

        let mut body = anthropic_chat(model, "hello there");
        body["stream"] = json!(true);
        let resp = s.anthropic(&body, headers).await;
        assert_eq!(resp.status(), 200);
        let events = sse(&resp.text().await.unwrap());
        let (name, data) = events.last().unwrap();
        assert_eq!(name.as_deref(), Some("error"), "{fault} {model}");
        let data: Value = serde_json::from_str(data).unwrap();
        assert_eq!(data["type"], "error");
        assert!(
            !events
                .iter()
                .any(|(n, _)| n.as_deref() == Some("message_stop"))
        );
    }
}

#[tokio::test]
async fn a_stream_cut_mid_way_ends_with_an_error_event() {
    check_broken_streams("cut=3", SimConfig::default(), true).await;
    let upstream = SimConfig {
        faults: vec![FaultRule {
            rate: 1.0,
            fault: "cut=3".into(),
        }],
        ..SimConfig::default()
    };
    check_broken_streams("cut=3", upstream, false).await;
}

#[tokio::test]
async fn an_upstream_error_event_mid_stream_is_forwarded_as_an_error_event() {
    check_broken_streams("stream-error=2", SimConfig::default(), true).await;
    let upstream = SimConfig {
        faults: vec![FaultRule {
            rate: 1.0,
            fault: "stream-error=2".into(),
        }],
        ..SimConfig::default()
    };
    check_broken_streams("stream-error=2", upstream, false).await;
}

#[tokio::test]
async fn a_malformed_stream_event_ends_the_stream_with_an_error() {
    let upstream = SimConfig {
        faults: vec![FaultRule {
            rate: 1.0,
            fault: "malformed".into(),
        }],
        ..SimConfig::default()
    };
    check_broken_streams("malformed", upstream, false).await;
}
