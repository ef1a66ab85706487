//! The stored form of an ImageStream (one JetStream KV entry per stream), the
//! read side every service may use (get, list, watch), and the client of the
//! stream-store's write API. Only stream-store writes the bucket.
//!
//! `metadata.resourceVersion` is the KV revision of the entry (the sequence of
//! its message in the bucket's stream); it is never stored inside the value.

use std::{collections::VecDeque, time::Duration};

use async_nats::jetstream::{
    self,
    consumer::{DeliverPolicy, pull::OrderedConfig},
    kv,
};
use bytes::Bytes;
use futures::{Stream, StreamExt, TryStreamExt};
use imagestreams_proto::v1 as proto;
use prost::Message as _;
use serde::{Deserialize, Serialize};

use crate::{error::ApiError, model::ImageStream, subjects};

/// How many applied event ids a record remembers to drop redeliveries.
pub const APPLIED_EVENTS_KEPT: usize = 256;
/// How long a caller waits for the stream-store to answer a write.
pub const DEFAULT_STORE_TIMEOUT: Duration = Duration::from_secs(10);

/// How the revision that wrote a record came about.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RecordOp {
    /// The stream was created by this revision.
    Created,
    /// The stream existed and was changed.
    #[default]
    Updated,
}

/// One tag whose current image changed in a revision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TagChange {
    /// The tag.
    pub tag: String,
    /// The previous current image; empty when the tag is new.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub old_image: String,
    /// The new current image (a digest).
    pub new_image: String,
    /// The pinned pull spec of the new image.
    pub docker_image_reference: String,
    /// The generation of the new history item.
    pub generation: i64,
}

/// The tag changes one revision made: the source of its `TagsChanged` event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    /// When the change was made (RFC 3339).
    pub time: String,
    /// One entry per changed tag.
    pub tags: Vec<TagChange>,
}

impl Change {
    /// The `TagsChanged` event of this change, committed at `revision`.
    /// Its id `<uid>:<revision>` is deterministic, so a republish dedupes.
    pub fn to_event(&self, stream: &ImageStream, revision: u64) -> proto::TagsChanged {
        let time = chrono::DateTime::parse_from_rfc3339(&self.time)
            .ok()
            .map(|t| prost_types::Timestamp {
                seconds: t.timestamp(),
                nanos: t.timestamp_subsec_nanos() as i32,
            });
        proto::TagsChanged {
            event_id: format!("{}:{revision}", stream.metadata.uid),
            namespace: stream.metadata.namespace.clone(),
            stream: stream.metadata.name.clone(),
            uid: stream.metadata.uid.clone(),
            resource_version: revision.to_string(),
            time,
            changes: self
                .tags
                .iter()
                .map(|c| proto::TagChange {
                    tag: c.tag.clone(),
                    old_image: c.old_image.clone(),
                    new_image: c.new_image.clone(),
                    docker_image_reference: c.docker_image_reference.clone(),
                    generation: c.generation,
                })
                .collect(),
        }
    }
}

/// The value of one KV entry: the stream plus what the writer needs to stay
/// idempotent and to emit `TagsChanged` from the changefeed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// The stream, with an empty `resourceVersion`.
    pub stream: ImageStream,
    /// How this revision came about.
    #[serde(default)]
    pub op: RecordOp,
    /// The ids of the last [`APPLIED_EVENTS_KEPT`] events applied, oldest first.
    #[serde(default, skip_serializing_if = "VecDeque::is_empty")]
    pub applied: VecDeque<String>,
    /// The tag changes this revision made, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub change: Option<Change>,
}

impl Record {
    /// A record of a stream as created.
    pub fn created(stream: ImageStream) -> Record {
        Record {
            stream,
            op: RecordOp::Created,
            applied: VecDeque::new(),
            change: None,
        }
    }

    /// Decodes a KV value written at `revision`; the stream gets that revision
    /// as its `resourceVersion`.
    pub fn decode(value: &[u8], revision: u64) -> Result<Record, ApiError> {
        let mut record: Record = serde_json::from_slice(value)
            .map_err(|e| ApiError::Internal(format!("undecodable stored stream: {e}")))?;
        record.stream.metadata.resource_version = revision.to_string();
        Ok(record)
    }

    /// Encodes the record for the KV; the `resourceVersion` is not stored.
    pub fn encode(&self) -> Result<Bytes, ApiError> {
        let mut record = self.clone();
        record.stream.metadata.resource_version.clear();
        serde_json::to_vec(&record)
            .map(Bytes::from)
            .map_err(|e| ApiError::Internal(format!("cannot encode stream: {e}")))
    }

