//! The reliability engine under real failure, over real HTTP on 127.0.0.1:
//! flaky, hanging, rate-limited and hard-down upstreams, retry budgets,
//! overload, broken streams, client disconnects and degradation, each
//! through both front doors. Every loop is bounded in count and time.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::post;
use futures::StreamExt;
use keel_config::{FaultRule, SimConfig};
use keel_testkit::Running;
use serde_json::{Value, json};

use crate::{client, sse};

/// Which protocol the client speaks.
#[derive(Clone, Copy, Debug)]
enum Door {
    OpenAi,
    Anthropic,
}

const DOORS: [Door; 2] = [Door::OpenAi, Door::Anthropic];

struct Reply {
    status: u16,
    provider: String,
    attempts: u32,
    body: String,
}

async fn ask(
    keel: &Running,
    door: Door,
    model: &str,
    stream: bool,
    headers: &[(&str, &str)],
) -> Reply {
    let (path, body) = match door {
        Door::OpenAi => (
            "/v1/chat/completions",
            json!({"model": model, "stream": stream,
            "messages": [{"role": "user", "content": "hello"}]}),
        ),
        Door::Anthropic => (
            "/v1/messages",
            json!({"model": model, "stream": stream, "max_tokens": 64,
            "messages": [{"role": "user", "content": "hello"}]}),
        ),
    };
    let mut req = client()
        .post(format!("{}{path}", keel.url()))
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&body).unwrap());
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.unwrap();
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    let (status, provider, attempts) = (
        resp.status().as_u16(),
        header("x-keel-provider"),
        header("x-keel-attempts"),
    );
    Reply {
        status,
        provider,
        attempts: attempts.parse().unwrap_or(0),
        body: resp.text().await.unwrap(),
    }
}

/// A stream that ended properly in its protocol.
fn stream_completed(door: Door, body: &str) -> bool {
    let events = sse(body);
    match door {
        Door::OpenAi => {
            events.last().is_some_and(|(_, d)| d == "[DONE]") && !body.contains("\"error\"")
        }
        Door::Anthropic => events
            .last()
            .is_some_and(|(e, _)| e.as_deref() == Some("message_stop")),
    }
}

/// An OpenAI-compatible upstream under the test's control: up or down
/// (503), counting the requests it sees.
struct Switch {
    down: Arc<AtomicBool>,
    requests: Arc<AtomicU64>,
    url: String,
}

