//! JSON from a JSON Schema: a value that satisfies it (for structured output
//! and tool arguments) and one that deliberately does not (the
//! `schema-violation` fault). Covers the subset models are asked for in
//! practice: objects, arrays, scalars, `enum`, `const`, `anyOf`/`oneOf`/`allOf`,
//! nullable type lists and local `$ref`s.

use rand::Rng;
use rand::rngs::SmallRng;
use serde_json::{Map, Value, json};

use crate::words;

/// Nesting beyond this yields `null`, so a recursive `$ref` cannot loop.
const MAX_DEPTH: usize = 12;

/// A value valid against `schema`.
pub(crate) fn generate(schema: &Value, rng: &mut SmallRng) -> Value {
    Generator { root: schema, rng }.value(schema, 0)
}

/// `valid` (generated from `schema`) changed so that it no longer validates:
/// for objects the first required property is dropped and another property
/// gets a wrong type; anything else becomes a value of a wrong type.
pub(crate) fn violate(schema: &Value, valid: Value) -> Value {
    let s = resolve(schema, schema, 0);
    let Value::Object(mut map) = valid else {
        return wrong_type(s);
    };
    if types(s) != ["object"] {
        return wrong_type(s);
    }
    let required: Vec<&str> = keyword_strings(s, "required");
    let props = s.get("properties").and_then(Value::as_object);
    let mut broken = false;
    if let Some(first) = required.first() {
        broken |= map.remove(*first).is_some();
    }
    // Prefer retyping a second required property: it is surely present.
    let retyped = props.and_then(|p| {
        let present = |k: &str| map.contains_key(k) && p.contains_key(k);
        let key = required
            .iter()
            .skip(1)
            .copied()
            .find(|k| present(k))
            .or_else(|| {
                p.keys()
                    .map(String::as_str)
                    .find(|k| required.first() != Some(k) && present(k))
            })?;
        p.get_key_value(key)
    });
    if let Some((key, prop)) = retyped {
        map.insert(key.clone(), wrong_type(resolve(schema, prop, 0)));
        broken = true;
    }
    if broken {
        Value::Object(map)
    } else {
        wrong_type(s)
    }
}

struct Generator<'a> {
    root: &'a Value,
    rng: &'a mut SmallRng,
}

