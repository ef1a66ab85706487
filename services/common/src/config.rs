//! Configuration: built-in defaults, then `imagestreams.toml` (or `--config FILE`),
//! then `IMAGESTREAMS_`-prefixed environment variables with `__` for nesting
//! (`IMAGESTREAMS_NATS__URL=nats://…` sets `nats.url`). An unknown key is an
//! error that names it.

use std::{
    net::SocketAddr,
    num::NonZeroUsize,
    path::{Path, PathBuf},
};

use figment::{
    Figment,
    providers::{Env, Format, Serialized, Toml},
};
use serde::{Deserialize, Serialize};

pub use imagestreams_formats::secret::Secret;

/// Where Google publishes the keys that sign its ID tokens (the `jwks_uri`
/// of `https://accounts.google.com/.well-known/openid-configuration`).
pub const DEFAULT_GAR_JWKS_URL: &str = "https://www.googleapis.com/oauth2/v3/certs";
/// The configuration file read when `--config` is not given (if it exists).
pub const DEFAULT_CONFIG_FILE: &str = "imagestreams.toml";
/// Prefix of the environment variables that override the configuration.
pub const ENV_PREFIX: &str = "IMAGESTREAMS_";
/// Environment variables with [`ENV_PREFIX`] that belong to the client, not to
/// the configuration (lower-cased, without the prefix).
pub const CLIENT_ENV_KEYS: &[&str] = &[
    "server",
    "namespace",
    "config",
    "token",
    "certificate_authority",
];

/// Default NATS URL.
pub const DEFAULT_NATS_URL: &str = "nats://127.0.0.1:4222";
/// Default gRPC listen address of the gateway.
pub const DEFAULT_GRPC_LISTEN: &str = "127.0.0.1:50051";
/// Default HTTP listen address of the gateway (REST, health, metrics).
pub const DEFAULT_HTTP_LISTEN: &str = "127.0.0.1:8080";
/// Default HTTPS listen address of the gateway's Kubernetes-compatible API.
pub const DEFAULT_KUBE_LISTEN: &str = "127.0.0.1:6443";
/// Where the gateway keeps the local CA and serving certificate it makes
/// for the Kubernetes-compatible API when none is configured.
pub const DEFAULT_KUBE_PKI_DIR: &str = ".imagestreams/kube-pki";
/// Where `up` writes the kubeconfig of its Kubernetes-compatible API.
pub const DEFAULT_KUBECONFIG: &str = ".imagestreams/kubeconfig";
/// Default HTTP listen address of the stream-store in microservices mode.
pub const DEFAULT_STREAM_STORE_HTTP_LISTEN: &str = "127.0.0.1:8081";
/// Default HTTP listen address of the tag-syncer in microservices mode.
pub const DEFAULT_TAG_SYNCER_HTTP_LISTEN: &str = "127.0.0.1:8082";
/// Default HTTP listen address of the trigger service in microservices mode.
pub const DEFAULT_TRIGGER_HTTP_LISTEN: &str = "127.0.0.1:8083";
/// Default listen address of the registry notification endpoint.
pub const DEFAULT_WATCHER_LISTEN: &str = "127.0.0.1:8085";
/// Default listen address of the webhook receivers (`/hooks/<id>`).
pub const DEFAULT_HOOKS_LISTEN: &str = "127.0.0.1:8086";
/// Default cap on a webhook delivery's body: the peers cap at 1 to 3 MiB.
pub const DEFAULT_HOOKS_MAX_BODY_BYTES: usize = 1024 * 1024;
/// Default sustained rate of verified deliveries per receiver, per second.
pub const DEFAULT_HOOKS_RATE_PER_RECEIVER: f64 = 100.0;
/// Default burst of verified deliveries per receiver.
pub const DEFAULT_HOOKS_BURST_PER_RECEIVER: u32 = 200;
/// Default host of the integrated registry.
pub const DEFAULT_INTEGRATED_REGISTRY_HOST: &str = "127.0.0.1:5000";
/// Default number of seconds to keep trying the first NATS connection.
pub const DEFAULT_NATS_CONNECT_TIMEOUT_SECS: u64 = 5;
/// Default directory for the NATS server that `up` may start itself.
pub const DEFAULT_NATS_STORE_DIR: &str = ".imagestreams/nats";

/// Errors while loading the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A layer failed to parse or held an unknown or ill-typed key.
    #[error("invalid configuration: {0}")]
    Invalid(Box<figment::Error>),
    /// `--config` named a file that does not exist.
    #[error("configuration file {0} does not exist")]
    Missing(PathBuf),
}

/// The whole configuration of one process.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// NATS connection and storage.
    pub nats: NatsConfig,
    /// The public gRPC and HTTP gateway.
    pub gateway: GatewayConfig,
    /// The registry notification endpoint.
    pub registry_watcher: RegistryWatcherConfig,
    /// The integrated registry whose pushes create streams.
    pub integrated_registry: IntegratedRegistryConfig,
    /// Authentication and authorization.
    pub auth: AuthConfig,
    /// The stream-store service: its HTTP port and what a stream keeps.
    pub stream_store: StreamStoreConfig,
    /// The tag-syncer service: its HTTP port, registry limits, credentials and schedule.
    pub tag_syncer: TagSyncerConfig,
    /// The trigger service: its HTTP port, firing and webhook settings.
    pub trigger: TriggerConfig,
    /// Logs and traces.
    pub telemetry: TelemetryConfig,
    /// Registry rules, containers-registries.conf(5) style: the top-level
    /// `[[registry]]` array (with `[[registry.mirror]]`).
    #[serde(rename = "registry")]
    pub registries: Vec<RegistryRuleConfig>,
    /// The encryption key of registry secrets at rest.
    pub secrets: SecretsConfig,
}

