//! Conversions between the domain ImageStream and the generated protobuf wire
//! types of `imagestreams_proto::v1`: `From<domain>` out, validating
//! `TryFrom<proto>` in.
//!
//! The two agree field by field. Where proto3 cannot say "unset" the empty
//! value stands for it, so the mapping is exact for every valid stream:
//!
//! - `metadata.creationTimestamp`: `None` ⇄ `""` (a valid stream never holds `Some("")`);
//! - `TagEvent.generation`: `None` ⇄ `0` (generations start at 1), since the
//!   proto field is a plain `int64`;
//! - message fields (`from`, the policies, `lookupPolicy`, `status`) keep
//!   their presence, so `importPolicy: {}` survives the trip.
//!
//! Incoming streams with an empty `apiVersion` or `kind` (proto3 clients
//! rarely set them) get [`API_VERSION`] and [`KIND`] before validation.

use imagestreams_proto::v1 as pb;

use super::types::{
    ImageLookupPolicy, ImageStream, ImageStreamSpec, ImageStreamStatus, NamedTagEventList,
    NewestPolicy, ObjectMeta, ObjectReference, OrderPolicy, SemverPolicy, TagEvent,
    TagEventCondition, TagFilter, TagImportPolicy, TagPolicy, TagReference, TagReferencePolicy,
};
use super::validate::{FieldError, ValidationErrors};
use super::{API_VERSION, KIND};

impl From<ImageStream> for pb::ImageStream {
    fn from(is: ImageStream) -> Self {
        Self {
            api_version: is.api_version,
            kind: is.kind,
            metadata: Some(is.metadata.into()),
            spec: Some(is.spec.into()),
            status: is.status.map(Into::into),
        }
    }
}

impl TryFrom<pb::ImageStream> for ImageStream {
    type Error = ValidationErrors;

    /// Converts and validates; a missing `metadata` is `metadata: Required value`.
    fn try_from(wire: pb::ImageStream) -> Result<Self, Self::Error> {
        let metadata_missing = wire.metadata.is_none();
        let or_default = |value: String, default: &str| {
            if value.is_empty() {
                default.to_owned()
            } else {
                value
            }
        };
        let is = Self {
            api_version: or_default(wire.api_version, API_VERSION),
            kind: or_default(wire.kind, KIND),
            metadata: wire.metadata.map(Into::into).unwrap_or_default(),
            spec: wire.spec.map(Into::into).unwrap_or_default(),
            status: wire.status.map(Into::into),
        };
        let mut errors = Vec::new();
        if metadata_missing {
            errors.push(FieldError::required("metadata", ""));
        }
        if let Err(found) = is.validate() {
            errors.extend(
                found
                    .into_iter()
                    // With no metadata at all, "metadata: Required value" says it once.
                    .filter(|e| !(metadata_missing && e.field.starts_with("metadata."))),
            );
        }
        if errors.is_empty() {
            Ok(is)
        } else {
            Err(ValidationErrors(errors))
        }
    }
}

impl From<ObjectMeta> for pb::ObjectMeta {
    fn from(m: ObjectMeta) -> Self {
        Self {
            name: m.name,
            namespace: m.namespace,
            uid: m.uid,
            resource_version: m.resource_version,
            generation: m.generation,
            creation_timestamp: m.creation_timestamp.unwrap_or_default(),
            self_link: m.self_link,
            labels: m.labels.into_iter().collect(),
            annotations: m.annotations.into_iter().collect(),
        }
    }
}

impl From<pb::ObjectMeta> for ObjectMeta {
    fn from(m: pb::ObjectMeta) -> Self {
        Self {
            name: m.name,
            namespace: m.namespace,
            self_link: m.self_link,
            uid: m.uid,
            resource_version: m.resource_version,
            generation: m.generation,
            creation_timestamp: Some(m.creation_timestamp).filter(|t| !t.is_empty()),
            labels: m.labels.into_iter().collect(),
            annotations: m.annotations.into_iter().collect(),
        }
    }
}

impl From<ImageStreamSpec> for pb::ImageStreamSpec {
    fn from(s: ImageStreamSpec) -> Self {
        Self {
            docker_image_repository: s.docker_image_repository,
            lookup_policy: s
                .lookup_policy
                .map(|p| pb::ImageLookupPolicy { local: p.local }),
            tags: s.tags.into_iter().map(Into::into).collect(),
        }
    }
}

impl From<pb::ImageStreamSpec> for ImageStreamSpec {
    fn from(s: pb::ImageStreamSpec) -> Self {
        Self {
            lookup_policy: s
                .lookup_policy
                .map(|p| ImageLookupPolicy { local: p.local }),
            docker_image_repository: s.docker_image_repository,
            tags: s.tags.into_iter().map(Into::into).collect(),
        }
    }
}

