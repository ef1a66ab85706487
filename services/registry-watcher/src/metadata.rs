//! The metadata recorder: reads each pushed image's metadata from the integrated registry *after* its
//! `ImagePushed` is stored, records it in the image catalog and announces it with `ImageRecorded`. Nothing on
//! the way from a push to its `TagsChanged` waits for it.
//!
//! A durable pull consumer [`CONSUMER_NAME`] on `imagestreams.images.pushed.*.*`, shared by every replica,
//! takes each `ImagePushed` of a registry notification (imports record their images themselves) and
//!
//! 1. inspects its digest ([`Inspector`]): the catalog first (records never change; the last 4,096 are also
//!    in memory), else the registry: the notification's `references` stand for the manifest, so a new image
//!    costs one config GET; concurrent asks for one digest in a process wait for the first read;
//! 2. publishes `ImageRecorded` on `imagestreams.images.recorded.<ns>.<name>` with `Nats-Msg-Id:
//!    recorded:<ns>/<name>@<digest>`, so the pushes of one digest to many tags of a stream announce it once;
//! 3. acknowledges the push.
//!
//! **Bounds.** At most `registry_watcher.metadata_concurrency` reads at once in a replica, and the
//! integrated registry's client keeps to `metadata_concurrency` requests in flight and
//! `metadata_reads_per_second`, and pauses every request to the registry for as long as a `429`'s
//! `Retry-After` (or `RateLimit-Reset`) asks.
//!
//! **Failures.** A read that fails for now (timeout, 5xx, 429 past the client's retries, unreachable, the
//! manifest not found yet) hands the push back for redelivery after [`nats::redelivery_delay`] (1 s, doubling
//! to 30 s): the backlog waits in JetStream, not in memory, and drains when the registry answers again; one
//! failing image never holds up the others. An image that will never read better (malformed, over the size
//! limit, digest mismatch) is recorded with its error: `get isimage` shows it in the
//! `imagestreams.io/metadata-error` annotation and `ImageRecorded.summary.error` says it. A manifest still
//! missing after [`GIVE_UP_AFTER`] deliveries (deleted since the push) is let go, with a warning.
//!
//! **Backlog.** `imagestreams_registry_watcher_consumer_lag{consumer="registry-watcher-metadata"}` (pushes
//! not yet recorded) and `imagestreams_registry_watcher_consumer_oldest_age_seconds{…}` (how long the oldest
//! has waited).

use std::{sync::Arc, time::Duration};

use async_nats::{
    HeaderMap,
    jetstream::{
        self, AckKind,
        consumer::{AckPolicy, DeliverPolicy, PullConsumer, pull},
    },
};
use futures::StreamExt as _;
use imagestreams_common::{
    metrics::{EventCounters, ServiceMetrics},
    nats,
    subjects::Kind,
    telemetry::propagation,
};
use imagestreams_images_api::{ImageCatalog, ImageRecord};
use imagestreams_proto::v1 as proto;
use imagestreams_registry_client::{
    IntegratedRegistry, RegistryError,
    image::{Announced, Descriptor, InspectError, Inspector},
};
use prost::Message as _;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

/// The durable consumer's name.
pub const CONSUMER_NAME: &str = "registry-watcher-metadata";
/// How long the consumer waits for an ack before it delivers a push again. Longer than one read can take
/// with the client's retries in most cases; a read that outlasts it is done twice at worst (the second finds
/// the record, and the event id drops the repeated `ImageRecorded`).
pub const ACK_WAIT: Duration = Duration::from_secs(60);
/// Deliveries after which a manifest that is still not found is let go (about 25 minutes at the longest
/// redelivery delay).
pub const GIVE_UP_AFTER: i64 = 50;
/// The `kind` label of the events published here.
const KIND: &str = "ImageRecorded";
/// The `kind` label of the events consumed here.
const CONSUMED: &str = "ImagePushed";

/// Reads pushed images' metadata into the catalog, out of the push's way.
#[derive(Debug)]
pub struct Recorder {
    registry: IntegratedRegistry,
    inspector: Arc<Inspector>,
    js: jetstream::Context,
    concurrency: usize,
    events: Option<EventCounters>,
}

/// What became of one push.
#[derive(Debug)]
enum Outcome {
    /// Recorded (or found recorded) and announced.
    Recorded,
    /// Not an image of the integrated registry's notifications.
    NotOurs,
    /// Read later.
    Retry(String),
    /// Never readable: dropped with a warning.
    Dropped(String),
}

impl Recorder {
    /// A recorder reading `registry` into `catalog`, `concurrency` reads at once, publishing on `js`.
    pub fn new(
        registry: IntegratedRegistry,
        catalog: ImageCatalog,
        js: jetstream::Context,
        concurrency: usize,
    ) -> Self {
        Recorder {
            inspector: Arc::new(Inspector::new(registry.client().clone(), catalog)),
            registry,
            js,
            concurrency: concurrency.max(1),
            events: None,
        }
    }

    /// Registers the registry client's, the inspector's and the events' counters.
    pub fn register_metrics(&mut self, metrics: &ServiceMetrics) {
        self.registry.client().register_metrics(metrics);
        self.inspector.register_metrics(metrics);
        self.events = Some(EventCounters::new(metrics));
    }

