//! Imports asked by webhook receivers: the durable pull consumer
//! [`CONSUMER_NAME`] on `ImportRequested`
//! (`imagestreams.imports.requested.<ns>.<receiver>`), shared by the
//! replicas.
//!
//! For each event, every stream of the receiver's namespace (and of no
//! other) is asked which of its tags follow the named repository and tags
//! ([`hints::followers`]), and those are imported: the registry says what
//! they point to now, with the namespace's credentials and the registry
//! rules, exactly as `import-image` would. The event's digest only ever
//! counts as a disagreement when the registry answers another one; it is
//! never written. The import acts for `system:receiver:<ns>:<name>`, which
//! the tag's history names as the change's actor.
//!
//! **One import at a time per stream tag, bursts coalesce.** Imports of the
//! same tags of a stream wait for each other, and an event whose tags were
//! imported by a run that *started after the delivery was received* needs
//! no import of its own: that run read the registry after the push the
//! delivery announces. A delivery for tags imported less than
//! [`BURST_WINDOW`] ago waits for the window's end, so that what comes
//! meanwhile joins it: the first delivery of a burst is imported at once,
//! the whole burst in one more import a window later. Every event is still
//! acked only once an import that covers it is applied. (Across replicas,
//! "after" compares the receiving replica's clock with the importing
//! one's: keep them synchronized.)
//!
//! **The tag moves first, the image's metadata is read after.** A delivery
//! announces a push, so the tags it names most likely point to new images:
//! each is resolved with one manifest GET (a HEAD then a GET would cost
//! two), the stream-store applies the import (`TagsChanged` goes out), and
//! only then are the new images' configs read into the catalog
//! ([`Importer::run_hinted`]); `get isimage` says "not read yet" meanwhile.
//!
//! The message is acked once every import is applied and the metadata read
//! (a crash redelivers it: the import again changes nothing and writes
//! nothing, and the metadata is read), and retried after
//! [`RETRY_DELAY`] when the namespace cannot be read or an import cannot
//! be applied. Events are handled [`CONCURRENCY`] at a time.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use async_nats::jetstream::{
    self, AckKind,
    consumer::{AckPolicy, DeliverPolicy, PullConsumer, pull},
};
use futures::StreamExt as _;
use imagestreams_common::{error::ApiError, requests, subjects};
use imagestreams_proto::v1 as proto;
use imagestreams_stream_store_api::StreamReader;
use imagestreams_tag_syncer_api::STATUS_FAILURE;
use prost::Message as _;
use tokio::sync::Semaphore;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use crate::{
    hints::{self, Named},
    importer::Importer,
};

/// The durable consumer's name.
pub const CONSUMER_NAME: &str = "tag-syncer-receivers";
/// Events handled at once.
pub const CONCURRENCY: usize = 32;
/// How long a failed event waits before it is delivered again.
pub const RETRY_DELAY: Duration = Duration::from_secs(2);
/// How long JetStream waits for an ack before delivering an event again:
/// longer than an import.
const ACK_WAIT: Duration = Duration::from_secs(120);
/// How long after an import of a stream's tags the next one waits, so that
/// a burst of deliveries for them costs two imports.
pub const BURST_WINDOW: Duration = Duration::from_secs(1);
/// How long a failed pull waits before the next.
const PULL_RETRY: Duration = Duration::from_secs(1);

/// What an event's handling needs.
#[derive(Debug)]
pub struct Deliveries {
    /// Reads the namespace's streams.
    reader: StreamReader,
    /// Runs the imports.
    importer: Arc<Importer>,
    /// Per stream and tags (`<ns>/<name>:<tag>,…`), its import lane.
    lanes: Mutex<HashMap<String, Arc<Lane>>>,
    metrics: Metrics,
}

/// The imports of some tags of a stream: one at a time, the start of the
/// last, and per tag the start (unix nanoseconds) of the last applied import
/// of it.
#[derive(Debug, Default)]
struct Lane {
    running: tokio::sync::Mutex<Option<tokio::time::Instant>>,
    covered: Mutex<HashMap<String, i64>>,
}

impl Lane {
    /// Whether every tag of `tags` was imported by a run started after `tick`.
    fn covers(&self, tags: &[String], tick: i64) -> bool {
        let covered = self.covered.lock().unwrap_or_else(|p| p.into_inner());
        tags.iter()
            .all(|tag| covered.get(tag).is_some_and(|&at| at > tick))
    }

