//! Offline token estimate for text no upstream has counted (the simulator's
//! usage, a stream whose upstream reported none). About four bytes of English
//! per token, the rule of thumb OpenAI documents; exact per-model counting
//! comes with the cost-control work.

/// Estimated tokens in `text`: one per started group of four bytes, and at
/// least one per whitespace-separated word, so short words are not undercounted.
pub fn estimate(text: &str) -> u32 {
    let by_bytes = text.len().div_ceil(4);
    let by_words = text.split_whitespace().count();
    u32::try_from(by_bytes.max(by_words)).unwrap_or(u32::MAX)
}

/// Estimated input tokens of a request: system prompts, message text and
/// tool-call arguments (images and tool schemas are not counted).
pub fn estimate_request(req: &crate::chat::ChatRequest) -> u32 {
    let system = req.system.iter().map(|s| estimate(s));
    let messages = req.messages.iter().map(|m| {
        let args = m.tool_calls.iter().map(|c| estimate(&c.arguments));
        estimate(&m.joined_text()).saturating_add(args.sum())
    });
    system.chain(messages).fold(0, u32::saturating_add)
}

#[cfg(test)]
mod tests {
    use super::estimate;

    #[test]
    fn empty_text_is_zero_tokens_and_words_count_at_least_one() {
        assert_eq!(estimate(""), 0);
        assert_eq!(estimate("hello"), 2);
        assert_eq!(estimate("a b c d e f g h"), 8);
    }
}
