//! Webhook receivers (issue 18): the tag-syncer is the single writer and
//! only reader of [`subjects::BUCKET_RECEIVERS`], and the only holder of the
//! key their secrets are sealed with (the registry secrets' key, see
//! [`crate::secrets`]).
//!
//! - **A receiver** is `<namespace>.<name>`: its kind, its secret (sealed,
//!   never returned or logged; one generated on create when none is given,
//!   returned that once), an optional repository allow-list, paused, and the
//!   outcome of its last delivery.
//! - **Its URL** is `/hooks/<id>` with a random 256-bit id, not derived from
//!   the name or the secret, so that a secret can change without the URL and
//!   the URL says nothing of the namespace. `_ids.<id>` maps the id to the
//!   receiver (written after it on create, deleted before it on delete: a
//!   dangling id only ever finds nothing).
//! - **Operations** (NATS request-reply behind the gateway's `Receivers`):
//!   `receivers.{create,get,list,delete}`.

use async_nats::jetstream::kv;
use base64::Engine as _;
use chrono::Utc;
use imagestreams_common::{error::ApiError, model::format_timestamp, subjects};
use imagestreams_proto::v1 as proto;
use imagestreams_receivers::{Check, Kind};
use imagestreams_tag_syncer_api::check_names;
use rand::Rng as _;
use serde::{Deserialize, Serialize};

use crate::secrets::SecretStore;

/// The path receivers are served under.
pub const HOOKS_PATH: &str = "/hooks";
/// Bytes of a generated secret or URL id (hex-encoded: twice as many characters).
const RANDOM_BYTES: usize = 32;

/// A receiver as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredReceiver {
    /// Its uid: events of a deleted receiver's namesake are told apart.
    pub uid: String,
    /// The id in its URL.
    pub id: String,
    /// The sender.
    pub kind: Kind,
    /// The secret, sealed (base64); empty for kinds without one.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sealed_secret: String,
    /// Repositories it may name; empty: any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub repositories: Vec<String>,
    /// Deliveries are answered 503 while paused.
    #[serde(default)]
    pub paused: bool,
    /// RFC 3339.
    pub created: String,
    /// GAR: the token's expected audience.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub oidc_audience: String,
    /// GAR: the token's expected service account.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub oidc_email: String,
    /// The last delivery.
    #[serde(default)]
    pub status: Status,
}

/// The last delivery of a receiver.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    /// RFC 3339; empty before the first.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub last_delivery_time: String,
    /// What came of it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub last_outcome: String,
    /// The sender's delivery id.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub last_delivery_id: String,
}

/// A receiver found by its URL id: where it lives, as stored, and the
/// revision to update its status at.
#[derive(Debug, Clone)]
pub struct Found {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// As stored.
    pub receiver: StoredReceiver,
    /// The entry's revision.
    pub revision: u64,
}

/// Whether `repository` (`host/path`, normal form) is one `allowed` names:
/// equal, or under a pattern ending in `*`.
pub fn allowed(allowed: &[String], repository: &str) -> bool {
    allowed.is_empty()
        || allowed
            .iter()
            .any(|pattern| match pattern.strip_suffix('*') {
                Some(prefix) => repository.starts_with(prefix),
                None => pattern == repository,
            })
}

fn unavailable(e: impl std::fmt::Display) -> ApiError {
    ApiError::Unavailable(format!("receivers storage unavailable: {e}"))
}

fn id_key(id: &str) -> String {
    format!("_ids.{id}")
}

fn random_hex() -> String {
    let bytes: [u8; RANDOM_BYTES] = rand::rng().random();
    hex::encode(bytes)
}

/// The receivers bucket.
#[derive(Debug)]
pub struct ReceiverStore {
    kv: kv::Store,
    secrets: std::sync::Arc<SecretStore>,
    base_url: String,
}

