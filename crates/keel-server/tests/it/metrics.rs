//! `GET /metrics` read with a Prometheus text parser, and the series
//! moving as requests flow.

use prometheus_parse::{Scrape, Value};

use crate::{client, openai_chat, setup};

pub struct Metrics(Scrape);

pub async fn scrape(base: &str) -> Metrics {
    let resp = client()
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let ct = resp.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(ct.starts_with("text/plain; version=0.0.4"), "{ct}");
    let text = resp.text().await.unwrap();
    let lines = text.lines().map(|l| Ok(l.to_owned()));
    Metrics(Scrape::parse(lines).unwrap_or_else(|e| panic!("unparseable: {e}\n{text}")))
}

impl Metrics {
    /// The sum of the samples of `name` whose labels include `labels`
    /// (a histogram counts its observations).
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.0
            .samples
            .iter()
            .filter(|s| s.metric == name)
            .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .map(|s| match &s.value {
                Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
                Value::Histogram(buckets) => buckets.last().map_or(0.0, |b| b.count),
                Value::Summary(_) => 0.0,
            })
            .sum()
    }

    pub fn has(&self, name: &str) -> bool {
        self.0.samples.iter().any(|s| s.metric == name)
    }
}

#[tokio::test]
async fn metrics_parse_and_move_as_requests_flow() {
    let s = setup().await;
    let base = s.keel.url();
    let before = scrape(&base).await;
    for _ in 0..3 {
        assert_eq!(
            s.openai(&openai_chat("sim", "hello"), &[]).await.status(),
            200
        );
    }
    assert_eq!(
        s.openai(&openai_chat("no-such-model", "hello"), &[])
            .await
            .status(),
        404
    );
    let after = scrape(&base).await;
    let ok = [("front", "openai"), ("model", "sim"), ("status", "2xx")];
    assert_eq!(
        after.value("keel_requests_total", &ok) - before.value("keel_requests_total", &ok),
        3.0
    );
    // An unknown alias is not a label value of its own: bounded cardinality.
    let unknown = [("model", "other"), ("status", "4xx")];
    assert_eq!(
        after.value("keel_requests_total", &unknown)
            - before.value("keel_requests_total", &unknown),
        1.0
    );
    assert!(
        !after
            .0
            .samples
            .iter()
            .any(|s| s.labels.values().any(|v| v == "no-such-model"))
    );
    assert_eq!(
        after.value("keel_request_errors_total", &[("kind", "model_not_found")])
            - before.value("keel_request_errors_total", &[("kind", "model_not_found")]),
        1.0
    );
    let tokens =
        |m: &Metrics, kind| m.value("keel_tokens_total", &[("model", "sim"), ("kind", kind)]);
    assert!(tokens(&after, "input") > tokens(&before, "input"));
    assert!(tokens(&after, "output") > tokens(&before, "output"));
    assert_eq!(
        after.value(
            "keel_attempts_total",
            &[("provider", "sim"), ("outcome", "ok")]
        ) - before.value(
            "keel_attempts_total",
            &[("provider", "sim"), ("outcome", "ok")]
        ),
        3.0
    );
    for family in [
        "keel_request_duration_seconds_count",
        "keel_overhead_seconds_count",
        "keel_in_flight_requests",
        "keel_queued_requests",
    ] {
        assert!(after.has(family), "{family} missing");
    }
    assert_eq!(
        after.value(
            "keel_request_duration_seconds_count",
            &[("model", "sim"), ("op", "chat")]
        ) - before.value(
            "keel_request_duration_seconds_count",
            &[("model", "sim"), ("op", "chat")]
        ),
        3.0
    );
}
