//! Exactly one firing and one delivery per (trigger, image): duplicates,
//! two replicas, and replicas stopped dead in the middle of a firing. The
//! receiver counts requests by delivery id.

use imagestreams_trigger::Failpoint;
use imagestreams_trigger_api::{DeliveryState, TriggerKind};

use crate::kit::{Env, Receiver, SETTLE, WAIT, digest};

/// Asserts that `name` got exactly `n` distinct deliveries, each once, and
/// that `n` firings and `n` events exist.
async fn assert_once_each(
    env: &Env,
    receiver: &Receiver,
    namespace: &str,
    name: &str,
    n: usize,
) -> anyhow::Result<()> {
    env.wait_firings_complete(namespace, name, n).await?;
    tokio::time::sleep(SETTLE).await;
    let deliveries = receiver.by_delivery(name);
    assert_eq!(
        deliveries.len(),
        n,
        "distinct deliveries of {name}: {:?}",
        deliveries.keys()
    );
    for (id, requests) in &deliveries {
        assert_eq!(
            requests.len(),
            1,
            "delivery {id} arrived {} times",
            requests.len()
        );
    }
    let firings = env.reader.firings(Some(namespace), Some(name)).await?;
    assert_eq!(firings.len(), n, "firings of {name}");
    for firing in &firings {
        assert!(
            deliveries.contains_key(&firing.value.id),
            "firing {} was not delivered",
            firing.value.id
        );
        assert_eq!(firing.value.delivery.state, DeliveryState::Succeeded);
    }
    let trigger = env.reader.get(namespace, name).await?;
    assert!(
        trigger.value.status.pending.is_empty(),
        "the outbox of {name} is empty"
    );
    Ok(())
}

#[tokio::test]
async fn a_duplicate_tags_changed_fires_once() -> anyhow::Result<()> {
    let env = Env::start(|_| {}).await?;
    let receiver = Receiver::start().await?;
    let _replica = env.replica().await?;
    env.create(
        "dup",
        "t",
        "app:latest",
        TriggerKind::Build,
        Some(receiver.url("ok", "t")),
        true,
    )
    .await?;
    let image = digest("dup");
    // the same event three times past JetStream's dedupe, and a stale replay
    for copy in ["a", "b", "c"] {
        env.tags_changed(
            "dup",
            "app",
            "latest",
            &image,
            7,
            Some(&format!("copy-{copy}")),
        )
        .await?;
    }
    receiver.wait_requests("t", 1).await?;
    env.tags_changed("dup", "app", "latest", &image, 3, Some("stale"))
        .await?;
    assert_once_each(&env, &receiver, "dup", "t", 1).await?;
    assert_eq!(env.stored_events(TriggerKind::Build, "dup").await?.len(), 1);
    Ok(())
}

#[tokio::test]
async fn two_replicas_fire_once_per_image() -> anyhow::Result<()> {
    let env = Env::start(|_| {}).await?;
    let receiver = Receiver::start().await?;
    let (_a, _b) = (env.replica().await?, env.replica().await?);
    const TRIGGERS: usize = 4;
    const IMAGES: u64 = 5;
    for t in 0..TRIGGERS {
        let name = format!("t{t}");
        // two triggers per tag, so both replicas race on the same events
        let from = format!("app:tag{}", t / 2);
        env.create(
            "two",
            &name,
            &from,
            TriggerKind::Build,
            Some(receiver.url("ok", &name)),
            true,
        )
        .await?;
    }
    let mut revision = 100;
    for i in 0..IMAGES {
        for tag in 0..TRIGGERS / 2 {
            revision += 1;
            let image = digest(&format!("two-{tag}-{i}"));
            // every event twice, under distinct message ids
            for copy in ["x", "y"] {
                let id = format!("{tag}-{i}-{copy}");
                env.tags_changed(
                    "two",
                    "app",
                    &format!("tag{tag}"),
                    &image,
                    revision,
                    Some(&id),
                )
                .await?;
            }
        }
    }
    for t in 0..TRIGGERS {
        let name = format!("t{t}");
        let trigger = env.reader.get("two", &name).await?;
        // the last image certainly fired; earlier ones may be superseded by a newer one processed first
        let fired = wait_fired_last(&env, &name, &trigger.value.spec.from.tag, IMAGES - 1).await?;
        assert_once_each(&env, &receiver, "two", &name, fired).await?;
    }
    let events = env.stored_events(TriggerKind::Build, "two").await?;
    let distinct: std::collections::BTreeSet<_> = events.iter().collect();
    assert_eq!(
        events.len(),
        distinct.len(),
        "no BuildRequested stored twice"
    );
    Ok(())
}