impl Config {
    /// Loads defaults, then the file (`path`, or [`DEFAULT_CONFIG_FILE`] when it
    /// exists), then the environment.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        Self::figment(path)?
            .extract()
            .map_err(|e| ConfigError::Invalid(Box::new(e)))
    }

    /// The layered figment, for callers that add layers (tests).
    pub fn figment(path: Option<&Path>) -> Result<Figment, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        match path {
            Some(p) if !p.exists() => return Err(ConfigError::Missing(p.to_owned())),
            Some(p) => figment = figment.merge(Toml::file_exact(p)),
            None if Path::new(DEFAULT_CONFIG_FILE).exists() => {
                figment = figment.merge(Toml::file_exact(DEFAULT_CONFIG_FILE))
            }
            None => {}
        }
        let env = Env::prefixed(ENV_PREFIX)
            .filter(|key| {
                !CLIENT_ENV_KEYS
                    .iter()
                    .any(|k| key.as_str().eq_ignore_ascii_case(k))
            })
            .split("__");
        Ok(figment.merge(env))
    }

    /// A configuration for tests: defaults with every listener on port 0 and
    /// NATS at `nats_url`.
    pub fn for_tests(nats_url: &str) -> Config {
        let any: SocketAddr = ([127, 0, 0, 1], 0).into();
        let mut c = Config::default();
        c.nats.url = nats_url.to_owned();
        c.gateway.grpc_listen = any;
        c.gateway.http_listen = any;
        // its PKI would land in the working directory: the tests of the
        // Kubernetes face turn it on with their own
        c.gateway.kube.enabled = false;
        c.gateway.kube.listen = any;
        c.registry_watcher.listen = any;
        c.stream_store.http_listen = any;
        c.tag_syncer.http_listen = any;
        c.tag_syncer.hooks_listen = any;
        c.trigger.http_listen = any;
        // the auth tests turn it on explicitly
        c.auth.enabled = false;
        c
    }
}

fn addr(s: &str) -> SocketAddr {
    // can't fail: only called with the DEFAULT_* constants above
    s.parse().expect("valid default address")
}

/// NATS settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NatsConfig {
    /// Server URL(s), comma-separated.
    pub url: String,
    /// How long to keep trying the first connection before giving up, in seconds.
    pub connect_timeout_secs: u64,
    /// Replicas of every JetStream stream and KV bucket (3 on a cluster).
    pub replicas: usize,
    /// `up` only: start a local `nats-server` when nothing listens at `url`.
    pub auto_start: bool,
    /// Where that local server keeps its data.
    pub store_dir: PathBuf,
    /// How long our events are kept in their JetStream streams, in seconds
    /// (what `imagestreams events` replays and `history` answers causes
    /// from); applied to existing streams on start.
    pub events_max_age_secs: u64,
    /// The most bytes each event stream keeps, oldest dropped first; 0: no
    /// limit but the age. JetStream reserves this much of the server's
    /// storage for each of the event streams. Applied to existing streams
    /// on start.
    pub events_max_bytes: u64,
}

impl NatsConfig {
    /// The retention of the event streams this configuration asks for.
    pub fn event_retention(&self) -> crate::nats::EventRetention {
        crate::nats::EventRetention {
            max_age: std::time::Duration::from_secs(self.events_max_age_secs),
            max_bytes: self.events_max_bytes,
        }
    }
}

impl Default for NatsConfig {
    fn default() -> Self {
        NatsConfig {
            url: DEFAULT_NATS_URL.to_owned(),
            connect_timeout_secs: DEFAULT_NATS_CONNECT_TIMEOUT_SECS,
            replicas: 1,
            auto_start: true,
            store_dir: PathBuf::from(DEFAULT_NATS_STORE_DIR),
            events_max_age_secs: crate::nats::DEFAULT_EVENT_MAX_AGE.as_secs(),
            events_max_bytes: 0,
        }
    }
}

/// Gateway listeners.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GatewayConfig {
    /// gRPC listen address.
    pub grpc_listen: SocketAddr,
    /// HTTP listen address: REST, `/healthz`, `/readyz`, `/metrics`.
    pub http_listen: SocketAddr,
    /// Serve TLS on both the gRPC and the HTTP port (`[gateway.tls]`);
    /// plaintext when absent.
    pub tls: Option<TlsConfig>,
    /// The Kubernetes-compatible API over HTTPS (`[gateway.kube]`).
    pub kube: KubeApiConfig,
}

/// The Kubernetes-compatible API's HTTPS port (`[gateway.kube]`): the REST
/// API and what kubectl needs around it, over TLS, because kubectl sends no
/// bearer token over plain HTTP.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KubeApiConfig {
    /// Serve it.
    pub enabled: bool,
    /// Listen address.
    pub listen: SocketAddr,
    /// The serving certificate and key; when absent, a local CA and a
    /// serving certificate for loopback are made in `pki_dir` on first
    /// start (files 0600) and reused.
    pub tls: Option<TlsConfig>,
    /// Where the local CA and serving certificate are kept.
    pub pki_dir: PathBuf,
    /// Where `up` writes a kubeconfig for this API (0600): the local CA, the
    /// address listened on, and the first admin's token.
    pub kubeconfig: PathBuf,
    /// Trust kube-apiserver's proxied requests (an aggregated API): see
    /// [`RequestHeaderConfig`]. Off when absent.
    pub request_header: Option<RequestHeaderConfig>,
}

