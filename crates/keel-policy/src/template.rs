//! Prompt templates: Jinja syntax (minijinja), compiled once at config load,
//! rendered per call with the function's JSON input as the variables, and
//! versioned by a hash of their text.
//!
//! Choices:
//! - **Strict undefined.** A variable the input does not provide is a render
//!   error naming it (``undefined value: `user.email` is undefined (in
//!   prompts/x.j2:2)``), never an empty string silently sent to the model.
//!   Optional variables are written `{% if note is defined %}` or
//!   `{{ note | default("none") }}`; a plain `{% if note %}` on a missing
//!   variable is an error too.
//! - **No auto-escaping**, whatever the file's extension: prompts are text,
//!   and minijinja would HTML-escape a template named `*.html`. `tojson`
//!   embeds JSON (`{{ record | tojson }}`), Jinja-style: `<`, `>`, `&` and
//!   `'` come out as `\u003c`…, still valid JSON.
//! - Jinja's whitespace rules apply: the template's one trailing newline is
//!   dropped; `{%-`/`-%}` trim around tags.
//! - **Error messages** are minijinja's one-line `Display` (what, where), not
//!   its debug dump, which lists the variables' values and so the caller's
//!   input: errors are logged.
//! - **Version** = `<label>+<hash>`, or just `<hash>`: the first 12 hex digits
//!   of the SHA-256 of the source text. SHA-256 rather than a hand-written
//!   hash because it is stable across Rust versions and platforms (unlike
//!   `DefaultHasher`) and anyone can recompute it (`sha256sum prompt.j2 | cut
//!   -c1-12`) to tell which text a logged call used; `sha2` is small and pure
//!   Rust.

use std::fmt::Write as _;

use minijinja::value::Serde;
use minijinja::{AutoEscape, Environment, UndefinedBehavior};
use sha2::{Digest, Sha256};

/// A compiled prompt template; `Send + Sync`, render it from any thread.
pub struct Template {
    name: String,
    version: String,
    /// Holds the one template, stored under `name`.
    env: Environment<'static>,
}

#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("prompt template {name}: {message}")]
    Syntax { name: String, message: String },
    #[error("prompt template {name}: {message}")]
    Render { name: String, message: String },
}

impl std::fmt::Debug for Template {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Template")
            .field("name", &self.name)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

impl Template {
    /// `name` for errors (e.g. the file path); `source` the template text;
    /// `version` an explicit version label from config (may be empty).
    pub fn compile(name: &str, source: &str, version: &str) -> Result<Template, TemplateError> {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_auto_escape_callback(|_| AutoEscape::None);
        env.add_template_owned(name.to_owned(), source.to_owned())
            .map_err(|err| TemplateError::Syntax {
                name: name.to_owned(),
                message: err.to_string(),
            })?;
        let hash = content_hash(source);
        let version = match version {
            "" => hash,
            label => format!("{label}+{hash}"),
        };
        Ok(Template {
            name: name.to_owned(),
            version,
            env,
        })
    }

    /// The prompt for `vars` (usually a JSON object: its keys are the
    /// template's variables).
    pub fn render(&self, vars: &serde_json::Value) -> Result<String, TemplateError> {
        let render_error = |err: minijinja::Error| TemplateError::Render {
            name: self.name.clone(),
            message: err.to_string(),
        };
        let template = self.env.get_template(&self.name).map_err(render_error)?;
        template.render(Serde(vars)).map_err(render_error)
    }

    /// `<version>+<first 12 hex of the source's SHA-256>`, or just the hash
    /// when no version: recorded with every call so a prompt change is visible.
    pub fn version(&self) -> &str {
        &self.version
    }
}

/// The first 12 hex digits (6 bytes) of the SHA-256 of `source`.
fn content_hash(source: &str) -> String {
    let digest = Sha256::digest(source.as_bytes());
    digest.iter().take(6).fold(String::new(), |mut hex, byte| {
        let _ = write!(hex, "{byte:02x}");
        hex
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn compile(source: &str) -> Template {
        match Template::compile("prompts/t.j2", source, "") {
            Ok(template) => template,
            Err(err) => panic!("{err}"),
        }
    }

    #[test]
    fn renders_nested_variables_and_loops() {
        let template = compile(
            "Invoice for {{ customer.name }} ({{ customer.address.city }}):\n\
             {% for item in items %}- {{ item.qty }} x {{ item.name }}{% if not loop.last %}\n{% endif %}{% endfor %}\n\
             {{ note | default('no note') }} {% if rush is defined %}RUSH{% endif %}\n\
             {{ customer | tojson }}\n",
        );
        let vars = json!({
            "customer": {"name": "ACME <Ltd>", "address": {"city": "Lyon"}},
            "items": [{"name": "bolt", "qty": 2}, {"name": "nut", "qty": 10}],
        });
        assert_eq!(
            template.render(&vars).ok().as_deref(),
            Some(
                "Invoice for ACME <Ltd> (Lyon):\n- 2 x bolt\n- 10 x nut\nno note \n\
                 {\"address\": {\"city\": \"Lyon\"}, \"name\": \"ACME \\u003cLtd\\u003e\"}"
            )
        );
    }

    #[test]
    fn an_undefined_variable_is_an_error_naming_it() {
        let template = compile("Hello {{ user.name }},\nyour email: {{ user.email }}");
        let cases = [
            (
                json!({"user": {"name": "Ann"}}),
                "`user.email` is undefined",
            ),
            (json!({}), "`user` is undefined"),
        ];
        for (vars, expected) in cases {
            match template.render(&vars) {
                Err(TemplateError::Render { name, message }) => {
                    assert_eq!(name, "prompts/t.j2");
                    assert!(message.contains(expected), "{message}");
                }
                other => panic!("{other:?}"),
            }
        }
        let loop_template = compile("{% for x in missing %}{{ x }}{% endfor %}");
        match loop_template.render(&json!({"present": 1})) {
            Err(TemplateError::Render { message, .. }) => {
                assert!(message.contains("missing"), "{message}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_syntax_error_fails_at_compile() {
        match Template::compile("prompts/bad.j2", "Hi {{ user.name ", "v1") {
            Err(TemplateError::Syntax { name, message }) => {
                assert_eq!(name, "prompts/bad.j2");
                assert!(message.contains("syntax error"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        assert!(Template::compile("t", "{% for x in xs %}", "").is_err());
    }

    #[test]
    fn version_follows_the_content() {
        let a = compile("Summarize: {{ text }}");
        assert_eq!(a.version(), compile("Summarize: {{ text }}").version());
        assert_ne!(a.version(), compile("Summarise: {{ text }}").version());
        // SHA-256 of the text, so stable across builds: `printf %s '…' | sha256sum`.
        assert_eq!(a.version(), "8f454d40906b");
        assert_eq!(compile("").version(), "e3b0c44298fc");

        let labelled = Template::compile("t", "Summarize: {{ text }}", "2024-06");
        let labelled = labelled.map(|t| t.version().to_owned()).ok();
        assert_eq!(labelled, Some(format!("2024-06+{}", a.version())));
    }

    #[test]
    fn templates_are_shareable_across_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Template>();
    }
}
