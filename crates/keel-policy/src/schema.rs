//! JSON Schema validation of a model's output, compiled once at config load.
//!
//! Choices:
//! - The `jsonschema` crate with `default-features = false`: no HTTP or file
//!   retrieval, so a schema is self-contained and compiling it never does I/O;
//!   an external `$ref` is a compile (config) error, not a request-time
//!   surprise. The draft comes from `$schema`, 2020-12 when absent.
//! - `format` is asserted (`date`, `date-time`, `email`, `uuid`, ...), not
//!   just annotated as 2020-12 does by default: a function that promises a
//!   date should not return `"yesterday"`. Formats the build does not know
//!   (`idn-*`, which needs the `idna` feature, and custom ones) are ignored.
//! - [`Schema::validate`] reports every error in the validator's order, capped
//!   at [`MAX_VIOLATIONS`], each with its instance path as a JSON pointer, so a
//!   re-ask prompt can name them all ([`describe`]). Messages quote the
//!   offending value; long ones are shortened to keep the prompt small.

use std::fmt::Write as _;

use serde::Serialize;
use serde_json::Value;

/// At most this many violations are reported for one instance.
pub const MAX_VIOLATIONS: usize = 20;
/// A violation message longer than this (in chars) is cut and ends with `…`.
const MAX_MESSAGE_CHARS: usize = 200;

/// A compiled JSON Schema. `Send + Sync`: share it behind an `Arc`.
#[derive(Debug)]
pub struct Schema {
    validator: jsonschema::Validator,
    schema: Value,
    wants_object: bool,
}

/// One way an instance fails its schema.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Violation {
    /// JSON pointer of the failing part of the instance, `""` for the root.
    pub path: String,
    /// What is wrong, e.g. `"abc" is not of type "number"`.
    pub message: String,
}

/// The schema itself is invalid (or refers to a document it cannot load).
#[derive(Debug, thiserror::Error)]
#[error("invalid JSON Schema: {message} (at schema path \"{path}\")")]
pub struct SchemaError {
    /// JSON pointer into the schema document, `""` for the root.
    pub path: String,
    /// What is wrong with it.
    pub message: String,
}

impl Schema {
    /// Checks `schema` against its draft's meta-schema and compiles it.
    pub fn compile(schema: &Value) -> Result<Schema, SchemaError> {
        let validator = jsonschema::options()
            .should_validate_formats(true)
            .build(schema)
            .map_err(|e| SchemaError {
                path: e.instance_path().to_string(),
                message: shorten(e.to_string()),
            })?;
        let wants_object = schema.get("type").and_then(Value::as_str) == Some("object");
        Ok(Schema {
            validator,
            schema: schema.clone(),
            wants_object,
        })
    }

    /// `Ok` when `value` is valid, else its violations (at most
    /// [`MAX_VIOLATIONS`]) in the order the validator finds them.
    pub fn validate(&self, value: &Value) -> Result<(), Vec<Violation>> {
        let violations: Vec<Violation> = self
            .validator
            .iter_errors(value)
            .take(MAX_VIOLATIONS)
            .map(|e| Violation {
                path: e.instance_path().to_string(),
                message: shorten(e.to_string()),
            })
            .collect();
        if violations.is_empty() {
            Ok(())
        } else {
            Err(violations)
        }
    }

    /// The schema document as configured.
    pub fn schema(&self) -> &Value {
        &self.schema
    }

    /// Whether the top level is `"type": "object"`, so extraction should
    /// only accept a JSON object.
    pub fn wants_object(&self) -> bool {
        self.wants_object
    }
}

/// Renders violations for a re-ask prompt, one line each:
/// `at /items/0/price: "abc" is not of type "number"` (`at the root` for `""`).
pub fn describe(violations: &[Violation]) -> String {
    let mut out = String::new();
    for v in violations {
        if !out.is_empty() {
            out.push('\n');
        }
        let at = if v.path.is_empty() {
            "the root"
        } else {
            &v.path
        };
        // Writing to a String cannot fail.
        let _ = write!(out, "at {at}: {}", v.message);
    }
    out
}

