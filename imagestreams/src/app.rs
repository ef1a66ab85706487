//! The server side of the binary: `up` (every service in one process) and
//! `serve <service>` (one), sharing one NATS connection and one HTTP port.

use std::{net::SocketAddr, path::Path, sync::Arc};

use anyhow::Context as _;
use axum::Router;
use imagestreams_common::{
    config::Config,
    metrics::Metrics,
    nats,
    runtime::{self, Deps, Health, Service},
    telemetry,
    tls::ServerTls,
};
use tokio::net::TcpListener;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use crate::{cli::ServiceName, local_nats::LocalNats};

/// `imagestreams up`.
pub async fn up(config: Option<&Path>) -> anyhow::Result<()> {
    start(config, &ServiceName::ALL, Mode::Monolith).await
}

/// `imagestreams serve <service>`.
pub async fn serve(config: Option<&Path>, service: ServiceName) -> anyhow::Result<()> {
    start(config, &[service], Mode::Microservice).await
}

async fn start(config: Option<&Path>, services: &[ServiceName], mode: Mode) -> anyhow::Result<()> {
    let mut config = Config::load(config)?;
    telemetry::init(&config.telemetry)?;
    if mode == Mode::Monolith {
        crate::bootstrap::watcher_token(
            &mut config,
            Path::new(crate::bootstrap::DEFAULT_WATCHER_TOKEN_FILE),
        )?;
    }
    let config = Arc::new(config);
    let shutdown = runtime::shutdown_on_signals();
    let result = match App::build(config, services, mode).await {
        Ok(app) => app.run_until_stopped(shutdown).await,
        Err(e) => Err(e),
    };
    // the spans of the last moments, failures included, still go out
    telemetry::shutdown().await;
    result
}

/// How the process runs its services.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Every service in this process (`up`); may start a local nats-server.
    Monolith,
    /// One service in this process (`serve`).
    Microservice,
}

/// The process's HTTP port: bound, with its routes and TLS settings.
struct HttpPort {
    listener: TcpListener,
    router: Router,
    tls: Option<Arc<rustls::ServerConfig>>,
}

/// A process of built services, ready to run.
pub struct App {
    services: Vec<Box<dyn Service>>,
    metrics: Metrics,
    http: Option<HttpPort>,
    addrs: Vec<(&'static str, SocketAddr)>,
    health: Health,
    nats: async_nats::Client,
    local_nats: Option<LocalNats>,
}

impl App {
    /// Connects to NATS (starting a local server in monolith mode when none
    /// answers), declares the topology, and builds every service.
    pub async fn build(
        config: Arc<Config>,
        names: &[ServiceName],
        mode: Mode,
    ) -> anyhow::Result<App> {
        let local_nats = match mode {
            Mode::Monolith => LocalNats::ensure(&config.nats).await?,
            Mode::Microservice => None,
        };
        let client = nats::connect(&config.nats, "imagestreams").await?;
        let topology = nats::provision_retrying(&client, &config.nats).await?;
        if mode == Mode::Monolith {
            crate::bootstrap::first_admin(
                &config,
                &topology.js,
                Path::new(crate::client_config::DEFAULT_CLIENT_CONFIG_FILE),
            )
            .await?;
        }
        let health = Health::new(Some(client.clone()));
        let metrics = Metrics::new();
        let deps = Deps {
            nats: client.clone(),
            topology,
            health: health.clone(),
            metrics: metrics.clone(),
        };
        let mut services = Vec::with_capacity(names.len());
        for &name in names {
            services.push(build_service(name, config.clone(), deps.clone()).await?);
        }
        // the gateway's port carries the REST API, so it comes with the
        // gateway, and with its TLS settings
        let gateway_port = || (config.gateway.http_listen, config.gateway.tls.as_ref());
        let http_listen = match (mode, names) {
            (Mode::Monolith, _) => Some(gateway_port()),
            (Mode::Microservice, names) if names.contains(&ServiceName::Gateway) => {
                Some(gateway_port())
            }
            (Mode::Microservice, [ServiceName::StreamStore]) => {
                Some((config.stream_store.http_listen, None))
            }
            (Mode::Microservice, [ServiceName::TagSyncer]) => {
                Some((config.tag_syncer.http_listen, None))
            }
            (Mode::Microservice, [ServiceName::Trigger]) => {
                Some((config.trigger.http_listen, None))
            }
            // the watcher serves health and metrics on its own notification port
            (Mode::Microservice, _) => None,
        };
        let http = match http_listen {
            Some((addr, tls)) => {
                let router = services
                    .iter()
                    .fold(health.router().merge(metrics.router()), |router, s| {
                        router.merge(s.routes())
                    });
                let tls = tls
                    .map(ServerTls::load)
                    .transpose()
                    .context("cannot serve TLS on the HTTP port (gateway.tls)")?
                    .map(|tls| tls.http());
                Some(HttpPort {
                    listener: runtime::bind(addr).await?,
                    router,
                    tls,
                })
            }
            None => None,
        };
        let mut addrs: Vec<_> = services.iter().flat_map(|s| s.listen_addrs()).collect();
        if let Some(port) = &http {
            addrs.push(("http", port.listener.local_addr()?));
        }
        if mode == Mode::Monolith
            && let Some((_, kube)) = addrs.iter().find(|(role, _)| *role == "kube")
        {
            crate::kubeconfig::write(&config, *kube)?;
        }
        Ok(App {
            services,
            metrics,
            http,
            addrs,
            health,
            nats: client,
            local_nats,
        })
    }

