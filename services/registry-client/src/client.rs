//! [`RegistryClient`]: the registry HTTP API (distribution spec v2) over reqwest, with authentication, limits
//! and retries applied to every request, including the token server's.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use bytes::{Bytes, BytesMut};
use imagestreams_common::config::Secret;
use imagestreams_common::metrics::ServiceMetrics;
use imagestreams_common::reference::{Reference, is_valid_tag, validate_digest};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::{counter::Counter, family::Family};
use reqwest::header::{
    ACCEPT, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, HeaderMap, HeaderValue, LINK, LOCATION,
    RETRY_AFTER, WWW_AUTHENTICATE,
};
use reqwest::{Method, StatusCode, Url};

use crate::auth::{Challenge, HostAuth, Scheme, TokenCache, TokenKey, TokenResponse};
use crate::error::{RegistryError, registry_detail};
use crate::limits::{HostLimits, Limits, parse_retry_after, rate_limit_wait};
use crate::manifest::{MANIFEST_ACCEPT, Manifest, ManifestDigest, PlatformManifest, digest_of};
use crate::rules::{Endpoint, RegistryRules, ResolvedRepository, origin_label};
use crate::{Credential, Keyring};
use crate::{LinkError, TagList, next_link, parse_tag_page};

/// The `User-Agent` of every request.
pub const USER_AGENT: &str = concat!("imagestreams/", env!("CARGO_PKG_VERSION"));

/// The OAuth2 `client_id` sent when exchanging an identity token.
pub const OAUTH_CLIENT_ID: &str = "imagestreams";

/// Longest error body read for its message.
const MAX_ERROR_BODY_BYTES: u64 = 16 * 1024;

/// The `Docker-Content-Digest` header.
const DOCKER_CONTENT_DIGEST: &str = "docker-content-digest";

/// A registry client: one per process, cheap to clone, shared by every import. It holds the limits (per
/// registry: a concurrency semaphore, a rate limiter and a pause after 429), the rules and the token cache.
#[derive(Clone)]
pub struct RegistryClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    limits: Limits,
    rules: RegistryRules,
    hosts: Mutex<HashMap<String, Arc<HostLimits>>>,
    tokens: TokenCache,
    requests: AtomicU64,
    by_status: Family<RequestLabels, Counter>,
}

/// The labels of `registry_requests_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    /// `host[:port]` of the registry.
    registry: String,
    /// The HTTP status, or `timeout`, `transport`, `too_large`.
    status: String,
}

impl fmt::Debug for RegistryClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryClient")
            .field("limits", &self.inner.limits)
            .field("rules", &self.inner.rules)
            .field("requests_sent", &self.requests_sent())
            .finish_non_exhaustive()
    }
}

/// A repository resolved by the rules, with the credential for each endpoint: what every operation takes.
/// `Debug` redacts the credentials.
#[derive(Debug, Clone)]
pub struct Repository {
    resolved: ResolvedRepository,
    credentials: Vec<Option<Credential>>,
}

impl Repository {
    /// The repository as named (`docker.io/openshift/ruby-20-centos7`), without tag or digest.
    pub fn name(&self) -> &Reference {
        &self.resolved.name
    }

    /// Mirrors, then the primary location.
    pub fn endpoints(&self) -> &[Endpoint] {
        &self.resolved.endpoints
    }

    /// The primary location.
    pub fn primary(&self) -> &Endpoint {
        self.resolved.primary()
    }

    fn sources(&self) -> impl Iterator<Item = Source<'_>> {
        self.resolved
            .endpoints
            .iter()
            .zip(&self.credentials)
            .map(|(endpoint, credential)| Source {
                endpoint,
                credential: credential.as_ref(),
            })
    }

    fn primary_source(&self) -> Source<'_> {
        Source {
            endpoint: self.resolved.primary(),
            credential: self.credentials.last().and_then(Option::as_ref),
        }
    }
}

/// One endpoint and the credential to use there.
#[derive(Clone, Copy)]
struct Source<'a> {
    endpoint: &'a Endpoint,
    credential: Option<&'a Credential>,
}

impl Source<'_> {
    fn origin(&self) -> &str {
        self.endpoint.origin.as_str()
    }

    fn registry(&self) -> String {
        self.endpoint.registry()
    }

    fn pull_scope(&self) -> String {
        format!("repository:{}:pull", self.endpoint.repository)
    }
}

