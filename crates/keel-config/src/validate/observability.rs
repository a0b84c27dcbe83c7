//! `[log]` and `[telemetry]`: where request records are stored and where
//! traces are sent.

use std::path::Path;
use std::time::Duration;

use secrecy::SecretString;

use super::{Issue, http_header_name_ok};
use crate::raw::{RawLog, RawSecretOrValue, RawTelemetry};
use crate::{LogConfig, OtlpConfig, StoreKind, TelemetryConfig};

/// Where the embedded store lives when `log.path` is not set.
const DEFAULT_DB: &str = "keel.db";
const DEFAULT_OTLP_TIMEOUT: Duration = Duration::from_secs(5);

pub(super) fn log_config(
    raw: RawLog,
    base_dir: &Path,
    env: &dyn Fn(&str) -> Option<String>,
    issues: &mut Vec<Issue>,
) -> LogConfig {
    let store = match raw.store.as_str() {
        "off" => StoreKind::Off,
        "sqlite" => {
            let path = raw.path.unwrap_or_else(|| DEFAULT_DB.into());
            StoreKind::Sqlite(if path.is_relative() {
                base_dir.join(path)
            } else {
                path
            })
        }
        "postgres" => match raw.url {
            None => {
                issues.push(Issue::error(
                    "log.url",
                    "the postgres store needs `url = { env = \"VAR\" }`",
                ));
                StoreKind::Off
            }
            Some(url) => match env(&url.env).filter(|v| !v.is_empty()) {
                Some(v) => StoreKind::Postgres(SecretString::from(v)),
                None => {
                    issues.push(Issue::error(
                        "log.url",
                        format!("environment variable {} is not set", url.env),
                    ));
                    StoreKind::Off
                }
            },
        },
        other => {
            issues.push(Issue::error(
                "log.store",
                format!("`{other}` is not one of sqlite, postgres, off"),
            ));
            StoreKind::Off
        }
    };
    for (value, at) in [(raw.queue, "log.queue"), (raw.batch, "log.batch")] {
        if value == 0 {
            issues.push(Issue::error(at, "must be at least 1"));
        }
    }
    if raw.flush_every.is_zero() {
        issues.push(Issue::error("log.flush_every", "must be more than 0"));
    }
    LogConfig {
        store,
        queue: raw.queue,
        batch: raw.batch,
        flush_every: raw.flush_every,
        max_age: raw.max_age,
        max_records: raw.max_records,
        capture: raw.capture,
        capture_max_bytes: raw.capture_max_bytes,
    }
}

pub(super) fn telemetry_config(
    raw: RawTelemetry,
    env: &dyn Fn(&str) -> Option<String>,
    issues: &mut Vec<Issue>,
) -> TelemetryConfig {
    let Some(otlp) = raw.otlp else {
        return TelemetryConfig::default();
    };
    let at = "telemetry.otlp";
    if !(otlp.endpoint.starts_with("http://") || otlp.endpoint.starts_with("https://")) {
        issues.push(Issue::error(
            format!("{at}.endpoint"),
            format!("`{}` must start with http:// or https://", otlp.endpoint),
        ));
    }
    let mut headers = Vec::new();
    for (name, value) in otlp.headers {
        let hat = format!("{at}.headers.{name}");
        if !http_header_name_ok(&name) {
            issues.push(Issue::error(hat, "not a valid header name"));
            continue;
        }
        match value {
            RawSecretOrValue::Value(v) => headers.push((name, SecretString::from(v))),
            RawSecretOrValue::Secret(s) => match env(&s.env).filter(|v| !v.is_empty()) {
                Some(v) => headers.push((name, SecretString::from(v))),
                None => issues.push(Issue::error(
                    hat,
                    format!("environment variable {} is not set", s.env),
                )),
            },
        }
    }
    TelemetryConfig {
        otlp: Some(OtlpConfig {
            endpoint: otlp.endpoint,
            service_name: otlp.service_name.unwrap_or_else(|| "keel".to_owned()),
            headers,
            timeout: otlp.timeout.unwrap_or(DEFAULT_OTLP_TIMEOUT),
        }),
    }
}
