//! Registry rules in the style of containers-registries.conf(5): `[[registry]]` entries with `prefix`,
//! `location`, `insecure`, `blocked` and `[[registry.mirror]]`, and the resolution of an image reference to the
//! endpoints (mirrors first, then the primary location) that serve it.
//!
//! ```toml
//! [[registry]]
//! prefix = "docker.io"
//! location = "127.0.0.1:5000"
//! insecure = true
//! ```
//!
//! makes `openshift/ruby-20-centos7` (`docker.io/openshift/ruby-20-centos7`) resolve to
//! `http://127.0.0.1:5000/v2/openshift/ruby-20-centos7`.
//!
//! Matching follows registries.conf: a prefix matches a name equal to it or continuing with `/`, a
//! `*.example.com` prefix matches every subdomain of `example.com`, and the longest matching prefix wins.
//! `insecure = true` means plain HTTP here (registries.conf also allows unverified TLS; we do not).

use std::path::PathBuf;

use imagestreams_common::reference::{DEFAULT_DOMAIN, Reference};
use reqwest::Url;
use serde::{Deserialize, Serialize};

use crate::error::RegistryError;
use crate::limits::Limits;
use crate::{CredentialsError, Keyring};

/// The host that serves Docker Hub's registry API for `docker.io`.
pub const DOCKER_HUB_API_HOST: &str = "registry-1.docker.io";

/// The registry section of the application configuration: limits, the docker `config.json` to read
/// credentials from, and the rules.
///
/// ```toml
/// auth_file = "/etc/imagestreams/config.json"
/// [limits]
/// max_concurrency = 16
/// [[registry]]
/// prefix = "docker.io"
/// location = "127.0.0.1:5000"
/// insecure = true
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegistriesConfig {
    /// A docker `config.json` holding credentials (`auths`); none when unset.
    pub auth_file: Option<PathBuf>,
    /// Limits on talking to registries.
    pub limits: Limits,
    /// The `[[registry]]` rules.
    #[serde(rename = "registry")]
    pub rules: Vec<RegistryRule>,
}

impl RegistriesConfig {
    /// The credentials of [`RegistriesConfig::auth_file`]; empty when it is unset.
    pub fn keyring(&self) -> Result<Keyring, CredentialsError> {
        match &self.auth_file {
            Some(path) => Keyring::from_docker_config_file(path),
            None => Ok(Keyring::new()),
        }
    }

    /// The validated rules.
    pub fn registry_rules(&self) -> Result<RegistryRules, RulesError> {
        RegistryRules::new(self.rules.clone())
    }
}

/// One `[[registry]]` entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryRule {
    /// Which names the rule applies to: `host[:port][/path]`, or `*.domain`. Defaults to `location`.
    #[serde(default)]
    pub prefix: Option<String>,
    /// Where those names are served: `host[:port][/path]` replacing the prefix. Defaults to the prefix itself.
    #[serde(default)]
    pub location: Option<String>,
    /// Talk plain HTTP to `location`.
    #[serde(default)]
    pub insecure: bool,
    /// Refuse every name under the prefix.
    #[serde(default)]
    pub blocked: bool,
    /// Mirrors tried, in order, before `location`, for manifests (not for tag lists).
    #[serde(default, rename = "mirror")]
    pub mirrors: Vec<Mirror>,
}

/// One `[[registry.mirror]]` entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mirror {
    /// `host[:port][/path]` replacing the rule's prefix.
    pub location: String,
    /// Talk plain HTTP to this mirror.
    #[serde(default)]
    pub insecure: bool,
}

