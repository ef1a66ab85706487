//! The `TagsChanged` consumer: the durable pull consumer `trigger` that every
//! replica shares. For each changed tag it commits the firings of the
//! triggers following it (compare-and-swap, see [`fire`]), acknowledges the
//! event once they are committed, and hands the side effects to the
//! reconciler. NATS trouble naks the event for redelivery. Events are applied
//! in [`DEFAULT_LANES`] lanes by subject: concurrently across streams, in
//! order within one.

use std::{
    hash::{Hash as _, Hasher as _},
    sync::Arc,
};

use async_nats::jetstream::{
    self, AckKind, Message,
    consumer::{AckPolicy, DeliverPolicy, PullConsumer, pull},
};
use futures::StreamExt;
use imagestreams_common::{
    nats,
    subjects::{self, Kind},
    telemetry::propagation::{self, Headers as _},
};
use imagestreams_proto::v1 as proto;
use imagestreams_trigger_api::{Stored, TagRef, Trigger};
use prost::Message as _;
use tokio::sync::mpsc;
use tracing::{Instrument as _, instrument};

use crate::{
    Ctx, DEFAULT_ACK_WAIT, DEFAULT_MAX_ACK_PENDING, DEFAULT_RETRY_DELAY, Failpoint,
    decide::{Decision, SourceChange, commit, decide},
    error::Error,
    kv, now_rfc3339, reconcile, sleep_or_stop,
};

/// Declares (idempotently) the durable consumer of `TagsChanged`.
pub async fn declare(js: &jetstream::Context) -> anyhow::Result<PullConsumer> {
    let stream = js.get_stream(subjects::STREAM_TAGS).await?;
    let consumer = stream
        .get_or_create_consumer(
            subjects::DURABLE_TRIGGER,
            pull::Config {
                durable_name: Some(subjects::DURABLE_TRIGGER.to_owned()),
                description: Some("trigger replicas: fire build and deploy triggers".to_owned()),
                filter_subject: Kind::TagsChanged.all_filter(),
                // changes older than a trigger are ignored by revision, so replaying is safe
                deliver_policy: DeliverPolicy::All,
                ack_policy: AckPolicy::Explicit,
                ack_wait: DEFAULT_ACK_WAIT,
                max_ack_pending: DEFAULT_MAX_ACK_PENDING,
                ..Default::default()
            },
        )
        .await?;
    Ok(consumer)
}

/// How many lanes apply `TagsChanged` at once in one replica. Events of one
/// stream always take the same lane, so they are applied in order.
pub const DEFAULT_LANES: usize = 32;
/// How many events may wait in one lane.
pub const DEFAULT_LANE_DEPTH: usize = 64;

/// Consumes `TagsChanged` until the replica stops, resubscribing after errors.
pub async fn run(ctx: Arc<Ctx>, consumer: PullConsumer) {
    let lanes: Vec<mpsc::Sender<Message>> = (0..DEFAULT_LANES)
        .map(|_| {
            let (tx, rx) = mpsc::channel(DEFAULT_LANE_DEPTH);
            ctx.tracker.spawn(lane(ctx.clone(), rx));
            tx
        })
        .collect();
    while !ctx.stopping() {
        let mut messages = match consumer.messages().await {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(
                    error = imagestreams_common::error::chain(&e),
                    "cannot pull TagsChanged, retrying"
                );
                sleep_or_stop(&ctx, DEFAULT_RETRY_DELAY).await;
                continue;
            }
        };
        loop {
            let next = tokio::select! {
                biased;
                _ = ctx.crash.cancelled() => return,
                _ = ctx.shutdown.cancelled() => return,
                m = messages.next() => m,
            };
            match next {
                Some(Ok(message)) => {
                    let mut hasher = std::hash::DefaultHasher::new();
                    message.subject.as_str().hash(&mut hasher);
                    let lane = &lanes[(hasher.finish() % DEFAULT_LANES as u64) as usize];
                    tokio::select! {
                        biased;
                        _ = ctx.crash.cancelled() => return,
                        _ = ctx.shutdown.cancelled() => return,
                        _ = lane.send(message) => {}
                    }
                }
                Some(Err(e)) => {
                    tracing::warn!(
                        error = imagestreams_common::error::chain(&e),
                        "TagsChanged consumer error, resubscribing"
                    );
                    break;
                }
                None => break,
            }
        }
        sleep_or_stop(&ctx, DEFAULT_RETRY_DELAY).await;
    }
}

/// Applies the events of one lane in order, finishing the one in hand on a
/// graceful stop; the ones still queued are redelivered (unacknowledged).
async fn lane(ctx: Arc<Ctx>, mut messages: mpsc::Receiver<Message>) {
    loop {
        let message = tokio::select! {
            biased;
            _ = ctx.crash.cancelled() => return,
            _ = ctx.shutdown.cancelled() => return,
            m = messages.recv() => m,
        };
        let Some(message) = message else { return };
        // a crash drops the message in hand unacknowledged, as a kill would
        tokio::select! {
            biased;
            _ = ctx.crash.cancelled() => return,
            _ = handle(&ctx, message) => {}
        }
    }
}

