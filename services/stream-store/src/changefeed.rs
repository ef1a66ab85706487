//! The changefeed: emits `TagsChanged` from the KV bucket's own history, so
//! that an event goes out exactly once per committed change, and only after
//! the commit.
//!
//! A durable pull consumer [`CONSUMER_NAME`] reads the bucket's stream
//! (`KV_imagestreams`, subjects `$KV.imagestreams.>`) in order. For every put
//! whose [`Record::change`] is set it publishes
//! [`Change::to_event`](imagestreams_stream_store_api::Change::to_event) at the
//! message's stream sequence (the revision) to
//! `imagestreams.tags.changed.<ns>.<name>` with `Nats-Msg-Id: <uid>:<revision>`,
//! and acks the bucket message once JetStream has acknowledged the event;
//! up to [`DEFAULT_WINDOW`] events are in flight at once (see [`run`]).
//! Deletes and writes without a change are acked in their turn. The event
//! is sent in a `tags_changed_publish` span, the child of the writer's span
//! ([`Change::traceparent`](imagestreams_stream_store_api::Change::traceparent)),
//! so the trace of a push goes on through the KV write.
//!
//! - **Crash between commit and publish:** the put is unacked; the durable
//!   consumer delivers it again, after a restart too.
//! - **Crash between publish and ack:** the same id is published again and
//!   JetStream drops it as a duplicate, provided the redelivery comes within
//!   the tags stream's duplicate window
//!   ([`DEFAULT_DUPLICATE_WINDOW`](imagestreams_common::nats::DEFAULT_DUPLICATE_WINDOW), 10 min).
//! - **Lag bound:** the bucket keeps
//!   [`DEFAULT_KV_HISTORY`](imagestreams_common::nats::DEFAULT_KV_HISTORY)
//!   (64) revisions per stream. A revision the changefeed has not read when
//!   64 newer writes of the same stream have landed is gone, and so is its
//!   `TagsChanged`. The changefeed must not fall more than 64 writes behind
//!   on any one stream; the [`LagGuard`] holds writers back (and finally
//!   fails them as unavailable) while it is
//!   [`DEFAULT_MAX_LAG`](crate::lag::DEFAULT_MAX_LAG) messages behind. Behind
//!   means past the consumer's ack floor, as the server reports it, not past
//!   what this process acked: with several replicas, a message delivered to
//!   one that died holds the floor, and newer writes of its stream must wait
//!   for it. The acks here only wake the waiting writers
//!   ([`LagGuard::acked`]) to ask the server again.
//! - **Crash while holding messages:** the consumer's ack wait is
//!   [`DEFAULT_ACK_WAIT`] (2 s), shorter than the writers' wait
//!   ([`DEFAULT_ADMIT_TIMEOUT`](crate::lag::DEFAULT_ADMIT_TIMEOUT), 5 s): the
//!   messages of a killed replica are redelivered to the others before the
//!   writers held back by them give up. A message that cannot be published
//!   yet is kept alive with `Progress` while it is retried.

use std::time::Duration;

use async_nats::{
    HeaderMap,
    jetstream::{
        self, AckKind,
        consumer::{AckPolicy, DeliverPolicy, PullConsumer, pull},
    },
};
use futures::StreamExt as _;
use imagestreams_common::{
    error::ApiError,
    metrics::EventCounters,
    nats::{self, NatsError, PendingAck},
    subjects::{self, Kind},
    telemetry::propagation,
};
use imagestreams_stream_store_api::{self as store, Record};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use crate::{
    lag::LagGuard,
    pushes::{DEFAULT_PULL_EXPIRES, DEFAULT_RETRY_DELAY, DEFAULT_SHUTDOWN_REDELIVERY},
};

/// The durable consumer's name.
pub const CONSUMER_NAME: &str = "stream-store-changefeed";
/// How many messages one pull asks for.
const BATCH: usize = 256;
/// The `kind` label of the events published here.
const KIND: &str = "TagsChanged";
/// How many `TagsChanged` may await their acknowledgement at once.
pub const DEFAULT_WINDOW: usize = 128;
/// How long the consumer waits for a delivered message's ack before it
/// delivers it again: how long a killed replica's messages hold the ack
/// floor, and so the writers (see [`LagGuard`]). Shorter than
/// [`DEFAULT_ADMIT_TIMEOUT`](crate::lag::DEFAULT_ADMIT_TIMEOUT), so held
/// writers wait rather than fail. A message in hand for longer (a batch
/// behind a slow publish) is delivered once more, and its repeat dropped as
/// a duplicate by its message id.
pub const DEFAULT_ACK_WAIT: Duration = Duration::from_secs(2);

