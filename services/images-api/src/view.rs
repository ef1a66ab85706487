//! OpenShift's view of an image: `Image` (`dockerImageMetadata`, `dockerImageLayers`, `dockerImageManifests`,
//! `dockerImageManifestMediaType`), and the namespaced `ImageStreamImage` (`STREAM@DIGEST`) and
//! `ImageStreamTag` (`STREAM:TAG`) around it, with OpenShift's JSON names, so `-o json` reads like
//! `oc get isimage -o json`.
//!
//! `dockerImageMetadata` keeps Docker's capitalized names (`Id`, `Created`, `Config`, `Architecture`, …) as
//! OpenShift's `image.openshift.io/1.0` `DockerImage` does, plus `Os` and `Variant`, which OpenShift leaves
//! out. A record whose metadata could not be read carries the reason in the
//! [`ANNOTATION_METADATA_ERROR`] annotation of the image.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::ImageRecord;
use imagestreams_common::model::{API_VERSION, ObjectMeta, TagReference};

/// The kind of a `STREAM@DIGEST` object.
pub const KIND_IMAGE_STREAM_IMAGE: &str = "ImageStreamImage";
/// The kind of a `STREAM:TAG` object.
pub const KIND_IMAGE_STREAM_TAG: &str = "ImageStreamTag";
/// `dockerImageMetadata.kind`.
pub const KIND_DOCKER_IMAGE: &str = "DockerImage";
/// `dockerImageMetadata.apiVersion`, and `dockerImageMetadataVersion`'s `1.0`.
pub const DOCKER_IMAGE_API_VERSION: &str = "image.openshift.io/1.0";
/// `dockerImageMetadataVersion`.
pub const DOCKER_IMAGE_METADATA_VERSION: &str = "1.0";
/// Annotation of an image whose manifest or config could not be read: the reason.
pub const ANNOTATION_METADATA_ERROR: &str = "imagestreams.io/metadata-error";

/// One image of a stream, `STREAM@DIGEST`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImageStreamImage {
    /// `image.openshift.io/v1`.
    pub api_version: String,
    /// The object kind.
    pub kind: String,
    /// `name` is `STREAM@DIGEST`.
    pub metadata: ObjectMeta,
    /// The image with its metadata.
    pub image: Image,
}

/// A tag's current image, `STREAM:TAG`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImageStreamTag {
    /// `image.openshift.io/v1`.
    pub api_version: String,
    /// The object kind.
    pub kind: String,
    /// `name` is `STREAM:TAG`.
    pub metadata: ObjectMeta,
    /// The spec tag, when the stream has one of that name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<TagReference>,
    /// The generation of the tag's current history entry.
    #[serde(default)]
    pub generation: i64,
    /// The image with its metadata.
    pub image: Image,
}

/// OpenShift's `Image`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Image {
    /// `name` is the manifest digest.
    pub metadata: ObjectMeta,
    /// `host/ns/stream@digest`.
    pub docker_image_reference: String,
    /// The image config in Docker's names; absent for an index or unreadable metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub docker_image_metadata: Option<DockerImage>,
    /// `1.0` when `dockerImageMetadata` is set.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub docker_image_metadata_version: String,
    /// The layers, base first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub docker_image_layers: Vec<ImageLayer>,
    /// The manifest's media type.
    pub docker_image_manifest_media_type: String,
    /// For an index: one entry per platform.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub docker_image_manifests: Vec<ImageManifest>,
}

/// `dockerImageMetadata`: the image config in Docker's names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default, JsonSchema)]
pub struct DockerImage {
    /// `DockerImage`.
    pub kind: String,
    /// `image.openshift.io/1.0`.
    #[serde(rename = "apiVersion")]
    pub api_version: String,
    /// The config blob's digest.
    #[serde(rename = "Id")]
    pub id: String,
    /// When the image was built (RFC 3339), as its config says.
    #[serde(rename = "Created", default, skip_serializing_if = "String::is_empty")]
    pub created: String,
    /// The image author.
    #[serde(rename = "Author", default, skip_serializing_if = "String::is_empty")]
    pub author: String,
    /// How a container of the image runs.
    #[serde(rename = "Config", default, skip_serializing_if = "Option::is_none")]
    pub config: Option<DockerConfig>,
    /// The CPU architecture, e.g. `amd64`.
    #[serde(
        rename = "Architecture",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub architecture: String,
    /// The operating system, e.g. `linux`.
    #[serde(rename = "Os", default, skip_serializing_if = "String::is_empty")]
    pub os: String,
    /// The CPU variant, e.g. `v7` (empty when none).
    #[serde(rename = "Variant", default, skip_serializing_if = "String::is_empty")]
    pub variant: String,
    /// The config and every layer, in bytes.
    #[serde(rename = "Size", default)]
    pub size: u64,
}

