//! How [`RegistryClient`] authenticates: Basic credentials sent up front where a registry took them
//! before, `WWW-Authenticate` challenges answered with Basic or a bearer token from the registry's token
//! server (cached per scope and principal), and the `Authorization` headers marked sensitive.

use super::transport::Request;
use super::*;

/// The `Authorization` of a request and, for a cached token, its key (to forget it when refused).
pub(super) struct AuthUsed {
    pub(super) header: HeaderValue,
    pub(super) token_key: Option<TokenKey>,
}

impl AuthUsed {
    pub(super) fn plain(header: HeaderValue) -> Self {
        AuthUsed {
            header,
            token_key: None,
        }
    }

    pub(super) fn bearer(token: &Secret) -> Self {
        AuthUsed::plain(sensitive(&format!("Bearer {}", token.expose())))
    }

    pub(super) fn cached(token: &Secret, key: TokenKey) -> Self {
        AuthUsed {
            token_key: Some(key),
            ..AuthUsed::bearer(token)
        }
    }
}

/// `Basic base64(user:password)` for a username and password.
pub(super) fn basic_header(credential: &Credential) -> Option<HeaderValue> {
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
pub(super) fn sensitive(value: &str) -> HeaderValue {
    let mut v = HeaderValue::from_str(value).unwrap_or_else(|_| HeaderValue::from_static(""));
    v.set_sensitive(true);
    v
}

/// `k=v&…`, percent-encoded as `application/x-www-form-urlencoded`.
pub(super) fn form_urlencoded(pairs: &[(&str, String)]) -> String {
    // can't fail: a constant URL
    let mut url = Url::parse("http://form.invalid/").expect("a valid URL");
    url.query_pairs_mut().extend_pairs(pairs);
    url.query().unwrap_or_default().to_owned()
}

impl RegistryClient {
    /// The `Authorization` to send before any challenge: Basic or a cached (or freshly fetched) bearer token when
    /// the registry challenged us before, the credential's own bearer token for `registrytoken`, else none.
    pub(super) async fn preemptive_auth(
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
    pub(super) async fn answer_challenge(
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
    pub(super) async fn bearer(
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
    pub(super) async fn fetch_token(
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
            accept: Some("application/json"),
            form,
            max_body: Some(self.inner.limits.max_body_bytes.min(1024 * 1024)),
            ..Request::new(method, url, &what)
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
}