async fn switch_upstream(down: bool) -> Switch {
    let down = Arc::new(AtomicBool::new(down));
    let requests = Arc::new(AtomicU64::new(0));
    let (d, r) = (Arc::clone(&down), Arc::clone(&requests));
    let app = Router::new().route(
        "/v1/chat/completions",
        post(move || {
            let (d, r) = (Arc::clone(&d), Arc::clone(&r));
            async move {
                r.fetch_add(1, Ordering::SeqCst);
                if d.load(Ordering::SeqCst) {
                    let body = json!({"error": {"message": "down for the test", "type": "server_error"}});
                    return (StatusCode::SERVICE_UNAVAILABLE, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response();
                }
                let body = json!({"id": "up", "object": "chat.completion", "created": 1, "model": "switch",
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": "from the switch"}, "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 1, "completion_tokens": 3, "total_tokens": 4}});
                ([(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    Switch {
        down,
        requests,
        url,
    }
}

fn faulty(fault: &str, rate: f64) -> SimConfig {
    SimConfig {
        seed: 7,
        faults: vec![FaultRule {
            rate,
            fault: fault.to_owned(),
        }],
        ..SimConfig::default()
    }
}

/// keel with model `m` = A then B, both OpenAI-protocol upstreams, and
/// `a_resilience` as A's `[resilience]` table body.
async fn chain(a_url: &str, b_url: &str, a_resilience: &str, model_extra: &str) -> Running {
    keel_testkit::keel(&format!(
        r#"
        [providers.a]
        kind = "openai"
        base_url = "{a_url}"
        [providers.a.resilience]
        {a_resilience}
        [providers.b]
        kind = "openai"
        base_url = "{b_url}"
        [models.m]
        targets = [{{ provider = "a", model = "a-model" }}, {{ provider = "b", model = "b-model" }}]
        {model_extra}
        "#
    ))
    .await
}

#[tokio::test]
async fn a_flaky_primary_is_retried_and_fallen_back_within_budget() {
    let (a, a_sim) = keel_testkit::sim(faulty("status=500", 0.3)).await;
    let (b, _b_sim) = keel_testkit::sim(SimConfig::default()).await;
    let keel = chain(
        &format!("{}/v1", a.url()),
        &format!("{}/v1", b.url()),
        "breaker = { enabled = false }",
        "",
    )
    .await;
    const REQUESTS: usize = 2000;
    let ok = AtomicU64::new(0);
    let keel = &keel;
    futures::stream::iter(0..REQUESTS)
        .for_each_concurrent(32, |i| {
            let ok = &ok;
            async move {
                let door = DOORS[i % 2];
                let reply = ask(keel, door, "m", false, &[]).await;
                if reply.status == 200 {
                    ok.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
        .await;
    let ok = ok.load(Ordering::Relaxed) as usize;
    assert!(ok * 1000 >= REQUESTS * 999, "{ok} of {REQUESTS} succeeded");
    // Every request tries A once; retries on A stay within the budget
    // (20 % of requests plus 1/s over a 10 s window).
    let a_requests = a_sim.stats().requests as usize;
    assert!(
        a_requests <= REQUESTS + REQUESTS / 5 + 10 + 5,
        "A saw {a_requests} calls"
    );
}

#[tokio::test]
async fn a_hanging_primary_is_abandoned_at_its_ttft_timeout() {
    let (a, _) = keel_testkit::sim(faulty("hang", 1.0)).await;
    let (b, _) = keel_testkit::sim(SimConfig::default()).await;
    let keel = chain(
        &format!("{}/v1", a.url()),
        &format!("{}/v1", b.url()),
        "ttft_timeout = \"300ms\"\nmax_retries = 0\nbreaker = { enabled = false }",
        "timeout = \"5s\"",
    )
    .await;
    for door in DOORS {
        for stream in [false, true] {
            let started = Instant::now();
            let reply = ask(&keel, door, "m", stream, &[]).await;
            let took = started.elapsed();
            assert_eq!(
                reply.status, 200,
                "{door:?} stream={stream}: {}",
                reply.body
            );
            assert_eq!(reply.provider, "b");
            assert_eq!(reply.attempts, 2);
            // TTFT timeout + B's answer + slack for a debug build.
            assert!(
                took < Duration::from_millis(300 + 1500),
                "{door:?} stream={stream}: {took:?}"
            );
            assert!(
                took >= Duration::from_millis(300),
                "gave up on A before its timeout: {took:?}"
            );
        }
    }
}

#[tokio::test]
async fn a_rate_limited_primary_is_waited_for_when_the_deadline_allows() {
    let (a, a_sim) = keel_testkit::sim(faulty("status=429,retry-after=1", 1.0)).await;
    let (b, _) = keel_testkit::sim(SimConfig::default()).await;
    let keel = chain(
        &format!("{}/v1", a.url()),
        &format!("{}/v1", b.url()),
        "max_retries = 1\nbreaker = { enabled = false }",
        "timeout = \"10s\"",
    )
    .await;
    for door in DOORS {
        // Room to wait: A is asked again after its Retry-After, then B.
        let before = a_sim.stats().requests;
        let started = Instant::now();
        let reply = ask(&keel, door, "m", false, &[]).await;
        assert_eq!(
            (reply.status, reply.provider.as_str(), reply.attempts),
            (200, "b", 3),
            "{}",
            reply.body
        );
        assert!(
            started.elapsed() >= Duration::from_secs(1),
            "did not wait as told"
        );
        assert_eq!(a_sim.stats().requests - before, 2);
        // No room: the client's deadline is shorter than Retry-After.
        let started = Instant::now();
        let reply = ask(&keel, door, "m", false, &[("x-keel-timeout", "800ms")]).await;
        assert_eq!(
            (reply.status, reply.provider.as_str(), reply.attempts),
            (200, "b", 2),
            "{}",
            reply.body
        );
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "waited past the deadline"
        );
    }
}

#[tokio::test]
async fn a_hard_down_target_opens_its_breaker_and_closes_once_it_recovers() {
    let a = switch_upstream(true).await;
    let (b, _) = keel_testkit::sim(SimConfig::default()).await;
    let keel = chain(
        &a.url,
        &format!("{}/v1", b.url()),
        "max_retries = 0\nbreaker = { consecutive_failures = 3, open_for = \"400ms\", half_open_probes = 1 }",
        "",
    )
    .await;
    for i in 0..3 {
        let reply = ask(&keel, DOORS[i % 2], "m", false, &[]).await;
        assert_eq!(
            (reply.status, reply.provider.as_str(), reply.attempts),
            (200, "b", 2)
        );
    }
    assert_eq!(a.requests.load(Ordering::SeqCst), 3);
    // Open: A is skipped at once, B answers.
    for i in 0..10 {
        let reply = ask(&keel, DOORS[i % 2], "m", i % 3 == 0, &[]).await;
        assert_eq!((reply.status, reply.provider.as_str()), (200, "b"));
    }
    assert_eq!(
        a.requests.load(Ordering::SeqCst),
        3,
        "an open breaker let calls through"
    );
    // A recovers; after open_for a probe reaches it and closes the breaker.
    a.down.store(false, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(500)).await;
    for door in DOORS {
        let reply = ask(&keel, door, "m", false, &[]).await;
        assert_eq!(
            (reply.status, reply.provider.as_str(), reply.attempts),
            (200, "a", 1)
        );
    }
}

#[tokio::test]
async fn the_retry_budget_stops_a_retry_storm() {
    let a = switch_upstream(true).await;
    let keel = keel_testkit::keel(&format!(
        r#"
        [providers.a]
        kind = "openai"
        base_url = "{}"
        [providers.a.resilience]
        max_retries = 3
        backoff_base = "1ms"
        backoff_max = "2ms"
        budget_ratio = 0.2
        budget_min_per_sec = 1
        budget_window = "10s"
        breaker = {{ enabled = false }}
        [models.m]
        targets = [{{ provider = "a", model = "x" }}]
        "#,
        a.url
    ))
    .await;
    const REQUESTS: u64 = 200;
    for i in 0..REQUESTS {
        let reply = ask(&keel, DOORS[i as usize % 2], "m", false, &[]).await;
        assert_eq!(reply.status, 502);
    }
    let calls = a.requests.load(Ordering::SeqCst);
    // Without a budget: 4 calls per request (800). With it: 1 + 20 % + the floor.
    assert!(
        calls <= REQUESTS + REQUESTS / 5 + 10 + 2,
        "{calls} upstream calls for {REQUESTS} requests"
    );
    assert!(calls > REQUESTS, "no retry at all");
}

#[tokio::test]
async fn overload_is_shed_fast_and_admitted_requests_stay_bounded() {
    let keel = keel_testkit::keel(
        r#"
        [server.admission]
        max_in_flight = 4
        queue = 2
        max_wait = "100ms"
        [providers.sim]
        kind = "sim"
        [models.m]
        targets = [{ provider = "sim", model = "x" }]
        "#,
    )
    .await;
    for door in DOORS {
        let keel = &keel;
        let replies: Vec<(u16, Duration, Option<String>)> = futures::future::join_all((0..16).map(|_| async move {
            let started = Instant::now();
            let (path, body) = match door {
                Door::OpenAi => ("/v1/chat/completions", json!({"model": "m", "messages": [{"role": "user", "content": "x"}]})),
                Door::Anthropic => ("/v1/messages", json!({"model": "m", "max_tokens": 8, "messages": [{"role": "user", "content": "x"}]})),
            };
            let resp = client()
                .post(format!("{}{path}", keel.url()))
                .header("x-keel-sim-fault", "latency=300ms")
                .body(serde_json::to_vec(&body).unwrap())
                .send()
                .await
                .unwrap();
            let retry_after = resp.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned());
            (resp.status().as_u16(), started.elapsed(), retry_after)
        }))
        .await;
        let ok: Vec<_> = replies.iter().filter(|r| r.0 == 200).collect();
        let shed: Vec<_> = replies.iter().filter(|r| r.0 == 503).collect();
        assert_eq!(ok.len() + shed.len(), 16, "{door:?}: {replies:?}");
        assert_eq!(
            ok.len(),
            4,
            "{door:?}: exactly the in-flight limit is admitted: {replies:?}"
        );
        for s in &shed {
            assert!(s.2.is_some(), "shed without Retry-After");
            assert!(
                s.1 < Duration::from_millis(300),
                "shedding was slow: {:?}",
                s.1
            );
        }
        for o in &ok {
            assert!(
                o.1 < Duration::from_millis(300 + 1000),
                "admitted request too slow: {:?}",
                o.1
            );
        }
    }
}

#[tokio::test]
async fn a_stream_that_fails_before_its_first_event_is_fallen_back_transparently() {
    let (a, _) = keel_testkit::sim(faulty("cut=0", 1.0)).await;
    let (b, _) = keel_testkit::sim(SimConfig::default()).await;
    let keel = chain(
        &format!("{}/v1", a.url()),
        &format!("{}/v1", b.url()),
        "max_retries = 0",
        "",
    )
    .await;
    for door in DOORS {
        let reply = ask(&keel, door, "m", true, &[]).await;
        assert_eq!(
            (reply.status, reply.provider.as_str(), reply.attempts),
            (200, "b", 2)
        );
        assert!(
            stream_completed(door, &reply.body),
            "{door:?}: {}",
            reply.body
        );
    }
}

#[tokio::test]
async fn a_client_that_goes_away_closes_the_upstream_call() {
    let (a, a_sim) = keel_testkit::sim(faulty("gap=200ms", 1.0)).await;
    let keel = keel_testkit::keel(&format!(
        "[providers.a]\nkind = \"openai\"\nbase_url = \"{}/v1\"\n[models.m]\ntargets = [{{ provider = \"a\", model = \"x\" }}]\n",
        a.url()
    ))
    .await;
    for (i, door) in DOORS.into_iter().enumerate() {
        let (path, body) = match door {
            Door::OpenAi => (
                "/v1/chat/completions",
                json!({"model": "m", "stream": true, "messages": [{"role": "user", "content": "a long one"}]}),
            ),
            Door::Anthropic => (
                "/v1/messages",
                json!({"model": "m", "stream": true, "max_tokens": 64, "messages": [{"role": "user", "content": "a long one"}]}),
            ),
        };
        let resp = client()
            .post(format!("{}{path}", keel.url()))
            .body(serde_json::to_vec(&body).unwrap())
            .send()
            .await
            .unwrap();
        let mut body = resp.bytes_stream();
        assert!(body.next().await.is_some(), "no first chunk");
        drop(body);
        let deadline = Instant::now() + Duration::from_secs(3);
        while a_sim.stats().disconnects < i as u64 + 1 {
            assert!(
                Instant::now() < deadline,
                "{door:?}: the upstream never saw the disconnect"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

#[tokio::test]
async fn when_every_target_fails_the_model_degrades_as_configured() {
    let a = switch_upstream(false).await;
    let stale = keel_testkit::keel(&format!(
        "[providers.a]\nkind = \"openai\"\nbase_url = \"{}\"\n[providers.a.resilience]\nmax_retries = 0\n\
         [models.m]\ntargets = [{{ provider = \"a\", model = \"x\" }}]\non_failure = \"stale\"\n",
        a.url
    ))
    .await;
    for door in DOORS {
        let fresh = ask(&stale, door, "m", false, &[]).await;
        assert_eq!(fresh.status, 200);
    }
    a.down.store(true, Ordering::SeqCst);
    for door in DOORS {
        let reply = ask(&stale, door, "m", false, &[]).await;
        assert_eq!(reply.status, 200, "{door:?}: {}", reply.body);
        assert!(reply.body.contains("from the switch"), "{}", reply.body);
        // A request never answered before has nothing stale: the error.
        let reply = ask(&stale, door, "m", true, &[("x-request-id", "new")]).await;
        assert!(
            reply.status == 200 && stream_completed(door, &reply.body),
            "stream replays the stale answer"
        );
    }

    let fixed = keel_testkit::keel(&format!(
        "[providers.a]\nkind = \"openai\"\nbase_url = \"{}\"\n[providers.a.resilience]\nmax_retries = 0\n\
         [models.m]\ntargets = [{{ provider = \"a\", model = \"x\" }}]\non_failure = \"static\"\n\
         static_message = \"We are busy; please try again shortly.\"\n",
        a.url
    ))
    .await;
    for door in DOORS {
        let reply = ask(&fixed, door, "m", false, &[]).await;
        assert_eq!(reply.status, 200);
        assert!(reply.body.contains("We are busy"), "{}", reply.body);
        let v: Value = serde_json::from_str(&reply.body).unwrap();
        assert!(v.get("id").is_some());
    }
    let plain = keel_testkit::keel(&format!(
        "[providers.a]\nkind = \"openai\"\nbase_url = \"{}\"\n[providers.a.resilience]\nmax_retries = 0\n\
         [models.m]\ntargets = [{{ provider = \"a\", model = \"x\" }}]\n",
        a.url
    ))
    .await;
    assert_eq!(ask(&plain, Door::OpenAi, "m", false, &[]).await.status, 502);
}

#[tokio::test]
async fn a_group_shares_load_by_weight_and_an_unhealthy_member_drops_out() {
    let a = switch_upstream(false).await;
    let b = switch_upstream(false).await;
    let keel = keel_testkit::keel(&format!(
        r#"
        [providers.a]
        kind = "openai"
        base_url = "{}"
        resilience = {{ max_retries = 0, breaker = {{ consecutive_failures = 2, open_for = "60s" }} }}
        [providers.b]
        kind = "openai"
        base_url = "{}"
        [models.m]
        balance = "weighted"
        targets = [
          {{ provider = "a", model = "x", group = "pool", weight = 1 }},
          {{ provider = "b", model = "x", group = "pool", weight = 3 }},
        ]
        "#,
        a.url, b.url
    ))
    .await;
    for i in 0..200 {
        assert_eq!(ask(&keel, DOORS[i % 2], "m", false, &[]).await.status, 200);
    }
    let (to_a, to_b) = (
        a.requests.load(Ordering::SeqCst),
        b.requests.load(Ordering::SeqCst),
    );
    assert_eq!(to_a + to_b, 200);
    assert!((30..=70).contains(&to_a), "weight 1 of 4 got {to_a} of 200");
    // A goes down: its calls fall back within the group, its breaker opens,
    // and then it gets nothing.
    a.down.store(true, Ordering::SeqCst);
    for i in 0..100 {
        let reply = ask(&keel, DOORS[i % 2], "m", false, &[]).await;
        assert_eq!((reply.status, reply.provider.as_str()), (200, "b"));
    }
    assert!(
        a.requests.load(Ordering::SeqCst) <= to_a + 2,
        "an open member kept getting calls"
    );
}

/// An OpenAI-compatible upstream that refuses every request with `status`
/// and `message`, as real providers word it.
async fn refusing_upstream(status: StatusCode, message: &'static str) -> String {
    let app = Router::new().route(
        "/v1/chat/completions",
        post(move || async move {
            let body = json!({"error": {"message": message, "type": "invalid_request_error", "code": null}});
            (status, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

#[tokio::test]
async fn context_length_errors_go_to_the_larger_target_and_other_400s_do_not() {
    let small = refusing_upstream(
        StatusCode::BAD_REQUEST,
        "This model's maximum context length is 8192 tokens",
    )
    .await;
    let wrong = refusing_upstream(StatusCode::BAD_REQUEST, "Invalid value for 'temperature'").await;
    let (large, large_sim) = keel_testkit::sim(SimConfig::default()).await;
    let large = format!("{}/v1", large.url());
    for door in DOORS {
        let keel = chain(&small, &large, "", "").await;
        let reply = ask(&keel, door, "m", false, &[]).await;
        assert_eq!(
            (reply.status, reply.provider.as_str(), reply.attempts),
            (200, "b", 2),
            "{}",
            reply.body
        );
        // A request the upstream rejects for itself: no retry, no fallback.
        let before = large_sim.stats().requests;
        let keel = chain(&wrong, &large, "", "").await;
        let reply = ask(&keel, door, "m", false, &[]).await;
        assert_eq!((reply.status, reply.attempts), (400, 1), "{}", reply.body);
        assert_eq!(
            large_sim.stats().requests,
            before,
            "fell back on the client's own error"
        );
    }
}

#[tokio::test]
async fn a_stream_that_goes_quiet_ends_with_an_error_event_at_the_idle_timeout() {
    let (a, _) = keel_testkit::sim(faulty("gap=2s", 1.0)).await;
    let keel = keel_testkit::keel(&format!(
        "[providers.a]\nkind = \"openai\"\nbase_url = \"{}/v1\"\nresilience = {{ idle_timeout = \"200ms\" }}\n\
         [models.m]\ntargets = [{{ provider = \"a\", model = \"x\" }}]\n",
        a.url()
    ))
    .await;
    for door in DOORS {
        let started = Instant::now();
        let reply = ask(&keel, door, "m", true, &[]).await;
        assert_eq!(
            reply.status, 200,
            "the first event arrived: the stream was committed"
        );
        assert!(!stream_completed(door, &reply.body), "{}", reply.body);
        assert!(
            reply.body.contains("error"),
            "no terminal error event: {}",
            reply.body
        );
        assert!(
            started.elapsed() < Duration::from_millis(2000),
            "waited for the upstream, not the idle timeout"
        );
    }
}

#[tokio::test]
async fn no_request_outlives_its_deadline() {
    let (a, _) = keel_testkit::sim(faulty("hang", 1.0)).await;
    let keel = keel_testkit::keel(&format!(
        "[providers.a]\nkind = \"openai\"\nbase_url = \"{}/v1\"\nresilience = {{ breaker = {{ enabled = false }} }}\n\
         [models.m]\ntargets = [{{ provider = \"a\", model = \"x\" }}]\ntimeout = \"400ms\"\n",
        a.url()
    ))
    .await;
    for door in DOORS {
        for stream in [false, true] {
            let started = Instant::now();
            let reply = ask(&keel, door, "m", stream, &[]).await;
            let took = started.elapsed();
            assert_eq!(
                reply.status, 504,
                "{door:?} stream={stream}: {}",
                reply.body
            );
            assert!(
                took >= Duration::from_millis(400) && took < Duration::from_millis(400 + 300),
                "{took:?}"
            );
        }
        // The client may shorten it.
        let started = Instant::now();
        let reply = ask(&keel, door, "m", false, &[("x-keel-timeout", "150ms")]).await;
        assert_eq!(reply.status, 504);
        assert!(
            started.elapsed() < Duration::from_millis(400),
            "the client's shorter deadline was ignored"
        );
    }
}
