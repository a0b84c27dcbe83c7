//! Store API checks, run on both backends by `sqlite` and `postgres`.

use std::time::Duration;

use keel_store::{
    Feedback, Filter, KeySettings, RequestRecord, Retention, StatusFilter, Store, VirtualKey,
};

use crate::{ids, rec, rich};

pub async fn round_trip(store: &Store) {
    let records = vec![rich("a", 1_000), rec("b", 2_000), rich("c", 3_000)];
    store.insert(&records).await.unwrap();
    for r in &records {
        assert_eq!(
            store.get(&r.id).await.unwrap().as_ref(),
            Some(r),
            "{}",
            r.id
        );
    }
    assert_eq!(store.get("missing").await.unwrap(), None);
    assert!(store.exists("b").await.unwrap());
    assert!(!store.exists("missing").await.unwrap());
    store.insert(&[]).await.unwrap();
    assert_eq!(store.list(&Filter::default()).await.unwrap(), {
        let mut newest_first = records.clone();
        newest_first.reverse();
        newest_first
    });
}

/// A batch of more rows than one INSERT statement takes.
pub async fn large_batch(store: &Store) {
    let records: Vec<_> = (0..1_200).map(|i| rec(&format!("r{i:04}"), i)).collect();
    store.insert(&records).await.unwrap();
    let all = store.list(&Filter::default()).await.unwrap();
    assert_eq!(all.len(), 1_200);
    assert_eq!(all[0], records[1_199]);
}

/// A reused id is skipped; the rest of the batch is stored.
pub async fn duplicate_ids(store: &Store) {
    // A client may reuse a request id: every request keeps its row, and
    // `get` gives the latest.
    store.insert(&[rec("dup", 1_000)]).await.unwrap();
    let mut again = rec("dup", 9_000);
    again.model = "other".to_owned();
    store.insert(&[again, rec("fresh", 2_000)]).await.unwrap();
    let latest = store.get("dup").await.unwrap().unwrap();
    assert_eq!((latest.model.as_str(), latest.time_ms), ("other", 9_000));
    assert!(store.exists("fresh").await.unwrap());

    // Twice in the same batch: both kept.
    store
        .insert(&[rec("twice", 1), rec("twice", 2), rec("once", 3)])
        .await
        .unwrap();
    assert_eq!(store.get("twice").await.unwrap().unwrap().time_ms, 2);
    let all = store
        .list(&Filter {
            text: Some("twice".to_owned()),
            ..Filter::default()
        })
        .await
        .unwrap();
    assert_eq!(all.len(), 2);
    assert!(store.exists("once").await.unwrap());
}

pub async fn feedback(store: &Store) {
    store
        .insert(&[rec("fb", 1_000), rec("other", 1_500)])
        .await
        .unwrap();
    let first = Feedback {
        request_id: "fb".to_owned(),
        time_ms: 2_000,
        score: Some(0.75),
        label: Some("good".to_owned()),
        comment: None,
    };
    let second = Feedback {
        request_id: "fb".to_owned(),
        time_ms: 3_000,
        score: None,
        label: None,
        comment: Some("right answer, too long".to_owned()),
    };
    // Added newest first: read back oldest first.
    store.add_feedback(&second).await.unwrap();
    store.add_feedback(&first).await.unwrap();
    let got = store.get("fb").await.unwrap().unwrap();
    assert_eq!(got.feedback, vec![first.clone(), second.clone()]);

    let listed = store.list(&Filter::default()).await.unwrap();
    assert_eq!(ids(&listed), ["other", "fb"]);
    assert!(listed[0].feedback.is_empty());
    assert_eq!(listed[1].feedback, vec![first, second]);

    // Feedback may arrive while the record is still queued in the writer.
    let early = Feedback {
        request_id: "later".to_owned(),
        time_ms: 5,
        label: Some("bad".to_owned()),
        ..Feedback::default()
    };
    store.add_feedback(&early).await.unwrap();
    assert_eq!(store.get("later").await.unwrap(), None);
    store.insert(&[rec("later", 4)]).await.unwrap();
    assert_eq!(
        store.get("later").await.unwrap().unwrap().feedback,
        vec![early]
    );
}

