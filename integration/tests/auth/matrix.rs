//! Identities × namespaces × operations, over gRPC, REST and a real
//! docker-registry taking our tokens (push and pull with skopeo): every
//! cell's code is checked, and the matrix is printed.

use std::time::Duration;

use futures::StreamExt as _;
use imagestreams_common::auth::{Role, Verb};
use imagestreams_gateway::registry_token::grant::Action;
use imagestreams_integration::{NatsServer, OciImage, Registry, TestApp, pull};
use imagestreams_proto::v1 as proto;
use tonic::Code;

use crate::{
    Clients, EDITOR, EDITOR2, ROOT, UNKNOWN_TOKEN, VIEWER, clients, spawn_with_registry, stream,
};

/// What a cell must show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// Anything but 401/403.
    Allowed,
    /// UNAUTHENTICATED / 401.
    Unauthenticated,
    /// PERMISSION_DENIED / 403.
    Denied,
}

/// One caller of the matrix.
struct Who {
    label: &'static str,
    token: Option<String>,
    /// The role per namespace (`"*"`: every namespace at once).
    role: fn(&str) -> Option<Role>,
}

impl Who {
    fn expect(&self, namespace: &str, verb: Verb) -> Expect {
        if self.token.is_none() || self.label == "unknown-token" {
            return Expect::Unauthenticated;
        }
        match (self.role)(namespace) {
            Some(role) if role.allows(verb) => Expect::Allowed,
            _ => Expect::Denied,
        }
    }

    /// Through the registry, an anonymous caller gets a token granting
    /// nothing, so the registry denies; a token nobody holds is refused by
    /// the token endpoint (401).
    fn expect_registry(&self, namespace: &str, action: Action) -> Expect {
        match self.expect(namespace, action.verb()) {
            Expect::Unauthenticated if self.token.is_none() => Expect::Denied,
            other => other,
        }
    }
}

/// The registry operations: push a new image to `<ns>/by-<who>:1`, pull `<ns>/seed:1`.
const REGISTRY_OPERATIONS: [(&str, Action); 2] = [("push", Action::Push), ("pull", Action::Pull)];

/// Runs one registry operation with skopeo as `who` in `namespace`.
async fn registry_op(
    registry: &Registry,
    image: &OciImage,
    who: &Who,
    action: Action,
    namespace: &str,
) -> anyhow::Result<String> {
    let creds = who.token.as_deref().map(|token| (who.label, token));
    match action {
        Action::Push => {
            let dest = registry.image_ref(&format!("{namespace}/by-{}:1", who.label));
            image.push(&dest, creds).await
        }
        _ => pull(&registry.image_ref(&format!("{namespace}/seed:1")), creds).await,
    }
}

/// A skopeo outcome as a cell: the token endpoint's 401 shows as
/// "invalid username/password", the registry's refusal as denied or
/// unauthorized.
fn classify_registry(result: anyhow::Result<String>) -> (Expect, String) {
    match result {
        Ok(_) => (Expect::Allowed, "OK".into()),
        Err(e) if format!("{e:#}").contains("invalid username/password") => {
            (Expect::Unauthenticated, "401".into())
        }
        Err(e) => {
            let message = format!("{e:#}");
            if message.contains("denied") || message.contains("unauthorized") {
                (Expect::Denied, "DENIED".into())
            } else {
                (Expect::Allowed, format!("error: {message}"))
            }
        }
    }
}

const OPERATIONS: [(&str, Verb); 11] = [
    ("get", Verb::Get),
    ("list", Verb::List),
    ("watch", Verb::Watch),
    ("create", Verb::Create),
    ("update", Verb::Update),
    ("delete", Verb::Delete),
    ("tag", Verb::Tag),
    ("import", Verb::Import),
    ("secrets", Verb::Secrets),
    ("triggers", Verb::Triggers),
    ("list-triggers", Verb::List),
];

const REST_OPERATIONS: [(&str, Verb); 5] = [
    ("get", Verb::Get),
    ("list", Verb::List),
    ("create", Verb::Create),
    ("update", Verb::Update),
    ("delete", Verb::Delete),
];

fn classify_grpc(result: Result<(), tonic::Status>) -> (Expect, String) {
    match result {
        Ok(()) => (Expect::Allowed, "OK".into()),
        Err(s) if s.code() == Code::Unauthenticated => (Expect::Unauthenticated, "UNAUTH".into()),
        Err(s) if s.code() == Code::PermissionDenied => (Expect::Denied, "DENIED".into()),
        Err(s) => (Expect::Allowed, format!("{:?}", s.code())),
    }
}

fn classify_http(status: u16) -> (Expect, String) {
    match status {
        401 => (Expect::Unauthenticated, "401".into()),
        403 => (Expect::Denied, "403".into()),
        other => (Expect::Allowed, other.to_string()),
    }
}

