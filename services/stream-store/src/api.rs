//! The write API: core NATS request-reply on [`subjects::store_api`]`(op)`
//! for op ∈ create, update, delete, tag, import, in queue group
//! [`subjects::STORE_QUEUE`], answering a [`proto::StoreReply`].
//!
//! Every request is checked in full before anything is read or written, so a
//! rejected request changes nothing. A malformed request body is `Invalid`.
//! A tag request naming destinations in several streams writes them one
//! after the other (each write is atomic, the request as a whole is not), and
//! replies with the last one.

use std::sync::Arc;

use async_nats::Subscriber;
use chrono::Utc;
use imagestreams_common::{
    error::ApiError,
    model::{
        FROM_DOCKER_IMAGE, FROM_IMAGE_STREAM_IMAGE, FROM_IMAGE_STREAM_TAG, ImageStream,
        ObjectReference, TagEvent, TagImportPolicy, TagReference, TagReferencePolicy,
    },
    requests, subjects,
};
use imagestreams_proto::v1 as proto;
use imagestreams_stream_store_api::{Cause, CauseKind};
use prost::Message as _;
use tokio_util::sync::CancellationToken;
use tracing::instrument;

use crate::{
    bucket::{Bucket, BucketError, Plan, next_record},
    history,
    tagging::{self, Source, StreamName, TagCommand},
    writes::{self, TagTarget},
};

/// How many requests are handled at once; more wait in NATS.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 256;

/// The operations of the write API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `CreateRequest`.
    Create,
    /// `UpdateRequest`.
    Update,
    /// `DeleteRequest`.
    Delete,
    /// `TagRequest`.
    Tag,
    /// `ImportResult` (answered with an `ImportReply`, see [`crate::imports`]).
    Import,
}

impl Op {
    /// Every operation.
    pub const ALL: [Op; 5] = [Op::Create, Op::Update, Op::Delete, Op::Tag, Op::Import];

    /// The last token of the operation's subject.
    pub fn name(self) -> &'static str {
        match self {
            Op::Create => "create",
            Op::Update => "update",
            Op::Delete => "delete",
            Op::Tag => "tag",
            Op::Import => "import",
        }
    }
}

/// Errors of serving the API (not of a request: those are replies).
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// A subscription could not be made.
    #[error("cannot subscribe to {subject}")]
    Subscribe {
        /// The subject.
        subject: String,
        /// Cause.
        #[source]
        source: async_nats::SubscribeError,
    },
}

/// The subscriptions of the API, made when the service is built.
pub struct Subscriptions(Vec<(Op, Subscriber)>);

/// Subscribes to every operation in the queue group.
pub async fn subscribe(nats: &async_nats::Client) -> Result<Subscriptions, ServeError> {
    let mut subscriptions = Vec::with_capacity(Op::ALL.len());
    for op in Op::ALL {
        let subject = subjects::store_api(op.name());
        let subscriber = nats
            .queue_subscribe(subject.clone(), subjects::STORE_QUEUE.to_owned())
            .await
            .map_err(|source| ServeError::Subscribe { subject, source })?;
        subscriptions.push((op, subscriber));
    }
    Ok(Subscriptions(subscriptions))
}

/// The request handlers.
#[derive(Clone, Debug)]
pub struct Api {
    bucket: Bucket,
}

/// A cause of `kind` by whom the request acts for.
fn acting(kind: CauseKind) -> Cause {
    Cause::new(kind, requests::actor())
}

fn malformed(e: prost::DecodeError) -> ApiError {
    ApiError::invalid("", format!("malformed request: {e}"))
}

fn not_found_tag(stream: &StreamName, tag: &str) -> ApiError {
    ApiError::NotFound(format!(
        "imagestreamtags.image.openshift.io \"{}:{tag}\" not found in namespace \"{}\"",
        stream.name, stream.namespace
    ))
}

impl Api {
    /// Handlers writing to `bucket`.
    pub fn new(bucket: Bucket) -> Self {
        Api { bucket }
    }

