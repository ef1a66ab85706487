//! Registry secrets at rest: the tag-syncer is the single writer and the only
//! reader of the [`subjects::BUCKET_REGISTRY_SECRETS`] bucket, and the only
//! holder of the key ([`SecretKey`]). Each value is the JSON of a
//! [`StoredSecret`] sealed with XChaCha20-Poly1305 under the configured key,
//! with the entry's KV key (`<ns>.<name>`) as associated data, so a sealed
//! value copied under another namespace's key does not open. `Debug` of every
//! type holding key material or a password prints `<redacted>`.
//!
//! [`subjects::BUCKET_REGISTRY_SECRETS`]: imagestreams_common::subjects::BUCKET_REGISTRY_SECRETS

use std::{
    fmt,
    path::{Path, PathBuf},
};

use base64::Engine as _;
use chacha20poly1305::{
    KeyInit, XChaCha20Poly1305, XNonce,
    aead::{Aead, Payload},
};
use imagestreams_common::config::{DEFAULT_SECRETS_KEY_FILE, SecretsConfig};
use imagestreams_proto::v1 as proto;
use serde::{Deserialize, Serialize};

/// The version byte in front of every sealed value.
const SEALED_VERSION: u8 = 1;
/// Bytes of an XChaCha20 nonce.
const NONCE_LEN: usize = 24;

/// Why a key could not be loaded or a value opened. Never holds key material.
#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    /// The key file could not be read or written.
    #[error("secrets key file {path}: {source}")]
    KeyFile {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The key is not 32 bytes (raw, or base64 of them).
    #[error("the secrets key {origin} is not 32 bytes (raw, or base64 of 32 bytes)")]
    BadKey {
        /// `secrets.key` or the file's path.
        origin: String,
    },
    /// A sealed value did not open: another key, another entry, or tampered with.
    #[error("a stored secret cannot be decrypted (another key, or moved from another entry)")]
    Open,
    /// A sealed value is not one.
    #[error("a stored secret is malformed")]
    Malformed,
}

/// The 32-byte key of XChaCha20-Poly1305. `Debug` prints nothing of it.
#[derive(Clone)]
pub struct SecretKey([u8; 32]);

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey(<redacted>)")
    }
}

impl SecretKey {
    /// A fresh random key.
    pub fn generate() -> Self {
        SecretKey(rand::random())
    }

    /// A key from 32 raw bytes, or from text holding their base64 (standard,
    /// padded or not; surrounding whitespace ignored).
    pub fn from_bytes(bytes: &[u8], origin: &str) -> Result<Self, SecretsError> {
        let bad = || SecretsError::BadKey {
            origin: origin.to_owned(),
        };
        if let Ok(raw) = <[u8; 32]>::try_from(bytes) {
            return Ok(SecretKey(raw));
        }
        let text = std::str::from_utf8(bytes).map_err(|_| bad())?.trim();
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(text)
            .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(text))
            .map_err(|_| bad())?;
        <[u8; 32]>::try_from(decoded.as_slice())
            .map(SecretKey)
            .map_err(|_| bad())
    }

    /// Reads the key of `path`.
    pub fn read(path: &Path) -> Result<Self, SecretsError> {
        let bytes = std::fs::read(path).map_err(|source| SecretsError::KeyFile {
            path: path.to_owned(),
            source,
        })?;
        Self::from_bytes(&bytes, &path.display().to_string())
    }

    /// Reads the key of `path`, or creates it (base64, mode 0600, parent
    /// directories made) when the file does not exist. Returns whether it was created.
    pub fn read_or_create(path: &Path) -> Result<(Self, bool), SecretsError> {
        if path.exists() {
            return Ok((Self::read(path)?, false));
        }
        let io = |source| SecretsError::KeyFile {
            path: path.to_owned(),
            source,
        };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(io)?;
        }
        let key = Self::generate();
        let text = base64::engine::general_purpose::STANDARD.encode(key.0) + "\n";
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            options.mode(0o600);
        }
        match options.open(path) {
            Ok(mut file) => {
                use std::io::Write as _;
                file.write_all(text.as_bytes()).map_err(io)?;
                file.sync_all().map_err(io)?;
                Ok((key, true))
            }
            // another process created it meanwhile: use theirs
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                Ok((Self::read(path)?, false))
            }
            Err(e) => Err(io(e)),
        }
    }

    /// The configured key: `secrets.key`, else `secrets.key_file`; `None`
    /// when neither is set (see [`SecretKey::default_file`]).
    pub fn configured(config: &SecretsConfig) -> Result<Option<Self>, SecretsError> {
        if let Some(key) = config.key.as_ref().filter(|k| !k.expose().is_empty()) {
            return Self::from_bytes(key.expose().as_bytes(), "secrets.key").map(Some);
        }
        match &config.key_file {
            Some(path) => Self::read(path).map(Some),
            None => Ok(None),
        }
    }

    /// Where the key is kept when none is configured.
    pub fn default_file() -> PathBuf {
        PathBuf::from(DEFAULT_SECRETS_KEY_FILE)
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new((&self.0).into())
    }

    /// Seals `plaintext` bound to `aad`: version, random nonce, ciphertext and tag.
    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
        let nonce: [u8; NONCE_LEN] = rand::random();
        let sealed = self
            .cipher()
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            // can't fail: XChaCha20-Poly1305 encrypts any message under 256 GiB
            .expect("encryption");
        let mut out = Vec::with_capacity(1 + NONCE_LEN + sealed.len());
        out.push(SEALED_VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        out
    }

    /// Opens what [`seal`](Self::seal) made with the same key and `aad`.
    pub fn open(&self, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, SecretsError> {
        let (version, rest) = sealed.split_first().ok_or(SecretsError::Malformed)?;
        if *version != SEALED_VERSION || rest.len() < NONCE_LEN {
            return Err(SecretsError::Malformed);
        }
        let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
        self.cipher()
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad,
                },
            )
            .map_err(|_| SecretsError::Open)
    }
}

