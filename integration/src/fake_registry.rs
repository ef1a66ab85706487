//! A fault-injecting fake registry: an HTTP listener on 127.0.0.1 speaking just enough of the `/v2/` API, whose
//! behaviour is chosen by the first component of the repository name, and which records every request so tests
//! can prove how many a client sent.
//!
//! | namespace | behaviour |
//! |---|---|
//! | `ok/…` | tags `latest`, `v1`; a small OCI manifest with `Docker-Content-Digest` |
//! | `delay/…` | like `ok`, after [`DELAY`] |
//! | `error500/…` | 500 with a distribution error body, always |
//! | `error503once/…` | 503 on the first request of each path, then like `ok` |
//! | `ratelimited/…` | 429 with `Retry-After: 1`, always |
//! | `ratelimitedlong/…` | 429 with `Retry-After: 3600`, always |
//! | `ratelimitedonce/…` | 429 with `Retry-After` as an HTTP date 1 s ahead on the first request of each path, then like `ok` |
//! | `quota/…` | like `ok`, with `RateLimit-Remaining: 0` and `RateLimit-Reset: 1` |
//! | `quotalong/…` | like `ok`, with `RateLimit-Remaining: 0` and `RateLimit-Reset: 3600` |
//! | `hang/…` | never answers |
//! | `truncated/…` | 200 with JSON cut in the middle |
//! | `foreignlink/…` | a tag page whose `Link` points to [`FakeRegistry::set_foreign_origin`] |
//! | `many/…` | [`MANY_TAGS`] tags, paged by `n` (at most [`MAX_PAGE`]) with `Link`, each the `ok` manifest |
//! | `slow/…` | 200 whose body trickles one byte every [`TRICKLE_INTERVAL`] |
//! | `big/…` | 200 with a chunked body of [`BIG_BODY_BYTES`] |
//! | `noheader/…` | like `ok`, without `Docker-Content-Digest` |
//! | `baddigest/…` | no digest on HEAD; on GET a `Docker-Content-Digest` that does not match the bytes |
//! | `private/…` | bearer auth: a token from `/token` for [`FakeRegistry::USER`] and [`FakeRegistry::PASSWORD`] |
//! | `basic/…` | Basic auth with the same user and password |

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use anyhow::Context;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::Response;
use sha2::{Digest, Sha256};

/// Tags in a `many/…` repository.
pub const MANY_TAGS: usize = 100_000;
/// Largest page of a `many/…` tag list, and its default size.
pub const MAX_PAGE: usize = 1_000;
/// How often a `slow/…` body sends a byte.
pub const TRICKLE_INTERVAL: Duration = Duration::from_millis(100);
/// The size of a `big/…` body.
pub const BIG_BODY_BYTES: usize = 64 * 1024 * 1024;
/// How long a `delay/…` request takes.
pub const DELAY: Duration = Duration::from_millis(50);
/// The service named in bearer challenges.
pub const TOKEN_SERVICE: &str = "fake-registry";

/// One request the fake received.
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    /// `GET`, `HEAD`, …
    pub method: String,
    /// The path.
    pub path: String,
    /// The query, if any.
    pub query: Option<String>,
    /// The `Authorization` header, if any.
    pub authorization: Option<String>,
    /// The `Accept` header, if any.
    pub accept: Option<String>,
}

#[derive(Debug, Default)]
struct FakeState {
    origin: String,
    requests: Mutex<Vec<RecordedRequest>>,
    seen: Mutex<HashMap<String, u32>>,
    foreign_origin: Mutex<Option<String>>,
    tokens: Mutex<Vec<String>>,
    in_flight: Mutex<(usize, usize)>,
}

/// Counts a request in flight until dropped (also when the client hangs up and the handler is cancelled).
struct InFlight(Arc<FakeState>);

