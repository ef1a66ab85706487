//! The firing reconciler: drives one committed firing (an outbox entry of its
//! trigger) through its side effects until they are all done.
//!
//! Each pass of [`reconcile`] moves the firing one step and says when to come
//! back ([`Action`]); [`error_policy`] turns a failure into a retry, so one
//! firing's trouble never stops another. The steps:
//!
//! 1. **Record** the firing under its deterministic key, create-if-absent. The
//!    record carries a lease: whoever created it (or later takes over a
//!    lapsed lease by compare-and-swap) is the only replica performing its
//!    side effects.
//! 2. **Publish** `BuildRequested`/`DeploymentRequested` with the firing id as
//!    `Nats-Msg-Id` (a republish is dropped by JetStream), and
//! 3. **deliver** the webhook (delivery id = firing id), concurrently; a
//!    failed attempt is retried after a backoff with jitter. A mirror rule's
//!    delivery is its push, one firing at a time ([`crate::mirror`]).
//! 4. **Write** the progress (compare-and-swap, renewing the lease), and once
//!    complete, **remove** the firing from the trigger's outbox.

use std::{sync::Arc, time::Duration};

use crate::mirror::{self, Turn};
use async_nats::HeaderMap;
use imagestreams_common::{nats::publish_event, subjects, telemetry::propagation};
use imagestreams_proto::v1 as proto;
use imagestreams_trigger_api::{
    DeliveryAttempt, DeliveryState, Firing, Lease, PendingFiring, Stored, Trigger, TriggerKind,
    format_millis,
};
use rand::Rng as _;
use tracing::{Instrument as _, instrument};

use crate::{
    Ctx, DEFAULT_RETRY_DELAY, Failpoint,
    error::Error,
    kv, now_ms, sleep_or_stop,
    webhook::{self, Verdict},
};

/// How long to wait before retrying a step whose stored value is corrupt.
pub const DEFAULT_CORRUPT_RETRY_DELAY: Duration = Duration::from_secs(60);
/// Slack added when waiting for another replica's lease to lapse.
pub const LEASE_SLACK: Duration = Duration::from_millis(50);

/// What to do with a firing after a pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Nothing more to do here.
    Done,
    /// Come back after this delay.
    Requeue(Duration),
    /// Re-read the firing and come back at once.
    Refresh,
}

/// One firing to drive: the outbox entry and its trigger's identity.
#[derive(Debug, Clone)]
pub struct Task {
    /// The trigger's namespace.
    pub namespace: String,
    /// The trigger's name.
    pub trigger: String,
    /// The trigger's uid: a recreated trigger's firings are not this one's.
    pub trigger_uid: String,
    /// The outbox entry.
    pub pending: PendingFiring,
    /// The trigger as just written by this replica, if it was (spares a read).
    pub snapshot: Option<Trigger>,
}

impl Task {
    /// A task for a firing this replica just committed.
    pub fn fresh(trigger: &Trigger, pending: PendingFiring) -> Task {
        Task {
            snapshot: Some(trigger.clone()),
            ..Task::stale(trigger, pending)
        }
    }

    /// A task for a firing found in a listing (the trigger is re-read first).
    pub fn stale(trigger: &Trigger, pending: PendingFiring) -> Task {
        Task {
            namespace: trigger.namespace.clone(),
            trigger: trigger.name.clone(),
            trigger_uid: trigger.uid.clone(),
            pending,
            snapshot: None,
        }
    }

    fn firing_key(&self) -> String {
        subjects::firing_key(&self.namespace, &self.trigger, &self.pending.id)
    }

    fn trigger_key(&self) -> String {
        subjects::trigger_key(&self.namespace, &self.trigger)
    }
}

/// A firing being driven: its task and the record as last read or written.
#[derive(Debug)]
pub struct FiringState {
    /// The task.
    pub task: Task,
    /// The record, when known to be current.
    pub firing: Option<Stored<Firing>>,
}

