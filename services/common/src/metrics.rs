//! Prometheus metrics: one registry per process, served at `GET /metrics` on
//! the process's HTTP port in the OpenMetrics text format.
//!
//! Every service registers its own metrics under `imagestreams_<service>_`
//! (`serve <service>` spelling, `-` as `_`), so that names read
//! `imagestreams_<service>_<noun>_<unit>`; counters get OpenMetrics' `_total`.
//! What several services count the same way is here: events published and
//! consumed per kind ([`EventCounters`]) and the lag of a durable consumer
//! ([`watch_consumer_lag`]).

use std::{
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use async_nats::jetstream;
use axum::{
    Router,
    http::{HeaderValue, header},
    response::IntoResponse,
    routing::get,
};
use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::{Metric, Registry, Unit},
};
use tokio_util::sync::CancellationToken;

/// The content type of `/metrics`.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// How often [`watch_consumer_lag`] asks JetStream.
pub const DEFAULT_LAG_INTERVAL: Duration = Duration::from_secs(5);

/// The metrics registry of one process; cheap to clone.
#[derive(Clone, Default)]
pub struct Metrics {
    registry: Arc<Mutex<Registry>>,
    /// Every metric's name as queries spell it (a counter with `_total`).
    names: Arc<Mutex<std::collections::BTreeSet<String>>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

/// The metrics of one service: registers under `imagestreams_<service>_`.
#[derive(Clone, Debug)]
pub struct ServiceMetrics {
    metrics: Metrics,
    prefix: String,
}

impl Metrics {
    /// A new, empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    fn registry(&self) -> MutexGuard<'_, Registry> {
        // a panic while registering leaves a registry that still encodes
        self.registry.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Where `service` (as `serve` spells it) registers its metrics.
    pub fn service(&self, service: &str) -> ServiceMetrics {
        ServiceMetrics {
            metrics: self.clone(),
            prefix: format!("imagestreams_{}", service.replace('-', "_")),
        }
    }

    /// The name of every metric registered, as queries spell it (a counter
    /// with `_total`, a unit as a suffix), including those with no sample
    /// yet, which `/metrics` leaves out.
    pub fn registered(&self) -> Vec<String> {
        let names = self.names.lock().unwrap_or_else(|e| e.into_inner());
        names.iter().cloned().collect()
    }

    fn remember(&self, name: String, unit: Option<&Unit>, metric: &impl Metric) {
        let mut name = match unit {
            Some(unit) => format!("{name}_{}", unit.as_str()),
            None => name,
        };
        if matches!(
            prometheus_client::encoding::EncodeMetric::metric_type(metric),
            prometheus_client::metrics::MetricType::Counter
        ) {
            name.push_str("_total");
        }
        let mut names = self.names.lock().unwrap_or_else(|e| e.into_inner());
        names.insert(name);
    }

    /// Every metric, in the OpenMetrics text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // writing into a String cannot fail
        let _ = encode(&mut out, &self.registry());
        out
    }

    /// The `GET /metrics` route.
    pub fn router(&self) -> Router {
        let metrics = self.clone();
        Router::new().route(
            "/metrics",
            get(move || {
                let body = metrics.render();
                async move {
                    (
                        [(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE))],
                        body,
                    )
                        .into_response()
                }
            }),
        )
    }
}

impl ServiceMetrics {
    /// Registers `metric` as `imagestreams_<service>_<name>`. Registering the
    /// same name twice in one process (two instances of a service, as tests
    /// do) exposes both series; give them distinct labels if that matters.
    pub fn register(&self, name: &str, help: &str, metric: impl Metric) {
        let name = format!("{}_{name}", self.prefix);
        self.metrics.remember(name.clone(), None, &metric);
        self.metrics.registry().register(name, help, metric);
    }

    /// Registers `metric` as `imagestreams_<service>_<name>_<unit>`.
    pub fn register_with_unit(&self, name: &str, help: &str, unit: Unit, metric: impl Metric) {
        let name = format!("{}_{name}", self.prefix);
        self.metrics.remember(name.clone(), Some(&unit), &metric);
        self.metrics
            .registry()
            .register_with_unit(name, help, unit, metric);
    }
}

/// The labels of event counters.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EventLabels {
    /// The event kind (`ImagePushed`, `TagsChanged`, …).
    pub kind: &'static str,
    /// `ok`, or why it was not.
    pub outcome: &'static str,
}

/// `imagestreams_<service>_events_published_total{kind,outcome}` and
/// `imagestreams_<service>_events_consumed_total{kind,outcome}`.
#[derive(Clone, Debug, Default)]
pub struct EventCounters {
    published: Family<EventLabels, Counter>,
    consumed: Family<EventLabels, Counter>,
}

impl EventCounters {
    /// Counters registered for `service`.
    pub fn new(service: &ServiceMetrics) -> Self {
        let counters = EventCounters::default();
        service.register(
            "events_published",
            "Events published to JetStream, by kind and outcome (ok or error)",
            counters.published.clone(),
        );
        service.register(
            "events_consumed",
            "Events consumed from JetStream, by kind and outcome (ok, duplicate, invalid, retry)",
            counters.consumed.clone(),
        );
        counters
    }

    /// Counts one publish of a `kind` event.
    pub fn published(&self, kind: &'static str, outcome: &'static str) {
        self.published
            .get_or_create(&EventLabels { kind, outcome })
            .inc();
    }

