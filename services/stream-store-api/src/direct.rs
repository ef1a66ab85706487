//! Batch direct gets on the bucket's stream (`$JS.API.DIRECT.GET`, with
//! `multi_last`): the last message of several keys in one round trip,
//! optionally as they were at a past revision (`up_to_seq`). They read a
//! stream's header and tag records together, and a stream's tags as of its
//! header's revision.

use std::time::Duration;

use async_nats::HeaderMap;
use bytes::Bytes;
use futures::StreamExt as _;
use serde::Serialize;

use imagestreams_common::error::ApiError;

/// How long a batch direct get waits for each of its answers.
pub const DEFAULT_DIRECT_GET_TIMEOUT: Duration = Duration::from_secs(10);
/// The most subjects one `multi_last` request may match (the server answers
/// 413 "Too Many Results" beyond 1,024); longer lists go in parts.
pub const SUBJECTS_PER_REQUEST: usize = 1000;

/// The last message of one subject.
#[derive(Debug, Clone)]
pub struct Found {
    /// The message's subject.
    pub subject: String,
    /// Its sequence in the stream: the KV revision.
    pub sequence: u64,
    /// Whether it is a KV delete or purge marker.
    pub deleted: bool,
    /// Its payload.
    pub value: Bytes,
}

#[derive(Serialize)]
struct Request<'a> {
    multi_last: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    up_to_seq: Option<u64>,
}

/// Why a batch direct get failed.
#[derive(Debug)]
enum Failure {
    /// More subjects matched than one request may answer.
    TooMany,
    Other(ApiError),
}

/// Reads the bucket's stream `stream` (with direct gets allowed, as KV
/// buckets have) over `client`.
#[derive(Clone, Debug)]
pub struct DirectGet {
    client: async_nats::Client,
    subject: String,
    stream: async_nats::jetstream::stream::Stream,
}

impl DirectGet {
    /// Direct gets of `stream` over `client`.
    pub fn new(client: async_nats::Client, stream: async_nats::jetstream::stream::Stream) -> Self {
        let subject = format!("$JS.API.DIRECT.GET.{}", stream.cached_info().config.name);
        DirectGet {
            client,
            subject,
            stream,
        }
    }

    /// The last message of every subject matching `filters` (at or before
    /// `up_to`, when given), in stream order. Filters matching more subjects
    /// than one request answers are read in parts, by the subjects the
    /// stream holds now.
    pub async fn last(
        &self,
        filters: &[String],
        up_to: Option<u64>,
    ) -> Result<Vec<Found>, ApiError> {
        match self.request(filters, up_to).await {
            Ok(found) => return Ok(found),
            Err(Failure::Other(e)) => return Err(e),
            Err(Failure::TooMany) => {}
        }
        let mut subjects = Vec::new();
        for filter in filters {
            let mut info = self
                .stream
                .info_with_subjects(filter)
                .await
                .map_err(unavailable)?;
            while let Some(page) = info.next().await {
                subjects.push(page.map_err(unavailable)?.0);
            }
        }
        subjects.sort();
        subjects.dedup();
        let mut found = Vec::with_capacity(subjects.len());
        for part in subjects.chunks(SUBJECTS_PER_REQUEST) {
            match self.request(part, up_to).await {
                Ok(part) => found.extend(part),
                Err(Failure::TooMany) => {
                    return Err(ApiError::Internal(
                        "the server refused a batch direct get of explicit subjects".into(),
                    ));
                }
                Err(Failure::Other(e)) => return Err(e),
            }
        }
        found.sort_by_key(|f| f.sequence);
        Ok(found)
    }

    async fn request(
        &self,
        subjects: &[String],
        up_to: Option<u64>,
    ) -> Result<Vec<Found>, Failure> {
        let payload = serde_json::to_vec(&Request {
            multi_last: subjects,
            up_to_seq: up_to,
        })
        .map_err(|e| Failure::Other(ApiError::Internal(format!("direct get request: {e}"))))?;
        let inbox = self.client.new_inbox();
        let mut answers = self
            .client
            .subscribe(inbox.clone())
            .await
            .map_err(|e| Failure::Other(unavailable(e)))?;
        self.client
            .publish_with_reply(self.subject.clone(), inbox, payload.into())
            .await
            .map_err(|e| Failure::Other(unavailable(e)))?;
        // the answers end with an end-of-batch status (204), or 404 when no
        // subject matched
        let mut found = Vec::new();
        loop {
            let message = tokio::time::timeout(DEFAULT_DIRECT_GET_TIMEOUT, answers.next())
                .await
                .map_err(|_| Failure::Other(unavailable("a batch direct get timed out")))?
                .ok_or_else(|| Failure::Other(unavailable("the connection closed")))?;
            if let Some(status) = message.status {
                return match status.as_u16() {
                    // end of batch; no message matched
                    204 | 404 => Ok(found),
                    413 => Err(Failure::TooMany),
                    code => Err(Failure::Other(unavailable(format!(
                        "batch direct get answered {code} {}",
                        message.description.unwrap_or_default()
                    )))),
                };
            }
            let headers = message.headers.unwrap_or_default();
            let subject = header(&headers, "Nats-Subject").unwrap_or_default();
            let sequence = header(&headers, "Nats-Sequence")
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| {
                    Failure::Other(unavailable("a direct get answer without Nats-Sequence"))
                })?;
            let deleted = imagestreams_common::nats::is_kv_removal(Some(&headers));
            found.push(Found {
                subject,
                sequence,
                deleted,
                value: message.payload,
            });
        }
    }
}

fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers.get(name).map(|v| v.as_str().to_owned())
}

fn unavailable(e: impl std::fmt::Display) -> ApiError {
    ApiError::Unavailable(format!("storage unavailable: {e}"))
}
