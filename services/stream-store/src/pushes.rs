//! Applying `ImagePushed` events: the durable pull consumer
//! [`CONSUMER_NAME`] on [`subjects::STREAM_IMAGES`], and the read-modify-CAS
//! that records each event in its stream's tag history.
//!
//! - **Target.** `event.namespace/event.stream`. A missing stream is created
//!   on the fly for a registry notification, with
//!   `status.dockerImageRepository = <integrated registry>/<ns>/<name>`; an
//!   import for a missing stream is dropped with a warning.
//! - **Who may create.** With auth on ([`Applier::with_identities`]), a
//!   notification creates a missing stream only when its pusher
//!   (`actor.name`, an identity name once the registry's token service
//!   issues the registry's credentials) has `edit` in the namespace; otherwise
//!   the event is refused: logged, counted (`outcome="refused"`) and acked.
//!   Pushes to an existing stream are recorded whoever pushed, since the
//!   registry already let them through.
//! - **Who pushed.** A notification's pusher (`actor.name`) is recorded on
//!   the stream: [`ANNOTATION_CREATED_BY`] when the push created it, and
//!   [`ANNOTATION_LAST_PUSHED_BY`] on every push (also on the `ImagePushed`
//!   event itself, `actor`).
//! - **Idempotent.** The event id is remembered in the record, in the same
//!   compare-and-swap write as its effect, and a remembered id is a no-op.
//!   Every applied event is remembered, no-ops included, so that a late
//!   redelivery of an old event cannot add it on top of newer ones. The
//!   record keeps the last
//!   [`APPLIED_EVENTS_KEPT`](imagestreams_stream_store_api::APPLIED_EVENTS_KEPT) ids per stream;
//!   beyond them, a registry push is also recognised by its trace in the
//!   tag's history (the same image at the same registry time, to the
//!   nanosecond: [`history::holds`]), so a redelivery that arrives after
//!   hundreds of newer pushes (a replica SIGKILLed mid-batch, its events
//!   redelivered after the ack wait) still changes nothing.
//! - **History.** [`history::apply_image`]: the tag, then the tags that follow
//!   it. The write's `change` lists the tags whose current image moved; none
//!   means no `TagsChanged`.
//! - **Acks.** Only after the write committed (or the event proved a
//!   duplicate). An undecodable or invalid event is logged and `Term`inated.
//! - **No head-of-line blocking.** A transient failure (NATS unavailable,
//!   the changefeed behind, a stream that keeps changing) is retried in
//!   place [`RETRIES_IN_PLACE`] times with backoff (0.7 s in all), then the
//!   event is handed back (`Nak`) with a delay that doubles with each
//!   delivery up to 30 s ([`nats::redelivery_delay`]), and the worker goes on with
//!   the events behind it: one failing stream delays the others of its
//!   worker by 0.7 s at most. (A late event lands in its tag's history by
//!   its registry time, see **Order**.) A permanent failure (the stream's
//!   stored record is unreadable, or it would not fit in one KV value even
//!   with its histories cut to their current images: too many tags) is
//!   dead-lettered ([`deadletter`]): stored on
//!   `imagestreams.deadletters.events.<ns>.<name>` with its cause, counted
//!   (`outcome="dead_lettered"`), logged with the cause chain, noted on the
//!   stream's [`ANNOTATION_DEAD_LETTER`] (when the stream can still be
//!   written), and terminated.
//! - **Tracing.** Each event is handled in an `image_pushed` span, the child
//!   of the trace context its headers carry; the write records the span's
//!   `traceparent` for the changefeed's `TagsChanged`.
//! - **Order.** Events are dealt to [`DEFAULT_WORKERS`] workers by their
//!   subject (so by stream); each worker applies its events one by one, in
//!   the consumer's order. Streams progress in parallel, each in order. A
//!   pulled batch is read on while a full queue holds dealing back
//!   ([`deal`]): async-nats drops what a batch has not handed out 5 s past
//!   its expiry, and the server would send it again only after the ack
//!   wait, behind newer events of the same streams.
//!   Replicas share the consumer, so two pushes of one tag may be applied in
//!   either order; the registry's event time decides: a push older than the
//!   newest one applied to its tag ([`Record::pushed_at`](imagestreams_stream_store_api::Record::pushed_at),
//!   nanoseconds) goes into the history behind the current image and changes
//!   nothing current, so no `TagsChanged` and no trigger fires for it. The
//!   later push wins, as long as the registry's clock (one clock for a single
//!   registry; registry replicas need synchronised clocks) orders the pushes.
//! - **Shutdown.** Events are pulled in bounded batches and the batch in hand
//!   is applied to the end, so a restart neither waits for redeliveries nor
//!   applies events out of order. The changefeed stops after this consumer
//!   (see the service's `run`), so those last writes are not held back by
//!   the lag guard.

