//! The entries of one namespace in a KV bucket keyed `<namespace>.<name>`
//! (the registry secrets, the receivers): the last value of each live key,
//! read with an ordered consumer (`LastPerSubject`), which ends when the
//! bucket has nothing more to deliver.

use std::collections::BTreeMap;

use async_nats::jetstream::{
    consumer::{DeliverPolicy, pull::OrderedConfig},
    kv,
};
use bytes::Bytes;
use futures::StreamExt as _;
use imagestreams_common::{error::ApiError, subjects};

/// How long a listing waits for the next entry before it gives up.
const SCAN_IDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The live entries of `namespace` in `kv`, by name; `what` names them in
/// errors (`secrets`, `receivers`).
pub async fn namespace_entries(
    kv: &kv::Store,
    namespace: &str,
    what: &str,
) -> Result<BTreeMap<String, Bytes>, ApiError> {
    Ok(entries(kv, Some(namespace), what)
        .await?
        .into_iter()
        .map(|((_, name), value)| (name, value))
        .collect())
}

/// The live entries of `namespace` in `kv`, or of every namespace (keys
/// whose namespace is not a DNS-1123 label, as `_ids.<id>`, are left out),
/// by `(namespace, name)`.
pub async fn entries(
    kv: &kv::Store,
    namespace: Option<&str>,
    what: &str,
) -> Result<BTreeMap<(String, String), Bytes>, ApiError> {
    let unavailable = |e: &dyn std::fmt::Display| {
        ApiError::Unavailable(format!("{what} storage unavailable: {e}"))
    };
    let prefix = format!("$KV.{}.", kv.name);
    let consumer = kv
        .stream
        .create_consumer(OrderedConfig {
            filter_subject: match namespace {
                Some(namespace) => format!("{prefix}{}", subjects::namespace_keys(namespace)),
                None => format!("{prefix}*.*"),
            },
            deliver_policy: DeliverPolicy::LastPerSubject,
            ..Default::default()
        })
        .await
        .map_err(|e| unavailable(&e))?;
    let mut out = BTreeMap::new();
    if consumer.cached_info().num_pending == 0 {
        return Ok(out);
    }
    let mut messages = consumer.messages().await.map_err(|e| unavailable(&e))?;
    loop {
        let message = match tokio::time::timeout(SCAN_IDLE_TIMEOUT, messages.next()).await {
            Err(_) => return Err(unavailable(&format!("listing {what} stalled"))),
            Ok(None) => break,
            Ok(Some(message)) => message.map_err(|e| unavailable(&e))?,
        };
        let pending = message.info().map_err(|e| unavailable(&e))?.pending;
        let deleted = imagestreams_common::nats::removes_key(&message);
        if let Some(key) = message
            .subject
            .as_str()
            .strip_prefix(&prefix)
            .and_then(subjects::parse_stream_key)
            .filter(|(namespace, _)| imagestreams_common::model::is_dns1123_label(namespace))
        {
            if deleted {
                out.remove(&key);
            } else {
                out.insert(key, message.payload.clone());
            }
        }
        if pending == 0 {
            break;
        }
    }
    Ok(out)
}
