//! A real push through the whole mesh: skopeo → docker-registry →
//! registry-watcher → stream-store → trigger → webhook, event and build.

use futures::StreamExt as _;
use imagestreams::cli::ServiceName;
use imagestreams_common::{config::Secret, subjects::Kind};
use imagestreams_integration::{Registry, RegistryOptions, TestApp, push_unique_image};
use imagestreams_proto::v1 as proto;
use imagestreams_trigger_api::{DeliveryState, TriggerKind};
use prost::Message as _;

use crate::kit::{Env, Receiver, SECRET, SETTLE, WAIT, expected_signature};

/// The bearer token the registry sends and the watcher expects.
const TOKEN: &str = "trigger-e2e-token";

#[tokio::test]
async fn a_push_fires_a_signed_webhook_an_event_and_a_build() -> anyhow::Result<()> {
    let env = Env::start(|_| {}).await?;
    let receiver = Receiver::start().await?;
    // hold the watcher's port while the registry picks its own
    let reserved = std::net::TcpListener::bind("127.0.0.1:0")?;
    let watcher_addr = reserved.local_addr()?;
    let registry = Registry::start(RegistryOptions {
        notify_backoff: std::time::Duration::from_millis(100),
        ..RegistryOptions::notifying(format!("http://{watcher_addr}/notifications"), Some(TOKEN))
    })
    .await?;
    let host = registry.host();
    drop(reserved);
    let trigger_config = env.config.trigger.clone();
    let app = TestApp::spawn_with(&env.nats, &ServiceName::ALL, |c| {
        c.integrated_registry.host = host.clone();
        c.registry_watcher.listen = watcher_addr;
        c.registry_watcher.token = Some(Secret::new(TOKEN));
        c.trigger = trigger_config;
    })
    .await?;
    env.create(
        "e2e",
        "app-build",
        "app:latest",
        TriggerKind::Build,
        Some(receiver.url("ok", "app-build")),
        true,
    )
    .await?;
    let mut events = env
        .client
        .subscribe(Kind::BuildsRequested.namespace_filter("e2e"))
        .await?;

    let pushed = push_unique_image(&registry, "e2e/app:latest").await?;

    receiver.wait_requests("app-build", 1).await?;
    let request = receiver.requests().remove(0);
    assert_eq!(
        request.signature.as_deref(),
        Some(expected_signature(SECRET.as_bytes(), &request.body).as_str())
    );
    let body = request.json();
    assert_eq!(
        body["image"],
        pushed.as_str(),
        "the webhook carries the pushed digest"
    );
    assert_eq!(
        body["dockerImageReference"],
        format!("{host}/e2e/app@{pushed}")
    );
    let event = tokio::time::timeout(WAIT, events.next())
        .await?
        .expect("a BuildRequested");
    let event = proto::BuildRequested::decode(event.payload)?;
    assert_eq!(event.image, pushed);
    assert_eq!(event.event_id, request.delivery);
    env.wait_firings_complete("e2e", "app-build", 1).await?;
    let builds = env.reader.firings(Some("e2e"), None).await?;
    assert_eq!(builds[0].value.image, pushed);
    assert_eq!(builds[0].value.delivery.state, DeliveryState::Succeeded);

    // the same tag pushed again fires again, once
    let second = push_unique_image(&registry, "e2e/app:latest").await?;
    receiver.wait_requests("app-build", 2).await?;
    env.wait_firings_complete("e2e", "app-build", 2).await?;
    tokio::time::sleep(SETTLE).await;
    let deliveries = receiver.by_delivery("app-build");
    assert_eq!(deliveries.len(), 2);
    assert!(deliveries.values().all(|r| r.len() == 1));
    assert_eq!(
        receiver.requests()[1].json()["previousImage"],
        pushed.as_str()
    );
    assert_eq!(receiver.requests()[1].json()["image"], second.as_str());

    // what an operator's Prometheus scrapes off the same process
    let mut grpc = app.client().await?;
    grpc.get(proto::GetRequest {
        namespace: "e2e".into(),
        name: "app".into(),
        ..Default::default()
    })
    .await?;
    let missing = grpc
        .get(proto::GetRequest {
            namespace: "e2e".into(),
            name: "nope".into(),
            ..Default::default()
        })
        .await;
    assert_eq!(missing.unwrap_err().code(), tonic::Code::NotFound);
    let metrics = app.scrape().await?;
    let value = |series: &str| metrics.value(series);
    assert!(value(r#"imagestreams_registry_watcher_envelopes_total{code="200"}"#) >= 2.0);
    assert_eq!(
        value(r#"imagestreams_registry_watcher_events_total{outcome="pushed"}"#),
        2.0
    );
    assert_eq!(
        value(
            r#"imagestreams_stream_store_events_consumed_total{kind="ImagePushed",outcome="changed"}"#
        ),
        2.0
    );
    assert_eq!(
        value(
            r#"imagestreams_stream_store_events_published_total{kind="TagsChanged",outcome="ok"}"#
        ),
        2.0
    );
    assert!(
        value(r#"imagestreams_trigger_events_consumed_total{kind="TagsChanged",outcome="ok"}"#)
            >= 2.0
    );
    assert_eq!(
        value(r#"imagestreams_trigger_events_published_total{kind="BuildRequested",outcome="ok"}"#),
        2.0
    );
    assert_eq!(
        value(r#"imagestreams_trigger_webhook_deliveries_total{outcome="delivered"}"#),
        2.0
    );
    assert_eq!(
        value(
            r#"imagestreams_gateway_grpc_requests_total{method="/imagestreams.v1.ImageStreams/Get",code="Ok"}"#
        ),
        1.0
    );
    assert_eq!(
        value(
            r#"imagestreams_gateway_grpc_requests_total{method="/imagestreams.v1.ImageStreams/Get",code="NotFound"}"#
        ),
        1.0
    );
    for consumer in [
        "stream-store-changefeed",
        "stream-store",
        "trigger",
        "tag-syncer",
    ] {
        assert!(
            metrics.contains(&format!(r#"_consumer_lag{{consumer="{consumer}"}}"#)),
            "{consumer}: {metrics}"
        );
    }
    assert!(
        metrics.contains("imagestreams_stream_store_streams "),
        "{metrics}"
    );
    app.stop().await?;
    Ok(())
}
