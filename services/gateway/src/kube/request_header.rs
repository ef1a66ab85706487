//! Request-header authentication, for the Kubernetes-compatible API served
//! as an aggregated API behind kube-apiserver (`APIService
//! v1.image.openshift.io`): kube-apiserver authenticates the user, drops
//! their credentials and proxies the request with its own client
//! certificate and `X-Remote-User` / `X-Remote-Group` headers.
//!
//! Those headers are believed only on a connection whose client
//! certificate verified against `request_header.client_ca_file` during the
//! TLS handshake (rustls, client-auth usage required) and whose common name
//! is in `allowed_names` (any when empty), as k8s.io/apiserver does. The
//! caller is then the user named by the first non-empty username header,
//! in every group of the group headers plus `system:authenticated`, with
//! the role bindings (configured or made with `policy`) that name the user
//! or one of its groups: our RBAC, by user and group. On any other
//! connection the headers are ignored and the bearer token decides, as
//! before.
//!
//! Not here: delegating to kube-apiserver with TokenReview (bearer tokens
//! of Kubernetes users sent straight to us) and SubjectAccessReview
//! (Kubernetes RBAC deciding instead of ours). Behind the aggregator
//! kube-apiserver already authenticates every user and authorizes the
//! request against its own RBAC for `image.openshift.io` (the chart ships
//! ClusterRoles aggregated to view, edit and admin), so what is left to us
//! is namespace-level RBAC by the names it forwards; delegation would make
//! every request a round trip to kube-apiserver and needs one to test
//! against.

use std::sync::Arc;

use axum::{
    extract::{ConnectInfo, Request, State, connect_info::Connected},
    http::HeaderMap,
    middleware::Next,
    response::Response,
    serve::IncomingStream,
};
use imagestreams_common::{
    auth::{Authenticated, Identity, store::IdentityStore},
    config::RequestHeaderConfig,
    requests,
    tls::TlsListener,
};

/// The group every authenticated user is in, as in Kubernetes.
pub const AUTHENTICATED_GROUP: &str = "system:authenticated";

/// What a connection proved in its handshake: the common name of the
/// client certificate that verified, if one was presented.
#[derive(Debug, Clone, Default)]
pub(crate) struct ClientCert {
    common_name: Option<String>,
}

impl Connected<IncomingStream<'_, TlsListener>> for ClientCert {
    fn connect_info(stream: IncomingStream<'_, TlsListener>) -> Self {
        let (_, connection) = stream.io().get_ref();
        let common_name = connection
            .peer_certificates()
            .and_then(|chain| chain.first())
            .and_then(|leaf| common_name(leaf.as_ref()));
        ClientCert { common_name }
    }
}

/// The subject's common name of a DER certificate.
fn common_name(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let name = cert
        .subject()
        .iter_common_name()
        .next()?
        .as_str()
        .ok()?
        .to_owned();
    Some(name)
}

/// The middleware's state.
#[derive(Debug)]
pub(crate) struct RequestHeader {
    config: RequestHeaderConfig,
    identities: Arc<IdentityStore>,
}

impl RequestHeader {
    /// Request-header authentication per `config`, callers resolved in `identities`.
    pub fn new(config: RequestHeaderConfig, identities: Arc<IdentityStore>) -> Arc<Self> {
        Arc::new(RequestHeader { config, identities })
    }
}

/// Whether `config` trusts a client certificate with this common name.
fn allows(config: &RequestHeaderConfig, common_name: &str) -> bool {
    config.allowed_names.is_empty() || config.allowed_names.iter().any(|n| n == common_name)
}

/// The identity the headers name, when one is named.
fn identity(config: &RequestHeaderConfig, headers: &HeaderMap) -> Option<Identity> {
    let name = config
        .username_headers
        .iter()
        .flat_map(|h| headers.get_all(h.as_str()))
        .filter_map(|v| v.to_str().ok())
        .map(str::trim)
        .find(|v| !v.is_empty())?
        .to_owned();
    let mut groups: Vec<String> = config
        .group_headers
        .iter()
        .flat_map(|h| headers.get_all(h.as_str()))
        .filter_map(|v| v.to_str().ok())
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
        .collect();
    if !groups.iter().any(|g| g == AUTHENTICATED_GROUP) {
        groups.push(AUTHENTICATED_GROUP.to_owned());
    }
    Some(Identity { name, groups })
}

/// Replaces the caller the bearer token gave with the one kube-apiserver
/// names, on a connection with an allowed client certificate (see the
/// module docs).
pub(crate) async fn authenticate(
    State(state): State<Arc<RequestHeader>>,
    mut request: Request,
    next: Next,
) -> Response {
    let common_name = request
        .extensions()
        .get::<ConnectInfo<ClientCert>>()
        .and_then(|info| info.0.common_name.clone());
    if let Some(common_name) = common_name
        && state.identities.enabled()
    {
        match (
            allows(&state.config, &common_name),
            identity(&state.config, request.headers()),
        ) {
            (true, Some(identity)) => {
                let caller = state.identities.caller(identity).await;
                let actor = caller
                    .as_ref()
                    .map(|c| c.name().to_owned())
                    .unwrap_or_default();
                request.extensions_mut().insert(Authenticated(caller));
                return requests::acting_for(actor, next.run(request)).await;
            }
            (true, None) => {}
            (false, _) => tracing::debug!(
                %common_name,
                "a client certificate outside request_header.allowed_names: its headers are ignored"
            ),
        }
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(allowed: &[&str]) -> RequestHeaderConfig {
        RequestHeaderConfig {
            client_ca_file: "/dev/null".into(),
            allowed_names: allowed.iter().map(|s| s.to_string()).collect(),
            username_headers: vec!["X-Remote-User".into()],
            group_headers: vec!["X-Remote-Group".into()],
        }
    }

    #[test]
    fn the_headers_name_the_user_and_groups() {
        let headers = |pairs: &[(&str, &str)]| {
            let mut map = HeaderMap::new();
            for (k, v) in pairs {
                map.append(
                    axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                    v.parse().unwrap(),
                );
            }
            map
        };
        let config = config(&["front-proxy-client"]);
        let check = |h: &HeaderMap| identity(&config, h);
        assert!(allows(&config, "front-proxy-client"));
        assert!(!allows(&config, "someone-else"));
        assert!(allows(&super::tests::config(&[]), "anyone"));
        let identity = check(&headers(&[
            ("x-remote-user", "alice"),
            ("x-remote-group", "devs"),
            ("x-remote-group", "ops"),
        ]))
        .unwrap();
        assert_eq!(identity.name, "alice");
        assert_eq!(identity.groups, ["devs", "ops", AUTHENTICATED_GROUP]);
        assert!(check(&headers(&[("x-remote-group", "devs")])).is_none());
        assert!(check(&headers(&[("x-remote-user", " ")])).is_none());
    }
}
