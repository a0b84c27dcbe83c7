//! Spend ledgers for budgets with hard caps: a request *reserves* its
//! worst-case cost on every budget that covers it before its upstream call,
//! and *settles* to its real cost when it ends. A reservation is refused
//! when any budget's spend in its window plus the live reservations plus
//! this one would pass the cap — so the spend of a window can never pass
//! its cap by more than what requests already admitted may have
//! under-reserved (none, when their output is bounded by `max_tokens`).
//!
//! Amounts are integer micro-dollars: exact sums, no float drift, and what
//! Redis's `HINCRBY` counts in [`crate::shared`].
//!
//! Windows are made of buckets: a calendar day (UTC) or month, or for a
//! rolling window of N days the last N daily buckets. Spend goes into the
//! bucket of the moment it settles.
//!
//! A reservation (a *hold*) carries an expiry: a process that dies between
//! reserve and settle does not keep its holds against the budget forever.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use chrono::{DateTime, Datelike, Months, NaiveDate, Utc};
use keel_config::{Budget, Period};

/// Micro-dollars.
pub type Micros = i64;

/// A US dollar amount in micro-dollars, rounded up: a reservation never
/// under-counts.
pub fn micros(usd: f64) -> Micros {
    if usd.is_finite() && usd > 0.0 {
        (usd * 1e6).ceil() as Micros
    } else {
        0
    }
}

/// One budget as a request at time `now` sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScopeWindow {
    /// The ledger's name: `key:ID`, `team:NAME`, `tag:NAME`.
    pub scope: String,
    /// The cap for one window.
    pub limit: Micros,
    /// The buckets the current window covers (one, or N for rolling days).
    pub window: Vec<String>,
    /// The bucket spend goes into now (one of `window`).
    pub current: String,
    /// How long a bucket must be kept to stay in every window it belongs to.
    pub keep: Duration,
}

const DAY: Duration = Duration::from_secs(86_400);

impl ScopeWindow {
    /// `budget`'s window for `scope` at `now`, and when it resets: for a
    /// rolling window, when its oldest day drops out (some spend frees up).
    pub fn at(scope: String, budget: &Budget, now: SystemTime) -> (ScopeWindow, SystemTime) {
        let now: DateTime<Utc> = now.into();
        let today = now.date_naive();
        let day = |d: NaiveDate| bucket(Period::Day, d);
        let tomorrow = today.succ_opt().unwrap_or(today);
        let (window, current, keep, resets) = match budget.period {
            Period::Day => (vec![day(today)], day(today), 2 * DAY, midnight(tomorrow)),
            Period::Month => {
                let first = today.with_day(1).unwrap_or(today);
                let next = first.checked_add_months(Months::new(1)).unwrap_or(first);
                let month = bucket(Period::Month, today);
                (vec![month.clone()], month, 32 * DAY, midnight(next))
            }
            Period::RollingDays(n) => {
                let window = today
                    .iter_days()
                    .rev()
                    .take(n.max(1) as usize)
                    .map(day)
                    .collect();
                (window, day(today), (n + 1) * DAY, midnight(tomorrow))
            }
        };
        let window = ScopeWindow {
            scope,
            limit: micros(budget.usd),
            window,
            current,
            keep,
        };
        (window, resets)
    }

    /// When `budget`'s window at `now` began: midnight (UTC) of its first day.
    pub fn start(budget: &Budget, now: SystemTime) -> SystemTime {
        let today = DateTime::<Utc>::from(now).date_naive();
        let first = match budget.period {
            Period::Day => today,
            Period::Month => today.with_day(1).unwrap_or(today),
            Period::RollingDays(n) => today
                .checked_sub_days(chrono::Days::new(u64::from(n.max(1) - 1)))
                .unwrap_or(today),
        };
        midnight(first)
    }
}

/// The bucket a day's spend belongs to: its month's for monthly budgets,
/// else its own.
pub fn bucket(period: Period, date: NaiveDate) -> String {
    match period {
        Period::Month => format!("m{}", date.format("%Y%m")),
        Period::Day | Period::RollingDays(_) => format!("d{}", date.format("%Y%m%d")),
    }
}

/// The bucket of a UTC day given as days since the Unix epoch.
pub fn bucket_of_day(period: Period, unix_day: i64) -> Option<String> {
    let date = DateTime::from_timestamp(unix_day.checked_mul(86_400)?, 0)?.date_naive();
    Some(bucket(period, date))
}

fn midnight(d: NaiveDate) -> SystemTime {
    SystemTime::from(d.and_time(chrono::NaiveTime::MIN).and_utc())
}

