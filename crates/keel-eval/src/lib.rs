//! keel's evaluation (issue 9, being built): the pieces that judge answers
//! and compare runs, pure and tested on their own.
//!
//! - [`scorers`]: how one answer is scored against a case — equality,
//!   containment, regexes, JSON Schema validity, JSON fields by pointer
//!   with a numeric tolerance, set overlap (F1), string similarity
//!   (normalised Levenshtein), refusal detection, latency and cost
//!   ceilings. Each gives a score in 0..=1 and whether it passed.
//! - [`gate`]: whether a candidate run is worse than a baseline beyond
//!   noise — cases paired by id, an exact McNemar test on pass/fail flips
//!   and a paired bootstrap on scores.

pub mod gate;
pub mod scorers;