/// Six requests to filter:
/// r1 gpt 200 k1 openai/gpt-4o input "Hello World"
/// r2 gpt 429 k2 error "Rate limited by upstream"
/// r3 claude 500 anthropic/claude error "boom: 50%_off"
/// r4 claude 404 error "code 500 upstream"
/// r5 gpt 201 output "The ANSWER is 42"
/// r6 gpt 200, same time as r5
pub async fn list_filters(store: &Store) {
    let mut r1 = rec("r1", 1_000);
    r1.key_id = Some("k1".to_owned());
    r1.target = Some("openai/gpt-4o".to_owned());
    r1.input = Some("Hello World".to_owned());
    let mut r2 = rec("r2", 2_000);
    r2.key_id = Some("k2".to_owned());
    r2.status = 429;
    r2.error = Some("Rate limited by upstream".to_owned());
    let mut r3 = rec("r3", 3_000);
    r3.model = "claude".to_owned();
    r3.status = 500;
    r3.target = Some("anthropic/claude".to_owned());
    r3.error = Some("boom: 50%_off".to_owned());
    let mut r4 = rec("r4", 4_000);
    r4.model = "claude".to_owned();
    r4.status = 404;
    r4.target = None;
    r4.error = Some("code 500 upstream".to_owned());
    let mut r5 = rec("r5", 5_000);
    r5.status = 201;
    r5.output = Some("The ANSWER is 42".to_owned());
    let r6 = rec("r6", 5_000);
    store.insert(&[r3, r1, r6, r2, r5, r4]).await.unwrap();

    let list = |f: Filter| async move {
        let got = store.list(&f).await.unwrap();
        got.iter().map(|r| r.id.clone()).collect::<Vec<_>>()
    };
    let text = |t: &str| Filter {
        text: Some(t.to_owned()),
        ..Filter::default()
    };
    let status = |s| Filter {
        status: Some(s),
        ..Filter::default()
    };

    // Newest first; a tie in time goes by id, descending.
    assert_eq!(
        list(Filter::default()).await,
        ["r6", "r5", "r4", "r3", "r2", "r1"]
    );
    assert_eq!(
        list(Filter {
            limit: 2,
            ..Filter::default()
        })
        .await,
        ["r6", "r5"]
    );
    assert_eq!(
        list(Filter {
            model: Some("claude".to_owned()),
            ..Filter::default()
        })
        .await,
        ["r4", "r3"]
    );
    assert_eq!(
        list(Filter {
            key_id: Some("k1".to_owned()),
            ..Filter::default()
        })
        .await,
        ["r1"]
    );
    assert_eq!(
        list(Filter {
            target: Some("anthropic/claude".to_owned()),
            ..Filter::default()
        })
        .await,
        ["r3"]
    );

    assert_eq!(list(status(StatusFilter::Exact(404))).await, ["r4"]);
    assert_eq!(
        list(status(StatusFilter::Class(2))).await,
        ["r6", "r5", "r1"]
    );
    assert_eq!(list(status(StatusFilter::Class(4))).await, ["r4", "r2"]);
    assert_eq!(list(status(StatusFilter::Class(5))).await, ["r3"]);
    assert_eq!(list(status(StatusFilter::Errors)).await, ["r4", "r3", "r2"]);

    // Case-insensitive, over id, model, target, error, input and output.
    assert_eq!(list(text("world")).await, ["r1"]);
    assert_eq!(list(text("answer")).await, ["r5"]);
    assert_eq!(list(text("RATE LIMITED")).await, ["r2"]);
    assert_eq!(list(text("anthropic")).await, ["r3"]);
    assert_eq!(list(text("CLAUDE")).await, ["r4", "r3"]);
    assert_eq!(list(text("r4")).await, ["r4"]);
    // `%` and `_` are literal: "50%" is not "50…", "t_4" is not "t-4".
    assert_eq!(list(text("50%")).await, ["r3"]);
    assert_eq!(list(text("%_o")).await, ["r3"]);
    assert!(list(text("t_4")).await.is_empty());
    assert!(list(text("nowhere")).await.is_empty());

    // A window: since inclusive, until exclusive.
    assert_eq!(
        list(Filter {
            since_ms: Some(3_000),
            until_ms: Some(5_000),
            ..Filter::default()
        })
        .await,
        ["r4", "r3"]
    );
    // The follow cursor: strictly after (time_ms, id).
    let after = |t: i64, id: &str| Filter {
        after_time_ms: Some((t, id.to_owned())),
        ..Filter::default()
    };
    assert_eq!(list(after(4_000, "r4")).await, ["r6", "r5"]);
    assert_eq!(list(after(5_000, "r5")).await, ["r6"]);
    assert!(list(after(5_000, "r6")).await.is_empty());

    // Conditions combine.
    assert_eq!(
        list(Filter {
            model: Some("gpt".to_owned()),
            status: Some(StatusFilter::Errors),
            ..Filter::default()
        })
        .await,
        ["r2"]
    );
}

