//! Push load for the cluster and chaos tests: numbered pushes spread over
//! streams and tags, the registry notification envelope of each, a sender
//! that retries like a registry, and the audit that counts what was lost,
//! doubled or put out of order.

use std::{
    collections::{BTreeMap, HashMap},
    time::Duration,
};

use async_nats::jetstream::{self, consumer::DeliverPolicy};
use futures::StreamExt as _;
use imagestreams_common::subjects;
use imagestreams_proto::v1 as proto;
use imagestreams_stream_store_api::StreamReader;
use prost::Message as _;

/// The registry time of push 0, in unix milliseconds; pushes are 1 ms apart.
const BASE_MILLIS: i64 = 1_800_000_000_000;

/// One push: where it goes, what it pushes, and its registry time (ms).
#[derive(Debug, Clone)]
pub struct Push {
    /// Its number, which orders pushes in time.
    pub index: usize,
    /// The namespace.
    pub namespace: String,
    /// The stream (`app-<n>`).
    pub stream: String,
    /// The tag (`t<n>`).
    pub tag: String,
    /// A digest no other push has.
    pub digest: String,
    /// The registry's time of the push, unix ms.
    pub millis: i64,
}

/// `count` pushes over `streams` streams of `tags` tags in `namespace`,
/// round robin, 1 ms apart (sub-second order that seconds alone would lose).
pub fn pushes(namespace: &str, count: usize, streams: usize, tags: usize) -> Vec<Push> {
    (0..count)
        .map(|index| {
            let stream = format!("app-{}", index % streams);
            let tag = format!("t{}", (index / streams) % tags);
            Push::numbered(namespace, index, &stream, &tag)
        })
        .collect()
}

impl Push {
    /// Push number `index` to `namespace/stream:tag`: a digest of its own,
    /// and a registry time `index` ms after push 0's.
    pub fn numbered(namespace: &str, index: usize, stream: &str, tag: &str) -> Push {
        Push {
            index,
            namespace: namespace.to_owned(),
            stream: stream.to_owned(),
            tag: tag.to_owned(),
            digest: format!("sha256:{:064x}", 0xc1u64 << 32 | index as u64),
            millis: BASE_MILLIS + index as i64,
        }
    }

    /// The notification envelope distribution 2.8 sends for this push.
    pub fn envelope(&self) -> String {
        let time = chrono::DateTime::from_timestamp_millis(self.millis)
            .expect("a valid time")
            .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
        let repository = format!("{}/{}", self.namespace, self.stream);
        serde_json::json!({ "events": [{
            "id": format!("load-{}-{}", self.namespace, self.index),
            "timestamp": time,
            "action": "push",
            "target": {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "size": 527,
                "digest": self.digest,
                "length": 527,
                "repository": repository,
                "url": format!("http://registry:5000/v2/{repository}/manifests/{}", self.digest),
                "tag": self.tag,
            },
            "request": {"id": format!("r{}", self.index), "addr": "127.0.0.1:40000",
                        "host": "registry:5000", "method": "PUT", "useragent": "skopeo/1.9.3"},
            "actor": {"name": "load"},
            "source": {"addr": "registry:5000", "instanceID": "load"}
        }]})
        .to_string()
    }
}

