//! The script file: rules matched against the last user message, first match
//! wins. Parsed strictly (unknown keys are errors) and validated once at load,
//! so a typo fails `keel sim` at start-up instead of silently never matching.

use std::path::Path;

use regex::Regex;
use serde::Deserialize;
use serde_json::Value;

use crate::SimError;
use crate::fault::Fault;

/// A validated rule.
#[derive(Debug)]
pub(crate) struct Rule {
    matcher: Matcher,
    pub(crate) answer: Answer,
    pub(crate) fault: Option<Fault>,
    pub(crate) usage: Option<UsageOverride>,
}

#[derive(Debug)]
enum Matcher {
    Any,
    /// Lowercased needle; the haystack is lowercased at match time.
    Contains(String),
    Regex(Regex),
}

/// What a rule answers with.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Answer {
    Reply(String),
    ToolCall {
        name: String,
        arguments: Value,
    },
    /// Any JSON value, returned as the reply text.
    Json(Value),
}

/// Either figure replaces the computed one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct UsageOverride {
    pub(crate) input_tokens: Option<u32>,
    pub(crate) output_tokens: Option<u32>,
}

#[derive(Debug, Default)]
pub(crate) struct Script {
    rules: Vec<Rule>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScript {
    #[serde(default)]
    rule: Vec<RawRule>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    contains: Option<String>,
    regex: Option<String>,
    reply: Option<String>,
    tool_call: Option<RawToolCall>,
    json: Option<Value>,
    fault: Option<String>,
    usage: Option<UsageOverride>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawToolCall {
    name: String,
    #[serde(default = "empty_object")]
    arguments: Value,
}

fn empty_object() -> Value {
    Value::Object(serde_json::Map::new())
}

impl Script {
    pub(crate) fn load(path: &Path) -> Result<Script, SimError> {
        let text = std::fs::read_to_string(path).map_err(|source| SimError::ScriptRead {
            path: path.to_owned(),
            source,
        })?;
        Script::parse(&text).map_err(|e| match e {
            ParseError::Toml(source) => SimError::ScriptParse {
                path: path.to_owned(),
                source: Box::new(source),
            },
            ParseError::Rule { index, reason } => SimError::ScriptRule {
                path: path.to_owned(),
                index,
                reason,
            },
        })
    }

    fn parse(text: &str) -> Result<Script, ParseError> {
        let raw: RawScript = toml::from_str(text).map_err(ParseError::Toml)?;
        let rules = raw
            .rule
            .into_iter()
            .enumerate()
            .map(|(index, r)| {
                Rule::validate(r).map_err(|reason| ParseError::Rule { index, reason })
            })
            .collect::<Result<_, _>>()?;
        Ok(Script { rules })
    }

    /// The first rule matching `text` (the last user message).
    pub(crate) fn find(&self, text: &str) -> Option<&Rule> {
        let lower = text.to_lowercase();
        self.rules.iter().find(|r| match &r.matcher {
            Matcher::Any => true,
            Matcher::Contains(needle) => lower.contains(needle.as_str()),
            Matcher::Regex(re) => re.is_match(text),
        })
    }
}

#[derive(Debug)]
enum ParseError {
    Toml(toml::de::Error),
    Rule { index: usize, reason: String },
}

impl Rule {
    fn validate(raw: RawRule) -> Result<Rule, String> {
        let matcher = match (raw.contains, raw.regex) {
            (Some(_), Some(_)) => return Err("set `contains` or `regex`, not both".to_owned()),
            (Some(c), None) => Matcher::Contains(c.to_lowercase()),
            (None, Some(r)) => Matcher::Regex(Regex::new(&r).map_err(|e| format!("regex: {e}"))?),
            (None, None) => Matcher::Any,
        };
        let answer = match (raw.reply, raw.tool_call, raw.json) {
            (Some(text), None, None) => Answer::Reply(text),
            (None, Some(call), None) => Answer::ToolCall {
                name: call.name,
                arguments: call.arguments,
            },
            (None, None, Some(json)) => Answer::Json(json),
            _ => return Err("needs exactly one of `reply`, `tool_call`, `json`".to_owned()),
        };
        let fault = raw
            .fault
            .map(|f| Fault::parse(&f).map_err(|e| format!("fault {e}")))
            .transpose()?;
        Ok(Rule {
            matcher,
            answer,
            fault,
            usage: raw.usage,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SCRIPT: &str = r#"
        [[rule]]
        contains = "WEATHER"
        tool_call = { name = "get_weather", arguments = { city = "Paris", days = 2 } }

        [[rule]]
        regex = '^order \d+$'
        json = { status = "shipped", items = [1, 2] }
        usage = { output_tokens = 7 }

        [[rule]]
        contains = "slow"
        reply = "eventually"
        fault = "ttft=2s"

        [[rule]]
        reply = "fallback"
    "#;

    #[test]
    fn first_matching_rule_wins() {
        let s = Script::parse(SCRIPT).unwrap();
        let weather = s.find("What's the Weather in Paris? Also slow.").unwrap();
        assert_eq!(
            weather.answer,
            Answer::ToolCall {
                name: "get_weather".into(),
                arguments: json!({"city": "Paris", "days": 2})
            }
        );
        let order = s.find("order 42").unwrap();
        assert_eq!(
            order.answer,
            Answer::Json(json!({"status": "shipped", "items": [1, 2]}))
        );
        assert_eq!(order.usage.unwrap().output_tokens, Some(7));
        assert_eq!(order.usage.unwrap().input_tokens, None);
        let slow = s.find("so SLOW").unwrap();
        assert_eq!(
            slow.fault.as_ref().unwrap().ttft,
            std::time::Duration::from_secs(2)
        );
        assert_eq!(
            s.find("order 42 please").unwrap().answer,
            Answer::Reply("fallback".into())
        );
    }

    fn rule_error(text: &str) -> (usize, String) {
        match Script::parse(text) {
            Err(ParseError::Rule { index, reason }) => (index, reason),
            Err(ParseError::Toml(e)) => panic!("toml error: {e}"),
            Ok(_) => panic!("accepted"),
        }
    }

    #[test]
    fn invalid_rules_name_their_index() {
        let (i, r) = rule_error("[[rule]]\nreply = 'a'\n[[rule]]\nregex = '('\nreply = 'b'");
        assert_eq!(i, 1);
        assert!(r.starts_with("regex: "), "{r}");
        let (i, r) = rule_error("[[rule]]\ncontains = 'a'\nreply = 'a'\njson = 1");
        assert_eq!(
            (i, r.as_str()),
            (0, "needs exactly one of `reply`, `tool_call`, `json`")
        );
        let (_, r) = rule_error("[[rule]]\nreply = 'a'\nfault = 'explode'");
        assert_eq!(r, "fault `explode`: unknown fault");
        let (_, r) = rule_error("[[rule]]\ncontains = 'a'\nregex = 'a'\nreply = 'a'");
        assert_eq!(r, "set `contains` or `regex`, not both");
    }

    #[test]
    fn unknown_keys_are_rejected() {
        for text in [
            "[[rule]]\nreply = 'a'\nreplly = 'b'",
            "[[rules]]\nreply = 'a'",
            "[[rule]]\nreply = 'a'\nusage = { input = 1 }",
            "[[rule]]\ntool_call = { name = 'f', args = {} }",
        ] {
            assert!(
                matches!(Script::parse(text), Err(ParseError::Toml(_))),
                "{text}"
            );
        }
    }
}
