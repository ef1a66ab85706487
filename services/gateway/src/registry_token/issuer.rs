//! Signing registry tokens: ES256 JWTs whose header carries the signing
//! key's certificate chain (`x5c`, for distribution 2.8's `rootcertbundle`)
//! and its RFC 7638 thumbprint (`kid`, for distribution 3.x's `jwks`), and
//! whose claims are Docker's (`iss`, `sub`, `aud` as one string, `exp`,
//! `nbf`, `iat`, `jti`, `access`).

use std::{path::Path, time::Duration};

use base64::Engine as _;
use chrono::{DateTime, Utc};
use imagestreams_common::config::RegistryTokenConfig;
use jsonwebtoken::{
    Algorithm, EncodingKey, Header,
    jwk::{AlgorithmParameters, Jwk, JwkSet, PublicKeyUse, ThumbprintHash},
};
use serde::{Deserialize, Serialize};

use super::grant::Access;

/// The signature algorithm: ECDSA on P-256 with SHA-256.
pub const ALGORITHM: Algorithm = Algorithm::ES256;
/// The shortest token lifetime, in seconds: Docker's token spec has clients
/// assume 60 when less is given.
pub const MIN_TOKEN_TTL_SECS: u64 = 60;

/// Why the token service cannot sign.
#[derive(Debug, thiserror::Error)]
pub enum IssuerError {
    /// A key or certificate file could not be read.
    #[error("cannot read {path}")]
    Read {
        /// The file.
        path: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The key is not a PEM PKCS#8 P-256 private key.
    #[error("the registry token key is not a PEM PKCS#8 EC P-256 private key")]
    Key(#[source] jsonwebtoken::errors::Error),
    /// The certificate file holds no PEM certificate.
    #[error("the registry token certificate file holds no PEM CERTIFICATE")]
    NoCertificate,
    /// The certificate file is not PEM.
    #[error("the registry token certificate file is not PEM")]
    Pem(#[source] pem::PemError),
    /// The first certificate is not the key's.
    #[error("the first certificate of the chain does not hold the signing key's public key")]
    Mismatch,
    /// A token could not be signed.
    #[error("cannot sign a registry token")]
    Sign(#[source] jsonwebtoken::errors::Error),
}

/// The claims of a registry token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The configured issuer.
    pub iss: String,
    /// The identity the token speaks for.
    pub sub: String,
    /// The service: one string, as distribution 2.8 requires.
    pub aud: String,
    /// Expiry, seconds since the epoch.
    pub exp: i64,
    /// Not before, seconds since the epoch.
    pub nbf: i64,
    /// Issued at, seconds since the epoch.
    pub iat: i64,
    /// A unique id.
    pub jti: String,
    /// What the token grants.
    pub access: Vec<Access>,
}

/// A signed token and when it was issued.
#[derive(Debug, Clone)]
pub struct IssuedToken {
    /// The JWT.
    pub token: String,
    /// Its lifetime, in seconds.
    pub expires_in: u64,
    /// When it was issued.
    pub issued_at: DateTime<Utc>,
}

/// Signs registry tokens with one key (see the module docs).
pub struct TokenIssuer {
    issuer: String,
    service: String,
    ttl: Duration,
    key: EncodingKey,
    header: Header,
    jwk: Jwk,
}

impl std::fmt::Debug for TokenIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenIssuer")
            .field("issuer", &self.issuer)
            .field("service", &self.service)
            .field("ttl", &self.ttl)
            .field("kid", &self.header.kid)
            .field("key", &"<redacted>")
            .finish()
    }
}

fn read(path: &Path) -> Result<Vec<u8>, IssuerError> {
    std::fs::read(path).map_err(|source| IssuerError::Read {
        path: path.display().to_string(),
        source,
    })
}

impl TokenIssuer {
    /// Reads `config.key_file` and `config.cert_file`.
    pub fn load(config: &RegistryTokenConfig) -> Result<Self, IssuerError> {
        Self::from_pem(&read(&config.key_file)?, &read(&config.cert_file)?, config)
    }