/// One request to make, possibly several times.
struct Request<'a> {
    method: Method,
    url: Url,
    accept: Option<&'static str>,
    form: Option<Vec<(&'static str, String)>>,
    what: &'a str,
    /// Read the body (not for HEAD), up to this many bytes.
    max_body: Option<u64>,
    /// Follow one redirect (blob storage), without our `Authorization`.
    follow_redirect: bool,
}

/// A response with its body read.
struct Response {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

/// Why one attempt failed before a status arrived.
enum AttemptError {
    Timeout,
    TooLarge,
    Transport(String),
}

/// Checks that `body` hashes to `expected` (with `expected`'s algorithm); the digest it hashes to.
fn verify_digest(
    source: Source<'_>,
    what: &str,
    expected: &str,
    body: &[u8],
) -> Result<String, RegistryError> {
    let algorithm = expected.split(':').next().unwrap_or_default();
    let actual = digest_of(algorithm, body).ok_or_else(|| RegistryError::InvalidResponse {
        registry: source.registry(),
        what: what.to_owned(),
        detail: format!("unsupported digest algorithm {algorithm}"),
    })?;
    if actual != expected {
        return Err(RegistryError::DigestMismatch {
            registry: source.registry(),
            what: what.to_owned(),
            expected: expected.to_owned(),
            actual,
        });
    }
    Ok(actual)
}

impl RegistryClient {
    /// A client with `limits` and `rules`.
    pub fn new(limits: Limits, rules: RegistryRules) -> Result<Self, RegistryError> {
        let http = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .connect_timeout(limits.connect_timeout())
            // Redirects are followed by hand (blob storage) or not at all: never with our Authorization.
            .redirect(reqwest::redirect::Policy::none())
            .pool_max_idle_per_host(limits.max_concurrency.max(1))
            .build()
            .map_err(|e| RegistryError::Client(e.to_string()))?;
        Ok(RegistryClient {
            inner: Arc::new(Inner {
                http,
                limits,
                rules,
                hosts: Mutex::new(HashMap::new()),
                tokens: TokenCache::default(),
                requests: AtomicU64::new(0),
                by_status: Family::default(),
            }),
        })
    }

    /// Registers `imagestreams_<service>_registry_requests_total{registry,status}`
    /// (every attempt, retries included) in `metrics`.
    pub fn register_metrics(&self, metrics: &ServiceMetrics) {
        metrics.register(
            "registry_requests",
            "Requests to registries (every attempt), by registry and HTTP status or failure",
            self.inner.by_status.clone(),
        );
    }

    fn count(&self, registry: &str, status: String) {
        self.inner
            .by_status
            .get_or_create(&RequestLabels {
                registry: registry.to_owned(),
                status,
            })
            .inc();
    }

    /// The limits.
    pub fn limits(&self) -> &Limits {
        &self.inner.limits
    }

    /// The rules.
    pub fn rules(&self) -> &RegistryRules {
        &self.inner.rules
    }

    /// HTTP requests sent so far (every attempt, token requests included).
    pub fn requests_sent(&self) -> u64 {
        self.inner.requests.load(Ordering::Relaxed)
    }

    /// Resolves `reference` by the rules (`insecure`: plain HTTP for the primary location, as an import's
    /// `--insecure`) and picks each endpoint's credential from `keyring` by its location.
    pub fn repository(
        &self,
        reference: &Reference,
        keyring: &Keyring,
        insecure: bool,
    ) -> Result<Repository, RegistryError> {
        let resolved = self.inner.rules.resolve(reference, insecure)?;
        let credentials = resolved
            .endpoints
            .iter()
            .map(|e| keyring.lookup(&e.location).cloned())
            .collect();
        Ok(Repository {
            resolved,
            credentials,
        })
    }

    /// `GET /v2/` on the primary location, authenticating as a `docker login` would: succeeds when the
    /// registry accepts the credential (or anonymous access).
    pub async fn ping(&self, repo: &Repository) -> Result<(), RegistryError> {
        let source = repo.primary_source();
        let url = join(&source.endpoint.origin, "v2/")?;
        let what = "the /v2/ ping";
        self.send(
            source,
            None,
            Request {
                method: Method::GET,
                url,
                accept: None,
                form: None,
                what,
                max_body: Some(MAX_ERROR_BODY_BYTES),
                follow_redirect: false,
            },
        )
        .await
        .map(drop)
    }

