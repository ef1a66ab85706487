//! Authentication at the gateway's edge and the public `Auth` gRPC service.
//!
//! [`AuthLayer`] wraps both the gRPC server and the REST routes: it reads
//! `Authorization: Bearer <token>`, resolves the caller once through the
//! [`IdentityStore`] and leaves the outcome in the request's extensions
//! ([`Authenticated`]). It rejects nothing itself, so health and reflection
//! stay open; every API handler then authorizes its (namespace, verb) with
//! [`auth::authorize_request`] or [`auth::caller_of`], and a failure
//! takes `ApiError`'s one mapping to a gRPC status or an HTTP code.

use std::{
    sync::Arc,
    task::{Context, Poll},
};

use futures::future::BoxFuture;
use imagestreams_common::{
    auth::{
        self, Authenticated, Caller, Identity, RoleBinding, Subject, Verb,
        store::{IdentityStore, Origin, subject_of},
    },
    error::ApiError,
    model::is_dns1123_label,
    requests,
};
use imagestreams_proto::v1::{
    self as proto,
    auth_server::{Auth, AuthServer},
};
use tonic::{Request, Response, Status};
use tracing::instrument;

/// The tower layer that authenticates every request (see the module docs).
#[derive(Debug, Clone)]
pub(crate) struct AuthLayer {
    store: Arc<IdentityStore>,
}

impl AuthLayer {
    /// Authenticates against `store`.
    pub fn new(store: Arc<IdentityStore>) -> Self {
        AuthLayer { store }
    }
}

impl<S> tower::Layer<S> for AuthLayer {
    type Service = Authenticate<S>;

    fn layer(&self, inner: S) -> Authenticate<S> {
        Authenticate {
            inner,
            store: self.store.clone(),
        }
    }
}

/// The service [`AuthLayer`] makes.
#[derive(Debug, Clone)]
pub(crate) struct Authenticate<S> {
    inner: S,
    store: Arc<IdentityStore>,
}

impl<S, B> tower::Service<http::Request<B>> for Authenticate<S>
where
    S: tower::Service<http::Request<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        // the clone is not ready: keep the ready one for this call
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let store = self.store.clone();
        Box::pin(async move {
            let token = auth::bearer(
                request
                    .headers()
                    .get(http::header::AUTHORIZATION)
                    .and_then(|v| v.to_str().ok()),
            );
            let caller = store.authenticate(token.as_ref()).await;
            if let Err(error) = &caller {
                tracing::debug!(%error, "authentication failed");
            }
            // the stream-store records who made a change (see `requests`)
            let actor = caller
                .as_ref()
                .map(|c| c.name().to_owned())
                .unwrap_or_default();
            request.extensions_mut().insert(Authenticated(caller));
            requests::acting_for(actor, inner.call(request)).await
        })
    }
}

/// The `Auth` gRPC service: who am I, service accounts, role bindings.
#[derive(Debug, Clone)]
pub struct AuthApi {
    store: Arc<IdentityStore>,
}

impl AuthApi {
    /// The service over `store`.
    pub fn new(store: Arc<IdentityStore>) -> Self {
        AuthApi { store }
    }

    /// The tonic server of this service.
    pub fn into_server(self) -> AuthServer<Self> {
        AuthServer::new(self)
    }
}

fn binding_to_wire(b: &RoleBinding) -> proto::RoleBinding {
    let (user, group) = match &b.subject {
        Subject::User(u) => (u.clone(), String::new()),
        Subject::Group(g) => (String::new(), g.clone()),
    };
    proto::RoleBinding {
        namespace: b.namespace.clone().unwrap_or_default(),
        role: b.role.to_string(),
        user,
        group,
        configured: false,
    }
}

fn require_namespace(namespace: &str) -> Result<(), ApiError> {
    if is_dns1123_label(namespace) {
        Ok(())
    } else {
        Err(ApiError::invalid(
            "namespace",
            format!("namespace: Invalid value: {namespace:?}: must be a DNS-1123 label"),
        ))
    }
}

/// The service account a create or delete names, once its namespace and
/// name are valid and the caller may manage accounts there.
fn service_account<T>(
    request: &Request<T>,
    namespace: &str,
    name: &str,
) -> Result<Identity, ApiError> {
    require_namespace(namespace)?;
    auth::authorize_request(request, Some(namespace), Verb::RoleBindings)?;
    if !is_dns1123_label(name) {
        return Err(ApiError::invalid(
            "name",
            format!("name: Invalid value: {name:?}: must be a DNS-1123 label"),
        ));
    }
    Ok(Identity::service_account(namespace, name))
}

/// The binding a create or delete names, once it is valid and the caller
/// may manage bindings where it applies.
fn role_binding<T>(
    request: &Request<T>,
    namespace: &str,
    role: &str,
    user: &str,
    group: &str,
) -> Result<RoleBinding, ApiError> {
    let namespace = (!namespace.is_empty()).then(|| namespace.to_owned());
    if let Some(ns) = &namespace {
        require_namespace(ns)?;
    }
    auth::authorize_request(request, namespace.as_deref(), Verb::RoleBindings)?;
    let binding = RoleBinding {
        namespace,
        role: role.parse()?,
        subject: subject_of(Some(user), Some(group))?,
    };
    binding.validate()?;
    Ok(binding)
}

