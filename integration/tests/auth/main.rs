//! Authentication and authorization against a real nats-server: the matrix
//! of identities × namespaces × operations over gRPC and REST, watches that
//! never leak another namespace, pushes that create streams only for
//! editors, `up`'s first-start bootstrap read by the CLI, and no token in
//! any log line.

mod bootstrap;
mod matrix;
mod scoped;

use imagestreams::cli::ServiceName;
use imagestreams_common::{
    auth::Token,
    auth::{
        Role,
        store::{RoleBindingConfig, TokenConfig},
    },
    config::Config,
};
use imagestreams_integration::{NatsServer, TestApp};
use imagestreams_proto::v1::{
    self as proto, auth_client::AuthClient, image_streams_client::ImageStreamsClient,
    secrets_client::SecretsClient, triggers_client::TriggersClient,
};
use tonic::{
    Request, Status,
    service::{Interceptor, interceptor::InterceptedService},
    transport::Channel,
};

/// The configured identities: (name, token, groups).
pub const ROOT: (&str, &str, &[&str]) = ("root", "t-root-0123456789", &[]);
/// Edits ns1.
pub const EDITOR: (&str, &str, &[&str]) = ("editor", "t-editor-0123456789", &[]);
/// Views ns1, through its group.
pub const VIEWER: (&str, &str, &[&str]) = ("viewer", "t-viewer-0123456789", &["viewers"]);
/// A token nobody holds.
pub const UNKNOWN_TOKEN: &str = "t-unknown-0123456789";

/// Auth on, with [`ROOT`], [`EDITOR`] and [`VIEWER`] and their bindings.
pub fn with_auth(config: &mut Config) {
    config.auth.enabled = true;
    for (name, token, groups) in [ROOT, EDITOR, VIEWER] {
        config.auth.tokens.push(TokenConfig {
            name: name.into(),
            token_sha256: Token::new(token).hash().as_str().to_owned(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
        });
    }
    let bind = |namespace: Option<&str>, role, user: Option<&str>, group: Option<&str>| {
        RoleBindingConfig {
            namespace: namespace.map(str::to_owned),
            role,
            user: user.map(str::to_owned),
            group: group.map(str::to_owned),
        }
    };
    config.auth.role_bindings = vec![
        bind(None, Role::ClusterAdmin, Some("root"), None),
        bind(Some("ns1"), Role::Edit, Some("editor"), None),
        bind(Some("ns1"), Role::View, None, Some("viewers")),
    ];
}

/// Every service behind the API (the registry-watcher is not), auth on.
pub async fn spawn(nats: &NatsServer) -> TestApp {
    let services = [
        ServiceName::StreamStore,
        ServiceName::TagSyncer,
        ServiceName::Trigger,
        ServiceName::Gateway,
    ];
    TestApp::spawn_with(nats, &services, with_auth)
        .await
        .expect("starting the services")
}

/// Adds `Authorization: Bearer <token>` to every call (none for `None`).
#[derive(Debug, Clone)]
pub struct Bearer(pub Option<String>);

impl Interceptor for Bearer {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(token) = &self.0 {
            let value = format!("Bearer {token}")
                .parse()
                .map_err(|_| Status::internal("bad token"))?;
            request.metadata_mut().insert("authorization", value);
        }
        Ok(request)
    }
}

/// The gRPC clients of one caller.
pub struct Clients {
    /// ImageStreams.
    pub streams: ImageStreamsClient<InterceptedService<Channel, Bearer>>,
    /// Secrets.
    pub secrets: SecretsClient<InterceptedService<Channel, Bearer>>,
    /// Auth.
    pub auth: AuthClient<InterceptedService<Channel, Bearer>>,
    /// Triggers.
    pub triggers: TriggersClient<InterceptedService<Channel, Bearer>>,
}

/// Clients of `app` sending `token`.
pub async fn clients(app: &TestApp, token: Option<&str>) -> Clients {
    let channel = Channel::from_shared(app.grpc_url())
        .expect("url")
        .connect()
        .await
        .expect("connecting");
    let bearer = Bearer(token.map(str::to_owned));
    Clients {
        streams: ImageStreamsClient::with_interceptor(channel.clone(), bearer.clone()),
        secrets: SecretsClient::with_interceptor(channel.clone(), bearer.clone()),
        auth: AuthClient::with_interceptor(channel.clone(), bearer.clone()),
        triggers: TriggersClient::with_interceptor(channel, bearer),
    }
}

/// A minimal stream `namespace/name`.
pub fn stream(namespace: &str, name: &str) -> proto::ImageStream {
    imagestreams_common::model::ImageStream::new(namespace, name).into()
}
