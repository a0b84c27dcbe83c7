//! Seeding: every random choice comes from a `SmallRng` seeded by mixing the
//! configured seed with something stable (the request's content, the request
//! counter, an input string). Hashes are our own FNV-1a rather than std's
//! `DefaultHasher`, whose algorithm may change between Rust releases, so a
//! seed keeps meaning the same replies across toolchains.

use rand::SeedableRng;
use rand::rngs::SmallRng;

/// FNV-1a over `bytes`.
pub(crate) fn hash(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Combines two values into one well-spread 64-bit value (splitmix64 finaliser),
/// so nearby counters give unrelated random streams.
pub(crate) fn mix(a: u64, b: u64) -> u64 {
    let mut z = a ^ b.rotate_left(32) ^ 0x9e37_79b9_7f4a_7c15;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

pub(crate) fn rng(a: u64, b: u64) -> SmallRng {
    SmallRng::seed_from_u64(mix(a, b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_and_mix_are_stable_and_spread() {
        assert_eq!(hash(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(hash(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_ne!(mix(1, 0), mix(1, 1));
        assert_ne!(mix(0, 1), mix(1, 0));
    }
}