    /// An issuer of `key_pem` (PKCS#8) with the certificate chain
    /// `chain_pem` (the key's certificate first).
    pub fn from_pem(
        key_pem: &[u8],
        chain_pem: &[u8],
        config: &RegistryTokenConfig,
    ) -> Result<Self, IssuerError> {
        let key = EncodingKey::from_ec_pem(key_pem).map_err(IssuerError::Key)?;
        let mut jwk = Jwk::from_encoding_key(&key, ALGORITHM).map_err(IssuerError::Key)?;
        let chain: Vec<Vec<u8>> = pem::parse_many(chain_pem)
            .map_err(IssuerError::Pem)?
            .into_iter()
            .filter(|p| p.tag() == "CERTIFICATE")
            .map(|p| p.into_contents())
            .collect();
        let leaf = chain.first().ok_or(IssuerError::NoCertificate)?;
        if !certifies(leaf, &jwk) {
            return Err(IssuerError::Mismatch);
        }
        let x5c: Vec<String> = chain
            .iter()
            .map(|der| base64::engine::general_purpose::STANDARD.encode(der))
            .collect();
        let kid = jwk
            .thumbprint(ThumbprintHash::SHA256)
            .map_err(IssuerError::Key)?;
        jwk.common.key_id = Some(kid.clone());
        jwk.common.public_key_use = Some(PublicKeyUse::Signature);
        jwk.common.x509_chain = Some(x5c.clone());
        let mut header = Header::new(ALGORITHM);
        header.kid = Some(kid);
        header.x5c = Some(x5c);
        Ok(TokenIssuer {
            issuer: config.issuer.clone(),
            service: config.service.clone(),
            ttl: Duration::from_secs(config.token_ttl_secs.max(MIN_TOKEN_TTL_SECS)),
            key,
            header,
            jwk,
        })
    }

    /// The service tokens are issued for.
    pub fn service(&self) -> &str {
        &self.service
    }

    /// The key id (`kid`) of the signing key.
    pub fn kid(&self) -> &str {
        self.header.kid.as_deref().unwrap_or_default()
    }

    /// The claims of a token for `subject` granting `access`, issued `now`.
    pub fn claims(&self, subject: &str, access: Vec<Access>, now: DateTime<Utc>) -> Claims {
        let iat = now.timestamp();
        Claims {
            iss: self.issuer.clone(),
            sub: subject.to_owned(),
            aud: self.service.clone(),
            exp: iat + self.ttl.as_secs() as i64,
            nbf: iat,
            iat,
            jti: uuid::Uuid::new_v4().to_string(),
            access,
        }
    }

    /// A signed token for `subject` granting `access`, issued `now`.
    pub fn issue(
        &self,
        subject: &str,
        access: Vec<Access>,
        now: DateTime<Utc>,
    ) -> Result<IssuedToken, IssuerError> {
        let claims = self.claims(subject, access, now);
        let token =
            jsonwebtoken::encode(&self.header, &claims, &self.key).map_err(IssuerError::Sign)?;
        Ok(IssuedToken {
            token,
            expires_in: self.ttl.as_secs(),
            issued_at: now,
        })
    }

    /// The public key as a JSON Web Key Set (distribution 3.x's `jwks`).
    pub fn jwks(&self) -> JwkSet {
        JwkSet {
            keys: vec![self.jwk.clone()],
        }
    }
}

/// Whether the certificate `der` holds the public key of `jwk`: its
/// SubjectPublicKeyInfo carries the uncompressed point `04 || x || y`
/// verbatim, so containment is enough to catch a key and a certificate that
/// were not made together.
fn certifies(der: &[u8], jwk: &Jwk) -> bool {
    let AlgorithmParameters::EllipticCurve(ec) = &jwk.algorithm else {
        return false;
    };
    let decode = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(s);
    let (Ok(x), Ok(y)) = (decode(&ec.x), decode(&ec.y)) else {
        return false;
    };
    let point: Vec<u8> = [&[0x04u8][..], &x, &y].concat();
    der.windows(point.len()).any(|w| w == point.as_slice())
}

#[cfg(test)]
mod tests {
    use jsonwebtoken::{DecodingKey, Validation, decode, decode_header};

    use super::*;
    use crate::registry_token::keys;

    fn config() -> RegistryTokenConfig {
        RegistryTokenConfig {
            enabled: true,
            issuer: "test-issuer".into(),
            service: "test-registry".into(),
            token_ttl_secs: 10,
            ..RegistryTokenConfig::default()
        }
    }

