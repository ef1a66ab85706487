//! The domain model of OpenShift's `image.openshift.io/v1` ImageStream: the
//! types (`types.rs`), document parsing (`document.rs`), validation
//! (`validate.rs`) and, with the `proto` feature, the protobuf edge (`wire.rs`).
//!
//! # Policies
//!
//! - **Shape.** JSON names and omission rules follow OpenShift's Go types, so
//!   the seed documents and the openshift/library fixtures come back as the
//!   same JSON value (`creationTimestamp: null` and `generation: null`
//!   included). Maps are `BTreeMap`s, so output is deterministic.
//! - **Empty means unset.** Optional strings are plain `String`s, empty when
//!   unset, as in Go and proto3; structs a document may leave out are `Option`s.
//! - **Strict.** Unknown fields are rejected with their full path
//!   (`spec.tags[0].fromm`), like `kubectl --validate=strict`.
//! - **Validated.** Parsing also validates against OpenShift's rules; every
//!   problem is collected into [`ValidationErrors`].
//! - **Timestamps** stay RFC 3339 strings, checked when present; write them
//!   with [`format_timestamp`].

mod document;
pub mod policy;
mod repository;
mod types;
mod validate;
#[cfg(feature = "proto")]
mod wire;

#[cfg(test)]
mod testdata;

pub use document::{DocumentFormat, MAX_DOCUMENT_BYTES, ModelError, decode_json, detect_format};
pub use repository::{RepositoryError, StreamName, stream_of_repository};
pub use types::{
    ImageLookupPolicy, ImageStream, ImageStreamSpec, ImageStreamStatus, NamedTagEventList,
    NewestPolicy, ObjectMeta, ObjectReference, OrderPolicy, SemverPolicy, TagEvent,
    TagEventCondition, TagFilter, TagImportPolicy, TagPolicy, TagReference, TagReferencePolicy,
    format_timestamp,
};
pub use validate::{
    DNS1123_LABEL_MAX_LENGTH, FieldError, FieldErrorKind, MAX_NAMESPACED_NAME_LENGTH,
    ValidationErrors, is_dns1123_label, is_valid_stream_name,
};

/// The current apiVersion of an ImageStream.
pub const API_VERSION: &str = "image.openshift.io/v1";

/// The legacy apiVersion (OpenShift 3's `/oapi/v1`), accepted and written back as given.
pub const LEGACY_API_VERSION: &str = "v1";

/// The kind of an ImageStream.
pub const KIND: &str = "ImageStream";

/// Annotation set to the RFC 3339 time when tags were last synchronized from
/// `spec.dockerImageRepository`.
pub const ANNOTATION_DOCKER_REPOSITORY_CHECK: &str = "openshift.io/image.dockerRepositoryCheck";

/// The tag condition type reporting whether the last import succeeded.
pub const IMPORT_SUCCESS: &str = "ImportSuccess";

/// `from.kind` of a tag that imports a pull spec from a registry.
pub const FROM_DOCKER_IMAGE: &str = "DockerImage";

/// `from.kind` of a tag that follows another tag (`tag` or `stream:tag`).
pub const FROM_IMAGE_STREAM_TAG: &str = "ImageStreamTag";

/// `from.kind` of a tag pinned to an image of a stream (`stream@digest`).
pub const FROM_IMAGE_STREAM_IMAGE: &str = "ImageStreamImage";

/// `referencePolicy.type`: consumers pull from the source repository.
pub const REFERENCE_POLICY_SOURCE: &str = "Source";

/// `referencePolicy.type`: consumers pull through the integrated registry.
pub const REFERENCE_POLICY_LOCAL: &str = "Local";

/// `importPolicy.importMode`: import one manifest for the current platform.
pub const IMPORT_MODE_LEGACY: &str = "Legacy";

/// `importPolicy.importMode`: keep manifest lists as they are.
pub const IMPORT_MODE_PRESERVE_ORIGINAL: &str = "PreserveOriginal";

/// Condition status `True`.
pub const CONDITION_TRUE: &str = "True";

/// Condition status `False`.
pub const CONDITION_FALSE: &str = "False";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_link_and_new() {
        assert_eq!(
            ImageStream::self_link("default", "ruby"),
            "/osapi/v1/namespaces/default/imagestreams/ruby"
        );
        let is = ImageStream::new("default", "ruby");
        assert_eq!(
            (is.api_version.as_str(), is.kind.as_str()),
            (API_VERSION, KIND)
        );
        is.validate().unwrap();
    }

    #[test]
    fn status_tag_mut_creates_in_order() {
        let mut is = ImageStream::new("default", "ruby");
        assert!(is.status_tag("latest").is_none());
        is.status_tag_mut("v2");
        is.status_tag_mut("latest").items.push(TagEvent {
            image: "sha256:1".to_owned(),
            ..TagEvent::default()
        });
        is.status_tag_mut("v1");
        is.status_tag_mut("latest");
        let tags: Vec<&str> = is
            .status
            .as_ref()
            .unwrap()
            .tags
            .iter()
            .map(|t| t.tag.as_str())
            .collect();
        assert_eq!(tags, ["latest", "v1", "v2"]);
        assert_eq!(
            is.status_tag("latest").unwrap().latest().unwrap().image,
            "sha256:1"
        );
        assert!(
            is.status_tag("latest")
                .unwrap()
                .condition(IMPORT_SUCCESS)
                .is_none()
        );
    }

    #[test]
    fn spec_tag_finds_by_name() {
        let mut is = ImageStream::new("default", "ruby");
        is.spec.tags.push(TagReference {
            name: "latest".to_owned(),
            ..TagReference::default()
        });
        assert!(is.spec_tag("latest").is_some());
        assert!(is.spec_tag("v1").is_none());
        is.spec_tag_mut("latest").unwrap().reference = true;
        assert!(is.spec_tag("latest").unwrap().reference);
    }

    #[test]
    fn timestamps_are_rfc3339_seconds_utc() {
        let t = chrono::DateTime::parse_from_rfc3339("2015-05-05T21:11:57.123+02:00")
            .unwrap()
            .with_timezone(&chrono::Utc);
        assert_eq!(format_timestamp(t), "2015-05-05T19:11:57Z");
    }
}
