//! Tiny OCI images built offline with `umoci` and pushed with `skopeo`.

use std::path::{Path, PathBuf};

use anyhow::Context;
use tokio::process::Command;

use crate::binaries;
use crate::registry::Registry;
use crate::util::TestDir;

/// The tag of the image inside its OCI layout.
pub const LAYOUT_TAG: &str = "image";

/// The file, at the root of the image, holding a fresh UUID so each built image has its own digest.
pub const NONCE_FILE: &str = "imagestreams-nonce";

/// Builds a one-layer OCI image holding a unique file, plus optional files, labels, env and entrypoint.
///
/// ```no_run
/// # async fn f(registry: &imagestreams_integration::Registry) -> anyhow::Result<()> {
/// use imagestreams_integration::ImageBuilder;
/// let image = ImageBuilder::new().label("app", "demo").build().await?;
/// let digest = image.push(&registry.image_ref("ns1/app:1"), registry.credentials()).await?;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, Default)]
pub struct ImageBuilder {
    labels: Vec<(String, String)>,
    env: Vec<(String, String)>,
    entrypoint: Option<Vec<String>>,
    files: Vec<(String, Vec<u8>)>,
    layers: Vec<(String, Vec<u8>)>,
    platform: Option<(String, String)>,
}

impl ImageBuilder {
    /// A builder for an image with only the unique file.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the config label `key=value`.
    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.push((key.into(), value.into()));
        self
    }

    /// Adds the config environment variable `key=value`.
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Sets the config entrypoint.
    pub fn entrypoint<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.entrypoint = Some(args.into_iter().map(Into::into).collect());
        self
    }

    /// Sets the config's `os` and `architecture` (umoci's default is the build machine's).
    pub fn platform(mut self, os: impl Into<String>, architecture: impl Into<String>) -> Self {
        self.platform = Some((os.into(), architecture.into()));
        self
    }

    /// Adds a file at `path` (relative to the image root) with `contents`.
    pub fn file(mut self, path: impl Into<String>, contents: impl Into<Vec<u8>>) -> Self {
        self.files.push((path.into(), contents.into()));
        self
    }

    /// Adds a layer of its own above the first, holding one file at `path`
    /// with `contents` (one `umoci unpack`/`repack` each).
    pub fn layer(mut self, path: impl Into<String>, contents: impl Into<Vec<u8>>) -> Self {
        self.layers.push((path.into(), contents.into()));
        self
    }

    /// Builds the image into a fresh OCI layout: `umoci init`, `new`, `unpack --rootless`, write files, `repack`,
    /// then `umoci config` when labels, env or an entrypoint were given.
    ///
    /// # Panics
    ///
    /// Panics with an install hint when `umoci` is not on `PATH`.
    pub async fn build(&self) -> anyhow::Result<OciImage> {
        let umoci = binaries::umoci();
        let dir = TestDir::new("image")?;
        let layout = dir.join("layout");
        let bundle = dir.join("bundle");
        let image = format!("{}:{LAYOUT_TAG}", layout.display());

        run(Command::new(&umoci)
            .arg("init")
            .arg("--layout")
            .arg(&layout))
        .await?;
        run(Command::new(&umoci).args(["new", "--image", &image])).await?;
        run(Command::new(&umoci)
            .args(["unpack", "--rootless", "--image", &image])
            .arg(&bundle))
        .await?;

        let rootfs = bundle.join("rootfs");
        let nonce = uuid::Uuid::new_v4().to_string();
        std::fs::write(rootfs.join(NONCE_FILE), &nonce).context("writing the nonce file")?;
        for (path, contents) in &self.files {
            let target = rootfs.join(path.trim_start_matches('/'));
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent)
                    .with_context(|| format!("creating {}", parent.display()))?;
            }
            std::fs::write(&target, contents)
                .with_context(|| format!("writing {}", target.display()))?;
        }
        run(Command::new(&umoci)
            .args(["repack", "--image", &image])
            .arg(&bundle))
        .await?;
        for (path, contents) in &self.layers {
            std::fs::remove_dir_all(&bundle).context("removing the unpacked bundle")?;
            run(Command::new(&umoci)
                .args(["unpack", "--rootless", "--image", &image])
                .arg(&bundle))
            .await?;
            let target = bundle.join("rootfs").join(path.trim_start_matches('/'));
            std::fs::write(&target, contents)
                .with_context(|| format!("writing {}", target.display()))?;
            run(Command::new(&umoci)
                .args(["repack", "--image", &image])
                .arg(&bundle))
            .await?;
        }

        if !self.labels.is_empty()
            || !self.env.is_empty()
            || self.entrypoint.is_some()
            || self.platform.is_some()
        {
            let mut cmd = Command::new(&umoci);
            cmd.args(["config", "--image", &image]);
            if let Some((os, architecture)) = &self.platform {
                cmd.arg(format!("--os={os}"))
                    .arg(format!("--architecture={architecture}"));
            }
            for (k, v) in &self.labels {
                cmd.arg(format!("--config.label={k}={v}"));
            }
            for (k, v) in &self.env {
                cmd.arg(format!("--config.env={k}={v}"));
            }
            for arg in self.entrypoint.iter().flatten() {
                cmd.arg(format!("--config.entrypoint={arg}"));
            }
            run(&mut cmd).await?;
        }
        std::fs::remove_dir_all(&bundle).context("removing the unpacked bundle")?;
        Ok(OciImage { layout, nonce, dir })
    }
}

