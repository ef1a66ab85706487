//! The gateway service: the public gRPC API (`imagestreams.v1.ImageStreams`
//! plus `grpc.health.v1` and server reflection) and the REST JSON API at
//! OpenShift's paths.
//!
//! Writes go to the stream-store (the single writer) over NATS
//! request-reply; reads (get, list, watch) come straight from the JetStream
//! KV bucket, so the gateway holds no state and scales out freely.
//!
//! # Limits
//!
//! - gRPC messages up to [`DEFAULT_MAX_MESSAGE_BYTES`] are decoded (tonic
//!   answers `OUT_OF_RANGE` beyond); a stream whose JSON exceeds
//!   `model::MAX_DOCUMENT_BYTES` is refused with `INVALID_ARGUMENT` (REST: 413).
//! - Unary calls end after [`DEFAULT_REQUEST_TIMEOUT`] with
//!   `DEADLINE_EXCEEDED` (REST: 504); a client's shorter `grpc-timeout` wins.
//!   Watch streams are not cut.
//! - Unknown fields: REST bodies are parsed strictly (an unknown field is a
//!   400 naming its path). gRPC messages follow protobuf's rules: fields this
//!   server does not know are skipped by the decoder, as every proto3 server
//!   does, so that newer clients keep working.
//! - Auth: every API call is authenticated by [`auth::AuthLayer`] and
//!   authorized by its handler (see `imagestreams_common::auth`).
//! - Registry tokens: with `auth.registry.enabled`, the HTTP port also
//!   serves the integrated registry's token service ([`registry_token`]).
//! - TLS: with `[gateway.tls]`, the gRPC port serves TLS only (a plaintext
//!   client fails its handshake); the process serves the HTTP port with the
//!   same identity (see `imagestreams_common::tls`).
#![forbid(unsafe_code)]

mod auth;
mod fanout;
mod grpc;
mod history;
mod images;
pub mod kube;
mod metrics;
mod query;
pub mod receivers;
pub mod registry_token;
mod rest;
pub mod secrets;
mod streams;
pub mod triggers;
mod watch;

use std::{net::SocketAddr, sync::Arc, time::Duration};

use axum::Router;
use futures::future::BoxFuture;
use imagestreams_common::{
    auth::store::{AuthStoreError, IdentityStore},
    config::Config,
    runtime::{Deps, Service},
    telemetry::propagation,
    tls::{ServerTls, TlsError, TlsListener},
};
use imagestreams_images_api::ImageCatalog;
use imagestreams_proto::v1::image_streams_server::ImageStreamsServer;
use imagestreams_stream_store_api::StreamReader;
use imagestreams_tag_syncer_api::{ImportClient, MirrorClient};
use imagestreams_trigger_api::TriggerReader;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Server, server::TcpIncoming};

pub use watch::lagged_total;

use crate::{grpc::Grpc, registry_token::TokenService, streams::Streams};

/// The service's name, as `serve <name>` spells it.
pub const NAME: &str = "gateway";

/// The largest gRPC message decoded or encoded.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;
/// How long a unary call (gRPC or REST) may take.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Events a resumed watch buffers for its client (a fresh watch reads the
/// shared feed, which keeps `fanout::DEFAULT_FEED_CAPACITY` for all).
pub const DEFAULT_WATCH_BUFFER: usize = 256;
/// How long a resumed watch waits for a client that does not read before
/// ending it with `RESOURCE_EXHAUSTED` (a fresh watch ends so when it falls
/// the feed's capacity behind).
pub const DEFAULT_WATCH_LAG_TIMEOUT: Duration = Duration::from_secs(30);
/// HTTP/2 keepalive pings on idle gRPC connections.
pub const DEFAULT_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);

/// The gRPC service names the health service reports as serving (`""` is
/// the server as a whole).
pub const HEALTH_SERVICES: [&str; 6] = [
    "",
    imagestreams_proto::v1::image_streams_server::SERVICE_NAME,
    imagestreams_proto::v1::triggers_server::SERVICE_NAME,
    imagestreams_proto::v1::secrets_server::SERVICE_NAME,
    imagestreams_proto::v1::receivers_server::SERVICE_NAME,
    imagestreams_proto::v1::auth_server::SERVICE_NAME,
];

