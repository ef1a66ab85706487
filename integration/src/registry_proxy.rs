//! A fault-injecting proxy in front of a real registry: every request is passed on to it unchanged, except
//! blob GETs, which can be held back for a while or refused with `429 Too Many Requests` (and a
//! `Retry-After`) a number of times first. It counts the blob GETs it saw, passed on or not, so tests can
//! prove how the services read a registry that is slow or busy.

use std::sync::{
    Arc, Mutex,
    atomic::{AtomicU64, Ordering},
};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderValue, Method, Request, StatusCode, header};
use axum::response::Response;

/// What the proxy does to a blob GET.
#[derive(Clone, Debug, Default)]
pub enum BlobFault {
    /// Passes it on.
    #[default]
    None,
    /// Passes it on after this long.
    Stall(Duration),
    /// Answers the first `times` with 429 and `Retry-After: <retry_after_secs>`, then passes them on.
    TooManyRequests {
        /// How many to refuse.
        times: u64,
        /// The `Retry-After` in seconds.
        retry_after_secs: u64,
    },
}

struct Shared {
    upstream: String,
    http: reqwest::Client,
    fault: Mutex<BlobFault>,
    blob_gets: AtomicU64,
    refused: AtomicU64,
}

/// A running proxy; stops when dropped.
pub struct RegistryProxy {
    addr: std::net::SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl RegistryProxy {
    /// A proxy on 127.0.0.1 in front of `upstream` (`http://host:port`).
    pub async fn start(upstream: &str, fault: BlobFault) -> anyhow::Result<RegistryProxy> {
        let shared = Arc::new(Shared {
            upstream: upstream.trim_end_matches('/').to_owned(),
            http: reqwest::Client::new(),
            fault: Mutex::new(fault),
            blob_gets: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let app = Router::new().fallback(forward).with_state(shared.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(RegistryProxy { addr, shared, task })
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Changes what the proxy does to the blob GETs from now on.
    pub fn set_fault(&self, fault: BlobFault) {
        *self.shared.fault.lock().unwrap() = fault;
    }

    /// The blob GETs seen so far, passed on or refused.
    pub fn blob_gets(&self) -> u64 {
        self.shared.blob_gets.load(Ordering::SeqCst)
    }

    /// The blob GETs refused with 429 so far.
    pub fn refused(&self) -> u64 {
        self.shared.refused.load(Ordering::SeqCst)
    }
}

impl Drop for RegistryProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn forward(State(shared): State<Arc<Shared>>, request: Request<Body>) -> Response {
    let is_blob_get =
        request.method() == Method::GET && request.uri().path().contains("/blobs/sha256:");
    if is_blob_get {
        shared.blob_gets.fetch_add(1, Ordering::SeqCst);
        let fault = shared.fault.lock().unwrap().clone();
        match fault {
            BlobFault::None => {}
            BlobFault::Stall(wait) => tokio::time::sleep(wait).await,
            BlobFault::TooManyRequests {
                times,
                retry_after_secs,
            } => {
                if shared.refused.load(Ordering::SeqCst) < times {
                    shared.refused.fetch_add(1, Ordering::SeqCst);
                    let mut response = Response::new(Body::from(
                        r#"{"errors":[{"code":"TOOMANYREQUESTS","message":"slow down"}]}"#,
                    ));
                    *response.status_mut() = StatusCode::TOO_MANY_REQUESTS;
                    response
                        .headers_mut()
                        .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
                    return response;
                }
            }
        }
    }
    match pass_on(&shared, request).await {
        Ok(response) => response,
        Err(error) => {
            let mut response = Response::new(Body::from(error.to_string()));
            *response.status_mut() = StatusCode::BAD_GATEWAY;
            response
        }
    }
}

async fn pass_on(shared: &Shared, request: Request<Body>) -> anyhow::Result<Response> {
    let (parts, body) = request.into_parts();
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    let body = axum::body::to_bytes(body, usize::MAX).await?;
    let mut upstream = shared
        .http
        .request(parts.method, format!("{}{path}", shared.upstream))
        .body(body);
    for (name, value) in &parts.headers {
        if name != header::HOST {
            upstream = upstream.header(name, value);
        }
    }
    let answer = upstream.send().await?;
    let mut response = Response::builder().status(answer.status());
    for (name, value) in answer.headers() {
        response = response.header(name, value);
    }
    Ok(response.body(Body::from(answer.bytes().await?))?)
}
