//! The registry client's settings from the imagestreams configuration.

use anyhow::Context as _;
use imagestreams_common::config::Config;

use crate::{Limits, Mirror, RegistryRule, RegistryRules};

/// The registry limits of the configuration.
pub fn limits(config: &Config) -> Limits {
    let c = &config.tag_syncer;
    Limits {
        max_concurrency: c.max_concurrency,
        requests_per_second: c.requests_per_second,
        connect_timeout_ms: c.connect_timeout_ms,
        request_timeout_ms: c.request_timeout_ms,
        max_retries: c.max_retries,
        backoff_initial_ms: c.backoff_initial_ms,
        max_retry_after_secs: c.max_retry_after_secs,
        max_tags_per_import: c.max_tags_per_import,
        ..Limits::default()
    }
}

/// The `[[registry]]` rules of the configuration, validated.
pub fn rules(config: &Config) -> anyhow::Result<RegistryRules> {
    let rules = config
        .registries
        .iter()
        .map(|r| RegistryRule {
            prefix: r.prefix.clone(),
            location: r.location.clone(),
            insecure: r.insecure,
            blocked: r.blocked,
            mirrors: r
                .mirrors
                .iter()
                .map(|m| Mirror {
                    location: m.location.clone(),
                    insecure: m.insecure,
                })
                .collect(),
        })
        .collect();
    RegistryRules::new(rules).context("invalid [[registry]] rules")
}
