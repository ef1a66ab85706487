//! Authentication and authorization against a real nats-server: the matrix
//! of identities × namespaces × operations over gRPC, REST and a real
//! docker-registry taking our registry tokens (push and pull with skopeo),
//! watches that never leak another namespace, pushes that create streams
//! only for editors, the token endpoint's answers to bad input, `up`'s
//! first-start bootstrap read by the CLI, the identity cache's prompt
//! revocation and bound, TLS on the gateway's ports, and no token in any
//! log line.

mod aggregated;
mod bootstrap;
mod cache;
mod matrix;
mod registry;
mod scoped;
mod tls;

use imagestreams::cli::ServiceName;
use imagestreams_common::{
    auth::Token,
    auth::{
        Role,
        store::{RoleBindingConfig, TokenConfig},
    },
    config::{Config, RegistryTokenConfig, Secret},
};
pub use imagestreams_integration::Bearer;
use imagestreams_integration::{NatsServer, Registry, RegistryOptions, TestApp, TokenKeys};
use imagestreams_proto::v1::{
    self as proto, auth_client::AuthClient, image_streams_client::ImageStreamsClient,
    secrets_client::SecretsClient, triggers_client::TriggersClient,
};
use tonic::{service::interceptor::InterceptedService, transport::Channel};

/// The configured identities: (name, token, groups).
pub const ROOT: (&str, &str, &[&str]) = ("root", "t-root-0123456789", &[]);
/// Edits ns1.
pub const EDITOR: (&str, &str, &[&str]) = ("editor", "t-editor-0123456789", &[]);
/// Views ns1, through its group.
pub const VIEWER: (&str, &str, &[&str]) = ("viewer", "t-viewer-0123456789", &["viewers"]);
/// Edits ns2.
pub const EDITOR2: (&str, &str, &[&str]) = ("editor2", "t-editor2-0123456789", &[]);
/// A token nobody holds.
pub const UNKNOWN_TOKEN: &str = "t-unknown-0123456789";

/// Auth on, with [`ROOT`], [`EDITOR`] and [`VIEWER`] and their bindings.
pub fn with_auth(config: &mut Config) {
    config.auth.enabled = true;
    for (name, token, groups) in [ROOT, EDITOR, VIEWER, EDITOR2] {
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
        bind(Some("ns2"), Role::Edit, Some("editor2"), None),
    ];
}

/// The bearer token the registry sends with its notifications.
const NOTIFY_TOKEN: &str = "t-notify-0123456789";

/// Every service behind the API, auth and the registry token service on
/// (plus the registry-watcher when `watcher`); `configure` adjusts the rest.
async fn start(
    nats: &NatsServer,
    watcher: bool,
    keys: &TokenKeys,
    configure: impl FnOnce(&mut Config),
) -> TestApp {
    let mut services = vec![
        ServiceName::StreamStore,
        ServiceName::TagSyncer,
        ServiceName::Trigger,
        ServiceName::Gateway,
    ];
    if watcher {
        services.push(ServiceName::RegistryWatcher);
    }
    TestApp::spawn_with(nats, &services, |config| {
        with_auth(config);
        keys.configure(&mut config.auth.registry);
        config.registry_watcher.token = Some(Secret::new(NOTIFY_TOKEN));
        configure(config);
    })
    .await
    .expect("starting the services")
}

/// Every service behind the API (the registry-watcher is not), auth and the
/// registry token service on.
pub async fn spawn(nats: &NatsServer) -> TestApp {
    let keys = TokenKeys::generate().expect("registry token keys");
    start(nats, false, &keys, |_| {}).await
}

/// [`spawn`], plus a real docker-registry that sends its clients to the
/// gateway's `/token`; with `watcher`, the registry-watcher too, which the
/// registry notifies of pushes and which reads pushed images from it.
pub async fn spawn_with_registry(nats: &NatsServer, watcher: bool) -> (TestApp, Registry) {
    let keys = TokenKeys::generate().expect("registry token keys");
    // The gateway's and the watcher's ports, held while the registry (which
    // needs both) starts; the services then need the registry's.
    let http = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
    let notifications = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
    let (http_addr, notify_addr) = (
        http.local_addr().expect("bound"),
        notifications.local_addr().expect("bound"),
    );
    let mut settings = RegistryTokenConfig::default();
    keys.configure(&mut settings);
    let mut options = RegistryOptions {
        token_auth: Some(keys.registry_auth(&settings, &format!("http://{http_addr}"))),
        ignored_actions: vec!["pull".to_owned()],
        ..RegistryOptions::default()
    };
    if watcher {
        options.notify_url = Some(format!("http://{notify_addr}/notifications"));
        options.notify_token = Some(NOTIFY_TOKEN.to_owned());
    }
    let registry = Registry::start(options).await.expect("docker-registry");
    drop((http, notifications));
    let host = registry.host();
    let app = start(nats, watcher, &keys, |config| {
        config.gateway.http_listen = http_addr;
        config.registry_watcher.listen = notify_addr;
        config.integrated_registry.host = host;
    })
    .await;
    (app, registry)
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
