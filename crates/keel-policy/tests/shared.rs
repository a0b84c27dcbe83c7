//! `keel_policy::shared` against a real Redis.
//!
//! `KEEL_TEST_REDIS_URL` is the server every test shares (each under a key
//! prefix of its own); `KEEL_TEST_REDIS_SERVER` is the `redis-server` binary,
//! for the test that starts, kills and restarts a server of its own.
//! `scripts/redis start` prints both. Unset, the tests are skipped — unless
//! `CI` is set, where they fail.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use keel_policy::ledger::{LocalLedger, Micros, ScopeWindow, Settled, Short};
use keel_policy::shared::{Shared, SharedConfig, SharedError};
use redis_server::RedisServer;

/// keel-testkit's helper, included rather than depended on (keel-testkit
/// depends on this crate through keel-server).
#[path = "../../keel-testkit/src/redis.rs"]
mod redis_server;

const TIMEOUT: Duration = Duration::from_secs(2);
const HOUR: Duration = Duration::from_secs(3600);

/// The variable's value; `None` (and a line saying the test was skipped)
/// when unset, or a failure under CI.
fn setting(name: &str) -> Option<String> {
    if let Some(v) = std::env::var(name).ok().filter(|v| !v.is_empty()) {
        return Some(v);
    }
    if std::env::var_os("CI").is_some() {
        panic!(
            "{name} is not set, and CI must run the Redis tests: eval \"$(scripts/redis start)\" first"
        );
    }
    println!("skipped: {name} is not set (eval \"$(scripts/redis start)\" to run the Redis tests)");
    None
}

/// A key prefix no other test (or run) uses.
fn prefix(test: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("keel-test:{test}:{}:{nanos}", std::process::id())
}

fn shared(url: &str, prefix: &str, timeout: Duration) -> Shared {
    Shared::new(&SharedConfig {
        url: url.to_owned(),
        timeout,
        prefix: prefix.to_owned(),
    })
    .unwrap()
}

/// A handle on the shared test server, under a fresh prefix.
fn connect(test: &str) -> Option<Shared> {
    let url = setting("KEEL_TEST_REDIS_URL")?;
    Some(shared(&url, &prefix(test), TIMEOUT))
}

fn scope(name: &str, limit: Micros, window: &[&str]) -> ScopeWindow {
    ScopeWindow {
        scope: name.to_owned(),
        limit,
        window: window.iter().map(|b| (*b).to_owned()).collect(),
        current: (*window.last().unwrap()).to_owned(),
        keep: HOUR,
    }
}

