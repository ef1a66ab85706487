//! The stream-store service: the single writer of ImageStreams in JetStream
//! KV. It answers the write API, applies `ImagePushed` events to the tag
//! histories, and emits `TagsChanged` from the bucket's changefeed.
//!
//! # Design
//!
//! Three loops share one [`Bucket`]: one
//! [`Record`](imagestreams_stream_store_api::Record) per stream under the key
//! `<ns>.<name>`, whose KV revision is the stream's `resourceVersion`.
//!
//! - **Write API** ([`api`]): create, update, delete and tag over NATS
//!   request-reply, queue group `stream-store`. Every request is validated
//!   before anything is read or written. Update and delete are
//!   compare-and-swap on the revision (a stale one is `Conflict`, gRPC
//!   ABORTED); create uses `kv.create` (`AlreadyExists`); an update that
//!   changes nothing writes nothing. The rules (server-owned fields,
//!   generations, `oc tag`) are pure functions in [`writes`] and [`tagging`].
//! - **Applying `ImagePushed`** ([`pushes`]): the durable consumer
//!   `stream-store` applies each event with a read-modify-CAS that also
//!   remembers the event id, so redeliveries and re-publishes are no-ops.
//!   The tag-history rules ([`history`]) follow OpenShift's
//!   `AddTagEventToImageStream`, and tags that follow another tag of the same
//!   stream (`ImageStreamTag`) track it, transitively. Streams are applied in
//!   parallel (8 workers, dealt by stream), each stream in order.
//! - **Imports** ([`imports`]): the `import` operation applies the outcome
//!   of one tag-syncer import (tag histories, `ImportSuccess` conditions, the
//!   repository check, and `import-image`'s spec changes) as one write, or
//!   none when nothing changed.
//! - **Changefeed** ([`changefeed`]): `TagsChanged` is not published by the
//!   writers. Each write stores the tag changes it made in
//!   [`Record::change`](imagestreams_stream_store_api::Record::change); the
//!   durable consumer `stream-store-changefeed` on the bucket's own stream
//!   publishes them, after the commit, with message id `<uid>:<revision>`,
//!   then acks. A crash anywhere loses nothing (the put stays unacked) and
//!   repeats nothing (JetStream drops a republished id within its
//!   10-minute duplicate window).
//! - **Shutdown.** Both consumers pull bounded batches and finish the batch
//!   in hand; the API answers the requests it has received. A restart thus
//!   neither waits for redeliveries nor applies events out of order.
//!
//! # Bounds
//!
//! - A tag's history keeps `stream_store.history_limit` items (50 by
//!   default), the oldest dropped first; the current image always stays.
//! - A record is at most the NATS server's `max_payload` (read at connect)
//!   less 4 KiB for headers and a 1 KiB reserve ([`bucket::Limits`]), so it
//!   can always be read back. A write that would be larger drops the oldest
//!   items of the longest histories first; a stream whose current images
//!   alone exceed it (too many tags: about 3,100 pushed tags at 1 MiB) is
//!   refused with `LimitExceeded` (gRPC `RESOURCE_EXHAUSTED`, HTTP 413), and a
//!   push that would make it so is dead-lettered ([`pushes`]). A push costs
//!   one write of the whole record: bounded, but not yet independent of the
//!   number of tags.
//! - The bucket keeps 64 revisions per stream: a revision the changefeed has
//!   not read when 64 newer writes of its stream have landed is gone, with
//!   its `TagsChanged`. Writes are therefore admitted only while the
//!   changefeed is less than 32 bucket messages behind ([`lag`]); when it
//!   stalls, writers wait, then fail as unavailable, rather than lose events.
//! - A crash between publishing a `TagsChanged` and acking it must be
//!   followed by a restart within the 10-minute duplicate window, or the
//!   event is published twice.
//! - A record remembers the last
//!   [`APPLIED_EVENTS_KEPT`](imagestreams_stream_store_api::APPLIED_EVENTS_KEPT)
//!   (256) event ids of its stream: an event redelivered after more than 256
//!   newer events of the same stream would be applied again.
//! - Deleting a stream forgets its event ids: a registry notification
//!   redelivered after the delete creates the stream again.
//! - With several replicas sharing the durable consumers, writes stay correct
//!   (compare-and-swap, idempotent), but events of one stream may be applied,
//!   and `TagsChanged` published, out of their original order (order them by
//!   `resourceVersion`), and the lag guard only counts each replica's own
//!   writes against the shared ack floor.
//!
//! # Where this differs from OpenShift
//!
//! - When only one of image and `dockerImageReference` matches `items[0]`,
//!   OpenShift rewrites `items[0]` in place; here the event is prepended (the
//!   rule of the issue), see [`history`].
//! - Every applied event clears the tag's conditions, also when it changes
//!   nothing.
//! - `DockerImage` spec tags get no status until an import brings the image
//!   (OpenShift shows a `reference` tag's pull spec at once).
//! - An alias (`ImageStreamTag` follower) is followed within its own stream
//!   only, as `oc tag --alias` allows.
#![forbid(unsafe_code)]

