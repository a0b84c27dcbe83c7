//! Functions end to end over HTTP, the simulator scripted to return good,
//! malformed, schema-violating, invariant-violating and forbidden outputs:
//! repaired JSON is accepted and says so; violations are re-asked with
//! their errors (instance paths included); persistent ones fall back, then
//! give a 422; input that fails its schema costs no upstream call.

use serde_json::{Value, json};

use crate::client;

/// The script both simulators share: what the model says for each case.
/// Re-asks quote the errors back, so a rule can check what keel sent.
const SCRIPT: &str = r#"
[[rule]]
regex = '(?s)previous reply was invalid.*contains no JSON'
reply = "Still no JSON."
[[rule]]
regex = '(?s)previous reply was invalid.*/total'
json = { total = 3.0, subtotal = 2.0, tax = 1.0, note = "fixed" }
[[rule]]
regex = '(?s)previous reply was invalid.*rule `adds_up`'
json = { total = 3.0, subtotal = 2.0, tax = 1.0, note = "fixed sum" }
[[rule]]
regex = '(?s)previous reply was invalid.*rule `no_secret`'
json = { total = 3.0, subtotal = 2.0, tax = 1.0, note = "clean" }
[[rule]]
contains = "case:good"
json = { total = 3.0, subtotal = 2.0, tax = 1.0, note = "first try" }
[[rule]]
contains = "case:repair"
reply = "Here it is:\n```json\n{'total': 3.0, 'subtotal': 2.0, 'tax': 1.0, 'note': 'quoted',}\n```"
[[rule]]
contains = "case:violate"
json = { total = "three", subtotal = 2.0, tax = 1.0, note = "bad type" }
[[rule]]
contains = "case:badsum"
json = { total = 99.0, subtotal = 2.0, tax = 1.0, note = "bad sum" }
[[rule]]
contains = "case:secret"
json = { total = 3.0, subtotal = 2.0, tax = 1.0, note = "the SECRET is out" }
[[rule]]
contains = "case:never"
reply = "I cannot produce JSON today."
"#;

/// A replacement script for the fallback target: always valid.
const GOOD_SCRIPT: &str = r#"
[[rule]]
json = { total = 3.0, subtotal = 2.0, tax = 1.0, note = "from the fallback" }
"#;

struct Setup {
    keel: keel_testkit::Running,
    /// The simulator behind `bill` (model `single`).
    primary: keel_sim::Simulator,
    _dir: tempfile::TempDir,
    _servers: Vec<keel_testkit::Running>,
}

async fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| crate::write_file(&dir, name, text);
    let script = write("script.toml", SCRIPT);
    let good = write("good.toml", GOOD_SCRIPT);
    let user = write(
        "user.j2",
        "Compute the bill for {{ case }} with {{ items | length }} items.",
    );
    let system = write("system.j2", "You answer with JSON only.");
    let (a, _) = crate::scripted_sim(&script).await;
    let (b, _) = crate::scripted_sim(&good).await;
    let (only, primary) = crate::scripted_sim(&script).await;
    let config = format!(
        r#"
        [providers.a]
        kind = "openai"
        base_url = "{a}/v1"
        [providers.b]
        kind = "openai"
        base_url = "{b}/v1"
        [providers.only]
        kind = "openai"
        base_url = "{only}/v1"
        [models.single]
        targets = [{{ provider = "only", model = "x" }}]
        [models.validated]
        targets = [{{ provider = "only", model = "x" }}]
        validate_output = true
        max_reasks = 1
        [models.chain]
        targets = [{{ provider = "a", model = "x" }}, {{ provider = "b", model = "y" }}]

        [functions.bill]
        model = "single"
        version = "7"
        system = "{system}"
        user = "{user}"
        input_schema = {{ type = "object", required = ["case", "items"], properties = {{ case = {{ type = "string" }}, items = {{ type = "array", maxItems = 3 }} }} }}
        output_schema = {{ type = "object", required = ["total", "subtotal", "tax"], properties = {{ total = {{ type = "number" }}, subtotal = {{ type = "number" }}, tax = {{ type = "number" }}, note = {{ type = "string" }} }} }}
        max_reasks = 1
        invariants = [{{ name = "adds_up", expr = "output.total == output.subtotal + output.tax" }}]
        forbidden = [{{ name = "no_secret", regex = "SECRET" }}]

        [functions.bill_chain]
        model = "chain"
        user = "{user}"
        output_schema = {{ type = "object", required = ["total"], properties = {{ total = {{ type = "number" }} }} }}
        max_reasks = 1
        "#,
        a = a.url(),
        b = b.url(),
        only = only.url(),
    );
    Setup {
        keel: keel_testkit::keel(&config).await,
        primary,
        _dir: dir,
        _servers: vec![a, b, only],
    }
}

