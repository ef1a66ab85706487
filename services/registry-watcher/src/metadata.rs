//! The summary each `ImagePushed` carries: the pushed image's record, read from the integrated registry once
//! per digest (the notification's `references` stand for the manifest when the registry sends them), within a
//! time budget so that a slow registry delays a notification's answer by at most that much. A read that
//! outlasts the budget goes on in the background and still records the image.

use std::{sync::Arc, time::Duration};

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
    inspector: Arc<Inspector>,
    timeout: Duration,
}

impl Metadata {
    /// Reads `registry` into `catalog`, waiting at most `timeout` per push.
    pub fn new(registry: IntegratedRegistry, catalog: ImageCatalog, timeout: Duration) -> Self {
        Metadata {
            inspector: Arc::new(Inspector::new(registry.client().clone(), catalog)),
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
        let inspector = self.inspector.clone();
        let (digest, media_type) = (push.digest.clone(), push.media_type.clone());
        let size = u64::try_from(push.size).unwrap_or(0);
        // spawned: a read that outlasts the budget is not lost with the answer
        let read = tokio::spawn(async move {
            let announced = Announced {
                media_type: &media_type,
                size,
                references: &references,
            };
            inspector.inspect(&repo, &digest, Some(announced)).await
        });
        match tokio::time::timeout(self.timeout, read).await {
            Ok(Ok(Ok(record))) => Some(record.summary().into()),
            Ok(Ok(Err(e))) => {
                tracing::warn!(digest = %push.digest, error = %e, "ImagePushed goes without the image's metadata");
                None
            }
            Ok(Err(panicked)) => {
                tracing::error!(digest = %push.digest, error = %panicked, "reading the image's metadata failed");
                None
            }
            Err(_) => {
                tracing::warn!(digest = %push.digest, timeout = ?self.timeout, "reading the image's metadata takes too long; ImagePushed goes without it, the read goes on");
                None
            }
        }
    }
}