use std::{
    collections::VecDeque,
    hash::{Hash, Hasher},
    sync::{Arc, Mutex},
    time::Duration,
};

use async_nats::jetstream::{
    self, AckKind,
    consumer::{AckPolicy, DeliverPolicy, PullConsumer, pull},
};
use chrono::{DateTime, Utc};
use futures::StreamExt as _;
use imagestreams_common::{
    auth::{Verb, store::IdentityStore},
    bounded::Bounded,
    deadletter,
    error::{self, ApiError},
    metrics::EventCounters,
    model::{ImageStream, TagEvent, is_dns1123_label, is_valid_stream_name},
    nats,
    reference::{self, Reference},
    subjects::{self, Kind},
    telemetry::propagation,
};
use imagestreams_proto::v1 as proto;
use imagestreams_stream_store_api::{Cause, CauseKind};
use prost::Message as _;
use tokio::sync::mpsc;
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tracing::{Instrument as _, instrument};

use crate::{
    bucket::{Bucket, BucketError, Plan, Scope, Versioned, next_record},
    history, writes,
};

/// The durable consumer's name.
pub const CONSUMER_NAME: &str = "stream-store";
/// How many workers apply events in parallel (one stream always goes to the
/// same worker).
pub const DEFAULT_WORKERS: usize = 8;
/// How long JetStream waits for an ack before it redelivers.
pub const DEFAULT_ACK_WAIT: Duration = Duration::from_secs(10);
/// How long a failed pull waits before the next.
pub const DEFAULT_RETRY_DELAY: Duration = Duration::from_secs(1);
/// How many times a transient failure is retried in place, the events of
/// the same worker waiting behind it, before the event is handed back.
pub const RETRIES_IN_PLACE: u32 = 3;
/// The first in-place retry's delay, doubled at each retry.
const FIRST_RETRY_DELAY: Duration = Duration::from_millis(100);
/// How long an event handed back at shutdown waits before redelivery: longer
/// than a pull, so that it goes to the next consumer instance rather than
/// back to this one.
pub const DEFAULT_SHUTDOWN_REDELIVERY: Duration = Duration::from_millis(750);
/// How long one pull waits for events; it bounds how long shutdown waits for
/// the batch in hand.
pub const DEFAULT_PULL_EXPIRES: Duration = Duration::from_millis(500);
/// How many events each worker holds queued.
const QUEUE_LEN: usize = 64;
/// How many messages one pull asks for.
const BATCH: usize = 256;

/// Errors of applying one event.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The event can never be applied: it names an invalid stream, tag or digest.
    #[error("invalid ImagePushed {event_id:?}: {reason}")]
    Invalid {
        /// The event id.
        event_id: String,
        /// What is wrong.
        reason: String,
    },
    /// The bucket failed; retrying may help.
    #[error(transparent)]
    Bucket(#[from] BucketError),
    /// The identity store could not tell who may create the stream; retrying may help.
    #[error("cannot check who may create the stream: {0}")]
    Identities(#[source] ApiError),
}

/// Errors of declaring or running the consumer.
#[derive(Debug, thiserror::Error)]
pub enum ConsumerError {
    /// The stream or the durable consumer could not be declared.
    #[error(
        "cannot declare the {CONSUMER_NAME} consumer on {}",
        subjects::STREAM_IMAGES
    )]
    Declare(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The consumer's message stream could not be opened.
    #[error("cannot pull from the {CONSUMER_NAME} consumer")]
    Pull(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// What applying one event did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// The event id was applied before: nothing was written.
    Duplicate,
    /// An import for a stream that does not exist: nothing was written.
    Dropped,
    /// A push that would create a stream, by someone without `edit` in its
    /// namespace: nothing was written.
    Refused,
    /// The event was recorded at `revision`; `changed` when a tag's current
    /// image moved (a `TagsChanged` will follow).
    Committed {
        /// The new revision.
        revision: u64,
        /// Whether the write carries a change.
        changed: bool,
    },
}

impl Applied {
    /// The `outcome` label of a consumed event.
    pub fn outcome(&self) -> &'static str {
        match self {
            Applied::Duplicate => "duplicate",
            Applied::Dropped => "dropped",
            Applied::Refused => "refused",
            Applied::Committed { changed: true, .. } => "changed",
            Applied::Committed { changed: false, .. } => "unchanged",
        }
    }
}

