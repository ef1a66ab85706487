//! The gateway's read cache ([`Mirror`]) against a real nats-server: a read
//! that begins after a write completed sees it, even when the write came
//! through another connection and the cache's watch has not delivered it yet.

use std::time::Duration;

use async_nats::jetstream::{self, kv};
use imagestreams_common::{model::ImageStream, subjects};
use imagestreams_integration::{NatsServer, wait_for};
use imagestreams_stream_store_api::{Freshness, ListQuery, Mirror, StreamReader};
use tokio_util::sync::CancellationToken;

const BUCKET: &str = "read-cache-test";

/// A stored value as the stream-store writes it (only `stream` is read back).
fn stored(round: usize) -> anyhow::Result<bytes::Bytes> {
    let mut stream = ImageStream::new("ns", "app");
    stream
        .metadata
        .annotations
        .insert("round".into(), round.to_string());
    Ok(serde_json::to_vec(&serde_json::json!({ "stream": stream }))?.into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_after_a_write_elsewhere_completed_sees_it() -> anyhow::Result<()> {
    let nats = NatsServer::start().await?;
    let client = nats.connect().await?;
    let bucket = jetstream::new(client.clone())
        .create_key_value(kv::Config {
            bucket: BUCKET.into(),
            history: 5,
            ..Default::default()
        })
        .await?;
    let shutdown = CancellationToken::new();
    let mirror = Mirror::start(StreamReader::new(bucket, client), shutdown.clone());
    wait_for(|| async { mirror.is_live() }, Duration::from_secs(10)).await?;

    // a second connection, as the stream-store has its own
    let writer = jetstream::new(nats.connect().await?)
        .get_key_value(BUCKET)
        .await?;
    let key = subjects::stream_key("ns", "app");
    for round in 0..300 {
        let revision = writer.put(&key, stored(round)?).await?;
        let got = mirror.get("ns", "app", Freshness::Latest).await?;
        assert_eq!(
            got.metadata.resource_version,
            revision.to_string(),
            "round {round}: the get began after the write completed"
        );
        assert_eq!(got.metadata.annotations["round"], round.to_string());
        let page = mirror
            .list_page(
                ListQuery {
                    namespace: Some("ns"),
                    ..Default::default()
                },
                Freshness::Latest,
            )
            .await?;
        assert!(page.revision >= revision, "round {round}");
        assert_eq!(page.items.len(), 1);
        // the revision a write returned: at least that, without a round trip
        let at_least = mirror
            .get("ns", "app", Freshness::NotOlderThan(revision))
            .await?;
        assert!(at_least.metadata.resource_version.parse::<u64>()? >= revision);
    }
    let last = writer.put(&key, stored(300)?).await?;
    let newer = mirror
        .get("ns", "app", Freshness::NotOlderThan(last + 10))
        .await
        .unwrap_err();
    assert!(
        newer.to_string().contains("newer than the store's"),
        "{newer}"
    );
    // "0": whatever the cache holds, which catches up within moments
    wait_for(
        || async {
            mirror
                .get("ns", "app", Freshness::Any)
                .await
                .is_ok_and(|s| s.metadata.resource_version == last.to_string())
        },
        Duration::from_secs(5),
    )
    .await?;
    writer.delete(&key).await?;
    let gone = mirror.get("ns", "app", Freshness::Latest).await;
    assert!(gone.is_err_and(|e| e.to_string().contains("app")));
    assert!(mirror.is_live(), "every read above came from the cache");
    shutdown.cancel();
    Ok(())
}
