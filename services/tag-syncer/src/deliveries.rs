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
//! The message is acked once every import is applied (a crash redelivers
//! it; an import that changes nothing writes nothing), and retried after
//! [`RETRY_DELAY`] when the namespace cannot be read or an import cannot
//! be applied. Events are handled [`CONCURRENCY`] at a time.

use std::{sync::Arc, time::Duration};

use async_nats::jetstream::{
    self, AckKind,
    consumer::{AckPolicy, DeliverPolicy, PullConsumer, pull},
};
use futures::StreamExt as _;
use imagestreams_common::{
    error::ApiError, imports::STATUS_FAILURE, requests, store::StreamReader, subjects,
};
use imagestreams_proto::v1 as proto;
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
pub const CONCURRENCY: usize = 8;
/// How long a failed event waits before it is delivered again.
pub const RETRY_DELAY: Duration = Duration::from_secs(2);
/// How long JetStream waits for an ack before delivering an event again:
/// longer than an import.
const ACK_WAIT: Duration = Duration::from_secs(120);
/// How long a failed pull waits before the next.
const PULL_RETRY: Duration = Duration::from_secs(1);

/// What an event's handling needs.
#[derive(Debug)]
pub struct Deliveries {
    /// Reads the namespace's streams.
    pub reader: StreamReader,
    /// Runs the imports.
    pub importer: Arc<Importer>,
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
    /// Imports what `event` asks for.
    #[tracing::instrument(skip_all, fields(namespace = %event.namespace, receiver = %event.receiver, repository = %event.repository), err)]
    pub async fn handle(&self, event: &proto::ImportRequested) -> Result<Outcome, ApiError> {
        let named = Named {
            registry: Some(event.registry.as_str()).filter(|r| !r.is_empty()),
            repository: &event.repository,
            tags: &event.tags,
        };
        let (streams, _) = self.reader.list(Some(&event.namespace)).await?;
        let actor = format!("system:receiver:{}:{}", event.namespace, event.receiver);
        let mut outcome = Outcome::default();
        for stream in &streams {
            let Some(plan) = hints::followers(stream, named) else {
                continue;
            };
            outcome.streams += 1;
            let applied = requests::acting_for(actor.clone(), self.importer.run(&plan)).await?;
            for tag in &applied.tags {
                outcome.tags += 1;
                let registry_says = tag.image.as_str();
                if tag.status != STATUS_FAILURE
                    && !event.digest.is_empty()
                    && !registry_says.is_empty()
                    && registry_says != event.digest
                {
                    outcome.mismatched += 1;
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
            tracker.spawn(async move {
                let _permit = permit;
                let ack = match proto::ImportRequested::decode(message.payload.clone()) {
                    Ok(event) => match deliveries.handle(&event).await {
                        Ok(_) => AckKind::Ack,
                        Err(_) => AckKind::Nak(Some(RETRY_DELAY)),
                    },
                    Err(error) => {
                        // never decodable: redelivering it changes nothing
                        tracing::warn!(%error, subject = %message.subject, "dropping an undecodable ImportRequested");
                        AckKind::Term
                    }
                };
                if let Err(error) = message.ack_with(ack).await {
                    tracing::debug!(
                        error = imagestreams_common::error::chain(&*error),
                        "cannot acknowledge"
                    );
                }
            });
        }
    }
    tracker.close();
    tracker.wait().await;
    Ok(())
}