impl ReceiverStore {
    /// The store of `kv`, sealing with `secrets`' key; URLs start with
    /// `base_url` (`http://host:port`).
    pub fn new(kv: kv::Store, secrets: std::sync::Arc<SecretStore>, base_url: String) -> Self {
        ReceiverStore {
            kv,
            secrets,
            base_url: base_url.trim_end_matches('/').to_owned(),
        }
    }

    fn to_proto(&self, namespace: &str, name: &str, r: &StoredReceiver) -> proto::Receiver {
        let path = format!("{HOOKS_PATH}/{}", r.id);
        proto::Receiver {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            uid: r.uid.clone(),
            r#type: r.kind.name().to_owned(),
            url: format!("{}{path}", self.base_url),
            path,
            repositories: r.repositories.clone(),
            paused: r.paused,
            weakly_authenticated: r.kind.check().is_weak(),
            creation_timestamp: r.created.clone(),
            status: Some(proto::ReceiverStatus {
                last_delivery_time: r.status.last_delivery_time.clone(),
                last_outcome: r.status.last_outcome.clone(),
                last_delivery_id: r.status.last_delivery_id.clone(),
            }),
            oidc_audience: r.oidc_audience.clone(),
            oidc_email: r.oidc_email.clone(),
        }
    }

    /// Creates a receiver; `AlreadyExists` when the name is taken.
    pub async fn create(
        &self,
        request: proto::CreateReceiverRequest,
    ) -> Result<proto::CreateReceiverResponse, ApiError> {
        check_names(&request.namespace, &request.name)?;
        let kind: Kind =
            request
                .r#type
                .parse()
                .map_err(|e: imagestreams_receivers::kind::UnknownKind| {
                    ApiError::invalid("type", e.to_string())
                })?;
        for repository in &request.repositories {
            if repository.trim().is_empty() || repository.contains(char::is_whitespace) {
                return Err(ApiError::invalid(
                    "repositories",
                    format!("repositories: Invalid value: {repository:?}"),
                ));
            }
        }
        let key = subjects::stream_key(&request.namespace, &request.name);
        let (secret, generated) = match (kind.check(), request.secret.as_str()) {
            (Check::UrlOnly, "") | (Check::Oidc, "") => (String::new(), false),
            (Check::UrlOnly, _) => {
                return Err(ApiError::invalid(
                    "secret",
                    format!(
                        "{kind} cannot send a secret: its receiver's URL is the only secret (shown weakly authenticated)"
                    ),
                ));
            }
            (Check::Oidc, _) => {
                return Err(ApiError::invalid(
                    "secret",
                    "gar receivers check Google's signed token: give --oidc-audience and --oidc-email, not a secret",
                ));
            }
            (_, "") => (random_hex(), true),
            (_, given) => (given.to_owned(), false),
        };
        if kind.check() == Check::Oidc
            && (request.oidc_audience.is_empty() || request.oidc_email.is_empty())
        {
            return Err(ApiError::invalid(
                "oidcAudience",
                "gar receivers need the audience and the service account of the push subscription's token",
            ));
        }
        let sealed_secret = if secret.is_empty() {
            String::new()
        } else {
            base64::engine::general_purpose::STANDARD
                .encode(self.secrets.seal(&aad(&key), secret.as_bytes())?)
        };
        let receiver = StoredReceiver {
            uid: uuid::Uuid::new_v4().to_string(),
            id: random_hex(),
            kind,
            sealed_secret,
            repositories: request.repositories.clone(),
            paused: request.paused,
            created: format_timestamp(Utc::now()),
            oidc_audience: request.oidc_audience.clone(),
            oidc_email: request.oidc_email.clone(),
            status: Status::default(),
        };
        let value = serde_json::to_vec(&receiver)
            .map_err(|e| ApiError::Internal(format!("cannot encode a receiver: {e}")))?;
        match self.kv.create(&key, value.into()).await {
            Ok(_) => {}
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => {
                return Err(ApiError::AlreadyExists(format!(
                    "receivers \"{}\" already exists",
                    request.name
                )));
            }
            Err(e) => return Err(unavailable(e)),
        }
        self.kv
            .put(&id_key(&receiver.id), key.clone().into())
            .await
            .map_err(unavailable)?;
        tracing::info!(namespace = %request.namespace, name = %request.name, kind = %kind, "receiver created");
        Ok(proto::CreateReceiverResponse {
            receiver: Some(self.to_proto(&request.namespace, &request.name, &receiver)),
            generated_secret: if generated { secret } else { String::new() },
        })
    }