    /// Records that `tags` were imported by a run started at `tick`.
    fn cover(&self, tags: impl IntoIterator<Item = String>, tick: i64) {
        let mut covered = self.covered.lock().unwrap_or_else(|p| p.into_inner());
        for tag in tags {
            let at = covered.entry(tag).or_default();
            *at = (*at).max(tick);
        }
    }
}

/// `receiver_imports_total{outcome}`: per event and stream, `imported` or
/// `coalesced`; `receiver_digest_mismatches_total`: tags whose registry
/// digest is not the one the sender named.
#[derive(Debug, Clone, Default)]
struct Metrics {
    imports: prometheus_client::metrics::family::Family<
        OutcomeLabel,
        prometheus_client::metrics::counter::Counter,
    >,
    mismatches: prometheus_client::metrics::counter::Counter,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

/// What came of one event.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Streams with tags that follow the named repository.
    pub streams: usize,
    /// Tags imported.
    pub tags: usize,
    /// Tags whose registry digest differs from the one the sender named.
    pub mismatched: usize,
}

impl Deliveries {
    /// Handles events with `reader` and `importer`.
    pub fn new(reader: StreamReader, importer: Arc<Importer>) -> Self {
        Deliveries {
            reader,
            importer,
            lanes: Mutex::default(),
            metrics: Metrics::default(),
        }
    }

    /// Registers the metrics in `metrics`.
    pub fn register_metrics(&self, metrics: &imagestreams_common::metrics::ServiceMetrics) {
        metrics.register(
            "receiver_imports",
            "Streams a receiver's delivery asked to import, by outcome (imported, or coalesced into another delivery's import)",
            self.metrics.imports.clone(),
        );
        metrics.register(
            "receiver_digest_mismatches",
            "Tags whose registry digest differs from the one a delivery named (the registry's is kept)",
            self.metrics.mismatches.clone(),
        );
    }

    fn lane(&self, namespace: &str, name: &str, tags: &[String]) -> Arc<Lane> {
        let mut lanes = self.lanes.lock().unwrap_or_else(|p| p.into_inner());
        lanes
            .entry(format!("{namespace}/{name}:{}", tags.join(",")))
            .or_default()
            .clone()
    }

    /// Imports what `event` asks for.
    #[tracing::instrument(skip_all, fields(namespace = %event.namespace, receiver = %event.receiver, repository = %event.repository), err)]
    pub async fn handle(&self, event: &proto::ImportRequested) -> Result<Outcome, ApiError> {
        let named = Named {
            registry: Some(event.registry.as_str()).filter(|r| !r.is_empty()),
            repository: &event.repository,
            tags: &event.tags,
        };
        let received = event.time.as_ref().map_or(i64::MAX, |t| {
            t.seconds
                .saturating_mul(1_000_000_000)
                .saturating_add(i64::from(t.nanos))
        });
        let streams = self.reader.specs(&event.namespace).await?;
        let actor = format!("system:receiver:{}:{}", event.namespace, event.receiver);
        let mut outcome = Outcome::default();
        let mut fetched = Vec::new();
        for stream in &streams {
            let Some(wanted) = hints::followers(stream, named) else {
                continue;
            };
            let mut wanted: Vec<String> = wanted.tags.into_iter().map(|t| t.tag).collect();
            wanted.sort();
            outcome.streams += 1;
            let lane = self.lane(&event.namespace, &stream.metadata.name, &wanted);
            let mut last = lane.running.lock().await;
            if lane.covers(&wanted, received) {
                // imported meanwhile by a run that began after this event
                self.metrics
                    .imports
                    .get_or_create(&OutcomeLabel {
                        outcome: "coalesced",
                    })
                    .inc();
                continue;
            }
            // a burst: wait for the window's end, holding the lane, so that
            // what comes meanwhile is received before this run starts
            if let Some(last) = *last {
                tokio::time::sleep_until(last + BURST_WINDOW).await;
            }
            *last = Some(tokio::time::Instant::now());
            let started = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX);
            // planned from the stream as it is now, not as listed
            let current = self
                .reader
                .get(&event.namespace, &stream.metadata.name)
                .await?;
            let Some(plan) = hints::followers(&current, named) else {
                continue;
            };
            let (applied, images) =
                requests::acting_for(actor.clone(), self.importer.run_hinted(&plan)).await?;
            fetched.extend(images);
            // a tag that failed (its condition says why) covers no one
            lane.cover(
                applied
                    .tags
                    .iter()
                    .filter(|t| t.status != STATUS_FAILURE)
                    .map(|t| t.tag.clone()),
                started,
            );
            self.metrics
                .imports
                .get_or_create(&OutcomeLabel {
                    outcome: "imported",
                })
                .inc();
            for tag in &applied.tags {
                outcome.tags += 1;
                let registry_says = tag.image.as_str();
                if tag.status != STATUS_FAILURE
                    && !event.digest.is_empty()
                    && !registry_says.is_empty()
                    && registry_says != event.digest
                {
                    outcome.mismatched += 1;
                    self.metrics.mismatches.inc();
                    tracing::warn!(
                        stream = %stream.metadata.name,
                        tag = %tag.tag,
                        sender_says = %event.digest,
                        %registry_says,
                        "the delivery's digest is not the registry's: the registry's is kept"
                    );
                }
            }
        }
        // the tags have moved; their new images' metadata is read before the
        // ack, so that a crash meanwhile has it read again on redelivery
        self.importer.record_metadata(&fetched).await;
        if outcome.streams == 0 {
            tracing::info!(tags = ?event.tags, "a delivery naming nothing followed in its namespace");
        } else {
            tracing::info!(
                streams = outcome.streams,
                tags = outcome.tags,
                "imported what a delivery named"
            );
        }
        Ok(outcome)
    }
}

