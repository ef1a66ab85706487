//! [`RegistryClient`]: the registry HTTP API (distribution spec v2) over reqwest, with authentication, limits
//! and retries applied to every request, including the token server's.
//!
//! - here: the client, its repositories and their sources (mirrors, then the primary location);
//! - [`operations`]: what it asks of a registry (tags, manifests, digests, blobs);
//! - [`push`]: what it writes (blobs: checked, mounted or uploaded; manifests);
//! - [`auth`]: how it authenticates (Basic, challenges, bearer tokens);
//! - [`transport`]: how each request goes out (limits, retries, timeouts, capped bodies, redirects).

mod auth;
mod operations;
mod push;

pub use push::{BlobOutcome, Upload};
mod transport;

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

    /// `v2/<repository>/<path>` at this endpoint (`tags/list`,
    /// `manifests/<ref>`, `blobs/<digest>`, `blobs/uploads/`).
    fn api_url(&self, path: &str) -> Result<Url, RegistryError> {
        join(
            &self.endpoint.origin,
            &format!("v2/{}/{path}", self.endpoint.repository),
        )
    }

    fn pull_scope(&self) -> String {
        format!("repository:{}:pull", self.endpoint.repository)
    }
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
    use auth::{basic_header, form_urlencoded};

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
