//! A real `docker-registry` (CNCF distribution 2.8) on a free port with filesystem storage, optional
//! notifications and optional htpasswd or token auth.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::json;

use imagestreams_common::config::RegistryTokenConfig;
use imagestreams_gateway::registry_token::{TOKEN_PATH, keys};

use crate::binaries;
use crate::process::{DEFAULT_LOG_TAIL_LINES, LoggedChild, log_tail};
use crate::util::{TestDir, free_port};

/// Notification endpoint failures before the registry backs off.
pub const DEFAULT_NOTIFY_THRESHOLD: u32 = 3;

/// How long the registry backs off after [`DEFAULT_NOTIFY_THRESHOLD`] failures.
pub const DEFAULT_NOTIFY_BACKOFF: Duration = Duration::from_millis(200);

/// HTTP timeout of one notification request.
pub const DEFAULT_NOTIFY_TIMEOUT: Duration = Duration::from_secs(1);

/// Target media types the registry does not notify about: blob (layer and config) events.
pub const DEFAULT_IGNORED_MEDIA_TYPES: &[&str] = &["application/octet-stream"];

/// How long to wait for `GET /v2/` to answer after spawning.
pub const DEFAULT_START_TIMEOUT: Duration = Duration::from_secs(15);

/// How many ports to try when the one picked was taken before the registry bound it.
pub const DEFAULT_PORT_ATTEMPTS: usize = 5;

/// The manifest media types a HEAD or GET accepts: OCI index, OCI manifest, Docker manifest list, Docker schema 2.
pub const MANIFEST_ACCEPT: &[&str] = &[
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
];

/// The htpasswd realm.
pub const HTPASSWD_REALM: &str = "imagestreams-test";

/// How a [`Registry`] is configured. `RegistryOptions::default()` is an anonymous registry without notifications.
#[derive(Clone, Debug)]
pub struct RegistryOptions {
    /// Where to POST notification envelopes; no notifications when `None`.
    pub notify_url: Option<String>,
    /// More endpoints notified like `notify_url` (same token and settings), each with a queue of its own.
    pub also_notify: Vec<String>,
    /// Sent as `Authorization: Bearer <token>` with each notification.
    pub notify_token: Option<String>,
    /// Sets `notifications.events.includereferences` (manifest events list the blobs they reference).
    pub include_references: bool,
    /// Requires basic auth with this (user, password), stored in a bcrypt htpasswd file.
    pub htpasswd: Option<(String, String)>,
    /// Requires bearer tokens from this token service (`auth.token`); exclusive with `htpasswd`.
    pub token_auth: Option<TokenAuth>,
    /// Endpoint `threshold`.
    pub notify_threshold: u32,
    /// Endpoint `backoff`.
    pub notify_backoff: Duration,
    /// Endpoint `timeout`.
    pub notify_timeout: Duration,
    /// Endpoint `ignoredmediatypes`.
    pub ignored_media_types: Vec<String>,
    /// Endpoint `ignore.actions`, e.g. `pull`: distribution 2.8 sends a `pull` event for every manifest GET
    /// *and HEAD*, including [`Registry::manifest_digest`]'s.
    pub ignored_actions: Vec<String>,
}

impl Default for RegistryOptions {
    fn default() -> Self {
        Self {
            notify_url: None,
            also_notify: Vec::new(),
            notify_token: None,
            include_references: false,
            htpasswd: None,
            token_auth: None,
            notify_threshold: DEFAULT_NOTIFY_THRESHOLD,
            notify_backoff: DEFAULT_NOTIFY_BACKOFF,
            notify_timeout: DEFAULT_NOTIFY_TIMEOUT,
            ignored_media_types: DEFAULT_IGNORED_MEDIA_TYPES
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
            ignored_actions: Vec::new(),
        }
    }
}

impl RegistryOptions {
    /// Options for a registry that notifies `url`, sending `token` as a bearer token when given.
    pub fn notifying(url: impl Into<String>, token: Option<&str>) -> Self {
        Self {
            notify_url: Some(url.into()),
            notify_token: token.map(str::to_owned),
            ..Self::default()
        }
    }
}

