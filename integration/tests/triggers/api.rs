//! The public `Triggers` gRPC service, served here by the gateway's own
//! implementation (`imagestreams_gateway::triggers`) over a real trigger
//! replica: create, get, list, delete, list firings, and no secret leaks.

use imagestreams_common::runtime::{Deps, Health};
use imagestreams_proto::v1::{self as proto, triggers_client::TriggersClient};
use tonic::{Code, transport::Channel};

use crate::kit::{Env, Receiver, SECRET, digest};

use imagestreams_gateway::triggers as gateway_triggers;

/// Serves the gateway's `Triggers` implementation on a free port.
pub async fn serve_grpc(env: &Env) -> anyhow::Result<std::net::SocketAddr> {
    let deps = Deps {
        nats: env.client.clone(),
        topology: env.topology.clone(),
        health: Health::default(),
        metrics: Default::default(),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let service = gateway_triggers::TriggersApi::new(&deps).into_server();
    tokio::spawn(
        tonic::transport::Server::builder()
            .layer(tonic::service::InterceptorLayer::new(
                imagestreams_common::auth::unrestricted,
            ))
            .add_service(service)
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );
    Ok(addr)
}

async fn serve(env: &Env) -> anyhow::Result<TriggersClient<Channel>> {
    let addr = serve_grpc(env).await?;
    Ok(TriggersClient::connect(format!("http://{addr}")).await?)
}

fn create_request(name: &str, url: String) -> proto::CreateTriggerRequest {
    proto::CreateTriggerRequest {
        namespace: "api".into(),
        trigger: Some(proto::Trigger {
            name: name.into(),
            spec: Some(proto::TriggerSpec {
                from: Some(proto::ImageStreamTagReference {
                    namespace: String::new(),
                    stream: "app".into(),
                    tag: "latest".into(),
                }),
                kind: proto::TriggerKind::Build as i32,
                webhook: Some(proto::Webhook {
                    url,
                    secret: SECRET.into(),
                    has_secret: false,
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        no_fire_existing: false,
    }
}

#[tokio::test]
async fn the_grpc_api_manages_triggers_and_lists_firings_without_leaking_secrets()
-> anyhow::Result<()> {
    let env = Env::start(|_| {}).await?;
    let receiver = Receiver::start().await?;
    let _replica = env.replica().await?;
    let mut api = serve(&env).await?;

    let created = api
        .create(create_request("app-build", receiver.url("ok", "app-build")))
        .await?
        .into_inner();
    let webhook = created
        .spec
        .clone()
        .and_then(|s| s.webhook)
        .expect("webhook");
    assert!(webhook.has_secret);
    assert!(webhook.secret.is_empty(), "the secret never comes back");
    assert!(!created.uid.is_empty());
    assert_eq!(
        api.create(create_request("app-build", receiver.url("ok", "x")))
            .await
            .unwrap_err()
            .code(),
        Code::AlreadyExists
    );
    let mut bad = create_request("bad", receiver.url("ok", "bad"));
    if let Some(spec) = bad.trigger.as_mut().and_then(|t| t.spec.as_mut()) {
        spec.kind = 0;
    }
    let status = api.create(bad).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("kind"), "{}", status.message());

    env.tags_changed("api", "app", "latest", &digest("api"), 4, None)
        .await?;
    env.wait_firings_complete("api", "app-build", 1).await?;

    let got = api
        .get(proto::GetTriggerRequest {
            namespace: "api".into(),
            name: "app-build".into(),
        })
        .await?
        .into_inner();
    let status = got.status.clone().expect("status");
    assert_eq!(status.last_triggered_image, digest("api"));
    let last = status.last_delivery.expect("last delivery");
    assert_eq!(last.state, proto::DeliveryState::Succeeded as i32);
    assert_eq!(last.last_status_code, 200);
    assert!(!format!("{got:?}").contains(SECRET));

    let list = api
        .list(proto::ListTriggersRequest {
            namespace: "api".into(),
        })
        .await?
        .into_inner();
    assert_eq!(list.items.len(), 1);
    assert!(!format!("{list:?}").contains(SECRET));

    let builds = api
        .list_firings(proto::ListFiringsRequest {
            namespace: "api".into(),
            trigger: String::new(),
            kind: proto::TriggerKind::Build as i32,
        })
        .await?
        .into_inner();
    assert_eq!(builds.items.len(), 1);
    let build = &builds.items[0];
    assert_eq!(build.image, digest("api"));
    assert_eq!(build.cause, "Image change");
    assert!(build.complete && build.event_published);
    let delivery = build.delivery.clone().expect("delivery");
    assert_eq!(delivery.attempts, 1);
    assert_eq!(delivery.history.len(), 1);
    let deployments = api
        .list_firings(proto::ListFiringsRequest {
            namespace: "api".into(),
            trigger: String::new(),
            kind: proto::TriggerKind::Deploy as i32,
        })
        .await?
        .into_inner();
    assert!(deployments.items.is_empty());

    api.delete(proto::DeleteTriggerRequest {
        namespace: "api".into(),
        name: "app-build".into(),
    })
    .await?;
    let missing = api
        .get(proto::GetTriggerRequest {
            namespace: "api".into(),
            name: "app-build".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    let after = api
        .list_firings(proto::ListFiringsRequest {
            namespace: "api".into(),
            ..Default::default()
        })
        .await?
        .into_inner();
    assert!(
        after.items.is_empty(),
        "a deleted trigger's firings go with it"
    );
    assert_eq!(
        api.delete(proto::DeleteTriggerRequest {
            namespace: "api".into(),
            name: "app-build".into(),
        })
        .await
        .unwrap_err()
        .code(),
        Code::NotFound
    );
    Ok(())
}
