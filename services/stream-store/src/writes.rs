//! The rules of the write API as pure functions: what create, update, tag and
//! tag deletion make of a request and the stored stream. The server owns
//! `uid`, `creationTimestamp`, `generation`, `selfLink`, `resourceVersion` and
//! `status`; what a caller sends there is ignored, as Kubernetes does.
//!
//! # Generations (as OpenShift)
//!
//! - Create: `generation` 1, and every spec tag's generation 1.
//! - Update: a spec change bumps `generation`; spec tags whose `from` changed,
//!   or whose generation is sent as 0 or null, take the new generation.
//! - A spec tag that takes the stream's generation and points inside the
//!   stream (`ImageStreamTag` of a tag with an image, `ImageStreamImage` of
//!   an image in its history) gets that image in its status now.

use chrono::{DateTime, Utc};
use imagestreams_common::{
    error::ApiError,
    model::{FieldError, ImageStream, ImageStreamStatus, TagEvent, TagReference, ValidationErrors},
};
use imagestreams_proto::v1 as proto;

use crate::history;

/// The time as history entries and `creationTimestamp` write it (RFC 3339
/// UTC, seconds).
pub fn timestamp(now: DateTime<Utc>) -> String {
    imagestreams_common::model::format_timestamp(now)
}

/// The `AlreadyExists` error of stream `name`, as Kubernetes words it.
pub fn already_exists(name: &str) -> ApiError {
    ApiError::AlreadyExists(format!(
        "imagestreams.image.openshift.io \"{name}\" already exists"
    ))
}

/// The `Conflict` error of a stale write to stream `name`, as Kubernetes words it.
pub fn conflict(name: &str) -> ApiError {
    ApiError::Conflict(format!(
        "Operation cannot be fulfilled on imagestreams.image.openshift.io \"{name}\": \
         the object has been modified; please apply your changes to the latest version and try again"
    ))
}

fn invalid(error: FieldError) -> ApiError {
    ValidationErrors(vec![error]).into()
}

/// Fills an empty `metadata.namespace` from the request, refuses a different
/// one, and drops the server-owned fields, so that validation only sees what
/// the caller may set.
fn take_stream(
    stream: Option<proto::ImageStream>,
    namespace: &str,
    keep_version: bool,
) -> Result<ImageStream, ApiError> {
    let mut wire = stream.ok_or_else(|| invalid(FieldError::required("imageStream", "")))?;
    if let Some(meta) = wire.metadata.as_mut() {
        if meta.namespace.is_empty() {
            meta.namespace = namespace.to_owned();
        } else if !namespace.is_empty() && meta.namespace != namespace {
            return Err(invalid(FieldError::invalid(
                "metadata.namespace",
                &meta.namespace,
                "the namespace of the provided object does not match the namespace sent on the request",
            )));
        }
        meta.creation_timestamp.clear();
        meta.self_link.clear();
        meta.generation = 0;
        if !keep_version {
            meta.uid.clear();
            meta.resource_version.clear();
        }
    }
    wire.status = None;
    let stream = ImageStream::try_from(wire)?;
    if stream.metadata.namespace.is_empty() {
        return Err(invalid(FieldError::required("metadata.namespace", "")));
    }
    Ok(stream)
}

/// Sets what the server assigns on create: `uid`, `creationTimestamp`,
/// `generation` 1 (also on every spec tag), `selfLink`, and a status whose
/// `dockerImageRepository` is `repository`.
pub fn initialize(stream: &mut ImageStream, uid: String, now: &str, repository: String) {
    let meta = &mut stream.metadata;
    meta.uid = uid;
    meta.creation_timestamp = Some(now.to_owned());
    meta.generation = 1;
    meta.self_link = ImageStream::self_link(&meta.namespace, &meta.name);
    meta.resource_version.clear();
    for tag in &mut stream.spec.tags {
        tag.generation = Some(1);
    }
    stream.status = Some(ImageStreamStatus {
        docker_image_repository: repository,
        ..ImageStreamStatus::default()
    });
}

/// The stream a create request asks for, validated and initialized.
/// `status.dockerImageRepository` follows `spec.dockerImageRepository`.
pub fn stream_to_create(
    request: proto::CreateRequest,
    uid: String,
    now: &str,
) -> Result<ImageStream, ApiError> {
    let mut stream = take_stream(request.image_stream, &request.namespace, false)?;
    let repository = stream.spec.docker_image_repository.clone();
    initialize(&mut stream, uid, now, repository);
    Ok(stream)
}