    /// Counts one consumed `kind` event.
    pub fn consumed(&self, kind: &'static str, outcome: &'static str) {
        self.consumed
            .get_or_create(&EventLabels { kind, outcome })
            .inc();
    }

    /// How many `kind` events were consumed with `outcome` so far.
    pub fn consumed_count(&self, kind: &'static str, outcome: &'static str) -> u64 {
        self.consumed
            .get_or_create(&EventLabels { kind, outcome })
            .get()
    }
}

/// The labels of the consumer lag gauge.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConsumerLabels {
    /// The durable consumer's name.
    pub consumer: String,
}

/// `imagestreams_<service>_consumer_lag{consumer}`: the messages of a
/// JetStream stream not yet acknowledged by a durable consumer (pending plus
/// awaiting ack), and `imagestreams_<service>_consumer_oldest_age_seconds{consumer}`:
/// how long the oldest of them has been in the stream (0 when there are none).
/// One pair per service, for all its consumers.
#[derive(Clone, Debug, Default)]
pub struct ConsumerLag {
    family: Family<ConsumerLabels, Gauge>,
    age: Family<ConsumerLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
}

impl ConsumerLag {
    /// The gauges, registered for `service`.
    pub fn new(service: &ServiceMetrics) -> Self {
        let lag = ConsumerLag::default();
        service.register(
            "consumer_lag",
            "Messages a durable consumer has not acknowledged yet (pending + awaiting ack)",
            lag.family.clone(),
        );
        service.register_with_unit(
            "consumer_oldest_age",
            "How long the oldest message a durable consumer has not acknowledged has been in its stream",
            Unit::Seconds,
            lag.age.clone(),
        );
        lag
    }

    /// Samples the lag of `consumer` on `stream`, and the age of its oldest
    /// unacknowledged message, every `interval` until `shutdown`.
    pub fn watch(
        &self,
        js: jetstream::Context,
        stream: &str,
        consumer: &str,
        interval: Duration,
        shutdown: CancellationToken,
    ) {
        let labels = ConsumerLabels {
            consumer: consumer.to_owned(),
        };
        let gauge = self.family.get_or_create(&labels).clone();
        let age = self.age.get_or_create(&labels).clone();
        gauge.set(0);
        let (stream, consumer) = (stream.to_owned(), consumer.to_owned());
        tokio::spawn(async move {
            loop {
                match sample(&js, &stream, &consumer).await {
                    Ok((lag, oldest)) => {
                        gauge.set(i64::try_from(lag).unwrap_or(i64::MAX));
                        age.set(oldest.map_or(0.0, |stored| {
                            let now = std::time::SystemTime::now()
                                .duration_since(std::time::UNIX_EPOCH)
                                .map_or(0, |d| d.as_nanos() as i128);
                            ((now - stored) as f64 / 1e9).max(0.0)
                        }));
                    }
                    Err(error) => {
                        tracing::debug!(%error, %consumer, "cannot read the consumer's lag")
                    }
                }
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(interval) => {}
                }
            }
        });
    }
}

/// The lag of `consumer` on `stream` and, when it is behind, the time of its
/// oldest unacknowledged message (Unix nanoseconds): the first of its subjects
/// past its ack floor.
async fn sample(
    js: &jetstream::Context,
    stream: &str,
    consumer: &str,
) -> Result<(u64, Option<i128>), String> {
    let stream = js.get_stream(stream).await.map_err(|e| e.to_string())?;
    let info = stream
        .consumer_info(consumer)
        .await
        .map_err(|e| e.to_string())?;
    let lag = info.num_pending + info.num_ack_pending as u64;
    if lag == 0 {
        return Ok((0, None));
    }
    let filter = match info.config.filter_subject.as_str() {
        "" => ">".to_owned(),
        filter => filter.to_owned(),
    };
    let oldest = stream
        .raw_message_builder()
        .sequence(info.ack_floor.stream_sequence + 1)
        .next_by_subject(filter)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    Ok((lag, Some(oldest.time.unix_timestamp_nanos())))
}

/// Registers the consumer lag gauge of `service` and samples one consumer;
/// for a service with one durable consumer (see [`ConsumerLag`]).
pub fn watch_consumer_lag(
    service: &ServiceMetrics,
    js: jetstream::Context,
    stream: &str,
    consumer: &str,
    interval: Duration,
    shutdown: CancellationToken,
) {
    ConsumerLag::new(service).watch(js, stream, consumer, interval, shutdown);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_imagestreams_service_noun_unit() {
        let metrics = Metrics::new();
        let events = EventCounters::new(&metrics.service("stream-store"));
        events.consumed("ImagePushed", "ok");
        events.consumed("ImagePushed", "ok");
        events.published("TagsChanged", "ok");
        let durations = prometheus_client::metrics::histogram::Histogram::new(
            prometheus_client::metrics::histogram::exponential_buckets(0.001, 2.0, 4),
        );
        durations.observe(0.003);
        metrics.service("tag-syncer").register_with_unit(
            "import_duration",
            "Import durations",
            Unit::Seconds,
            durations,
        );
        let text = metrics.render();
        assert!(
            text.contains(
                "imagestreams_stream_store_events_consumed_total{kind=\"ImagePushed\",outcome=\"ok\"} 2"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "imagestreams_stream_store_events_published_total{kind=\"TagsChanged\",outcome=\"ok\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains("imagestreams_tag_syncer_import_duration_seconds_count 1"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
        assert_eq!(events.consumed_count("ImagePushed", "ok"), 2);
    }
}
