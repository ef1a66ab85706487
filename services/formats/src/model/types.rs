//! The ImageStream resource types and their OpenShift JSON shape (serde), plus small accessors.
//!
//! Which fields are omitted when empty follows OpenShift's Go `json` tags
//! (`github.com/openshift/api/image/v1`), so that what we print is what
//! `oc get -o json` prints:
//!
//! - a plain `string` / `bool` / `int64` with `omitempty` is a plain Rust
//!   value here, left out when empty, `false` or `0`;
//! - a field *without* `omitempty` is always written: `TagReference.generation`
//!   (`null` until assigned), `ImageLookupPolicy.local`,
//!   `TagReferencePolicy.type`, `ImageStreamStatus.dockerImageRepository`,
//!   `NamedTagEventList.items`, the `TagEvent` strings and `metadata.creationTimestamp`
//!   (`null` when unset, as Kubernetes writes a zero `metav1.Time`);
//! - a struct that OpenShift always writes but that documents may leave out
//!   (`lookupPolicy`, `importPolicy`, `referencePolicy`, `from`, `status`) is an
//!   `Option`, so that `importPolicy: {}` and an absent `importPolicy` both
//!   come back exactly as given.
//!
//! Like Go's decoder, an explicit JSON/YAML `null` is read as the empty value
//! of a non-`Option` field.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize};

use super::{API_VERSION, KIND};

/// Reads `null` as `T::default()`, the way Go's `encoding/json` leaves a zero value.
fn null_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

fn is_zero(value: &i64) -> bool {
    *value == 0
}

fn is_false(value: &bool) -> bool {
    !*value
}

/// An OpenShift `image.openshift.io/v1` ImageStream: a namespaced, named view
/// of an image repository, with each tag's image history in `status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ImageStream {
    /// `image.openshift.io/v1`, or the legacy `v1`; written back as given.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub api_version: String,
    /// Always `ImageStream`.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub kind: String,
    /// Name, namespace and the store-assigned identity of the stream.
    #[serde(default, deserialize_with = "null_default")]
    pub metadata: ObjectMeta,
    /// What the user asked for: the repository to follow and the spec tags.
    #[serde(default, deserialize_with = "null_default")]
    pub spec: ImageStreamSpec,
    /// What the system observed: each tag's history, newest first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<ImageStreamStatus>,
}

/// The subset of Kubernetes `ObjectMeta` an ImageStream uses. An empty string
/// means "not set" (as in Go and proto3).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ObjectMeta {
    /// The stream name, unique within its namespace.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub name: String,
    /// The namespace (a DNS-1123 label).
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub namespace: String,
    /// `/osapi/v1/namespaces/{namespace}/imagestreams/{name}`, see [`ImageStream::self_link`].
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub self_link: String,
    /// A UUID assigned on create.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub uid: String,
    /// The store revision as a decimal string; opaque to clients.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub resource_version: String,
    /// Bumped on every spec change; 0 means unset.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "is_zero"
    )]
    pub generation: i64,
    /// RFC 3339 UTC; `None` is written as `null`, as Kubernetes does.
    #[serde(default)]
    pub creation_timestamp: Option<String>,
    /// Labels (qualified-name keys).
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub labels: BTreeMap<String, String>,
    /// Annotations, e.g. [`ANNOTATION_DOCKER_REPOSITORY_CHECK`](super::ANNOTATION_DOCKER_REPOSITORY_CHECK).
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub annotations: BTreeMap<String, String>,
}

/// What a user asks of a stream.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ImageStreamSpec {
    /// Whether other resources may refer to this stream by its short name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lookup_policy: Option<ImageLookupPolicy>,
    /// An external repository whose tags are imported, e.g. `openshift/ruby-20-centos7`
    /// (no tag, no digest); empty when not set.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub docker_image_repository: String,
    /// The spec tags, in document order.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub tags: Vec<TagReference>,
}

/// Whether the stream's short name resolves in other resources.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ImageLookupPolicy {
    /// Always written, as OpenShift does.
    #[serde(default, deserialize_with = "null_default")]
    pub local: bool,
}

