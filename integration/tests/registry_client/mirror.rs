//! Copying images between real docker-registries: a multi-arch index and a
//! single image to an htpasswd-protected registry, byte for byte as skopeo
//! sees them; a second copy sends no blob (the destination's access log);
//! wrong credentials tag nothing; one platform; mounts within a registry.

use imagestreams_integration::{
    Registry, RegistryOptions, blob_uploads, push_index, push_unique_image, raw_digest,
};
use imagestreams_registry_client::{Credential, Keyring, mirror::CopyOptions};

use crate::{client, expect_reason, fast_limits, repo};

const USER: &str = "mirror";
const PASSWORD: &str = "Mirr0r-Pa55-never-logged";

#[tokio::test]
async fn images_cross_byte_for_byte_once_and_never_half_tagged() -> anyhow::Result<()> {
    let source = Registry::start(RegistryOptions::default()).await?;
    let destination = Registry::start(RegistryOptions {
        htpasswd: Some((USER.into(), PASSWORD.into())),
        ..RegistryOptions::default()
    })
    .await?;
    let amd64 = push_unique_image(&source, "multi/app:amd64").await?;
    let arm64 = push_unique_image(&source, "multi/app:arm64").await?;
    let index = push_index(
        &source,
        "multi/app",
        "latest",
        &[
            (&amd64, "linux", "amd64", None),
            (&arm64, "linux", "arm64", Some("v8")),
        ],
    )
    .await?;
    let single = push_unique_image(&source, "single/app:1").await?;

    let mut keyring = Keyring::new();
    keyring.insert(&destination.host(), Credential::basic(USER, PASSWORD))?;
    let c = client(fast_limits());
    let from_multi = repo(&c, &source.host(), "multi/app", &Keyring::new());
    let from_single = repo(&c, &source.host(), "single/app", &Keyring::new());
    let to = repo(&c, &destination.host(), "team/app", &keyring);
    let options = CopyOptions::default();

    // a dry run checks and writes nothing
    let dry = c
        .copy_image(
            &from_multi,
            "latest",
            &to,
            "latest",
            &CopyOptions {
                dry_run: true,
                ..CopyOptions::default()
            },
        )
        .await?;
    assert_eq!((dry.manifests, dry.uploaded), (3, 4), "{dry:?}");
    assert_eq!(blob_uploads(destination.log_path(), "team/app"), 0);

    // the index and its children, and a single image: the digests skopeo reads
    let report = c
        .copy_image(&from_multi, "latest", &to, "latest", &options)
        .await?;
    assert_eq!(report.digest, index);
    assert_eq!((report.manifests, report.blobs), (3, 4), "{report:?}");
    assert_eq!(report.uploaded, 4, "{report:?}");
    let creds = Some((USER, PASSWORD));
    let at = |repo_tag: &str| destination.image_ref(repo_tag);
    assert_eq!(raw_digest(&at("team/app:latest"), creds).await?, index);
    assert_eq!(
        raw_digest(&source.image_ref("multi/app:latest"), None).await?,
        index
    );
    for child in [&amd64, &arm64] {
        assert_eq!(
            raw_digest(&at(&format!("team/app@{child}")), creds).await?,
            *child
        );
    }
    let copied = c
        .copy_image(&from_single, "1", &to, "single", &options)
        .await?;
    assert_eq!(copied.digest, single);
    assert_eq!(raw_digest(&at("team/app:single"), creds).await?, single);
    let uploads = blob_uploads(destination.log_path(), "team/app");
    assert_eq!(uploads, 6, "two blobs each of three images");

    // a second run writes nothing: the tag already points at the image
    let manifest_puts = |log: &std::path::Path| {
        std::fs::read_to_string(log)
            .unwrap_or_default()
            .matches("\"PUT /v2/team/app/manifests/")
            .count()
    };
    let puts = manifest_puts(destination.log_path());
    assert_eq!(puts, 4, "the index, its two children, the single image");
    let again = c
        .copy_image(&from_multi, "latest", &to, "latest", &options)
        .await?;
    assert!(again.unchanged, "{again:?}");
    assert_eq!(again.digest, index);
    assert_eq!(blob_uploads(destination.log_path(), "team/app"), uploads);
    assert_eq!(manifest_puts(destination.log_path()), puts);
    // the same image under a new tag: only the manifests cross
    let retag = c
        .copy_image(&from_multi, "latest", &to, "again", &options)
        .await?;
    assert_eq!((retag.present, retag.uploaded), (4, 0), "{retag:?}");
    assert_eq!(blob_uploads(destination.log_path(), "team/app"), uploads);

    // wrong credentials: a clear error, and no tag at the destination
    let mut wrong = Keyring::new();
    wrong.insert(&destination.host(), Credential::basic(USER, "wrong-Pa55"))?;
    let refused = repo(&c, &destination.host(), "team/refused", &wrong);
    let e = expect_reason(
        c.copy_image(&from_single, "1", &refused, "1", &options)
            .await,
        "Unauthorized",
    );
    let shown = format!("{e} {e:?}");
    assert!(
        !shown.contains(PASSWORD) && !shown.contains("wrong-Pa55"),
        "{shown}"
    );
    let check = repo(&c, &destination.host(), "team/refused", &keyring);
    expect_reason(c.digest(&check, "1").await, "NotFound");

    // one platform: its manifest is the image
    let arm = c
        .copy_image(
            &from_multi,
            "latest",
            &to,
            "arm64",
            &CopyOptions {
                platform: Some("linux/arm64/v8".into()),
                ..CopyOptions::default()
            },
        )
        .await?;
    assert_eq!(arm.digest, arm64);
    assert_eq!(raw_digest(&at("team/app:arm64"), creds).await?, arm64);

    // within one registry, blobs are mounted, not sent
    let other = repo(&c, &destination.host(), "team/other", &keyring);
    let mounted = c.copy_image(&to, "single", &other, "1", &options).await?;
    assert_eq!((mounted.mounted, mounted.uploaded), (2, 0), "{mounted:?}");
    assert_eq!(blob_uploads(destination.log_path(), "team/other"), 0);
    assert_eq!(raw_digest(&at("team/other:1"), creds).await?, single);
    Ok(())
}

