//! Helpers for decoding a JSON object field by field, so that every error
//! names the field it is about (`messages[2].content: invalid type…`).

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::DecodeError;

/// Parses a body that must be a JSON object.
pub(crate) fn object(body: &[u8]) -> Result<Map<String, Value>, DecodeError> {
    match DecodeError::parse::<Value>(body)? {
        Value::Object(map) => Ok(map),
        other => Err(DecodeError::new(format!(
            "body must be a JSON object, not {}",
            kind(&other)
        ))),
    }
}

/// Removes `key` and deserializes it; `null` and absent are both `None`.
pub(crate) fn take<T: DeserializeOwned>(
    obj: &mut Map<String, Value>,
    key: &str,
) -> Result<Option<T>, DecodeError> {
    match obj.remove(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => field(v, key).map(Some),
    }
}

/// Like [`take`], for a field that must be present.
pub(crate) fn require<T: DeserializeOwned>(
    obj: &mut Map<String, Value>,
    key: &str,
) -> Result<T, DecodeError> {
    take(obj, key)?.ok_or_else(|| DecodeError::at(key, format!("{key}: missing required field")))
}

/// Deserializes `v`, prefixing error paths with `at`.
pub(crate) fn field<T: DeserializeOwned>(v: Value, at: &str) -> Result<T, DecodeError> {
    serde_path_to_error::deserialize(v).map_err(|e| {
        let inner = e.path().to_string();
        let path = if inner == "." {
            at.to_owned()
        } else if inner.starts_with('[') {
            format!("{at}{inner}")
        } else {
            format!("{at}.{inner}")
        };
        let message = format!("{path}: {}", e.into_inner());
        DecodeError::at(path, message)
    })
}

/// The JSON type name of a value, for error messages.
pub(crate) fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Splits a `data:` URL into media type and base64 payload.
pub(crate) fn split_data_url(url: &str) -> Option<(&str, &str)> {
    let rest = url.strip_prefix("data:")?;
    let (meta, data) = rest.split_once(',')?;
    let media_type = meta.strip_suffix(";base64")?;
    Some((media_type, data))
}

/// Re-roots an error from a nested object under `at` (`messages[0]`). Every
/// message keel builds starts with its path, so the prefix reads naturally.
pub(crate) fn rebase(e: DecodeError, at: &str) -> DecodeError {
    match e.param {
        Some(p) => DecodeError::at(format!("{at}.{p}"), format!("{at}.{}", e.message)),
        None => DecodeError::at(at, format!("{at}: {}", e.message)),
    }
}