/// Why a reservation was refused: the first budget (index into the scopes
/// given) that cannot cover it, with its window's spend and live holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Short {
    pub index: usize,
    pub spent: Micros,
    pub reserved: Micros,
}

/// A budget's window spend just before and just after a settle: what
/// threshold alerts are computed from. Settles are atomic, so of several
/// concurrent settles exactly one sees a threshold crossed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settled {
    pub before: Micros,
    pub after: Micros,
}

/// The in-process ledgers: one mutex over a map of scopes. The critical
/// sections are a few map operations.
#[derive(Debug)]
pub struct LocalLedger {
    scopes: Mutex<HashMap<String, Ledger>>,
    /// Holds settled in the last [`SETTLED_MEMORY`]: settling one again
    /// books nothing, as in Redis, where a settle may be retried.
    settled: moka::sync::Cache<String, ()>,
}

/// How long a settled hold id is remembered.
pub const SETTLED_MEMORY: Duration = Duration::from_secs(3600);

impl Default for LocalLedger {
    fn default() -> Self {
        LocalLedger {
            scopes: Mutex::default(),
            settled: moka::sync::Cache::builder()
                .max_capacity(1_000_000)
                .time_to_live(SETTLED_MEMORY)
                .build(),
        }
    }
}

#[derive(Debug, Default)]
struct Ledger {
    /// Spend per bucket.
    buckets: BTreeMap<String, Micros>,
    /// Live holds: id → (amount, expiry).
    holds: HashMap<String, (Micros, Instant)>,
}

impl Ledger {
    fn purge(&mut self, now: Instant) {
        self.holds.retain(|_, (_, expires)| *expires > now);
    }

    fn spent(&self, window: &[String]) -> Micros {
        window
            .iter()
            .filter_map(|b| self.buckets.get(b))
            .copied()
            .sum()
    }

    fn reserved(&self) -> Micros {
        self.holds.values().map(|(amount, _)| amount).sum()
    }
}

impl LocalLedger {
    /// Holds `amount` on every scope under `hold`, for at most `ttl`, if
    /// every scope can cover it; otherwise holds nothing.
    pub fn reserve(
        &self,
        hold: &str,
        amount: Micros,
        scopes: &[ScopeWindow],
        ttl: Duration,
    ) -> Result<(), Short> {
        let now = Instant::now();
        let mut all = self.lock();
        for (index, s) in scopes.iter().enumerate() {
            let ledger = all.entry(s.scope.clone()).or_default();
            ledger.purge(now);
            let (spent, reserved) = (ledger.spent(&s.window), ledger.reserved());
            if spent.saturating_add(reserved).saturating_add(amount) > s.limit {
                return Err(Short {
                    index,
                    spent,
                    reserved,
                });
            }
        }
        for s in scopes {
            all.entry(s.scope.clone())
                .or_default()
                .holds
                .insert(hold.to_owned(), (amount, now + ttl));
        }
        Ok(())
    }

    /// Releases `hold` (if still live) and books `actual` into each
    /// scope's current bucket — once: a hold settled before books nothing.
    pub fn settle(&self, hold: &str, actual: Micros, scopes: &[ScopeWindow]) -> Vec<Settled> {
        let mut all = self.lock();
        let actual = if self.settled.contains_key(hold) {
            0
        } else {
            self.settled.insert(hold.to_owned(), ());
            actual
        };
        scopes
            .iter()
            .map(|s| {
                let ledger = all.entry(s.scope.clone()).or_default();
                ledger.holds.remove(hold);
                let before = ledger.spent(&s.window);
                *ledger.buckets.entry(s.current.clone()).or_default() += actual.max(0);
                // Buckets no window reaches any more go.
                let oldest = s.window.iter().min().cloned().unwrap_or_default();
                ledger.buckets.retain(|b, _| b.as_str() >= oldest.as_str());
                Settled {
                    before,
                    after: ledger.spent(&s.window),
                }
            })
            .collect()
    }

    /// Spend booked before this process started (read back from the
    /// request log), into `scope`'s buckets; replaces what they held. Done
    /// once per scope, before its first reserve.
    pub fn seed(&self, scope: &str, spend: &[(String, Micros)]) {
        let mut all = self.lock();
        let ledger = all.entry(scope.to_owned()).or_default();
        for (bucket, amount) in spend {
            ledger.buckets.insert(bucket.clone(), *amount);
        }
    }