/// An image in an OCI layout on disk, as built by [`ImageBuilder`].
#[derive(Debug)]
pub struct OciImage {
    layout: PathBuf,
    nonce: String,
    // Holds the layout; removed on drop.
    dir: TestDir,
}

impl OciImage {
    /// The OCI layout directory.
    pub fn layout_dir(&self) -> &Path {
        &self.layout
    }

    /// The skopeo/containers reference of this image, `oci:<layout>:<tag>`.
    pub fn layout_ref(&self) -> String {
        format!("oci:{}:{LAYOUT_TAG}", self.layout.display())
    }

    /// The UUID written to [`NONCE_FILE`].
    pub fn nonce(&self) -> &str {
        &self.nonce
    }

    /// The temporary directory holding the layout.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The manifest digest recorded in the layout's `index.json`; pushing does not change it.
    pub fn digest(&self) -> anyhow::Result<String> {
        let path = self.layout.join("index.json");
        let index: serde_json::Value = serde_json::from_slice(
            &std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?,
        )?;
        index["manifests"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == LAYOUT_TAG)
            .and_then(|m| m["digest"].as_str())
            .map(str::to_owned)
            .with_context(|| format!("no manifest tagged {LAYOUT_TAG} in {}", path.display()))
    }

    /// Pushes the image to `dest` (`HOST/repo:tag`, e.g. `127.0.0.1:5000/ns1/app:1`) and returns the manifest
    /// digest skopeo wrote to `--digestfile`.
    pub async fn push(&self, dest: &str, creds: Option<(&str, &str)>) -> anyhow::Result<String> {
        copy(&self.layout_ref(), dest, creds).await
    }
}

/// Copies the image at containers reference `src` (e.g. `oci:DIR:TAG`) to `docker://<dest>` over plain HTTP with
/// `skopeo copy --preserve-digests`, returning the pushed manifest digest.
///
/// # Panics
///
/// Panics with an install hint when `skopeo` is not on `PATH`.
pub async fn copy(src: &str, dest: &str, creds: Option<(&str, &str)>) -> anyhow::Result<String> {
    let creds = match creds {
        Some((user, password)) => format!("--dest-creds={user}:{password}"),
        None => "--dest-no-creds".to_owned(),
    };
    skopeo_copy(
        &["--dest-tls-verify=false", &creds],
        src,
        &format!("docker://{dest}"),
    )
    .await
}

/// Pulls `docker://<src>` (`HOST/repo:tag`) over plain HTTP into a temporary OCI layout with `skopeo copy`
/// (manifest and blobs), sending `creds` when given; returns the manifest digest.
///
/// # Panics
///
/// Panics with an install hint when `skopeo` is not on `PATH`.
pub async fn pull(src: &str, creds: Option<(&str, &str)>) -> anyhow::Result<String> {
    let creds = match creds {
        Some((user, password)) => format!("--src-creds={user}:{password}"),
        None => "--src-no-creds".to_owned(),
    };
    let layout = TestDir::new("pulled")?;
    let dest = format!("oci:{}:{LAYOUT_TAG}", layout.join("layout").display());
    skopeo_copy(
        &["--src-tls-verify=false", &creds],
        &format!("docker://{src}"),
        &dest,
    )
    .await
}

/// `skopeo --insecure-policy copy --preserve-digests <flags> src dest`, returning the manifest digest.
async fn skopeo_copy(flags: &[&str], src: &str, dest: &str) -> anyhow::Result<String> {
    let skopeo = binaries::skopeo();
    let tmp = TestDir::new("skopeo")?;
    let digest_file = tmp.join("digest");
    let mut cmd = Command::new(&skopeo);
    cmd.args(["--insecure-policy", "copy", "--preserve-digests"])
        .args(flags)
        .arg("--digestfile")
        .arg(&digest_file)
        .arg(src)
        .arg(dest);
    run(&mut cmd).await?;
    let digest = std::fs::read_to_string(&digest_file)
        .with_context(|| format!("reading {}", digest_file.display()))?;
    Ok(digest.trim().to_owned())
}

/// Builds a fresh unique image and pushes it to `registry` as `repo_tag` (e.g. `ns1/app:1`), using the registry's
/// credentials if any. Returns the pushed manifest digest.
pub async fn push_unique_image(registry: &Registry, repo_tag: &str) -> anyhow::Result<String> {
    let image = ImageBuilder::new().build().await?;
    image
        .push(&registry.image_ref(repo_tag), registry.credentials())
        .await
}

