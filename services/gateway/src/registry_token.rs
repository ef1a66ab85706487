//! The integrated registry's token service, Docker's token authentication
//! spec on the gateway's HTTP port (`[auth.registry]`):
//!
//! | method | path | answers |
//! |---|---|---|
//! | GET | `/token?service=…&scope=…&account=…` | `{"token", "access_token", "expires_in", "issued_at"}` |
//! | GET | `/token/jwks.json` | the signing key as a JWK Set |
//!
//! - **Who.** HTTP Basic auth: the user name is informational (`account`
//!   likewise), the password is an imagestreams bearer token and decides the
//!   identity (`Authorization: Bearer <token>` works too). No credentials is
//!   the anonymous caller; a token nobody holds, or a malformed header, is
//!   401 with `WWW-Authenticate: Basic`.
//! - **What.** `scope` may repeat (or hold several, space separated); each
//!   is granted the intersection of what it asks and what the caller may do
//!   ([`grant`]). A malformed scope is 400; `service` must be the configured
//!   one, else 400.
//! - **The token** ([`issuer`]) is an ES256 JWT, its `sub` the identity's
//!   name, so the registry's notifications name the pusher.
//!   Tokens are never logged.

pub mod grant;
pub mod issuer;
pub mod keys;

use std::sync::Arc;

use axum::{
    Json, Router,
    extract::{Query, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use base64::Engine as _;
use chrono::{SecondsFormat, Utc};
use imagestreams_common::{
    auth::{self, Caller, Token, store::IdentityStore},
    config::RegistryTokenConfig,
    error::ApiError,
};
use serde::Serialize;
use tracing::instrument;

use self::{
    grant::{MalformedScope, Policy, Scope},
    issuer::{IssuerError, TokenIssuer},
};

/// The path of the token endpoint (the registry's `auth.token.realm`).
pub const TOKEN_PATH: &str = "/token";
/// The path of the JWK Set.
pub const JWKS_PATH: &str = "/token/jwks.json";
/// The `WWW-Authenticate` challenge of a 401.
pub const BASIC_CHALLENGE: &str = "Basic realm=\"imagestreams registry token\"";

/// Why a token request failed; each maps to one HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// A malformed request or another service: 400.
    #[error("{0}")]
    BadRequest(String),
    /// Credentials that identify nobody: 401.
    #[error("{0}")]
    Unauthenticated(String),
    /// The identity store failed: its own status (503, 500).
    #[error(transparent)]
    Store(ApiError),
    /// Signing failed: 500.
    #[error(transparent)]
    Sign(IssuerError),
}

impl From<MalformedScope> for TokenError {
    fn from(e: MalformedScope) -> Self {
        TokenError::BadRequest(e.to_string())
    }
}

impl TokenError {
    fn status(&self) -> StatusCode {
        match self {
            TokenError::BadRequest(_) => StatusCode::BAD_REQUEST,
            TokenError::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            TokenError::Store(e) => {
                StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
            }
            TokenError::Sign(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The registry error code a Docker client shows.
    fn code(&self) -> &'static str {
        match self {
            TokenError::BadRequest(_) => "INVALID_REQUEST",
            TokenError::Unauthenticated(_) => "UNAUTHORIZED",
            TokenError::Store(_) => "UNAVAILABLE",
            TokenError::Sign(_) => "UNKNOWN",
        }
    }
}

/// Docker's error envelope: `{"errors": [{"code", "message"}]}`.
#[derive(Debug, Serialize)]
struct ErrorBody {
    errors: [ErrorItem; 1],
}

#[derive(Debug, Serialize)]
struct ErrorItem {
    code: &'static str,
    message: String,
}

impl IntoResponse for TokenError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = ErrorBody {
            errors: [ErrorItem {
                code: self.code(),
                message: self.to_string(),
            }],
        };
        let mut response = (status, Json(body)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(BASIC_CHALLENGE),
            );
        }
        response
    }
}

