//! Copying an image from one repository to another, as `skopeo copy --all`
//! and `oc image mirror` do: every blob the image needs, then its manifests,
//! byte for byte, so that the destination has the same digests.
//!
//! - **Already there.** When the destination's tag already points at the
//!   image, nothing is written: a repeated mirror costs manifest reads.
//! - **Order.** Blobs first (config and layers), then each platform's
//!   manifest by digest, then the top manifest under the tag. A copy that
//!   fails part way leaves blobs and untagged manifests behind, never a tag
//!   pointing at an image that is not all there.
//! - **Blobs** already in the destination (`HEAD`) are skipped; within one
//!   registry they are mounted from the source repository; otherwise they are
//!   read from the source, checked against their digest, and uploaded, up to
//!   [`CopyOptions::parallel_blobs`] at a time.
//! - **Bounded memory.** A blob up to [`CopyOptions::chunk_bytes`] crosses
//!   whole (one `GET`, one `PUT`). A larger one crosses a chunk at a time:
//!   each chunk read with a `Range` request and sent as a chunked upload
//!   (`PATCH` with its `Content-Range`, the last one with the closing `PUT`),
//!   the digest computed on the way and checked before the `PUT` that commits
//!   the blob (the registry checks it again). At most `parallel_blobs`
//!   chunks are held at once, whatever the layers' sizes. A registry's
//!   `OCI-Chunk-Min-Length` raises the chunk size. A source that ignores
//!   `Range` is read whole instead, up to [`CopyOptions::max_blob_bytes`].
//! - **Platforms.** By default an index is copied whole, so its digest is the
//!   source's; with [`CopyOptions::platform`] only that platform's manifest is
//!   copied and tagged (it is the image's digest then, as `skopeo copy`
//!   without `--all`).
//! - **Foreign layers** (Windows base layers with `urls`) are not copied, as
//!   `skopeo` does not: registries serve them from their URLs.

use bytes::Bytes;
use futures::{StreamExt as _, TryStreamExt as _};
use serde::Deserialize;
use sha2::{Digest as _, Sha256};

use crate::manifest::{
    MEDIA_TYPE_DOCKER_LIST, MEDIA_TYPE_DOCKER_SCHEMA2, MEDIA_TYPE_OCI_INDEX,
    MEDIA_TYPE_OCI_MANIFEST, Manifest,
};
use crate::{RegistryClient, RegistryError, Repository, client::BlobOutcome};

/// How an image is copied.
#[derive(Debug, Clone)]
pub struct CopyOptions {
    /// Copy only this platform of an index (`os/architecture[/variant]`).
    pub platform: Option<String>,
    /// Check what is missing at the destination, write nothing.
    pub dry_run: bool,
    /// How many blobs cross at once.
    pub parallel_blobs: usize,
    /// Blobs larger than this cross in chunks of this size.
    pub chunk_bytes: u64,
    /// The largest blob read whole from a source that ignores `Range`.
    pub max_blob_bytes: u64,
}

/// The default chunk of a blob crossing: 32 MiB.
pub const DEFAULT_CHUNK_BYTES: u64 = 32 << 20;

impl Default for CopyOptions {
    fn default() -> Self {
        CopyOptions {
            platform: None,
            dry_run: false,
            parallel_blobs: 4,
            chunk_bytes: DEFAULT_CHUNK_BYTES,
            max_blob_bytes: 2 << 30,
        }
    }
}

/// What a copy did (or, dry, would do).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CopyReport {
    /// The digest tagged at the destination.
    pub digest: String,
    /// Its media type.
    pub media_type: String,
    /// Manifests written (or to write).
    pub manifests: usize,
    /// Blobs the image needs.
    pub blobs: usize,
    /// Of those, already in the destination.
    pub present: usize,
    /// Mounted within the registry.
    pub mounted: usize,
    /// Uploaded (or to upload).
    pub uploaded: usize,
    /// The bytes uploaded (or to upload).
    pub bytes: u64,
    /// The destination's tag already pointed at the image: nothing was
    /// written (nor read beyond the manifests).
    pub unchanged: bool,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Descriptor {
    #[serde(default)]
    media_type: String,
    digest: String,
    #[serde(default)]
    size: u64,
    #[serde(default)]
    urls: Vec<String>,
    #[serde(default)]
    platform: Option<PlatformDoc>,
}

