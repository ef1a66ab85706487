//! Import on creation and on spec changes: the durable pull consumer
//! [`subjects::DURABLE_TAG_SYNCER`] on the streams bucket's own stream
//! (`KV_imagestreams`), shared by the replicas, plus a periodic resync.
//!
//! - Every stored revision is checked with [`plan::needs_import`]
//!   (OpenShift's rule: an unchecked `spec.dockerImageRepository`, or a
//!   `DockerImage` spec tag whose generation its status has not observed).
//!   Creation is the first such revision.
//! - An import re-reads the stream first and plans from its current state,
//!   so a backlog of revisions of one stream costs one import. One stream is
//!   imported by one task at a time; a revision arriving meanwhile makes
//!   that task check again when it is done.
//! - A message is acked once its import is applied (or found needless), so
//!   a crash re-delivers it. The import's own write comes back through the
//!   consumer and needs nothing, which ends the loop.
//! - Streams with scheduled tags are handed to the [`Schedule`](crate::schedule).
//! - **Resync.** At start and every `resync_interval_secs`, every stream is
//!   checked the same way: imports missed while no tag-syncer ran (the
//!   consumer is declared `DeliverPolicy::New`) are caught there.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use async_nats::jetstream::{
    self, AckKind,
    consumer::{AckPolicy, DeliverPolicy, PullConsumer, pull},
    kv,
};
use futures::StreamExt as _;
use imagestreams_common::{error::ApiError, model::ImageStream, subjects};
use imagestreams_stream_store_api::{self as store, Record, StreamReader};
use tokio::sync::{Semaphore, mpsc};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use crate::{importer::Importer, plan};

/// How many messages one pull asks for.
const BATCH: usize = 64;
/// How long one pull waits for messages.
const PULL_EXPIRES: Duration = Duration::from_millis(500);
/// How long a failed pull waits before the next.
const RETRY_DELAY: Duration = Duration::from_secs(1);

/// What the watcher shares with its import tasks.
#[derive(Debug)]
pub struct Watcher {
    /// Reads streams.
    pub reader: StreamReader,
    /// Runs imports.
    pub importer: Arc<Importer>,
    /// Streams with scheduled tags go here (KV keys).
    pub schedule: mpsc::UnboundedSender<String>,
    /// Imports at once.
    pub permits: Arc<Semaphore>,
    /// Streams being imported, and whether they changed meanwhile.
    in_flight: Mutex<HashMap<String, bool>>,
}

impl Watcher {
    /// A watcher running at most `concurrency` imports at once.
    pub fn new(
        reader: StreamReader,
        importer: Arc<Importer>,
        schedule: mpsc::UnboundedSender<String>,
        concurrency: usize,
    ) -> Self {
        Watcher {
            reader,
            importer,
            schedule,
            permits: Arc::new(Semaphore::new(concurrency.max(1))),
            in_flight: Mutex::default(),
        }
    }

    fn in_flight(&self) -> std::sync::MutexGuard<'_, HashMap<String, bool>> {
        self.in_flight.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Looks at one revision of `stream`: hands it to the schedule when it has
    /// scheduled tags; returns the key to import when it needs an import and
    /// none is running for it (else marks the running one to check again).
    fn observe(&self, stream: &ImageStream) -> Option<String> {
        let key = subjects::stream_key(&stream.metadata.namespace, &stream.metadata.name);
        if plan::has_scheduled_tags(stream) {
            let _ = self.schedule.send(key.clone());
        }
        plan::needs_import(stream)?;
        let mut in_flight = self.in_flight();
        match in_flight.get_mut(&key) {
            Some(again) => {
                *again = true;
                None
            }
            None => {
                in_flight.insert(key.clone(), false);
                Some(key)
            }
        }
    }

    /// Imports `key` until it needs nothing more (see the module docs).
    async fn import(&self, key: &str) {
        let Some((namespace, name)) = subjects::parse_stream_key(key) else {
            return;
        };
        loop {
            match self.reader.get(&namespace, &name).await {
                Ok(stream) => {
                    if let Some(plan) = plan::needs_import(&stream) {
                        match self.importer.run(&plan).await {
                            Ok(applied) => {
                                tracing::debug!(%namespace, %name, written = applied.written, "imported")
                            }
                            Err(ApiError::NotFound(_)) => {}
                            Err(error) => {
                                tracing::warn!(%namespace, %name, error = imagestreams_common::error::chain(&error), "import failed; the resync retries")
                            }
                        }
                    }
                }
                Err(ApiError::NotFound(_)) => {}
                Err(error) => {
                    tracing::warn!(%namespace, %name, error = imagestreams_common::error::chain(&error), "cannot read the stream")
                }
            }
            let mut in_flight = self.in_flight();
            match in_flight.get_mut(key) {
                Some(again) if *again => *again = false,
                _ => {
                    in_flight.remove(key);
                    return;
                }
            }
        }
    }

