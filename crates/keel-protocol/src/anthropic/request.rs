//! Anthropic messages requests: wire → internal (front door) and internal →
//! wire (upstream).

use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::structured::structured_tool;
use crate::DecodeError;
use crate::chat::{
    ChatRequest, Image, Message, Part, Protocol, ResponseFormat, Role, Tool, ToolCall, ToolChoice,
};
use crate::json::{field, kind, object, rebase, require, take};

/// Anthropic requires `max_tokens`; requests translated from OpenAI may not
/// carry one. The target's configured default wins over this.
pub const DEFAULT_MAX_TOKENS: u32 = 4096;

#[derive(Deserialize)]
#[serde(untagged)]
enum System {
    Text(String),
    Blocks(Vec<TextBlock>),
}

#[derive(Deserialize)]
struct TextBlock {
    text: String,
}

#[derive(Deserialize)]
struct WireTool {
    name: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    input_schema: Option<Value>,
}

#[derive(Deserialize)]
struct WireToolChoice {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    name: Option<String>,
}

#[derive(Deserialize)]
struct Metadata {
    #[serde(default)]
    user_id: Option<String>,
}

/// Decodes a `POST /v1/messages` body.
pub fn decode_request(body: &[u8]) -> Result<ChatRequest, DecodeError> {
    let mut obj = object(body)?;
    let model: String = require(&mut obj, "model")?;
    let max_tokens: u32 = require(&mut obj, "max_tokens")?;
    let raw_messages: Vec<Value> = require(&mut obj, "messages")?;
    if raw_messages.is_empty() {
        return Err(DecodeError::at("messages", "messages: must not be empty"));
    }
    let mut messages = Vec::with_capacity(raw_messages.len());
    for (i, m) in raw_messages.into_iter().enumerate() {
        decode_turn(m, &format!("messages.{i}"), &mut messages)?;
    }
    let system = match take::<System>(&mut obj, "system")? {
        None => Vec::new(),
        Some(System::Text(t)) => vec![t],
        Some(System::Blocks(b)) => b.into_iter().map(|b| b.text).collect(),
    };
    let tools = take::<Vec<WireTool>>(&mut obj, "tools")?
        .unwrap_or_default()
        .into_iter()
        .map(|t| Tool {
            name: t.name,
            description: t.description,
            parameters: t.input_schema.unwrap_or_else(|| json!({"type": "object"})),
        })
        .collect();
    let tool_choice = match take::<WireToolChoice>(&mut obj, "tool_choice")? {
        None => None,
        Some(c) => Some(match (c.kind.as_str(), c.name) {
            ("auto", _) => ToolChoice::Auto,
            ("any", _) => ToolChoice::Required,
            ("none", _) => ToolChoice::None,
            ("tool", Some(name)) => ToolChoice::Tool(name),
            (other, _) => {
                return Err(DecodeError::at(
                    "tool_choice.type",
                    format!(
                        "tool_choice.type: `{other}` is not one of auto, any, tool (with a name), none"
                    ),
                ));
            }
        }),
    };
    let user = take::<Metadata>(&mut obj, "metadata")?.and_then(|m| m.user_id);
    Ok(ChatRequest {
        model,
        system,
        messages,
        max_tokens: Some(max_tokens),
        temperature: take(&mut obj, "temperature")?,
        top_p: take(&mut obj, "top_p")?,
        stop: take(&mut obj, "stop_sequences")?.unwrap_or_default(),
        stream: take(&mut obj, "stream")?.unwrap_or(false),
        include_usage: true,
        tools,
        tool_choice,
        response_format: None,
        user,
        extra: obj,
        protocol: Protocol::Anthropic,
    })
}