impl InFlight {
    fn new(state: &Arc<FakeState>) -> Self {
        let mut g = lock(&state.in_flight);
        g.0 += 1;
        g.1 = g.1.max(g.0);
        InFlight(state.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        lock(&self.0.in_flight).0 -= 1;
    }
}

/// The fake registry, stopped on drop.
#[derive(Debug)]
pub struct FakeRegistry {
    port: u16,
    state: Arc<FakeState>,
    task: tokio::task::JoinHandle<()>,
}

impl FakeRegistry {
    /// The user `private/…` and `basic/…` accept.
    pub const USER: &'static str = "fake-user";
    /// The password `private/…` and `basic/…` accept.
    pub const PASSWORD: &'static str = "fake-Pa55word-do-not-log";

    /// Starts the fake on a free port.
    pub async fn start() -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the fake registry")?;
        let port = listener.local_addr()?.port();
        let state = Arc::new(FakeState {
            origin: format!("http://127.0.0.1:{port}"),
            ..FakeState::default()
        });
        let app = Router::new().fallback(handle).with_state(state.clone());
        let task = tokio::spawn(async move {
            // Serving ends only when the task is aborted on drop.
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { port, state, task })
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        self.state.origin.clone()
    }

    /// Where `foreignlink/…` tag pages point their `Link` (e.g. another fake's [`FakeRegistry::url`]).
    pub fn set_foreign_origin(&self, origin: &str) {
        *lock(&self.state.foreign_origin) = Some(origin.to_owned());
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.state.requests).clone()
    }

    /// The requests whose path starts with `prefix`.
    pub fn count(&self, prefix: &str) -> usize {
        lock(&self.state.requests)
            .iter()
            .filter(|r| r.path.starts_with(prefix))
            .count()
    }

    /// The most requests that were ever in flight at once.
    pub fn max_in_flight(&self) -> usize {
        lock(&self.state.in_flight).1
    }

    /// The manifest every repository serves, and its digest.
    pub fn manifest() -> (&'static str, String) {
        (MANIFEST, digest(MANIFEST.as_bytes()))
    }

    /// The manifest of the `badconfig` namespace's repositories: its config blob is not an image config.
    pub fn bad_config_manifest() -> (String, String) {
        let body = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":{}}},"layers":[]}}"#,
            digest(BAD_CONFIG.as_bytes()),
            BAD_CONFIG.len()
        );
        let d = digest(body.as_bytes());
        (body, d)
    }
}

impl Drop for FakeRegistry {
    fn drop(&mut self) {
        self.task.abort();
    }
}

const MANIFEST: &str = r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[]}"#;

/// The config blob of [`MANIFEST`]: an empty (valid) image config.
const CONFIG: &str = "{}";

/// The config blob of [`FakeRegistry::bad_config_manifest`]: not JSON.
const BAD_CONFIG: &str = "this is not an image config";

/// `GET /v2/<repo>/blobs/<digest>`: the config of the repository's manifest.
fn config_blob(repo: &str, wanted: &str) -> Response {
    let blob = if repo.starts_with("badconfig/") {
        BAD_CONFIG
    } else {
        CONFIG
    };
    if digest(blob.as_bytes()) != wanted {
        return respond(
            StatusCode::NOT_FOUND,
            &[],
            error_body("BLOB_UNKNOWN", "blob unknown"),
        );
    }
    respond(
        StatusCode::OK,
        &[("content-type", "application/octet-stream".into())],
        blob,
    )
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

fn respond(status: StatusCode, headers: &[(&str, String)], body: impl Into<Body>) -> Response {
    let mut resp = Response::new(body.into());
    *resp.status_mut() = status;
    for (name, value) in headers {
        if let (Ok(name), Ok(value)) = (
            header::HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            resp.headers_mut().append(name, value);
        }
    }
    resp
}

fn error_body(code: &str, message: &str) -> String {
    serde_json::json!({ "errors": [{ "code": code, "message": message }] }).to_string()
}

/// What a request is about.
enum Target<'a> {
    Ping,
    Token,
    Tags(&'a str),
    Manifest(&'a str, &'a str),
    Blob(&'a str, &'a str),
    Other,
}

fn target(path: &str) -> Target<'_> {
    if path == "/v2/" || path == "/v2" {
        return Target::Ping;
    }
    if path == "/token" {
        return Target::Token;
    }
    let Some(rest) = path.strip_prefix("/v2/") else {
        return Target::Other;
    };
    if let Some(repo) = rest.strip_suffix("/tags/list") {
        return Target::Tags(repo);
    }
    if let Some((repo, reference)) = rest.rsplit_once("/manifests/") {
        return Target::Manifest(repo, reference);
    }
    if let Some((repo, digest)) = rest.rsplit_once("/blobs/") {
        return Target::Blob(repo, digest);
    }
    Target::Other
}