    /// Every tag of the repository, from its primary location (mirrors are for manifests, as in
    /// containers/image), following `Link: <…>; rel="next"` on the same origin only, up to
    /// [`Limits::max_listed_tags`] tags and [`Limits::max_tag_pages`] pages.
    pub async fn list_tags(&self, repo: &Repository) -> Result<TagList, RegistryError> {
        let source = repo.primary_source();
        let limits = &self.inner.limits;
        let what = format!("the tags of {}", source.endpoint.repository);
        let mut url = join(
            &source.endpoint.origin,
            &format!("v2/{}/tags/list", source.endpoint.repository),
        )?;
        if let Some(n) = limits.tag_page_size {
            url.query_pairs_mut().append_pair("n", &n.to_string());
        }
        let mut list = TagList::default();
        let mut seen = HashSet::new();
        let mut visited = HashSet::new();
        loop {
            if !visited.insert(url.to_string()) {
                return Err(RegistryError::InvalidResponse {
                    registry: source.registry(),
                    what,
                    detail: "the next-page links form a cycle".into(),
                });
            }
            let resp = self
                .send(
                    source,
                    Some(source.pull_scope()),
                    Request {
                        method: Method::GET,
                        url: url.clone(),
                        accept: Some("application/json"),
                        form: None,
                        what: &what,
                        max_body: Some(limits.max_body_bytes),
                        follow_redirect: false,
                    },
                )
                .await?;
            list.pages += 1;
            let page_tags =
                parse_tag_page(&resp.body).map_err(|e| RegistryError::InvalidResponse {
                    registry: source.registry(),
                    what: what.clone(),
                    detail: format!("not a tag list: {e}"),
                })?;
            let page_len = page_tags.len();
            let last = page_tags.last().cloned();
            let mut new = 0;
            for tag in page_tags {
                if list.tags.len() >= limits.max_listed_tags {
                    list.truncated = true;
                    break;
                }
                if seen.insert(tag.clone()) {
                    list.tags.push(tag);
                    new += 1;
                }
            }
            if list.truncated {
                break;
            }
            let link_values = resp
                .headers
                .get_all(LINK)
                .iter()
                .filter_map(|v| v.to_str().ok());
            let next = match next_link(link_values, &url) {
                Ok(next) => next,
                Err(LinkError::ForeignOrigin(link_origin)) => {
                    return Err(RegistryError::ForeignLink {
                        registry: source.registry(),
                        what,
                        link_origin,
                    });
                }
                Err(LinkError::Invalid) => {
                    return Err(RegistryError::InvalidResponse {
                        registry: source.registry(),
                        what,
                        detail: "invalid next-page link".into(),
                    });
                }
            };
            // Without a Link, a full page of a registry honouring `n` may still have a next page at `last`.
            let next = next.or_else(|| match (limits.tag_page_size, last) {
                (Some(n), Some(last)) if page_len == n as usize && new > 0 => {
                    let mut next = url.clone();
                    next.query_pairs_mut()
                        .clear()
                        .append_pair("n", &n.to_string())
                        .append_pair("last", &last);
                    Some(next)
                }
                _ => None,
            });
            match next {
                None => break,
                Some(_)
                    if list.pages >= limits.max_tag_pages
                        || list.tags.len() >= limits.max_listed_tags =>
                {
                    list.truncated = true;
                    break;
                }
                Some(next) => url = next,
            }
        }
        tracing::debug!(
            registry = %source.registry(),
            repository = %source.endpoint.repository,
            tags = list.tags.len(),
            pages = list.pages,
            truncated = list.truncated,
            "listed tags"
        );
        Ok(list)
    }