/// Runs one gRPC operation in `namespace` (`""`: every namespace).
async fn grpc(c: &mut Clients, op: &str, namespace: &str, me: &str) -> Result<(), tonic::Status> {
    let ns = namespace.to_owned();
    match op {
        "get" => c
            .streams
            .get(proto::GetRequest {
                namespace: ns,
                name: "app".into(),
                ..Default::default()
            })
            .await
            .map(drop),
        "list" => c
            .streams
            .list(proto::ListRequest {
                namespace: ns,
                ..Default::default()
            })
            .await
            .map(drop),
        "watch" => {
            let mut events = c
                .streams
                .watch(proto::WatchRequest {
                    namespace: ns,
                    ..Default::default()
                })
                .await?
                .into_inner();
            // the current state comes first: at least `app`
            match tokio::time::timeout(Duration::from_secs(10), events.next()).await {
                Ok(Some(Ok(_))) => Ok(()),
                Ok(Some(Err(status))) => Err(status),
                other => panic!("watch gave no event: {other:?}"),
            }
        }
        "create" => c
            .streams
            .create(proto::CreateRequest {
                namespace: ns.clone(),
                image_stream: Some(stream(&ns, &format!("made-by-{me}"))),
            })
            .await
            .map(drop),
        "update" => c
            .streams
            .update(proto::UpdateRequest {
                namespace: ns.clone(),
                image_stream: Some(stream(&ns, "app")),
            })
            .await
            .map(drop),
        "delete" => c
            .streams
            .delete(proto::DeleteRequest {
                namespace: ns,
                name: format!("missing-{me}"),
                ..Default::default()
            })
            .await
            .map(drop),
        "tag" => c
            .streams
            .tag(proto::TagRequest {
                namespace: ns,
                source: "app:missing".into(),
                destinations: vec!["app:copy".into()],
                ..Default::default()
            })
            .await
            .map(drop),
        // an empty request: authorized first, then refused as invalid
        "import" => c
            .streams
            .import_image(proto::ImportImageRequest {
                namespace: ns,
                ..Default::default()
            })
            .await
            .map(drop),
        "secrets" => c
            .secrets
            .list(proto::ListSecretsRequest { namespace: ns })
            .await
            .map(drop),
        // an empty trigger: authorized first, then refused as invalid
        "triggers" => c
            .triggers
            .create(proto::CreateTriggerRequest {
                namespace: ns,
                ..Default::default()
            })
            .await
            .map(drop),
        "list-triggers" => c
            .triggers
            .list(proto::ListTriggersRequest { namespace: ns })
            .await
            .map(drop),
        other => unreachable!("{other}"),
    }
}

/// Runs one REST operation in `namespace` (`""`: every namespace); the HTTP status.
async fn rest(app: &TestApp, token: Option<&str>, op: &str, namespace: &str, me: &str) -> u16 {
    let base = format!("{}/apis/image.openshift.io/v1", app.http_url());
    let http = reqwest::Client::new();
    let collection = match namespace {
        "" => format!("{base}/imagestreams"),
        ns => format!("{base}/namespaces/{ns}/imagestreams"),
    };
    let body = |name: &str| {
        serde_json::json!({
            "kind": "ImageStream", "apiVersion": "image.openshift.io/v1",
            "metadata": {"name": name, "namespace": namespace}
        })
    };
    let request = match op {
        "get" => http.get(format!("{collection}/app")),
        "list" => http.get(&collection),
        "create" => http
            .post(&collection)
            .json(&body(&format!("rest-made-by-{me}"))),
        "update" => http.put(format!("{collection}/app")).json(&body("app")),
        "delete" => http.delete(format!("{collection}/missing-{me}")),
        other => unreachable!("{other}"),
    };
    let request = match token {
        Some(t) => request.bearer_auth(t),
        None => request,
    };
    let response = request.send().await.expect("REST call");
    let status = response.status().as_u16();
    if status == 401 {
        assert!(
            response.headers().contains_key("www-authenticate"),
            "a 401 says how to authenticate"
        );
    }
    status
}

