//! The registry secrets of each namespace: the tag-syncer is the single
//! writer and only reader of [`subjects::BUCKET_REGISTRY_SECRETS`] and the
//! only holder of the key (see [`crate::sealing`]).
//!
//! - **Key.** `secrets.key`, else `secrets.key_file`; with neither, the file
//!   [`SecretKey::default_file`] is read when it exists, and created (mode
//!   0600, its path logged) when the first secret is stored.
//! - **Use.** [`SecretStore::keyring`] opens the secrets of one namespace
//!   only, for that namespace's imports; a value that does not open (another
//!   key, or moved from another entry) is skipped with a warning that names
//!   the entry, never its content.

use std::sync::Mutex;

use async_nats::jetstream::kv;
use bytes::Bytes;
use chrono::Utc;
use imagestreams_common::{
    config::SecretsConfig, error::ApiError, model::format_timestamp, subjects,
};
use imagestreams_proto::v1 as proto;
use imagestreams_tag_syncer_api::secrets::{NewRegistrySecret, check_names, not_found};

use crate::sealing::{SecretKey, SecretsError, StoredSecret};

use imagestreams_registry_client::{Credential, Keyring, normalize_server};

/// The secrets bucket and its key.
#[derive(Debug)]
pub struct SecretStore {
    kv: kv::Store,
    key: Mutex<Option<SecretKey>>,
}

fn unavailable(e: impl std::fmt::Display) -> ApiError {
    ApiError::Unavailable(format!("secrets storage unavailable: {e}"))
}

fn internal(e: SecretsError) -> ApiError {
    ApiError::Internal(e.to_string())
}

impl SecretStore {
    /// The store of `kv` with the configured key (or the default file's, if it exists).
    pub fn new(kv: kv::Store, config: &SecretsConfig) -> Result<Self, SecretsError> {
        let key = match SecretKey::configured(config)? {
            Some(key) => Some(key),
            None if SecretKey::default_file().exists() => {
                Some(SecretKey::read(&SecretKey::default_file())?)
            }
            None => None,
        };
        Ok(SecretStore {
            kv,
            key: Mutex::new(key),
        })
    }

