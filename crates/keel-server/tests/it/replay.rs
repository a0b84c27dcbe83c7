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

/// A function whose first answer breaks its schema and whose re-ask (keel
/// quotes the errors back) is right; and a workflow running it.
const FUNCTION_SCRIPT: &str = r#"
[[rule]]
contains = "previous reply was invalid"
json = { total = 3.0 }
[[rule]]
contains = "case:"
json = { total = "three" }
"#;

fn function_config(upstream: &str, file: &str, mode: &str, user: &str, db: &str) -> String {
    format!(
        r#"
        [log]
        path = "{db}"
        [cache]
        file = "{file}"
        mode = "{mode}"
        [pricing."priced-model"]
        input = 1.0
        output = 1.0
        [providers.up]
        kind = "openai"
        base_url = "{upstream}/v1"
        resilience = {{ max_retries = 0, breaker = {{ enabled = false }} }}
        [models.m]
        targets = [{{ provider = "up", model = "priced-model" }}]
        [functions.total]
        model = "m"
        user = "{user}"
        output_schema = {{ type = "object", required = ["total"], properties = {{ total = {{ type = "number" }} }} }}
        max_reasks = 1
        [workflows.flow]
        steps = [{{ name = "only", function = "total", input = {{ case = {{ from = "/input/case" }} }} }}]
        "#
    )
}

async fn call_function(base: &str, case: &str, id: &str) -> reqwest::Response {
    post_json(
        base,
        "/v1/functions/total",
        &json!({"input": {"case": case}}),
        &[("x-request-id", id)],
    )
    .await
    .unwrap()
}

/// Functions and workflows go through the record/replay file ask by ask:
/// the recording holds the invalid first answer and the re-ask's, and a
/// replay walks the same re-ask with no upstream call, at no cost.
#[tokio::test]
async fn function_asks_re_asks_included_replay_without_an_upstream() {
    let dir = tempfile::tempdir().unwrap();
    let script = crate::write_file(&dir, "script.toml", FUNCTION_SCRIPT);
    let user = crate::write_file(&dir, "user.j2", "What is the total of {{ case }}?");
    let file = dir.path().join("answers.jsonl");
    let file = file.to_str().unwrap();
    let (recorded_db, replayed_db) = (dir.path().join("rec.db"), dir.path().join("play.db"));
    let (server, sim) = crate::scripted_sim(&script).await;

    let recorder = keel_testkit::keel_logged(
        &function_config(
            &server.url(),
            file,
            "record",
            &user,
            recorded_db.to_str().unwrap(),
        ),
        &[],
    )
    .await;
    let resp = call_function(&recorder.url(), "case:a", "rec-1").await;
    assert_eq!(resp.status(), 200);
    let recorded = json_of(resp).await;
    assert_eq!(recorded["output"]["total"], 3.0, "{recorded}");
    let meta = &recorded["meta"];
    assert_eq!(
        (&meta["attempts"], &meta["reasks"], &meta["replayed"]),
        (&json!(2), &json!(1), &json!(0)),
        "{meta}"
    );
    assert_eq!(meta["provider"], "up");
    assert!(meta["cost_usd"].as_f64().unwrap() > 0.0, "{meta}");
    let resp = post_json(
        &recorder.url(),
        "/v1/workflows/flow",
        &json!({"input": {"case": "case:b"}}),
        &[],
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 200);
    let recorded_flow = json_of(resp).await;
    assert_eq!(sim.stats().requests, 4, "two asks each");
    recorder.shutdown().await.unwrap();
    // Both answers of each call, the invalid first one too.
    assert_eq!(std::fs::read_to_string(file).unwrap().lines().count(), 4);

    // Replay with the upstream still up, to count that nothing reaches it.
    let player = keel_testkit::keel_logged(
        &function_config(
            &server.url(),
            file,
            "replay",
            &user,
            replayed_db.to_str().unwrap(),
        ),
        &[],
    )
    .await;
    let resp = call_function(&player.url(), "case:a", "play-1").await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-keel-cost"], "0.00000000");
    let replayed = json_of(resp).await;
    assert_eq!(replayed["output"], recorded["output"]);
    let meta = &replayed["meta"];
    assert_eq!(
        (&meta["attempts"], &meta["reasks"], &meta["replayed"]),
        (&json!(2), &json!(1), &json!(2)),
        "the same re-ask, from the file: {meta}"
    );
    assert_eq!(
        (&meta["provider"], &meta["model"], &meta["usage"]),
        (
            &json!("cache"),
            &recorded["meta"]["model"],
            &recorded["meta"]["usage"]
        ),
        "{meta}"
    );
    assert_eq!(meta["cost_usd"], 0.0);
    let resp = post_json(
        &player.url(),
        "/v1/workflows/flow",
        &json!({"input": {"case": "case:b"}}),
        &[],
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 200);
    let flow = json_of(resp).await;
    assert_eq!(
        flow["steps"][0]["output"],
        recorded_flow["steps"][0]["output"]
    );
    assert_eq!(flow["steps"][0]["meta"]["replayed"], 2, "{flow}");

    // Never recorded: refused before any upstream call, like chat.
    let resp = call_function(&player.url(), "case:new", "play-miss").await;
    assert_eq!(resp.status(), 404);
    assert_eq!(json_of(resp).await["error"]["code"], "replay_miss");
    let resp = post_json(
        &player.url(),
        "/v1/workflows/flow",
        &json!({"input": {"case": "case:new"}}),
        &[],
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 404);
    assert_eq!(json_of(resp).await["error"]["code"], "replay_miss");
    assert_eq!(sim.stats().requests, 4, "the replay called the upstream");
    player.shutdown().await.unwrap();

    // The record says where the answer came from and what it cost.
    let store = keel_store::Store::open(&keel_store::StoreConfig::Sqlite { path: replayed_db })
        .await
        .unwrap();
    let rec = store.get("play-1").await.unwrap().unwrap();
    assert!(rec.cache_hit, "{rec:?}");
    assert_eq!(
        (
            rec.target.as_deref(),
            rec.cost_usd,
            rec.reasks,
            rec.attempts.len()
        ),
        (Some("cache/priced-model"), Some(0.0), 1, 0),
        "{rec:?}"
    );
    let rec = store.get("play-miss").await.unwrap().unwrap();
    assert_eq!(
        (rec.status, rec.error_kind.as_deref(), rec.attempts.len()),
        (404, Some("replay_miss"), 0)
    );
}