    /// Decodes, handles and encodes one request of `op`.
    pub async fn handle(&self, op: Op, payload: &[u8]) -> proto::StoreReply {
        let result = match op {
            Op::Create => match proto::CreateRequest::decode(payload) {
                Ok(r) => self.create(r).await,
                Err(e) => Err(malformed(e)),
            },
            Op::Update => match proto::UpdateRequest::decode(payload) {
                Ok(r) => self.update(r).await,
                Err(e) => Err(malformed(e)),
            },
            Op::Delete => match proto::DeleteRequest::decode(payload) {
                Ok(r) => self.delete(r).await,
                Err(e) => Err(malformed(e)),
            },
            Op::Tag => match proto::TagRequest::decode(payload) {
                Ok(r) => self.tag(r).await,
                Err(e) => Err(malformed(e)),
            },
            Op::Import => Err(ApiError::invalid(
                "",
                "import requests are answered with an ImportReply (see Api::import)",
            )),
        };
        proto::StoreReply {
            result: Some(match result {
                Ok(stream) => proto::store_reply::Result::ImageStream(stream.into()),
                Err(error) => {
                    if matches!(error, ApiError::Internal(_) | ApiError::Unavailable(_)) {
                        tracing::warn!(
                            op = op.name(),
                            error = imagestreams_common::error::chain(&error),
                            "request failed"
                        );
                    }
                    proto::store_reply::Result::Error(error.into())
                }
            }),
        }
    }

    /// Applies an import's outcome ([`crate::imports`]).
    pub async fn import(&self, payload: &[u8]) -> proto::ImportReply {
        crate::imports::handle(&self.bucket, payload).await
    }

