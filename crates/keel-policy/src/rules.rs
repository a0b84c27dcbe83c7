//! Invariants and forbidden states over a function's output.
//!
//! A rule is either a CEL expression (<https://cel.dev>) that sees two
//! variables, `output` (the function's JSON output) and `input` (its JSON
//! input), or a regex matched against the output serialized as compact JSON
//! text. An *invariant* must hold (its expression is `true`, or its regex
//! matches); a *forbidden* state must not. Regexes are meant for forbidden
//! states (a leaked marker, a banned word). Rules are compiled
//! once, at config load: CEL programs parsed, regexes built.
//!
//! Choices:
//! - **CEL, not a language of our own.** The `cel` crate (cel-rust) is the
//!   maintained implementation: `cel-interpreter` is its old name, frozen at
//!   0.10 since the project renamed it. With default features off it brings an
//!   ANTLR runtime and `nom` and little else; we enable only `regex` (already
//!   in our tree) for `matches()`, and leave out `chrono` (which pulls the
//!   whole `chrono-tz` database) and the base64 encoders.
//! - **Every JSON number is a CEL `double`**, as in CEL's own JSON mapping.
//!   CEL has no mixed `int + double` arithmetic, so keeping JSON integers as
//!   `int` would make `output.subtotal + output.tax` fail whenever one of
//!   them happens to be written without a fraction. Comparisons mix freely
//!   (`output.count == 3`, `size(output.items) == output.count`); in
//!   arithmetic write float literals (`output.count + 1.0`) or convert
//!   (`int(output.count) + 1`). Integers above 2^53 lose precision: keep ids
//!   as strings.
//! - **Dates are strings.** Without `chrono` there are no timestamps; ISO-8601
//!   dates of one format (`2024-03-01`) compare correctly as strings:
//!   `output.due_date > output.issue_date`.
//! - **Extensions**: `math` (`math.abs`, `math.round`, `math.greatest`…),
//!   `strings` (`split`, `lowerAscii`, `replace`…), `lists` (`distinct`,
//!   `sort`…), and our own `list.sum()` (a `double`), for line items:
//!   `output.total == output.items.map(i, i.price * i.qty).sum()`. Money sums
//!   in floating point need a tolerance:
//!   `math.abs(output.total - (output.subtotal + output.tax)) < 0.01`.
//! - **A rule that cannot be evaluated fails.** A missing field, a type
//!   mismatch or a non-bool result is a [`RuleFailure`] carrying the
//!   evaluation error: for an invariant *and* for a forbidden state, since an
//!   output we cannot check must not pass as checked.
//! - The JSON is handed to CEL by reference (strings are borrowed, not
//!   copied), so a large `input` costs one walk per check, not a deep copy.

use std::collections::HashMap;
use std::sync::Arc;

use cel::common::types::{
    CelBool, CelDouble, CelInt, CelList, CelMap, CelMapKey, CelNull, CelString, CelUInt, LIST_TYPE,
};
use cel::common::value::{CowVal, Val};
use cel::{Context, Env, ExecutionError, Program};
use regex::Regex;

/// One rule as written in config: a name and exactly one of `expr`/`regex`.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
pub struct RuleSpec {
    pub name: String,
    /// A CEL expression over `output` and `input` that evaluates to a bool.
    pub expr: Option<String>,
    /// A regex matched against the output serialized as compact JSON text
    /// (so a string's quotes and newlines appear escaped: `\"`, `\n`).
    pub regex: Option<String>,
    /// What a failure says; a description of the rule when absent.
    pub message: Option<String>,
}

/// A rule that did not hold for one output.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RuleFailure {
    pub rule: String,
    pub message: String,
}

/// A rule that does not compile, named.
#[derive(Debug, thiserror::Error)]
#[error("rule `{rule}`: {message}")]
pub struct RuleError {
    pub rule: String,
    pub message: String,
}

/// Compiled invariants and forbidden states; built once, shared by reference.
pub struct Rules {
    env: Arc<Env>,
    rules: Vec<Rule>,
}

impl std::fmt::Debug for Rules {
    /// The rules; the CEL environment (the standard library) has no `Debug`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rules")
            .field("rules", &self.rules)
            .finish_non_exhaustive()
    }
}