/// kube-apiserver's request-header authentication, as an aggregated API
/// server reads it (`kube-system/extension-apiserver-authentication`): a
/// request whose TLS client certificate verifies against `client_ca_file`
/// (with the client-auth usage) and whose common name is in
/// `allowed_names` (any, when empty) is from the user and groups its
/// headers name. Without such a certificate those headers are ignored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestHeaderConfig {
    /// The CA of kube-apiserver's proxy client certificate (PEM;
    /// `requestheader-client-ca-file`).
    pub client_ca_file: PathBuf,
    /// The common names allowed (`requestheader-allowed-names`); any when empty.
    #[serde(default)]
    pub allowed_names: Vec<String>,
    /// Headers naming the user, the first non-empty one wins
    /// (`requestheader-username-headers`).
    #[serde(default = "default_username_headers")]
    pub username_headers: Vec<String>,
    /// Headers naming the groups, every value of each
    /// (`requestheader-group-headers`).
    #[serde(default = "default_group_headers")]
    pub group_headers: Vec<String>,
}

fn default_username_headers() -> Vec<String> {
    vec!["X-Remote-User".to_owned()]
}

fn default_group_headers() -> Vec<String> {
    vec!["X-Remote-Group".to_owned()]
}

impl Default for KubeApiConfig {
    fn default() -> Self {
        KubeApiConfig {
            enabled: true,
            listen: addr(DEFAULT_KUBE_LISTEN),
            tls: None,
            pki_dir: PathBuf::from(DEFAULT_KUBE_PKI_DIR),
            kubeconfig: PathBuf::from(DEFAULT_KUBECONFIG),
            request_header: None,
        }
    }
}

/// A listener's TLS identity: PEM files, read at start. Only the paths are
/// configured; the key never appears in the configuration or the logs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// The certificate, then its issuers (PEM).
    pub cert_file: PathBuf,
    /// The certificate's private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            grpc_listen: addr(DEFAULT_GRPC_LISTEN),
            http_listen: addr(DEFAULT_HTTP_LISTEN),
            tls: None,
            kube: KubeApiConfig::default(),
        }
    }
}

/// The registry notification endpoint.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegistryWatcherConfig {
    /// Listen address of `POST /notifications` (and of health in `serve registry-watcher`).
    pub listen: SocketAddr,
    /// The bearer token the registry sends; required unless `insecure`.
    pub token: Option<Secret>,
    /// Accept notifications without a token (explicit opt-in).
    pub insecure: bool,
    /// Read each pushed image's metadata (manifest and config) from the integrated registry into the image
    /// catalog, once per digest, after its `ImagePushed` is stored, and announce it with `ImageRecorded`.
    pub read_metadata: bool,
    /// Metadata reads at once per replica; also the most requests in flight to the integrated registry.
    pub metadata_concurrency: usize,
    /// Requests per second to the integrated registry for metadata; `0` turns the limit off.
    pub metadata_reads_per_second: f64,
}

/// Default of [`RegistryWatcherConfig::metadata_concurrency`].
pub const DEFAULT_METADATA_CONCURRENCY: usize = 8;
/// Default of [`RegistryWatcherConfig::metadata_reads_per_second`].
pub const DEFAULT_METADATA_READS_PER_SECOND: f64 = 200.0;

impl Default for RegistryWatcherConfig {
    fn default() -> Self {
        RegistryWatcherConfig {
            listen: addr(DEFAULT_WATCHER_LISTEN),
            token: None,
            insecure: false,
            read_metadata: true,
            metadata_concurrency: DEFAULT_METADATA_CONCURRENCY,
            metadata_reads_per_second: DEFAULT_METADATA_READS_PER_SECOND,
        }
    }
}

/// The integrated registry.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IntegratedRegistryConfig {
    /// Host (and port) clients pull from, e.g. `registry.example.com:5000`.
    pub host: String,
    /// Where the services read the registry, when not at `host` over HTTPS: e.g. `http://registry:5000`
    /// inside compose. A loopback `host` (`127.0.0.1`, `localhost`, `[::1]`) is read over plain HTTP, as
    /// Docker treats it.
    pub url: Option<String>,
    /// A docker `config.json` with the credentials to read the registry with, when it requires them.
    pub docker_config: Option<PathBuf>,
}

impl Default for IntegratedRegistryConfig {
    fn default() -> Self {
        IntegratedRegistryConfig {
            host: DEFAULT_INTEGRATED_REGISTRY_HOST.to_owned(),
            url: None,
            docker_config: None,
        }
    }
}

/// Authentication and authorization (see [`crate::auth`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Require credentials on the API; `false` lets anyone do anything.
    pub enabled: bool,
    /// Identities with a bearer token (`[[auth.tokens]]`).
    pub tokens: Vec<crate::auth::store::TokenConfig>,
    /// Roles granted to users and groups (`[[auth.role_bindings]]`).
    pub role_bindings: Vec<crate::auth::store::RoleBindingConfig>,
    /// The integrated registry's token service (`[auth.registry]`).
    pub registry: RegistryTokenConfig,
    /// Stored identities (by token) and binding lists the gateway keeps in
    /// memory, each; a watch of the `auth` bucket keeps them current. 0
    /// reads the KV on every request.
    pub cache_size: usize,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            enabled: true,
            tokens: Vec::new(),
            role_bindings: Vec::new(),
            registry: RegistryTokenConfig::default(),
            cache_size: crate::auth::cache::DEFAULT_CACHE_SIZE,
        }
    }
}

