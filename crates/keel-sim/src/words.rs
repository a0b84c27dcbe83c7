//! The simulator's vocabulary: seeded filler words, so default replies have
//! several stream chunks and generated strings look like text.

use rand::Rng;
use rand::rngs::SmallRng;

const WORDS: &[&str] = &[
    "amber", "brisk", "cedar", "delta", "ember", "fjord", "glade", "harbor", "indigo", "juniper",
    "kestrel", "lumen", "meadow", "nimbus", "orchid", "pebble", "quartz", "river", "summit",
    "tundra", "umber", "violet", "willow", "zephyr",
];

pub(crate) fn pick(rng: &mut SmallRng) -> &'static str {
    WORDS[rng.random_range(0..WORDS.len())]
}

/// `n` words separated by spaces.
pub(crate) fn phrase(rng: &mut SmallRng, n: usize) -> String {
    (0..n).map(|_| pick(rng)).collect::<Vec<_>>().join(" ")
}

/// Longest chunk without whitespace: compact JSON still streams in pieces.
const MAX_CHUNK: usize = 16;

/// Word-ish chunks of `text` (each word with the whitespace after it, long
/// runs split every [`MAX_CHUNK`] bytes), the unit of stream deltas and of
/// `max_tokens` truncation. Concatenated, they are `text` exactly.
pub(crate) fn chunks(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = text;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let end = rest
            .char_indices()
            .find(|(i, c)| c.is_whitespace() || *i >= MAX_CHUNK)
            .map_or(rest.len(), |(i, c)| {
                if c.is_whitespace() {
                    i + c.len_utf8()
                } else {
                    i
                }
            });
        let (head, tail) = rest.split_at(end);
        rest = tail;
        Some(head)
    })
}

/// `text` on one line, at most `max` characters.
pub(crate) fn clip(text: &str, max: usize) -> String {
    text.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .take(max)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_cover_the_text_exactly() {
        let text = "one  two\n{\"a\":\"ééééééééééé\"} 日本語 ";
        let parts: Vec<&str> = chunks(text).collect();
        assert_eq!(parts.concat(), text);
        assert_eq!(parts[..3], ["one ", " ", "two\n"]);
        assert!(
            parts
                .iter()
                .all(|p| !p.is_empty() && p.len() <= MAX_CHUNK + 4)
        );
        assert_eq!(chunks("").count(), 0);
    }
}