#[derive(Debug)]
struct Rule {
    name: String,
    message: Option<String>,
    /// An invariant must hold; a forbidden state must not.
    forbidden: bool,
    check: Check,
}

#[derive(Debug)]
enum Check {
    Expr { source: String, program: Program },
    Regex(Regex),
}

impl Rules {
    /// Invariants: each must evaluate to true. Forbidden: each must NOT hold
    /// (expr true or regex matches → failure).
    pub fn compile(invariants: &[RuleSpec], forbidden: &[RuleSpec]) -> Result<Rules, RuleError> {
        let env = environment().map_err(|err| RuleError {
            rule: "(CEL environment)".to_owned(),
            message: format!("building the CEL environment: {err}"),
        })?;
        let specs = invariants.iter().map(|spec| (spec, false));
        let specs = specs.chain(forbidden.iter().map(|spec| (spec, true)));
        let rules = specs
            .map(|(spec, forbidden)| compile_rule(&env, spec, forbidden))
            .collect::<Result<_, _>>()?;
        Ok(Rules {
            env: Arc::new(env),
            rules,
        })
    }

    /// Every failure: an invariant false, a forbidden state hit, or an
    /// expression that errors at runtime (with the error in the message).
    pub fn check(&self, output: &serde_json::Value, input: &serde_json::Value) -> Vec<RuleFailure> {
        let mut context = Context::with_env(Arc::clone(&self.env));
        context.add_variable_as_val("output", to_cel(output));
        context.add_variable_as_val("input", to_cel(input));
        // Serialized lazily, and once, for the regex rules only.
        let mut text: Option<String> = None;
        let mut failures = Vec::new();
        for rule in &self.rules {
            let verdict = match &rule.check {
                Check::Expr { program, .. } => match program.execute(&context) {
                    Ok(cel::Value::Bool(holds)) => Ok(holds),
                    Ok(other) => Err(format!("evaluates to {}, not a bool", other.type_of())),
                    Err(err) => Err(err.to_string()),
                },
                Check::Regex(regex) => {
                    let text = text.get_or_insert_with(|| output.to_string());
                    Ok(regex.is_match(text))
                }
            };
            let message = match verdict {
                Ok(holds) if holds != rule.forbidden => continue,
                Ok(_) => rule.message.clone().unwrap_or_else(|| rule.describe()),
                Err(err) => {
                    let what = rule
                        .message
                        .as_deref()
                        .map(|m| format!("{m}: "))
                        .unwrap_or_default();
                    format!("{what}{} could not be evaluated: {err}", rule.source())
                }
            };
            failures.push(RuleFailure {
                rule: rule.name.clone(),
                message,
            });
        }
        failures
    }
}

impl Rule {
    fn source(&self) -> String {
        match &self.check {
            Check::Expr { source, .. } => format!("`{source}`"),
            Check::Regex(regex) => format!("/{}/", regex.as_str()),
        }
    }

    fn describe(&self) -> String {
        match (&self.check, self.forbidden) {
            (Check::Expr { .. }, false) => format!("invariant {} does not hold", self.source()),
            (Check::Expr { .. }, true) => format!("forbidden state {} holds", self.source()),
            (Check::Regex(_), false) => {
                format!(
                    "required pattern {} does not match the output",
                    self.source()
                )
            }
            (Check::Regex(_), true) => {
                format!("forbidden pattern {} matches the output", self.source())
            }
        }
    }
}

/// The standard library, the extensions named in the module doc, and `sum`.
/// A CEL condition over named JSON values (a workflow step's `when`, over
/// `input` and `steps`), compiled once; the same environment and JSON
/// mapping as the rules.
pub struct Condition {
    env: Arc<Env>,
    source: String,
    program: Program,
}

impl std::fmt::Debug for Condition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Condition")
            .field("source", &self.source)
            .finish()
    }
}

impl Condition {
    pub fn compile(source: &str) -> Result<Condition, RuleError> {
        let error = |message: String| RuleError {
            rule: "when".to_owned(),
            message,
        };
        let env = environment().map_err(|e| error(format!("building the CEL environment: {e}")))?;
        let program = env
            .compile(source)
            .map_err(|e| error(format!("invalid CEL expression: {e}")))?;
        Ok(Condition {
            env: Arc::new(env),
            source: source.to_owned(),
            program,
        })
    }