/// The registry's `auth.token` section: clients get their tokens at `realm`, the registry checks them against
/// `rootcertbundle`, `issuer` and `service`.
#[derive(Clone, Debug)]
pub struct TokenAuth {
    /// The token endpoint, e.g. `http://127.0.0.1:8080/token`.
    pub realm: String,
    /// The service tokens are issued for (their `aud`).
    pub service: String,
    /// The tokens' `iss`.
    pub issuer: String,
    /// The root certificates the tokens' `x5c` chains must lead to.
    pub rootcertbundle: PathBuf,
}

/// A token service's key and certificates in a temporary directory, made as `imagestreams registry-keys
/// generate` makes them.
#[derive(Debug)]
pub struct TokenKeys {
    files: keys::KeyFiles,
    dir: TestDir,
}

impl TokenKeys {
    /// Generates a fresh key pair and its certificates.
    pub fn generate() -> anyhow::Result<Self> {
        let dir = TestDir::new("token-keys")?;
        let generated = keys::generate(keys::DEFAULT_VALIDITY_DAYS)?;
        let files = keys::write(dir.path(), &generated, false)?;
        Ok(Self { files, dir })
    }

    /// Turns the token service on in `config` with these keys.
    pub fn configure(&self, config: &mut RegistryTokenConfig) {
        config.enabled = true;
        config.key_file = self.files.key.clone();
        config.cert_file = self.files.cert.clone();
    }

    /// The registry side of `config`'s token service, served by the gateway at `gateway_http_url`.
    pub fn registry_auth(&self, config: &RegistryTokenConfig, gateway_http_url: &str) -> TokenAuth {
        TokenAuth {
            realm: format!("{gateway_http_url}{TOKEN_PATH}"),
            service: config.service.clone(),
            issuer: config.issuer.clone(),
            rootcertbundle: self.files.root_cert_bundle.clone(),
        }
    }

    /// The directory holding the files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

/// A running `docker-registry serve`, killed on drop.
#[derive(Debug)]
pub struct Registry {
    port: u16,
    child: LoggedChild,
    log_path: PathBuf,
    config_path: PathBuf,
    storage_dir: PathBuf,
    credentials: Option<(String, String)>,
    http: reqwest::Client,
    // Dropped last: the child must be killed before its directory goes.
    dir: TestDir,
}

impl Registry {
    /// Writes a config, spawns `docker-registry serve` on a free 127.0.0.1 port and waits until `GET /v2/`
    /// answers 200 or 401. Retries with another port when the picked one was taken meanwhile.
    ///
    /// # Panics
    ///
    /// Panics with an install hint when `docker-registry` is not on `PATH`.
    pub async fn start(opts: RegistryOptions) -> anyhow::Result<Self> {
        let binary = binaries::docker_registry();
        anyhow::ensure!(
            opts.htpasswd.is_none() || opts.token_auth.is_none(),
            "a registry has one auth method: htpasswd or token, not both"
        );
        let dir = TestDir::new("registry")?;
        let storage_dir = dir.join("storage");
        std::fs::create_dir_all(&storage_dir).context("creating the registry storage dir")?;
        let htpasswd_path = match &opts.htpasswd {
            Some((user, password)) => {
                let path = dir.join("htpasswd");
                std::fs::write(&path, htpasswd_line(user, password)?)
                    .context("writing htpasswd")?;
                Some(path)
            }
            None => None,
        };
        let log_path = dir.join("registry.log");
        let config_path = dir.join("config.yml");
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .context("building an HTTP client")?;

        let mut last_err = None;
        for _ in 0..DEFAULT_PORT_ATTEMPTS {
            let port = free_port()?;
            let config = render_config(&opts, port, &storage_dir, htpasswd_path.as_deref());
            // YAML is a superset of JSON, so the registry reads this as its YAML config.
            std::fs::write(&config_path, serde_json::to_string_pretty(&config)?)
                .context("writing the registry config")?;
            let mut cmd = Command::new(&binary);
            cmd.arg("serve").arg(&config_path);
            let mut child = LoggedChild::spawn("docker-registry", cmd, &log_path)?;
            match wait_ready(&http, port, &mut child, &log_path).await {
                Ok(()) => {
                    return Ok(Self {
                        port,
                        child,
                        log_path,
                        config_path,
                        storage_dir,
                        credentials: opts.htpasswd.clone(),
                        http,
                        dir,
                    });
                }
                Err(Startup::PortTaken) => {
                    last_err = Some(anyhow::anyhow!("port {port} was taken"));
                }
                Err(Startup::Failed(why)) => {
                    anyhow::bail!(
                        "docker-registry {why}; config {}, log {}:\n{}",
                        config_path.display(),
                        log_path.display(),
                        log_tail(&log_path, DEFAULT_LOG_TAIL_LINES)
                    );
                }
            }
        }
        Err(last_err.unwrap_or_else(|| anyhow::anyhow!("no port attempts")))
            .context("docker-registry could not bind a free port")
    }

