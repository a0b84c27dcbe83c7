//! The load generator: HTTP/1.1 keep-alive over hyper (cheap on the client
//! side, so the machine's two cores go to the servers), closed loop (N
//! workers back to back) and open loop (a fixed arrival rate, latency
//! measured from the *scheduled* send time so a stalled server cannot hide
//! its queueing: no coordinated omission). Streams record time to first
//! byte and the gaps between body frames.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Serialize;

/// One kind of request against one server.
#[derive(Debug, Clone)]
pub struct Shot {
    pub url: hyper::Uri,
    pub body: Bytes,
    pub bearer: Option<String>,
}

/// Results of one run, latencies in microseconds.
#[derive(Debug, Clone)]
pub struct Stats {
    pub ok: u64,
    pub errors: u64,
    pub elapsed: Duration,
    pub latency: Histogram<u64>,
    pub ttft: Histogram<u64>,
    pub gap: Histogram<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub ok: u64,
    pub errors: u64,
    pub rps: f64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub ttft_p50_us: Option<u64>,
    pub ttft_p99_us: Option<u64>,
    pub gap_p50_us: Option<u64>,
    pub gap_p99_us: Option<u64>,
}

fn histogram() -> Histogram<u64> {
    // Auto-resizing, 3 significant digits: recording can never fail on range.
    let mut h = Histogram::new(3).unwrap_or_else(|_| unreachable!("3 significant digits is valid"));
    h.auto(true);
    h
}

impl Stats {
    fn new() -> Self {
        Stats {
            ok: 0,
            errors: 0,
            elapsed: Duration::ZERO,
            latency: histogram(),
            ttft: histogram(),
            gap: histogram(),
        }
    }

    fn merge(&mut self, other: &Stats) {
        self.ok += other.ok;
        self.errors += other.errors;
        // Same bounds on both sides: `add` cannot fail.
        let _ = self.latency.add(&other.latency);
        let _ = self.ttft.add(&other.ttft);
        let _ = self.gap.add(&other.gap);
    }

    fn record(&mut self, result: Result<Timing, ()>, since: Instant) {
        match result {
            Ok(t) => {
                self.ok += 1;
                let _ = self.latency.record(micros(since.elapsed()));
                if let Some(ttft) = t.ttft {
                    let _ = self.ttft.record(micros(ttft));
                }
                for g in t.gaps {
                    let _ = self.gap.record(micros(g));
                }
            }
            Err(()) => self.errors += 1,
        }
    }

    pub fn summary(&self) -> Summary {
        let q = |h: &Histogram<u64>, p: f64| (!h.is_empty()).then(|| h.value_at_quantile(p));
        Summary {
            ok: self.ok,
            errors: self.errors,
            rps: self.ok as f64 / self.elapsed.as_secs_f64().max(1e-9),
            p50_us: self.latency.value_at_quantile(0.5),
            p90_us: self.latency.value_at_quantile(0.9),
            p99_us: self.latency.value_at_quantile(0.99),
            p999_us: self.latency.value_at_quantile(0.999),
            ttft_p50_us: q(&self.ttft, 0.5),
            ttft_p99_us: q(&self.ttft, 0.99),
            gap_p50_us: q(&self.gap, 0.5),
            gap_p99_us: q(&self.gap, 0.99),
        }
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1)
}

struct Timing {
    ttft: Option<Duration>,
    gaps: Vec<Duration>,
}

pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

pub fn client() -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(1024)
        .build(connector)
}

const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

async fn one(client: &HttpClient, shot: &Shot, stream: bool) -> Result<Timing, ()> {
    let start = Instant::now();
    let fut = async {
        let mut req = Request::post(shot.url.clone()).header(CONTENT_TYPE, "application/json");
        if let Some(b) = &shot.bearer
            && let Ok(v) = HeaderValue::from_str(&format!("Bearer {b}"))
        {
            req = req.header(AUTHORIZATION, v);
        }
        let req = req.body(Full::new(shot.body.clone())).map_err(|_| ())?;
        let resp = client.request(req).await.map_err(|_| ())?;
        if !resp.status().is_success() {
            return Err(());
        }
        let mut body = resp.into_body();
        let mut ttft = None;
        let mut gaps = Vec::new();
        let mut last = start;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|_| ())?;
            if frame.data_ref().is_some_and(|d| !d.is_empty()) && stream {
                let now = Instant::now();
                match ttft {
                    None => ttft = Some(now - start),
                    Some(_) => gaps.push(now - last),
                }
                last = now;
            }
        }
        Ok(Timing { ttft, gaps })
    };
    tokio::time::timeout(REQUEST_TIMEOUT, fut)
        .await
        .map_err(|_| ())?
}

/// `concurrency` workers, each sending back to back until `duration` ends.
pub async fn closed_loop(
    shot: &Shot,
    stream: bool,
    concurrency: usize,
    duration: Duration,
) -> anyhow::Result<Stats> {
    let client = client();
    let deadline = Instant::now() + duration;
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(concurrency);
    for _ in 0..concurrency {
        let client = client.clone();
        let shot = shot.clone();
        tasks.push(tokio::spawn(async move {
            let mut stats = Stats::new();
            while Instant::now() < deadline {
                let t0 = Instant::now();
                let r = one(&client, &shot, stream).await;
                stats.record(r, t0);
            }
            stats
        }));
    }
    let mut total = Stats::new();
    for t in tasks {
        total.merge(&t.await.context("load worker panicked")?);
    }
    total.elapsed = started.elapsed();
    Ok(total)
}

/// `rate` requests per second for `duration`, at most `max_in_flight` at
/// once (beyond that an arrival counts as an error: the server is not
/// keeping up).
pub async fn open_loop(
    shot: &Shot,
    rate: u32,
    duration: Duration,
    max_in_flight: usize,
) -> anyhow::Result<Stats> {
    let client = client();
    let stats = Arc::new(Mutex::new(Stats::new()));
    let permits = Arc::new(tokio::sync::Semaphore::new(max_in_flight));
    let interval = Duration::from_secs_f64(1.0 / f64::from(rate.max(1)));
    let started = Instant::now();
    let total = u64::try_from((duration.as_secs_f64() * f64::from(rate)) as u128).unwrap_or(0);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..total {
        let scheduled = started + interval.mul_f64(i as f64);
        tokio::time::sleep_until(scheduled.into()).await;
        let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
            if let Ok(mut s) = stats.lock() {
                s.errors += 1;
            }
            continue;
        };
        let (client, shot, stats) = (client.clone(), shot.clone(), Arc::clone(&stats));
        tasks.spawn(async move {
            let r = one(&client, &shot, false).await;
            if let Ok(mut s) = stats.lock() {
                s.record(r, scheduled);
            }
            drop(permit);
        });
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
    let mut out = stats
        .lock()
        .map_err(|_| anyhow::anyhow!("stats lock poisoned"))?
        .clone();
    out.elapsed = started.elapsed();
    Ok(out)
}