/// Default `iss` of registry tokens (the registry's `auth.token.issuer`).
pub const DEFAULT_REGISTRY_TOKEN_ISSUER: &str = "imagestreams";
/// Default service the token service issues for (the registry's
/// `auth.token.service`).
pub const DEFAULT_REGISTRY_TOKEN_SERVICE: &str = "imagestreams-registry";
/// Default directory of the token service's key and certificates, where
/// `imagestreams registry-keys generate` writes them.
pub const DEFAULT_REGISTRY_KEYS_DIR: &str = ".imagestreams/registry";
/// Default lifetime of a registry token, in seconds (Docker's token spec:
/// clients assume 60 when less is given).
pub const DEFAULT_REGISTRY_TOKEN_TTL_SECS: u64 = 300;

/// The registry token service on the gateway's HTTP port (`GET /token`,
/// Docker's token authentication spec): ES256 JWTs for the integrated
/// registry, signed with `key_file`, whose certificate chain (`cert_file`)
/// goes in each token's `x5c` header. Only paths are configured; the key is
/// read at start and never logged.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegistryTokenConfig {
    /// Serve `GET /token` and `GET /token/jwks.json`.
    pub enabled: bool,
    /// The tokens' `iss`: the registry's `auth.token.issuer`.
    pub issuer: String,
    /// The only `service` answered, and the tokens' `aud`: the registry's
    /// `auth.token.service`.
    pub service: String,
    /// The signing key: PEM, PKCS#8, EC P-256.
    pub key_file: PathBuf,
    /// The signing key's certificate, then its issuers: PEM.
    pub cert_file: PathBuf,
    /// Lifetime of a token, in seconds (at least 60).
    pub token_ttl_secs: u64,
    /// Namespaces anyone may pull from, anonymous callers included.
    pub public_namespaces: Vec<String>,
}

impl Default for RegistryTokenConfig {
    fn default() -> Self {
        let dir = Path::new(DEFAULT_REGISTRY_KEYS_DIR);
        RegistryTokenConfig {
            enabled: false,
            issuer: DEFAULT_REGISTRY_TOKEN_ISSUER.to_owned(),
            service: DEFAULT_REGISTRY_TOKEN_SERVICE.to_owned(),
            key_file: dir.join("token.key"),
            cert_file: dir.join("token.crt"),
            token_ttl_secs: DEFAULT_REGISTRY_TOKEN_TTL_SECS,
            public_namespaces: Vec::new(),
        }
    }
}

/// The default of `stream_store.history_limit`.
pub const DEFAULT_HISTORY_LIMIT: NonZeroUsize = NonZeroUsize::new(50).unwrap();

/// The stream-store service.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StreamStoreConfig {
    /// Listen address of `/healthz`, `/readyz` and `/metrics` in `serve` mode.
    pub http_listen: SocketAddr,
    /// Items kept in each tag's history, the oldest dropped first (the
    /// current image always stays). At least 1.
    pub history_limit: NonZeroUsize,
}

impl Default for StreamStoreConfig {
    fn default() -> Self {
        StreamStoreConfig {
            http_listen: addr(DEFAULT_STREAM_STORE_HTTP_LISTEN),
            history_limit: DEFAULT_HISTORY_LIMIT,
        }
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Plain,
    /// One JSON object per line.
    Json,
}

/// Logs and traces.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// `plain` or `json`.
    pub log_format: LogFormat,
    /// OTLP endpoint for traces; off when unset.
    pub otlp_endpoint: Option<String>,
}

/// Default period of the trigger service's full resync (index rebuild, outbox
/// re-drive, current-image check), in milliseconds.
pub const DEFAULT_TRIGGER_RESYNC_INTERVAL_MS: u64 = 30_000;
/// Default lease a trigger replica holds on a firing while it performs its
/// side effects, in milliseconds; another replica takes over once it expires.
pub const DEFAULT_TRIGGER_LEASE_MS: u64 = 30_000;
/// Default time one push of a mirror rule may take (the tag-syncer stops
/// copying then and the push is retried), in milliseconds.
pub const DEFAULT_TRIGGER_MIRROR_TIMEOUT_MS: u64 = 300_000;
/// Default number of webhook delivery attempts per firing.
pub const DEFAULT_WEBHOOK_MAX_ATTEMPTS: u32 = 8;
/// Default delay before the second webhook attempt, in milliseconds (doubled per attempt).
pub const DEFAULT_WEBHOOK_INITIAL_BACKOFF_MS: u64 = 1_000;
/// Default upper bound of the webhook retry delay, in milliseconds.
pub const DEFAULT_WEBHOOK_MAX_BACKOFF_MS: u64 = 300_000;
/// Default per-request timeout of a webhook delivery, in milliseconds.
pub const DEFAULT_WEBHOOK_TIMEOUT_MS: u64 = 10_000;
/// Default number of webhook requests in flight at once, per trigger replica.
pub const DEFAULT_WEBHOOK_CONCURRENCY: usize = 256;

/// The trigger service.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TriggerConfig {
    /// Listen address of `/healthz`, `/readyz` and `/metrics` in `serve` mode.
    pub http_listen: SocketAddr,
    /// Period of the full resync, in milliseconds.
    pub resync_interval_ms: u64,
    /// Lease on a firing's side effects, in milliseconds.
    pub lease_ms: u64,
    /// How long one push of a mirror rule may take, in milliseconds; a mirror
    /// firing's lease is this plus `lease_ms`. Attempts and backoff are the
    /// webhooks'.
    pub mirror_timeout_ms: u64,
    /// Outbound webhooks.
    pub webhook: WebhookConfig,
}

