//! A `TagsChanged` fires a trigger: a signed webhook, an event, a firing record.

use futures::StreamExt as _;
use imagestreams_common::{
    model::{ImageStream, TagEvent},
    subjects::{self, Kind},
};
use imagestreams_proto::v1 as proto;
use imagestreams_stream_store_api::Record;
use imagestreams_trigger_api::{CAUSE_IMAGE_CHANGE, DeliveryState, TriggerKind};
use prost::Message as _;

use crate::kit::{Env, Receiver, SECRET, SETTLE, WAIT, digest, expected_signature};

#[tokio::test]
async fn a_tags_changed_fires_a_signed_webhook_an_event_and_a_build() -> anyhow::Result<()> {
    let env = Env::start(|_| {}).await?;
    let receiver = Receiver::start().await?;
    let _replica = env.replica().await?;
    let created = env
        .create(
            "ns1",
            "app-build",
            "app:latest",
            TriggerKind::Build,
            Some(receiver.url("ok", "app-build")),
            true,
        )
        .await?;
    assert_eq!(
        created.subject,
        "imagestreams.builds.requested.ns1.app-build"
    );
    let mut events = env
        .client
        .subscribe(Kind::BuildsRequested.namespace_filter("ns1"))
        .await?;

    let image = digest("a");
    env.tags_changed("ns1", "app", "latest", &image, 10, None)
        .await?;

    receiver.wait_requests("app-build", 1).await?;
    let request = receiver.requests().remove(0);
    assert_eq!(
        request.signature.as_deref(),
        Some(expected_signature(SECRET.as_bytes(), &request.body).as_str())
    );
    assert_eq!(request.event.as_deref(), Some("Build"));
    let body = request.json();
    assert_eq!(body["image"], image.as_str());
    assert_eq!(body["trigger"], "app-build");
    assert_eq!(body["namespace"], "ns1");
    assert_eq!(body["stream"], "app");
    assert_eq!(body["tag"], "latest");
    assert_eq!(body["previousImage"], "");
    assert_eq!(
        body["dockerImageReference"],
        format!("127.0.0.1:5000/ns1/app@{image}")
    );
    assert!(body["time"].as_str().is_some_and(|t| !t.is_empty()));

    let event = tokio::time::timeout(WAIT, events.next())
        .await?
        .expect("a BuildRequested");
    let event = proto::BuildRequested::decode(event.payload)?;
    assert_eq!(
        event.event_id, request.delivery,
        "the event id is the delivery id"
    );
    assert_eq!(event.image, image);
    assert_eq!(event.cause, CAUSE_IMAGE_CHANGE);

    env.wait_firings_complete("ns1", "app-build", 1).await?;
    let firings = env.reader.firings(Some("ns1"), None).await?;
    let build = &firings[0].value;
    assert_eq!(build.id, request.delivery);
    assert_eq!(build.image, image);
    assert_eq!(build.delivery.state, DeliveryState::Succeeded);
    assert_eq!(build.delivery.attempts, 1);
    let trigger = env.reader.get("ns1", "app-build").await?;
    assert_eq!(trigger.value.status.last_triggered_image, image);
    assert!(
        trigger.value.status.pending.is_empty(),
        "the outbox is emptied"
    );

    // a second image fires again, with the first as previousImage
    let second = digest("b");
    env.tags_changed("ns1", "app", "latest", &second, 11, None)
        .await?;
    receiver.wait_requests("app-build", 2).await?;
    let body = receiver.requests()[1].json();
    assert_eq!(body["image"], second.as_str());
    assert_eq!(body["previousImage"], image.as_str());
    Ok(())
}

/// Without an exporter no span has a trace context, and the event's
/// `traceparent` is passed on as it came.
#[tokio::test]
async fn the_webhook_and_the_event_carry_the_changes_traceparent() -> anyhow::Result<()> {
    const TRACEPARENT: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let env = Env::start(|_| {}).await?;
    let receiver = Receiver::start().await?;
    let _replica = env.replica().await?;
    env.create(
        "traced",
        "app-build",
        "app:latest",
        TriggerKind::Build,
        Some(receiver.url("ok", "app-build")),
        true,
    )
    .await?;
    let mut events = env
        .client
        .subscribe(Kind::BuildsRequested.namespace_filter("traced"))
        .await?;

    env.tags_changed_traced("traced", "app", "latest", &digest("a"), TRACEPARENT)
        .await?;

    receiver.wait_requests("app-build", 1).await?;
    assert_eq!(
        receiver.requests()[0].traceparent.as_deref(),
        Some(TRACEPARENT)
    );
    let event = tokio::time::timeout(WAIT, events.next())
        .await?
        .expect("a BuildRequested");
    let header = event.headers.as_ref().and_then(|h| h.get("traceparent"));
    assert_eq!(header.map(|v| v.as_str()), Some(TRACEPARENT));
    Ok(())
}

