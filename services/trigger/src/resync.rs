//! Keeping a replica whole: the KV watch that keeps the trigger index fresh,
//! and the full resync (at start and every `trigger.resync_interval_ms`) that
//! rebuilds the index, re-drives every outbox entry (the recovery of a
//! replica killed mid-firing), and fires triggers whose tag's current image
//! they have not fired for (a change whose event was missed).

use std::{collections::HashMap, sync::Arc, time::Duration};

use futures::StreamExt;
use imagestreams_common::subjects;
use imagestreams_trigger_api::{Stored, Trigger, decode};
use tracing::instrument;

use crate::{
    Ctx, DEFAULT_RETRY_DELAY,
    consumer::fire,
    decide::{Decision, SourceChange, decide},
    error::Error,
    kv, now_rfc3339, reconcile, sleep_or_stop,
};

/// The first resync, retried until it succeeds or the replica stops.
pub async fn initial(ctx: &Arc<Ctx>) {
    while !ctx.stopping() {
        match resync(ctx).await {
            Ok(()) => return,
            Err(e) => {
                tracing::warn!(
                    error = imagestreams_common::error::chain(&e),
                    "initial trigger resync failed, retrying"
                );
                sleep_or_stop(ctx, DEFAULT_RETRY_DELAY).await;
            }
        }
    }
}

/// Resyncs every `trigger.resync_interval_ms` until the replica stops.
pub async fn run_periodically(ctx: Arc<Ctx>) {
    let period = Duration::from_millis(ctx.config.trigger.resync_interval_ms.max(100));
    while sleep_or_stop(&ctx, period).await {
        if let Err(e) = resync(&ctx).await {
            tracing::warn!(
                error = imagestreams_common::error::chain(&e),
                "trigger resync failed"
            );
        }
    }
}

/// One full resync (see the module docs).
#[instrument(skip_all, err)]
pub async fn resync(ctx: &Arc<Ctx>) -> Result<(), Error> {
    let snapshot = kv::last_revision(&ctx.triggers).await?;
    let listed = ctx.reader.list(None).await?;
    if let Ok(mut index) = ctx.index.write() {
        index.merge(&listed, snapshot);
    }
    for stored in &listed {
        for pending in &stored.value.status.pending {
            reconcile::spawn(ctx, reconcile::Task::stale(&stored.value, pending.clone()));
        }
    }
    let mut streams = HashMap::new();
    for stored in listed {
        if stored.value.spec.paused || ctx.stopping() {
            continue;
        }
        let from = stored.value.spec.from.clone();
        let key = (from.namespace.clone(), from.stream.clone());
        if !streams.contains_key(&key) {
            let record = ctx.streams.record(&from.namespace, &from.stream).await?;
            streams.insert(key.clone(), record);
        }
        let Some(Some((record, revision))) = streams.get(&key) else {
            continue;
        };
        let Some(latest) = record.stream.status_tag(&from.tag).and_then(|t| t.latest()) else {
            continue;
        };
        let change = SourceChange {
            from,
            image: latest.image.clone(),
            docker_image_reference: latest.docker_image_reference.clone(),
            revision: *revision,
            traceparent: None,
        };
        if !matches!(
            decide(&stored.value, &change, &now_rfc3339()),
            Decision::Fire(_)
        ) {
            continue;
        }
        tracing::info!(trigger = %stored.value.key(), image = %change.image, "resync found an unfired current image");
        if let Some((fired, pending)) = fire(ctx, stored, &change).await? {
            reconcile::spawn(ctx, reconcile::Task::fresh(&fired.value, pending));
        }
    }
    Ok(())
}

/// Applies every change of the triggers bucket to the index until the
/// replica stops, rewatching after errors.
pub async fn watch_triggers(ctx: Arc<Ctx>) {
    while !ctx.stopping() {
        let mut watch = match ctx.triggers.watch_with_history(">").await {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!(
                    error = imagestreams_common::error::chain(&e),
                    "cannot watch triggers, retrying"
                );
                sleep_or_stop(&ctx, DEFAULT_RETRY_DELAY).await;
                continue;
            }
        };
        loop {
            let next = tokio::select! {
                _ = ctx.shutdown.cancelled() => return,
                _ = ctx.crash.cancelled() => return,
                n = watch.next() => n,
            };
            let entry = match next {
                Some(Ok(entry)) => entry,
                Some(Err(e)) => {
                    tracing::warn!(
                        error = imagestreams_common::error::chain(&e),
                        "trigger watch failed, rewatching"
                    );
                    break;
                }
                None => break,
            };
            let value = match entry.operation {
                async_nats::jetstream::kv::Operation::Put => {
                    match decode::<Trigger>(&entry.value) {
                        Ok(t) => Some(t),
                        Err(e) => {
                            tracing::error!(key = %entry.key, error = imagestreams_common::error::chain(&e), "undecodable trigger ignored");
                            continue;
                        }
                    }
                }
                _ => None,
            };
            if subjects::parse_stream_key(&entry.key).is_none() {
                continue;
            }
            if let Ok(mut index) = ctx.index.write() {
                match value {
                    Some(t) => index.upsert(&Stored {
                        value: t,
                        revision: entry.revision,
                    }),
                    None => index.apply(&entry.key, entry.revision, None),
                };
            }
        }
        sleep_or_stop(&ctx, DEFAULT_RETRY_DELAY).await;
    }
}