/// Starts driving `task` unless this replica already is, in a `firing` span
/// that continues the trace of the change that caused it.
pub fn spawn(ctx: &Arc<Ctx>, task: Task) {
    let id = task.pending.id.clone();
    let fresh = ctx.active.lock().map(|mut a| a.insert(id)).unwrap_or(false);
    if fresh && !ctx.stopping() {
        let span = tracing::info_span!("firing", firing = %task.pending.id);
        propagation::follow_traceparent(&span, task.pending.traceparent.as_deref());
        ctx.tracker.spawn(drive(ctx.clone(), task).instrument(span));
    }
}

/// Drives one firing until it is done or the replica stops.
async fn drive(ctx: Arc<Ctx>, task: Task) {
    let id = task.pending.id.clone();
    let mut state = FiringState { task, firing: None };
    loop {
        let action = tokio::select! {
            biased;
            // a crash abandons the step in hand, as a kill would
            _ = ctx.crash.cancelled() => break,
            result = reconcile(&mut state, &ctx) => result.unwrap_or_else(|e| {
                tracing::warn!(firing = %id, error = imagestreams_common::error::chain(&e), "firing step failed, retrying");
                error_policy(&e)
            }),
        };
        let wait = match action {
            Action::Done => break,
            Action::Refresh => {
                state.firing = None;
                Duration::ZERO
            }
            Action::Requeue(wait) => wait,
        };
        if ctx.shutdown.is_cancelled() || !sleep_or_stop(&ctx, wait).await {
            if !ctx.crash.is_cancelled() {
                release(&ctx, &state).await;
            }
            break;
        }
    }
    if let Ok(mut active) = ctx.active.lock() {
        active.remove(&id);
    }
}

/// On a graceful stop: hands the firing's lease back, so the next replica
/// takes over at once instead of after the lease.
async fn release(ctx: &Ctx, state: &FiringState) {
    let Some(firing) = &state.firing else { return };
    if firing.value.lease.holder != ctx.replica || firing.value.is_complete() {
        return;
    }
    let mut next = firing.value.clone();
    next.lease = Lease::default();
    if let Err(e) = kv::update(
        &ctx.firings,
        &state.task.firing_key(),
        &next,
        firing.revision,
    )
    .await
    {
        tracing::debug!(firing = %next.id, error = imagestreams_common::error::chain(&e), "lease not released");
    }
}

/// What to do after a failed pass: re-read after a conflict, wait a moment
/// after NATS trouble, wait long after a corrupt value.
pub fn error_policy(error: &Error) -> Action {
    match error {
        Error::Conflict { .. } => Action::Refresh,
        Error::Unavailable { .. } | Error::Publish(_) => Action::Requeue(DEFAULT_RETRY_DELAY),
        Error::Api(imagestreams_common::error::ApiError::Unavailable(_)) => {
            Action::Requeue(DEFAULT_RETRY_DELAY)
        }
        Error::Api(_) => Action::Requeue(DEFAULT_CORRUPT_RETRY_DELAY),
    }
}

/// The lease on a firing of `kind`, in milliseconds.
fn lease_ms(ctx: &Ctx, kind: TriggerKind) -> i64 {
    i64::try_from(ctx.lease_for(kind).as_millis()).unwrap_or(i64::MAX)
}

fn until(from_ms: i64, to_ms: i64) -> Duration {
    Duration::from_millis(u64::try_from(to_ms - from_ms).unwrap_or(0))
}

