//! Token counts before any upstream has counted.
//!
//! - [`count_request`]: what a request's input will cost, for limits and
//!   budgets: exact for OpenAI models (tiktoken's encodings, with the chat
//!   format's per-message overhead), the estimate below for every other model
//!   (Anthropic publishes no offline tokenizer). Tool schemas are counted as
//!   their JSON text, an approximation of how OpenAI renders them.
//! - [`estimate`]: about four bytes of English per token, the rule of thumb
//!   OpenAI documents, at least one per word; cheap enough for every request
//!   (usage an upstream did not report, the simulator's usage).

use tiktoken_rs::CoreBPE;

use crate::chat::ChatRequest;

/// The chat format's overhead: tokens around each message, and those that
/// prime the reply (OpenAI's published counting recipe).
const PER_MESSAGE: u32 = 3;
const REPLY_PRIMING: u32 = 3;

/// Input tokens of `req` as `model` (an upstream model name) will count them.
pub fn count_request(req: &ChatRequest, model: &str) -> u32 {
    match tiktoken_rs::bpe_for_model(model) {
        Ok(bpe) => exact(req, bpe),
        Err(_) => estimate_request(req),
    }
}

fn exact(req: &ChatRequest, bpe: &CoreBPE) -> u32 {
    let count = |text: &str| u32::try_from(bpe.encode_ordinary(text).len()).unwrap_or(u32::MAX);
    let system = req
        .system
        .iter()
        .map(|s| PER_MESSAGE.saturating_add(count(s)));
    let messages = req.messages.iter().map(|m| {
        let calls = m
            .tool_calls
            .iter()
            .map(|c| count(&c.name).saturating_add(count(&c.arguments)));
        PER_MESSAGE
            .saturating_add(count(&m.joined_text()))
            .saturating_add(calls.fold(0, u32::saturating_add))
    });
    let tools = req.tools.iter().map(|t| {
        count(&t.name)
            .saturating_add(t.description.as_deref().map_or(0, count))
            .saturating_add(count(&t.parameters.to_string()))
    });
    system
        .chain(messages)
        .chain(tools)
        .fold(REPLY_PRIMING, u32::saturating_add)
}

/// Estimated tokens in `text`: one per started group of four bytes, and at
/// least one per whitespace-separated word, so short words are not undercounted.
pub fn estimate(text: &str) -> u32 {
    let by_bytes = text.len().div_ceil(4);
    let by_words = text.split_whitespace().count();
    u32::try_from(by_bytes.max(by_words)).unwrap_or(u32::MAX)
}

/// Estimated input tokens of a request: system prompts, message text and
/// tool-call arguments (images and tool schemas are not counted).
pub fn estimate_request(req: &ChatRequest) -> u32 {
    let system = req.system.iter().map(|s| estimate(s));
    let messages = req.messages.iter().map(|m| {
        let args = m.tool_calls.iter().map(|c| estimate(&c.arguments));
        estimate(&m.joined_text()).saturating_add(args.sum())
    });
    system.chain(messages).fold(0, u32::saturating_add)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::{Message, Role};

    fn chat(text: &str) -> ChatRequest {
        ChatRequest {
            messages: vec![Message::text(Role::User, text)],
            ..ChatRequest::default()
        }
    }

    #[test]
    fn openai_models_are_counted_exactly_with_the_chat_overhead() {
        // "Hello world" is 2 tokens in o200k_base and cl100k_base.
        let req = chat("Hello world");
        assert_eq!(
            count_request(&req, "gpt-4o-mini"),
            2 + PER_MESSAGE + REPLY_PRIMING
        );
        assert_eq!(
            count_request(&req, "gpt-4"),
            2 + PER_MESSAGE + REPLY_PRIMING
        );
        // A dated name uses its family's encoding.
        assert_eq!(
            count_request(&req, "gpt-4o-2024-08-06"),
            count_request(&req, "gpt-4o")
        );
    }

    #[test]
    fn other_models_get_the_estimate() {
        let req = chat("Hello world, how are you today?");
        assert_eq!(
            count_request(&req, "claude-sonnet-4-5"),
            estimate_request(&req)
        );
        assert_eq!(count_request(&req, "my-llama"), estimate_request(&req));
    }

    #[test]
    fn empty_text_is_zero_tokens_and_words_count_at_least_one() {
        assert_eq!(estimate(""), 0);
        assert_eq!(estimate("hello"), 2);
        assert_eq!(estimate("a b c d e f g h"), 8);
    }
}