    /// The digest `tag` points to: `HEAD /v2/<name>/manifests/<tag>` accepting OCI index and manifest, Docker
    /// manifest list and schema 2; a GET (hashing the bytes, checked against `Docker-Content-Digest` when
    /// sent) when the HEAD has no usable digest. For a multi-arch image this is the index's digest. Mirrors
    /// are tried first, then the primary location.
    pub async fn digest(
        &self,
        repo: &Repository,
        tag: &str,
    ) -> Result<ManifestDigest, RegistryError> {
        check_reference(tag)?;
        self.each_source(repo, |source| self.digest_at(source, tag))
            .await
    }

    /// The manifest `reference` (a tag or a digest) names, verified against its digest.
    pub async fn manifest(
        &self,
        repo: &Repository,
        reference: &str,
    ) -> Result<Manifest, RegistryError> {
        check_reference(reference)?;
        self.each_source(repo, |source| self.manifest_at(source, reference))
            .await
    }

    /// The per-platform manifests (os, architecture, variant) of the index `digest`; empty when `digest` is a
    /// single-platform manifest.
    pub async fn manifest_platforms(
        &self,
        repo: &Repository,
        digest: &str,
    ) -> Result<Vec<PlatformManifest>, RegistryError> {
        if validate_digest(digest).is_err() {
            return Err(RegistryError::InvalidReference {
                input: digest.to_owned(),
                detail: "not a valid digest".into(),
            });
        }
        let manifest = self.manifest(repo, digest).await?;
        manifest
            .platforms()
            .map_err(|e| RegistryError::InvalidResponse {
                registry: repo.primary().registry(),
                what: format!("the index {digest}"),
                detail: format!("not an image index: {e}"),
            })
    }

    /// The blob `digest` (an image config), at most `max_bytes`, verified against its digest. A redirect to
    /// blob storage is followed once, without our credentials.
    pub async fn blob(
        &self,
        repo: &Repository,
        digest: &str,
        max_bytes: u64,
    ) -> Result<Bytes, RegistryError> {
        validate_digest(digest).map_err(|e| RegistryError::InvalidReference {
            input: digest.to_owned(),
            detail: e.to_string(),
        })?;
        self.each_source(repo, |source| self.blob_at(source, digest, max_bytes))
            .await
    }

    async fn blob_at(
        &self,
        source: Source<'_>,
        digest: &str,
        max_bytes: u64,
    ) -> Result<Bytes, RegistryError> {
        let what = format!("blob {}@{digest}", source.endpoint.repository);
        let url = join(
            &source.endpoint.origin,
            &format!("v2/{}/blobs/{digest}", source.endpoint.repository),
        )?;
        let resp = self
            .send(
                source,
                Some(source.pull_scope()),
                Request {
                    method: Method::GET,
                    url,
                    accept: None,
                    form: None,
                    what: &what,
                    max_body: Some(max_bytes),
                    follow_redirect: true,
                },
            )
            .await?;
        verify_digest(source, &what, digest, &resp.body)?;
        Ok(resp.body)
    }

    /// Follows the redirect `resp` answered `req` with: one GET of its `Location`, anonymous (storage URLs are
    /// pre-signed, and our token is for the registry alone).
    async fn follow_redirect(
        &self,
        source: Source<'_>,
        req: &Request<'_>,
        resp: &Response,
    ) -> Result<Response, RegistryError> {
        let location = resp
            .headers
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|l| req.url.join(l).ok())
            .filter(|u| matches!(u.scheme(), "http" | "https"))
            .ok_or_else(|| RegistryError::InvalidResponse {
                registry: source.registry(),
                what: req.what.to_owned(),
                detail: format!("a {} redirect without a usable Location", resp.status),
            })?;
        let redirected = Request {
            method: Method::GET,
            url: location,
            accept: req.accept,
            form: None,
            what: req.what,
            max_body: req.max_body,
            follow_redirect: false,
        };
        self.execute(&redirected, None).await
    }

