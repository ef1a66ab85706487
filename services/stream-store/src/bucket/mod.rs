//! The writer's side of the ImageStreams KV bucket: typed reads (whole
//! streams, or a header and some tags), create, compare-and-swap update and
//! delete of [`Record`]s, and the read-modify-write loop every writer
//! shares.
//!
//! A record is stored as a header and one tag record per tag (see
//! [`imagestreams_stream_store_api::layout`]). A write is a compare-and-swap of
//! the header carrying the tag records it changed; they are written to
//! their keys after it, or by the next write before its own header. A write
//! whose changes do not fit one header (an import of a big repository)
//! goes in parts, each a header listing the changes of its part, so readers
//! see a valid stream between them.

mod commit;

use std::{
    collections::{BTreeMap, BTreeSet},
    time::Duration,
};

use async_nats::jetstream::kv::{self, CreateErrorKind, UpdateErrorKind};
use bytes::Bytes;
use futures::{StreamExt as _, TryStreamExt as _};
use imagestreams_common::{
    error::ApiError, model::ImageStream, requests, subjects, telemetry::propagation,
};
use imagestreams_stream_store_api::{
    Record, RecordOp, StoredEntry, StreamReader, TagRecord, layout,
};

use crate::{history, lag::LagGuard, policies, writes};

/// How many times a read-modify-write is retried when another writer got in
/// between (a compare-and-swap conflict) before giving up.
pub const DEFAULT_MAX_ATTEMPTS: usize = 16;

