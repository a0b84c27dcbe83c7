//! The record/replay file (`[cache] file`, `mode`): answers recorded once —
//! against real providers — and replayed later, so that evals and tests
//! are deterministic and cost nothing.
//!
//! One JSON object per line, appended as answers arrive:
//! `{"key": "<sha-256 hex of the request>", "model": "<alias>", "response": {…}}`.
//! The key is the response cache's ([`crate::cache::ResponseCache::key`]):
//! the same request, streamed or not, replays the same answer. JSON lines
//! make the file diffable and mergeable by hand; a line that does not parse
//! fails the load (naming the line) rather than being silently skipped.
//!
//! In `record` mode a request already in the file is replayed too (so a
//! recording can be extended by running again); in `replay` mode a request
//! not in it is refused without any upstream call.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use keel_config::CassetteMode;
use keel_protocol::chat::ChatResponse;
use serde::{Deserialize, Serialize};

#[derive(Debug)]
pub struct Cassette {
    mode: CassetteMode,
    path: PathBuf,
    answers: RwLock<HashMap<[u8; 32], Arc<ChatResponse>>>,
    /// The file, open for appending (record mode only).
    file: Mutex<Option<File>>,
}

#[derive(Serialize, Deserialize)]
struct Line {
    key: String,
    model: String,
    response: ChatResponse,
}

#[derive(Debug, thiserror::Error)]
pub enum CassetteError {
    #[error("{path}: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{path}, line {line}: not a recorded answer: {error}")]
    Line {
        path: PathBuf,
        line: usize,
        error: String,
    },
}

impl Cassette {
    /// Loads the file. Replaying needs it to exist; recording creates it.
    pub fn open(path: &Path, mode: CassetteMode) -> Result<Cassette, CassetteError> {
        let io = |error| CassetteError::Io {
            path: path.to_owned(),
            error,
        };
        let mut answers = HashMap::new();
        match File::open(path) {
            Ok(f) => {
                for (i, line) in BufReader::new(f).lines().enumerate() {
                    let line = line.map_err(io)?;
                    if line.trim().is_empty() {
                        continue;
                    }
                    let bad = |error: String| CassetteError::Line {
                        path: path.to_owned(),
                        line: i + 1,
                        error,
                    };
                    let parsed: Line =
                        serde_json::from_str(&line).map_err(|e| bad(e.to_string()))?;
                    let key = unhex(&parsed.key).ok_or_else(|| bad("bad key".to_owned()))?;
                    answers.insert(key, Arc::new(parsed.response));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && mode == CassetteMode::Record => {}
            Err(e) => return Err(io(e)),
        }
        let file = match mode {
            CassetteMode::Replay => None,
            CassetteMode::Record => Some(
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(io)?,
            ),
        };
        Ok(Cassette {
            mode,
            path: path.to_owned(),
            answers: RwLock::new(answers),
            file: Mutex::new(file),
        })
    }

    pub fn mode(&self) -> CassetteMode {
        self.mode
    }

    pub fn get(&self, key: &[u8; 32]) -> Option<Arc<ChatResponse>> {
        self.answers
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(key)
            .cloned()
    }

    /// Appends an answer (record mode; once per key). A failed write is
    /// returned for the caller to log: the request itself has its answer.
    /// The write is one small append, made on the caller's thread: record
    /// mode is for recording sessions, not for production traffic.
    pub fn record(
        &self,
        key: [u8; 32],
        model: &str,
        response: &ChatResponse,
    ) -> Result<(), CassetteError> {
        if self.mode != CassetteMode::Record || self.get(&key).is_some() {
            return Ok(());
        }
        let line = Line {
            key: hex(&key),
            model: model.to_owned(),
            response: response.clone(),
        };
        let mut text = serde_json::to_string(&line).unwrap_or_default();
        text.push('\n');
        {
            // Two requests recording the same answer at once may both
            // append it; loading keeps one.
            let mut file = self
                .file
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some(f) = file.as_mut() {
                f.write_all(text.as_bytes())
                    .map_err(|error| CassetteError::Io {
                        path: self.path.clone(),
                        error,
                    })?;
            }
        }
        self.answers
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(key, Arc::new(line.response));
        Ok(())
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    if s.len() != 64 {
        return None;
    }
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_protocol::chat::{FinishReason, Usage};

    fn answer(text: &str) -> ChatResponse {
        ChatResponse {
            id: "a".to_owned(),
            model: "m".to_owned(),
            created: 1,
            text: text.to_owned(),
            tool_calls: Vec::new(),
            finish_reason: FinishReason::Stop,
            usage: Usage {
                input_tokens: 3,
                output_tokens: 2,
                cached_input_tokens: 0,
            },
        }
    }

    #[test]
    fn recorded_answers_replay_after_a_reload() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("answers.jsonl");
        let rec = Cassette::open(&path, CassetteMode::Record).unwrap();
        rec.record([1; 32], "m", &answer("one")).unwrap();
        rec.record([1; 32], "m", &answer("again")).unwrap();
        rec.record([2; 32], "m", &answer("two")).unwrap();
        drop(rec);
        assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 2);

        let play = Cassette::open(&path, CassetteMode::Replay).unwrap();
        assert_eq!(*play.get(&[1; 32]).unwrap(), answer("one"));
        assert_eq!(play.get(&[2; 32]).unwrap().text, "two");
        assert!(play.get(&[3; 32]).is_none());
        // Replaying never writes.
        play.record([3; 32], "m", &answer("three")).unwrap();
        assert!(play.get(&[3; 32]).is_none());
    }

    #[test]
    fn a_missing_or_damaged_file_is_an_error_that_names_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("none.jsonl");
        let err = Cassette::open(&path, CassetteMode::Replay).unwrap_err();
        assert!(err.to_string().contains("none.jsonl"), "{err}");
        std::fs::write(&path, "{\"key\": \"00\"}\n").unwrap();
        let err = Cassette::open(&path, CassetteMode::Record).unwrap_err();
        assert!(err.to_string().contains("line 1"), "{err}");
    }
}
