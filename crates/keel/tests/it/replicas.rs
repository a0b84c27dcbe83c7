//! Two `keel serve` processes sharing one Redis (budgets, rate limits) and
//! one Postgres (keys, the request log), as replicas behind a load
//! balancer run: one limit, not two. Keys are issued with `keel keys`.
//!
//! Needs `KEEL_TEST_REDIS_URL` (`scripts/redis start`) and
//! `KEEL_TEST_PG_URL` (`scripts/postgres start`), which `scripts/test`
//! sets; skipped without them, except under CI.

use std::process::Command;
use std::time::{Duration, SystemTime};

use serde_json::{Value, json};

use crate::{KEEL, serve_with, stop};

const ADMIN: &str = "replica-admin-token-0123456789";

/// Both servers, their database, and what to clean up.
struct Replicas {
    children: Vec<std::process::Child>,
    addrs: Vec<String>,
    admin_url: String,
    database: String,
    _dir: tempfile::TempDir,
}

impl Replicas {
    fn start() -> Option<Replicas> {
        let (Some(redis), Some(pg)) = (setting("KEEL_TEST_REDIS_URL"), setting("KEEL_TEST_PG_URL"))
        else {
            return None;
        };
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let name = format!("keel_replicas_{}_{nanos}", std::process::id());
        psql(&pg, &format!("CREATE DATABASE {name}"));
        let (base, _) = pg.rsplit_once('/').unwrap();
        let db = format!("{base}/{name}");
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("keel.toml");
        std::fs::write(
            &config,
            format!(
                r#"
                [server.admission]
                max_in_flight = 512
                [auth]
                admin_token = {{ env = "KEEL_ADMIN_TOKEN" }}
                [redis]
                url = "{redis}"
                prefix = "{name}"
                [log]
                flush_every = "10ms"
                [pricing."sim-priced"]
                input = 1000.0
                output = 1000.0
                [providers.slow]
                kind = "sim"
                faults = [{{ rate = 1.0, fault = "latency=1s" }}]
                [providers.fast]
                kind = "sim"
                [models.slow]
                targets = [{{ provider = "slow", model = "sim-priced" }}]
                [models.fast]
                targets = [{{ provider = "fast", model = "sim-priced" }}]
                [models.limited]
                targets = [{{ provider = "fast", model = "sim-model" }}]
                rate_limit = {{ requests_per_minute = 12 }}
                "#
            ),
        )
        .unwrap();
        let config = config.to_str().unwrap();
        let mut children = Vec::new();
        let mut addrs = Vec::new();
        // One after the other: the first runs the migrations.
        for _ in 0..2 {
            let (child, addr) = serve_with(
                &["--config", config, "--db", &db],
                &[("KEEL_ADMIN_TOKEN", ADMIN)],
            );
            children.push(child);
            addrs.push(addr);
        }
        Some(Replicas {
            admin_url: format!("http://{}", addrs[0]),
            children,
            addrs,
            database: name,
            _dir: dir,
        })
    }

    /// `keel keys ARGS --json` against the first replica.
    fn keys(&self, args: &[&str]) -> Value {
        let out = Command::new(KEEL)
            .arg("keys")
            .args(args)
            .args(["--url", &self.admin_url, "--json"])
            .env("KEEL_ADMIN_TOKEN", ADMIN)
            .output()
            .unwrap();
        assert!(out.status.success(), "keel keys {args:?}: {out:?}");
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// `n` chat requests at once, alternating between the replicas; their
    /// statuses and bodies.
    fn burst(&self, n: usize, key: &str, body: &Value) -> Vec<(u16, Value)> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let client = reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap();
            let tasks: Vec<_> = (0..n)
                .map(|i| {
                    let url = format!("http://{}/v1/chat/completions", self.addrs[i % 2]);
                    let req = client.post(url).bearer_auth(key).json(body);
                    tokio::spawn(async move {
                        let resp = req.send().await.unwrap();
                        let status = resp.status().as_u16();
                        (status, resp.json::<Value>().await.unwrap_or(Value::Null))
                    })
                })
                .collect();
            let mut out = Vec::new();
            for t in tasks {
                out.push(t.await.unwrap());
            }
            out
        })
    }
}

impl Drop for Replicas {
    fn drop(&mut self) {
        for child in self.children.drain(..) {
            stop(child);
        }
        if let Ok(pg) = std::env::var("KEEL_TEST_PG_URL") {
            psql(
                &pg,
                &format!("DROP DATABASE {} WITH (FORCE)", self.database),
            );
        }
    }
}

