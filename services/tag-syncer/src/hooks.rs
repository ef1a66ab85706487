//! The webhook receivers' endpoint: `POST /hooks/<id>` on
//! `tag_syncer.hooks_listen`, the one port to expose to hosted registries.
//!
//! A delivery is checked in this order, and nothing is published unless it
//! passes every step:
//!
//! | step | answer |
//! |---|---|
//! | body over `tag_syncer.hooks_max_body_bytes` | 413 |
//! | a media type that is not JSON (`application/json`, `…+json`) | 415 |
//! | no receiver with that id (or deleted) | 404, the same for every id |
//! | the receiver is paused | 503 (senders retry later) |
//! | the kind's check fails ([`imagestreams_receivers::verify`]) | 401 |
//! | the receiver sent more than its rate ([`RateLimit`]) | 429 with `Retry-After` |
//! | the body is not the kind's payload | 400 |
//! | a ping, or not a push (delete, digest alone, …) | 200, nothing done |
//! | every repository named is outside the receiver's allow-list | 403 |
//! | published ([`Kind::ImportsRequested`], one event per repository) | 202 once JetStream acknowledged it |
//!
//! Each event's `Nats-Msg-Id` is a hash of the receiver's uid, the sender's
//! delivery id (else the body's hash) and the repository's place in the
//! delivery: a sender's retry of the same delivery is stored once, and the
//! answer says `duplicate`. The tag-syncer imports the tags that follow
//! what the event names ([`crate::deliveries`]); the sender is answered
//! before that import, but only once the request is durable.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{
    Router,
    body::{Body, Bytes},
    extract::{Path, State},
    http::{HeaderMap, StatusCode, header::CONTENT_TYPE},
    response::{IntoResponse, Response},
    routing::post,
};
use chrono::Utc;
use imagestreams_common::{nats, subjects::Kind as Subject};
use imagestreams_proto::v1 as proto;
use imagestreams_receivers::{
    Credentials, Delivery, Hint, Kind, OidcTrust, bearer_token_kid, parse, verify,
};
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family},
};
use serde_json::json;
use sha2::{Digest as _, Sha256};

use crate::{
    google_keys::GoogleKeys,
    receivers::{Found, HOOKS_PATH, ReceiverStore, allowed},
};

/// What the endpoint needs.
pub struct Hooks {
    /// The receivers.
    pub store: Arc<ReceiverStore>,
    /// Where deliveries are published.
    pub js: async_nats::jetstream::Context,
    /// The largest body accepted.
    pub max_body: usize,
    /// Google's signing keys, for `gar` receivers.
    pub gar_keys: Option<GoogleKeys>,
    /// Each receiver's rate of verified deliveries.
    pub rate: RateLimit,
    /// Deliveries, by receiver and outcome.
    pub metrics: Family<DeliveryLabels, Counter>,
}

/// `receiver_deliveries_total{namespace,receiver,outcome}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DeliveryLabels {
    namespace: String,
    receiver: String,
    outcome: &'static str,
}

/// A token bucket per receiver: `burst` deliveries at once, then `rate` a
/// second. Only verified deliveries count, so that a stranger's requests
/// never use up the sender's allowance.
#[derive(Debug)]
pub struct RateLimit {
    rate: f64,
    burst: f64,
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl RateLimit {
    /// `rate` a second (`0`: no limit) after a burst of `burst`.
    pub fn new(rate: f64, burst: u32) -> Self {
        RateLimit {
            rate,
            burst: f64::from(burst.max(1)),
            buckets: Mutex::default(),
        }
    }

    /// Takes one delivery of `key`; when none is left, how long until one is.
    pub fn take(&self, key: &str) -> Result<(), Duration> {
        if self.rate <= 0.0 {
            return Ok(());
        }
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let (tokens, at) = buckets.entry(key.to_owned()).or_insert((self.burst, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * self.rate).min(self.burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - *tokens) / self.rate))
        }
    }
}

