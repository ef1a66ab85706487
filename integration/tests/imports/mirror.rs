//! `imagestreams mirror` end to end: the CLI, the real gateway and the
//! tag-syncer on a real nats-server, copying a stream imported from one real
//! docker-registry to an htpasswd-protected one with the namespace's registry
//! secret; skopeo reads the same digests at the destination.

use imagestreams::cli::{ClientCommand, ImportImageArgs, MirrorArgs, ServiceName};
use imagestreams_common::config::RegistryRuleConfig;
use imagestreams_integration::{
    Registry, RegistryOptions, blob_uploads, push_unique_image, raw_digest,
};

use crate::{Env, cli, create_secret, rule};

const NAMESPACE: &str = "team";
const USER: &str = "pusher";
const PASSWORD: &str = "Push-Pa55-never-shown";

fn mirror(source: &str, destination: &str, dry_run: bool) -> ClientCommand {
    ClientCommand::Mirror(MirrorArgs {
        source: source.to_owned(),
        destination: destination.to_owned(),
        platform: None,
        all_platforms: false,
        dry_run,
        insecure: false,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirror_copies_a_streams_images_with_the_namespace_secret() -> anyhow::Result<()> {
    let source = Registry::start(RegistryOptions::default()).await?;
    let destination = Registry::start(RegistryOptions {
        htpasswd: Some((USER.into(), PASSWORD.into())),
        ..RegistryOptions::default()
    })
    .await?;
    let one = push_unique_image(&source, "org/app:1").await?;
    let two = push_unique_image(&source, "org/app:2").await?;
    let dest = destination.host();
    let rules: [RegistryRuleConfig; 2] = [rule("quay.io", &source.host()), rule(&dest, &dest)];
    let env = Env::start().await?;
    let app = env
        .spawn(
            &[
                ServiceName::StreamStore,
                ServiceName::TagSyncer,
                ServiceName::Gateway,
            ],
            &rules,
            |_| {},
        )
        .await?;
    let server = app.grpc_url();
    let (imported, _, err) = cli(
        &server,
        NAMESPACE,
        ClientCommand::ImportImage(ImportImageArgs {
            name: "app".into(),
            from: Some("quay.io/org/app".into()),
            all: true,
            confirm: true,
            scheduled: false,
            insecure: false,
        }),
    )
    .await;
    imported.map_err(|e| anyhow::anyhow!("{e}: {err}"))?;

    // without a secret for the destination: refused, nothing tagged
    let (result, _, err) = cli(
        &server,
        NAMESPACE,
        mirror("app:1", &format!("{dest}/team/app:prod"), false),
    )
    .await;
    assert!(result.is_err(), "{err}");
    assert!(err.contains("failed (Unauthorized)"), "{err}");
    let missing = raw_digest(
        &destination.image_ref("team/app:prod"),
        Some((USER, PASSWORD)),
    )
    .await;
    assert!(missing.is_err(), "a refused mirror tagged {missing:?}");

    // with the namespace's secret: one tag, as skopeo reads it
    create_secret(&server, NAMESPACE, "push", &dest, USER, PASSWORD).await?;
    let (result, out, err) = cli(
        &server,
        NAMESPACE,
        mirror("app:1", &format!("{dest}/team/app:prod"), false),
    )
    .await;
    result.map_err(|e| anyhow::anyhow!("{e}: {err}"))?;
    assert!(out.starts_with("mirrored 1 (quay.io/org/app@"), "{out}");
    assert!(
        out.contains(&format!("-> {dest}/team/app:prod {one}")),
        "{out}"
    );
    assert!(out.contains("(2 sent,"), "{out}");
    let creds = Some((USER, PASSWORD));
    assert_eq!(
        raw_digest(&destination.image_ref("team/app:prod"), creds).await?,
        one
    );

    // the whole stream: each tag keeps its name
    let (result, out, err) = cli(
        &server,
        NAMESPACE,
        mirror("app", &format!("{dest}/team/all"), false),
    )
    .await;
    result.map_err(|e| anyhow::anyhow!("{e}: {err}"))?;
    assert_eq!(out.lines().count(), 2, "{out}");
    for (tag, digest) in [("1", &one), ("2", &two)] {
        assert_eq!(
            raw_digest(&destination.image_ref(&format!("team/all:{tag}")), creds).await?,
            *digest
        );
    }
    let uploads = blob_uploads(destination.log_path(), "team/all");
    assert_eq!(uploads, 4, "two blobs of each image");

    // again, and dry: nothing is sent
    for dry_run in [false, true] {
        let (result, out, err) = cli(
            &server,
            NAMESPACE,
            mirror("app", &format!("{dest}/team/all"), dry_run),
        )
        .await;
        result.map_err(|e| anyhow::anyhow!("{e}: {err}"))?;
        assert_eq!(out.matches(": already there").count(), 2, "{out}");
    }
    assert_eq!(blob_uploads(destination.log_path(), "team/all"), uploads);

    // what an operator's Prometheus sees: three images sent (one, then two),
    // two found already there, one refused; the dry run is not counted
    let metrics = app.scrape().await?;
    let value = |series: &str| metrics.get(series).unwrap_or_default();
    let images = "imagestreams_tag_syncer_mirrored_images_total";
    assert_eq!(
        value(&format!("{images}{{outcome=\"ok\"}}")),
        3.0,
        "{metrics}"
    );
    assert_eq!(value(&format!("{images}{{outcome=\"unchanged\"}}")), 2.0);
    assert_eq!(value(&format!("{images}{{outcome=\"Unauthorized\"}}")), 1.0);
    assert!(value("imagestreams_tag_syncer_mirrored_bytes_total") > 0.0);

    // bad input is refused before anything crosses
    for (source, target, wanted) in [
        (
            "app:9",
            format!("{dest}/team/x:1"),
            "tag 9 of stream app has no image",
        ),
        ("nope", format!("{dest}/team/x"), "not found"),
        ("app", format!("{dest}/team/x:1"), "each tag keeps its name"),
    ] {
        let (result, _, _) = cli(&server, NAMESPACE, mirror(source, &target, false)).await;
        let e = result.expect_err("refused").to_string();
        assert!(
            e.contains(wanted) || e.contains("not found"),
            "{source}: {e}"
        );
    }

    app.stop().await
}
