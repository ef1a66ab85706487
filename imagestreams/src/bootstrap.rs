//! `up`'s first start with auth on: when no identity exists yet, make the
//! cluster-admin `admin`, keep only its token's hash, and hand the token to
//! the CLI through the client configuration file, so that a newcomer's
//! `imagestreams up` then `imagestreams get is` just works.

use std::path::Path;

use anyhow::Context as _;
use async_nats::jetstream;
use futures::future::BoxFuture;
use imagestreams_common::{
    auth::store::{BOOTSTRAP_ADMIN, IdentityStore},
    config::{Config, Secret},
};

use crate::client_config::{ClientConfig, server_url};

/// Makes the first cluster-admin when none exists and writes its token to
/// `client_config` (mode 0600). Logs where the file is, never the token.
///
/// Boxed, so that `App::build`'s future stays small (debug builds run the
/// tests on 2 MiB stacks).
pub fn first_admin<'a>(
    config: &'a Config,
    js: &'a jetstream::Context,
    client_config: &'a Path,
) -> BoxFuture<'a, anyhow::Result<()>> {
    Box::pin(make_first_admin(config, js, client_config))
}

async fn make_first_admin(
    config: &Config,
    js: &jetstream::Context,
    client_config: &Path,
) -> anyhow::Result<()> {
    let store = IdentityStore::open(js, config.nats.replicas, &config.auth).await?;
    let Some(token) = store
        .bootstrap_admin()
        .await
        .context("making the first cluster-admin")?
    else {
        return Ok(());
    };
    let file = ClientConfig {
        server: server_url(config.gateway.grpc_listen),
        token: Secret::new(token.expose()),
    };
    file.write(client_config)
        .with_context(|| format!("writing {}", client_config.display()))?;
    tracing::info!(
        identity = BOOTSTRAP_ADMIN,
        path = %client_config.display(),
        "first start: made a cluster-admin token; the CLI reads it from this file (mode 0600)"
    );
    Ok(())
}