/// `dockerImageMetadata.Config`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default, JsonSchema)]
#[serde(rename_all = "PascalCase")]
pub struct DockerConfig {
    /// The user the process runs as.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub user: String,
    /// The exposed ports, `80/tcp` → `{}`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub exposed_ports: BTreeMap<String, Empty>,
    /// `NAME=value` environment entries.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<String>,
    /// The default arguments.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cmd: Vec<String>,
    /// The working directory.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub working_dir: String,
    /// The entrypoint.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub entrypoint: Vec<String>,
    /// The image labels.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// `{}`, the value of a Docker port set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, JsonSchema)]
pub struct Empty {}

/// One entry of `dockerImageLayers`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImageLayer {
    /// The layer digest.
    pub name: String,
    /// The size in bytes.
    pub size: u64,
    /// The media type.
    pub media_type: String,
}

/// One entry of `dockerImageManifests`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImageManifest {
    /// The digest, `sha256:…`.
    pub digest: String,
    /// The media type.
    pub media_type: String,
    /// The platform manifest's size in bytes.
    pub manifest_size: u64,
    /// The CPU architecture, e.g. `amd64`.
    pub architecture: String,
    /// The operating system, e.g. `linux`.
    pub os: String,
    /// The CPU variant, e.g. `v7` (empty when none).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub variant: String,
}

impl Image {
    /// The image of `record`, pulled as `docker_image_reference`.
    pub fn from_record(record: &ImageRecord, docker_image_reference: String) -> Self {
        let mut annotations = BTreeMap::new();
        if let Some(error) = &record.error {
            annotations.insert(ANNOTATION_METADATA_ERROR.to_owned(), error.clone());
        }
        let summary = record.summary();
        Image {
            metadata: ObjectMeta {
                name: record.digest.clone(),
                creation_timestamp: Some(record.recorded_at.clone()),
                annotations,
                ..ObjectMeta::default()
            },
            docker_image_reference,
            docker_image_metadata: record.config.as_ref().map(|c| DockerImage {
                kind: KIND_DOCKER_IMAGE.to_owned(),
                api_version: DOCKER_IMAGE_API_VERSION.to_owned(),
                id: c.digest.clone(),
                created: c.created.clone(),
                author: c.author.clone(),
                config: Some(DockerConfig {
                    user: c.user.clone(),
                    exposed_ports: c
                        .exposed_ports
                        .iter()
                        .map(|p| (p.clone(), Empty {}))
                        .collect(),
                    env: c.env.clone(),
                    cmd: c.cmd.clone(),
                    working_dir: c.working_dir.clone(),
                    entrypoint: c.entrypoint.clone(),
                    labels: c.labels.clone(),
                }),
                architecture: c.architecture.clone(),
                os: c.os.clone(),
                variant: c.variant.clone(),
                size: summary.total_size,
            }),
            docker_image_metadata_version: record
                .config
                .as_ref()
                .map(|_| DOCKER_IMAGE_METADATA_VERSION.to_owned())
                .unwrap_or_default(),
            docker_image_layers: record
                .layers
                .iter()
                .map(|l| ImageLayer {
                    name: l.digest.clone(),
                    size: l.size,
                    media_type: l.media_type.clone(),
                })
                .collect(),
            docker_image_manifest_media_type: record.media_type.clone(),
            docker_image_manifests: record
                .manifests
                .iter()
                .map(|m| ImageManifest {
                    digest: m.digest.clone(),
                    media_type: m.media_type.clone(),
                    manifest_size: m.size,
                    architecture: m.architecture.clone(),
                    os: m.os.clone(),
                    variant: m.variant.clone(),
                })
                .collect(),
        }
    }

