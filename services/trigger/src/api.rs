//! The trigger service's write API, answered over NATS request-reply
//! (`imagestreams.api.trigger.<op>`, queue group `trigger`): create and
//! delete. The gateway forwards its `Triggers.Create`/`Delete` calls here and
//! reads straight from the KV. This service is the buckets' single writer.

use std::sync::Arc;

use imagestreams_common::{error::ApiError, requests, subjects};
use imagestreams_proto::v1 as proto;
use imagestreams_trigger_api::{NewTrigger, Stored, Trigger, TriggerStatus, trigger_not_found};
use prost::Message as _;
use tracing::instrument;

use crate::{
    Ctx,
    decide::{Decision, SourceChange, commit, decide},
    kv, now_rfc3339, reconcile,
};

/// How often a delete retries when the trigger changes under it.
pub const DELETE_ATTEMPTS: u32 = 5;

/// Requests handled at once; more wait in NATS.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 256;

/// Answers write requests until the replica stops (or, in tests, crashes).
pub async fn serve(ctx: Arc<Ctx>, requests: async_nats::Subscriber) {
    let (shutdown, crash) = (ctx.shutdown.clone(), ctx.crash.clone());
    let stop = async move {
        tokio::select! {
            _ = shutdown.cancelled() => {}
            _ = crash.cancelled() => {}
        }
    };
    let nats = ctx.nats.clone();
    let answered = requests::serve(
        nats,
        vec![((), requests)],
        DEFAULT_MAX_IN_FLIGHT,
        stop,
        move |(), message| {
            let ctx = ctx.clone();
            async move {
                let op = message.subject.rsplit('.').next().unwrap_or_default();
                let result = handle(&ctx, op, &message.payload).await;
                proto::TriggerReply {
                    result: Some(match result {
                        Ok(t) => proto::trigger_reply::Result::Trigger(t),
                        Err(e) => proto::trigger_reply::Result::Error(e.into()),
                    }),
                }
                .encode_to_vec()
            }
        },
    )
    .await;
    if let Err(error) = answered {
        tracing::warn!(error = %format_args!("{error:#}"), "the trigger API stopped");
    }
}

async fn handle(ctx: &Arc<Ctx>, op: &str, payload: &[u8]) -> Result<proto::Trigger, ApiError> {
    let undecodable =
        |e: prost::DecodeError| ApiError::invalid("", format!("undecodable request: {e}"));
    match op {
        "create" => {
            create(
                ctx,
                proto::CreateTriggerRequest::decode(payload).map_err(undecodable)?,
            )
            .await
        }
        "delete" => {
            delete(
                ctx,
                proto::DeleteTriggerRequest::decode(payload).map_err(undecodable)?,
            )
            .await
        }
        other => Err(ApiError::Unimplemented(format!(
            "no trigger operation {other:?}"
        ))),
    }
}

/// Creates a trigger. When its tag already holds an image it fires for it in
/// the same write (unless `no_fire_existing`, which records the image as
/// already triggered); changes older than the trigger are ignored.
#[instrument(skip_all, fields(namespace = %request.namespace), err)]
pub async fn create(
    ctx: &Arc<Ctx>,
    request: proto::CreateTriggerRequest,
) -> Result<proto::Trigger, ApiError> {
    let new = NewTrigger::try_from(request)?;
    if let Some(webhook) = &new.spec.webhook {
        ctx.webhooks
            .policy()
            .check_url(&webhook.url)
            .map_err(|why| {
                ApiError::invalid(
                    "spec.webhook.url",
                    format!("spec.webhook.url: Invalid value: {:?}: {why}", webhook.url),
                )
            })?;
    }
    // every change up to here happened before the trigger existed
    let floor = kv::last_revision(&ctx.streams_kv).await?;
    let current = ctx
        .streams
        .record(&new.spec.from.namespace, &new.spec.from.stream)
        .await?;
    let now = now_rfc3339();
    let mut trigger = Trigger {
        namespace: new.namespace.clone(),
        name: new.name.clone(),
        uid: uuid::Uuid::new_v4().to_string(),
        creation_timestamp: imagestreams_common::model::format_timestamp(chrono::Utc::now()),
        spec: new.spec.clone(),
        status: TriggerStatus {
            last_source_revision: floor,
            ..TriggerStatus::default()
        },
    };
    let latest = current.as_ref().and_then(|(record, revision)| {
        let event = record.stream.status_tag(&new.spec.from.tag)?.latest()?;
        Some((event.clone(), *revision))
    });
    if let Some((event, revision)) = latest {
        let change = SourceChange {
            from: new.spec.from.clone(),
            image: event.image.clone(),
            docker_image_reference: event.docker_image_reference.clone(),
            revision: 0,
            traceparent: None,
        };
        if new.fire_existing {
            if let Decision::Fire(pending) = decide(&trigger, &change, &now) {
                trigger = commit(&trigger, &pending, revision);
            }
        } else {
            trigger.status.last_triggered_image = event.image;
        }
        trigger.status.last_source_revision = trigger.status.last_source_revision.max(revision);
    }
    let key = trigger.key();
    let revision = kv::create(&ctx.triggers, &key, &trigger)
        .await?
        .ok_or_else(|| {
            ApiError::AlreadyExists(format!(
                "triggers \"{}\" already exists in namespace \"{}\"",
                trigger.name, trigger.namespace
            ))
        })?;
    let stored = Stored {
        value: trigger,
        revision,
    };
    ctx.remember(&stored);
    tracing::info!(trigger = %key, from = %stored.value.spec.from, fired = !stored.value.status.pending.is_empty(), "trigger created");
    for pending in &stored.value.status.pending {
        reconcile::spawn(ctx, reconcile::Task::fresh(&stored.value, pending.clone()));
    }
    Ok(stored.value.to_proto(revision, None))
}

/// Deletes a trigger and its firings; in-flight deliveries of its firings
/// stop at their next step.
#[instrument(skip_all, fields(namespace = %request.namespace, name = %request.name), err)]
pub async fn delete(
    ctx: &Ctx,
    request: proto::DeleteTriggerRequest,
) -> Result<proto::Trigger, ApiError> {
    let key = subjects::trigger_key(&request.namespace, &request.name);
    let mut attempts = 0;
    let existing = loop {
        let existing = ctx
            .reader
            .entry(&request.namespace, &request.name)
            .await?
            .ok_or_else(|| trigger_not_found(&request.namespace, &request.name))?;
        // compare-and-swap, so a firing committed meanwhile is not silently dropped
        match ctx
            .triggers
            .delete_expect_revision(&key, Some(existing.revision))
            .await
        {
            Ok(()) => break existing,
            Err(_) if attempts < DELETE_ATTEMPTS => attempts += 1,
            Err(e) => return Err(ApiError::Unavailable(format!("cannot delete {key}: {e}"))),
        }
    };
    if let Ok(mut index) = ctx.index.write() {
        index.apply(&key, existing.revision + 1, None);
    }
    let filter = format!(
        "$KV.{}.{}",
        ctx.firings.name,
        subjects::firing_keys(Some(&request.namespace), Some(&request.name))
    );
    if let Err(e) = ctx.firings.stream.purge().filter(filter).await {
        tracing::warn!(trigger = %key, error = imagestreams_common::error::chain(&e), "cannot purge the firings of a deleted trigger");
    }
    tracing::info!(trigger = %key, "trigger deleted");
    Ok(existing.value.to_proto(existing.revision, None))
}
