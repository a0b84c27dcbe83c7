//! OpenAI embeddings. Token-array inputs are refused with a clear 400:
//! keel routes by text and the simulator embeds text.

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::DecodeError;
use crate::chat::{EmbeddingsRequest, EmbeddingsResponse};
use crate::json::{object, require, take};

#[derive(Deserialize)]
#[serde(untagged)]
enum Input {
    One(String),
    Many(Vec<String>),
}

pub fn decode_embeddings_request(body: &[u8]) -> Result<EmbeddingsRequest, DecodeError> {
    let mut obj = object(body)?;
    let model: String = require(&mut obj, "model")?;
    let input = match obj.remove("input") {
        None | Some(Value::Null) => {
            return Err(DecodeError::at("input", "input: missing required field"));
        }
        Some(v) => serde_json::from_value::<Input>(v).map_err(|_| {
            DecodeError::at(
                "input",
                "input: must be a string or an array of strings (token arrays are not supported)",
            )
        })?,
    };
    let input = match input {
        Input::One(s) => vec![s],
        Input::Many(v) => v,
    };
    if input.is_empty() {
        return Err(DecodeError::at("input", "input: must not be empty"));
    }
    let encoding_format: Option<String> = take(&mut obj, "encoding_format")?;
    if let Some(f) = encoding_format.as_deref()
        && f != "float"
        && f != "base64"
    {
        return Err(DecodeError::at(
            "encoding_format",
            format!("encoding_format: `{f}` is not float or base64"),
        ));
    }
    Ok(EmbeddingsRequest {
        model,
        input,
        dimensions: take(&mut obj, "dimensions")?,
        encoding_format,
        user: take(&mut obj, "user")?,
    })
}

/// Upstream requests always ask for floats; the client's encoding is applied
/// when keel encodes the answer.
pub fn encode_embeddings_request(req: &EmbeddingsRequest) -> Vec<u8> {
    let mut obj = Map::new();
    obj.insert("model".into(), json!(req.model));
    obj.insert("input".into(), json!(req.input));
    obj.insert("encoding_format".into(), json!("float"));
    if let Some(d) = req.dimensions {
        obj.insert("dimensions".into(), json!(d));
    }
    if let Some(u) = &req.user {
        obj.insert("user".into(), json!(u));
    }
    serde_json::to_vec(&Value::Object(obj)).unwrap_or_default()
}

#[derive(Deserialize)]
struct WireResponse {
    #[serde(default)]
    model: String,
    data: Vec<WireItem>,
    #[serde(default)]
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
struct WireItem {
    #[serde(default)]
    index: usize,
    embedding: Vec<f32>,
}

#[derive(Deserialize, Serialize)]
struct WireUsage {
    prompt_tokens: u32,
    total_tokens: u32,
}

pub fn decode_embeddings_response(body: &[u8]) -> Result<EmbeddingsResponse, DecodeError> {
    let mut wire: WireResponse = DecodeError::parse(body)?;
    wire.data.sort_by_key(|d| d.index);
    Ok(EmbeddingsResponse {
        model: wire.model,
        data: wire.data.into_iter().map(|d| d.embedding).collect(),
        input_tokens: wire.usage.map_or(0, |u| u.prompt_tokens),
    })
}

/// `base64`: little-endian f32s, base64-encoded, as the official SDKs request.
pub fn encode_embeddings_response(resp: &EmbeddingsResponse, base64: bool) -> Vec<u8> {
    let data: Vec<Value> = resp
        .data
        .iter()
        .enumerate()
        .map(|(index, v)| {
            let embedding = if base64 {
                let bytes: Vec<u8> = v.iter().flat_map(|f| f.to_le_bytes()).collect();
                json!(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                json!(v)
            };
            json!({"object": "embedding", "index": index, "embedding": embedding})
        })
        .collect();
    let out = json!({
        "object": "list",
        "data": data,
        "model": resp.model,
        "usage": WireUsage { prompt_tokens: resp.input_tokens, total_tokens: resp.input_tokens },
    });
    serde_json::to_vec(&out).unwrap_or_default()
}
