//! Tag policies end to end, on real parts: skopeo pushes to a notifying
//! docker-registry (the push path) and to a second one standing in for
//! quay.io (the import path), the whole mesh on a real nats-server, and a
//! trigger on the policy tag with its webhook.

use std::collections::BTreeMap;

use imagestreams::cli::ServiceName;
use imagestreams_common::config::{RegistryRuleConfig, Secret};
use imagestreams_common::model::{
    ImageStream, OrderPolicy, SemverPolicy, TagFilter, TagPolicy, TagReference,
};
use imagestreams_integration::{
    Registry, RegistryOptions, TestApp, push_unique_image, wait_for_some,
};
use imagestreams_proto::v1::{self as proto, image_streams_client::ImageStreamsClient};
use imagestreams_trigger_api::TriggerKind;
use tonic::transport::Channel;

use crate::kit::{Env, Receiver, SETTLE, WAIT};

/// The bearer token the registry sends and the watcher expects.
const TOKEN: &str = "policies-token";
const NAMESPACE: &str = "pol";
/// The tags of the issue's acceptance list.
const TAGS: [&str; 8] = [
    "1.0.0",
    "1.2.0",
    "1.10.0",
    "2.0.0-rc.1",
    "2.0.0",
    "latest",
    "build-17",
    "build-9",
];

fn policy_tag(name: &str, policy: TagPolicy) -> TagReference {
    TagReference {
        name: name.into(),
        policy: Some(policy),
        ..TagReference::default()
    }
}

fn semver(range: &str) -> TagPolicy {
    TagPolicy {
        semver: Some(SemverPolicy {
            range: range.into(),
        }),
        ..TagPolicy::default()
    }
}

fn alphabetical(order: &str) -> TagPolicy {
    TagPolicy {
        alphabetical: Some(OrderPolicy {
            order: order.into(),
        }),
        ..TagPolicy::default()
    }
}

/// The current image of every tag.
fn current(stream: &ImageStream) -> BTreeMap<String, String> {
    stream
        .status
        .iter()
        .flat_map(|s| s.tags.iter())
        .filter_map(|t| Some((t.tag.clone(), t.latest()?.image.clone())))
        .collect()
}

fn images(stream: &ImageStream, tag: &str) -> Vec<String> {
    stream
        .status_tag(tag)
        .map(|l| l.items.iter().map(|i| i.image.clone()).collect())
        .unwrap_or_default()
}

async fn get(grpc: &mut ImageStreamsClient<Channel>, name: &str) -> Option<ImageStream> {
    let reply = grpc
        .get(proto::GetRequest {
            namespace: NAMESPACE.into(),
            name: name.into(),
            ..Default::default()
        })
        .await
        .ok()?;
    ImageStream::try_from(reply.into_inner()).ok()
}

/// Waits until `name` satisfies `done`.
async fn wait_stream(
    grpc: &ImageStreamsClient<Channel>,
    name: &str,
    done: impl Fn(&ImageStream) -> bool,
) -> anyhow::Result<ImageStream> {
    wait_for_some(
        || {
            let mut grpc = grpc.clone();
            let done = &done;
            async move { get(&mut grpc, name).await.filter(|s| done(s)) }
        },
        WAIT,
    )
    .await
}

/// The trigger `name` delivered one webhook, once, for `image`.
fn assert_fired_once(receiver: &Receiver, name: &str, image: &str) {
    let deliveries = receiver.by_delivery(name);
    let requests: Vec<_> = deliveries.values().flatten().collect();
    assert_eq!(requests.len(), 1, "one firing for one move: {deliveries:?}");
    assert_eq!(requests[0].json()["image"], image);
}

