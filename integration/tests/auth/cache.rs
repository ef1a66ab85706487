//! The identity cache: a revocation written by another process (a second
//! identity store on the same bucket, as another gateway replica or an
//! admin tool is) or made through the `Auth` API reaches a gateway that has
//! the identity cached within moments, and unknown tokens never fill the
//! cache.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use imagestreams_common::{
    auth::{Caller, Identity, Role, RoleBinding, Subject, Token, store::IdentityStore},
    config::Config,
    error::ApiError,
};
use imagestreams_integration::{NatsServer, TestApp, wait_for};
use imagestreams_proto::v1::{self as proto, image_streams_client::ImageStreamsClient};
use tokio_util::sync::CancellationToken;
use tonic::{Code, service::interceptor::InterceptedService, transport::Channel};

use crate::{Bearer, ROOT, clients, spawn, stream, with_auth};

/// How soon a revocation must reach a gateway that has the identity cached:
/// the watch delivers it in milliseconds; the rest is slack for a loaded machine.
const REVOCATION_DEADLINE: Duration = Duration::from_secs(2);

/// Another identity store on the app's bucket, as a second replica has.
async fn other_store(nats: &NatsServer, app: &TestApp) -> IdentityStore {
    let js = async_nats::jetstream::new(nats.connect().await.expect("connecting"));
    IdentityStore::open(&js, 1, &app.config.auth)
        .await
        .expect("opening the identity store")
}

/// A service account of `ns1` bound to `view` there, with a stream to read.
async fn viewer_account(app: &TestApp, name: &str) -> (String, String) {
    let mut root = clients(app, Some(ROOT.1)).await;
    let created = root
        .auth
        .create_service_account(proto::CreateServiceAccountRequest {
            namespace: "ns1".into(),
            name: name.into(),
        })
        .await
        .expect("root creates the service account")
        .into_inner();
    root.auth
        .create_role_binding(proto::CreateRoleBindingRequest {
            namespace: "ns1".into(),
            role: "view".into(),
            user: created.identity.clone(),
            group: String::new(),
        })
        .await
        .expect("root binds it");
    root.streams
        .create(proto::CreateRequest {
            namespace: "ns1".into(),
            image_stream: Some(stream("ns1", name)),
        })
        .await
        .expect("root creates a stream");
    (created.identity, created.token)
}

type Streams = ImageStreamsClient<InterceptedService<Channel, Bearer>>;

async fn get(streams: &mut Streams, name: &str) -> Result<(), tonic::Status> {
    streams
        .get(proto::GetRequest {
            namespace: "ns1".into(),
            name: name.into(),
            ..Default::default()
        })
        .await
        .map(|_| ())
}

/// Polls Get until it fails with `code`; how long that took.
async fn until_refused(streams: &Streams, name: &str, code: Code) -> Duration {
    let start = Instant::now();
    wait_for(
        || {
            let mut streams = streams.clone();
            async move {
                get(&mut streams, name)
                    .await
                    .is_err_and(|s| s.code() == code)
            }
        },
        REVOCATION_DEADLINE,
    )
    .await
    .unwrap_or_else(|e| panic!("still not {code:?}: {e}"));
    start.elapsed()
}

#[tokio::test]
async fn a_removed_binding_revokes_a_cached_identity_at_once() {
    let nats = NatsServer::start().await.expect("nats-server");
    let app = spawn(&nats).await;
    let (identity, token) = viewer_account(&app, "cached-viewer").await;
    let mut sa = clients(&app, Some(&token)).await;
    for _ in 0..3 {
        get(&mut sa.streams, "cached-viewer")
            .await
            .expect("the service account views ns1");
    }

    let removed = other_store(&nats, &app)
        .await
        .remove_binding(&RoleBinding {
            namespace: Some("ns1".into()),
            role: Role::View,
            subject: Subject::User(identity),
        })
        .await
        .expect("removing the binding");
    assert!(removed);
    let took = until_refused(&sa.streams, "cached-viewer", Code::PermissionDenied).await;
    println!("binding removed elsewhere: refused after {took:?}");
    app.stop().await.expect("stopping");
}

