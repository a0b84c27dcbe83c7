//! `keel eval capture` on a request log filled by a real `keel serve`
//! (a function, a chat model, the in-process simulator): the filters pick
//! exactly the right requests, cases carry the logged inputs with personal
//! data and credentials masked, and requests whose bodies were only hashed
//! are skipped and counted.

use std::path::Path;

use serde_json::{Value, json};

use super::inspect::{chat, curl, keel};
use super::{serve, stop};

const SCRIPT: &str = r#"
[[rule]]
contains = "BROKEN"
reply = "this is not JSON"

[[rule]]
contains = "ticket:"
json = { category = "billing" }
"#;

/// A function whose input is captured in full, one captured only as a
/// hash, and a chat model; the log (also named by `--db`) at `db`.
fn config(dir: &Path, db: &str) -> String {
    std::fs::write(dir.join("script.toml"), SCRIPT).unwrap();
    std::fs::write(dir.join("user.j2"), "ticket: {{ ticket }}").unwrap();
    let path = dir.join("keel.toml");
    std::fs::write(
        &path,
        format!(
            r#"
[providers.sim]
kind = "sim"
script = "script.toml"

[models.m]
targets = [{{ provider = "sim", model = "sim-m" }}]

[functions.classify]
model = "m"
user = "user.j2"
output_schema = {{ type = "object", required = ["category"], properties = {{ category = {{ type = "string" }} }} }}
max_reasks = 0
capture = "full"

[functions.private]
model = "m"
user = "user.j2"
capture = "hashed"

[log]
store = "sqlite"
path = "{db}"
"#
        ),
    )
    .unwrap();
    path.to_str().unwrap().to_owned()
}

fn call(addr: &str, function: &str, id: &str, input: &Value) -> String {
    curl(&[
        &format!("http://{addr}/v1/functions/{function}"),
        "-H",
        &format!("x-request-id: {id}"),
        "-d",
        &json!({ "input": input }).to_string(),
    ])
}

fn feedback(addr: &str, body: &Value) {
    let out = curl(&[
        &format!("http://{addr}/v1/feedback"),
        "-H",
        "content-type: application/json",
        "-d",
        &body.to_string(),
    ]);
    assert!(out.contains("\"stored\":true"), "{out}");
}

/// `keel eval capture ARGS`: the cases it printed, and its summary line.
fn capture(args: &[&str]) -> (Vec<Value>, String) {
    let (ok, out, err) = keel(&[&["eval", "capture"], args].concat());
    assert!(ok, "{out}{err}");
    let cases = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (cases, err)
}

fn ids(cases: &[Value]) -> Vec<&str> {
    cases.iter().map(|c| c["id"].as_str().unwrap()).collect()
}

const TICKET: &str = "charged twice, key sk-proj-AbC123xyz789QQ, mail jane.doe@example.com";