/// How many streams' records the applier keeps in memory (least recently
/// written forgotten first): a few MiB for the streams pushed to at once.
const CACHED_RECORDS: usize = 2048;

/// Annotation of a stream created by a push: who pushed.
pub const ANNOTATION_CREATED_BY: &str = "imagestreams.io/created-by";

/// Annotation of a stream fed by pushes: who pushed last.
pub const ANNOTATION_LAST_PUSHED_BY: &str = "imagestreams.io/last-pushed-by";

/// Annotation of a stream with a push that could never be recorded: when,
/// which tag and image, why, and the subject its dead letter is stored on.
pub const ANNOTATION_DEAD_LETTER: &str = "imagestreams.io/dead-letter";

/// Records `actor` as the stream's last pusher, and as its creator when the push creates it.
fn record_pusher(stream: &mut ImageStream, actor: &str, creates: bool) {
    let annotations = &mut stream.metadata.annotations;
    if creates {
        annotations.insert(ANNOTATION_CREATED_BY.to_owned(), actor.to_owned());
    }
    annotations.insert(ANNOTATION_LAST_PUSHED_BY.to_owned(), actor.to_owned());
}

/// Applies `ImagePushed` events to the bucket.
///
/// It keeps the records it wrote last, by key, and starts the next
/// read-modify-write of the same stream from there: one KV round trip per
/// event instead of two. The compare-and-swap catches a stale entry (another
/// writer got in between), which then costs a read.
#[derive(Debug)]
pub struct Applier {
    bucket: Bucket,
    js: jetstream::Context,
    registry_host: String,
    cache: Mutex<Bounded<String, Versioned>>,
    events: EventCounters,
    identities: Option<Arc<IdentityStore>>,
}

/// The most tags a record kept as the next push's starting point may hold.
const HINT_MAX_TAGS: usize = 64;

/// The `kind` label of the events this module consumes.
const KIND: &str = "ImagePushed";

fn invalid(event: &proto::ImagePushed, reason: impl Into<String>) -> ApplyError {
    ApplyError::Invalid {
        event_id: event.event_id.clone(),
        reason: reason.into(),
    }
}

/// The history entry an event makes (its generation is the stream's, set
/// when applied), or why the event is invalid.
pub fn tag_event_of(event: &proto::ImagePushed) -> Result<TagEvent, ApplyError> {
    if event.event_id.is_empty() {
        return Err(invalid(event, "no event id"));
    }
    if !is_dns1123_label(&event.namespace) {
        return Err(invalid(
            event,
            format!("invalid namespace {:?}", event.namespace),
        ));
    }
    if !is_valid_stream_name(&event.stream) {
        return Err(invalid(
            event,
            format!("invalid stream name {:?}", event.stream),
        ));
    }
    if !reference::is_valid_tag(&event.tag) {
        return Err(invalid(event, format!("invalid tag {:?}", event.tag)));
    }
    reference::validate_digest(&event.digest)
        .map_err(|e| invalid(event, format!("invalid digest {:?}: {e}", event.digest)))?;
    let repository = match event.registry.as_str() {
        "" => event.repository.clone(),
        registry => format!("{registry}/{}", event.repository),
    };
    let pinned = format!("{repository}@{}", event.digest);
    Reference::parse_normalized(&pinned)
        .map_err(|e| invalid(event, format!("invalid repository {repository:?}: {e}")))?;
    let created = event
        .time
        .as_ref()
        .and_then(|t| DateTime::<Utc>::from_timestamp(t.seconds, t.nanos.max(0) as u32))
        .unwrap_or_else(Utc::now);
    Ok(TagEvent {
        // the registry's precision, so that pushes within one second keep
        // their order in the history (whole seconds print as OpenShift does)
        created: created.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
        docker_image_reference: pinned,
        image: event.digest.clone(),
        generation: None,
    })
}

/// The registry time of a push, in unix nanoseconds, when the event has one.
fn push_time(event: &proto::ImagePushed) -> Option<i64> {
    let time = event.time.as_ref()?;
    time.seconds
        .checked_mul(1_000_000_000)?
        .checked_add(i64::from(time.nanos.max(0)))
}

