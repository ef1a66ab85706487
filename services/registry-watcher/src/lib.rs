//! The registry-watcher service: receives the integrated registry's push
//! notifications (CNCF distribution envelopes) and publishes `ImagePushed`
//! and `ImageDeleted` on JetStream.
//!
//! # Endpoint
//!
//! `POST /notifications` on `registry_watcher.listen` (default
//! `127.0.0.1:8085`), beside `GET /metrics`, `/healthz` and `/readyz`.
//! Accepted media types: `application/vnd.docker.distribution.events.v1+json`
//! (distribution 2.x), `…events.v2+json` (3.x) and `application/json`.
//! Requests must carry `Authorization: Bearer <registry_watcher.token>`;
//! without a configured token the service refuses to start unless
//! `registry_watcher.insecure = true`. See [`http`] for every answer.
//!
//! # Events
//!
//! - A `push` of an image manifest (OCI manifest or index, Docker schema 2
//!   manifest or manifest list) **with a tag** becomes `ImagePushed` on
//!   `imagestreams.images.pushed.<ns>.<name>`, with `Nats-Msg-Id` = the
//!   registry's event id, `registry` = `integrated_registry.host`, the
//!   registry's timestamp, and the pusher (`actor.name`, empty when
//!   anonymous).
//! - The endpoint does not wait for the pushed image's metadata: the
//!   [metadata recorder](metadata) reads it afterwards from the integrated
//!   registry (`integrated_registry.url`, or the host: plain HTTP for a
//!   loopback host), once per digest, records it in the image catalog and
//!   publishes `ImageRecorded` on `imagestreams.images.recorded.<ns>.<name>`.
//!   `registry_watcher.read_metadata = false` turns it off.
//! - A `delete` becomes `ImageDeleted` on `imagestreams.images.deleted.<ns>.<name>`.
//! - Blob pushes, `pull` (sent for every manifest GET and HEAD), `mount` and
//!   pushes by digest (no tag) are ignored.
//!
//! The answer is 200 only once JetStream has acknowledged every kept event
//! of the envelope; otherwise 503, and the registry resends the envelope.
//! The repeats carry the same event ids, so JetStream drops the ones it
//! already stored (within its 10-minute duplicate window) and the
//! stream-store, which remembers applied ids, never applies one twice.
//!
//! # Repository → stream
//!
//! A repository of exactly two components `<namespace>/<name>` updates the
//! stream `<name>` in `<namespace>`; the namespace must be a DNS-1123 label
//! and the name a valid image stream name. Any other depth, as in OpenShift's
//! integrated registry (which refuses such pushes), names no stream:
//! `app` (no namespace: **not** mapped to `default`) and `ns/group/app` are
//! skipped with a warning and counted in
//! `imagestreams_registry_watcher_events_total{outcome="skipped"}`. So are
//! invalid names. A skipped event is still answered 200: refusing it would
//! make the registry resend it forever.
#![forbid(unsafe_code)]

pub mod http;
pub mod metadata;

// The envelope and its classification are pure, in `imagestreams-formats` (so
// they can be fuzzed without this crate's I/O stack); their old paths stay here.
pub use imagestreams_formats::{envelope, notification};

use std::{net::SocketAddr, sync::Arc};

use anyhow::Context as _;
use futures::future::BoxFuture;
use imagestreams_common::{
    config::Config,
    metrics::ConsumerLag,
    runtime::{self, Deps, Service},
};
use imagestreams_images_api::ImageCatalog;
use imagestreams_registry_client::IntegratedRegistry;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::http::{JetStreamSink, Limits, Receiver};
use crate::metadata::Recorder;

/// The service's name, as `serve <name>` spells it.
pub const NAME: &str = "registry-watcher";

/// The role of the notification listener in [`Service::listen_addrs`].
pub const LISTEN_ROLE: &str = "notifications";

/// Why the service cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// Neither a token nor insecure mode is configured.
    #[error(
        "registry_watcher.token is not set: set it (IMAGESTREAMS_REGISTRY_WATCHER__TOKEN) to the bearer token the \
         registry sends in its notifications endpoint's Authorization header, or set registry_watcher.insecure = true \
         to accept unauthenticated notifications"
    )]
    NoToken,
}

