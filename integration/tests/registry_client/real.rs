//! The client against a real docker-registry (CNCF distribution 2.8): tags, digests as skopeo reports them,
//! the seed's registry rule, htpasswd credentials from a docker config.json, and a multi-arch index.

use anyhow::Context;
use imagestreams_common::reference::Reference;
use imagestreams_integration::fake_registry::base64_encode;
use imagestreams_integration::{
    Registry, RegistryOptions, TestDir, binaries, push_index, push_unique_image,
};
use imagestreams_registry_client::{
    Keyring, MEDIA_TYPE_OCI_INDEX, RegistriesConfig, RegistryClient, RegistryRule, RegistryRules,
};

use crate::{client, expect_reason, fast_limits, repo};

/// `skopeo inspect --format {{.Digest}}` of `docker://<image>`.
async fn skopeo_digest(image: &str, creds: Option<(&str, &str)>) -> anyhow::Result<String> {
    let mut cmd = tokio::process::Command::new(binaries::skopeo());
    cmd.args([
        "inspect",
        "--tls-verify=false",
        "--no-tags",
        "--format",
        "{{.Digest}}",
    ]);
    match creds {
        Some((u, p)) => cmd.arg(format!("--creds={u}:{p}")),
        None => cmd.arg("--no-creds"),
    };
    let out = cmd
        .arg(format!("docker://{image}"))
        .output()
        .await
        .context("running skopeo inspect")?;
    anyhow::ensure!(
        out.status.success(),
        "skopeo inspect {image}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8(out.stdout)?.trim().to_owned())
}

#[tokio::test]
async fn tags_and_digests_of_pushed_images_match_skopeo() -> anyhow::Result<()> {
    let registry = Registry::start(RegistryOptions::default()).await?;
    let mut pushed = Vec::new();
    for tag in ["1", "2", "latest"] {
        pushed.push((
            tag,
            push_unique_image(&registry, &format!("ns1/app:{tag}")).await?,
        ));
    }
    let c = client(fast_limits());
    let r = repo(&c, &registry.host(), "ns1/app", &Keyring::new());
    c.ping(&r).await?;
    let mut tags = c.list_tags(&r).await?.tags;
    tags.sort();
    assert_eq!(tags, ["1", "2", "latest"]);
    for (tag, digest) in &pushed {
        let got = c.digest(&r, tag).await?;
        assert_eq!(&got.digest, digest, "{tag}");
        assert_eq!(
            got.digest,
            skopeo_digest(&registry.image_ref(&format!("ns1/app:{tag}")), None).await?
        );
        assert_eq!(
            got.media_type.as_deref(),
            Some("application/vnd.oci.image.manifest.v1+json")
        );
        let manifest = c.manifest(&r, &got.digest).await?;
        assert_eq!(manifest.digest, got.digest);
        assert!(c.manifest_platforms(&r, &got.digest).await?.is_empty());
    }

    let e = expect_reason(c.digest(&r, "nope").await, "NotFound");
    assert!(e.to_string().contains("ns1/app:nope"), "{e}");
    let missing = repo(&c, &registry.host(), "ns1/missing", &Keyring::new());
    expect_reason(c.list_tags(&missing).await, "NotFound");
    Ok(())
}

#[tokio::test]
async fn the_seed_rule_imports_docker_io_names_from_a_local_registry() -> anyhow::Result<()> {
    let registry = Registry::start(RegistryOptions::default()).await?;
    let latest = push_unique_image(&registry, "openshift/ruby-20-centos7:latest").await?;
    let v04 = push_unique_image(&registry, "openshift/ruby-20-centos7:v0.4").await?;
    // The same section as TOML in the application configuration (see the unit tests); JSON here.
    let config: RegistriesConfig = serde_json::from_value(serde_json::json!({
        "registry": [{ "prefix": "docker.io", "location": registry.host(), "insecure": true }]
    }))
    .context("the rules")?;
    assert_eq!(
        config.rules,
        [RegistryRule {
            prefix: Some("docker.io".into()),
            location: Some(registry.host()),
            insecure: true,
            ..RegistryRule::default()
        }]
    );
    let c = RegistryClient::new(fast_limits(), RegistryRules::new(config.rules)?)?;
    let reference = Reference::parse_normalized("openshift/ruby-20-centos7")?;
    let r = c.repository(&reference, &Keyring::new(), false)?;
    assert_eq!(
        r.primary().url(),
        format!("{}/v2/openshift/ruby-20-centos7", registry.url())
    );
    let mut tags = c.list_tags(&r).await?.tags;
    tags.sort();
    assert_eq!(tags, ["latest", "v0.4"]);
    assert_eq!(c.digest(&r, "latest").await?.digest, latest);
    assert_eq!(c.digest(&r, "v0.4").await?.digest, v04);
    Ok(())
}

#[tokio::test]
async fn htpasswd_registry_needs_the_right_credentials() -> anyhow::Result<()> {
    const USER: &str = "alice";
    const PASSWORD: &str = "htpasswd-S3cret-never-logged";
    let registry = Registry::start(RegistryOptions {
        htpasswd: Some((USER.into(), PASSWORD.into())),
        ..RegistryOptions::default()
    })
    .await?;
    let digest = push_unique_image(&registry, "team/app:1").await?;

    // Credentials from a docker config.json, as the tag-syncer reads them.
    let dir = TestDir::new("docker-config")?;
    let path = dir.join("config.json");
    let auth = base64_encode(format!("{USER}:{PASSWORD}").as_bytes());
    std::fs::write(
        &path,
        format!(
            r#"{{"auths":{{"{}":{{"auth":"{auth}"}},"other.example":{{"auth":"{}"}}}}}}"#,
            registry.host(),
            base64_encode(b"x:y")
        ),
    )?;
    let keyring = Keyring::from_docker_config_file(&path)?;
    let c = client(fast_limits());
    let r = repo(&c, &registry.host(), "team/app", &keyring);
    c.ping(&r).await?;
    assert_eq!(c.list_tags(&r).await?.tags, ["1"]);
    assert_eq!(c.digest(&r, "1").await?.digest, digest);
    assert_eq!(
        digest,
        skopeo_digest(&registry.image_ref("team/app:1"), Some((USER, PASSWORD))).await?
    );
    assert!(!format!("{r:?} {c:?} {keyring:?}").contains(PASSWORD));
    assert!(!format!("{r:?} {keyring:?}").contains(&auth));

    let mut wrong = Keyring::new();
    wrong.insert(
        &registry.host(),
        imagestreams_registry_client::Credential::basic(USER, "wrong-password-123"),
    )?;
    for keyring in [wrong, Keyring::new()] {
        let c = client(fast_limits());
        let r = repo(&c, &registry.host(), "team/app", &keyring);
        for e in [
            expect_reason(c.list_tags(&r).await, "Unauthorized"),
            expect_reason(c.digest(&r, "1").await, "Unauthorized"),
            expect_reason(c.ping(&r).await, "Unauthorized"),
        ] {
            let shown = format!("{e} {e:?}");
            assert!(
                !shown.contains(PASSWORD) && !shown.contains("wrong-password-123"),
                "{shown}"
            );
        }
    }
    Ok(())
}

#[tokio::test]
async fn a_multi_arch_index_is_the_image_and_lists_its_platforms() -> anyhow::Result<()> {
    let registry = Registry::start(RegistryOptions::default()).await?;
    let amd64 = push_unique_image(&registry, "multi/app:amd64").await?;
    let arm64 = push_unique_image(&registry, "multi/app:arm64").await?;
    let index_digest = push_index(
        &registry,
        "multi/app",
        "latest",
        &[
            (&amd64, "linux", "amd64", None),
            (&arm64, "linux", "arm64", Some("v8")),
        ],
    )
    .await?;

    let c = client(fast_limits());
    let r = repo(&c, &registry.host(), "multi/app", &Keyring::new());
    let got = c.digest(&r, "latest").await?;
    assert_eq!(got.digest, index_digest, "the index digest is the image");
    assert_eq!(got.media_type.as_deref(), Some(MEDIA_TYPE_OCI_INDEX));
    assert_eq!(
        got.digest,
        registry.manifest_digest("multi/app", "latest").await?
    );
    let platforms = c.manifest_platforms(&r, &got.digest).await?;
    let summary: Vec<_> = platforms
        .iter()
        .map(|p| {
            (
                p.digest.as_str(),
                p.platform.os.as_str(),
                p.platform.architecture.as_str(),
                p.platform.variant.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (amd64.as_str(), "linux", "amd64", None),
            (arm64.as_str(), "linux", "arm64", Some("v8")),
        ]
    );
    Ok(())
}
