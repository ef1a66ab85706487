//! Registry authentication: parsing `WWW-Authenticate` challenges (RFC 7235), the token server's answer, and
//! the cache of bearer tokens per (registry, scope, credential) until they expire.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use imagestreams_common::config::Secret;
use serde::Deserialize;
use tokio::time::Instant;

/// Lifetime assumed for a token whose answer has no `expires_in` (the distribution token spec says 60 s).
pub const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(60);

/// A token is dropped from the cache this long before it expires, so no request carries one about to lapse.
pub const TOKEN_EXPIRY_MARGIN: Duration = Duration::from_secs(10);

/// The authentication scheme of a challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scheme {
    /// HTTP Basic.
    Basic,
    /// Docker's bearer token flow.
    Bearer,
    /// Anything else (not supported).
    Other(String),
}

/// One challenge of a `WWW-Authenticate` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// The scheme.
    pub scheme: Scheme,
    /// Its parameters, names lower-cased (`realm`, `service`, `scope`, `error`).
    pub params: HashMap<String, String>,
}

impl Challenge {
    /// A parameter by (lower-case) name.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.get(name).map(String::as_str)
    }
}

/// Parses every challenge of a `WWW-Authenticate` value (RFC 7235 §4.1): `Bearer realm="…",service="…",
/// scope="repository:a:pull,push"` or `Basic realm="…"`, several separated by commas, quoted strings with
/// `\` escapes. A malformed tail is ignored; what parsed before it is kept.
pub fn parse_www_authenticate(value: &str) -> Vec<Challenge> {
    let mut p = Parser {
        s: value.as_bytes(),
        i: 0,
    };
    let mut out: Vec<Challenge> = Vec::new();
    loop {
        p.skip_ws_and_commas();
        let Some(scheme) = p.token() else {
            break;
        };
        let mut challenge = Challenge {
            scheme: match scheme.to_ascii_lowercase().as_str() {
                "basic" => Scheme::Basic,
                "bearer" => Scheme::Bearer,
                _ => Scheme::Other(scheme),
            },
            params: HashMap::new(),
        };
        // auth-params: name = value, separated by commas, until a token not followed by '=' (the next scheme).
        loop {
            p.skip_ws_and_commas();
            let save = p.i;
            let Some(name) = p.token() else {
                break;
            };
            p.skip_ws();
            if !p.eat(b'=') {
                p.i = save;
                break;
            }
            p.skip_ws();
            let Some(v) = p.quoted().or_else(|| p.token()) else {
                p.i = save;
                break;
            };
            challenge.params.insert(name.to_ascii_lowercase(), v);
        }
        out.push(challenge);
        if p.i == p.s.len() {
            break;
        }
        // Anything that is neither a parameter nor a scheme ends parsing.
        let before = p.i;
        p.skip_ws_and_commas();
        if p.i == before && p.peek().is_some_and(|c| !is_tchar(c)) {
            break;
        }
    }
    out
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.i += 1;
        }
    }

    fn skip_ws_and_commas(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b',')) {
            self.i += 1;
        }
    }

    /// An RFC 7230 token (also accepts token68's `/`, `=`-free part, which no registry needs).
    fn token(&mut self) -> Option<String> {
        let start = self.i;
        while self.peek().is_some_and(is_tchar) {
            self.i += 1;
        }
        (self.i > start).then(|| String::from_utf8_lossy(&self.s[start..self.i]).into_owned())
    }

    fn quoted(&mut self) -> Option<String> {
        if !self.eat(b'"') {
            return None;
        }
        let mut out = Vec::new();
        while let Some(c) = self.peek() {
            self.i += 1;
            match c {
                b'"' => return Some(String::from_utf8_lossy(&out).into_owned()),
                b'\\' => {
                    if let Some(escaped) = self.peek() {
                        out.push(escaped);
                        self.i += 1;
                    }
                }
                c => out.push(c),
            }
        }
        // Unterminated: take what there is.
        Some(String::from_utf8_lossy(&out).into_owned())
    }
}

