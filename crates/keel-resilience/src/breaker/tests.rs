//! Circuit-breaker tests, all under paused time.

use super::*;
use tokio::time::advance;

fn config() -> BreakerConfig {
    BreakerConfig {
        consecutive_failures: 3,
        failure_ratio: 0.5,
        min_requests: 10,
        window: Duration::from_secs(10),
        open_for: Duration::from_secs(30),
        half_open_probes: 2,
    }
}

fn fail(breaker: &Breaker, n: usize) {
    for _ in 0..n {
        breaker
            .try_acquire()
            .expect("closed breaker lets calls through")
            .failure();
    }
}

fn succeed(breaker: &Breaker, n: usize) {
    for _ in 0..n {
        breaker
            .try_acquire()
            .expect("closed breaker lets calls through")
            .success();
    }
}

/// A breaker opened by 3 consecutive failures, now half-open.
async fn half_open(config: BreakerConfig) -> Breaker {
    let breaker = Breaker::new("t", config);
    fail(&breaker, 3);
    advance(Duration::from_secs(30)).await;
    assert_eq!(breaker.state(), State::HalfOpen);
    breaker
}

#[test]
fn permit_is_send_static_and_breaker_sync() {
    fn send_static<T: Send + 'static>() {}
    fn send_sync<T: Send + Sync>() {}
    send_static::<BreakerPermit>();
    send_sync::<Breaker>();
}

#[tokio::test(start_paused = true)]
async fn opens_after_consecutive_failures() {
    let breaker = Breaker::new("t", config());
    fail(&breaker, 2);
    assert_eq!(breaker.state(), State::Closed);
    fail(&breaker, 1);
    assert_eq!(breaker.state(), State::Open);
    assert!(breaker.try_acquire().is_none());
}

#[tokio::test(start_paused = true)]
async fn success_resets_the_consecutive_count() {
    let breaker = Breaker::new("t", config());
    fail(&breaker, 2);
    succeed(&breaker, 1);
    fail(&breaker, 2);
    let snapshot = breaker.snapshot();
    assert_eq!(snapshot.state, State::Closed);
    assert_eq!(snapshot.consecutive_failures, 2);
    assert_eq!((snapshot.window_requests, snapshot.window_failures), (5, 4));
}

#[tokio::test(start_paused = true)]
async fn opens_on_ratio_only_with_min_requests() {
    let breaker = Breaker::new(
        "t",
        BreakerConfig {
            consecutive_failures: 0,
            ..config()
        },
    );
    for _ in 0..4 {
        succeed(&breaker, 1);
        fail(&breaker, 1);
    }
    fail(&breaker, 1);
    // 5 of 9 failed: over the ratio, but under min_requests.
    assert_eq!(breaker.state(), State::Closed);
    fail(&breaker, 1);
    assert_eq!(breaker.state(), State::Open, "6 of 10 failed");
}

#[tokio::test(start_paused = true)]
async fn stays_open_for_open_for_then_lets_probes_through() {
    let breaker = Breaker::new("t", config());
    fail(&breaker, 3);
    advance(Duration::from_secs(29)).await;
    assert!(breaker.try_acquire().is_none());
    assert_eq!(breaker.state(), State::Open);
    advance(Duration::from_secs(1)).await;
    assert_eq!(breaker.state(), State::HalfOpen);
    let probes = [breaker.try_acquire(), breaker.try_acquire()];
    assert!(probes.iter().all(Option::is_some), "half_open_probes = 2");
    assert!(breaker.try_acquire().is_none(), "every probe slot taken");
}

