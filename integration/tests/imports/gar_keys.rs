//! A GAR receiver whose keys come by URL (issue 18), as Google's do: the
//! tag-syncer fetches them at the first delivery, fetches them again when a
//! token names a key it has not seen (Google rotated), and a stranger's
//! tokens naming made-up keys cost at most one fetch every few seconds.
//! The JWKS endpoint is a local HTTP server counting its requests.

use std::{
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use axum::{extract::State, http::header, response::IntoResponse, routing::get};
use imagestreams_integration::push_unique_image;
use jsonwebtoken::{Algorithm, EncodingKey, jwk::Jwk};
use serde_json::{Value, json};

use super::{
    images,
    receiver_kinds::{GAR_AUDIENCE, GAR_EMAIL, fixtures, gar_message, gar_token},
    receivers::{Hooked, receiver_args},
};

const HOST: &str = "europe-docker.pkg.dev";

/// The keys the endpoint serves, and how often it was asked.
#[derive(Default)]
struct Certs {
    keys: Mutex<Vec<Jwk>>,
    fetches: AtomicUsize,
}

async fn serve_certs(State(certs): State<Arc<Certs>>) -> impl IntoResponse {
    certs.fetches.fetch_add(1, Ordering::SeqCst);
    let keys = certs.keys.lock().expect("not poisoned").clone();
    (
        [(
            header::CACHE_CONTROL,
            "public, max-age=3600, must-revalidate",
        )],
        axum::Json(json!({ "keys": keys })),
    )
}

/// The public half of the fixture key `pem`, as a JWK with the id `kid`.
fn jwk(pem: &str, kid: &str) -> Jwk {
    let pem = std::fs::read(fixtures().join(pem)).expect("the test key");
    let key = EncodingKey::from_rsa_pem(&pem).expect("an RSA key");
    let mut jwk = Jwk::from_encoding_key(&key, Algorithm::RS256).expect("a JWK");
    jwk.common.key_id = Some(kid.to_owned());
    jwk
}

async fn post(url: &str, token: &str, body: &Value) -> anyhow::Result<u16> {
    let response = reqwest::Client::new()
        .post(url)
        .header("authorization", format!("Bearer {token}"))
        .json(body)
        .send()
        .await?;
    Ok(response.status().as_u16())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gar_keys_are_fetched_by_url_again_when_google_rotates_and_no_faster() -> anyhow::Result<()>
{
    let certs = Arc::new(Certs::default());
    certs
        .keys
        .lock()
        .expect("not poisoned")
        .push(jwk("gar-test-key.pem", "key-1"));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr: SocketAddr = listener.local_addr()?;
    let app = axum::Router::new()
        .route("/oauth2/v3/certs", get(serve_certs))
        .with_state(certs.clone());
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let hooked = Hooked::start(&[HOST], |c| {
        c.tag_syncer.gar_jwks_url = format!("http://{addr}/oauth2/v3/certs");
    })
    .await?;
    let (registry, env) = (&hooked.registry, &hooked.env);
    let path = "project/repo/app";
    push_unique_image(registry, &format!("{path}:v1")).await?;
    let first = hooked
        .follow("gar", "app", &format!("{HOST}/{path}:v1"))
        .await?;
    let mut create = receiver_args("gar-hook", "gar");
    create.oidc_audience = Some(GAR_AUDIENCE.to_owned());
    create.oidc_email = Some(GAR_EMAIL.to_owned());
    let (url, _) = hooked.receiver("gar", create).await?;
    assert_eq!(
        certs.fetches.load(Ordering::SeqCst),
        0,
        "nothing fetched before a delivery"
    );

    // the first delivery fetches the keys and is accepted
    let second = push_unique_image(registry, &format!("{path}:v1")).await?;
    let token = gar_token("gar-test-key.pem", "key-1");
    let status = post(&url, &token, &gar_message(HOST, path, "v1", &second, "m-1")).await?;
    let first_fetch = Instant::now();
    assert_eq!(status, 202);
    assert_eq!(certs.fetches.load(Ordering::SeqCst), 1);

    // Google rotates: a token by the new key, right away, is refused without a
    // second fetch (at most one every 5 s) ...
    certs
        .keys
        .lock()
        .expect("not poisoned")
        .push(jwk("gar-test-key-2.pem", "key-2"));
    let rotated = gar_token("gar-test-key-2.pem", "key-2");
    let early = gar_message(HOST, path, "v1", &second, "m-2");
    assert_eq!(post(&url, &rotated, &early).await?, 401);
    assert_eq!(certs.fetches.load(Ordering::SeqCst), 1);
    env.wait_stream("gar", "app", |s| {
        images(s, "v1") == [second.clone(), first.clone()]
    })
    .await?;
    // ... and once that time has passed, it makes the keys be fetched again
    let third = push_unique_image(registry, &format!("{path}:v1")).await?;
    tokio::time::sleep(
        (first_fetch + Duration::from_secs(5)).saturating_duration_since(Instant::now()),
    )
    .await;
    let message = gar_message(HOST, path, "v1", &third, "m-3");
    assert_eq!(post(&url, &rotated, &message).await?, 202);
    assert_eq!(certs.fetches.load(Ordering::SeqCst), 2);
    env.wait_stream("gar", "app", |s| {
        images(s, "v1") == [third.clone(), second.clone(), first.clone()]
    })
    .await?;

    // tokens naming a key nobody published: refused, with no fetch storm
    let forged = gar_token("gar-test-key-2.pem", "made-up");
    for n in 0..10 {
        let message = gar_message(HOST, path, "v1", &third, &format!("forged-{n}"));
        assert_eq!(post(&url, &forged, &message).await?, 401);
    }
    assert!(
        certs.fetches.load(Ordering::SeqCst) <= 3,
        "{} fetches",
        certs.fetches.load(Ordering::SeqCst)
    );
    server.abort();
    hooked.app.stop().await
}