fn is_tchar(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~/:".contains(&c)
}

/// A token server's answer. The token is a [`Secret`], so this never prints it.
#[derive(Debug, Deserialize)]
pub(crate) struct TokenResponse {
    #[serde(default)]
    token: Option<Secret>,
    #[serde(default)]
    access_token: Option<Secret>,
    #[serde(default)]
    expires_in: Option<u64>,
}

impl TokenResponse {
    /// The token (`token`, else `access_token`) and how long it lives.
    pub(crate) fn into_token(self) -> Option<(Secret, Duration)> {
        let token = self
            .token
            .filter(|t| !t.expose().is_empty())
            .or(self.access_token.filter(|t| !t.expose().is_empty()))?;
        let lifetime = self
            .expires_in
            .filter(|s| *s > 0)
            .map(Duration::from_secs)
            .unwrap_or(DEFAULT_TOKEN_LIFETIME);
        Some((token, lifetime))
    }
}

/// How a registry (origin) wants to be authenticated, learnt from its challenges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HostAuth {
    /// HTTP Basic.
    Basic,
    /// Bearer tokens from `realm` for `service`.
    Bearer {
        realm: String,
        service: Option<String>,
    },
}

/// The key of a cached token: registry origin, scope, and the credential's fingerprint (zero when anonymous).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct TokenKey {
    pub(crate) origin: String,
    pub(crate) scope: String,
    pub(crate) principal: [u8; 32],
}

/// Bearer tokens until they expire, plus what each registry's challenges said.
#[derive(Debug, Default)]
pub(crate) struct TokenCache {
    tokens: Mutex<HashMap<TokenKey, (Secret, Instant)>>,
    hosts: Mutex<HashMap<String, HostAuth>>,
    // One token fetch at a time per key, so a burst of requests fetches one token, not one each.
    fetching: Mutex<HashMap<TokenKey, Arc<tokio::sync::Mutex<()>>>>,
}

impl TokenCache {
    /// A live token for `key`.
    pub(crate) fn get(&self, key: &TokenKey) -> Option<Secret> {
        let mut tokens = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
        match tokens.get(key) {
            Some((token, until)) if *until > Instant::now() => Some(token.clone()),
            Some(_) => {
                tokens.remove(key);
                None
            }
            None => None,
        }
    }

