//! The token service's key pair and certificates, as `imagestreams
//! registry-keys generate` makes them: a P-256 root CA that only signs, and
//! the signing key's certificate issued by it.
//!
//! | file | holds | goes to |
//! |---|---|---|
//! | [`KEY_FILE`] (mode 0600) | the signing key, PEM PKCS#8 | `auth.registry.key_file` |
//! | [`CERT_FILE`] | its certificate, then the root's | `auth.registry.cert_file` |
//! | [`ROOT_CERT_BUNDLE_FILE`] | the root certificate | the registry's `auth.token.rootcertbundle` (distribution 2.8) |
//! | [`JWKS_FILE`] | the public key as a JWK Set | the registry's `auth.token.jwks` (distribution 3.x) |
//!
//! The root's key is not kept: to rotate, generate again and hand the
//! registry the new bundle. Distribution verifies each token's `x5c` chain
//! against the bundle's pool, so the leaf and the root travel in every token.

use std::{
    io::Write as _,
    path::{Path, PathBuf},
};

use chrono::{Datelike as _, Utc};
use imagestreams_common::config::RegistryTokenConfig;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PKCS_ECDSA_P256_SHA256,
};

use super::issuer::{IssuerError, TokenIssuer};

/// The signing key's file name.
pub const KEY_FILE: &str = "token.key";
/// The certificate chain's file name.
pub const CERT_FILE: &str = "token.crt";
/// The root certificate's file name (the registry's `rootcertbundle`).
pub const ROOT_CERT_BUNDLE_FILE: &str = "rootcertbundle.pem";
/// The JWK Set's file name (the registry's `jwks`).
pub const JWKS_FILE: &str = "jwks.json";
/// How long the certificates are valid, in days (a registry refuses every
/// token once the leaf expires).
pub const DEFAULT_VALIDITY_DAYS: u32 = 5 * 365;

/// Why the keys could not be made or written.
#[derive(Debug, thiserror::Error)]
pub enum KeysError {
    /// Key or certificate generation failed.
    #[error("cannot generate the registry token keys")]
    Generate(#[source] rcgen::Error),
    /// The generated pair did not load (a bug).
    #[error("the generated registry token keys do not load")]
    Load(#[source] IssuerError),
    /// A file exists and `force` was not given.
    #[error("{0} exists; pass --force to replace the keys")]
    Exists(PathBuf),
    /// A file could not be written.
    #[error("cannot write {path}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
}

/// A generated key pair and its certificates, in PEM.
pub struct GeneratedKeys {
    key_pem: String,
    /// The signing key's certificate, then the root's.
    pub chain_pem: String,
    /// The root certificate.
    pub root_pem: String,
    /// The public key as a JWK Set (JSON).
    pub jwks_json: String,
}

impl std::fmt::Debug for GeneratedKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GeneratedKeys")
            .field("key_pem", &"<redacted>")
            .finish_non_exhaustive()
    }
}

impl GeneratedKeys {
    /// The private key, PEM PKCS#8, for the one place that writes it.
    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }
}

/// Where [`write`] put the files.
#[derive(Debug, Clone)]
pub struct KeyFiles {
    /// [`KEY_FILE`].
    pub key: PathBuf,
    /// [`CERT_FILE`].
    pub cert: PathBuf,
    /// [`ROOT_CERT_BUNDLE_FILE`].
    pub root_cert_bundle: PathBuf,
    /// [`JWKS_FILE`].
    pub jwks: PathBuf,
}

impl KeyFiles {
    /// The files' paths in `dir`.
    pub fn in_dir(dir: &Path) -> Self {
        KeyFiles {
            key: dir.join(KEY_FILE),
            cert: dir.join(CERT_FILE),
            root_cert_bundle: dir.join(ROOT_CERT_BUNDLE_FILE),
            jwks: dir.join(JWKS_FILE),
        }
    }
}

/// Certificate parameters for `common_name` in organization `imagestreams`,
/// valid from a day back (a peer whose clock is a little behind accepts it
/// at once) for `days` days. Also the Kubernetes-compatible API's local CA
/// and serving certificate ([`crate::kube::pki`]).
pub(crate) fn params(common_name: &str, days: u32) -> Result<CertificateParams, rcgen::Error> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    let mut name = DistinguishedName::new();
    name.push(DnType::OrganizationName, "imagestreams");
    name.push(DnType::CommonName, common_name);
    params.distinguished_name = name;
    let date = |d: chrono::DateTime<Utc>| {
        // can't fail: chrono's month and day fit in a u8
        rcgen::date_time_ymd(d.year(), d.month() as u8, d.day() as u8)
    };
    // a day back: a registry whose clock is a little behind accepts it at once
    let now = Utc::now();
    params.not_before = date(now - chrono::Duration::days(1));
    params.not_after = date(now + chrono::Duration::days(i64::from(days)));
    Ok(params)
}

