//! End-to-end tests of the registry-watcher (issue 4): a real docker-registry
//! notifying the watcher, a real nats-server, the real stream-store and
//! gateway, images pushed with skopeo.
//!
//! The watcher runs as its own `TestApp` so it can be stopped and started
//! again on the same address while the registry keeps retrying; the
//! stream-store and the gateway run in a second one.

use std::{net::SocketAddr, time::Duration};

use async_nats::jetstream::{
    self,
    consumer::{AckPolicy, DeliverPolicy, pull},
};
use futures::{StreamExt as _, TryStreamExt as _};
use imagestreams::cli::ServiceName;
use imagestreams_common::{
    model::ImageStream,
    subjects::{self, Kind},
};
use imagestreams_integration::{
    NatsServer, Registry, RegistryOptions, TestApp, push_unique_image, wait_for_some,
};
use imagestreams_proto::v1::{self as proto, image_streams_client::ImageStreamsClient};
use serde_json::{Value, json};
use tonic::transport::Channel;

/// The bearer token the registry sends and the watcher expects.
const TOKEN: &str = "watcher-e2e-token";
/// How long a push may take to show in the stream.
const LAND_TIMEOUT: Duration = Duration::from_secs(20);
/// How long to wait for JetStream events.
const EVENT_TIMEOUT: Duration = Duration::from_secs(10);
/// The registry's backoff after failed notifications (kept short so the
/// retry after a watcher restart comes quickly).
const NOTIFY_BACKOFF: Duration = Duration::from_millis(100);
/// The envelope media type of distribution 2.8.
const EVENTS_V1: &str = "application/vnd.docker.distribution.events.v1+json";

/// nats-server, a notifying docker-registry, the watcher, the stream-store
/// and the gateway.
struct Harness {
    watcher: Option<TestApp>,
    watcher_addr: SocketAddr,
    _store: TestApp,
    grpc: ImageStreamsClient<Channel>,
    js: jetstream::Context,
    registry: Registry,
    // dropped last: the services go before their server
    nats: NatsServer,
}

impl Harness {
    async fn start() -> anyhow::Result<Harness> {
        Self::start_with(|_| {}).await
    }

    async fn start_with(configure: impl FnOnce(&mut RegistryOptions)) -> anyhow::Result<Harness> {
        let nats = NatsServer::start().await?;
        // Hold the watcher's port while the registry picks its own, so the
        // two cannot collide; the registry needs the watcher's URL up front
        // and the watcher the registry's host.
        let reserved = std::net::TcpListener::bind("127.0.0.1:0")?;
        let watcher_addr = reserved.local_addr()?;
        let mut options = RegistryOptions {
            notify_backoff: NOTIFY_BACKOFF,
            ..RegistryOptions::notifying(
                format!("http://{watcher_addr}/notifications"),
                Some(TOKEN),
            )
        };
        configure(&mut options);
        let registry = Registry::start(options).await?;
        let host = registry.host();
        let store = TestApp::spawn_with(
            &nats,
            &[ServiceName::StreamStore, ServiceName::Gateway],
            |c| c.integrated_registry.host = host.clone(),
        )
        .await?;
        drop(reserved);
        let watcher = spawn_watcher(&nats, watcher_addr, &host).await?;
        let grpc = store.client().await?;
        let js = jetstream::new(nats.connect().await?);
        Ok(Harness {
            watcher: Some(watcher),
            watcher_addr,
            _store: store,
            grpc,
            js,
            registry,
            nats,
        })
    }

    fn notifications_url(&self) -> String {
        format!("http://{}/notifications", self.watcher_addr)
    }

    async fn stop_watcher(&mut self) -> anyhow::Result<()> {
        if let Some(watcher) = self.watcher.take() {
            watcher.stop().await?;
        }
        Ok(())
    }

