//! What a request cost: a shipped price table for current OpenAI and
//! Anthropic models, extended and overridden by `[pricing."MODEL"]` in the
//! config, looked up by the upstream model name.
//!
//! Names match by longest prefix, so `gpt-4o` prices `gpt-4o-2024-08-06` and
//! `claude-sonnet-4-5` prices `claude-sonnet-4-5-20250929`; `gpt-4o-mini`
//! wins over `gpt-4o` for `gpt-4o-mini-2024-07-18`. A model in neither table
//! is unpriced: its cost is unknown (`None`), never silently zero — a
//! self-hosted model is priced at zero by saying so in the config.

use std::collections::BTreeMap;

use keel_config::Price;

/// List prices in US dollars per million tokens (input, output, cached
/// input), as the providers published them in 2025. Prices change: the
/// config's `[pricing]` table overrides any of them.
const SHIPPED: &[(&str, f64, f64, f64)] = &[
    // OpenAI
    ("gpt-5", 1.25, 10.0, 0.125),
    ("gpt-5-mini", 0.25, 2.0, 0.025),
    ("gpt-5-nano", 0.05, 0.40, 0.005),
    ("gpt-4.1", 2.0, 8.0, 0.50),
    ("gpt-4.1-mini", 0.40, 1.60, 0.10),
    ("gpt-4.1-nano", 0.10, 0.40, 0.025),
    ("gpt-4o", 2.50, 10.0, 1.25),
    ("gpt-4o-mini", 0.15, 0.60, 0.075),
    ("o3", 2.0, 8.0, 0.50),
    ("o4-mini", 1.10, 4.40, 0.275),
    ("o1", 15.0, 60.0, 7.50),
    ("text-embedding-3-small", 0.02, 0.0, 0.02),
    ("text-embedding-3-large", 0.13, 0.0, 0.13),
    // Anthropic (cached input: cache reads)
    ("claude-opus-4-1", 15.0, 75.0, 1.50),
    ("claude-opus-4", 15.0, 75.0, 1.50),
    ("claude-sonnet-4-5", 3.0, 15.0, 0.30),
    ("claude-sonnet-4", 3.0, 15.0, 0.30),
    ("claude-3-7-sonnet", 3.0, 15.0, 0.30),
    ("claude-haiku-4-5", 1.0, 5.0, 0.10),
    ("claude-3-5-haiku", 0.80, 4.0, 0.08),
];

/// The table in effect: shipped prices under the config's.
#[derive(Debug, Clone, Default)]
pub struct Pricing {
    prices: BTreeMap<String, Price>,
}

impl Pricing {
    pub fn new(overrides: &BTreeMap<String, Price>) -> Pricing {
        let mut prices: BTreeMap<String, Price> = SHIPPED
            .iter()
            .map(|&(name, input, output, cached)| {
                (
                    name.to_owned(),
                    Price {
                        input,
                        output,
                        cached_input: Some(cached),
                    },
                )
            })
            .collect();
        prices.extend(overrides.iter().map(|(k, v)| (k.clone(), *v)));
        Pricing { prices }
    }

    /// The price of `model`: the longest configured or shipped name it
    /// starts with.
    pub fn price(&self, model: &str) -> Option<Price> {
        self.prices
            .iter()
            .filter(|(name, _)| model.starts_with(name.as_str()))
            .max_by_key(|(name, _)| name.len())
            .map(|(_, p)| *p)
    }

    /// Dollars for `input` tokens (of which `cached` were cached prompt
    /// tokens) and `output` tokens of `model`; `None` when it is unpriced.
    pub fn cost(&self, model: &str, input: u64, cached: u64, output: u64) -> Option<f64> {
        let p = self.price(model)?;
        let cached = cached.min(input);
        let fresh = input - cached;
        let per = |tokens: u64, rate: f64| tokens as f64 * rate / 1_000_000.0;
        Some(
            per(fresh, p.input)
                + per(cached, p.cached_input.unwrap_or(p.input))
                + per(output, p.output),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn longest_prefix_prices_dated_and_family_names() {
        let p = Pricing::new(&BTreeMap::new());
        assert!(close(p.price("gpt-4o-2024-08-06").unwrap().input, 2.50));
        assert!(close(
            p.price("gpt-4o-mini-2024-07-18").unwrap().input,
            0.15
        ));
        assert!(close(
            p.price("claude-sonnet-4-5-20250929").unwrap().output,
            15.0
        ));
        assert!(p.price("llama-3.1-8b").is_none());
        assert!(p.price("gpt").is_none());
    }

    #[test]
    fn cost_splits_fresh_cached_and_output_tokens() {
        let p = Pricing::new(&BTreeMap::new());
        // gpt-4o: 1000 in (400 cached), 500 out.
        let c = p.cost("gpt-4o", 1000, 400, 500).unwrap();
        assert!(
            close(c, 600.0 * 2.5e-6 + 400.0 * 1.25e-6 + 500.0 * 10e-6),
            "{c}"
        );
        // More cached than input (a confused upstream) never goes negative.
        assert!(p.cost("gpt-4o", 10, 50, 0).unwrap() >= 0.0);
        assert_eq!(p.cost("my-local-model", 10, 0, 10), None);
    }

    #[test]
    fn the_config_overrides_and_extends_the_table() {
        let overrides = BTreeMap::from([
            (
                "gpt-4o".to_owned(),
                Price {
                    input: 1.0,
                    output: 2.0,
                    cached_input: None,
                },
            ),
            (
                "llama".to_owned(),
                Price {
                    input: 0.0,
                    output: 0.0,
                    cached_input: None,
                },
            ),
        ]);
        let p = Pricing::new(&overrides);
        // Cached input falls back to the input price when not given.
        assert!(close(p.cost("gpt-4o", 1_000_000, 500_000, 0).unwrap(), 1.0));
        assert_eq!(p.cost("llama-3.1-8b", 100, 0, 100), Some(0.0));
        // The shipped gpt-4o-mini still wins for its own names.
        assert!(close(p.price("gpt-4o-mini").unwrap().input, 0.15));
    }
}