/// A new root CA and a signing key certified by it, valid `days` days.
pub fn generate(days: u32) -> Result<GeneratedKeys, KeysError> {
    let root_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(KeysError::Generate)?;
    let mut root_params =
        params("imagestreams registry token root", days).map_err(KeysError::Generate)?;
    root_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    root_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let root = root_params
        .self_signed(&root_key)
        .map_err(KeysError::Generate)?;
    let root_issuer = Issuer::new(root_params, root_key);

    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(KeysError::Generate)?;
    let mut leaf_params =
        params("imagestreams registry token signer", days).map_err(KeysError::Generate)?;
    leaf_params.is_ca = IsCa::ExplicitNoCa;
    leaf_params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    let leaf = leaf_params
        .signed_by(&key, &root_issuer)
        .map_err(KeysError::Generate)?;

    let key_pem = key.serialize_pem();
    let chain_pem = format!("{}{}", leaf.pem(), root.pem());
    // the generated pair must load as the gateway loads it; this also makes the JWKS
    let issuer = TokenIssuer::from_pem(
        key_pem.as_bytes(),
        chain_pem.as_bytes(),
        &RegistryTokenConfig::default(),
    )
    .map_err(KeysError::Load)?;
    let jwks_json = serde_json::to_string_pretty(&issuer.jwks())
        .unwrap_or_else(|_| unreachable!("a JWK Set serializes"));
    Ok(GeneratedKeys {
        key_pem,
        chain_pem,
        root_pem: root.pem(),
        jwks_json,
    })
}

/// Writes `keys` into `dir` (created when missing): the key with mode 0600.
/// Existing files are refused unless `force`.
pub fn write(dir: &Path, keys: &GeneratedKeys, force: bool) -> Result<KeyFiles, KeysError> {
    let files = KeyFiles::in_dir(dir);
    let all = [
        (&files.key, keys.key_pem.as_str(), true),
        (&files.cert, keys.chain_pem.as_str(), false),
        (&files.root_cert_bundle, keys.root_pem.as_str(), false),
        (&files.jwks, keys.jwks_json.as_str(), false),
    ];
    if !force && let Some((path, ..)) = all.iter().find(|(path, ..)| path.exists()) {
        return Err(KeysError::Exists((*path).clone()));
    }
    std::fs::create_dir_all(dir).map_err(|source| KeysError::Write {
        path: dir.to_owned(),
        source,
    })?;
    for (path, contents, private) in all {
        write_file(path, contents, private).map_err(|source| KeysError::Write {
            path: path.clone(),
            source,
        })?;
    }
    Ok(files)
}

fn write_file(path: &Path, contents: &str, private: bool) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
        let mode = if private { 0o600 } else { 0o644 };
        options.mode(mode);
        let mut file = options.open(path)?;
        // an existing file keeps its mode on open: set it
        file.set_permissions(std::fs::Permissions::from_mode(mode))?;
        file.write_all(contents.as_bytes())
    }
    #[cfg(not(unix))]
    {
        let _ = private;
        options.open(path)?.write_all(contents.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_files_load_and_the_key_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let keys = generate(DEFAULT_VALIDITY_DAYS).unwrap();
        assert!(!format!("{keys:?}").contains(keys.key_pem()));
        let files = write(dir.path(), &keys, false).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&files.key), 0o600);
            assert_eq!(mode(&files.cert), 0o644);
        }
        let config = RegistryTokenConfig {
            key_file: files.key.clone(),
            cert_file: files.cert.clone(),
            ..RegistryTokenConfig::default()
        };
        let issuer = TokenIssuer::load(&config).unwrap();
        let jwks: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&files.jwks).unwrap()).unwrap();
        assert_eq!(jwks["keys"][0]["kid"], issuer.kid());
        // the bundle is the chain's last certificate
        let chain = pem::parse_many(&keys.chain_pem).unwrap();
        let root = pem::parse(std::fs::read(&files.root_cert_bundle).unwrap()).unwrap();
        assert_eq!(chain.len(), 2);
        assert_eq!(chain[1].contents(), root.contents());
        assert!(matches!(
            write(dir.path(), &keys, false),
            Err(KeysError::Exists(_))
        ));
        write(dir.path(), &generate(1).unwrap(), true).unwrap();
    }
}