#[test]
fn capture_turns_logged_requests_into_cases() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("keel.db");
    let db = db.to_str().unwrap();
    let config = config(dir.path(), db);
    let (child, addr) = serve(&["--config", &config, "--db", db]);
    let out = call(&addr, "classify", "good", &json!({ "ticket": TICKET }));
    assert!(out.contains("billing"), "{out}");
    let out = call(&addr, "classify", "broken", &json!({ "ticket": "BROKEN" }));
    assert!(out.contains("output_invalid"), "{out}");
    let body = r#"{"model": "m", "messages": [{"role": "user", "content": "hello there"}]}"#;
    assert!(chat(&addr, "chat-1", body, &[]).contains("choices"));
    let out = call(&addr, "private", "hidden", &json!({ "ticket": "x" }));
    assert!(out.contains("output"), "{out}");
    feedback(
        &addr,
        &json!({"request_id": "good", "score": 1, "label": "correct"}),
    );
    feedback(
        &addr,
        &json!({"request_id": "broken", "score": 0, "label": "wrong_answer", "comment": "not JSON"}),
    );
    feedback(&addr, &json!({"request_id": "chat-1", "score": 0.5}));
    stop(child);

    // Everything: one case per chat or function call (the feedback calls
    // are not cases), oldest first; the hashed one skipped and counted.
    let (cases, summary) = capture(&["--db", db]);
    assert_eq!(ids(&cases), ["good", "broken", "chat-1"], "{cases:?}");
    assert!(
        summary.contains("3 cases written to stdout")
            && summary
                .contains("skipped 1 request whose bodies were not captured (capture = hashed)"),
        "{summary}"
    );
    let good = &cases[0];
    assert_eq!(
        good["input"],
        json!({"ticket": "charged twice, key [REDACTED], mail [REDACTED]"})
    );
    assert!(good.get("expected").is_none(), "{good}");
    for tag in [
        "route:classify",
        "model:m",
        "status:200",
        "feedback:correct",
    ] {
        assert!(
            good["tags"].as_array().unwrap().contains(&json!(tag)),
            "{tag}: {good}"
        );
    }
    assert_eq!(good["metadata"]["feedback_score"], 1.0);
    assert_eq!(good["metadata"]["served_by"], "sim/sim-m");
    assert_eq!(good["metadata"]["capture"], "full");
    assert_eq!(
        cases[2]["input"],
        json!({"messages": [{"role": "user", "content": "hello there"}], "model": "m"})
    );

    // Filters: route and error kind, status, feedback bounds, limit, window.
    let (cases, _) = capture(&[
        "--db",
        db,
        "--route",
        "classify",
        "--error-kind",
        "output_invalid",
    ]);
    assert_eq!(ids(&cases), ["broken"]);
    assert!(
        cases[0]["tags"]
            .as_array()
            .unwrap()
            .contains(&json!("error:output_invalid"))
    );
    assert_eq!(cases[0]["metadata"]["feedback_comment"], "not JSON");
    assert_eq!(
        ids(&capture(&["--db", db, "--status", "error"]).0),
        ["broken"]
    );
    assert_eq!(
        ids(&capture(&["--db", db, "--model", "m", "--min-feedback", "0.5"]).0),
        ["good", "chat-1"]
    );
    assert_eq!(
        ids(&capture(&["--db", db, "--max-feedback", "0"]).0),
        ["broken"]
    );
    assert_eq!(
        ids(&capture(&["--db", db, "--route", "classify", "-n", "1"]).0),
        ["broken"]
    );
    let (cases, summary) = capture(&["--db", db, "--until", "1h"]);
    assert!(cases.is_empty() && summary.contains("0 cases"), "{summary}");

    // Approved answers as expected outputs, to a file that reads back as a
    // dataset; the store found through the config's [log].
    let file = dir.path().join("cases.jsonl");
    let file = file.to_str().unwrap();
    let args = [
        "--config",
        &config,
        "--min-feedback",
        "1",
        "--expected",
        "output",
        "--out",
        file,
    ];
    let (printed, summary) = capture(&args);
    assert!(
        printed.is_empty() && summary.contains("1 case written to"),
        "{summary}"
    );
    let cases = keel_eval::dataset::read(Path::new(file)).unwrap();
    assert_eq!(cases.len(), 1);
    assert_eq!(cases[0].id, "good");
    assert_eq!(cases[0].expected, Some(json!({"category": "billing"})));
    // Never overwritten without --force.
    let (ok, _, err) = keel(&[&["eval", "capture"], &args[..]].concat());
    assert!(!ok && err.contains("exists"), "{err}");
    capture(&[&args[..], &["--force"]].concat());

    // --no-redact keeps the e-mail address, never the key.
    let (cases, _) = capture(&[
        "--db",
        db,
        "--route",
        "classify",
        "--status",
        "2xx",
        "--no-redact",
    ]);
    let ticket = cases[0]["input"]["ticket"].as_str().unwrap();
    assert!(
        ticket.contains("jane.doe@example.com") && !ticket.contains("AbC123xyz789QQ"),
        "{ticket}"
    );

    // A store that is not there is an error.
    let (ok, _, err) = keel(&["eval", "capture", "--db", &format!("{db}.missing")]);
    assert!(!ok && err.contains("no request log"), "{err}");
}