impl Applier {
    /// An applier writing to `bucket`; streams created on the fly are pulled
    /// from `registry_host`; dead letters go to `js`.
    pub fn new(bucket: Bucket, registry_host: impl Into<String>, js: jetstream::Context) -> Self {
        Applier {
            bucket,
            js,
            registry_host: registry_host.into(),
            cache: Mutex::new(Bounded::new(CACHED_RECORDS)),
            events: EventCounters::default(),
            identities: None,
        }
    }

    /// The same applier creating streams on push only for pushers with
    /// `edit` in the namespace, as `identities` tells (when auth is on).
    pub fn with_identities(mut self, identities: IdentityStore) -> Self {
        self.identities = identities.enabled().then(|| Arc::new(identities));
        self
    }

    /// The same applier counting consumed events in `events`.
    pub fn with_events(mut self, events: EventCounters) -> Self {
        self.events = events;
        self
    }

    /// Applies one event (see the module docs).
    #[instrument(skip_all, fields(event_id = %event.event_id, namespace = %event.namespace, stream = %event.stream, tag = %event.tag), err)]
    pub async fn apply(&self, event: &proto::ImagePushed) -> Result<Applied, ApplyError> {
        let template = tag_event_of(event)?;
        let pushed_at = push_time(event);
        let from_registry = event.source == proto::ImageSource::RegistryNotification as i32;
        let mut applied = Applied::Dropped;
        let key = subjects::stream_key(&event.namespace, &event.stream);
        let mut hint = self.cache().take(&key);
        let tags = [event.tag.clone()];
        // whether the pusher may create the stream: asked only when a push
        // would create one, then the write starts over with the answer
        let mut may_create = self.identities.is_none().then_some(true);
        let written = loop {
            let mut ask = false;
            let written = self
                .bucket
                .modify_from(
                    &event.namespace,
                    &event.stream,
                    Scope::Tags(&tags),
                    hint.take(),
                    |current| {
                        let now = writes::timestamp(Utc::now());
                        let (before, mut stream, revision) = match current {
                            Some((record, revision))
                                if record.has_applied(&event.event_id)
                                    || (pushed_at.is_some()
                                        && history::holds(
                                            &record.stream,
                                            &event.tag,
                                            &template,
                                        )) =>
                            {
                                applied = Applied::Duplicate;
                                return Ok::<_, ApplyError>(Plan::Keep(record, revision));
                            }
                            Some((record, revision)) => {
                                let stream = record.stream.clone();
                                (Some(record), stream, Some(revision))
                            }
                            None if from_registry && may_create.is_none() => {
                                ask = true;
                                return Ok(Plan::Skip);
                            }
                            None if from_registry && may_create == Some(false) => {
                                applied = Applied::Refused;
                                return Ok(Plan::Skip);
                            }
                            None if from_registry => {
                                let mut stream = ImageStream::new(&event.namespace, &event.stream);
                                let repository = format!(
                                    "{}/{}/{}",
                                    self.registry_host, event.namespace, event.stream
                                );
                                writes::initialize(
                                    &mut stream,
                                    uuid::Uuid::new_v4().to_string(),
                                    &now,
                                    repository,
                                );
                                (None, stream, None)
                            }
                            None => {
                                applied = Applied::Dropped;
                                return Ok(Plan::Skip);
                            }
                        };
                        if from_registry && !event.actor.is_empty() {
                            record_pusher(&mut stream, &event.actor, before.is_none());
                        }
                        let tag_event = TagEvent {
                            generation: Some(stream.metadata.generation),
                            ..template.clone()
                        };
                        let newest = before
                            .as_ref()
                            .and_then(|r| r.pushed_at.get(&event.tag).copied());
                        let older =
                            matches!((pushed_at, newest), (Some(at), Some(newest)) if at < newest);
                        if older {
                            history::add_older_tag_event(&mut stream, &event.tag, tag_event);
                        } else {
                            history::apply_image(&mut stream, &event.tag, &tag_event);
                        }
                        let mut record = next_record(before.as_ref(), stream).caused_by(
                            Cause::new(CauseKind::Push, &event.actor).with_event(&event.event_id),
                        );
                        record.remember_applied(&event.event_id);
                        if let (Some(at), false) = (pushed_at, older) {
                            record.pushed_at.insert(event.tag.clone(), at);
                        }
                        Ok(match revision {
                            Some(revision) => Plan::Update(record, revision),
                            None => Plan::Create(record),
                        })
                    },
                )
                .await?;
            match (ask, &self.identities) {
                (true, Some(identities)) => {
                    let allowed = identities
                        .may(&event.actor, &event.namespace, Verb::Create)
                        .await
                        .map_err(ApplyError::Identities)?;
                    may_create = Some(allowed);
                }
                _ => break written,
            }
        };
        match written {
            Some((record, revision)) => {
                if applied != Applied::Duplicate {
                    applied = Applied::Committed {
                        revision,
                        changed: record.change.is_some(),
                    };
                }
                // a record of many tags would make every push that starts
                // from it cost as much as the stream (cloned, compared,
                // encoded): such a stream's pushes read their own tag instead
                if record.stream.status.as_ref().map_or(0, |s| s.tags.len()) <= HINT_MAX_TAGS {
                    self.cache().insert(key, (record, revision));
                }
            }
            None if applied == Applied::Refused => tracing::warn!(
                actor = %event.actor,
                "push by someone without edit in the namespace: the stream is not created"
            ),
            None => tracing::warn!("import for a stream that does not exist: dropped"),
        }
        Ok(applied)
    }
}

