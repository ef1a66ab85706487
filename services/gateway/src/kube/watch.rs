//! Watch over HTTP (`?watch=true`), as Kubernetes clients read it: a
//! chunked `application/json` body of `{"type":…,"object":…}` lines, one per
//! change, flushed as it comes, from the same changes the gRPC watch sends
//! (the shared feed for a watch without resourceVersion, the watch's own
//! changefeed for one that resumes).
//!
//! - `resourceVersion` unset or `0`: the current state as `ADDED`, then
//!   changes; `N`: the changes after `N`, or **410 Expired** (a Status) when
//!   `N` is older than the store keeps, so that informers relist.
//! - `timeoutSeconds`: the body ends after that long (clients watch again).
//! - `allowWatchBookmarks=true`: a `BOOKMARK` with the last resourceVersion
//!   sent every [`BOOKMARK_INTERVAL`].
//! - With a Table `Accept`, each object is a one-row Table, the column
//!   definitions in the first event only (as kube-apiserver does).
//! - An error after the start is an `ERROR` event with its Status; the
//!   gateway shutting down or the feed ending just ends the body: clients
//!   watch again from the last resourceVersion they saw.
//! - The object's JSON of a change from the shared feed is encoded once,
//!   by its first HTTP watcher, for all of them.

use std::time::Duration;

use axum::{
    body::{Body, Bytes},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};
use futures::StreamExt as _;
use imagestreams_common::{
    error::{ApiError, KubeStatus, StatusDetails},
    model::ImageStream,
};
use imagestreams_stream_store_api::WatchEvent;
use serde_json::json;
use tokio::time::Instant;

use crate::{
    kube::{
        GROUP_VERSION,
        table::{Printing, Table},
    },
    watch::{Outgoing, OutgoingStream},
};

/// How often a watch that allows bookmarks gets one.
pub const BOOKMARK_INTERVAL: Duration = Duration::from_secs(60);
/// The longest `timeoutSeconds` honoured (kube-apiserver's default cap is 30 min).
pub const MAX_TIMEOUT: Duration = Duration::from_secs(60 * 60);

/// How a watch is sent.
#[derive(Debug, Clone)]
pub(crate) struct Sending {
    /// The apiVersion of the objects.
    pub api_version: &'static str,
    /// A Table per event, when asked for.
    pub printing: Option<Printing>,
    /// End after this long.
    pub timeout: Option<Duration>,
    /// Send bookmarks.
    pub bookmarks: bool,
    /// The resourceVersion the watch resumes from ("" for a fresh one).
    pub from: String,
}

/// Parses `timeoutSeconds`.
pub(crate) fn timeout(value: &str) -> Result<Option<Duration>, ApiError> {
    match value {
        "" => Ok(None),
        v => v
            .parse::<u64>()
            .map(|s| Some(Duration::from_secs(s).min(MAX_TIMEOUT)))
            .map_err(|_| {
                ApiError::invalid(
                    "timeoutSeconds",
                    format!(
                        "timeoutSeconds: Invalid value: {v:?}: must be a whole number of seconds"
                    ),
                )
            }),
    }
}

struct State {
    changes: OutgoingStream,
    sending: Sending,
    deadline: Option<Instant>,
    bookmark: tokio::time::Interval,
    last_revision: String,
    headers_sent: bool,
    ended: bool,
}

/// The streaming response of a watch over `changes`.
pub(crate) fn respond(changes: OutgoingStream, sending: Sending) -> Response {
    let mut bookmark =
        tokio::time::interval_at(Instant::now() + BOOKMARK_INTERVAL, BOOKMARK_INTERVAL);
    bookmark.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let state = State {
        changes,
        deadline: sending.timeout.map(|t| Instant::now() + t),
        last_revision: sending.from.clone(),
        sending,
        bookmark,
        headers_sent: false,
        ended: false,
    };
    let frames = futures::stream::unfold(state, |mut state| async move {
        let frame = state.next_frame().await?;
        Some((Ok::<_, std::convert::Infallible>(frame), state))
    });
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(frames),
    )
        .into_response()
}

impl State {
    async fn next_frame(&mut self) -> Option<Bytes> {
        loop {
            if self.ended {
                return None;
            }
            let deadline = self.deadline;
            let next = tokio::select! {
                _ = async { tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now)).await },
                    if deadline.is_some() => return None,
                _ = self.bookmark.tick(), if self.sending.bookmarks => {
                    if self.last_revision.is_empty() {
                        continue;
                    }
                    return Some(self.bookmark_frame());
                }
                next = self.changes.next() => next,
            };
            return match next {
                Some(Ok(change)) => Some(self.change_frame(&change)),
                Some(Err(ApiError::Unavailable(_))) | None => None,
                Some(Err(error)) => {
                    self.ended = true;
                    Some(error_frame(&error))
                }
            };
        }
    }

    fn change_frame(&mut self, change: &Outgoing) -> Bytes {
        let event = change.event();
        self.last_revision = event.object().metadata.resource_version.clone();
        let kind = match event {
            WatchEvent::Added(_) => "ADDED",
            WatchEvent::Modified(_) => "MODIFIED",
            WatchEvent::Deleted(_) => "DELETED",
        };
        let object = match self.sending.printing {
            Some(mut printing) => {
                printing.headers = !self.headers_sent;
                self.headers_sent = true;
                let table = Table::of(
                    std::slice::from_ref(&with_version(event.object(), self.sending.api_version)),
                    printing,
                    "",
                    "",
                );
                match table.and_then(|t| encode(&t)) {
                    Ok(bytes) => bytes,
                    Err(error) => {
                        self.ended = true;
                        return error_frame(&error);
                    }
                }
            }
            None if self.sending.api_version == GROUP_VERSION => {
                change.object_json(|object| object_bytes(object, GROUP_VERSION))
            }
            None => object_bytes(event.object(), self.sending.api_version),
        };
        frame(kind, &object)
    }

    fn bookmark_frame(&self) -> Bytes {
        let object = json!({
            "kind": "ImageStream",
            "apiVersion": self.sending.api_version,
            "metadata": {"resourceVersion": self.last_revision},
        });
        frame("BOOKMARK", object.to_string().as_bytes())
    }
}