impl Default for TriggerConfig {
    fn default() -> Self {
        TriggerConfig {
            http_listen: addr(DEFAULT_TRIGGER_HTTP_LISTEN),
            resync_interval_ms: DEFAULT_TRIGGER_RESYNC_INTERVAL_MS,
            lease_ms: DEFAULT_TRIGGER_LEASE_MS,
            mirror_timeout_ms: DEFAULT_TRIGGER_MIRROR_TIMEOUT_MS,
            webhook: WebhookConfig::default(),
        }
    }
}

/// Outbound webhooks of triggers: retries and the SSRF policy.
///
/// # SSRF policy
///
/// A webhook URL is checked when the trigger is created (for an IP literal) and
/// again at every delivery, against every address its host resolves to (the
/// connection goes only to an address that passed, so DNS rebinding cannot
/// slip through). Redirects are not followed and no proxy is used. Refused:
///
/// - loopback (`127.0.0.0/8`, `::1`) unless `allow_loopback`;
/// - private (`10/8`, `172.16/12`, `192.168/16`, `100.64/10`, `fc00::/7`)
///   unless `allow_private`;
/// - always: link-local (`169.254/16` — cloud metadata — and `fe80::/10`),
///   unspecified, broadcast, multicast and documentation addresses.
///
/// A refused target is a final delivery failure, recorded in the firing's log.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhookConfig {
    /// Allow targets in private ranges.
    pub allow_private: bool,
    /// Allow loopback targets.
    pub allow_loopback: bool,
    /// Attempts per firing before the delivery is given up.
    pub max_attempts: u32,
    /// Delay before the second attempt, in milliseconds; doubled per attempt, with jitter.
    pub initial_backoff_ms: u64,
    /// Upper bound of the retry delay, in milliseconds.
    pub max_backoff_ms: u64,
    /// Per-request timeout, in milliseconds.
    pub timeout_ms: u64,
    /// Requests in flight at once per replica.
    pub concurrency: usize,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        WebhookConfig {
            allow_private: false,
            allow_loopback: false,
            max_attempts: DEFAULT_WEBHOOK_MAX_ATTEMPTS,
            initial_backoff_ms: DEFAULT_WEBHOOK_INITIAL_BACKOFF_MS,
            max_backoff_ms: DEFAULT_WEBHOOK_MAX_BACKOFF_MS,
            timeout_ms: DEFAULT_WEBHOOK_TIMEOUT_MS,
            concurrency: DEFAULT_WEBHOOK_CONCURRENCY,
        }
    }
}

/// Default maximum number of tags one import takes from a repository
/// (OpenShift's `maxImagesBulkImportedPerRepository`).
pub const DEFAULT_MAX_TAGS_PER_IMPORT: usize = 50;
/// Default concurrent requests per registry.
pub const DEFAULT_REGISTRY_CONCURRENCY: usize = 16;
/// Default requests per second per registry (`0` turns the limit off).
pub const DEFAULT_REGISTRY_REQUESTS_PER_SECOND: f64 = 100.0;
/// Default TCP and TLS connect timeout of registry requests, in milliseconds.
pub const DEFAULT_REGISTRY_CONNECT_TIMEOUT_MS: u64 = 5_000;
/// Default timeout of one registry request including its body, in milliseconds.
pub const DEFAULT_REGISTRY_REQUEST_TIMEOUT_MS: u64 = 10_000;
/// Default retries of a registry request after a 429, a 5xx, a timeout or a connection failure.
pub const DEFAULT_REGISTRY_MAX_RETRIES: u32 = 2;
/// Default first retry delay, in milliseconds (doubled per retry, with jitter).
pub const DEFAULT_REGISTRY_BACKOFF_INITIAL_MS: u64 = 200;
/// Default longest `Retry-After` honoured before a request fails as TooManyRequests, in seconds.
pub const DEFAULT_REGISTRY_MAX_RETRY_AFTER_SECS: u64 = 10;
/// Default bound of one whole import (every registry call of it), in milliseconds:
/// below the gateway's 30 s request deadline, so `import-image` answers in time.
pub const DEFAULT_IMPORT_TIMEOUT_MS: u64 = 25_000;
/// Default number of imports the tag-syncer runs at once.
pub const DEFAULT_IMPORT_CONCURRENCY: usize = 8;
/// Default interval of scheduled imports, in seconds (OpenShift's 15 minutes).
pub const DEFAULT_SCHEDULE_INTERVAL_SECS: u64 = 900;
/// Default floor of the scheduled-import interval, in seconds.
pub const DEFAULT_MIN_SCHEDULE_INTERVAL_SECS: u64 = 60;
/// Default cluster-wide limit on scheduled imports per minute (OpenShift's
/// `maxScheduledImageImportsPerMinute`).
pub const DEFAULT_MAX_IMPORTS_PER_MINUTE: u32 = 60;
/// Default period of the tag-syncer's resync (streams whose import is due
/// but was missed), in seconds.
pub const DEFAULT_IMPORT_RESYNC_INTERVAL_SECS: u64 = 300;
/// Where `up` keeps the generated encryption key of registry secrets when none is configured.
pub const DEFAULT_SECRETS_KEY_FILE: &str = ".imagestreams/secrets.key";

