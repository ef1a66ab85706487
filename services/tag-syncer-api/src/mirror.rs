//! The `mirror` request: the gateway's `Mirror` RPC, answered by the
//! tag-syncer once every image crossed (or failed).

use std::time::Duration;

use imagestreams_common::{error::ApiError, requests, subjects};
use imagestreams_proto::v1 as proto;

use crate::STATUS_FAILURE;

/// How long a caller waits for a mirror: images may be large.
pub const DEFAULT_MIRROR_WAIT: Duration = Duration::from_secs(600);
/// How much earlier than the caller gives up the tag-syncer stops copying,
/// so its own answer (a `Timeout` failure) arrives first and no copy runs on
/// behind the caller's back.
pub const DEADLINE_SLACK: Duration = Duration::from_secs(1);

/// Asks the tag-syncer to mirror.
#[derive(Clone, Debug)]
pub struct MirrorClient {
    nats: async_nats::Client,
    wait: Duration,
}

impl MirrorClient {
    /// A client over `nats`, waiting [`DEFAULT_MIRROR_WAIT`].
    pub fn new(nats: async_nats::Client) -> Self {
        MirrorClient {
            nats,
            wait: DEFAULT_MIRROR_WAIT,
        }
    }

    /// The same client waiting `wait` for an answer.
    pub fn with_wait(mut self, wait: Duration) -> Self {
        self.wait = wait;
        self
    }

    /// Mirrors as `request` says; the outcome per image. A source that does
    /// not resolve is an error; an image that fails to cross is a
    /// [`STATUS_FAILURE`] entry. The copy's deadline (`timeout_ms`) is at
    /// most this client's wait less [`DEADLINE_SLACK`].
    pub async fn mirror(
        &self,
        request: &proto::MirrorRequest,
    ) -> Result<proto::MirrorResponse, ApiError> {
        for (field, value) in [
            ("namespace", &request.namespace),
            ("source", &request.source),
            ("destination", &request.destination),
        ] {
            if value.is_empty() {
                return Err(ApiError::invalid(field, format!("{field}: Required value")));
            }
        }
        let patience = self.wait.saturating_sub(DEADLINE_SLACK).as_millis();
        let patience = u64::try_from(patience).unwrap_or(u64::MAX).max(1);
        let request = proto::MirrorRequest {
            timeout_ms: match request.timeout_ms {
                0 => patience,
                asked => asked.min(patience),
            },
            ..request.clone()
        };
        requests::ask::<proto::MirrorReply>(
            &self.nats,
            subjects::tag_syncer_api("mirror"),
            &request,
            "the tag-syncer",
            self.wait,
        )
        .await
    }
}

/// Whether any image of `response` failed.
pub fn any_failed(response: &proto::MirrorResponse) -> bool {
    response.images.iter().any(|i| i.status == STATUS_FAILURE)
}