/// Moves a firing one step (see the module docs).
#[instrument(skip_all, fields(firing = %state.task.pending.id), err)]
pub async fn reconcile(state: &mut FiringState, ctx: &Ctx) -> Result<Action, Error> {
    let key = state.task.firing_key();
    let now = now_ms();

    // 1. the record: read it, or create it (claiming it)
    let firing = match state.firing.take() {
        Some(firing) => firing,
        None => match record(state, ctx, &key, now).await? {
            Step::Next(firing) => firing,
            Step::End(action) => return Ok(action),
        },
    };

    // 2. done already?
    if firing.value.is_complete() {
        remove_from_outbox(ctx, &state.task, &firing.value).await?;
        return Ok(Action::Done);
    }

    // 3. the lease: someone else's live lease means wait; a lapsed one is taken over
    let firing = match claim(ctx, &key, firing, now).await? {
        Step::Next(firing) => firing,
        Step::End(action) => return Ok(action),
    };

    // 4. a mirror rule's turn: the oldest firing pushes, unless newer ones
    // wait behind it; the others wait
    let mut next = firing.value.clone();
    let mut delivery_due =
        next.delivery.state == DeliveryState::Pending && now >= next.delivery.next_attempt_ms;
    let mut settled = false;
    if next.kind == TriggerKind::Mirror && delivery_due {
        match mirror_turn(ctx, &state.task).await? {
            Turn::Push => {}
            Turn::Wait => {
                state.firing = Some(firing);
                return Ok(Action::Requeue(mirror::TURN_POLL));
            }
            Turn::Superseded(newest) => {
                tracing::info!(firing = %next.id, image = %next.image, %newest, "superseded: the newest image goes instead");
                ctx.metrics.push("superseded");
                next.delivery.state = DeliveryState::Superseded;
                (delivery_due, settled) = (false, true);
            }
            Turn::Gone => {
                settle_gone(&mut next, now);
                (delivery_due, settled) = (false, true);
            }
        }
    }

    // 5. the side effects that are due, concurrently
    if next.event_published && !delivery_due && !settled {
        let wait = until(now, next.delivery.next_attempt_ms);
        state.firing = Some(firing);
        return Ok(Action::Requeue(wait));
    }
    let failed = side_effects(ctx, &mut next, delivery_due, now).await;

    // 6. the progress, renewing the lease through any backoff
    let revision = save(ctx, &key, &mut next, firing.revision).await?;
    let complete = next.is_complete();
    let wait = if next.delivery.state == DeliveryState::Pending {
        until(now_ms(), next.delivery.next_attempt_ms)
    } else {
        Duration::ZERO
    };
    state.firing = Some(Stored {
        value: next,
        revision,
    });
    if let Some(e) = failed {
        return Err(e);
    }
    if complete {
        let done = state.firing.as_ref().map(|f| f.value.clone());
        if let Some(done) = done {
            remove_from_outbox(ctx, &state.task, &done).await?;
        }
        return Ok(Action::Done);
    }
    Ok(Action::Requeue(wait))
}

/// The turn of a mirror firing (see [`crate::mirror`]): by the indexed
/// outbox, or the stored one when the index does not hold the firing (behind,
/// or the rule is gone).
async fn mirror_turn(ctx: &Ctx, task: &Task) -> Result<Turn, Error> {
    let key = task.trigger_key();
    if let Some(rule) = ctx
        .indexed(&key)
        .filter(|t| t.value.uid == task.trigger_uid)
    {
        let turn = mirror::turn(&rule.value.status.pending, &task.pending.id);
        if turn != Turn::Gone {
            return Ok(turn);
        }
    }
    Ok(match kv::read::<Trigger>(&ctx.triggers, &key).await? {
        Some(rule) if rule.value.uid == task.trigger_uid => {
            ctx.remember(&rule);
            mirror::turn(&rule.value.status.pending, &task.pending.id)
        }
        _ => Turn::Gone,
    })
}

/// Ends a firing's delivery for good: its trigger was deleted (or recreated).
fn settle_gone(next: &mut Firing, now: i64) {
    next.delivery.record(DeliveryAttempt {
        time: format_millis(now),
        error: "the trigger was deleted".into(),
        ..DeliveryAttempt::default()
    });
    next.delivery.state = DeliveryState::Failed;
}

/// Where a step of [`reconcile`] leaves the pass: on with a value, or ended
/// with an action.
enum Step<T> {
    Next(T),
    End(Action),
}