    async fn read(&self, key: &str) -> Result<Option<(StoredReceiver, u64)>, ApiError> {
        match self.kv.entry(key).await.map_err(unavailable)? {
            Some(entry) if entry.operation == kv::Operation::Put => {
                let receiver = serde_json::from_slice(&entry.value)
                    .map_err(|e| ApiError::Internal(format!("undecodable receiver {key}: {e}")))?;
                Ok(Some((receiver, entry.revision)))
            }
            _ => Ok(None),
        }
    }

    /// One receiver; `NotFound` when there is none.
    pub async fn get(&self, namespace: &str, name: &str) -> Result<proto::Receiver, ApiError> {
        check_names(namespace, name)?;
        let key = subjects::stream_key(namespace, name);
        match self.read(&key).await? {
            Some((receiver, _)) => Ok(self.to_proto(namespace, name, &receiver)),
            None => Err(not_found(name)),
        }
    }

    /// Deletes a receiver (its URL id first); `NotFound` when there is none.
    pub async fn delete(&self, namespace: &str, name: &str) -> Result<(), ApiError> {
        check_names(namespace, name)?;
        let key = subjects::stream_key(namespace, name);
        let Some((receiver, _)) = self.read(&key).await? else {
            return Err(not_found(name));
        };
        self.kv
            .delete(&id_key(&receiver.id))
            .await
            .map_err(unavailable)?;
        self.kv.delete(&key).await.map_err(unavailable)?;
        tracing::info!(%namespace, %name, "receiver deleted");
        Ok(())
    }

    /// The receivers of `namespace` by name, or of every namespace (by
    /// namespace and name) when it is empty.
    pub async fn list(&self, namespace: &str) -> Result<Vec<proto::Receiver>, ApiError> {
        let namespace = match namespace {
            "" => None,
            namespace if imagestreams_common::model::is_dns1123_label(namespace) => Some(namespace),
            namespace => {
                return Err(ApiError::invalid(
                    "namespace",
                    format!("namespace: Invalid value: {namespace:?}: must be a DNS-1123 label"),
                ));
            }
        };
        let entries = crate::kv_scan::entries(&self.kv, namespace, "receivers").await?;
        Ok(entries
            .into_iter()
            .filter_map(|((namespace, name), value)| {
                let receiver = serde_json::from_slice::<StoredReceiver>(&value).ok()?;
                Some(self.to_proto(&namespace, &name, &receiver))
            })
            .collect())
    }

