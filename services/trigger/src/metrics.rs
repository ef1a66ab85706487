//! The trigger's metrics: `TagsChanged` consumed, `BuildRequested` and
//! `DeploymentRequested` published, webhook deliveries and mirror rules'
//! pushes by outcome, and the
//! lag of the `trigger` consumer, all under `imagestreams_trigger_`.

use async_nats::jetstream;
use imagestreams_common::{
    metrics::{self, EventCounters, ServiceMetrics},
    subjects,
};
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family},
};
use tokio_util::sync::CancellationToken;

use imagestreams_trigger_api::DeliveryState;

use crate::webhook::Attempt;

/// The labels of `webhook_deliveries_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DeliveryLabels {
    /// `delivered`, `retry` (failed, tried again later), `gave_up` (a final
    /// failure: a 4xx other than 408/429, or out of attempts) or `refused`
    /// (never sent: the SSRF policy or a bad URL).
    outcome: &'static str,
}

/// The labels of `mirror_pushes_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PushLabels {
    /// `pushed`, `unchanged` (already there: nothing written), `superseded`
    /// (a newer image went instead), or the failure's reason
    /// (`Unauthorized`, `Timeout`, …).
    outcome: String,
}

/// The trigger's counters; cheap to clone.
#[derive(Clone, Debug)]
pub struct TriggerMetrics {
    /// Events consumed and published.
    pub events: EventCounters,
    deliveries: Family<DeliveryLabels, Counter>,
    pushes: Family<PushLabels, Counter>,
    service: ServiceMetrics,
}

impl TriggerMetrics {
    /// Registers the metrics in `service`.
    pub fn new(service: ServiceMetrics) -> Self {
        let deliveries = Family::<DeliveryLabels, Counter>::default();
        service.register(
            "webhook_deliveries",
            "Webhook delivery attempts, by outcome (delivered, retry, gave_up, refused)",
            deliveries.clone(),
        );
        let pushes = Family::<PushLabels, Counter>::default();
        service.register(
            "mirror_pushes",
            "Mirror rules' pushes, by outcome (pushed, unchanged, superseded, or the failure's reason)",
            pushes.clone(),
        );
        TriggerMetrics {
            events: EventCounters::new(&service),
            deliveries,
            pushes,
            service,
        }
    }

    /// Registers the lag of the `trigger` consumer, sampled until `shutdown`.
    pub fn watch_consumer_lag(&self, js: jetstream::Context, shutdown: CancellationToken) {
        metrics::watch_consumer_lag(
            &self.service,
            js,
            subjects::STREAM_TAGS,
            subjects::DURABLE_TRIGGER,
            metrics::DEFAULT_LAG_INTERVAL,
            shutdown,
        );
    }

    /// Counts one firing of a mirror rule by `outcome`.
    pub fn push(&self, outcome: &str) {
        self.pushes
            .get_or_create(&PushLabels {
                outcome: outcome.to_owned(),
            })
            .inc();
    }

    /// Counts one delivery attempt that left the delivery in `state`.
    pub fn delivery(&self, attempt: &Attempt, state: DeliveryState) {
        let outcome = match state {
            DeliveryState::Succeeded => "delivered",
            DeliveryState::Pending => "retry",
            _ if attempt.refused => "refused",
            DeliveryState::Failed | DeliveryState::None | DeliveryState::Superseded => "gave_up",
        };
        self.deliveries
            .get_or_create(&DeliveryLabels { outcome })
            .inc();
    }
}
