//! The image catalog's contract: image metadata, one immutable record per
//! manifest digest, read from the registry once (by the registry-watcher
//! after a push, by the tag-syncer after an import) and served by the
//! gateway. No I/O loops.
//!
//! - [`ImageRecord`] is what the registry says an image is: its manifest (media type, size, layers; for an
//!   index, each platform's manifest) and its config blob (os, architecture, created, author, labels, env,
//!   entrypoint, cmd, exposed ports, working dir, user). A manifest or config that could not be read for good
//!   (malformed, over the size limit, missing) is recorded with [`ImageRecord::error`], so that it is not
//!   fetched again and the error can be shown; a passing failure (timeout, 5xx) records nothing.
//! - [`ImageSummary`] is the part every `ImagePushed` carries.
//! - [`ImageCatalog`] keeps the records in the [`subjects::BUCKET_IMAGES`](imagestreams_common::subjects::BUCKET_IMAGES) KV
//!   bucket, written with create-only semantics: the first record of a digest wins, as a digest names one
//!   content forever.
//! - [`view`] renders a record as OpenShift's `Image` and `ImageStreamImage` (`dockerImageMetadata`,
//!   `dockerImageLayers`, `dockerImageManifests`, …), and [`wire`] converts that to the
//!   protobuf types.

mod catalog;
pub mod view;
pub mod wire;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use catalog::{ImageCatalog, catalog_key};

/// What the registry says one manifest digest is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct ImageRecord {
    /// The manifest digest, `sha256:…`.
    pub digest: String,
    /// The manifest's media type (OCI or Docker; manifest or index).
    pub media_type: String,
    /// The manifest's size in bytes.
    pub manifest_size: u64,
    /// The layers, base first (empty for an index).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub layers: Vec<Layer>,
    /// For an index: one manifest per platform.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub manifests: Vec<PlatformImage>,
    /// The image config (absent for an index, or when it could not be read).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<ImageConfig>,
    /// Why the manifest or config could not be read, when it could not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// When the record was made (RFC 3339 UTC).
    pub recorded_at: String,
}

/// One layer blob of an image manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct Layer {
    /// The digest, `sha256:…`.
    pub digest: String,
    /// The media type.
    pub media_type: String,
    /// The size in bytes.
    pub size: u64,
}

/// One platform's manifest of an index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct PlatformImage {
    /// The digest, `sha256:…`.
    pub digest: String,
    /// The media type.
    pub media_type: String,
    /// The size in bytes.
    pub size: u64,
    /// The operating system, e.g. `linux`.
    pub os: String,
    /// The CPU architecture, e.g. `amd64`.
    pub architecture: String,
    /// The CPU variant, e.g. `v7` (empty when none).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub variant: String,
}

impl PlatformImage {
    /// `os/architecture[/variant]`, as `docker --platform` spells it.
    pub fn platform(&self) -> String {
        platform(&self.os, &self.architecture, &self.variant)
    }
}

/// The image config blob, as far as imagestreams keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct ImageConfig {
    /// The config blob's digest (the image id).
    pub digest: String,
    /// The config blob's size in bytes.
    pub size: u64,
    /// The operating system, e.g. `linux`.
    pub os: String,
    /// The CPU architecture, e.g. `amd64`.
    pub architecture: String,
    /// The CPU variant, e.g. `v7` (empty when none).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub variant: String,
    /// RFC 3339, as the config says (may be empty).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub created: String,
    /// The image author.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub author: String,
    /// The user the process runs as.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub user: String,
    /// The working directory.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub working_dir: String,
    /// `NAME=value` environment entries.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<String>,
    /// The entrypoint.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub entrypoint: Vec<String>,
    /// The default arguments.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cmd: Vec<String>,
    /// `80/tcp`, … sorted.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub exposed_ports: Vec<String>,
    /// The image labels.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

impl ImageConfig {
    /// `os/architecture[/variant]`.
    pub fn platform(&self) -> String {
        platform(&self.os, &self.architecture, &self.variant)
    }
}

/// The summary an `ImagePushed` carries.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ImageSummary {
    /// `os/architecture[/variant]` of each platform: one for an image, one per manifest for an index.
    pub platforms: Vec<String>,
    /// The config's `created` (empty for an index or when unknown).
    pub created: String,
    /// What a pull of the image moves: the config and every layer, compressed (for an index, the platform
    /// manifests' own sizes only, as their layers are not read).
    pub total_size: u64,
    /// The number of layers (0 for an index).
    pub layer_count: u32,
    /// Why the metadata could not be read, when it could not.
    pub error: String,
}