    fn issuer() -> (TokenIssuer, keys::GeneratedKeys) {
        let generated = keys::generate(keys::DEFAULT_VALIDITY_DAYS).unwrap();
        let issuer = TokenIssuer::from_pem(
            generated.key_pem().as_bytes(),
            generated.chain_pem.as_bytes(),
            &config(),
        )
        .unwrap();
        (issuer, generated)
    }

    #[test]
    fn tokens_carry_docker_claims_and_verify_with_the_chain_key() {
        let (issuer, generated) = issuer();
        let access = vec![Access {
            kind: "repository".into(),
            name: "ns1/app".into(),
            actions: vec!["pull".into()],
        }];
        let now = Utc::now();
        let issued = issuer.issue("alice", access.clone(), now).unwrap();
        assert_eq!(issued.expires_in, MIN_TOKEN_TTL_SECS, "the TTL floor");

        let header = decode_header(&issued.token).unwrap();
        assert_eq!(header.alg, Algorithm::ES256);
        assert_eq!(header.kid.as_deref(), Some(issuer.kid()));
        let x5c = header.x5c.unwrap();
        assert_eq!(x5c.len(), 2, "leaf and root");
        let leaf = base64::engine::general_purpose::STANDARD
            .decode(&x5c[0])
            .unwrap();
        assert_eq!(leaf, pem::parse(&generated.chain_pem).unwrap().contents());

        let jwk = &issuer.jwks().keys[0];
        let mut validation = Validation::new(Algorithm::ES256);
        validation.set_audience(&["test-registry"]);
        validation.set_issuer(&["test-issuer"]);
        let claims = decode::<Claims>(
            &issued.token,
            &DecodingKey::from_jwk(jwk).unwrap(),
            &validation,
        )
        .unwrap()
        .claims;
        assert_eq!(claims.sub, "alice");
        assert_eq!(claims.access, access);
        assert_eq!(claims.iat, now.timestamp());
        assert_eq!(claims.nbf, claims.iat);
        assert_eq!(claims.exp, claims.iat + 60);
        assert!(!claims.jti.is_empty());

        // aud is one string, not an array: distribution 2.8 reads it so
        let payload = issued.token.split('.').nth(1).unwrap();
        let raw: serde_json::Value = serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(payload)
                .unwrap(),
        )
        .unwrap();
        assert_eq!(raw["aud"], "test-registry");
        assert_eq!(raw["access"][0]["type"], "repository");
    }

    #[test]
    fn jti_is_unique_and_the_jwks_names_the_kid() {
        let (issuer, _) = issuer();
        let a = issuer.claims("x", Vec::new(), Utc::now());
        let b = issuer.claims("x", Vec::new(), Utc::now());
        assert_ne!(a.jti, b.jti);
        let jwks = serde_json::to_value(issuer.jwks()).unwrap();
        let key = &jwks["keys"][0];
        assert_eq!(key["kid"], issuer.kid());
        assert_eq!(key["kty"], "EC");
        assert_eq!(key["crv"], "P-256");
        assert_eq!(key["use"], "sig");
        assert!(key.get("d").is_none(), "no private part");
    }

    #[test]
    fn a_key_and_a_certificate_of_another_pair_are_refused() {
        let (_, one) = issuer();
        let (_, other) = issuer();
        let mismatch = TokenIssuer::from_pem(
            one.key_pem().as_bytes(),
            other.chain_pem.as_bytes(),
            &config(),
        );
        assert!(matches!(mismatch, Err(IssuerError::Mismatch)));
        let no_cert = TokenIssuer::from_pem(one.key_pem().as_bytes(), b"", &config());
        assert!(matches!(no_cert, Err(IssuerError::NoCertificate)));
        let bad_key = TokenIssuer::from_pem(b"nope", one.chain_pem.as_bytes(), &config());
        assert!(matches!(bad_key, Err(IssuerError::Key(_))));
    }

    #[test]
    fn debug_never_shows_the_key() {
        let (issuer, generated) = issuer();
        let shown = format!("{issuer:?}");
        assert!(shown.contains("<redacted>"));
        let secret = generated.key_pem().lines().nth(1).unwrap().to_owned();
        assert!(!shown.contains(&secret));
    }
}