impl Generator<'_> {
    fn value(&mut self, schema: &Value, depth: usize) -> Value {
        let s = resolve(self.root, schema, 0);
        if depth > MAX_DEPTH {
            return Value::Null;
        }
        if let Some(c) = s.get("const") {
            return c.clone();
        }
        if let Some(Value::Array(options)) = s.get("enum")
            && !options.is_empty()
        {
            return options[self.rng.random_range(0..options.len())].clone();
        }
        for key in ["anyOf", "oneOf"] {
            if let Some(Value::Array(branches)) = s.get(key)
                && let Some(first) = branches
                    .iter()
                    .find(|b| types(resolve(self.root, b, 0)) != ["null"])
                    .or(branches.first())
            {
                return self.value(first, depth + 1);
            }
        }
        if let Some(Value::Array(parts)) = s.get("allOf") {
            let mut merged = Map::new();
            for part in parts {
                match self.value(part, depth + 1) {
                    Value::Object(m) => merged.extend(m),
                    other => return other,
                }
            }
            return Value::Object(merged);
        }
        match types(s).first().copied().unwrap_or("string") {
            "object" => self.object(s, depth),
            "array" => self.array(s, depth),
            "integer" => {
                let (lo, hi) = bounds(s);
                let (lo, hi) = (lo.ceil() as i64, hi.floor() as i64);
                json!(if lo <= hi {
                    self.rng.random_range(lo..=hi)
                } else {
                    lo
                })
            }
            "number" => {
                let (lo, hi) = bounds(s);
                // Halves: exact in JSON, and visibly not integers.
                let steps = ((hi - lo) * 2.0).floor().max(0.0) as u64;
                json!(lo + self.rng.random_range(0..=steps.min(1_000_000)) as f64 / 2.0)
            }
            "boolean" => json!(self.rng.random_bool(0.5)),
            "null" => Value::Null,
            _ => json!(self.string(s)),
        }
    }

    /// Every listed property plus any required one without a schema.
    fn object(&mut self, s: &Value, depth: usize) -> Value {
        let mut out = Map::new();
        if let Some(props) = s.get("properties").and_then(Value::as_object) {
            for (key, prop) in props {
                let v = self.value(prop, depth + 1);
                out.insert(key.clone(), v);
            }
        }
        for key in keyword_strings(s, "required") {
            if !out.contains_key(key) {
                out.insert(key.to_owned(), json!(words::pick(self.rng)));
            }
        }
        Value::Object(out)
    }

    fn array(&mut self, s: &Value, depth: usize) -> Value {
        let min = s.get("minItems").and_then(Value::as_u64).unwrap_or(0);
        let max = s
            .get("maxItems")
            .and_then(Value::as_u64)
            .unwrap_or(u64::MAX);
        let len = self.rng.random_range(1..=2_u64).max(min).min(max).min(64);
        let items = s.get("items").unwrap_or(&Value::Null);
        (0..len).map(|_| self.value(items, depth + 1)).collect()
    }

    fn string(&mut self, s: &Value) -> String {
        let day = self.rng.random_range(1..=28);
        let mut text = match s.get("format").and_then(Value::as_str) {
            Some("date-time") => format!("2024-05-{day:02}T12:00:00Z"),
            Some("date") => format!("2024-05-{day:02}"),
            Some("time") => "12:00:00Z".to_owned(),
            Some("email") => format!("{}@example.com", words::pick(self.rng)),
            Some("uri" | "url") => format!("https://example.com/{}", words::pick(self.rng)),
            Some("uuid") => format!(
                "00000000-0000-4000-8000-{:012x}",
                self.rng.random::<u64>() >> 16
            ),
            _ => words::pick(self.rng).to_owned(),
        };
        let min = s.get("minLength").and_then(Value::as_u64).unwrap_or(0);
        let max = s
            .get("maxLength")
            .and_then(Value::as_u64)
            .unwrap_or(u64::MAX);
        while (text.chars().count() as u64) < min.min(4096) {
            text.push('x');
        }
        text.chars()
            .take(usize::try_from(max).unwrap_or(usize::MAX))
            .collect()
    }
}

/// Follows local `$ref`s (`#/$defs/X`, `#/definitions/X`, any JSON pointer
/// into the root). An unresolvable reference is treated as "anything".
fn resolve<'a>(root: &'a Value, schema: &'a Value, hops: usize) -> &'a Value {
    match schema.get("$ref").and_then(Value::as_str) {
        Some(r) if hops < MAX_DEPTH => match r.strip_prefix('#').and_then(|p| root.pointer(p)) {
            Some(target) => resolve(root, target, hops + 1),
            None => &Value::Null,
        },
        _ => schema,
    }
}

/// The schema's allowed types, nullable types with `null` last; inferred from
/// the keywords present when `type` is absent.
fn types(s: &Value) -> Vec<&str> {
    let mut out: Vec<&str> = match s.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
        _ if s.get("properties").is_some() || s.get("required").is_some() => vec!["object"],
        _ if s.get("items").is_some() => vec!["array"],
        _ => Vec::new(),
    };
    out.sort_by_key(|t| *t == "null");
    out
}

fn keyword_strings<'a>(s: &'a Value, key: &str) -> Vec<&'a str> {
    s.get(key)
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// `[minimum, maximum]`, exclusive bounds nudged inwards, a missing side
/// 100 away from the other (`[0, 100]` with neither).
fn bounds(s: &Value) -> (f64, f64) {
    let get = |k: &str| s.get(k).and_then(Value::as_f64);
    let lo = get("minimum").or(get("exclusiveMinimum").map(|v| v + 1.0));
    let hi = get("maximum").or(get("exclusiveMaximum").map(|v| v - 1.0));
    match (lo, hi) {
        (Some(l), Some(h)) => (l, h),
        (Some(l), None) => (l, l + 100.0),
        (None, Some(h)) => ((h - 100.0).max(0.0).min(h), h),
        (None, None) => (0.0, 100.0),
    }
}

