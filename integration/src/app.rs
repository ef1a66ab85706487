//! `TestApp`: the real `imagestreams` services, built exactly as the binary
//! builds them, against a real nats-server, with every listener on port 0.

use std::{net::SocketAddr, sync::Arc};

use imagestreams::{
    app::{App, Mode},
    cli::ServiceName,
};
use imagestreams_common::config::Config;
use imagestreams_proto::v1::image_streams_client::ImageStreamsClient;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Status, service::Interceptor, transport::Channel};

use crate::NatsServer;

/// A running set of services and the addresses they bound.
pub struct TestApp {
    /// The configuration the services run with.
    pub config: Arc<Config>,
    addrs: Vec<(&'static str, SocketAddr)>,
    metrics: imagestreams_common::metrics::Metrics,
    token: CancellationToken,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

impl TestApp {
    /// Every service in one process (as `imagestreams up`), on `nats`.
    pub async fn spawn(nats: &NatsServer) -> anyhow::Result<TestApp> {
        Self::spawn_with(nats, &ServiceName::ALL, |_| {}).await
    }

    /// The given services, with `configure` applied to the test configuration.
    pub async fn spawn_with(
        nats: &NatsServer,
        services: &[ServiceName],
        configure: impl FnOnce(&mut Config),
    ) -> anyhow::Result<TestApp> {
        // boxed: the services' build futures are large in debug builds
        Box::pin(Self::spawn_on(&nats.url(), services, configure)).await
    }

    /// The given services on the NATS server(s) at `url` (comma separated for
    /// a cluster), with `configure` applied to the test configuration.
    pub async fn spawn_on(
        url: &str,
        services: &[ServiceName],
        configure: impl FnOnce(&mut Config),
    ) -> anyhow::Result<TestApp> {
        let mut config = Config::for_tests(url);
        config.nats.auto_start = false;
        configure(&mut config);
        let config = Arc::new(config);
        let app = Box::pin(App::build(config.clone(), services, Mode::Microservice)).await?;
        let addrs = app.addrs().to_vec();
        let metrics = app.metrics().clone();
        let token = CancellationToken::new();
        let task = tokio::spawn(app.run_until_stopped(token.clone()));
        Ok(TestApp {
            config,
            addrs,
            metrics,
            token,
            task: Some(task),
        })
    }

    /// The address bound for `role` (`grpc`, `http`, `notifications`).
    pub fn addr(&self, role: &str) -> SocketAddr {
        self.addrs
            .iter()
            .find(|(r, _)| *r == role)
            .map(|(_, a)| *a)
            .unwrap_or_else(|| panic!("no {role} listener in {:?}", self.addrs))
    }

    /// The name of every metric the services registered (see
    /// [`Metrics::registered`](imagestreams_common::metrics::Metrics::registered)).
    pub fn registered_metrics(&self) -> Vec<String> {
        self.metrics.registered()
    }

    /// `http://<grpc addr>`, as the CLI's `--server` takes it.
    pub fn grpc_url(&self) -> String {
        format!("http://{}", self.addr("grpc"))
    }

    /// `http://<http addr>` of the REST API and health endpoints.
    pub fn http_url(&self) -> String {
        format!("http://{}", self.addr("http"))
    }

    /// What `GET /metrics` answers now, as Prometheus would scrape it.
    pub async fn scrape(&self) -> anyhow::Result<Scraped> {
        let text = reqwest::get(format!("{}/metrics", self.http_url()))
            .await?
            .error_for_status()?
            .text()
            .await?;
        Ok(Scraped(text))
    }

    /// A gRPC client of the gateway.
    pub async fn client(&self) -> anyhow::Result<ImageStreamsClient<Channel>> {
        Ok(ImageStreamsClient::connect(self.grpc_url()).await?)
    }

    /// Stops the services gracefully and returns how they ended.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.token.cancel();
        match self.task.take() {
            Some(task) => task.await?,
            None => Ok(()),
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.token.cancel();
    }
}

/// A gRPC interceptor that adds `Authorization: Bearer <token>` to every
/// call (none for `None`).
#[derive(Debug, Clone)]
pub struct Bearer(pub Option<String>);

impl Interceptor for Bearer {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(token) = &self.0 {
            let value = format!("Bearer {token}")
                .parse()
                .map_err(|_| Status::internal("the token holds characters a header cannot"))?;
            request.metadata_mut().insert("authorization", value);
        }
        Ok(request)
    }
}

/// One scrape of `/metrics` (OpenMetrics text).
#[derive(Debug, Clone)]
pub struct Scraped(pub String);

impl Scraped {
    /// The value of `series` (its name and labels, as exposed), if exposed.
    pub fn get(&self, series: &str) -> Option<f64> {
        self.0
            .lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }

    /// The value of `series`; panics, showing the scrape, when it is not exposed.
    #[track_caller]
    pub fn value(&self, series: &str) -> f64 {
        self.get(series)
            .unwrap_or_else(|| panic!("no {series} in\n{}", self.0))
    }
}

impl std::ops::Deref for Scraped {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Scraped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
