//! Helpers of the trigger tests: a NATS environment, trigger replicas that
//! can be stopped dead, a scriptable webhook receiver, and publishers of
//! `TagsChanged`.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::Context as _;
use axum::{
    Router,
    body::Bytes,
    extract::{Path, State},
    http::{HeaderMap, StatusCode},
    routing::post,
};
use futures::StreamExt as _;
use imagestreams_common::{
    config::Config,
    nats::{self, Topology},
    runtime::{Deps, Health, Service as _},
    subjects::{self, Kind},
};
use imagestreams_integration::{NatsServer, wait_for};
use imagestreams_proto::v1 as proto;
use imagestreams_trigger::{Failpoint, TriggerService};
use imagestreams_trigger_api::{
    NewTrigger, TagRef, TriggerClient, TriggerKind, TriggerReader, TriggerSpec, Webhook,
    WebhookSecret,
};
use prost::Message as _;
use sha2::{Digest as _, Sha256};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The webhook secret of every test trigger.
pub const SECRET: &str = "s3cret-test-key";
/// How long a test waits for something that should happen.
pub const WAIT: Duration = Duration::from_secs(15);
/// How long a test waits to be sure something does not happen (again).
pub const SETTLE: Duration = Duration::from_millis(1_500);

/// A nats-server, the configuration of the trigger replicas, and clients.
pub struct Env {
    /// The server.
    pub nats: NatsServer,
    /// The replicas' configuration.
    pub config: Arc<Config>,
    /// A client of the test itself.
    pub client: async_nats::Client,
    /// Its topology.
    pub topology: Topology,
    /// The trigger write API.
    pub triggers: TriggerClient,
    /// The trigger read side.
    pub reader: TriggerReader,
}

impl Env {
    /// A fresh server; `configure` adjusts the test configuration (fast
    /// retries, loopback webhooks allowed).
    pub async fn start(configure: impl FnOnce(&mut Config)) -> anyhow::Result<Env> {
        let nats = NatsServer::start().await?;
        let mut config = Config::for_tests(&nats.url());
        config.nats.auto_start = false;
        config.trigger.webhook.allow_loopback = true;
        config.trigger.webhook.initial_backoff_ms = 50;
        config.trigger.webhook.max_backoff_ms = 200;
        config.trigger.webhook.timeout_ms = 2_000;
        config.trigger.resync_interval_ms = 500;
        config.trigger.lease_ms = 1_000;
        configure(&mut config);
        let client = nats.connect().await?;
        let topology = nats::provision(&client, 1).await?;
        Ok(Env {
            triggers: TriggerClient::new(client.clone()),
            reader: TriggerReader::new(topology.triggers.clone(), topology.firings.clone()),
            config: Arc::new(config),
            client,
            topology,
            nats,
        })
    }

    /// What a replica is built from, on a NATS connection of its own.
    pub async fn deps(&self) -> anyhow::Result<Deps> {
        let client = nats::connect(&self.config.nats, "trigger-test-replica").await?;
        let topology = nats::provision(&client, 1).await?;
        Ok(Deps {
            nats: client,
            topology,
            health: Health::default(),
            metrics: Default::default(),
        })
    }

    /// Starts a trigger replica on its own NATS connection.
    pub async fn replica(&self) -> anyhow::Result<Replica> {
        Replica::start(self, None).await
    }

    /// Starts a replica that stops dead at `failpoint`.
    pub async fn replica_crashing_at(&self, failpoint: Failpoint) -> anyhow::Result<Replica> {
        Replica::start(self, Some(failpoint)).await
    }

    /// Creates a trigger on `from` (`stream:tag` in `namespace`).
    pub async fn create(
        &self,
        namespace: &str,
        name: &str,
        from: &str,
        kind: TriggerKind,
        webhook: Option<String>,
        fire_existing: bool,
    ) -> anyhow::Result<proto::Trigger> {
        let trigger = NewTrigger {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            spec: TriggerSpec {
                from: TagRef::parse(from, namespace)?,
                kind,
                paused: false,
                container: String::new(),
                webhook: webhook.map(|url| Webhook {
                    url,
                    secret: Some(WebhookSecret::new(SECRET)),
                }),
                mirror: None,
            },
            fire_existing,
        };
        Ok(self.triggers.create(&trigger).await?)
    }

    /// Publishes a `TagsChanged` of one tag. `msg_id` defaults to the event id
    /// (pass another to get a duplicate past JetStream's dedupe).
    pub async fn tags_changed(
        &self,
        namespace: &str,
        stream: &str,
        tag: &str,
        image: &str,
        revision: u64,
        msg_id: Option<&str>,
    ) -> anyhow::Result<()> {
        let event = tags_changed(namespace, stream, tag, image, revision);
        let id = msg_id.map_or_else(|| event.event_id.clone(), str::to_owned);
        nats::publish_event(
            &self.topology.js,
            Kind::TagsChanged.subject(namespace, stream),
            &id,
            &event,
            async_nats::HeaderMap::new(),
        )
        .await?;
        Ok(())
    }