/// The answer of `GET /token`, as Docker's spec writes it.
#[derive(Debug, Serialize)]
struct TokenResponse {
    token: String,
    /// The same token, for OAuth 2 clients.
    access_token: String,
    expires_in: u64,
    issued_at: String,
}

/// A token request, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRequest {
    /// The `account` the client names (informational).
    pub account: Option<String>,
    /// The scopes asked.
    pub scopes: Vec<Scope>,
}

impl TokenRequest {
    /// Reads the query's pairs: `service` must be `service`, `scope` may
    /// repeat and hold several space-separated scopes; others are ignored
    /// (`client_id`, `offline_token`).
    pub fn parse(pairs: &[(String, String)], service: &str) -> Result<Self, TokenError> {
        let mut asked_service = None;
        let mut account = None;
        let mut scopes = Vec::new();
        for (key, value) in pairs {
            match key.as_str() {
                "service" => asked_service = Some(value.as_str()),
                "account" => account = Some(value.clone()),
                "scope" => {
                    for scope in value.split_whitespace() {
                        scopes.push(scope.parse()?);
                    }
                }
                _ => {}
            }
        }
        match asked_service {
            Some(asked) if asked == service => Ok(TokenRequest { account, scopes }),
            Some(asked) => Err(TokenError::BadRequest(format!(
                "service {asked:?} is not served here; this token service issues for {service:?}"
            ))),
            None => Err(TokenError::BadRequest(format!(
                "the service parameter is required (this token service issues for {service:?})"
            ))),
        }
    }
}

/// The token presented by an `Authorization` header: the password of
/// `Basic`, or a `Bearer` token; `Ok(None)` without the header.
pub fn presented_token(headers: &HeaderMap) -> Result<Option<Token>, TokenError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let malformed = || TokenError::Unauthenticated("malformed Authorization header".to_owned());
    let value = value.to_str().map_err(|_| malformed())?;
    if let Some(token) = auth::bearer(Some(value)) {
        return Ok(Some(token));
    }
    let (scheme, encoded) = value.trim().split_once(' ').ok_or_else(malformed)?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(malformed());
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .map_err(|_| malformed())?;
    let decoded = String::from_utf8(decoded).map_err(|_| malformed())?;
    match decoded.split_once(':') {
        Some((_user, password)) if !password.is_empty() => Ok(Some(Token::new(password))),
        _ => Err(malformed()),
    }
}

/// The token service: the issuer, the identities and the grant policy.
#[derive(Debug)]
pub struct TokenService {
    issuer: TokenIssuer,
    identities: Arc<IdentityStore>,
    policy: Policy,
}

impl TokenService {
    /// Loads the key and certificates `config` names.
    pub fn load(
        config: &RegistryTokenConfig,
        identities: Arc<IdentityStore>,
    ) -> Result<Self, IssuerError> {
        Ok(TokenService {
            issuer: TokenIssuer::load(config)?,
            identities,
            policy: Policy {
                public_namespaces: config.public_namespaces.clone(),
            },
        })
    }

    /// The signing key's id.
    pub fn kid(&self) -> &str {
        self.issuer.kid()
    }

    async fn caller(&self, token: Option<&Token>) -> Result<Caller, TokenError> {
        self.identities
            .authenticate(token)
            .await
            .map_err(|e| match e {
                ApiError::Unauthenticated(message) => TokenError::Unauthenticated(message),
                other => TokenError::Store(other),
            })
    }
}

/// The routes of the token service.
pub(crate) fn router(service: Arc<TokenService>) -> Router {
    Router::new()
        .route(TOKEN_PATH, get(token))
        .route(JWKS_PATH, get(jwks))
        .with_state(service)
}