/// POSTs `push` to the watchers, starting with `watchers[push.index %
/// len]` and moving on to the next after each failure, until one answers
/// 200 or `retry_for` has passed, as a registry retries its endpoint.
/// Returns how many attempts failed.
pub async fn notify(
    http: &reqwest::Client,
    watchers: &[String],
    token: &str,
    push: &Push,
    retry_for: Duration,
) -> anyhow::Result<u32> {
    let deadline = tokio::time::Instant::now() + retry_for;
    let mut failed = 0;
    loop {
        let url = &watchers[(push.index + failed as usize) % watchers.len()];
        let answer = http
            .post(url)
            .bearer_auth(token)
            .header(
                "content-type",
                "application/vnd.docker.distribution.events.v1+json",
            )
            .timeout(Duration::from_secs(10))
            .body(push.envelope())
            .send()
            .await;
        match answer {
            Ok(r) if r.status().is_success() => return Ok(failed),
            other if tokio::time::Instant::now() >= deadline => {
                anyhow::bail!("push {} never accepted: {other:?}", push.index)
            }
            _ => {
                failed += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// [`notify`]s every push of `batch`, `in_flight` at a time (in order of completion); the failed attempts
/// in all, or the first push never accepted.
pub async fn notify_all(
    http: &reqwest::Client,
    watchers: &[String],
    token: &str,
    batch: &[Push],
    in_flight: usize,
    retry_for: Duration,
) -> anyhow::Result<u32> {
    futures::stream::iter(batch)
        .map(|push| notify(http, watchers, token, push, retry_for))
        .buffered(in_flight)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .sum()
}

/// What the audit found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Audit {
    /// Pushed digests missing from their tag's history.
    pub lost: usize,
    /// History entries beyond the first of a digest.
    pub duplicated: usize,
    /// Tags whose history is not exactly the pushes, newest first.
    pub out_of_order: usize,
    /// `TagsChanged` events stored.
    pub events: u64,
    /// Changes of a tag to an image it had moved to before.
    pub events_duplicated: usize,
    /// Changes that move a tag back to an older push (by revision).
    pub events_backwards: usize,
    /// Tags whose last change (by revision) is not their final image.
    pub events_missing_last: usize,
    /// Changes whose old image is not the new image of the change before
    /// (by revision) of the same tag: a change in between was not stored.
    pub gaps: usize,
}

impl Audit {
    /// Whether nothing was lost, doubled or misordered, and no tag's chain of
    /// `TagsChanged` has a gap.
    pub fn is_clean(&self) -> bool {
        *self
            == Audit {
                events: self.events,
                ..Audit::default()
            }
    }
}

impl std::fmt::Display for Audit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "lost {}, duplicated {}, out of order {}; TagsChanged {} stored, duplicated {}, \
             backwards {}, tags missing their last change {}, gaps {}",
            self.lost,
            self.duplicated,
            self.out_of_order,
            self.events,
            self.events_duplicated,
            self.events_backwards,
            self.events_missing_last,
            self.gaps
        )
    }
}

/// The expected histories: per (stream, tag), the digests newest first.
fn expected(pushes: &[Push]) -> BTreeMap<(String, String), Vec<String>> {
    let mut expected: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for push in pushes {
        expected
            .entry((push.stream.clone(), push.tag.clone()))
            .or_default()
            .insert(0, push.digest.clone());
    }
    expected
}

/// What went wrong with each tag whose history is not its pushes, for a
/// failed audit to print: the push numbers missing from the history, the
/// tag's `TagsChanged` chain (revision: old → new push number, `GAP` where a
/// change does not start where the one before ended), and the revisions its
/// tag key and its stream's header went through in the bucket (each tag
/// record's newest push number and length): where a record went back.
pub async fn explain(js: &jetstream::Context, pushes: &[Push]) -> anyhow::Result<String> {
    use std::fmt::Write as _;
    let kv = js.get_key_value(subjects::BUCKET_STREAMS).await?;
    let reader = StreamReader::new(kv.clone(), js.client());
    let expected = expected(pushes);
    let found = histories(&reader, pushes).await;
    let (moved, _) = changes(js, pushes).await?;
    let index_of: HashMap<&str, usize> = pushes
        .iter()
        .map(|p| (p.digest.as_str(), p.index))
        .collect();
    let number = |digest: &str| {
        index_of.get(digest).map_or_else(
            || format!("?{}", digest.get(..19).unwrap_or(digest)),
            |i| i.to_string(),
        )
    };
    let namespace = pushes
        .first()
        .map(|p| p.namespace.clone())
        .unwrap_or_default();
    let mut out = String::new();
    for ((stream, tag), want) in &expected {
        let got = found
            .get(&(stream.clone(), tag.clone()))
            .cloned()
            .unwrap_or_default();
        if &got == want {
            continue;
        }
        let missing: Vec<String> = want
            .iter()
            .filter(|d| !got.contains(d))
            .map(|d| number(d))
            .collect();
        writeln!(out, "{stream}:{tag}: missing pushes {missing:?}")?;
        writeln!(
            out,
            "  history (newest first): {:?}",
            got.iter().map(|d| number(d)).collect::<Vec<_>>()
        )?;
        let mut chain = moved
            .get(&(stream.clone(), tag.clone()))
            .cloned()
            .unwrap_or_default();
        chain.sort();
        let mut previous: Option<String> = None;
        for (revision, old, new) in &chain {
            let gap = previous.as_ref().is_some_and(|p| p != old);
            writeln!(
                out,
                "  TagsChanged @{revision}: {} -> {}{}",
                if old.is_empty() {
                    "-".into()
                } else {
                    number(old)
                },
                number(new),
                if gap { "  GAP" } else { "" }
            )?;
            previous = Some(new.clone());
        }
        for (what, key) in [
            ("tag key", subjects::tag_key(&namespace, stream, tag)),
            ("header", subjects::stream_key(&namespace, stream)),
        ] {
            let mut history = kv.history(&key).await?;
            while let Some(entry) = history.next().await {
                let entry = entry?;
                let value: serde_json::Value =
                    serde_json::from_slice(&entry.value).unwrap_or_default();
                let items = if what == "header" {
                    value["inline"][tag]["list"]["items"].as_array().cloned()
                } else {
                    value["list"]["items"].as_array().cloned()
                };
                let summary = items.map_or_else(
                    || "-".to_owned(),
                    |items| {
                        format!(
                            "{} items, newest {}",
                            items.len(),
                            items
                                .first()
                                .and_then(|i| i["image"].as_str())
                                .map_or_else(|| "-".into(), number)
                        )
                    },
                );
                writeln!(
                    out,
                    "  {what} @{} {:?}: {summary}",
                    entry.revision, entry.operation
                )?;
            }
        }
    }
    Ok(out)
}

