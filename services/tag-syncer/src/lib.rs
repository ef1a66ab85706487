//! The tag-syncer service: imports tags from external registries: on creation, on `import-image` and on a schedule.
//!
//! # Design
//!
//! The tag-syncer does the registry work; the stream-store applies the
//! outcome (its `import` operation: one write, or none when nothing changed).
//!
//! - **Registry protocol** (the `imagestreams-registry-client` crate): tag
//!   lists, digests, auth, limits, the `[[registry]]` rules and docker
//!   `config.json` credentials.
//! - **Plans** ([`plan`]): what a new or changed stream, an `import-image`
//!   request, or a schedule asks to import, as pure functions.
//! - **Importer** ([`importer`]): carries a plan out within the import
//!   timeout, with the namespace's secrets before the global credentials,
//!   and sends the outcome to the stream-store.
//! - **On creation and spec change** ([`watch`]): a durable consumer of the
//!   streams bucket, shared by the replicas, plus a periodic resync.
//! - **`import-image` and secrets** ([`api`]): NATS request-reply behind
//!   the gateway's `ImportImage` and `Secrets`; secrets are encrypted at rest
//!   ([`secrets`]).
//! - **Schedule** ([`schedule`]): a reconciler re-importing
//!   `importPolicy.scheduled` tags every interval, one replica per stream
//!   per interval, within a global imports-per-minute limit.
//! - **Webhook receivers** ([`receivers`], [`hooks`], [`deliveries`]):
//!   hosted registries' push notifications on `tag_syncer.hooks_listen`,
//!   verified, made durable as `ImportRequested`, and turned into imports
//!   of exactly the tags that follow what they name ([`hints`]).
#![forbid(unsafe_code)]

pub mod api;
pub mod deliveries;
pub mod google_keys;
pub mod hints;
pub mod hooks;
pub mod importer;
pub mod kv_scan;
pub mod mirror;
pub mod plan;
pub mod receivers;
pub mod schedule;
pub mod sealing;
pub mod secrets;
pub mod watch;

use std::{sync::Arc, time::Duration};

use anyhow::Context as _;
use async_nats::jetstream::consumer::PullConsumer;
use futures::future::BoxFuture;
use imagestreams_common::{
    config::Config,
    metrics,
    runtime::{Deps, Service},
    subjects,
};
use imagestreams_images_api::ImageCatalog;
use imagestreams_stream_store_api::{StoreClient, StreamReader};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use imagestreams_registry_client::{Keyring, RegistryClient, image::Inspector, limits, rules};

/// The service's name, as `serve <name>` spells it.
pub const NAME: &str = "tag-syncer";

/// The role of the webhook receivers' listener in [`Service::listen_addrs`].
pub const HOOKS_ROLE: &str = "hooks";

/// The tag-syncer service, built and ready to run.
pub struct TagSyncerService {
    deps: Deps,
    handlers: Arc<api::Handlers>,
    subscriptions: api::Subscriptions,
    watcher: Arc<watch::Watcher>,
    consumer: PullConsumer,
    schedule: Arc<schedule::Context>,
    schedule_items: mpsc::UnboundedReceiver<String>,
    resync_every: Duration,
    hooks: (tokio::net::TcpListener, std::net::SocketAddr, axum::Router),
    deliveries: (Arc<deliveries::Deliveries>, PullConsumer),
    shutdown: CancellationToken,
}