    /// The reason the metadata could not be read, if it could not.
    pub fn metadata_error(&self) -> Option<&str> {
        self.metadata
            .annotations
            .get(ANNOTATION_METADATA_ERROR)
            .map(String::as_str)
    }

    /// `os/architecture[/variant]` of each platform.
    pub fn platforms(&self) -> Vec<String> {
        let join = |os: &str, arch: &str, variant: &str| super::platform(os, arch, variant);
        if self.docker_image_manifests.is_empty() {
            self.docker_image_metadata
                .iter()
                .map(|m| join(&m.os, &m.architecture, &m.variant))
                .filter(|p| !p.is_empty())
                .collect()
        } else {
            self.docker_image_manifests
                .iter()
                .map(|m| join(&m.os, &m.architecture, &m.variant))
                .collect()
        }
    }
}

impl ImageStreamImage {
    /// `STREAM@DIGEST` of `namespace`, showing `image`.
    pub fn new(namespace: &str, stream: &str, image: Image) -> Self {
        ImageStreamImage {
            api_version: API_VERSION.to_owned(),
            kind: KIND_IMAGE_STREAM_IMAGE.to_owned(),
            metadata: ObjectMeta {
                name: format!("{stream}@{}", image.metadata.name),
                namespace: namespace.to_owned(),
                creation_timestamp: image.metadata.creation_timestamp.clone(),
                ..ObjectMeta::default()
            },
            image,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ImageConfig, Layer};

    #[test]
    fn an_image_reads_like_openshifts() {
        let record = ImageRecord {
            digest: "sha256:aa".into(),
            media_type: "application/vnd.oci.image.manifest.v1+json".into(),
            manifest_size: 10,
            layers: vec![Layer {
                digest: "sha256:l1".into(),
                media_type: "application/vnd.oci.image.layer.v1.tar+gzip".into(),
                size: 90,
            }],
            config: Some(ImageConfig {
                digest: "sha256:cc".into(),
                size: 10,
                os: "linux".into(),
                architecture: "amd64".into(),
                created: "2026-11-27T00:00:00Z".into(),
                exposed_ports: vec!["8080/tcp".into()],
                labels: [("a".to_owned(), "b".to_owned())].into(),
                ..ImageConfig::default()
            }),
            recorded_at: "2026-11-27T00:00:01Z".into(),
            ..ImageRecord::default()
        };
        let image = Image::from_record(&record, "reg/ns/app@sha256:aa".into());
        let isi = ImageStreamImage::new("ns", "app", image);
        let json = serde_json::to_value(&isi).unwrap();
        assert_eq!(json["kind"], "ImageStreamImage");
        assert_eq!(json["metadata"]["name"], "app@sha256:aa");
        let image = &json["image"];
        assert_eq!(image["metadata"]["name"], "sha256:aa");
        assert_eq!(image["dockerImageMetadata"]["Id"], "sha256:cc");
        assert_eq!(image["dockerImageMetadata"]["Architecture"], "amd64");
        assert_eq!(image["dockerImageMetadata"]["Size"], 100);
        assert_eq!(
            image["dockerImageMetadata"]["Config"]["ExposedPorts"],
            serde_json::json!({"8080/tcp": {}})
        );
        assert_eq!(image["dockerImageLayers"][0]["name"], "sha256:l1");
        assert_eq!(
            image["dockerImageManifestMediaType"],
            "application/vnd.oci.image.manifest.v1+json"
        );
        assert_eq!(
            serde_json::from_value::<ImageStreamImage>(json).unwrap(),
            isi
        );
    }

    #[test]
    fn an_unreadable_image_says_why_in_an_annotation() {
        let record = ImageRecord {
            digest: "sha256:aa".into(),
            error: Some("the config is not JSON".into()),
            ..ImageRecord::default()
        };
        let image = Image::from_record(&record, String::new());
        assert_eq!(image.metadata_error(), Some("the config is not JSON"));
        assert!(image.docker_image_metadata.is_none());
    }
}