#[tokio::test]
async fn other_tags_paused_triggers_and_deploys_behave() -> anyhow::Result<()> {
    let env = Env::start(|_| {}).await?;
    let receiver = Receiver::start().await?;
    let _replica = env.replica().await?;
    env.create(
        "ns2",
        "web",
        "app:prod",
        TriggerKind::Deploy,
        Some(receiver.url("ok", "web")),
        true,
    )
    .await?;
    let paused = imagestreams_trigger_api::NewTrigger::try_from(proto::CreateTriggerRequest {
        namespace: "ns2".into(),
        trigger: Some(proto::Trigger {
            name: "paused".into(),
            spec: Some(proto::TriggerSpec {
                from: Some(proto::ImageStreamTagReference {
                    namespace: String::new(),
                    stream: "app".into(),
                    tag: "prod".into(),
                }),
                kind: proto::TriggerKind::Deploy as i32,
                paused: true,
                container: "web".into(),
                webhook: Some(proto::Webhook {
                    url: receiver.url("ok", "paused"),
                    ..Default::default()
                }),
                mirror: None,
            }),
            ..Default::default()
        }),
        no_fire_existing: false,
    })?;
    env.triggers.create(&paused).await?;
    env.create("ns2", "silent", "app:prod", TriggerKind::Build, None, true)
        .await?;

    env.tags_changed("ns2", "app", "staging", &digest("s"), 5, None)
        .await?;
    env.tags_changed("ns2", "app", "prod", &digest("p"), 6, None)
        .await?;
    receiver.wait_requests("web", 1).await?;
    tokio::time::sleep(SETTLE).await;
    assert_eq!(
        receiver.by_delivery("web").len(),
        1,
        "only the prod tag fires"
    );
    assert!(
        receiver.by_delivery("paused").is_empty(),
        "a paused trigger does not fire"
    );
    let request = &receiver
        .by_delivery("web")
        .into_values()
        .next()
        .unwrap_or_default()[0];
    assert_eq!(request.event.as_deref(), Some("Deployment"));
    env.wait_firings_complete("ns2", "web", 1).await?;
    assert_eq!(
        env.stored_events(TriggerKind::Deploy, "ns2").await?.len(),
        1
    );
    // without a webhook, a firing is complete once its event is published
    env.wait_firings_complete("ns2", "silent", 1).await?;
    let silent = &env.reader.firings(Some("ns2"), Some("silent")).await?[0].value;
    assert_eq!(silent.delivery.state, DeliveryState::None);
    assert_eq!(
        env.stored_events(TriggerKind::Build, "ns2").await?,
        vec![silent.id.clone()]
    );
    let event_stream = env
        .topology
        .js
        .get_stream(subjects::STREAM_TRIGGERS)
        .await?;
    let last = event_stream
        .get_last_raw_message_by_subject(&Kind::DeploymentsRequested.subject("ns2", "web"))
        .await?;
    let event = proto::DeploymentRequested::decode(last.payload)?;
    assert_eq!(event.image, digest("p"));
    Ok(())
}

/// Writes a stream whose `tag` holds `image` into the streams bucket, as the
/// stream-store would.
async fn seed_stream(
    env: &Env,
    namespace: &str,
    name: &str,
    tag: &str,
    image: &str,
) -> anyhow::Result<()> {
    let mut stream = ImageStream::new(namespace, name);
    stream.metadata.uid = format!("uid-{name}");
    stream.status_tag_mut(tag).items.push(TagEvent {
        created: "2026-01-01T00:00:00Z".into(),
        docker_image_reference: format!("127.0.0.1:5000/{namespace}/{name}@{image}"),
        image: image.to_owned(),
        generation: Some(1),
    });
    let value = Record::created(stream).encode()?;
    env.topology
        .streams
        .put(subjects::stream_key(namespace, name), value)
        .await?;
    Ok(())
}

#[tokio::test]
async fn a_trigger_on_a_tag_with_an_image_fires_unless_told_not_to() -> anyhow::Result<()> {
    let env = Env::start(|_| {}).await?;
    let receiver = Receiver::start().await?;
    let _replica = env.replica().await?;
    let image = digest("existing");
    seed_stream(&env, "ns3", "app", "latest", &image).await?;

    let fired = env
        .create(
            "ns3",
            "fires",
            "app:latest",
            TriggerKind::Build,
            Some(receiver.url("ok", "fires")),
            true,
        )
        .await?;
    let quiet = env
        .create(
            "ns3",
            "quiet",
            "app:latest",
            TriggerKind::Build,
            Some(receiver.url("ok", "quiet")),
            false,
        )
        .await?;
    let status = |t: &proto::Trigger| t.status.clone().unwrap_or_default();
    assert_eq!(status(&fired).last_triggered_image, image);
    assert_eq!(status(&fired).pending_firings.len(), 1);
    assert_eq!(
        status(&quiet).last_triggered_image,
        image,
        "recorded, not fired"
    );
    assert!(status(&quiet).pending_firings.is_empty());

    receiver.wait_requests("fires", 1).await?;
    assert_eq!(receiver.requests()[0].json()["image"], image.as_str());
    // the old event of that image (older than both triggers) changes nothing
    env.tags_changed("ns3", "app", "latest", &image, 1, None)
        .await?;
    tokio::time::sleep(SETTLE).await;
    assert_eq!(receiver.requests().len(), 1);
    assert!(receiver.by_delivery("quiet").is_empty());
    Ok(())
}
