//! `ImageStreamImage` (`STREAM@DIGEST`) and `ImageStreamTag` (`STREAM:TAG`): a stream's images with the
//! metadata of their records, as `oc get isimage` and `oc get istag` show them.
//!
//! As in OpenShift, a digest is an image of a stream only when one of the stream's tag histories holds it
//! (else NOT_FOUND, whatever the catalog knows): the catalog is cluster-wide, and a caller who may read one
//! namespace learns nothing of another's images. An image whose record is not made yet (its registry could
//! not be read so far) is served with what the stream knows and the
//! [`ANNOTATION_METADATA_ERROR`] annotation saying so.

use imagestreams_common::{
    error::ApiError,
    model::{API_VERSION, ImageStream, ObjectMeta, TagEvent},
};
use imagestreams_images_api::{
    ImageCatalog, ImageRecord, catalog_key,
    view::{
        ANNOTATION_METADATA_ERROR, Image, ImageStreamImage, ImageStreamTag, KIND_IMAGE_STREAM_TAG,
    },
};
use imagestreams_stream_store_api::Freshness;

use crate::streams::Streams;

/// Why an image has no metadata yet.
const NOT_READ_YET: &str = "the image's metadata has not been read from its registry yet";

impl Streams {
    /// The image `digest` of `namespace/stream`.
    pub async fn image(
        &self,
        namespace: &str,
        stream: &str,
        digest: &str,
    ) -> Result<ImageStreamImage, ApiError> {
        catalog_key(digest)?;
        let found = self.get(namespace, stream, Freshness::Latest).await?;
        let event = history(&found)
            .find(|e| e.image == digest)
            .ok_or_else(|| {
                ApiError::NotFound(format!(
                    "imagestreamimage {stream}@{digest} not found: no tag of {namespace}/{stream} has had it"
                ))
            })?;
        let image = image_of(&self.images, event).await?;
        Ok(ImageStreamImage::new(namespace, stream, image))
    }

    /// The current image of every tag of `stream` that has one, in tag order.
    pub async fn image_stream_tags(
        &self,
        stream: &ImageStream,
    ) -> Result<Vec<ImageStreamTag>, ApiError> {
        let mut tags = Vec::new();
        for list in stream.status.iter().flat_map(|s| s.tags.iter()) {
            if let Some(current) = list.items.first() {
                let image = image_of(&self.images, current).await?;
                tags.push(image_stream_tag(stream, &list.tag, current, image));
            }
        }
        Ok(tags)
    }

    /// The current image of `namespace/stream:tag`.
    pub async fn image_stream_tag(
        &self,
        namespace: &str,
        stream: &str,
        tag: &str,
    ) -> Result<ImageStreamTag, ApiError> {
        if !imagestreams_common::reference::is_valid_tag(tag) {
            return Err(ApiError::invalid(
                "tag",
                format!("tag: Invalid value: {tag:?}"),
            ));
        }
        let found = self.get(namespace, stream, Freshness::Latest).await?;
        let current = found
            .status
            .as_ref()
            .and_then(|s| s.tags.iter().find(|t| t.tag == tag))
            .and_then(|t| t.items.first())
            .ok_or_else(|| {
                ApiError::NotFound(format!(
                    "imagestreamtag {stream}:{tag} not found: the tag of {namespace}/{stream} has no image"
                ))
            })?;
        let image = image_of(&self.images, current).await?;
        Ok(image_stream_tag(&found, tag, current, image))
    }
}

/// The `STREAM:TAG` object of `stream`'s tag `tag`, whose current event is `current`.
fn image_stream_tag(
    stream: &ImageStream,
    tag: &str,
    current: &TagEvent,
    image: Image,
) -> ImageStreamTag {
    let meta = &stream.metadata;
    ImageStreamTag {
        api_version: API_VERSION.to_owned(),
        kind: KIND_IMAGE_STREAM_TAG.to_owned(),
        metadata: ObjectMeta {
            name: format!("{}:{tag}", meta.name),
            namespace: meta.namespace.clone(),
            uid: meta.uid.clone(),
            resource_version: meta.resource_version.clone(),
            creation_timestamp: Some(current.created.clone()),
            ..ObjectMeta::default()
        },
        tag: stream.spec.tags.iter().find(|t| t.name == tag).cloned(),
        generation: current.generation.unwrap_or_default(),
        image,
    }
}

/// Every tag event of `stream`, newest first per tag.
fn history(stream: &ImageStream) -> impl Iterator<Item = &TagEvent> {
    stream
        .status
        .iter()
        .flat_map(|s| s.tags.iter())
        .flat_map(|t| t.items.iter())
}

/// The image `event` points at, with its record's metadata when there is one.
async fn image_of(catalog: &ImageCatalog, event: &TagEvent) -> Result<Image, ApiError> {
    let record = catalog.get(&event.image).await?;
    Ok(match record {
        Some(record) => Image::from_record(&record, event.docker_image_reference.clone()),
        None => {
            let mut image = Image::from_record(
                &ImageRecord {
                    digest: event.image.clone(),
                    recorded_at: event.created.clone(),
                    ..ImageRecord::default()
                },
                event.docker_image_reference.clone(),
            );
            image.metadata.annotations.insert(
                ANNOTATION_METADATA_ERROR.to_owned(),
                NOT_READ_YET.to_owned(),
            );
            image
        }
    })
}