    /// The receiver whose URL id is `id`, if any.
    pub async fn by_id(&self, id: &str) -> Result<Option<Found>, ApiError> {
        if id.len() != RANDOM_BYTES * 2 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(None);
        }
        let Some(entry) = self.kv.entry(id_key(id)).await.map_err(unavailable)? else {
            return Ok(None);
        };
        if entry.operation != kv::Operation::Put {
            return Ok(None);
        }
        let key = String::from_utf8_lossy(&entry.value).into_owned();
        let Some((namespace, name)) = subjects::parse_stream_key(&key) else {
            return Ok(None);
        };
        Ok(self
            .read(&key)
            .await?
            .filter(|(receiver, _)| receiver.id == id)
            .map(|(receiver, revision)| Found {
                namespace,
                name,
                receiver,
                revision,
            }))
    }

    /// The secret of `found`, opened.
    pub fn secret(&self, found: &Found) -> Result<Vec<u8>, ApiError> {
        if found.receiver.sealed_secret.is_empty() {
            return Ok(Vec::new());
        }
        let sealed = base64::engine::general_purpose::STANDARD
            .decode(&found.receiver.sealed_secret)
            .map_err(|e| ApiError::Internal(format!("a receiver's secret is not base64: {e}")))?;
        let key = subjects::stream_key(&found.namespace, &found.name);
        self.secrets.open(&aad(&key), &sealed)
    }

    /// Records the last delivery of `found` (compare-and-swap: a receiver
    /// deleted or changed meanwhile is left as it is).
    pub async fn record(&self, found: &Found, outcome: &str, delivery_id: &str) {
        let mut receiver = found.receiver.clone();
        receiver.status = Status {
            last_delivery_time: format_timestamp(Utc::now()),
            last_outcome: outcome.to_owned(),
            last_delivery_id: delivery_id.to_owned(),
        };
        let Ok(value) = serde_json::to_vec(&receiver) else {
            return;
        };
        let key = subjects::stream_key(&found.namespace, &found.name);
        if let Err(error) = self.kv.update(&key, value.into(), found.revision).await {
            tracing::debug!(%key, error = imagestreams_common::error::chain(&error), "receiver status not recorded");
        }
    }

    /// Answers one receivers request (`op` ∈ receivers.create, .get, .list, .delete).
    pub async fn handle(&self, op: &str, payload: &[u8]) -> proto::ReceiversReply {
        use prost::Message as _;
        use proto::receivers_reply::Result as Reply;
        let malformed =
            |e: prost::DecodeError| ApiError::invalid("", format!("malformed request: {e}"));
        let list = |items| Reply::Receivers(proto::ListReceiversResponse { items });
        let result = match op {
            "receivers.create" => match proto::CreateReceiverRequest::decode(payload) {
                Ok(r) => self.create(r).await.map(Reply::Created),
                Err(e) => Err(malformed(e)),
            },
            "receivers.get" => match proto::GetReceiverRequest::decode(payload) {
                Ok(r) => self.get(&r.namespace, &r.name).await.map(|r| list(vec![r])),
                Err(e) => Err(malformed(e)),
            },
            "receivers.list" => match proto::ListReceiversRequest::decode(payload) {
                Ok(r) => self.list(&r.namespace).await.map(list),
                Err(e) => Err(malformed(e)),
            },
            "receivers.delete" => match proto::DeleteReceiverRequest::decode(payload) {
                Ok(r) => self
                    .delete(&r.namespace, &r.name)
                    .await
                    .map(|()| list(Vec::new())),
                Err(e) => Err(malformed(e)),
            },
            other => Err(ApiError::invalid(
                "",
                format!("unknown operation {other:?}"),
            )),
        };
        proto::ReceiversReply {
            result: Some(result.unwrap_or_else(|error| {
                if matches!(error, ApiError::Internal(_) | ApiError::Unavailable(_)) {
                    tracing::warn!(
                        op,
                        error = imagestreams_common::error::chain(&error),
                        "receivers request failed"
                    );
                }
                Reply::Error(error.into())
            })),
        }
    }
}

/// The additional data a receiver's secret is sealed with: its entry, so
/// that a sealed value moved to another entry does not open.
fn aad(key: &str) -> String {
    format!("receiver:{key}")
}

fn not_found(name: &str) -> ApiError {
    ApiError::NotFound(format!("receivers \"{name}\" not found"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allow_lists_take_exact_names_and_prefixes() {
        assert!(allowed(&[], "docker.io/library/nginx"));
        let list = vec![
            "docker.io/library/nginx".to_owned(),
            "ghcr.io/org/*".to_owned(),
        ];
        assert!(allowed(&list, "docker.io/library/nginx"));
        assert!(!allowed(&list, "docker.io/library/nginx2"));
        assert!(allowed(&list, "ghcr.io/org/app"));
        assert!(!allowed(&list, "ghcr.io/other/app"));
    }
}
