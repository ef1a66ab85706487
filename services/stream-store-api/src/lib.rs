//! The stream-store's contract, for every service that reads image streams
//! or asks for a write: the stored form of an ImageStream (a header plus one
//! KV entry per tag, see [`layout`]), the read side (get, list, watch, the
//! read cache [`Mirror`]), the [`history`] view, and the client of the
//! stream-store's write API ([`StoreClient`]). No I/O loops: only the
//! stream-store writes the bucket.
//!
//! `metadata.resourceVersion` is the KV revision of the stream's header (the
//! sequence of its message in the bucket's stream); it is never stored
//! inside the value.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap, VecDeque},
    ops::Bound,
    sync::Arc,
    time::Duration,
};

use async_nats::jetstream::{
    self,
    consumer::{DeliverPolicy, pull::OrderedConfig},
    kv,
};
use bytes::Bytes;
use futures::{Stream, StreamExt, TryStreamExt, stream::BoxStream};
use imagestreams_proto::v1 as proto;
use serde::{Deserialize, Serialize};

use crate::selector::Selector;
use imagestreams_common::{error::ApiError, model::ImageStream, requests, subjects};

pub mod direct;
pub mod history;
pub mod layout;
mod mirror;
mod reader;
mod record;
pub mod selector;

pub use direct::DirectGet;
pub use layout::{StoredEntry, TagRecord};
pub use mirror::Mirror;
pub use reader::*;
pub use record::*;

/// How many applied event ids a record remembers to drop redeliveries.
pub const APPLIED_EVENTS_KEPT: usize = 256;
/// How long a caller waits for the stream-store to answer a write.
pub const DEFAULT_STORE_TIMEOUT: Duration = Duration::from_secs(10);

/// The client of the stream-store's write API (NATS request-reply).
#[derive(Clone, Debug)]
pub struct StoreClient {
    nats: async_nats::Client,
    timeout: Duration,
}

impl StoreClient {
    /// A client over `nats`.
    pub fn new(nats: async_nats::Client) -> Self {
        StoreClient {
            nats,
            timeout: DEFAULT_STORE_TIMEOUT,
        }
    }

    /// Creates a stream.
    pub async fn create(&self, request: proto::CreateRequest) -> Result<ImageStream, ApiError> {
        self.call("create", &request).await
    }

    /// Replaces a stream's spec (compare-and-swap on its resourceVersion).
    pub async fn update(&self, request: proto::UpdateRequest) -> Result<ImageStream, ApiError> {
        self.call("update", &request).await
    }

    /// Deletes a stream; returns its last state.
    pub async fn delete(&self, request: proto::DeleteRequest) -> Result<ImageStream, ApiError> {
        self.call("delete", &request).await
    }

    /// Points tags at a source (`oc tag`); returns the changed destination stream.
    pub async fn tag(&self, request: proto::TagRequest) -> Result<ImageStream, ApiError> {
        self.call("tag", &request).await
    }

    /// Applies an import's outcome (the tag-syncer's, one write, or none when
    /// nothing changed).
    pub async fn apply_import(
        &self,
        result: &proto::ImportResult,
    ) -> Result<proto::ImportApplied, ApiError> {
        requests::ask::<proto::ImportReply>(
            &self.nats,
            subjects::store_api("import"),
            result,
            "the stream-store",
            self.timeout,
        )
        .await
    }

    async fn call(&self, op: &str, request: &impl prost::Message) -> Result<ImageStream, ApiError> {
        let stream = requests::ask::<proto::StoreReply>(
            &self.nats,
            subjects::store_api(op),
            request,
            "the stream-store",
            self.timeout,
        )
        .await?;
        ImageStream::try_from(stream).map_err(ApiError::from)
    }
}
