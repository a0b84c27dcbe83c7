//! The gateway's shared, read-only state: the validated config and the
//! providers built from it once, at load.

use std::collections::HashMap;
use std::sync::Arc;

use keel_config::Config;
use keel_core::{Error, Provider};

/// Everything a request needs, cheap to clone (one `Arc`).
#[derive(Clone)]
pub struct Gateway {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub config: Config,
    /// Built providers, by name. Unavailable ones (missing key) are absent.
    pub providers: HashMap<String, Arc<dyn Provider>>,
}

impl Gateway {
    /// Builds every available provider's client. Fails only on a provider
    /// that cannot be built at all (a bug in the config's validation).
    pub fn new(config: Config) -> Result<Self, Error> {
        let mut providers = HashMap::new();
        for (name, p) in &config.providers {
            if p.availability.is_ok() {
                providers.insert(name.clone(), keel_providers::build(p)?);
            }
        }
        Ok(Gateway {
            inner: Arc::new(Inner { config, providers }),
        })
    }

    pub(crate) fn config(&self) -> &Config {
        &self.inner.config
    }
}