/// The filters `keel eval capture` uses: route, ops, error kind, and the
/// latest scored feedback within bounds.
pub async fn capture_filters(store: &Store) {
    let mut f1 = rec("f1", 1_000);
    f1.op = "function".to_owned();
    f1.route = Some("classify".to_owned());
    let mut f2 = f1.clone();
    f2.id = "f2".to_owned();
    f2.time_ms = 2_000;
    f2.status = 422;
    f2.error_kind = Some("output_invalid".to_owned());
    let mut w3 = rec("w3", 3_000);
    w3.op = "workflow".to_owned();
    w3.route = Some("triage".to_owned());
    let c4 = rec("c4", 4_000);
    let mut fb5 = rec("fb5", 5_000);
    fb5.op = "feedback".to_owned();
    store.insert(&[f1, f2, w3, c4, fb5]).await.unwrap();
    // f1: rated 0 then 1 (the latest counts); c4: rated 0.5; f2: a label
    // without a score.
    for (id, time_ms, score) in [
        ("f1", 10, Some(0.0)),
        ("f1", 20, Some(1.0)),
        ("f1", 30, None),
        ("c4", 10, Some(0.5)),
        ("f2", 10, None),
    ] {
        let fb = Feedback {
            request_id: id.to_owned(),
            time_ms,
            score,
            label: Some("l".to_owned()),
            comment: None,
        };
        store.add_feedback(&fb).await.unwrap();
    }

    let list = |f: Filter| async move {
        let got = store.list(&f).await.unwrap();
        got.iter().map(|r| r.id.clone()).collect::<Vec<_>>()
    };
    let route = |r: &str| Filter {
        route: Some(r.to_owned()),
        ..Filter::default()
    };
    let ops = |ops: &[&str]| Filter {
        ops: ops.iter().map(|op| (*op).to_owned()).collect(),
        ..Filter::default()
    };
    let scores = |min_score, max_score| Filter {
        min_score,
        max_score,
        ..Filter::default()
    };
    assert_eq!(list(route("classify")).await, ["f2", "f1"]);
    assert_eq!(list(route("triage")).await, ["w3"]);
    assert_eq!(
        list(ops(&["chat", "function", "workflow"])).await,
        ["c4", "w3", "f2", "f1"]
    );
    assert_eq!(list(ops(&["workflow"])).await, ["w3"]);
    assert_eq!(
        list(Filter {
            error_kind: Some("output_invalid".to_owned()),
            ..Filter::default()
        })
        .await,
        ["f2"]
    );
    assert_eq!(list(scores(Some(0.75), None)).await, ["f1"]);
    assert_eq!(list(scores(None, Some(0.5))).await, ["c4"]);
    assert_eq!(list(scores(Some(0.5), Some(0.5))).await, ["c4"]);
    assert_eq!(list(scores(None, Some(10.0))).await, ["c4", "f1"]);
    assert!(list(scores(Some(2.0), None)).await.is_empty());
    // Stats see the same selection.
    let stats = store
        .stats(&scores(Some(0.0), None), keel_store::GroupBy::None)
        .await
        .unwrap();
    assert_eq!(stats[0].count, 2);
}

const DAY_MS: i64 = 24 * 3600 * 1000;

/// Prunes by age, then by count; the feedback of pruned requests goes too.
pub async fn prune(store: &Store) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let records = [
        rec("old1", now - 10 * DAY_MS),
        rec("old2", now - 9 * DAY_MS),
        rec("new3", now - 3 * 3_600_000),
        rec("new2", now - 2 * 3_600_000),
        rec("new1", now - 3_600_000),
    ];
    store.insert(&records).await.unwrap();
    for id in ["old1", "new3", "new1"] {
        store
            .add_feedback(&Feedback {
                request_id: id.to_owned(),
                time_ms: now,
                label: Some("x".to_owned()),
                ..Feedback::default()
            })
            .await
            .unwrap();
    }

    assert_eq!(store.prune(&Retention::default()).await.unwrap(), 0);
    let week = Retention {
        max_age: Some(Duration::from_secs(7 * 24 * 3600)),
        max_records: None,
    };
    assert_eq!(store.prune(&week).await.unwrap(), 2);
    let left = store.list(&Filter::default()).await.unwrap();
    assert_eq!(ids(&left), ["new1", "new2", "new3"]);
    assert_eq!(store.prune(&week).await.unwrap(), 0);

    let two = Retention {
        max_age: None,
        max_records: Some(2),
    };
    assert_eq!(store.prune(&two).await.unwrap(), 1);
    let left = store.list(&Filter::default()).await.unwrap();
    assert_eq!(ids(&left), ["new1", "new2"]);
    assert_eq!(left[0].feedback.len(), 1);
    assert_eq!(store.prune(&two).await.unwrap(), 0);

    // The pruned requests' feedback is gone: storing their ids again
    // shows none.
    store
        .insert(&[rec("old1", now), rec("new3", now)])
        .await
        .unwrap();
    assert!(
        store
            .get("old1")
            .await
            .unwrap()
            .unwrap()
            .feedback
            .is_empty()
    );
    assert!(
        store
            .get("new3")
            .await
            .unwrap()
            .unwrap()
            .feedback
            .is_empty()
    );
}