impl From<TagReference> for pb::TagReference {
    fn from(t: TagReference) -> Self {
        Self {
            name: t.name,
            annotations: t.annotations.into_iter().collect(),
            from: t.from.map(Into::into),
            reference: t.reference,
            generation: t.generation,
            import_policy: t.import_policy.map(|p| pb::TagImportPolicy {
                insecure: p.insecure,
                scheduled: p.scheduled,
                import_mode: p.import_mode,
            }),
            reference_policy: t
                .reference_policy
                .map(|p| pb::TagReferencePolicy { r#type: p.r#type }),
            policy: t.policy.map(Into::into),
        }
    }
}

impl From<TagPolicy> for pb::TagPolicy {
    fn from(p: TagPolicy) -> Self {
        let order = |o: OrderPolicy| pb::OrderPolicy { order: o.order };
        Self {
            filter_tags: p.filter_tags.map(|f| pb::TagFilter {
                pattern: f.pattern,
                extract: f.extract,
            }),
            semver: p.semver.map(|s| pb::SemverPolicy { range: s.range }),
            numerical: p.numerical.map(order),
            alphabetical: p.alphabetical.map(order),
            newest: p.newest.map(|_| pb::NewestPolicy {}),
        }
    }
}

impl From<pb::TagPolicy> for TagPolicy {
    fn from(p: pb::TagPolicy) -> Self {
        let order = |o: pb::OrderPolicy| OrderPolicy { order: o.order };
        Self {
            filter_tags: p.filter_tags.map(|f| TagFilter {
                pattern: f.pattern,
                extract: f.extract,
            }),
            semver: p.semver.map(|s| SemverPolicy { range: s.range }),
            numerical: p.numerical.map(order),
            alphabetical: p.alphabetical.map(order),
            newest: p.newest.map(|_| NewestPolicy {}),
        }
    }
}

impl From<pb::TagReference> for TagReference {
    fn from(t: pb::TagReference) -> Self {
        Self {
            name: t.name,
            annotations: t.annotations.into_iter().collect(),
            from: t.from.map(Into::into),
            reference: t.reference,
            generation: t.generation,
            import_policy: t.import_policy.map(|p| TagImportPolicy {
                insecure: p.insecure,
                scheduled: p.scheduled,
                import_mode: p.import_mode,
            }),
            reference_policy: t
                .reference_policy
                .map(|p| TagReferencePolicy { r#type: p.r#type }),
            policy: t.policy.map(Into::into),
        }
    }
}

impl From<ObjectReference> for pb::ObjectReference {
    fn from(r: ObjectReference) -> Self {
        Self {
            kind: r.kind,
            name: r.name,
            namespace: r.namespace,
        }
    }
}

impl From<pb::ObjectReference> for ObjectReference {
    fn from(r: pb::ObjectReference) -> Self {
        Self {
            kind: r.kind,
            namespace: r.namespace,
            name: r.name,
        }
    }
}

impl From<ImageStreamStatus> for pb::ImageStreamStatus {
    fn from(s: ImageStreamStatus) -> Self {
        Self {
            docker_image_repository: s.docker_image_repository,
            public_docker_image_repository: s.public_docker_image_repository,
            tags: s.tags.into_iter().map(Into::into).collect(),
        }
    }
}

impl From<pb::ImageStreamStatus> for ImageStreamStatus {
    fn from(s: pb::ImageStreamStatus) -> Self {
        Self {
            docker_image_repository: s.docker_image_repository,
            public_docker_image_repository: s.public_docker_image_repository,
            tags: s.tags.into_iter().map(Into::into).collect(),
        }
    }
}

impl From<NamedTagEventList> for pb::NamedTagEventList {
    fn from(l: NamedTagEventList) -> Self {
        Self {
            tag: l.tag,
            items: l.items.into_iter().map(Into::into).collect(),
            conditions: l.conditions.into_iter().map(Into::into).collect(),
        }
    }
}

impl From<pb::NamedTagEventList> for NamedTagEventList {
    fn from(l: pb::NamedTagEventList) -> Self {
        Self {
            tag: l.tag,
            items: l.items.into_iter().map(Into::into).collect(),
            conditions: l.conditions.into_iter().map(Into::into).collect(),
        }
    }
}

impl From<TagEvent> for pb::TagEvent {
    fn from(e: TagEvent) -> Self {
        Self {
            created: e.created,
            docker_image_reference: e.docker_image_reference,
            image: e.image,
            generation: e.generation.unwrap_or_default(),
        }
    }
}

impl From<pb::TagEvent> for TagEvent {
    fn from(e: pb::TagEvent) -> Self {
        Self {
            created: e.created,
            docker_image_reference: e.docker_image_reference,
            image: e.image,
            generation: Some(e.generation).filter(|g| *g != 0),
        }
    }
}

impl From<TagEventCondition> for pb::TagEventCondition {
    fn from(c: TagEventCondition) -> Self {
        Self {
            r#type: c.r#type,
            status: c.status,
            last_transition_time: c.last_transition_time,
            reason: c.reason,
            message: c.message,
            generation: c.generation,
        }
    }
}

impl From<pb::TagEventCondition> for TagEventCondition {
    fn from(c: pb::TagEventCondition) -> Self {
        Self {
            r#type: c.r#type,
            status: c.status,
            last_transition_time: c.last_transition_time,
            reason: c.reason,
            message: c.message,
            generation: c.generation,
        }
    }
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;
    use crate::model::testdata::{fixtures, seed};
    use crate::model::{FieldErrorKind, IMPORT_SUCCESS};

    /// domain → proto → bytes → proto → domain.
    fn through_the_wire(is: &ImageStream) -> ImageStream {
        let wire = pb::ImageStream::from(is.clone());
        let decoded = pb::ImageStream::decode(wire.encode_to_vec().as_slice()).unwrap();
        assert_eq!(decoded, wire);
        ImageStream::try_from(decoded).unwrap_or_else(|e| panic!("{}: {e}", is.metadata.name))
    }

    #[test]
    fn every_fixture_round_trips() {
        for (name, bytes) in fixtures() {
            let is = ImageStream::from_json(&bytes).unwrap();
            assert_eq!(through_the_wire(&is), is, "{name}");
        }
    }

    #[test]
    fn seeds_round_trip() {
        for file in ["imagestream-create.json", "imagestream-synced.json"] {
            let is = ImageStream::from_json(&seed(file)).unwrap();
            assert_eq!(through_the_wire(&is), is, "{file}");
        }
    }

    #[test]
    fn a_full_stream_round_trips() {
        let mut is = ImageStream::from_json(&seed("imagestream-synced.json")).unwrap();
        is.metadata.generation = 3;
        is.metadata
            .labels
            .insert("app".to_owned(), "ruby".to_owned());
        is.spec.tags.push(TagReference {
            name: "v1".to_owned(),
            reference: true,
            generation: Some(3),
            from: Some(ObjectReference {
                kind: crate::model::FROM_IMAGE_STREAM_TAG.to_owned(),
                namespace: "other".to_owned(),
                name: "ruby:latest".to_owned(),
            }),
            import_policy: Some(TagImportPolicy {
                insecure: true,
                scheduled: false,
                import_mode: crate::model::IMPORT_MODE_PRESERVE_ORIGINAL.to_owned(),
            }),
            ..TagReference::default()
        });
        let list = is.status_tag_mut("latest");
        list.items[0].generation = Some(3);
        list.conditions.push(TagEventCondition {
            r#type: IMPORT_SUCCESS.to_owned(),
            status: "False".to_owned(),
            last_transition_time: "2015-05-05T19:12:00Z".to_owned(),
            reason: "NotFound".to_owned(),
            message: "not found".to_owned(),
            generation: 3,
        });
        is.validate().unwrap();
        assert_eq!(through_the_wire(&is), is);
    }

    #[test]
    fn missing_metadata_is_required() {
        let wire = pb::ImageStream {
            api_version: API_VERSION.to_owned(),
            kind: KIND.to_owned(),
            ..Default::default()
        };
        let errors = ImageStream::try_from(wire).unwrap_err();
        assert_eq!(errors.to_string(), "metadata: Required value");
    }

    #[test]
    fn invalid_wire_streams_name_their_fields() {
        let mut wire = pb::ImageStream::from(ImageStream::new("default", "ruby"));
        wire.metadata.as_mut().unwrap().name = "Foo".to_owned();
        wire.spec.as_mut().unwrap().tags.push(pb::TagReference {
            name: "-x".to_owned(),
            ..Default::default()
        });
        let errors = ImageStream::try_from(wire).unwrap_err();
        assert_eq!(
            errors.find("metadata.name").unwrap().kind,
            FieldErrorKind::Invalid
        );
        assert!(errors.find("spec.tags[0].name").is_some(), "{errors}");
    }

    #[test]
    fn empty_type_meta_gets_the_current_api_version() {
        let wire = pb::ImageStream {
            metadata: Some(pb::ObjectMeta {
                name: "ruby".to_owned(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let is = ImageStream::try_from(wire).unwrap();
        assert_eq!(
            (is.api_version.as_str(), is.kind.as_str()),
            (API_VERSION, KIND)
        );
        assert_eq!(is.spec, ImageStreamSpec::default());
        assert_eq!(is.metadata.creation_timestamp, None);
    }
}
