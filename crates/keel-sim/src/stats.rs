//! Counters for tests and `GET /_sim/stats`: cheap atomics, plus two small
//! maps keyed by fixed names (route patterns, fault names) so a client cannot
//! grow them without bound.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use serde::{Deserialize, Serialize};

/// A snapshot of the counters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimStats {
    /// Requests planned by the engine (chat and embeddings, HTTP or in-process).
    pub requests: u64,
    /// HTTP requests per route pattern (`unmatched` for unknown paths).
    pub by_path: BTreeMap<String, u64>,
    /// Requests per injected fault (`status`, `reset`, `schema-violation`…).
    pub faults: BTreeMap<String, u64>,
    /// HTTP responses the client abandoned before they were complete.
    pub disconnects: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    requests: AtomicU64,
    disconnects: AtomicU64,
    by_path: Mutex<BTreeMap<String, u64>>,
    faults: Mutex<BTreeMap<&'static str, u64>>,
}

impl Counters {
    /// Counts a request and returns its index (from 0), which seeds its
    /// fault draw.
    pub(crate) fn next_request(&self) -> u64 {
        self.requests.fetch_add(1, Ordering::Relaxed)
    }

    pub(crate) fn fault(&self, name: &'static str) {
        // A poisoned map only means another thread panicked mid-increment;
        // the counts are still usable.
        let mut faults = self.faults.lock().unwrap_or_else(PoisonError::into_inner);
        *faults.entry(name).or_default() += 1;
    }

    pub(crate) fn path(&self, path: &str) {
        let mut paths = self.by_path.lock().unwrap_or_else(PoisonError::into_inner);
        match paths.get_mut(path) {
            Some(n) => *n += 1,
            None => {
                paths.insert(path.to_owned(), 1);
            }
        }
    }

    pub(crate) fn snapshot(&self) -> SimStats {
        let by_path = self
            .by_path
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let faults = self.faults.lock().unwrap_or_else(PoisonError::into_inner);
        SimStats {
            requests: self.requests.load(Ordering::Relaxed),
            by_path,
            faults: faults.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect(),
            disconnects: self.disconnects.load(Ordering::Relaxed),
        }
    }
}

/// Held by a response while it is produced; dropped before [`finish`](Self::finish)
/// (the client went away and hyper dropped the handler or the body) it counts
/// a disconnect.
#[derive(Debug)]
pub(crate) struct DisconnectGuard {
    counters: Arc<Counters>,
    finished: bool,
}

impl DisconnectGuard {
    pub(crate) fn new(counters: Arc<Counters>) -> Self {
        DisconnectGuard {
            counters,
            finished: false,
        }
    }

    pub(crate) fn finish(mut self) {
        self.finished = true;
    }
}

impl Drop for DisconnectGuard {
    fn drop(&mut self) {
        if !self.finished {
            self.counters.disconnects.fetch_add(1, Ordering::Relaxed);
        }
    }
}
