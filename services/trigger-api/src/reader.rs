//! The stored form (JSON values with their KV revisions) and the read side
//! every service may use: [`TriggerReader`] over the two buckets.

use super::*;

/// A stored value with the KV revision it was read at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored<T> {
    /// The value.
    pub value: T,
    /// Its KV revision.
    pub revision: u64,
}

/// Decodes a stored JSON value.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError::Internal(format!("undecodable stored value: {e}")))
}

/// Encodes a value for the KV.
pub fn encode<T: Serialize>(value: &T) -> Result<Bytes, ApiError> {
    serde_json::to_vec(value)
        .map(Bytes::from)
        .map_err(|e| ApiError::Internal(format!("cannot encode value: {e}")))
}

/// Formats unix milliseconds as RFC 3339 UTC with milliseconds.
pub fn format_millis(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

/// `trigger "<name>" not found`.
pub fn trigger_not_found(namespace: &str, name: &str) -> ApiError {
    ApiError::NotFound(format!(
        "triggers \"{name}\" not found in namespace \"{namespace}\""
    ))
}

/// An `Invalid` error whose message starts with the field, as Kubernetes words it.
pub(crate) fn invalid(field: impl Into<String>, detail: impl fmt::Display) -> ApiError {
    let field = field.into();
    let message = format!("{field}: {detail}");
    ApiError::invalid(field, message)
}

pub(crate) fn unavailable(e: impl fmt::Display) -> ApiError {
    ApiError::Unavailable(format!("storage unavailable: {e}"))
}

/// Reads triggers and firings from their KV buckets.
#[derive(Clone, Debug)]
pub struct TriggerReader {
    triggers: kv::Store,
    firings: kv::Store,
}

impl TriggerReader {
    /// A reader of the two buckets ([`imagestreams_common::nats::Topology::triggers`] and
    /// [`imagestreams_common::nats::Topology::firings`]).
    pub fn new(triggers: kv::Store, firings: kv::Store) -> Self {
        TriggerReader { triggers, firings }
    }

    /// One trigger, if it exists.
    pub async fn entry(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<Stored<Trigger>>, ApiError> {
        read_entry(&self.triggers, subjects::trigger_key(namespace, name)).await
    }

    /// One trigger; `NotFound` when it does not exist.
    pub async fn get(&self, namespace: &str, name: &str) -> Result<Stored<Trigger>, ApiError> {
        self.entry(namespace, name)
            .await?
            .ok_or_else(|| trigger_not_found(namespace, name))
    }

    /// Every trigger of `namespace` (all when `None`), sorted by namespace and name.
    pub async fn list(&self, namespace: Option<&str>) -> Result<Vec<Stored<Trigger>>, ApiError> {
        let filter = match namespace {
            Some(ns) => subjects::namespace_keys(ns),
            None => ">".to_owned(),
        };
        let mut items: Vec<Stored<Trigger>> = scan(&self.triggers, &filter).await?;
        items.sort_by(|a, b| {
            (&a.value.namespace, &a.value.name).cmp(&(&b.value.namespace, &b.value.name))
        });
        Ok(items)
    }

    /// One firing, if it exists.
    pub async fn firing(
        &self,
        namespace: &str,
        trigger: &str,
        id: &str,
    ) -> Result<Option<Stored<Firing>>, ApiError> {
        read_entry(&self.firings, subjects::firing_key(namespace, trigger, id)).await
    }

    /// The firings of a namespace (all when `None`) and trigger (all when
    /// `None`), newest first.
    pub async fn firings(
        &self,
        namespace: Option<&str>,
        trigger: Option<&str>,
    ) -> Result<Vec<Stored<Firing>>, ApiError> {
        let mut items: Vec<Stored<Firing>> =
            scan(&self.firings, &subjects::firing_keys(namespace, trigger)).await?;
        items.sort_by(|a, b| {
            b.value
                .time
                .cmp(&a.value.time)
                .then(b.revision.cmp(&a.revision))
        });
        Ok(items)
    }

    /// The wire form of a trigger, with its last firing's delivery.
    pub async fn to_proto(&self, trigger: &Stored<Trigger>) -> Result<proto::Trigger, ApiError> {
        let t = &trigger.value;
        let last = if t.status.last_firing.is_empty() {
            None
        } else {
            self.firing(&t.namespace, &t.name, &t.status.last_firing)
                .await?
        };
        Ok(t.to_proto(trigger.revision, last.as_ref().map(|f| &f.value.delivery)))
    }
}

/// One entry of `kv`, decoded with its revision; `None` when absent or
/// deleted. A read that fails is `Unavailable` (to retry), never taken for
/// an absent entry.
pub async fn read_entry<T: DeserializeOwned>(
    kv: &kv::Store,
    key: String,
) -> Result<Option<Stored<T>>, ApiError> {
    match kv.entry(key).await.map_err(unavailable)? {
        Some(e) if e.operation == kv::Operation::Put => Ok(Some(Stored {
            value: decode(&e.value)?,
            revision: e.revision,
        })),
        _ => Ok(None),
    }
}

/// Every live entry of `kv` under the key filter, decoded.
pub async fn scan<T: DeserializeOwned>(
    kv: &kv::Store,
    filter: &str,
) -> Result<Vec<Stored<T>>, ApiError> {
    let stream = kv.stream.clone();
    let consumer = stream
        .create_consumer(OrderedConfig {
            filter_subject: format!("$KV.{}.{filter}", kv.name),
            deliver_policy: DeliverPolicy::LastPerSubject,
            ..Default::default()
        })
        .await
        .map_err(unavailable)?;
    let mut items = Vec::new();
    if consumer.cached_info().num_pending == 0 {
        return Ok(items);
    }
    let mut messages = consumer.messages().await.map_err(unavailable)?;
    loop {
        let next = tokio::time::timeout(DEFAULT_SCAN_TIMEOUT, messages.next())
            .await
            .map_err(|_| ApiError::Unavailable("storage scan timed out".into()))?;
        let Some(message) = next else { break };
        let message = message.map_err(unavailable)?;
        let info = message.info().map_err(unavailable)?;
        let (pending, revision) = (info.pending, info.stream_sequence);
        if !imagestreams_common::nats::removes_key(&message) {
            items.push(Stored {
                value: decode(&message.payload)?,
                revision,
            });
        }
        if pending == 0 {
            break;
        }
    }
    Ok(items)
}