/// Why a rule is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RulesError {
    /// Neither `prefix` nor `location` is set.
    #[error("registry rule {index}: needs a prefix or a location")]
    Empty {
        /// The rule's position, from 0.
        index: usize,
    },
    /// A prefix, location or mirror location is not `host[:port][/path]` (or `*.domain` for a prefix).
    #[error("registry rule {index}: invalid {field} {value:?}: {why}")]
    Invalid {
        /// The rule's position, from 0.
        index: usize,
        /// `prefix`, `location` or `mirror.location`.
        field: &'static str,
        /// The value.
        value: String,
        /// What is wrong.
        why: &'static str,
    },
    /// Two rules have the same prefix.
    #[error("registry rules {first} and {second} have the same prefix {prefix:?}")]
    Duplicate {
        /// The first rule's position.
        first: usize,
        /// The second rule's position.
        second: usize,
        /// The prefix.
        prefix: String,
    },
}

/// One place that serves a repository: a mirror or the primary location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `host[:port]/path` as written in the rules: what credentials are looked up by (`docker.io/library/x`).
    pub location: String,
    /// `scheme://host[:port]/` the requests go to (`https://registry-1.docker.io/` for `docker.io`).
    pub origin: Url,
    /// The repository path on that host (`library/ubuntu`).
    pub repository: String,
    /// Plain HTTP.
    pub insecure: bool,
    /// A mirror rather than the primary location.
    pub mirror: bool,
}

impl Endpoint {
    /// `scheme://host[:port]/v2/<repository>`.
    pub fn url(&self) -> String {
        format!("{}v2/{}", self.origin, self.repository)
    }

    /// `host[:port]` of the origin, as errors name it.
    pub fn registry(&self) -> String {
        origin_label(&self.origin)
    }
}

/// Where a reference is served: mirrors in order, then the primary location last.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedRepository {
    /// The reference as given, without tag or digest.
    pub name: Reference,
    /// Mirrors, then the primary location.
    pub endpoints: Vec<Endpoint>,
}

impl ResolvedRepository {
    /// The primary location (always the last endpoint).
    pub fn primary(&self) -> &Endpoint {
        // can't fail: resolution always pushes the primary location
        self.endpoints.last().expect("a primary endpoint")
    }
}

/// Validated registry rules.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegistryRules {
    rules: Vec<RegistryRule>,
}

impl RegistryRules {
    /// Validates `rules`: every rule has a prefix or a location, each is `host[:port][/path]` without a scheme,
    /// a wildcard prefix (`*.example.com`) has no location of its own, and no prefix appears twice.
    pub fn new(rules: Vec<RegistryRule>) -> Result<Self, RulesError> {
        for (index, rule) in rules.iter().enumerate() {
            let prefix = match (&rule.prefix, &rule.location) {
                (None, None) => return Err(RulesError::Empty { index }),
                (Some(p), _) | (None, Some(p)) => p,
            };
            if let Some(domain) = prefix.strip_prefix("*.") {
                check_location(domain).map_err(|why| RulesError::Invalid {
                    index,
                    field: "prefix",
                    value: prefix.clone(),
                    why,
                })?;
                if domain.contains('/') {
                    return Err(RulesError::Invalid {
                        index,
                        field: "prefix",
                        value: prefix.clone(),
                        why: "a wildcard prefix is a domain only",
                    });
                }
                if rule.location.is_some() {
                    return Err(RulesError::Invalid {
                        index,
                        field: "location",
                        value: rule.location.clone().unwrap_or_default(),
                        why: "a wildcard prefix takes no location",
                    });
                }
            } else {
                check_location(prefix).map_err(|why| RulesError::Invalid {
                    index,
                    field: "prefix",
                    value: prefix.clone(),
                    why,
                })?;
            }
            if let Some(location) = &rule.location {
                check_location(location).map_err(|why| RulesError::Invalid {
                    index,
                    field: "location",
                    value: location.clone(),
                    why,
                })?;
            }
            for mirror in &rule.mirrors {
                check_location(&mirror.location).map_err(|why| RulesError::Invalid {
                    index,
                    field: "mirror.location",
                    value: mirror.location.clone(),
                    why,
                })?;
            }
            if let Some(first) = rules[..index]
                .iter()
                .position(|r| r.prefix.as_ref().or(r.location.as_ref()) == Some(prefix))
            {
                return Err(RulesError::Duplicate {
                    first,
                    second: index,
                    prefix: prefix.clone(),
                });
            }
        }
        Ok(RegistryRules { rules })
    }