pub mod api;
pub mod bucket;
pub mod changefeed;
pub mod history;
pub mod imports;
pub mod lag;
pub mod policies;
pub mod pushes;
pub mod tagging;
pub mod writes;

use std::{sync::Arc, time::Duration};

use anyhow::Context as _;
use async_nats::jetstream::consumer::PullConsumer;
use futures::{StreamExt as _, future::BoxFuture};
use imagestreams_common::{
    config::Config,
    metrics::{self, ConsumerLag, EventCounters},
    runtime::{Deps, Service},
    subjects,
};
use prometheus_client::metrics::gauge::Gauge;
use tokio_util::sync::CancellationToken;

use crate::bucket::Bucket;

/// The service's name, as `serve <name>` spells it.
pub const NAME: &str = "stream-store";

/// Which parts of the service run. All of them by default; tests switch
/// parts off to stage a crash between a write and its `TagsChanged`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// Answer the write API.
    pub api: bool,
    /// Apply `ImagePushed`.
    pub pushes: bool,
    /// Publish `TagsChanged` from the changefeed.
    pub changefeed: bool,
    /// Workers applying `ImagePushed` in parallel (by stream).
    pub workers: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            api: true,
            pushes: true,
            changefeed: true,
            workers: pushes::DEFAULT_WORKERS,
        }
    }
}

/// The stream-store service, built and ready to run.
pub struct StreamStoreService {
    deps: Deps,
    api: Option<(Arc<api::Api>, api::Subscriptions)>,
    pushes: Option<(PullConsumer, Arc<pushes::Applier>, usize)>,
    changefeed: Option<(PullConsumer, lag::LagGuard)>,
    events: EventCounters,
}

impl StreamStoreService {
    /// Builds the service: subscribes to the API and declares both durable
    /// consumers, so requests and events wait for [`Service::run`].
    pub async fn build(config: Arc<Config>, deps: Deps) -> anyhow::Result<Self> {
        Self::build_with(config, deps, Options::default()).await
    }

    /// [`build`](Self::build) with only the parts `options` asks for. Both
    /// consumers are declared either way, so that no write escapes the
    /// changefeed.
    pub async fn build_with(
        config: Arc<Config>,
        deps: Deps,
        options: Options,
    ) -> anyhow::Result<Self> {
        let limits = bucket::Limits::new(config.stream_store.history_limit.get(), &deps.nats);
        let bucket = Bucket::new(deps.topology.streams.clone(), deps.nats.clone(), limits);
        let api = if options.api {
            let subscriptions = api::subscribe(&deps.nats).await?;
            Some((Arc::new(api::Api::new(bucket.clone())), subscriptions))
        } else {
            None
        };
        // Declared after subscribing: these requests go over the same
        // connection, so once they are answered the server has the
        // subscriptions, and a caller may send requests as soon as build returns.
        let changefeed = changefeed::declare(bucket.kv()).await?;
        let pushed = pushes::declare(&deps.topology.js).await?;
        let guard = bucket.guard().clone();
        guard.published(changefeed.cached_info().ack_floor.stream_sequence);
        let events = EventCounters::new(&deps.metrics.service(NAME));
        let mut applier = pushes::Applier::new(
            bucket,
            config.integrated_registry.host.clone(),
            deps.topology.js.clone(),
        )
        .with_events(events.clone());
        if config.auth.enabled {
            let identities = imagestreams_common::auth::store::IdentityStore::open_boxed(
                &deps.topology.js,
                config.nats.replicas,
                &config.auth,
            )
            .await?;
            applier = applier.with_identities(identities);
        }
        Ok(Self {
            events,
            api,
            pushes: options
                .pushes
                .then(|| (pushed, Arc::new(applier), options.workers)),
            changefeed: options.changefeed.then_some((changefeed, guard)),
            deps,
        })
    }
}