/// A spec tag: where a tag's images come from and how they are imported.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TagReference {
    /// The tag name (Docker tag grammar).
    #[serde(default, deserialize_with = "null_default")]
    pub name: String,
    /// Free-form annotations, e.g. `description`, `iconClass`.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub annotations: BTreeMap<String, String>,
    /// The source: a `DockerImage`, `ImageStreamTag` or `ImageStreamImage`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<ObjectReference>,
    /// When true the tag only points at `from`; nothing is imported.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "is_false"
    )]
    pub reference: bool,
    /// The stream generation that last set this tag; `None` (written as
    /// `null`, as OpenShift does) until the store assigns it.
    #[serde(default)]
    pub generation: Option<i64>,
    /// How and whether the tag is imported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub import_policy: Option<TagImportPolicy>,
    /// Whether pulls use the source reference or the integrated registry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference_policy: Option<TagReferencePolicy>,
    /// Not OpenShift's: the tag follows whichever other tag of the stream this
    /// policy chooses (see [`super::policy`]); such a tag has no `from`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<TagPolicy>,
}

/// How a spec tag chooses the tag of its stream it follows, in the shape of
/// Flux's `ImagePolicy`: an optional filter, and exactly one order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TagPolicy {
    /// Which tags are candidates, and which part of their name is compared.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter_tags: Option<TagFilter>,
    /// The highest semantic version within a range.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub semver: Option<SemverPolicy>,
    /// The highest (`asc`, the default) or lowest (`desc`) number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub numerical: Option<OrderPolicy>,
    /// The last (`asc`, the default) or first (`desc`) in byte order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alphabetical: Option<OrderPolicy>,
    /// The tag whose current image arrived last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub newest: Option<NewestPolicy>,
}

/// A tag filter: tags matching `pattern` are candidates; `extract` (`$name`
/// or `${1}`, as Go's `Regexp.Expand`) is what the order compares, the whole
/// tag when empty.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TagFilter {
    /// A regular expression (Rust `regex` syntax, unanchored as Go's).
    #[serde(default, deserialize_with = "null_default")]
    pub pattern: String,
    /// The template of the compared value.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub extract: String,
}

/// The semver order's range, e.g. `>=1.0 <2`, `~1.2`, `1.x`, `*`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SemverPolicy {
    /// The range the version must be in.
    #[serde(default, deserialize_with = "null_default")]
    pub range: String,
}

/// The direction of a numerical or alphabetical order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OrderPolicy {
    /// `asc` (the default: the highest wins) or `desc` (the lowest wins).
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub order: String,
}

/// The newest-image order; it has no settings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewestPolicy {}

/// A reference to the source of a tag (Kubernetes `ObjectReference`, the
/// fields OpenShift uses).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ObjectReference {
    /// [`FROM_DOCKER_IMAGE`](super::FROM_DOCKER_IMAGE), [`FROM_IMAGE_STREAM_TAG`](super::FROM_IMAGE_STREAM_TAG)
    /// or [`FROM_IMAGE_STREAM_IMAGE`](super::FROM_IMAGE_STREAM_IMAGE).
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub kind: String,
    /// The namespace of an `ImageStreamTag`/`ImageStreamImage` in another namespace.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub namespace: String,
    /// A pull spec (`DockerImage`), `tag` or `stream:tag` (`ImageStreamTag`),
    /// or `stream@digest` (`ImageStreamImage`).
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub name: String,
}

/// How a tag is imported.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TagImportPolicy {
    /// Allow plain HTTP or an unverified certificate.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "is_false"
    )]
    pub insecure: bool,
    /// Re-import periodically.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "is_false"
    )]
    pub scheduled: bool,
    /// [`IMPORT_MODE_LEGACY`](super::IMPORT_MODE_LEGACY), [`IMPORT_MODE_PRESERVE_ORIGINAL`](super::IMPORT_MODE_PRESERVE_ORIGINAL) or empty.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub import_mode: String,
}

/// Whether consumers pull from the source or through the integrated registry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TagReferencePolicy {
    /// [`REFERENCE_POLICY_SOURCE`](super::REFERENCE_POLICY_SOURCE), [`REFERENCE_POLICY_LOCAL`](super::REFERENCE_POLICY_LOCAL)
    /// or empty; always written.
    #[serde(rename = "type", default, deserialize_with = "null_default")]
    pub r#type: String,
}

/// What the system observed about a stream.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ImageStreamStatus {
    /// Where the stream can be pulled from in the integrated registry; always
    /// written (OpenShift has no `omitempty` here), possibly empty.
    #[serde(default, deserialize_with = "null_default")]
    pub docker_image_repository: String,
    /// The same, as reachable from outside the cluster.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub public_docker_image_repository: String,
    /// One history per tag.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub tags: Vec<NamedTagEventList>,
}

