//! Virtual keys end to end: issued over the admin API (its own token),
//! shown once, required when `[auth] require_key` is on, limited to their
//! models and their own rate and input limits, recorded by id, revoked.

use keel_config::SimConfig;
use keel_sim::Simulator;
use keel_testkit::Running;
use serde_json::{Value, json};

use crate::{anthropic_chat, client, json_of, openai_chat, post_json};

pub const ADMIN: &str = "admin-token-0123456789abcdef";

/// keel with a request log (where keys live), an admin token, and the
/// simulator over HTTP behind models `sim` and `other`.
pub struct Keyed {
    pub keel: Running,
    pub sim: Simulator,
    _server: Running,
    _dir: tempfile::TempDir,
}

pub async fn keyed(upstream: SimConfig, require_key: bool, rest: &str) -> Keyed {
    let (server, sim) = keel_testkit::sim(upstream).await;
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        r#"
        [server.admission]
        max_in_flight = 512
        [auth]
        admin_token = {{ env = "ADMIN" }}
        require_key = {require_key}
        [log]
        path = "{db}"
        flush_every = "10ms"
        [providers.up]
        kind = "openai"
        base_url = "{url}/v1"
        resilience = {{ max_retries = 0, breaker = {{ enabled = false }} }}
        [models.sim]
        targets = [{{ provider = "up", model = "sim-model" }}]
        [models.other]
        targets = [{{ provider = "up", model = "sim-model" }}]
        {rest}
        "#,
        db = dir.path().join("keel.db").display(),
        url = server.url(),
    );
    let keel = keel_testkit::keel_logged(&config, &[("ADMIN", ADMIN)]).await;
    Keyed {
        keel,
        sim,
        _server: server,
        _dir: dir,
    }
}

impl Keyed {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.keel.url())
    }

    /// Issues a key; returns its id and the key itself.
    pub async fn issue(&self, settings: Value) -> (String, String) {
        let resp = client()
            .post(self.url("/admin/keys"))
            .bearer_auth(ADMIN)
            .json(&settings)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 201);
        let body = json_of(resp).await;
        (
            body["id"].as_str().unwrap().to_owned(),
            body["key"].as_str().unwrap().to_owned(),
        )
    }

    /// An OpenAI chat request with `key` as the bearer token.
    pub async fn chat(&self, key: &str, body: &Value) -> reqwest::Response {
        let auth = format!("Bearer {key}");
        post_json(
            &self.keel.url(),
            "/v1/chat/completions",
            body,
            &[("authorization", &auth)],
        )
        .await
        .unwrap()
    }

    pub async fn admin(&self, method: reqwest::Method, path: &str) -> reqwest::Response {
        client()
            .request(method, self.url(path))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap()
    }
}