#[tokio::test(start_paused = true)]
async fn probe_success_closes_and_probe_failure_reopens() {
    let breaker = half_open(config()).await;
    breaker.try_acquire().expect("probe").failure();
    assert_eq!(breaker.state(), State::Open);
    advance(Duration::from_secs(29)).await;
    assert!(
        breaker.try_acquire().is_none(),
        "reopened for another open_for"
    );
    advance(Duration::from_secs(1)).await;
    breaker.try_acquire().expect("probe").success();
    let snapshot = breaker.snapshot();
    assert_eq!(snapshot.state, State::Closed);
    assert_eq!(
        (snapshot.consecutive_failures, snapshot.window_requests),
        (0, 0)
    );
    assert_eq!(
        snapshot.opened_total, 2,
        "opened, then reopened by the failed probe"
    );
    fail(&breaker, 2);
    assert_eq!(
        breaker.state(),
        State::Closed,
        "old failures were forgotten"
    );
}

#[tokio::test(start_paused = true)]
async fn dropped_probe_frees_its_slot_and_counts_as_nothing() {
    let breaker = half_open(BreakerConfig {
        half_open_probes: 1,
        ..config()
    })
    .await;
    let probe = breaker.try_acquire().expect("probe");
    assert!(breaker.try_acquire().is_none());
    drop(probe);
    assert_eq!(breaker.state(), State::HalfOpen);
    assert!(breaker.try_acquire().is_some(), "the slot was freed");
}

#[tokio::test(start_paused = true)]
async fn outcome_from_before_a_state_change_is_ignored() {
    let breaker = Breaker::new("t", config());
    let old = breaker.try_acquire().expect("closed");
    fail(&breaker, 3);
    advance(Duration::from_secs(30)).await;
    old.success();
    assert_eq!(
        breaker.state(),
        State::HalfOpen,
        "a closed-era call is no probe"
    );
}

#[tokio::test(start_paused = true)]
async fn window_slides_and_forgets_old_failures() {
    let ratio_only = BreakerConfig {
        consecutive_failures: 0,
        min_requests: 4,
        ..config()
    };
    let recent = Breaker::new("recent", ratio_only.clone());
    let aged = Breaker::new("aged", ratio_only);
    fail(&recent, 3);
    fail(&aged, 3);
    advance(Duration::from_secs(5)).await;
    fail(&recent, 1);
    assert_eq!(recent.state(), State::Open, "4 of 4 within the window");
    advance(Duration::from_secs(6)).await;
    assert_eq!(aged.snapshot().window_failures, 0);
    fail(&aged, 1);
    assert_eq!(
        aged.state(),
        State::Closed,
        "1 of 1 in the window, under min_requests"
    );
}

#[tokio::test(start_paused = true)]
async fn snapshot_reports_open_then_half_open() {
    let breaker = Breaker::new("t", config());
    fail(&breaker, 3);
    let snapshot = breaker.snapshot();
    assert_eq!(snapshot.state, State::Open);
    assert_eq!(snapshot.consecutive_failures, 3);
    advance(Duration::from_secs(30)).await;
    assert_eq!(breaker.snapshot().state, State::HalfOpen);
}

#[tokio::test(start_paused = true)]
async fn another_replica_s_open_breaker_opens_this_one_for_what_is_left() {
    let breaker = Breaker::new("t", config());
    assert_eq!(breaker.open_remaining(), None);
    breaker.open_for(Duration::from_secs(10), "open on another replica");
    assert_eq!(breaker.state(), State::Open);
    assert!(breaker.try_acquire().is_none());
    assert_eq!(breaker.open_remaining(), Some(Duration::from_secs(10)));
    assert_eq!(breaker.snapshot().opened_total, 1);
    // Already open: a second notice changes nothing.
    breaker.open_for(Duration::from_secs(30), "again");
    assert_eq!(breaker.open_remaining(), Some(Duration::from_secs(10)));
    advance(Duration::from_secs(10)).await;
    assert_eq!(breaker.state(), State::HalfOpen);
    // A half-open breaker is opened too (the other replica's probe failed).
    breaker.open_for(Duration::from_secs(5), "probe failed elsewhere");
    assert_eq!(breaker.open_remaining(), Some(Duration::from_secs(5)));
}
