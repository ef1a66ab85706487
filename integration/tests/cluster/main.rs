//! Replicas on a NATS cluster (issue 9): three routed `nats-server -js`
//! processes, streams and KV buckets with 3 replicas, and two replicas of the
//! registry-watcher and the stream-store sharing the work. Notifications go
//! to both watchers, several pushes of one tag in flight at once, while one
//! NATS node is restarted. Every pushed digest must end in its tag's history
//! exactly once and in push order (the registry's time decides), and the
//! `TagsChanged` stream must hold each change once, never moving a tag back
//! to an older image (a push applied after a newer one is history, not a
//! change).

use std::{
    collections::{BTreeMap, HashMap},
    time::Duration,
};

use async_nats::jetstream::{self, consumer::DeliverPolicy};
use futures::{StreamExt as _, stream};
use imagestreams::cli::ServiceName;
use imagestreams_common::{config::Secret, store::StreamReader, subjects};
use imagestreams_integration::{NatsCluster, TestApp, wait_for};
use imagestreams_proto::v1 as proto;
use prost::Message as _;

/// The bearer token both watchers expect.
const TOKEN: &str = "cluster-token";
/// The namespace of every stream.
const NAMESPACE: &str = "cluster";
/// Streams × tags × pushes per tag.
const STREAMS: usize = 4;
const TAGS: usize = 2;
const PUSHES_PER_TAG: usize = 25;
/// Notifications in flight at once (so pushes of one tag overlap).
const IN_FLIGHT: usize = 8;
/// How long everything may take to land after the last notification.
const SETTLE: Duration = Duration::from_secs(60);
/// How long one notification is retried, as a registry would, while NATS
/// fails over.
const RETRY_FOR: Duration = Duration::from_secs(30);

/// One push: where it goes, what it pushes, and its registry time (ms).
#[derive(Debug, Clone)]
struct Push {
    index: usize,
    stream: String,
    tag: String,
    digest: String,
    millis: i64,
}

fn pushes() -> Vec<Push> {
    let base = 1_800_000_000_000_i64;
    (0..STREAMS * TAGS * PUSHES_PER_TAG)
        .map(|index| Push {
            index,
            stream: format!("app-{}", index % STREAMS),
            tag: format!("t{}", (index / STREAMS) % TAGS),
            digest: format!("sha256:{:064x}", 0xc1u64 << 32 | index as u64),
            // 1 ms apart: sub-second order that seconds alone would lose
            millis: base + index as i64,
        })
        .collect()
}

fn envelope(push: &Push) -> String {
    let time = chrono::DateTime::from_timestamp_millis(push.millis)
        .expect("a valid time")
        .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
    let repository = format!("{NAMESPACE}/{}", push.stream);
    serde_json::json!({ "events": [{
        "id": format!("cluster-{}", push.index),
        "timestamp": time,
        "action": "push",
        "target": {
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "size": 527,
            "digest": push.digest,
            "length": 527,
            "repository": repository,
            "url": format!("http://registry:5000/v2/{repository}/manifests/{}", push.digest),
            "tag": push.tag,
        },
        "request": {"id": format!("r{}", push.index), "addr": "127.0.0.1:40000",
                    "host": "registry:5000", "method": "PUT", "useragent": "skopeo/1.9.3"},
        "actor": {"name": "ci"},
        "source": {"addr": "registry:5000", "instanceID": "cluster"}
    }]})
    .to_string()
}