    /// Whether the event `id` was applied already.
    pub fn has_applied(&self, id: &str) -> bool {
        self.applied.iter().any(|a| a == id)
    }

    /// Remembers that event `id` was applied, forgetting the oldest beyond
    /// [`APPLIED_EVENTS_KEPT`].
    pub fn remember_applied(&mut self, id: &str) {
        if self.has_applied(id) {
            return;
        }
        self.applied.push_back(id.to_owned());
        while self.applied.len() > APPLIED_EVENTS_KEPT {
            self.applied.pop_front();
        }
    }
}

/// What happened to a stream, as a watch reports it.
#[derive(Debug, Clone, PartialEq)]
pub enum WatchEvent {
    /// The stream was created (or existed when a watch without revision began).
    Added(ImageStream),
    /// The stream was changed.
    Modified(ImageStream),
    /// The stream was deleted; only name, namespace and resourceVersion are set.
    Deleted(ImageStream),
}

impl WatchEvent {
    /// The stream the event is about.
    pub fn object(&self) -> &ImageStream {
        match self {
            WatchEvent::Added(s) | WatchEvent::Modified(s) | WatchEvent::Deleted(s) => s,
        }
    }
}

fn unavailable(e: impl std::fmt::Display) -> ApiError {
    ApiError::Unavailable(format!("storage unavailable: {e}"))
}

/// Reads streams from the KV bucket.
#[derive(Clone, Debug)]
pub struct StreamReader {
    kv: kv::Store,
}

impl StreamReader {
    /// A reader of `kv`, the [`subjects::BUCKET_STREAMS`] bucket.
    pub fn new(kv: kv::Store) -> Self {
        StreamReader { kv }
    }

    /// The current record of a stream, with its revision.
    pub async fn record(&self, namespace: &str, name: &str) -> Result<Option<(Record, u64)>, ApiError> {
        let entry = self
            .kv
            .entry(subjects::stream_key(namespace, name))
            .await
            .map_err(unavailable)?;
        match entry {
            Some(e) if e.operation == kv::Operation::Put => {
                Ok(Some((Record::decode(&e.value, e.revision)?, e.revision)))
            }
            _ => Ok(None),
        }
    }

    /// One stream.
    pub async fn get(&self, namespace: &str, name: &str) -> Result<ImageStream, ApiError> {
        self.record(namespace, name)
            .await?
            .map(|(r, _)| r.stream)
            .ok_or_else(|| ApiError::stream_not_found(namespace, name))
    }

    /// Every stream of `namespace` (all when `None`), sorted by namespace and
    /// name, and a revision the list is at least as new as.
    pub async fn list(&self, namespace: Option<&str>) -> Result<(Vec<ImageStream>, u64), ApiError> {
        let mut stream = self.kv.stream.clone();
        let info = stream.info().await.map_err(unavailable)?;
        let revision = info.state.last_sequence;
        let filter = match namespace {
            Some(ns) => subjects::namespace_keys(ns),
            None => ">".to_owned(),
        };
        let consumer = stream
            .create_consumer(OrderedConfig {
                filter_subject: format!("$KV.{}.{filter}", self.kv.name),
                deliver_policy: DeliverPolicy::LastPerSubject,
                ..Default::default()
            })
            .await
            .map_err(unavailable)?;
        let mut items = Vec::new();
        if consumer.cached_info().num_pending > 0 {
            let mut messages = consumer.messages().await.map_err(unavailable)?;
            while let Some(message) = messages.next().await {
                let message = message.map_err(unavailable)?;
                let info = message.info().map_err(unavailable)?;
                let pending = info.pending;
                let sequence = info.stream_sequence;
                if !is_delete(&message) {
                    items.push(Record::decode(&message.payload, sequence)?.stream);
                }
                if pending == 0 {
                    break;
                }
            }
        }
        items.sort_by(|a, b| {
            (&a.metadata.namespace, &a.metadata.name).cmp(&(&b.metadata.namespace, &b.metadata.name))
        });
        Ok((items, revision))
    }

