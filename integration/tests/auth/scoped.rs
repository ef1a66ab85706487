//! What stays inside a namespace: a watch never delivers another
//! namespace's event, and a push creates a stream only for an editor.

use std::time::Duration;

use async_nats::HeaderMap;
use futures::StreamExt as _;
use imagestreams_common::{nats as topology, subjects::Kind};
use imagestreams_integration::{NatsServer, wait_for};
use imagestreams_proto::v1 as proto;
use tonic::Code;

use crate::{EDITOR, ROOT, clients, spawn, stream};

#[tokio::test]
async fn a_watch_never_leaks_another_namespace() {
    let nats = NatsServer::start().await.expect("nats-server");
    let app = spawn(&nats).await;
    let mut root = clients(&app, Some(ROOT.1)).await;
    let mut editor = clients(&app, Some(EDITOR.1)).await;

    let denied = editor
        .streams
        .watch(proto::WatchRequest::default())
        .await
        .unwrap_err();
    assert_eq!(
        denied.code(),
        Code::PermissionDenied,
        "every namespace needs cluster view"
    );
    let denied = editor
        .streams
        .watch(proto::WatchRequest {
            namespace: "ns2".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);

    let mut events = editor
        .streams
        .watch(proto::WatchRequest {
            namespace: "ns1".into(),
            ..Default::default()
        })
        .await
        .expect("the editor watches ns1")
        .into_inner();
    // ns10 and ns1x share a prefix with ns1; ns2 does not
    for (ns, name) in [
        ("ns2", "a"),
        ("ns10", "b"),
        ("ns1x", "c"),
        ("ns1", "mine"),
        ("ns2", "d"),
    ] {
        root.streams
            .create(proto::CreateRequest {
                namespace: ns.into(),
                image_stream: Some(stream(ns, name)),
            })
            .await
            .expect("root creates");
    }
    root.streams
        .create(proto::CreateRequest {
            namespace: "ns1".into(),
            image_stream: Some(stream("ns1", "last")),
        })
        .await
        .expect("root creates");
    let mut seen = Vec::new();
    while !seen.iter().any(|(_, n): &(String, String)| n == "last") {
        let event = tokio::time::timeout(Duration::from_secs(10), events.next())
            .await
            .expect("an event within 10 s")
            .expect("the watch goes on")
            .expect("an event");
        let meta = event.object.and_then(|o| o.metadata).expect("metadata");
        seen.push((meta.namespace, meta.name));
    }
    assert!(
        seen.iter().all(|(ns, _)| ns == "ns1"),
        "only ns1 events: {seen:?}"
    );
    assert_eq!(seen.len(), 2, "{seen:?}");
}

fn push(id: &str, actor: &str, namespace: &str, stream: &str) -> proto::ImagePushed {
    proto::ImagePushed {
        event_id: id.to_owned(),
        registry: "127.0.0.1:5000".to_owned(),
        repository: format!("{namespace}/{stream}"),
        tag: "latest".to_owned(),
        digest: format!("sha256:{}", "a".repeat(64)),
        media_type: "application/vnd.oci.image.manifest.v1+json".to_owned(),
        time: Some(Default::default()),
        source: proto::ImageSource::RegistryNotification as i32,
        namespace: namespace.to_owned(),
        stream: stream.to_owned(),
        actor: actor.to_owned(),
        ..Default::default()
    }
}

#[tokio::test]
async fn pushes_create_streams_only_for_editors_of_the_namespace() {
    let nats = NatsServer::start().await.expect("nats-server");
    let app = spawn(&nats).await;
    let client = nats.connect().await.expect("nats");
    let js = async_nats::jetstream::new(client);
    let events = [
        push("e1", "editor", "ns2", "refused"),
        push("e2", "nobody", "ns1", "refused"),
        push("e3", "editor", "ns1", "created"),
    ];
    for event in &events {
        topology::publish_event(
            &js,
            Kind::ImagesPushed.subject(&event.namespace, &event.stream),
            &event.event_id,
            event,
            HeaderMap::new(),
        )
        .await
        .expect("publish");
    }
    let root = clients(&app, Some(ROOT.1)).await;
    let get = |ns: &str, name: &str| {
        let mut streams = root.streams.clone();
        let request = proto::GetRequest {
            namespace: ns.into(),
            name: name.into(),
            ..Default::default()
        };
        async move { streams.get(request).await }
    };
    wait_for(
        || async { get("ns1", "created").await.is_ok() },
        Duration::from_secs(10),
    )
    .await
    .expect("the editor's push creates ns1/created");
    let metrics_url = format!("{}/metrics", app.http_url());
    let refused_twice = || async {
        let Ok(response) = reqwest::get(&metrics_url).await else {
            return false;
        };
        let body = response.text().await.unwrap_or_default();
        body.lines()
            .any(|l| l.contains("outcome=\"refused\"") && l.ends_with(" 2"))
    };
    wait_for(refused_twice, Duration::from_secs(10))
        .await
        .expect("both refusals are counted");
    for (ns, name) in [("ns2", "refused"), ("ns1", "refused")] {
        let error = get(ns, name).await.unwrap_err();
        assert_eq!(error.code(), Code::NotFound, "{ns}/{name}");
    }
}