async fn call(s: &Setup, function: &str, input: Value) -> (u16, Value) {
    let resp = client()
        .post(format!("{}/v1/functions/{function}", s.keel.url()))
        .body(serde_json::to_vec(&json!({ "input": input })).unwrap())
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (
        status,
        serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap(),
    )
}

fn case(name: &str) -> Value {
    json!({"case": format!("case:{name}"), "items": [1, 2]})
}

#[tokio::test]
async fn a_valid_output_is_returned_with_its_meta() {
    let s = setup().await;
    let (status, v) = call(&s, "bill", case("good")).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["output"]["note"], "first try");
    let meta = &v["meta"];
    assert_eq!(
        (meta["function"].as_str(), meta["provider"].as_str()),
        (Some("bill"), Some("only"))
    );
    assert_eq!(
        (meta["attempts"].as_u64(), meta["reasks"].as_u64()),
        (Some(1), Some(0))
    );
    assert!(
        meta["version"].as_str().unwrap().starts_with("7+"),
        "{meta}"
    );
    assert!(meta["usage"]["input_tokens"].as_u64().unwrap() > 0);
    assert!(meta["repairs"].as_array().unwrap().is_empty());
}

#[tokio::test]
async fn repaired_json_is_accepted_and_the_repair_recorded() {
    let s = setup().await;
    let (status, v) = call(&s, "bill", case("repair")).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["output"]["note"], "quoted");
    let repairs: Vec<&str> = v["meta"]["repairs"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(!repairs.is_empty(), "repair not recorded: {v}");
}

#[tokio::test]
async fn a_schema_violation_is_re_asked_with_its_instance_path() {
    let s = setup().await;
    let (status, v) = call(&s, "bill", case("violate")).await;
    // The script answers the re-ask only if keel quoted `/total` back.
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["output"]["note"], "fixed");
    assert_eq!(
        (v["meta"]["attempts"].as_u64(), v["meta"]["reasks"].as_u64()),
        (Some(2), Some(1))
    );
}

#[tokio::test]
async fn invariants_and_forbidden_states_are_enforced_like_the_schema() {
    let s = setup().await;
    let (status, v) = call(&s, "bill", case("badsum")).await;
    assert_eq!(
        (status, v["output"]["note"].as_str()),
        (200, Some("fixed sum")),
        "{v}"
    );
    let (status, v) = call(&s, "bill", case("secret")).await;
    assert_eq!(
        (status, v["output"]["note"].as_str()),
        (200, Some("clean")),
        "{v}"
    );
    assert!(
        !v.to_string().contains("SECRET"),
        "a forbidden output was returned: {v}"
    );
}

#[tokio::test]
async fn persistent_invalid_output_falls_back_then_fails_with_422() {
    let s = setup().await;
    // On the chain: A never gives JSON; after its re-ask, B answers.
    let (status, v) = call(&s, "bill_chain", case("never")).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        (
            v["meta"]["provider"].as_str(),
            v["output"]["total"].as_f64()
        ),
        (Some("b"), Some(3.0))
    );
    assert_eq!(v["meta"]["attempts"], 3, "A, A re-asked, then B: {v}");
    // A single target that never complies: a typed 422, never invalid output.
    let (status, v) = call(&s, "bill", case("never")).await;
    assert_eq!(status, 422, "{v}");
    assert_eq!(v["error"]["code"], "output_invalid");
    assert_eq!(v["error"]["raw"], "Still no JSON.", "the last reply");
    assert!(!v["error"]["errors"].as_array().unwrap().is_empty());
    assert!(v.get("output").is_none());
}

#[tokio::test]
async fn input_that_fails_its_schema_costs_no_upstream_call() {
    let s = setup().await;
    let before = s.primary.stats().requests;
    let (status, v) = call(&s, "bill", json!({"case": 5, "items": [1, 2, 3, 4]})).await;
    assert_eq!(status, 400, "{v}");
    assert_eq!(v["error"]["code"], "input_invalid");
    let paths: Vec<&str> = v["error"]["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    assert!(
        paths.contains(&"/case") && paths.contains(&"/items"),
        "each failing field named: {paths:?}"
    );
    let (status, _) = call(&s, "nope", json!({})).await;
    assert_eq!(status, 404);
    assert_eq!(s.primary.stats().requests, before, "an upstream was called");
}

