//! Integration tests proving the real-parts test kit: registry notifications, nats-server restarts, image builds.

mod binary;

use std::time::Duration;

use imagestreams_integration::{
    ImageBuilder, NatsServer, NotificationSink, Registry, RegistryOptions, is_push_of,
    push_unique_image,
};

const NOTIFY_TIMEOUT: Duration = Duration::from_secs(10);
const TOKEN: &str = "kit-test-token";

#[tokio::test]
async fn registry_notifies_a_push_with_the_pushed_digest() -> anyhow::Result<()> {
    let sink = NotificationSink::start(Some(TOKEN)).await?;
    let registry = Registry::start(RegistryOptions {
        include_references: true,
        ..RegistryOptions::notifying(sink.url(), Some(TOKEN))
    })
    .await?;

    let image = ImageBuilder::new()
        .label("org.example.kit", "yes")
        .env("KIT", "1")
        .entrypoint(["/bin/true"])
        .file("etc/kit.txt", "hello")
        .build()
        .await?;
    let pushed = image.push(&registry.image_ref("ns1/app:1"), None).await?;

    let event = sink
        .wait_for_event(|e| is_push_of(e, "ns1/app", "1"), NOTIFY_TIMEOUT)
        .await?;
    let head = registry.manifest_digest("ns1/app", "1").await?;
    assert!(pushed.starts_with("sha256:"), "{pushed}");
    assert_eq!(event["target"]["digest"], pushed.as_str(), "{event:#}");
    assert_eq!(head, pushed);
    assert_eq!(
        image.digest()?,
        pushed,
        "skopeo --preserve-digests keeps the layout digest"
    );
    assert_eq!(
        event["target"]["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    // includereferences: the manifest event lists its config and layer.
    assert_eq!(
        event["target"]["references"].as_array().map(Vec::len),
        Some(2),
        "{event:#}"
    );

    assert_eq!(sink.rejected(), 0);
    let requests = sink.requests();
    assert!(requests.iter().all(|r| {
        r.authorization.as_deref() == Some("Bearer kit-test-token")
            // Not application/json: a strict JSON extractor would reject the envelope.
            && r.content_type.as_deref()
                == Some("application/vnd.docker.distribution.events.v1+json")
    }));
    // Blob events are filtered by ignoredmediatypes.
    assert!(
        sink.events()
            .iter()
            .all(|e| e["target"]["mediaType"] != "application/octet-stream"),
        "{:#?}",
        sink.events()
    );
    Ok(())
}

#[tokio::test]
async fn registry_with_htpasswd_requires_credentials_and_can_ignore_pulls() -> anyhow::Result<()> {
    let sink = NotificationSink::start(None).await?;
    let registry = Registry::start(RegistryOptions {
        htpasswd: Some(("kit".into(), "s3cret".into())),
        ignored_actions: vec!["pull".into()],
        ..RegistryOptions::notifying(sink.url(), None)
    })
    .await?;
    let image = ImageBuilder::new().build().await?;
    let dest = registry.image_ref("ns1/private:1");

    assert!(
        image.push(&dest, None).await.is_err(),
        "anonymous push must fail"
    );
    let pushed = image.push(&dest, registry.credentials()).await?;
    assert_eq!(registry.manifest_digest("ns1/private", "1").await?, pushed);

    let anonymous = reqwest::Client::new()
        .head(format!("{}/v2/ns1/private/manifests/1", registry.url()))
        .send()
        .await?;
    assert_eq!(anonymous.status(), reqwest::StatusCode::UNAUTHORIZED);

    // The HEAD above would be a `pull` event; a later push is the barrier showing it was ignored.
    push_unique_image(&registry, "ns1/private:2").await?;
    let event = sink
        .wait_for_event(|e| is_push_of(e, "ns1/private", "2"), NOTIFY_TIMEOUT)
        .await?;
    assert_eq!(event["actor"]["name"], "kit", "{event:#}");
    let actions: Vec<_> = sink.events().iter().map(|e| e["action"].clone()).collect();
    assert!(actions.iter().all(|a| a == "push"), "{actions:?}");
    Ok(())
}

#[tokio::test]
async fn nats_kv_survives_stop_kill_and_restart() -> anyhow::Result<()> {
    use async_nats::jetstream::{self, kv};

    let mut server = NatsServer::start().await?;
    let port = server.port();
    assert_eq!(server.url(), format!("nats://127.0.0.1:{port}"));

    let js = jetstream::new(server.connect().await?);
    let bucket = js
        .create_key_value(kv::Config {
            bucket: "kit".into(),
            history: 1,
            ..Default::default()
        })
        .await?;
    bucket.put("a", "one".into()).await?;
    assert_eq!(bucket.get("a").await?.as_deref(), Some(&b"one"[..]));

    server.restart().await?;
    assert_eq!(server.port(), port, "restart keeps the port");
    let js = jetstream::new(server.connect().await?);
    let bucket = js.get_key_value("kit").await?;
    assert_eq!(bucket.get("a").await?.as_deref(), Some(&b"one"[..]));
    bucket.put("b", "two".into()).await?;

    server.kill()?;
    assert!(!server.is_running());
    server.restart().await?;
    assert_eq!(server.port(), port);
    let js = jetstream::new(server.connect().await?);
    let bucket = js.get_key_value("kit").await?;
    assert_eq!(bucket.get("a").await?.as_deref(), Some(&b"one"[..]));
    assert_eq!(bucket.get("b").await?.as_deref(), Some(&b"two"[..]));
    Ok(())
}

#[tokio::test]
async fn built_images_have_distinct_digests() -> anyhow::Result<()> {
    let builder = ImageBuilder::new();
    let (a, b) = tokio::try_join!(builder.build(), builder.build())?;
    assert_ne!(a.nonce(), b.nonce());
    let (da, db) = (a.digest()?, b.digest()?);
    assert!(da.starts_with("sha256:") && db.starts_with("sha256:"));
    assert_ne!(da, db);
    Ok(())
}
