//! The trigger service: build and deploy triggers that fire on `TagsChanged`,
//! once per change of the tag's image, in every case; and mirror rules, whose
//! firings are pushes to another registry ([`mirror`]).
//!
//! # How a firing happens
//!
//! 1. **Decide and commit.** The replicas share the durable pull consumer
//!    [`subjects::DURABLE_TRIGGER`] on `TagsChanged`. For each changed tag the
//!    in-memory [`index`] yields the triggers following it; a trigger fires
//!    when it is unpaused, the change is newer than the last it acted on, and
//!    the image differs from its `lastTriggeredImage` ([`decide`]). The firing
//!    is committed by a compare-and-swap of the trigger's KV entry that sets
//!    `lastTriggeredImage`/`lastTriggerTime` *and* appends the firing to the
//!    trigger's outbox (`status.pending`) in the same write; a conflict
//!    re-reads and re-decides. Only then is the message acknowledged.
//! 2. **Side effects**, as a reconciler ([`reconcile`]): record the firing
//!    (create-if-absent under its deterministic key, which also claims it for
//!    this replica with a lease), publish `BuildRequested`/`DeploymentRequested`
//!    (message id = firing id), deliver the webhook (delivery id = firing id,
//!    retried with backoff), then remove the firing from the outbox.
//! 3. **Recovery.** A resync at start and every `trigger.resync_interval_ms`
//!    re-drives every outbox entry; a firing whose holder died is taken over
//!    once its lease lapses. The resync also compares each trigger with its
//!    tag's current image, catching a change whose event was missed.
//!
//! Hence: a redelivered `TagsChanged` finds the image already fired; two
//! replicas race on the compare-and-swap and then on the firing record, and
//! one wins each; a replica killed after the compare-and-swap leaves the
//! outbox entry for the next one. A webhook is delivered at least once, and
//! exactly once unless a replica dies between the receiver's answer and the
//! record of it (then the same `X-Imagestreams-Delivery` comes again).
//!
//! # Triggers on tags that already hold an image
//!
//! A trigger created on a tag that already has an image fires for that image
//! at once, unless created with `no_fire_existing` (`--no-fire-existing`),
//! which records the image as `lastTriggeredImage` without firing. Changes
//! older than the trigger are ignored either way.
#![forbid(unsafe_code)]

pub mod api;
pub mod consumer;
pub mod decide;
pub mod error;
pub mod index;
pub mod kv;
pub mod metrics;
pub mod mirror;
pub mod reconcile;
pub mod resync;
pub mod ssrf;
pub mod webhook;

use std::{
    collections::HashSet,
    sync::{Arc, Mutex, RwLock},
    time::Duration,
};

use async_nats::jetstream::{self, consumer::PullConsumer};
use futures::future::BoxFuture;
use imagestreams_common::{
    config::Config,
    runtime::{Deps, Service},
    subjects,
};
use imagestreams_stream_store_api::StreamReader;
use imagestreams_trigger_api::{Stored, Trigger, TriggerKind, TriggerReader};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use crate::{
    index::Index,
    metrics::TriggerMetrics,
    webhook::{RetryPolicy, Webhooks},
};

/// The service's name, as `serve <name>` spells it.
pub const NAME: &str = "trigger";
/// How long a consumed `TagsChanged` may stay unacknowledged before JetStream
/// redelivers it (to any replica).
pub const DEFAULT_ACK_WAIT: Duration = Duration::from_secs(30);
/// How many unacknowledged `TagsChanged` the consumer allows in flight.
pub const DEFAULT_MAX_ACK_PENDING: i64 = 10_000;
/// How long to wait before retrying after NATS trouble.
pub const DEFAULT_RETRY_DELAY: Duration = Duration::from_secs(1);

/// Test-only crash points: where a replica stops dead, as if killed, when
/// built with the `failpoints` feature and [`TriggerService::with_failpoint`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failpoint {
    /// After the compare-and-swap of a firing, before acknowledging the event
    /// and before any side effect.
    CrashAfterCas,
    /// After recording a firing (holding its lease), before publishing the
    /// event and delivering the webhook.
    CrashAfterRecord,
}