#[tokio::test]
async fn every_cell_of_the_matrix_holds() {
    let nats = NatsServer::start().await.expect("nats-server");
    let (app, registry) = spawn_with_registry(&nats, false).await;
    let image = imagestreams_integration::ImageBuilder::new()
        .build()
        .await
        .expect("an image");
    for ns in ["ns1", "ns2"] {
        image
            .push(
                &registry.image_ref(&format!("{ns}/seed:1")),
                Some(("root", ROOT.1)),
            )
            .await
            .expect("root pushes the seed image");
    }
    let mut root = clients(&app, Some(ROOT.1)).await;
    for ns in ["ns1", "ns2"] {
        root.streams
            .create(proto::CreateRequest {
                namespace: ns.into(),
                image_stream: Some(stream(ns, "app")),
            })
            .await
            .expect("root creates app");
    }
    // a service account made through the API, admin of ns2
    let sa = root
        .auth
        .create_service_account(proto::CreateServiceAccountRequest {
            namespace: "ns2".into(),
            name: "deployer".into(),
        })
        .await
        .expect("root creates a service account")
        .into_inner();
    assert_eq!(sa.identity, "system:serviceaccount:ns2:deployer");
    root.auth
        .create_role_binding(proto::CreateRoleBindingRequest {
            namespace: "ns2".into(),
            role: "admin".into(),
            user: sa.identity.clone(),
            group: String::new(),
        })
        .await
        .expect("root binds admin in ns2");
    let mut sa_clients = clients(&app, Some(&sa.token)).await;
    let me = sa_clients
        .auth
        .who_am_i(proto::WhoAmIRequest {})
        .await
        .expect("whoami")
        .into_inner();
    assert_eq!(me.name, sa.identity);
    // an ns2 admin can't make itself cluster-admin, nor bind in ns1
    let escalate = sa_clients
        .auth
        .create_role_binding(proto::CreateRoleBindingRequest {
            namespace: String::new(),
            role: "cluster-admin".into(),
            user: sa.identity.clone(),
            group: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(escalate.code(), Code::PermissionDenied);

    let callers = [
        Who {
            label: "cluster-admin",
            token: Some(ROOT.1.into()),
            role: |_| Some(Role::ClusterAdmin),
        },
        Who {
            label: "ns1-editor",
            token: Some(EDITOR.1.into()),
            role: |ns| (ns == "ns1").then_some(Role::Edit),
        },
        Who {
            label: "ns1-viewer",
            token: Some(VIEWER.1.into()),
            role: |ns| (ns == "ns1").then_some(Role::View),
        },
        Who {
            label: "ns2-editor",
            token: Some(EDITOR2.1.into()),
            role: |ns| (ns == "ns2").then_some(Role::Edit),
        },
        Who {
            label: "ns2-admin",
            token: Some(sa.token.clone()),
            role: |ns| (ns == "ns2").then_some(Role::Admin),
        },
        Who {
            label: "unknown-token",
            token: Some(UNKNOWN_TOKEN.into()),
            role: |_| None,
        },
        Who {
            label: "no-token",
            token: None,
            role: |_| None,
        },
    ];

    let mut table = Vec::new();
    let mut wrong = Vec::new();
    for who in &callers {
        let mut c = clients(&app, who.token.as_deref()).await;
        for namespace in ["ns1", "ns2", "*"] {
            let ns = if namespace == "*" { "" } else { namespace };
            let mut row = format!("{:<14} {:<4} grpc |", who.label, namespace);
            for (op, verb) in OPERATIONS {
                if namespace == "*" && !matches!(verb, Verb::List | Verb::Watch) {
                    row.push_str(&format!(" {op}=-"));
                    continue;
                }
                let (got, code) = classify_grpc(grpc(&mut c, op, ns, who.label).await);
                let want = who.expect(namespace, verb);
                if got != want {
                    wrong.push(format!(
                        "grpc {} {namespace} {op}: want {want:?}, got {code}",
                        who.label
                    ));
                }
                row.push_str(&format!(" {op}={code}"));
            }
            table.push(row);
            let mut row = format!("{:<14} {:<4} rest |", who.label, namespace);
            for (op, verb) in REST_OPERATIONS {
                if namespace == "*" && verb != Verb::List {
                    continue;
                }
                let status = rest(&app, who.token.as_deref(), op, ns, who.label).await;
                let (got, code) = classify_http(status);
                let want = who.expect(namespace, verb);
                if got != want {
                    wrong.push(format!(
                        "rest {} {namespace} {op}: want {want:?}, got {code}",
                        who.label
                    ));
                }
                row.push_str(&format!(" {op}={code}"));
            }
            table.push(row);
            if namespace == "*" {
                continue;
            }
            let mut row = format!("{:<14} {:<4} reg  |", who.label, namespace);
            for (op, action) in REGISTRY_OPERATIONS {
                let result = registry_op(&registry, &image, who, action, namespace).await;
                let (got, code) = classify_registry(result);
                let want = who.expect_registry(namespace, action);
                if got != want {
                    wrong.push(format!(
                        "registry {} {namespace} {op}: want {want:?}, got {code}",
                        who.label
                    ));
                }
                row.push_str(&format!(" {op}={code}"));
            }
            table.push(row);
        }
    }
    println!("{}", table.join("\n"));
    assert!(
        wrong.is_empty(),
        "cells that do not hold:\n{}",
        wrong.join("\n")
    );
}