    /// Starts the watcher on its address again. While it was down, the port
    /// (from the ephemeral range) may have been taken as the source port of
    /// some outgoing connection, the registry's retries included: binding is
    /// retried until such a connection is gone.
    async fn start_watcher(&mut self) -> anyhow::Result<()> {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            match spawn_watcher(&self.nats, self.watcher_addr, &self.registry.host()).await {
                Ok(watcher) => {
                    self.watcher = Some(watcher);
                    return Ok(());
                }
                Err(e) if address_in_use(&e) && std::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The stream through the gateway's gRPC Get, `None` while it does not exist.
    async fn get(&self, namespace: &str, name: &str) -> anyhow::Result<Option<ImageStream>> {
        let reply = self
            .grpc
            .clone()
            .get(proto::GetRequest {
                namespace: namespace.to_owned(),
                name: name.to_owned(),
                ..Default::default()
            })
            .await;
        match reply {
            Ok(stream) => Ok(Some(ImageStream::try_from(stream.into_inner())?)),
            Err(status) if status.code() == tonic::Code::NotFound => Ok(None),
            Err(status) => Err(status.into()),
        }
    }

    /// Waits until `tag` of `ns/name` lists `digests` (newest first) and returns the stream.
    async fn wait_for_history(
        &self,
        namespace: &str,
        name: &str,
        tag: &str,
        digests: &[&str],
    ) -> anyhow::Result<ImageStream> {
        let found = wait_for_some(
            || async move {
                let stream = self.get(namespace, name).await.ok()??;
                let items: Vec<String> = stream
                    .status_tag(tag)?
                    .items
                    .iter()
                    .map(|i| i.image.clone())
                    .collect();
                (items == digests).then_some(stream)
            },
            LAND_TIMEOUT,
        )
        .await;
        match found {
            Ok(stream) => Ok(stream),
            Err(e) => {
                let now = self.get(namespace, name).await?;
                Err(e.context(format!(
                    "{namespace}/{name}:{tag} never listed {digests:?}; now: {}",
                    now.map(|s| serde_json::to_string_pretty(&s).unwrap_or_default())
                        .unwrap_or_else(|| "no stream".to_owned())
                )))
            }
        }
    }

    /// The number of messages stored in a JetStream stream.
    async fn stored(&self, stream: &str) -> anyhow::Result<u64> {
        Ok(self
            .js
            .get_stream(stream)
            .await?
            .info()
            .await?
            .state
            .messages)
    }

    /// How many events of `kind` (all namespaces) JetStream holds.
    async fn stored_of(&self, kind: Kind) -> anyhow::Result<u64> {
        let counts: Vec<(String, usize)> = self
            .js
            .get_stream(kind.stream())
            .await?
            .info_with_subjects(kind.all_filter())
            .await?
            .try_collect()
            .await?;
        Ok(counts.iter().map(|(_, n)| *n as u64).sum())
    }

    /// The first `count` events on `subject`, decoded, with their message ids.
    async fn events<T: prost::Message + Default>(
        &self,
        stream: &str,
        subject: String,
        count: usize,
    ) -> anyhow::Result<Vec<(T, String)>> {
        let consumer = self
            .js
            .get_stream(stream)
            .await?
            .create_consumer(pull::Config {
                filter_subject: subject.clone(),
                deliver_policy: DeliverPolicy::All,
                ack_policy: AckPolicy::None,
                ..Default::default()
            })
            .await?;
        let mut messages = consumer.messages().await?;
        let mut out = Vec::with_capacity(count);
        while out.len() < count {
            let message = tokio::time::timeout(EVENT_TIMEOUT, messages.next())
                .await
                .map_err(|_| anyhow::anyhow!("only {} of {count} events on {subject}", out.len()))?
                .ok_or_else(|| anyhow::anyhow!("the consumer of {subject} ended"))??;
            let id = message
                .headers
                .as_ref()
                .and_then(|h| h.get(async_nats::header::NATS_MESSAGE_ID))
                .map(|v| v.as_str().to_owned())
                .unwrap_or_default();
            out.push((T::decode(message.payload.clone())?, id));
        }
        Ok(out)
    }
}

async fn spawn_watcher(nats: &NatsServer, addr: SocketAddr, host: &str) -> anyhow::Result<TestApp> {
    TestApp::spawn_with(nats, &[ServiceName::RegistryWatcher], |c| {
        c.registry_watcher.listen = addr;
        c.registry_watcher.token = Some(imagestreams_common::config::Secret::new(TOKEN));
        c.integrated_registry.host = host.to_owned();
    })
    .await
}

#[tokio::test]
async fn pushes_become_tag_history_newest_first() -> anyhow::Result<()> {
    let h = Harness::start().await?;
    let host = h.registry.host();

    let first = push_unique_image(&h.registry, "ns1/app:1").await?;
    h.wait_for_history("ns1", "app", "1", &[&first]).await?;
    let second = push_unique_image(&h.registry, "ns1/app:1").await?;
    let third = push_unique_image(&h.registry, "ns1/app:2").await?;
    h.wait_for_history("ns1", "app", "2", &[&third]).await?;
    let stream = h
        .wait_for_history("ns1", "app", "1", &[&second, &first])
        .await?;

    // Every digest is the registry's own.
    assert_eq!(h.registry.manifest_digest("ns1/app", "1").await?, second);
    assert_eq!(h.registry.manifest_digest("ns1/app", "2").await?, third);
    let status = stream.status.as_ref().expect("a status");
    assert_eq!(status.docker_image_repository, format!("{host}/ns1/app"));
    for (tag, digests) in [("1", vec![&second, &first]), ("2", vec![&third])] {
        let items = &stream.status_tag(tag).expect("the tag").items;
        for (item, digest) in items.iter().zip(digests) {
            assert_eq!(&item.image, digest);
            assert_eq!(
                item.docker_image_reference,
                format!("{host}/ns1/app@{digest}")
            );
        }
    }

    // ImagePushed, decoded with the proto types, one per push, id = msg id.
    let pushed: Vec<(proto::ImagePushed, String)> = h
        .events(
            subjects::STREAM_IMAGES,
            Kind::ImagesPushed.subject("ns1", "app"),
            3,
        )
        .await?;
    let got: Vec<(&str, &str)> = pushed
        .iter()
        .map(|(e, _)| (e.tag.as_str(), e.digest.as_str()))
        .collect();
    assert_eq!(got, [("1", &*first), ("1", &*second), ("2", &*third)]);
    for (event, msg_id) in &pushed {
        assert_eq!(&event.event_id, msg_id);
        assert!(!event.event_id.is_empty());
        assert_eq!(event.registry, host);
        assert_eq!(event.repository, "ns1/app");
        assert_eq!(
            (event.namespace.as_str(), event.stream.as_str()),
            ("ns1", "app")
        );
        assert_eq!(
            event.source,
            proto::ImageSource::RegistryNotification as i32
        );
        assert_eq!(
            event.media_type,
            "application/vnd.oci.image.manifest.v1+json"
        );
        assert!(event.size > 0);
        assert!(event.time.is_some());
        assert_eq!(event.actor, "", "anonymous push");
    }

    // TagsChanged, decoded with the proto types: 1 new, 1 moved, 2 new.
    let changed: Vec<(proto::TagsChanged, String)> = h
        .events(
            subjects::STREAM_TAGS,
            Kind::TagsChanged.subject("ns1", "app"),
            3,
        )
        .await?;
    let changes: Vec<(String, String, String)> = changed
        .iter()
        .flat_map(|(e, _)| e.changes.iter())
        .map(|c| (c.tag.clone(), c.old_image.clone(), c.new_image.clone()))
        .collect();
    assert_eq!(
        changes,
        [
            ("1".into(), String::new(), first.clone()),
            ("1".into(), first.clone(), second.clone()),
            ("2".into(), String::new(), third.clone()),
        ]
    );
    for (event, msg_id) in &changed {
        assert_eq!(&event.event_id, msg_id);
        assert_eq!(event.uid, stream.metadata.uid);
    }
    Ok(())
}

#[tokio::test]
async fn a_push_while_the_watcher_is_down_lands_once_after_restart() -> anyhow::Result<()> {
    let mut h = Harness::start().await?;
    let first = push_unique_image(&h.registry, "ns1/app:1").await?;
    h.wait_for_history("ns1", "app", "1", &[&first]).await?;

    h.stop_watcher().await?;
    let missed = push_unique_image(&h.registry, "ns1/app:1").await?;
    let before = h.get("ns1", "app").await?.expect("the stream");
    assert_eq!(before.status_tag("1").map(|t| t.items.len()), Some(1));

    h.start_watcher().await?;
    h.wait_for_history("ns1", "app", "1", &[&missed, &first])
        .await?;
    // A later push is the barrier: the registry delivers in order, so any
    // repeat of the missed event would have come before it.
    let barrier = push_unique_image(&h.registry, "ns1/app:2").await?;
    h.wait_for_history("ns1", "app", "2", &[&barrier]).await?;
    let stream = h
        .wait_for_history("ns1", "app", "1", &[&missed, &first])
        .await?;
    assert_eq!(stream.status_tag("1").map(|t| t.items.len()), Some(2));
    assert_eq!(
        h.stored_of(Kind::ImagesPushed).await?,
        3,
        "one ImagePushed per push"
    );
    Ok(())
}

#[tokio::test]
async fn bad_requests_are_refused_and_change_nothing() -> anyhow::Result<()> {
    let h = Harness::start().await?;
    let http = reqwest::Client::new();
    let digest = format!("sha256:{}", "d".repeat(64));
    let push = |id: &str| {
        json!({
            "id": id, "timestamp": "2024-05-01T12:00:00Z", "action": "push",
            "target": {"mediaType": "application/vnd.oci.image.manifest.v1+json", "size": 527,
                       "digest": digest, "length": 527, "repository": "ns9/bad",
                       "url": format!("http://{}/v2/ns9/bad/manifests/{digest}", h.registry.host()),
                       "tag": "1"},
            "request": {"id": "r", "addr": "127.0.0.1:1", "host": h.registry.host(), "method": "PUT", "useragent": "test"},
            "actor": {}, "source": {"addr": "test:5000", "instanceID": "i"}
        })
    };
    let good = json!({ "events": [push("bad-1")] }).to_string();
    let big = json!({
        "events": (0..10_000).map(|i| push(&format!("big-{i}"))).collect::<Vec<Value>>()
    })
    .to_string();
    let many_small = json!({
        "events": (0..10_000).map(|i| json!({"id": i.to_string(), "action": "pull"})).collect::<Vec<Value>>()
    })
    .to_string();
    let bearer = format!("Bearer {TOKEN}");
    // (name, Authorization, Content-Type, body, expected status)
    type Case<'a> = (&'a str, Option<&'a str>, &'a str, String, u16);
    let cases: [Case; 6] = [
        ("no token", None, EVENTS_V1, good.clone(), 401),
        (
            "wrong token",
            Some("Bearer not-it"),
            EVENTS_V1,
            good.clone(),
            401,
        ),
        (
            "malformed JSON",
            Some(&bearer),
            EVENTS_V1,
            "{\"events\": [{".to_owned(),
            400,
        ),
        ("10,000 events", Some(&bearer), EVENTS_V1, big, 413),
        (
            "10,000 small events",
            Some(&bearer),
            EVENTS_V1,
            many_small,
            413,
        ),
        (
            "unknown media type",
            Some(&bearer),
            "text/plain",
            good.clone(),
            415,
        ),
    ];
    for (name, auth, content_type, body, expected) in cases {
        let mut request = http
            .post(h.notifications_url())
            .header("Content-Type", content_type)
            .body(body);
        if let Some(auth) = auth {
            request = request.header("Authorization", auth);
        }
        let response = request.send().await?;
        let status = response.status().as_u16();
        let text = response.text().await?;
        assert_eq!(status, expected, "{name}: {text}");
    }

    // The store is unchanged: no event, no stream, no change.
    assert_eq!(h.stored(subjects::STREAM_IMAGES).await?, 0);
    assert_eq!(h.stored(subjects::STREAM_TAGS).await?, 0);
    assert!(h.get("ns9", "bad").await?.is_none());

    // The same envelope, well sent, lands: the refusals were for the reasons tested.
    let response = http
        .post(h.notifications_url())
        .header("Content-Type", EVENTS_V1)
        .header("Authorization", &bearer)
        .body(good)
        .send()
        .await?;
    assert_eq!(response.status().as_u16(), 200);
    h.wait_for_history("ns9", "bad", "1", &[&digest]).await?;

    // Health is served on the notification port.
    let health = http
        .get(format!("http://{}/healthz", h.watcher_addr))
        .send()
        .await?;
    assert_eq!(health.status().as_u16(), 200);
    Ok(())
}

#[tokio::test]
async fn the_pusher_is_recorded() -> anyhow::Result<()> {
    let h =
        Harness::start_with(|o| o.htpasswd = Some(("alice".into(), "wonderland".into()))).await?;
    let digest = push_unique_image(&h.registry, "ns1/private:1").await?;
    h.wait_for_history("ns1", "private", "1", &[&digest])
        .await?;
    let pushed: Vec<(proto::ImagePushed, String)> = h
        .events(
            subjects::STREAM_IMAGES,
            Kind::ImagesPushed.subject("ns1", "private"),
            1,
        )
        .await?;
    assert_eq!(pushed[0].0.actor, "alice");
    assert_eq!(pushed[0].0.digest, digest);
    Ok(())
}

#[tokio::test]
async fn repositories_of_other_depths_are_skipped() -> anyhow::Result<()> {
    let h = Harness::start().await?;
    push_unique_image(&h.registry, "lonely:1").await?;
    push_unique_image(&h.registry, "ns1/group/app:1").await?;
    // The registry delivers in order: once this lands, the two above were answered.
    let barrier = push_unique_image(&h.registry, "ns1/app:1").await?;
    h.wait_for_history("ns1", "app", "1", &[&barrier]).await?;
    assert_eq!(h.stored_of(Kind::ImagesPushed).await?, 1);
    let listed = h
        .grpc
        .clone()
        .list(proto::ListRequest::default())
        .await?
        .into_inner();
    assert_eq!(listed.items.len(), 1);
    Ok(())
}

#[tokio::test]
async fn the_watcher_refuses_to_start_without_a_token() -> anyhow::Result<()> {
    let nats = NatsServer::start().await?;
    let refused = TestApp::spawn_with(&nats, &[ServiceName::RegistryWatcher], |_| {}).await;
    let error = format!("{:#}", refused.err().expect("no token: refused"));
    assert!(error.contains("registry_watcher.token"), "{error}");
    assert!(error.contains("insecure"), "{error}");

    let insecure = TestApp::spawn_with(&nats, &[ServiceName::RegistryWatcher], |c| {
        c.registry_watcher.insecure = true
    })
    .await?;
    let response = reqwest::Client::new()
        .post(format!(
            "http://{}/notifications",
            insecure.addr("notifications")
        ))
        .header("Content-Type", "application/json")
        .body(r#"{"events": []}"#)
        .send()
        .await?;
    assert_eq!(response.status().as_u16(), 200);
    insecure.stop().await
}

/// Whether binding failed because the address is still taken (by the
/// previous watcher's lingering connection), found by the error's kind.
fn address_in_use(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::AddrInUse)
    })
}
