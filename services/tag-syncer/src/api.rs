//! The tag-syncer's request-reply API (core NATS, queue group
//! [`subjects::TAG_SYNCER_QUEUE`]): `import` (the gateway's `ImportImage`,
//! answered once the stream-store applied the outcome), `mirror` (the
//! gateway's `Mirror`, answered once every image crossed or failed),
//! `secrets.{create,list,delete}` and `receivers.{create,get,list,delete}`. Requests received before shutdown are
//! answered before [`serve`] returns.

use std::sync::Arc;

use async_nats::Subscriber;
use imagestreams_common::{error::ApiError, requests, subjects};
use imagestreams_proto::v1 as proto;
use imagestreams_stream_store_api::StreamReader;
use imagestreams_tag_syncer_api::STATUS_FAILURE;
use prost::Message as _;
use tokio_util::sync::CancellationToken;

use crate::{
    importer::Importer, mirror::Mirrorer, plan, receivers::ReceiverStore, secrets::SecretStore,
};

/// The operations, by the last tokens of their subjects.
pub const OPS: [&str; 9] = [
    "import",
    "mirror",
    "secrets.create",
    "secrets.list",
    "secrets.delete",
    "receivers.create",
    "receivers.get",
    "receivers.list",
    "receivers.delete",
];
/// Requests handled at once; more wait in NATS.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 64;

/// The subscriptions, made when the service is built.
pub struct Subscriptions(Vec<(&'static str, Subscriber)>);

/// Subscribes to every operation in the queue group.
pub async fn subscribe(nats: &async_nats::Client) -> anyhow::Result<Subscriptions> {
    let mut subscriptions = Vec::new();
    for op in OPS {
        let subscriber = nats
            .queue_subscribe(
                subjects::tag_syncer_api(op),
                subjects::TAG_SYNCER_QUEUE.to_owned(),
            )
            .await
            .map_err(|e| {
                anyhow::anyhow!("cannot subscribe to {}: {e}", subjects::tag_syncer_api(op))
            })?;
        subscriptions.push((op, subscriber));
    }
    Ok(Subscriptions(subscriptions))
}

/// What the handlers need.
#[derive(Debug)]
pub struct Handlers {
    /// Reads streams.
    pub reader: StreamReader,
    /// Runs imports.
    pub importer: Arc<Importer>,
    /// The registry secrets.
    pub secrets: Arc<SecretStore>,
    /// The webhook receivers.
    pub receivers: Arc<ReceiverStore>,
    /// Runs mirrors.
    pub mirrorer: Arc<Mirrorer>,
}

impl Handlers {
    /// `import-image`: plans from the stream as it is, imports, and returns
    /// the outcome per tag.
    #[tracing::instrument(skip_all, fields(namespace = %request.namespace, name = %request.name), err(level = "debug"))]
    pub async fn import_image(
        &self,
        request: proto::ImportImageRequest,
    ) -> Result<proto::ImportImageResponse, ApiError> {
        let (name, _, _) = plan::parse_target(&request.name)?;
        let current = match self.reader.get(&request.namespace, &name).await {
            Ok(stream) => Some(stream),
            Err(ApiError::NotFound(_)) => None,
            Err(e) => return Err(e),
        };
        let plan = plan::import_image(&request, current.as_ref())?;
        let applied = self.importer.run(&plan).await?;
        let failed = applied
            .tags
            .iter()
            .filter(|t| t.status == STATUS_FAILURE)
            .count();
        tracing::info!(
            tags = applied.tags.len(),
            failed,
            written = applied.written,
            "import-image done"
        );
        Ok(proto::ImportImageResponse {
            image_stream: applied.image_stream,
            tags: applied.tags,
        })
    }

    async fn handle(&self, op: &str, payload: &[u8]) -> Vec<u8> {
        if op == "mirror" {
            let result = match proto::MirrorRequest::decode(payload) {
                Ok(request) => self.mirrorer.mirror(request).await,
                Err(e) => Err(ApiError::invalid("", format!("malformed request: {e}"))),
            };
            let result = match result {
                Ok(response) => proto::mirror_reply::Result::Response(response),
                Err(error) => proto::mirror_reply::Result::Error(failed(op, error)),
            };
            return proto::MirrorReply {
                result: Some(result),
            }
            .encode_to_vec();
        }
        if op == "import" {
            let result = match proto::ImportImageRequest::decode(payload) {
                Ok(request) => self.import_image(request).await,
                Err(e) => Err(ApiError::invalid("", format!("malformed request: {e}"))),
            };
            let result = match result {
                Ok(response) => proto::import_image_reply::Result::Response(response),
                Err(error) => proto::import_image_reply::Result::Error(failed(op, error)),
            };
            return proto::ImportImageReply {
                result: Some(result),
            }
            .encode_to_vec();
        }
        if op.starts_with("receivers.") {
            return self.receivers.handle(op, payload).await.encode_to_vec();
        }
        self.secrets.handle(op, payload).await.encode_to_vec()
    }
}

/// The wire form of a failed request's error; faults (not the caller's
/// mistakes) are logged.
fn failed(op: &str, error: ApiError) -> proto::StoreError {
    if matches!(error, ApiError::Internal(_) | ApiError::Unavailable(_)) {
        tracing::warn!(
            op,
            error = imagestreams_common::error::chain(&error),
            "request failed"
        );
    }
    error.into()
}

/// Serves requests until `shutdown`.
pub async fn serve(
    handlers: Arc<Handlers>,
    nats: async_nats::Client,
    subscriptions: Subscriptions,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    requests::serve(
        nats,
        subscriptions.0,
        DEFAULT_MAX_IN_FLIGHT,
        shutdown.cancelled_owned(),
        move |op, message| {
            let handlers = handlers.clone();
            async move { handlers.handle(op, &message.payload).await }
        },
    )
    .await
}