#[tonic::async_trait]
impl Auth for AuthApi {
    #[instrument(skip_all, err(level = "debug"))]
    async fn who_am_i(
        &self,
        request: Request<proto::WhoAmIRequest>,
    ) -> Result<Response<proto::WhoAmIResponse>, Status> {
        let response = match auth::caller_of(request.extensions())? {
            Caller::Anonymous => {
                return Err(auth::authorize(&Caller::Anonymous, None, Verb::Get)
                    .unwrap_err()
                    .into());
            }
            Caller::Unrestricted => proto::WhoAmIResponse {
                name: Caller::Unrestricted.name().to_owned(),
                ..Default::default()
            },
            Caller::Authenticated { identity, bindings } => proto::WhoAmIResponse {
                name: identity.name.clone(),
                groups: identity.groups.clone(),
                role_bindings: bindings.iter().map(binding_to_wire).collect(),
            },
        };
        Ok(Response::new(response))
    }

    #[instrument(skip_all, fields(namespace = %request.get_ref().namespace, name = %request.get_ref().name), err(level = "debug"))]
    async fn create_service_account(
        &self,
        request: Request<proto::CreateServiceAccountRequest>,
    ) -> Result<Response<proto::CreateServiceAccountResponse>, Status> {
        let r = request.get_ref();
        let identity = service_account(&request, &r.namespace, &r.name)?;
        let token = self.store.create_identity(&identity).await?;
        tracing::info!(identity = %identity.name, "service account created");
        Ok(Response::new(proto::CreateServiceAccountResponse {
            identity: identity.name,
            token: token.expose().to_owned(),
        }))
    }

    #[instrument(skip_all, fields(namespace = %request.get_ref().namespace, role = %request.get_ref().role), err(level = "debug"))]
    async fn create_role_binding(
        &self,
        request: Request<proto::CreateRoleBindingRequest>,
    ) -> Result<Response<proto::RoleBinding>, Status> {
        let r = request.get_ref();
        let binding = role_binding(&request, &r.namespace, &r.role, &r.user, &r.group)?;
        self.store.add_binding(&binding).await?;
        tracing::info!(role = %binding.role, subject = ?binding.subject, namespace = ?binding.namespace, "role binding created");
        Ok(Response::new(binding_to_wire(&binding)))
    }

    #[instrument(skip_all, fields(namespace = %request.get_ref().namespace), err(level = "debug"))]
    async fn list_service_accounts(
        &self,
        request: Request<proto::ListServiceAccountsRequest>,
    ) -> Result<Response<proto::ListServiceAccountsResponse>, Status> {
        let namespace = request.get_ref().namespace.as_str();
        require_namespace(namespace)?;
        auth::authorize_request(&request, Some(namespace), Verb::RoleBindings)?;
        let names = self.store.service_accounts(namespace).await?;
        Ok(Response::new(proto::ListServiceAccountsResponse { names }))
    }

    #[instrument(skip_all, fields(namespace = %request.get_ref().namespace), err(level = "debug"))]
    async fn list_role_bindings(
        &self,
        request: Request<proto::ListRoleBindingsRequest>,
    ) -> Result<Response<proto::ListRoleBindingsResponse>, Status> {
        let namespace = request.get_ref().namespace.as_str();
        let namespace = (!namespace.is_empty()).then_some(namespace);
        if let Some(ns) = namespace {
            require_namespace(ns)?;
        }
        auth::authorize_request(&request, namespace, Verb::RoleBindings)?;
        let items = self
            .store
            .bindings_in(namespace)
            .await?
            .iter()
            .map(|(binding, origin)| proto::RoleBinding {
                configured: *origin == Origin::Configuration,
                ..binding_to_wire(binding)
            })
            .collect();
        Ok(Response::new(proto::ListRoleBindingsResponse { items }))
    }

    #[instrument(skip_all, fields(namespace = %request.get_ref().namespace, name = %request.get_ref().name), err(level = "debug"))]
    async fn delete_service_account(
        &self,
        request: Request<proto::DeleteServiceAccountRequest>,
    ) -> Result<Response<proto::DeleteServiceAccountResponse>, Status> {
        let r = request.get_ref();
        let identity = service_account(&request, &r.namespace, &r.name)?;
        if !self.store.delete_identity(&identity.name).await? {
            return Err(ApiError::NotFound(format!(
                "serviceaccounts \"{}\" not found in namespace \"{}\"",
                r.name, r.namespace
            ))
            .into());
        }
        tracing::info!(identity = %identity.name, "service account deleted");
        Ok(Response::new(proto::DeleteServiceAccountResponse {
            identity: identity.name,
        }))
    }

    #[instrument(skip_all, fields(namespace = %request.get_ref().namespace, role = %request.get_ref().role), err(level = "debug"))]
    async fn delete_role_binding(
        &self,
        request: Request<proto::DeleteRoleBindingRequest>,
    ) -> Result<Response<proto::DeleteRoleBindingResponse>, Status> {
        let r = request.get_ref();
        let binding = role_binding(&request, &r.namespace, &r.role, &r.user, &r.group)?;
        if !self.store.remove_binding(&binding).await? {
            let subject = match &binding.subject {
                Subject::User(user) => format!("user {user:?}"),
                Subject::Group(group) => format!("group {group:?}"),
            };
            return Err(ApiError::NotFound(format!(
                "no stored role binding of {} to {subject} {}",
                binding.role,
                match &binding.namespace {
                    Some(ns) => format!("in namespace \"{ns}\""),
                    None => "in every namespace".to_owned(),
                }
            ))
            .into());
        }
        tracing::info!(role = %binding.role, subject = ?binding.subject, namespace = ?binding.namespace, "role binding deleted");
        Ok(Response::new(proto::DeleteRoleBindingResponse {}))
    }
}