/// What every task of one replica shares.
pub struct Ctx {
    /// The process configuration.
    pub config: Arc<Config>,
    /// This replica's id (lease holder name).
    pub replica: String,
    /// The NATS client.
    pub nats: async_nats::Client,
    /// JetStream.
    pub js: jetstream::Context,
    /// The triggers bucket.
    pub triggers: async_nats::jetstream::kv::Store,
    /// The firings bucket.
    pub firings: async_nats::jetstream::kv::Store,
    /// The streams bucket (read only).
    pub streams_kv: async_nats::jetstream::kv::Store,
    /// Reads triggers and firings.
    pub reader: TriggerReader,
    /// Reads image streams.
    pub streams: StreamReader,
    /// Triggers by the tag they follow.
    pub index: RwLock<Index>,
    /// Firings this replica is driving.
    pub active: Mutex<HashSet<String>>,
    /// The webhook sender.
    pub webhooks: Webhooks,
    /// Webhook retries.
    pub retry: RetryPolicy,
    /// Mirror rules' pushes.
    pub pusher: mirror::Pusher,
    /// The lease on a firing's side effects (see [`Ctx::lease_for`]).
    pub lease: Duration,
    /// Tasks of this replica.
    pub tracker: TaskTracker,
    /// Graceful stop: finish the work in hand.
    pub shutdown: CancellationToken,
    /// Test-only: stop dead.
    pub crash: CancellationToken,
    /// Counters.
    pub metrics: TriggerMetrics,
    failpoint: Option<Failpoint>,
}

impl Ctx {
    /// A replica's shared state, with a new replica id and an empty index
    /// (filled by the first resync when the service runs).
    pub fn new(config: Arc<Config>, deps: &Deps) -> anyhow::Result<Ctx> {
        let topology = &deps.topology;
        let webhooks = webhook::Webhooks::new(&config.trigger.webhook)?;
        let retry = RetryPolicy::of(&config.trigger.webhook);
        // a lease must outlive one attempt, so a live holder never loses it mid-request
        let lease = Duration::from_millis(
            config
                .trigger
                .lease_ms
                .max(config.trigger.webhook.timeout_ms.saturating_mul(2)),
        );
        Ok(Ctx {
            replica: format!("{NAME}-{}", uuid::Uuid::new_v4().simple()),
            nats: deps.nats.clone(),
            js: topology.js.clone(),
            triggers: topology.triggers.clone(),
            firings: topology.firings.clone(),
            streams_kv: topology.streams.clone(),
            reader: TriggerReader::new(topology.triggers.clone(), topology.firings.clone()),
            streams: StreamReader::new(topology.streams.clone(), deps.nats.clone()),
            index: RwLock::default(),
            active: Mutex::default(),
            webhooks,
            retry,
            pusher: mirror::Pusher::new(
                deps.nats.clone(),
                Duration::from_millis(config.trigger.mirror_timeout_ms),
            ),
            lease,
            tracker: TaskTracker::new(),
            shutdown: CancellationToken::new(),
            crash: CancellationToken::new(),
            metrics: TriggerMetrics::new(deps.metrics.service(NAME)),
            failpoint: None,
            config,
        })
    }

    /// The lease on a firing of `kind`: a mirror firing's outlives one push,
    /// so whoever holds it knows no older push is still running.
    pub fn lease_for(&self, kind: TriggerKind) -> Duration {
        match kind {
            TriggerKind::Mirror => {
                self.lease
                    + self.pusher.timeout()
                    + imagestreams_tag_syncer_api::mirror::DEADLINE_SLACK
            }
            TriggerKind::Build | TriggerKind::Deploy => self.lease,
        }
    }

    /// Records a trigger this replica read or wrote in the index.
    pub fn remember(&self, stored: &Stored<Trigger>) {
        // can't fail unless a holder panicked; the index is then rebuilt by the next resync
        if let Ok(mut index) = self.index.write() {
            index.upsert(stored);
        }
    }

