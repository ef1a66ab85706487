//! Whether a delivery comes from the receiver's sender: the check of its
//! kind ([`Kind::check`]), over the raw body, before anything is parsed.
//! Secrets and signatures are compared in constant time.
//!
//! Where each kind's proof travels:
//!
//! | check | header |
//! |---|---|
//! | header secret | `Authorization`: the secret, or `Bearer <secret>` |
//! | HMAC-SHA256 (GHCR) | `X-Hub-Signature-256: sha256=<hex>` |
//! | HMAC-SHA256 or secret (Artifactory) | `X-JFrog-Event-Auth: <hex>` or the secret |
//! | HMAC-SHA1 (Nexus) | `X-Nexus-Webhook-Signature: <hex>` |
//! | OIDC (GAR) | `Authorization: Bearer <Google-signed ID token>` |
//! | signed timestamp (generic-hmac) | `X-Imagestreams-Timestamp: <unix seconds>`, `X-Imagestreams-Signature: sha256=<hex of HMAC(secret, "<timestamp>.<body>")>` |

use std::{sync::Arc, time::Duration};

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac as _};
use http::HeaderMap;
use jsonwebtoken::{Algorithm, DecodingKey, Validation, jwk::JwkSet};
use serde::Deserialize;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

use crate::kind::{Check, Kind};

/// How far a generic-hmac delivery's timestamp may be from now.
pub const DEFAULT_TIMESTAMP_TOLERANCE: Duration = Duration::from_secs(5 * 60);
/// The header of a generic-hmac delivery's timestamp.
pub const TIMESTAMP_HEADER: &str = "x-imagestreams-timestamp";
/// The header of a generic-hmac delivery's signature.
pub const SIGNATURE_HEADER: &str = "x-imagestreams-signature";
/// The issuers of Google's ID tokens.
const GOOGLE_ISSUERS: [&str; 2] = ["accounts.google.com", "https://accounts.google.com"];

/// What verifies a GAR receiver's deliveries: the keys that sign the tokens
/// (Google's JWKS, configured by URL or file so that tests and air-gapped
/// installations can give their own), the audience the push subscription
/// sets, and the service account it pushes as.
#[derive(Debug, Clone)]
pub struct OidcTrust {
    /// The signing keys.
    pub keys: Arc<JwkSet>,
    /// The expected `aud`.
    pub audience: String,
    /// The expected `email` (with `email_verified`).
    pub email: String,
}

/// What a receiver verifies with.
#[derive(Clone, Copy)]
pub struct Credentials<'a> {
    /// The receiver's secret (empty for URL-only kinds).
    pub secret: &'a [u8],
    /// For GAR: the token's trust.
    pub oidc: Option<&'a OidcTrust>,
}

