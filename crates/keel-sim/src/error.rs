//! What can go wrong building a simulator or planning a request.

use std::path::PathBuf;

use crate::fault::FaultError;

#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The `x-keel-sim-fault` header (or another per-request spec) is invalid;
    /// the server answers 400 with this message.
    #[error("invalid x-keel-sim-fault: {0}")]
    Fault(#[from] FaultError),
    #[error("sim faults[{index}]: {source}")]
    FaultRule { index: usize, source: FaultError },
    #[error("sim faults[{index}]: rate {rate} is not a probability in [0, 1]")]
    FaultRate { index: usize, rate: f64 },
    #[error("sim script {path}: {source}")]
    ScriptRead {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("sim script {path}: {source}")]
    ScriptParse {
        path: PathBuf,
        source: Box<toml::de::Error>,
    },
    #[error("sim script {path}: rule[{index}]: {reason}")]
    ScriptRule {
        path: PathBuf,
        index: usize,
        reason: String,
    },
    /// A request the simulator refuses, as a real provider would (400).
    #[error("{0}")]
    InvalidRequest(String),
}
