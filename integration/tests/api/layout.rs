//! The bucket's layout (a header plus one record per tag) against a real
//! nats-server: a write cut short after its header loses nothing, a push
//! touches its own tag's key only, and a deleted stream's tag records never
//! join a new stream of the same name.

use imagestreams_common::{
    model::{ImageStream, TagEvent},
    nats as topology, subjects,
};
use imagestreams_integration::NatsServer;
use imagestreams_stream_store::{
    bucket::{Bucket, Limits, Plan, Scope, next_record},
    history,
};
use imagestreams_stream_store_api::{Record, StreamReader, layout};

fn event(n: u8) -> TagEvent {
    let digest = format!("sha256:{}", format!("{n:02x}").repeat(32));
    TagEvent {
        created: format!("2025-01-01T00:00:{n:02}Z"),
        docker_image_reference: format!("r/ns/app@{digest}"),
        image: digest,
        generation: Some(1),
    }
}

fn stream_with(tags: &[(&str, u8)]) -> Record {
    let mut stream = ImageStream::new("ns", "app");
    stream.metadata.uid = uuid::Uuid::new_v4().to_string();
    stream.metadata.generation = 1;
    for (tag, n) in tags {
        history::apply_image(&mut stream, tag, &event(*n));
    }
    Record::created(stream)
}

struct Store {
    bucket: Bucket,
    reader: StreamReader,
    kv: async_nats::jetstream::kv::Store,
    _nats: NatsServer,
}

async fn store() -> anyhow::Result<Store> {
    let nats = NatsServer::start().await?;
    let client = nats.connect().await?;
    let declared = topology::provision(&client, 1).await?;
    let kv = declared.streams.clone();
    // a changefeed must follow the bucket for writers to be admitted
    let consumer = imagestreams_stream_store::changefeed::declare(&kv).await?;
    let bucket = Bucket::new(kv.clone(), client.clone(), Limits::new(50, &client));
    tokio::spawn(imagestreams_stream_store::changefeed::run(
        declared.js.clone(),
        consumer,
        bucket.guard().clone(),
        Default::default(),
        tokio_util::sync::CancellationToken::new(),
    ));
    Ok(Store {
        reader: StreamReader::new(kv.clone(), client),
        bucket,
        kv,
        _nats: nats,
    })
}

/// The images of `tag`'s history, newest first, as a reader sees them.
async fn images(reader: &StreamReader, tag: &str) -> anyhow::Result<Vec<String>> {
    let stream = reader.get("ns", "app").await?;
    Ok(stream
        .status_tag(tag)
        .map(|list| list.items.iter().map(|i| i.image.clone()).collect())
        .unwrap_or_default())
}

#[tokio::test]
async fn a_write_cut_short_after_its_header_loses_nothing() -> anyhow::Result<()> {
    let s = store().await?;
    let mut record = stream_with(&[("a", 1), ("b", 2)]);
    s.bucket.create(&mut record).await?;
    let (before, revision) = s.bucket.read("ns", "app").await?.expect("created");

    // a writer commits a header moving b, and dies before writing b's key
    let mut after = before.stream.clone();
    history::apply_image(&mut after, "b", &event(3));
    let next = next_record(Some(&before), after);
    let (mut header, mut tags) = layout::split(&next);
    header.inline.insert("b".into(), tags.remove("b"));
    s.kv.update(
        subjects::stream_key("ns", "app"),
        header.encode()?,
        revision,
    )
    .await?;
    let b_key = subjects::tag_key("ns", "app", "b");
    let stale = s.kv.entry(&b_key).await?.expect("b's key");
    assert!(
        !String::from_utf8_lossy(&stale.value).contains(&event(3).image),
        "b's key still holds its old record"
    );

    // readers see the write whole
    assert_eq!(
        images(&s.reader, "b").await?,
        [event(3).image, event(2).image]
    );

    // the next write (a push to a) writes b's record to its key first
    s.bucket
        .modify_from(
            "ns",
            "app",
            Scope::Tags(&["a".to_owned()]),
            None,
            |current| {
                let (record, revision) = current.expect("stored");
                let mut stream = record.stream.clone();
                history::apply_image(&mut stream, "a", &event(4));
                Ok::<_, imagestreams_stream_store::bucket::BucketError>(Plan::Update(
                    next_record(Some(&record), stream),
                    revision,
                ))
            },
        )
        .await?;
    let b = s.kv.entry(&b_key).await?.expect("b's key");
    assert!(String::from_utf8_lossy(&b.value).contains(&event(3).image));
    assert_eq!(
        images(&s.reader, "b").await?,
        [event(3).image, event(2).image]
    );
    assert_eq!(
        images(&s.reader, "a").await?,
        [event(4).image, event(1).image]
    );
    Ok(())
}

