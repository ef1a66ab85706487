//! The `imagestreams.v1.ImageStreams` gRPC service: converts the wire types
//! at the edge (`TryFrom` into validated domain types, `From` back) and
//! delegates to [`Streams`]. Errors become `tonic::Status` through
//! `ApiError`'s one mapping.

use std::sync::Arc;

use imagestreams_common::{
    auth::{Verb, authorize_request},
    error::ApiError,
    model::ImageStream,
};
use imagestreams_proto::v1::{self as proto, image_streams_server::ImageStreams};
use imagestreams_stream_store_api::Freshness;
use imagestreams_tag_syncer_api::{ImportClient, MirrorClient, import_image};
use tonic::{Request, Response, Status};
use tracing::instrument;

use crate::{
    history,
    query::{self, ContinueToken},
    streams::{ListParams, Streams, tag_namespaces},
    watch::{self, EventStream, WatchParams},
};

/// The gRPC face of the gateway.
#[derive(Debug, Clone)]
pub(crate) struct Grpc {
    streams: Arc<Streams>,
    imports: ImportClient,
    mirrors: MirrorClient,
}

impl Grpc {
    /// Serves `streams`; `ImportImage` and `Mirror` go to the tag-syncer
    /// through `imports` and `mirrors`.
    pub fn new(streams: Arc<Streams>, imports: ImportClient, mirrors: MirrorClient) -> Self {
        Grpc {
            streams,
            imports,
            mirrors,
        }
    }
}

/// The stream of a create or update request, converted and validated.
fn incoming(stream: Option<proto::ImageStream>) -> Result<ImageStream, ApiError> {
    let stream =
        stream.ok_or_else(|| ApiError::invalid("image_stream", "image_stream: Required value"))?;
    Ok(ImageStream::try_from(stream)?)
}

#[tonic::async_trait]
impl ImageStreams for Grpc {
    #[instrument(skip_all, fields(namespace = %request.get_ref().namespace), err(level = "debug"))]
    async fn create(
        &self,
        request: Request<proto::CreateRequest>,
    ) -> Result<Response<proto::ImageStream>, Status> {
        authorize_request(&request, Some(&request.get_ref().namespace), Verb::Create)?;
        let request = request.into_inner();
        let created = self
            .streams
            .deadline(async {
                let stream = incoming(request.image_stream)?;
                self.streams.create(&request.namespace, stream, false).await
            })
            .await?;
        Ok(Response::new(created.into()))
    }

    #[instrument(skip_all, fields(namespace = %request.get_ref().namespace, name = %request.get_ref().name), err(level = "debug"))]
    async fn get(
        &self,
        request: Request<proto::GetRequest>,
    ) -> Result<Response<proto::ImageStream>, Status> {
        authorize_request(&request, Some(&request.get_ref().namespace), Verb::Get)?;
        let request = request.get_ref();
        let stream = self
            .streams
            .deadline(async {
                let freshness = Freshness::parse(&request.resource_version, "resource_version")?;
                self.streams
                    .get(&request.namespace, &request.name, freshness)
                    .await
            })
            .await?;
        Ok(Response::new(stream.into()))
    }

    #[instrument(skip_all, fields(namespace = %request.get_ref().namespace, stream = %request.get_ref().stream), err(level = "debug"))]
    async fn get_image(
        &self,
        request: Request<proto::GetImageRequest>,
    ) -> Result<Response<proto::ImageStreamImage>, Status> {
        authorize_request(&request, Some(&request.get_ref().namespace), Verb::Get)?;
        let request = request.get_ref();
        let image = self
            .streams
            .deadline(
                self.streams
                    .image(&request.namespace, &request.stream, &request.digest),
            )
            .await?;
        Ok(Response::new(image.into()))
    }

    #[instrument(skip_all, fields(namespace = %request.get_ref().namespace, stream = %request.get_ref().stream), err(level = "debug"))]
    async fn get_image_stream_tag(
        &self,
        request: Request<proto::GetImageStreamTagRequest>,
    ) -> Result<Response<proto::ImageStreamTag>, Status> {
        authorize_request(&request, Some(&request.get_ref().namespace), Verb::Get)?;
        let request = request.get_ref();
        let tag = self
            .streams
            .deadline(self.streams.image_stream_tag(
                &request.namespace,
                &request.stream,
                &request.tag,
            ))
            .await?;
        Ok(Response::new(tag.into()))
    }

    #[instrument(skip_all, fields(namespace = %request.get_ref().namespace), err(level = "debug"))]
    async fn list(
        &self,
        request: Request<proto::ListRequest>,
    ) -> Result<Response<proto::ListResponse>, Status> {
        let namespace = query::namespace_or_all(&request.get_ref().namespace, "namespace")?;
        authorize_request(&request, namespace.as_deref(), Verb::List)?;
        let request = request.into_inner();
        let result = self
            .streams
            .deadline(async {
                let namespace = query::namespace_or_all(&request.namespace, "namespace")?;
                let params = ListParams {
                    selector: query::selector(&request.label_selector)?,
                    limit: query::limit(request.limit, "limit")?,
                    after: ContinueToken::decode(
                        &request.continue_token,
                        namespace.as_deref(),
                        "continue_token",
                    )?,
                    freshness: Freshness::parse(&request.resource_version, "resource_version")?,
                    namespace,
                };
                self.streams.list(&params).await
            })
            .await?;
        Ok(Response::new(proto::ListResponse {
            items: result.page.items.into_iter().map(Into::into).collect(),
            resource_version: result.page.revision.to_string(),
            continue_token: result.continue_token,
        }))
    }

