//! NATS setup: connecting with retry, declaring the JetStream streams and KV
//! buckets idempotently, and publishing protobuf events with a message id and
//! the current span's trace context.

use std::time::Duration;

use async_nats::{
    Client, ConnectOptions, HeaderMap,
    jetstream::{self, context::PublishAckFuture, kv, stream},
};
use tokio::time::Instant;

use crate::{config::NatsConfig, subjects, telemetry::propagation};

/// How long JetStream remembers a message id to drop a duplicate publish.
pub const DEFAULT_DUPLICATE_WINDOW: Duration = Duration::from_secs(10 * 60);
/// How many revisions of one stream the KV bucket keeps (NATS' maximum).
pub const DEFAULT_KV_HISTORY: i64 = 64;
/// How many revisions of one trigger the triggers bucket keeps.
pub const DEFAULT_TRIGGER_KV_HISTORY: i64 = 5;
/// How long events are kept in their JetStream streams.
pub const DEFAULT_EVENT_MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);

/// How long a per-minute import counter lives in [`subjects::BUCKET_IMPORT_RATE`].
pub const DEFAULT_IMPORT_RATE_MAX_AGE: Duration = Duration::from_secs(5 * 60);

/// Errors of the NATS layer.
#[derive(Debug, thiserror::Error)]
pub enum NatsError {
    /// The server could not be reached before the connect timeout.
    #[error(
        "cannot reach NATS at {url} ({reason}); start a server with `nats-server -js` or set IMAGESTREAMS_NATS__URL"
    )]
    Unreachable {
        /// The configured URL.
        url: String,
        /// The last connection error.
        reason: String,
    },
    /// A JetStream stream could not be declared.
    #[error("cannot declare JetStream stream {name}")]
    Stream {
        /// Stream name.
        name: String,
        /// Cause.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A KV bucket could not be declared.
    #[error("cannot declare KV bucket {name}")]
    Bucket {
        /// Bucket name.
        name: String,
        /// Cause.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A publish was not acknowledged by JetStream.
    #[error("publish to {subject} failed")]
    Publish {
        /// Subject.
        subject: String,
        /// Cause.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// Connects to NATS, retrying until `connect_timeout_secs` has passed. Once
/// connected the client reconnects on its own forever. `nats.url` may list
/// several servers of a cluster, comma separated; the client learns the
/// rest of the cluster from them and fails over between them.
pub async fn connect(cfg: &NatsConfig, name: &str) -> Result<Client, NatsError> {
    let servers: Vec<&str> = cfg
        .url
        .split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .collect();
    let deadline = Instant::now() + Duration::from_secs(cfg.connect_timeout_secs);
    let mut delay = Duration::from_millis(100);
    loop {
        let options = ConnectOptions::new()
            .name(name)
            .connection_timeout(Duration::from_secs(2))
            .max_reconnects(None);
        match options.connect(servers.as_slice()).await {
            Ok(client) => return Ok(client),
            Err(e) if Instant::now() + delay >= deadline => {
                return Err(NatsError::Unreachable {
                    url: cfg.url.clone(),
                    reason: e.to_string(),
                });
            }
            Err(e) => {
                tracing::debug!(url = %cfg.url, error = crate::error::chain(&e), "NATS not reachable yet, retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(1));
            }
        }
    }
}

/// The longest a handed-back event waits before its redelivery.
pub const MAX_REDELIVERY_DELAY: Duration = Duration::from_secs(30);

/// How long an event handed back (`Nak`) by a durable consumer at its
/// `delivered`-th delivery waits before the next: 1 s, doubled at each
/// delivery, at most [`MAX_REDELIVERY_DELAY`]. A failing event thus costs
/// its consumer less and less, and never holds up the events behind it.
pub fn redelivery_delay(delivered: i64) -> Duration {
    let doublings = delivered.clamp(1, 16) as u32 - 1;
    (Duration::from_secs(1) * 2u32.pow(doublings)).min(MAX_REDELIVERY_DELAY)
}

/// The declared JetStream topology.
#[derive(Clone, Debug)]
pub struct Topology {
    /// The JetStream context.
    pub js: jetstream::Context,
    /// The ImageStreams KV bucket.
    pub streams: kv::Store,
    /// The triggers KV bucket ([`subjects::BUCKET_TRIGGERS`]).
    pub triggers: kv::Store,
    /// The firings KV bucket ([`subjects::BUCKET_FIRINGS`]).
    pub firings: kv::Store,
    /// The registry secrets KV bucket ([`subjects::BUCKET_REGISTRY_SECRETS`]).
    pub registry_secrets: kv::Store,
    /// The import schedule KV bucket ([`subjects::BUCKET_IMPORT_SCHEDULE`]).
    pub import_schedule: kv::Store,
    /// The scheduled-import rate counters ([`subjects::BUCKET_IMPORT_RATE`]).
    pub import_rate: kv::Store,
    /// The image records, one per digest ([`subjects::BUCKET_IMAGES`]).
    pub images: kv::Store,
    /// The webhook receivers ([`subjects::BUCKET_RECEIVERS`]).
    pub receivers: kv::Store,
}

/// [`provision`] with `cfg.replicas`, retried until `connect_timeout_secs`
/// has passed: a JetStream cluster that is still electing its leaders (the
/// servers and the services started together) answers "temporarily
/// unavailable" or times out for a while, and replicas that declare the
/// same streams at once may race.
pub async fn provision_retrying(client: &Client, cfg: &NatsConfig) -> Result<Topology, NatsError> {
    let deadline = Instant::now() + Duration::from_secs(cfg.connect_timeout_secs);
    let mut delay = Duration::from_millis(100);
    loop {
        match provision_with(client, cfg.replicas, &cfg.event_retention()).await {
            Ok(topology) => return Ok(topology),
            Err(e) if Instant::now() + delay >= deadline => return Err(e),
            Err(e) => {
                tracing::warn!(
                    error = crate::error::chain(&e),
                    "cannot declare the JetStream streams and buckets yet, retrying"
                );
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(1));
            }
        }
    }
}

/// How long and how much of our events their JetStream streams keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventRetention {
    /// Events older than this are dropped.
    pub max_age: Duration,
    /// Each stream keeps at most this many bytes, oldest dropped first; 0:
    /// no limit.
    pub max_bytes: u64,
}

impl Default for EventRetention {
    fn default() -> Self {
        EventRetention {
            max_age: DEFAULT_EVENT_MAX_AGE,
            max_bytes: 0,
        }
    }
}

/// [`provision_with`] the default event retention.
pub async fn provision(client: &Client, replicas: usize) -> Result<Topology, NatsError> {
    provision_with(client, replicas, &EventRetention::default()).await
}

/// Declares every JetStream stream and KV bucket (idempotent: existing ones
/// are kept as they are, but for the event streams' retention, which is set
/// to `retention`).
pub async fn provision_with(
    client: &Client,
    replicas: usize,
    retention: &EventRetention,
) -> Result<Topology, NatsError> {
    let js = jetstream::new(client.clone());
    for name in subjects::STREAMS {
        let stream_error = |e: Box<dyn std::error::Error + Send + Sync>| NatsError::Stream {
            name: name.to_owned(),
            source: e,
        };
        let max_bytes = match retention.max_bytes {
            0 => -1,
            n => i64::try_from(n).unwrap_or(i64::MAX),
        };
        let config = stream::Config {
            name: name.to_owned(),
            subjects: subjects::stream_subjects(name),
            storage: stream::StorageType::File,
            retention: stream::RetentionPolicy::Limits,
            duplicate_window: DEFAULT_DUPLICATE_WINDOW,
            max_age: retention.max_age,
            max_bytes,
            num_replicas: replicas,
            ..Default::default()
        };
        let stream = js
            .get_or_create_stream(config)
            .await
            .map_err(|e| stream_error(Box::new(e)))?;
        let kept = &stream.cached_info().config;
        if kept.max_age != retention.max_age || kept.max_bytes != max_bytes {
            let mut updated = kept.clone();
            updated.max_age = retention.max_age;
            updated.max_bytes = max_bytes;
            js.update_stream(updated)
                .await
                .map_err(|e| stream_error(Box::new(e)))?;
            tracing::info!(stream = name, max_age = ?retention.max_age, max_bytes, "event retention changed");
        }
    }
    // every bucket at once: a fresh cluster is provisioned in one round
    let opened = futures::future::try_join_all(
        BUCKETS
            .iter()
            .map(|bucket| get_or_create_bucket(&js, bucket.config(replicas))),
    )
    .await?;
    if js
        .get_object_store(subjects::BUCKET_PAYLOADS)
        .await
        .is_err()
    {
        js.create_object_store(async_nats::jetstream::object_store::Config {
            bucket: subjects::BUCKET_PAYLOADS.to_owned(),
            description: Some(
                "Request and reply payloads larger than a NATS message, read once".to_owned(),
            ),
            max_age: crate::requests::PAYLOAD_MAX_AGE,
            storage: stream::StorageType::File,
            num_replicas: replicas,
            ..Default::default()
        })
        .await
        .map_err(|e| NatsError::Bucket {
            name: subjects::BUCKET_PAYLOADS.to_owned(),
            source: Box::new(e),
        })?;
    }
    // the fields in the order of BUCKETS (a struct expression evaluates its
    // fields in the order written)
    let mut opened = opened.into_iter();
    let mut next = || {
        opened
            .next()
            // can't fail: try_join_all answers one store per bucket, in order
            .unwrap_or_else(|| unreachable!("one store per bucket"))
    };
    Ok(Topology {
        js,
        streams: next(),
        triggers: next(),
        firings: next(),
        registry_secrets: next(),
        import_schedule: next(),
        import_rate: next(),
        images: next(),
        receivers: next(),
    })
}

/// One KV bucket of the topology: its name, what it holds (its
/// description), how many revisions of a key it keeps, and how long a value
/// lives (zero: for ever). On file, with the topology's replicas.
struct Bucket {
    name: &'static str,
    holds: &'static str,
    history: i64,
    max_age: Duration,
}

impl Bucket {
    /// A bucket that keeps one value per key, for ever.
    const fn one_value_per_key(name: &'static str, holds: &'static str) -> Bucket {
        Bucket {
            name,
            holds,
            history: 1,
            max_age: Duration::ZERO,
        }
    }

    fn config(&self, replicas: usize) -> kv::Config {
        kv::Config {
            bucket: self.name.to_owned(),
            description: self.holds.to_owned(),
            history: self.history,
            max_age: self.max_age,
            storage: stream::StorageType::File,
            num_replicas: replicas,
            ..Default::default()
        }
    }
}

/// Every KV bucket, in the order of [`Topology`]'s fields.
const BUCKETS: [Bucket; 8] = [
    Bucket {
        name: subjects::BUCKET_STREAMS,
        holds: "ImageStreams: a header per key <namespace>.<name>, a tag per key \
                <namespace>.<name>.<tag>",
        history: DEFAULT_KV_HISTORY,
        max_age: Duration::ZERO,
    },
    Bucket {
        name: subjects::BUCKET_TRIGGERS,
        holds: "Build and deploy triggers, one per key <namespace>.<name>",
        history: DEFAULT_TRIGGER_KV_HISTORY,
        max_age: Duration::ZERO,
    },
    Bucket::one_value_per_key(
        subjects::BUCKET_FIRINGS,
        "Trigger firings (Builds, Deployments), one per key <namespace>.<trigger>.<id>",
    ),
    Bucket::one_value_per_key(
        subjects::BUCKET_REGISTRY_SECRETS,
        "Registry secrets, encrypted, one per key <namespace>.<name>",
    ),
    Bucket::one_value_per_key(
        subjects::BUCKET_IMPORT_SCHEDULE,
        "Next scheduled import, one per key <namespace>.<name>",
    ),
    Bucket {
        max_age: DEFAULT_IMPORT_RATE_MAX_AGE,
        ..Bucket::one_value_per_key(
            subjects::BUCKET_IMPORT_RATE,
            "Scheduled imports started, one counter per minute",
        )
    },
    Bucket::one_value_per_key(
        subjects::BUCKET_IMAGES,
        "Image metadata, one immutable record per key <algorithm>.<hex digest>",
    ),
    Bucket::one_value_per_key(
        subjects::BUCKET_RECEIVERS,
        "Webhook receivers, secrets encrypted, one per key <namespace>.<name>; \
         their URL ids under _ids.<id>",
    ),
];

/// Opens a KV bucket, creating it when it does not exist.
pub async fn get_or_create_bucket(
    js: &jetstream::Context,
    config: kv::Config,
) -> Result<kv::Store, NatsError> {
    let name = config.bucket.clone();
    if let Ok(store) = js.get_key_value(&name).await {
        return Ok(store);
    }
    js.create_key_value(config)
        .await
        .map_err(|e| NatsError::Bucket {
            name,
            source: Box::new(e),
        })
}

/// Publishes a protobuf event to JetStream with `Nats-Msg-Id: msg_id` and the
/// current span's W3C trace context (replacing a `traceparent` in `headers`;
/// see [`propagation::inject`]), and waits for the acknowledgement. A
/// duplicate (same id within the duplicate window) is acknowledged without
/// being stored again.
pub async fn publish_event(
    js: &jetstream::Context,
    subject: String,
    msg_id: &str,
    event: &impl prost::Message,
    headers: HeaderMap,
) -> Result<jetstream::publish::PublishAck, NatsError> {
    send_event(js, subject, msg_id, event, headers).await?.await
}

/// The acknowledgement of an event sent by [`send_event`], still to come.
pub struct PendingAck {
    subject: String,
    ack: PublishAckFuture,
}

impl PendingAck {
    /// Waits for JetStream's acknowledgement.
    pub async fn await_ack(self) -> Result<jetstream::publish::PublishAck, NatsError> {
        let PendingAck { subject, ack } = self;
        ack.await.map_err(|e| NatsError::Publish {
            subject,
            source: Box::new(e),
        })
    }
}

impl std::future::IntoFuture for PendingAck {
    type Output = Result<jetstream::publish::PublishAck, NatsError>;
    type IntoFuture = futures::future::BoxFuture<'static, Self::Output>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.await_ack())
    }
}

impl std::fmt::Debug for PendingAck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingAck")
            .field("subject", &self.subject)
            .finish_non_exhaustive()
    }
}