async fn chat_with_schema(s: &Setup, text: &str, stream: bool) -> (u16, String) {
    let body = json!({"model": "validated", "stream": stream,
        "messages": [{"role": "user", "content": text}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "bill", "schema": {
            "type": "object", "required": ["total"], "properties": {"total": {"type": "number"}}}}}});
    let resp = client()
        .post(format!("{}/v1/chat/completions", s.keel.url()))
        .body(serde_json::to_vec(&body).unwrap())
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

#[tokio::test]
async fn chat_requests_with_a_json_schema_are_validated_when_the_route_opts_in() {
    let s = setup().await;
    // Non-stream: the invalid first answer is re-asked; the client gets valid JSON.
    let (status, body) = chat_with_schema(&s, "case:violate", false).await;
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    let content: Value =
        serde_json::from_str(v["choices"][0]["message"]["content"].as_str().unwrap()).unwrap();
    assert_eq!(content["total"], 3.0);
    // Streamed: validated first, then streamed.
    let (status, body) = chat_with_schema(&s, "case:repair", true).await;
    assert_eq!(status, 200, "{body}");
    let text: String = crate::sse(&body)
        .into_iter()
        .filter(|(_, d)| d != "[DONE]")
        .filter_map(|(_, d)| {
            serde_json::from_str::<Value>(&d)
                .ok()?
                .pointer("/choices/0/delta/content")?
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    let content: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    assert_eq!(
        content["note"], "quoted",
        "the repaired JSON, not the raw reply"
    );
    // Never valid: a 422 in the OpenAI shape, never the invalid text.
    let (status, body) = chat_with_schema(&s, "case:never", false).await;
    assert_eq!(status, 422, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"]["code"], "output_invalid");
}

/// A function's `temperature`, `top_p` and `max_tokens` are sent upstream
/// with every ask, over the target's `params`; a function without them
/// leaves the target's.
#[tokio::test]
async fn a_function_s_sampling_parameters_reach_the_upstream() {
    use std::sync::{Arc, Mutex};
    let seen: Arc<Mutex<Vec<Value>>> = Arc::default();
    let upstream = {
        let seen = Arc::clone(&seen);
        keel_testkit::serve_router(axum::Router::new().route(
            "/v1/chat/completions",
            axum::routing::post(move |axum::Json(body): axum::Json<Value>| {
                seen.lock().unwrap().push(body);
                async {
                    axum::Json(json!({
                        "id": "c", "object": "chat.completion", "created": 1, "model": "x",
                        "choices": [{"index": 0, "message": {"role": "assistant", "content": "{\"total\": 3}"}, "finish_reason": "stop"}],
                        "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
                    }))
                }
            }),
        ))
        .await
    };
    let dir = tempfile::tempdir().unwrap();
    let user = crate::write_file(&dir, "user.j2", "Total of {{ n }}?");
    let keel = keel_testkit::keel(&format!(
        r#"
        [providers.up]
        kind = "openai"
        base_url = "{}/v1"
        [models.m]
        targets = [{{ provider = "up", model = "x", params = {{ temperature = 1.5, top_p = 0.1, max_tokens = 9 }} }}]
        [functions.tuned]
        model = "m"
        user = "{user}"
        output_schema = {{ type = "object", required = ["total"] }}
        temperature = 0.25
        top_p = 0.5
        max_tokens = 77
        [functions.plain]
        model = "m"
        user = "{user}"
        output_schema = {{ type = "object", required = ["total"] }}
        "#,
        upstream.url()
    ))
    .await;
    for function in ["tuned", "plain"] {
        let resp = client()
            .post(format!("{}/v1/functions/{function}", keel.url()))
            .body(json!({"input": {"n": 1}}).to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    }
    let seen = seen.lock().unwrap();
    let params = |body: &Value| {
        (
            body["temperature"].as_f64(),
            body["top_p"].as_f64(),
            body["max_tokens"].as_u64(),
        )
    };
    assert_eq!(
        params(&seen[0]),
        (Some(0.25), Some(0.5), Some(77)),
        "{}",
        seen[0]
    );
    assert_eq!(
        params(&seen[1]),
        (Some(1.5), Some(0.1), Some(9)),
        "{}",
        seen[1]
    );
}
