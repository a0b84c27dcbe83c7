//! Embedding vectors: a pure function of (seed, input text, dimensions), unit
//! length, so similarity is stable across runs and identical inputs match.

use rand::Rng;

use crate::seed;

/// The default when the request names no `dimensions`.
pub(crate) const DEFAULT_DIMENSIONS: u32 = 16;
/// Above the largest real model (3072) with room to spare; refuses requests
/// that would make the simulator allocate without bound.
pub(crate) const MAX_DIMENSIONS: u32 = 8192;

pub(crate) fn vector(seed: u64, text: &str, dims: u32) -> Vec<f32> {
    let mut rng = seed::rng(seed, seed::hash(text.as_bytes()));
    let mut v: Vec<f32> = (0..dims).map(|_| rng.random_range(-1.0..1.0)).collect();
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
    v
}
