//! Where request records go once emitted: the Prometheus registry, the
//! request log's writer (SQLite or Postgres, off the request path), the
//! OTLP trace exporter, and the scrubber that keeps secrets out of all of
//! them. Built with the gateway; flushed at graceful shutdown.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use keel_config::{Capture, Config, ProviderKind, StoreKind};
use keel_core::Error;
use keel_core::redact;
use keel_store::{Recorder, RequestRecord, Retention, Store, StoreConfig, Writer, WriterConfig};
use keel_telemetry::metrics::{Metrics, Names};
use keel_telemetry::trace::{TraceConfig, Tracer};
use secrecy::ExposeSecret;

pub(crate) struct Sinks {
    pub metrics: Metrics,
    pub recorder: Option<Recorder>,
    writer: Mutex<Option<Writer>>,
    pub tracer: Option<Tracer>,
    pub scrubber: Arc<Scrubber>,
}

/// Masks what keel keeps: credential patterns, and every secret value the
/// config holds (provider keys, secret headers, the store's URL).
pub(crate) struct Scrubber {
    secrets: Vec<String>,
    /// Each captured body is cut to this many bytes.
    capture_max_bytes: usize,
}

/// How often old records are pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(600);
/// Secrets shorter than this are not matched verbatim (they would mask
/// ordinary words); the patterns in `redact` still apply.
const MIN_SECRET_LEN: usize = 8;

impl Sinks {
    /// Metrics and traces, and the request log when [`Sinks::open_log`]
    /// opened one.
    pub fn new(config: &Config, log: Option<(Recorder, Writer)>) -> Result<Sinks, Error> {
        let names = Names {
            models: config.models.keys().cloned().collect(),
            providers: config.providers.keys().cloned().collect(),
            routes: config
                .functions
                .keys()
                .chain(config.workflows.keys())
                .cloned()
                .collect(),
        };
        let metrics = Metrics::new(names).map_err(|e| Error::internal(e.to_string()))?;
        let tracer = match &config.telemetry.otlp {
            None => None,
            Some(o) => Some(
                Tracer::new(&TraceConfig {
                    endpoint: o.endpoint.clone(),
                    service_name: o.service_name.clone(),
                    headers: o
                        .headers
                        .iter()
                        .map(|(k, v)| (k.clone(), v.expose_secret().to_owned()))
                        .collect(),
                    timeout: o.timeout,
                })
                .map_err(|e| Error::internal(e.to_string()))?,
            ),
        };
        let (recorder, writer) = match log {
            Some((r, w)) => (Some(r), Some(w)),
            None => (None, None),
        };
        Ok(Sinks {
            metrics,
            recorder,
            writer: Mutex::new(writer),
            tracer,
            scrubber: Arc::new(Scrubber::new(config)),
        })
    }

    /// Opens the configured store (migrating it) and starts its writer.
    pub async fn open_log(config: &Config) -> Result<Option<(Recorder, Writer)>, Error> {
        let log = &config.log;
        let store = match &log.store {
            StoreKind::Off => return Ok(None),
            StoreKind::Sqlite(path) => StoreConfig::Sqlite { path: path.clone() },
            StoreKind::Postgres(url) => StoreConfig::Postgres {
                url: url.expose_secret().to_owned(),
            },
        };
        let store = Store::open(&store).await.map_err(|e| {
            Error::internal(format!(
                "cannot open the request log: {e} (point [log] elsewhere, or \
                     `keel serve --db PATH|postgres://…|off`)"
            ))
        })?;
        Ok(Some(keel_store::spawn(
            store,
            WriterConfig {
                queue: log.queue,
                batch: log.batch,
                flush_every: log.flush_every,
                retention: Retention {
                    max_age: log.max_age,
                    max_records: log.max_records,
                },
                prune_every: PRUNE_EVERY,
                // Masking and hashing bodies costs up to a millisecond on
                // large ones: the writer does it, not the request.
                prepare: Some({
                    let scrubber = Arc::new(Scrubber::new(config));
                    Arc::new(move |r: &mut RequestRecord| scrubber.capture(r))
                }),
            },
        )))
    }

    pub fn scrub(&self, text: &str) -> String {
        self.scrubber.scrub(text)
    }

    /// Flushes the request log and the trace exporter, within `grace`.
    pub async fn shutdown(&self, grace: Duration) {
        let writer = self.writer.lock().ok().and_then(|mut w| w.take());
        if let Some(writer) = writer
            && !writer.shutdown(grace).await
        {
            tracing::warn!("shutdown: some request records could not be written in time");
        }
        if let Some(tracer) = &self.tracer {
            let tracer = tracer.clone();
            // The exporter's flush blocks on the network.
            let _ = tokio::task::spawn_blocking(move || tracer.shutdown()).await;
        }
    }
}

impl Scrubber {
    fn new(config: &Config) -> Scrubber {
        let mut secrets = Vec::new();
        for p in config.providers.values() {
            if let ProviderKind::OpenAi(h) | ProviderKind::Anthropic(h) = &p.kind {
                secrets.extend(h.api_key.iter().map(|k| k.expose_secret().to_owned()));
                secrets.extend(h.headers.iter().map(|(_, v)| v.expose_secret().to_owned()));
            }
        }
        if let StoreKind::Postgres(url) = &config.log.store {
            secrets.push(url.expose_secret().to_owned());
        }
        secrets.extend(
            config
                .auth
                .admin_token
                .iter()
                .map(|t| t.expose_secret().to_owned()),
        );
        secrets.extend(
            config
                .redis
                .iter()
                .map(|r| r.url.expose_secret().to_owned()),
        );
        // A webhook URL (Slack's, say) is a credential in itself.
        secrets.extend(config.budgets.webhook.iter().cloned());
        secrets.retain(|s| s.len() >= MIN_SECRET_LEN);
        Scrubber {
            secrets,
            capture_max_bytes: config.log.capture_max_bytes,
        }
    }

    /// `text` with credentials and the config's secrets masked.
    pub fn scrub(&self, text: &str) -> String {
        let mut out = redact::secrets(text).into_owned();
        for s in &self.secrets {
            if out.contains(s.as_str()) {
                out = out.replace(s.as_str(), "[REDACTED]");
            }
        }
        out
    }

    /// The record's bodies as its capture policy keeps them: masked, then
    /// cut to the capture size (a hashed body arrives as its digest).
    fn capture(&self, rec: &mut RequestRecord) {
        let policy = rec.capture;
        for body in [&mut rec.input, &mut rec.output] {
            *body = body.take().and_then(|text| self.captured(policy, &text));
        }
    }

    fn captured(&self, policy: Capture, text: &str) -> Option<String> {
        let limit = self.capture_max_bytes;
        Some(match policy {
            Capture::Off => return None,
            Capture::Hashed => text.to_owned(),
            // Even a full capture never keeps a credential.
            Capture::Full => cut(&self.scrub(text), limit).to_owned(),
            Capture::Redacted => cut(&self.scrub(&redact::personal(text)), limit).to_owned(),
        })
    }
}

/// At most `max` bytes of `s`, cut on a character boundary.
pub(crate) fn cut(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}
