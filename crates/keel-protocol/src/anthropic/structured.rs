//! JSON-schema output toward Anthropic, in its strongest form: a forced
//! tool call whose input schema is the requested schema (the messages API
//! has no JSON mode). The answer comes back as that tool's input and is
//! turned back into plain JSON text, streamed or not, so the client sees
//! what `response_format: json_schema` promises.

use serde_json::Value;

use crate::chat::{ChatRequest, ChatResponse, FinishReason, ResponseFormat, StreamEvent};

/// The forced tool for a request that wants JSON matching an object schema:
/// its name and input schema. `None` when the request has tools of its own
/// (a forced call would take their place) or the schema is not an object
/// (Anthropic tool inputs are objects): those keep the instruction.
pub fn structured_tool(req: &ChatRequest) -> Option<(String, &Value)> {
    match &req.response_format {
        Some(ResponseFormat::JsonSchema { name, schema, .. })
            if req.tools.is_empty()
                && schema.get("type").and_then(Value::as_str) == Some("object") =>
        {
            Some((crate::chat::wire_name(name), schema))
        }
        _ => None,
    }
}

/// A whole answer: the forced tool's input becomes the text.
pub fn unwrap_structured(resp: &mut ChatResponse, tool: &str) {
    if let Some(i) = resp.tool_calls.iter().position(|c| c.name == tool) {
        let call = resp.tool_calls.remove(i);
        resp.text = call.arguments;
        if resp.tool_calls.is_empty() && resp.finish_reason == FinishReason::ToolCalls {
            resp.finish_reason = FinishReason::Stop;
        }
    }
}

/// A streamed answer: the forced tool's argument deltas become text deltas.
#[derive(Debug)]
pub struct StructuredStream {
    tool: String,
    index: Option<u32>,
}

impl StructuredStream {
    pub fn new(tool: String) -> Self {
        StructuredStream { tool, index: None }
    }

    /// Maps one event; `None` drops it.
    fn renumber(&self, index: u32) -> u32 {
        match self.index {
            Some(forced) if index > forced => index - 1,
            _ => index,
        }
    }

    pub fn map(&mut self, ev: StreamEvent) -> Option<StreamEvent> {
        match ev {
            StreamEvent::ToolCallStart {
                index, ref name, ..
            } if *name == self.tool && self.index.is_none() => {
                self.index = Some(index);
                None
            }
            StreamEvent::ToolCallDelta { index, arguments } if Some(index) == self.index => {
                Some(StreamEvent::TextDelta(arguments))
            }
            StreamEvent::Finish(FinishReason::ToolCalls) if self.index.is_some() => {
                Some(StreamEvent::Finish(FinishReason::Stop))
            }
            // The forced call became text: the calls after it move down one,
            // so calls stay numbered from 0 without a gap.
            StreamEvent::ToolCallStart { index, id, name } => Some(StreamEvent::ToolCallStart {
                index: self.renumber(index),
                id,
                name,
            }),
            StreamEvent::ToolCallDelta { index, arguments } => Some(StreamEvent::ToolCallDelta {
                index: self.renumber(index),
                arguments,
            }),
            other => Some(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::{ToolCall, Usage};
    use serde_json::json;

    /// Found by fuzzing: the forced call turned into text leaves no gap in
    /// the numbering of the calls after it.
    #[test]
    fn calls_after_the_forced_one_move_down() {
        let mut stream = StructuredStream {
            tool: "out".to_owned(),
            index: None,
        };
        let start = |index, name: &str| StreamEvent::ToolCallStart {
            index,
            id: format!("t{index}"),
            name: name.to_owned(),
        };
        assert_eq!(stream.map(start(0, "out")), None);
        assert_eq!(
            stream.map(start(1, "out")),
            Some(start(0, "out")).map(|e| match e {
                StreamEvent::ToolCallStart { name, .. } => StreamEvent::ToolCallStart {
                    index: 0,
                    id: "t1".to_owned(),
                    name,
                },
                other => other,
            })
        );
        assert_eq!(
            stream.map(StreamEvent::ToolCallDelta {
                index: 1,
                arguments: "{}".to_owned()
            }),
            Some(StreamEvent::ToolCallDelta {
                index: 0,
                arguments: "{}".to_owned()
            })
        );
    }

    #[test]
    fn the_forced_tool_comes_back_as_text_whole_or_streamed() {
        let req = ChatRequest {
            response_format: Some(ResponseFormat::JsonSchema {
                name: "city info!".into(),
                schema: json!({"type": "object"}),
                strict: None,
            }),
            ..ChatRequest::default()
        };
        let (tool, _) = structured_tool(&req).unwrap();
        assert_eq!(tool, "cityinfo");
        let mut resp = ChatResponse {
            id: "m".into(),
            model: "c".into(),
            created: 0,
            text: String::new(),
            tool_calls: vec![ToolCall {
                id: "t".into(),
                name: tool.clone(),
                arguments: "{\"a\":1}".into(),
            }],
            finish_reason: FinishReason::ToolCalls,
            usage: Usage::default(),
        };
        unwrap_structured(&mut resp, &tool);
        assert_eq!(
            (
                resp.text.as_str(),
                resp.tool_calls.len(),
                resp.finish_reason
            ),
            ("{\"a\":1}", 0, FinishReason::Stop)
        );

        let mut s = StructuredStream::new(tool.clone());
        let events = [
            StreamEvent::ToolCallStart {
                index: 0,
                id: "t".into(),
                name: tool,
            },
            StreamEvent::ToolCallDelta {
                index: 0,
                arguments: "{\"a\"".into(),
            },
            StreamEvent::ToolCallDelta {
                index: 0,
                arguments: ":1}".into(),
            },
            StreamEvent::Finish(FinishReason::ToolCalls),
        ];
        let out: Vec<StreamEvent> = events.into_iter().filter_map(|e| s.map(e)).collect();
        assert_eq!(
            out,
            [
                StreamEvent::TextDelta("{\"a\"".into()),
                StreamEvent::TextDelta(":1}".into()),
                StreamEvent::Finish(FinishReason::Stop)
            ]
        );
    }

    #[test]
    fn requests_with_their_own_tools_or_non_object_schemas_keep_the_instruction() {
        let mut req = ChatRequest {
            response_format: Some(ResponseFormat::JsonSchema {
                name: "x".into(),
                schema: json!({"type": "array"}),
                strict: None,
            }),
            ..ChatRequest::default()
        };
        assert!(structured_tool(&req).is_none());
        req.response_format = Some(ResponseFormat::JsonSchema {
            name: "x".into(),
            schema: json!({"type": "object"}),
            strict: None,
        });
        req.tools.push(crate::chat::Tool {
            name: "f".into(),
            description: None,
            parameters: json!({}),
        });
        assert!(structured_tool(&req).is_none());
    }
}
