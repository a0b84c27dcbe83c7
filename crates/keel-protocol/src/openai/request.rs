//! OpenAI chat-completions requests: wire → internal (front door) and
//! internal → wire (upstream).

use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::response::WireToolCall;
use crate::DecodeError;
use crate::chat::{
    ChatRequest, Image, Message, Part, Protocol, ResponseFormat, Role, Tool, ToolCall, ToolChoice,
    text_of,
};
use crate::json::{field, kind, object, rebase, require, split_data_url, take};

#[derive(Deserialize)]
#[serde(untagged)]
enum Stop {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: Option<bool>,
}

#[derive(Deserialize)]
struct WireTool {
    #[serde(rename = "type")]
    kind: String,
    function: WireFunction,
}

#[derive(Deserialize)]
struct WireFunction {
    name: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    parameters: Option<Value>,
}

/// Decodes a `POST /v1/chat/completions` body.
pub fn decode_request(body: &[u8]) -> Result<ChatRequest, DecodeError> {
    let mut obj = object(body)?;
    let model: String = require(&mut obj, "model")?;
    let raw_messages: Vec<Value> = require(&mut obj, "messages")?;
    if raw_messages.is_empty() {
        return Err(DecodeError::at("messages", "`messages` must not be empty"));
    }
    let mut system = Vec::new();
    let mut messages = Vec::with_capacity(raw_messages.len());
    for (i, m) in raw_messages.into_iter().enumerate() {
        decode_message(m, &format!("messages[{i}]"), &mut system, &mut messages)?;
    }
    if let Some(n) = take::<u32>(&mut obj, "n")?
        && n != 1
    {
        return Err(DecodeError::at("n", "n: keel supports only n = 1"));
    }
    let max_tokens = take::<u32>(&mut obj, "max_tokens")?;
    // Newer models only accept `max_completion_tokens`: keep the client's
    // spelling in `extra` so a same-protocol upstream gets what was sent.
    let max_completion = obj.get("max_completion_tokens").cloned();
    let max_tokens = match max_completion {
        Some(v) if !v.is_null() => Some(field::<u32>(v, "max_completion_tokens")?),
        _ => max_tokens,
    };
    let stop = match take::<Stop>(&mut obj, "stop")? {
        None => Vec::new(),
        Some(Stop::One(s)) => vec![s],
        Some(Stop::Many(v)) => v,
    };
    let include_usage = take::<StreamOptions>(&mut obj, "stream_options")?
        .and_then(|o| o.include_usage)
        .unwrap_or(false);
    let tools = take::<Vec<WireTool>>(&mut obj, "tools")?
        .unwrap_or_default()
        .into_iter()
        .enumerate()
        .map(|(i, t)| {
            if t.kind != "function" {
                return Err(DecodeError::at(
                    format!("tools[{i}].type"),
                    format!(
                        "tools[{i}].type: tool type `{}` is not supported; use `function`",
                        t.kind
                    ),
                ));
            }
            Ok(Tool {
                name: t.function.name,
                description: t.function.description,
                parameters: t
                    .function
                    .parameters
                    .unwrap_or_else(|| json!({"type": "object", "properties": {}})),
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let tool_choice = match obj.remove("tool_choice") {
        None | Some(Value::Null) => None,
        Some(v) => Some(decode_tool_choice(v)?),
    };
    let response_format = match obj.remove("response_format") {
        None | Some(Value::Null) => None,
        Some(v) => Some(decode_response_format(v)?),
    };
    Ok(ChatRequest {
        model,
        system,
        messages,
        max_tokens,
        temperature: take(&mut obj, "temperature")?,
        top_p: take(&mut obj, "top_p")?,
        stop,
        stream: take(&mut obj, "stream")?.unwrap_or(false),
        include_usage,
        tools,
        tool_choice,
        response_format,
        user: take(&mut obj, "user")?,
        extra: obj,
        protocol: Protocol::OpenAi,
    })
}

fn decode_message(
    v: Value,
    at: &str,
    system: &mut Vec<String>,
    out: &mut Vec<Message>,
) -> Result<(), DecodeError> {
    let Value::Object(mut m) = v else {
        return Err(DecodeError::at(
            at,
            format!("{at}: must be an object, not {}", kind(&v)),
        ));
    };
    let role: String = require(&mut m, "role").map_err(|e| rebase(e, at))?;
    let content = m.remove("content").unwrap_or(Value::Null);
    let content_at = format!("{at}.content");
    match role.as_str() {
        "system" | "developer" => {
            system.push(text_of(&decode_content(content, &content_at)?));
        }
        "user" => {
            let mut msg = Message::text(Role::User, "");
            msg.content = decode_content(content, &content_at)?;
            out.push(msg);
        }
        "assistant" => {
            let mut msg = Message::text(Role::Assistant, "");
            msg.content = decode_content(content, &content_at)?;
            let calls: Option<Vec<WireToolCall>> =
                take(&mut m, "tool_calls").map_err(|e| rebase(e, at))?;
            msg.tool_calls = calls
                .unwrap_or_default()
                .into_iter()
                .map(ToolCall::from)
                .collect();
            out.push(msg);
        }
        "tool" => {
            let mut msg = Message::text(Role::Tool, "");
            msg.content = decode_content(content, &content_at)?;
            msg.tool_call_id = Some(require(&mut m, "tool_call_id").map_err(|e| rebase(e, at))?);
            out.push(msg);
        }
        other => {
            return Err(DecodeError::at(
                format!("{at}.role"),
                format!(
                    "{at}.role: unknown role `{other}`; expected system, developer, user, assistant or tool"
                ),
            ));
        }
    }
    Ok(())
}

fn decode_content(v: Value, at: &str) -> Result<Vec<Part>, DecodeError> {
    match v {
        Value::Null => Ok(Vec::new()),
        Value::String(s) => Ok(vec![Part::Text(s)]),
        Value::Array(items) => items
            .into_iter()
            .enumerate()
            .map(|(i, item)| decode_part(item, &format!("{at}[{i}]")))
            .collect(),
        other => Err(DecodeError::at(
            at,
            format!(
                "{at}: must be a string or an array of parts, not {}",
                kind(&other)
            ),
        )),
    }
}

fn decode_part(v: Value, at: &str) -> Result<Part, DecodeError> {
    let Value::Object(mut p) = v else {
        return Err(DecodeError::at(
            at,
            format!("{at}: must be an object, not {}", kind(&v)),
        ));
    };
    let part_type: String = require(&mut p, "type").map_err(|e| rebase(e, at))?;
    match part_type.as_str() {
        "text" => Ok(Part::Text(
            require(&mut p, "text").map_err(|e| rebase(e, at))?,
        )),
        "image_url" => {
            #[derive(Deserialize)]
            struct ImageUrl {
                url: String,
            }
            let image: ImageUrl = require(&mut p, "image_url").map_err(|e| rebase(e, at))?;
            Ok(Part::Image(match split_data_url(&image.url) {
                Some((media_type, data)) => Image::Base64 {
                    media_type: media_type.to_owned(),
                    data: data.to_owned(),
                },
                None => Image::Url(image.url),
            }))
        }
        other => Err(DecodeError::at(
            format!("{at}.type"),
            format!("{at}.type: content part `{other}` is not supported; use text or image_url"),
        )),
    }
}

fn decode_tool_choice(v: Value) -> Result<ToolChoice, DecodeError> {
    match &v {
        Value::String(s) => match s.as_str() {
            "auto" => Ok(ToolChoice::Auto),
            "none" => Ok(ToolChoice::None),
            "required" => Ok(ToolChoice::Required),
            other => Err(DecodeError::at(
                "tool_choice",
                format!("tool_choice: `{other}` is not one of auto, none, required"),
            )),
        },
        Value::Object(o) => o
            .get("function")
            .and_then(|f| f.get("name"))
            .and_then(Value::as_str)
            .map(|n| ToolChoice::Tool(n.to_owned()))
            .ok_or_else(|| {
                DecodeError::at(
                    "tool_choice",
                    "tool_choice: expected {\"type\":\"function\",\"function\":{\"name\":…}}",
                )
            }),
        other => Err(DecodeError::at(
            "tool_choice",
            format!(
                "tool_choice: must be a string or an object, not {}",
                kind(other)
            ),
        )),
    }
}

fn decode_response_format(v: Value) -> Result<ResponseFormat, DecodeError> {
    #[derive(Deserialize)]
    struct Wire {
        #[serde(rename = "type")]
        kind: String,
        #[serde(default)]
        json_schema: Option<WireSchema>,
    }
    #[derive(Deserialize)]
    struct WireSchema {
        name: String,
        #[serde(default)]
        schema: Option<Value>,
        #[serde(default)]
        strict: Option<bool>,
    }
    let wire: Wire = field(v, "response_format")?;
    match wire.kind.as_str() {
        "text" => Ok(ResponseFormat::Text),
        "json_object" => Ok(ResponseFormat::JsonObject),
        "json_schema" => {
            let s = wire.json_schema.ok_or_else(|| {
                DecodeError::at(
                    "response_format.json_schema",
                    "response_format.json_schema: missing for type json_schema",
                )
            })?;
            Ok(ResponseFormat::JsonSchema {
                name: s.name,
                schema: s.schema.unwrap_or_else(|| json!({})),
                strict: s.strict,
            })
        }
        other => Err(DecodeError::at(
            "response_format.type",
            format!("response_format.type: `{other}` is not one of text, json_object, json_schema"),
        )),
    }
}

/// Encodes a request for an OpenAI-compatible upstream. Streams always ask
/// for usage, so a streamed answer is never billed at zero.
pub fn encode_request(req: &ChatRequest) -> Vec<u8> {
    let mut messages: Vec<Value> = req
        .system
        .iter()
        .map(|s| json!({"role": "system", "content": s}))
        .collect();
    messages.extend(req.messages.iter().map(encode_message));
    let mut obj = Map::new();
    obj.insert("model".into(), json!(req.model));
    obj.insert("messages".into(), Value::Array(messages));
    if let Some(m) = req.max_tokens {
        // In the client's spelling: `max_completion_tokens` if it used that
        // one (newer models accept nothing else), with keel's value (which
        // may be a cap keel set where the client sent null).
        let spelled =
            req.protocol == Protocol::OpenAi && req.extra.contains_key("max_completion_tokens");
        let name = if spelled {
            "max_completion_tokens"
        } else {
            "max_tokens"
        };
        obj.insert(name.into(), json!(m));
    }
    insert_opt(&mut obj, "temperature", req.temperature);
    insert_opt(&mut obj, "top_p", req.top_p);
    if !req.stop.is_empty() {
        obj.insert("stop".into(), json!(req.stop));
    }
    if req.stream {
        obj.insert("stream".into(), json!(true));
        obj.insert("stream_options".into(), json!({"include_usage": true}));
    }
    if !req.tools.is_empty() {
        let tools: Vec<Value> = req
            .tools
            .iter()
            .map(|t| {
                let mut f = json!({"name": t.name, "parameters": t.parameters});
                if let Some(d) = &t.description {
                    f["description"] = json!(d);
                }
                json!({"type": "function", "function": f})
            })
            .collect();
        obj.insert("tools".into(), Value::Array(tools));
    }
    if let Some(choice) = &req.tool_choice {
        obj.insert(
            "tool_choice".into(),
            match choice {
                ToolChoice::Auto => json!("auto"),
                ToolChoice::None => json!("none"),
                ToolChoice::Required => json!("required"),
                ToolChoice::Tool(name) => json!({"type": "function", "function": {"name": name}}),
            },
        );
    }
    if let Some(format) = &req.response_format {
        obj.insert(
            "response_format".into(),
            match format {
                ResponseFormat::Text => json!({"type": "text"}),
                ResponseFormat::JsonObject => json!({"type": "json_object"}),
                ResponseFormat::JsonSchema {
                    name,
                    schema,
                    strict,
                } => {
                    let mut s = json!({"name": name, "schema": schema});
                    if let Some(strict) = strict {
                        s["strict"] = json!(strict);
                    }
                    json!({"type": "json_schema", "json_schema": s})
                }
            },
        );
    }
    insert_opt(&mut obj, "user", req.user.as_deref());
    if req.protocol == Protocol::OpenAi {
        for (k, v) in &req.extra {
            obj.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }
    serde_json::to_vec(&Value::Object(obj)).unwrap_or_default()
}

fn insert_opt<T: serde::Serialize>(obj: &mut Map<String, Value>, key: &str, v: Option<T>) {
    if let Some(v) = v {
        obj.insert(key.to_owned(), json!(v));
    }
}

fn encode_message(m: &Message) -> Value {
    let role = match m.role {
        Role::User => "user",
        Role::Assistant => "assistant",
        Role::Tool => "tool",
    };
    let mut out = json!({"role": role, "content": encode_content(&m.content)});
    if m.role == Role::Assistant && !m.tool_calls.is_empty() {
        if m.content.is_empty() {
            out["content"] = Value::Null;
        }
        out["tool_calls"] = m
            .tool_calls
            .iter()
            .map(|c| json!({"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}))
            .collect();
    }
    if let Some(id) = &m.tool_call_id {
        out["tool_call_id"] = json!(id);
    }
    out
}

/// Plain text stays a string (what every OpenAI-compatible server accepts);
/// anything with images becomes an array of parts.
fn encode_content(parts: &[Part]) -> Value {
    if parts.iter().all(|p| matches!(p, Part::Text(_))) {
        return json!(text_of(parts));
    }
    parts
        .iter()
        .map(|p| match p {
            Part::Text(t) => json!({"type": "text", "text": t}),
            Part::Image(Image::Url(u)) => json!({"type": "image_url", "image_url": {"url": u}}),
            Part::Image(Image::Base64 { media_type, data }) => {
                json!({"type": "image_url", "image_url": {"url": format!("data:{media_type};base64,{data}")}})
            }
        })
        .collect()
}
