//! The `keel` binary as a user runs it: `config check` reports problems
//! with their location and its exit code says whether the config is usable;
//! `serve` announces its address, answers, and exits cleanly on SIGTERM;
//! `logs`, `show` and `stats` read back what it recorded, and `eval capture`
//! turns it into dataset cases; `keys` issues keys that two `serve` processes
//! sharing Redis and Postgres both honour.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod eval_capture;
mod eval_example;
mod guard_quality;
mod inspect;
mod replicas;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const KEEL: &str = env!("CARGO_BIN_EXE_keel");

fn check(config: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keel.toml");
    std::fs::write(&path, config).unwrap();
    let out = Command::new(KEEL)
        .args(["config", "check"])
        .arg(&path)
        .output()
        .unwrap();
    (out.status.success(), String::from_utf8(out.stdout).unwrap())
}

#[test]
fn config_check_accepts_the_default_config() {
    let repo_config = concat!(env!("CARGO_MANIFEST_DIR"), "/../../keel.toml");
    let out = Command::new(KEEL)
        .args(["config", "check", repo_config])
        .env_remove("OPENAI_API_KEY")
        .env_remove("ANTHROPIC_API_KEY")
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("OPENAI_API_KEY is not set"), "{stdout}");
}

#[test]
fn config_check_reports_every_problem_with_its_location() {
    let (ok, out) = check(
        r#"
        [server]
        listen = "nowhere"
        [providers.s]
        kind = "sim"
        faults = [{ rate = 0.5, fault = "status=200" }]
        [models.m]
        targets = [{ provider = "missing", model = "x" }]
        "#,
    );
    assert!(!ok, "{out}");
    assert!(out.contains("server.listen"), "{out}");
    assert!(out.contains("models.m.targets[0].provider"), "{out}");

    // Problems only the simulator can see are reported too.
    let (ok, out) =
        check("[providers.s]\nkind = \"sim\"\nfaults = [{ rate = 0.5, fault = \"explode\" }]\n");
    assert!(!ok, "{out}");
    assert!(
        out.contains("providers.s") && out.contains("explode"),
        "{out}"
    );
}

/// `keel serve` on an ephemeral port (from the crate's directory, where no
/// keel.toml is: the built-in default unless `args` names one), and the
/// address it announced. No request log unless `args` has `--db`.
fn serve(args: &[&str]) -> (std::process::Child, String) {
    serve_with(args, &[])
}

/// [`serve`] with more environment variables.
fn serve_with(args: &[&str], env: &[(&str, &str)]) -> (std::process::Child, String) {
    let mut child = Command::new(KEEL)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .args(args)
        .env("KEEL_DB", "off")
        .envs(env.iter().copied())
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on http://")
        .unwrap_or_else(|| panic!("{line}"))
        .to_owned();
    (child, addr)
}

#[test]
fn serve_announces_its_address_and_stops_on_sigterm() {
    let (child, addr) = serve(&[]);
    assert!(addr.starts_with("127.0.0.1:"), "{addr}");

    stop(child);
}

/// SIGTERM, then waits (bounded) for a clean exit.
fn stop(mut child: std::process::Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "exit status {status}");
            break;
        }
        assert!(Instant::now() < deadline, "keel did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `keel call FUNCTION --input INPUT` on the example config: exit code and
/// the JSON it printed.
fn call_example(function: &str, input: &str) -> (Option<i32>, serde_json::Value) {
    let out = Command::new(KEEL)
        .args(["call", function, "--config", EXAMPLE, "--input", input])
        .output()
        .unwrap();
    let v = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out:?}"));
    (out.status.code(), v)
}

const EXAMPLE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../examples/functions/keel.toml"
);

#[test]
fn the_example_functions_check_and_run_against_the_simulator() {
    let out = Command::new(KEEL)
        .args(["config", "check", EXAMPLE])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    let (code, v) = call_example(
        "extract_invoice",
        r#"{"text": "Invoice INV-7 from Acme: 2 widgets at 50.00, tax 20.00"}"#,
    );
    assert_eq!(code, Some(0), "{v}");
    assert_eq!(
        v["output"]["total"], 120.0,
        "the invariant caught the wrong total: {v}"
    );
    assert_eq!(v["meta"]["reasks"], 1);

    let (code, v) = call_example("classify_ticket", r#"{"ticket": "I was charged twice"}"#);
    assert_eq!(code, Some(0), "{v}");
    assert_eq!(v["output"]["category"], "billing", "{v}");
    assert!(
        !v["meta"]["repairs"].as_array().unwrap().is_empty(),
        "the fenced, trailing-comma reply was repaired: {v}"
    );

    // Invalid input: exit code 2, nothing sent upstream.
    let (code, v) = call_example("classify_ticket", r#"{"ticket": ""}"#);
    assert_eq!(code, Some(2), "{v}");
    assert_eq!(v["error"], "input_invalid");
}

#[test]
fn the_example_workflow_runs_over_http() {
    let (mut child, addr) = serve(&["--config", EXAMPLE]);
    let out = Command::new("curl")
        .args([
            "-s",
            "-m",
            "10",
            &format!("http://{addr}/v1/workflows/support_triage"),
            "-d",
        ])
        .arg(r#"{"input": {"ticket": "I was charged twice"}}"#)
        .output()
        .unwrap();
    let _ = child.kill();
    let _ = child.wait();
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {:?}", out));
    let steps = v["steps"].as_array().unwrap_or_else(|| panic!("{v}"));
    assert_eq!(steps.len(), 2, "{v}");
    assert_eq!(steps[0]["output"]["category"], "billing");
    assert!(
        steps[1]["output"].as_str().is_some_and(|s| !s.is_empty()),
        "{v}"
    );
}