/// POSTs `push` to `url` until it is answered 200, as the registry retries.
async fn notify(http: &reqwest::Client, url: &str, push: &Push) -> anyhow::Result<u32> {
    let deadline = tokio::time::Instant::now() + RETRY_FOR;
    let mut refused = 0;
    loop {
        let answer = http
            .post(url)
            .bearer_auth(TOKEN)
            .header(
                "content-type",
                "application/vnd.docker.distribution.events.v1+json",
            )
            .body(envelope(push))
            .send()
            .await;
        match answer {
            Ok(r) if r.status().is_success() => return Ok(refused),
            other if tokio::time::Instant::now() >= deadline => {
                anyhow::bail!("push {} never accepted: {other:?}", push.index)
            }
            _ => {
                refused += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

#[tokio::test]
async fn replicas_on_a_three_node_cluster_lose_and_double_nothing() -> anyhow::Result<()> {
    let mut cluster = NatsCluster::start(3).await?;
    let services = [ServiceName::RegistryWatcher, ServiceName::StreamStore];
    let configure = |c: &mut imagestreams_common::config::Config| {
        c.nats.replicas = 3;
        c.registry_watcher.token = Some(Secret::new(TOKEN));
    };
    // the replicas connect through different nodes first
    let replicas = [
        TestApp::spawn_on(&cluster.urls_from(0), &services, configure).await?,
        TestApp::spawn_on(&cluster.urls_from(1), &services, configure).await?,
    ];
    let watchers: Vec<String> = replicas
        .iter()
        .map(|r| format!("http://{}/notifications", r.addr("notifications")))
        .collect();

    let all = pushes();
    let http = reqwest::Client::new();
    let (first, second) = all.split_at(all.len() / 2);
    let send = |batch: &[Push]| {
        let batch = batch.to_vec();
        let (http, watchers) = (&http, &watchers);
        async move {
            stream::iter(batch)
                .map(|push| async move {
                    notify(http, &watchers[push.index % watchers.len()], &push).await
                })
                .buffered(IN_FLIGHT)
                .collect::<Vec<_>>()
                .await
                .into_iter()
                .sum::<anyhow::Result<u32>>()
        }
    };
    let mut retried = send(first).await?;
    // one node goes down and comes back with the rest of the load
    cluster.nodes[2].stop().await?;
    retried += send(&second[..second.len() / 2]).await?;
    cluster.nodes[2].restart().await?;
    retried += send(&second[second.len() / 2..]).await?;

    // every stream's histories, read back through the cluster
    let client = async_nats::connect(cluster.urls().split(',').collect::<Vec<_>>()).await?;
    let js = jetstream::new(client);
    let reader = StreamReader::new(js.get_key_value(subjects::BUCKET_STREAMS).await?);
    let mut expected: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for push in &all {
        expected
            .entry((push.stream.clone(), push.tag.clone()))
            .or_default()
            .insert(0, push.digest.clone());
    }
    let histories = || async {
        let mut found: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
        for s in 0..STREAMS {
            let name = format!("app-{s}");
            if let Ok(stream) = reader.get(NAMESPACE, &name).await {
                for tag in stream.status.iter().flat_map(|st| st.tags.iter()) {
                    found.insert(
                        (name.clone(), tag.tag.clone()),
                        tag.items.iter().map(|i| i.image.clone()).collect(),
                    );
                }
            }
        }
        found
    };
    let complete = wait_for(
        || async {
            let found = histories().await;
            expected
                .iter()
                .all(|(k, v)| found.get(k).is_some_and(|f| f.len() >= v.len()))
        },
        SETTLE,
    )
    .await;
    let found = histories().await;
    let (mut lost, mut duplicated, mut misordered) = (0, 0, 0);
    for (key, want) in &expected {
        let got = found.get(key).cloned().unwrap_or_default();
        let mut counts: HashMap<&str, usize> = HashMap::new();
        for digest in &got {
            *counts.entry(digest).or_default() += 1;
        }
        lost += want
            .iter()
            .filter(|d| !counts.contains_key(d.as_str()))
            .count();
        duplicated += counts.values().map(|n| n - 1).sum::<usize>();
        if &got != want {
            misordered += 1;
        }
    }

    // the TagsChanged the cluster holds: one per push (each is a change)
    let tags_stream = js.get_stream(subjects::STREAM_TAGS).await?;
    let consumer = tags_stream
        .create_consumer(jetstream::consumer::pull::OrderedConfig {
            deliver_policy: DeliverPolicy::All,
            ..Default::default()
        })
        .await?;
    let held = tags_stream.get_info().await?.state.messages;
    let mut messages = consumer.messages().await?.take(held as usize);
    // per tag, the images it moved to, by the stream's revision: with two
    // changefeed replicas the events may be stored out of revision order,
    // which consumers see by `resourceVersion` (the trigger skips stale ones)
    let mut moved: BTreeMap<(String, String), Vec<(u64, String)>> = BTreeMap::new();
    while let Some(message) = tokio::time::timeout(Duration::from_secs(10), messages.next())
        .await?
        .transpose()?
    {
        let event = proto::TagsChanged::decode(message.payload.clone())?;
        for change in event.changes {
            moved
                .entry((event.stream.clone(), change.tag))
                .or_default()
                .push((event.resource_version.parse()?, change.new_image));
        }
    }
    let index_of: HashMap<&str, usize> = all.iter().map(|p| (p.digest.as_str(), p.index)).collect();
    let (mut events_duplicated, mut events_backwards, mut events_missing) = (0, 0, 0);
    for (key, want) in &expected {
        let mut by_revision = moved.get(key).cloned().unwrap_or_default();
        by_revision.sort();
        let images: Vec<String> = by_revision.into_iter().map(|(_, image)| image).collect();
        let order: Vec<usize> = images
            .iter()
            .filter_map(|d| index_of.get(d.as_str()).copied())
            .collect();
        let mut distinct = order.clone();
        distinct.sort_unstable();
        distinct.dedup();
        events_duplicated += order.len() - distinct.len();
        // the later push wins: a tag never moves back to an older image
        events_backwards += order.windows(2).filter(|w| w[1] < w[0]).count();
        // and its last event is the image it ends on
        if images.last() != want.first() {
            events_missing += 1;
        }
    }
    println!(
        "cluster: {} pushes over {} replicas while a NATS node restarted ({retried} POSTs retried): \
         histories lost {lost}, duplicated {duplicated}, out of order {misordered}; \
         TagsChanged {} held, duplicated {events_duplicated}, backwards {events_backwards}, \
         tags missing their last change {events_missing}",
        all.len(),
        replicas.len(),
        held
    );
    complete.map_err(|e| anyhow::anyhow!("{e}: histories incomplete"))?;
    assert_eq!((lost, duplicated, misordered), (0, 0, 0), "histories");
    assert_eq!(
        (events_duplicated, events_backwards, events_missing),
        (0, 0, 0),
        "TagsChanged"
    );
    for replica in replicas {
        replica.stop().await?;
    }
    Ok(())
}