/// The validated stream of an update request and the revision it was read at.
pub fn stream_to_update(request: proto::UpdateRequest) -> Result<(ImageStream, u64), ApiError> {
    let stream = take_stream(request.image_stream, &request.namespace, true)?;
    let version = &stream.metadata.resource_version;
    if version.is_empty() {
        return Err(invalid(FieldError::required(
            "metadata.resourceVersion",
            "must be specified for an update",
        )));
    }
    let revision = version.parse::<u64>().map_err(|_| {
        invalid(FieldError::invalid(
            "metadata.resourceVersion",
            version,
            "must be a resourceVersion returned by the server",
        ))
    })?;
    Ok((stream, revision))
}

/// `old` updated by `new` (validated): labels, annotations and spec from
/// `new`; uid, creationTimestamp and status kept; generations as in the
/// module docs. A `uid` that is set and differs is a conflict.
pub fn updated(old: &ImageStream, new: ImageStream, now: &str) -> Result<ImageStream, ApiError> {
    if !new.metadata.uid.is_empty() && new.metadata.uid != old.metadata.uid {
        return Err(ApiError::Conflict(format!(
            "Precondition failed: UID in precondition: {}, UID in object meta: {}",
            new.metadata.uid, old.metadata.uid
        )));
    }
    let mut stream = old.clone();
    stream.api_version = new.api_version;
    stream.metadata.labels = new.metadata.labels;
    stream.metadata.annotations = new.metadata.annotations;
    if new.spec != old.spec {
        let generation = old.metadata.generation + 1;
        let mut spec = new.spec;
        for tag in &mut spec.tags {
            let from_changed = old
                .spec_tag(&tag.name)
                .is_some_and(|previous| previous.from != tag.from);
            if from_changed || matches!(tag.generation, None | Some(0)) {
                tag.generation = Some(generation);
            }
        }
        stream.metadata.generation = generation;
        stream.spec = spec;
        history::resolve_changed_spec_tags(&mut stream, now);
    }
    Ok(stream)
}

/// One destination tag of a tag request: the spec tag to set and, when the
/// source was resolved to an image, the image the tag gets now.
#[derive(Debug, Clone, PartialEq)]
pub struct TagTarget {
    /// The spec tag to set (its generation is assigned here).
    pub reference: TagReference,
    /// The image the tag points to now (`created` and `generation` are set
    /// here); `None` leaves the status to the usual rules.
    pub image: Option<TagEvent>,
}

/// Sets the spec tags of `targets` on `stream` (replacing tags of the same
/// name), bumping the generation unless the stream is `new`, and gives each
/// its image (or what it resolves to inside the stream), with followers.
pub fn set_tags(stream: &mut ImageStream, targets: &[TagTarget], new: bool, now: &str) {
    if !new {
        stream.metadata.generation += 1;
    }
    let generation = stream.metadata.generation;
    for target in targets {
        let reference = TagReference {
            generation: Some(generation),
            ..target.reference.clone()
        };
        match stream.spec_tag_mut(&reference.name) {
            Some(existing) => *existing = reference,
            None => stream.spec.tags.push(reference),
        }
    }
    for target in targets {
        let tag = &target.reference.name;
        let image = match &target.image {
            Some(image) => Some(image.clone()),
            None => stream
                .spec_tag(tag)
                .and_then(|spec| history::resolve_local(stream, spec)),
        };
        if let Some(mut image) = image {
            image.created = now.to_owned();
            image.generation = Some(generation);
            history::apply_image(stream, tag, &image);
        }
    }
}

/// Removes `tags` from the spec and the status of `stream`; a spec change
/// bumps the generation. Returns whether anything was removed.
pub fn remove_tags(stream: &mut ImageStream, tags: &[String]) -> bool {
    let spec_before = stream.spec.tags.len();
    stream.spec.tags.retain(|t| !tags.contains(&t.name));
    let spec_changed = stream.spec.tags.len() != spec_before;
    let mut status_changed = false;
    if let Some(status) = stream.status.as_mut() {
        let before = status.tags.len();
        status.tags.retain(|t| !tags.contains(&t.tag));
        status_changed = status.tags.len() != before;
    }
    if spec_changed {
        stream.metadata.generation += 1;
    }
    spec_changed || status_changed
}

/// Whether `tag` exists in the spec or the status of `stream`.
pub fn has_tag(stream: &ImageStream, tag: &str) -> bool {
    stream.spec_tag(tag).is_some() || stream.status_tag(tag).is_some()
}

#[cfg(test)]
mod tests {
    use imagestreams_common::model::{
        FROM_DOCKER_IMAGE, FROM_IMAGE_STREAM_TAG, ObjectReference, TagEventCondition,
    };

    use super::*;

    const NOW: &str = "2025-03-01T10:00:00Z";

    fn wire(json: &str) -> proto::ImageStream {
        ImageStream::parse_document_unvalidated(json.as_bytes())
            .unwrap()
            .into()
    }