fn with_version(object: &ImageStream, api_version: &str) -> ImageStream {
    let mut object = object.clone();
    object.api_version = api_version.to_owned();
    object.kind = imagestreams_common::model::KIND.to_owned();
    object
}

fn object_bytes(object: &ImageStream, api_version: &str) -> Bytes {
    // can't fail: the model serializes to JSON
    Bytes::from(serde_json::to_vec(&with_version(object, api_version)).unwrap_or_default())
}

fn encode(value: &impl serde::Serialize) -> Result<Bytes, ApiError> {
    serde_json::to_vec(value)
        .map(Bytes::from)
        .map_err(|e| ApiError::Internal(format!("cannot encode a watch event: {e}")))
}

fn frame(kind: &str, object: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(object.len() + 32);
    out.extend_from_slice(b"{\"type\":\"");
    out.extend_from_slice(kind.as_bytes());
    out.extend_from_slice(b"\",\"object\":");
    out.extend_from_slice(object);
    out.extend_from_slice(b"}\n");
    Bytes::from(out)
}

fn error_frame(error: &ApiError) -> Bytes {
    let status = KubeStatus::failure(error, StatusDetails::default());
    frame("ERROR", &serde_json::to_vec(&status).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(rv: u64) -> Result<Outgoing, ApiError> {
        let mut stream = ImageStream::new("ns1", "ruby");
        stream.metadata.resource_version = rv.to_string();
        Ok(Outgoing::shared(WatchEvent::Modified(stream)))
    }

    async fn body(response: Response) -> Vec<serde_json::Value> {
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        let text = String::from_utf8(bytes.to_vec()).unwrap();
        assert!(text.ends_with('\n'), "every frame ends a line: {text}");
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    fn sending() -> Sending {
        Sending {
            api_version: GROUP_VERSION,
            printing: None,
            timeout: None,
            bookmarks: false,
            from: String::new(),
        }
    }

    #[tokio::test]
    async fn changes_are_lines_of_type_and_object_and_an_error_ends_them() {
        let changes = futures::stream::iter([
            change(1),
            change(2),
            Err(ApiError::ResourceExhausted("too slow".into())),
            change(3),
        ])
        .boxed();
        let frames = body(respond(changes, sending())).await;
        assert_eq!(frames.len(), 3, "{frames:?}");
        assert_eq!(frames[0]["type"], "MODIFIED");
        assert_eq!(frames[0]["object"]["apiVersion"], GROUP_VERSION);
        assert_eq!(frames[1]["object"]["metadata"]["resourceVersion"], "2");
        assert_eq!(frames[2]["type"], "ERROR");
        assert_eq!(frames[2]["object"]["code"], 429);
    }

    #[tokio::test]
    async fn tables_carry_column_definitions_in_the_first_event_only() {
        let changes = futures::stream::iter([change(1), change(2)]).boxed();
        let mut sending = sending();
        sending.printing = Some(Printing {
            version: "v1",
            include: crate::kube::table::IncludeObject::Metadata,
            headers: true,
        });
        let frames = body(respond(changes, sending)).await;
        assert_eq!(frames[0]["object"]["kind"], "Table");
        assert_eq!(
            frames[0]["object"]["columnDefinitions"]
                .as_array()
                .unwrap()
                .len(),
            4
        );
        assert!(
            frames[1]["object"]["columnDefinitions"]
                .as_array()
                .unwrap()
                .is_empty()
        );
        assert_eq!(frames[1]["object"]["rows"][0]["cells"][0], "ruby");
    }

    #[tokio::test(start_paused = true)]
    async fn a_quiet_watch_gets_bookmarks_and_ends_at_its_timeout() {
        let mut sending = sending();
        sending.bookmarks = true;
        sending.from = "41".into();
        sending.timeout = Some(BOOKMARK_INTERVAL * 2 + Duration::from_secs(1));
        let changes = futures::stream::pending().boxed();
        let frames = body(respond(changes, sending)).await;
        assert_eq!(frames.len(), 2, "{frames:?}");
        assert_eq!(frames[0]["type"], "BOOKMARK");
        assert_eq!(frames[0]["object"]["metadata"]["resourceVersion"], "41");
    }

    #[test]
    fn timeouts_parse_and_are_capped() {
        assert_eq!(timeout("").unwrap(), None);
        assert_eq!(timeout("5").unwrap(), Some(Duration::from_secs(5)));
        assert_eq!(timeout("999999").unwrap(), Some(MAX_TIMEOUT));
        assert_eq!(timeout("x").unwrap_err().http_status(), 400);
    }
}
