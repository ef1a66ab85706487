//! The runtime kit every service runs on: its dependencies, graceful shutdown
//! on signals, and the `/healthz` and `/readyz` endpoints.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use axum::{Router, extract::State, http::StatusCode, routing::get};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::{metrics::Metrics, nats::Topology, tls::TlsListener};

/// What a service receives to run: a connected NATS client and the declared
/// topology. Services never read the environment themselves.
#[derive(Clone, Debug)]
pub struct Deps {
    /// The NATS client.
    pub nats: async_nats::Client,
    /// JetStream streams and KV buckets.
    pub topology: Topology,
    /// The process's readiness, for services that serve health on a port of their own.
    pub health: Health,
    /// The process's metrics registry (served at `/metrics`).
    pub metrics: Metrics,
}

/// Returns the root token, cancelled on the first SIGINT or SIGTERM. A second
/// signal exits the process at once with status 130.
pub fn shutdown_on_signals() -> CancellationToken {
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("signal received, shutting down (send it again to force)");
        cancel.cancel();
        wait_for_signal().await;
        tracing::warn!("second signal, exiting now");
        std::process::exit(130);
    });
    token
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        // can't install handlers: fall back to ctrl-c only
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

/// Readiness of one process: ready once every service has started and while
/// NATS is connected.
#[derive(Clone, Debug, Default)]
pub struct Health {
    started: Arc<AtomicBool>,
    nats: Option<async_nats::Client>,
}

impl Health {
    /// Health that also checks the NATS connection.
    pub fn new(nats: Option<async_nats::Client>) -> Self {
        Health {
            started: Arc::default(),
            nats,
        }
    }

    /// Marks the process as started.
    pub fn set_started(&self) {
        self.started.store(true, Ordering::SeqCst);
    }

    /// Whether the process can serve: started, and NATS connected.
    pub fn is_ready(&self) -> bool {
        let nats_ok = self
            .nats
            .as_ref()
            .is_none_or(|c| c.connection_state() == async_nats::connection::State::Connected);
        self.started.load(Ordering::SeqCst) && nats_ok
    }

    /// The `/healthz` and `/readyz` routes.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/healthz", get(|| async { "ok" }))
            .route("/readyz", get(readyz))
            .with_state(self.clone())
    }
}

async fn readyz(State(health): State<Health>) -> (StatusCode, &'static str) {
    if health.is_ready() {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready")
    }
}

/// Binds an HTTP listener; port 0 picks a free port (see `local_addr`).
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| std::io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))
}

/// Serves `router` on `listener` until `token` is cancelled, over TLS with
/// `tls` when given.
pub async fn serve_http(
    listener: TcpListener,
    router: Router,
    tls: Option<Arc<rustls::ServerConfig>>,
    token: CancellationToken,
) -> std::io::Result<()> {
    match tls {
        Some(config) => {
            axum::serve(TlsListener::new(listener, config)?, router)
                .with_graceful_shutdown(token.cancelled_owned())
                .await
        }
        None => {
            axum::serve(listener, router)
                .with_graceful_shutdown(token.cancelled_owned())
                .await
        }
    }
}

/// A service as the binary runs it: built (listeners bound) before it runs.
pub trait Service: Send + 'static {
    /// The service's name, as `serve <name>` spells it.
    fn name(&self) -> &'static str;

    /// Routes the service adds to its process's HTTP port (the gateway's REST API).
    fn routes(&self) -> Router {
        Router::new()
    }

    /// The addresses the service bound, by role (`grpc`, `notifications`).
    fn listen_addrs(&self) -> Vec<(&'static str, SocketAddr)> {
        Vec::new()
    }

    /// Runs until `shutdown` is cancelled, finishing the work in hand.
    fn run(
        self: Box<Self>,
        shutdown: CancellationToken,
    ) -> futures::future::BoxFuture<'static, anyhow::Result<()>>;
}
