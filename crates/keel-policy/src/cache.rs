//! The exact-match response cache: an answer is reused only for a request
//! that would produce the same answer — the same model alias, conversation,
//! tools and every parameter that changes output. In process (moka),
//! bounded in bytes, each entry with its own time to live.
//!
//! The key is a SHA-256 of the canonical JSON of those fields (struct
//! fields in a fixed order, maps sorted), so the same request streamed or
//! not hits the same entry. The front door is part of it (its extra
//! parameters mean different things); `stream`, usage options and `user` do
//! not change the answer and are left out.

use std::sync::Arc;
use std::time::{Duration, Instant};

use keel_protocol::chat::{ChatRequest, ChatResponse};
use moka::sync::Cache;
use serde::Serialize;
use sha2::{Digest, Sha256};

/// What is stored: the answer and when it was.
#[derive(Debug, Clone)]
pub struct Entry {
    pub response: Arc<ChatResponse>,
    pub stored: Instant,
    ttl: Duration,
}

#[derive(Clone)]
pub struct ResponseCache {
    entries: Cache<[u8; 32], Entry>,
}

impl std::fmt::Debug for ResponseCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseCache")
            .field("entries", &self.entries.entry_count())
            .finish()
    }
}

/// Each entry's own time to live (moka's per-entry expiry).
struct PerEntry;

impl moka::Expiry<[u8; 32], Entry> for PerEntry {
    fn expire_after_create(&self, _: &[u8; 32], e: &Entry, _: Instant) -> Option<Duration> {
        Some(e.ttl)
    }
}

/// The fields of a request that decide its answer, in a fixed order.
#[derive(Serialize)]
struct Keyed<'a> {
    model: &'a str,
    system: &'a [String],
    messages: &'a [keel_protocol::chat::Message],
    max_tokens: Option<u32>,
    temperature: Option<f64>,
    top_p: Option<f64>,
    stop: &'a [String],
    tools: &'a [keel_protocol::chat::Tool],
    tool_choice: &'a Option<keel_protocol::chat::ToolChoice>,
    response_format: &'a Option<keel_protocol::chat::ResponseFormat>,
    extra: &'a serde_json::Map<String, serde_json::Value>,
    /// `extra` means different things at each front door.
    protocol: keel_protocol::chat::Protocol,
}

impl ResponseCache {
    /// A cache holding at most about `max_bytes` of answers.
    pub fn new(max_bytes: u64) -> ResponseCache {
        ResponseCache {
            entries: Cache::builder()
                .max_capacity(max_bytes)
                .weigher(|_, e: &Entry| weight(&e.response))
                .expire_after(PerEntry)
                .build(),
        }
    }

    /// The key of `req` (`req.model` being the alias the client asked for).
    pub fn key(req: &ChatRequest) -> [u8; 32] {
        let keyed = Keyed {
            model: &req.model,
            system: &req.system,
            messages: &req.messages,
            max_tokens: req.max_tokens,
            temperature: req.temperature,
            top_p: req.top_p,
            stop: &req.stop,
            tools: &req.tools,
            tool_choice: &req.tool_choice,
            response_format: &req.response_format,
            extra: &req.extra,
            protocol: req.protocol,
        };
        // Serialising these plain types cannot fail; an empty key would
        // only ever match itself.
        let json = serde_json::to_vec(&keyed).unwrap_or_default();
        Sha256::digest(&json).into()
    }

    /// The stored answer, if younger than `max_age` (when given).
    pub fn get(&self, key: &[u8; 32], max_age: Option<Duration>) -> Option<Entry> {
        self.entries
            .get(key)
            .filter(|e| max_age.is_none_or(|age| e.stored.elapsed() <= age))
    }

    pub fn put(&self, key: [u8; 32], response: ChatResponse, ttl: Duration) {
        self.entries.insert(
            key,
            Entry {
                response: Arc::new(response),
                stored: Instant::now(),
                ttl,
            },
        );
    }
}

/// About how many bytes an answer holds.
fn weight(r: &ChatResponse) -> u32 {
    let calls: usize = r
        .tool_calls
        .iter()
        .map(|c| c.id.len() + c.name.len() + c.arguments.len())
        .sum();
    u32::try_from(r.text.len() + r.id.len() + r.model.len() + calls + 64).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_protocol::chat::{FinishReason, Message, Role, Usage};

    fn req(text: &str) -> ChatRequest {
        ChatRequest {
            model: "m".to_owned(),
            messages: vec![Message::text(Role::User, text)],
            ..ChatRequest::default()
        }
    }

    #[test]
    fn only_what_changes_the_answer_changes_the_key() {
        let base = req("hi");
        let mut streamed = base.clone();
        streamed.stream = true;
        streamed.include_usage = true;
        streamed.user = Some("u-1".to_owned());
        assert_eq!(ResponseCache::key(&base), ResponseCache::key(&streamed));
        for changed in [
            req("hello"),
            ChatRequest {
                temperature: Some(0.5),
                ..base.clone()
            },
            ChatRequest {
                max_tokens: Some(10),
                ..base.clone()
            },
            ChatRequest {
                model: "other".to_owned(),
                ..base.clone()
            },
            ChatRequest {
                system: vec!["be brief".to_owned()],
                ..base.clone()
            },
        ] {
            assert_ne!(
                ResponseCache::key(&base),
                ResponseCache::key(&changed),
                "{changed:?}"
            );
        }
    }

    #[test]
    fn entries_are_served_until_too_old() {
        let cache = ResponseCache::new(1 << 20);
        let key = ResponseCache::key(&req("hi"));
        assert!(cache.get(&key, None).is_none());
        let answer = ChatResponse {
            id: "a".to_owned(),
            model: "m".to_owned(),
            created: 1,
            text: "hello".to_owned(),
            tool_calls: Vec::new(),
            finish_reason: FinishReason::Stop,
            usage: Usage::default(),
        };
        cache.put(key, answer, Duration::from_secs(60));
        assert_eq!(cache.get(&key, None).unwrap().response.text, "hello");
        assert!(cache.get(&key, Some(Duration::from_secs(60))).is_some());
        let other = ResponseCache::key(&req("something else"));
        assert!(cache.get(&other, None).is_none());
    }
}