    /// Publishes a `TagsChanged` of one tag with a W3C `traceparent` header,
    /// as the changefeed does.
    pub async fn tags_changed_traced(
        &self,
        namespace: &str,
        stream: &str,
        tag: &str,
        image: &str,
        traceparent: &str,
    ) -> anyhow::Result<()> {
        let event = tags_changed(namespace, stream, tag, image, 1);
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("traceparent", traceparent);
        nats::publish_event(
            &self.topology.js,
            Kind::TagsChanged.subject(namespace, stream),
            &event.event_id,
            &event,
            headers,
        )
        .await?;
        Ok(())
    }

    /// Waits until the firings of `trigger` are `n` and all complete.
    pub async fn wait_firings_complete(
        &self,
        namespace: &str,
        trigger: &str,
        n: usize,
    ) -> anyhow::Result<()> {
        let waited = wait_for(
            || async {
                self.reader
                    .firings(Some(namespace), Some(trigger))
                    .await
                    .is_ok_and(|f| f.len() == n && f.iter().all(|f| f.value.is_complete()))
            },
            WAIT,
        )
        .await;
        if let Err(e) = waited {
            let seen = self
                .reader
                .firings(Some(namespace), Some(trigger))
                .await
                .map(|f| {
                    let done = f.iter().filter(|f| f.value.is_complete()).count();
                    format!("{} firings, {done} complete", f.len())
                });
            return Err(e.context(format!(
                "{n} complete firings of {namespace}/{trigger}; saw {seen:?}"
            )));
        }
        Ok(())
    }

    /// The ids of the BuildRequested (or DeploymentRequested) events stored for `namespace`.
    pub async fn stored_events(
        &self,
        kind: TriggerKind,
        namespace: &str,
    ) -> anyhow::Result<Vec<String>> {
        let stream = self
            .topology
            .js
            .get_stream(subjects::STREAM_TRIGGERS)
            .await?;
        let consumer = stream
            .create_consumer(async_nats::jetstream::consumer::pull::OrderedConfig {
                filter_subject: kind
                    .event_kind()
                    .context("mirror rules publish no event")?
                    .namespace_filter(namespace),
                ..Default::default()
            })
            .await?;
        let mut ids = Vec::new();
        let mut messages = consumer.messages().await?;
        while let Ok(Some(Ok(m))) =
            tokio::time::timeout(Duration::from_millis(300), messages.next()).await
        {
            let id = match kind {
                TriggerKind::Build => proto::BuildRequested::decode(m.payload.clone())?.event_id,
                TriggerKind::Deploy => {
                    proto::DeploymentRequested::decode(m.payload.clone())?.event_id
                }
                TriggerKind::Mirror => unreachable!("no subject to read above"),
            };
            ids.push(id);
        }
        Ok(ids)
    }
}

/// A `TagsChanged` of one tag at `revision`.
pub fn tags_changed(
    namespace: &str,
    stream: &str,
    tag: &str,
    image: &str,
    revision: u64,
) -> proto::TagsChanged {
    proto::TagsChanged {
        event_id: format!("uid-{namespace}-{stream}:{revision}"),
        namespace: namespace.to_owned(),
        stream: stream.to_owned(),
        uid: format!("uid-{namespace}-{stream}"),
        resource_version: revision.to_string(),
        time: None,
        changes: vec![proto::TagChange {
            tag: tag.to_owned(),
            old_image: String::new(),
            new_image: image.to_owned(),
            docker_image_reference: format!("127.0.0.1:5000/{namespace}/{stream}@{image}"),
            generation: 1,
        }],
        cause: None,
    }
}

/// A distinct, valid digest per `seed`.
pub fn digest(seed: &str) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(seed.as_bytes())))
}

