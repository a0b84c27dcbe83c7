//! Load balancing across the equivalent targets of a group.
//!
//! [`Group::order`] ranks every member for one request: the first is the
//! pick, the rest are the fallbacks in order. Members the caller reports
//! unhealthy (open breaker, full limiter) are ranked after all healthy ones
//! but never dropped, so when nothing else is left the caller may still try
//! them (e.g. a half-open probe). Choices per [`Strategy`]:
//! - `Weighted`: a weighted random permutation (Efraimidis–Spirakis keys
//!   `-ln(u)/w`): the pick is proportional to weight, and so is each
//!   fallback among those left, spreading retries too.
//! - `LeastInFlight`: power of two choices on load `(in_flight + 1) / weight`
//!   (the `+ 1` lets weight decide between idle members); the fallbacks
//!   follow by load. P2C avoids the herd that "always the least loaded" makes.
//! - `LatencyEwma`: peak EWMA as in linkerd/finagle: cost
//!   `ewma × (in_flight + 1) / weight`, lowest first. A slower sample than the
//!   estimate replaces it at once (peak); a faster one is blended in with
//!   weight `1 - e^(-Δt/τ)`, τ = [`EWMA_DECAY`]. While a member is idle its
//!   estimate decays towards zero, so a once-slow member is probed again.
//!   Estimates are floored at 1 ms so in-flight load always counts. A member
//!   without samples is optimistic: it costs as much as the best estimate.
//!
//! Ties are broken at random. Weights of 0 count as 1. `start(i)` with an
//! index out of range tracks nothing (no panic).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rand::Rng;
use tokio::time::Instant;

/// Time constant of the latency EWMA.
pub const EWMA_DECAY: Duration = Duration::from_secs(10);
/// Floor of a latency estimate, in nanoseconds (1 ms).
const MIN_COST_NS: f64 = 1e6;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    Weighted,
    LeastInFlight,
    LatencyEwma,
}

#[derive(Debug)]
struct Member {
    weight: f64,
    in_flight: AtomicUsize,
    ewma: Mutex<Option<Ewma>>,
}

#[derive(Debug, Clone, Copy)]
struct Ewma {
    ns: f64,
    at: Instant,
}

impl Ewma {
    /// The weight the old estimate keeps after `now - at`.
    fn keep(&self, now: Instant) -> f64 {
        let dt = now.saturating_duration_since(self.at).as_secs_f64();
        (-dt / EWMA_DECAY.as_secs_f64()).exp()
    }
}

impl Member {
    fn load(&self) -> f64 {
        (self.in_flight.load(Ordering::Relaxed) + 1) as f64 / self.weight
    }

    fn estimate(&self, now: Instant) -> Option<f64> {
        let e = *self.ewma.lock().unwrap_or_else(PoisonError::into_inner);
        e.map(|e| (e.ns * e.keep(now)).max(MIN_COST_NS))
    }
}

/// The members of one group (cheap to clone: shared state).
#[derive(Debug, Clone)]
pub struct Group {
    strategy: Strategy,
    members: Arc<[Member]>,
}

/// Tracks one call to a member; dropping it ends the call.
#[derive(Debug)]
pub struct CallGuard {
    members: Arc<[Member]>,
    i: usize,
}