    /// A trigger from the index.
    pub fn indexed(&self, key: &str) -> Option<Stored<Trigger>> {
        self.index.read().ok().and_then(|i| i.get(key))
    }

    /// Whether the replica is stopping (gracefully or dead).
    pub fn stopping(&self) -> bool {
        self.shutdown.is_cancelled() || self.crash.is_cancelled()
    }

    /// Test-only: whether to crash at `at` (and if so, crash).
    pub fn failpoint(&self, at: Failpoint) -> bool {
        if self.failpoint == Some(at) {
            tracing::warn!(failpoint = ?at, "failpoint hit: this replica stops dead");
            self.crash.cancel();
            return true;
        }
        false
    }
}

/// The trigger service, built and ready to run.
pub struct TriggerService {
    ctx: Arc<Ctx>,
    api: async_nats::Subscriber,
    consumer: PullConsumer,
}

impl TriggerService {
    /// Builds the service: subscribes to its write API and declares its
    /// durable consumer, so requests and events are taken from here on.
    pub async fn build(config: Arc<Config>, deps: Deps) -> anyhow::Result<Self> {
        let api = deps
            .nats
            .queue_subscribe(
                subjects::trigger_api("*"),
                subjects::TRIGGER_QUEUE.to_owned(),
            )
            .await?;
        let consumer = consumer::declare(&deps.topology.js).await?;
        Ok(Self {
            ctx: Arc::new(Ctx::new(config, &deps)?),
            api,
            consumer,
        })
    }

    /// Test-only: crash at `failpoint`.
    #[cfg(feature = "failpoints")]
    pub fn with_failpoint(mut self, failpoint: Failpoint) -> Self {
        if let Some(ctx) = Arc::get_mut(&mut self.ctx) {
            ctx.failpoint = Some(failpoint);
        }
        self
    }

    /// This replica's id.
    pub fn replica(&self) -> &str {
        &self.ctx.replica
    }

    async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let ctx = self.ctx;
        tracing::info!(service = NAME, replica = %ctx.replica, "running");
        let (stop, own, crash) = (shutdown.clone(), ctx.shutdown.clone(), ctx.crash.clone());
        tokio::spawn(async move {
            tokio::select! {
                _ = stop.cancelled() => own.cancel(),
                _ = crash.cancelled() => {}
            }
        });
        // the outbox and the index come first, so recovery starts at once
        resync::initial(&ctx).await;
        ctx.tracker.spawn(resync::watch_triggers(ctx.clone()));
        ctx.tracker.spawn(resync::run_periodically(ctx.clone()));
        ctx.tracker.spawn(api::serve(ctx.clone(), self.api));
        ctx.tracker.spawn(consumer::run(ctx.clone(), self.consumer));
        ctx.metrics
            .watch_consumer_lag(ctx.js.clone(), ctx.shutdown.clone());
        tokio::select! {
            _ = ctx.shutdown.cancelled() => {}
            _ = ctx.crash.cancelled() => {}
        }
        ctx.tracker.close();
        ctx.tracker.wait().await;
        if ctx.crash.is_cancelled() && !shutdown.is_cancelled() {
            tracing::warn!(replica = %ctx.replica, "stopped dead by a failpoint");
        } else {
            tracing::info!(replica = %ctx.replica, "stopped");
        }
        Ok(())
    }
}

impl Service for TriggerService {
    fn name(&self) -> &'static str {
        NAME
    }

    fn run(self: Box<Self>, shutdown: CancellationToken) -> BoxFuture<'static, anyhow::Result<()>> {
        Box::pin((*self).run_until_stopped(shutdown))
    }
}

/// Now, in unix milliseconds.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Now, RFC 3339 UTC with milliseconds.
pub fn now_rfc3339() -> String {
    imagestreams_trigger_api::format_millis(now_ms())
}

/// Sleeps for `d` unless the replica stops first; `false` when it stopped.
pub async fn sleep_or_stop(ctx: &Ctx, d: Duration) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => true,
        _ = ctx.shutdown.cancelled() => false,
        _ = ctx.crash.cancelled() => false,
    }
}