/// The `kind` label of the events consumed here.
const KIND: &str = "TagsChanged";

/// Handles one `TagsChanged`: commits every firing it causes, then acks.
async fn handle(ctx: &Arc<Ctx>, message: Message) {
    let event = match proto::TagsChanged::decode(message.payload.clone()) {
        Ok(e) => e,
        Err(e) => {
            tracing::error!(subject = %message.subject, error = imagestreams_common::error::chain(&e), "undecodable TagsChanged, dropped");
            ctx.metrics.events.consumed(KIND, "invalid");
            let _ = message.ack_with(AckKind::Term).await;
            return;
        }
    };
    let traceparent = message
        .headers
        .header(propagation::TRACEPARENT)
        .map(str::to_owned);
    let span = tracing::info_span!("tags_changed", event = %event.event_id);
    propagation::follow(&span, &message.headers);
    match apply(ctx, &event, traceparent).instrument(span).await {
        Ok(true) => {
            ctx.metrics.events.consumed(KIND, "ok");
            if let Err(e) = message.ack().await {
                tracing::warn!(error = imagestreams_common::error::chain(&*e), event = %event.event_id, "cannot ack TagsChanged");
            }
        }
        // crashed at a failpoint: leave the message unacknowledged
        Ok(false) => {}
        Err(e) => {
            // handed back with a growing delay: the events behind it go on
            let delivered = message.info().map_or(1, |info| info.delivered);
            let wait = nats::redelivery_delay(delivered);
            tracing::warn!(error = imagestreams_common::error::chain(&e), event = %event.event_id, ?wait, "TagsChanged not applied, redelivering");
            ctx.metrics.events.consumed(KIND, "retry");
            let _ = message.ack_with(AckKind::Nak(Some(wait))).await;
        }
    }
}

/// Commits the firings of one event; `Ok(false)` when a failpoint stopped the
/// replica. The firings carry this span's `traceparent` (or, with tracing
/// off, the event's) to their side effects.
#[instrument(skip_all, fields(event = %event.event_id, namespace = %event.namespace, stream = %event.stream), err)]
async fn apply(
    ctx: &Arc<Ctx>,
    event: &proto::TagsChanged,
    traceparent: Option<String>,
) -> Result<bool, Error> {
    let revision = event.resource_version.parse().unwrap_or(0);
    let traceparent = propagation::traceparent().or(traceparent);
    for change in &event.changes {
        let source = SourceChange {
            from: TagRef {
                namespace: event.namespace.clone(),
                stream: event.stream.clone(),
                tag: change.tag.clone(),
            },
            image: change.new_image.clone(),
            docker_image_reference: change.docker_image_reference.clone(),
            revision,
            traceparent: traceparent.clone(),
        };
        let matching = ctx
            .index
            .read()
            .map(|i| i.matching(&source.from))
            .unwrap_or_default();
        for trigger in matching {
            if let Some((stored, pending)) = fire(ctx, trigger, &source).await? {
                if ctx.failpoint(Failpoint::CrashAfterCas) {
                    return Ok(false);
                }
                reconcile::spawn(ctx, reconcile::Task::fresh(&stored.value, pending));
            }
        }
    }
    Ok(true)
}

/// Fires `trigger` for `source` if it should: compare-and-swaps its status
/// and outbox, re-reading and re-deciding on conflict. Returns the trigger
/// as written and the committed firing, or `None` when it does not fire.
pub async fn fire(
    ctx: &Ctx,
    trigger: Stored<Trigger>,
    source: &SourceChange,
) -> Result<Option<(Stored<Trigger>, imagestreams_trigger_api::PendingFiring)>, Error> {
    let key = trigger.value.key();
    let mut current = trigger;
    loop {
        let pending = match decide(&current.value, source, &now_rfc3339()) {
            Decision::Skip(why) => {
                tracing::debug!(trigger = %key, image = %source.image, ?why, "not firing");
                return Ok(None);
            }
            Decision::Fire(pending) => pending,
        };
        let next = commit(&current.value, &pending, source.revision);
        match kv::update(&ctx.triggers, &key, &next, current.revision).await {
            Ok(revision) => {
                let stored = Stored {
                    value: next,
                    revision,
                };
                ctx.remember(&stored);
                tracing::info!(trigger = %key, image = %pending.image, firing = %pending.id, "trigger fired");
                return Ok(Some((stored, pending)));
            }
            Err(Error::Conflict { .. }) => match kv::read::<Trigger>(&ctx.triggers, &key).await? {
                Some(fresh) => {
                    ctx.remember(&fresh);
                    current = fresh;
                }
                None => return Ok(None),
            },
            Err(e) => return Err(e),
        }
    }
}