/// Sends a protobuf event like [`publish_event`] without waiting for the
/// acknowledgement, so that a caller can keep several in flight (in order,
/// on one connection) and await them later.
pub async fn send_event(
    js: &jetstream::Context,
    subject: String,
    msg_id: &str,
    event: &impl prost::Message,
    mut headers: HeaderMap,
) -> Result<PendingAck, NatsError> {
    headers.insert(async_nats::header::NATS_MESSAGE_ID, msg_id);
    propagation::inject(&mut headers);
    let payload = event.encode_to_vec();
    let ack: PublishAckFuture = js
        .publish_with_headers(subject.clone(), headers, payload.into())
        .await
        .map_err(|e| NatsError::Publish {
            subject: subject.clone(),
            source: Box::new(e),
        })?;
    Ok(PendingAck { subject, ack })
}

/// Every message of JetStream stream `stream` on subject `filter` kept from
/// `start` on (every one kept when `None`) and stored at or before `until`
/// (all when `None`), in order: what an ordered consumer delivers until it
/// has caught up with the stream as it was when asked, or passed `until`;
/// then the same consumer's messages to come (for `--follow`). Used to
/// answer from the event log (`imagestreams events`, tag history).
pub async fn replay(
    js: &jetstream::Context,
    stream: &str,
    filter: &str,
    start: Option<chrono::DateTime<chrono::Utc>>,
    until: Option<chrono::DateTime<chrono::Utc>>,
) -> Result<(Vec<jetstream::Message>, jetstream::consumer::pull::Ordered), async_nats::Error> {
    use futures::StreamExt as _;
    use jetstream::consumer::{self, DeliverPolicy};

    let deliver_policy = match start {
        Some(time) => DeliverPolicy::ByStartTime {
            start_time: time::OffsetDateTime::from_unix_timestamp_nanos(
                time.timestamp_nanos_opt().unwrap_or_default().into(),
            )?,
        },
        None => DeliverPolicy::All,
    };
    let consumer = js
        .get_stream(stream)
        .await
        .map_err(|e| format!("stream {stream}: {e}"))?
        .create_consumer(consumer::pull::OrderedConfig {
            filter_subject: filter.to_owned(),
            deliver_policy,
            ..Default::default()
        })
        .await
        .map_err(|e| format!("reading {stream}: {e}"))?;
    let mut pending = consumer.cached_info().num_pending;
    let mut kept = Vec::with_capacity(pending.min(100_000) as usize);
    let mut messages = consumer.messages().await?;
    while pending > 0 {
        let message = tokio::time::timeout(Duration::from_secs(10), messages.next())
            .await
            .map_err(|_| format!("reading {stream}: no message for 10 s"))?
            .ok_or_else(|| format!("reading {stream}: the consumer ended"))?
            .map_err(|e| format!("reading {stream}: {e}"))?;
        let info = message.info()?;
        pending = info.pending;
        let stored = chrono::DateTime::from_timestamp(
            info.published.unix_timestamp(),
            info.published.nanosecond(),
        );
        if until.is_some_and(|until| stored.is_some_and(|stored| stored > until)) {
            break;
        }
        kept.push(message);
    }
    Ok((kept, messages))
}

