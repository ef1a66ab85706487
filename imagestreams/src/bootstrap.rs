//! `up`'s first start: when no identity exists yet (auth on), make the
//! cluster-admin `admin`, keep only its token's hash, and hand the token to
//! the CLI through the client configuration file; when no registry-watcher
//! token is configured, make one and keep it in a file for the registry's
//! notification endpoint. So a newcomer's `imagestreams up` then
//! `imagestreams get is` just works, and nothing listens unauthenticated.

use std::path::Path;

use anyhow::Context as _;
use async_nats::jetstream;
use futures::future::BoxFuture;
use imagestreams_common::{
    auth::store::{BOOTSTRAP_ADMIN, IdentityStore},
    config::{Config, Secret},
};

use crate::client_config::{ClientConfig, create_private, server_url};

/// Where `up` keeps the registry-watcher token it made.
pub const DEFAULT_WATCHER_TOKEN_FILE: &str = ".imagestreams/registry-watcher.token";

/// Gives the registry-watcher a token when none is configured and insecure
/// mode is off: the one in `path`, or a new random one written there (0600).
/// Logs where it is, never the token.
pub fn watcher_token(config: &mut Config, path: &Path) -> anyhow::Result<()> {
    let watcher = &mut config.registry_watcher;
    if watcher.token.is_some() || watcher.insecure {
        return Ok(());
    }
    let kept = std::fs::read_to_string(path)
        .ok()
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty());
    let token = match kept {
        Some(token) => token,
        None => {
            let token: String = (0..32)
                .map(|_| format!("{:02x}", rand::random::<u8>()))
                .collect();
            let mut file =
                create_private(path).with_context(|| format!("writing {}", path.display()))?;
            std::io::Write::write_all(&mut file, format!("{token}\n").as_bytes())?;
            tracing::info!(
                path = %path.display(),
                "first start: made the registry-watcher's token; configure the registry's \
                 notification endpoint to send `Authorization: Bearer <the file's content>`"
            );
            token
        }
    };
    watcher.token = Some(Secret::new(token));
    Ok(())
}

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