    /// Stores `token` for `lifetime` (less [`TOKEN_EXPIRY_MARGIN`], or half of a short lifetime).
    pub(crate) fn put(&self, key: TokenKey, token: Secret, lifetime: Duration) {
        let usable = if lifetime > TOKEN_EXPIRY_MARGIN * 2 {
            lifetime - TOKEN_EXPIRY_MARGIN
        } else {
            lifetime / 2
        };
        self.tokens
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, (token, Instant::now() + usable));
    }

    /// Forgets the token for `key` (the registry refused it).
    pub(crate) fn forget(&self, key: &TokenKey) {
        self.tokens
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
    }

    /// The lock serializing fetches of the token for `key`.
    pub(crate) fn fetch_lock(&self, key: &TokenKey) -> Arc<tokio::sync::Mutex<()>> {
        let mut fetching = self.fetching.lock().unwrap_or_else(|e| e.into_inner());
        fetching.retain(|_, lock| Arc::strong_count(lock) > 1);
        fetching.entry(key.clone()).or_default().clone()
    }

    /// What `origin`'s challenges said, if it challenged us before.
    pub(crate) fn host_auth(&self, origin: &str) -> Option<HostAuth> {
        self.hosts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(origin)
            .cloned()
    }

    /// Records how `origin` wants to be authenticated.
    pub(crate) fn set_host_auth(&self, origin: &str, auth: HostAuth) {
        self.hosts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(origin.to_owned(), auth);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_docker_hub_bearer_challenge() {
        let c = parse_www_authenticate(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:samalba/my-app:pull,push""#,
        );
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].scheme, Scheme::Bearer);
        assert_eq!(c[0].param("realm"), Some("https://auth.docker.io/token"));
        assert_eq!(c[0].param("service"), Some("registry.docker.io"));
        assert_eq!(
            c[0].param("scope"),
            Some("repository:samalba/my-app:pull,push"),
            "a comma inside quotes belongs to the value"
        );
    }

    #[test]
    fn parses_basic_errors_spaces_escapes_and_several_challenges() {
        let c = parse_www_authenticate(r#"Basic realm="imagestreams-test""#);
        assert_eq!(c[0].scheme, Scheme::Basic);
        assert_eq!(c[0].param("realm"), Some("imagestreams-test"));

        let c = parse_www_authenticate(
            r#"bearer  REALM = "http://127.0.0.1:1/t" , service=reg, error="insufficient_scope", x="a\"b""#,
        );
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].scheme, Scheme::Bearer);
        assert_eq!(c[0].param("realm"), Some("http://127.0.0.1:1/t"));
        assert_eq!(c[0].param("service"), Some("reg"));
        assert_eq!(c[0].param("error"), Some("insufficient_scope"));
        assert_eq!(c[0].param("x"), Some("a\"b"));

        let c = parse_www_authenticate(
            r#"Negotiate, Basic realm="r", Bearer realm="https://t/x",service="s""#,
        );
        let schemes: Vec<_> = c.iter().map(|c| c.scheme.clone()).collect();
        assert_eq!(
            schemes,
            [
                Scheme::Other("Negotiate".into()),
                Scheme::Basic,
                Scheme::Bearer
            ]
        );
        assert_eq!(c[2].param("service"), Some("s"));
    }

    #[test]
    fn tolerates_garbage() {
        assert!(parse_www_authenticate("").is_empty());
        assert!(parse_www_authenticate("   ,, ").is_empty());
        let c = parse_www_authenticate(r#"Bearer realm="unterminated"#);
        assert_eq!(c[0].param("realm"), Some("unterminated"));
        let c = parse_www_authenticate("Bearer realm=\"x\" \u{1}junk");
        assert_eq!(c[0].param("realm"), Some("x"));
    }

    #[test]
    fn token_answers_use_token_then_access_token() {
        let t: TokenResponse =
            serde_json::from_str(r#"{"token":"abc","access_token":"def","expires_in":300}"#)
                .unwrap();
        let (token, life) = t.into_token().unwrap();
        assert_eq!(token.expose(), "abc");
        assert_eq!(life, Duration::from_secs(300));
        let t: TokenResponse = serde_json::from_str(r#"{"access_token":"def"}"#).unwrap();
        let (token, life) = t.into_token().unwrap();
        assert_eq!(token.expose(), "def");
        assert_eq!(life, DEFAULT_TOKEN_LIFETIME);
        let t: TokenResponse = serde_json::from_str(r#"{"token":""}"#).unwrap();
        assert!(t.into_token().is_none());
        let t: TokenResponse = serde_json::from_str(r#"{"token":"hunter2"}"#).unwrap();
        assert!(!format!("{t:?}").contains("hunter2"));
    }

    #[tokio::test(start_paused = true)]
    async fn tokens_expire_before_their_lifetime() {
        let cache = TokenCache::default();
        let key = TokenKey {
            origin: "https://r/".into(),
            scope: "repository:a:pull".into(),
            principal: [0; 32],
        };
        cache.put(key.clone(), Secret::new("t"), Duration::from_secs(60));
        assert!(cache.get(&key).is_some());
        let other = TokenKey {
            principal: [1; 32],
            ..key.clone()
        };
        assert!(
            cache.get(&other).is_none(),
            "another credential's token is never shared"
        );
        tokio::time::advance(Duration::from_secs(49)).await;
        assert!(cache.get(&key).is_some());
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(cache.get(&key).is_none());
    }
}