impl TagSyncerService {
    /// Builds the service: the registry client, the credentials, the API
    /// subscriptions and the durable consumer, so requests wait for
    /// [`Service::run`].
    pub async fn build(config: Arc<Config>, deps: Deps) -> anyhow::Result<Self> {
        let c = &config.tag_syncer;
        let client = RegistryClient::new(limits(&config), rules(&config)?)
            .context("building the registry client")?;
        let global = match &c.docker_config {
            Some(path) => Keyring::from_docker_config_file(path)?,
            None => Keyring::new(),
        };
        let secrets = Arc::new(
            secrets::SecretStore::new(deps.topology.registry_secrets.clone(), &config.secrets)
                .context("loading the registry secrets key")?,
        );
        let timeout = Duration::from_millis(c.import_timeout_ms.max(1));
        let inspector = Inspector::new(client, ImageCatalog::new(deps.topology.images.clone()));
        let importer = Arc::new(importer::Importer::new(
            inspector,
            global,
            secrets.clone(),
            StoreClient::new(deps.nats.clone()),
            timeout,
        ));
        importer.register_metrics(&deps.metrics.service(NAME));
        let reader = StreamReader::new(deps.topology.streams.clone(), deps.nats.clone());
        let hooks_listener = imagestreams_common::runtime::bind(c.hooks_listen)
            .await
            .context("webhook receivers' endpoint")?;
        let hooks_addr = hooks_listener.local_addr()?;
        let base_url = match c.hooks_url.trim() {
            "" => format!("http://{hooks_addr}"),
            url => url.to_owned(),
        };
        let receivers = Arc::new(receivers::ReceiverStore::new(
            deps.topology.receivers.clone(),
            secrets.clone(),
            base_url,
        ));
        let gar_keys =
            google_keys::GoogleKeys::configured(c.gar_jwks_file.as_deref(), &c.gar_jwks_url)?;
        let hook_metrics = prometheus_client::metrics::family::Family::default();
        deps.metrics.service(NAME).register(
            "receiver_deliveries",
            "Webhook deliveries, by receiver and outcome (accepted, duplicate, ping, ignored, refused, malformed, rate-limited, paused, error)",
            hook_metrics.clone(),
        );
        let hooks_router = Arc::new(hooks::Hooks {
            store: receivers.clone(),
            js: deps.topology.js.clone(),
            max_body: c.hooks_max_body_bytes,
            gar_keys,
            rate: hooks::RateLimit::new(c.hooks_rate_per_receiver, c.hooks_burst_per_receiver),
            metrics: hook_metrics,
        })
        .router();
        let deliveries_consumer = deliveries::declare(&deps.topology.js)
            .await
            .context("declaring the receivers' consumer")?;
        let deliveries = Arc::new(deliveries::Deliveries::new(
            reader.clone(),
            importer.clone(),
        ));
        deliveries.register_metrics(&deps.metrics.service(NAME));
        let subscriptions = api::subscribe(&deps.nats).await?;
        let handlers = Arc::new(api::Handlers {
            reader: reader.clone(),
            importer: importer.clone(),
            secrets,
            receivers,
            mirrorer: {
                let mirrorer = mirror::Mirrorer::new(importer.clone(), reader.clone());
                mirrorer.register_metrics(&deps.metrics.service(NAME));
                Arc::new(mirrorer)
            },
        });
        let (items, schedule_items) = mpsc::unbounded_channel();
        let watcher = Arc::new(watch::Watcher::new(
            reader.clone(),
            importer.clone(),
            items,
            c.import_concurrency,
        ));
        let consumer = watch::declare(
            &deps.topology.streams,
            timeout * 2 + Duration::from_secs(30),
        )
        .await?;
        let shutdown = CancellationToken::new();
        let schedule = Arc::new(schedule::Context {
            reader,
            kv: deps.topology.import_schedule.clone(),
            importer,
            rate: schedule::RateLimiter::new(
                deps.topology.import_rate.clone(),
                c.max_imports_per_minute,
            ),
            interval: c.schedule_interval(),
            shutdown: shutdown.clone(),
        });
        Ok(Self {
            deps,
            handlers,
            subscriptions,
            watcher,
            consumer,
            schedule,
            schedule_items,
            resync_every: Duration::from_secs(c.resync_interval_secs.max(1)),
            hooks: (hooks_listener, hooks_addr, hooks_router),
            deliveries: (deliveries, deliveries_consumer),
            shutdown,
        })
    }
}

impl Service for TagSyncerService {
    fn name(&self) -> &'static str {
        NAME
    }

    fn listen_addrs(&self) -> Vec<(&'static str, std::net::SocketAddr)> {
        vec![(HOOKS_ROLE, self.hooks.1)]
    }

    fn run(self: Box<Self>, shutdown: CancellationToken) -> BoxFuture<'static, anyhow::Result<()>> {
        Box::pin(async move {
            tracing::info!(service = NAME, "running");
            let Self {
                deps,
                handlers,
                subscriptions,
                watcher,
                consumer,
                schedule,
                schedule_items,
                resync_every,
                hooks: (hooks_listener, hooks_addr, hooks_router),
                deliveries: (deliveries, deliveries_consumer),
                shutdown: inner,
            } = *self;
            tracing::info!(listen = %hooks_addr, "webhook receivers listening");
            metrics::watch_consumer_lag(
                &deps.metrics.service(NAME),
                deps.topology.js.clone(),
                &deps.topology.streams.stream_name,
                subjects::DURABLE_TAG_SYNCER,
                metrics::DEFAULT_LAG_INTERVAL,
                inner.clone(),
            );
            let stop = inner.clone();
            let relay = shutdown.clone();
            tokio::spawn(async move {
                relay.cancelled().await;
                stop.cancel();
            });
            let (a, b, c, d, e) = tokio::join!(
                guarded(
                    api::serve(handlers, deps.nats.clone(), subscriptions, inner.clone()),
                    inner.clone()
                ),
                guarded(
                    watch::run(watcher, consumer, resync_every, inner.clone()),
                    inner.clone()
                ),
                guarded(
                    schedule::run(schedule, schedule_items, inner.clone()),
                    inner.clone()
                ),
                guarded(
                    async {
                        imagestreams_common::runtime::serve_http(
                            hooks_listener,
                            hooks_router,
                            None,
                            inner.clone(),
                        )
                        .await
                        .map_err(anyhow::Error::from)
                    },
                    inner.clone()
                ),
                guarded(
                    deliveries::run(deliveries, deliveries_consumer, inner.clone()),
                    inner.clone()
                ),
            );
            a.context("request API")?;
            b.context("import on creation")?;
            c.context("schedule")?;
            d.context("webhook receivers")?;
            e.context("imports asked by receivers")?;
            Ok(())
        })
    }
}

/// Runs `task`; when it fails, cancels `token` so the other loops stop too.
async fn guarded<F>(task: F, token: CancellationToken) -> anyhow::Result<()>
where
    F: std::future::Future<Output = anyhow::Result<()>>,
{
    let result = task.await;
    if let Err(error) = &result {
        tracing::error!(error = format!("{error:#}"), "stopping the tag-syncer");
        token.cancel();
    }
    result
}