    /// The rules.
    pub fn rules(&self) -> &[RegistryRule] {
        &self.rules
    }

    /// The rule with the longest prefix matching `name` (`domain/path`), with the length of the matched part.
    fn matching(&self, name: &str) -> Option<(&RegistryRule, usize)> {
        let domain = name.split('/').next().unwrap_or_default();
        self.rules
            .iter()
            .filter_map(|rule| {
                let prefix = rule.prefix.as_ref().or(rule.location.as_ref())?;
                let matched = match prefix.strip_prefix('*') {
                    // `*.example.com` matches `a.example.com` and `a.b.example.com`, not `example.com`.
                    Some(suffix) => {
                        let host = domain.split(':').next().unwrap_or_default();
                        (host.len() > suffix.len() && host.ends_with(suffix))
                            .then_some(domain.len())
                    }
                    None => (name == prefix
                        || name
                            .strip_prefix(prefix.as_str())
                            .is_some_and(|rest| rest.starts_with('/')))
                    .then_some(prefix.len()),
                }?;
                Some((rule, prefix.len(), matched))
            })
            .max_by_key(|(_, prefix_len, _)| *prefix_len)
            .map(|(rule, _, matched)| (rule, matched))
    }

    /// Resolves `reference` (tag and digest ignored) to its endpoints: the matching rule's mirrors, then its
    /// location (or the reference's own registry when no rule matches). `insecure` (an import's `--insecure`)
    /// makes the primary location plain HTTP even without a rule saying so.
    pub fn resolve(
        &self,
        reference: &Reference,
        insecure: bool,
    ) -> Result<ResolvedRepository, RegistryError> {
        let name = reference.name();
        let mut endpoints = Vec::new();
        match self.matching(&name) {
            Some((rule, _)) if rule.blocked => {
                return Err(RegistryError::Blocked {
                    name,
                    prefix: rule
                        .prefix
                        .clone()
                        .or_else(|| rule.location.clone())
                        .unwrap_or_default(),
                });
            }
            Some((rule, matched)) => {
                let rest = &name[matched..];
                for mirror in &rule.mirrors {
                    endpoints.push(endpoint(
                        &format!("{}{rest}", mirror.location),
                        mirror.insecure,
                        true,
                    )?);
                }
                let location = match &rule.location {
                    Some(location) => format!("{location}{rest}"),
                    None => name.clone(),
                };
                endpoints.push(endpoint(&location, rule.insecure || insecure, false)?);
            }
            None => endpoints.push(endpoint(&name, insecure, false)?),
        }
        Ok(ResolvedRepository {
            name: reference.repository(),
            endpoints,
        })
    }
}

/// `scheme://host[:port]` → `host[:port]`.
pub(crate) fn origin_label(url: &Url) -> String {
    match (url.host_str(), url.port()) {
        (Some(host), Some(port)) => format!("{host}:{port}"),
        (Some(host), None) => host.to_owned(),
        _ => url.as_str().to_owned(),
    }
}

/// The endpoint for `location` = `host[:port]/path`.
fn endpoint(location: &str, insecure: bool, mirror: bool) -> Result<Endpoint, RegistryError> {
    let invalid = |detail: &str| RegistryError::InvalidReference {
        input: location.to_owned(),
        detail: detail.to_owned(),
    };
    let (host, repository) = location
        .split_once('/')
        .ok_or_else(|| invalid("no repository path after the registry host"))?;
    if repository.is_empty() {
        return Err(invalid("empty repository path"));
    }
    let api_host = if host == DEFAULT_DOMAIN {
        DOCKER_HUB_API_HOST
    } else {
        host
    };
    let scheme = if insecure { "http" } else { "https" };
    let origin = Url::parse(&format!("{scheme}://{api_host}/"))
        .map_err(|_| invalid("the registry host is not a valid URL host"))?;
    Ok(Endpoint {
        location: location.to_owned(),
        origin,
        repository: repository.to_owned(),
        insecure,
        mirror,
    })
}