/// The registry-watcher service, built (its listener bound) and ready to run.
pub struct RegistryWatcherService {
    listener: TcpListener,
    addr: SocketAddr,
    router: axum::Router,
    recorder: Option<(Arc<Recorder>, async_nats::jetstream::consumer::PullConsumer)>,
    deps: Deps,
}

impl RegistryWatcherService {
    /// Builds the service: checks the token and binds `registry_watcher.listen`
    /// (port 0 picks a free port, see [`Self::local_addr`]).
    pub async fn build(config: Arc<Config>, deps: Deps) -> anyhow::Result<Self> {
        Self::build_with(config, deps, Limits::default()).await
    }

    /// [`build`](Self::build) with other request limits.
    pub async fn build_with(
        config: Arc<Config>,
        deps: Deps,
        limits: Limits,
    ) -> anyhow::Result<Self> {
        let settings = &config.registry_watcher;
        let token = settings
            .token
            .as_ref()
            .map(|t| t.expose())
            .filter(|t| !t.is_empty());
        match (token, settings.insecure) {
            (None, false) => return Err(BuildError::NoToken.into()),
            (None, true) => tracing::warn!(
                "INSECURE: registry_watcher.insecure is set and no token is configured; anyone who can reach \
                 {} can inject image pushes",
                settings.listen
            ),
            (Some(_), _) => {}
        }
        let listener = runtime::bind(settings.listen)
            .await
            .context("registry-watcher notification endpoint")?;
        let addr = listener.local_addr()?;
        let receiver = Receiver::new(
            JetStreamSink::new(deps.topology.js.clone()),
            token,
            config.integrated_registry.host.clone(),
            limits,
        )
        .with_metrics(&deps.metrics);
        let recorder = if settings.read_metadata {
            let mut recorder = Recorder::new(
                IntegratedRegistry::from_config(&config)?,
                ImageCatalog::new(deps.topology.images.clone()),
                deps.topology.js.clone(),
                settings.metadata_concurrency,
            );
            recorder.register_metrics(&deps.metrics.service(NAME));
            let consumer = recorder
                .declare()
                .await
                .map_err(|e| anyhow::anyhow!(e))
                .with_context(|| format!("declaring the {} consumer", metadata::CONSUMER_NAME))?;
            Some((Arc::new(recorder), consumer))
        } else {
            None
        };
        let router = receiver.router().merge(deps.health.router());
        Ok(Self {
            listener,
            addr,
            router,
            recorder,
            deps,
        })
    }

    /// The address the notification endpoint is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Service for RegistryWatcherService {
    fn name(&self) -> &'static str {
        NAME
    }

    fn listen_addrs(&self) -> Vec<(&'static str, SocketAddr)> {
        vec![(LISTEN_ROLE, self.addr)]
    }

    fn run(self: Box<Self>, shutdown: CancellationToken) -> BoxFuture<'static, anyhow::Result<()>> {
        Box::pin(async move {
            // the recorder stops with the service, and with its HTTP server should that fail
            let stop = shutdown.child_token();
            let recording = match self.recorder {
                Some((recorder, consumer)) => {
                    ConsumerLag::new(&self.deps.metrics.service(NAME)).watch(
                        self.deps.topology.js.clone(),
                        imagestreams_common::subjects::STREAM_IMAGES,
                        metadata::CONSUMER_NAME,
                        imagestreams_common::metrics::DEFAULT_LAG_INTERVAL,
                        shutdown.clone(),
                    );
                    let stop = stop.clone();
                    tokio::spawn(async move { recorder.run(consumer, stop).await })
                }
                None => tokio::spawn(async { anyhow::Ok(()) }),
            };
            tracing::info!(service = NAME, addr = %self.addr, "notifications listening on POST {}", http::NOTIFICATIONS_PATH);
            let served = runtime::serve_http(self.listener, self.router, None, shutdown.clone())
                .await
                .context("registry-watcher HTTP server");
            stop.cancel();
            let recorded = recording
                .await
                .context("the metadata recorder panicked")?
                .context("the metadata recorder");
            served.and(recorded)
        })
    }
}
