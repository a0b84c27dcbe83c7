//! Errors at the protocol boundary: what went wrong decoding a body, and an
//! error on its way out to a client (encoded in that client's protocol).

use std::fmt;

/// A body that is not a valid request or response of the protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    pub message: String,
    /// The field at fault (`messages[0].content`), when known.
    pub param: Option<String>,
}

impl DecodeError {
    pub fn new(message: impl Into<String>) -> Self {
        DecodeError {
            message: message.into(),
            param: None,
        }
    }

    pub fn at(param: impl Into<String>, message: impl Into<String>) -> Self {
        DecodeError {
            message: message.into(),
            param: Some(param.into()),
        }
    }

    /// Parses `body` as `T`, naming the path of the first field that fails.
    pub(crate) fn parse<'de, T: serde::Deserialize<'de>>(
        body: &'de [u8],
    ) -> Result<T, DecodeError> {
        let de = &mut serde_json::Deserializer::from_slice(body);
        let value = serde_path_to_error::deserialize(&mut *de).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            let message = if inner.is_syntax() || inner.is_eof() {
                format!("body is not valid JSON: {inner}")
            } else {
                inner.to_string()
            };
            if matches!(path.as_str(), "." | "?" | "") {
                DecodeError::new(message)
            } else {
                DecodeError::at(path.clone(), format!("{path}: {message}"))
            }
        })?;
        // Without this, anything after the first JSON value is ignored.
        de.end()
            .map_err(|e| DecodeError::new(format!("body is not valid JSON: {e}")))?;
        Ok(value)
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for DecodeError {}

/// An error to send to a client. Each protocol derives its error `type`
/// from `status`; `code` adds keel's precise reason (`model_not_found`,
/// `upstream_error`, …).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireError {
    pub status: u16,
    pub message: String,
    pub param: Option<String>,
    pub code: Option<String>,
}

/// Why an upstream stream could not be read further.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamError {
    /// The upstream sent an error event in its protocol.
    Upstream { message: String },
    /// The upstream sent something that is not valid protocol.
    Malformed(String),
}

impl fmt::Display for StreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StreamError::Upstream { message } => write!(f, "error event: {message}"),
            StreamError::Malformed(what) => write!(f, "malformed stream event: {what}"),
        }
    }
}
