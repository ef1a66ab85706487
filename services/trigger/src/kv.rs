//! Typed compare-and-swap access to the trigger service's KV buckets.

use async_nats::jetstream::kv;
use imagestreams_trigger_api::{Stored, encode, read_entry};
use serde::{Serialize, de::DeserializeOwned};

use crate::error::Error;

/// Reads one entry; `None` when absent or deleted (the readers' own read).
pub async fn read<T: DeserializeOwned>(
    store: &kv::Store,
    key: &str,
) -> Result<Option<Stored<T>>, Error> {
    Ok(read_entry(store, key.to_owned()).await?)
}

/// Writes `value` only if the entry is still at `revision`; `Conflict` otherwise.
pub async fn update<T: Serialize>(
    store: &kv::Store,
    key: &str,
    value: &T,
    revision: u64,
) -> Result<u64, Error> {
    store
        .update(key, encode(value)?, revision)
        .await
        .map_err(|e| match e.kind() {
            kv::UpdateErrorKind::WrongLastRevision => Error::Conflict {
                key: key.to_owned(),
            },
            _ => Error::unavailable(format!("cannot write {key}"), e),
        })
}

/// Creates the entry if it does not exist: `Some(revision)` when this call
/// created it, `None` when it existed.
pub async fn create<T: Serialize>(
    store: &kv::Store,
    key: &str,
    value: &T,
) -> Result<Option<u64>, Error> {
    match store.create(key, encode(value)?).await {
        Ok(revision) => Ok(Some(revision)),
        Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => Ok(None),
        Err(e) => Err(Error::unavailable(format!("cannot create {key}"), e)),
    }
}

/// The last revision written to the bucket (0 when empty).
pub async fn last_revision(store: &kv::Store) -> Result<u64, Error> {
    let mut stream = store.stream.clone();
    let info = stream
        .info()
        .await
        .map_err(|e| Error::unavailable(format!("cannot read bucket {}", store.name), e))?;
    Ok(info.state.last_sequence)
}
