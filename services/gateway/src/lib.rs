//! The gateway service: serves the public gRPC API, REST JSON and the registry token endpoint.
#![forbid(unsafe_code)]

use std::sync::Arc;

use futures::future::BoxFuture;
use imagestreams_common::{
    config::Config,
    runtime::{Deps, Service},
};
use tokio_util::sync::CancellationToken;

/// The service's name, as `serve <name>` spells it.
pub const NAME: &str = "gateway";

/// The gateway service, built and ready to run.
pub struct GatewayService {
    _config: Arc<Config>,
    _deps: Deps,
}

impl GatewayService {
    /// Builds the service; listeners are bound here, so port 0 works.
    pub async fn build(config: Arc<Config>, deps: Deps) -> anyhow::Result<Self> {
        Ok(Self {
            _config: config,
            _deps: deps,
        })
    }
}

impl Service for GatewayService {
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
    Box::new(GatewayService::build(config, deps).await?)
        .run(shutdown)
        .await
}