/// Random bytes: a layer gzip cannot shrink.
fn incompressible(len: usize) -> Vec<u8> {
    let mut state = 0x9E37_79B9_7F4A_7C15_u64;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

/// Requests of `log` (a docker-registry log) with `method` on a path starting
/// `prefix` that were answered `status`.
fn requests(log: &std::path::Path, method: &str, prefix: &str, status: &str) -> usize {
    let request = format!("\"{method} {prefix}");
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|line| line.contains(&request) && line.contains(&format!("\" {status} ")))
        .count()
}

#[tokio::test]
async fn blobs_larger_than_a_chunk_cross_by_range_and_chunked_upload() -> anyhow::Result<()> {
    let source = Registry::start(RegistryOptions::default()).await?;
    let destination = Registry::start(RegistryOptions {
        htpasswd: Some((USER.into(), PASSWORD.into())),
        ..RegistryOptions::default()
    })
    .await?;
    // a 700 KiB layer, 64 KiB chunks: eleven of them
    let image = imagestreams_integration::ImageBuilder::new()
        .layer("blob.bin", incompressible(700 << 10))
        .build()
        .await?;
    let digest = image.push(&source.image_ref("big/app:1"), None).await?;
    let mut keyring = Keyring::new();
    keyring.insert(&destination.host(), Credential::basic(USER, PASSWORD))?;
    let c = client(fast_limits());
    let from = repo(&c, &source.host(), "big/app", &Keyring::new());
    let to = repo(&c, &destination.host(), "team/big", &keyring);
    let options = CopyOptions {
        chunk_bytes: 64 << 10,
        ..CopyOptions::default()
    };
    let report = c.copy_image(&from, "1", &to, "1", &options).await?;
    assert_eq!(report.digest, digest);
    assert_eq!(report.uploaded, report.blobs, "{report:?}");
    let creds = Some((USER, PASSWORD));
    assert_eq!(
        raw_digest(&destination.image_ref("team/big:1"), creds).await?,
        digest
    );

    // read by range from the source, sent in PATCHes, closed by one PUT each
    let ranged = requests(source.log_path(), "GET", "/v2/big/app/blobs/", "206");
    let patches = requests(
        destination.log_path(),
        "PATCH",
        "/v2/team/big/blobs/uploads/",
        "202",
    );
    assert!(ranged >= 11, "{ranged} range reads");
    assert!(
        patches >= 10,
        "{patches} chunks sent before the closing PUT"
    );
    assert_eq!(
        blob_uploads(destination.log_path(), "team/big"),
        report.blobs,
        "one closing PUT per blob"
    );

    // the layer at the destination is the source's, byte for byte (a read
    // checks the bytes against the digest)
    let manifest =
        imagestreams_integration::image::inspect(&source.image_ref("big/app:1"), &["--raw"])
            .await?;
    let layers = manifest["layers"].as_array().cloned().unwrap_or_default();
    let layer = layers
        .iter()
        .max_by_key(|l| l["size"].as_u64())
        .expect("layers");
    let (layer_digest, size) = (
        layer["digest"].as_str().unwrap_or_default(),
        layer["size"].as_u64().unwrap_or_default(),
    );
    assert!(size > 600 << 10, "{manifest}");
    let at_destination = c.blob_of_size(&to, layer_digest, size).await?;
    assert_eq!(at_destination.len() as u64, size);
    Ok(())
}