#[derive(Debug, Deserialize)]
struct PlatformDoc {
    #[serde(default)]
    os: String,
    #[serde(default)]
    architecture: String,
    #[serde(default)]
    variant: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ImageDoc {
    config: Descriptor,
    #[serde(default)]
    layers: Vec<Descriptor>,
}

#[derive(Debug, Deserialize)]
struct IndexDoc {
    manifests: Vec<Descriptor>,
}

/// The media type of a manifest we copy, as the constant the request sends.
fn manifest_type(manifest: &Manifest) -> Option<&'static str> {
    let media_type = manifest
        .media_type
        .clone()
        .or_else(|| crate::manifest::document_media_type(&manifest.bytes))?;
    [
        MEDIA_TYPE_OCI_INDEX,
        MEDIA_TYPE_OCI_MANIFEST,
        MEDIA_TYPE_DOCKER_LIST,
        MEDIA_TYPE_DOCKER_SCHEMA2,
    ]
    .into_iter()
    .find(|known| *known == media_type)
}

fn invalid(repo: &Repository, what: &str, detail: impl Into<String>) -> RegistryError {
    RegistryError::InvalidResponse {
        registry: repo.primary().registry(),
        what: what.to_owned(),
        detail: detail.into(),
    }
}

/// `os/architecture[/variant]` of a descriptor.
fn platform_of(descriptor: &Descriptor) -> Option<String> {
    let p = descriptor.platform.as_ref()?;
    let mut text = format!("{}/{}", p.os, p.architecture);
    if let Some(variant) = p.variant.as_deref().filter(|v| !v.is_empty()) {
        text.push('/');
        text.push_str(variant);
    }
    Some(text)
}

impl RegistryClient {
    /// Copies the image `reference` (a tag or digest) of `from` to `to`,
    /// tagged `tag` (or put by digest when `tag` is a digest).
    pub async fn copy_image(
        &self,
        from: &Repository,
        reference: &str,
        to: &Repository,
        tag: &str,
        options: &CopyOptions,
    ) -> Result<CopyReport, RegistryError> {
        let top = self.manifest(from, reference).await?;
        let mut report = CopyReport::default();
        // the image to tag, and the children to copy first (a whole index)
        let (tagged, children) = match (top.is_index(), &options.platform) {
            (false, _) => (top, Vec::new()),
            (true, platform) => {
                let index: IndexDoc = serde_json::from_slice(&top.bytes)
                    .map_err(|e| invalid(from, "an index", e.to_string()))?;
                match platform {
                    Some(platform) => {
                        let child = index
                            .manifests
                            .iter()
                            .find(|d| platform_of(d).as_deref() == Some(platform.as_str()))
                            .ok_or_else(|| RegistryError::NotFound {
                                registry: from.primary().registry(),
                                what: format!("platform {platform} of {reference}"),
                                detail: String::new(),
                            })?;
                        (self.manifest(from, &child.digest).await?, Vec::new())
                    }
                    None => (top, index.manifests),
                }
            }
        };
        report.digest = tagged.digest.clone();
        report.media_type = manifest_type(&tagged).unwrap_or_default().to_owned();
        if self
            .digest(to, tag)
            .await
            .is_ok_and(|there| there.digest == tagged.digest)
        {
            report.unchanged = true;
            return Ok(report);
        }
        for child in &children {
            let manifest = self.manifest(from, &child.digest).await?;
            self.copy_manifest(from, to, &manifest, &manifest.digest, options, &mut report)
                .await?;
        }
        self.copy_manifest(from, to, &tagged, tag, options, &mut report)
            .await?;
        Ok(report)
    }

