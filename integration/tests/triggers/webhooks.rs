//! Webhook deliveries: retries, final failures, the delivery log, isolation
//! of slow receivers, and the SSRF policy.

use std::time::{Duration, Instant};

use imagestreams_common::error::ApiError;
use imagestreams_trigger_api::{DeliveryState, TriggerKind};

use crate::kit::{Env, Receiver, SETTLE, digest};

#[tokio::test]
async fn a_500_then_200_is_one_delivery_in_two_attempts() -> anyhow::Result<()> {
    let env = Env::start(|_| {}).await?;
    let receiver = Receiver::start().await?;
    let _replica = env.replica().await?;
    env.create(
        "retry",
        "t",
        "app:latest",
        TriggerKind::Build,
        Some(receiver.url("flaky", "t")),
        true,
    )
    .await?;
    env.tags_changed("retry", "app", "latest", &digest("retry"), 3, None)
        .await?;
    env.wait_firings_complete("retry", "t", 1).await?;
    tokio::time::sleep(SETTLE).await;

    let deliveries = receiver.by_delivery("t");
    assert_eq!(deliveries.len(), 1, "one delivery");
    let attempts: Vec<u16> = deliveries
        .values()
        .next()
        .into_iter()
        .flatten()
        .map(|r| r.status)
        .collect();
    assert_eq!(
        attempts,
        vec![500, 200],
        "two attempts with the same delivery id"
    );
    let firing = &env.reader.firings(Some("retry"), None).await?[0].value;
    assert_eq!(firing.delivery.state, DeliveryState::Succeeded);
    assert_eq!(firing.delivery.attempts, 2);
    let codes: Vec<u16> = firing
        .delivery
        .history
        .iter()
        .map(|a| a.status_code)
        .collect();
    assert_eq!(codes, vec![500, 200], "the delivery log");
    Ok(())
}

#[tokio::test]
async fn a_410_is_recorded_and_not_retried() -> anyhow::Result<()> {
    let env = Env::start(|_| {}).await?;
    let receiver = Receiver::start().await?;
    let _replica = env.replica().await?;
    env.create(
        "gone",
        "t",
        "app:latest",
        TriggerKind::Build,
        Some(receiver.url("gone", "t")),
        true,
    )
    .await?;
    env.tags_changed("gone", "app", "latest", &digest("gone"), 3, None)
        .await?;
    env.wait_firings_complete("gone", "t", 1).await?;
    tokio::time::sleep(SETTLE).await;

    assert_eq!(receiver.requests().len(), 1, "not retried");
    let firing = &env.reader.firings(Some("gone"), None).await?[0].value;
    assert_eq!(firing.delivery.state, DeliveryState::Failed);
    assert_eq!(firing.delivery.attempts, 1);
    let last = firing.delivery.last().expect("an attempt");
    assert_eq!(last.status_code, 410);
    assert!(last.error.contains("410"), "{}", last.error);
    assert!(
        firing.event_published,
        "the event does not depend on the webhook"
    );
    // the trigger's status shows the last delivery's result
    let trigger = env.reader.get("gone", "t").await?;
    let wire = env.reader.to_proto(&trigger).await?;
    let last_delivery = wire
        .status
        .and_then(|s| s.last_delivery)
        .expect("last delivery");
    assert_eq!(last_delivery.last_status_code, 410);
    Ok(())
}

#[tokio::test]
async fn retries_stop_at_the_attempt_limit() -> anyhow::Result<()> {
    let env = Env::start(|c| c.trigger.webhook.max_attempts = 3).await?;
    let receiver = Receiver::start().await?;
    let _replica = env.replica().await?;
    env.create(
        "limit",
        "t",
        "app:latest",
        TriggerKind::Build,
        Some(receiver.url("fail", "t")),
        true,
    )
    .await?;
    env.tags_changed("limit", "app", "latest", &digest("limit"), 3, None)
        .await?;
    env.wait_firings_complete("limit", "t", 1).await?;
    tokio::time::sleep(SETTLE).await;
    assert_eq!(receiver.requests().len(), 3);
    let firing = &env.reader.firings(Some("limit"), None).await?[0].value;
    assert_eq!(firing.delivery.state, DeliveryState::Failed);
    assert_eq!(firing.delivery.attempts, 3);
    Ok(())
}

#[tokio::test]
async fn a_slow_receiver_does_not_hold_up_other_triggers() -> anyhow::Result<()> {
    let env = Env::start(|c| c.trigger.webhook.timeout_ms = 5_000).await?;
    let receiver = Receiver::start().await?;
    let _replica = env.replica().await?;
    env.create(
        "slow",
        "slow",
        "app:a",
        TriggerKind::Build,
        Some(receiver.url("slow", "slow")),
        true,
    )
    .await?;
    env.create(
        "slow",
        "fast",
        "app:b",
        TriggerKind::Build,
        Some(receiver.url("ok", "fast")),
        true,
    )
    .await?;
    let start = Instant::now();
    for i in 0..5 {
        env.tags_changed(
            "slow",
            "app",
            "a",
            &digest(&format!("slow-{i}")),
            10 + i,
            None,
        )
        .await?;
    }
    env.tags_changed("slow", "app", "b", &digest("fast"), 20, None)
        .await?;
    receiver.wait_requests("fast", 1).await?;
    let took = start.elapsed();
    assert!(
        took < Duration::from_secs(2),
        "the fast receiver waited {took:?} behind the slow one"
    );
    assert!(
        receiver.by_delivery("slow").is_empty(),
        "the slow receiver has not answered yet"
    );
    Ok(())
}

#[tokio::test]
async fn webhooks_to_internal_addresses_are_refused_by_default() -> anyhow::Result<()> {
    let env = Env::start(|c| c.trigger.webhook.allow_loopback = false).await?;
    let _replica = env.replica().await?;
    for url in [
        "http://127.0.0.1:9/hook",
        "http://localhost:9/hook",
        "http://[::1]:9/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://10.0.0.1/hook",
    ] {
        let err = env
            .create(
                "ssrf",
                "t",
                "app:latest",
                TriggerKind::Build,
                Some(url.to_owned()),
                true,
            )
            .await
            .expect_err(url);
        let api = err.downcast::<ApiError>()?;
        assert!(
            matches!(&api, ApiError::Invalid { field, message } if field == "spec.webhook.url" && message.contains("SSRF")),
            "{url}: {api:?}"
        );
    }
    Ok(())
}