#[instrument(skip_all, fields(subject, granted), err(level = "debug"))]
async fn token(
    State(service): State<Arc<TokenService>>,
    Query(pairs): Query<Vec<(String, String)>>,
    headers: HeaderMap,
) -> Result<Json<TokenResponse>, TokenError> {
    let request = TokenRequest::parse(&pairs, service.issuer.service())?;
    let caller = service.caller(presented_token(&headers)?.as_ref()).await?;
    let access = service.policy.access(&caller, &request.scopes);
    let span = tracing::Span::current();
    span.record("subject", caller.name());
    span.record("granted", tracing::field::debug(&access));
    let issued = service
        .issuer
        .issue(caller.name(), access, Utc::now())
        .map_err(TokenError::Sign)?;
    Ok(Json(TokenResponse {
        access_token: issued.token.clone(),
        token: issued.token,
        expires_in: issued.expires_in,
        issued_at: issued.issued_at.to_rfc3339_opts(SecondsFormat::Secs, true),
    }))
}

async fn jwks(State(service): State<Arc<TokenService>>) -> impl IntoResponse {
    Json(service.issuer.jwks())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(query: &[(&str, &str)]) -> Vec<(String, String)> {
        query
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn basic(user_password: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        let value = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(user_password)
        );
        headers.insert(header::AUTHORIZATION, value.parse().unwrap());
        headers
    }

    #[test]
    fn requests_take_repeated_scopes_and_need_the_service() {
        let request = TokenRequest::parse(
            &pairs(&[
                ("service", "reg"),
                ("account", "alice"),
                ("scope", "repository:ns1/a:pull"),
                ("scope", "repository:ns1/b:push repository:ns2/c:pull"),
                ("client_id", "docker"),
            ]),
            "reg",
        )
        .unwrap();
        assert_eq!(request.account.as_deref(), Some("alice"));
        let names: Vec<_> = request.scopes.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["ns1/a", "ns1/b", "ns2/c"]);
        // docker login asks with no scope
        assert!(
            TokenRequest::parse(&pairs(&[("service", "reg")]), "reg")
                .unwrap()
                .scopes
                .is_empty()
        );
    }

    #[test]
    fn bad_requests_are_400_and_bad_credentials_401() {
        let bad: [(&[(&str, &str)], &str); 3] = [
            (&[("service", "other")], "not served"),
            (&[("scope", "repository:ns1/a:pull")], "required"),
            (
                &[("service", "reg"), ("scope", "repository:ns1/a")],
                "malformed scope",
            ),
        ];
        for (query, says) in bad {
            let error = TokenRequest::parse(&pairs(query), "reg").unwrap_err();
            assert_eq!(error.status(), StatusCode::BAD_REQUEST, "{query:?}");
            assert!(error.to_string().contains(says), "{error}");
        }
        for header in [
            "Basic !!!",
            "Basic dXNlcg==",
            "Basic dXNlcjo=",
            "Digest x",
            "Basic",
        ] {
            let mut headers = HeaderMap::new();
            headers.insert(header::AUTHORIZATION, header.parse().unwrap());
            let error = presented_token(&headers).unwrap_err();
            assert_eq!(error.status(), StatusCode::UNAUTHORIZED, "{header}");
            let response = error.into_response();
            assert!(
                response.headers()[header::WWW_AUTHENTICATE]
                    .to_str()
                    .unwrap()
                    .starts_with("Basic realm=")
            );
        }
    }

    #[test]
    fn the_password_is_the_token() {
        let token = presented_token(&basic("anyone:isk_secret"))
            .unwrap()
            .unwrap();
        assert_eq!(token.expose(), "isk_secret");
        let token = presented_token(&basic("u:pass:with:colons"))
            .unwrap()
            .unwrap();
        assert_eq!(token.expose(), "pass:with:colons");
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, "Bearer isk_b".parse().unwrap());
        assert_eq!(
            presented_token(&headers).unwrap().unwrap().expose(),
            "isk_b"
        );
        assert!(presented_token(&HeaderMap::new()).unwrap().is_none());
    }
}