/// Why a delivery is refused: always 401, with nothing published.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The header carrying the proof is missing.
    #[error("missing {0} header")]
    Missing(&'static str),
    /// The secret or signature does not match.
    #[error("{0} does not match")]
    Mismatch(&'static str),
    /// A signed timestamp outside the tolerance: a replay, or a skewed clock.
    #[error("timestamp {0} is more than 5 minutes from now")]
    Stale(String),
    /// The token is not one the receiver trusts.
    #[error("token refused: {0}")]
    Token(String),
    /// The receiver is not configured for its kind (a GAR receiver without
    /// its OIDC trust).
    #[error("receiver not configured: {0}")]
    Unconfigured(&'static str),
}

/// Checks `body` with `headers` as `kind` requires, at `now`.
pub fn verify(
    kind: Kind,
    credentials: Credentials<'_>,
    headers: &HeaderMap,
    body: &[u8],
    now: DateTime<Utc>,
) -> Result<(), Refusal> {
    let secret = credentials.secret;
    match kind.check() {
        Check::UrlOnly => Ok(()),
        Check::HeaderSecret => {
            let value = header(headers, "authorization")?;
            let presented = strip_bearer(value);
            ensure(same(presented, secret), "Authorization")
        }
        Check::HmacSha256 if kind == Kind::Artifactory => {
            let value = header(headers, "x-jfrog-event-auth")?;
            let signed = hmac_hex_matches::<Hmac<Sha256>>(secret, &[body], value);
            ensure(signed || same(value, secret), "X-JFrog-Event-Auth")
        }
        Check::HmacSha256 => {
            let value = header(headers, "x-hub-signature-256")?;
            let hex = value.strip_prefix(b"sha256=").unwrap_or_default();
            ensure(
                hmac_hex_matches::<Hmac<Sha256>>(secret, &[body], hex),
                "X-Hub-Signature-256",
            )
        }
        Check::HmacSha1 => {
            let value = header(headers, "x-nexus-webhook-signature")?;
            ensure(
                hmac_hex_matches::<Hmac<sha1::Sha1>>(secret, &[body], value),
                "X-Nexus-Webhook-Signature",
            )
        }
        Check::SignedTimestamp => {
            let timestamp = header(headers, TIMESTAMP_HEADER)?;
            let signature = header(headers, SIGNATURE_HEADER)?;
            let hex = signature.strip_prefix(b"sha256=").unwrap_or_default();
            if !hmac_hex_matches::<Hmac<Sha256>>(secret, &[timestamp, b".", body], hex) {
                return Err(Refusal::Mismatch("X-Imagestreams-Signature"));
            }
            let text = String::from_utf8_lossy(timestamp).into_owned();
            let seconds: i64 = text.parse().map_err(|_| Refusal::Stale(text.clone()))?;
            let skew = (now.timestamp() - seconds).unsigned_abs();
            if skew > DEFAULT_TIMESTAMP_TOLERANCE.as_secs() {
                return Err(Refusal::Stale(text));
            }
            Ok(())
        }
        Check::Oidc => {
            let trust = credentials
                .oidc
                .ok_or(Refusal::Unconfigured("no OIDC keys, audience and email"))?;
            let token = strip_bearer(header(headers, "authorization")?);
            let token =
                std::str::from_utf8(token).map_err(|_| Refusal::Token("not a token".to_owned()))?;
            verify_google_token(trust, token)
        }
    }
}

/// The key id (`kid`) of the bearer token in `headers`, if it has one: which
/// key the receiver must hold to check it (see the tag-syncer's key source).
pub fn bearer_token_kid(headers: &HeaderMap) -> Option<String> {
    let token = strip_bearer(header(headers, "authorization").ok()?);
    let token = std::str::from_utf8(token).ok()?;
    jsonwebtoken::decode_header(token).ok()?.kid
}

/// The claims of a Google ID token that matter here.
#[derive(Deserialize)]
struct GoogleClaims {
    #[serde(default)]
    email: String,
    #[serde(default)]
    email_verified: bool,
}

/// Signature (RS256, a key of `trust` by `kid`), expiry, `aud`, `iss`, and
/// the service account: Flux's CVE-2026-40109 was a check without `email`.
fn verify_google_token(trust: &OidcTrust, token: &str) -> Result<(), Refusal> {
    let refused = |e: jsonwebtoken::errors::Error| Refusal::Token(e.to_string());
    let header = jsonwebtoken::decode_header(token).map_err(refused)?;
    let jwk = match &header.kid {
        Some(kid) => trust.keys.find(kid),
        None => trust.keys.keys.first(),
    }
    .ok_or_else(|| Refusal::Token("signed by an unknown key".to_owned()))?;
    let key = DecodingKey::from_jwk(jwk).map_err(refused)?;
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_audience(&[trust.audience.as_str()]);
    validation.set_issuer(&GOOGLE_ISSUERS);
    validation.set_required_spec_claims(&["exp", "aud", "iss"]);
    let claims = jsonwebtoken::decode::<GoogleClaims>(token, &key, &validation)
        .map_err(refused)?
        .claims;
    if !claims.email_verified || !same(claims.email.as_bytes(), trust.email.as_bytes()) {
        return Err(Refusal::Token(format!(
            "not from the service account {}",
            trust.email
        )));
    }
    Ok(())
}

fn header<'h>(headers: &'h HeaderMap, name: &'static str) -> Result<&'h [u8], Refusal> {
    headers
        .get(name)
        .map(|v| v.as_bytes())
        .filter(|v| !v.is_empty())
        .ok_or(Refusal::Missing(name))
}

fn ensure(matches: bool, what: &'static str) -> Result<(), Refusal> {
    if matches {
        Ok(())
    } else {
        Err(Refusal::Mismatch(what))
    }
}

/// `Bearer <token>` (any case of the scheme) is `<token>`; anything else is
/// itself, so a sender that sends the secret bare is understood too.
fn strip_bearer(value: &[u8]) -> &[u8] {
    match value.split_at_checked(7) {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case(b"bearer ") => token,
        _ => value,
    }
}

/// Whether `presented` is `expected`, in time independent of where they
/// differ: both are hashed first, so that not even the length shows.
fn same(presented: &[u8], expected: &[u8]) -> bool {
    if expected.is_empty() {
        return false;
    }
    let a = Sha256::digest(presented);
    let b = Sha256::digest(expected);
    a.ct_eq(&b).into()
}

/// Whether `presented_hex` is the hex HMAC of `parts` (concatenated) with
/// `secret`; `verify_slice` compares in constant time.
fn hmac_hex_matches<M: hmac::Mac + hmac::digest::KeyInit>(
    secret: &[u8],
    parts: &[&[u8]],
    presented_hex: &[u8],
) -> bool {
    if secret.is_empty() {
        return false;
    }
    let Ok(presented) = hex::decode(presented_hex.trim_ascii()) else {
        return false;
    };
    let Ok(mut mac) = <M as hmac::digest::KeyInit>::new_from_slice(secret) else {
        return false;
    };
    for part in parts {
        mac.update(part);
    }
    mac.verify_slice(&presented).is_ok()
}

/// The signature header value of a generic-hmac delivery: what a sender
/// computes (and what tests send).
pub fn generic_hmac_signature(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as hmac::digest::KeyInit>::new_from_slice(secret)
        .expect("HMAC takes keys of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    const SECRET: &[u8] = b"s3cret";

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    fn hmac_hex<M: hmac::Mac + hmac::digest::KeyInit>(body: &[u8]) -> String {
        let mut mac = <M as hmac::digest::KeyInit>::new_from_slice(SECRET).unwrap();
        mac.update(body);
        hex::encode(mac.finalize().into_bytes())
    }

    fn check(kind: Kind, pairs: &[(&'static str, &str)], body: &[u8]) -> Result<(), Refusal> {
        let credentials = Credentials {
            secret: SECRET,
            oidc: None,
        };
        verify(kind, credentials, &headers(pairs), body, Utc::now())
    }

    #[test]
    fn header_secrets_are_taken_bare_or_as_bearer_and_nothing_else() {
        for kind in [
            Kind::Harbor,
            Kind::Acr,
            Kind::Distribution,
            Kind::Ecr,
            Kind::Zot,
        ] {
            assert_eq!(check(kind, &[("authorization", "s3cret")], b"{}"), Ok(()));
            assert_eq!(
                check(kind, &[("authorization", "Bearer s3cret")], b"{}"),
                Ok(())
            );
            assert_eq!(
                check(kind, &[("authorization", "s3cre")], b"{}"),
                Err(Refusal::Mismatch("Authorization"))
            );
            assert_eq!(
                check(kind, &[], b"{}"),
                Err(Refusal::Missing("authorization"))
            );
        }
    }

    #[test]
    fn an_empty_secret_never_matches() {
        let credentials = Credentials {
            secret: b"",
            oidc: None,
        };
        let h = headers(&[("authorization", "Bearer ")]);
        assert!(verify(Kind::Harbor, credentials, &h, b"{}", Utc::now()).is_err());
    }

    #[test]
    fn github_signatures_cover_the_body() {
        let body = br#"{"action":"published"}"#;
        let good = format!("sha256={}", hmac_hex::<Hmac<Sha256>>(body));
        assert_eq!(
            check(Kind::Ghcr, &[("x-hub-signature-256", &good)], body),
            Ok(())
        );
        assert_eq!(
            check(Kind::Ghcr, &[("x-hub-signature-256", &good)], b"{}"),
            Err(Refusal::Mismatch("X-Hub-Signature-256"))
        );
        let bare = hmac_hex::<Hmac<Sha256>>(body);
        assert!(
            check(Kind::Ghcr, &[("x-hub-signature-256", &bare)], body).is_err(),
            "the sha256= prefix is part of the header"
        );
    }

    #[test]
    fn artifactory_takes_its_hmac_or_its_plain_secret() {
        let body = br#"{"domain":"docker"}"#;
        let signed = hmac_hex::<Hmac<Sha256>>(body);
        assert_eq!(
            check(Kind::Artifactory, &[("x-jfrog-event-auth", &signed)], body),
            Ok(())
        );
        assert_eq!(
            check(Kind::Artifactory, &[("x-jfrog-event-auth", "s3cret")], body),
            Ok(())
        );
        assert!(check(Kind::Artifactory, &[("x-jfrog-event-auth", "nope")], body).is_err());
    }

    #[test]
    fn nexus_signs_with_sha1() {
        let body = br#"{"action":"CREATED"}"#;
        let signed = hmac_hex::<Hmac<sha1::Sha1>>(body);
        assert_eq!(
            check(Kind::Nexus, &[("x-nexus-webhook-signature", &signed)], body),
            Ok(())
        );
        let sha256 = hmac_hex::<Hmac<Sha256>>(body);
        assert!(check(Kind::Nexus, &[("x-nexus-webhook-signature", &sha256)], body).is_err());
    }

    #[test]
    fn generic_hmac_refuses_old_timestamps_and_moved_bodies() {
        let body = br#"{"repository":"r.example/app","tags":["v1"]}"#;
        let now = Utc::now().timestamp();
        let at = |t: i64, body: &[u8]| {
            let signature = generic_hmac_signature(SECRET, t, body);
            check(
                Kind::GenericHmac,
                &[
                    (TIMESTAMP_HEADER, &t.to_string()),
                    (SIGNATURE_HEADER, &signature),
                ],
                body,
            )
        };
        assert_eq!(at(now, body), Ok(()));
        assert_eq!(at(now - 299, body), Ok(()));
        assert_eq!(
            at(now - 301, body),
            Err(Refusal::Stale((now - 301).to_string())),
            "a replay of a delivery signed 5 minutes ago"
        );
        // a signature moved onto another body or timestamp
        let signature = generic_hmac_signature(SECRET, now, body);
        let moved = check(
            Kind::GenericHmac,
            &[
                (TIMESTAMP_HEADER, &(now + 1).to_string()),
                (SIGNATURE_HEADER, &signature),
            ],
            body,
        );
        assert_eq!(moved, Err(Refusal::Mismatch("X-Imagestreams-Signature")));
    }

    #[test]
    fn urls_alone_authenticate_docker_hub_and_quay() {
        assert_eq!(check(Kind::Dockerhub, &[], b"{}"), Ok(()));
        assert_eq!(check(Kind::Quay, &[], b"{}"), Ok(()));
    }

    #[test]
    fn gar_without_its_trust_refuses_everything() {
        assert_eq!(
            check(Kind::Gar, &[("authorization", "Bearer x.y.z")], b"{}"),
            Err(Refusal::Unconfigured("no OIDC keys, audience and email"))
        );
    }
}
