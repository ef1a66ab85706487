//! Reading the integrated registry: where it is (`integrated_registry.host`, or `.url` when the services
//! reach it elsewhere), over which scheme, with which credentials: `integrated_registry.docker_config`, else
//! the registry-watcher's token, which the gateway's token service accepts for `view` everywhere.

use anyhow::Context as _;
use imagestreams_common::config::Config;
use imagestreams_common::reference::Reference;
use reqwest::Url;

use crate::{
    Credential, Keyring, RegistryClient, RegistryError, RegistryRule, RegistryRules, Repository,
};

/// The Basic user name sent with the registry-watcher's token (informational: the token decides; an
/// identity name like `system:registry-watcher` cannot be one, as Basic splits at the first `:`).
const BASIC_USER: &str = "registry-watcher";

/// A client for the integrated registry's repositories.
#[derive(Debug, Clone)]
pub struct IntegratedRegistry {
    client: RegistryClient,
    keyring: Keyring,
    host: String,
    insecure: bool,
}

impl IntegratedRegistry {
    /// The integrated registry of `config`, read with the registry client's limits and rules.
    pub fn from_config(config: &Config) -> anyhow::Result<Self> {
        let settings = &config.integrated_registry;
        let host = settings.host.clone();
        let mut rules = crate::rules(config)?.rules().to_vec();
        let mut location_host = host.clone();
        let insecure = match &settings.url {
            Some(url) => {
                let url = Url::parse(url)
                    .with_context(|| format!("integrated_registry.url {url:?} is not a URL"))?;
                let insecure = match url.scheme() {
                    "http" => true,
                    "https" => false,
                    other => anyhow::bail!(
                        "integrated_registry.url: the scheme must be http or https, not {other}"
                    ),
                };
                let location = match (url.host_str(), url.port()) {
                    (Some(h), Some(p)) => format!("{h}:{p}"),
                    (Some(h), None) => h.to_owned(),
                    (None, _) => anyhow::bail!("integrated_registry.url has no host"),
                };
                location_host = location.clone();
                if location != host && !rules.iter().any(|r| r.prefix.as_deref() == Some(&host)) {
                    rules.push(RegistryRule {
                        prefix: Some(host.clone()),
                        location: Some(location),
                        insecure,
                        blocked: false,
                        mirrors: Vec::new(),
                    });
                }
                insecure
            }
            None => is_loopback(&host),
        };
        // Our own registry: the metadata recorder's limits, not the per-registry ones meant for external
        // registries (whose Retry-After, backoff and timeouts still apply).
        let watcher = &config.registry_watcher;
        let limits = crate::Limits {
            max_concurrency: watcher.metadata_concurrency.max(1),
            requests_per_second: watcher.metadata_reads_per_second,
            ..crate::limits(config)
        };
        let client = RegistryClient::new(limits, RegistryRules::new(rules)?)
            .context("building the integrated registry's client")?;
        let keyring = match (&settings.docker_config, &config.registry_watcher.token) {
            (Some(path), _) => Keyring::from_docker_config_file(path)?,
            // the token service knows the watcher's token (view in every namespace)
            (None, Some(token)) if !token.expose().is_empty() => {
                let mut keyring = Keyring::new();
                for server in [&host, &location_host] {
                    keyring.insert(server, Credential::basic(BASIC_USER, token.expose()))?;
                }
                keyring
            }
            (None, _) => Keyring::new(),
        };
        Ok(IntegratedRegistry {
            client,
            keyring,
            host,
            insecure,
        })
    }

    /// The client.
    pub fn client(&self) -> &RegistryClient {
        &self.client
    }

    /// The repository `<ns>/<name>` of the integrated registry.
    pub fn repository(&self, path: &str) -> Result<Repository, RegistryError> {
        let name = format!("{}/{path}", self.host);
        let reference =
            Reference::parse_normalized(&name).map_err(|e| RegistryError::InvalidReference {
                input: name.clone(),
                detail: e.to_string(),
            })?;
        self.client
            .repository(&reference, &self.keyring, self.insecure)
    }
}

/// Whether `host[:port]` names this machine (Docker reads such registries over plain HTTP).
fn is_loopback(host: &str) -> bool {
    let name = match host.rsplit_once(':') {
        Some((name, port)) if port.chars().all(|c| c.is_ascii_digit()) => name,
        _ => host,
    };
    let name = name.trim_start_matches('[').trim_end_matches(']');
    name == "localhost"
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts_are_plain_http() {
        for host in [
            "127.0.0.1:5000",
            "localhost:5000",
            "localhost",
            "[::1]:5000",
        ] {
            assert!(is_loopback(host), "{host}");
        }
        for host in ["registry:5000", "10.0.0.1:5000", "registry.example.com"] {
            assert!(!is_loopback(host), "{host}");
        }
    }

    fn config(toml: &str) -> Config {
        use figment::providers::Format as _;
        figment::Figment::from(figment::providers::Toml::string(toml))
            .extract()
            .unwrap()
    }

    #[test]
    fn the_url_says_where_and_how_the_registry_is_read() {
        let c = config(
            "[integrated_registry]\nhost = \"registry.example.com\"\nurl = \"http://registry:5000\"\n",
        );
        let r = IntegratedRegistry::from_config(&c).unwrap();
        let repo = r.repository("ns1/app").unwrap();
        assert_eq!(repo.primary().url(), "http://registry:5000/v2/ns1/app");
        let r = IntegratedRegistry::from_config(&config("")).unwrap();
        assert_eq!(
            r.repository("ns1/app").unwrap().primary().url(),
            "http://127.0.0.1:5000/v2/ns1/app"
        );
        let c = config("[integrated_registry]\nhost = \"registry.example.com\"\n");
        let r = IntegratedRegistry::from_config(&c).unwrap();
        assert_eq!(
            r.repository("ns1/app").unwrap().primary().url(),
            "https://registry.example.com/v2/ns1/app"
        );
        let c = config("[integrated_registry]\nurl = \"ftp://x\"\n");
        assert!(IntegratedRegistry::from_config(&c).is_err());
    }
}