    /// `127.0.0.1:PORT`, the registry host as used in image references.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.host())
    }

    /// The port the registry listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The registry's log file (stdout and stderr).
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The config file the registry was started with.
    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// The filesystem storage root.
    pub fn storage_dir(&self) -> &Path {
        &self.storage_dir
    }

    /// The (user, password) the registry requires, if it was started with htpasswd.
    pub fn credentials(&self) -> Option<(&str, &str)> {
        self.credentials
            .as_ref()
            .map(|(u, p)| (u.as_str(), p.as_str()))
    }

    /// `127.0.0.1:PORT/<repo_tag>`, e.g. `image_ref("ns1/app:1")`.
    pub fn image_ref(&self, repo_tag: &str) -> String {
        format!("{}/{repo_tag}", self.host())
    }

    /// Whether the registry process is running.
    pub fn is_running(&mut self) -> bool {
        self.child.exited().is_none()
    }

    /// The digest of `repo:tag` (or `repo@digest`) from a manifest HEAD's `Docker-Content-Digest`, accepting
    /// every [`MANIFEST_ACCEPT`] type and sending the registry's credentials if any.
    pub async fn manifest_digest(&self, repo: &str, reference: &str) -> anyhow::Result<String> {
        let url = format!("{}/v2/{repo}/manifests/{reference}", self.url());
        let mut req = self
            .http
            .head(&url)
            .header(reqwest::header::ACCEPT, MANIFEST_ACCEPT.join(", "));
        if let Some((user, password)) = self.credentials() {
            req = req.basic_auth(user, Some(password));
        }
        let resp = req.send().await.with_context(|| format!("HEAD {url}"))?;
        anyhow::ensure!(resp.status().is_success(), "HEAD {url}: {}", resp.status());
        let digest = resp
            .headers()
            .get("docker-content-digest")
            .with_context(|| format!("HEAD {url}: no Docker-Content-Digest"))?;
        Ok(digest.to_str().context("Docker-Content-Digest")?.to_owned())
    }

