//! The HTTP side: `POST /notifications` (authentication, media type, size
//! limits, then [`notification`](crate::notification) and the [`EventSink`]),
//! `GET /metrics`, and the process's `/healthz` and `/readyz`.
//!
//! # Answers
//!
//! | status | when | published |
//! |---|---|---|
//! | 200 | every kept event was acknowledged by JetStream | all kept events |
//! | 401 | `Authorization: Bearer <token>` missing or wrong | nothing |
//! | 415 | `Content-Type` not an accepted envelope type | nothing |
//! | 413 | body over [`Limits::max_body_bytes`], or more than [`Limits::max_events`] events | nothing |
//! | 400 | the body is not an envelope (the message names the problem) | nothing |
//! | 503 | a publish failed or was not acknowledged | maybe some: the registry resends the envelope and JetStream drops the repeats by message id |
//!
//! The checks run in the order of the table, so an unauthenticated sender
//! learns nothing about the rest. Events are published in the envelope's
//! order without waiting for each other's acknowledgement; the answer waits
//! for all of them.

use std::{future::Future, sync::Arc};

use async_nats::{HeaderMap, jetstream};
use axum::{
    Router,
    body::Body,
    extract::State,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::post,
};
use chrono::Utc;
use futures::StreamExt as _;
use imagestreams_common::{
    metrics::{Metrics, ServiceMetrics},
    nats::{self, NatsError},
    subjects::Kind,
    telemetry::propagation,
};
use imagestreams_proto::v1 as proto;
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family},
};
use serde_json::json;
use sha2::{Digest as _, Sha256};
use tracing::Instrument as _;

use crate::notification::{self, DEFAULT_MAX_EVENTS, Decision, Rejection};

/// The path registries POST to.
pub const NOTIFICATIONS_PATH: &str = "/notifications";
/// Default limit of a notification body, in bytes.
pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;
/// The `WWW-Authenticate` challenge of a 401.
pub const AUTH_CHALLENGE: &str = "Bearer realm=\"imagestreams-registry-watcher\"";
/// The W3C trace context header carried from the request to every event.
pub use imagestreams_common::telemetry::propagation::TRACEPARENT;

/// Limits on one notification request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest body accepted, in bytes.
    pub max_body_bytes: usize,
    /// Most events accepted in one envelope.
    pub max_events: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            max_events: DEFAULT_MAX_EVENTS,
        }
    }
}

/// A kept event, ready to publish.
#[derive(Debug, Clone, PartialEq)]
pub enum Outgoing {
    /// To [`Kind::ImagesPushed`].
    Pushed(proto::ImagePushed),
    /// To [`Kind::ImagesDeleted`].
    Deleted(proto::ImageDeleted),
}

impl Outgoing {
    /// The registry's event id: the message id.
    pub fn event_id(&self) -> &str {
        match self {
            Outgoing::Pushed(e) => &e.event_id,
            Outgoing::Deleted(e) => &e.event_id,
        }
    }

    /// The subject it goes to.
    pub fn subject(&self) -> String {
        match self {
            Outgoing::Pushed(e) => Kind::ImagesPushed.subject(&e.namespace, &e.stream),
            Outgoing::Deleted(e) => Kind::ImagesDeleted.subject(&e.namespace, &e.stream),
        }
    }
}

/// Where kept events go: JetStream in the service, a fake in tests.
pub trait EventSink: Send + Sync + 'static {
    /// Publishes one event and resolves once it is durably stored (or was a
    /// duplicate of a stored one).
    fn publish(
        &self,
        event: &Outgoing,
        headers: HeaderMap,
    ) -> impl Future<Output = Result<(), NatsError>> + Send;
}

/// Publishes to JetStream with `Nats-Msg-Id` = the registry's event id and
/// waits for the `PublishAck`.
#[derive(Clone, Debug)]
pub struct JetStreamSink {
    js: jetstream::Context,
}

impl JetStreamSink {
    /// A sink publishing through `js`.
    pub fn new(js: jetstream::Context) -> Self {
        JetStreamSink { js }
    }
}