    /// Creates a stream: validated, with the server's fields assigned.
    #[instrument(skip_all, fields(namespace = %request.namespace), err(level = "debug"))]
    pub async fn create(&self, request: proto::CreateRequest) -> Result<ImageStream, ApiError> {
        let now = writes::timestamp(Utc::now());
        let stream = writes::stream_to_create(request, uuid::Uuid::new_v4().to_string(), &now)?;
        let mut record = next_record(None, stream).caused_by(acting(CauseKind::Create));
        match self.bucket.create(&mut record).await {
            Ok(revision) => {
                let mut stream = record.stream;
                stream.metadata.resource_version = revision.to_string();
                Ok(stream)
            }
            Err(BucketError::AlreadyExists) => {
                Err(writes::already_exists(&record.stream.metadata.name))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Replaces labels, annotations and spec, compare-and-swap on
    /// `metadata.resourceVersion`.
    #[instrument(skip_all, fields(namespace = %request.namespace), err(level = "debug"))]
    pub async fn update(&self, request: proto::UpdateRequest) -> Result<ImageStream, ApiError> {
        let (new, revision) = writes::stream_to_update(request)?;
        let (namespace, name) = (new.metadata.namespace.clone(), new.metadata.name.clone());
        let Some((current, stored)) = self.bucket.read(&namespace, &name).await? else {
            return Err(ApiError::stream_not_found(&namespace, &name));
        };
        if stored != revision {
            return Err(writes::conflict(&name));
        }
        let now = writes::timestamp(Utc::now());
        let stream = writes::updated(&current.stream, new, &now)?;
        if stream == current.stream {
            // nothing changed: no new revision, as Kubernetes does
            return Ok(current.stream);
        }
        let mut record = next_record(Some(&current), stream).caused_by(acting(CauseKind::Update));
        match self.bucket.update(&current, &mut record, revision).await {
            Ok(revision) => {
                let mut stream = record.stream;
                stream.metadata.resource_version = revision.to_string();
                Ok(stream)
            }
            Err(BucketError::Conflict) => Err(writes::conflict(&name)),
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes a stream, at the given resourceVersion if one is set; returns
    /// its last state.
    #[instrument(skip_all, fields(namespace = %request.namespace, name = %request.name), err(level = "debug"))]
    pub async fn delete(&self, request: proto::DeleteRequest) -> Result<ImageStream, ApiError> {
        let (namespace, name) = (&request.namespace, &request.name);
        if namespace.is_empty() {
            return Err(ApiError::invalid("namespace", "namespace: Required value"));
        }
        if name.is_empty() {
            return Err(ApiError::invalid("name", "name: Required value"));
        }
        let expected = match request.resource_version.as_str() {
            "" => None,
            v => Some(v.parse::<u64>().map_err(|_| {
                ApiError::invalid(
                    "resourceVersion",
                    format!("resourceVersion: Invalid value: {v:?}: must be a resourceVersion returned by the server"),
                )
            })?),
        };
        for _ in 0..crate::bucket::DEFAULT_MAX_ATTEMPTS {
            let Some((record, revision)) = self.bucket.read(namespace, name).await? else {
                return Err(ApiError::stream_not_found(namespace, name));
            };
            if expected.is_some_and(|e| e != revision) {
                return Err(writes::conflict(name));
            }
            match self.bucket.delete(&record, revision).await {
                Ok(()) => return Ok(record.stream),
                Err(BucketError::Conflict) if expected.is_some() => {
                    return Err(writes::conflict(name));
                }
                Err(BucketError::Conflict) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(writes::conflict(name))
    }

    /// Points destination tags at a source, or deletes them (`oc tag`).
    /// Returns the stream of the last destination.
    #[instrument(skip_all, fields(namespace = %request.namespace, source = %request.source), err(level = "debug"))]
    pub async fn tag(&self, request: proto::TagRequest) -> Result<ImageStream, ApiError> {
        let command = tagging::parse(&request)?;
        if command.delete {
            return self.delete_tags(&command).await;
        }
        let Some(source) = &command.source else {
            return Err(ApiError::invalid("source", "source: Required value"));
        };
        let (from, image) = self.resolve(source, command.alias).await?;
        let mut last = None;
        for (stream, tags) in command.by_stream() {
            let targets: Vec<TagTarget> = tags
                .iter()
                .map(|tag| TagTarget {
                    reference: spec_tag(tag, &from, source, &stream, &command),
                    image: image.clone(),
                })
                .collect();
            let written = self
                .bucket
                .modify(&stream.namespace, &stream.name, |current| {
                    let now = writes::timestamp(Utc::now());
                    Ok::<_, ApiError>(match current {
                        Some((record, revision)) => {
                            let mut after = record.stream.clone();
                            writes::set_tags(&mut after, &targets, false, &now);
                            Plan::Update(
                                next_record(Some(&record), after).caused_by(acting(CauseKind::Tag)),
                                revision,
                            )
                        }
                        None => {
                            let mut after = ImageStream::new(&stream.namespace, &stream.name);
                            writes::initialize(
                                &mut after,
                                uuid::Uuid::new_v4().to_string(),
                                &now,
                                String::new(),
                            );
                            writes::set_tags(&mut after, &targets, true, &now);
                            Plan::Create(next_record(None, after).caused_by(acting(CauseKind::Tag)))
                        }
                    })
                })
                .await?;
            last = written.map(|(record, _)| record.stream);
        }
        last.ok_or_else(|| ApiError::Internal("tag wrote nothing".into()))
    }

    /// The `from` of the destination tags and, when the source resolves to an
    /// image now, that image.
    async fn resolve(
        &self,
        source: &Source,
        alias: bool,
    ) -> Result<(ObjectReference, Option<TagEvent>), ApiError> {
        let reference = |kind: &str, name: String| ObjectReference {
            kind: kind.to_owned(),
            namespace: String::new(),
            name,
        };
        match source {
            Source::DockerImage(name) => Ok((reference(FROM_DOCKER_IMAGE, name.clone()), None)),
            Source::StreamTag { stream, tag, .. } if alias => Ok((
                reference(FROM_IMAGE_STREAM_TAG, format!("{}:{tag}", stream.name)),
                None,
            )),
            Source::StreamTag { stream, tag, .. } => {
                let source = self.read_source(stream).await?;
                let latest = source.status_tag(tag).and_then(|l| l.latest()).ok_or_else(|| {
                    ApiError::NotFound(format!(
                        "\"{}/{}:{tag}\" is not currently pointing to an image, cannot use it as the source of a tag",
                        stream.namespace, stream.name
                    ))
                })?;
                if latest.image.is_empty() {
                    return Ok((
                        reference(FROM_DOCKER_IMAGE, latest.docker_image_reference.clone()),
                        None,
                    ));
                }
                Ok((
                    reference(
                        FROM_IMAGE_STREAM_IMAGE,
                        format!("{}@{}", stream.name, latest.image),
                    ),
                    Some(latest.clone()),
                ))
            }
            Source::StreamImage { stream, digest, .. } => {
                let source = self.read_source(stream).await?;
                let found = history::find_image(&source, digest).ok_or_else(|| {
                    ApiError::NotFound(format!(
                        "imagestreamimages.image.openshift.io \"{}@{digest}\" not found in namespace \"{}\"",
                        stream.name, stream.namespace
                    ))
                })?;
                Ok((
                    reference(FROM_IMAGE_STREAM_IMAGE, format!("{}@{digest}", stream.name)),
                    Some(found.clone()),
                ))
            }
        }
    }

    async fn read_source(&self, stream: &StreamName) -> Result<ImageStream, ApiError> {
        match self.bucket.read(&stream.namespace, &stream.name).await? {
            Some((record, _)) => Ok(record.stream),
            None => Err(ApiError::stream_not_found(&stream.namespace, &stream.name)),
        }
    }

    /// Removes the destination tags from spec and status; every one must
    /// exist before anything is removed.
    async fn delete_tags(&self, command: &TagCommand) -> Result<ImageStream, ApiError> {
        let groups = command.by_stream();
        for (stream, tags) in &groups {
            let current = self.read_source(stream).await?;
            if let Some(tag) = tags.iter().find(|t| !writes::has_tag(&current, t)) {
                return Err(not_found_tag(stream, tag));
            }
        }
        let mut last = None;
        for (stream, tags) in &groups {
            let written = self
                .bucket
                .modify(&stream.namespace, &stream.name, |current| {
                    let Some((record, revision)) = current else {
                        return Err(ApiError::stream_not_found(&stream.namespace, &stream.name));
                    };
                    let mut after = record.stream.clone();
                    if !writes::remove_tags(&mut after, tags) {
                        return Ok(Plan::Keep(record, revision));
                    }
                    Ok(Plan::Update(
                        next_record(Some(&record), after).caused_by(acting(CauseKind::Tag)),
                        revision,
                    ))
                })
                .await?;
            last = written.map(|(record, _)| record.stream);
        }
        last.ok_or_else(|| ApiError::Internal("tag deletion wrote nothing".into()))
    }
}

/// The spec tag `oc tag` sets on a destination: `from` (with the source's
/// namespace when it was written or differs from the destination's), the
/// flags, an `importPolicy` and the `Source` reference policy.
fn spec_tag(
    tag: &str,
    from: &ObjectReference,
    source: &Source,
    dest: &StreamName,
    command: &TagCommand,
) -> TagReference {
    let (source_stream, explicit) = match source {
        Source::StreamTag {
            stream,
            explicit_namespace,
            ..
        }
        | Source::StreamImage {
            stream,
            explicit_namespace,
            ..
        } => (Some(stream), *explicit_namespace),
        Source::DockerImage(_) => (None, false),
    };
    let mut from = from.clone();
    if let Some(stream) = source_stream
        && from.kind != FROM_DOCKER_IMAGE
        && (explicit || stream.namespace != dest.namespace)
    {
        from.namespace = stream.namespace.clone();
    }
    TagReference {
        name: tag.to_owned(),
        from: Some(from),
        reference: command.reference,
        generation: None,
        import_policy: Some(TagImportPolicy {
            insecure: command.insecure,
            scheduled: command.scheduled,
            import_mode: String::new(),
        }),
        reference_policy: Some(TagReferencePolicy {
            r#type: command.reference_policy.to_owned(),
        }),
        ..TagReference::default()
    }
}

/// Serves requests until `shutdown`; requests already received are answered
/// before it returns.
pub async fn serve(
    api: Arc<Api>,
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
            let api = api.clone();
            async move {
                match op {
                    Op::Import => api.import(&message.payload).await.encode_to_vec(),
                    _ => api.handle(op, &message.payload).await.encode_to_vec(),
                }
            }
        },
    )
    .await
}
