//! The writer's side of the ImageStreams KV bucket: typed reads, create,
//! compare-and-swap update and delete of [`Record`]s, and the
//! read-modify-write loop every writer shares.

use std::time::Duration;

use async_nats::jetstream::kv::{self, CreateErrorKind, UpdateErrorKind};
use bytes::Bytes;
use imagestreams_common::{
    error::ApiError,
    model::ImageStream,
    requests,
    store::{Record, RecordOp},
    subjects,
    telemetry::propagation,
};

use crate::{history, lag::LagGuard};

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
    /// The record would not fit in one KV value (or a stored one cannot be
    /// read back): writing it can never succeed as it is.
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

/// What one stored record may hold.
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
}

/// The bucket of ImageStreams, one [`Record`] per key [`subjects::stream_key`].
///
/// Every write waits for admission by the [`LagGuard`], so that writers never
/// outrun the changefeed by the bucket's history, and is fitted to the
/// [`Limits`] first ([`Bucket::encode`]).
#[derive(Clone, Debug)]
pub struct Bucket {
    kv: kv::Store,
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

fn key_of(stream: &ImageStream) -> String {
    subjects::stream_key(&stream.metadata.namespace, &stream.metadata.name)
}

impl Bucket {
    /// The writer of `kv`, the [`subjects::BUCKET_STREAMS`] bucket, within `limits`.
    pub fn new(kv: kv::Store, limits: Limits) -> Self {
        let guard = LagGuard::new(kv.stream.clone());
        Bucket { kv, guard, limits }
    }

    /// The same bucket whose writes may also use [`Limits::reserve_bytes`].
    pub fn unreserved(&self) -> Bucket {
        let mut bucket = self.clone();
        bucket.limits.reserve_bytes = 0;
        bucket
    }