#[tokio::test]
async fn a_deleted_service_accounts_token_is_refused() {
    let nats = NatsServer::start().await.expect("nats-server");
    let app = spawn(&nats).await;
    let (identity, token) = viewer_account(&app, "deleted").await;
    let mut sa = clients(&app, Some(&token)).await;
    for _ in 0..3 {
        get(&mut sa.streams, "deleted")
            .await
            .expect("the service account views ns1");
    }

    let store = other_store(&nats, &app).await;
    assert!(store.delete_identity(&identity).await.expect("deleting"));
    let took = until_refused(&sa.streams, "deleted", Code::Unauthenticated).await;
    println!("service account deleted elsewhere: refused after {took:?}");
    assert!(
        !store
            .delete_identity(&identity)
            .await
            .expect("deleting again"),
        "gone"
    );
    app.stop().await.expect("stopping");
}

fn unbind(namespace: &str, role: &str, user: &str, group: &str) -> proto::DeleteRoleBindingRequest {
    proto::DeleteRoleBindingRequest {
        namespace: namespace.into(),
        role: role.into(),
        user: user.into(),
        group: group.into(),
    }
}

fn account(namespace: &str, name: &str) -> proto::DeleteServiceAccountRequest {
    proto::DeleteServiceAccountRequest {
        namespace: namespace.into(),
        name: name.into(),
    }
}

