//! Imports from external registries, as the other services see them: the
//! client of the tag-syncer's `import-image` (gateway → tag-syncer, NATS
//! request-reply). The stream-store's `import` operation, which applies an
//! import's outcome as one write, is `StoreClient::apply_import`.
//!
//! # `import-image`
//!
//! [`ImportClient::import_image`] sends an `ImportImageRequest` to
//! [`subjects::tag_syncer_api`]`("import")` (queue group
//! [`subjects::TAG_SYNCER_QUEUE`]) and waits for the outcome: the stream after
//! the import and one [`proto::TagImportResult`] per tag, with status
//! [`STATUS_SUCCESS`] (the tag moved to a new image), [`STATUS_UNCHANGED`]
//! or [`STATUS_FAILURE`] (with the reason and message of the tag's
//! `ImportSuccess=False` condition). The gateway's `ImportImage` is
//! [`import_image`].

use std::time::Duration;

use imagestreams_proto::v1 as proto;

use imagestreams_common::{error::ApiError, requests, subjects};

use crate::STATUS_FAILURE;

/// How long a caller waits for the outcome of an `import-image`: a little
/// longer than the tag-syncer's own bound on an import.
pub const DEFAULT_IMPORT_WAIT: Duration = Duration::from_secs(30);

/// The client of imports over NATS request-reply; cheap to clone.
#[derive(Clone, Debug)]
pub struct ImportClient {
    nats: async_nats::Client,
    wait: Duration,
}

impl ImportClient {
    /// A client over `nats`.
    pub fn new(nats: async_nats::Client) -> Self {
        ImportClient {
            nats,
            wait: DEFAULT_IMPORT_WAIT,
        }
    }

    /// The same client waiting at most `wait` for an `import-image`.
    pub fn with_wait(mut self, wait: Duration) -> Self {
        self.wait = wait;
        self
    }

    /// Asks the tag-syncer to import (`import-image`) and waits for the outcome.
    pub async fn import_image(
        &self,
        request: &proto::ImportImageRequest,
    ) -> Result<proto::ImportImageResponse, ApiError> {
        requests::ask::<proto::ImportImageReply>(
            &self.nats,
            subjects::tag_syncer_api("import"),
            request,
            "the tag-syncer",
            self.wait,
        )
        .await
    }
}

/// The gateway's `ImportImage`: forwards to the tag-syncer and waits.
pub async fn import_image(
    client: &ImportClient,
    request: proto::ImportImageRequest,
) -> Result<proto::ImportImageResponse, ApiError> {
    if request.namespace.is_empty() {
        return Err(ApiError::invalid("namespace", "namespace: Required value"));
    }
    if request.name.is_empty() {
        return Err(ApiError::invalid("name", "name: Required value"));
    }
    client.import_image(&request).await
}

/// Whether any tag of `response` failed (the CLI then exits non-zero).
pub fn any_failed(response: &proto::ImportImageResponse) -> bool {
    response.tags.iter().any(|t| t.status == STATUS_FAILURE)
}
