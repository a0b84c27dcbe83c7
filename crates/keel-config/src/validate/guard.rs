//! `[guardrails.NAME]`: each check's kind and action read from a flat table
//! (`{ check = "pii", action = "redact", restore = true }`), every field
//! checked for the kind it belongs to, and every action for the side it
//! runs on.

use std::collections::BTreeMap;
use std::time::Duration;

use super::Issue;
use crate::raw::{RawGuardCheck, RawGuardrails};
use crate::{CheckKind, GuardAction, GuardCheck, Guardrails, ModelConfig};

/// Characters a stream holds back by default: room for a sentence.
const DEFAULT_HOLD_BACK: usize = 200;
const DEFAULT_INJECTION_THRESHOLD: f64 = 0.5;
const DEFAULT_MIN_OVERLAP: f64 = 0.5;
const DEFAULT_MAX_DISTANCE: usize = 1;
const DEFAULT_WEBHOOK_TIMEOUT: Duration = Duration::from_millis(500);
const PII_ENTITIES: [&str; 6] = ["EMAIL", "PHONE", "CARD", "IBAN", "US_SSN", "IP"];

#[derive(Clone, Copy, PartialEq)]
enum Side {
    Input,
    Output,
}

pub(super) fn guardrails(
    raw: BTreeMap<String, RawGuardrails>,
    models: &BTreeMap<String, ModelConfig>,
    issues: &mut Vec<Issue>,
) -> BTreeMap<String, Guardrails> {
    raw.into_iter()
        .map(|(name, g)| {
            let at = format!("guardrails.{name}");
            let checks = |list: Vec<RawGuardCheck>, side: Side, issues: &mut Vec<Issue>| {
                let kind = if side == Side::Input {
                    "input"
                } else {
                    "output"
                };
                list.into_iter()
                    .enumerate()
                    .filter_map(|(i, c)| {
                        check(c, side, &format!("{at}.{kind}[{i}]"), models, issues)
                    })
                    .collect()
            };
            let set = Guardrails {
                input: checks(g.input, Side::Input, issues),
                output: checks(g.output, Side::Output, issues),
                hold_back: g.hold_back.unwrap_or(DEFAULT_HOLD_BACK),
                name: name.clone(),
            };
            (name, set)
        })
        .collect()
}

/// The first field set that the check's kind and action do not take.
fn unused(raw: &RawGuardCheck) -> Option<&'static str> {
    let takes: &[&str] = match raw.check.as_str() {
        "pii" => &["entities"],
        "injection" => &["threshold"],
        "system_prompt_leak" => &["min_overlap"],
        "denied_terms" => &["terms", "patterns", "max_distance"],
        "max_length" => &["max_chars"],
        "regex" => &["name", "pattern"],
        "webhook" => &["url", "timeout", "fail_open"],
        "forbidden_json" => &["rules"],
        _ => &[],
    };
    let by_action: &[&str] = match raw.action.as_str() {
        "redact" => &["restore"],
        "route" => &["model"],
        _ => &[],
    };
    let set = [
        ("entities", raw.entities.is_some()),
        ("threshold", raw.threshold.is_some()),
        ("min_overlap", raw.min_overlap.is_some()),
        ("terms", raw.terms.is_some()),
        ("patterns", raw.patterns.is_some()),
        ("max_distance", raw.max_distance.is_some()),
        ("max_chars", raw.max_chars.is_some()),
        ("name", raw.name.is_some()),
        ("pattern", raw.pattern.is_some()),
        ("url", raw.url.is_some()),
        ("timeout", raw.timeout.is_some()),
        ("fail_open", raw.fail_open.is_some()),
        ("rules", raw.rules.is_some()),
        ("restore", raw.restore.is_some()),
        ("model", raw.model.is_some()),
    ];
    set.into_iter()
        .find(|(field, given)| *given && !takes.contains(field) && !by_action.contains(field))
        .map(|(field, _)| field)
}