impl Hooks {
    /// The endpoint's routes.
    pub fn router(self: Arc<Self>) -> Router {
        Router::new()
            .route(&format!("{HOOKS_PATH}/{{id}}"), post(receive))
            .with_state(self)
    }
}

fn answer(status: StatusCode, body: serde_json::Value) -> Response {
    (status, axum::Json(body)).into_response()
}

fn is_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        // some senders send none; the body must still be JSON
        return true;
    };
    let media = value
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    media == "application/json" || (media.starts_with("application/") && media.ends_with("+json"))
}

#[tracing::instrument(skip_all, fields(receiver))]
async fn receive(
    State(hooks): State<Arc<Hooks>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let Ok(body) = axum::body::to_bytes(body, hooks.max_body).await else {
        return answer(
            StatusCode::PAYLOAD_TOO_LARGE,
            json!({"message": format!("the body is larger than {} bytes", hooks.max_body)}),
        );
    };
    if !is_json(&headers) {
        return answer(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            json!({"message": "deliveries are JSON (application/json, application/cloudevents+json, …)"}),
        );
    }
    let found = match hooks.store.by_id(&id).await {
        Ok(Some(found)) => found,
        Ok(None) => {
            return answer(
                StatusCode::NOT_FOUND,
                json!({"message": "no such receiver"}),
            );
        }
        Err(error) => {
            tracing::warn!(
                error = imagestreams_common::error::chain(&error),
                "cannot read receivers"
            );
            return answer(
                StatusCode::SERVICE_UNAVAILABLE,
                json!({"message": "receivers are unavailable, retry"}),
            );
        }
    };
    tracing::Span::current().record(
        "receiver",
        tracing::field::display(format_args!("{}/{}", found.namespace, found.name)),
    );
    let Answer {
        status,
        outcome,
        id,
        message,
        retry_after,
    } = deliver(&hooks, &found, &headers, &body).await;
    hooks
        .metrics
        .get_or_create(&DeliveryLabels {
            namespace: found.namespace.clone(),
            receiver: found.name.clone(),
            outcome,
        })
        .inc();
    if !matches!(
        status,
        StatusCode::SERVICE_UNAVAILABLE | StatusCode::TOO_MANY_REQUESTS
    ) {
        hooks.store.record(&found, outcome, &id).await;
    }
    tracing::info!(outcome, delivery = %id, status = status.as_u16(), "{message}");
    let mut response = answer(status, json!({"outcome": outcome, "message": message}));
    if let Some(seconds) = retry_after {
        response.headers_mut().insert(
            axum::http::header::RETRY_AFTER,
            axum::http::HeaderValue::from(seconds),
        );
    }
    response
}

/// What a delivery comes to.
struct Answer {
    status: StatusCode,
    /// The outcome recorded and counted.
    outcome: &'static str,
    /// The sender's delivery id (or the body's hash).
    id: String,
    /// For the sender.
    message: String,
    /// Seconds to wait, for a 429.
    retry_after: Option<u64>,
}

impl Answer {
    fn new(status: StatusCode, outcome: &'static str, id: String, message: String) -> Answer {
        Answer {
            status,
            outcome,
            id,
            message,
            retry_after: None,
        }
    }
}

