//! The lag guard against a changefeed message held by a dead replica
//! (issue 23): the writers must wait for the consumer's ack floor, which
//! such a message holds back, not for this replica's own acks, or 64 newer
//! writes of its stream drop the message, and its `TagsChanged`, from the
//! bucket before it is redelivered.

use std::time::Duration;

use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, pull};
use futures::StreamExt as _;
use imagestreams::cli::ServiceName;
use imagestreams_common::{nats as topology, subjects};
use imagestreams_integration::{NatsServer, TestApp, load, wait_for};
use imagestreams_proto::v1 as proto;
use imagestreams_stream_store::{changefeed, pushes};
use imagestreams_stream_store_api::StreamReader;

const WAIT: Duration = Duration::from_secs(30);
const NS: &str = "lag";
const STREAM: &str = "app";
/// More than the bucket's 64 revisions per stream.
const NEWER_WRITES: usize = 70;
/// How long the held message's `TagsChanged` may take: past the changefeed's
/// ack wait (2 s; 10 s before issue 23) and the writes' admission timeout
/// (5 s), with room to spare.
const REDELIVERY_WAIT: Duration = Duration::from_secs(15);

/// Push `n` of the test: tag `latest` of `lag/app` to a new image, 1 s later
/// than push `n - 1`.
fn push(n: usize) -> proto::ImagePushed {
    crate::store::pushed(
        &format!("push-{n}"),
        NS,
        STREAM,
        "latest",
        &format!("sha256:{:064x}", 0x23_0000 + n),
        1_700_000_000 + n as i64,
    )
}

#[tokio::test]
async fn a_change_held_by_a_dead_replica_keeps_its_tags_changed() -> anyhow::Result<()> {
    let nats = NatsServer::start().await?;
    let client = nats.connect().await?;
    let declared = topology::provision(&client, 1).await?;
    let js = declared.js.clone();
    let reader = StreamReader::new(declared.streams.clone(), client.clone());
    let bucket_stream = format!("KV_{}", subjects::BUCKET_STREAMS);

    // The changefeed's durable as an older version declared it (ack wait
    // 10 s): declaring it again updates it.
    declared
        .streams
        .stream
        .create_consumer(pull::Config {
            durable_name: Some(changefeed::CONSUMER_NAME.to_owned()),
            filter_subject: format!("$KV.{}.>", subjects::BUCKET_STREAMS),
            deliver_policy: DeliverPolicy::All,
            ack_policy: AckPolicy::Explicit,
            ack_wait: Duration::from_secs(10),
            max_deliver: -1,
            ..Default::default()
        })
        .await?;

    // Change r0, committed by a store whose changefeed does not run.
    let writer = crate::store::store_without_changefeed(&nats).await?;
    crate::store::publish_pushed(&js, &push(0)).await?;
    wait_for(
        || async {
            let Ok(stream) = js.get_stream(subjects::STREAM_IMAGES).await else {
                return false;
            };
            stream
                .consumer_info(pushes::CONSUMER_NAME)
                .await
                .is_ok_and(|i| i.num_pending == 0 && i.num_ack_pending == 0)
        },
        WAIT,
    )
    .await?;
    writer.stop().await?;
    let uid = reader.get(NS, STREAM).await?.metadata.uid;

    // A replica's changefeed takes r0 and is killed before it acks: the
    // message stays pending until the consumer's ack wait runs out.
    let consumer = changefeed::declare(&declared.streams).await?;
    assert_eq!(
        consumer.cached_info().config.ack_wait,
        changefeed::DEFAULT_ACK_WAIT
    );
    // (r0 is a batch: the tag's record, then the stream's header)
    let mut fetched = consumer.fetch().max_messages(2).messages().await?;
    let mut held = None;
    while let Some(message) = fetched.next().await {
        let message = message.map_err(|e| anyhow::anyhow!("{e}"))?;
        if imagestreams_stream_store_api::is_header(&message) {
            held = Some(message);
        }
    }
    let held = held.ok_or_else(|| anyhow::anyhow!("the changefeed delivered no header"))?;
    let r0 = held
        .info()
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .stream_sequence;
    let event_id = format!("{uid}:{r0}");

    // Another replica runs on and writes the same stream 70 times.
    let app = TestApp::spawn_with(&nats, &[ServiceName::StreamStore], |_| {}).await?;
    for n in 1..=NEWER_WRITES {
        crate::store::publish_pushed(&js, &push(n)).await?;
    }

    // r0 is redelivered to the running replica, which publishes it: the
    // writes waited for it instead of pushing it out of the bucket.
    let stored = wait_for(
        || async {
            load::stored_message_ids(&js, subjects::STREAM_TAGS)
                .await
                .is_ok_and(|ids| ids.contains_key(&event_id))
        },
        REDELIVERY_WAIT,
    )
    .await;
    let mut stream = js.get_stream(&bucket_stream).await?;
    let bucket = stream.info().await?.state.clone();
    let ack_floor = stream
        .consumer_info(changefeed::CONSUMER_NAME)
        .await?
        .ack_floor
        .stream_sequence;
    stored.map_err(|e| {
        anyhow::anyhow!(
            "{e}: no TagsChanged {event_id} stored; the bucket holds revisions {}..={}, \
             the changefeed's ack floor is {ack_floor}",
            bucket.first_sequence,
            bucket.last_sequence
        )
    })?;

    // Every one of the 71 changes, once.
    wait_for(
        || async {
            load::stored_message_ids(&js, subjects::STREAM_TAGS)
                .await
                .is_ok_and(|ids| ids.len() > NEWER_WRITES)
        },
        WAIT,
    )
    .await?;
    let ids = load::stored_message_ids(&js, subjects::STREAM_TAGS).await?;
    let last = js
        .get_stream(&bucket_stream)
        .await?
        .info()
        .await?
        .state
        .last_sequence;
    // one per header revision, r0 first (a revision of the stream is its
    // header's; the tag records it carries follow it in the bucket)
    let revisions: Vec<u64> = ids
        .keys()
        .map(|id| {
            id.strip_prefix(&format!("{uid}:"))
                .and_then(|r| r.parse().ok())
                .unwrap_or(0)
        })
        .collect();
    assert_eq!(ids.len(), NEWER_WRITES + 1, "{ids:?}");
    assert!(revisions.contains(&r0), "{ids:?}");
    assert!(
        revisions.iter().all(|&r| (r0..=last).contains(&r)),
        "{ids:?}"
    );
    assert!(ids.values().all(|&n| n == 1), "{ids:?}");
    drop(held);
    app.stop().await
}