    fn create(json: &str, namespace: &str) -> Result<ImageStream, ApiError> {
        stream_to_create(
            proto::CreateRequest {
                namespace: namespace.to_owned(),
                image_stream: Some(wire(json)),
            },
            "uid-1".to_owned(),
            NOW,
        )
    }

    fn from(kind: &str, name: &str) -> Option<ObjectReference> {
        Some(ObjectReference {
            kind: kind.to_owned(),
            name: name.to_owned(),
            ..ObjectReference::default()
        })
    }

    fn digest(n: u8) -> String {
        format!("sha256:{}", format!("{n:02x}").repeat(32))
    }

    #[test]
    fn create_assigns_the_server_fields() {
        let is = create(
            r#"{"apiVersion":"v1","kind":"ImageStream","metadata":{"name":"ruby","uid":"mine",
                "resourceVersion":"9"},
                "spec":{"dockerImageRepository":"openshift/ruby-20-centos7",
                "tags":[{"name":"latest","from":{"kind":"DockerImage","name":"openshift/ruby:1"},"generation":null}]}}"#,
            "default",
        )
        .unwrap();
        assert_eq!(is.api_version, "v1");
        assert_eq!(is.metadata.namespace, "default");
        assert_eq!(is.metadata.uid, "uid-1");
        assert_eq!(is.metadata.resource_version, "");
        assert_eq!(is.metadata.generation, 1);
        assert_eq!(is.metadata.creation_timestamp.as_deref(), Some(NOW));
        assert_eq!(
            is.metadata.self_link,
            "/osapi/v1/namespaces/default/imagestreams/ruby"
        );
        assert_eq!(is.spec.tags[0].generation, Some(1));
        let status = is.status.unwrap();
        assert_eq!(status.docker_image_repository, "openshift/ruby-20-centos7");
        assert!(status.tags.is_empty());
    }

    #[test]
    fn create_checks_the_namespace() {
        let doc = r#"{"kind":"ImageStream","apiVersion":"image.openshift.io/v1",
                      "metadata":{"name":"a","namespace":"ns1"}}"#;
        assert_eq!(create(doc, "").unwrap().metadata.namespace, "ns1");
        assert_eq!(create(doc, "ns1").unwrap().metadata.namespace, "ns1");
        let err = create(doc, "ns2").unwrap_err();
        assert!(
            matches!(&err, ApiError::Invalid { field, .. } if field == "metadata.namespace"),
            "{err:?}"
        );
        let err = create(r#"{"metadata":{"name":"a"}}"#, "").unwrap_err();
        assert!(
            matches!(&err, ApiError::Invalid { field, .. } if field == "metadata.namespace"),
            "{err:?}"
        );
    }

    #[test]
    fn create_ignores_the_status_it_is_sent() {
        let mut w = wire(r#"{"metadata":{"name":"a"}}"#);
        w.status = Some(proto::ImageStreamStatus {
            docker_image_repository: "x".to_owned(),
            tags: vec![proto::NamedTagEventList {
                tag: "".to_owned(),
                ..Default::default()
            }],
            ..Default::default()
        });
        let is = stream_to_create(
            proto::CreateRequest {
                namespace: "ns".to_owned(),
                image_stream: Some(w),
            },
            "u".to_owned(),
            NOW,
        )
        .unwrap();
        assert_eq!(is.status.unwrap().docker_image_repository, "");
    }

    #[test]
    fn invalid_streams_name_the_field() {
        let err = create(r#"{"metadata":{"name":"Bad!"}}"#, "ns").unwrap_err();
        assert!(matches!(&err, ApiError::Invalid { field, .. } if field == "metadata.name"));
        let mut w = wire(r#"{"metadata":{"name":"a"}}"#);
        w.kind = "Deployment".to_owned();
        let err = stream_to_create(
            proto::CreateRequest {
                namespace: "ns".to_owned(),
                image_stream: Some(w),
            },
            "u".to_owned(),
            NOW,
        )
        .unwrap_err();
        assert!(matches!(&err, ApiError::Invalid { field, .. } if field == "kind"));
    }

    fn stored() -> ImageStream {
        let mut is = create(
            r#"{"metadata":{"name":"app"},"spec":{"tags":[
                {"name":"3.3","from":{"kind":"DockerImage","name":"quay.io/x/app:3.3"}},
                {"name":"latest","from":{"kind":"ImageStreamTag","name":"3.3"}}]}}"#,
            "ns",
        )
        .unwrap();
        history::apply_image(
            &mut is,
            "3.3",
            &TagEvent {
                created: NOW.to_owned(),
                docker_image_reference: format!("quay.io/x/app@{}", digest(1)),
                image: digest(1),
                generation: Some(1),
            },
        );
        is.metadata.resource_version = "5".to_owned();
        is
    }

    fn update_request(is: &ImageStream) -> proto::UpdateRequest {
        proto::UpdateRequest {
            namespace: is.metadata.namespace.clone(),
            image_stream: Some(is.clone().into()),
        }
    }

    #[test]
    fn update_needs_a_resource_version() {
        let mut is = stored();
        let (_, revision) = stream_to_update(update_request(&is)).unwrap();
        assert_eq!(revision, 5);
        is.metadata.resource_version.clear();
        let err = stream_to_update(update_request(&is)).unwrap_err();
        assert!(
            matches!(&err, ApiError::Invalid { field, .. } if field == "metadata.resourceVersion"),
            "{err:?}"
        );
        assert!(err.to_string().contains("Required value"), "{err}");
    }

    #[test]
    fn metadata_only_updates_keep_the_generation() {
        let old = stored();
        let mut new = old.clone();
        new.metadata.labels.insert("app".into(), "web".into());
        new.status = None;
        new.metadata.creation_timestamp = None;
        let is = updated(&old, new, NOW).unwrap();
        assert_eq!(is.metadata.generation, 1);
        assert_eq!(is.metadata.labels["app"], "web");
        assert_eq!(is.status, old.status, "status is kept");
        assert_eq!(
            is.metadata.creation_timestamp,
            old.metadata.creation_timestamp
        );
    }

    #[test]
    fn spec_changes_bump_generations_as_openshift() {
        let old = stored();
        let mut new = old.clone();
        // `from` changed: new generation
        new.spec.tags[0].from = from(FROM_DOCKER_IMAGE, "quay.io/x/app:3.4");
        // a new tag with generation 0: new generation
        new.spec.tags.push(TagReference {
            name: "dev".into(),
            from: from(FROM_IMAGE_STREAM_TAG, "3.3"),
            generation: Some(0),
            ..TagReference::default()
        });
        let is = updated(&old, new, NOW).unwrap();
        assert_eq!(is.metadata.generation, 2);
        let generations: Vec<_> = is.spec.tags.iter().map(|t| t.generation).collect();
        assert_eq!(generations, [Some(2), Some(1), Some(2)]);
        // `dev` follows 3.3 inside the stream: it resolves now, with the new generation
        let dev = &is.status_tag("dev").unwrap().items[0];
        assert_eq!((dev.image.clone(), dev.generation), (digest(1), Some(2)));
    }

    #[test]
    fn a_different_uid_is_a_conflict() {
        let old = stored();
        let mut new = old.clone();
        new.metadata.uid = "someone-else".into();
        assert!(matches!(
            updated(&old, new, NOW),
            Err(ApiError::Conflict(_))
        ));
    }

    #[test]
    fn set_tags_replaces_the_spec_tag_and_applies_the_image() {
        let mut is = stored();
        is.status_tag_mut("pinned")
            .conditions
            .push(TagEventCondition {
                r#type: "ImportSuccess".into(),
                ..TagEventCondition::default()
            });
        let target = TagTarget {
            reference: TagReference {
                name: "pinned".into(),
                from: from("ImageStreamImage", &format!("other@{}", digest(9))),
                ..TagReference::default()
            },
            image: Some(TagEvent {
                docker_image_reference: format!("r/other@{}", digest(9)),
                image: digest(9),
                ..TagEvent::default()
            }),
        };
        set_tags(&mut is, &[target], false, NOW);
        assert_eq!(is.metadata.generation, 2);
        assert_eq!(is.spec_tag("pinned").unwrap().generation, Some(2));
        let pinned = is.status_tag("pinned").unwrap();
        assert_eq!(pinned.items[0].image, digest(9));
        assert_eq!(pinned.items[0].created, NOW);
        assert!(pinned.conditions.is_empty());
    }

    #[test]
    fn an_alias_resolves_inside_the_stream() {
        let mut is = stored();
        let target = TagTarget {
            reference: TagReference {
                name: "stable".into(),
                from: from(FROM_IMAGE_STREAM_TAG, "app:3.3"),
                ..TagReference::default()
            },
            image: None,
        };
        set_tags(&mut is, &[target], false, NOW);
        assert_eq!(is.status_tag("stable").unwrap().items[0].image, digest(1));
    }

    #[test]
    fn removing_tags_clears_spec_and_status() {
        let mut is = stored();
        assert!(has_tag(&is, "3.3"));
        assert!(remove_tags(&mut is, &["3.3".to_owned()]));
        assert!(!has_tag(&is, "3.3"));
        assert_eq!(is.metadata.generation, 2);
        assert!(!remove_tags(&mut is, &["nope".to_owned()]));
    }
}