fn shorten(mut message: String) -> String {
    if let Some((cut, _)) = message.char_indices().nth(MAX_MESSAGE_CHARS) {
        message.truncate(cut);
        message.push('…');
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn item_schema() -> Schema {
        let schema = json!({
            "type": "object",
            "required": ["name", "items"],
            "properties": {
                "name": {"type": "string"},
                "when": {"type": "string", "format": "date"},
                "items": {"type": "array", "items": {
                    "type": "object",
                    "required": ["price"],
                    "properties": {"price": {"type": "number", "minimum": 0}}
                }}
            },
            "additionalProperties": false
        });
        match Schema::compile(&schema) {
            Ok(s) => s,
            Err(e) => unreachable!("valid schema rejected: {e}"),
        }
    }

    #[test]
    fn valid_instance_passes() {
        let s = item_schema();
        let ok = json!({"name": "a", "when": "2024-02-29", "items": [{"price": 1.5}]});
        assert_eq!(s.validate(&ok), Ok(()));
        assert!(s.wants_object());
        assert_eq!(s.schema()["type"], "object");
    }

    #[test]
    fn every_error_is_reported_with_its_instance_path() {
        let s = item_schema();
        let bad = json!({"items": [{"price": 1}, {"price": "abc"}, {"price": -1}], "extra": 1});
        let Err(violations) = s.validate(&bad) else {
            unreachable!("invalid instance accepted")
        };
        let paths: Vec<&str> = violations.iter().map(|v| v.path.as_str()).collect();
        assert_eq!(violations.len(), 4, "{violations:?}");
        assert!(paths.contains(&"/items/1/price"), "{paths:?}");
        assert!(paths.contains(&"/items/2/price"), "{paths:?}");
        assert_eq!(
            paths.iter().filter(|p| p.is_empty()).count(),
            2,
            "{paths:?}"
        );
        let text = describe(&violations);
        assert!(
            text.contains("at /items/1/price: \"abc\" is not of type \"number\""),
            "{text}"
        );
        assert!(text.contains("at the root: "), "{text}");
        assert_eq!(text.lines().count(), 4);
    }

    #[test]
    fn formats_are_asserted() {
        let s = item_schema();
        let bad = json!({"name": "a", "when": "yesterday", "items": []});
        let Err(violations) = s.validate(&bad) else {
            unreachable!("bad date accepted")
        };
        assert_eq!(violations[0].path, "/when");
        assert!(violations[0].message.contains("\"date\""), "{violations:?}");
    }

    #[test]
    fn violations_are_capped_and_messages_shortened() {
        let schema = json!({"type": "array", "items": {"type": "integer"}});
        let Ok(s) = Schema::compile(&schema) else {
            unreachable!("valid schema rejected")
        };
        assert!(!s.wants_object());
        let long = "x".repeat(1000);
        let bad = Value::Array(vec![json!(long); 50]);
        let Err(violations) = s.validate(&bad) else {
            unreachable!("invalid instance accepted")
        };
        assert_eq!(violations.len(), MAX_VIOLATIONS);
        assert_eq!(violations[3].path, "/3");
        assert!(violations[0].message.ends_with('…'));
        assert_eq!(violations[0].message.chars().count(), MAX_MESSAGE_CHARS + 1);
    }

    #[test]
    fn invalid_schemas_are_rejected_at_compile() {
        let bad_type = json!({"type": "object", "properties": {"a": {"type": "strng"}}});
        let Err(e) = Schema::compile(&bad_type) else {
            unreachable!("bad type accepted")
        };
        assert!(e.path.starts_with("/properties/a"), "{e}");
        assert!(e.to_string().starts_with("invalid JSON Schema: "), "{e}");
        // Bad regex; and a remote $ref, which this build never fetches.
        for schema in [
            json!({"type": "string", "pattern": "(unclosed"}),
            json!({"$ref": "https://example.com/schema.json"}),
            json!({"minimum": "five"}),
        ] {
            assert!(Schema::compile(&schema).is_err(), "{schema} accepted");
        }
    }

    #[test]
    fn describe_is_one_line_per_violation() {
        let v = [
            Violation {
                path: String::new(),
                message: "\"name\" is a required property".into(),
            },
            Violation {
                path: "/items/0/price".into(),
                message: "\"abc\" is not of type \"number\"".into(),
            },
        ];
        assert_eq!(
            describe(&v),
            "at the root: \"name\" is a required property\n\
             at /items/0/price: \"abc\" is not of type \"number\""
        );
        assert_eq!(describe(&[]), "");
    }

    #[test]
    fn schema_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<Schema>();
    }
}
