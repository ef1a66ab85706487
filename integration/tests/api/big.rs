//! A stream of 10,000 tags, at the default `max_payload` (1 MiB), which one
//! NATS message cannot hold: imported from a repository of that many tags,
//! then served by the CLI (`get is`, `describe is`), the REST API and a gRPC
//! watch.

use std::time::Duration;

use futures::StreamExt as _;
use imagestreams::cli::ServiceName;
use imagestreams_common::{config::RegistryRuleConfig, model::ImageStream};
use imagestreams_integration::{NatsServer, TestApp, TestDir, fake_registry::FakeRegistry};
use imagestreams_proto::v1 as proto;

use crate::cli::Cli;

const TAGS: usize = 10_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_of_10000_tags_is_imported_and_served() -> anyhow::Result<()> {
    let fake = FakeRegistry::start().await?;
    let nats = NatsServer::start().await?;
    let keys = TestDir::new("secrets-key")?;
    let key: Vec<u8> = [uuid::Uuid::new_v4(), uuid::Uuid::new_v4()]
        .iter()
        .flat_map(|u| *u.as_bytes())
        .collect();
    std::fs::write(keys.join("key"), key)?;
    let app = TestApp::spawn_with(
        &nats,
        &[
            ServiceName::StreamStore,
            ServiceName::TagSyncer,
            ServiceName::Gateway,
        ],
        |c| {
            c.registries = vec![RegistryRuleConfig {
                prefix: Some(fake.host()),
                location: Some(fake.host()),
                insecure: true,
                ..RegistryRuleConfig::default()
            }];
            c.secrets.key_file = Some(keys.join("key"));
            c.tag_syncer.max_tags_per_import = TAGS;
            c.tag_syncer.requests_per_second = 0.0;
            // 10,000 tags from one registry on a busy 2-core CI box
            c.tag_syncer.import_timeout_ms = 60_000;
        },
    )
    .await?;
    let cli = Cli::new(app.grpc_url());

    let from = format!("{}/many/app", fake.host());
    let imported = cli
        .run_within(
            &[
                "import-image",
                "big",
                "--from",
                &from,
                "--all",
                "--confirm",
                "-n",
                "big",
            ],
            Duration::from_secs(90),
        )
        .await;
    imported.ok();

    // the CLI
    let table = cli.run(&["get", "is", "big", "-n", "big"]).await;
    assert!(table.ok().contains("big"), "{}", table.stdout);
    let json = cli
        .run(&["get", "is", "big", "-n", "big", "-o", "json"])
        .await;
    let stream: ImageStream = serde_json::from_str(json.ok())?;
    let tags = stream.status.as_ref().map_or(0, |s| s.tags.len());
    assert_eq!(tags, TAGS);
    let described = cli.run(&["describe", "is", "big", "-n", "big"]).await;
    assert!(described.ok().contains("Name:"), "{}", described.stdout);

    // REST, as kubectl reads it
    let body = reqwest::get(format!(
        "{}/apis/image.openshift.io/v1/namespaces/big/imagestreams/big",
        app.http_url()
    ))
    .await?
    .error_for_status()?
    .text()
    .await?;
    let rest: ImageStream = serde_json::from_str(&body)?;
    assert_eq!(rest.status, stream.status);

    // a gRPC watch: the stream whole in its first event
    let mut client = app.client().await?.max_decoding_message_size(64 << 20);
    let mut events = client
        .watch(proto::WatchRequest {
            namespace: "big".into(),
            name: "big".into(),
            ..Default::default()
        })
        .await?
        .into_inner();
    let first = tokio::time::timeout(Duration::from_secs(30), events.next())
        .await?
        .expect("an event")?;
    let watched = ImageStream::try_from(first.object.expect("the stream"))?;
    assert_eq!(watched.status, stream.status);
    app.stop().await
}
