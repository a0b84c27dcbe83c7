//! The record/replay file: answers recorded once against an upstream are
//! replayed later with no upstream at all — streamed or not, through either
//! front door — and a request that was never recorded is refused, not sent.
//! Also: an answer that fails validation is never recorded or cached.

use keel_config::SimConfig;
use serde_json::{Value, json};

use crate::{anthropic_chat, json_of, openai_chat, post_json, sse};

fn config(upstream: &str, file: &str, mode: &str) -> String {
    format!(
        r#"
        [cache]
        file = "{file}"
        mode = "{mode}"
        [providers.up]
        kind = "openai"
        base_url = "{upstream}/v1"
        resilience = {{ max_retries = 0, breaker = {{ enabled = false }} }}
        [models.m]
        targets = [{{ provider = "up", model = "x" }}]
        "#
    )
}

async fn chat(base: &str, body: &Value) -> reqwest::Response {
    post_json(base, "/v1/chat/completions", body, &[])
        .await
        .unwrap()
}

fn streamed(mut body: Value) -> Value {
    body["stream"] = json!(true);
    body
}

/// The text of an OpenAI SSE answer.
fn streamed_text(body: &str) -> String {
    sse(body)
        .into_iter()
        .filter_map(|(_, data)| serde_json::from_str::<Value>(&data).ok())
        .filter_map(|v| {
            v["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_owned)
        })
        .collect()
}

#[tokio::test]
async fn recorded_answers_replay_without_an_upstream() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("answers.jsonl");
    let file = file.to_str().unwrap();
    let (server, sim) = keel_testkit::sim(SimConfig::default()).await;

    let recorder = keel_testkit::keel(&config(&server.url(), file, "record")).await;
    let questions = ["first question", "second question"];
    let mut recorded = Vec::new();
    for q in questions {
        let resp = chat(&recorder.url(), &openai_chat("m", q)).await;
        assert_eq!(resp.status(), 200);
        recorded.push(json_of(resp).await["choices"][0]["message"]["content"].clone());
    }
    // Recording again replays what is already in the file.
    let again = chat(&recorder.url(), &openai_chat("m", questions[0])).await;
    assert_eq!(again.headers()["x-keel-cache"], "hit");
    assert_eq!(sim.stats().requests, 2);
    recorder.shutdown().await.unwrap();
    assert_eq!(std::fs::read_to_string(file).unwrap().lines().count(), 2);

    // Replay with the upstream gone.
    server.shutdown().await.unwrap();
    let player = keel_testkit::keel(&config("http://127.0.0.1:9", file, "replay")).await;
    for (q, text) in questions.iter().zip(&recorded) {
        let resp = chat(&player.url(), &openai_chat("m", q)).await;
        assert_eq!(resp.status(), 200);
        assert_eq!(
            &json_of(resp).await["choices"][0]["message"]["content"],
            text
        );
        // Streamed: the same content, as a proper stream.
        let resp = chat(&player.url(), &streamed(openai_chat("m", q))).await;
        assert_eq!(resp.status(), 200);
        assert_eq!(&json!(streamed_text(&resp.text().await.unwrap())), text);
    }
    // Never recorded: refused, in the client's own format.
    let resp = chat(&player.url(), &openai_chat("m", "new question")).await;
    assert_eq!(resp.status(), 404);
    assert_eq!(json_of(resp).await["error"]["code"], "replay_miss");
    let resp = post_json(
        &player.url(),
        "/v1/messages",
        &anthropic_chat("m", "new question"),
        &[],
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 404);
    assert_eq!(json_of(resp).await["type"], "error");
}

#[tokio::test]
async fn answers_that_fail_validation_are_never_cached() {
    let dir = tempfile::tempdir().unwrap();
    let script = crate::write_file(
        &dir,
        "script.toml",
        "[[rule]]\nreply = \"I cannot produce JSON today.\"\n",
    );
    let (server, sim) = crate::scripted_sim(&script).await;
    let keel = keel_testkit::keel(&format!(
        r#"
        [providers.up]
        kind = "openai"
        base_url = "{}/v1"
        resilience = {{ max_retries = 0, breaker = {{ enabled = false }} }}
        [models.m]
        targets = [{{ provider = "up", model = "x" }}]
        validate_output = true
        max_reasks = 0
        cache_ttl = "1h"
        "#,
        server.url()
    ))
    .await;
    let mut body = openai_chat("m", "give me JSON");
    body["response_format"] = json!({"type": "json_schema", "json_schema": {"name": "r",
        "schema": {"type": "object", "required": ["a"]}}});
    for round in 1..=2 {
        let resp = chat(&keel.url(), &body).await;
        assert_eq!(resp.status(), 422, "round {round}");
        assert_eq!(sim.stats().requests, round, "each try goes upstream");
    }
}