    /// Declares the durable consumer (idempotent; create-or-update, so the replicas share one).
    pub async fn declare(&self) -> Result<PullConsumer, async_nats::Error> {
        let stream = self.js.get_stream(Kind::ImagesPushed.stream()).await?;
        let consumer = stream
            .create_consumer(pull::Config {
                durable_name: Some(CONSUMER_NAME.to_owned()),
                description: Some(
                    "registry-watcher: read pushed images' metadata into the catalog".to_owned(),
                ),
                filter_subject: Kind::ImagesPushed.all_filter(),
                // only pushes from the declaration on: older images were read at their push
                deliver_policy: DeliverPolicy::New,
                ack_policy: AckPolicy::Explicit,
                ack_wait: ACK_WAIT,
                max_deliver: -1,
                ..Default::default()
            })
            .await?;
        Ok(consumer)
    }

    /// Records the pushes `consumer` delivers until `shutdown`, [`Self::concurrency`] at once; an
    /// unfinished read is delivered again (to this or another replica) after a restart.
    pub async fn run(
        self: Arc<Self>,
        consumer: PullConsumer,
        shutdown: CancellationToken,
    ) -> anyhow::Result<()> {
        loop {
            let messages = consumer
                .stream()
                .max_messages_per_batch(self.concurrency)
                .messages()
                .await?;
            let handled = messages
                .take_until(shutdown.cancelled())
                .for_each_concurrent(self.concurrency, |message| {
                    let this = self.clone();
                    async move {
                        match message {
                            Ok(message) => this.handle(message).await,
                            Err(error) => {
                                tracing::warn!(
                                    error = imagestreams_common::error::chain(&error),
                                    "cannot pull pushes to record; pulling again"
                                )
                            }
                        }
                    }
                });
            handled.await;
            if shutdown.is_cancelled() {
                return Ok(());
            }
        }
    }

    async fn handle(&self, message: jetstream::Message) {
        let delivered = message.info().map(|i| i.delivered).unwrap_or(1);
        let span = tracing::info_span!("image_record", digest = tracing::field::Empty);
        if let Some(headers) = &message.headers {
            propagation::follow(&span, headers);
        }
        let outcome = self.record(&message, delivered).instrument(span).await;
        let (ack, outcome) = match outcome {
            Outcome::Recorded => (AckKind::Ack, "ok"),
            Outcome::NotOurs => (AckKind::Ack, "ignored"),
            Outcome::Dropped(why) => {
                tracing::warn!(subject = %message.subject, %why, "a pushed image's metadata is let go");
                (AckKind::Ack, "dropped")
            }
            Outcome::Retry(why) => {
                tracing::info!(subject = %message.subject, delivered, %why, "reading a pushed image's metadata later");
                (
                    AckKind::Nak(Some(nats::redelivery_delay(delivered))),
                    "retry",
                )
            }
        };
        if let Some(events) = &self.events {
            events.consumed(CONSUMED, outcome);
        }
        if let Err(error) = message.ack_with(ack).await {
            tracing::warn!(error = imagestreams_common::error::chain(&*error), subject = %message.subject, "cannot acknowledge");
        }
    }

    async fn record(&self, message: &jetstream::Message, delivered: i64) -> Outcome {
        let pushed = match proto::ImagePushed::decode(message.payload.clone()) {
            Ok(pushed) => pushed,
            Err(e) => return Outcome::Dropped(format!("not an ImagePushed: {e}")),
        };
        if pushed.source != proto::ImageSource::RegistryNotification as i32 {
            return Outcome::NotOurs;
        }
        tracing::Span::current().record("digest", pushed.digest.as_str());
        let record = match self.inspect(&pushed).await {
            Ok(record) => record,
            Err(InspectError::Registry(e @ RegistryError::NotFound { .. }))
                if delivered >= GIVE_UP_AFTER =>
            {
                return Outcome::Dropped(format!("{e}, {delivered} times"));
            }
            Err(e) => return Outcome::Retry(imagestreams_common::error::chain(&e)),
        };
        let event = recorded(&pushed, &record);
        let sent = nats::publish_event(
            &self.js,
            Kind::ImagesRecorded.subject(&pushed.namespace, &pushed.stream),
            &event.event_id,
            &event,
            HeaderMap::new(),
        )
        .await;
        if let Some(events) = &self.events {
            events.published(KIND, if sent.is_ok() { "ok" } else { "error" });
        }
        match sent {
            Ok(_) => Outcome::Recorded,
            Err(e) => Outcome::Retry(imagestreams_common::error::chain(&e)),
        }
    }

    async fn inspect(&self, pushed: &proto::ImagePushed) -> Result<ImageRecord, InspectError> {
        let repo = self.registry.repository(&pushed.repository)?;
        let references: Vec<Descriptor> = pushed
            .references
            .iter()
            .map(|d| Descriptor {
                media_type: d.media_type.clone(),
                digest: d.name.clone(),
                size: u64::try_from(d.size).unwrap_or(0),
            })
            .collect();
        let announced = Announced {
            media_type: &pushed.media_type,
            size: u64::try_from(pushed.size).unwrap_or(0),
            references: &references,
        };
        self.inspector
            .inspect(&repo, &pushed.digest, Some(announced))
            .await
    }
}

/// The `ImageRecorded` of `record`, the image `pushed` made known.
fn recorded(pushed: &proto::ImagePushed, record: &ImageRecord) -> proto::ImageRecorded {
    proto::ImageRecorded {
        event_id: format!(
            "recorded:{}/{}@{}",
            pushed.namespace, pushed.stream, pushed.digest
        ),
        registry: pushed.registry.clone(),
        repository: pushed.repository.clone(),
        namespace: pushed.namespace.clone(),
        stream: pushed.stream.clone(),
        digest: pushed.digest.clone(),
        tag: pushed.tag.clone(),
        pushed_event_id: pushed.event_id.clone(),
        time: imagestreams_formats::time::timestamp_of_rfc3339(&record.recorded_at),
        summary: Some(record.summary().into()),
    }
}