/// Step 1 with no record in hand: the stored one, else one created from the
/// trigger and claimed. The pass ends when the trigger is gone or the
/// firing left its outbox (completed elsewhere), and comes back when
/// another replica (or this one before a restart) recorded it meanwhile.
async fn record(
    state: &mut FiringState,
    ctx: &Ctx,
    key: &str,
    now: i64,
) -> Result<Step<Stored<Firing>>, Error> {
    if let Some(firing) = kv::read::<Firing>(&ctx.firings, key).await? {
        return Ok(Step::Next(firing));
    }
    let trigger = match state.task.snapshot.take() {
        Some(trigger) => trigger,
        None => match kv::read::<Trigger>(&ctx.triggers, &state.task.trigger_key()).await? {
            Some(t)
                if t.value.uid == state.task.trigger_uid
                    && t.value
                        .status
                        .pending
                        .iter()
                        .any(|p| p.id == state.task.pending.id) =>
            {
                t.value
            }
            _ => return Ok(Step::End(Action::Done)),
        },
    };
    let mut firing = Firing::new(&trigger, &state.task.pending);
    firing.lease = Lease {
        holder: ctx.replica.clone(),
        expires_ms: now + lease_ms(ctx, firing.kind),
    };
    match kv::create(&ctx.firings, key, &firing).await? {
        Some(_) if ctx.failpoint(Failpoint::CrashAfterRecord) => Ok(Step::End(Action::Done)),
        Some(revision) => Ok(Step::Next(Stored {
            value: firing,
            revision,
        })),
        None => Ok(Step::End(Action::Refresh)),
    }
}

/// Step 3: another replica's live lease ends the pass until it lapses; a
/// lapsed lease, or this replica's own once half spent, is taken (renewed).
async fn claim(
    ctx: &Ctx,
    key: &str,
    firing: Stored<Firing>,
    now: i64,
) -> Result<Step<Stored<Firing>>, Error> {
    let lease_ms = lease_ms(ctx, firing.value.kind);
    let lease = &firing.value.lease;
    if !lease.available_to(&ctx.replica, now) {
        return Ok(Step::End(Action::Requeue(
            until(now, lease.expires_ms) + LEASE_SLACK,
        )));
    }
    if lease.holder == ctx.replica && lease.expires_ms - now >= lease_ms / 2 {
        return Ok(Step::Next(firing));
    }
    let mut claimed = firing.value.clone();
    claimed.lease = Lease {
        holder: ctx.replica.clone(),
        expires_ms: now + lease_ms,
    };
    let revision = kv::update(&ctx.firings, key, &claimed, firing.revision).await?;
    if firing.value.lease.holder != ctx.replica {
        tracing::info!(firing = %claimed.id, previous = %firing.value.lease.holder, "took over a firing");
    }
    Ok(Step::Next(Stored {
        value: claimed,
        revision,
    }))
}

/// Step 4: publishes the event unless it is, and tries the webhook when
/// `delivery_due`, concurrently, recording their progress in `next`. The
/// error of a step that failed, to be returned once the other's progress is
/// written; a delivery that could not be tried records nothing.
async fn side_effects(ctx: &Ctx, next: &mut Firing, delivery_due: bool, now: i64) -> Option<Error> {
    let (published, delivered) = {
        let current: &Firing = next;
        let publish = async {
            if current.event_published {
                Ok(false)
            } else {
                publish(ctx, current).await.map(|()| true)
            }
        };
        let deliver = async {
            if delivery_due {
                Some(deliver(ctx, current).await)
            } else {
                None
            }
        };
        tokio::join!(publish, deliver)
    };
    let mut failed = None;
    match published {
        Ok(done) => next.event_published |= done,
        Err(e) => failed = Some(e),
    }
    let jitter = rand::rng().random::<f64>();
    match delivered {
        Some(Ok(Delivery::Tried(attempt))) => {
            webhook::apply(&mut next.delivery, &attempt, &ctx.retry, jitter);
            ctx.metrics.delivery(&attempt, next.delivery.state);
            log_attempt(next);
        }
        Some(Ok(Delivery::Pushed(pushed))) => {
            let verdict = if pushed.delivered {
                Verdict::Delivered
            } else {
                Verdict::Retry
            };
            webhook::apply_verdict(
                &mut next.delivery,
                &pushed.attempt,
                verdict,
                &ctx.retry,
                jitter,
            );
            ctx.metrics.push(&pushed.outcome);
            log_attempt(next);
        }
        Some(Ok(Delivery::TriggerGone)) => settle_gone(next, now),
        Some(Err(e)) => failed = failed.or(Some(e)),
        None => {}
    }
    failed
}

