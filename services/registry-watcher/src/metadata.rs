//! The summary each `ImagePushed` carries: the pushed image's record, read from the integrated registry once
//! per digest (the notification's `references` stand for the manifest when the registry sends them), within a
//! time budget so that a slow registry delays a notification's answer by at most that much.

use std::time::Duration;

use imagestreams_common::image::ImageCatalog;
use imagestreams_common::metrics::ServiceMetrics;
use imagestreams_proto::v1 as proto;
use imagestreams_registry_client::IntegratedRegistry;
use imagestreams_registry_client::image::{Announced, Descriptor, Inspector};

use crate::notification::ImagePush;

/// Reads pushed images' metadata.
#[derive(Debug)]
pub struct Metadata {
    registry: IntegratedRegistry,
    inspector: Inspector,
    timeout: Duration,
}

impl Metadata {
    /// Reads `registry` into `catalog`, waiting at most `timeout` per push.
    pub fn new(registry: IntegratedRegistry, catalog: ImageCatalog, timeout: Duration) -> Self {
        Metadata {
            inspector: Inspector::new(registry.client().clone(), catalog),
            registry,
            timeout,
        }
    }

    /// Registers the registry client's and the inspector's counters.
    pub fn register_metrics(&self, metrics: &ServiceMetrics) {
        self.registry.client().register_metrics(metrics);
        self.inspector.register_metrics(metrics);
    }

    /// The summary of `push`'s image; `None` when it cannot be had within the budget (logged).
    pub async fn summary(&self, push: &ImagePush) -> Option<proto::ImageSummary> {
        let repo = match self.registry.repository(&push.repository) {
            Ok(repo) => repo,
            Err(e) => {
                tracing::warn!(repository = %push.repository, error = %e, "cannot read from the integrated registry");
                return None;
            }
        };
        let references: Vec<Descriptor> = push
            .references
            .iter()
            .map(|d| Descriptor {
                media_type: d.media_type.clone(),
                digest: d.digest.clone(),
                size: u64::try_from(d.size).unwrap_or(0),
            })
            .collect();
        let announced = Announced {
            media_type: &push.media_type,
            size: u64::try_from(push.size).unwrap_or(0),
            references: &references,
        };
        let inspect = self.inspector.inspect(&repo, &push.digest, Some(announced));
        match tokio::time::timeout(self.timeout, inspect).await {
            Ok(Ok(record)) => Some(record.summary().into()),
            Ok(Err(e)) => {
                tracing::warn!(digest = %push.digest, error = %e, "ImagePushed goes without the image's metadata");
                None
            }
            Err(_) => {
                tracing::warn!(digest = %push.digest, timeout = ?self.timeout, "reading the image's metadata took too long; ImagePushed goes without it");
                None
            }
        }
    }
}