/// The stored histories of the streams `pushes` went to.
async fn histories(
    reader: &StreamReader,
    pushes: &[Push],
) -> BTreeMap<(String, String), Vec<String>> {
    let mut names: Vec<(&str, &str)> = pushes
        .iter()
        .map(|p| (p.namespace.as_str(), p.stream.as_str()))
        .collect();
    names.sort_unstable();
    names.dedup();
    let mut found = BTreeMap::new();
    for (namespace, name) in names {
        if let Ok(stream) = reader.get(namespace, name).await {
            for tag in stream.status.iter().flat_map(|s| s.tags.iter()) {
                found.insert(
                    (name.to_owned(), tag.tag.clone()),
                    tag.items.iter().map(|i| i.image.clone()).collect(),
                );
            }
        }
    }
    found
}

/// Every message the JetStream stream `name` holds now, oldest first.
async fn stored_messages(
    js: &jetstream::Context,
    name: &str,
) -> anyhow::Result<Vec<jetstream::Message>> {
    let stream = js.get_stream(name).await?;
    let stored = stream.get_info().await?.state.messages;
    let consumer = stream
        .create_consumer(jetstream::consumer::pull::OrderedConfig {
            deliver_policy: DeliverPolicy::All,
            ..Default::default()
        })
        .await?;
    let mut messages = consumer.messages().await?.take(stored as usize);
    let mut all = Vec::with_capacity(stored as usize);
    while let Some(message) = tokio::time::timeout(Duration::from_secs(10), messages.next())
        .await?
        .transpose()?
    {
        all.push(message);
    }
    Ok(all)
}

/// The changes of one tag: (revision, old image, new image).
type Changes = Vec<(u64, String, String)>;

/// Per (stream, tag) of `pushes`' namespaces, the (revision, old image, new
/// image) of every stored `TagsChanged`, and how many events the stream holds.
async fn changes(
    js: &jetstream::Context,
    pushes: &[Push],
) -> anyhow::Result<(BTreeMap<(String, String), Changes>, u64)> {
    let messages = stored_messages(js, subjects::STREAM_TAGS).await?;
    let stored = messages.len() as u64;
    let namespaces: Vec<&str> = pushes.iter().map(|p| p.namespace.as_str()).collect();
    let mut moved: BTreeMap<(String, String), Changes> = BTreeMap::new();
    for message in messages {
        let event = proto::TagsChanged::decode(message.payload.clone())?;
        if !namespaces.contains(&event.namespace.as_str()) {
            continue;
        }
        for change in event.changes {
            moved
                .entry((event.stream.clone(), change.tag))
                .or_default()
                .push((
                    event.resource_version.parse()?,
                    change.old_image,
                    change.new_image,
                ));
        }
    }
    Ok((moved, stored))
}