/// One Anthropic turn may become several internal messages: each
/// `tool_result` block is a `Role::Tool` message, the rest one user message.
fn decode_turn(v: Value, at: &str, out: &mut Vec<Message>) -> Result<(), DecodeError> {
    let Value::Object(mut m) = v else {
        return Err(DecodeError::at(
            at,
            format!("{at}: must be an object, not {}", kind(&v)),
        ));
    };
    let role: String = require(&mut m, "role").map_err(|e| rebase(e, at))?;
    let role = match role.as_str() {
        "user" => Role::User,
        "assistant" => Role::Assistant,
        other => {
            return Err(DecodeError::at(
                format!("{at}.role"),
                format!("{at}.role: unknown role `{other}`; expected user or assistant"),
            ));
        }
    };
    let content_at = format!("{at}.content");
    let blocks = match m.remove("content") {
        Some(Value::String(s)) => vec![json!({"type": "text", "text": s})],
        Some(Value::Array(blocks)) => blocks,
        Some(other) => {
            return Err(DecodeError::at(
                &content_at,
                format!(
                    "{content_at}: must be a string or an array of blocks, not {}",
                    kind(&other)
                ),
            ));
        }
        None => {
            return Err(DecodeError::at(
                &content_at,
                format!("{content_at}: missing required field"),
            ));
        }
    };
    let mut msg = Message::text(role, "");
    msg.content.clear();
    for (i, block) in blocks.into_iter().enumerate() {
        let bat = format!("{content_at}.{i}");
        let Value::Object(mut b) = block else {
            return Err(DecodeError::at(&bat, format!("{bat}: must be an object")));
        };
        let block_type: String = require(&mut b, "type").map_err(|e| rebase(e, &bat))?;
        match block_type.as_str() {
            "text" => msg.content.push(Part::Text(
                require(&mut b, "text").map_err(|e| rebase(e, &bat))?,
            )),
            "image" => msg.content.push(Part::Image(decode_image(&mut b, &bat)?)),
            "tool_use" if role == Role::Assistant => {
                let id: String = require(&mut b, "id").map_err(|e| rebase(e, &bat))?;
                let name: String = require(&mut b, "name").map_err(|e| rebase(e, &bat))?;
                let input: Value = take(&mut b, "input")
                    .map_err(|e| rebase(e, &bat))?
                    .unwrap_or_else(|| json!({}));
                msg.tool_calls.push(ToolCall {
                    id,
                    name,
                    arguments: input.to_string(),
                });
            }
            "tool_result" if role == Role::User => {
                let mut result = Message::text(Role::Tool, "");
                result.content = match b.remove("content") {
                    None | Some(Value::Null) => Vec::new(),
                    Some(Value::String(s)) => vec![Part::Text(s)],
                    Some(Value::Array(parts)) => {
                        let mut content = Vec::new();
                        for (j, p) in parts.into_iter().enumerate() {
                            let pat = format!("{bat}.content.{j}");
                            let Value::Object(mut p) = p else {
                                return Err(DecodeError::at(
                                    &pat,
                                    format!("{pat}: must be an object"),
                                ));
                            };
                            match p.get("type").and_then(Value::as_str) {
                                Some("text") => content.push(Part::Text(
                                    require(&mut p, "text").map_err(|e| rebase(e, &pat))?,
                                )),
                                Some("image") => {
                                    content.push(Part::Image(decode_image(&mut p, &pat)?))
                                }
                                _ => {
                                    return Err(DecodeError::at(
                                        &pat,
                                        format!(
                                            "{pat}: tool_result content must be text or image blocks"
                                        ),
                                    ));
                                }
                            }
                        }
                        content
                    }
                    Some(other) => {
                        return Err(DecodeError::at(
                            &bat,
                            format!(
                                "{bat}.content: must be a string or blocks, not {}",
                                kind(&other)
                            ),
                        ));
                    }
                };
                result.tool_call_id =
                    Some(require(&mut b, "tool_use_id").map_err(|e| rebase(e, &bat))?);
                result.is_error = take(&mut b, "is_error")
                    .map_err(|e| rebase(e, &bat))?
                    .unwrap_or(false);
                out.push(result);
            }
            // Extended-thinking blocks from an earlier turn carry nothing another
            // provider can use; they are dropped rather than refused.
            "thinking" | "redacted_thinking" => {}
            other => {
                return Err(DecodeError::at(
                    format!("{bat}.type"),
                    format!(
                        "{bat}.type: block `{other}` is not supported in a {} turn",
                        if role == Role::User {
                            "user"
                        } else {
                            "assistant"
                        }
                    ),
                ));
            }
        }
    }
    if !msg.content.is_empty() || !msg.tool_calls.is_empty() {
        out.push(msg);
    }
    Ok(())
}

fn decode_image(b: &mut Map<String, Value>, at: &str) -> Result<Image, DecodeError> {
    #[derive(Deserialize)]
    #[serde(tag = "type", rename_all = "lowercase")]
    enum Source {
        Base64 { media_type: String, data: String },
        Url { url: String },
    }
    let source: Value = require(b, "source").map_err(|e| rebase(e, at))?;
    Ok(match field::<Source>(source, &format!("{at}.source"))? {
        Source::Base64 { media_type, data } => Image::Base64 { media_type, data },
        Source::Url { url } => Image::Url(url),
    })
}