/// What a delivery to `found` comes to.
async fn deliver(hooks: &Hooks, found: &Found, headers: &HeaderMap, body: &Bytes) -> Answer {
    let receiver = &found.receiver;
    if receiver.paused {
        return Answer::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "paused",
            String::new(),
            "the receiver is paused".into(),
        );
    }
    let secret = match hooks.store.secret(found) {
        Ok(secret) => secret,
        Err(error) => {
            tracing::error!(
                error = imagestreams_common::error::chain(&error),
                "cannot open a receiver's secret"
            );
            return Answer::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "error",
                String::new(),
                "the receiver's secret cannot be read".into(),
            );
        }
    };
    let trust = match (&hooks.gar_keys, receiver.kind) {
        (Some(keys), Kind::Gar) => keys
            .for_kid(bearer_token_kid(headers).as_deref())
            .await
            .map(|keys| OidcTrust {
                keys,
                audience: receiver.oidc_audience.clone(),
                email: receiver.oidc_email.clone(),
            }),
        _ => None,
    };
    let credentials = Credentials {
        secret: &secret,
        oidc: trust.as_ref(),
    };
    if let Err(refusal) = verify(receiver.kind, credentials, headers, body, Utc::now()) {
        return Answer::new(
            StatusCode::UNAUTHORIZED,
            "refused",
            String::new(),
            refusal.to_string(),
        );
    }
    if let Err(wait) = hooks.rate.take(&receiver.uid) {
        let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        return Answer {
            retry_after: Some(seconds),
            ..Answer::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate-limited",
                String::new(),
                format!("more deliveries than the receiver's rate: retry after {seconds}s"),
            )
        };
    }
    let parsed = match parse(receiver.kind, headers, body) {
        Ok(parsed) => parsed,
        Err(malformed) => {
            return Answer::new(
                StatusCode::BAD_REQUEST,
                "malformed",
                String::new(),
                malformed.to_string(),
            );
        }
    };
    let delivery_id = parsed
        .id
        .clone()
        .unwrap_or_else(|| format!("sha256:{}", hex::encode(Sha256::digest(body))));
    let hints = match parsed.delivery {
        Delivery::Ping => return Answer::new(StatusCode::OK, "ping", delivery_id, "pong".into()),
        Delivery::Ignored(why) => return Answer::new(StatusCode::OK, "ignored", delivery_id, why),
        Delivery::Pushes(hints) => hints,
    };
    let named = |h: &Hint| match &h.registry {
        Some(registry) => format!("{registry}/{}", h.repository),
        None => h.repository.clone(),
    };
    let kept: Vec<(usize, &Hint)> = hints
        .iter()
        .enumerate()
        .filter(|(_, h)| allowed(&receiver.repositories, &named(h)))
        .collect();
    if kept.is_empty() {
        let names: Vec<String> = hints.iter().map(named).collect();
        return Answer::new(
            StatusCode::FORBIDDEN,
            "refused",
            delivery_id,
            format!("not in the receiver's repositories: {}", names.join(", ")),
        );
    }
    // when the delivery came: an import that starts later reads the
    // registry after the push it announces
    let received = Utc::now();
    let mut stored = 0;
    for (index, hint) in kept {
        let event_id = hex::encode(Sha256::digest(format!(
            "{}\n{delivery_id}\n{index}",
            receiver.uid
        )));
        let event = proto::ImportRequested {
            event_id: event_id.clone(),
            namespace: found.namespace.clone(),
            receiver: found.name.clone(),
            receiver_uid: receiver.uid.clone(),
            r#type: receiver.kind.name().to_owned(),
            registry: hint.registry.clone().unwrap_or_default(),
            repository: hint.repository.clone(),
            tags: hint.tags.clone(),
            digest: hint.digest.clone().unwrap_or_default(),
            delivery_id: delivery_id.clone(),
            time: Some(imagestreams_stream_store_api::history::timestamp(received)),
        };
        let subject = Subject::ImportsRequested.subject(&found.namespace, &found.name);
        let mut headers = async_nats::HeaderMap::new();
        imagestreams_common::telemetry::propagation::inject(&mut headers);
        match nats::publish_event(&hooks.js, subject, &event_id, &event, headers).await {
            Ok(ack) if ack.duplicate => {}
            Ok(_) => stored += 1,
            Err(error) => {
                tracing::warn!(
                    error = imagestreams_common::error::chain(&error),
                    "cannot publish a delivery"
                );
                return Answer::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "error",
                    delivery_id,
                    "the delivery could not be stored, retry".into(),
                );
            }
        }
    }
    if stored == 0 {
        return Answer::new(
            StatusCode::ACCEPTED,
            "duplicate",
            delivery_id,
            "already received".into(),
        );
    }
    Answer::new(
        StatusCode::ACCEPTED,
        "accepted",
        delivery_id,
        format!("{stored} repository(ies) to import again"),
    )
}