/// Limits and timeouts of the gateway.
#[derive(Debug, Clone)]
pub struct GatewayOptions {
    /// The largest gRPC message decoded or encoded.
    pub max_message_bytes: usize,
    /// How long a unary call may take.
    pub request_timeout: Duration,
    /// Events a resumed watch buffers for its client (at least 2).
    pub watch_buffer: usize,
    /// How long a resumed watch's full buffer is tolerated.
    pub watch_lag_timeout: Duration,
}

impl Default for GatewayOptions {
    fn default() -> Self {
        GatewayOptions {
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            watch_buffer: DEFAULT_WATCH_BUFFER,
            watch_lag_timeout: DEFAULT_WATCH_LAG_TIMEOUT,
        }
    }
}

/// Why the gateway could not start or stopped serving.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// The gRPC address could not be bound.
    #[error("cannot listen for gRPC on {addr}")]
    Bind {
        /// The configured address.
        addr: SocketAddr,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The reflection service could not load the descriptors.
    #[error("cannot build the gRPC reflection service")]
    Reflection(#[source] tonic_reflection::server::Error),
    /// The identity store could not be opened.
    #[error("cannot start authentication")]
    Auth(#[source] AuthStoreError),
    /// The registry token service's key or certificates could not be loaded.
    #[error("cannot start the registry token service (auth.registry)")]
    RegistryToken(#[source] registry_token::issuer::IssuerError),
    /// The TLS certificate or key could not be loaded (`[gateway.tls]`).
    #[error("cannot serve TLS (gateway.tls)")]
    Tls(#[source] TlsError),
    /// tonic refused the TLS settings.
    #[error("cannot serve gRPC over TLS")]
    TlsConfig(#[source] tonic::transport::Error),
    /// The Kubernetes-compatible API's address could not be bound.
    #[error("cannot listen for the Kubernetes-compatible API on {addr} (gateway.kube.listen)")]
    KubeBind {
        /// The configured address.
        addr: SocketAddr,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// Its local CA could not be made or read.
    #[error("cannot make the Kubernetes-compatible API's certificates (gateway.kube.pki_dir)")]
    KubePki(#[source] kube::pki::PkiError),
    /// Its certificate or key could not be loaded (`[gateway.kube.tls]`).
    #[error("cannot serve the Kubernetes-compatible API over TLS (gateway.kube.tls)")]
    KubeTls(#[source] TlsError),
    /// The gRPC server failed.
    #[error("gRPC server failed")]
    Serve(#[source] tonic::transport::Error),
}

/// The gateway service, built (gRPC listener bound) and ready to run.
pub struct GatewayService {
    listener: TcpListener,
    addr: SocketAddr,
    streams: Arc<Streams>,
    triggers: triggers::TriggersApi,
    imports: ImportClient,
    mirrors: MirrorClient,
    secrets: secrets::SecretsApi,
    receivers: receivers::ReceiversApi,
    identities: Arc<IdentityStore>,
    registry_tokens: Option<Arc<TokenService>>,
    tls: Option<ServerTls>,
    grpc_metrics: metrics::GrpcMetrics,
    kube: Option<KubePort>,
}

/// The Kubernetes-compatible API's HTTPS port, bound.
struct KubePort {
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    request_header: Option<imagestreams_common::config::RequestHeaderConfig>,
}

/// Binds the Kubernetes-compatible API's port with its TLS identity: the
/// configured one, or the local PKI's.
async fn kube_port(config: &Config) -> Result<Option<KubePort>, GatewayError> {
    let kube = &config.gateway.kube;
    if !kube.enabled {
        return Ok(None);
    }
    let listener =
        TcpListener::bind(kube.listen)
            .await
            .map_err(|source| GatewayError::KubeBind {
                addr: kube.listen,
                source,
            })?;
    let identity = match &kube.tls {
        Some(tls) => tls.clone(),
        None => {
            kube::pki::ensure(&kube.pki_dir, kube.listen)
                .map_err(GatewayError::KubePki)?
                .tls
        }
    };
    let tls = ServerTls::load(&identity).map_err(GatewayError::KubeTls)?;
    let tls = match &kube.request_header {
        Some(request_header) => tls
            .http_with_client_ca(&request_header.client_ca_file)
            .map_err(GatewayError::KubeTls)?,
        None => tls.http(),
    };
    Ok(Some(KubePort {
        listener,
        tls,
        request_header: kube.request_header.clone(),
    }))
}

/// The registry-watcher's token, when one is configured (see [`IdentityStore::with_registry_watcher`]).
fn registry_watcher_token(config: &Config) -> Option<imagestreams_common::auth::Token> {
    config
        .registry_watcher
        .token
        .as_ref()
        .map(|t| t.expose())
        .filter(|t| !t.is_empty())
        .map(imagestreams_common::auth::Token::new)
}

impl GatewayService {
    /// Builds the service with the default options; the gRPC listener is
    /// bound here, so port 0 works.
    pub async fn build(config: Arc<Config>, deps: Deps) -> anyhow::Result<Self> {
        Ok(Self::build_with(config, deps, GatewayOptions::default()).await?)
    }

    /// Builds the service with `options`.
    pub async fn build_with(
        config: Arc<Config>,
        deps: Deps,
        options: GatewayOptions,
    ) -> Result<Self, GatewayError> {
        let tls = config
            .gateway
            .tls
            .as_ref()
            .map(ServerTls::load)
            .transpose()
            .map_err(GatewayError::Tls)?;
        let kube = kube_port(&config).await?;
        let addr = config.gateway.grpc_listen;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| GatewayError::Bind { addr, source })?;
        let addr = listener
            .local_addr()
            .map_err(|source| GatewayError::Bind { addr, source })?;
        let streams = Arc::new(Streams::new(
            StreamReader::new(deps.topology.streams.clone(), deps.nats.clone()),
            ImageCatalog::new(deps.topology.images.clone()),
            TriggerReader::new(
                deps.topology.triggers.clone(),
                deps.topology.firings.clone(),
            ),
            deps.nats.clone(),
            options,
        ));
        streams.mirror.register(&deps.metrics.service(NAME));
        watch::register_metrics(&deps.metrics.service(NAME));
        let identities =
            IdentityStore::open_boxed(&deps.topology.js, config.nats.replicas, &config.auth)
                .await
                .map_err(GatewayError::Auth)?
                .with_registry_watcher(registry_watcher_token(&config).as_ref());
        if !identities.enabled() {
            tracing::warn!(
                "AUTHENTICATION IS DISABLED (auth.enabled = false): anyone who reaches the API \
                 may read, change and delete everything, secrets included"
            );
        }
        let identities = Arc::new(identities);
        let registry = &config.auth.registry;
        let registry_tokens = match registry.enabled {
            true => {
                let service = TokenService::load(registry, identities.clone())
                    .map_err(GatewayError::RegistryToken)?;
                tracing::info!(
                    service = %registry.service,
                    issuer = %registry.issuer,
                    kid = %service.kid(),
                    "registry token service on GET {}",
                    registry_token::TOKEN_PATH
                );
                Some(Arc::new(service))
            }
            false => None,
        };
        Ok(GatewayService {
            listener,
            addr,
            streams,
            triggers: triggers::TriggersApi::new(&deps),
            imports: ImportClient::new(deps.nats.clone()),
            mirrors: MirrorClient::new(deps.nats.clone()),
            secrets: secrets::SecretsApi::new(deps.nats.clone()),
            receivers: receivers::ReceiversApi::new(deps.nats.clone()),
            identities,
            registry_tokens,
            tls,
            grpc_metrics: metrics::GrpcMetrics::new(&deps.metrics.service(NAME)),
            kube,
        })
    }

    /// The bound gRPC address.
    pub fn grpc_addr(&self) -> SocketAddr {
        self.addr
    }

    async fn serve(self, shutdown: CancellationToken) -> Result<(), GatewayError> {
        let options = &self.streams.options;
        let (health, health_service) = tonic_health::server::health_reporter();
        for service in HEALTH_SERVICES {
            health
                .set_service_status(service, tonic_health::ServingStatus::Serving)
                .await;
        }
        let reflection = || {
            tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(imagestreams_proto::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        };
        let reflection_v1 = reflection().build_v1().map_err(GatewayError::Reflection)?;
        let reflection_v1alpha = reflection()
            .build_v1alpha()
            .map_err(GatewayError::Reflection)?;
        let api = ImageStreamsServer::new(Grpc::new(
            self.streams.clone(),
            self.imports.clone(),
            self.mirrors.clone(),
        ))
        .max_decoding_message_size(options.max_message_bytes)
        .max_encoding_message_size(options.max_message_bytes);
        let incoming = TcpIncoming::from(self.listener).with_nodelay(Some(true));
        // the identity cache lives while the watch runs: until the end of the graceful shutdown
        let identities = self.identities.clone();
        let watching = CancellationToken::new();
        let watch = tokio::spawn({
            let watching = watching.clone();
            async move { identities.watch(watching).await }
        });
        let streams = self.streams.clone();
        let stopping = async move {
            shutdown.cancelled().await;
            for service in HEALTH_SERVICES {
                health
                    .set_service_status(service, tonic_health::ServingStatus::NotServing)
                    .await;
            }
            // ends every watch, so that the graceful shutdown can finish
            streams.shutdown.cancel();
        };
        tracing::info!(addr = %self.addr, tls = self.tls.is_some(), "gRPC listening");
        let kube = self.kube.map(|port| {
            let mut router = rest::router(
                self.streams.clone(),
                self.receivers.client(),
                self.triggers.clone(),
            );
            if let Some(config) = port.request_header {
                // inside the bearer-token layer: it overrides that caller
                let state = kube::request_header::RequestHeader::new(config, self.identities.clone());
                router = router.layer(axum::middleware::from_fn_with_state(
                    state,
                    kube::request_header::authenticate,
                ));
            }
            let router = router.layer(auth::AuthLayer::new(self.identities.clone()));
            let addr = port.listener.local_addr().ok();
            tracing::info!(?addr, "Kubernetes-compatible API listening (HTTPS)");
            let stopping = watching.clone();
            tokio::spawn(async move {
                let served = async {
                    let listener = TlsListener::new(port.listener, port.tls)?;
                    axum::serve(
                        listener,
                        router.into_make_service_with_connect_info::<kube::request_header::ClientCert>(),
                    )
                    .with_graceful_shutdown(stopping.cancelled_owned())
                    .await
                };
                if let Err(error) = served.await {
                    tracing::error!(error = imagestreams_common::error::chain(&error), "the Kubernetes-compatible API stopped");
                }
            })
        });
        let mut server = Server::builder();
        if let Some(tls) = &self.tls {
            server = server
                .tls_config(tls.grpc())
                .map_err(GatewayError::TlsConfig)?;
        }
        let served = server
            .http2_keepalive_interval(Some(DEFAULT_KEEPALIVE_INTERVAL))
            .trace_fn(grpc_span)
            .layer(self.grpc_metrics.clone())
            .layer(auth::AuthLayer::new(self.identities.clone()))
            .add_service(health_service)
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha)
            .add_service(api)
            .add_service(self.triggers.into_server())
            .add_service(self.secrets.into_server())
            .add_service(self.receivers.into_server())
            .add_service(auth::AuthApi::new(self.identities.clone()).into_server())
            .serve_with_incoming_shutdown(incoming, stopping)
            .await
            .map_err(GatewayError::Serve);
        watching.cancel();
        // can't fail but by a panic, which the watch does not raise
        let _ = watch.await;
        if let Some(kube) = kube {
            let _ = kube.await;
        }
        served?;
        self.streams.tasks.close();
        self.streams.tasks.wait().await;
        tracing::info!("gRPC stopped");
        Ok(())
    }
}

/// The span of one gRPC call, the child of the caller's `traceparent` when
/// its metadata carries one.
fn grpc_span(request: &axum::http::Request<()>) -> tracing::Span {
    let span = tracing::info_span!("grpc", path = %request.uri().path());
    propagation::follow(&span, request.headers());
    span
}

impl Service for GatewayService {
    fn name(&self) -> &'static str {
        NAME
    }

    fn routes(&self) -> Router {
        let rest = rest::router(
            self.streams.clone(),
            self.receivers.client(),
            self.triggers.clone(),
        )
        .layer(auth::AuthLayer::new(self.identities.clone()));
        match &self.registry_tokens {
            // its own authentication: Basic, and anonymous callers get a token
            Some(tokens) => rest.merge(registry_token::router(tokens.clone())),
            None => rest,
        }
    }

    fn listen_addrs(&self) -> Vec<(&'static str, SocketAddr)> {
        let mut addrs = vec![("grpc", self.addr)];
        if let Some(addr) = self
            .kube
            .as_ref()
            .and_then(|k| k.listener.local_addr().ok())
        {
            addrs.push(("kube", addr));
        }
        addrs
    }

    fn run(self: Box<Self>, shutdown: CancellationToken) -> BoxFuture<'static, anyhow::Result<()>> {
        Box::pin(async move { Ok(self.serve(shutdown).await?) })
    }
}