/// Errors of the KV bucket.
#[derive(Debug, thiserror::Error)]
pub enum BucketError {
    /// `create` found the key taken.
    #[error("the key already exists")]
    AlreadyExists,
    /// A compare-and-swap found another revision than the expected one.
    #[error("the stored revision is not the expected one")]
    Conflict,
    /// NATS or JetStream failed or timed out.
    #[error("storage unavailable: {0}")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// A stored value could not be decoded, or a record encoded.
    #[error("bad record: {0}")]
    Record(#[source] ApiError),
    /// A header or a tag record would not fit in one KV value (or a stored
    /// one cannot be read back): writing it can never succeed as it is.
    #[error("{0}")]
    TooLarge(String),
}

impl BucketError {
    /// Whether retrying can never help: the stored or the new record is
    /// unreadable or too large.
    pub fn is_permanent(&self) -> bool {
        matches!(self, BucketError::Record(_) | BucketError::TooLarge(_))
    }
}

impl From<BucketError> for ApiError {
    fn from(error: BucketError) -> Self {
        match error {
            BucketError::Unavailable(e) => {
                ApiError::Unavailable(format!("storage unavailable: {e}"))
            }
            BucketError::Record(e) => e,
            BucketError::TooLarge(message) => ApiError::LimitExceeded(message),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

/// A stored record and the revision it was read or written at.
pub type Versioned = (Record, u64);

/// What one attempt of [`Bucket::modify`] decided to write.
#[derive(Debug)]
pub enum Plan {
    /// Create the key (it did not exist).
    Create(Record),
    /// Replace the record read at this revision.
    Update(Record, u64),
    /// Write nothing; return the record as read.
    Keep(Record, u64),
    /// Write nothing; there is nothing to return.
    Skip,
}

/// Which tags a read-modify-write reads.
#[derive(Debug, Clone, Copy)]
pub enum Scope<'a> {
    /// The whole stream.
    All,
    /// These tags and the spec tags that follow them (a push): the others
    /// stay as stored.
    Tags(&'a [String]),
}

/// What one stored value may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Items kept per tag's history (at least 1), the oldest dropped first.
    pub history: usize,
    /// The largest value written: the NATS server's `max_payload` less
    /// [`requests::ENVELOPE_BYTES`], so that the value can also be read back
    /// with its headers.
    pub value_bytes: usize,
    /// Of `value_bytes`, what only [`Bucket::unreserved`] writes may use: the
    /// room to note on a full stream why a push was dead-lettered.
    pub reserve_bytes: usize,
}

/// The default of [`Limits::reserve_bytes`].
pub const DEFAULT_RESERVE_BYTES: usize = 1024;

impl Limits {
    /// `history` items per tag, values sized for the server `nats` is
    /// connected to.
    pub fn new(history: usize, nats: &async_nats::Client) -> Self {
        Limits {
            history: history.max(1),
            value_bytes: requests::payload_limit(nats),
            reserve_bytes: DEFAULT_RESERVE_BYTES,
        }
    }

    fn header_bytes(&self) -> usize {
        self.value_bytes - self.reserve_bytes.min(self.value_bytes)
    }
}

/// The bucket of ImageStreams, one header per key [`subjects::stream_key`]
/// and one tag record per key [`subjects::tag_key`].
///
/// Every write waits for admission by the [`LagGuard`], so that writers never
/// outrun the changefeed by the bucket's history, and is fitted to the
/// [`Limits`] first ([`Bucket::encode`]).
#[derive(Clone, Debug)]
pub struct Bucket {
    kv: kv::Store,
    reader: StreamReader,
    guard: LagGuard,
    limits: Limits,
}

fn unavailable(e: impl std::error::Error + Send + Sync + 'static) -> BucketError {
    // async-nats reports a reply over the server's max_payload (a value
    // stored before limits were enforced) only in the error's text
    let text = e.to_string();
    if text.contains("max payload") {
        return BucketError::TooLarge(format!(
            "the stored stream is too large to be read back: {text}"
        ));
    }
    BucketError::Unavailable(Box::new(e))
}

fn read_failed(e: ApiError) -> BucketError {
    match e {
        ApiError::Unavailable(text) if text.contains("max payload") => BucketError::TooLarge(
            format!("the stored stream is too large to be read back: {text}"),
        ),
        ApiError::Unavailable(text) => BucketError::Unavailable(text.into()),
        other => BucketError::Record(other),
    }
}

/// A record encoded for the bucket: its header (without inline records)
/// and its tag records.
#[derive(Debug)]
pub struct Encoded {
    /// The header, as stored but for `inline`.
    pub header: Record,
    /// The tag records, by tag, with their values.
    pub tags: BTreeMap<String, (TagRecord, Bytes)>,
}

impl Bucket {
    /// The writer of `kv`, the [`subjects::BUCKET_STREAMS`] bucket, over
    /// `nats`, within `limits`.
    pub fn new(kv: kv::Store, nats: async_nats::Client, limits: Limits) -> Self {
        let guard = LagGuard::new(kv.stream.clone());
        let reader = StreamReader::new(kv.clone(), nats);
        Bucket {
            kv,
            reader,
            guard,
            limits,
        }
    }

    /// The same bucket whose writes may also use [`Limits::reserve_bytes`].
    pub fn unreserved(&self) -> Bucket {
        let mut bucket = self.clone();
        bucket.limits.reserve_bytes = 0;
        bucket
    }

    /// Fits `record` to the [`Limits`] and encodes its tag records: every
    /// tag keeps at most `history` items, and a tag record larger than a
    /// value loses its oldest items (never its current image); one whose
    /// current image alone is too large is [`BucketError::TooLarge`], naming
    /// the limit.
    pub fn encode(&self, record: &mut Record) -> Result<Encoded, BucketError> {
        history::prune(&mut record.stream, self.limits.history);
        let (header, tags) = layout::split(record);
        let mut encoded = BTreeMap::new();
        for (tag, mut tag_record) in tags {
            let value = self.encode_tag(record, &mut tag_record)?;
            encoded.insert(tag, (tag_record, value));
        }
        // what was trimmed shows in the record the caller keeps
        if let Some(status) = record.stream.status.as_mut() {
            for list in &mut status.tags {
                if let Some((trimmed, _)) = encoded.get(&list.tag) {
                    list.items.clone_from(&trimmed.list.items);
                }
            }
        }
        Ok(Encoded {
            header,
            tags: encoded,
        })
    }

    fn encode_tag(&self, record: &Record, tag: &mut TagRecord) -> Result<Bytes, BucketError> {
        let limit = self.limits.value_bytes;
        loop {
            let value = tag.encode().map_err(BucketError::Record)?;
            if value.len() <= limit {
                return Ok(value);
            }
            if tag.list.items.len() <= 1 {
                return Err(BucketError::TooLarge(format!(
                    "tag {:?} of image stream {}/{} would be stored as {} bytes, over the limit \
                     of {limit} bytes (the NATS server's max_payload of {} less {} for headers), \
                     even with its history cut to its current image",
                    tag.list.tag,
                    record.stream.metadata.namespace,
                    record.stream.metadata.name,
                    value.len(),
                    limit + requests::ENVELOPE_BYTES,
                    requests::ENVELOPE_BYTES,
                )));
            }
            tag.list.items.pop();
        }
    }

    /// Encodes a header, forgetting its oldest applied-event ids while it is
    /// over the limit (a redelivery older than those is still recognised by
    /// its history item), and refusing one over the limit without them.
    fn encode_header(&self, header: &mut Record) -> Result<Bytes, BucketError> {
        let limit = self.limits.header_bytes();
        let mut value = header.encode().map_err(BucketError::Record)?;
        while value.len() > limit && !header.applied.is_empty() {
            let excess = value.len() - limit;
            let mut freed = 0;
            while freed < excess {
                match header.applied.pop_front() {
                    Some(id) => freed += id.len() + 3,
                    None => break,
                }
            }
            value = header.encode().map_err(BucketError::Record)?;
        }
        if value.len() > limit {
            return Err(BucketError::TooLarge(format!(
                "image stream {}/{} would be stored with a header of {} bytes, over the limit of \
                 {limit} bytes (the NATS server's max_payload of {} less {} for headers and a \
                 reserve): its spec or conditions are too large",
                header.stream.metadata.namespace,
                header.stream.metadata.name,
                value.len(),
                self.limits.value_bytes + requests::ENVELOPE_BYTES,
                requests::ENVELOPE_BYTES + self.limits.reserve_bytes,
            )));
        }
        Ok(value)
    }

    /// The guard that keeps writes within reach of the changefeed.
    pub fn guard(&self) -> &LagGuard {
        &self.guard
    }

    async fn admit(&self) -> Result<(), BucketError> {
        self.guard
            .admit()
            .await
            .map_err(|e| BucketError::Unavailable(Box::new(e)))
    }

    /// The underlying KV store.
    pub fn kv(&self) -> &kv::Store {
        &self.kv
    }

    fn subject(&self, key: &str) -> String {
        format!("$KV.{}.{key}", self.kv.name)
    }

    /// The current record of `namespace/name`, every tag, and its revision;
    /// `None` when there is none (never written, or deleted).
    pub async fn read(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<Versioned>, BucketError> {
        let entry = self
            .reader
            .entry(namespace, name)
            .await
            .map_err(read_failed)?;
        let Some(entry) = entry else {
            return Ok(None);
        };
        let mut record = entry.decode_record().map_err(BucketError::Record)?;
        if let Some(last) = record.inline.keys().next_back() {
            // whether the inline records are on their keys yet (see
            // `write_inline`): the last one's key as it is now
            let key = self.subject(&subjects::tag_key(namespace, name, last));
            let found = self
                .reader
                .direct()
                .last(&[key], None)
                .await
                .map_err(read_failed)?;
            if let Some(found) = found.first() {
                record.tag_revisions.insert(last.clone(), found.sequence);
            }
        }
        Ok(Some((record, entry.revision)))
    }

    /// The current record of `namespace/name` with just `tags`, the spec
    /// tags that follow them (transitively) and the header's inline records
    /// in its status: a round trip or two whatever the number of other tags.
    pub async fn read_tags(
        &self,
        namespace: &str,
        name: &str,
        tags: &[String],
    ) -> Result<Option<Versioned>, BucketError> {
        let mut wanted: BTreeSet<String> = tags.iter().cloned().collect();
        loop {
            let Some((record, revision)) = self.read_some(namespace, name, &wanted).await? else {
                return Ok(None);
            };
            let mut closure = wanted.clone();
            // the header's inline records must be on their keys before the
            // next header: they are written in tag order, so the last one
            // on its key means all are; else all are read to be written
            if let Some(last) = record.inline.keys().next_back() {
                closure.insert(last.clone());
                let written = record
                    .tag_revisions
                    .get(last)
                    .is_some_and(|&at| at > revision);
                if wanted.contains(last) && !written {
                    closure.extend(record.inline.keys().cloned());
                }
            }
            if policies::watched(&record.stream, wanted.iter()) {
                return self.read(namespace, name).await;
            }
            let closure = with_followers(&record.stream, closure);
            if closure == wanted {
                return Ok(Some((record, revision)));
            }
            wanted = closure;
        }
    }

    async fn read_some(
        &self,
        namespace: &str,
        name: &str,
        tags: &BTreeSet<String>,
    ) -> Result<Option<Versioned>, BucketError> {
        let header_subject = self.subject(&subjects::stream_key(namespace, name));
        let mut wanted = vec![header_subject.clone()];
        wanted.extend(
            tags.iter()
                .map(|tag| self.subject(&subjects::tag_key(namespace, name, tag))),
        );
        let found = self
            .reader
            .direct()
            .last(&wanted, None)
            .await
            .map_err(read_failed)?;
        let header = match found.iter().find(|f| f.subject == header_subject) {
            Some(header) if !header.deleted => header,
            _ => return Ok(None),
        };
        let prefix = format!("$KV.{}.", self.kv.name);
        let tag_of = |subject: &str| match subject
            .strip_prefix(&prefix)
            .and_then(subjects::parse_bucket_key)
        {
            Some(subjects::BucketKey::Tag(_, _, tag)) => Some(tag),
            _ => None,
        };
        let mut entry = StoredEntry::new(header.value.clone(), header.sequence);
        // the header's own records are the stream's at its revision, on
        // their keys yet or not
        let inline = layout::inline_tags(&header.value).map_err(BucketError::Record)?;
        let mut ahead = Vec::new();
        for found in found.iter().filter(|f| f.subject != header_subject) {
            let Some(tag) = tag_of(&found.subject) else {
                continue;
            };
            // the revision a write of the key must expect
            entry.revisions.insert(tag.clone(), found.sequence);
            if found.sequence > header.sequence {
                // written after the header: the header carries it, else
                // read the key as of the header (a search back through the
                // stream that grows with its size, so only when needed)
                if !inline.contains(&tag) {
                    ahead.push(found.subject.clone());
                }
            } else if !found.deleted {
                entry.tags.insert(tag, found.value.clone());
            }
        }
        if !ahead.is_empty() {
            let committed = self
                .reader
                .direct()
                .last(&ahead, Some(header.sequence))
                .await
                .map_err(read_failed)?;
            for found in committed.into_iter().filter(|f| !f.deleted) {
                if let Some(tag) = tag_of(&found.subject) {
                    entry.tags.insert(tag, found.value);
                }
            }
        }
        let mut record = entry.decode_record().map_err(BucketError::Record)?;
        record.partial = Some(tags.clone());
        Ok(Some((record, entry.revision)))
    }

    /// Creates the stream of `record`, fitted to the limits
    /// ([`Self::encode`]); [`BucketError::AlreadyExists`] when taken.
    pub async fn create(&self, record: &mut Record) -> Result<u64, BucketError> {
        let encoded = self.encode(record)?;
        self.commit(None, record, encoded).await
    }

    /// Replaces the record `before` stored at `revision` with `record`,
    /// fitted to the limits ([`Self::encode`]): the header carries the tag
    /// records that changed. [`BucketError::Conflict`] when the stream is at
    /// another revision.
    pub async fn update(
        &self,
        before: &Record,
        record: &mut Record,
        revision: u64,
    ) -> Result<u64, BucketError> {
        let encoded = self.encode(record)?;
        record.tag_revisions.clone_from(&before.tag_revisions);
        self.commit(Some((before, revision)), record, encoded).await
    }

    /// Deletes the stream of `record` if it is still at `revision`, then its
    /// tag keys (a new stream of the same name never reads them: it has
    /// another uid).
    pub async fn delete(&self, record: &Record, revision: u64) -> Result<(), BucketError> {
        let (namespace, name) = (
            record.stream.metadata.namespace.as_str(),
            record.stream.metadata.name.as_str(),
        );
        self.admit().await?;
        self.kv
            .delete_expect_revision(subjects::stream_key(namespace, name), Some(revision))
            .await
            .map_err(|e| match e.kind() {
                UpdateErrorKind::WrongLastRevision => BucketError::Conflict,
                _ => unavailable(e),
            })?;
        let filter = self.subject(&subjects::stream_tag_keys(namespace, name));
        if let Err(error) = self.kv.stream.purge().filter(filter).await {
            tracing::warn!(error = imagestreams_common::error::chain(&error), %namespace, %name, "cannot purge a deleted stream's tags");
        }
        Ok(())
    }

    /// Read-modify-write of `namespace/name`: reads the current record, asks
    /// `decide` what to write, and writes it with compare-and-swap, starting
    /// over when another writer got in between. Returns the record written
    /// (or kept) and its revision; `None` when `decide` skipped.
    pub async fn modify<E, F>(
        &self,
        namespace: &str,
        name: &str,
        decide: F,
    ) -> Result<Option<Versioned>, E>
    where
        E: From<BucketError>,
        F: FnMut(Option<Versioned>) -> Result<Plan, E>,
    {
        self.modify_from(namespace, name, Scope::All, None, decide)
            .await
    }

    /// [`modify`](Self::modify) of the tags `scope` names, starting from
    /// `hint` (the record as this process last wrote it) instead of reading;
    /// a stale hint only costs a failed compare-and-swap and a read, and a
    /// hint without the tags of `scope` is not used.
    pub async fn modify_from<E, F>(
        &self,
        namespace: &str,
        name: &str,
        scope: Scope<'_>,
        mut hint: Option<Versioned>,
        mut decide: F,
    ) -> Result<Option<Versioned>, E>
    where
        E: From<BucketError>,
        F: FnMut(Option<Versioned>) -> Result<Plan, E>,
    {
        if hint
            .as_ref()
            .is_some_and(|(record, _)| !covers(record, scope))
        {
            hint = None;
        }
        let mut backoff = Duration::from_millis(1);
        for _ in 0..DEFAULT_MAX_ATTEMPTS {
            let hinted = hint.is_some();
            let current = match hint.take() {
                Some(hint) => Some(hint),
                None => match scope {
                    Scope::All => self.read(namespace, name).await?,
                    Scope::Tags(tags) => self.read_tags(namespace, name, tags).await?,
                },
            };
            let before = current.as_ref().map(|(record, _)| record.clone());
            let written = match decide(current)? {
                Plan::Skip => return Ok(None),
                Plan::Keep(record, revision) => return Ok(Some((record, revision))),
                Plan::Create(mut record) => self.create(&mut record).await.map(|r| (record, r)),
                Plan::Update(mut record, revision) => {
                    let before = before
                        .unwrap_or_else(|| Record::created(ImageStream::new(namespace, name)));
                    record.partial.clone_from(&before.partial);
                    self.update(&before, &mut record, revision)
                        .await
                        .map(|r| (record, r))
                }
            };
            match written {
                Ok((mut record, revision)) => {
                    record.stream.metadata.resource_version = revision.to_string();
                    return Ok(Some((record, revision)));
                }
                Err(BucketError::AlreadyExists | BucketError::Conflict) if hinted => {}
                Err(BucketError::AlreadyExists | BucketError::Conflict) => {
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_millis(50));
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(BucketError::Unavailable(
            format!(
                "{namespace}/{name} kept changing; gave up after {DEFAULT_MAX_ATTEMPTS} attempts"
            )
            .into(),
        )
        .into())
    }
}

/// Whether `record` holds every tag `scope` names, and the spec tags that
/// follow them.
fn covers(record: &Record, scope: Scope<'_>) -> bool {
    match (&record.partial, scope) {
        (None, _) => true,
        (Some(_), Scope::All) => false,
        (Some(loaded), Scope::Tags(tags)) => {
            !policies::watched(&record.stream, tags.iter())
                && with_followers(&record.stream, tags.iter().cloned().collect()).is_subset(loaded)
        }
    }
}

/// `tags` and the spec tags of `stream` that follow them, transitively.
fn with_followers(stream: &ImageStream, mut tags: BTreeSet<String>) -> BTreeSet<String> {
    let mut queue: Vec<String> = tags.iter().cloned().collect();
    while let Some(tag) = queue.pop() {
        for follower in history::followers(stream, &tag) {
            if tags.insert(follower.clone()) {
                queue.push(follower);
            }
        }
    }
    tags
}

/// The record that follows `before` (`None` for a new stream) once `after`
/// is written: `op`, the remembered event ids carried over, and `change`
/// holding the tags whose current image moved (none: `None`) and the current
/// span's `traceparent`, which the changefeed's `TagsChanged` continues.
///
/// When the write holds the whole stream, its policy tags move to what their
/// policies choose first ([`policies::apply`]).
pub fn next_record(before: Option<&Record>, mut after: ImageStream) -> Record {
    if before.is_none_or(|r| r.partial.is_none()) {
        policies::apply(&mut after, &writes::timestamp(chrono::Utc::now()));
    }
    let tags = history::tag_changes(before.map(|r| &r.stream), &after);
    // the revision is the KV's, never stored (and encoding skips a copy)
    after.metadata.resource_version.clear();
    Record {
        partial: before.and_then(|r| r.partial.clone()),
        inline: BTreeMap::new(),
        tag_revisions: before.map(|r| r.tag_revisions.clone()).unwrap_or_default(),
        op: if before.is_some() {
            RecordOp::Updated
        } else {
            RecordOp::Created
        },
        applied: before.map(|r| r.applied.clone()).unwrap_or_default(),
        pushed_at: before.map(|r| r.pushed_at.clone()).unwrap_or_default(),
        change: (!tags.is_empty()).then(|| imagestreams_stream_store_api::Change {
            // to the microsecond, unlike the model's times (`now`): changes
            // within one second keep their order in time (`history --at`)
            time: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            tags,
            traceparent: propagation::traceparent(),
            cause: None,
        }),
        stream: after,
    }
}

#[cfg(test)]
mod tests {
    use imagestreams_common::model::TagEvent;
    use imagestreams_stream_store_api::APPLIED_EVENTS_KEPT;

    use super::*;

    fn digest(n: u8) -> String {
        format!("sha256:{}", format!("{n:02x}").repeat(32))
    }

    fn stream() -> ImageStream {
        let mut s = ImageStream::new("ns1", "app");
        s.metadata.generation = 1;
        s.metadata.uid = "u1".into();
        s
    }

    #[test]
    fn next_record_carries_ids_and_lists_the_moved_tags() {
        let mut first = next_record(None, stream());
        assert_eq!(first.op, RecordOp::Created);
        assert!(
            first.change.is_none(),
            "a new stream without images changes no tag"
        );
        first.remember_applied("e1");
        first.stream.metadata.resource_version = "7".into();

        let mut after = first.stream.clone();
        history::apply_image(
            &mut after,
            "latest",
            &TagEvent {
                created: "2025-01-01T00:00:01Z".into(),
                docker_image_reference: format!("r/ns1/app@{}", digest(1)),
                image: digest(1),
                generation: Some(1),
            },
        );
        let second = next_record(Some(&first), after);
        assert_eq!(second.op, RecordOp::Updated);
        assert!(second.has_applied("e1"));
        assert_eq!(second.stream.metadata.resource_version, "", "never stored");
        let change = second.change.expect("a change");
        let time = chrono::DateTime::parse_from_rfc3339(&change.time).expect("a time");
        let age = chrono::Utc::now() - time.with_timezone(&chrono::Utc);
        assert!(
            age.num_seconds() < 60,
            "the time of the write: {}",
            change.time
        );
        assert_eq!(change.tags.len(), 1);
        assert_eq!(change.tags[0].new_image, digest(1));
        let event = change.to_event(&second.stream, 8);
        assert_eq!(event.event_id, "u1:8");
        assert_eq!(event.resource_version, "8");
    }

    #[test]
    fn records_store_no_revision_and_remember_a_bounded_window() {
        let mut record = next_record(None, stream());
        for i in 0..APPLIED_EVENTS_KEPT + 10 {
            record.remember_applied(&format!("e{i}"));
        }
        assert!(!record.has_applied("e9"), "the oldest are forgotten");
        assert!(record.has_applied("e10"));
        assert_eq!(record.applied.len(), APPLIED_EVENTS_KEPT);
        record.stream.metadata.resource_version = "3".into();
        let encoded = record.encode().unwrap();
        assert!(!String::from_utf8_lossy(&encoded).contains("resourceVersion"));
        let decoded = Record::decode(&encoded, 42).unwrap();
        assert_eq!(decoded.stream.metadata.resource_version, "42");
        assert_eq!(decoded.applied, record.applied);
    }
}