/// A value whose JSON type the schema does not allow (or, for an untyped
/// `enum`/`const`, a string that is not one of its values).
fn wrong_type(s: &Value) -> Value {
    let allowed = types(s);
    let candidates = [
        ("string", json!("sim: wrong type")),
        ("number", json!(12345)),
        ("boolean", json!(true)),
        ("object", json!({})),
        ("array", json!([])),
        ("null", Value::Null),
    ];
    let allows = |t: &str| {
        allowed
            .iter()
            .any(|a| *a == t || (t == "number" && *a == "integer"))
    };
    match candidates
        .into_iter()
        .find(|(t, _)| !allowed.is_empty() && !allows(t))
    {
        Some((_, v)) => v,
        None => json!("sim: not an allowed value"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn rng() -> SmallRng {
        SmallRng::seed_from_u64(7)
    }

    fn schema() -> Value {
        json!({
            "type": "object",
            "required": ["name", "age", "tags", "address", "kind"],
            "properties": {
                "name": {"type": "string", "minLength": 3, "maxLength": 10},
                "age": {"type": "integer", "minimum": 18, "maximum": 20},
                "score": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
                "active": {"type": "boolean"},
                "tags": {"type": "array", "items": {"type": "string"}, "minItems": 3},
                "address": {"$ref": "#/$defs/address"},
                "kind": {"enum": ["a", "b"]},
                "version": {"const": 2},
                "note": {"type": ["string", "null"]},
                "when": {"type": "string", "format": "date-time"},
                "choice": {"anyOf": [{"type": "null"}, {"type": "integer"}]}
            },
            "$defs": {
                "address": {
                    "type": "object",
                    "required": ["city"],
                    "properties": {"city": {"type": "string"}, "zip": {"type": "integer"}}
                }
            }
        })
    }

    #[test]
    fn generated_values_conform() {
        for seed in 0..20 {
            let v = generate(&schema(), &mut SmallRng::seed_from_u64(seed));
            let name = v["name"].as_str().unwrap();
            assert!((3..=10).contains(&name.chars().count()), "{name}");
            assert!((18..=20).contains(&v["age"].as_i64().unwrap()));
            let score = v["score"].as_f64().unwrap();
            assert!(score > 0.0 && score <= 1.0, "{score}");
            assert!(v["active"].is_boolean());
            let tags = v["tags"].as_array().unwrap();
            assert!(tags.len() >= 3 && tags.iter().all(Value::is_string));
            assert!(v["address"]["city"].is_string());
            assert!(v["address"]["zip"].is_i64());
            assert!(["a", "b"].contains(&v["kind"].as_str().unwrap()));
            assert_eq!(v["version"], json!(2));
            assert!(v["note"].is_string());
            assert!(v["when"].as_str().unwrap().ends_with('Z'));
            assert!(v["choice"].is_i64());
        }
    }

    #[test]
    fn untyped_and_recursive_schemas_terminate() {
        let tree = json!({"$ref": "#/$defs/node", "$defs": {"node": {
            "type": "object", "required": ["child"], "properties": {"child": {"$ref": "#/$defs/node"}}
        }}});
        let mut v = &generate(&tree, &mut rng());
        let mut depth = 0;
        while let Some(child) = v.get("child") {
            v = child;
            depth += 1;
        }
        assert!(depth <= MAX_DEPTH + 1);
        assert!(generate(&json!({}), &mut rng()).is_string());
        assert!(generate(&json!(true), &mut rng()).is_string());
    }

    #[test]
    fn violation_breaks_the_schema() {
        let s = schema();
        let bad = violate(&s, generate(&s, &mut rng()));
        assert!(
            bad.get("name").is_none(),
            "first required property dropped: {bad}"
        );
        assert!(!bad["age"].is_i64(), "another property retyped: {bad}");

        assert_eq!(
            violate(&json!({"type": "string"}), json!("x")),
            json!(12345)
        );
        assert_eq!(
            violate(&json!({"type": "integer"}), json!(1)),
            json!("sim: wrong type")
        );
        assert!(violate(&json!({"type": "object"}), json!({})).is_string());
        let nullable = violate(&json!({"type": ["string", "null"]}), json!("x"));
        assert!(nullable.is_number());
    }
}
