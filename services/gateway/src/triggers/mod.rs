//! The public `Triggers` gRPC service: create, get, list and delete build and
//! deploy triggers and mirror rules, and list their firings (Builds,
//! Deployments and Mirrors) with their delivery logs. Creating a mirror rule
//! also takes the `import` verb, as a one-shot mirror does.
//!
//! Writes are validated here (the edge) and forwarded to the trigger service,
//! the single writer, over NATS request-reply; reads come straight from the
//! trigger KV buckets. A webhook secret goes in on create and never comes
//! back out: replies carry `has_secret` only.
//!
//! The gateway serves it with
//! `.add_service(triggers::TriggersApi::new(&deps).into_server())`.

pub mod rest;

use imagestreams_common::{
    auth::{Verb, authorize_request},
    error::ApiError,
    runtime::Deps,
};
use imagestreams_proto::v1::{
    self as proto,
    triggers_server::{Triggers, TriggersServer},
};
use imagestreams_trigger_api::{NewTrigger, TriggerClient, TriggerKind, TriggerReader};
use tonic::{Request, Response, Status};
use tracing::instrument;

/// The `Triggers` service implementation.
#[derive(Clone, Debug)]
pub struct TriggersApi {
    reader: TriggerReader,
    client: TriggerClient,
}

impl TriggersApi {
    /// The service over the process's NATS connection and topology.
    pub fn new(deps: &Deps) -> Self {
        TriggersApi {
            reader: TriggerReader::new(
                deps.topology.triggers.clone(),
                deps.topology.firings.clone(),
            ),
            client: TriggerClient::new(deps.nats.clone()),
        }
    }

    /// The tonic server of this service.
    pub fn into_server(self) -> TriggersServer<Self> {
        TriggersServer::new(self)
    }
}

/// The rights creating a trigger of `kind` (the wire's) takes: `triggers`,
/// and `import` as well for a mirror rule, which pushes with the namespace's
/// registry secrets as `mirror` does.
pub(crate) fn create_verbs(kind: i32) -> &'static [Verb] {
    if kind == proto::TriggerKind::Mirror as i32 {
        &[Verb::Triggers, Verb::Import]
    } else {
        &[Verb::Triggers]
    }
}

fn optional(s: &str) -> Option<&str> {
    (!s.is_empty()).then_some(s)
}

fn required<'a>(field: &str, value: &'a str) -> Result<&'a str, ApiError> {
    optional(value).ok_or_else(|| ApiError::invalid(field, "Required value"))
}

#[tonic::async_trait]
impl Triggers for TriggersApi {
    #[instrument(skip_all, fields(namespace = %request.get_ref().namespace), err)]
    async fn create(
        &self,
        request: Request<proto::CreateTriggerRequest>,
    ) -> Result<Response<proto::Trigger>, Status> {
        let namespace = request.get_ref().namespace.clone();
        let kind = request
            .get_ref()
            .trigger
            .as_ref()
            .and_then(|t| t.spec.as_ref())
            .map_or(0, |s| s.kind);
        for verb in create_verbs(kind) {
            authorize_request(&request, Some(&namespace), *verb)?;
        }
        let trigger = NewTrigger::try_from(request.into_inner())?;
        Ok(Response::new(self.client.create(&trigger).await?))
    }

    #[instrument(skip_all, fields(namespace = %request.get_ref().namespace, name = %request.get_ref().name), err)]
    async fn get(
        &self,
        request: Request<proto::GetTriggerRequest>,
    ) -> Result<Response<proto::Trigger>, Status> {
        authorize_request(&request, Some(&request.get_ref().namespace), Verb::Get)?;
        let r = request.into_inner();
        let namespace = required("namespace", &r.namespace)?;
        let name = required("name", &r.name)?;
        let stored = self.reader.get(namespace, name).await?;
        Ok(Response::new(self.reader.to_proto(&stored).await?))
    }

    #[instrument(skip_all, fields(namespace = %request.get_ref().namespace), err)]
    async fn list(
        &self,
        request: Request<proto::ListTriggersRequest>,
    ) -> Result<Response<proto::ListTriggersResponse>, Status> {
        authorize_request(&request, optional(&request.get_ref().namespace), Verb::List)?;
        let r = request.into_inner();
        let stored = self.reader.list(optional(&r.namespace)).await?;
        let mut items = Vec::with_capacity(stored.len());
        for t in &stored {
            items.push(self.reader.to_proto(t).await?);
        }
        Ok(Response::new(proto::ListTriggersResponse { items }))
    }

    #[instrument(skip_all, fields(namespace = %request.get_ref().namespace, name = %request.get_ref().name), err)]
    async fn delete(
        &self,
        request: Request<proto::DeleteTriggerRequest>,
    ) -> Result<Response<proto::DeleteTriggerResponse>, Status> {
        authorize_request(&request, Some(&request.get_ref().namespace), Verb::Triggers)?;
        let r = request.into_inner();
        let namespace = required("namespace", &r.namespace)?;
        let name = required("name", &r.name)?;
        self.client.delete(namespace, name).await?;
        Ok(Response::new(proto::DeleteTriggerResponse {}))
    }

    #[instrument(skip_all, fields(namespace = %request.get_ref().namespace, trigger = %request.get_ref().trigger), err)]
    async fn list_firings(
        &self,
        request: Request<proto::ListFiringsRequest>,
    ) -> Result<Response<proto::ListFiringsResponse>, Status> {
        authorize_request(&request, optional(&request.get_ref().namespace), Verb::List)?;
        let r = request.into_inner();
        let kind = match proto::TriggerKind::try_from(r.kind) {
            Ok(proto::TriggerKind::Unspecified) => None,
            Ok(k) => Some(TriggerKind::try_from(k)?),
            Err(_) => {
                return Err(
                    ApiError::invalid("kind", format!("Unsupported value: {}", r.kind)).into(),
                );
            }
        };
        let firings = self
            .reader
            .firings(optional(&r.namespace), optional(&r.trigger))
            .await?;
        let items = firings
            .iter()
            .filter(|f| kind.is_none_or(|k| f.value.kind == k))
            .map(|f| proto::Firing::from(&f.value))
            .collect();
        Ok(Response::new(proto::ListFiringsResponse { items }))
    }
}