impl Applier {
    fn cache(&self) -> std::sync::MutexGuard<'_, Bounded<String, Versioned>> {
        // a panic while holding the lock leaves a cache that is still valid
        self.cache
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Declares the durable consumer (idempotent).
pub async fn declare(js: &jetstream::Context) -> Result<PullConsumer, ConsumerError> {
    let declare = |e: Box<dyn std::error::Error + Send + Sync>| ConsumerError::Declare(e);
    let stream = js
        .get_stream(subjects::STREAM_IMAGES)
        .await
        .map_err(|e| declare(Box::new(e)))?;
    stream
        .get_or_create_consumer(
            CONSUMER_NAME,
            pull::Config {
                durable_name: Some(CONSUMER_NAME.to_owned()),
                description: Some(
                    "stream-store: applies ImagePushed to the tag histories".to_owned(),
                ),
                filter_subject: Kind::ImagesPushed.all_filter(),
                deliver_policy: DeliverPolicy::All,
                ack_policy: AckPolicy::Explicit,
                ack_wait: DEFAULT_ACK_WAIT,
                max_deliver: -1,
                max_ack_pending: (DEFAULT_WORKERS * QUEUE_LEN + BATCH) as i64 * 4,
                ..Default::default()
            },
        )
        .await
        .map_err(|e| declare(Box::new(e)))
}

fn shard_of(message: &jetstream::Message, shards: usize) -> usize {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    message.subject.as_str().hash(&mut hasher);
    (hasher.finish() % shards as u64) as usize
}

async fn settle(message: &jetstream::Message, kind: AckKind) {
    if let Err(error) = message.ack_with(kind).await {
        tracing::warn!(error = error::chain(&*error), subject = %message.subject, "cannot acknowledge");
    }
}

/// Handles one message to the end: apply, then ack, term, dead-letter or
/// hand back (see the module docs' **No head-of-line blocking**).
async fn handle(applier: &Applier, message: jetstream::Message, shutdown: &CancellationToken) {
    let event = match proto::ImagePushed::decode(message.payload.clone()) {
        Ok(event) => event,
        Err(error) => {
            tracing::warn!(error = error::chain(&error), subject = %message.subject, "undecodable ImagePushed: terminated");
            applier.events.consumed(KIND, "invalid");
            return settle(&message, AckKind::Term).await;
        }
    };
    let mut delay = FIRST_RETRY_DELAY;
    for attempt in 0.. {
        let error = match applier.apply(&event).await {
            Ok(applied) => {
                tracing::debug!(event_id = %event.event_id, ?applied, "applied");
                applier.events.consumed(KIND, applied.outcome());
                return settle(&message, AckKind::Ack).await;
            }
            Err(error @ ApplyError::Invalid { .. }) => {
                tracing::warn!(
                    error = error::chain(&error),
                    "invalid ImagePushed: terminated"
                );
                applier.events.consumed(KIND, "invalid");
                return settle(&message, AckKind::Term).await;
            }
            Err(ApplyError::Bucket(error)) if error.is_permanent() => {
                return applier.dead_letter(&message, &event, &error).await;
            }
            Err(error) => error,
        };
        applier.events.consumed(KIND, "retry");
        if attempt >= RETRIES_IN_PLACE {
            let delivered = message.info().map_or(1, |info| info.delivered);
            let wait = nats::redelivery_delay(delivered);
            tracing::warn!(error = error::chain(&error), event_id = %event.event_id, ?wait, "cannot apply ImagePushed yet, handed back");
            return settle(&message, AckKind::Nak(Some(wait))).await;
        }
        tracing::debug!(error = error::chain(&error), event_id = %event.event_id, "cannot apply ImagePushed yet, retrying");
        // an attempt may wait for the changefeed for seconds: keep the message ours
        settle(&message, AckKind::Progress).await;
        tokio::select! {
            _ = shutdown.cancelled() => {
                return settle(&message, AckKind::Nak(Some(DEFAULT_SHUTDOWN_REDELIVERY))).await;
            }
            _ = tokio::time::sleep(delay) => delay *= 2,
        }
    }
}

impl Applier {
    /// Stores `message` as a dead letter, notes it on its stream, and
    /// terminates it; hands it back for later when the dead letter cannot be
    /// stored.
    async fn dead_letter(
        &self,
        message: &jetstream::Message,
        event: &proto::ImagePushed,
        error: &BucketError,
    ) {
        let reason = error::chain(error);
        tracing::error!(%reason, event_id = %event.event_id, "cannot ever apply ImagePushed: dead-lettered");
        let stored = deadletter::store(
            &self.js,
            CONSUMER_NAME,
            &event.namespace,
            &event.stream,
            message,
            &reason,
        )
        .await;
        if let Err(error) = stored {
            tracing::warn!(
                error = error::chain(&error),
                "cannot store a dead letter: handed back"
            );
            return settle(message, AckKind::Nak(Some(nats::MAX_REDELIVERY_DELAY))).await;
        }
        self.events.consumed(KIND, "dead_lettered");
        let note = format!(
            "{}: push of {}:{} ({}) not recorded, the stream is too large; its event and the cause are kept on {}",
            writes::timestamp(Utc::now()),
            event.stream,
            event.tag,
            event.digest,
            deadletter::subject(&event.namespace, &event.stream),
        );
        if let Err(error) = self.note_dead_letter(event, note).await {
            tracing::warn!(
                error = error::chain(&error),
                "cannot note the dead letter on its stream"
            );
        }
        settle(message, AckKind::Term).await
    }

