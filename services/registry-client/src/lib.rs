//! The registry protocol client the tag-syncer imports with and the registry-watcher reads image metadata with: the `/v2/` API of OCI distribution registries
//! (CNCF distribution, Docker Hub, Quay, GHCR, Harbor…), its authentication, its limits, the registry rules
//! and the credentials.
//!
//! - [`RegistryClient`] lists tags (following `Link` pagination on the same origin only), resolves tags to
//!   digests (`HEAD` with the four manifest media types, `GET` fallback, verified) and reads the platforms of a
//!   multi-arch index. Every request goes through the per-registry limits ([`Limits`]): a concurrency
//!   semaphore, a rate limiter, a pause after 429 or `RateLimit-Remaining: 0`, jittered exponential backoff
//!   with bounded retries, a timeout and a maximum body size.
//! - Authentication: Basic, and Docker's bearer token flow (anonymous, with a username and password, or with
//!   an identity token), tokens cached per (registry, scope, credential) until they expire.
//! - [`RegistryRules`] (containers-registries.conf(5) style) map a reference to its endpoints; [`Keyring`]
//!   holds credentials from a docker `config.json`, matched by the longest `host[/path]` prefix.
//! - [`RegistryError::reason`] gives the OpenShift condition reason of a failure.
//!
//! Everything on the wire is reqwest: oci-client 0.18 has no per-request timeout over the body, no body size
//! limit, no 429 or `Retry-After` handling, hides the response headers (`Link`, `Retry-After`,
//! `RateLimit-*`), and reads one tag page without a way to follow `Link`.
//!
//! ```no_run
//! # async fn f() -> Result<(), Box<dyn std::error::Error>> {
//! use imagestreams_common::reference::Reference;
//! use imagestreams_registry_client::{Keyring, Limits, RegistryClient, RegistryRules, select_tags};
//!
//! let client = RegistryClient::new(Limits::default(), RegistryRules::default())?;
//! let reference = Reference::parse_normalized("quay.io/org/app")?;
//! let repo = client.repository(&reference, &Keyring::new(), false)?;
//! let tags = client.list_tags(&repo).await?;
//! for tag in select_tags(&tags.tags, client.limits().max_tags_per_import) {
//!     let digest = client.digest(&repo, &tag).await?;
//!     println!("{tag} {}", digest.digest);
//! }
//! # Ok(()) }
//! ```

mod auth;
mod client;
mod config;
mod error;
pub mod image;
mod integrated;
mod limits;
mod manifest;
pub mod mirror;
mod rules;

pub use auth::{Challenge, Scheme, parse_www_authenticate};
pub use client::{BlobOutcome, RegistryClient, Repository, USER_AGENT, Upload};
pub use config::{limits, rules};
pub use error::RegistryError;
pub use imagestreams_formats::credentials::{
    Credential, CredentialsError, Keyring, normalize_server,
};
pub use imagestreams_formats::tags::{
    LinkError, TagList, next_link, parse_tag_page, prioritize_tags, select_tags,
};
pub use integrated::IntegratedRegistry;
pub use limits::{
    DEFAULT_MAX_CONCURRENCY, DEFAULT_MAX_TAGS_PER_IMPORT, DEFAULT_REQUESTS_PER_SECOND, Limits,
    backoff_delay, parse_retry_after, rate_limit_wait,
};
pub use manifest::{
    MANIFEST_ACCEPT, MEDIA_TYPE_DOCKER_LIST, MEDIA_TYPE_DOCKER_SCHEMA2, MEDIA_TYPE_OCI_INDEX,
    MEDIA_TYPE_OCI_MANIFEST, Manifest, ManifestDigest, Platform, PlatformManifest, digest_of,
};
pub use rules::{
    Endpoint, Mirror, RegistriesConfig, RegistryRule, RegistryRules, ResolvedRepository, RulesError,
};