/// Errors of the changefeed.
#[derive(Debug, thiserror::Error)]
pub enum ChangefeedError {
    /// The durable consumer could not be declared.
    #[error("cannot declare the {CONSUMER_NAME} consumer")]
    Declare(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The consumer's message stream could not be opened.
    #[error("cannot pull from the {CONSUMER_NAME} consumer")]
    Pull(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// A bucket message could not be understood (never retried).
    #[error("bad bucket message: {0}")]
    Bad(String),
    /// The event could not be published (retried).
    #[error(transparent)]
    Publish(#[from] NatsError),
}

/// Declares the durable consumer on the bucket's stream (idempotent). It is
/// declared before the service writes, so no write escapes it. It delivers
/// everything the bucket holds: declared afresh on a bucket with history
/// (after the consumer was deleted, say), it publishes the retained changes
/// again, and those older than the duplicate window are not dropped.
///
/// Create-or-update: an existing durable takes this configuration, so an
/// upgrade brings the consumer declared by an older version (ack wait 10 s)
/// to [`DEFAULT_ACK_WAIT`], the running replicas' deliveries included. The
/// fields the server cannot change (filter, deliver and ack policy) have not
/// changed since the first version; were they to, the declaration would fail
/// and the consumer would have to be replaced by hand.
pub async fn declare(kv: &jetstream::kv::Store) -> Result<PullConsumer, ChangefeedError> {
    kv.stream
        .create_consumer(pull::Config {
            durable_name: Some(CONSUMER_NAME.to_owned()),
            description: Some(
                "stream-store: publishes TagsChanged from the ImageStreams bucket".to_owned(),
            ),
            filter_subject: format!("$KV.{}.>", subjects::BUCKET_STREAMS),
            deliver_policy: DeliverPolicy::All,
            ack_policy: AckPolicy::Explicit,
            ack_wait: DEFAULT_ACK_WAIT,
            max_deliver: -1,
            ..Default::default()
        })
        .await
        .map_err(|e| ChangefeedError::Declare(Box::new(e)))
}

/// Sends the `TagsChanged` of one bucket message, if it carries a change,
/// without waiting for JetStream's acknowledgement.
pub async fn send(
    js: &jetstream::Context,
    message: &jetstream::Message,
) -> Result<Option<PendingAck>, ChangefeedError> {
    if nats::removes_key(message) || !store::is_header(message) {
        // a tag record's change is in the header its write ends with
        return Ok(None);
    }
    let revision = message
        .info()
        .map_err(|e| ChangefeedError::Bad(format!("no JetStream metadata: {e}")))?
        .stream_sequence;
    let record = Record::decode(&message.payload, revision)
        .map_err(|e: ApiError| ChangefeedError::Bad(e.to_string()))?;
    let Some(change) = &record.change else {
        return Ok(None);
    };
    let event = change.to_event(&record.stream, revision);
    let meta = &record.stream.metadata;
    let span = tracing::info_span!("tags_changed_publish", event_id = %event.event_id);
    propagation::follow_traceparent(&span, change.traceparent.as_deref());
    let pending = nats::send_event(
        js,
        Kind::TagsChanged.subject(&meta.namespace, &meta.name),
        &event.event_id,
        &event,
        HeaderMap::new(),
    )
    .instrument(span)
    .await?;
    tracing::debug!(event_id = %event.event_id, "TagsChanged sent");
    Ok(Some(pending))
}

async fn settle(message: &jetstream::Message, kind: AckKind) {
    if let Err(error) = message.ack_with(kind).await {
        tracing::warn!(error = imagestreams_common::error::chain(&*error), subject = %message.subject, "cannot acknowledge");
    }
}

/// A bucket message whose event went out (or failed to), waiting for its
/// turn to be confirmed.
struct InFlight {
    message: jetstream::Message,
    sent: Result<Option<PendingAck>, ChangefeedError>,
}

/// Acknowledges the bucket message once its event is stored, and wakes the
/// writers waiting on the lag guard, to read the consumer's ack floor again
/// (this message's sequence is no floor: another replica may hold an older
/// one).
async fn done(guard: &LagGuard, message: &jetstream::Message) {
    settle(message, AckKind::Ack).await;
    guard.acked();
}

/// Publishes one message's event again until it is stored (the message id
/// makes a repeat harmless) or `shutdown` comes, when the message is handed
/// back for redelivery.
async fn republish(
    js: &jetstream::Context,
    guard: &LagGuard,
    message: &jetstream::Message,
    events: &EventCounters,
    shutdown: &CancellationToken,
) {
    loop {
        let sent = match send(js, message).await {
            Ok(Some(pending)) => pending
                .await
                .map(|_| events.published(KIND, "ok"))
                .map_err(ChangefeedError::from),
            Ok(None) => Ok(()),
            Err(e) => Err(e),
        };
        match sent {
            Ok(()) => return done(guard, message).await,
            Err(error @ ChangefeedError::Publish(_)) => {
                events.published(KIND, "error");
                tracing::warn!(
                    error = imagestreams_common::error::chain(&error),
                    "cannot publish TagsChanged yet, retrying"
                );
                settle(message, AckKind::Progress).await;
                tokio::select! {
                    _ = shutdown.cancelled() => {
                        return settle(message, AckKind::Nak(Some(DEFAULT_SHUTDOWN_REDELIVERY))).await;
                    }
                    _ = tokio::time::sleep(DEFAULT_RETRY_DELAY) => {}
                }
            }
            Err(error) => {
                tracing::error!(error = imagestreams_common::error::chain(&error), subject = %message.subject, "skipping a bucket message");
                return settle(message, AckKind::Term).await;
            }
        }
    }
}

/// Confirms the messages sent by [`run`], in the order they were sent: waits
/// for each event's acknowledgement, then acks its bucket message. A failed
/// send or acknowledgement is retried in place, which holds back the ones
/// behind it.
async fn confirm(
    js: jetstream::Context,
    guard: LagGuard,
    mut sent: mpsc::Receiver<InFlight>,
    events: EventCounters,
    shutdown: CancellationToken,
) {
    while let Some(InFlight { message, sent }) = sent.recv().await {
        let stored = match sent {
            Ok(Some(pending)) => pending
                .await
                .map(|_| events.published(KIND, "ok"))
                .map_err(ChangefeedError::from),
            Ok(None) => Ok(()),
            Err(e) => Err(e),
        };
        match stored {
            Ok(()) => done(&guard, &message).await,
            Err(ChangefeedError::Publish(_)) => {
                events.published(KIND, "error");
                republish(&js, &guard, &message, &events, &shutdown).await
            }
            Err(error) => {
                tracing::error!(error = imagestreams_common::error::chain(&error), subject = %message.subject, "skipping a bucket message");
                settle(&message, AckKind::Term).await;
            }
        }
    }
}

/// Publishes until `shutdown`, in the bucket's order, with up to
/// [`DEFAULT_WINDOW`] events awaiting their acknowledgement: one task sends,
/// another (`confirm`) awaits the acknowledgements in order and then acks
/// the bucket messages, so a backlog drains at the rate of sends rather than
/// of round trips. Messages are pulled in bounded batches, and the batch in
/// hand is finished before the loop stops (see
/// [`pushes::run`](crate::pushes::run)).
///
/// Order: JetStream stores the events of one connection in the order they
/// were sent, so `TagsChanged` follow the revisions. Only a failed send (the
/// connection lost) lets an event be stored after a later one; every event
/// carries its stream's `resourceVersion`, by which a consumer can tell.
pub async fn run(
    js: jetstream::Context,
    consumer: PullConsumer,
    guard: LagGuard,
    events: EventCounters,
    shutdown: CancellationToken,
) -> Result<(), ChangefeedError> {
    let (in_flight, sent) = mpsc::channel(DEFAULT_WINDOW);
    let confirming = tokio::spawn(confirm(js.clone(), guard, sent, events, shutdown.clone()));
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
                    error = imagestreams_common::error::chain(&error),
                    "cannot pull from the bucket; retrying"
                );
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(DEFAULT_RETRY_DELAY) => continue,
                }
            }
        };
        while let Some(next) = batch.next().await {
            match next {
                Ok(message) => {
                    let sent = send(&js, &message).await;
                    if in_flight.send(InFlight { message, sent }).await.is_err() {
                        tracing::error!("the changefeed's confirmer stopped");
                        return Ok(());
                    }
                }
                Err(error) => {
                    tracing::warn!(
                        error = imagestreams_common::error::chain(&*error),
                        "pulling from the bucket failed"
                    );
                    break;
                }
            }
        }
    }
    drop(in_flight);
    if let Err(error) = confirming.await {
        tracing::error!(
            error = imagestreams_common::error::chain(&error),
            "the changefeed's confirmer failed"
        );
    }
    Ok(())
}