/// Waits until `trigger` fired for image `last` of its tag; returns how many firings it has.
async fn wait_fired_last(env: &Env, trigger: &str, tag: &str, last: u64) -> anyhow::Result<usize> {
    let image = digest(&format!("two-{}-{last}", tag.trim_start_matches("tag")));
    imagestreams_integration::wait_for_some(
        || async {
            // fired the last image, and every firing committed is recorded and
            // done: a firing is recorded after its commit, and leaves the
            // outbox once complete, so counting before could miss one
            let t = env.reader.get("two", trigger).await.ok()?;
            (t.value.status.last_triggered_image == image && t.value.status.pending.is_empty())
                .then_some(())
        },
        WAIT,
    )
    .await?;
    Ok(env.reader.firings(Some("two"), Some(trigger)).await?.len())
}

#[tokio::test]
async fn a_replica_stopped_dead_after_the_cas_is_completed_by_the_next() -> anyhow::Result<()> {
    let env = Env::start(|_| {}).await?;
    let receiver = Receiver::start().await?;
    let doomed = env.replica_crashing_at(Failpoint::CrashAfterCas).await?;
    env.create(
        "kill",
        "t",
        "app:latest",
        TriggerKind::Build,
        Some(receiver.url("ok", "t")),
        true,
    )
    .await?;
    let image = digest("kill");
    env.tags_changed("kill", "app", "latest", &image, 9, None)
        .await?;
    doomed.wait_dead().await?;

    // the compare-and-swap committed the firing to the outbox; nothing else happened
    let trigger = env.reader.get("kill", "t").await?;
    assert_eq!(trigger.value.status.last_triggered_image, image);
    assert_eq!(trigger.value.status.pending.len(), 1);
    assert!(env.reader.firings(Some("kill"), None).await?.is_empty());
    assert!(receiver.requests().is_empty());

    let _next = env.replica().await?;
    receiver.wait_requests("t", 1).await?;
    assert_once_each(&env, &receiver, "kill", "t", 1).await?;
    assert_eq!(
        env.stored_events(TriggerKind::Build, "kill").await?.len(),
        1
    );
    Ok(())
}

#[tokio::test]
async fn a_replica_stopped_dead_after_recording_hands_over_when_its_lease_lapses()
-> anyhow::Result<()> {
    let env = Env::start(|c| {
        c.trigger.webhook.timeout_ms = 400;
        c.trigger.lease_ms = 1_000;
    })
    .await?;
    let receiver = Receiver::start().await?;
    let doomed = env.replica_crashing_at(Failpoint::CrashAfterRecord).await?;
    env.create(
        "lease",
        "t",
        "app:latest",
        TriggerKind::Build,
        Some(receiver.url("ok", "t")),
        true,
    )
    .await?;
    env.tags_changed("lease", "app", "latest", &digest("lease"), 9, None)
        .await?;
    doomed.wait_dead().await?;

    let firings = env.reader.firings(Some("lease"), None).await?;
    assert_eq!(firings.len(), 1, "recorded once");
    assert!(!firings[0].value.event_published);
    assert_eq!(firings[0].value.delivery.state, DeliveryState::Pending);
    assert!(
        !firings[0].value.lease.holder.is_empty(),
        "still leased by the dead replica"
    );

    let _next = env.replica().await?;
    receiver.wait_requests("t", 1).await?;
    assert_once_each(&env, &receiver, "lease", "t", 1).await?;
    assert_eq!(
        env.stored_events(TriggerKind::Build, "lease").await?.len(),
        1
    );
    Ok(())
}

#[tokio::test]
async fn a_replica_stopped_gracefully_hands_its_retries_over_at_once() -> anyhow::Result<()> {
    // a lease far longer than the test: only its release lets the next replica in
    let env = Env::start(|c| {
        c.trigger.lease_ms = 60_000;
        c.trigger.webhook.max_attempts = 4;
        c.trigger.webhook.initial_backoff_ms = 400;
        c.trigger.webhook.max_backoff_ms = 400;
    })
    .await?;
    let receiver = Receiver::start().await?;
    let first = env.replica().await?;
    env.create(
        "handover",
        "t",
        "app:latest",
        TriggerKind::Build,
        Some(receiver.url("fail", "t")),
        true,
    )
    .await?;
    env.tags_changed("handover", "app", "latest", &digest("handover"), 5, None)
        .await?;
    receiver.wait_requests("t", 1).await?;
    first.stop().await?;
    let firing = &env.reader.firings(Some("handover"), None).await?[0].value;
    assert!(
        firing.lease.holder.is_empty(),
        "the lease was released: {:?}",
        firing.lease
    );
    assert_eq!(firing.delivery.state, DeliveryState::Pending);

    let _second = env.replica().await?;
    env.wait_firings_complete("handover", "t", 1).await?;
    tokio::time::sleep(SETTLE).await;
    let deliveries = receiver.by_delivery("t");
    assert_eq!(deliveries.len(), 1, "one delivery id across both replicas");
    assert_eq!(
        deliveries.values().next().map(Vec::len),
        Some(4),
        "attempts up to the limit, no more"
    );
    let firing = &env.reader.firings(Some("handover"), None).await?[0].value;
    assert_eq!(firing.delivery.state, DeliveryState::Failed);
    assert_eq!(firing.delivery.attempts, 4);
    Ok(())
}