/// One tag's history, newest first, and its conditions.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NamedTagEventList {
    /// The tag name.
    #[serde(default, deserialize_with = "null_default")]
    pub tag: String,
    /// The images the tag pointed to, newest first; always written.
    #[serde(default, deserialize_with = "null_default")]
    pub items: Vec<TagEvent>,
    /// Problems with the tag, e.g. `ImportSuccess=False`.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub conditions: Vec<TagEventCondition>,
}

/// One image a tag pointed to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TagEvent {
    /// When the tag started pointing here, RFC 3339 UTC.
    #[serde(default, deserialize_with = "null_default")]
    pub created: String,
    /// The pull spec, pinned to the digest for new entries: `<repository>@sha256:…`.
    #[serde(default, deserialize_with = "null_default")]
    pub docker_image_reference: String,
    /// The manifest digest, `sha256:…` (an old Docker v1 id in 2015 documents).
    #[serde(default, deserialize_with = "null_default")]
    pub image: String,
    /// The spec generation this entry answers; `None` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<i64>,
}

/// A condition of a tag, e.g. `ImportSuccess=False` with a reason.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TagEventCondition {
    /// The condition type, e.g. [`IMPORT_SUCCESS`](super::IMPORT_SUCCESS).
    #[serde(rename = "type", default, deserialize_with = "null_default")]
    pub r#type: String,
    /// `True`, `False` or `Unknown`.
    #[serde(default, deserialize_with = "null_default")]
    pub status: String,
    /// When the status last changed, RFC 3339 UTC.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub last_transition_time: String,
    /// A CamelCase machine-readable reason.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub reason: String,
    /// A human-readable message.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub message: String,
    /// The spec generation this condition answers.
    #[serde(default, deserialize_with = "null_default")]
    pub generation: i64,
}

impl ImageStream {
    /// A new, empty stream `namespace/name` with the current apiVersion and kind.
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            api_version: API_VERSION.to_owned(),
            kind: KIND.to_owned(),
            metadata: ObjectMeta {
                name: name.into(),
                namespace: namespace.into(),
                ..ObjectMeta::default()
            },
            ..Self::default()
        }
    }

    /// The OpenShift `selfLink` of stream `name` in `namespace`:
    /// `/osapi/v1/namespaces/{namespace}/imagestreams/{name}`.
    pub fn self_link(namespace: &str, name: &str) -> String {
        format!("/osapi/v1/namespaces/{namespace}/imagestreams/{name}")
    }

    /// The spec tag called `name`, if any.
    pub fn spec_tag(&self, name: &str) -> Option<&TagReference> {
        self.spec.tags.iter().find(|t| t.name == name)
    }

    /// The spec tag called `name`, mutably, if any.
    pub fn spec_tag_mut(&mut self, name: &str) -> Option<&mut TagReference> {
        self.spec.tags.iter_mut().find(|t| t.name == name)
    }

    /// The history of tag `tag` in `status`, if any.
    pub fn status_tag(&self, tag: &str) -> Option<&NamedTagEventList> {
        self.status.as_ref()?.tags.iter().find(|t| t.tag == tag)
    }

    /// The history of tag `tag` in `status`, created empty if missing (and
    /// `status` with it). A new list goes before the first tag that sorts
    /// after it, so a sorted list stays sorted.
    pub fn status_tag_mut(&mut self, tag: &str) -> &mut NamedTagEventList {
        let tags = &mut self.status.get_or_insert_with(Default::default).tags;
        let index = match tags.iter().position(|t| t.tag == tag) {
            Some(index) => index,
            None => {
                let at = tags
                    .iter()
                    .position(|t| t.tag.as_str() > tag)
                    .unwrap_or(tags.len());
                tags.insert(
                    at,
                    NamedTagEventList {
                        tag: tag.to_owned(),
                        ..NamedTagEventList::default()
                    },
                );
                at
            }
        };
        &mut tags[index]
    }
}

impl NamedTagEventList {
    /// The newest entry: the image the tag points to now.
    pub fn latest(&self) -> Option<&TagEvent> {
        self.items.first()
    }

    /// The condition of type `condition_type`, if any.
    pub fn condition(&self, condition_type: &str) -> Option<&TagEventCondition> {
        self.conditions.iter().find(|c| c.r#type == condition_type)
    }
}

/// Formats `time` as the model writes timestamps: RFC 3339 UTC, seconds
/// precision (`2015-05-05T19:11:57Z`).
pub fn format_timestamp(time: chrono::DateTime<chrono::Utc>) -> String {
    time.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}