/// HMAC-SHA256 as `sha256=<hex>`, computed here from its definition (RFC 2104),
/// independently of the service's implementation.
pub fn expected_signature(key: &[u8], body: &[u8]) -> String {
    const BLOCK: usize = 64;
    let mut k = [0u8; BLOCK];
    if key.len() > BLOCK {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| k.iter().map(|b| b ^ byte).collect::<Vec<u8>>();
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(body)
        .finalize();
    let outer = Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize();
    format!("sha256={}", hex::encode(outer))
}

/// One trigger replica, in this process, on its own NATS connection.
pub struct Replica {
    token: CancellationToken,
    task: Option<JoinHandle<anyhow::Result<()>>>,
    client: async_nats::Client,
}

impl Replica {
    async fn start(env: &Env, failpoint: Option<Failpoint>) -> anyhow::Result<Replica> {
        let deps = env.deps().await?;
        let client = deps.nats.clone();
        let mut service = TriggerService::build(env.config.clone(), deps).await?;
        if let Some(fp) = failpoint {
            service = service.with_failpoint(fp);
        }
        let token = CancellationToken::new();
        let task = tokio::spawn(Box::new(service).run(token.clone()));
        Ok(Replica {
            token,
            task: Some(task),
            client,
        })
    }

    /// Waits until the replica has ended (after a failpoint), then drops its connection.
    pub async fn wait_dead(mut self) -> anyhow::Result<()> {
        if let Some(task) = self.task.take() {
            tokio::time::timeout(WAIT, task)
                .await
                .context("the replica did not stop at its failpoint")???;
        }
        // a dead process's connection goes with it
        let _ = self.client.drain().await;
        Ok(())
    }

    /// Stops the replica gracefully.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.token.cancel();
        if let Some(task) = self.task.take() {
            tokio::time::timeout(WAIT, task)
                .await
                .context("the replica did not stop")???;
        }
        let _ = self.client.drain().await;
        Ok(())
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.token.cancel();
    }
}

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    /// The path's behaviour (`ok`, `flaky`, `gone`, `slow`, `fail`).
    pub path: String,
    /// `X-Imagestreams-Delivery`.
    pub delivery: String,
    /// `X-Imagestreams-Signature`.
    pub signature: Option<String>,
    /// `X-Imagestreams-Event`.
    pub event: Option<String>,
    /// `traceparent`.
    pub traceparent: Option<String>,
    /// The body.
    pub body: Bytes,
    /// What the receiver answered.
    pub status: u16,
}

impl Received {
    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_default()
    }
}

#[derive(Default)]
struct ReceiverState {
    received: Mutex<Vec<Received>>,
}

/// A webhook receiver on 127.0.0.1 with scripted answers by path:
/// `/ok/..` 200; `/flaky/..` 500 on a delivery's first request, then 200;
/// `/gone/..` 410; `/fail/..` 500; `/slow/..` 200 after 3 s.
pub struct Receiver {
    addr: SocketAddr,
    state: Arc<ReceiverState>,
    task: JoinHandle<()>,
}

impl Receiver {
    /// Starts the receiver on a free port.
    pub async fn start() -> anyhow::Result<Receiver> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(ReceiverState::default());
        let app = Router::new()
            .route("/{behaviour}/{name}", post(receive))
            .with_state(state.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Receiver { addr, state, task })
    }

    /// The URL of a path with `behaviour`, unique by `name`.
    pub fn url(&self, behaviour: &str, name: &str) -> String {
        format!("http://{}/{behaviour}/{name}", self.addr)
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Received> {
        self.state
            .received
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default()
    }

    /// Requests by delivery id, for one `name`.
    pub fn by_delivery(&self, name: &str) -> BTreeMap<String, Vec<Received>> {
        let mut out: BTreeMap<String, Vec<Received>> = BTreeMap::new();
        for r in self
            .requests()
            .into_iter()
            .filter(|r| r.path.ends_with(&format!("/{name}")))
        {
            out.entry(r.delivery.clone()).or_default().push(r);
        }
        out
    }

    /// Waits until `name` got `n` requests.
    pub async fn wait_requests(&self, name: &str, n: usize) -> anyhow::Result<()> {
        wait_for(
            || async { self.by_delivery(name).values().map(Vec::len).sum::<usize>() >= n },
            WAIT,
        )
        .await
        .with_context(|| {
            format!(
                "{n} webhook requests for {name}: got {:?}",
                self.by_delivery(name).keys()
            )
        })
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn receive(
    State(state): State<Arc<ReceiverState>>,
    Path((behaviour, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let header = |h: &str| {
        headers
            .get(h)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let delivery = header("x-imagestreams-delivery").unwrap_or_default();
    let seen_before = state
        .received
        .lock()
        .map(|r| r.iter().any(|x| x.delivery == delivery))
        .unwrap_or(false);
    let status = match behaviour.as_str() {
        "ok" => StatusCode::OK,
        "flaky" if seen_before => StatusCode::OK,
        "flaky" | "fail" => StatusCode::INTERNAL_SERVER_ERROR,
        "gone" => StatusCode::GONE,
        "slow" => {
            tokio::time::sleep(Duration::from_secs(3)).await;
            StatusCode::OK
        }
        _ => StatusCode::NOT_FOUND,
    };
    if let Ok(mut received) = state.received.lock() {
        received.push(Received {
            path: format!("/{behaviour}/{name}"),
            delivery,
            signature: header("x-imagestreams-signature"),
            event: header("x-imagestreams-event"),
            traceparent: header("traceparent"),
            body,
            status: status.as_u16(),
        });
    }
    status
}