/// How often the stream count is taken.
pub const DEFAULT_COUNT_INTERVAL: Duration = Duration::from_secs(30);

/// Registers the lag of both durable consumers and the number of streams,
/// sampled until `shutdown`.
fn observe(deps: &Deps, shutdown: CancellationToken) {
    let service = deps.metrics.service(NAME);
    let lag = ConsumerLag::new(&service);
    lag.watch(
        deps.topology.js.clone(),
        subjects::STREAM_IMAGES,
        pushes::CONSUMER_NAME,
        metrics::DEFAULT_LAG_INTERVAL,
        shutdown.clone(),
    );
    lag.watch(
        deps.topology.js.clone(),
        &deps.topology.streams.stream_name,
        changefeed::CONSUMER_NAME,
        metrics::DEFAULT_LAG_INTERVAL,
        shutdown.clone(),
    );
    let streams = Gauge::<i64>::default();
    service.register(
        "streams",
        "ImageStreams stored (sampled every 30 s)",
        streams.clone(),
    );
    let kv = deps.topology.streams.clone();
    tokio::spawn(async move {
        loop {
            match kv.keys().await {
                Ok(keys) => {
                    let count = keys.filter(|k| std::future::ready(k.is_ok())).count().await;
                    streams.set(count as i64);
                }
                Err(error) => tracing::debug!(
                    error = imagestreams_common::error::chain(&error),
                    "cannot count the streams"
                ),
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(DEFAULT_COUNT_INTERVAL) => {}
            }
        }
    });
}

/// Runs `task`; when it fails, cancels `token` so the other loops stop too.
async fn guarded<F>(task: F, token: CancellationToken) -> anyhow::Result<()>
where
    F: std::future::Future<Output = anyhow::Result<()>>,
{
    let result = task.await;
    if let Err(error) = &result {
        tracing::error!(error = format!("{error:#}"), "stopping the stream-store");
        token.cancel();
    }
    result
}

impl Service for StreamStoreService {
    fn name(&self) -> &'static str {
        NAME
    }

    fn run(self: Box<Self>, shutdown: CancellationToken) -> BoxFuture<'static, anyhow::Result<()>> {
        Box::pin(async move {
            tracing::info!(service = NAME, "running");
            let token = shutdown.child_token();
            let Self {
                deps,
                api,
                pushes,
                changefeed,
                events,
            } = *self;
            observe(&deps, token.clone());
            let api = async {
                if let Some((api, subscriptions)) = api {
                    api::serve(api, deps.nats.clone(), subscriptions, token.clone())
                        .await
                        .context("write API")?;
                }
                anyhow::Ok(())
            };
            let pushes = async {
                if let Some((consumer, applier, workers)) = pushes {
                    pushes::run(consumer, applier, workers, token.clone())
                        .await
                        .context("applying ImagePushed")?;
                }
                anyhow::Ok(())
            };
            // the changefeed stops last: the writers finish the work in hand
            // on shutdown, and their writes are admitted only while the
            // changefeed keeps up (the lag guard); stopped with them, it would
            // hold each of their last writes back for the guard's whole wait
            let feed_stop = CancellationToken::new();
            let changefeed = async {
                if let Some((consumer, guard)) = changefeed {
                    changefeed::run(
                        deps.topology.js.clone(),
                        consumer,
                        guard,
                        events,
                        feed_stop.clone(),
                    )
                    .await
                    .context("changefeed")?;
                }
                anyhow::Ok(())
            };
            let writers = async {
                let (a, b) =
                    tokio::join!(guarded(api, token.clone()), guarded(pushes, token.clone()),);
                feed_stop.cancel();
                a.and(b)
            };
            let (writers, feed) = tokio::join!(writers, guarded(changefeed, token.clone()));
            writers.and(feed)
        })
    }
}
