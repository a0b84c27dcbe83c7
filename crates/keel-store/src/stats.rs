//! Aggregates over a window of requests: counts, error rates, latency
//! percentiles, tokens and cost, per model, target or key.
//!
//! Both backends fetch only the slim columns of the matching rows
//! ([`crate::sql::select_slim`]) and aggregate here, in Rust: percentiles
//! are then exact (nearest-rank) and identical whichever backend stored
//! the rows, instead of two dialects' approximations (SQLite has no
//! percentile function at all). The cost is memory for one window's slim
//! rows, a few dozen bytes each.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use crate::sql::{Cells, Value};

/// What [`Stats`] rows are grouped by.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum GroupBy {
    /// The model alias the client asked for.
    Model,
    /// The `provider/model` that served (`(none)` when none did).
    Target,
    /// The virtual key's id (`(none)` without one).
    Key,
    /// One row for everything, named `all`.
    #[default]
    None,
}

/// The aggregates of one group.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Stats {
    pub group: String,
    pub count: u64,
    /// Requests answered with a status of 400 or more.
    pub errors: u64,
    pub error_rate: f64,
    /// Errors by `error_kind` (`unknown` when an error has none).
    pub errors_by_kind: BTreeMap<String, u64>,
    pub latency_ms: Percentiles,
    /// Over the requests that have a time to first byte (streams); `None`
    /// when none has.
    pub ttft_ms: Option<Percentiles>,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cost_usd: f64,
    pub cache_hit_rate: f64,
    pub fallback_rate: f64,
}

/// Nearest-rank percentiles: the smallest value with at least p% of the
/// values at or below it (always one of the values).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Percentiles {
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
}

impl Percentiles {
    /// `None` for no values.
    fn of(mut values: Vec<f64>) -> Option<Percentiles> {
        if values.is_empty() {
            return None;
        }
        values.sort_by(f64::total_cmp);
        let rank = |p: usize| {
            let n = values.len();
            // ceil(p/100 · n), as a 1-based rank.
            let rank = (p * n).div_ceil(100).clamp(1, n);
            values[rank - 1]
        };
        Some(Percentiles {
            p50: rank(50),
            p95: rank(95),
            p99: rank(99),
        })
    }
}

/// Running totals of one group.
#[derive(Default)]
struct Group {
    count: u64,
    errors: u64,
    errors_by_kind: BTreeMap<String, u64>,
    latency: Vec<f64>,
    ttft: Vec<f64>,
    input_tokens: u64,
    output_tokens: u64,
    cost_usd: f64,
    cache_hits: u64,
    fallbacks: u64,
}

/// Aggregates rows of [`crate::sql::select_slim`]; sorted by count, most
/// first (ties by group name).
pub(crate) fn aggregate(rows: Vec<Vec<Value>>, by: GroupBy) -> Vec<Stats> {
    let mut groups: HashMap<String, Group> = HashMap::new();
    for row in rows {
        let mut c = Cells::new(row);
        let (model, target, key_id) = (c.text(), c.text(), c.text());
        let key = match by {
            GroupBy::Model => model,
            GroupBy::Target => target,
            GroupBy::Key => key_id,
            GroupBy::None => Some("all".to_owned()),
        };
        let g = groups
            .entry(key.unwrap_or_else(|| "(none)".to_owned()))
            .or_default();
        g.count += 1;
        let status = c.int().unwrap_or_default();
        let error_kind = c.text();
        if status >= 400 {
            g.errors += 1;
            let kind = error_kind.unwrap_or_else(|| "unknown".to_owned());
            *g.errors_by_kind.entry(kind).or_default() += 1;
        }
        g.latency.push(c.real().unwrap_or_default());
        g.ttft.extend(c.real());
        g.input_tokens += c.count();
        g.output_tokens += c.count();
        g.cost_usd += c.real().unwrap_or_default();
        g.cache_hits += u64::from(c.flag());
        g.fallbacks += u64::from(c.flag());
    }
    let mut stats: Vec<Stats> = groups.into_iter().map(|(name, g)| g.finish(name)).collect();
    stats.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.group.cmp(&b.group)));
    stats
}

impl Group {
    fn finish(self, group: String) -> Stats {
        let rate = |n: u64| n as f64 / self.count as f64;
        Stats {
            error_rate: rate(self.errors),
            cache_hit_rate: rate(self.cache_hits),
            fallback_rate: rate(self.fallbacks),
            group,
            count: self.count,
            errors: self.errors,
            latency_ms: Percentiles::of(self.latency).unwrap_or(Percentiles {
                p50: 0.0,
                p95: 0.0,
                p99: 0.0,
            }),
            ttft_ms: Percentiles::of(self.ttft),
            errors_by_kind: self.errors_by_kind,
            input_tokens: self.input_tokens,
            output_tokens: self.output_tokens,
            cost_usd: self.cost_usd,
        }
    }
}
