//! A firing's step that meets NATS trouble is retried, never settled as if
//! the trouble were an answer.

use std::{sync::Arc, time::Duration};

use anyhow::Context as _;
use imagestreams_trigger::{
    Ctx, Failpoint,
    reconcile::{self, Action, FiringState, Task},
};
use imagestreams_trigger_api::{DeliveryState, TriggerKind};

use crate::kit::{Env, Receiver, SETTLE, digest};

/// Issue 22, point 4: a webhook retry reads its trigger from the KV when the
/// replica's index has not seen it (a replica that just took over). NATS
/// stops during that read and comes back before the step writes its
/// progress. The delivery must not be failed as "the trigger was deleted":
/// it is tried again once NATS answers, and arrives.
#[tokio::test]
async fn a_webhook_retry_survives_nats_stopped_while_it_reads_its_trigger() -> anyhow::Result<()> {
    // a long lease: the replica keeps its claim through the pause without renewing it
    let env = Env::start(|c| c.trigger.lease_ms = 120_000).await?;
    let receiver = Receiver::start().await?;

    // a replica commits a firing to the trigger's outbox and stops dead
    // before any side effect
    let first = env.replica_crashing_at(Failpoint::CrashAfterCas).await?;
    env.create(
        "ns1",
        "hook",
        "app:latest",
        TriggerKind::Build,
        Some(receiver.url("flaky", "hook")),
        true,
    )
    .await?;
    env.tags_changed("ns1", "app", "latest", &digest("a"), 10, None)
        .await?;
    first.wait_dead().await?;
    let trigger = env.reader.get("ns1", "hook").await?.value;
    let pending = trigger
        .status
        .pending
        .first()
        .cloned()
        .context("the committed firing is in the trigger's outbox")?;

    // the replica that carries it on has an empty index: it reads the trigger
    let ctx = Arc::new(Ctx::new(env.config.clone(), &env.deps().await?)?);
    let mut state = FiringState {
        task: Task::stale(&trigger, pending.clone()),
        firing: None,
    };
    // records the firing, publishes its event, and tries the webhook: 500
    let action = reconcile::reconcile(&mut state, &ctx).await?;
    assert!(
        matches!(action, Action::Requeue(_)),
        "a 500 is retried later: {action:?}"
    );
    receiver.wait_requests("hook", 1).await?;
    // the retry is due (backoff at most 200 ms in the test configuration)
    tokio::time::sleep(Duration::from_millis(300)).await;

    // NATS stops while the retry reads the trigger, and comes back after
    // the read gave up but before the step's write of its progress has
    env.nats.pause()?;
    let retry = tokio::spawn({
        let ctx = ctx.clone();
        async move { reconcile::reconcile(&mut state, &ctx).await }
    });
    let read_gives_up = ctx.nats.timeout().context("a request timeout")?;
    tokio::time::sleep(read_gives_up + Duration::from_millis(800)).await;
    env.nats.resume()?;
    let outcome = retry.await?;
    assert!(
        outcome.is_err(),
        "the step reports the NATS failure, to be retried: {outcome:?}"
    );

    // the replica drives the firing on: the webhook arrives, once more
    reconcile::spawn(&ctx, Task::stale(&trigger, pending.clone()));
    env.wait_firings_complete("ns1", "hook", 1).await?;
    tokio::time::sleep(SETTLE).await;
    let firings = env.reader.firings(Some("ns1"), Some("hook")).await?;
    let delivery = &firings[0].value.delivery;
    assert_eq!(
        delivery.state,
        DeliveryState::Succeeded,
        "the delivery succeeded: {delivery:?}"
    );
    let requests = receiver.by_delivery("hook");
    let statuses: Vec<u16> = requests
        .get(&pending.id)
        .into_iter()
        .flatten()
        .map(|r| r.status)
        .collect();
    assert_eq!(
        statuses,
        [500, 200],
        "the receiver saw the first attempt and one retry, under the firing's delivery id"
    );
    assert_eq!(requests.len(), 1, "one delivery id: {:?}", requests.keys());
    Ok(())
}
