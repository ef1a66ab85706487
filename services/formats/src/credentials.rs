//! Registry credentials: docker `config.json` (`auths` with base64 `auth`, `username`/`password`,
//! `identitytoken`, `registrytoken`), and the lookup of a repository's credential by the longest matching
//! `host[/path]` prefix.
//!
//! Every secret is a [`Secret`]: `Debug` prints `<redacted>`, and no error here quotes the file's content.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde::Deserialize;
use sha2::{Digest as _, Sha256};

use crate::secret::Secret;

/// Hosts that mean Docker Hub in a `config.json` key.
const DOCKER_HUB_ALIASES: &[&str] = &[
    "index.docker.io",
    "registry-1.docker.io",
    "registry.hub.docker.com",
    "docker.io",
];

/// One registry credential. `Debug` redacts every secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// Username and password (or a personal access token), sent as HTTP Basic or to the token realm.
    Basic {
        /// The user name; not secret.
        username: String,
        /// The password.
        password: Secret,
    },
    /// An OAuth2 refresh token (`identitytoken`), exchanged at the token realm.
    IdentityToken {
        /// The refresh token.
        token: Secret,
    },
    /// A bearer token sent as is (`registrytoken`).
    RegistryToken {
        /// The token.
        token: Secret,
    },
}

impl Credential {
    /// A username and password.
    pub fn basic(username: impl Into<String>, password: impl Into<String>) -> Self {
        Credential::Basic {
            username: username.into(),
            password: Secret::new(password),
        }
    }

    /// A key telling credentials apart in the token cache, so a token obtained with one credential is never
    /// handed to a request made with another. It never leaves the process.
    pub fn fingerprint(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        match self {
            Credential::Basic { username, password } => {
                h.update(b"basic\0");
                h.update(username.as_bytes());
                h.update(b"\0");
                h.update(password.expose().as_bytes());
            }
            Credential::IdentityToken { token } => {
                h.update(b"identity\0");
                h.update(token.expose().as_bytes());
            }
            Credential::RegistryToken { token } => {
                h.update(b"registry\0");
                h.update(token.expose().as_bytes());
            }
        }
        h.finalize().into()
    }
}

/// Why credentials could not be loaded. No variant carries a secret or a piece of the file.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    /// The file could not be read.
    #[error("reading the docker config {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a docker `config.json`.
    #[error(
        "the docker config {origin} is not valid JSON of the expected shape (line {line}, column {column})"
    )]
    Parse {
        /// The file, or `<inline>`.
        origin: String,
        /// Where parsing failed.
        line: usize,
        /// Where parsing failed.
        column: usize,
    },
    /// An `auths` entry's `auth` is not base64 of `user:password`.
    #[error(
        "the docker config entry for {server} has an invalid \"auth\" (expected base64 of user:password)"
    )]
    InvalidAuth {
        /// The entry's key.
        server: String,
    },
    /// A key is not `[scheme://]host[:port][/path]`.
    #[error("invalid registry server {server:?}")]
    InvalidServer {
        /// The key.
        server: String,
    },
}

/// Credentials by `host[:port][/path]`, looked up by the longest matching prefix.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Keyring {
    // Sorted by key length, longest first.
    entries: Vec<(String, Credential)>,
}

impl Keyring {
    /// An empty keyring (anonymous access everywhere).
    pub fn new() -> Self {
        Keyring::default()
    }