/// Step 5: writes `next` over `revision`, with the lease renewed through any
/// backoff (released once complete); its new revision.
async fn save(ctx: &Ctx, key: &str, next: &mut Firing, revision: u64) -> Result<u64, Error> {
    next.lease = if next.is_complete() {
        Lease::default()
    } else {
        Lease {
            holder: ctx.replica.clone(),
            expires_ms: now_ms().max(next.delivery.next_attempt_ms) + lease_ms(ctx, next.kind),
        }
    };
    kv::update(&ctx.firings, key, next, revision).await
}

fn log_attempt(firing: &Firing) {
    let d = &firing.delivery;
    let last = d.last().cloned().unwrap_or_default();
    let what = match firing.kind {
        TriggerKind::Mirror => "mirror push",
        TriggerKind::Build | TriggerKind::Deploy => "webhook delivery",
    };
    match d.state {
        DeliveryState::Succeeded => tracing::info!(
            firing = %firing.id, attempts = d.attempts, status = last.status_code, to = %d.url,
            "{what} done"
        ),
        DeliveryState::Failed => tracing::warn!(
            firing = %firing.id, attempts = d.attempts, status = last.status_code, error = %last.error,
            "{what} failed for good"
        ),
        _ => tracing::info!(
            firing = %firing.id, attempts = d.attempts, status = last.status_code, error = %last.error,
            next = %format_millis(d.next_attempt_ms), "{what} will be retried"
        ),
    }
}

/// Publishes the firing's `BuildRequested` or `DeploymentRequested`.
async fn publish(ctx: &Ctx, firing: &Firing) -> Result<(), Error> {
    let time = imagestreams_common::time::timestamp_of_rfc3339(&firing.time);
    let from = Some((&firing.from).into());
    let Some(event_kind) = firing.kind.event_kind() else {
        return Ok(());
    };
    let subject = event_kind.subject(&firing.namespace, &firing.trigger);
    let mut headers = HeaderMap::new();
    if let Some(tp) = &firing.traceparent {
        headers.insert(propagation::TRACEPARENT, tp.as_str());
    }
    match firing.kind {
        TriggerKind::Build => {
            let event = proto::BuildRequested {
                event_id: firing.id.clone(),
                namespace: firing.namespace.clone(),
                trigger: firing.trigger.clone(),
                trigger_uid: firing.trigger_uid.clone(),
                from,
                image: firing.image.clone(),
                docker_image_reference: firing.docker_image_reference.clone(),
                previous_image: firing.previous_image.clone(),
                cause: firing.cause.clone(),
                time,
            };
            published(
                ctx,
                "BuildRequested",
                publish_event(&ctx.js, subject, &firing.id, &event, headers).await,
            )?;
        }
        TriggerKind::Deploy => {
            let event = proto::DeploymentRequested {
                event_id: firing.id.clone(),
                namespace: firing.namespace.clone(),
                trigger: firing.trigger.clone(),
                trigger_uid: firing.trigger_uid.clone(),
                from,
                image: firing.image.clone(),
                docker_image_reference: firing.docker_image_reference.clone(),
                previous_image: firing.previous_image.clone(),
                cause: firing.cause.clone(),
                time,
                container: firing.container.clone(),
            };
            published(
                ctx,
                "DeploymentRequested",
                publish_event(&ctx.js, subject, &firing.id, &event, headers).await,
            )?;
        }
        TriggerKind::Mirror => {}
    }
    Ok(())
}

/// Counts a publish of a `kind` event by its result, and passes it on.
fn published<T, E>(ctx: &Ctx, kind: &'static str, result: Result<T, E>) -> Result<T, E> {
    let outcome = if result.is_ok() { "ok" } else { "error" };
    ctx.metrics.events.published(kind, outcome);
    result
}