/// Postgres stores no NUL in text or JSONB: it becomes U+FFFD, on both
/// backends, instead of failing the batch.
pub async fn nul_bytes(store: &Store) {
    let mut r = rich("nul", 1);
    r.error = Some("bad\0byte".to_owned());
    r.tags.insert("k\0".to_owned(), "v\0".to_owned());
    store.insert(&[r, rec("fine", 2)]).await.unwrap();
    let got = store.get("nul").await.unwrap().unwrap();
    assert_eq!(got.error.as_deref(), Some("bad\u{FFFD}byte"));
    assert_eq!(
        got.tags.get("k\u{FFFD}").map(String::as_str),
        Some("v\u{FFFD}")
    );
    assert_eq!(got.attempts, rich("nul", 1).attempts);
    assert!(store.exists("fine").await.unwrap());
}

/// Keys: stored as a digest (the secret is nowhere in the database), read
/// back with their settings, listed oldest first, revoked once.
pub async fn keys(store: &Store) {
    let settings = KeySettings {
        name: "search".to_owned(),
        team: Some("core".to_owned()),
        tags: vec!["batch".to_owned()],
        models: vec!["gpt".to_owned()],
        rate_limit: Some(keel_config::RateLimit {
            requests_per_minute: Some(60),
            tokens_per_minute: None,
        }),
        budget: Some(keel_config::Budget {
            usd: 5.0,
            period: keel_config::Period::RollingDays(7),
        }),
        max_input_tokens: Some(1000),
        max_output_tokens: None,
    };
    let (first, shown) = VirtualKey::generate(settings.clone());
    let (second, _) = VirtualKey::generate(KeySettings::default());
    store.insert_key(&first).await.unwrap();
    store.insert_key(&second).await.unwrap();
    assert!(store.insert_key(&first).await.is_err(), "ids are unique");

    let read = store.key(&first.id).await.unwrap().unwrap();
    assert_eq!(read.settings, settings);
    let (_, secret) = keel_store::parse_key(&shown).unwrap();
    assert!(read.verify(secret));
    assert!(store.key("nosuchkey000").await.unwrap().is_none());
    let ids: Vec<String> = store
        .keys()
        .await
        .unwrap()
        .into_iter()
        .map(|k| k.id)
        .collect();
    assert_eq!(ids.len(), 2);
    assert!(ids.contains(&first.id) && ids.contains(&second.id));

    assert!(store.revoke_key(&first.id).await.unwrap());
    let revoked = store.key(&first.id).await.unwrap().unwrap();
    assert!(revoked.revoked_ms.is_some());
    assert!(
        !store.revoke_key(&first.id).await.unwrap(),
        "already revoked"
    );
    assert!(!store.revoke_key("nosuchkey000").await.unwrap());
    assert_eq!(
        store.key(&first.id).await.unwrap().unwrap().revoked_ms,
        revoked.revoked_ms
    );
}

/// Spend per day for a set of keys: what in-process budgets start from.
pub async fn spend_by_day(store: &Store) {
    const DAY: i64 = 86_400_000;
    let spent = |id: &str, key: Option<&str>, time_ms: i64, cost: Option<f64>| RequestRecord {
        key_id: key.map(str::to_owned),
        cost_usd: cost,
        ..rec(id, time_ms)
    };
    store
        .insert(&[
            spent("a", Some("k1"), 10 * DAY + 5, Some(1.5)),
            spent("b", Some("k2"), 10 * DAY + 6, Some(0.25)),
            spent("c", Some("k1"), 11 * DAY, Some(2.0)),
            spent("d", Some("k1"), 11 * DAY + 1, None),
            spent("e", Some("k3"), 11 * DAY, Some(100.0)),
            spent("f", None, 11 * DAY, Some(100.0)),
            spent("g", Some("k1"), 9 * DAY, Some(7.0)),
        ])
        .await
        .unwrap();
    let keys = ["k1".to_owned(), "k2".to_owned()];
    let mut days = store.spend_by_day(&keys, 10 * DAY).await.unwrap();
    days.sort_by_key(|d| d.0);
    assert_eq!(days, [(10, 1.75), (11, 2.0)]);
    assert!(store.spend_by_day(&[], 0).await.unwrap().is_empty());
}