#[tokio::test]
async fn a_push_writes_the_header_and_its_own_tag_only() -> anyhow::Result<()> {
    let s = store().await?;
    let tags: Vec<(String, u8)> = (0..50).map(|i| (format!("t{i}"), i as u8)).collect();
    let named: Vec<(&str, u8)> = tags.iter().map(|(t, n)| (t.as_str(), *n)).collect();
    let mut record = stream_with(&named);
    s.bucket.create(&mut record).await?;
    let push = |tag: &'static str, n: u8| {
        let bucket = s.bucket.clone();
        async move {
            let mut loaded = Vec::new();
            bucket
                .modify_from(
                    "ns",
                    "app",
                    Scope::Tags(&[tag.to_owned()]),
                    None,
                    |current| {
                        let (record, revision) = current.expect("stored");
                        loaded = record
                            .stream
                            .status
                            .iter()
                            .flat_map(|s| s.tags.iter().map(|t| t.tag.clone()))
                            .collect();
                        let mut stream = record.stream.clone();
                        history::apply_image(&mut stream, tag, &event(n));
                        Ok::<_, imagestreams_stream_store::bucket::BucketError>(Plan::Update(
                            next_record(Some(&record), stream),
                            revision,
                        ))
                    },
                )
                .await?;
            anyhow::Ok(loaded)
        }
    };
    // the first write after the create also reads the create's 50 records
    // (its header carries them)
    push("t7", 99).await?;
    let mut bucket_stream = s.kv.stream.clone();
    let before = bucket_stream.info().await?.state.clone();
    let loaded = push("t8", 98).await?;
    assert_eq!(loaded, ["t7", "t8"], "its own tag and the last write's");
    let after = bucket_stream.info().await?.state.clone();
    assert_eq!(
        after.messages - before.messages,
        2,
        "the header and t8's record"
    );
    let stream = s.reader.get("ns", "app").await?;
    assert_eq!(stream.status.as_ref().map(|s| s.tags.len()), Some(50));
    assert_eq!(images(&s.reader, "t7").await?[0], event(99).image);
    assert_eq!(
        images(&s.reader, "t8").await?,
        [event(98).image, event(8).image]
    );
    assert_eq!(images(&s.reader, "t9").await?, [event(9).image]);
    Ok(())
}

#[tokio::test]
async fn a_deleted_streams_tags_never_join_a_new_one() -> anyhow::Result<()> {
    let s = store().await?;
    let mut old = stream_with(&[("x", 1)]);
    s.bucket.create(&mut old).await?;
    let (stored, revision) = s.bucket.read("ns", "app").await?.expect("created");
    // what a delete cut short before purging leaves: the old tag's key
    let leftover =
        s.kv.entry(subjects::tag_key("ns", "app", "x"))
            .await?
            .expect("x's key")
            .value;
    s.bucket.delete(&stored, revision).await?;
    s.kv.put(subjects::tag_key("ns", "app", "x"), leftover)
        .await?;

    let mut new = stream_with(&[("y", 2)]);
    s.bucket.create(&mut new).await?;
    let stream = s.reader.get("ns", "app").await?;
    let tags: Vec<_> = stream
        .status
        .iter()
        .flat_map(|s| s.tags.iter().map(|t| t.tag.clone()))
        .collect();
    assert_eq!(tags, ["y"]);
    Ok(())
}