    /// Changes of the streams of `namespace` (all when `None`). Without a
    /// revision it starts with `Added` for every current stream; with one, it
    /// delivers every change after it, or fails with `Gone` when the bucket no
    /// longer holds changes that old.
    pub async fn watch(
        &self,
        namespace: Option<&str>,
        name: Option<&str>,
        from_revision: Option<u64>,
    ) -> Result<impl Stream<Item = Result<WatchEvent, ApiError>> + Send + 'static, ApiError> {
        let filter = match (namespace, name) {
            (Some(ns), Some(name)) => subjects::stream_key(ns, name),
            (Some(ns), None) => subjects::namespace_keys(ns),
            _ => ">".to_owned(),
        };
        let watch = match from_revision {
            None => self.kv.watch_with_history(&filter).await,
            Some(revision) => {
                let mut stream = self.kv.stream.clone();
                let first_sequence = stream.info().await.map_err(unavailable)?.state.first_sequence;
                if revision + 1 < first_sequence {
                    return Err(ApiError::Gone(format!(
                        "too old resource version: {revision} (oldest available: {})",
                        first_sequence.saturating_sub(1)
                    )));
                }
                self.kv.watch_from_revision(&filter, revision + 1).await
            }
        }
        .map_err(unavailable)?;
        let initial = from_revision.is_none();
        Ok(watch.map_err(unavailable).and_then(move |entry| async move {
            event_of(entry, initial)
        }))
    }
}

fn is_delete(message: &jetstream::Message) -> bool {
    message
        .headers
        .as_ref()
        .and_then(|h| h.get("KV-Operation"))
        .is_some_and(|op| op.as_str() == "DEL" || op.as_str() == "PURGE")
}

fn event_of(entry: kv::Entry, initial: bool) -> Result<WatchEvent, ApiError> {
    match entry.operation {
        kv::Operation::Put => {
            let record = Record::decode(&entry.value, entry.revision)?;
            let added = record.op == RecordOp::Created || (initial && !entry.seen_current);
            Ok(if added {
                WatchEvent::Added(record.stream)
            } else {
                WatchEvent::Modified(record.stream)
            })
        }
        kv::Operation::Delete | kv::Operation::Purge => {
            let (namespace, name) = subjects::parse_stream_key(&entry.key)
                .ok_or_else(|| ApiError::Internal(format!("foreign key {}", entry.key)))?;
            let mut stream = ImageStream::new(namespace, name);
            stream.metadata.resource_version = entry.revision.to_string();
            Ok(WatchEvent::Deleted(stream))
        }
    }
}

/// The client of the stream-store's write API (NATS request-reply).
#[derive(Clone, Debug)]
pub struct StoreClient {
    nats: async_nats::Client,
    timeout: Duration,
}

impl StoreClient {
    /// A client over `nats`.
    pub fn new(nats: async_nats::Client) -> Self {
        StoreClient {
            nats,
            timeout: DEFAULT_STORE_TIMEOUT,
        }
    }

    /// Creates a stream.
    pub async fn create(&self, request: proto::CreateRequest) -> Result<ImageStream, ApiError> {
        self.call("create", &request).await
    }

    /// Replaces a stream's spec (compare-and-swap on its resourceVersion).
    pub async fn update(&self, request: proto::UpdateRequest) -> Result<ImageStream, ApiError> {
        self.call("update", &request).await
    }

    /// Deletes a stream; returns its last state.
    pub async fn delete(&self, request: proto::DeleteRequest) -> Result<ImageStream, ApiError> {
        self.call("delete", &request).await
    }

    /// Points tags at a source (`oc tag`); returns the changed destination stream.
    pub async fn tag(&self, request: proto::TagRequest) -> Result<ImageStream, ApiError> {
        self.call("tag", &request).await
    }

    async fn call(&self, op: &str, request: &impl prost::Message) -> Result<ImageStream, ApiError> {
        let subject = subjects::store_api(op);
        let reply = tokio::time::timeout(
            self.timeout,
            self.nats.request(subject, request.encode_to_vec().into()),
        )
        .await
        .map_err(|_| ApiError::Unavailable("stream-store did not answer in time".into()))?
        .map_err(|e| match e.kind() {
            async_nats::RequestErrorKind::NoResponders => {
                ApiError::Unavailable("stream-store is not running".into())
            }
            _ => ApiError::Unavailable(format!("stream-store unreachable: {e}")),
        })?;
        let reply = proto::StoreReply::decode(reply.payload)
            .map_err(|e| ApiError::Internal(format!("undecodable stream-store reply: {e}")))?;
        match reply.result {
            Some(proto::store_reply::Result::ImageStream(s)) => {
                ImageStream::try_from(s).map_err(ApiError::from)
            }
            Some(proto::store_reply::Result::Error(e)) => Err(e.into()),
            None => Err(ApiError::Internal("empty stream-store reply".into())),
        }
    }
}
