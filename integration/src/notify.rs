//! A stand-in notification endpoint: an HTTP listener that records the envelopes a registry POSTs.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::routing::post;
use serde_json::Value;

use crate::util::wait_for_some;

/// The path the sink serves.
pub const NOTIFY_PATH: &str = "/events";

/// One POST the sink received.
#[derive(Clone, Debug)]
pub struct ReceivedRequest {
    /// The `Content-Type` header.
    pub content_type: Option<String>,
    /// The `Authorization` header.
    pub authorization: Option<String>,
    /// The `User-Agent` header.
    pub user_agent: Option<String>,
    /// The body parsed as JSON (`Value::Null` when it was not JSON).
    pub body: Value,
    /// Whether the request carried the expected bearer token (and so got 200, not 401).
    pub accepted: bool,
}

#[derive(Debug)]
struct SinkState {
    token: Option<String>,
    requests: Mutex<Vec<ReceivedRequest>>,
}

/// An HTTP listener on 127.0.0.1 that records POSTed notification envelopes, answering 401 when the bearer token
/// does not match. Stopped on drop.
#[derive(Debug)]
pub struct NotificationSink {
    port: u16,
    state: Arc<SinkState>,
    task: tokio::task::JoinHandle<()>,
}

impl NotificationSink {
    /// Starts the sink on a free port. With `token`, only requests with `Authorization: Bearer <token>` are accepted.
    pub async fn start(token: Option<&str>) -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the notification sink")?;
        let port = listener.local_addr()?.port();
        let state = Arc::new(SinkState {
            token: token.map(str::to_owned),
            requests: Mutex::new(Vec::new()),
        });
        let app = Router::new()
            .route(NOTIFY_PATH, post(receive))
            .with_state(state.clone());
        let task = tokio::spawn(async move {
            // Serving ends only when the task is aborted on drop.
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { port, state, task })
    }

    /// The URL to give the registry, `http://127.0.0.1:PORT/events`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}{NOTIFY_PATH}", self.port)
    }

    /// Every request received so far, accepted or not.
    pub fn requests(&self) -> Vec<ReceivedRequest> {
        self.lock().clone()
    }

    /// The number of requests rejected for a wrong or missing token.
    pub fn rejected(&self) -> usize {
        self.lock().iter().filter(|r| !r.accepted).count()
    }

    /// The events of every accepted envelope, in arrival order.
    pub fn events(&self) -> Vec<Value> {
        self.lock()
            .iter()
            .filter(|r| r.accepted)
            .flat_map(|r| r.body["events"].as_array().cloned().unwrap_or_default())
            .collect()
    }

    /// Waits until an accepted event satisfies `pred` and returns it.
    pub async fn wait_for_event(
        &self,
        pred: impl Fn(&Value) -> bool,
        timeout: Duration,
    ) -> anyhow::Result<Value> {
        wait_for_some(
            || {
                let found = self.events().into_iter().find(|e| pred(e));
                async move { found }
            },
            timeout,
        )
        .await
        .with_context(|| {
            format!(
                "no matching notification; got {} request(s), events: {}",
                self.lock().len(),
                Value::Array(self.events())
            )
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<ReceivedRequest>> {
        // A poisoned lock only means another test thread panicked; the data is still usable.
        self.state
            .requests
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Drop for NotificationSink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Whether `event` is a manifest push of `repository:tag`.
pub fn is_push_of(event: &Value, repository: &str, tag: &str) -> bool {
    event["action"] == "push"
        && event["target"]["repository"] == repository
        && event["target"]["tag"] == tag
}

async fn receive(
    State(state): State<Arc<SinkState>>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let text = |name| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let authorization = text(header::AUTHORIZATION);
    let accepted = match &state.token {
        Some(token) => authorization.as_deref() == Some(format!("Bearer {token}").as_str()),
        None => true,
    };
    let request = ReceivedRequest {
        content_type: text(header::CONTENT_TYPE),
        authorization,
        user_agent: text(header::USER_AGENT),
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
        accepted,
    };
    state
        .requests
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .push(request);
    if accepted {
        StatusCode::OK
    } else {
        StatusCode::UNAUTHORIZED
    }
}
