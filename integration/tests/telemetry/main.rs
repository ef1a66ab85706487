//! Tracing across the mesh: one registry notification becomes one trace,
//! registry-watcher → stream-store (the event, the write, the changefeed's
//! `TagsChanged`) → trigger (the event, the firing) → webhook, exported over
//! OTLP to an in-process collector, and the webhook request carries it on;
//! and a gRPC call continues the trace its metadata names, into the
//! stream-store over NATS request-reply. After the push, `/metrics`
//! exposes exactly the metrics README's table lists.
//!
//! The tracer provider is process-wide, so this binary holds one test.

mod collector;

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::Context as _;
use axum::{Router, extract::State, http::HeaderMap, routing::post};
use imagestreams::cli::ServiceName;
use imagestreams_common::{
    config::{Secret, TelemetryConfig},
    model,
    telemetry::{self, DEFAULT_SERVICE_NAME, SERVICE_NAME_ENV, propagation::TRACEPARENT},
};
use imagestreams_integration::{NatsServer, TestApp, wait_for_some};
use imagestreams_proto::v1::{self as proto, image_streams_client::ImageStreamsClient};
use imagestreams_trigger_api::{
    NewTrigger, TagRef, TriggerClient, TriggerKind, TriggerSpec, Webhook,
};
use serde_json::json;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

use crate::collector::{Collector, path_to};

/// How long a step may take before the test gives up.
const WAIT: Duration = Duration::from_secs(30);
/// The bearer token of the notification endpoint.
const TOKEN: &str = "telemetry-token";
/// The spans a push goes through, each an ancestor of the next: the
/// notification, the stream-store's event and its write (`apply`), the
/// changefeed's publish, the trigger's event, the firing, the webhook.
const CHAIN: &[&str] = &[
    "registry_notification",
    "image_pushed",
    "apply",
    "tags_changed_publish",
    "tags_changed",
    "firing",
    "webhook",
];

/// A webhook receiver that keeps the `traceparent` of every request.
struct Receiver {
    addr: SocketAddr,
    traceparents: Arc<Mutex<Vec<String>>>,
}