impl EventSink for JetStreamSink {
    async fn publish(&self, event: &Outgoing, headers: HeaderMap) -> Result<(), NatsError> {
        let subject = event.subject();
        let id = event.event_id();
        match event {
            Outgoing::Pushed(e) => nats::publish_event(&self.js, subject, id, e, headers).await?,
            Outgoing::Deleted(e) => nats::publish_event(&self.js, subject, id, e, headers).await?,
        };
        Ok(())
    }
}

/// The SHA-256 of the expected token; compared in constant time.
#[derive(Clone)]
struct TokenDigest([u8; 32]);

impl TokenDigest {
    fn of(token: &str) -> Self {
        TokenDigest(Sha256::digest(token.as_bytes()).into())
    }

    /// Whether `presented` is the token: both are hashed, and every byte of
    /// the hashes is compared whatever the outcome.
    fn matches(&self, presented: &[u8]) -> bool {
        let presented: [u8; 32] = Sha256::digest(presented).into();
        let diff = self
            .0
            .iter()
            .zip(presented.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        std::hint::black_box(diff) == 0
    }
}

/// The watcher's counters, registered as
/// `imagestreams_registry_watcher_envelopes_total{code}` and
/// `imagestreams_registry_watcher_events_total{outcome}`.
#[derive(Debug, Default)]
pub struct Stats {
    envelopes: Family<CodeLabel, Counter>,
    events: Family<OutcomeLabel, Counter>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CodeLabel {
    code: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

/// A snapshot of [`Stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// Envelopes answered 200.
    pub accepted: u64,
    /// Envelopes answered 401.
    pub unauthorized: u64,
    /// Envelopes answered 415.
    pub unsupported: u64,
    /// Envelopes answered 413.
    pub too_large: u64,
    /// Envelopes answered 400.
    pub malformed: u64,
    /// Envelopes answered 503.
    pub unavailable: u64,
    /// `ImagePushed` events acknowledged.
    pub pushed: u64,
    /// `ImageDeleted` events acknowledged.
    pub deleted: u64,
    /// Events ignored as registry noise.
    pub ignored: u64,
    /// Events skipped as unusable.
    pub skipped: u64,
}

impl Stats {
    /// Counters registered in `metrics`.
    pub fn registered(metrics: &ServiceMetrics) -> Self {
        let stats = Stats::default();
        metrics.register(
            "envelopes",
            "Notification envelopes received, by the HTTP status answered",
            stats.envelopes.clone(),
        );
        metrics.register(
            "events",
            "Events of accepted envelopes, by outcome (pushed, deleted, ignored, skipped)",
            stats.events.clone(),
        );
        stats
    }

    fn answered(&self, code: u16) {
        self.envelopes.get_or_create(&CodeLabel { code }).inc();
    }

    fn counted(&self, outcome: &'static str, by: u64) {
        self.events
            .get_or_create(&OutcomeLabel { outcome })
            .inc_by(by);
    }

    /// The current values.
    pub fn snapshot(&self) -> StatsSnapshot {
        let code = |code| self.envelopes.get_or_create(&CodeLabel { code }).get();
        let outcome = |outcome| self.events.get_or_create(&OutcomeLabel { outcome }).get();
        StatsSnapshot {
            accepted: code(200),
            unauthorized: code(401),
            unsupported: code(415),
            too_large: code(413),
            malformed: code(400),
            unavailable: code(503),
            pushed: outcome("pushed"),
            deleted: outcome("deleted"),
            ignored: outcome("ignored"),
            skipped: outcome("skipped"),
        }
    }
}

/// What the notification handler needs.
pub struct Receiver<S> {
    sink: S,
    token: Option<TokenDigest>,
    registry_host: String,
    limits: Limits,
    stats: Arc<Stats>,
    metrics: Metrics,
}

impl<S: EventSink> Receiver<S> {
    /// A receiver publishing to `sink`. `token` `None` accepts every request
    /// (insecure mode). `registry_host` goes into every event. Its counters
    /// go into a registry of its own; see [`with_metrics`](Self::with_metrics).
    pub fn new(
        sink: S,
        token: Option<&str>,
        registry_host: impl Into<String>,
        limits: Limits,
    ) -> Self {
        let metrics = Metrics::new();
        Receiver {
            sink,
            token: token.map(TokenDigest::of),
            registry_host: registry_host.into(),
            limits,
            stats: Arc::new(Stats::registered(&metrics.service(crate::NAME))),
            metrics,
        }
    }