/// The tag-syncer: imports from external registries.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TagSyncerConfig {
    /// Listen address of `/healthz`, `/readyz` and `/metrics` in `serve` mode.
    pub http_listen: SocketAddr,
    /// Most tags one import takes from a repository, in OpenShift's order:
    /// `latest`, then versions newest first, then the rest.
    pub max_tags_per_import: usize,
    /// Concurrent requests per registry.
    pub max_concurrency: usize,
    /// Requests per second per registry; `0` turns the limit off.
    pub requests_per_second: f64,
    /// Connect timeout of registry requests, in milliseconds.
    pub connect_timeout_ms: u64,
    /// Timeout of one registry request including its body, in milliseconds.
    pub request_timeout_ms: u64,
    /// Retries of a registry request after a 429, a 5xx, a timeout or a connection failure.
    pub max_retries: u32,
    /// First retry delay, in milliseconds; doubled per retry, with jitter.
    pub backoff_initial_ms: u64,
    /// Longest `Retry-After` honoured, in seconds; a longer one fails the tag as TooManyRequests.
    pub max_retry_after_secs: u64,
    /// Bound of one whole import, in milliseconds; tags not done by then fail with `Timeout`.
    pub import_timeout_ms: u64,
    /// Imports run at once.
    pub import_concurrency: usize,
    /// A docker `config.json` (`auths`) with credentials for every namespace's imports.
    pub docker_config: Option<PathBuf>,
    /// Interval of scheduled imports (`importPolicy.scheduled`), in seconds.
    pub schedule_interval_secs: u64,
    /// Floor of that interval, in seconds.
    pub min_schedule_interval_secs: u64,
    /// Scheduled imports started per minute, across every replica.
    pub max_imports_per_minute: u32,
    /// Period of the resync that catches imports missed (e.g. while stopped), in seconds.
    pub resync_interval_secs: u64,
    /// Listen address of the webhook receivers, `POST /hooks/<id>`: the one
    /// port to expose to hosted registries (the API stays on the gateway's).
    pub hooks_listen: SocketAddr,
    /// The receivers' URL as senders reach it (`https://hooks.example.com`);
    /// empty: `http://<hooks_listen>`.
    pub hooks_url: String,
    /// Largest delivery body accepted; a larger one is answered 413.
    pub hooks_max_body_bytes: usize,
    /// Verified deliveries per second one receiver may send, sustained;
    /// more are answered 429 with `Retry-After` (`0`: no limit).
    pub hooks_rate_per_receiver: f64,
    /// Verified deliveries one receiver may send at once, above the rate.
    pub hooks_burst_per_receiver: u32,
    /// Google's token signing keys (a JWKS file) for `gar` receivers, read
    /// at start; when set, `gar_jwks_url` is not used.
    pub gar_jwks_file: Option<PathBuf>,
    /// Where to fetch Google's token signing keys for `gar` receivers: when
    /// a GAR delivery first needs them, then again when stale or when a
    /// token names a key not yet seen. Empty, with no `gar_jwks_file`: GAR
    /// deliveries are refused.
    pub gar_jwks_url: String,
}

impl Default for TagSyncerConfig {
    fn default() -> Self {
        TagSyncerConfig {
            http_listen: addr(DEFAULT_TAG_SYNCER_HTTP_LISTEN),
            max_tags_per_import: DEFAULT_MAX_TAGS_PER_IMPORT,
            max_concurrency: DEFAULT_REGISTRY_CONCURRENCY,
            requests_per_second: DEFAULT_REGISTRY_REQUESTS_PER_SECOND,
            connect_timeout_ms: DEFAULT_REGISTRY_CONNECT_TIMEOUT_MS,
            request_timeout_ms: DEFAULT_REGISTRY_REQUEST_TIMEOUT_MS,
            max_retries: DEFAULT_REGISTRY_MAX_RETRIES,
            backoff_initial_ms: DEFAULT_REGISTRY_BACKOFF_INITIAL_MS,
            max_retry_after_secs: DEFAULT_REGISTRY_MAX_RETRY_AFTER_SECS,
            import_timeout_ms: DEFAULT_IMPORT_TIMEOUT_MS,
            import_concurrency: DEFAULT_IMPORT_CONCURRENCY,
            docker_config: None,
            schedule_interval_secs: DEFAULT_SCHEDULE_INTERVAL_SECS,
            min_schedule_interval_secs: DEFAULT_MIN_SCHEDULE_INTERVAL_SECS,
            max_imports_per_minute: DEFAULT_MAX_IMPORTS_PER_MINUTE,
            resync_interval_secs: DEFAULT_IMPORT_RESYNC_INTERVAL_SECS,
            hooks_listen: addr(DEFAULT_HOOKS_LISTEN),
            hooks_url: String::new(),
            hooks_max_body_bytes: DEFAULT_HOOKS_MAX_BODY_BYTES,
            hooks_rate_per_receiver: DEFAULT_HOOKS_RATE_PER_RECEIVER,
            hooks_burst_per_receiver: DEFAULT_HOOKS_BURST_PER_RECEIVER,
            gar_jwks_file: None,
            gar_jwks_url: DEFAULT_GAR_JWKS_URL.to_owned(),
        }
    }
}

impl TagSyncerConfig {
    /// The interval of scheduled imports: the configured one, at least the floor.
    pub fn schedule_interval(&self) -> std::time::Duration {
        std::time::Duration::from_secs(
            self.schedule_interval_secs
                .max(self.min_schedule_interval_secs)
                .max(1),
        )
    }
}