/// A registry secret as sealed in the bucket (the namespace and name are its key).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredSecret {
    /// `host[:port][/path]`.
    pub server: String,
    /// The user name.
    pub username: String,
    /// The password or token.
    pub password: String,
    /// RFC 3339 UTC.
    pub created: String,
}

impl fmt::Debug for StoredSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredSecret")
            .field("server", &self.server)
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field("created", &self.created)
            .finish()
    }
}

impl StoredSecret {
    /// Seals the secret for the KV entry `key`.
    pub fn seal(&self, secret_key: &SecretKey, key: &str) -> Vec<u8> {
        // can't fail: a struct of strings always serializes
        let json = serde_json::to_vec(self).expect("serializable");
        secret_key.seal(key.as_bytes(), &json)
    }

    /// Opens the value of the KV entry `key`.
    pub fn open(secret_key: &SecretKey, key: &str, sealed: &[u8]) -> Result<Self, SecretsError> {
        let json = secret_key.open(key.as_bytes(), sealed)?;
        serde_json::from_slice(&json).map_err(|_| SecretsError::Malformed)
    }

    /// The API's view: no password.
    pub fn to_proto(&self, namespace: &str, name: &str) -> proto::RegistrySecret {
        proto::RegistrySecret {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            server: self.server.clone(),
            username: self.username.clone(),
            creation_timestamp: self.created.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use imagestreams_common::config::Secret;

    use super::*;

    fn stored() -> StoredSecret {
        StoredSecret {
            server: "127.0.0.1:5000".into(),
            username: "u".into(),
            password: "hunter2-secret".into(),
            created: "2025-01-01T00:00:00Z".into(),
        }
    }

    #[test]
    fn sealed_values_open_only_with_their_key_and_entry() {
        let key = SecretKey::generate();
        let sealed = stored().seal(&key, "ns1.pull");
        assert!(
            !String::from_utf8_lossy(&sealed).contains("hunter2"),
            "encrypted at rest"
        );
        assert_eq!(
            StoredSecret::open(&key, "ns1.pull", &sealed).unwrap(),
            stored()
        );
        assert!(matches!(
            StoredSecret::open(&key, "ns2.pull", &sealed),
            Err(SecretsError::Open)
        ));
        assert!(matches!(
            StoredSecret::open(&SecretKey::generate(), "ns1.pull", &sealed),
            Err(SecretsError::Open)
        ));
        assert!(matches!(
            StoredSecret::open(&key, "ns1.pull", &sealed[..10]),
            Err(SecretsError::Malformed)
        ));
        let again = stored().seal(&key, "ns1.pull");
        assert_ne!(again, sealed, "a fresh nonce every time");
    }

    #[test]
    fn keys_load_from_raw_bytes_base64_and_files() {
        let raw = [7u8; 32];
        assert_eq!(SecretKey::from_bytes(&raw, "x").unwrap().0, raw);
        let b64 = base64::engine::general_purpose::STANDARD.encode(raw);
        assert_eq!(
            SecretKey::from_bytes(format!(" {b64}\n").as_bytes(), "x")
                .unwrap()
                .0,
            raw
        );
        assert!(SecretKey::from_bytes(b"short", "x").is_err());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/secrets.key");
        let (created, fresh) = SecretKey::read_or_create(&path).unwrap();
        assert!(fresh);
        let (read, fresh) = SecretKey::read_or_create(&path).unwrap();
        assert!(!fresh);
        assert_eq!(created.0, read.0);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let config = SecretsConfig {
            key_file: Some(path),
            key: None,
        };
        assert_eq!(SecretKey::configured(&config).unwrap().unwrap().0, read.0);
        let config = SecretsConfig {
            key_file: None,
            key: Some(Secret::new(b64)),
        };
        assert_eq!(SecretKey::configured(&config).unwrap().unwrap().0, raw);
        assert!(
            SecretKey::configured(&SecretsConfig::default())
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn debug_never_shows_key_or_password() {
        let key = SecretKey::generate();
        assert_eq!(format!("{key:?}"), "SecretKey(<redacted>)");
        assert!(!format!("{:?}", stored()).contains("hunter2"));
    }
}
