//! How every request of [`RegistryClient`] is sent: per-registry concurrency, rate and 429 pause,
//! retries with backoff, the authentication around it, a timeout per attempt, capped bodies, and one
//! redirect without our `Authorization`.

use super::auth::form_urlencoded;
use super::*;

/// One request to make, possibly several times.
pub(super) struct Request<'a> {
    pub(super) method: Method,
    pub(super) url: Url,
    pub(super) accept: Option<&'static str>,
    pub(super) form: Option<Vec<(&'static str, String)>>,
    /// A body to send, with its content type (blobs and manifests pushed).
    pub(super) upload: Option<(&'static str, Bytes)>,
    pub(super) what: &'a str,
    /// Read the body (not for HEAD), up to this many bytes.
    pub(super) max_body: Option<u64>,
    /// Follow one redirect (blob storage), without our `Authorization`.
    pub(super) follow_redirect: bool,
    /// How long one attempt may take, when not [`Limits::request_timeout`]:
    /// a blob crossing takes longer ([`RegistryClient::transfer_timeout`]).
    pub(super) timeout: Option<Duration>,
    /// Other headers: a blob's `Range`, an upload chunk's `Content-Range`.
    pub(super) headers: Vec<(&'static str, String)>,
}

impl<'a> Request<'a> {
    /// A `method` request of `url` (for `what`, named in errors): no
    /// `Accept`, no body, no body read (set `max_body`), no redirect
    /// followed, the default timeout.
    pub(super) fn new(method: Method, url: Url, what: &'a str) -> Self {
        Request {
            method,
            url,
            accept: None,
            form: None,
            upload: None,
            what,
            max_body: None,
            follow_redirect: false,
            timeout: None,
            headers: Vec::new(),
        }
    }
}

/// A response with its body read.
pub(super) struct Response {
    pub(super) status: StatusCode,
    pub(super) headers: HeaderMap,
    pub(super) body: Bytes,
}

/// Why one attempt failed before a status arrived.
pub(super) enum AttemptError {
    Timeout,
    TooLarge,
    Transport(String),
}

/// Reads at most `max` bytes of the body; more is [`AttemptError::TooLarge`] when `strict`, or cut off otherwise.
pub(super) async fn read_capped(
    mut resp: reqwest::Response,
    max: u64,
    strict: bool,
) -> Result<Bytes, AttemptError> {
    if strict && resp.content_length().is_some_and(|len| len > max) {
        return Err(AttemptError::TooLarge);
    }
    let mut buf = BytesMut::new();
    while let Some(chunk) = resp.chunk().await.map_err(transport)? {
        if (buf.len() + chunk.len()) as u64 > max {
            if strict {
                return Err(AttemptError::TooLarge);
            }
            let room = max as usize - buf.len();
            buf.extend_from_slice(&chunk[..room]);
            break;
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

/// A secret-free description of a reqwest failure: its kind and the innermost cause, never a header.
pub(super) fn transport(e: reqwest::Error) -> AttemptError {
    if e.is_timeout() {
        return AttemptError::Timeout;
    }
    let mut cause: &dyn std::error::Error = &e;
    while let Some(inner) = cause.source() {
        cause = inner;
    }
    let kind = if e.is_connect() {
        "connect"
    } else if e.is_body() || e.is_decode() {
        "reading the body"
    } else {
        "request"
    };
    AttemptError::Transport(format!("{kind}: {cause}"))
}

/// The `Content-Type` without parameters.
pub(super) fn content_type(headers: &HeaderMap) -> Option<String> {
    let v = headers.get(CONTENT_TYPE)?.to_str().ok()?;
    let v = v.split(';').next().unwrap_or_default().trim();
    (!v.is_empty()).then(|| v.to_owned())
}

impl RegistryClient {
    /// Sends `req` to `source` with authentication: a known scheme's credentials up front, else anonymous; on a
    /// 401, answers the challenge (Basic, or a bearer token for `scope`) and retries once. Maps 401, 403, 404
    /// and other 4xx to errors.
    pub(super) async fn send(
        &self,
        source: Source<'_>,
        scope: Option<String>,
        req: Request<'_>,
    ) -> Result<Response, RegistryError> {
        let auth = self.preemptive_auth(source, scope.as_deref()).await?;
        let mut resp = self.execute(&req, auth.as_ref().map(|a| &a.header)).await?;
        if resp.status == StatusCode::UNAUTHORIZED {
            if let Some(key) = auth.as_ref().and_then(|a| a.token_key.as_ref()) {
                self.inner.tokens.forget(key);
            }
            let challenges: Vec<Challenge> = resp
                .headers
                .get_all(WWW_AUTHENTICATE)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(crate::auth::parse_www_authenticate)
                .collect();
            let answer = self
                .answer_challenge(source, scope.as_deref(), &challenges, &req)
                .await?;
            // Retry once, and only with something other than what was just refused.
            if let Some(answer) = answer
                && auth.as_ref().is_none_or(|old| old.header != answer.header)
            {
                resp = self.execute(&req, Some(&answer.header)).await?;
                if resp.status == StatusCode::UNAUTHORIZED
                    && let Some(key) = &answer.token_key
                {
                    self.inner.tokens.forget(key);
                }
            }
        }
        if req.follow_redirect && resp.status.is_redirection() {
            resp = self.follow_redirect(source, &req, &resp).await?;
        }
        let registry = origin_label(&source.endpoint.origin);
        let what = req.what.to_owned();
        let detail = || registry_detail(&resp.body);
        match resp.status {
            s if s.is_success() => Ok(resp),
            StatusCode::UNAUTHORIZED => Err(RegistryError::Unauthorized {
                detail: match source.credential {
                    None => format!(": no credentials for this registry{}", detail()),
                    Some(_) => detail(),
                },
                registry,
                what,
            }),
            StatusCode::FORBIDDEN => Err(RegistryError::Forbidden {
                registry,
                what,
                detail: detail(),
            }),
            StatusCode::NOT_FOUND => Err(RegistryError::NotFound {
                registry,
                what,
                detail: detail(),
            }),
            s => Err(RegistryError::UnexpectedStatus {
                registry,
                what,
                status: s.as_u16(),
                detail: detail(),
            }),
        }
    }

    /// The limits shared by every request to `origin`.
    pub(super) fn host(&self, origin: &str) -> Arc<HostLimits> {
        let mut hosts = self.inner.hosts.lock().unwrap_or_else(|e| e.into_inner());
        hosts
            .entry(origin.to_owned())
            .or_insert_with(|| Arc::new(HostLimits::new(&self.inner.limits)))
            .clone()
    }

    /// Sends `req` under the limits of its origin, retrying 429 (after `Retry-After`, with jittered backoff),
    /// 5xx, timeouts and transport failures up to [`Limits::max_retries`] times. Returns any other status.
    pub(super) async fn execute(
        &self,
        req: &Request<'_>,
        auth: Option<&HeaderValue>,
    ) -> Result<Response, RegistryError> {
        let limits = &self.inner.limits;
        let origin = req.url.origin().ascii_serialization();
        let host = self.host(&origin);
        let registry = origin_label(&req.url);
        let max_wait = limits.max_retry_after();
        let mut attempt: u32 = 0;
        loop {
            if let Some(wait) = host.pause.remaining() {
                if wait > max_wait {
                    return Err(RegistryError::TooManyRequests {
                        registry,
                        what: req.what.to_owned(),
                        attempts: attempt,
                        retry_after: Some(wait),
                    });
                }
                tokio::time::sleep(wait).await;
            }
            let result = {
                let _permit =
                    host.concurrency.acquire().await.map_err(|_| {
                        RegistryError::Client("the registry client was closed".into())
                    })?;
                host.rate.acquire().await;
                self.inner.requests.fetch_add(1, Ordering::Relaxed);
                self.attempt(req, auth).await
            };
            self.count(
                &registry,
                match &result {
                    Ok(resp) => resp.status.as_u16().to_string(),
                    Err(AttemptError::TooLarge) => "too_large".into(),
                    Err(AttemptError::Timeout) => "timeout".into(),
                    Err(AttemptError::Transport(_)) => "transport".into(),
                },
            );
            attempt += 1;
            let retries_left = attempt <= limits.max_retries;
            let resp = match result {
                Ok(resp) => resp,
                Err(AttemptError::TooLarge) => {
                    return Err(RegistryError::TooLarge {
                        registry,
                        what: req.what.to_owned(),
                        limit: req.max_body.unwrap_or_default(),
                    });
                }
                Err(AttemptError::Timeout) if !retries_left => {
                    return Err(RegistryError::Timeout {
                        registry,
                        what: req.what.to_owned(),
                        timeout: req.timeout.unwrap_or(limits.request_timeout()),
                        attempts: attempt,
                    });
                }
                Err(AttemptError::Transport(cause)) if !retries_left => {
                    return Err(RegistryError::Unreachable {
                        registry,
                        what: req.what.to_owned(),
                        attempts: attempt,
                        cause,
                    });
                }
                Err(AttemptError::Timeout | AttemptError::Transport(_)) => {
                    tokio::time::sleep(limits.backoff(attempt - 1)).await;
                    continue;
                }
            };
            if let Some(wait) = rate_limit_wait(&resp.headers, SystemTime::now()) {
                tracing::debug!(%registry, ?wait, "RateLimit-Remaining is 0: pausing the registry");
                host.pause.pause_for(wait);
            }
            let status = resp.status;
            if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
                let retry_after = resp
                    .headers
                    .get(RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| parse_retry_after(v, SystemTime::now()));
                let too_long = retry_after.is_some_and(|d| d > max_wait);
                if !retries_left || too_long {
                    return Err(if status == StatusCode::TOO_MANY_REQUESTS {
                        RegistryError::TooManyRequests {
                            registry,
                            what: req.what.to_owned(),
                            attempts: attempt,
                            retry_after,
                        }
                    } else {
                        RegistryError::Server {
                            registry,
                            what: req.what.to_owned(),
                            status: status.as_u16(),
                            attempts: attempt,
                            detail: registry_detail(&resp.body),
                        }
                    });
                }
                let wait = retry_after
                    .unwrap_or_default()
                    .max(limits.backoff(attempt - 1));
                tracing::debug!(%registry, status = status.as_u16(), ?wait, attempt, "retrying");
                if status == StatusCode::TOO_MANY_REQUESTS {
                    // Everyone waits, not only this request.
                    host.pause.pause_for(wait);
                } else {
                    tokio::time::sleep(wait).await;
                }
                continue;
            }
            return Ok(resp);
        }
    }

    /// One attempt: send and read the body (up to its limit), all within the request timeout.
    pub(super) async fn attempt(
        &self,
        req: &Request<'_>,
        auth: Option<&HeaderValue>,
    ) -> Result<Response, AttemptError> {
        let mut builder = self.inner.http.request(req.method.clone(), req.url.clone());
        if let Some(accept) = req.accept {
            builder = builder.header(ACCEPT, accept);
        }
        if let Some(auth) = auth {
            builder = builder.header(AUTHORIZATION, auth.clone());
        }
        for (name, value) in &req.headers {
            builder = builder.header(*name, value.as_str());
        }
        if let Some(form) = &req.form {
            builder = builder
                .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(form_urlencoded(form));
        }
        if let Some((content_type, body)) = &req.upload {
            builder = builder
                .header(CONTENT_TYPE, *content_type)
                .header(CONTENT_LENGTH, body.len())
                .body(body.clone());
        }
        let limits = &self.inner.limits;
        let work = async {
            let resp = builder.send().await.map_err(transport)?;
            let status = resp.status();
            let headers = resp.headers().clone();
            let max = if status.is_success() {
                req.max_body
            } else {
                // An error's body is read only for its message.
                Some(req.max_body.unwrap_or_default().min(MAX_ERROR_BODY_BYTES))
            };
            let body = match max {
                Some(max) if req.method != Method::HEAD => {
                    read_capped(resp, max, status.is_success()).await?
                }
                _ => Bytes::new(),
            };
            Ok(Response {
                status,
                headers,
                body,
            })
        };
        let timeout = req.timeout.unwrap_or(limits.request_timeout());
        match tokio::time::timeout(timeout, work).await {
            Ok(result) => result,
            Err(_) => Err(AttemptError::Timeout),
        }
    }
}