/// One ledger operation, and what it returned.
#[derive(Debug)]
enum Op {
    Reserve(&'static str, Micros, Vec<ScopeWindow>),
    Settle(&'static str, Micros, Vec<ScopeWindow>),
    Usage(ScopeWindow),
}

#[derive(Debug, PartialEq)]
enum Outcome {
    Reserved(Result<(), Short>),
    Settled(Vec<Settled>),
    Usage(Micros, Micros),
}

fn run_local(ledger: &LocalLedger, op: &Op) -> Outcome {
    match op {
        Op::Reserve(hold, amount, scopes) => {
            Outcome::Reserved(ledger.reserve(hold, *amount, scopes, HOUR))
        }
        Op::Settle(hold, actual, scopes) => Outcome::Settled(ledger.settle(hold, *actual, scopes)),
        Op::Usage(scope) => {
            let (spent, reserved) = ledger.usage(scope);
            Outcome::Usage(spent, reserved)
        }
    }
}

async fn run_shared(shared: &Shared, op: &Op) -> Outcome {
    match op {
        Op::Reserve(hold, amount, scopes) => {
            Outcome::Reserved(shared.reserve(hold, *amount, scopes, HOUR).await.unwrap())
        }
        Op::Settle(hold, actual, scopes) => {
            Outcome::Settled(shared.settle(hold, *actual, scopes).await.unwrap())
        }
        Op::Usage(scope) => {
            let (spent, reserved) = shared.usage(scope).await.unwrap();
            Outcome::Usage(spent, reserved)
        }
    }
}

#[tokio::test]
async fn the_ledger_behaves_like_the_local_one() {
    let Some(shared) = connect("ledger") else {
        return;
    };
    // A key with a rolling 3-day window, inside a team with a monthly cap;
    // days go by as the script runs. Names with odd characters on purpose.
    let key = |days: &[&str]| scope("key:k 1/ä", 1_000, days);
    let team = |month: &str| scope("team:{ops}", 1_500, &[month]);
    let d1 = key(&["2026-11-01"]);
    let d2 = key(&["2026-11-01", "2026-11-02"]);
    let d3 = key(&["2026-11-01", "2026-11-02", "2026-11-03"]);
    let d4 = key(&["2026-11-02", "2026-11-03", "2026-11-04"]);
    let d6 = key(&["2026-11-04", "2026-11-05", "2026-11-06"]);
    let nov = team("2026-11");
    let dec = team("2026-12");
    let script = vec![
        Op::Usage(d1.clone()),
        Op::Reserve("a", 400, vec![d1.clone(), nov.clone()]),
        Op::Reserve("b", 500, vec![d1.clone(), nov.clone()]),
        // Refused by the key (400 + 500 held): nothing held, not even on the team.
        Op::Reserve("c", 200, vec![nov.clone(), d1.clone()]),
        Op::Usage(nov.clone()),
        Op::Settle("a", 300, vec![d1.clone(), nov.clone()]),
        Op::Usage(d1.clone()),
        // A hold settled before books nothing (a retried settle is safe);
        // one that never was held still books.
        Op::Settle("a", 50, vec![d1.clone(), nov.clone()]),
        Op::Settle("z", 50, vec![d1.clone(), nov.clone()]),
        Op::Settle("b", -7, vec![d2.clone(), nov.clone()]),
        // One over the key's cap, then exactly at it.
        Op::Reserve("d", 651, vec![d2.clone(), nov.clone()]),
        Op::Reserve("d", 650, vec![d2.clone(), nov.clone()]),
        Op::Reserve("e", 1, vec![d2.clone()]),
        Op::Settle("d", 600, vec![d3.clone(), nov.clone()]),
        Op::Usage(d3.clone()),
        // Day 1 leaves the window: its 350 no longer count.
        Op::Usage(d4.clone()),
        Op::Reserve("f", 401, vec![d4.clone(), nov.clone()]),
        Op::Reserve("f", 390, vec![d4.clone(), nov.clone()]),
        Op::Settle("f", 390, vec![d4.clone(), nov.clone()]),
        Op::Reserve("g", 1, vec![d4.clone(), nov.clone()]),
        // A new month starts from zero; the key still remembers day 4, and
        // buckets older than a window are dropped.
        Op::Reserve("h", 9, vec![d6.clone(), dec.clone()]),
        Op::Settle("h", 9, vec![d6.clone(), dec.clone()]),
        Op::Usage(d6.clone()),
        Op::Usage(d4.clone()),
        Op::Usage(dec.clone()),
        Op::Settle("e", 0, vec![d6.clone()]),
        Op::Settle("g", 5, vec![]),
        Op::Reserve("i", 5, vec![]),
        Op::Usage(d6.clone()),
    ];
    let local = LocalLedger::default();
    let mut refusals = 0;
    for (step, op) in script.iter().enumerate() {
        let want = run_local(&local, op);
        refusals += usize::from(matches!(want, Outcome::Reserved(Err(_))));
        assert_eq!(run_shared(&shared, op).await, want, "step {step}: {op:?}");
    }
    // The script does exercise refusals.
    assert_eq!(refusals, 4);

    // The comparison compares something: day 4's 390 and day 6's 9, and
    // hold g still live (its settle named no scope).
    assert_eq!(shared.usage(&d6).await.unwrap(), (399, 1));
}

#[tokio::test]
async fn a_refusal_names_the_first_short_scope_and_holds_nothing() {
    let Some(shared) = connect("refusal") else {
        return;
    };
    let roomy = scope("roomy", 1_000, &["b"]);
    let tight = scope("tight", 100, &["b"]);
    shared
        .settle("x", 60, std::slice::from_ref(&tight))
        .await
        .unwrap();
    shared
        .reserve("h1", 30, std::slice::from_ref(&tight), HOUR)
        .await
        .unwrap()
        .unwrap();
    let refused = shared
        .reserve("h2", 20, &[roomy.clone(), tight.clone()], HOUR)
        .await
        .unwrap();
    assert_eq!(
        refused,
        Err(Short {
            index: 1,
            spent: 60,
            reserved: 30
        })
    );
    assert_eq!(shared.usage(&roomy).await.unwrap(), (0, 0));
    assert_eq!(shared.usage(&tight).await.unwrap(), (60, 30));
    // Exactly full is fine.
    shared
        .reserve("h2", 10, &[roomy.clone(), tight.clone()], HOUR)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(shared.usage(&roomy).await.unwrap(), (0, 10));
    let settled = shared
        .settle("h2", 8, &[roomy.clone(), tight.clone()])
        .await
        .unwrap();
    assert_eq!(
        settled,
        vec![
            Settled {
                before: 0,
                after: 8
            },
            Settled {
                before: 60,
                after: 68
            }
        ]
    );
    assert_eq!(shared.usage(&tight).await.unwrap(), (68, 30));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_reserves_across_replicas_never_pass_the_cap() {
    let Some(url) = setting("KEEL_TEST_REDIS_URL") else {
        return;
    };
    let prefix = prefix("concurrent");
    let replicas: Vec<Shared> = (0..4).map(|_| shared(&url, &prefix, TIMEOUT)).collect();
    let budget = scope("team:all", 500, &["2026-11"]);
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let replica = replicas[i % replicas.len()].clone();
            let budget = budget.clone();
            tokio::spawn(async move {
                replica
                    .reserve(&format!("hold-{i}"), 10, &[budget], HOUR)
                    .await
                    .unwrap()
                    .is_ok()
            })
        })
        .collect();
    let mut held = 0;
    for task in tasks {
        held += usize::from(task.await.unwrap());
    }
    assert_eq!(held, 50);
    assert_eq!(replicas[0].usage(&budget).await.unwrap(), (0, 500));
}

#[tokio::test]
async fn an_expired_hold_stops_counting() {
    let Some(shared) = connect("expiry") else {
        return;
    };
    let budget = [scope("key:short", 150, &["d"])];
    let short_lived = Duration::from_millis(400);
    shared
        .reserve("brief", 100, &budget, short_lived)
        .await
        .unwrap()
        .unwrap();
    shared
        .reserve("long", 10, &budget, HOUR)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        shared.reserve("next", 100, &budget, HOUR).await.unwrap(),
        Err(Short {
            index: 0,
            spent: 0,
            reserved: 110
        })
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    // The short hold is gone; the long one (same key) is not.
    assert_eq!(shared.usage(&budget[0]).await.unwrap(), (0, 10));
    shared
        .reserve("next", 100, &budget, HOUR)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(shared.usage(&budget[0]).await.unwrap(), (0, 110));
}

#[tokio::test]
async fn gcra_admits_a_minute_s_burst_shared_by_all_replicas() {
    let Some(url) = setting("KEEL_TEST_REDIS_URL") else {
        return;
    };
    let prefix = prefix("gcra");
    let (a, b) = (
        shared(&url, &prefix, TIMEOUT),
        shared(&url, &prefix, TIMEOUT),
    );
    // Three a minute, taken from two replicas.
    assert_eq!(a.gcra("model:m:rpm", 3, 1).await.unwrap(), Ok(()));
    assert_eq!(b.gcra("model:m:rpm", 3, 1).await.unwrap(), Ok(()));
    // Cost 0 counts as 1.
    assert_eq!(a.gcra("model:m:rpm", 3, 0).await.unwrap(), Ok(()));
    for replica in [&a, &b] {
        let retry_after = replica
            .gcra("model:m:rpm", 3, 1)
            .await
            .unwrap()
            .unwrap_err();
        assert!(
            retry_after > Duration::ZERO && retry_after <= Duration::from_secs(20),
            "{retry_after:?}"
        );
    }
    // Another limit is untouched.
    assert_eq!(b.gcra("model:n:rpm", 3, 1).await.unwrap(), Ok(()));

    // Weighted: 1000 a minute, 600 then 600 refused, 300 still fits.
    assert_eq!(a.gcra("tpm", 1000, 600).await.unwrap(), Ok(()));
    let retry_after = b.gcra("tpm", 1000, 600).await.unwrap().unwrap_err();
    // 200 units short at 1000 a minute: 12 s.
    assert!(
        retry_after > Duration::from_secs(11) && retry_after <= Duration::from_secs(12),
        "{retry_after:?}"
    );
    assert_eq!(b.gcra("tpm", 1000, 300).await.unwrap(), Ok(()));
    // More than a minute's worth never fits.
    assert_eq!(
        a.gcra("tpm", 1000, 5000).await.unwrap(),
        Err(Duration::from_secs(60))
    );
}

#[tokio::test]
async fn cached_bytes_round_trip_and_expire() {
    let Some(shared) = connect("cache") else {
        return;
    };
    let (key, other) = ([7u8; 32], [8u8; 32]);
    let value = b"{\"id\":1}\x00\xff binary too".to_vec();
    assert_eq!(shared.cache_get(&key).await.unwrap(), None);
    shared.cache_put(&key, &value, HOUR).await.unwrap();
    assert_eq!(shared.cache_get(&key).await.unwrap(), Some(value.clone()));
    assert_eq!(shared.cache_get(&other).await.unwrap(), None);

    shared
        .cache_put(&other, b"brief", Duration::from_millis(400))
        .await
        .unwrap();
    assert_eq!(
        shared.cache_get(&other).await.unwrap().as_deref(),
        Some(&b"brief"[..])
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(shared.cache_get(&other).await.unwrap(), None);
    assert_eq!(shared.cache_get(&key).await.unwrap(), Some(value));
}

/// Every call of a `Shared` fails with `Unavailable`, each within `bound`.
async fn all_unavailable(shared: &Shared, bound: Duration) {
    let budget = [scope("key:x", 100, &["d"])];
    unavailable(shared.ping(), bound).await;
    unavailable(shared.gcra("rpm", 10, 1), bound).await;
    unavailable(shared.reserve("h", 1, &budget, HOUR), bound).await;
    unavailable(shared.settle("h", 1, &budget), bound).await;
    unavailable(shared.usage(&budget[0]), bound).await;
    unavailable(shared.cache_get(&[0; 32]), bound).await;
    unavailable(shared.cache_put(&[0; 32], b"v", HOUR), bound).await;
}

async fn unavailable<T: std::fmt::Debug>(
    call: impl Future<Output = Result<T, SharedError>>,
    bound: Duration,
) {
    let started = Instant::now();
    let result = call.await;
    let elapsed = started.elapsed();
    assert!(
        matches!(result, Err(SharedError::Unavailable(_))),
        "{result:?}"
    );
    assert!(
        elapsed < bound,
        "failed after {elapsed:?}, not within {bound:?}"
    );
}

/// A port on 127.0.0.1 that nothing listens on (a moment ago).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn a_server_that_is_down_or_mute_fails_fast() {
    let timeout = Duration::from_millis(250);
    // Nothing listens: refused at once.
    let down = shared(
        &format!("redis://127.0.0.1:{}", free_port()),
        "keel-test:down",
        timeout,
    );
    all_unavailable(&down, Duration::from_secs(2)).await;

    // Accepts connections (the kernel does, into the backlog) and never
    // answers: every call ends at the timeout.
    let mute = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mute_url = format!("redis://127.0.0.1:{}", mute.local_addr().unwrap().port());
    let started = Instant::now();
    let error = shared(&mute_url, "keel-test:mute", timeout).ping().await;
    assert!(
        matches!(&error, Err(SharedError::Unavailable(m)) if m.contains("timed out")),
        "{error:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(2));
    all_unavailable(
        &shared(&mute_url, "keel-test:mute", timeout),
        Duration::from_secs(2),
    )
    .await;

    // An unparsable URL is the one thing `new` refuses.
    assert!(
        Shared::new(&SharedConfig {
            url: "http://nope".to_owned(),
            timeout,
            prefix: "p".to_owned(),
        })
        .is_err()
    );
}

/// Retries `ping` until it succeeds; fails the test after 10 s.
async fn wait_up(shared: &Shared) {
    let started = Instant::now();
    while let Err(e) = shared.ping().await {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "not back after 10 s: {e}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_restarted_server_is_used_again_without_a_new_handle() {
    let Some(binary) = setting("KEEL_TEST_REDIS_SERVER") else {
        return;
    };
    let mut server = RedisServer::start(&binary);
    server.kill();
    let shared = shared(&server.url(), &prefix("restart"), Duration::from_secs(1));
    let budget = [scope("key:r", 100, &["d"])];

    // Down at first: calls fail, and keep trying.
    all_unavailable(&shared, Duration::from_secs(2)).await;
    server.restart();
    wait_up(&shared).await;
    assert_eq!(shared.gcra("rpm", 1, 1).await.unwrap(), Ok(()));
    assert!(shared.gcra("rpm", 1, 1).await.unwrap().is_err());
    shared
        .reserve("h", 40, &budget, HOUR)
        .await
        .unwrap()
        .unwrap();

    // Killed mid-use: calls fail promptly.
    server.kill();
    all_unavailable(&shared, Duration::from_secs(2)).await;

    // Back (empty: no persistence): the same handle works again, the
    // scripts loaded anew.
    server.restart();
    wait_up(&shared).await;
    assert_eq!(shared.usage(&budget[0]).await.unwrap(), (0, 0));
    assert_eq!(shared.gcra("rpm", 1, 1).await.unwrap(), Ok(()));
    shared
        .reserve("h", 40, &budget, HOUR)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        shared.settle("h", 30, &budget).await.unwrap(),
        vec![Settled {
            before: 0,
            after: 30
        }]
    );
}
