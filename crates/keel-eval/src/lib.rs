//! keel's evaluation: golden datasets run through the production pipeline,
//! scored, compared and gated.
//!
//! - [`spec`]: the eval file (YAML or TOML) — dataset, variants, scorers,
//!   pass criteria — loaded and checked before any call.
//! - [`dataset`]: cases from JSON lines, CSV or inline.
//! - [`run`]: every case through every variant over HTTP to a keel
//!   gateway, bounded concurrency, per-case time limits, errors as failures.
//! - [`scorers`], [`judge`], [`command`]: how one answer is scored — in
//!   process, by an LLM judge, or by an external program.
//! - [`perturb`]: rephrased inputs for the robustness check.
//! - [`results`]: the stable JSON results format, summaries, comparisons.
//! - [`gate`]: whether a candidate run is worse than a baseline beyond
//!   noise — cases paired by id, an exact McNemar test on pass/fail flips
//!   and a paired bootstrap on scores.
//! - [`report`]: what a run's results are shown as — a terminal table,
//!   JUnit XML, a self-contained HTML report (the JSON is the results).

pub mod command;
pub mod dataset;
pub mod gate;
pub mod judge;
pub mod perturb;
pub mod report;
pub mod results;
pub mod run;
pub mod scorers;
pub mod spec;