#[tokio::test]
async fn keys_are_issued_once_required_scoped_and_revoked() {
    let k = keyed(SimConfig::default(), true, "").await;

    // The admin API wants its own token.
    for token in [None, Some("wrong"), Some("kk-notthe-admintoken")] {
        let mut req = client().get(k.url("/admin/keys"));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        assert_eq!(req.send().await.unwrap().status(), 401, "{token:?}");
    }
    let (id, key) = k.issue(json!({"name": "search", "models": ["sim"]})).await;
    assert!(key.starts_with(&format!("kk-{id}-")), "{key}");

    // Listed, never with its secret.
    let listed = k.admin(reqwest::Method::GET, "/admin/keys").await;
    assert_eq!(listed.status(), 200);
    let listed = listed.text().await.unwrap();
    let secret = key.rsplit('-').next().unwrap();
    assert!(listed.contains(&id) && !listed.contains(secret), "{listed}");

    // No key: 401 in each front door's own shape.
    let resp = post_json(
        &k.keel.url(),
        "/v1/chat/completions",
        &openai_chat("sim", "hi"),
        &[],
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(json_of(resp).await["error"]["type"], "authentication_error");
    let resp = post_json(
        &k.keel.url(),
        "/v1/messages",
        &anthropic_chat("sim", "hi"),
        &[],
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 401);
    let body = json_of(resp).await;
    assert_eq!(
        (body["type"].as_str(), body["error"]["type"].as_str()),
        (Some("error"), Some("authentication_error"))
    );
    let before = k.sim.stats().requests;

    // /v1/models too: refused without a key, and only the key's models.
    let resp = client().get(k.url("/v1/models")).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    let listed = client()
        .get(k.url("/v1/models"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    let ids: Vec<Value> = json_of(listed).await["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].clone())
        .collect();
    assert_eq!(ids, [json!("sim")]);
    let other = client()
        .get(k.url("/v1/models/other"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 404);

    // The key: as a bearer token (OpenAI SDK) or x-api-key (Anthropic SDK),
    // whichever header holds it.
    assert_eq!(k.chat(&key, &openai_chat("sim", "hi")).await.status(), 200);
    let resp = post_json(
        &k.keel.url(),
        "/v1/chat/completions",
        &openai_chat("sim", "hi"),
        &[
            ("authorization", "Bearer sk-placeholder"),
            ("x-api-key", &key),
        ],
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 200);
    let resp = post_json(
        &k.keel.url(),
        "/v1/messages",
        &anthropic_chat("sim", "hi"),
        &[("x-api-key", &key)],
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(k.sim.stats().requests, before + 3);
    let before = before + 1;

    // Outside its models: 403 naming what it may call; nothing sent upstream.
    let resp = k.chat(&key, &openai_chat("other", "hi")).await;
    assert_eq!(resp.status(), 403);
    let body = json_of(resp).await;
    assert_eq!(body["error"]["type"], "permission_error");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("`other`"),
        "{body}"
    );
    // A forged secret for a real id, and a malformed key: 401.
    let forged = format!("kk-{id}-{}", "A".repeat(32));
    assert_eq!(
        k.chat(&forged, &openai_chat("sim", "hi")).await.status(),
        401
    );
    assert_eq!(
        k.chat("kk-garbage", &openai_chat("sim", "hi"))
            .await
            .status(),
        401
    );
    assert_eq!(k.sim.stats().requests, before + 2);

    // Revoked: refused at once, and cannot be revoked twice.
    let path = format!("/admin/keys/{id}");
    assert_eq!(k.admin(reqwest::Method::DELETE, &path).await.status(), 200);
    assert_eq!(k.admin(reqwest::Method::DELETE, &path).await.status(), 404);
    let resp = k.chat(&key, &openai_chat("sim", "hi")).await;
    assert_eq!(resp.status(), 401);
    assert!(
        json_of(resp).await["error"]["message"]
            .as_str()
            .unwrap()
            .contains("revoked")
    );
    let shown = json_of(k.admin(reqwest::Method::GET, &path).await).await;
    assert!(shown["revoked_ms"].is_i64(), "{shown}");
}

#[tokio::test]
async fn keys_are_recorded_by_id_and_anonymous_callers_pass_when_keys_are_optional() {
    let k = keyed(SimConfig::default(), false, "").await;
    let (id, key) = k.issue(json!({"name": "a"})).await;
    assert_eq!(k.chat(&key, &openai_chat("sim", "hi")).await.status(), 200);
    // Not keel-shaped: anonymous (an SDK insists on some api_key).
    assert_eq!(
        k.chat("sk-anything", &openai_chat("sim", "hi"))
            .await
            .status(),
        200
    );
    // Keel-shaped but not valid: refused even when keys are optional.
    assert_eq!(
        k.chat(
            &format!("kk-{id}-{}", "b".repeat(32)),
            &openai_chat("sim", "hi")
        )
        .await
        .status(),
        401
    );
    let resp = client()
        .get(k.url(&format!("/admin/keys/{id}/usage")))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    // The writer flushes every 10 ms; the usage endpoint reads the log.
    let mut count = 0;
    for _ in 0..100 {
        let usage = json_of(
            k.admin(reqwest::Method::GET, &format!("/admin/keys/{id}/usage"))
                .await,
        )
        .await;
        count = usage["requests"]["count"].as_u64().unwrap_or(0);
        if count == 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(count, 1, "one request under this key");
}

#[tokio::test]
async fn a_key_s_own_limits_are_enforced_before_any_upstream_call() {
    let k = keyed(SimConfig::default(), false, "").await;
    let (_, limited) = k
        .issue(json!({"rate_limit": {"requests_per_minute": 3}, "max_input_tokens": 50, "max_output_tokens": 100}))
        .await;
    for _ in 0..3 {
        assert_eq!(
            k.chat(&limited, &openai_chat("sim", "hi")).await.status(),
            200
        );
    }
    let calls = k.sim.stats().requests;
    let resp = k.chat(&limited, &openai_chat("sim", "hi")).await;
    assert_eq!(resp.status(), 429);
    assert!(resp.headers().contains_key("retry-after"));
    let message = json_of(resp).await["error"]["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        message.contains("keel's rate limit for virtual key"),
        "{message}"
    );
    // Another key is not limited by this one's.
    let (_, free) = k
        .issue(json!({"max_input_tokens": 50, "max_output_tokens": 100}))
        .await;
    let book = "It was the best of times, it was the worst of times. ".repeat(20);
    let resp = k.chat(&free, &openai_chat("sim", &book)).await;
    assert_eq!(resp.status(), 413);
    assert!(
        json_of(resp).await["error"]["message"]
            .as_str()
            .unwrap()
            .contains("virtual key")
    );
    let mut wants_more = openai_chat("sim", "hi");
    wants_more["max_tokens"] = json!(500);
    assert_eq!(k.chat(&free, &wants_more).await.status(), 400);
    assert_eq!(k.sim.stats().requests, calls);
    // Asking for no particular length: the key's cap is what is sent.
    let (_, short) = k.issue(json!({"max_output_tokens": 3})).await;
    let resp = k
        .chat(&short, &openai_chat("sim", "tell me a long story"))
        .await;
    let body = json_of(resp).await;
    assert!(
        body["usage"]["completion_tokens"].as_u64().unwrap() <= 3,
        "{body}"
    );
    assert_eq!(body["choices"][0]["finish_reason"], "length");
}

#[tokio::test]
async fn bad_key_settings_and_a_missing_admin_token_are_refused() {
    let k = keyed(SimConfig::default(), false, "").await;
    for bad in [
        json!({"models": ["nope"]}),
        json!({"budget": {"usd": -1, "period": "day"}}),
        json!({"budget": {"usd": 1, "period": "fortnight"}}),
        json!({"rate_limit": {"requests_per_minute": 0}}),
        json!({"tags": ["a", "b", "a"]}),
        json!({"surprise": true}),
    ] {
        let resp = client()
            .post(k.url("/admin/keys"))
            .bearer_auth(ADMIN)
            .json(&bad)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400, "{bad}");
    }
    // Without an admin token the admin API does not exist.
    let (server, _) = keel_testkit::sim(SimConfig::default()).await;
    let plain = keel_testkit::keel(&format!(
        "[providers.up]\nkind = \"openai\"\nbase_url = \"{}/v1\"\n[models.sim]\ntargets = [{{ provider = \"up\", model = \"m\" }}]",
        server.url()
    ))
    .await;
    let resp = client()
        .get(format!("{}/admin/keys", plain.url()))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
}
