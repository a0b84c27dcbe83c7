//! The store's one error type, and the URL redaction that keeps Postgres
//! passwords out of it.
//!
//! Every message is self-contained (the cause is part of `Display`, not a
//! `source()` to walk), because callers log errors with `%err`.

use std::error::Error as StdError;
use std::fmt::Write as _;

/// An error from the request-log store. Its text never holds a password: a
/// Postgres URL is redacted before it is kept.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct StoreError(#[from] Repr);

#[derive(Debug, thiserror::Error)]
pub(crate) enum Repr {
    #[error("sqlite: {0}")]
    Sqlite(rusqlite::Error),
    #[error("postgres: {}", chain(.0))]
    Postgres(tokio_postgres::Error),
    #[error("{0}")]
    Io(std::io::Error),
    /// Opening failed: names what was being opened (a path or a redacted URL).
    #[error("opening {target}: {error}")]
    Open { target: String, error: Box<Repr> },
    #[error("request {id}: the stored record is not valid JSON: {error}")]
    Decode {
        id: String,
        error: serde_json::Error,
    },
    #[error("request {id}: cannot encode the record: {error}")]
    Encode {
        id: String,
        error: serde_json::Error,
    },
    #[error("key {id}: the stored settings are not valid JSON: {error}")]
    Key {
        id: String,
        error: serde_json::Error,
    },
    #[error("{0}")]
    Schema(String),
    #[error("store task failed: {0}")]
    Task(tokio::task::JoinError),
}

impl From<rusqlite::Error> for Repr {
    fn from(e: rusqlite::Error) -> Self {
        Repr::Sqlite(e)
    }
}

impl From<tokio_postgres::Error> for Repr {
    fn from(e: tokio_postgres::Error) -> Self {
        Repr::Postgres(e)
    }
}

impl From<std::io::Error> for Repr {
    fn from(e: std::io::Error) -> Self {
        Repr::Io(e)
    }
}

impl From<tokio::task::JoinError> for Repr {
    fn from(e: tokio::task::JoinError) -> Self {
        Repr::Task(e)
    }
}

impl Repr {
    pub(crate) fn opening(self, target: &str) -> Repr {
        Repr::Open {
            target: target.to_owned(),
            error: Box::new(self),
        }
    }
}

/// An error and its causes on one line. tokio-postgres puts the useful part
/// ("connection refused", the server's message) in the source, not in
/// `Display`.
pub(crate) fn chain(e: &dyn StdError) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let _ = write!(text, ": {s}");
        source = s.source();
    }
    text
}

/// A Postgres connection string fit to print: the password of a URL
/// (`postgres://user:secret@host/db`) and any `password=` parameter (URL
/// query or `key=value` form) become `***`.
pub(crate) fn redact(url: &str) -> String {
    let mut out = url.to_owned();
    if let Some(scheme_end) = out.find("://") {
        let rest = scheme_end + 3;
        let authority_end = out[rest..].find(['/', '?']).map_or(out.len(), |i| rest + i);
        if let Some(at) = out[rest..authority_end].rfind('@') {
            let userinfo = rest..rest + at;
            if let Some(colon) = out[userinfo.clone()].find(':') {
                out.replace_range(userinfo.start + colon + 1..userinfo.end, "***");
            }
        }
    }
    redact_password_params(&out)
}

/// Replaces the value of every `password=` parameter with `***`. A value
/// ends at `&` (URL query) or at whitespace (`key=value` form, where it may
/// also be single-quoted).
fn redact_password_params(s: &str) -> String {
    const KEY: &str = "password=";
    let lower = s.to_ascii_lowercase();
    let mut out = String::with_capacity(s.len());
    let mut pos = 0;
    while let Some(found) = lower[pos..].find(KEY) {
        let start = pos + found;
        let value = start + KEY.len();
        let at_boundary =
            start == 0 || matches!(s.as_bytes()[start - 1], b'?' | b'&' | b' ' | b'\t');
        let end = if !at_boundary {
            value
        } else if s[value..].starts_with('\'') {
            // A quoted value may hold spaces and `\'`: it ends at the next bare quote.
            let mut escaped = false;
            s[value + 1..]
                .char_indices()
                .find(|&(_, c)| {
                    let close = c == '\'' && !escaped;
                    escaped = c == '\\' && !escaped;
                    close
                })
                .map_or(s.len(), |(i, _)| value + 1 + i + 1)
        } else {
            s[value..]
                .find(|c: char| c == '&' || c.is_whitespace())
                .map_or(s.len(), |i| value + i)
        };
        out.push_str(&s[pos..value]);
        if end > value {
            out.push_str("***");
        }
        pos = end;
    }
    out.push_str(&s[pos..]);
    out
}