/// What a delivery step came to.
#[derive(Debug)]
pub enum Delivery {
    /// The webhook was tried; the attempt says how it went.
    Tried(webhook::Attempt),
    /// A mirror rule's push was tried.
    Pushed(mirror::Pushed),
    /// The trigger was deleted (or deleted and recreated): there is no one
    /// left to deliver for, and the delivery fails for good.
    TriggerGone,
}

/// One webhook attempt for `firing`. The trigger (for its secret) comes from
/// the index, else from the KV: a read that fails is an error to retry, never
/// taken for a deleted trigger.
async fn deliver(ctx: &Ctx, firing: &Firing) -> Result<Delivery, Error> {
    let key = subjects::trigger_key(&firing.namespace, &firing.trigger);
    let trigger = match ctx.indexed(&key) {
        Some(t) if t.value.uid == firing.trigger_uid => t.value,
        // not indexed yet, or the index is behind a recreation: the KV says
        _ => match kv::read::<Trigger>(&ctx.triggers, &key).await? {
            Some(t) if t.value.uid == firing.trigger_uid => t.value,
            _ => return Ok(Delivery::TriggerGone),
        },
    };
    if let Some(target) = &trigger.spec.mirror {
        return Ok(Delivery::Pushed(ctx.pusher.push(firing, target).await?));
    }
    let secret = trigger
        .spec
        .webhook
        .as_ref()
        .and_then(|w| w.secret.as_ref());
    Ok(Delivery::Tried(
        ctx.webhooks
            .deliver(&firing.delivery.url, firing, secret)
            .await,
    ))
}

/// Removes a completed firing from its trigger's outbox (compare-and-swap,
/// trying the indexed copy first); a mirror rule's status takes the image
/// it pushed in the same write.
async fn remove_from_outbox(ctx: &Ctx, task: &Task, done: &Firing) -> Result<(), Error> {
    let key = task.trigger_key();
    let mut current = match ctx.indexed(&key) {
        Some(t) => Some(t),
        None => kv::read::<Trigger>(&ctx.triggers, &key).await?,
    };
    loop {
        let Some(stored) = current else { return Ok(()) };
        if stored.value.uid != task.trigger_uid
            || !stored
                .value
                .status
                .pending
                .iter()
                .any(|p| p.id == task.pending.id)
        {
            return Ok(());
        }
        let mut next = stored.value.clone();
        next.status.pending.retain(|p| p.id != task.pending.id);
        if done.kind == TriggerKind::Mirror && done.delivery.state == DeliveryState::Succeeded {
            next.status.last_mirrored_image = done.image.clone();
            next.status.last_mirror_time = done
                .delivery
                .last()
                .map(|a| a.time.clone())
                .unwrap_or_default();
        }
        match kv::update(&ctx.triggers, &key, &next, stored.revision).await {
            Ok(revision) => {
                ctx.remember(&Stored {
                    value: next,
                    revision,
                });
                return Ok(());
            }
            Err(Error::Conflict { .. }) => {
                current = kv::read::<Trigger>(&ctx.triggers, &key).await?;
                if let Some(fresh) = &current {
                    ctx.remember(fresh);
                }
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use imagestreams_common::error::ApiError;

    #[test]
    fn errors_map_to_retries() {
        assert_eq!(
            error_policy(&Error::Conflict { key: "k".into() }),
            Action::Refresh
        );
        assert_eq!(
            error_policy(&Error::unavailable("x", "down")),
            Action::Requeue(DEFAULT_RETRY_DELAY)
        );
        assert_eq!(
            error_policy(&Error::Api(ApiError::Unavailable("x".into()))),
            Action::Requeue(DEFAULT_RETRY_DELAY)
        );
        assert_eq!(
            error_policy(&Error::Api(ApiError::Internal("corrupt".into()))),
            Action::Requeue(DEFAULT_CORRUPT_RETRY_DELAY)
        );
    }

    #[test]
    fn waits_never_go_negative() {
        assert_eq!(until(10, 5), Duration::ZERO);
        assert_eq!(until(5, 10), Duration::from_millis(5));
    }
}