#[tokio::test]
async fn an_admin_revokes_bindings_and_service_accounts_through_the_api() {
    let nats = NatsServer::start().await.expect("nats-server");
    let app = spawn(&nats).await;
    let (identity, token) = viewer_account(&app, "revoked").await;
    let mut sa = clients(&app, Some(&token)).await;
    get(&mut sa.streams, "revoked")
        .await
        .expect("the service account views ns1");
    let mut root = clients(&app, Some(ROOT.1)).await;

    // refused before anything changes: not an admin of ns1, bad input
    let mut editor = clients(&app, Some(crate::EDITOR.1)).await;
    let status = editor
        .auth
        .delete_role_binding(unbind("ns1", "view", &identity, ""))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    let status = editor
        .auth
        .delete_service_account(account("ns1", "revoked"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    for (bad, field) in [
        (unbind("ns1", "boss", &identity, ""), "role"),
        (unbind("ns1", "view", &identity, "viewers"), "user"),
        (
            unbind("Not_A_Namespace", "view", &identity, ""),
            "namespace",
        ),
    ] {
        let status = root.auth.delete_role_binding(bad).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert!(status.message().contains(field), "{field}: {status:?}");
    }
    let status = root
        .auth
        .delete_service_account(account("ns1", "Not_A_Name"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    get(&mut sa.streams, "revoked")
        .await
        .expect("nothing was revoked");

    // the binding: refused at once, then not found a second time
    root.auth
        .delete_role_binding(unbind("ns1", "view", &identity, ""))
        .await
        .expect("root removes the binding");
    let took = until_refused(&sa.streams, "revoked", Code::PermissionDenied).await;
    println!("binding removed through the API: refused after {took:?}");
    let status = root
        .auth
        .delete_role_binding(unbind("ns1", "view", &identity, ""))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound, "{status:?}");

    // bound again, then the account deleted: its token is refused
    root.auth
        .create_role_binding(proto::CreateRoleBindingRequest {
            namespace: "ns1".into(),
            role: "view".into(),
            user: identity.clone(),
            group: String::new(),
        })
        .await
        .expect("root binds it again");
    wait_for(
        || {
            let mut streams = sa.streams.clone();
            async move { get(&mut streams, "revoked").await.is_ok() }
        },
        REVOCATION_DEADLINE,
    )
    .await
    .expect("the account views ns1 again");
    let deleted = root
        .auth
        .delete_service_account(account("ns1", "revoked"))
        .await
        .expect("root deletes the account")
        .into_inner();
    assert_eq!(deleted.identity, identity);
    let took = until_refused(&sa.streams, "revoked", Code::Unauthenticated).await;
    println!("service account deleted through the API: refused after {took:?}");
    let status = root
        .auth
        .delete_service_account(account("ns1", "revoked"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    app.stop().await.expect("stopping");
}

#[tokio::test]
async fn unknown_tokens_do_not_grow_the_cache_past_its_bound() {
    const CAPACITY: usize = 8;
    let nats = NatsServer::start().await.expect("nats-server");
    let mut config = Config::for_tests(&nats.url());
    with_auth(&mut config);
    config.auth.cache_size = CAPACITY;
    let js = async_nats::jetstream::new(nats.connect().await.expect("connecting"));
    let store = Arc::new(
        IdentityStore::open(&js, 1, &config.auth)
            .await
            .expect("opening the identity store"),
    );
    let shutdown = CancellationToken::new();
    let watch = tokio::spawn({
        let (store, shutdown) = (store.clone(), shutdown.clone());
        async move { store.watch(shutdown).await }
    });

    let mut tokens = Vec::new();
    for i in 0..3 * CAPACITY {
        let identity = Identity::service_account("ns1", &format!("sa{i}"));
        tokens.push(store.create_identity(&identity).await.expect("creating"));
    }
    // the watch is live once a read gets cached
    wait_for(
        || {
            let (store, token) = (store.clone(), tokens[0].clone());
            async move {
                store.authenticate(Some(&token)).await.expect("valid");
                store.cached().0 > 0
            }
        },
        Duration::from_secs(5),
    )
    .await
    .expect("the identity cache goes live");
    for token in &tokens {
        let caller = store.authenticate(Some(token)).await.expect("valid");
        assert!(matches!(caller, Caller::Authenticated { .. }));
        let (cached_tokens, cached_bindings) = store.cached();
        assert!(cached_tokens <= CAPACITY, "{cached_tokens} tokens cached");
        assert!(
            cached_bindings <= CAPACITY,
            "{cached_bindings} binding lists cached"
        );
    }
    let before = store.cached();

    for i in 0..1000 {
        let wrong = Token::new(format!("t-wrong-{i:04}-0123456789"));
        let refused = store.authenticate(Some(&wrong)).await.unwrap_err();
        assert!(matches!(refused, ApiError::Unauthenticated(_)), "{refused}");
    }
    assert_eq!(store.cached(), before, "unknown tokens are not cached");
    println!("cached (tokens, binding lists) after 1000 unknown tokens: {before:?}");

    shutdown.cancel();
    watch.await.expect("the watch ends with the token");
}

/// Runs the CLI against `app` with `token`; (exit success, stdout, stderr).
async fn cli(app: &TestApp, token: &str, args: &[&str]) -> (bool, String, String) {
    let home = imagestreams_integration::TestDir::new("cli-access").expect("a home");
    let output = tokio::process::Command::new(imagestreams_integration::binaries::imagestreams())
        .current_dir(home.path())
        .args(["--server", &app.grpc_url(), "--token", token, "-n", "ns1"])
        .args(args)
        .env_remove("IMAGESTREAMS_TOKEN")
        .env_remove("IMAGESTREAMS_CLIENT_CONFIG")
        .env("HOME", home.path())
        .output()
        .await
        .expect("running the CLI");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn the_cli_makes_binds_and_revokes_a_service_account_as_oc_does() {
    let nats = NatsServer::start().await.expect("nats-server");
    let app = spawn(&nats).await;
    let mut root = clients(&app, Some(ROOT.1)).await;
    root.streams
        .create(proto::CreateRequest {
            namespace: "ns1".into(),
            image_stream: Some(stream("ns1", "app")),
        })
        .await
        .expect("root creates a stream");
    let sa = "system:serviceaccount:ns1:ci";

    let (ok, token, note) = cli(&app, ROOT.1, &["create", "serviceaccount", "ci"]).await;
    assert!(ok, "{note}");
    let token = token.trim().to_owned();
    assert!(
        !token.is_empty() && !token.contains(' '),
        "stdout is the token alone: {token:?}"
    );
    assert!(
        note.contains("serviceaccount/ci created") && note.contains(sa),
        "{note}"
    );
    assert!(!note.contains(&token), "the token is on stdout only");
    assert_eq!(cli(&app, &token, &["whoami"]).await.1.trim(), sa);
    let (ok, table, err) = cli(&app, ROOT.1, &["get", "sa"]).await;
    assert!(ok, "{err}");
    assert_eq!(
        table.split_whitespace().collect::<Vec<_>>(),
        ["NAME", "ci"],
        "{table}"
    );
    let (ok, _, err) = cli(&app, &token, &["get", "is", "app"]).await;
    assert!(!ok, "no role yet");
    assert!(
        err.starts_with("error:") && err.lines().count() == 1,
        "{err}"
    );

    let (ok, out, err) = cli(&app, ROOT.1, &["policy", "add-role-to-user", "view", sa]).await;
    assert!(ok, "{err}");
    assert_eq!(out.trim(), format!("role \"view\" added: \"{sa}\""));
    wait_for(
        || async { cli(&app, &token, &["get", "is", "app"]).await.0 },
        REVOCATION_DEADLINE,
    )
    .await
    .expect("the account views ns1");
    let (ok, _, err) = cli(&app, &token, &["policy", "add-role-to-user", "admin", sa]).await;
    assert!(!ok, "a viewer cannot grant itself more");
    assert!(err.contains("cannot manage rolebindings"), "{err}");
    let (ok, _, err) = cli(&app, &token, &["get", "rolebindings"]).await;
    assert!(
        !ok && err.contains("cannot manage rolebindings"),
        "nor list them: {err}"
    );

    // the namespace's bindings: the configuration's and the API's
    let rows = |table: &str| -> Vec<Vec<String>> {
        table
            .lines()
            .map(|l| l.split_whitespace().map(str::to_owned).collect())
            .collect()
    };
    let (ok, table, err) = cli(&app, ROOT.1, &["get", "rolebindings"]).await;
    assert!(ok, "{err}");
    assert_eq!(
        rows(&table),
        [
            // by role, least first, then users before groups
            vec!["ROLE", "KIND", "SUBJECT", "SOURCE"],
            vec!["view", "User", sa, "api"],
            vec!["view", "Group", "viewers", "config"],
            vec!["edit", "User", "editor", "config"],
        ],
        "{table}"
    );
    let (ok, table, err) = cli(&app, ROOT.1, &["get", "rb", "-A"]).await;
    assert!(ok, "{err}");
    let everyone = rows(&table);
    assert!(
        everyone.contains(&vec![
            "*".into(),
            "cluster-admin".into(),
            "User".into(),
            "root".into(),
            "config".into()
        ]),
        "{table}"
    );
    assert!(
        everyone.contains(&vec![
            "ns2".into(),
            "edit".into(),
            "User".into(),
            "editor2".into(),
            "config".into()
        ]),
        "{table}"
    );

    let (ok, out, err) = cli(
        &app,
        ROOT.1,
        &["policy", "remove-role-from-user", "view", sa],
    )
    .await;
    assert!(ok, "{err}");
    assert_eq!(out.trim(), format!("role \"view\" removed: \"{sa}\""));
    let (_, table, _) = cli(&app, ROOT.1, &["get", "rolebindings"]).await;
    assert!(
        !table.contains(sa),
        "the binding is gone from the list: {table}"
    );
    wait_for(
        || async { !cli(&app, &token, &["get", "is", "app"]).await.0 },
        REVOCATION_DEADLINE,
    )
    .await
    .expect("the account is refused again");

    let (ok, out, err) = cli(&app, ROOT.1, &["delete", "sa", "ci"]).await;
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "serviceaccount \"ci\" deleted");
    let (ok, table, note) = cli(&app, ROOT.1, &["get", "serviceaccounts"]).await;
    assert!(ok && table.is_empty(), "{table}");
    assert!(
        note.contains("No resources found in ns1 namespace."),
        "{note}"
    );
    wait_for(
        || async { !cli(&app, &token, &["whoami"]).await.0 },
        REVOCATION_DEADLINE,
    )
    .await
    .expect("the token is refused");
    let (ok, _, err) = cli(&app, ROOT.1, &["delete", "sa", "ci"]).await;
    assert!(!ok);
    assert!(err.contains("not found"), "{err}");
    app.stop().await.expect("stopping");
}