impl ImageRecord {
    /// Whether this is an image index (a multi-platform image).
    pub fn is_index(&self) -> bool {
        !self.manifests.is_empty()
    }

    /// The summary an `ImagePushed` carries.
    pub fn summary(&self) -> ImageSummary {
        let config_size = self.config.as_ref().map_or(0, |c| c.size);
        let platforms = if self.is_index() {
            self.manifests.iter().map(PlatformImage::platform).collect()
        } else {
            self.config.iter().map(ImageConfig::platform).collect()
        };
        ImageSummary {
            platforms,
            created: self
                .config
                .as_ref()
                .map(|c| c.created.clone())
                .unwrap_or_default(),
            total_size: if self.is_index() {
                self.manifests.iter().map(|m| m.size).sum()
            } else {
                config_size + self.layers.iter().map(|l| l.size).sum::<u64>()
            },
            layer_count: u32::try_from(self.layers.len()).unwrap_or(u32::MAX),
            error: self.error.clone().unwrap_or_default(),
        }
    }
}

fn platform(os: &str, architecture: &str, variant: &str) -> String {
    match (os.is_empty(), architecture.is_empty(), variant.is_empty()) {
        (true, true, _) => String::new(),
        (_, _, true) => format!("{os}/{architecture}"),
        _ => format!("{os}/{architecture}/{variant}"),
    }
}

/// `1.2 MiB`-style size for tables.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image() -> ImageRecord {
        ImageRecord {
            digest: "sha256:aa".into(),
            media_type: "application/vnd.oci.image.manifest.v1+json".into(),
            manifest_size: 500,
            layers: vec![
                Layer {
                    digest: "sha256:l1".into(),
                    media_type: "application/vnd.oci.image.layer.v1.tar+gzip".into(),
                    size: 1000,
                },
                Layer {
                    digest: "sha256:l2".into(),
                    media_type: "application/vnd.oci.image.layer.v1.tar+gzip".into(),
                    size: 24,
                },
            ],
            config: Some(ImageConfig {
                digest: "sha256:cc".into(),
                size: 100,
                os: "linux".into(),
                architecture: "arm".into(),
                variant: "v7".into(),
                created: "2026-11-27T00:00:00Z".into(),
                ..ImageConfig::default()
            }),
            recorded_at: "2026-11-27T00:00:01Z".into(),
            ..ImageRecord::default()
        }
    }

    #[test]
    fn an_image_summary_counts_the_config_and_every_layer() {
        let s = image().summary();
        assert_eq!(s.platforms, ["linux/arm/v7"]);
        assert_eq!(s.total_size, 1124);
        assert_eq!(s.layer_count, 2);
        assert_eq!(s.created, "2026-11-27T00:00:00Z");
        assert_eq!(s.error, "");
    }

    #[test]
    fn an_index_summary_lists_each_platform() {
        let platform = |digest: &str, arch: &str| PlatformImage {
            digest: digest.into(),
            media_type: "application/vnd.oci.image.manifest.v1+json".into(),
            size: 400,
            os: "linux".into(),
            architecture: arch.into(),
            variant: String::new(),
        };
        let index = ImageRecord {
            digest: "sha256:ii".into(),
            media_type: "application/vnd.oci.image.index.v1+json".into(),
            manifests: vec![platform("sha256:a", "amd64"), platform("sha256:b", "arm64")],
            ..ImageRecord::default()
        };
        let s = index.summary();
        assert_eq!(s.platforms, ["linux/amd64", "linux/arm64"]);
        assert_eq!((s.total_size, s.layer_count), (800, 0));
    }

    #[test]
    fn a_record_survives_its_storage_form() {
        let record = image();
        let json = serde_json::to_vec(&record).unwrap();
        assert_eq!(
            serde_json::from_slice::<ImageRecord>(&json).unwrap(),
            record
        );
    }

    #[test]
    fn sizes_read_like_ls_h() {
        assert_eq!(human_size(512), "512 B");
        assert_eq!(human_size(1536), "1.5 KiB");
        assert_eq!(human_size(3 * 1024 * 1024), "3.0 MiB");
    }
}