impl Group {
    pub fn new(strategy: Strategy, weights: Vec<u32>) -> Self {
        let members = weights.into_iter().map(|w| Member {
            weight: f64::from(w.max(1)),
            in_flight: AtomicUsize::new(0),
            ewma: Mutex::new(None),
        });
        Self {
            strategy,
            members: members.collect(),
        }
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Calls in flight to member `i` (0 if out of range).
    pub fn in_flight(&self, i: usize) -> usize {
        self.members
            .get(i)
            .map_or(0, |m| m.in_flight.load(Ordering::Relaxed))
    }

    /// Order in which to try the members for one request: the first is the
    /// pick, the rest the fallbacks in order. Members for which `healthy(i)`
    /// is false come last, still ranked, so the caller may try them if all
    /// else fails.
    pub fn order(&self, healthy: impl Fn(usize) -> bool, rng: &mut impl Rng) -> Vec<usize> {
        // Latency estimates, only for LatencyEwma (an empty Vec allocates nothing).
        let mut est = Vec::new();
        let mut best = MIN_COST_NS;
        if self.strategy == Strategy::LatencyEwma {
            let now = Instant::now();
            est.extend(self.members.iter().map(|m| m.estimate(now)));
            best = est.iter().flatten().copied().fold(f64::INFINITY, f64::min);
            if !best.is_finite() {
                best = MIN_COST_NS;
            }
        }
        // (unhealthy, key, random tie-break, member): sorting puts the healthy
        // members first, each part by key.
        let mut keyed: Vec<(bool, f64, u32, usize)> = (self.members.iter().enumerate())
            .map(|(i, m)| {
                let key = match self.strategy {
                    Strategy::Weighted => -(1.0 - rng.random::<f64>()).ln() / m.weight,
                    Strategy::LeastInFlight => m.load(),
                    Strategy::LatencyEwma => {
                        est.get(i).copied().flatten().unwrap_or(best) * m.load()
                    }
                };
                (!healthy(i), key, rng.random(), i)
            })
            .collect();
        keyed.sort_unstable_by(|a, b| {
            (a.0.cmp(&b.0))
                .then(a.1.total_cmp(&b.1))
                .then(a.2.cmp(&b.2))
        });
        if self.strategy == Strategy::LeastInFlight {
            let healthy_n = keyed.iter().take_while(|k| !k.0).count();
            let (first, last) = keyed.split_at_mut(healthy_n);
            two_choices(first, rng);
            two_choices(last, rng);
        }
        keyed.into_iter().map(|k| k.3).collect()
    }

    /// Track a call to member `i` until the guard is finished or dropped.
    pub fn start(&self, i: usize) -> CallGuard {
        if let Some(m) = self.members.get(i) {
            m.in_flight.fetch_add(1, Ordering::Relaxed);
        }
        CallGuard {
            members: self.members.clone(),
            i,
        }
    }
}

/// Power of two choices on a slice sorted by load: of two distinct random
/// positions the lower (less loaded) one wins and moves to the front; the
/// others keep their load order.
fn two_choices<T>(sorted: &mut [T], rng: &mut impl Rng) {
    if sorted.len() < 2 {
        return;
    }
    let a = rng.random_range(0..sorted.len());
    let b = rng.random_range(0..sorted.len() - 1);
    let pick = a.min(if b >= a { b + 1 } else { b });
    sorted[..=pick].rotate_right(1);
}

impl CallGuard {
    /// The call succeeded after `latency`: record it in the EWMA, then end it.
    pub fn finish(self, latency: Duration) {
        let Some(m) = self.members.get(self.i) else {
            return;
        };
        let (now, rtt) = (Instant::now(), latency.as_secs_f64() * 1e9);
        let mut e = m.ewma.lock().unwrap_or_else(PoisonError::into_inner);
        let ns = match *e {
            None => rtt,
            Some(prev) => {
                let keep = prev.keep(now);
                let cur = prev.ns * keep;
                if rtt > cur {
                    rtt
                } else {
                    cur + rtt * (1.0 - keep)
                }
            }
        };
        *e = Some(Ewma { ns, at: now });
    }
}

impl Drop for CallGuard {
    fn drop(&mut self) {
        if let Some(m) = self.members.get(self.i) {
            m.in_flight.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::SmallRng;

    const ALL: [Strategy; 3] = [
        Strategy::Weighted,
        Strategy::LeastInFlight,
        Strategy::LatencyEwma,
    ];

    fn firsts(g: &Group, runs: usize, rng: &mut SmallRng) -> Vec<usize> {
        let mut n = vec![0; g.len()];
        for _ in 0..runs {
            n[g.order(|_| true, rng)[0]] += 1;
        }
        n
    }

    #[test]
    fn weighted_pick_follows_weights() {
        let g = Group::new(Strategy::Weighted, vec![1, 3]);
        let n = firsts(&g, 10_000, &mut SmallRng::seed_from_u64(7));
        assert!((2_200..=2_800).contains(&n[0]), "{n:?}");
    }

    #[test]
    fn least_in_flight_avoids_a_busy_member() {
        let g = Group::new(Strategy::LeastInFlight, vec![1, 1, 1]);
        let _busy: Vec<_> = (0..10).map(|_| g.start(0)).collect();
        let _one = g.start(1);
        let mut rng = SmallRng::seed_from_u64(1);
        for _ in 0..1_000 {
            let order = g.order(|_| true, &mut rng);
            assert_ne!(order[0], 0);
            assert_eq!(order[2], 0, "fallbacks by load");
        }
        let n = firsts(&g, 1_000, &mut rng);
        assert!(n[2] > n[1], "the idle member wins more often: {n:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn ewma_prefers_the_faster_member() {
        let g = Group::new(Strategy::LatencyEwma, vec![1, 1]);
        for _ in 0..5 {
            g.start(0).finish(Duration::from_millis(400));
            g.start(1).finish(Duration::from_millis(100));
            tokio::time::advance(Duration::from_secs(1)).await;
        }
        let mut rng = SmallRng::seed_from_u64(3);
        assert_eq!(firsts(&g, 100, &mut rng), vec![0, 100]);
        // Load counts too: 100 ms × 5 in flight costs more than 400 ms × 1.
        let _busy: Vec<_> = (0..4).map(|_| g.start(1)).collect();
        assert_eq!(g.order(|_| true, &mut rng), vec![0, 1]);
    }

    #[tokio::test(start_paused = true)]
    async fn ewma_peak_penalises_and_unsampled_members_get_traffic() {
        let g = Group::new(Strategy::LatencyEwma, vec![1, 1]);
        g.start(0).finish(Duration::from_millis(100));
        let mut rng = SmallRng::seed_from_u64(4);
        let n = firsts(&g, 1_000, &mut rng);
        assert!(n[1] > 300, "optimistic about the new member: {n:?}");
        g.start(1).finish(Duration::from_millis(100));
        tokio::time::advance(Duration::from_secs(1)).await;
        g.start(0).finish(Duration::from_secs(2)); // a spike counts at once
        assert_eq!(firsts(&g, 100, &mut rng), vec![0, 100]);
        // Idle, member 0's estimate decays and it is probed again.
        tokio::time::advance(Duration::from_secs(60)).await;
        g.start(1).finish(Duration::from_millis(100));
        assert!(firsts(&g, 1_000, &mut rng)[0] > 0);
    }

    #[test]
    fn unhealthy_members_go_last_but_stay() {
        let mut rng = SmallRng::seed_from_u64(5);
        for s in ALL {
            let g = Group::new(s, vec![5, 1, 5, 1]);
            for _ in 0..200 {
                let order = g.order(|i| i % 2 == 1, &mut rng);
                assert_eq!(order.len(), 4);
                let mut tail = order[2..].to_vec();
                tail.sort_unstable();
                assert_eq!(tail, vec![0, 2], "{s:?}: {order:?}");
            }
        }
    }

    #[test]
    fn single_and_empty_groups() {
        let mut rng = SmallRng::seed_from_u64(6);
        for s in ALL {
            let g = Group::new(s, vec![0]);
            assert_eq!(g.order(|_| true, &mut rng), vec![0]);
            assert_eq!(g.order(|_| false, &mut rng), vec![0]);
            assert!(Group::new(s, vec![]).order(|_| true, &mut rng).is_empty());
        }
    }

    #[tokio::test(start_paused = true)]
    async fn guards_decrement_on_drop_and_finish() {
        let g = Group::new(Strategy::LeastInFlight, vec![1, 1]);
        let (a, b) = (g.start(1), g.start(1));
        assert_eq!(g.in_flight(1), 2);
        drop(a);
        assert_eq!(g.in_flight(1), 1);
        tokio::spawn(async move { b.finish(Duration::from_millis(5)) })
            .await
            .unwrap();
        assert_eq!((g.in_flight(0), g.in_flight(1)), (0, 0));
        drop(g.start(9)); // out of range: tracked nowhere, no panic
    }

    #[test]
    fn strategy_deserialises_snake_case_and_types_are_send() {
        use serde::Deserialize;
        use serde::de::IntoDeserializer;
        use serde::de::value::{Error, StrDeserializer};
        let de: StrDeserializer<'_, Error> = "latency_ewma".into_deserializer();
        assert_eq!(Strategy::deserialize(de).unwrap(), Strategy::LatencyEwma);
        let de: StrDeserializer<'_, Error> = "least_in_flight".into_deserializer();
        assert_eq!(Strategy::deserialize(de).unwrap(), Strategy::LeastInFlight);
        fn check<T: Send + Sync + 'static>() {}
        check::<CallGuard>();
        check::<Group>();
    }
}