/// One `[[registry]]` rule, as containers-registries.conf(5) writes it:
/// names under `prefix` are served from `location` (mirrors first).
///
/// ```toml
/// [[registry]]
/// prefix = "docker.io"
/// location = "127.0.0.1:5000"
/// insecure = true
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryRuleConfig {
    /// `host[:port][/path]`, or `*.domain`; defaults to `location`.
    #[serde(default)]
    pub prefix: Option<String>,
    /// `host[:port][/path]` replacing the prefix; defaults to the prefix.
    #[serde(default)]
    pub location: Option<String>,
    /// Plain HTTP to `location`.
    #[serde(default)]
    pub insecure: bool,
    /// Refuse every name under the prefix.
    #[serde(default)]
    pub blocked: bool,
    /// Mirrors tried, in order, before `location` (manifests only).
    #[serde(default, rename = "mirror")]
    pub mirrors: Vec<RegistryMirrorConfig>,
}

/// One `[[registry.mirror]]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryMirrorConfig {
    /// `host[:port][/path]` replacing the rule's prefix.
    pub location: String,
    /// Plain HTTP to this mirror.
    #[serde(default)]
    pub insecure: bool,
}

/// The key registry secrets are encrypted with at rest (XChaCha20-Poly1305,
/// 32 bytes). `key` wins over `key_file`; with neither, the tag-syncer uses
/// (and on first need creates, mode 0600) [`DEFAULT_SECRETS_KEY_FILE`].
/// Replicas must share one key.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SecretsConfig {
    /// A file holding the key: 32 raw bytes, or their base64 (one line).
    pub key_file: Option<PathBuf>,
    /// The key as base64, typically from `IMAGESTREAMS_SECRETS__KEY`.
    pub key: Option<Secret>,
}