    /// Sets [`ANNOTATION_DEAD_LETTER`] on the event's stream, and remembers
    /// the event as applied, so that a redelivery changes nothing.
    async fn note_dead_letter(
        &self,
        event: &proto::ImagePushed,
        note: String,
    ) -> Result<(), ApplyError> {
        self.cache()
            .take(&subjects::stream_key(&event.namespace, &event.stream));
        // a full stream has room for the note in the reserve
        self.bucket
            .unreserved()
            .modify(&event.namespace, &event.stream, |current| {
                let Some((record, revision)) = current else {
                    return Ok::<_, ApplyError>(Plan::Skip);
                };
                let mut stream = record.stream.clone();
                stream
                    .metadata
                    .annotations
                    .insert(ANNOTATION_DEAD_LETTER.to_owned(), note.clone());
                let mut next = next_record(Some(&record), stream);
                next.remember_applied(&event.event_id);
                Ok(Plan::Update(next, revision))
            })
            .await
            .map(drop)
    }
}

/// Applies the events dealt to one worker, in order. It stops when the
/// dispatcher closes the queue, which it does on shutdown once the batch in
/// hand is dealt; [`handle`] watches `shutdown` while it waits to retry.
async fn work(
    applier: Arc<Applier>,
    mut queue: mpsc::Receiver<jetstream::Message>,
    shutdown: CancellationToken,
) {
    while let Some(message) = queue.recv().await {
        let span = tracing::info_span!("image_pushed", subject = %message.subject);
        propagation::follow(&span, &message.headers);
        handle(&applier, message, &shutdown).instrument(span).await;
    }
}

/// Deals a pulled batch to the workers' queues, in order, reading the batch
/// on while a full queue holds the next message back: async-nats stops
/// yielding what a batch has not handed out 5 s past its expiry, and the
/// server would deliver those again only after the ack wait, behind newer
/// events of their streams (seen under load, when one busy stream's worker
/// held the dealing that long). What is read waits here, at most a batch.
async fn deal(
    batch: &mut (impl futures::Stream<Item = Result<jetstream::Message, async_nats::Error>> + Unpin),
    queues: &[mpsc::Sender<jetstream::Message>],
) {
    let mut pending = VecDeque::with_capacity(BATCH);
    let mut exhausted = false;
    while !(exhausted && pending.is_empty()) {
        let front = pending.front().map(|m| shard_of(m, queues.len()));
        let room = async {
            match front {
                Some(shard) => queues[shard].reserve().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            next = batch.next(), if !exhausted => match next {
                Some(Ok(message)) => pending.push_back(message),
                Some(Err(error)) => {
                    tracing::warn!(error = error::chain(&*error), "pulling ImagePushed failed");
                    exhausted = true;
                }
                None => exhausted = true,
            },
            room = room, if front.is_some() => {
                let Some(message) = pending.pop_front() else { continue };
                match room {
                    Ok(permit) => permit.send(message),
                    // can't happen: the workers run until the queues close after this
                    Err(_) => settle(&message, AckKind::Nak(None)).await,
                }
            }
        }
    }
}

/// Pulls and applies events until `shutdown`. Events are pulled in bounded
/// batches (256 messages or [`DEFAULT_PULL_EXPIRES`]), and the batch in
/// hand is applied to the end before the loop stops: every event delivered
/// to this process is settled here, so none waits for a redelivery timeout
/// or comes back out of order after a restart.
pub async fn run(
    consumer: PullConsumer,
    applier: Arc<Applier>,
    workers: usize,
    shutdown: CancellationToken,
) -> Result<(), ConsumerError> {
    let workers = workers.max(1);
    let tracker = TaskTracker::new();
    let queues: Vec<_> = (0..workers)
        .map(|_| {
            let (tx, rx) = mpsc::channel(QUEUE_LEN);
            tracker.spawn(work(applier.clone(), rx, shutdown.clone()));
            tx
        })
        .collect();
    tracker.close();
    while !shutdown.is_cancelled() {
        let pulled = consumer
            .batch()
            .max_messages(BATCH)
            .expires(DEFAULT_PULL_EXPIRES)
            .messages()
            .await;
        let mut batch = match pulled {
            Ok(batch) => batch,
            Err(error) => {
                tracing::warn!(
                    error = error::chain(&error),
                    "cannot pull ImagePushed; retrying"
                );
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(DEFAULT_RETRY_DELAY) => continue,
                }
            }
        };
        deal(&mut batch, &queues).await;
    }
    drop(queues);
    tracker.wait().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> proto::ImagePushed {
        proto::ImagePushed {
            event_id: "e1".into(),
            registry: "127.0.0.1:5000".into(),
            repository: "ns1/app".into(),
            tag: "latest".into(),
            digest: format!("sha256:{}", "ab".repeat(32)),
            time: Some(prost_types::Timestamp {
                seconds: 1_700_000_000,
                nanos: 5,
            }),
            source: proto::ImageSource::RegistryNotification as i32,
            namespace: "ns1".into(),
            stream: "app".into(),
            ..Default::default()
        }
    }

    #[test]
    fn events_pin_the_digest() {
        let e = tag_event_of(&event()).unwrap();
        assert_eq!(
            e.docker_image_reference,
            format!("127.0.0.1:5000/ns1/app@sha256:{}", "ab".repeat(32))
        );
        // the registry's precision is kept, so pushes within a second stay ordered
        assert_eq!(e.created, "2023-11-14T22:13:20.000000005Z");
        let mut import = event();
        import.registry.clear();
        import.repository = "openshift/ruby-20-centos7".into();
        assert_eq!(
            tag_event_of(&import).unwrap().docker_image_reference,
            format!("openshift/ruby-20-centos7@sha256:{}", "ab".repeat(32))
        );
    }

    #[test]
    fn invalid_events_are_refused() {
        let cases: [fn(&mut proto::ImagePushed); 6] = [
            |e| e.event_id.clear(),
            |e| e.namespace = "Bad".into(),
            |e| e.stream = "a/b".into(),
            |e| e.tag = "-x".into(),
            |e| e.digest = "sha256:12".into(),
            |e| e.repository = "UPPER/case".into(),
        ];
        for (i, mutate) in cases.iter().enumerate() {
            let mut e = event();
            mutate(&mut e);
            assert!(
                matches!(tag_event_of(&e), Err(ApplyError::Invalid { .. })),
                "case {i}"
            );
        }
    }
}
