//! `keel logs`, `keel show` and `keel stats` on a request log filled by a
//! real `keel serve` (built-in config, simulator upstream) over curl.

use std::process::Command;

use serde_json::Value;

use super::{KEEL, serve, stop};

pub(super) fn curl(args: &[&str]) -> String {
    let out = Command::new("curl")
        .args(["-s", "-m", "10"])
        .args(args)
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap()
}

pub(super) fn chat(addr: &str, id: &str, body: &str, extra: &[&str]) -> String {
    let url = format!("http://{addr}/v1/chat/completions");
    let mut args = vec![url.as_str(), "-H", "content-type: application/json", "-H"];
    let id_header = format!("x-request-id: {id}");
    args.push(&id_header);
    args.extend_from_slice(extra);
    args.extend(["-d", body]);
    curl(&args)
}

/// Runs keel: success, stdout, stderr.
/// The ids of `keel logs --json` output, in order.
fn ids_of(out: &str) -> Vec<String> {
    out.lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect()
}

pub(super) fn keel(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(KEEL)
        .args(args)
        .env_remove("KEEL_DB")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn logs_show_and_stats_read_what_serve_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("keel.db");
    let db = db.to_str().unwrap();
    let (child, addr) = serve(&["--db", db]);
    let ok = r#"{"model": "sim", "messages": [{"role": "user", "content": "hello there"}]}"#;
    for i in 0..3 {
        let out = chat(&addr, &format!("ok-{i}"), ok, &[]);
        assert!(out.contains("choices"), "{out}");
    }
    let streamed =
        r#"{"model": "sim", "stream": true, "messages": [{"role": "user", "content": "a story"}]}"#;
    assert!(chat(&addr, "streamed", streamed, &[]).contains("[DONE]"));
    let failed = chat(&addr, "failed", ok, &["-H", "x-keel-sim-fault: status=503"]);
    assert!(failed.contains("error"), "{failed}");
    let missing = r#"{"model": "nope", "messages": [{"role": "user", "content": "hi"}]}"#;
    assert!(chat(&addr, "missing", missing, &[]).contains("model_not_found"));
    let fb = curl(&[
        &format!("http://{addr}/v1/feedback"),
        "-H",
        "content-type: application/json",
        "-d",
        r#"{"request_id": "ok-1", "score": 0, "label": "wrong_answer", "comment": "made up a fact"}"#,
    ]);
    assert!(fb.contains("\"stored\":true"), "{fb}");
    stop(child);

    // logs --json: one record per line, newest last, filters applied.
    let (ok_run, out, err) = keel(&["logs", "--db", db, "--json"]);
    assert!(ok_run, "{out}{err}");
    let records: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let ids: Vec<&str> = records.iter().map(|r| r["id"].as_str().unwrap()).collect();
    for id in ["ok-0", "ok-1", "ok-2", "streamed", "failed", "missing"] {
        assert_eq!(
            ids.iter().filter(|i| **i == id).count(),
            1,
            "{id} in {ids:?}"
        );
    }
    let (_, out, _) = keel(&["logs", "--db", db, "--json", "--status", "error"]);
    let mut errors = ids_of(&out);
    errors.sort();
    assert_eq!(errors, ["failed", "missing"]);
    let (_, out, _) = keel(&[
        "logs", "--db", db, "--json", "--grep", "STREAMED", "-n", "5",
    ]);
    assert_eq!(out.lines().count(), 1, "{out}");
    // The table: a header and a row per request.
    let (_, out, _) = keel(&["logs", "--db", db, "--model", "sim"]);
    assert!(out.starts_with("TIME"), "{out}");
    assert_eq!(out.lines().count(), 1 + 5, "{out}");
    assert!(out.contains("sim/keel-sim"), "{out}");

    // show: the whole story, feedback included.
    let (found, out, err) = keel(&["show", "ok-1", "--db", db]);
    assert!(found, "{out}{err}");
    for part in [
        "request   ok-1",
        "status    200 ok",
        "attempts",
        "sim/keel-sim",
        "feedback",
        "wrong_answer",
        "made up a fact",
        "input (redacted)",
        "hello there",
    ] {
        assert!(out.contains(part), "`{part}` missing from:\n{out}");
    }
    let (found, out, _) = keel(&["show", "failed", "--db", db, "--json"]);
    assert!(found);
    let failed: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(failed["status"], 502);
    assert_eq!(failed["attempts"][0]["status"], 503);
    let (found, out, err) = keel(&["show", "no-such-id", "--db", db]);
    assert!(
        !found && err.contains("no request `no-such-id`"),
        "{out}{err}"
    );

    // stats: per model over the window.
    let (_, out, _) = keel(&["stats", "--db", db, "--json"]);
    let stats: Vec<Value> = serde_json::from_str(&out).unwrap();
    let sim = stats
        .iter()
        .find(|s| s["group"] == "sim")
        .unwrap_or_else(|| panic!("{out}"));
    assert_eq!(sim["count"], 5);
    assert_eq!(sim["errors"], 1);
    assert!((sim["error_rate"].as_f64().unwrap() - 0.2).abs() < 1e-9);
    assert!(sim["latency_ms"]["p50"].as_f64().unwrap() > 0.0);
    assert!(
        sim["ttft_ms"]["p50"].as_f64().is_some(),
        "the stream has a TTFT: {sim}"
    );
    assert!(sim["input_tokens"].as_u64().unwrap() > 0);
    let (_, out, _) = keel(&["stats", "--db", db, "--by", "target"]);
    assert!(
        out.starts_with("GROUP") && out.contains("sim/keel-sim"),
        "{out}"
    );

    // A missing log is an error, not an empty table.
    let (ok_run, _, err) = keel(&["logs", "--db", &format!("{db}.missing")]);
    assert!(!ok_run && err.contains("no request log"), "{err}");
}