#[test]
fn two_replicas_share_one_budget_and_one_rate_limit() {
    let Some(r) = Replicas::start() else { return };
    let mut body = json!({"model": "slow", "max_tokens": 64,
        "messages": [{"role": "user", "content": "what does this cost?"}]});

    // The worst case keel reserves for this request, from the refusal a
    // one-micro-dollar budget gives.
    let tiny = r.keys(&["create", "--budget-usd", "0.000001", "--period", "day"]);
    let refused = r.burst(1, tiny["key"].as_str().unwrap(), &body);
    assert_eq!(refused[0].0, 402, "{refused:?}");
    let message = refused[0].1["error"]["message"].as_str().unwrap();
    let worst: f64 = message
        .split("may cost up to $")
        .nth(1)
        .unwrap()
        .split([';', ' '])
        .next()
        .unwrap()
        .parse()
        .unwrap();

    // 200 requests at once over both replicas against room for 50.5 worst
    // cases: the upstream takes a second, so all of them reserve while the
    // first 50 are in flight, and exactly 50 fit.
    let cap = worst * 50.5;
    let key = r.keys(&[
        "create",
        "--name",
        "shared",
        "--budget-usd",
        &cap.to_string(),
        "--period",
        "day",
    ]);
    let (id, secret) = (key["id"].as_str().unwrap(), key["key"].as_str().unwrap());
    let results = r.burst(200, secret, &body);
    let admitted = results.iter().filter(|(s, _)| *s == 200).count();
    let refused = results.iter().filter(|(s, _)| *s == 402).count();
    assert_eq!(
        (admitted, refused),
        (50, 150),
        "{:?}",
        results.iter().find(|(s, _)| *s != 200 && *s != 402)
    );
    let usage = r.keys(&["usage", id]);
    let budget = &usage["budgets"][0];
    let spent = budget["spent_usd"].as_f64().unwrap();
    assert!(spent > 0.0 && spent <= cap, "spent {spent} of {cap}");
    assert_eq!(budget["reserved_usd"], 0.0);

    // A key limited to 6 requests a minute, and a model limited to 12, over
    // both replicas: one limit each (a minute's burst; the run lasts well
    // under the 10 s one more request would need).
    let limited = r.keys(&["create", "--rpm", "6"]);
    body["model"] = json!("fast");
    let results = r.burst(20, limited["key"].as_str().unwrap(), &body);
    let admitted = results.iter().filter(|(s, _)| *s == 200).count();
    assert_eq!(admitted, 6, "{results:?}");
    let unlimited = r.keys(&["create"]);
    body["model"] = json!("limited");
    let results = r.burst(30, unlimited["key"].as_str().unwrap(), &body);
    let admitted = results.iter().filter(|(s, _)| *s == 200).count();
    assert_eq!(admitted, 12, "{results:?}");
    let refusal = &results.iter().find(|(s, _)| *s == 429).unwrap().1;
    assert!(
        refusal["error"]["message"]
            .as_str()
            .unwrap()
            .contains("keel's rate limit for model `limited`")
    );

    // Revoked through one replica's admin API, refused by the other too
    // once its key cache expires (10 s); here, by the replica that revoked.
    r.keys(&["revoke", id]);
    body["model"] = json!("fast");
    let after = r.burst(1, secret, &body);
    assert_eq!(after[0].0, 401);
}

/// The variable's value; `None` (and a line saying the test was skipped)
/// when unset, or a failure under CI.
fn setting(name: &str) -> Option<String> {
    if let Some(v) = std::env::var(name).ok().filter(|v| !v.is_empty()) {
        return Some(v);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{name} is not set, and CI must run the replica tests: eval \"$(scripts/redis start)\" and \"$(scripts/postgres start)\" first"
    );
    println!("skipped: {name} is not set");
    None
}

fn psql(url: &str, sql: &str) {
    let out = Command::new("psql")
        .args([url, "-v", "ON_ERROR_STOP=1", "-qc", sql])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
}

/// `keel keys` as a person uses it: the key alone on stdout (for a pipe),
/// the note about showing it once on stderr, a table for `list`, and a
/// clear failure for a wrong admin token.
#[test]
fn keys_cli_prints_for_people() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("keel.db");
    let config = dir.path().join("keel.toml");
    std::fs::write(
        &config,
        "[auth]\nadmin_token = { env = \"KEEL_ADMIN_TOKEN\" }\n[providers.sim]\nkind = \"sim\"\n\
         [models.sim]\ntargets = [{ provider = \"sim\", model = \"sim-model\" }]\n",
    )
    .unwrap();
    let (child, addr) = serve_with(
        &[
            "--config",
            config.to_str().unwrap(),
            "--db",
            db.to_str().unwrap(),
        ],
        &[("KEEL_ADMIN_TOKEN", ADMIN)],
    );
    let url = format!("http://{addr}");
    let keys = |token: &str, args: &[&str]| {
        Command::new(KEEL)
            .arg("keys")
            .args(args)
            .args(["--url", &url])
            .env("KEEL_ADMIN_TOKEN", token)
            .output()
            .unwrap()
    };
    let out = keys(
        ADMIN,
        &[
            "create",
            "--name",
            "cli",
            "--model",
            "sim",
            "--budget-usd",
            "5",
            "--period",
            "7d",
        ],
    );
    assert!(out.status.success(), "{out:?}");
    let key = String::from_utf8(out.stdout).unwrap();
    assert!(
        key.trim().starts_with("kk-") && key.lines().count() == 1,
        "{key}"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("shown this once"));
    let listed = String::from_utf8(keys(ADMIN, &["list"]).stdout).unwrap();
    let row = listed
        .lines()
        .find(|l| l.contains("cli"))
        .unwrap_or_else(|| panic!("{listed}"));
    assert!(
        row.contains("$5/7d") && row.contains("active") && row.contains("sim"),
        "{row}"
    );
    assert!(!listed.contains(key.trim()), "the secret is never listed");
    let denied = keys("wrong-token", &["list"]);
    assert!(!denied.status.success());
    assert!(
        String::from_utf8_lossy(&denied.stderr).contains("401"),
        "{denied:?}"
    );
    stop(child);
}