    /// The temporary directory holding the config, storage and log.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

enum Startup {
    PortTaken,
    Failed(String),
}

async fn wait_ready(
    http: &reqwest::Client,
    port: u16,
    child: &mut LoggedChild,
    log_path: &Path,
) -> Result<(), Startup> {
    let url = format!("http://127.0.0.1:{port}/v2/");
    let deadline = Instant::now() + DEFAULT_START_TIMEOUT;
    loop {
        if let Some(status) = child.exited() {
            let log = std::fs::read_to_string(log_path).unwrap_or_default();
            // The log is appended across attempts: only the last line tells why this one exited.
            let last = log.lines().last().unwrap_or_default();
            if last.contains("address already in use") {
                return Err(Startup::PortTaken);
            }
            return Err(Startup::Failed(format!("exited with {status}")));
        }
        if let Ok(resp) = http
            .get(&url)
            .timeout(Duration::from_millis(500))
            .send()
            .await
        {
            let code = resp.status().as_u16();
            if code == 200 || code == 401 {
                return Ok(());
            }
        }
        if Instant::now() >= deadline {
            return Err(Startup::Failed(format!(
                "did not answer GET {url} within {DEFAULT_START_TIMEOUT:?}"
            )));
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// One `user:bcrypt-hash` htpasswd line, hashed with the lowest bcrypt cost to keep tests fast.
fn htpasswd_line(user: &str, password: &str) -> anyhow::Result<String> {
    let hash = bcrypt::hash_with_result(password, 4)
        .context("bcrypt hashing")?
        .format_for_version(bcrypt::Version::TwoY);
    Ok(format!("{user}:{hash}\n"))
}

/// The distribution 2.8 configuration for `opts` on `port`.
fn render_config(
    opts: &RegistryOptions,
    port: u16,
    storage_dir: &Path,
    htpasswd: Option<&Path>,
) -> serde_json::Value {
    let mut config = json!({
        "version": "0.1",
        "log": { "level": "info", "formatter": "text", "fields": { "service": "registry" } },
        "storage": {
            "filesystem": { "rootdirectory": storage_dir },
            "delete": { "enabled": true },
            "maintenance": { "uploadpurging": { "enabled": false } },
        },
        "http": {
            "addr": format!("127.0.0.1:{port}"),
            "secret": uuid::Uuid::new_v4().to_string(),
        },
    });
    if let Some(path) = htpasswd {
        config["auth"] = json!({ "htpasswd": { "realm": HTPASSWD_REALM, "path": path } });
    }
    if let Some(token) = &opts.token_auth {
        config["auth"] = json!({ "token": {
            "realm": token.realm,
            "service": token.service,
            "issuer": token.issuer,
            "rootcertbundle": token.rootcertbundle,
        } });
    }
    if let Some(url) = &opts.notify_url {
        let mut endpoint = json!({
            "name": "imagestreams-test",
            "url": url,
            "timeout": go_duration(opts.notify_timeout),
            "threshold": opts.notify_threshold,
            "backoff": go_duration(opts.notify_backoff),
            "ignoredmediatypes": opts.ignored_media_types,
        });
        if !opts.ignored_actions.is_empty() {
            endpoint["ignore"] = json!({ "actions": opts.ignored_actions });
        }
        if let Some(token) = &opts.notify_token {
            endpoint["headers"] = json!({ "Authorization": [format!("Bearer {token}")] });
        }
        let mut endpoints = vec![endpoint.clone()];
        for (n, url) in opts.also_notify.iter().enumerate() {
            let mut more = endpoint.clone();
            more["name"] = json!(format!("imagestreams-test-{}", n + 2));
            more["url"] = json!(url);
            endpoints.push(more);
        }
        config["notifications"] = json!({
            "events": { "includereferences": opts.include_references },
            "endpoints": endpoints,
        });
    }
    config
}

/// A Go duration string (`"200ms"`).
fn go_duration(d: Duration) -> String {
    format!("{}ms", d.as_millis())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_has_the_notification_keys() {
        let opts = RegistryOptions {
            include_references: true,
            ..RegistryOptions::notifying("http://127.0.0.1:1/events", Some("tok"))
        };
        let config = render_config(&opts, 5000, Path::new("/tmp/s"), None);
        let endpoint = &config["notifications"]["endpoints"][0];
        assert_eq!(endpoint["headers"]["Authorization"][0], "Bearer tok");
        assert_eq!(endpoint["threshold"], 3);
        assert_eq!(endpoint["backoff"], "200ms");
        assert_eq!(endpoint["timeout"], "1000ms");
        assert_eq!(endpoint["ignoredmediatypes"][0], "application/octet-stream");
        assert_eq!(config["notifications"]["events"]["includereferences"], true);
        assert_eq!(config["storage"]["delete"]["enabled"], true);
        assert_eq!(config["http"]["addr"], "127.0.0.1:5000");
        assert!(config.get("auth").is_none());
        assert!(endpoint.get("ignore").is_none());
    }

    #[test]
    fn token_auth_renders_the_auth_token_section() {
        let opts = RegistryOptions {
            token_auth: Some(TokenAuth {
                realm: "http://127.0.0.1:1/token".into(),
                service: "svc".into(),
                issuer: "iss".into(),
                rootcertbundle: PathBuf::from("/tmp/root.pem"),
            }),
            ..RegistryOptions::default()
        };
        let config = render_config(&opts, 5000, Path::new("/tmp/s"), None);
        let token = &config["auth"]["token"];
        assert_eq!(token["realm"], "http://127.0.0.1:1/token");
        assert_eq!(token["service"], "svc");
        assert_eq!(token["issuer"], "iss");
        assert_eq!(token["rootcertbundle"], "/tmp/root.pem");
    }

    #[test]
    fn htpasswd_uses_bcrypt_2y() {
        let line = htpasswd_line("u", "p").unwrap();
        let (user, hash) = line.trim_end().split_once(':').unwrap();
        assert_eq!(user, "u");
        assert!(hash.starts_with("$2y$04$"), "{hash}");
        assert!(bcrypt::verify("p", hash).unwrap());
    }
}
