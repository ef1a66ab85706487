//! The `Receivers` gRPC service (issue 18): webhook receivers of a
//! namespace, kept by the tag-syncer (which holds the key their secrets are
//! sealed with and serves their URLs); this checks requests at the edge and
//! forwards them over NATS request-reply (`receivers.<op>`).
//!
//! Every call needs the `secrets` right in the namespace (`edit` has it): a
//! receiver's URL is itself a secret for senders that cannot sign (Docker
//! Hub, Quay), so not even listing is for viewers.

pub mod rest;

use std::time::Duration;

use imagestreams_common::{
    auth::{Verb, authorize_request},
    error::ApiError,
    model::is_dns1123_label,
    requests, subjects,
};
use imagestreams_proto::v1::{
    self as proto,
    receivers_server::{Receivers, ReceiversServer},
};
use imagestreams_tag_syncer_api::check_names;
use tonic::{Request, Response, Status};

/// How long a receivers request waits for the tag-syncer.
pub const DEFAULT_RECEIVERS_TIMEOUT: Duration = Duration::from_secs(10);

/// The client of the tag-syncer's receivers operations.
#[derive(Clone, Debug)]
pub struct ReceiversClient {
    nats: async_nats::Client,
}

impl ReceiversClient {
    /// A client over `nats`.
    pub fn new(nats: async_nats::Client) -> Self {
        ReceiversClient { nats }
    }

    async fn call(
        &self,
        op: &str,
        request: &impl prost::Message,
    ) -> Result<proto::receivers_reply::Result, ApiError> {
        requests::ask::<proto::ReceiversReply>(
            &self.nats,
            subjects::tag_syncer_api(op),
            request,
            "the tag-syncer",
            DEFAULT_RECEIVERS_TIMEOUT,
        )
        .await
    }

    async fn items(
        &self,
        op: &str,
        request: &impl prost::Message,
    ) -> Result<Vec<proto::Receiver>, ApiError> {
        match self.call(op, request).await? {
            proto::receivers_reply::Result::Receivers(list) => Ok(list.items),
            _ => Err(ApiError::Internal("unexpected tag-syncer reply".into())),
        }
    }

    /// Creates a receiver.
    pub async fn create(
        &self,
        request: &proto::CreateReceiverRequest,
    ) -> Result<proto::CreateReceiverResponse, ApiError> {
        match self.call("receivers.create", request).await? {
            proto::receivers_reply::Result::Created(created) => Ok(created),
            _ => Err(ApiError::Internal("unexpected tag-syncer reply".into())),
        }
    }

    /// One receiver.
    pub async fn get(&self, namespace: &str, name: &str) -> Result<proto::Receiver, ApiError> {
        let request = proto::GetReceiverRequest {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        };
        self.items("receivers.get", &request)
            .await?
            .pop()
            .ok_or_else(|| ApiError::Internal("empty tag-syncer reply".into()))
    }

    /// The receivers of `namespace`.
    pub async fn list(&self, namespace: &str) -> Result<Vec<proto::Receiver>, ApiError> {
        let request = proto::ListReceiversRequest {
            namespace: namespace.to_owned(),
        };
        self.items("receivers.list", &request).await
    }

    /// Deletes a receiver.
    pub async fn delete(&self, namespace: &str, name: &str) -> Result<(), ApiError> {
        let request = proto::DeleteReceiverRequest {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        };
        self.items("receivers.delete", &request).await.map(drop)
    }
}

/// The `Receivers` gRPC service.
#[derive(Clone, Debug)]
pub struct ReceiversApi {
    client: ReceiversClient,
}

impl ReceiversApi {
    /// The service over `nats`.
    pub fn new(nats: async_nats::Client) -> Self {
        ReceiversApi {
            client: ReceiversClient::new(nats),
        }
    }

    /// The client it forwards to.
    pub fn client(&self) -> ReceiversClient {
        self.client.clone()
    }

    /// The tonic server of this service.
    pub fn into_server(self) -> ReceiversServer<Self> {
        ReceiversServer::new(self)
    }
}

#[tonic::async_trait]
impl Receivers for ReceiversApi {
    async fn create(
        &self,
        request: Request<proto::CreateReceiverRequest>,
    ) -> Result<Response<proto::CreateReceiverResponse>, Status> {
        let r = request.get_ref();
        check_names(&r.namespace, &r.name)?;
        authorize_request(&request, Some(&r.namespace), Verb::Secrets)?;
        Ok(Response::new(self.client.create(request.get_ref()).await?))
    }

    async fn get(
        &self,
        request: Request<proto::GetReceiverRequest>,
    ) -> Result<Response<proto::Receiver>, Status> {
        let r = request.get_ref();
        check_names(&r.namespace, &r.name)?;
        authorize_request(&request, Some(&r.namespace), Verb::Secrets)?;
        Ok(Response::new(self.client.get(&r.namespace, &r.name).await?))
    }

    async fn list(
        &self,
        request: Request<proto::ListReceiversRequest>,
    ) -> Result<Response<proto::ListReceiversResponse>, Status> {
        let namespace = &request.get_ref().namespace;
        if !is_dns1123_label(namespace) {
            return Err(ApiError::invalid("namespace", "namespace: Required value").into());
        }
        authorize_request(&request, Some(namespace), Verb::Secrets)?;
        let items = self.client.list(namespace).await?;
        Ok(Response::new(proto::ListReceiversResponse { items }))
    }

    async fn delete(
        &self,
        request: Request<proto::DeleteReceiverRequest>,
    ) -> Result<Response<proto::DeleteReceiverResponse>, Status> {
        let r = request.get_ref();
        check_names(&r.namespace, &r.name)?;
        authorize_request(&request, Some(&r.namespace), Verb::Secrets)?;
        self.client.delete(&r.namespace, &r.name).await?;
        Ok(Response::new(proto::DeleteReceiverResponse {}))
    }
}
