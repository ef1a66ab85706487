//! Conversions between the image views ([`super::view`]) and their protobuf types. Sizes are `u64` here and
//! `int64` on the wire (a negative one from a client reads as 0).

use imagestreams_proto::v1 as pb;

use super::ImageSummary;
use super::view::{
    DockerConfig, DockerImage, Empty, Image, ImageLayer, ImageManifest, ImageStreamImage,
    ImageStreamTag,
};

fn wire_size(size: u64) -> i64 {
    i64::try_from(size).unwrap_or(i64::MAX)
}

fn domain_size(size: i64) -> u64 {
    u64::try_from(size).unwrap_or(0)
}

impl From<ImageStreamImage> for pb::ImageStreamImage {
    fn from(v: ImageStreamImage) -> Self {
        pb::ImageStreamImage {
            api_version: v.api_version,
            kind: v.kind,
            metadata: Some(v.metadata.into()),
            image: Some(v.image.into()),
        }
    }
}

impl From<pb::ImageStreamImage> for ImageStreamImage {
    fn from(v: pb::ImageStreamImage) -> Self {
        ImageStreamImage {
            api_version: v.api_version,
            kind: v.kind,
            metadata: v.metadata.unwrap_or_default().into(),
            image: v.image.unwrap_or_default().into(),
        }
    }
}

impl From<ImageStreamTag> for pb::ImageStreamTag {
    fn from(v: ImageStreamTag) -> Self {
        pb::ImageStreamTag {
            api_version: v.api_version,
            kind: v.kind,
            metadata: Some(v.metadata.into()),
            tag: v.tag.map(Into::into),
            generation: v.generation,
            image: Some(v.image.into()),
        }
    }
}

impl From<pb::ImageStreamTag> for ImageStreamTag {
    fn from(v: pb::ImageStreamTag) -> Self {
        ImageStreamTag {
            api_version: v.api_version,
            kind: v.kind,
            metadata: v.metadata.unwrap_or_default().into(),
            tag: v.tag.map(Into::into),
            generation: v.generation,
            image: v.image.unwrap_or_default().into(),
        }
    }
}

impl From<Image> for pb::Image {
    fn from(v: Image) -> Self {
        pb::Image {
            metadata: Some(v.metadata.into()),
            docker_image_reference: v.docker_image_reference,
            docker_image_metadata: v.docker_image_metadata.map(Into::into),
            docker_image_metadata_version: v.docker_image_metadata_version,
            docker_image_layers: v
                .docker_image_layers
                .into_iter()
                .map(|l| pb::ImageLayer {
                    name: l.name,
                    size: wire_size(l.size),
                    media_type: l.media_type,
                })
                .collect(),
            docker_image_manifest_media_type: v.docker_image_manifest_media_type,
            docker_image_manifests: v
                .docker_image_manifests
                .into_iter()
                .map(|m| pb::ImageManifest {
                    digest: m.digest,
                    media_type: m.media_type,
                    manifest_size: wire_size(m.manifest_size),
                    architecture: m.architecture,
                    os: m.os,
                    variant: m.variant,
                })
                .collect(),
        }
    }
}

impl From<pb::Image> for Image {
    fn from(v: pb::Image) -> Self {
        Image {
            metadata: v.metadata.unwrap_or_default().into(),
            docker_image_reference: v.docker_image_reference,
            docker_image_metadata: v.docker_image_metadata.map(Into::into),
            docker_image_metadata_version: v.docker_image_metadata_version,
            docker_image_layers: v
                .docker_image_layers
                .into_iter()
                .map(|l| ImageLayer {
                    name: l.name,
                    size: domain_size(l.size),
                    media_type: l.media_type,
                })
                .collect(),
            docker_image_manifest_media_type: v.docker_image_manifest_media_type,
            docker_image_manifests: v
                .docker_image_manifests
                .into_iter()
                .map(|m| ImageManifest {
                    digest: m.digest,
                    media_type: m.media_type,
                    manifest_size: domain_size(m.manifest_size),
                    architecture: m.architecture,
                    os: m.os,
                    variant: m.variant,
                })
                .collect(),
        }
    }
}

impl From<DockerImage> for pb::DockerImage {
    fn from(v: DockerImage) -> Self {
        pb::DockerImage {
            kind: v.kind,
            api_version: v.api_version,
            id: v.id,
            created: v.created,
            author: v.author,
            config: v.config.map(|c| pb::DockerConfig {
                user: c.user,
                exposed_ports: c
                    .exposed_ports
                    .into_keys()
                    .map(|p| (p, pb::PortSet {}))
                    .collect(),
                env: c.env,
                cmd: c.cmd,
                working_dir: c.working_dir,
                entrypoint: c.entrypoint,
                labels: c.labels.into_iter().collect(),
            }),
            architecture: v.architecture,
            os: v.os,
            variant: v.variant,
            size: wire_size(v.size),
        }
    }
}

impl From<pb::DockerImage> for DockerImage {
    fn from(v: pb::DockerImage) -> Self {
        DockerImage {
            kind: v.kind,
            api_version: v.api_version,
            id: v.id,
            created: v.created,
            author: v.author,
            config: v.config.map(|c| DockerConfig {
                user: c.user,
                exposed_ports: c.exposed_ports.into_keys().map(|p| (p, Empty {})).collect(),
                env: c.env,
                cmd: c.cmd,
                working_dir: c.working_dir,
                entrypoint: c.entrypoint,
                labels: c.labels.into_iter().collect(),
            }),
            architecture: v.architecture,
            os: v.os,
            variant: v.variant,
            size: domain_size(v.size),
        }
    }
}

impl From<ImageSummary> for pb::ImageSummary {
    fn from(s: ImageSummary) -> Self {
        pb::ImageSummary {
            platforms: s.platforms,
            created: s.created,
            total_size: wire_size(s.total_size),
            layer_count: s.layer_count,
            error: s.error,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ImageConfig, ImageRecord, Layer, PlatformImage};

    #[test]
    fn an_image_stream_image_survives_the_wire() {
        let record = ImageRecord {
            digest: "sha256:aa".into(),
            media_type: "application/vnd.oci.image.index.v1+json".into(),
            layers: vec![Layer {
                digest: "sha256:l".into(),
                media_type: "m".into(),
                size: 3,
            }],
            manifests: vec![PlatformImage {
                digest: "sha256:p".into(),
                media_type: "m".into(),
                size: 7,
                os: "linux".into(),
                architecture: "arm64".into(),
                variant: "v8".into(),
            }],
            config: Some(ImageConfig {
                digest: "sha256:c".into(),
                os: "linux".into(),
                exposed_ports: vec!["80/tcp".into()],
                env: vec!["A=1".into()],
                labels: [("k".to_owned(), "v".to_owned())].into(),
                ..ImageConfig::default()
            }),
            error: Some("partly unreadable".into()),
            recorded_at: "2026-11-27T00:00:00Z".into(),
            ..ImageRecord::default()
        };
        let view = ImageStreamImage::new("ns", "app", Image::from_record(&record, "r@x".into()));
        let wire: pb::ImageStreamImage = view.clone().into();
        assert_eq!(ImageStreamImage::from(wire), view);
    }
}