async fn handle(
    State(state): State<Arc<FakeState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let header = |name: header::HeaderName| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let authorization = header(header::AUTHORIZATION);
    let _in_flight = InFlight::new(&state);
    lock(&state.requests).push(RecordedRequest {
        method: method.to_string(),
        path: uri.path().to_owned(),
        query: uri.query().map(str::to_owned),
        authorization: authorization.clone(),
        accept: header(header::ACCEPT),
    });
    let first_time = {
        let mut seen = lock(&state.seen);
        let n = seen.entry(format!("{method} {}", uri.path())).or_default();
        *n += 1;
        *n == 1
    };
    let query: HashMap<String, String> = uri
        .query()
        .map(|q| {
            q.split('&')
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect()
        })
        .unwrap_or_default();

    let (repo, tags_or_manifest) = match target(uri.path()) {
        Target::Ping => return respond(StatusCode::OK, &[], "{}"),
        Target::Token => return token(&state, authorization.as_deref()),
        Target::Tags(repo) => (repo.to_owned(), None),
        Target::Manifest(repo, reference) => (repo.to_owned(), Some(reference.to_owned())),
        Target::Blob(repo, digest) => return config_blob(repo, digest),
        Target::Other => return respond(StatusCode::NOT_FOUND, &[], ""),
    };
    let namespace = repo.split('/').next().unwrap_or_default();

    match namespace {
        "error500" => {
            return respond(
                StatusCode::INTERNAL_SERVER_ERROR,
                &[("content-type", "application/json".into())],
                error_body("UNKNOWN", "injected failure"),
            );
        }
        "error503once" if first_time => {
            return respond(StatusCode::SERVICE_UNAVAILABLE, &[], "");
        }
        "ratelimited" => {
            return respond(
                StatusCode::TOO_MANY_REQUESTS,
                &[("retry-after", "1".into())],
                error_body("TOOMANYREQUESTS", "slow down"),
            );
        }
        "ratelimitedlong" => {
            return respond(
                StatusCode::TOO_MANY_REQUESTS,
                &[("retry-after", "3600".into())],
                error_body("TOOMANYREQUESTS", "come back in an hour"),
            );
        }
        "ratelimitedonce" if first_time => {
            let at = http_date(SystemTime::now() + Duration::from_secs(2));
            return respond(StatusCode::TOO_MANY_REQUESTS, &[("retry-after", at)], "");
        }
        "hang" => {
            std::future::pending::<()>().await;
            unreachable!("pending never completes")
        }
        "delay" => tokio::time::sleep(DELAY).await,
        "private" => {
            let valid = authorization
                .as_deref()
                .and_then(|a| a.strip_prefix("Bearer "))
                .is_some_and(|t| lock(&state.tokens).iter().any(|known| known == t));
            if !valid {
                let challenge = format!(
                    r#"Bearer realm="{}/token",service="{TOKEN_SERVICE}",scope="repository:{repo}:pull""#,
                    state.origin
                );
                return respond(
                    StatusCode::UNAUTHORIZED,
                    &[("www-authenticate", challenge)],
                    error_body("UNAUTHORIZED", "authentication required"),
                );
            }
        }
        "basic"
            if authorization.as_deref()
                != Some(&basic(FakeRegistry::USER, FakeRegistry::PASSWORD)) =>
        {
            return respond(
                StatusCode::UNAUTHORIZED,
                &[("www-authenticate", r#"Basic realm="fake""#.into())],
                error_body("UNAUTHORIZED", "authentication required"),
            );
        }
        _ => {}
    }

    let mut extra: Vec<(&str, String)> = Vec::new();
    match namespace {
        "quota" => {
            extra.push(("ratelimit-remaining", "0".into()));
            extra.push(("ratelimit-reset", "1".into()));
        }
        "quotalong" => {
            extra.push(("ratelimit-remaining", "0".into()));
            extra.push(("ratelimit-reset", "3600".into()));
        }
        _ => {}
    }

    match tags_or_manifest {
        None => tags(&state, namespace, &repo, &query, extra),
        Some(reference) => manifest(namespace, &method, &reference, extra),
    }
}

fn basic(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64_encode(format!("{user}:{password}").as_bytes())
    )
}

/// Standard base64 with padding (RFC 4648), for Basic headers and config.json `auth` in tests.
pub fn base64_encode(input: &[u8]) -> String {
    base64_lite::encode(input)
}

fn token(state: &FakeState, authorization: Option<&str>) -> Response {
    if authorization != Some(&basic(FakeRegistry::USER, FakeRegistry::PASSWORD)) {
        return respond(
            StatusCode::UNAUTHORIZED,
            &[],
            error_body("UNAUTHORIZED", "invalid credentials"),
        );
    }
    let token = format!("tok-{}", uuid::Uuid::new_v4());
    lock(&state.tokens).push(token.clone());
    respond(
        StatusCode::OK,
        &[("content-type", "application/json".into())],
        serde_json::json!({ "token": token, "expires_in": 300 }).to_string(),
    )
}

fn tags(
    state: &FakeState,
    namespace: &str,
    repo: &str,
    query: &HashMap<String, String>,
    mut headers: Vec<(&str, String)>,
) -> Response {
    headers.push(("content-type", "application/json".into()));
    match namespace {
        "truncated" => {
            let full = serde_json::json!({ "name": repo, "tags": ["a", "b", "c"] }).to_string();
            let cut = full[..full.len() / 2].to_owned();
            respond(StatusCode::OK, &headers, cut)
        }
        "foreignlink" => {
            let foreign = lock(&state.foreign_origin)
                .clone()
                .unwrap_or_else(|| "http://foreign.invalid".into());
            headers.push((
                "link",
                format!(r#"<{foreign}/v2/{repo}/tags/list?last=b&n=2>; rel="next""#),
            ));
            let body = serde_json::json!({ "name": repo, "tags": ["a", "b"] }).to_string();
            respond(StatusCode::OK, &headers, body)
        }
        "many" => {
            let n = query
                .get("n")
                .and_then(|n| n.parse::<usize>().ok())
                .unwrap_or(MAX_PAGE)
                .clamp(1, MAX_PAGE);
            let start = query
                .get("last")
                .and_then(|l| l.strip_prefix('t')?.parse::<usize>().ok())
                .map_or(0, |i| i + 1);
            let end = (start + n).min(MANY_TAGS);
            let page: Vec<String> = (start..end).map(|i| format!("t{i:05}")).collect();
            if end < MANY_TAGS {
                headers.push((
                    "link",
                    format!(
                        r#"</v2/{repo}/tags/list?n={n}&last=t{:05}>; rel="next""#,
                        end - 1
                    ),
                ));
            }
            let body = serde_json::json!({ "name": repo, "tags": page }).to_string();
            respond(StatusCode::OK, &headers, body)
        }
        "slow" => respond(StatusCode::OK, &headers, trickle()),
        "big" => {
            let chunks = futures::stream::iter(
                (0..BIG_BODY_BYTES / 65_536)
                    .map(|_| Ok::<_, Infallible>(Bytes::from(vec![b' '; 65_536]))),
            );
            respond(StatusCode::OK, &headers, Body::from_stream(chunks))
        }
        _ => {
            let body = serde_json::json!({ "name": repo, "tags": ["latest", "v1"] }).to_string();
            respond(StatusCode::OK, &headers, body)
        }
    }
}

fn trickle() -> Body {
    let stream = futures::stream::unfold(0u32, |i| async move {
        if i >= 10_000 {
            return None;
        }
        tokio::time::sleep(TRICKLE_INTERVAL).await;
        Some((Ok::<_, Infallible>(Bytes::from_static(b" ")), i + 1))
    });
    Body::from_stream(stream)
}

fn manifest(
    namespace: &str,
    method: &Method,
    reference: &str,
    mut headers: Vec<(&str, String)>,
) -> Response {
    let (body, real_digest) = match namespace {
        "badconfig" => FakeRegistry::bad_config_manifest(),
        _ => {
            let (body, d) = FakeRegistry::manifest();
            (body.to_owned(), d)
        }
    };
    if reference.starts_with("sha256:") && reference != real_digest {
        return respond(
            StatusCode::NOT_FOUND,
            &[],
            error_body("MANIFEST_UNKNOWN", "manifest unknown"),
        );
    }
    let many_tag = namespace == "many"
        && reference
            .strip_prefix('t')
            .and_then(|i| i.parse::<usize>().ok())
            .is_some_and(|i| i < MANY_TAGS);
    if !reference.starts_with("sha256:") && !["latest", "v1"].contains(&reference) && !many_tag {
        return respond(
            StatusCode::NOT_FOUND,
            &[],
            error_body("MANIFEST_UNKNOWN", "manifest unknown"),
        );
    }
    headers.push((
        "content-type",
        "application/vnd.oci.image.manifest.v1+json".into(),
    ));
    match namespace {
        "noheader" => {}
        "baddigest" if method == Method::HEAD => {}
        "baddigest" => headers.push(("docker-content-digest", digest(b"something else"))),
        _ => headers.push(("docker-content-digest", real_digest)),
    }
    match namespace {
        "slow" if method != Method::HEAD => respond(StatusCode::OK, &headers, trickle()),
        "truncated" if method != Method::HEAD => {
            respond(StatusCode::OK, &headers, body[..body.len() / 2].to_owned())
        }
        _ if method == Method::HEAD => respond(StatusCode::OK, &headers, Body::empty()),
        _ => respond(StatusCode::OK, &headers, body),
    }
}

/// An IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`), as `Retry-After` carries it.
pub fn http_date(at: SystemTime) -> String {
    let secs = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{}, {day:02} {} {year} {:02}:{:02}:{:02} GMT",
        WEEKDAYS[days.rem_euclid(7) as usize],
        MONTHS[(month - 1) as usize],
        rem / 3_600,
        rem / 60 % 60,
        rem % 60
    )
}

/// Standard base64, enough for a Basic header (the kit has no base64 dependency).
mod base64_lite {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

    /// Standard base64 with padding.
    pub fn encode(input: &[u8]) -> String {
        let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
        for chunk in input.chunks(3) {
            let b = [
                chunk[0],
                chunk.get(1).copied().unwrap_or(0),
                chunk.get(2).copied().unwrap_or(0),
            ];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
                } else {
                    out.push('=');
                }
            }
        }
        out
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn formats_http_dates() {
            use std::time::{Duration, SystemTime};
            let at = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777);
            assert_eq!(super::super::http_date(at), "Sun, 06 Nov 1994 08:49:37 GMT");
            let at = SystemTime::UNIX_EPOCH + Duration::from_secs(951_782_400);
            assert_eq!(super::super::http_date(at), "Tue, 29 Feb 2000 00:00:00 GMT");
        }

        #[test]
        fn encodes_like_rfc4648() {
            for (input, want) in [
                ("", ""),
                ("f", "Zg=="),
                ("fo", "Zm8="),
                ("foo", "Zm9v"),
                ("foob", "Zm9vYg=="),
                ("fooba", "Zm9vYmE="),
                ("foobar", "Zm9vYmFy"),
            ] {
                assert_eq!(super::encode(input.as_bytes()), want);
            }
        }
    }
}
