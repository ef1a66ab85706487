//! The CNCF distribution notification envelope as registries POST it: the
//! wire types, tolerant of unknown fields (registries add fields) and of
//! `null` where a value is expected. Validation and decisions live in
//! [`crate::notification`]; nothing here is trusted.
//!
//! Distribution 2.8 sends `application/vnd.docker.distribution.events.v1+json`
//! and 3.x `…events.v2+json`; the JSON shape is the same (3.x's `target`
//! embeds a whole descriptor, so it may carry `annotations`, `platform`,
//! `urls`, which are ignored).

use serde::{Deserialize, Deserializer};

/// Envelope media type of distribution 2.x.
pub const MEDIA_TYPE_EVENTS_V1: &str = "application/vnd.docker.distribution.events.v1+json";
/// Envelope media type of distribution 3.x.
pub const MEDIA_TYPE_EVENTS_V2: &str = "application/vnd.docker.distribution.events.v2+json";
/// Plain JSON, for senders (and people with curl) that do not set the above.
pub const MEDIA_TYPE_JSON: &str = "application/json";

/// `action` of a push (blob or manifest).
pub const ACTION_PUSH: &str = "push";
/// `action` of a pull; distribution sends one for every manifest GET and HEAD.
pub const ACTION_PULL: &str = "pull";
/// `action` of a cross-repository blob mount.
pub const ACTION_MOUNT: &str = "mount";
/// `action` of a manifest, tag or blob deletion.
pub const ACTION_DELETE: &str = "delete";

/// OCI image manifest.
pub const MEDIA_TYPE_OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index.
pub const MEDIA_TYPE_OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Docker image manifest, schema 2.
pub const MEDIA_TYPE_DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list.
pub const MEDIA_TYPE_DOCKER_MANIFEST_LIST: &str =
    "application/vnd.docker.distribution.manifest.list.v2+json";

/// The manifest media types whose tagged pushes become `ImagePushed`.
pub const IMAGE_MANIFEST_MEDIA_TYPES: [&str; 4] = [
    MEDIA_TYPE_OCI_MANIFEST,
    MEDIA_TYPE_OCI_INDEX,
    MEDIA_TYPE_DOCKER_MANIFEST,
    MEDIA_TYPE_DOCKER_MANIFEST_LIST,
];

/// A notification envelope: one or more events, not necessarily related.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct Envelope {
    /// The events, in the registry's order (3.x omits the field when empty).
    #[serde(deserialize_with = "nullable")]
    pub events: Vec<Event>,
}

/// One registry event.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct Event {
    /// The registry's unique id of the event; stable across its retries.
    #[serde(deserialize_with = "nullable")]
    pub id: String,
    /// When the event happened, RFC 3339 (Go's zero time when unset).
    #[serde(deserialize_with = "nullable")]
    pub timestamp: String,
    /// `push`, `pull`, `mount` or `delete`.
    #[serde(deserialize_with = "nullable")]
    pub action: String,
    /// What the event is about.
    #[serde(deserialize_with = "nullable")]
    pub target: Target,
    /// Who caused it.
    #[serde(deserialize_with = "nullable")]
    pub actor: Actor,
    /// The HTTP request that caused it.
    #[serde(deserialize_with = "nullable")]
    pub request: Request,
    /// The registry node that generated it.
    #[serde(deserialize_with = "nullable")]
    pub source: Source,
}

/// The target of an event: a blob or a manifest of a repository.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Target {
    /// Media type of the content (`application/octet-stream` for blobs).
    #[serde(deserialize_with = "nullable")]
    pub media_type: String,
    /// Size in bytes.
    #[serde(deserialize_with = "nullable")]
    pub size: i64,
    /// Content digest, `sha256:…`.
    #[serde(deserialize_with = "nullable")]
    pub digest: String,
    /// Same as `size` (kept by distribution for compatibility).
    #[serde(deserialize_with = "nullable")]
    pub length: i64,
    /// Repository path within the registry, e.g. `ns1/app`.
    #[serde(deserialize_with = "nullable")]
    pub repository: String,
    /// Source repository of a mount.
    #[serde(deserialize_with = "nullable")]
    pub from_repository: String,
    /// Direct link to the content.
    #[serde(deserialize_with = "nullable")]
    pub url: String,
    /// The tag, for manifest pushes and tag deletions by tag.
    #[serde(deserialize_with = "nullable")]
    pub tag: String,
    /// Blobs the manifest references (`includereferences: true`).
    #[serde(deserialize_with = "nullable")]
    pub references: Vec<Descriptor>,
}

