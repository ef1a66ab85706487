//! The `Secrets` gRPC service: registry secrets of a namespace, kept by the
//! tag-syncer (the only holder of the key they are sealed with); this checks
//! requests at the edge and forwards them over NATS
//! ([`SecretsClient`]). A password goes in on create and never comes back.

use imagestreams_common::{
    auth::{Verb, authorize_request},
    error::ApiError,
    model::is_dns1123_label,
};
use imagestreams_proto::v1::{
    self as proto,
    secrets_server::{Secrets, SecretsServer},
};
use imagestreams_tag_syncer_api::{NewRegistrySecret, SecretsClient, check_names};
use tonic::{Request, Response, Status};

/// The `Secrets` gRPC service: checks requests at the edge and forwards them
/// to the tag-syncer. The gateway serves it with
/// `.add_service(SecretsApi::new(deps.nats.clone()).into_server())`.
#[derive(Clone, Debug)]
pub struct SecretsApi {
    client: SecretsClient,
}

impl SecretsApi {
    /// The service over `nats`.
    pub fn new(nats: async_nats::Client) -> Self {
        SecretsApi {
            client: SecretsClient::new(nats),
        }
    }

    /// The tonic server of this service.
    pub fn into_server(self) -> SecretsServer<Self> {
        SecretsServer::new(self)
    }
}

#[tonic::async_trait]
impl Secrets for SecretsApi {
    async fn create_registry(
        &self,
        request: Request<proto::CreateRegistrySecretRequest>,
    ) -> Result<Response<proto::RegistrySecret>, Status> {
        authorize_request(&request, Some(&request.get_ref().namespace), Verb::Secrets)?;
        let request = request.into_inner();
        // validated here too, so that a bad request never reaches NATS
        NewRegistrySecret::try_from(request.clone())?;
        Ok(Response::new(self.client.create(&request).await?))
    }

    async fn list(
        &self,
        request: Request<proto::ListSecretsRequest>,
    ) -> Result<Response<proto::ListSecretsResponse>, Status> {
        let namespace = &request.get_ref().namespace;
        if !is_dns1123_label(namespace) {
            return Err(ApiError::invalid("namespace", "namespace: Required value").into());
        }
        authorize_request(&request, Some(namespace), Verb::Secrets)?;
        let items = self.client.list(namespace).await?;
        Ok(Response::new(proto::ListSecretsResponse { items }))
    }

    async fn delete(
        &self,
        request: Request<proto::DeleteSecretRequest>,
    ) -> Result<Response<proto::DeleteSecretResponse>, Status> {
        let r = request.get_ref();
        check_names(&r.namespace, &r.name)?;
        authorize_request(&request, Some(&r.namespace), Verb::Secrets)?;
        self.client.delete(&r.namespace, &r.name).await?;
        Ok(Response::new(proto::DeleteSecretResponse {}))
    }
}