/// One platform of an index [`push_index`] makes: the manifest's digest, os,
/// architecture and variant.
pub type IndexEntry<'a> = (&'a str, &'a str, &'a str, Option<&'a str>);

/// Puts an OCI index of `entries` (manifests already in `repo` of `registry`)
/// as `repo:tag`, with the registry's credentials. Returns its digest.
pub async fn push_index(
    registry: &Registry,
    repo: &str,
    tag: &str,
    entries: &[IndexEntry<'_>],
) -> anyhow::Result<String> {
    use sha2::Digest as _;
    const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
    let http = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(10))
        .build()?;
    let with_credentials = |request: reqwest::RequestBuilder| match registry.credentials() {
        Some((user, password)) => request.basic_auth(user, Some(password)),
        None => request,
    };
    let mut manifests = Vec::new();
    for (digest, os, architecture, variant) in entries {
        let bytes = with_credentials(
            http.get(format!("{}/v2/{repo}/manifests/{digest}", registry.url()))
                .header("accept", OCI_MANIFEST),
        )
        .send()
        .await?
        .error_for_status()?
        .bytes()
        .await?;
        let mut platform = serde_json::json!({ "architecture": architecture, "os": os });
        if let Some(variant) = variant {
            platform["variant"] = (*variant).into();
        }
        manifests.push(serde_json::json!({
            "mediaType": OCI_MANIFEST,
            "digest": digest,
            "size": bytes.len(),
            "platform": platform,
        }));
    }
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": manifests,
    })
    .to_string();
    let put = with_credentials(
        http.put(format!("{}/v2/{repo}/manifests/{tag}", registry.url()))
            .header("content-type", OCI_INDEX)
            .body(index.clone()),
    )
    .send()
    .await?;
    anyhow::ensure!(put.status().is_success(), "PUT index: {}", put.status());
    Ok(format!(
        "sha256:{}",
        hex::encode(sha2::Sha256::digest(index.as_bytes()))
    ))
}

/// `sha256:` of `skopeo inspect --raw docker://<image>` over plain HTTP: the
/// manifest's digest as skopeo reads it, with `creds` or anonymously.
pub async fn raw_digest(image: &str, creds: Option<(&str, &str)>) -> anyhow::Result<String> {
    use sha2::Digest as _;
    let mut cmd = Command::new(binaries::skopeo());
    cmd.args(["inspect", "--tls-verify=false", "--raw"]);
    match creds {
        Some((u, p)) => cmd.arg(format!("--creds={u}:{p}")),
        None => cmd.arg("--no-creds"),
    };
    let out = cmd
        .arg(format!("docker://{image}"))
        .output()
        .await
        .context("running skopeo inspect --raw")?;
    anyhow::ensure!(
        out.status.success(),
        "skopeo inspect --raw {image}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(format!(
        "sha256:{}",
        hex::encode(sha2::Sha256::digest(&out.stdout))
    ))
}

/// How many blob uploads of `repo` a docker-registry's access log (`log`)
/// shows completed (`PUT …/blobs/uploads/…`).
pub fn blob_uploads(log: &std::path::Path, repo: &str) -> usize {
    let needle = format!("\"PUT /v2/{repo}/blobs/uploads/");
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|line| line.contains(&needle))
        .count()
}

/// `skopeo inspect [FLAGS] docker://<reference>` over plain HTTP: the image as skopeo reports it, its config
/// blob with `--config`, its manifest with `--raw`.
pub async fn inspect(reference: &str, flags: &[&str]) -> anyhow::Result<serde_json::Value> {
    let mut cmd = Command::new(binaries::skopeo());
    cmd.args(["inspect", "--tls-verify=false", "--no-creds"])
        .args(flags)
        .arg(format!("docker://{reference}"));
    let output = cmd.output().await.context("running skopeo inspect")?;
    anyhow::ensure!(
        output.status.success(),
        "skopeo inspect {reference} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).context("skopeo inspect printed no JSON")
}

/// Runs `cmd` to completion, failing with its stderr when it exits non-zero.
async fn run(cmd: &mut Command) -> anyhow::Result<()> {
    let shown = redacted(cmd);
    let output = cmd
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .with_context(|| format!("running {shown}"))?;
    anyhow::ensure!(
        output.status.success(),
        "{shown} exited with {}:\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(())
}

/// `cmd` as a message shows it: the values of `--*-creds=` flags (tokens) are left out.
fn redacted(cmd: &Command) -> String {
    let cmd = cmd.as_std();
    let args = cmd.get_args().map(|arg| {
        let arg = arg.to_string_lossy();
        match arg.split_once('=') {
            Some((flag, _)) if flag.ends_with("-creds") => format!("{flag}=<redacted>"),
            _ => arg.into_owned(),
        }
    });
    std::iter::once(cmd.get_program().to_string_lossy().into_owned())
        .chain(args)
        .collect::<Vec<_>>()
        .join(" ")
}