    /// Copies the blobs of `manifest` (none for an index, whose children are
    /// copied first), then puts it under `reference`.
    async fn copy_manifest(
        &self,
        from: &Repository,
        to: &Repository,
        manifest: &Manifest,
        reference: &str,
        options: &CopyOptions,
        report: &mut CopyReport,
    ) -> Result<(), RegistryError> {
        let media_type = manifest_type(manifest).ok_or_else(|| {
            invalid(
                from,
                &format!("manifest {}", manifest.digest),
                format!("unsupported media type {:?}", manifest.media_type),
            )
        })?;
        if !manifest.is_index() {
            let image: ImageDoc = serde_json::from_slice(&manifest.bytes)
                .map_err(|e| invalid(from, &manifest.digest, e.to_string()))?;
            let blobs: Vec<Descriptor> = std::iter::once(image.config)
                .chain(image.layers)
                .filter(|d| d.urls.is_empty() || !d.media_type.contains("foreign"))
                .collect();
            report.blobs += blobs.len();
            let outcomes: Vec<Crossed> = futures::stream::iter(blobs)
                .map(|blob| self.copy_blob(from, to, blob, options))
                .buffer_unordered(options.parallel_blobs.max(1))
                .try_collect()
                .await?;
            for outcome in outcomes {
                match outcome {
                    Crossed::Present => report.present += 1,
                    Crossed::Mounted => report.mounted += 1,
                    Crossed::Uploaded(bytes) => {
                        report.uploaded += 1;
                        report.bytes += bytes;
                    }
                }
            }
        }
        report.manifests += 1;
        if !options.dry_run {
            let digest = self
                .put_manifest(to, reference, media_type, manifest.bytes.clone())
                .await?;
            if digest != manifest.digest {
                return Err(RegistryError::DigestMismatch {
                    registry: to.primary().registry(),
                    what: format!("manifest {reference}"),
                    expected: manifest.digest.clone(),
                    actual: digest,
                });
            }
        }
        Ok(())
    }

    async fn copy_blob(
        &self,
        from: &Repository,
        to: &Repository,
        blob: Descriptor,
        options: &CopyOptions,
    ) -> Result<Crossed, RegistryError> {
        if self.has_blob(to, &blob.digest).await? {
            return Ok(Crossed::Present);
        }
        if options.dry_run {
            return Ok(Crossed::Uploaded(blob.size));
        }
        let source = from.primary();
        if source.origin == to.primary().origin
            && self
                .mount_blob(to, &blob.digest, &source.repository)
                .await?
                == BlobOutcome::Mounted
        {
            return Ok(Crossed::Mounted);
        }
        if blob.size > options.chunk_bytes.max(1)
            && self.copy_in_chunks(from, to, &blob, options).await?
        {
            return Ok(Crossed::Uploaded(blob.size));
        }
        if blob.size > options.max_blob_bytes {
            return Err(RegistryError::TooLarge {
                registry: source.registry(),
                what: format!("blob {}", blob.digest),
                limit: options.max_blob_bytes,
            });
        }
        let bytes: Bytes = self.blob_of_size(from, &blob.digest, blob.size).await?;
        let size = bytes.len() as u64;
        self.upload_blob(to, &blob.digest, bytes).await?;
        Ok(Crossed::Uploaded(size))
    }
}

impl RegistryClient {
    /// Copies `blob` a chunk at a time (see the module docs); `false` when
    /// the source ignores `Range`, before anything is sent but the opening
    /// of an upload (left to the registry's clean-up).
    async fn copy_in_chunks(
        &self,
        from: &Repository,
        to: &Repository,
        blob: &Descriptor,
        options: &CopyOptions,
    ) -> Result<bool, RegistryError> {
        let Some(expected) = blob.digest.strip_prefix("sha256:") else {
            // only sha256 is checked on the way; others cross whole
            return Ok(false);
        };
        let mut upload = self.open_upload(to, &blob.digest).await?;
        let chunk = options
            .chunk_bytes
            .max(upload.min_chunk.unwrap_or(0))
            .max(1);
        let mut hasher = Sha256::new();
        let mut offset = 0;
        loop {
            let len = chunk.min(blob.size - offset);
            let bytes = match self.blob_range(from, &blob.digest, offset, len).await {
                Ok(bytes) => bytes,
                Err(RegistryError::TooLarge { .. } | RegistryError::InvalidResponse { .. })
                    if offset == 0 =>
                {
                    return Ok(false);
                }
                Err(e) => return Err(e),
            };
            hasher.update(&bytes);
            offset += len;
            if offset < blob.size {
                self.upload_chunk(to, &mut upload, bytes).await?;
                continue;
            }
            let actual = hex::encode(hasher.finalize());
            if actual != expected {
                return Err(RegistryError::DigestMismatch {
                    registry: from.primary().registry(),
                    what: format!("blob {}", blob.digest),
                    expected: blob.digest.clone(),
                    actual: format!("sha256:{actual}"),
                });
            }
            self.finish_upload(to, upload, bytes).await?;
            return Ok(true);
        }
    }
}

/// How one blob reached the destination.
enum Crossed {
    Present,
    Mounted,
    Uploaded(u64),
}
