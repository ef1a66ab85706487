//! Configuration: built-in defaults, then `imagestreams.toml` (or `--config FILE`),
//! then `IMAGESTREAMS_`-prefixed environment variables with `__` for nesting
//! (`IMAGESTREAMS_NATS__URL=nats://…` sets `nats.url`). An unknown key is an
//! error that names it.

use std::{
    fmt,
    net::SocketAddr,
    path::{Path, PathBuf},
};

use figment::{
    Figment,
    providers::{Env, Format, Serialized, Toml},
};
use serde::{Deserialize, Serialize};

/// The configuration file read when `--config` is not given (if it exists).
pub const DEFAULT_CONFIG_FILE: &str = "imagestreams.toml";
/// Prefix of the environment variables that override the configuration.
pub const ENV_PREFIX: &str = "IMAGESTREAMS_";
/// Environment variables with [`ENV_PREFIX`] that belong to the client, not to
/// the configuration (lower-cased, without the prefix).
pub const CLIENT_ENV_KEYS: &[&str] = &["server", "namespace", "config", "token"];

/// Default NATS URL.
pub const DEFAULT_NATS_URL: &str = "nats://127.0.0.1:4222";
/// Default gRPC listen address of the gateway.
pub const DEFAULT_GRPC_LISTEN: &str = "127.0.0.1:50051";
/// Default HTTP listen address of the gateway (REST, health, metrics).
pub const DEFAULT_HTTP_LISTEN: &str = "127.0.0.1:8080";
/// Default HTTP listen address of the stream-store in microservices mode.
pub const DEFAULT_STREAM_STORE_HTTP_LISTEN: &str = "127.0.0.1:8081";
/// Default HTTP listen address of the tag-syncer in microservices mode.
pub const DEFAULT_TAG_SYNCER_HTTP_LISTEN: &str = "127.0.0.1:8082";
/// Default HTTP listen address of the trigger service in microservices mode.
pub const DEFAULT_TRIGGER_HTTP_LISTEN: &str = "127.0.0.1:8083";
/// Default listen address of the registry notification endpoint.
pub const DEFAULT_WATCHER_LISTEN: &str = "127.0.0.1:8085";
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

/// A secret string: never printed by `Debug` or `Display`, never serialized back.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret value, for the one place that must use it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // Serialized only as the defaults layer; a real value never leaves the process.
        s.serialize_str(if self.0.is_empty() { "" } else { "<redacted>" })
    }
}

/// The whole configuration of one process.
#[derive(Debug, Clone, Serialize, Deserialize)]
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
    /// The stream-store service.
    pub stream_store: ServiceHttpConfig,
    /// The tag-syncer service.
    pub tag_syncer: ServiceHttpConfig,
    /// The trigger service.
    pub trigger: ServiceHttpConfig,
    /// Logs and traces.
    pub telemetry: TelemetryConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            nats: NatsConfig::default(),
            gateway: GatewayConfig::default(),
            registry_watcher: RegistryWatcherConfig::default(),
            integrated_registry: IntegratedRegistryConfig::default(),
            auth: AuthConfig::default(),
            stream_store: ServiceHttpConfig::listening(DEFAULT_STREAM_STORE_HTTP_LISTEN),
            tag_syncer: ServiceHttpConfig::listening(DEFAULT_TAG_SYNCER_HTTP_LISTEN),
            trigger: ServiceHttpConfig::listening(DEFAULT_TRIGGER_HTTP_LISTEN),
            telemetry: TelemetryConfig::default(),
        }
    }
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
        c.registry_watcher.listen = any;
        c.stream_store.http_listen = any;
        c.tag_syncer.http_listen = any;
        c.trigger.http_listen = any;
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
}

impl Default for NatsConfig {
    fn default() -> Self {
        NatsConfig {
            url: DEFAULT_NATS_URL.to_owned(),
            connect_timeout_secs: DEFAULT_NATS_CONNECT_TIMEOUT_SECS,
            replicas: 1,
            auto_start: true,
            store_dir: PathBuf::from(DEFAULT_NATS_STORE_DIR),
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
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            grpc_listen: addr(DEFAULT_GRPC_LISTEN),
            http_listen: addr(DEFAULT_HTTP_LISTEN),
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
}

impl Default for RegistryWatcherConfig {
    fn default() -> Self {
        RegistryWatcherConfig {
            listen: addr(DEFAULT_WATCHER_LISTEN),
            token: None,
            insecure: false,
        }
    }
}

/// The integrated registry.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IntegratedRegistryConfig {
    /// Host (and port) clients pull from, e.g. `registry.example.com:5000`.
    pub host: String,
}

impl Default for IntegratedRegistryConfig {
    fn default() -> Self {
        IntegratedRegistryConfig {
            host: DEFAULT_INTEGRATED_REGISTRY_HOST.to_owned(),
        }
    }
}

/// Authentication.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Require credentials on the API.
    pub enabled: bool,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig { enabled: true }
    }
}

/// The HTTP port of a service without a public API of its own (health, metrics).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceHttpConfig {
    /// Listen address of `/healthz`, `/readyz` and `/metrics` in `serve` mode.
    pub http_listen: SocketAddr,
}

impl ServiceHttpConfig {
    fn listening(default: &str) -> Self {
        ServiceHttpConfig {
            http_listen: addr(default),
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