/// Whether a message of a KV bucket's stream with these headers removes its
/// key (a delete or a purge: the `KV-Operation` header, which a put does not
/// carry), as read straight from the stream rather than through the KV API.
pub fn is_kv_removal(headers: Option<&HeaderMap>) -> bool {
    headers
        .and_then(|h| h.get("KV-Operation"))
        .is_some_and(|op| op.as_str() == "DEL" || op.as_str() == "PURGE")
}

/// [`is_kv_removal`] of a consumed message.
pub fn removes_key(message: &jetstream::Message) -> bool {
    is_kv_removal(message.headers.as_ref())
}

#[cfg(test)]
mod tests {
    #[test]
    fn kv_removals_are_deletes_and_purges() {
        let mut headers = async_nats::HeaderMap::new();
        assert!(!super::is_kv_removal(None));
        assert!(!super::is_kv_removal(Some(&headers)));
        for (op, removes) in [("DEL", true), ("PURGE", true), ("PUT", false)] {
            headers.insert("KV-Operation", op);
            assert_eq!(super::is_kv_removal(Some(&headers)), removes, "{op}");
        }
    }

    #[test]
    fn redeliveries_back_off_to_thirty_seconds() {
        let delays: Vec<u64> = [0, 1, 2, 3, 5, 6, 100]
            .map(|n| super::redelivery_delay(n).as_secs())
            .to_vec();
        assert_eq!(delays, [1, 1, 2, 4, 16, 30, 30]);
    }
}
