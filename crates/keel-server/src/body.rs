//! Reading a request body under the configured size limit. Done in the
//! decode phase rather than by a tower layer so an oversized body gets a
//! 413 in the client's own error shape.
//!
//! A body that announces its size is refused at once. One that streams past
//! the limit (chunked) is drained a little further before the 413 goes out:
//! answering while the client is still sending makes many clients see a
//! connection reset instead of the 413. The drain is bounded in bytes and
//! time, so a client cannot make keel read forever.
//!
//! Every body keel reads is JSON: one nested deeper than [`MAX_JSON_DEPTH`]
//! is refused (400) before any parser recurses into it. (Headers are
//! bounded by hyper: at most 100, in at most ~400 KB, else 431.)

use std::time::Duration;

use axum::body::Body;
use axum::http::HeaderMap;
use axum::http::header::CONTENT_LENGTH;
use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use keel_core::Error;

/// Deeper than any real request (a tool schema nests a dozen levels), and
/// well inside what a recursive parser handles safely.
pub(crate) const MAX_JSON_DEPTH: usize = 64;

/// How much of an oversized body keel reads (and discards) before answering.
const DRAIN_BYTES: usize = 16 * 1024 * 1024;
const DRAIN_TIME: Duration = Duration::from_secs(2);

pub(crate) async fn read(
    headers: &HeaderMap,
    mut body: Body,
    limit: usize,
) -> Result<Bytes, Error> {
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(Error::payload_too_large(limit));
    }
    let mut buf = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame
            .map_err(|e| Error::invalid_request(format!("could not read the request body: {e}")))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        if buf.len() + data.len() > limit {
            drain(body).await;
            return Err(Error::payload_too_large(limit));
        }
        buf.extend_from_slice(&data);
    }
    let depth = json_depth(&buf);
    if depth > MAX_JSON_DEPTH {
        return Err(Error::invalid_request(format!(
            "the JSON body nests {depth} levels deep, more than keel's limit of {MAX_JSON_DEPTH}"
        )));
    }
    Ok(buf.freeze())
}

/// The deepest nesting of arrays and objects in JSON text (strings, with
/// their escapes, skipped). Not a validator: malformed text gets a number
/// too, and the parser refuses it afterwards.
fn json_depth(bytes: &[u8]) -> usize {
    let (mut depth, mut deepest, mut in_string, mut escaped) = (0usize, 0usize, false, false);
    for &b in bytes {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

async fn drain(mut body: Body) {
    let _ = tokio::time::timeout(DRAIN_TIME, async {
        let mut read = 0;
        while read < DRAIN_BYTES {
            match body.frame().await {
                Some(Ok(frame)) => read += frame.data_ref().map_or(0, Bytes::len),
                _ => break,
            }
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::json_depth;

    #[test]
    fn depth_counts_nesting_outside_strings() {
        assert_eq!(json_depth(br#"{"a": [1, {"b": 2}]}"#), 3);
        assert_eq!(json_depth(br#"{"a": "[[[{{{", "b": "\"[["}"#), 1);
        assert_eq!(json_depth(b"[[[[]]]]"), 4);
        assert_eq!(json_depth(b"42"), 0);
        assert_eq!(json_depth("[".repeat(10_000).as_bytes()), 10_000);
    }
}