    /// Fits `record` to the [`Limits`] and encodes it: every tag keeps at
    /// most `history` items; when the value is still larger than
    /// `value_bytes`, the oldest items of the longest histories go first
    /// (never a current image). A record whose current images alone exceed
    /// the limit is [`BucketError::TooLarge`], naming the limit.
    pub fn encode(&self, record: &mut Record) -> Result<Bytes, BucketError> {
        history::prune(&mut record.stream, self.limits.history);
        let limit =
            self.limits.value_bytes - self.limits.reserve_bytes.min(self.limits.value_bytes);
        loop {
            let value = record.encode().map_err(BucketError::Record)?;
            if value.len() <= limit {
                return Ok(value);
            }
            let excess = value.len() - limit;
            if history::trim_oldest(&mut record.stream, excess) == 0 {
                return Err(BucketError::TooLarge(format!(
                    "image stream {}/{} would be stored as {} bytes, over the limit of {limit} \
                     bytes (the NATS server's max_payload of {} less {} for headers and a \
                     reserve), even with every tag's history cut to its current image: it has \
                     too many tags",
                    record.stream.metadata.namespace,
                    record.stream.metadata.name,
                    value.len(),
                    self.limits.value_bytes + requests::ENVELOPE_BYTES,
                    requests::ENVELOPE_BYTES + self.limits.reserve_bytes,
                )));
            }
        }
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

    /// The current record of `namespace/name` and its revision, `None` when
    /// there is none (never written, or deleted).
    pub async fn read(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<Versioned>, BucketError> {
        let entry = self
            .kv
            .entry(subjects::stream_key(namespace, name))
            .await
            .map_err(unavailable)?;
        match entry {
            Some(e) if e.operation == kv::Operation::Put => {
                let record = Record::decode(&e.value, e.revision).map_err(BucketError::Record)?;
                Ok(Some((record, e.revision)))
            }
            _ => Ok(None),
        }
    }

    /// Creates the key of `record`, fitted to the limits ([`Self::encode`]);
    /// [`BucketError::AlreadyExists`] when taken.
    pub async fn create(&self, record: &mut Record) -> Result<u64, BucketError> {
        let value = self.encode(record)?;
        self.admit().await?;
        let revision = self
            .kv
            .create(key_of(&record.stream), value)
            .await
            .map_err(|e| match e.kind() {
                CreateErrorKind::AlreadyExists => BucketError::AlreadyExists,
                _ => unavailable(e),
            })?;
        self.guard.written(revision);
        Ok(revision)
    }

    /// Replaces the record stored at `revision` with `record`, fitted to the
    /// limits ([`Self::encode`]); [`BucketError::Conflict`] when the key is at
    /// another revision.
    pub async fn update(&self, record: &mut Record, revision: u64) -> Result<u64, BucketError> {
        let value = self.encode(record)?;
        self.admit().await?;
        let revision = self
            .kv
            .update(key_of(&record.stream), value, revision)
            .await
            .map_err(|e| match e.kind() {
                UpdateErrorKind::WrongLastRevision => BucketError::Conflict,
                _ => unavailable(e),
            })?;
        self.guard.written(revision);
        Ok(revision)
    }

    /// Deletes `namespace/name` if it is still at `revision`.
    pub async fn delete(
        &self,
        namespace: &str,
        name: &str,
        revision: u64,
    ) -> Result<(), BucketError> {
        self.admit().await?;
        self.kv
            .delete_expect_revision(subjects::stream_key(namespace, name), Some(revision))
            .await
            .map_err(|e| match e.kind() {
                UpdateErrorKind::WrongLastRevision => BucketError::Conflict,
                _ => unavailable(e),
            })
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
        self.modify_from(namespace, name, None, decide).await
    }

    /// [`modify`](Self::modify), starting from `hint` (the record as this
    /// process last wrote it) instead of reading; a stale hint only costs a
    /// failed compare-and-swap and a read.
    pub async fn modify_from<E, F>(
        &self,
        namespace: &str,
        name: &str,
        mut hint: Option<Versioned>,
        mut decide: F,
    ) -> Result<Option<Versioned>, E>
    where
        E: From<BucketError>,
        F: FnMut(Option<Versioned>) -> Result<Plan, E>,
    {
        let mut backoff = Duration::from_millis(1);
        for _ in 0..DEFAULT_MAX_ATTEMPTS {
            let hinted = hint.is_some();
            let current = match hint.take() {
                Some(hint) => Some(hint),
                None => self.read(namespace, name).await?,
            };
            let written = match decide(current)? {
                Plan::Skip => return Ok(None),
                Plan::Keep(record, revision) => return Ok(Some((record, revision))),
                Plan::Create(mut record) => self.create(&mut record).await.map(|r| (record, r)),
                Plan::Update(mut record, revision) => self
                    .update(&mut record, revision)
                    .await
                    .map(|r| (record, r)),
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

/// The record that follows `before` (`None` for a new stream) once `after`
/// is written: `op`, the remembered event ids carried over, and `change`
/// holding the tags whose current image moved (none: `None`) and the current
/// span's `traceparent`, which the changefeed's `TagsChanged` continues.
pub fn next_record(before: Option<&Record>, mut after: ImageStream, now: &str) -> Record {
    let tags = history::tag_changes(before.map(|r| &r.stream), &after);
    // the revision is the KV's, never stored (and encoding skips a copy)
    after.metadata.resource_version.clear();
    Record {
        op: if before.is_some() {
            RecordOp::Updated
        } else {
            RecordOp::Created
        },
        applied: before.map(|r| r.applied.clone()).unwrap_or_default(),
        pushed_at: before.map(|r| r.pushed_at.clone()).unwrap_or_default(),
        change: (!tags.is_empty()).then(|| imagestreams_common::store::Change {
            time: now.to_owned(),
            tags,
            traceparent: propagation::traceparent(),
        }),
        stream: after,
    }
}

#[cfg(test)]
mod tests {
    use imagestreams_common::{model::TagEvent, store::APPLIED_EVENTS_KEPT};

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
        let mut first = next_record(None, stream(), "2025-01-01T00:00:00Z");
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
        let second = next_record(Some(&first), after, "2025-01-01T00:00:02Z");
        assert_eq!(second.op, RecordOp::Updated);
        assert!(second.has_applied("e1"));
        assert_eq!(second.stream.metadata.resource_version, "", "never stored");
        let change = second.change.expect("a change");
        assert_eq!(change.time, "2025-01-01T00:00:02Z");
        assert_eq!(change.tags.len(), 1);
        assert_eq!(change.tags[0].new_image, digest(1));
        let event = change.to_event(&second.stream, 8);
        assert_eq!(event.event_id, "u1:8");
        assert_eq!(event.resource_version, "8");
    }

    #[test]
    fn records_store_no_revision_and_remember_a_bounded_window() {
        let mut record = next_record(None, stream(), "2025-01-01T00:00:00Z");
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