    /// Adds or replaces the credential for `server`, given as Docker writes it: `host[:port][/path]`, with or
    /// without `https://`, or `https://index.docker.io/v1/` for Docker Hub.
    pub fn insert(&mut self, server: &str, credential: Credential) -> Result<(), CredentialsError> {
        let key = normalize_server(server).ok_or_else(|| CredentialsError::InvalidServer {
            server: server.to_owned(),
        })?;
        self.entries.retain(|(k, _)| *k != key);
        self.entries.push((key, credential));
        self.entries
            .sort_by(|(a, _), (b, _)| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        Ok(())
    }

    /// Every entry of `other` added over this keyring's (a namespace's secrets over the configured file).
    pub fn overlaid_with(&self, other: &Keyring) -> Keyring {
        let mut merged = self.clone();
        for (key, credential) in &other.entries {
            merged.entries.retain(|(k, _)| k != key);
            merged.entries.push((key.clone(), credential.clone()));
        }
        merged
            .entries
            .sort_by(|(a, _), (b, _)| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        merged
    }

    /// The credential for `location` (`host[:port]/path`, as the registry client's `Endpoint::location` spells it): the entry
    /// whose key is `location` itself or the longest one followed by `/` in it. A key without a path matches
    /// its whole host, and only that host and port.
    pub fn lookup(&self, location: &str) -> Option<&Credential> {
        let location = normalize_server(location)?;
        self.entries
            .iter()
            .find(|(key, _)| {
                location == *key
                    || location
                        .strip_prefix(key.as_str())
                        .is_some_and(|rest| rest.starts_with('/'))
            })
            .map(|(_, credential)| credential)
    }

    /// The number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Reads a docker `config.json`.
    pub fn from_docker_config_file(path: &Path) -> Result<Keyring, CredentialsError> {
        let bytes = std::fs::read(path).map_err(|source| CredentialsError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse_docker_config(&bytes, &path.display().to_string())
    }

    /// Parses a docker `config.json` (or the content of a `kubernetes.io/dockerconfigjson` secret). Entries with
    /// no usable credential (`{}` left by a credential helper) are skipped; `credsStore` and `credHelpers` are
    /// not run.
    pub fn from_docker_config_json(json: &[u8]) -> Result<Keyring, CredentialsError> {
        Self::parse_docker_config(json, "<inline>")
    }

    fn parse_docker_config(json: &[u8], origin: &str) -> Result<Keyring, CredentialsError> {
        #[derive(Deserialize)]
        struct DockerConfig {
            #[serde(default)]
            auths: std::collections::BTreeMap<String, AuthEntry>,
        }
        #[derive(Deserialize)]
        struct AuthEntry {
            #[serde(default)]
            auth: Option<Secret>,
            #[serde(default)]
            username: Option<String>,
            #[serde(default)]
            password: Option<Secret>,
            #[serde(default)]
            identitytoken: Option<Secret>,
            #[serde(default)]
            registrytoken: Option<Secret>,
        }
        let parse_error = |e: serde_json::Error| CredentialsError::Parse {
            origin: origin.to_owned(),
            line: e.line(),
            column: e.column(),
        };
        // serde reads a struct from a JSON array too; docker's format is objects
        // all the way down, so anything else is refused before it is mapped
        let value: serde_json::Value = serde_json::from_slice(json).map_err(parse_error)?;
        let objects = value.as_object().is_some_and(|top| match top.get("auths") {
            None => true,
            Some(auths) => auths
                .as_object()
                .is_some_and(|entries| entries.values().all(serde_json::Value::is_object)),
        });
        if !objects {
            return Err(parse_error(serde::de::Error::custom(
                "config.json and its auths entries must be JSON objects",
            )));
        }
        let config: DockerConfig = serde_json::from_value(value).map_err(parse_error)?;
        let present = |s: &Option<Secret>| s.as_ref().filter(|s| !s.expose().is_empty()).cloned();
        let mut keyring = Keyring::new();
        for (server, entry) in config.auths {
            let credential = if let Some(token) = present(&entry.identitytoken) {
                Credential::IdentityToken { token }
            } else if let Some(token) = present(&entry.registrytoken) {
                Credential::RegistryToken { token }
            } else if let Some(auth) = present(&entry.auth) {
                let (username, password) =
                    decode_auth(auth.expose()).ok_or_else(|| CredentialsError::InvalidAuth {
                        server: server.clone(),
                    })?;
                Credential::Basic {
                    username,
                    password: Secret::new(password),
                }
            } else if let (Some(username), Some(password)) = (
                entry.username.filter(|u| !u.is_empty()),
                present(&entry.password),
            ) {
                Credential::Basic { username, password }
            } else {
                continue;
            };
            keyring.insert(&server, credential)?;
        }
        Ok(keyring)
    }
}

/// base64(`user:password`) → (user, password); the password may contain `:`.
fn decode_auth(auth: &str) -> Option<(String, String)> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(auth.trim())
        .ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let (user, password) = text.split_once(':')?;
    (!user.is_empty()).then(|| (user.to_owned(), password.to_owned()))
}

/// `[http[s]://]host[:port][/path][/]` → `host[:port][/path]` with the host lower-cased, a lone `/v1` or `/v2`
/// path dropped and every Docker Hub alias spelled `docker.io`.
pub fn normalize_server(server: &str) -> Option<String> {
    let s = server.trim();
    let s = match s.split_once("://") {
        Some((scheme, rest))
            if scheme.eq_ignore_ascii_case("https") || scheme.eq_ignore_ascii_case("http") =>
        {
            rest
        }
        Some(_) => return None,
        None => s,
    };
    let s = s.trim_end_matches('/');
    let (host, path) = s.split_once('/').unwrap_or((s, ""));
    let path = match path {
        "v1" | "v2" => "",
        p => p,
    };
    if host.is_empty()
        || host.contains(['@', '?', '#'])
        || s.chars().any(char::is_whitespace)
        || path.split('/').any(|c| c.is_empty()) && !path.is_empty()
    {
        return None;
    }
    let host = host.to_ascii_lowercase();
    let host = if DOCKER_HUB_ALIASES.contains(&host.as_str()) {
        "docker.io".to_owned()
    } else {
        host
    };
    Some(if path.is_empty() {
        host
    } else {
        format!("{host}/{path}")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "s3cr:et-p4ss";

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    #[test]
    fn parses_auths_in_every_docker_form() {
        let json = format!(
            r#"{{
              "auths": {{
                "https://index.docker.io/v1/": {{ "auth": "{hub}" }},
                "quay.io": {{ "auth": "{quay}", "email": "x@y" }},
                "quay.io/org": {{ "username": "robot", "password": "{SECRET}" }},
                "http://127.0.0.1:5000": {{ "identitytoken": "refresh-{SECRET}" }},
                "ghcr.io": {{ "registrytoken": "bearer-{SECRET}" }},
                "helper.example.com": {{}}
              }},
              "credsStore": "desktop",
              "HttpHeaders": {{ "User-Agent": "x" }}
            }}"#,
            hub = b64(&format!("hubuser:{SECRET}")),
            quay = b64(&format!("quser:{SECRET}")),
        );
        let k = Keyring::from_docker_config_json(json.as_bytes()).unwrap();
        assert_eq!(k.len(), 5, "the empty helper entry is skipped");
        assert_eq!(
            k.lookup("docker.io/library/ubuntu"),
            Some(&Credential::basic("hubuser", SECRET)),
            "the password keeps its colon"
        );
        assert_eq!(
            k.lookup("quay.io/other/app"),
            Some(&Credential::basic("quser", SECRET))
        );
        assert_eq!(
            k.lookup("quay.io/org/app"),
            Some(&Credential::basic("robot", SECRET)),
            "longest prefix first"
        );
        assert_eq!(
            k.lookup("quay.io/organic/app"),
            Some(&Credential::basic("quser", SECRET)),
            "prefixes match whole path components"
        );
        assert!(matches!(
            k.lookup("127.0.0.1:5000/ns/app"),
            Some(Credential::IdentityToken { .. })
        ));
        assert!(matches!(
            k.lookup("ghcr.io/a/b"),
            Some(Credential::RegistryToken { .. })
        ));
        assert_eq!(k.lookup("127.0.0.1:5001/ns/app"), None, "ports must match");
        assert_eq!(k.lookup("quay.io.evil.com/org/app"), None);
        assert_eq!(k.lookup("helper.example.com/a"), None);
    }

    #[test]
    fn docker_hub_aliases_are_one_host() {
        for key in [
            "https://index.docker.io/v1/",
            "index.docker.io",
            "registry-1.docker.io",
            "docker.io",
            "https://registry.hub.docker.com/v2/",
        ] {
            assert_eq!(normalize_server(key).as_deref(), Some("docker.io"), "{key}");
        }
        assert_eq!(
            normalize_server("HTTPS://Quay.IO/org/").as_deref(),
            Some("quay.io/org")
        );
        assert_eq!(normalize_server("ftp://quay.io"), None);
        assert_eq!(normalize_server("a.org//x"), None);
        assert_eq!(normalize_server(""), None);
        // normalizing twice gives the same key, so whitespace is refused anywhere
        assert_eq!(normalize_server("a.org/team x"), None);
        for key in [
            "https://Quay.io/org/",
            "r.io:5000/v2/",
            "docker.io",
            "a.org/x/y",
        ] {
            let once = normalize_server(key).unwrap();
            assert_eq!(normalize_server(&once), Some(once.clone()), "{key}");
        }
    }

    #[test]
    fn config_json_must_be_objects() {
        for json in [
            r#"[]"#,
            r#"{"auths":[]}"#,
            r#"{"auths":{"r.io":["u","p"]}}"#,
            r#"{"auths":{"r.io":"dTpw"}}"#,
        ] {
            let e = Keyring::from_docker_config_json(json.as_bytes()).unwrap_err();
            assert!(matches!(e, CredentialsError::Parse { .. }), "{json}: {e:?}");
        }
        assert!(Keyring::from_docker_config_json(b"{}").unwrap().is_empty());
    }

    #[test]
    fn errors_and_debug_never_show_secrets() {
        let bad_b64 = format!(r#"{{"auths":{{"r.io":{{"auth":"{SECRET}!!"}}}}}}"#);
        let e = Keyring::from_docker_config_json(bad_b64.as_bytes()).unwrap_err();
        assert!(!format!("{e} {e:?}").contains(SECRET), "{e}");
        let no_colon = format!(
            r#"{{"auths":{{"r.io":{{"auth":"{}"}}}}}}"#,
            b64(SECRET.replace(':', "").as_str())
        );
        let e = Keyring::from_docker_config_json(no_colon.as_bytes()).unwrap_err();
        assert!(matches!(e, CredentialsError::InvalidAuth { .. }));
        let wrong_type = format!(r#"{{"auths":{{"r.io":{{"auth":["{SECRET}"]}}}}}}"#);
        let e = Keyring::from_docker_config_json(wrong_type.as_bytes()).unwrap_err();
        assert!(!format!("{e} {e:?}").contains(SECRET), "{e}");
        let truncated = format!(r#"{{"auths":{{"r.io":{{"password":"{SECRET}"#);
        let e = Keyring::from_docker_config_json(truncated.as_bytes()).unwrap_err();
        assert!(!format!("{e} {e:?}").contains(SECRET), "{e}");

        let json = format!(
            r#"{{"auths":{{"r.io":{{"auth":"{}"}},"t.io":{{"identitytoken":"{SECRET}"}}}}}}"#,
            b64(&format!("u:{SECRET}"))
        );
        let k = Keyring::from_docker_config_json(json.as_bytes()).unwrap();
        let shown = format!("{k:?} {:?}", k.lookup("r.io/x"));
        assert!(!shown.contains(SECRET), "{shown}");
        assert!(shown.contains("redacted"), "{shown}");
        assert!(!shown.contains(&b64(&format!("u:{SECRET}"))), "{shown}");
    }

    #[test]
    fn namespace_secrets_overlay_the_file() {
        let mut file = Keyring::new();
        file.insert("quay.io", Credential::basic("global", "g"))
            .unwrap();
        file.insert("r.io", Credential::basic("global", "g"))
            .unwrap();
        let mut ns = Keyring::new();
        ns.insert("quay.io", Credential::basic("ns", "n")).unwrap();
        let merged = file.overlaid_with(&ns);
        assert_eq!(
            merged.lookup("quay.io/a/b"),
            Some(&Credential::basic("ns", "n"))
        );
        assert_eq!(
            merged.lookup("r.io/a"),
            Some(&Credential::basic("global", "g"))
        );
        assert_eq!(merged.len(), 2);
    }

    #[test]
    fn fingerprints_tell_credentials_apart() {
        let a = Credential::basic("u", "p1").fingerprint();
        let b = Credential::basic("u", "p2").fingerprint();
        let c = Credential::basic("u", "p1").fingerprint();
        assert_ne!(a, b);
        assert_eq!(a, c);
    }
}