    /// Whether the condition holds with `input` and `steps` bound; an
    /// evaluation error or a non-bool result is an `Err`, never a guess.
    pub fn holds(
        &self,
        input: &serde_json::Value,
        steps: &serde_json::Value,
    ) -> Result<bool, String> {
        let mut context = Context::with_env(Arc::clone(&self.env));
        context.add_variable_as_val("input", to_cel(input));
        context.add_variable_as_val("steps", to_cel(steps));
        match self.program.execute(&context) {
            Ok(cel::Value::Bool(b)) => Ok(b),
            Ok(other) => Err(format!(
                "`{}` evaluates to {}, not a bool",
                self.source,
                other.type_of()
            )),
            Err(e) => Err(format!("`{}` could not be evaluated: {e}", self.source)),
        }
    }
}

fn environment() -> Result<Env, cel::DeclarationError> {
    let mut env = Env::stdlib();
    cel::extensions::math(&mut env)?;
    cel::extensions::strings(&mut env)?;
    cel::extensions::lists(&mut env)?;
    env.add_member_overload("sum", "list.sum()", LIST_TYPE, vec![], sum)?;
    Ok(env)
}

fn compile_rule(env: &Env, spec: &RuleSpec, forbidden: bool) -> Result<Rule, RuleError> {
    let error = |message: String| RuleError {
        rule: spec.name.clone(),
        message,
    };
    let check = match (&spec.expr, &spec.regex) {
        (Some(source), None) => Check::Expr {
            program: env
                .compile(source)
                .map_err(|err| error(format!("invalid CEL expression: {err}")))?,
            source: source.clone(),
        },
        (None, Some(pattern)) => {
            Check::Regex(Regex::new(pattern).map_err(|err| error(format!("invalid regex: {err}")))?)
        }
        _ => return Err(error("needs exactly one of `expr` and `regex`".to_owned())),
    };
    Ok(Rule {
        name: spec.name.clone(),
        message: spec.message.clone(),
        forbidden,
        check,
    })
}

/// JSON as CEL values, borrowing the strings: numbers become `double`s.
fn to_cel(value: &serde_json::Value) -> Box<dyn Val + '_> {
    use serde_json::Value as J;
    match value {
        J::Null => Box::new(CelNull),
        J::Bool(b) => Box::new(CelBool::from(*b)),
        // `as_f64` is always `Some` without serde_json's arbitrary_precision.
        J::Number(n) => Box::new(CelDouble::from(n.as_f64().unwrap_or(f64::NAN))),
        J::String(s) => Box::new(CelString::from(s.as_str())),
        J::Array(items) => Box::new(CelList::from(items.iter().map(to_cel).collect::<Vec<_>>())),
        J::Object(fields) => Box::new(CelMap::from(
            fields
                .iter()
                .map(|(k, v)| (CelMapKey::from(k.as_str()), to_cel(v)))
                .collect::<HashMap<_, _>>(),
        )),
    }
}

/// `list.sum()`: the sum of a list of numbers, as a `double` (`[].sum() == 0.0`).
fn sum<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let fail = |message: String| ExecutionError::function_error("sum", message);
    let list = args
        .first()
        .ok_or_else(|| fail("called without a list".to_owned()))?;
    let items = list
        .as_iterable()
        .ok_or_else(|| fail("not a list".to_owned()))?;
    let mut items = items.iter();
    let mut total = 0.0;
    while let Some(item) = items.next() {
        total += if let Some(d) = item.downcast_ref::<CelDouble>() {
            *d.inner()
        } else if let Some(i) = item.downcast_ref::<CelInt>() {
            *i.inner() as f64
        } else if let Some(u) = item.downcast_ref::<CelUInt>() {
            *u.inner() as f64
        } else {
            return Err(fail(format!("cannot add a {}", item.get_type().name())));
        };
    }
    Ok(CowVal::owned(CelDouble::from(total)))
}

#[cfg(test)]
mod tests;