impl Receiver {
    async fn start() -> anyhow::Result<Receiver> {
        async fn hook(State(seen): State<Arc<Mutex<Vec<String>>>>, headers: HeaderMap) {
            let traceparent = headers.get(TRACEPARENT).and_then(|v| v.to_str().ok());
            seen.lock()
                .unwrap()
                .push(traceparent.unwrap_or_default().to_owned());
        }
        let traceparents = Arc::new(Mutex::new(Vec::new()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let router = Router::new()
            .route("/hook", post(hook))
            .with_state(traceparents.clone());
        tokio::spawn(async move { axum::serve(listener, router).await });
        Ok(Receiver { addr, traceparents })
    }

    async fn first_traceparent(&self) -> anyhow::Result<String> {
        wait_for_some(
            || async { self.traceparents.lock().unwrap().first().cloned() },
            WAIT,
        )
        .await
        .context("a webhook request")
    }
}

/// A distribution notification of one push of `ns/app:latest`.
fn push_envelope() -> String {
    let digest = format!("sha256:{}", "7".repeat(64));
    json!({ "events": [{
        "id": "telemetry-push-1", "timestamp": "2026-01-01T00:00:00Z", "action": "push",
        "target": {"mediaType": "application/vnd.oci.image.manifest.v1+json", "size": 527,
                   "digest": digest, "repository": "traced/app", "tag": "latest"},
        "actor": {"name": "alice"}
    }]})
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_push_is_one_trace_and_grpc_calls_continue_their_callers() -> anyhow::Result<()> {
    let collector = Collector::start().await?;
    telemetry::init(&TelemetryConfig {
        otlp_endpoint: Some(collector.endpoint()),
        ..TelemetryConfig::default()
    })?;
    let nats = NatsServer::start().await?;
    let receiver = Receiver::start().await?;
    let app = TestApp::spawn_with(&nats, &ServiceName::ALL, |c| {
        c.registry_watcher.token = Some(Secret::new(TOKEN));
        c.trigger.webhook.allow_loopback = true;
    })
    .await?;
    TriggerClient::new(nats.connect().await?)
        .create(&NewTrigger {
            namespace: "traced".into(),
            name: "app-build".into(),
            spec: TriggerSpec {
                from: TagRef::parse("app:latest", "traced")?,
                kind: TriggerKind::Build,
                paused: false,
                container: String::new(),
                webhook: Some(Webhook {
                    url: format!("http://{}/hook", receiver.addr),
                    secret: None,
                }),
                mirror: None,
            },
            fire_existing: true,
        })
        .await?;

    let response = reqwest::Client::new()
        .post(format!(
            "http://{}/notifications",
            app.addr("notifications")
        ))
        .bearer_auth(TOKEN)
        .header(
            "content-type",
            "application/vnd.docker.distribution.events.v1+json",
        )
        .body(push_envelope())
        .send()
        .await?;
    assert_eq!(response.status(), 200, "{}", response.text().await?);

    // 00-<trace id>-<span id of the delivery>-<flags>
    let traceparent = receiver.first_traceparent().await?;
    let fields: Vec<&str> = traceparent.split('-').collect();
    let [_, trace_id, webhook_span, _] = fields[..] else {
        panic!("the webhook carries a W3C traceparent, not {traceparent:?}")
    };
    let (trace_id, webhook_span) = (hex::decode(trace_id)?, hex::decode(webhook_span)?);

    // the ancestors end as the firing completes: export until all are in
    let path = wait_for_some(
        || async {
            telemetry::flush().await;
            path_to(&collector.trace(&trace_id), &webhook_span)
        },
        WAIT,
    )
    .await
    .context("the webhook span and all its ancestors at the collector")?;
    let names: Vec<&str> = path.iter().map(|r| r.span.name.as_str()).collect();
    let mut rest = names.iter();
    for step in CHAIN {
        assert!(
            rest.any(|name| name == step),
            "{step} is missing from, or out of order in, the webhook's ancestry {names:?}"
        );
    }
    assert_eq!(
        names[0], CHAIN[0],
        "the notification is the root: {names:?}"
    );
    assert_eq!(names.last(), CHAIN.last(), "the webhook span is the leaf");
    let service = std::env::var(SERVICE_NAME_ENV).unwrap_or(DEFAULT_SERVICE_NAME.to_owned());
    assert!(path.iter().all(|r| r.service == service), "{path:?}");

    // after the push, the metrics (exposed, or registered with no sample yet) are
    // what README's metrics table lists, and only that
    let text = reqwest::get(format!("{}/metrics", app.http_url()))
        .await?
        .text()
        .await?;
    let (undocumented, missing) = imagestreams_integration::readme::undocumented_and_missing(
        &text,
        &app.registered_metrics(),
    );
    assert!(
        undocumented.is_empty() && missing.is_empty(),
        "exposed but not in README's metrics table: {undocumented:?}\nin the table but not exposed: {missing:?}"
    );

    // a gRPC call to the gateway continues the caller's trace
    let (caller_trace, caller_span) = ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7");
    let mut request = tonic::Request::new(HealthCheckRequest::default());
    request.metadata_mut().insert(
        TRACEPARENT,
        format!("00-{caller_trace}-{caller_span}-01").parse()?,
    );
    let channel = tonic::transport::Channel::from_shared(app.grpc_url())?
        .connect()
        .await?;
    HealthClient::new(channel).check(request).await?;
    let (caller_trace, caller_span) = (hex::decode(caller_trace)?, hex::decode(caller_span)?);
    let grpc = wait_for_some(
        || async {
            telemetry::flush().await;
            collector.trace(&caller_trace).into_iter().next()
        },
        WAIT,
    )
    .await
    .context("the gateway's span of the call")?;
    assert_eq!(grpc.span.name, "grpc");
    assert_eq!(grpc.span.parent_span_id, caller_span);

    // a write goes on in the stream-store, over NATS request-reply, in the
    // same trace: the caller, the gateway's call, the store's request, the create
    let (caller_trace, caller_span) = ("0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331");
    let mut request = tonic::Request::new(proto::CreateRequest {
        namespace: "traced".into(),
        image_stream: Some(model::ImageStream::new("traced", "written").into()),
    });
    request.metadata_mut().insert(
        TRACEPARENT,
        format!("00-{caller_trace}-{caller_span}-01").parse()?,
    );
    ImageStreamsClient::connect(app.grpc_url())
        .await?
        .create(request)
        .await?;
    let (caller_trace, caller_span) = (hex::decode(caller_trace)?, hex::decode(caller_span)?);
    // the store's create span, then its ancestors up to the caller's (which
    // is not exported: it is the test's)
    let path = wait_for_some(
        || async {
            telemetry::flush().await;
            let trace = collector.trace(&caller_trace);
            let request = trace.iter().find(|r| r.span.name == "request")?;
            let create = trace.iter().find(|r| {
                r.span.name == "create" && r.span.parent_span_id == request.span.span_id
            })?;
            let mut path = vec![create.clone()];
            while let Some(parent) = trace
                .iter()
                .find(|r| r.span.span_id == path[0].span.parent_span_id)
            {
                path.insert(0, parent.clone());
            }
            (path[0].span.parent_span_id == caller_span).then_some(path)
        },
        WAIT,
    )
    .await
    .context("the stream-store's create span and its ancestors up to the caller's span")?;
    let names: Vec<&str> = path.iter().map(|r| r.span.name.as_str()).collect();
    assert_eq!(path[0].span.parent_span_id, caller_span, "{names:?}");
    let mut rest = names.iter();
    for step in ["grpc", "request", "create"] {
        assert!(
            rest.any(|name| *name == step),
            "{step} is missing from, or out of order in, the write's ancestry {names:?}"
        );
    }
    app.stop().await?;
    Ok(())
}