#[cfg(test)]
// figment's `Jail` closures must return `figment::Error`, which is large by design.
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;
    use figment::Jail;

    #[test]
    fn defaults_work_out_of_the_box() {
        Jail::expect_with(|_| {
            let c = Config::load(None).map_err(|e| e.to_string())?;
            assert_eq!(c.nats.url, DEFAULT_NATS_URL);
            assert_eq!(c.gateway.grpc_listen.to_string(), DEFAULT_GRPC_LISTEN);
            assert_eq!(c.gateway.http_listen.to_string(), DEFAULT_HTTP_LISTEN);
            assert_eq!(
                c.registry_watcher.listen.to_string(),
                DEFAULT_WATCHER_LISTEN
            );
            assert!(c.auth.enabled);
            assert!(c.registry_watcher.token.is_none());
            Ok(())
        });
    }

    #[test]
    fn file_then_env_override_defaults() {
        Jail::expect_with(|jail| {
            jail.create_file(
                DEFAULT_CONFIG_FILE,
                r#"
                [nats]
                url = "nats://file:4222"
                [registry_watcher]
                token = "from-file"
                [integrated_registry]
                host = "reg.example:5000"
                "#,
            )?;
            jail.set_env("IMAGESTREAMS_NATS__URL", "nats://env:4222");
            jail.set_env("IMAGESTREAMS_AUTH__ENABLED", "false");
            jail.set_env("IMAGESTREAMS_GATEWAY__GRPC_LISTEN", "0.0.0.0:6000");
            // client-only variables do not disturb the server configuration
            jail.set_env("IMAGESTREAMS_SERVER", "http://x:1");
            let c = Config::load(None).map_err(|e| e.to_string())?;
            assert_eq!(c.nats.url, "nats://env:4222");
            assert!(!c.auth.enabled);
            assert_eq!(c.gateway.grpc_listen.to_string(), "0.0.0.0:6000");
            assert_eq!(c.integrated_registry.host, "reg.example:5000");
            assert_eq!(
                c.registry_watcher.token.as_ref().map(Secret::expose),
                Some("from-file")
            );
            Ok(())
        });
    }

    #[test]
    fn gateway_tls_is_off_by_default_and_needs_both_files() {
        Jail::expect_with(|jail| {
            assert_eq!(
                Config::load(None).map_err(|e| e.to_string())?.gateway.tls,
                None
            );
            jail.create_file(
                "imagestreams.toml",
                "[gateway.tls]\ncert_file = \"tls.crt\"\n",
            )?;
            let err = Config::load(None).unwrap_err().to_string();
            assert!(err.contains("key_file"), "{err}");
            jail.set_env("IMAGESTREAMS_GATEWAY__TLS__KEY_FILE", "tls.key");
            jail.set_env("IMAGESTREAMS_CERTIFICATE_AUTHORITY", "ca.crt");
            let c = Config::load(None).map_err(|e| e.to_string())?;
            assert_eq!(
                c.gateway.tls,
                Some(TlsConfig {
                    cert_file: "tls.crt".into(),
                    key_file: "tls.key".into(),
                })
            );
            Ok(())
        });
    }

    #[test]
    fn explicit_file_is_used_and_must_exist() {
        Jail::expect_with(|jail| {
            jail.create_file(
                "other.toml",
                "[gateway]\nhttp_listen = \"127.0.0.1:9999\"\n",
            )?;
            let c = Config::load(Some(Path::new("other.toml"))).map_err(|e| e.to_string())?;
            assert_eq!(c.gateway.http_listen.to_string(), "127.0.0.1:9999");
            let err = Config::load(Some(Path::new("nope.toml"))).unwrap_err();
            assert!(err.to_string().contains("nope.toml"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn unknown_keys_are_errors_that_name_them() {
        Jail::expect_with(|jail| {
            jail.create_file(DEFAULT_CONFIG_FILE, "[nats]\nurll = \"nats://x\"\n")?;
            let err = Config::load(None).unwrap_err().to_string().to_lowercase();
            assert!(err.contains("urll"), "{err}");
            Ok(())
        });
        Jail::expect_with(|jail| {
            jail.set_env("IMAGESTREAMS_GATEWAYY__GRPC_LISTEN", "127.0.0.1:1");
            let err = Config::load(None).unwrap_err().to_string().to_lowercase();
            assert!(err.contains("gatewayy"), "{err}");
            Ok(())
        });
        Jail::expect_with(|jail| {
            jail.set_env("IMAGESTREAMS_GATEWAY__GRPC_LISTEN", "not-an-address");
            let err = Config::load(None).unwrap_err().to_string().to_lowercase();
            assert!(err.contains("grpc_listen"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn trigger_settings_layer_and_keep_http_listen() {
        Jail::expect_with(|jail| {
            jail.create_file(
                DEFAULT_CONFIG_FILE,
                "[trigger]\nhttp_listen = \"127.0.0.1:9083\"\n[trigger.webhook]\nallow_loopback = true\n",
            )?;
            jail.set_env("IMAGESTREAMS_TRIGGER__WEBHOOK__MAX_ATTEMPTS", "3");
            let c = Config::load(None).map_err(|e| e.to_string())?;
            assert_eq!(c.trigger.http_listen.to_string(), "127.0.0.1:9083");
            assert!(c.trigger.webhook.allow_loopback);
            assert!(!c.trigger.webhook.allow_private);
            assert_eq!(c.trigger.webhook.max_attempts, 3);
            assert_eq!(c.trigger.lease_ms, DEFAULT_TRIGGER_LEASE_MS);
            Ok(())
        });
    }

    #[test]
    fn registry_rules_and_tag_syncer_settings_layer() {
        Jail::expect_with(|jail| {
            jail.create_file(
                DEFAULT_CONFIG_FILE,
                r#"
                [tag_syncer]
                max_tags_per_import = 10
                docker_config = "/etc/imagestreams/config.json"
                schedule_interval_secs = 30
                min_schedule_interval_secs = 120

                [secrets]
                key_file = "/etc/imagestreams/secrets.key"

                [[registry]]
                prefix = "docker.io"
                location = "127.0.0.1:5000"
                insecure = true

                [[registry]]
                prefix = "quay.io"
                blocked = true
                [[registry.mirror]]
                location = "mirror.example.com/quay"
                "#,
            )?;
            jail.set_env("IMAGESTREAMS_TAG_SYNCER__MAX_IMPORTS_PER_MINUTE", "5");
            jail.set_env("IMAGESTREAMS_SECRETS__KEY", "a2V5");
            let c = Config::load(None).map_err(|e| e.to_string())?;
            assert_eq!(c.tag_syncer.max_tags_per_import, 10);
            assert_eq!(c.tag_syncer.max_imports_per_minute, 5);
            assert_eq!(
                c.tag_syncer.http_listen.to_string(),
                DEFAULT_TAG_SYNCER_HTTP_LISTEN
            );
            assert_eq!(
                c.tag_syncer.schedule_interval(),
                std::time::Duration::from_secs(120),
                "the floor wins"
            );
            assert_eq!(c.registries.len(), 2);
            assert_eq!(c.registries[0].location.as_deref(), Some("127.0.0.1:5000"));
            assert!(c.registries[0].insecure);
            assert!(c.registries[1].blocked);
            assert_eq!(
                c.registries[1].mirrors[0].location,
                "mirror.example.com/quay"
            );
            assert_eq!(c.secrets.key.as_ref().map(Secret::expose), Some("a2V5"));
            assert!(!format!("{c:?}").contains("a2V5"));
            Ok(())
        });
        Jail::expect_with(|jail| {
            jail.create_file(DEFAULT_CONFIG_FILE, "[[registry]]\nprefixx = \"x\"\n")?;
            let err = Config::load(None).unwrap_err().to_string().to_lowercase();
            assert!(err.contains("prefixx"), "{err}");
            Ok(())
        });
        let d = Config::default();
        assert_eq!(d.tag_syncer.schedule_interval().as_secs(), 900);
        assert!(d.registries.is_empty());
    }

    #[test]
    fn registry_token_settings_layer() {
        Jail::expect_with(|jail| {
            jail.create_file(
                DEFAULT_CONFIG_FILE,
                "[auth.registry]\nenabled = true\nissuer = \"is\"\npublic_namespaces = [\"library\"]\n",
            )?;
            jail.set_env("IMAGESTREAMS_AUTH__REGISTRY__TOKEN_TTL_SECS", "120");
            let c = Config::load(None).map_err(|e| e.to_string())?;
            let r = &c.auth.registry;
            assert!(r.enabled);
            assert_eq!(r.issuer, "is");
            assert_eq!(r.service, DEFAULT_REGISTRY_TOKEN_SERVICE);
            assert_eq!(r.token_ttl_secs, 120);
            assert_eq!(r.public_namespaces, ["library"]);
            assert_eq!(
                r.key_file,
                Path::new(DEFAULT_REGISTRY_KEYS_DIR).join("token.key")
            );
            Ok(())
        });
        Jail::expect_with(|jail| {
            jail.create_file(DEFAULT_CONFIG_FILE, "[auth.registry]\nkey = \"x\"\n")?;
            let err = Config::load(None).unwrap_err().to_string();
            assert!(err.contains("key"), "{err}");
            Ok(())
        });
        assert!(!Config::default().auth.registry.enabled);
    }

    #[test]
    fn secrets_never_print() {
        let s = Secret::new("hunter2");
        assert!(!format!("{s:?}").contains("hunter2"));
        let mut c = Config::default();
        c.registry_watcher.token = Some(s);
        assert!(!format!("{c:?}").contains("hunter2"));
        assert!(
            !serde_json::to_string(&c)
                .unwrap_or_default()
                .contains("hunter2")
        );
    }
}