    #[instrument(skip_all, fields(namespace = %request.get_ref().namespace), err(level = "debug"))]
    async fn update(
        &self,
        request: Request<proto::UpdateRequest>,
    ) -> Result<Response<proto::ImageStream>, Status> {
        authorize_request(&request, Some(&request.get_ref().namespace), Verb::Update)?;
        let request = request.into_inner();
        let updated = self
            .streams
            .deadline(async {
                let stream = incoming(request.image_stream)?;
                self.streams
                    .update(&request.namespace, None, stream, false)
                    .await
            })
            .await?;
        Ok(Response::new(updated.into()))
    }

    #[instrument(skip_all, fields(namespace = %request.get_ref().namespace, name = %request.get_ref().name), err(level = "debug"))]
    async fn delete(
        &self,
        request: Request<proto::DeleteRequest>,
    ) -> Result<Response<proto::DeleteResponse>, Status> {
        authorize_request(&request, Some(&request.get_ref().namespace), Verb::Delete)?;
        let request = request.get_ref();
        self.streams
            .deadline(self.streams.delete(
                &request.namespace,
                &request.name,
                &request.resource_version,
            ))
            .await?;
        Ok(Response::new(proto::DeleteResponse {}))
    }

    type WatchStream = EventStream;

    #[instrument(skip_all, fields(
        namespace = %request.get_ref().namespace,
        name = %request.get_ref().name,
        resource_version = %request.get_ref().resource_version,
    ), err(level = "debug"))]
    async fn watch(
        &self,
        request: Request<proto::WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let namespace = query::namespace_or_all(&request.get_ref().namespace, "namespace")?;
        authorize_request(&request, namespace.as_deref(), Verb::Watch)?;
        let request = request.into_inner();
        let events = self
            .streams
            .deadline(async {
                let namespace = query::namespace_or_all(&request.namespace, "namespace")?;
                if !request.name.is_empty() && namespace.is_none() {
                    return Err(ApiError::invalid(
                        "namespace",
                        "namespace: Required value: watching one stream by name needs its namespace",
                    ));
                }
                let params = WatchParams {
                    namespace,
                    name: Some(request.name).filter(|n| !n.is_empty()),
                    from: query::watch_revision(&request.resource_version, "resource_version")?,
                    selector: query::selector(&request.label_selector)?,
                };
                watch::start(&self.streams, params).await
            })
            .await?;
        Ok(Response::new(events))
    }

    #[instrument(skip_all, fields(namespace = %request.get_ref().namespace, name = %request.get_ref().name), err(level = "debug"))]
    async fn import_image(
        &self,
        request: Request<proto::ImportImageRequest>,
    ) -> Result<Response<proto::ImportImageResponse>, Status> {
        // an import waits for registries: it has its own, longer deadline
        // (the ImportClient's wait), not the unary one
        authorize_request(&request, Some(&request.get_ref().namespace), Verb::Import)?;
        let response = import_image(&self.imports, request.into_inner()).await?;
        Ok(Response::new(response))
    }

    #[instrument(skip_all, fields(namespace = %request.get_ref().namespace, source = %request.get_ref().source, destination = %request.get_ref().destination), err(level = "debug"))]
    async fn mirror(
        &self,
        request: Request<proto::MirrorRequest>,
    ) -> Result<Response<proto::MirrorResponse>, Status> {
        // pushing with the namespace's registry secrets takes the right that
        // pulling with them does; like an import, a mirror has the
        // MirrorClient's longer deadline
        authorize_request(&request, Some(&request.get_ref().namespace), Verb::Import)?;
        let response = self.mirrors.mirror(request.get_ref()).await?;
        Ok(Response::new(response))
    }

    #[instrument(skip_all, fields(namespace = %request.get_ref().namespace, source = %request.get_ref().source), err(level = "debug"))]
    async fn tag(
        &self,
        request: Request<proto::TagRequest>,
    ) -> Result<Response<proto::TagResponse>, Status> {
        let (source, destinations) = tag_namespaces(request.get_ref());
        if let Some(source) = &source {
            authorize_request(&request, Some(source), Verb::Get)?;
        }
        for namespace in &destinations {
            authorize_request(&request, Some(namespace), Verb::Tag)?;
        }
        let request = request.into_inner();
        let changed = self.streams.deadline(self.streams.tag(request)).await?;
        Ok(Response::new(proto::TagResponse {
            image_streams: changed.into_iter().map(Into::into).collect(),
        }))
    }

    #[instrument(skip_all, fields(namespace = %request.get_ref().namespace, name = %request.get_ref().name), err(level = "debug"))]
    async fn history(
        &self,
        request: Request<proto::HistoryRequest>,
    ) -> Result<Response<proto::HistoryResponse>, Status> {
        authorize_request(&request, Some(&request.get_ref().namespace), Verb::Get)?;
        let request = request.into_inner();
        let query = history::Query::try_from(request)?;
        let answer = self
            .streams
            .deadline(self.streams.history.answer(&query))
            .await?;
        Ok(Response::new(answer.into()))
    }
}