    /// The same receiver counting into the process's `metrics`, which its
    /// `/metrics` serves whole.
    pub fn with_metrics(mut self, metrics: &Metrics) -> Self {
        self.stats = Arc::new(Stats::registered(&metrics.service(crate::NAME)));
        self.metrics = metrics.clone();
        self
    }

    /// The counters.
    pub fn stats(&self) -> Arc<Stats> {
        self.stats.clone()
    }

    /// `POST /notifications` and `GET /metrics`.
    pub fn router(self) -> Router {
        let metrics = self.metrics.router();
        Router::new()
            .route(NOTIFICATIONS_PATH, post(receive::<S>))
            .with_state(Arc::new(self))
            .merge(metrics)
    }

    fn authorized(&self, value: Option<&HeaderValue>) -> bool {
        let Some(expected) = &self.token else {
            return true;
        };
        let Some(value) = value.map(HeaderValue::as_bytes) else {
            return false;
        };
        // "Bearer" is case-insensitive (RFC 7235); the token is not
        match value.split_at_checked(7) {
            Some((scheme, token)) if scheme.eq_ignore_ascii_case(b"bearer ") => {
                expected.matches(token)
            }
            _ => false,
        }
    }
}

fn answer(status: StatusCode, body: serde_json::Value) -> Response {
    (status, axum::Json(body)).into_response()
}

fn refuse(stats: &Stats, rejection: &Rejection) -> Response {
    let status = StatusCode::from_u16(rejection.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
    stats.answered(status.as_u16());
    tracing::warn!(error = %rejection, "notification refused");
    answer(status, json!({ "error": rejection.to_string() }))
}

/// Reads the body, stopping as soon as it exceeds `limit`.
async fn read_body(body: Body, limit: usize) -> Result<Vec<u8>, Rejection> {
    let mut data = body.into_data_stream();
    let mut out = Vec::new();
    while let Some(chunk) = data.next().await {
        let chunk = chunk.map_err(|e| Rejection::Malformed(format!("reading the body: {e}")))?;
        if out.len() + chunk.len() > limit {
            return Err(Rejection::BodyTooLarge { limit });
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// The request's `traceparent` when it is a valid W3C one, else a new trace.
fn traceparent(value: Option<&HeaderValue>) -> String {
    let valid = |s: &&str| {
        let parts: Vec<&str> = s.split('-').collect();
        parts.len() == 4
            && [2, 32, 16, 2]
                .iter()
                .zip(&parts)
                .all(|(len, p)| p.len() == *len && p.bytes().all(|b| b.is_ascii_hexdigit()))
    };
    match value.and_then(|v| v.to_str().ok()).filter(valid) {
        Some(s) => s.to_owned(),
        None => {
            let trace = uuid::Uuid::new_v4().simple().to_string();
            let span = &uuid::Uuid::new_v4().simple().to_string()[..16];
            format!("00-{trace}-{span}-01")
        }
    }
}

/// `POST /notifications`, in the span that roots a push's trace (or
/// continues the registry's, when it sends a `traceparent`).
async fn receive<S: EventSink>(
    receiver: State<Arc<Receiver<S>>>,
    request: axum::extract::Request,
) -> Response {
    let span = tracing::info_span!(
        "registry_notification",
        events = tracing::field::Empty,
        published = tracing::field::Empty
    );
    propagation::follow(&span, request.headers());
    handle(receiver, request).instrument(span).await
}

/// The events to publish for the `kept` decisions, in their order. A push's image is read later, by the
/// [metadata recorder](crate::metadata): nothing here waits for the registry.
fn outgoing(kept: Vec<Decision>) -> Vec<Outgoing> {
    kept.into_iter()
        .filter_map(|decision| match decision {
            Decision::Push(push) => Some(Outgoing::Pushed((*push).into())),
            Decision::Delete(deletion) => Some(Outgoing::Deleted((*deletion).into())),
            Decision::Ignore(_) | Decision::Skip(_) => None,
        })
        .collect()
}

async fn handle<S: EventSink>(
    State(receiver): State<Arc<Receiver<S>>>,
    request: axum::extract::Request,
) -> Response {
    let (parts, body) = request.into_parts();
    let stats = &receiver.stats;
    if !receiver.authorized(parts.headers.get(header::AUTHORIZATION)) {
        stats.answered(401);
        tracing::warn!("notification without the expected bearer token refused");
        let mut response = answer(
            StatusCode::UNAUTHORIZED,
            json!({ "error": "missing or wrong bearer token" }),
        );
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static(AUTH_CHALLENGE),
        );
        return response;
    }
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    if let Err(rejection) = notification::check_media_type(content_type.as_deref()) {
        return refuse(stats, &rejection);
    }
    let limit = receiver.limits.max_body_bytes;
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return refuse(stats, &Rejection::BodyTooLarge { limit });
    }
    let envelope = match read_body(body, limit)
        .await
        .and_then(|body| notification::parse_envelope(&body, receiver.limits.max_events))
    {
        Ok(envelope) => envelope,
        Err(rejection) => return refuse(stats, &rejection),
    };
    tracing::Span::current().record("events", envelope.events.len());

    let received = Utc::now();
    let mut kept = Vec::new();
    let (mut ignored, mut skipped) = (0u64, 0u64);
    for event in &envelope.events {
        match notification::classify(event, &receiver.registry_host, received) {
            decision @ (Decision::Push(_) | Decision::Delete(_)) => kept.push(decision),
            Decision::Ignore(why) => {
                ignored += 1;
                tracing::trace!(event_id = %event.id, ?why, "event ignored");
            }
            Decision::Skip(why) => {
                skipped += 1;
                tracing::warn!(event_id = %event.id, action = %event.action, error = %why, "event skipped");
            }
        }
    }
    stats.counted("ignored", ignored);
    stats.counted("skipped", skipped);
    let outgoing = outgoing(kept);

    // with tracing on, publishing replaces this with the span's own context
    let mut headers = HeaderMap::new();
    headers.insert(
        TRACEPARENT,
        traceparent(parts.headers.get(TRACEPARENT)).as_str(),
    );
    let results = futures::future::join_all(
        outgoing
            .iter()
            .map(|event| receiver.sink.publish(event, headers.clone())),
    )
    .await;
    let failures: Vec<_> = results
        .iter()
        .zip(&outgoing)
        .filter_map(|(result, event)| result.as_ref().err().map(|e| (event.event_id(), e)))
        .collect();
    if let Some((event_id, error)) = failures.first() {
        stats.answered(503);
        tracing::warn!(
            %event_id,
            error = imagestreams_common::error::chain(*error),
            failed = failures.len(),
            of = outgoing.len(),
            "cannot publish; the registry will resend"
        );
        return answer(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({ "error": format!(
                "{} of {} events could not be published: {}",
                failures.len(),
                outgoing.len(),
                imagestreams_common::error::chain(*error)
            ) }),
        );
    }
    let pushed = outgoing
        .iter()
        .filter(|e| matches!(e, Outgoing::Pushed(_)))
        .count() as u64;
    let deleted = outgoing.len() as u64 - pushed;
    stats.counted("pushed", pushed);
    stats.counted("deleted", deleted);
    stats.answered(200);
    tracing::Span::current().record("published", outgoing.len());
    answer(
        StatusCode::OK,
        json!({ "published": outgoing.len(), "ignored": ignored, "skipped": skipped }),
    )
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use axum::http::Request;
    use serde_json::Value;
    use tower::ServiceExt as _;

    use super::*;

    const TOKEN: &str = "s3cret-token";
    const V1: &str = "application/vnd.docker.distribution.events.v1+json";

    /// Records what is published; fails every publish when `fail`.
    #[derive(Default)]
    struct FakeSink {
        published: Mutex<Vec<(Outgoing, HeaderMap)>>,
        fail: bool,
    }

    impl EventSink for Arc<FakeSink> {
        async fn publish(&self, event: &Outgoing, headers: HeaderMap) -> Result<(), NatsError> {
            if self.fail {
                return Err(NatsError::Publish {
                    subject: event.subject(),
                    source: "no responders".into(),
                });
            }
            // recorded when sent, acknowledged later, like a JetStream publish
            self.published
                .lock()
                .unwrap()
                .push((event.clone(), headers));
            tokio::task::yield_now().await;
            Ok(())
        }
    }

    fn push_event(id: &str, repo: &str, tag: &str) -> Value {
        json!({
            "id": id, "timestamp": "2024-05-01T12:00:00Z", "action": "push",
            "target": {"mediaType": "application/vnd.oci.image.manifest.v1+json", "size": 10,
                       "digest": format!("sha256:{}", "c".repeat(64)), "repository": repo, "tag": tag},
            "actor": {"name": "alice"}
        })
    }

    fn router(sink: Arc<FakeSink>, token: Option<&str>) -> Router {
        Receiver::new(sink, token, "reg:5000", Limits::default()).router()
    }

    async fn post(
        router: &Router,
        headers: &[(&str, &str)],
        body: impl Into<Body>,
    ) -> (StatusCode, Value) {
        let mut request = Request::post(NOTIFICATIONS_PATH);
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        let response = router
            .clone()
            .oneshot(request.body(body.into()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    fn envelope(events: Vec<Value>) -> String {
        json!({ "events": events }).to_string()
    }

    #[tokio::test]
    async fn a_push_is_published_with_its_id_and_a_trace() {
        let sink = Arc::new(FakeSink::default());
        let app = router(sink.clone(), Some(TOKEN));
        let body = envelope(vec![
            push_event("e1", "ns1/app", "1"),
            json!({"id": "e2", "action": "pull", "target": {"repository": "ns1/app"}}),
            push_event("e3", "a/b/c", "1"),
        ]);
        let auth = format!("Bearer {TOKEN}");
        let (status, json) = post(
            &app,
            &[("authorization", &auth), ("content-type", V1)],
            body,
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{json}");
        assert_eq!(json, json!({"published": 1, "ignored": 1, "skipped": 1}));
        let published = sink.published.lock().unwrap();
        let [(Outgoing::Pushed(event), headers)] = published.as_slice() else {
            panic!("one push: {published:?}")
        };
        assert_eq!(event.event_id, "e1");
        assert_eq!(event.actor, "alice");
        assert_eq!(event.registry, "reg:5000");
        assert_eq!(
            published[0].0.subject(),
            "imagestreams.images.pushed.ns1.app"
        );
        let trace = headers.get(TRACEPARENT).unwrap().as_str();
        assert_eq!(trace.len(), 55, "{trace}");
    }

    #[tokio::test]
    async fn bad_requests_get_their_status_and_publish_nothing() {
        let sink = Arc::new(FakeSink::default());
        let app = router(sink.clone(), Some(TOKEN));
        let good = envelope(vec![push_event("e1", "ns1/app", "1")]);
        let auth = format!("Bearer {TOKEN}");
        let lower = format!("bearer {TOKEN}");
        let many = envelope(
            (0..10_000)
                .map(|i| json!({"id": i.to_string(), "action": "pull"}))
                .collect(),
        );
        let huge = format!(
            "{{\"events\":[],\"pad\":\"{}\"}}",
            "x".repeat(DEFAULT_MAX_BODY_BYTES)
        );
        type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, String, StatusCode);
        let cases: Vec<Case> = vec![
            (
                "no token",
                vec![("content-type", V1)],
                good.clone(),
                StatusCode::UNAUTHORIZED,
            ),
            (
                "wrong token",
                vec![("authorization", "Bearer nope"), ("content-type", V1)],
                good.clone(),
                StatusCode::UNAUTHORIZED,
            ),
            (
                "basic auth",
                vec![
                    ("authorization", "Basic czNjcmV0LXRva2Vu"),
                    ("content-type", V1),
                ],
                good.clone(),
                StatusCode::UNAUTHORIZED,
            ),
            (
                "token prefix",
                vec![("authorization", "Bearer s3cret"), ("content-type", V1)],
                good.clone(),
                StatusCode::UNAUTHORIZED,
            ),
            (
                "malformed",
                vec![("authorization", &auth), ("content-type", V1)],
                "{\"events\": [".to_owned(),
                StatusCode::BAD_REQUEST,
            ),
            (
                "10,000 events",
                vec![("authorization", &auth), ("content-type", V1)],
                many,
                StatusCode::PAYLOAD_TOO_LARGE,
            ),
            (
                "over 1 MiB",
                vec![("authorization", &auth), ("content-type", V1)],
                huge,
                StatusCode::PAYLOAD_TOO_LARGE,
            ),
            (
                "unknown media type",
                vec![("authorization", &auth), ("content-type", "text/plain")],
                good.clone(),
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ),
            (
                "no media type",
                vec![("authorization", &lower)],
                good.clone(),
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ),
        ];
        for (name, headers, body, expected) in cases {
            let (status, json) = post(&app, &headers, body).await;
            assert_eq!(status, expected, "{name}: {json}");
            assert!(json["error"].is_string(), "{name}: {json}");
        }
        assert!(sink.published.lock().unwrap().is_empty());
        let (status, _) = post(
            &app,
            &[
                ("authorization", &lower),
                ("content-type", "application/json"),
            ],
            good,
        )
        .await;
        assert_eq!(status, StatusCode::OK, "the scheme is case-insensitive");
    }

    #[tokio::test]
    async fn a_failed_publish_is_a_503_so_the_registry_retries() {
        let sink = Arc::new(FakeSink {
            fail: true,
            ..FakeSink::default()
        });
        let receiver = Receiver::new(sink, None, "reg:5000", Limits::default());
        let stats = receiver.stats();
        let app = receiver.router();
        let body = envelope(vec![push_event("e1", "ns1/app", "1")]);
        let (status, json) = post(&app, &[("content-type", V1)], body).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{json}");
        assert_eq!(stats.snapshot().unavailable, 1);
        assert_eq!(stats.snapshot().pushed, 0);
    }

    #[tokio::test]
    async fn events_keep_the_envelope_order_and_the_request_trace() {
        let sink = Arc::new(FakeSink::default());
        let app = router(sink.clone(), None);
        let events = (0..50)
            .map(|i| push_event(&format!("e{i}"), "ns1/app", &i.to_string()))
            .collect();
        let trace = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        let (status, _) = post(
            &app,
            &[("content-type", V1), ("traceparent", trace)],
            envelope(events),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        let published = sink.published.lock().unwrap();
        let ids: Vec<_> = published
            .iter()
            .map(|(e, _)| e.event_id().to_owned())
            .collect();
        let expected: Vec<_> = (0..50).map(|i| format!("e{i}")).collect();
        assert_eq!(ids, expected);
        assert!(
            published
                .iter()
                .all(|(_, h)| h.get(TRACEPARENT).unwrap().as_str() == trace)
        );
    }

    #[tokio::test]
    async fn metrics_count_answers_and_outcomes() {
        let sink = Arc::new(FakeSink::default());
        let app = router(sink, Some(TOKEN));
        let _ = post(&app, &[("content-type", V1)], "{}").await;
        let response = app
            .clone()
            .oneshot(Request::get("/metrics").body(Body::empty()).unwrap())
            .await
            .unwrap();
        let text = String::from_utf8(
            axum::body::to_bytes(response.into_body(), usize::MAX)
                .await
                .unwrap()
                .to_vec(),
        )
        .unwrap();
        assert!(
            text.contains("imagestreams_registry_watcher_envelopes_total{code=\"401\"} 1"),
            "{text}"
        );
    }

    #[test]
    fn tokens_compare_whole() {
        let digest = TokenDigest::of(TOKEN);
        assert!(digest.matches(TOKEN.as_bytes()));
        assert!(!digest.matches(b"s3cret-toke"));
        assert!(!digest.matches(b"s3cret-tokenx"));
        assert!(!digest.matches(b""));
    }
}