    /// The process's metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The bound addresses by role: `http` (health, metrics, REST), and what
    /// the services report (`grpc`, `notifications`).
    pub fn addrs(&self) -> &[(&'static str, SocketAddr)] {
        &self.addrs
    }

    /// The address bound for `role`, if any.
    pub fn addr(&self, role: &str) -> Option<SocketAddr> {
        self.addrs.iter().find(|(r, _)| *r == role).map(|(_, a)| *a)
    }

    /// Runs every service until `shutdown` is cancelled or one of them fails,
    /// then stops the rest and drains NATS.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let tracker = TaskTracker::new();
        let (failed_tx, mut failed_rx) = tokio::sync::mpsc::unbounded_channel();
        if let Some(HttpPort {
            listener,
            router,
            tls,
        }) = self.http
        {
            let addr = listener.local_addr()?;
            tracing::info!(%addr, tls = tls.is_some(), "HTTP listening (/healthz, /readyz, /metrics)");
            let token = shutdown.child_token();
            let failed = failed_tx.clone();
            tracker.spawn(async move {
                if let Err(e) = runtime::serve_http(listener, router, tls, token).await {
                    let _ = failed.send(anyhow::Error::new(e).context("HTTP server"));
                }
            });
        }
        for service in self.services {
            let name = service.name();
            let token = shutdown.child_token();
            let failed = failed_tx.clone();
            tracker.spawn(async move {
                if let Err(e) = service.run(token).await {
                    let _ = failed.send(e.context(format!("{name} failed")));
                }
            });
        }
        tracker.close();
        drop(failed_tx);
        self.health.set_started();
        tracing::info!("imagestreams is up");
        let failure = tokio::select! {
            _ = shutdown.cancelled() => None,
            failure = failed_rx.recv() => failure,
        };
        shutdown.cancel();
        tracker.wait().await;
        self.nats.drain().await.context("draining NATS")?;
        if let Some(local) = self.local_nats {
            local.stop().await;
        }
        match failure {
            Some(e) => Err(e),
            None => {
                tracing::info!("stopped");
                Ok(())
            }
        }
    }
}

/// Builds one service. Boxed, so that `App::build`'s future stays small:
/// debug builds run the tests on 2 MiB stacks.
fn build_service(
    name: ServiceName,
    config: Arc<Config>,
    deps: Deps,
) -> futures::future::BoxFuture<'static, anyhow::Result<Box<dyn Service>>> {
    Box::pin(async move {
        Ok(match name {
            ServiceName::RegistryWatcher => Box::new(
                imagestreams_registry_watcher::RegistryWatcherService::build(config, deps).await?,
            ) as Box<dyn Service>,
            ServiceName::TagSyncer => {
                Box::new(imagestreams_tag_syncer::TagSyncerService::build(config, deps).await?)
            }
            ServiceName::StreamStore => {
                Box::new(imagestreams_stream_store::StreamStoreService::build(config, deps).await?)
            }
            ServiceName::Trigger => {
                Box::new(imagestreams_trigger::TriggerService::build(config, deps).await?)
            }
            ServiceName::Gateway => {
                Box::new(imagestreams_gateway::GatewayService::build(config, deps).await?)
            }
        })
    })
}
