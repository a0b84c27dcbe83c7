//! keel with `[redis]`: what replicas share (the response cache, budgets,
//! rate limits) and what happens while Redis is down — budgets fail closed
//! (or open, when configured), rate limits fall back to this process's,
//! the cache misses; never a hang, always a metric. Each test runs its own
//! `redis-server` (`KEEL_TEST_REDIS_SERVER`, from `scripts/redis start`).

use std::time::{Duration, Instant};

use keel_config::SimConfig;
use keel_testkit::redis::RedisServer;
use serde_json::json;

use crate::keys::keyed;
use crate::{json_of, openai_chat, post_json};

/// The redis-server binary; `None` (skipped) when unset, except under CI.
fn redis_binary() -> Option<String> {
    match std::env::var("KEEL_TEST_REDIS_SERVER") {
        Ok(v) if !v.is_empty() => Some(v),
        _ => {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI must run the Redis tests: eval \"$(scripts/redis start)\" first"
            );
            println!("skipped: KEEL_TEST_REDIS_SERVER is not set");
            None
        }
    }
}

fn redis_config(url: &str, when_down: &str) -> String {
    format!(
        r#"
        [redis]
        url = "{url}"
        timeout = "200ms"
        budgets_when_down = "{when_down}"
        [pricing."sim-model"]
        input = 1.0
        output = 1.0
        [models.limited]
        targets = [{{ provider = "up", model = "sim-model" }}]
        rate_limit = {{ requests_per_minute = 1000 }}
        "#
    )
}

#[tokio::test]
async fn redis_down_fails_budgets_closed_and_rate_limits_over_to_local_ones() {
    let Some(binary) = redis_binary() else { return };
    let mut redis = RedisServer::start(&binary);
    let k = keyed(
        SimConfig::default(),
        false,
        &redis_config(&redis.url(), "closed"),
    )
    .await;
    let (_, budgeted) = k
        .issue(json!({"budget": {"usd": 100, "period": "day"}}))
        .await;
    let (_, plain) = k.issue(json!({})).await;
    assert_eq!(
        k.chat(&budgeted, &openai_chat("sim", "hi")).await.status(),
        200
    );

    redis.kill();
    let started = Instant::now();
    let resp = k.chat(&budgeted, &openai_chat("sim", "hi")).await;
    assert_eq!(resp.status(), 503);
    assert_eq!(json_of(resp).await["error"]["code"], "budget_unavailable");
    // Rate limits and the cache go on without Redis.
    let resp = post_json(
        &k.keel.url(),
        "/v1/chat/completions",
        &openai_chat("limited", "hi"),
        &[
            ("authorization", &format!("Bearer {plain}")),
            ("x-keel-cache", "use"),
        ],
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    let metrics = crate::metrics::scrape(&k.keel.url()).await;
    for op in ["reserve", "rate_limit", "cache"] {
        assert!(
            metrics.value("keel_redis_errors_total", &[("op", op)]) >= 1.0,
            "{op}"
        );
    }

    // Back: budgets work again, through the same connection handle.
    redis.restart();
    let deadline = Instant::now() + Duration::from_secs(10);
    while k.chat(&budgeted, &openai_chat("sim", "hi")).await.status() != 200 {
        assert!(Instant::now() < deadline, "budgets never recovered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn budgets_can_fail_open_instead() {
    let Some(binary) = redis_binary() else { return };
    let mut redis = RedisServer::start(&binary);
    let k = keyed(
        SimConfig::default(),
        false,
        &redis_config(&redis.url(), "open"),
    )
    .await;
    let (_, budgeted) = k
        .issue(json!({"budget": {"usd": 100, "period": "day"}}))
        .await;
    redis.kill();
    assert_eq!(
        k.chat(&budgeted, &openai_chat("sim", "hi")).await.status(),
        200
    );
}

#[tokio::test]
async fn replicas_share_the_response_cache() {
    let Some(binary) = redis_binary() else { return };
    let redis = RedisServer::start(&binary);
    let (server, sim) = keel_testkit::sim(SimConfig::default()).await;
    let config = format!(
        "[redis]\nurl = \"{}\"\n[providers.up]\nkind = \"openai\"\nbase_url = \"{}/v1\"\n\
         [models.m]\ntargets = [{{ provider = \"up\", model = \"x\" }}]\ncache_ttl = \"1m\"",
        redis.url(),
        server.url()
    );
    let (a, b) = (
        keel_testkit::keel(&config).await,
        keel_testkit::keel(&config).await,
    );
    let body = openai_chat("m", "the same question");
    let first = post_json(&a.url(), "/v1/chat/completions", &body, &[])
        .await
        .unwrap();
    assert_eq!(first.headers()["x-keel-cache"], "miss");
    let first = json_of(first).await;
    // The write to Redis is off the request path: the other replica sees it
    // moments later.
    let deadline = Instant::now() + Duration::from_secs(5);
    let second = loop {
        let resp = post_json(&b.url(), "/v1/chat/completions", &body, &[])
            .await
            .unwrap();
        if resp.headers()["x-keel-cache"] == "hit" {
            break json_of(resp).await;
        }
        assert!(
            Instant::now() < deadline,
            "never a hit on the other replica"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(first["choices"], second["choices"]);
    assert_eq!(sim.stats().requests, 1, "one upstream call, then hits only");
}

#[tokio::test]
async fn a_breaker_opened_on_one_replica_opens_on_the_others() {
    let Some(binary) = redis_binary() else { return };
    let redis = RedisServer::start(&binary);
    let (server, sim) = keel_testkit::sim(SimConfig {
        faults: vec![keel_config::FaultRule {
            rate: 1.0,
            fault: "status=503".to_owned(),
        }],
        ..SimConfig::default()
    })
    .await;
    let config = format!(
        "[redis]\nurl = \"{}\"\n[providers.up]\nkind = \"openai\"\nbase_url = \"{}/v1\"\n\
         resilience = {{ max_retries = 0, breaker = {{ consecutive_failures = 1, open_for = \"60s\" }} }}\n\
         [models.m]\ntargets = [{{ provider = \"up\", model = \"x\" }}]",
        redis.url(),
        server.url()
    );
    let (a, b) = (
        keel_testkit::keel(&config).await,
        keel_testkit::keel(&config).await,
    );
    let body = openai_chat("m", "hi");
    let resp = post_json(&a.url(), "/v1/chat/completions", &body, &[])
        .await
        .unwrap();
    assert_eq!(resp.status(), 502, "the upstream's 503");
    assert_eq!(sim.stats().requests, 1);
    // B learns within a sync or two, without a call of its own.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let metrics = crate::metrics::scrape(&b.url()).await;
        if metrics.value("keel_breaker_state", &[("provider", "up")]) == 2.0 {
            break;
        }
        assert!(Instant::now() < deadline, "B's breaker never opened");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let resp = post_json(&b.url(), "/v1/chat/completions", &body, &[])
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    assert_eq!(json_of(resp).await["error"]["code"], "no_available_target");
    assert_eq!(sim.stats().requests, 1, "B skipped the broken target");
}
