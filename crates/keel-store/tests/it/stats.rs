//! Stats checks on a known set, run on both backends.
//!
//! "gpt": 20 requests, latency 10, 20, …, 200 ms; errors at i = 3 and 11
//! (429 rate_limit) and i = 7 (500, no kind); a TTFT on i = 1..4 (5..8 ms);
//! cache hits at i = 5, 10, 15, 20; fallbacks at i = 2, 4; 10 + 5 tokens and
//! $0.01 each (none for i = 20); key "k1".
//! "claude": 3 requests, latency 300, 100, 200 ms, all fine, no key.

use std::collections::BTreeMap;

use keel_store::{Filter, GroupBy, Percentiles, Stats, StatusFilter, Store};

use crate::rec;

fn known_set() -> Vec<keel_store::RequestRecord> {
    let mut records = Vec::new();
    for i in 1..=20_i64 {
        let mut r = rec(&format!("g{i:02}"), 1_000 + i);
        r.key_id = Some("k1".to_owned());
        r.latency_ms = 10.0 * i as f64;
        match i {
            3 | 11 => {
                r.status = 429;
                r.error_kind = Some("rate_limit".to_owned());
            }
            7 => r.status = 500,
            _ => {}
        }
        if i <= 4 {
            r.ttft_ms = Some(4.0 + i as f64);
        }
        r.cache_hit = i % 5 == 0;
        r.fallback = i == 2 || i == 4;
        r.cost_usd = (i != 20).then_some(0.01);
        records.push(r);
    }
    for (i, latency) in [300.0, 100.0, 200.0].into_iter().enumerate() {
        let mut r = rec(&format!("c{i}"), 2_000 + i as i64);
        r.model = "claude".to_owned();
        r.target = Some("anthropic/claude".to_owned());
        r.latency_ms = latency;
        r.input_tokens = 100;
        r.output_tokens = 50;
        r.cost_usd = Some(0.5);
        records.push(r);
    }
    records
}

fn gpt(group: &str) -> Stats {
    Stats {
        group: group.to_owned(),
        count: 20,
        errors: 3,
        error_rate: 0.15,
        errors_by_kind: BTreeMap::from([("rate_limit".to_owned(), 2), ("unknown".to_owned(), 1)]),
        // Nearest rank of 20 values: p50 is the 10th, p95 the 19th, p99 the 20th.
        latency_ms: Percentiles {
            p50: 100.0,
            p95: 190.0,
            p99: 200.0,
        },
        // Of 4 values: the 2nd, 4th, 4th.
        ttft_ms: Some(Percentiles {
            p50: 6.0,
            p95: 8.0,
            p99: 8.0,
        }),
        input_tokens: 200,
        output_tokens: 100,
        cost_usd: 0.19,
        cache_hit_rate: 0.2,
        fallback_rate: 0.1,
    }
}

fn claude(group: &str) -> Stats {
    Stats {
        group: group.to_owned(),
        count: 3,
        errors: 0,
        error_rate: 0.0,
        errors_by_kind: BTreeMap::new(),
        latency_ms: Percentiles {
            p50: 200.0,
            p95: 300.0,
            p99: 300.0,
        },
        ttft_ms: None,
        input_tokens: 300,
        output_tokens: 150,
        cost_usd: 1.5,
        cache_hit_rate: 0.0,
        fallback_rate: 0.0,
    }
}

/// Equal, with float sums compared to 1e-9.
fn assert_stats(got: &[Stats], want: &[Stats]) {
    assert_eq!(got.len(), want.len(), "{got:#?}");
    for (g, w) in got.iter().zip(want) {
        assert!((g.cost_usd - w.cost_usd).abs() < 1e-9, "{g:#?}");
        assert_eq!(
            Stats {
                cost_usd: w.cost_usd,
                ..g.clone()
            },
            *w
        );
    }
}

pub async fn grouped(store: &Store) {
    store.insert(&known_set()).await.unwrap();
    let all = Filter::default();

    let by_model = store.stats(&all, GroupBy::Model).await.unwrap();
    assert_stats(&by_model, &[gpt("gpt"), claude("claude")]);

    let by_target = store.stats(&all, GroupBy::Target).await.unwrap();
    assert_stats(
        &by_target,
        &[gpt("openai/gpt-4o-mini"), claude("anthropic/claude")],
    );

    let by_key = store.stats(&all, GroupBy::Key).await.unwrap();
    assert_stats(&by_key, &[gpt("k1"), claude("(none)")]);

    let total = store.stats(&all, GroupBy::None).await.unwrap();
    assert_eq!(total.len(), 1);
    let t = &total[0];
    assert_eq!((t.group.as_str(), t.count, t.errors), ("all", 23, 3));
    // 23 latencies: 10..200 and 100, 200, 300. p50 = 12th = 110.
    assert_eq!(
        t.latency_ms,
        Percentiles {
            p50: 110.0,
            p95: 200.0,
            p99: 300.0
        }
    );
    assert!((t.cost_usd - 1.69).abs() < 1e-9);

    // Stats honour the filter (and ignore its limit).
    let errors = Filter {
        status: Some(StatusFilter::Errors),
        limit: 1,
        ..Filter::default()
    };
    let err_stats = store.stats(&errors, GroupBy::Model).await.unwrap();
    assert_eq!(err_stats.len(), 1);
    assert_eq!((err_stats[0].count, err_stats[0].error_rate), (3, 1.0));
    let window = Filter {
        since_ms: Some(2_000),
        ..Filter::default()
    };
    let late = store.stats(&window, GroupBy::Model).await.unwrap();
    assert_stats(&late, &[claude("claude")]);
    let nothing = Filter {
        model: Some("none".to_owned()),
        ..Filter::default()
    };
    assert!(
        store
            .stats(&nothing, GroupBy::None)
            .await
            .unwrap()
            .is_empty()
    );

    // Serializable for the CLI's --json.
    let json = serde_json::to_value(&by_model[1]).unwrap();
    assert_eq!(json["latency_ms"]["p95"], 300.0);
    assert_eq!(json["ttft_ms"], serde_json::Value::Null);
}