#[tokio::test]
async fn policy_tags_choose_and_follow_pushes_and_imports_firing_once() -> anyhow::Result<()> {
    let env = Env::start(|_| {}).await?;
    let receiver = Receiver::start().await?;
    let reserved = std::net::TcpListener::bind("127.0.0.1:0")?;
    let watcher_addr = reserved.local_addr()?;
    let integrated = Registry::start(RegistryOptions {
        notify_backoff: std::time::Duration::from_millis(100),
        ..RegistryOptions::notifying(format!("http://{watcher_addr}/notifications"), Some(TOKEN))
    })
    .await?;
    let external = Registry::start(RegistryOptions::default()).await?;
    let host = integrated.host();
    drop(reserved);
    let trigger_config = env.config.trigger.clone();
    let app = TestApp::spawn_with(&env.nats, &ServiceName::ALL, |c| {
        c.integrated_registry.host = host.clone();
        c.registry_watcher.listen = watcher_addr;
        c.registry_watcher.token = Some(Secret::new(TOKEN));
        c.trigger = trigger_config;
        c.registries = vec![RegistryRuleConfig {
            prefix: Some("quay.io".into()),
            location: Some(external.host()),
            insecure: true,
            ..RegistryRuleConfig::default()
        }];
    })
    .await?;
    let mut grpc = app.client().await?;

    // the push path: the stream is made by pushes, then given policy tags
    let mut pushed = BTreeMap::new();
    for tag in TAGS {
        let digest = push_unique_image(&integrated, &format!("{NAMESPACE}/app:{tag}")).await?;
        pushed.insert(tag.to_owned(), digest);
    }
    let stream = wait_stream(&grpc, "app", |s| current(s).len() == TAGS.len()).await?;
    let mut spec = stream.clone();
    spec.spec.tags.extend([
        policy_tag("latest-1.x", semver(">=1.0 <2")),
        policy_tag("stable", semver("*")),
        policy_tag(
            "newest-build",
            TagPolicy {
                filter_tags: Some(TagFilter {
                    pattern: r"^build-(?P<n>\d+)$".into(),
                    extract: "$n".into(),
                }),
                numerical: Some(OrderPolicy::default()),
                ..TagPolicy::default()
            },
        ),
        policy_tag("first", alphabetical("desc")),
        policy_tag("last", alphabetical("asc")),
    ]);
    let updated = grpc
        .update(proto::UpdateRequest {
            namespace: NAMESPACE.into(),
            image_stream: Some(spec.into()),
        })
        .await?
        .into_inner();
    let updated = ImageStream::try_from(updated)?;
    let chosen = current(&updated);
    for (policy, tag) in [
        ("latest-1.x", "1.10.0"),
        ("stable", "2.0.0"),
        ("newest-build", "build-17"),
        ("first", "1.0.0"),
        ("last", "latest"),
    ] {
        assert_eq!(
            chosen.get(policy),
            pushed.get(tag),
            "{policy} follows {tag}"
        );
    }

    // a trigger on the policy tag; a lower version moves nothing
    env.create(
        NAMESPACE,
        "deploy-1x",
        "app:latest-1.x",
        TriggerKind::Deploy,
        Some(receiver.url("ok", "deploy-1x")),
        false,
    )
    .await?;
    let lower = push_unique_image(&integrated, &format!("{NAMESPACE}/app:1.3.0")).await?;
    let after_lower =
        wait_stream(&grpc, "app", |s| current(s).get("1.3.0") == Some(&lower)).await?;
    assert_eq!(
        images(&after_lower, "latest-1.x"),
        [pushed["1.10.0"].clone()]
    );

    // a higher one moves the policy tag, with history, and fires once
    let higher = push_unique_image(&integrated, &format!("{NAMESPACE}/app:1.11.0")).await?;
    let moved = wait_stream(&grpc, "app", |s| {
        current(s).get("latest-1.x") == Some(&higher)
    })
    .await?;
    assert_eq!(
        images(&moved, "latest-1.x"),
        [higher.clone(), pushed["1.10.0"].clone()]
    );
    assert_eq!(current(&moved).get("stable"), pushed.get("2.0.0"));
    receiver.wait_requests("deploy-1x", 1).await?;
    tokio::time::sleep(SETTLE).await;
    assert_fired_once(&receiver, "deploy-1x", &higher);

    // the import path: a stream of quay.io/org/app, imported on creation
    let mut remote = BTreeMap::new();
    for tag in ["1.0.0", "1.10.0", "2.0.0"] {
        let digest = push_unique_image(&external, &format!("org/app:{tag}")).await?;
        remote.insert(tag, digest);
    }
    let mut ext = ImageStream::new(NAMESPACE, "ext");
    ext.spec.docker_image_repository = "quay.io/org/app".into();
    ext.spec
        .tags
        .push(policy_tag("latest-1.x", semver(">=1.0 <2")));
    grpc.create(proto::CreateRequest {
        namespace: NAMESPACE.into(),
        image_stream: Some(ext.into()),
    })
    .await?;
    let imported = wait_stream(&grpc, "ext", |s| current(s).contains_key("latest-1.x")).await?;
    assert_eq!(images(&imported, "latest-1.x"), [remote["1.10.0"].clone()]);
    env.create(
        NAMESPACE,
        "deploy-ext",
        "ext:latest-1.x",
        TriggerKind::Deploy,
        Some(receiver.url("ok", "deploy-ext")),
        false,
    )
    .await?;

    // an import bringing 1.11.0 moves the policy tag and fires once
    let newer = push_unique_image(&external, "org/app:1.11.0").await?;
    let reply = grpc
        .import_image(proto::ImportImageRequest {
            namespace: NAMESPACE.into(),
            name: "ext".into(),
            ..Default::default()
        })
        .await?
        .into_inner();
    let after = ImageStream::try_from(reply.image_stream.expect("the stream"))?;
    assert_eq!(
        images(&after, "latest-1.x"),
        [newer.clone(), remote["1.10.0"].clone()]
    );
    receiver.wait_requests("deploy-ext", 1).await?;
    // the same import again changes nothing and fires nothing
    grpc.import_image(proto::ImportImageRequest {
        namespace: NAMESPACE.into(),
        name: "ext".into(),
        ..Default::default()
    })
    .await?;
    tokio::time::sleep(SETTLE).await;
    assert_fired_once(&receiver, "deploy-ext", &newer);
    let last = get(&mut grpc, "ext").await.expect("the stream");
    assert_eq!(images(&last, "latest-1.x").len(), 2);

    app.stop().await
}