fn check(
    raw: RawGuardCheck,
    side: Side,
    at: &str,
    models: &BTreeMap<String, ModelConfig>,
    issues: &mut Vec<Issue>,
) -> Option<GuardCheck> {
    let mut bad =
        |field: &str, message: String| issues.push(Issue::error(format!("{at}.{field}"), message));
    let fraction = |v: f64| v.is_finite() && (0.0..=1.0).contains(&v);
    let kind = match raw.check.as_str() {
        "pii" => {
            let entities = raw.entities.clone().unwrap_or_default();
            if let Some(e) = entities
                .iter()
                .find(|e| !PII_ENTITIES.contains(&e.as_str()))
            {
                bad(
                    "entities",
                    format!("`{e}` is not one of {}", PII_ENTITIES.join(", ")),
                );
            }
            CheckKind::Pii { entities }
        }
        "secrets" => CheckKind::Secrets,
        "injection" => {
            let threshold = raw.threshold.unwrap_or(DEFAULT_INJECTION_THRESHOLD);
            if !fraction(threshold) {
                bad("threshold", "must be between 0 and 1".to_owned());
            }
            CheckKind::Injection { threshold }
        }
        "system_prompt_leak" => {
            let min_overlap = raw.min_overlap.unwrap_or(DEFAULT_MIN_OVERLAP);
            if !fraction(min_overlap) {
                bad("min_overlap", "must be between 0 and 1".to_owned());
            }
            CheckKind::SystemPromptLeak { min_overlap }
        }
        "refusal" => CheckKind::Refusal,
        "denied_terms" => {
            let (terms, patterns) = (
                raw.terms.clone().unwrap_or_default(),
                raw.patterns.clone().unwrap_or_default(),
            );
            if terms.is_empty() && patterns.is_empty() {
                bad(
                    "terms",
                    "denied_terms needs `terms` or `patterns`".to_owned(),
                );
            }
            if let Some(p) = patterns.iter().find(|p| regex::Regex::new(p).is_err()) {
                bad("patterns", format!("`{p}` is not a valid regex"));
            }
            CheckKind::DeniedTerms {
                terms,
                patterns,
                max_distance: raw.max_distance.unwrap_or(DEFAULT_MAX_DISTANCE),
            }
        }
        "max_length" => match raw.max_chars {
            Some(max_chars) if max_chars > 0 => CheckKind::MaxLength { max_chars },
            _ => {
                bad(
                    "max_chars",
                    "max_length needs `max_chars`, at least 1".to_owned(),
                );
                return None;
            }
        },
        "regex" => {
            let pattern = raw.pattern.clone().unwrap_or_default();
            if regex::Regex::new(&pattern).is_err() || pattern.is_empty() {
                bad("pattern", format!("`{pattern}` is not a valid regex"));
            }
            CheckKind::Regex {
                name: raw.name.clone().unwrap_or_else(|| "regex".to_owned()),
                pattern,
            }
        }
        "webhook" => {
            let url = raw.url.clone().unwrap_or_default();
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                bad(
                    "url",
                    "webhook needs an http:// or https:// `url`".to_owned(),
                );
            }
            CheckKind::Webhook {
                url,
                timeout: raw.timeout.unwrap_or(DEFAULT_WEBHOOK_TIMEOUT),
                fail_open: raw.fail_open.unwrap_or(false),
            }
        }
        "forbidden_json" => {
            let rules = raw.rules.clone().unwrap_or_default();
            if rules.is_empty() {
                bad("rules", "forbidden_json needs `rules`".to_owned());
            }
            CheckKind::ForbiddenJson { rules }
        }
        other => {
            bad(
                "check",
                format!(
                    "`{other}` is not a check: pii, secrets, injection, system_prompt_leak, refusal, \
                     denied_terms, max_length, regex, webhook, forbidden_json"
                ),
            );
            return None;
        }
    };
    let action = match raw.action.as_str() {
        "block" => GuardAction::Block,
        "flag" => GuardAction::Flag,
        "redact" => GuardAction::Redact {
            restore: raw.restore.unwrap_or(false),
        },
        "reask" => GuardAction::Reask,
        "fallback" => GuardAction::Fallback,
        "route" => match raw.model.clone() {
            Some(model) if models.contains_key(&model) => GuardAction::Route { model },
            other => {
                bad(
                    "model",
                    format!("route needs `model`, a configured model alias (got {other:?})"),
                );
                return None;
            }
        },
        other => {
            bad(
                "action",
                format!("`{other}` is not an action: block, redact, flag, reask, fallback, route"),
            );
            return None;
        }
    };
    let spans = matches!(
        kind,
        CheckKind::Pii { .. }
            | CheckKind::Secrets
            | CheckKind::DeniedTerms { .. }
            | CheckKind::Regex { .. }
    );
    let problem = match (&action, side) {
        (GuardAction::Redact { .. }, _) if !spans => {
            Some("redact needs a check that finds spans (pii, secrets, denied_terms, regex)")
        }
        (GuardAction::Redact { restore: true }, Side::Output) => {
            Some("restore applies to input redaction only")
        }
        (GuardAction::Reask | GuardAction::Fallback, Side::Input) => {
            Some("reask and fallback act on output only")
        }
        (GuardAction::Route { .. }, Side::Output) => Some("route acts on input only"),
        _ => None,
    };
    if matches!(kind, CheckKind::Webhook { .. })
        && matches!(action, GuardAction::Reask | GuardAction::Fallback)
    {
        bad(
            "action",
            "a webhook check can block or flag: reask and fallback need a check that runs inside the validation loop".to_owned(),
        );
        return None;
    }
    if let Some(field) = unused(&raw) {
        bad(
            field,
            format!(
                "`{field}` does not apply to check `{}` with action `{}`",
                raw.check, raw.action
            ),
        );
        return None;
    }
    let output_only = matches!(
        kind,
        CheckKind::SystemPromptLeak { .. } | CheckKind::Refusal | CheckKind::ForbiddenJson { .. }
    );
    if let Some(p) = problem {
        bad("action", p.to_owned());
        return None;
    }
    if output_only && side == Side::Input {
        bad("check", format!("{} checks output only", kind.name()));
        return None;
    }
    Some(GuardCheck {
        check: kind,
        action,
    })
}