/// How many times each `Nats-Msg-Id` is stored in the JetStream stream `name`.
pub async fn stored_message_ids(
    js: &jetstream::Context,
    name: &str,
) -> anyhow::Result<HashMap<String, usize>> {
    let mut ids: HashMap<String, usize> = HashMap::new();
    for message in stored_messages(js, name).await? {
        let id = message
            .headers
            .as_ref()
            .and_then(|h| h.get(async_nats::header::NATS_MESSAGE_ID))
            .map(|v| v.as_str().to_owned())
            .unwrap_or_default();
        *ids.entry(id).or_default() += 1;
    }
    Ok(ids)
}

/// Per (stream, tag) of `pushes`' namespaces, every image a stored `TagsChanged` made current, in
/// revision order, each once: what a trigger on that tag may fire for.
pub async fn current_images(
    js: &jetstream::Context,
    pushes: &[Push],
) -> anyhow::Result<BTreeMap<(String, String), Vec<String>>> {
    let (moved, _) = changes(js, pushes).await?;
    Ok(moved
        .into_iter()
        .map(|(key, mut changes)| {
            changes.sort();
            let mut images: Vec<String> = Vec::with_capacity(changes.len());
            for (_, _, image) in changes {
                if !images.contains(&image) {
                    images.push(image);
                }
            }
            (key, images)
        })
        .collect())
}

/// Waits until every tag holds at least as many entries as were pushed to
/// it, at most `timeout`; then audits histories and `TagsChanged`.
pub async fn audit(
    js: &jetstream::Context,
    pushes: &[Push],
    timeout: Duration,
) -> anyhow::Result<Audit> {
    let reader = StreamReader::new(
        js.get_key_value(subjects::BUCKET_STREAMS).await?,
        js.client(),
    );
    let expected = expected(pushes);
    let _ = crate::wait_for(
        || async {
            let found = histories(&reader, pushes).await;
            expected
                .iter()
                .all(|(k, v)| found.get(k).is_some_and(|f| f.len() >= v.len()))
        },
        timeout,
    )
    .await;
    let found = histories(&reader, pushes).await;
    let mut audit = Audit::default();
    for (key, want) in &expected {
        let got = found.get(key).cloned().unwrap_or_default();
        let mut counts: HashMap<&str, usize> = HashMap::new();
        for digest in &got {
            *counts.entry(digest).or_default() += 1;
        }
        audit.lost += want
            .iter()
            .filter(|d| !counts.contains_key(d.as_str()))
            .count();
        audit.duplicated += counts.values().map(|n| n - 1).sum::<usize>();
        if &got != want {
            audit.out_of_order += 1;
        }
    }

    // TagsChanged by tag and revision: replicas may store them out of
    // revision order, which consumers see by `resourceVersion`. A killed
    // changefeed's unacked messages come back after the ack wait, so the
    // last changes may come after the histories: wait for them too.
    let deadline = tokio::time::Instant::now() + timeout;
    let (mut moved, mut stored) = changes(js, pushes).await?;
    while tokio::time::Instant::now() < deadline
        && expected.iter().any(|(key, want)| {
            moved
                .get(key)
                .and_then(|m| m.iter().max())
                .map(|(_, _, d)| d)
                != want.first()
        })
    {
        tokio::time::sleep(Duration::from_millis(500)).await;
        (moved, stored) = changes(js, pushes).await?;
    }
    audit.events = stored;
    let index_of: HashMap<&str, usize> = pushes
        .iter()
        .map(|p| (p.digest.as_str(), p.index))
        .collect();
    for (key, want) in &expected {
        let mut by_revision = moved.get(key).cloned().unwrap_or_default();
        by_revision.sort();
        let order: Vec<usize> = by_revision
            .iter()
            .filter_map(|(_, _, d)| index_of.get(d.as_str()).copied())
            .collect();
        let mut distinct = order.clone();
        distinct.sort_unstable();
        distinct.dedup();
        audit.events_duplicated += order.len() - distinct.len();
        // the later push wins: a tag never moves back to an older image
        audit.events_backwards += order.windows(2).filter(|w| w[1] < w[0]).count();
        if by_revision.last().map(|(_, _, d)| d) != want.first() {
            audit.events_missing_last += 1;
        }
        // each change starts where the one before ended (a repeat of the
        // same revision is a duplicate, counted above, not a gap)
        audit.gaps += by_revision
            .windows(2)
            .filter(|w| w[0].0 != w[1].0 && w[1].1 != w[0].2)
            .count();
    }
    Ok(audit)
}