    fn cached_key(&self) -> Option<SecretKey> {
        self.key
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// The key to seal with, creating the default file on first need.
    fn key_for_write(&self) -> Result<SecretKey, ApiError> {
        let mut key = self.key.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(key) = key.as_ref() {
            return Ok(key.clone());
        }
        let path = SecretKey::default_file();
        let (created, fresh) = SecretKey::read_or_create(&path).map_err(internal)?;
        if fresh {
            tracing::info!(
                path = %path.display(),
                "generated the key registry secrets are encrypted with (mode 0600); \
                 set secrets.key_file to it on every tag-syncer replica"
            );
        }
        *key = Some(created.clone());
        Ok(created)
    }

    /// The key to open with: the configured one, else the default file's if it exists by now.
    fn key_for_read(&self) -> Result<Option<SecretKey>, ApiError> {
        if let Some(key) = self.cached_key() {
            return Ok(Some(key));
        }
        let path = SecretKey::default_file();
        if !path.exists() {
            return Ok(None);
        }
        let key = SecretKey::read(&path).map_err(internal)?;
        *self.key.lock().unwrap_or_else(|p| p.into_inner()) = Some(key.clone());
        Ok(Some(key))
    }

    /// Seals `plaintext` for the entry `aad` with the secrets' key (another
    /// bucket's secrets, the receivers', use the same key).
    pub fn seal(&self, aad: &str, plaintext: &[u8]) -> Result<Vec<u8>, ApiError> {
        Ok(self.key_for_write()?.seal(aad.as_bytes(), plaintext))
    }

    /// Opens what [`seal`](Self::seal) sealed for `aad`.
    pub fn open(&self, aad: &str, sealed: &[u8]) -> Result<Vec<u8>, ApiError> {
        let key = self.key_for_read()?.ok_or_else(|| {
            ApiError::Internal(
                "secrets are stored but no key is configured (secrets.key_file)".into(),
            )
        })?;
        key.open(aad.as_bytes(), sealed).map_err(internal)
    }

    /// Creates or replaces a secret; returns it without its password.
    pub async fn create(&self, new: NewRegistrySecret) -> Result<proto::RegistrySecret, ApiError> {
        normalize_server(&new.server).ok_or_else(|| {
            ApiError::invalid(
                "server",
                format!(
                    "server: Invalid value: {:?}: must be host[:port][/path]",
                    new.server
                ),
            )
        })?;
        let key = self.key_for_write()?;
        let stored = StoredSecret {
            server: new.server,
            username: new.username,
            password: new.password.expose().to_owned(),
            created: format_timestamp(Utc::now()),
        };
        let entry = subjects::stream_key(&new.namespace, &new.name);
        self.kv
            .put(&entry, stored.seal(&key, &entry).into())
            .await
            .map_err(unavailable)?;
        tracing::info!(namespace = %new.namespace, name = %new.name, server = %stored.server, "registry secret stored");
        Ok(stored.to_proto(&new.namespace, &new.name))
    }

    /// Deletes a secret; `NotFound` when there is none.
    pub async fn delete(&self, namespace: &str, name: &str) -> Result<(), ApiError> {
        let entry = subjects::stream_key(namespace, name);
        match self.kv.entry(&entry).await.map_err(unavailable)? {
            Some(e) if e.operation == kv::Operation::Put => {}
            _ => return Err(not_found(namespace, name)),
        }
        self.kv.delete(&entry).await.map_err(unavailable)
    }

    /// The secrets of `namespace`, by name, opened; entries that do not open are skipped.
    async fn open_all(&self, namespace: &str) -> Result<Vec<(String, StoredSecret)>, ApiError> {
        let entries = self.entries(namespace).await?;
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        let Some(key) = self.key_for_read()? else {
            return Err(ApiError::Internal(
                "registry secrets are stored but no key is configured (secrets.key_file)".into(),
            ));
        };
        let mut out = Vec::with_capacity(entries.len());
        for (name, value) in entries {
            let entry = subjects::stream_key(namespace, &name);
            match StoredSecret::open(&key, &entry, &value) {
                Ok(secret) => out.push((name, secret)),
                Err(error) => {
                    tracing::warn!(%namespace, %name, error = imagestreams_common::error::chain(&error), "skipping a registry secret")
                }
            }
        }
        Ok(out)
    }

    /// The secrets of `namespace` without passwords, by name.
    pub async fn list(&self, namespace: &str) -> Result<Vec<proto::RegistrySecret>, ApiError> {
        Ok(self
            .open_all(namespace)
            .await?
            .into_iter()
            .map(|(name, secret)| secret.to_proto(namespace, &name))
            .collect())
    }

    /// The credentials of `namespace`'s imports, by server.
    pub async fn keyring(&self, namespace: &str) -> Result<Keyring, ApiError> {
        let mut keyring = Keyring::new();
        for (name, secret) in self.open_all(namespace).await? {
            let credential = Credential::basic(secret.username, secret.password);
            if let Err(error) = keyring.insert(&secret.server, credential) {
                tracing::warn!(%namespace, %name, error = imagestreams_common::error::chain(&error), "skipping a registry secret");
            }
        }
        Ok(keyring)
    }

    /// The live entries of `namespace`: `(name, sealed value)`, sorted by name.
    async fn entries(&self, namespace: &str) -> Result<Vec<(String, Bytes)>, ApiError> {
        Ok(
            crate::kv_scan::namespace_entries(&self.kv, namespace, "secrets")
                .await?
                .into_iter()
                .collect(),
        )
    }

    /// Answers one secrets request (`op` ∈ create, list, delete).
    pub async fn handle(&self, op: &str, payload: &[u8]) -> proto::SecretsReply {
        use prost::Message as _;
        let malformed =
            |e: prost::DecodeError| ApiError::invalid("", format!("malformed request: {e}"));
        let result = match op {
            "secrets.create" => match proto::CreateRegistrySecretRequest::decode(payload) {
                Ok(r) => match NewRegistrySecret::try_from(r) {
                    Ok(new) => self.create(new).await.map(|s| vec![s]),
                    Err(e) => Err(e),
                },
                Err(e) => Err(malformed(e)),
            },
            "secrets.list" => match proto::ListSecretsRequest::decode(payload) {
                Ok(r) => self.list(&r.namespace).await,
                Err(e) => Err(malformed(e)),
            },
            "secrets.delete" => match proto::DeleteSecretRequest::decode(payload) {
                Ok(r) => match check_names(&r.namespace, &r.name) {
                    Ok(()) => self
                        .delete(&r.namespace, &r.name)
                        .await
                        .map(|()| Vec::new()),
                    Err(e) => Err(e),
                },
                Err(e) => Err(malformed(e)),
            },
            other => Err(ApiError::invalid(
                "",
                format!("unknown operation {other:?}"),
            )),
        };
        proto::SecretsReply {
            result: Some(match result {
                Ok(items) => {
                    proto::secrets_reply::Result::Secrets(proto::ListSecretsResponse { items })
                }
                Err(error) => {
                    if matches!(error, ApiError::Internal(_) | ApiError::Unavailable(_)) {
                        tracing::warn!(
                            op,
                            error = imagestreams_common::error::chain(&error),
                            "secrets request failed"
                        );
                    }
                    proto::secrets_reply::Result::Error(error.into())
                }
            }),
        }
    }
}
