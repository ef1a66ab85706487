//! The image records in JetStream KV: one key per digest, created once.

use async_nats::jetstream::kv;

use super::ImageRecord;
use imagestreams_common::{error::ApiError, reference::validate_digest};

/// The image records bucket.
#[derive(Clone, Debug)]
pub struct ImageCatalog {
    kv: kv::Store,
}

/// The KV key of `digest`: `sha256:abc…` → `sha256.abc…` (KV keys have no `:`).
pub fn catalog_key(digest: &str) -> Result<String, ApiError> {
    validate_digest(digest).map_err(|e| ApiError::Invalid {
        field: "digest".into(),
        message: format!("{digest:?} is not a digest: {e}"),
    })?;
    Ok(digest.replacen(':', ".", 1))
}

impl ImageCatalog {
    /// The catalog over `kv` (the topology's `images` bucket).
    pub fn new(kv: kv::Store) -> Self {
        ImageCatalog { kv }
    }

    /// The record of `digest`, if one was made.
    pub async fn get(&self, digest: &str) -> Result<Option<ImageRecord>, ApiError> {
        let key = catalog_key(digest)?;
        let Some(value) = self.kv.get(&key).await.map_err(unavailable)? else {
            return Ok(None);
        };
        serde_json::from_slice(&value)
            .map(Some)
            .map_err(|e| ApiError::Internal(format!("corrupt image record {key}: {e}")))
    }

    /// Stores `record` unless its digest has one already, and answers the one stored: a digest names one
    /// content, so the first record stands (a concurrent writer read the same bytes).
    pub async fn create(&self, record: ImageRecord) -> Result<ImageRecord, ApiError> {
        let key = catalog_key(&record.digest)?;
        let value = serde_json::to_vec(&record).map_err(|e| ApiError::Internal(e.to_string()))?;
        match self.kv.create(&key, value.into()).await {
            Ok(_) => Ok(record),
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => {
                Ok(self.get(&record.digest).await?.unwrap_or(record))
            }
            Err(e) => Err(unavailable(e)),
        }
    }
}

fn unavailable(e: impl std::fmt::Display) -> ApiError {
    ApiError::Unavailable(format!("the image catalog is unavailable: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_replace_the_colon_and_refuse_what_is_not_a_digest() {
        let hex = "a".repeat(64);
        assert_eq!(
            catalog_key(&format!("sha256:{hex}")).unwrap(),
            format!("sha256.{hex}")
        );
        assert!(catalog_key("latest").is_err());
        assert!(catalog_key("sha256:../../x").is_err());
    }
}