/// Encodes a request for the Anthropic API.
///
/// Choices where the protocols differ, made here once:
/// - `max_tokens` is required: [`DEFAULT_MAX_TOKENS`] when none was given;
/// - `temperature` is clamped to Anthropic's 0–1 range;
/// - `response_format: json_schema` with an object schema becomes a forced
///   tool call (`structured.rs`), Anthropic's strongest structured mode;
///   `json_object` (or a schema that cannot be forced) becomes an
///   instruction appended to the system prompt, since the messages API has
///   no JSON mode;
/// - consecutive turns of the same role are merged (tool results and the user
///   text after them share one user turn), as Anthropic requires alternation.
pub fn encode_request(req: &ChatRequest) -> Vec<u8> {
    let mut system = req.system.join("\n\n");
    let forced = structured_tool(req);
    let instruction = if forced.is_some() {
        None
    } else {
        json_instruction(req.response_format.as_ref())
    };
    if let Some(instruction) = instruction {
        if !system.is_empty() {
            system.push_str("\n\n");
        }
        system.push_str(&instruction);
    }
    let mut turns: Vec<(&'static str, Vec<Value>)> = Vec::new();
    for m in &req.messages {
        let (role, blocks) = encode_message(m);
        match turns.last_mut() {
            Some((last, existing)) if *last == role => existing.extend(blocks),
            _ => turns.push((role, blocks)),
        }
    }
    let messages: Vec<Value> = turns
        .into_iter()
        .map(|(role, content)| json!({"role": role, "content": content}))
        .collect();
    let mut obj = Map::new();
    obj.insert("model".into(), json!(req.model));
    obj.insert(
        "max_tokens".into(),
        json!(req.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS)),
    );
    obj.insert("messages".into(), Value::Array(messages));
    if !system.is_empty() {
        obj.insert("system".into(), json!(system));
    }
    if let Some(t) = req.temperature {
        obj.insert("temperature".into(), json!(t.clamp(0.0, 1.0)));
    }
    if let Some(p) = req.top_p {
        obj.insert("top_p".into(), json!(p));
    }
    if !req.stop.is_empty() {
        obj.insert("stop_sequences".into(), json!(req.stop));
    }
    if req.stream {
        obj.insert("stream".into(), json!(true));
    }
    if !req.tools.is_empty() {
        let tools: Vec<Value> = req
            .tools
            .iter()
            .map(|t| {
                let mut tool = json!({"name": t.name, "input_schema": t.parameters});
                if let Some(d) = &t.description {
                    tool["description"] = json!(d);
                }
                tool
            })
            .collect();
        obj.insert("tools".into(), Value::Array(tools));
    }
    if let Some((name, schema)) = forced {
        obj.insert(
            "tools".into(),
            json!([{"name": name, "description": "Give the answer as this tool's input.", "input_schema": schema}]),
        );
        obj.insert("tool_choice".into(), json!({"type": "tool", "name": name}));
    } else if let Some(choice) = &req.tool_choice {
        obj.insert(
            "tool_choice".into(),
            match choice {
                ToolChoice::Auto => json!({"type": "auto"}),
                ToolChoice::None => json!({"type": "none"}),
                ToolChoice::Required => json!({"type": "any"}),
                ToolChoice::Tool(name) => json!({"type": "tool", "name": name}),
            },
        );
    }
    if let Some(user) = &req.user {
        obj.insert("metadata".into(), json!({"user_id": user}));
    }
    if req.protocol == Protocol::Anthropic {
        for (k, v) in &req.extra {
            obj.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }
    serde_json::to_vec(&Value::Object(obj)).unwrap_or_default()
}

fn json_instruction(format: Option<&ResponseFormat>) -> Option<String> {
    match format? {
        ResponseFormat::Text => None,
        ResponseFormat::JsonObject => {
            Some("Respond with a single JSON object and nothing else.".to_owned())
        }
        ResponseFormat::JsonSchema { schema, .. } => Some(format!(
            "Respond with a single JSON value that validates against this JSON Schema, and nothing else:\n{schema}"
        )),
    }
}

fn encode_message(m: &Message) -> (&'static str, Vec<Value>) {
    match m.role {
        Role::User => ("user", m.content.iter().map(encode_part).collect()),
        Role::Tool => {
            let content: Vec<Value> = m.content.iter().map(encode_part).collect();
            let mut block = json!({
                "type": "tool_result",
                "tool_use_id": m.tool_call_id.clone().unwrap_or_default(),
                "content": content,
            });
            if m.is_error {
                block["is_error"] = json!(true);
            }
            ("user", vec![block])
        }
        Role::Assistant => {
            let mut blocks: Vec<Value> = m
                .content
                .iter()
                .filter(|p| !matches!(p, Part::Text(t) if t.is_empty()))
                .map(encode_part)
                .collect();
            blocks.extend(m.tool_calls.iter().map(|c| {
                json!({"type": "tool_use", "id": c.id, "name": c.name, "input": tool_input(&c.arguments)})
            }));
            ("assistant", blocks)
        }
    }
}

/// Tool arguments as the object Anthropic requires. Arguments that are not a
/// JSON object (a model's malformed output) are wrapped, not dropped.
pub(super) fn tool_input(arguments: &str) -> Value {
    match serde_json::from_str::<Value>(arguments) {
        Ok(v @ Value::Object(_)) => v,
        _ if arguments.trim().is_empty() => json!({}),
        _ => json!({"_raw_arguments": arguments}),
    }
}

fn encode_part(p: &Part) -> Value {
    match p {
        Part::Text(t) => json!({"type": "text", "text": t}),
        Part::Image(Image::Url(url)) => {
            json!({"type": "image", "source": {"type": "url", "url": url}})
        }
        Part::Image(Image::Base64 { media_type, data }) => {
            json!({"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}})
        }
    }
}
