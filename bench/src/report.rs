//! Results as a markdown table (printed, and written beside a JSON copy):
//! one row per target per load point, with keel's added latency over the
//! direct call and the throughput ratios keel/direct, keel/peer and keel
//! with its SQLite request log over keel without it.

use std::fmt::Write as _;

use serde::Serialize;

use crate::load::Summary;
use crate::procstat::Usage;

#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub scenario: String,
    pub target: String,
    /// `c=64` (closed loop) or `500/s` (open loop).
    pub load: String,
    pub result: Summary,
    /// CPU seconds the server used during this point, and its memory after.
    pub usage: Usage,
}

#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub machine: String,
    pub idle: Vec<(String, Usage)>,
    pub rows: Vec<Row>,
}

fn ms(us: u64) -> String {
    format!("{:.2}", us as f64 / 1000.0)
}

fn opt_ms(us: Option<u64>) -> String {
    us.map_or_else(|| "–".to_owned(), ms)
}

impl Report {
    fn direct(&self, row: &Row) -> Option<&Row> {
        self.rows
            .iter()
            .find(|r| r.scenario == row.scenario && r.load == row.load && r.target == "direct")
    }

    fn best_rps(&self, scenario: &str, target: &str) -> Option<f64> {
        self.rows
            .iter()
            .filter(|r| r.scenario == scenario && r.target == target && r.load.starts_with("c="))
            .map(|r| r.result.rps)
            .reduce(f64::max)
    }

    pub fn markdown(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "Machine: {}\n", self.machine);
        let _ = writeln!(
            out,
            "CPU s: CPU time the gateway used during the point. Max RSS: the process's peak resident memory so far.\n\nIdle memory after start-up:\n"
        );
        for (name, u) in &self.idle {
            let _ = writeln!(out, "- {name}: RSS {:.1} MB", u.rss_mb);
        }
        let mut scenarios: Vec<&str> = self.rows.iter().map(|r| r.scenario.as_str()).collect();
        scenarios.dedup();
        for scenario in scenarios {
            let stream = self
                .rows
                .iter()
                .any(|r| r.scenario == scenario && r.result.ttft_p50_us.is_some());
            let _ = writeln!(out, "\n### {scenario}\n");
            if stream {
                let _ = writeln!(
                    out,
                    "| target | load | req/s | p50 ms | p99 ms | TTFT p50 | TTFT p99 | gap p50 | gap p99 | added TTFT p50 | added gap p50 | errors | CPU s | max RSS MB |"
                );
                let _ = writeln!(
                    out,
                    "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
                );
            } else {
                let _ = writeln!(
                    out,
                    "| target | load | req/s | p50 ms | p90 ms | p99 ms | p99.9 ms | success % | added p50 ms | added p99 ms | CPU s | max RSS MB |"
                );
                let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|---|---|---|");
            }
            for row in self.rows.iter().filter(|r| r.scenario == scenario) {
                let r = &row.result;
                let d = self.direct(row).filter(|_| row.target != "direct");
                let added = |f: fn(&Summary) -> Option<u64>| match d {
                    Some(d) => match (f(r), f(&d.result)) {
                        (Some(a), Some(b)) => format!("{:+.3}", (a as f64 - b as f64) / 1000.0),
                        _ => "–".to_owned(),
                    },
                    None => "–".to_owned(),
                };
                if stream {
                    let _ = writeln!(
                        out,
                        "| {} | {} | {:.0} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.1} | {:.1} |",
                        row.target,
                        row.load,
                        r.rps,
                        ms(r.p50_us),
                        ms(r.p99_us),
                        opt_ms(r.ttft_p50_us),
                        opt_ms(r.ttft_p99_us),
                        opt_ms(r.gap_p50_us),
                        opt_ms(r.gap_p99_us),
                        added(|s| s.ttft_p50_us),
                        added(|s| s.gap_p50_us),
                        r.errors,
                        row.usage.cpu_s,
                        row.usage.peak_rss_mb
                    );
                } else {
                    let _ = writeln!(
                        out,
                        "| {} | {} | {:.0} | {} | {} | {} | {} | {:.2} | {} | {} | {:.1} | {:.1} |",
                        row.target,
                        row.load,
                        r.rps,
                        ms(r.p50_us),
                        ms(r.p90_us),
                        ms(r.p99_us),
                        ms(r.p999_us),
                        100.0 * r.ok as f64 / (r.ok + r.errors).max(1) as f64,
                        added(|s| Some(s.p50_us)),
                        added(|s| Some(s.p99_us)),
                        row.usage.cpu_s,
                        row.usage.peak_rss_mb
                    );
                }
            }
            if let (Some(k), Some(direct)) = (
                self.best_rps(scenario, "keel"),
                self.best_rps(scenario, "direct"),
            ) {
                let _ = write!(out, "\nMax throughput keel/direct: {:.2}", k / direct);
                if let Some(peer) = self.best_rps(scenario, "litellm") {
                    let _ = write!(out, "; keel/litellm: {:.1}×", k / peer);
                }
                if let Some(logged) = self.best_rps(scenario, "keel+sqlite") {
                    let _ = write!(out, "; keel+sqlite/keel: {:.2}", logged / k);
                }
                let _ = writeln!(out);
            }
        }
        out
    }
}