/// Checks `host[:port][/path]`: no scheme, no whitespace, no empty path component, a parseable host.
fn check_location(value: &str) -> Result<(), &'static str> {
    if value.is_empty() {
        return Err("empty");
    }
    if value.contains("://") {
        return Err("must not have a scheme");
    }
    if value.chars().any(|c| c.is_whitespace() || c == '@') {
        return Err("must not contain whitespace or '@'");
    }
    let mut parts = value.split('/');
    let host = parts.next().unwrap_or_default();
    if parts.any(str::is_empty) {
        return Err("empty path component");
    }
    Url::parse(&format!("https://{host}/"))
        .ok()
        .filter(|u| u.host_str().is_some())
        .map(|_| ())
        .ok_or("invalid host")
}

#[cfg(test)]
mod tests {
    use super::*;
    use figment::providers::Format as _;

    fn rules(toml: &str) -> RegistryRules {
        let cfg: RegistriesConfig = figment::Figment::from(figment::providers::Toml::string(toml))
            .extract()
            .unwrap();
        RegistryRules::new(cfg.rules).unwrap()
    }

    fn resolve(rules: &RegistryRules, reference: &str) -> Result<Vec<String>, RegistryError> {
        let r = Reference::parse_normalized(reference).unwrap();
        Ok(rules
            .resolve(&r, false)?
            .endpoints
            .iter()
            .map(Endpoint::url)
            .collect())
    }

    #[test]
    fn the_seed_rule_maps_docker_io_to_a_local_registry() {
        let rules = rules(
            r#"
            [[registry]]
            prefix = "docker.io"
            location = "127.0.0.1:5000"
            insecure = true
            "#,
        );
        assert_eq!(
            resolve(&rules, "openshift/ruby-20-centos7").unwrap(),
            ["http://127.0.0.1:5000/v2/openshift/ruby-20-centos7"]
        );
        assert_eq!(
            resolve(&rules, "ubuntu:22.04").unwrap(),
            ["http://127.0.0.1:5000/v2/library/ubuntu"]
        );
        let resolved = rules
            .resolve(
                &Reference::parse_normalized("openshift/ruby-20-centos7:v0.4").unwrap(),
                false,
            )
            .unwrap();
        let primary = resolved.primary();
        assert_eq!(primary.location, "127.0.0.1:5000/openshift/ruby-20-centos7");
        assert_eq!(primary.repository, "openshift/ruby-20-centos7");
        assert_eq!(primary.registry(), "127.0.0.1:5000");
        assert!(primary.insecure);
        assert_eq!(
            resolved.name.to_string(),
            "docker.io/openshift/ruby-20-centos7"
        );
    }

    #[test]
    fn without_a_rule_the_reference_registry_is_used_over_https() {
        let none = RegistryRules::default();
        assert_eq!(
            resolve(&none, "ubuntu").unwrap(),
            ["https://registry-1.docker.io/v2/library/ubuntu"]
        );
        assert_eq!(
            resolve(&none, "quay.io/org/app:1").unwrap(),
            ["https://quay.io/v2/org/app"]
        );
        let r = Reference::parse_normalized("localhost:5000/a/b").unwrap();
        assert_eq!(
            none.resolve(&r, true).unwrap().primary().url(),
            "http://localhost:5000/v2/a/b"
        );
    }

