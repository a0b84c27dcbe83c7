//! Virtual keys: issued by keel, shown once, stored hashed.
//!
//! A key reads `kk-<id>-<secret>`: `id` (12 lowercase letters and digits)
//! names it everywhere — records, metrics, the CLI — and is not secret;
//! `secret` is 32 random letters and digits (~190 bits). Only the SHA-256
//! of the secret is stored. A password hash (argon2, bcrypt) would add
//! nothing: it slows guessing of low-entropy secrets, and 190 random bits
//! cannot be guessed. The digest is compared in constant time.

use keel_config::{Budget, RateLimit};
use rand::Rng;
use rand::distr::Alphanumeric;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

const PREFIX: &str = "kk-";
const ID_LEN: usize = 12;
const SECRET_LEN: usize = 32;

/// What a key may do, as given when it was created.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeySettings {
    /// A label for people (`search-backend`).
    #[serde(default)]
    pub name: String,
    /// The team whose budget the key shares (`[budgets.teams.NAME]`).
    #[serde(default)]
    pub team: Option<String>,
    /// Tags whose budgets the key shares (`[budgets.tags.NAME]`).
    #[serde(default)]
    pub tags: Vec<String>,
    /// Model aliases the key may call; empty: all.
    #[serde(default)]
    pub models: Vec<String>,
    #[serde(default)]
    pub rate_limit: Option<RateLimit>,
    #[serde(default)]
    pub budget: Option<Budget>,
    /// Input larger than this many tokens is refused (413).
    #[serde(default)]
    pub max_input_tokens: Option<u32>,
    /// A `max_tokens` above this is refused (400).
    #[serde(default)]
    pub max_output_tokens: Option<u32>,
}

/// A stored key: its settings and the digest of its secret, never the
/// secret itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VirtualKey {
    pub id: String,
    #[serde(flatten)]
    pub settings: KeySettings,
    pub created_ms: i64,
    /// When it was revoked; a revoked key is refused.
    #[serde(default)]
    pub revoked_ms: Option<i64>,
    #[serde(skip)]
    pub(crate) digest: String,
}

impl VirtualKey {
    /// A new key with its secret: the key string is returned once, here,
    /// and cannot be recovered later.
    pub fn generate(settings: KeySettings) -> (VirtualKey, String) {
        let id = random(ID_LEN).to_ascii_lowercase();
        let secret = random(SECRET_LEN);
        let key = VirtualKey {
            digest: digest(&secret),
            id: id.clone(),
            settings,
            created_ms: crate::sql::now_ms(),
            revoked_ms: None,
        };
        (key, format!("{PREFIX}{id}-{secret}"))
    }

    /// Whether `secret` is this key's, in constant time.
    pub fn verify(&self, secret: &str) -> bool {
        digest(secret)
            .as_bytes()
            .ct_eq(self.digest.as_bytes())
            .into()
    }
}

/// Splits a presented key into id and secret; `None` if it is not shaped
/// like a keel key (then it is not one, whatever else it is).
pub fn parse(presented: &str) -> Option<(&str, &str)> {
    let rest = presented.strip_prefix(PREFIX)?;
    let (id, secret) = rest.split_once('-')?;
    let shaped = id.len() == ID_LEN
        && secret.len() == SECRET_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && secret.bytes().all(|b| b.is_ascii_alphanumeric());
    shaped.then_some((id, secret))
}

/// Whether a string looks like a keel key at all (its prefix): such a
/// string is checked, and refused when it is not a valid key.
pub fn looks_like_key(presented: &str) -> bool {
    presented.starts_with(PREFIX)
}

fn random(len: usize) -> String {
    rand::rng()
        .sample_iter(Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}

fn digest(secret: &str) -> String {
    Sha256::digest(secret.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_verifies_only_its_own_secret() {
        let (key, shown) = VirtualKey::generate(KeySettings::default());
        let (id, secret) = parse(&shown).unwrap();
        assert_eq!(id, key.id);
        assert!(key.verify(secret));
        let (_, other) = VirtualKey::generate(KeySettings::default());
        assert!(!key.verify(parse(&other).unwrap().1));
        assert!(!shown.contains(&key.digest));
    }

    #[test]
    fn only_key_shaped_strings_parse() {
        let (_, shown) = VirtualKey::generate(KeySettings::default());
        assert!(parse(&shown).is_some());
        for bad in [
            "sk-abc",
            "kk-",
            "kk-short-secret",
            &shown[..shown.len() - 1],
            &format!("{shown}x"),
            &shown.replace("kk-", "kk-A"),
        ] {
            assert!(parse(bad).is_none(), "{bad}");
        }
    }
}