    /// Checks every stream (the resync).
    pub async fn resync(self: &Arc<Self>, tracker: &TaskTracker) -> Result<(), ApiError> {
        let (streams, _) = self.reader.list(None).await?;
        for stream in streams {
            if let Some(key) = self.observe(&stream) {
                let permit = self.permits.clone().acquire_owned().await;
                let this = self.clone();
                tracker.spawn(async move {
                    let _permit = permit;
                    this.import(&key).await;
                });
            }
        }
        Ok(())
    }
}

/// Declares the durable consumer (idempotent).
pub async fn declare(kv: &kv::Store, ack_wait: Duration) -> anyhow::Result<PullConsumer> {
    kv.stream
        .get_or_create_consumer(
            subjects::DURABLE_TAG_SYNCER,
            pull::Config {
                durable_name: Some(subjects::DURABLE_TAG_SYNCER.to_owned()),
                description: Some(
                    "tag-syncer: imports streams when created or when their spec asks".to_owned(),
                ),
                filter_subject: format!("$KV.{}.>", subjects::BUCKET_STREAMS),
                deliver_policy: DeliverPolicy::New,
                ack_policy: AckPolicy::Explicit,
                ack_wait,
                max_deliver: -1,
                max_ack_pending: 4096,
                ..Default::default()
            },
        )
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot declare the {} consumer: {e}",
                subjects::DURABLE_TAG_SYNCER
            )
        })
}

async fn settle(message: &jetstream::Message) {
    if let Err(error) = message.ack_with(AckKind::Ack).await {
        tracing::debug!(
            error = imagestreams_common::error::chain(&*error),
            "cannot acknowledge"
        );
    }
}

/// Consumes revisions until `shutdown`, then waits for the imports in hand.
pub async fn run(
    watcher: Arc<Watcher>,
    consumer: PullConsumer,
    resync_every: Duration,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let tracker = TaskTracker::new();
    let mut resync = tokio::time::interval(resync_every);
    resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !shutdown.is_cancelled() {
        let mut batch = tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            _ = resync.tick() => {
                if let Err(error) = watcher.resync(&tracker).await {
                    tracing::warn!(error = imagestreams_common::error::chain(&error), "resync failed");
                }
                continue;
            }
            pulled = consumer.batch().max_messages(BATCH).expires(PULL_EXPIRES).messages() => match pulled {
                Ok(batch) => batch,
                Err(error) => {
                    tracing::warn!(error = imagestreams_common::error::chain(&error), "cannot pull from the streams bucket; retrying");
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(RETRY_DELAY) => continue,
                    }
                }
            },
        };
        while let Some(next) = batch.next().await {
            let message = match next {
                Ok(message) => message,
                Err(error) => {
                    tracing::debug!(
                        error = imagestreams_common::error::chain(&*error),
                        "pulling from the streams bucket failed"
                    );
                    break;
                }
            };
            if imagestreams_common::nats::removes_key(&message) || !store::is_header(&message) {
                // a tag record: its write ends with its stream's header
                settle(&message).await;
                continue;
            }
            let revision = message.info().map(|i| i.stream_sequence).unwrap_or(0);
            let key = match Record::decode(&message.payload, revision) {
                Ok(record) => watcher.observe(&record.stream),
                Err(error) => {
                    tracing::warn!(error = imagestreams_common::error::chain(&error), subject = %message.subject, "skipping an undecodable stream");
                    None
                }
            };
            let Some(key) = key else {
                settle(&message).await;
                continue;
            };
            let permit = watcher.permits.clone().acquire_owned().await;
            let this = watcher.clone();
            tracker.spawn(async move {
                let _permit = permit;
                this.import(&key).await;
                settle(&message).await;
            });
        }
    }
    tracker.close();
    tracker.wait().await;
    Ok(())
}
