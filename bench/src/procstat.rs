//! What a server process costs, read from /proc: resident memory (now and
//! peak) and CPU seconds, summed over the process and its descendants (a
//! peer gateway may run several workers).

use std::fs;

#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Usage {
    pub rss_mb: f64,
    pub peak_rss_mb: f64,
    pub cpu_s: f64,
}

/// Clock ticks per second for /proc/PID/stat times; 100 on every Linux
/// this runs on (the kernel's USER_HZ).
const TICKS: f64 = 100.0;

fn children(pid: u32) -> Vec<u32> {
    let mut all = vec![pid];
    let mut i = 0;
    while i < all.len() {
        let parent = all[i];
        if let Ok(entries) = fs::read_dir("/proc") {
            for e in entries.flatten() {
                let Ok(p) = e.file_name().to_string_lossy().parse::<u32>() else {
                    continue;
                };
                if stat_fields(p).and_then(|f| f.get(1).and_then(|s| s.parse::<u32>().ok()))
                    == Some(parent)
                {
                    all.push(p);
                }
            }
        }
        i += 1;
    }
    all
}

/// Fields of /proc/PID/stat after the command name (state is index 0).
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &text[text.rfind(')')? + 2..];
    Some(after.split_whitespace().map(str::to_owned).collect())
}

fn status_kb(pid: u32, key: &str) -> f64 {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with(key)).and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|v| v.parse::<f64>().ok())
            })
        })
        .unwrap_or(0.0)
}

pub fn read(pid: u32) -> Usage {
    let mut u = Usage::default();
    for p in children(pid) {
        u.rss_mb += status_kb(p, "VmRSS:") / 1024.0;
        u.peak_rss_mb += status_kb(p, "VmHWM:") / 1024.0;
        if let Some(f) = stat_fields(p) {
            // utime and stime are fields 14 and 15 of stat: 11 and 12 here.
            let ticks: f64 = [11, 12]
                .iter()
                .filter_map(|i| f.get(*i)?.parse::<f64>().ok())
                .sum();
            u.cpu_s += ticks / TICKS;
        }
    }
    u
}