/// A content descriptor.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Descriptor {
    /// Media type.
    #[serde(deserialize_with = "nullable")]
    pub media_type: String,
    /// Size in bytes.
    #[serde(deserialize_with = "nullable")]
    pub size: i64,
    /// Digest.
    #[serde(deserialize_with = "nullable")]
    pub digest: String,
}

/// The agent that caused the event: `{}` when anonymous.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct Actor {
    /// User name from the request's authorization context.
    #[serde(deserialize_with = "nullable")]
    pub name: String,
}

/// The HTTP request behind the event.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct Request {
    /// Request id.
    #[serde(deserialize_with = "nullable")]
    pub id: String,
    /// Client address.
    #[serde(deserialize_with = "nullable")]
    pub addr: String,
    /// The `Host` the client used.
    #[serde(deserialize_with = "nullable")]
    pub host: String,
    /// HTTP method.
    #[serde(deserialize_with = "nullable")]
    pub method: String,
    /// The client's `User-Agent`.
    #[serde(deserialize_with = "nullable")]
    pub useragent: String,
}

/// The registry node that generated the event.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct Source {
    /// Node address.
    #[serde(deserialize_with = "nullable")]
    pub addr: String,
    /// Instance id, new at each registry restart.
    #[serde(rename = "instanceID", deserialize_with = "nullable")]
    pub instance_id: String,
}

/// `null` reads as the default value.
fn nullable<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A manifest push as distribution 2.8 sends it (includereferences on).
    const PUSH_28: &str = r#"{"events":[{
        "id":"6c3e2b4a-0f7e-4a43-9a1d-2a0e0d8f6b11",
        "timestamp":"2024-05-01T12:34:56.789012345Z",
        "action":"push",
        "target":{
            "mediaType":"application/vnd.oci.image.manifest.v1+json",
            "size":527,
            "digest":"sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae",
            "length":527,
            "repository":"ns1/app",
            "url":"http://127.0.0.1:5000/v2/ns1/app/manifests/sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae",
            "tag":"1",
            "references":[{"mediaType":"application/vnd.oci.image.config.v1+json","size":233,"digest":"sha256:aa"}]
        },
        "request":{"id":"r1","addr":"127.0.0.1:4711","host":"127.0.0.1:5000","method":"PUT","useragent":"skopeo"},
        "actor":{},
        "source":{"addr":"host:5000","instanceID":"i-1"}
    }]}"#;

    #[test]
    fn reads_a_distribution_push() {
        let envelope: Envelope = serde_json::from_str(PUSH_28).unwrap();
        let [event] = envelope.events.as_slice() else {
            panic!("one event")
        };
        assert_eq!(event.action, ACTION_PUSH);
        assert_eq!(event.target.tag, "1");
        assert_eq!(event.target.size, 527);
        assert_eq!(event.target.references.len(), 1);
        assert_eq!(event.actor.name, "");
        assert_eq!(event.source.instance_id, "i-1");
        assert_eq!(event.request.method, "PUT");
    }

    #[test]
    fn tolerates_unknown_fields_nulls_and_missing_parts() {
        let envelope: Envelope = serde_json::from_str(
            r#"{"events":[{"id":"e","action":"delete","extra":{"x":1},
                "target":{"repository":"ns/a","digest":"sha256:1","tag":null,"annotations":{"a":"b"},
                          "platform":{"os":"linux"},"references":null},
                "actor":null}],
                "future":true}"#,
        )
        .unwrap();
        assert_eq!(envelope.events[0].target.tag, "");
        assert_eq!(envelope.events[0].actor, Actor::default());
        assert_eq!(
            serde_json::from_str::<Envelope>("{}").unwrap(),
            Envelope::default()
        );
    }
}