    #[test]
    fn longest_prefix_wins_and_path_prefixes_rewrite() {
        let rules = rules(
            r#"
            [[registry]]
            prefix = "quay.io"
            location = "mirror.local:5000"
            [[registry]]
            prefix = "quay.io/org"
            location = "mirror.local:5000/quay-org"
            insecure = true
            [[registry]]
            prefix = "quay.io/org-other"
            blocked = true
            [[registry]]
            prefix = "*.example.com"
            insecure = true
            [[registry]]
            location = "plain.example.org"
            insecure = true
            "#,
        );
        assert_eq!(
            resolve(&rules, "quay.io/org/app").unwrap(),
            ["http://mirror.local:5000/v2/quay-org/app"]
        );
        // `quay.io/org` is not a prefix of `quay.io/organic/app`: components match whole.
        assert_eq!(
            resolve(&rules, "quay.io/organic/app").unwrap(),
            ["https://mirror.local:5000/v2/organic/app"]
        );
        let blocked = resolve(&rules, "quay.io/org-other/app").unwrap_err();
        assert_eq!(blocked.reason(), "Blocked");
        assert!(
            blocked.to_string().contains("quay.io/org-other"),
            "{blocked}"
        );
        assert_eq!(
            resolve(&rules, "a.b.example.com/x/y").unwrap(),
            ["http://a.b.example.com/v2/x/y"]
        );
        assert_eq!(
            resolve(&rules, "example.com/x/y").unwrap(),
            ["https://example.com/v2/x/y"],
            "a wildcard does not match the bare domain"
        );
        assert_eq!(
            resolve(&rules, "plain.example.org/x").unwrap(),
            ["http://plain.example.org/v2/x"],
            "a rule with only a location has it as its prefix"
        );
    }

    #[test]
    fn mirrors_come_first_then_the_location() {
        let rules = rules(
            r#"
            [[registry]]
            prefix = "docker.io/library"
            location = "registry.internal/hub"
            [[registry.mirror]]
            location = "127.0.0.1:5001/cache"
            insecure = true
            [[registry.mirror]]
            location = "mirror.internal"
            "#,
        );
        let resolved = rules
            .resolve(&Reference::parse_normalized("busybox").unwrap(), false)
            .unwrap();
        let urls: Vec<_> = resolved.endpoints.iter().map(Endpoint::url).collect();
        assert_eq!(
            urls,
            [
                "http://127.0.0.1:5001/v2/cache/busybox",
                "https://mirror.internal/v2/busybox",
                "https://registry.internal/v2/hub/busybox",
            ]
        );
        assert!(resolved.endpoints[0].mirror && !resolved.primary().mirror);
    }

    #[test]
    fn invalid_rules_are_refused() {
        let bad = |rule: RegistryRule| RegistryRules::new(vec![rule]).unwrap_err();
        assert!(matches!(
            bad(RegistryRule::default()),
            RulesError::Empty { .. }
        ));
        let e = bad(RegistryRule {
            prefix: Some("https://docker.io".into()),
            ..Default::default()
        });
        assert!(e.to_string().contains("scheme"), "{e}");
        let e = bad(RegistryRule {
            prefix: Some("*.example.com".into()),
            location: Some("x.org".into()),
            ..Default::default()
        });
        assert!(e.to_string().contains("wildcard"), "{e}");
        let e = bad(RegistryRule {
            prefix: Some("a.org".into()),
            mirrors: vec![Mirror {
                location: "m.org//x".into(),
                insecure: false,
            }],
            ..Default::default()
        });
        assert!(e.to_string().contains("mirror.location"), "{e}");
        let twice = RegistryRule {
            prefix: Some("a.org".into()),
            ..Default::default()
        };
        assert!(matches!(
            RegistryRules::new(vec![twice.clone(), twice]).unwrap_err(),
            RulesError::Duplicate { .. }
        ));
    }

    #[test]
    fn unknown_keys_are_refused() {
        let err = figment::Figment::from(figment::providers::Toml::string(
            "[[registry]]\nprefix = \"a.org\"\nmirror-by-digest-only = true\n",
        ))
        .extract::<RegistriesConfig>()
        .unwrap_err();
        assert!(err.to_string().contains("mirror-by-digest-only"), "{err}");
    }
}