/// The Postgres store through the real binary: `keel serve --db postgres://…`
/// keeps answering while the database is down, writes the records once it
/// is back, and `keel logs`/`stats` read them. Needs `scripts/postgres
/// start` (which `scripts/test` runs); skipped without it, except under CI.
#[test]
fn a_postgres_log_survives_an_outage_and_is_read_back() {
    let (Some(admin), Some(ctl)) = (
        std::env::var("KEEL_TEST_PG_URL").ok(),
        std::env::var("KEEL_TEST_PG_CTL").ok(),
    ) else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must run this test: eval \"$(scripts/postgres start)\" first"
        );
        println!("skipped: KEEL_TEST_PG_URL/KEEL_TEST_PG_CTL not set");
        return;
    };
    let name = format!("keel_cli_{}", std::process::id());
    let psql = |sql: &str| {
        let out = Command::new("psql")
            .args([admin.as_str(), "-v", "ON_ERROR_STOP=1", "-qc", sql])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
    };
    let pg = |action: &str| {
        let out = Command::new("sh")
            .args(["-c", &format!("{ctl} {action}")])
            .output()
            .unwrap();
        assert!(out.status.success(), "{action}: {out:?}");
    };
    psql(&format!("CREATE DATABASE {name}"));
    let (base, _) = admin.rsplit_once('/').unwrap();
    let url = format!("{base}/{name}");

    let (child, addr) = serve(&["--db", &url]);
    let ok = r#"{"model": "sim", "messages": [{"role": "user", "content": "hi"}]}"#;
    for i in 0..3 {
        assert!(chat(&addr, &format!("before-{i}"), ok, &[]).contains("choices"));
    }
    pg("stop -m fast");
    for i in 0..5 {
        let started = std::time::Instant::now();
        assert!(chat(&addr, &format!("during-{i}"), ok, &[]).contains("choices"));
        assert!(started.elapsed() < std::time::Duration::from_secs(2));
    }
    pg("start");
    stop(child); // graceful: the queued records are written before exit

    let (ok_run, out, err) = keel(&["logs", "--db", &url, "--json"]);
    assert!(ok_run, "{out}{err}");
    let ids = ids_of(&out);
    assert_eq!(ids.len(), 8, "{ids:?}");
    let (_, out, _) = keel(&["stats", "--db", &url, "--json"]);
    let stats: Vec<Value> = serde_json::from_str(&out).unwrap();
    assert_eq!(stats[0]["count"], 8, "{out}");
    psql(&format!("DROP DATABASE {name} WITH (FORCE)"));
}

/// `keel logs --follow` prints requests as their records land, each once.
#[test]
fn logs_follow_prints_new_requests_once() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    use std::sync::mpsc;
    use std::time::Duration;

    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("keel.db");
    let db = db.to_str().unwrap();
    let (server, addr) = serve(&["--db", db]);
    let ok = r#"{"model": "sim", "messages": [{"role": "user", "content": "hi"}]}"#;
    assert!(chat(&addr, "first", ok, &[]).contains("choices"));
    // The file exists once the first batch is written.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !keel(&["show", "first", "--db", db]).0 {
        assert!(std::time::Instant::now() < deadline, "first never landed");
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut follower = Command::new(KEEL)
        .args(["logs", "--db", db, "--follow", "--json"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let stdout = follower.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let v: Value = serde_json::from_str(&line).unwrap();
            let _ = tx.send(v["id"].as_str().unwrap().to_owned());
        }
    });
    assert_eq!(rx.recv_timeout(Duration::from_secs(10)).unwrap(), "first");
    for id in ["second", "third"] {
        assert!(chat(&addr, id, ok, &[]).contains("choices"));
    }
    let mut later = vec![
        rx.recv_timeout(Duration::from_secs(10)).unwrap(),
        rx.recv_timeout(Duration::from_secs(10)).unwrap(),
    ];
    later.sort();
    assert_eq!(later, ["second", "third"]);
    // Nothing is printed twice.
    assert!(rx.recv_timeout(Duration::from_millis(2500)).is_err());
    let _ = follower.kill();
    let _ = follower.wait();
    stop(server);
}