    /// Runs `op` on each source in turn (mirrors, then the primary) until one succeeds; the primary's error
    /// when all fail.
    async fn each_source<'r, T, F, Fut>(
        &self,
        repo: &'r Repository,
        op: F,
    ) -> Result<T, RegistryError>
    where
        F: Fn(Source<'r>) -> Fut,
        Fut: Future<Output = Result<T, RegistryError>>,
    {
        let mut last = None;
        for source in repo.sources() {
            match op(source).await {
                Ok(v) => return Ok(v),
                Err(e) if e.try_next_source() => {
                    if source.endpoint.mirror {
                        tracing::debug!(mirror = %source.registry(), reason = e.reason(), "mirror failed, trying the next source");
                    }
                    last = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        // can't fail: a repository always has its primary source
        Err(last.expect("at least one source"))
    }

    async fn digest_at(
        &self,
        source: Source<'_>,
        tag: &str,
    ) -> Result<ManifestDigest, RegistryError> {
        let what = format!("manifest {}:{tag}", source.endpoint.repository);
        let url = join(
            &source.endpoint.origin,
            &format!("v2/{}/manifests/{tag}", source.endpoint.repository),
        )?;
        let resp = self
            .send(
                source,
                Some(source.pull_scope()),
                Request {
                    method: Method::HEAD,
                    url,
                    accept: Some(MANIFEST_ACCEPT),
                    form: None,
                    what: &what,
                    max_body: None,
                    follow_redirect: false,
                },
            )
            .await?;
        let header_digest = resp
            .headers
            .get(DOCKER_CONTENT_DIGEST)
            .and_then(|v| v.to_str().ok())
            .filter(|d| validate_digest(d).is_ok());
        match header_digest {
            Some(digest) if validate_digest(tag).is_err() || digest == tag => Ok(ManifestDigest {
                digest: digest.to_owned(),
                media_type: content_type(&resp.headers),
                size: resp
                    .headers
                    .get(CONTENT_LENGTH)
                    .and_then(|v| v.to_str().ok()?.parse().ok()),
            }),
            _ => {
                let manifest = self.manifest_at(source, tag).await?;
                Ok(ManifestDigest {
                    digest: manifest.digest,
                    media_type: manifest.media_type,
                    size: Some(manifest.bytes.len() as u64),
                })
            }
        }
    }

    async fn manifest_at(
        &self,
        source: Source<'_>,
        reference: &str,
    ) -> Result<Manifest, RegistryError> {
        let what = format!("manifest {}:{reference}", source.endpoint.repository);
        let url = join(
            &source.endpoint.origin,
            &format!("v2/{}/manifests/{reference}", source.endpoint.repository),
        )?;
        let resp = self
            .send(
                source,
                Some(source.pull_scope()),
                Request {
                    method: Method::GET,
                    url,
                    accept: Some(MANIFEST_ACCEPT),
                    form: None,
                    what: &what,
                    max_body: Some(self.inner.limits.max_body_bytes),
                    follow_redirect: false,
                },
            )
            .await?;
        let header = resp
            .headers
            .get(DOCKER_CONTENT_DIGEST)
            .and_then(|v| v.to_str().ok())
            .filter(|d| validate_digest(d).is_ok());
        // The bytes must hash to the digest asked for, and to the one the registry announced.
        let requested = validate_digest(reference).is_ok().then_some(reference);
        let mut digest = None;
        for expected in [requested, header].into_iter().flatten() {
            digest.get_or_insert(verify_digest(source, &what, expected, &resp.body)?);
        }
        let digest = match digest {
            Some(d) => d,
            // can't fail: sha256 is supported
            None => digest_of("sha256", &resp.body).expect("sha256"),
        };
        let media_type = content_type(&resp.headers)
            .filter(|t| t != "application/json" && t != "text/plain")
            .or_else(|| crate::manifest::document_media_type(&resp.body));
        Ok(Manifest {
            digest,
            media_type,
            bytes: resp.body,
        })
    }

    /// Sends `req` to `source` with authentication: a known scheme's credentials up front, else anonymous; on a
    /// 401, answers the challenge (Basic, or a bearer token for `scope`) and retries once. Maps 401, 403, 404
    /// and other 4xx to errors.
    async fn send(
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

    /// The `Authorization` to send before any challenge: Basic or a cached (or freshly fetched) bearer token when
    /// the registry challenged us before, the credential's own bearer token for `registrytoken`, else none.
    async fn preemptive_auth(
        &self,
        source: Source<'_>,
        scope: Option<&str>,
    ) -> Result<Option<AuthUsed>, RegistryError> {
        let Some(host_auth) = self.inner.tokens.host_auth(source.origin()) else {
            return Ok(match source.credential {
                Some(Credential::RegistryToken { token }) => Some(AuthUsed::bearer(token)),
                _ => None,
            });
        };
        match host_auth {
            HostAuth::Basic => Ok(source
                .credential
                .and_then(basic_header)
                .map(AuthUsed::plain)),
            HostAuth::Bearer { realm, service } => {
                if let Some(Credential::RegistryToken { token }) = source.credential {
                    return Ok(Some(AuthUsed::bearer(token)));
                }
                self.bearer(source, &realm, service.as_deref(), scope)
                    .await
                    .map(Some)
            }
        }
    }

    /// The `Authorization` answering `challenges`, or `None` when there is nothing better to send.
    async fn answer_challenge(
        &self,
        source: Source<'_>,
        scope: Option<&str>,
        challenges: &[Challenge],
        req: &Request<'_>,
    ) -> Result<Option<AuthUsed>, RegistryError> {
        let bearer = challenges.iter().find(|c| c.scheme == Scheme::Bearer);
        let basic = challenges.iter().find(|c| c.scheme == Scheme::Basic);
        if let Some(challenge) = bearer {
            let Some(realm) = challenge.param("realm") else {
                return Err(RegistryError::InvalidResponse {
                    registry: source.registry(),
                    what: req.what.to_owned(),
                    detail: "bearer challenge without a realm".into(),
                });
            };
            let service = challenge.param("service").map(str::to_owned);
            self.inner.tokens.set_host_auth(
                source.origin(),
                HostAuth::Bearer {
                    realm: realm.to_owned(),
                    service: service.clone(),
                },
            );
            if let Some(Credential::RegistryToken { token }) = source.credential {
                return Ok(Some(AuthUsed::bearer(token)));
            }
            // The scope the registry asks for, else the one the operation needs.
            let scope = challenge.param("scope").or(scope);
            return self
                .bearer(source, realm, service.as_deref(), scope)
                .await
                .map(Some);
        }
        if basic.is_some() {
            self.inner
                .tokens
                .set_host_auth(source.origin(), HostAuth::Basic);
            return Ok(source
                .credential
                .and_then(basic_header)
                .map(AuthUsed::plain));
        }
        Ok(None)
    }

    /// A bearer token for `scope` from `realm`: cached, or fetched once per key even when many requests want it.
    async fn bearer(
        &self,
        source: Source<'_>,
        realm: &str,
        service: Option<&str>,
        scope: Option<&str>,
    ) -> Result<AuthUsed, RegistryError> {
        let key = TokenKey {
            origin: source.origin().to_owned(),
            scope: scope.unwrap_or_default().to_owned(),
            principal: source
                .credential
                .map(Credential::fingerprint)
                .unwrap_or([0; 32]),
        };
        if let Some(token) = self.inner.tokens.get(&key) {
            return Ok(AuthUsed::cached(&token, key));
        }
        let lock = self.inner.tokens.fetch_lock(&key);
        let _fetching = lock.lock().await;
        if let Some(token) = self.inner.tokens.get(&key) {
            return Ok(AuthUsed::cached(&token, key));
        }
        let (token, lifetime) = self.fetch_token(source, realm, service, scope).await?;
        let used = AuthUsed::cached(&token, key.clone());
        self.inner.tokens.put(key, token, lifetime);
        Ok(used)
    }

    /// Asks the token server: `GET realm?service=…&scope=…` with Basic credentials (or anonymously), or, for
    /// an identity token, `POST realm` with an OAuth2 refresh-token grant.
    async fn fetch_token(
        &self,
        source: Source<'_>,
        realm: &str,
        service: Option<&str>,
        scope: Option<&str>,
    ) -> Result<(Secret, Duration), RegistryError> {
        let registry = source.registry();
        let mut url = Url::parse(realm).map_err(|_| RegistryError::InvalidResponse {
            registry: registry.clone(),
            what: "the token realm".into(),
            detail: "the realm is not a URL".into(),
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(RegistryError::InvalidResponse {
                registry,
                what: "the token realm".into(),
                detail: "the realm is not an http(s) URL".into(),
            });
        }
        let shown_realm = {
            let mut u = url.clone();
            u.set_query(None);
            u.to_string()
        };
        // Credentials go to a plain-HTTP realm only when the registry itself is plain HTTP.
        if source.credential.is_some() && url.scheme() == "http" && !source.endpoint.insecure {
            return Err(RegistryError::InsecureRealm {
                registry,
                realm: shown_realm,
            });
        }
        let what = format!("a token for {}", scope.unwrap_or("the registry"));
        let (method, form, auth) = match source.credential {
            Some(Credential::IdentityToken { token }) => {
                let mut form = vec![
                    ("grant_type", "refresh_token".to_owned()),
                    ("client_id", OAUTH_CLIENT_ID.to_owned()),
                    ("refresh_token", token.expose().to_owned()),
                ];
                if let Some(s) = service {
                    form.push(("service", s.to_owned()));
                }
                if let Some(s) = scope {
                    form.push(("scope", s.to_owned()));
                }
                (Method::POST, Some(form), None)
            }
            credential => {
                {
                    let mut q = url.query_pairs_mut();
                    if let Some(s) = service {
                        q.append_pair("service", s);
                    }
                    if let Some(s) = scope {
                        q.append_pair("scope", s);
                    }
                }
                if url.query() == Some("") {
                    url.set_query(None);
                }
                (Method::GET, None, credential.and_then(basic_header))
            }
        };
        let req = Request {
            method,
            url,
            accept: Some("application/json"),
            form,
            what: &what,
            max_body: Some(self.inner.limits.max_body_bytes.min(1024 * 1024)),
            follow_redirect: false,
        };
        let resp = self.execute(&req, auth.as_ref()).await?;
        let realm_label = origin_label(&req.url);
        match resp.status {
            s if s.is_success() => {}
            StatusCode::UNAUTHORIZED => {
                return Err(RegistryError::Unauthorized {
                    registry: realm_label,
                    what,
                    detail: match registry_detail(&resp.body) {
                        d if d.is_empty() => ": the token server refused the credentials".into(),
                        d => d,
                    },
                });
            }
            StatusCode::FORBIDDEN => {
                return Err(RegistryError::Forbidden {
                    registry: realm_label,
                    what,
                    detail: registry_detail(&resp.body),
                });
            }
            s => {
                return Err(RegistryError::UnexpectedStatus {
                    registry: realm_label,
                    what,
                    status: s.as_u16(),
                    detail: registry_detail(&resp.body),
                });
            }
        }
        serde_json::from_slice::<TokenResponse>(&resp.body)
            .ok()
            .and_then(TokenResponse::into_token)
            .ok_or_else(|| RegistryError::InvalidResponse {
                registry: realm_label,
                what,
                detail: "the token server's answer holds no token".into(),
            })
    }

    /// The limits shared by every request to `origin`.
    fn host(&self, origin: &str) -> Arc<HostLimits> {
        let mut hosts = self.inner.hosts.lock().unwrap_or_else(|e| e.into_inner());
        hosts
            .entry(origin.to_owned())
            .or_insert_with(|| Arc::new(HostLimits::new(&self.inner.limits)))
            .clone()
    }

    /// Sends `req` under the limits of its origin, retrying 429 (after `Retry-After`, with jittered backoff),
    /// 5xx, timeouts and transport failures up to [`Limits::max_retries`] times. Returns any other status.
    async fn execute(
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
                        timeout: limits.request_timeout(),
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
    async fn attempt(
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
        if let Some(form) = &req.form {
            builder = builder
                .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(form_urlencoded(form));
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
        match tokio::time::timeout(limits.request_timeout(), work).await {
            Ok(result) => result,
            Err(_) => Err(AttemptError::Timeout),
        }
    }
}

/// A manifest reference must be a tag or a digest.
fn check_reference(reference: &str) -> Result<(), RegistryError> {
    if is_valid_tag(reference) || validate_digest(reference).is_ok() {
        return Ok(());
    }
    Err(RegistryError::InvalidReference {
        input: reference.to_owned(),
        detail: "not a valid tag or digest".into(),
    })
}

/// The `Authorization` of a request and, for a cached token, its key (to forget it when refused).
struct AuthUsed {
    header: HeaderValue,
    token_key: Option<TokenKey>,
}

impl AuthUsed {
    fn plain(header: HeaderValue) -> Self {
        AuthUsed {
            header,
            token_key: None,
        }
    }

    fn bearer(token: &Secret) -> Self {
        AuthUsed::plain(sensitive(&format!("Bearer {}", token.expose())))
    }

    fn cached(token: &Secret, key: TokenKey) -> Self {
        AuthUsed {
            token_key: Some(key),
            ..AuthUsed::bearer(token)
        }
    }
}

/// `Basic base64(user:password)` for a username and password.
fn basic_header(credential: &Credential) -> Option<HeaderValue> {
    match credential {
        Credential::Basic { username, password } => {
            let raw = format!("{username}:{}", password.expose());
            let encoded = base64::engine::general_purpose::STANDARD.encode(raw);
            Some(sensitive(&format!("Basic {encoded}")))
        }
        _ => None,
    }
}

/// A header value marked sensitive (reqwest and hyper leave it out of their `Debug`). Invalid characters (which
/// no credential should hold) give an empty value, which the registry refuses as it would a wrong one.
fn sensitive(value: &str) -> HeaderValue {
    let mut v = HeaderValue::from_str(value).unwrap_or_else(|_| HeaderValue::from_static(""));
    v.set_sensitive(true);
    v
}

/// Reads at most `max` bytes of the body; more is [`AttemptError::TooLarge`] when `strict`, or cut off otherwise.
async fn read_capped(
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
fn transport(e: reqwest::Error) -> AttemptError {
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

/// `k=v&…`, percent-encoded as `application/x-www-form-urlencoded`.
fn form_urlencoded(pairs: &[(&str, String)]) -> String {
    // can't fail: a constant URL
    let mut url = Url::parse("http://form.invalid/").expect("a valid URL");
    url.query_pairs_mut().extend_pairs(pairs);
    url.query().unwrap_or_default().to_owned()
}

/// The `Content-Type` without parameters.
fn content_type(headers: &HeaderMap) -> Option<String> {
    let v = headers.get(CONTENT_TYPE)?.to_str().ok()?;
    let v = v.split(';').next().unwrap_or_default().trim();
    (!v.is_empty()).then(|| v.to_owned())
}

/// `origin` + `path`, refusing paths that would escape it.
fn join(origin: &Url, path: &str) -> Result<Url, RegistryError> {
    let url = origin
        .join(path)
        .map_err(|_| RegistryError::InvalidReference {
            input: path.to_owned(),
            detail: "does not make a URL".into(),
        })?;
    if url.origin() != origin.origin() {
        return Err(RegistryError::InvalidReference {
            input: path.to_owned(),
            detail: "leaves the registry".into(),
        });
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "pa55:w0rd-hunter2";

    #[test]
    fn debug_of_a_client_and_a_repository_redacts_credentials() {
        let client = RegistryClient::new(Limits::default(), RegistryRules::default()).unwrap();
        let mut keyring = Keyring::new();
        keyring
            .insert("quay.io", Credential::basic("robot", SECRET))
            .unwrap();
        keyring
            .insert(
                "ghcr.io",
                Credential::RegistryToken {
                    token: Secret::new(SECRET),
                },
            )
            .unwrap();
        for name in ["quay.io/org/app", "ghcr.io/org/app"] {
            let reference = Reference::parse_normalized(name).unwrap();
            let repo = client.repository(&reference, &keyring, false).unwrap();
            let shown = format!("{repo:?} {client:?}");
            assert!(!shown.contains(SECRET), "{shown}");
            assert!(shown.contains("redacted"), "{shown}");
        }
        let header = basic_header(&Credential::basic("robot", SECRET)).unwrap();
        assert!(header.is_sensitive());
        assert!(!format!("{header:?}").contains("cm9ib3Q"), "{header:?}");
    }

    #[test]
    fn forms_are_url_encoded() {
        assert_eq!(
            form_urlencoded(&[
                ("a", "x y&z".into()),
                ("scope", "repository:a/b:pull".into())
            ]),
            "a=x+y%26z&scope=repository%3Aa%2Fb%3Apull"
        );
    }

    #[test]
    fn paths_cannot_leave_the_registry() {
        let origin = Url::parse("http://127.0.0.1:5000/").unwrap();
        assert!(join(&origin, "v2/a/b/manifests/latest").is_ok());
        assert!(join(&origin, "//evil.example/v2/").is_err());
        assert!(join(&origin, "http://evil.example/").is_err());
    }
}