/// Declares the durable consumer (idempotent).
pub async fn declare(js: &jetstream::Context) -> anyhow::Result<PullConsumer> {
    let stream = js.get_stream(subjects::STREAM_IMPORTS).await?;
    Ok(stream
        .get_or_create_consumer(
            CONSUMER_NAME,
            pull::Config {
                durable_name: Some(CONSUMER_NAME.to_owned()),
                description: Some(
                    "tag-syncer: imports what webhook receivers' deliveries name".to_owned(),
                ),
                filter_subject: subjects::Kind::ImportsRequested.all_filter(),
                deliver_policy: DeliverPolicy::All,
                ack_policy: AckPolicy::Explicit,
                ack_wait: ACK_WAIT,
                max_deliver: -1,
                max_ack_pending: (CONCURRENCY * 4) as i64,
                ..Default::default()
            },
        )
        .await?)
}

/// Consumes events until `shutdown`, then waits for those in hand.
pub async fn run(
    deliveries: Arc<Deliveries>,
    consumer: PullConsumer,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let tracker = TaskTracker::new();
    let permits = Arc::new(Semaphore::new(CONCURRENCY));
    while !shutdown.is_cancelled() {
        let mut messages = tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            pulled = consumer.batch().max_messages(CONCURRENCY).expires(Duration::from_millis(500)).messages() => match pulled {
                Ok(messages) => messages,
                Err(error) => {
                    tracing::warn!(error = imagestreams_common::error::chain(&error), "cannot pull deliveries; retrying");
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(PULL_RETRY) => continue,
                    }
                }
            },
        };
        while let Some(next) = messages.next().await {
            let Ok(message) = next else { break };
            let Ok(permit) = permits.clone().acquire_owned().await else {
                break;
            };
            let deliveries = deliveries.clone();
            // the delivery's trace goes on through its import
            let span = tracing::info_span!("receiver_delivery", subject = %message.subject);
            if let Some(headers) = &message.headers {
                imagestreams_common::telemetry::propagation::follow(&span, headers);
            }
            tracker.spawn(tracing::Instrument::instrument(async move {
                let _permit = permit;
                let ack = match proto::ImportRequested::decode(message.payload.clone()) {
                    Ok(event) => match deliveries.handle(&event).await {
                        Ok(_) => AckKind::Ack,
                        Err(_) => AckKind::Nak(Some(RETRY_DELAY)),
                    },
                    Err(error) => {
                        // never decodable: redelivering it changes nothing
                        tracing::warn!(error = imagestreams_common::error::chain(&error), subject = %message.subject, "dropping an undecodable ImportRequested");
                        AckKind::Term
                    }
                };
                if let Err(error) = message.ack_with(ack).await {
                    tracing::debug!(
                        error = imagestreams_common::error::chain(&*error),
                        "cannot acknowledge"
                    );
                }
            }, span));
        }
    }
    tracker.close();
    tracker.wait().await;
    Ok(())
}
