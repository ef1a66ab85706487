//! Mirror rules: a trigger of kind `Mirror` whose firings are delivered by
//! pushing the image to the rule's destination (the tag-syncer copies it,
//! every platform, with the namespace's credentials), through the same
//! outbox, lease and retries as a webhook.
//!
//! # Never backwards, each image at most once
//!
//! - **One push at a time, oldest first.** Only the oldest firing of a rule's
//!   outbox may push; the others wait their turn ([`turn`]). The outbox is
//!   in the order of the tag's changes, so pushes are too.
//! - **Superseded.** The oldest firing, when newer ones wait behind it, is
//!   not pushed at all: it ends `Superseded`, and the destination goes
//!   straight to the newest image. A firing that already tried and timed out
//!   is superseded as safely, because a push stops at its deadline
//!   ([`proto::MirrorRequest::timeout_ms`]) and the lease of a mirror firing
//!   outlives it: whoever holds the lease knows no older push is still
//!   running.
//! - **At most once.** The tag-syncer answers `unchanged` without writing
//!   when the destination tag already holds the digest, so a retry after a
//!   push whose answer was lost writes nothing.

use std::time::{Duration, Instant};

use imagestreams_common::error::ApiError;
use imagestreams_proto::v1 as proto;
use imagestreams_tag_syncer_api::{
    STATUS_SUCCESS,
    mirror::{DEADLINE_SLACK, MirrorClient},
};
use imagestreams_trigger_api::{Firing, MirrorTarget, PendingFiring};

use crate::{error::Error, now_ms, webhook::Attempt};

/// How often a firing waiting for its turn looks at the outbox again.
pub const TURN_POLL: Duration = Duration::from_millis(200);

/// Where a mirror firing stands in its rule's outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Turn {
    /// The oldest, nothing behind it: push.
    Push,
    /// The oldest, with newer firings behind it: end without pushing; the
    /// newest image it was superseded by.
    Superseded(String),
    /// Older firings first.
    Wait,
    /// Not in the outbox (the rule was deleted or recreated).
    Gone,
}

/// The turn of firing `id` in `outbox` (oldest first).
pub fn turn(outbox: &[PendingFiring], id: &str) -> Turn {
    match outbox.iter().position(|p| p.id == id) {
        None => Turn::Gone,
        Some(0) if outbox.len() > 1 => {
            Turn::Superseded(outbox.last().map(|p| p.image.clone()).unwrap_or_default())
        }
        Some(0) => Turn::Push,
        Some(_) => Turn::Wait,
    }
}

/// The push of one firing: its outcome as a delivery attempt.
#[derive(Debug)]
pub struct Pushed {
    /// The attempt, for the firing's log and the retry policy.
    pub attempt: Attempt,
    /// Whether the image is at the destination now.
    pub delivered: bool,
    /// `pushed`, `unchanged`, or the failure's reason.
    pub outcome: String,
}

/// The client side of a rule's pushes: the tag-syncer's mirror API with the
/// rule's deadline.
#[derive(Debug, Clone)]
pub struct Pusher {
    client: MirrorClient,
    timeout: Duration,
}

impl Pusher {
    /// Pushes over `nats`, each allowed `timeout`.
    pub fn new(nats: async_nats::Client, timeout: Duration) -> Self {
        Pusher {
            client: MirrorClient::new(nats).with_wait(timeout + DEADLINE_SLACK),
            timeout,
        }
    }

    /// How long one push may take.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Pushes `firing`'s image to `target`. A tag-syncer that is not running
    /// (or not reachable) is an error to retry without counting an attempt;
    /// any answer, a failure or a push cut off at its deadline, is an attempt.
    pub async fn push(&self, firing: &Firing, target: &MirrorTarget) -> Result<Pushed, Error> {
        let request = proto::MirrorRequest {
            namespace: firing.namespace.clone(),
            source: source_of(firing),
            destination: target.to.clone(),
            insecure: target.insecure,
            timeout_ms: u64::try_from(self.timeout.as_millis()).unwrap_or(u64::MAX),
            ..proto::MirrorRequest::default()
        };
        let started_ms = now_ms();
        let clock = Instant::now();
        let answer = self.client.mirror(&request).await;
        let duration = clock.elapsed();
        let failed = |outcome: &str, error: String| Pushed {
            attempt: Attempt::without_status(started_ms, duration, Some(error)),
            delivered: false,
            outcome: outcome.to_owned(),
        };
        match answer {
            Ok(response) => Ok(match response.images.first() {
                Some(image) if image.status == STATUS_SUCCESS => Pushed {
                    attempt: Attempt::without_status(started_ms, duration, None),
                    delivered: true,
                    outcome: if image.unchanged {
                        "unchanged"
                    } else {
                        "pushed"
                    }
                    .to_owned(),
                },
                Some(image) => failed(
                    &image.reason,
                    format!("{}: {}", image.reason, image.message),
                ),
                None => failed("Internal", "the tag-syncer answered no image".to_owned()),
            }),
            // asked and not answered in time: the push was cut off
            Err(ApiError::Unavailable(message)) if duration >= self.timeout => {
                Ok(failed("Timeout", message))
            }
            Err(e @ ApiError::Unavailable(_)) => Err(Error::Api(e)),
            Err(e) => Ok(failed("Refused", e.to_string())),
        }
    }
}

/// What a firing pushes: its pinned pull spec, else the stream's image.
fn source_of(firing: &Firing) -> String {
    if firing.docker_image_reference.is_empty() {
        format!("{}@{}", firing.from.stream, firing.image)
    } else {
        firing.docker_image_reference.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(id: &str, image: &str) -> PendingFiring {
        PendingFiring {
            id: id.into(),
            image: image.into(),
            docker_image_reference: String::new(),
            previous_image: String::new(),
            time: String::new(),
            traceparent: None,
        }
    }

    #[test]
    fn the_oldest_pushes_unless_newer_wait_behind_it() {
        let one = [pending("a", "sha256:1")];
        assert_eq!(turn(&one, "a"), Turn::Push);
        let three = [
            pending("a", "sha256:1"),
            pending("b", "sha256:2"),
            pending("c", "sha256:3"),
        ];
        assert_eq!(turn(&three, "a"), Turn::Superseded("sha256:3".into()));
        assert_eq!(turn(&three, "b"), Turn::Wait);
        assert_eq!(turn(&three, "c"), Turn::Wait);
        assert_eq!(turn(&three, "z"), Turn::Gone);
        assert_eq!(turn(&three[2..], "c"), Turn::Push);
    }
}
