//! The last good answer to each recent request, for `on_failure = "stale"`:
//! when every target fails, a client that asked the same thing before gets
//! that answer, marked stale. Bounded: the oldest entry goes first. (The
//! response cache of the cost-control work will subsume this.)

use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::Mutex;

use keel_protocol::chat::{ChatRequest, ChatResponse};

pub(crate) struct StaleAnswers {
    capacity: usize,
    inner: Mutex<(HashMap<u64, ChatResponse>, VecDeque<u64>)>,
}

impl StaleAnswers {
    pub fn new(capacity: usize) -> Self {
        StaleAnswers {
            capacity,
            inner: Mutex::new((HashMap::new(), VecDeque::new())),
        }
    }

    /// What identifies "the same request": the alias and everything the
    /// client sent that shapes the answer, but not whether it streams.
    pub fn key(alias: &str, req: &ChatRequest) -> u64 {
        let mut shape = req.clone();
        shape.stream = false;
        shape.include_usage = false;
        let mut h = DefaultHasher::new();
        alias.hash(&mut h);
        serde_json::to_vec(&shape).unwrap_or_default().hash(&mut h);
        h.finish()
    }

    pub fn put(&self, key: u64, answer: &ChatResponse) {
        let Ok(mut guard) = self.inner.lock() else {
            return;
        };
        let (map, order) = &mut *guard;
        if map.insert(key, answer.clone()).is_none() {
            order.push_back(key);
            while order.len() > self.capacity {
                if let Some(old) = order.pop_front() {
                    map.remove(&old);
                }
            }
        }
    }

    pub fn get(&self, key: u64) -> Option<ChatResponse> {
        self.inner.lock().ok()?.0.get(&key).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_protocol::chat::{FinishReason, Message, Role, Usage};

    fn answer(text: &str) -> ChatResponse {
        ChatResponse {
            id: "a".into(),
            model: "m".into(),
            created: 1,
            text: text.into(),
            tool_calls: Vec::new(),
            finish_reason: FinishReason::Stop,
            usage: Usage::default(),
        }
    }

    #[test]
    fn same_request_streamed_or_not_shares_a_key_and_the_oldest_is_evicted() {
        let mut req = ChatRequest {
            messages: vec![Message::text(Role::User, "hi")],
            ..ChatRequest::default()
        };
        let k = StaleAnswers::key("m", &req);
        req.stream = true;
        assert_eq!(StaleAnswers::key("m", &req), k);
        assert_ne!(StaleAnswers::key("other", &req), k);

        let store = StaleAnswers::new(2);
        store.put(1, &answer("one"));
        store.put(2, &answer("two"));
        store.put(3, &answer("three"));
        assert!(store.get(1).is_none());
        assert_eq!(store.get(3).map(|a| a.text), Some("three".into()));
    }
}