    /// The window's spend and live holds of one scope.
    pub fn usage(&self, scope: &ScopeWindow) -> (Micros, Micros) {
        let mut all = self.lock();
        match all.get_mut(&scope.scope) {
            Some(ledger) => {
                ledger.purge(Instant::now());
                (ledger.spent(&scope.window), ledger.reserved())
            }
            None => (0, 0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Ledger>> {
        // A panic elsewhere cannot leave a ledger half-updated: every
        // critical section is a few infallible map operations.
        self.scopes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(period: Period, when: &str) -> (ScopeWindow, SystemTime) {
        let now: DateTime<Utc> = when.parse().unwrap();
        ScopeWindow::at("key:k".to_owned(), &Budget { usd: 1.0, period }, now.into())
    }

    fn time(when: &str) -> SystemTime {
        when.parse::<DateTime<Utc>>().unwrap().into()
    }

    #[test]
    fn windows_and_resets_follow_the_utc_calendar() {
        let (w, resets) = at(Period::Day, "2026-11-23T15:00:00Z");
        assert_eq!(
            (w.window, w.current.as_str()),
            (vec!["d20261123".to_owned()], "d20261123")
        );
        assert_eq!(resets, time("2026-11-24T00:00:00Z"));
        assert_eq!(w.limit, 1_000_000);

        let (w, resets) = at(Period::Month, "2026-12-31T23:59:59Z");
        assert_eq!(w.window, vec!["m202612".to_owned()]);
        assert_eq!(resets, time("2027-01-01T00:00:00Z"));

        let (w, resets) = at(Period::RollingDays(3), "2026-03-01T08:00:00Z");
        assert_eq!(w.window, ["d20260301", "d20260228", "d20260227"]);
        assert_eq!(w.current, "d20260301");
        assert_eq!(resets, time("2026-03-02T00:00:00Z"));
    }

    fn scope(limit: Micros, window: &[&str]) -> ScopeWindow {
        ScopeWindow {
            scope: "s".to_owned(),
            limit,
            window: window.iter().map(|b| (*b).to_owned()).collect(),
            current: window[0].to_owned(),
            keep: DAY,
        }
    }

    #[test]
    fn holds_count_until_settled_then_the_real_cost_does() {
        let ledger = LocalLedger::default();
        let s = [scope(100, &["d2"])];
        assert!(ledger.reserve("a", 60, &s, DAY).is_ok());
        let short = ledger.reserve("b", 50, &s, DAY).unwrap_err();
        assert_eq!((short.index, short.spent, short.reserved), (0, 0, 60));
        assert_eq!(
            ledger.settle("a", 20, &s),
            [Settled {
                before: 0,
                after: 20
            }]
        );
        assert!(ledger.reserve("b", 80, &s, DAY).is_ok());
        assert!(ledger.reserve("c", 1, &s, DAY).is_err());
        assert_eq!(ledger.usage(&s[0]), (20, 80));
    }

    #[test]
    fn a_refusal_on_one_scope_holds_nothing_on_the_others() {
        let ledger = LocalLedger::default();
        let wide = scope(1000, &["d1"]);
        let narrow = ScopeWindow {
            scope: "n".to_owned(),
            ..scope(10, &["d1"])
        };
        let both = [wide.clone(), narrow];
        assert_eq!(ledger.reserve("a", 50, &both, DAY).unwrap_err().index, 1);
        assert_eq!(ledger.usage(&wide), (0, 0));
    }

    #[test]
    fn rolling_windows_sum_their_days_and_drop_older_ones() {
        let ledger = LocalLedger::default();
        ledger.settle("x", 30, &[scope(100, &["d1"])]);
        ledger.settle("y", 30, &[scope(100, &["d2", "d1"])]);
        assert_eq!(ledger.usage(&scope(100, &["d2", "d1"])), (60, 0));
        assert!(
            ledger
                .reserve("z", 41, &[scope(100, &["d2", "d1"])], DAY)
                .is_err()
        );
        // A day later, d1 is out of the window.
        let later = [scope(100, &["d3", "d2"])];
        assert!(ledger.reserve("z", 70, &later, DAY).is_ok());
    }

    #[test]
    fn expired_holds_stop_counting() {
        let ledger = LocalLedger::default();
        let s = [scope(100, &["d1"])];
        ledger.reserve("dead", 100, &s, Duration::ZERO).unwrap();
        assert!(ledger.reserve("live", 100, &s, DAY).is_ok());
    }

    #[test]
    fn amounts_round_up_to_the_micro_dollar() {
        assert_eq!(micros(0.000_000_1), 1);
        assert_eq!(micros(1.5), 1_500_000);
        assert_eq!((micros(-1.0), micros(f64::NAN)), (0, 0));
    }
}
