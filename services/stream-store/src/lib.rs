//! The stream-store service: owns ImageStreams in JetStream KV, the single writer that applies image events and emits `TagsChanged`.
#![forbid(unsafe_code)]

use std::sync::Arc;

use futures::future::BoxFuture;
use imagestreams_common::{
    config::Config,
    runtime::{Deps, Service},
};
use tokio_util::sync::CancellationToken;

/// The service's name, as `serve <name>` spells it.
pub const NAME: &str = "stream-store";

/// The stream-store service, built and ready to run.
pub struct StreamStoreService {
    _config: Arc<Config>,
    _deps: Deps,
}

impl StreamStoreService {
    /// Builds the service; listeners are bound here, so port 0 works.
    pub async fn build(config: Arc<Config>, deps: Deps) -> anyhow::Result<Self> {
        Ok(Self {
            _config: config,
            _deps: deps,
        })
    }
}

impl Service for StreamStoreService {
    fn name(&self) -> &'static str {
        NAME
    }

    fn run(self: Box<Self>, shutdown: CancellationToken) -> BoxFuture<'static, anyhow::Result<()>> {
        Box::pin(async move {
            tracing::info!(service = NAME, "running");
            shutdown.cancelled().await;
            Ok(())
        })
    }
}

/// Builds and runs the service until `shutdown` is cancelled.
pub async fn run(
    config: Arc<Config>,
    deps: Deps,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    Box::new(StreamStoreService::build(config, deps).await?)
        .run(shutdown)
        .await
}
