//! The pure part of the watcher: which envelopes are accepted, and what each
//! event of an accepted envelope becomes. No I/O, no clock: the HTTP layer
//! hands in the body, its media type and the time of receipt.
//!
//! # Envelopes
//!
//! - The media type (`Content-Type` without parameters, any case) must be
//!   one of [`ACCEPTED_MEDIA_TYPES`], or the request gets 415.
//! - The body must be a JSON object with an `events` array of objects whose
//!   known fields have the right types, or it gets 400 naming the first
//!   problem (`events[2].target.size: invalid type …`). Unknown fields are
//!   ignored.
//! - At most [`DEFAULT_MAX_EVENTS`] events per envelope (distribution sends
//!   one); more gets 413. The body size limit is the HTTP layer's.
//!
//! # Events
//!
//! See [`classify`]: tagged manifest pushes become [`ImagePush`], deletions
//! [`ImageDeletion`]; registry noise (blobs, pulls, mounts, pushes by digest)
//! is [`Decision::Ignore`]d; an event that cannot name a stream is
//! [`Decision::Skip`]ped with its reason (logged and counted, not refused,
//! since a 4xx would make the registry resend it forever).
pub use crate::model::{RepositoryError, StreamName, stream_of_repository};
use crate::reference;
use chrono::{DateTime, Utc};

use crate::envelope::{
    ACTION_DELETE, ACTION_MOUNT, ACTION_PULL, ACTION_PUSH, Descriptor, Envelope, Event,
    IMAGE_MANIFEST_MEDIA_TYPES, MEDIA_TYPE_EVENTS_V1, MEDIA_TYPE_EVENTS_V2, MEDIA_TYPE_JSON,
};

/// Default maximum number of events in one envelope.
pub const DEFAULT_MAX_EVENTS: usize = 1_000;

/// The envelope media types accepted.
pub const ACCEPTED_MEDIA_TYPES: [&str; 3] =
    [MEDIA_TYPE_EVENTS_V1, MEDIA_TYPE_EVENTS_V2, MEDIA_TYPE_JSON];

/// The longest registry event id accepted (it becomes a `Nats-Msg-Id`).
pub const MAX_EVENT_ID_LEN: usize = 256;

/// Why an envelope is refused as a whole; nothing of it is published.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// No `Content-Type`, or one not in [`ACCEPTED_MEDIA_TYPES`].
    #[error(
        "unsupported media type {0:?}: expected {MEDIA_TYPE_EVENTS_V1}, {MEDIA_TYPE_EVENTS_V2} or {MEDIA_TYPE_JSON}"
    )]
    UnsupportedMediaType(String),
    /// The body is larger than the limit.
    #[error("the body is larger than {limit} bytes")]
    BodyTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// The envelope holds more events than the limit.
    #[error("the envelope holds {count} events, more than the limit of {limit}")]
    TooManyEvents {
        /// Events in the envelope.
        count: usize,
        /// The limit.
        limit: usize,
    },
    /// The body is not a notification envelope.
    #[error("malformed notification envelope: {0}")]
    Malformed(String),
}

impl Rejection {
    /// The HTTP status of the refusal.
    pub fn http_status(&self) -> u16 {
        match self {
            Rejection::UnsupportedMediaType(_) => 415,
            Rejection::BodyTooLarge { .. } | Rejection::TooManyEvents { .. } => 413,
            Rejection::Malformed(_) => 400,
        }
    }
}

/// Checks the `Content-Type` header value (parameters such as `charset` are
/// allowed, case is not significant).
pub fn check_media_type(content_type: Option<&str>) -> Result<(), Rejection> {
    let essence = content_type
        .and_then(|ct| ct.split(';').next())
        .map(str::trim)
        .unwrap_or_default();
    if ACCEPTED_MEDIA_TYPES
        .iter()
        .any(|accepted| accepted.eq_ignore_ascii_case(essence))
    {
        Ok(())
    } else {
        Err(Rejection::UnsupportedMediaType(
            content_type.unwrap_or_default().to_owned(),
        ))
    }
}

/// Parses an envelope of at most `max_events` events.
pub fn parse_envelope(body: &[u8], max_events: usize) -> Result<Envelope, Rejection> {
    let deserializer = &mut serde_json::Deserializer::from_slice(body);
    let envelope: Envelope = serde_path_to_error::deserialize(deserializer).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        Rejection::Malformed(if path == "." || path.is_empty() {
            inner.to_string()
        } else {
            format!("{path}: {inner}")
        })
    })?;
    if envelope.events.len() > max_events {
        return Err(Rejection::TooManyEvents {
            count: envelope.events.len(),
            limit: max_events,
        });
    }
    Ok(envelope)
}

/// A tagged manifest push: becomes `ImagePushed`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImagePush {
    /// The registry's event id (the message id).
    pub event_id: String,
    /// The integrated registry's host.
    pub registry: String,
    /// `<ns>/<name>`.
    pub repository: String,
    /// The stream it updates.
    pub stream: StreamName,
    /// The pushed tag.
    pub tag: String,
    /// The manifest digest.
    pub digest: String,
    /// The manifest media type.
    pub media_type: String,
    /// The manifest size in bytes.
    pub size: i64,
    /// When the registry says it happened (else when it was received).
    pub time: DateTime<Utc>,
    /// Who pushed; empty when anonymous.
    pub actor: String,
    /// The blobs the manifest references (`includereferences: true`), else empty.
    pub references: Vec<Descriptor>,
}

/// A deletion of a manifest (by digest) or of a tag: becomes `ImageDeleted`.
///
/// Distribution reports a blob deletion the same way as a manifest deletion
/// (repository and digest, no media type), so a deletion may name a blob;
/// consumers match the digest against their tag histories.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageDeletion {
    /// The registry's event id (the message id).
    pub event_id: String,
    /// The integrated registry's host.
    pub registry: String,
    /// `<ns>/<name>`.
    pub repository: String,
    /// The stream it concerns.
    pub stream: StreamName,
    /// The deleted tag, when a tag was deleted.
    pub tag: String,
    /// The deleted manifest's digest, when a manifest was deleted.
    pub digest: String,
    /// When the registry says it happened (else when it was received).
    pub time: DateTime<Utc>,
    /// Who deleted; empty when anonymous.
    pub actor: String,
}

/// Registry events that are expected and of no interest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ignored {
    /// A `pull` (distribution sends one for every manifest GET and HEAD).
    Pull,
    /// A cross-repository blob `mount`.
    Mount,
    /// A push or delete of a blob, or of a manifest type that is not an image
    /// (schema 1, artifacts with their own manifest type): its media type.
    NotAnImageManifest(String),
    /// A manifest pushed by digest, without a tag.
    Untagged,
    /// An action this watcher does not know.
    UnknownAction(String),
}

/// Why an event that looked relevant was skipped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Skipped {
    /// The repository names no stream.
    #[error(transparent)]
    Repository(#[from] RepositoryError),
    /// No usable event id: it could not be deduplicated.
    #[error("event id {0:?} is empty, longer than {MAX_EVENT_ID_LEN} bytes or not printable ASCII")]
    EventId(String),
    /// The tag is not a valid tag.
    #[error("invalid tag {0:?}")]
    Tag(String),
    /// The digest is not a valid digest.
    #[error("invalid digest {0:?}")]
    Digest(String),
    /// A deletion that names neither a tag nor a digest.
    #[error("a delete without a tag or a digest")]
    EmptyDelete,
}

/// What one event becomes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Publish `ImagePushed`.
    Push(Box<ImagePush>),
    /// Publish `ImageDeleted`.
    Delete(Box<ImageDeletion>),
    /// Nothing: registry noise.
    Ignore(Ignored),
    /// Nothing: the event is unusable (logged with a warning and counted).
    Skip(Skipped),
}

fn is_image_manifest(media_type: &str) -> bool {
    IMAGE_MANIFEST_MEDIA_TYPES.contains(&media_type)
}

fn valid_event_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_EVENT_ID_LEN && id.bytes().all(|b| b.is_ascii_graphic())
}

/// The event's time: its timestamp, unless missing, unparseable or Go's zero
/// time (year 1), when `received` stands in. A leap second is folded
/// ([`crate::time`]).
fn event_time(timestamp: &str, received: DateTime<Utc>) -> DateTime<Utc> {
    match crate::time::parse_rfc3339(timestamp) {
        Some(t) if t.timestamp() > 0 => t,
        _ => received,
    }
}

/// Decides what one event becomes (see the module docs):
///
/// - `push` of an image manifest ([`IMAGE_MANIFEST_MEDIA_TYPES`]) with a
///   tag → [`Decision::Push`]; without a tag → ignored; any other media type
///   (blobs: `application/octet-stream`, layers, configs) → ignored.
/// - `delete` → [`Decision::Delete`] unless its media type, when given, is
///   not an image manifest's.
/// - `pull`, `mount` and unknown actions → ignored.
/// - For kept events, an invalid id, repository, tag or digest → skipped.
pub fn classify(event: &Event, registry: &str, received: DateTime<Utc>) -> Decision {
    let target = &event.target;
    match event.action.as_str() {
        ACTION_PULL => return Decision::Ignore(Ignored::Pull),
        ACTION_MOUNT => return Decision::Ignore(Ignored::Mount),
        ACTION_PUSH if !is_image_manifest(&target.media_type) => {
            return Decision::Ignore(Ignored::NotAnImageManifest(target.media_type.clone()));
        }
        ACTION_PUSH if target.tag.is_empty() => return Decision::Ignore(Ignored::Untagged),
        ACTION_DELETE
            if !target.media_type.is_empty() && !is_image_manifest(&target.media_type) =>
        {
            return Decision::Ignore(Ignored::NotAnImageManifest(target.media_type.clone()));
        }
        ACTION_PUSH | ACTION_DELETE => {}
        other => return Decision::Ignore(Ignored::UnknownAction(other.to_owned())),
    }
    match keep(event, registry, received) {
        Ok(decision) => decision,
        Err(skipped) => Decision::Skip(skipped),
    }
}

fn keep(event: &Event, registry: &str, received: DateTime<Utc>) -> Result<Decision, Skipped> {
    let target = &event.target;
    if !valid_event_id(&event.id) {
        return Err(Skipped::EventId(event.id.clone()));
    }
    let stream = stream_of_repository(&target.repository)?;
    if !target.tag.is_empty() && !reference::is_valid_tag(&target.tag) {
        return Err(Skipped::Tag(target.tag.clone()));
    }
    if !target.digest.is_empty() && reference::validate_digest(&target.digest).is_err() {
        return Err(Skipped::Digest(target.digest.clone()));
    }
    let time = event_time(&event.timestamp, received);
    if event.action == ACTION_DELETE {
        if target.tag.is_empty() && target.digest.is_empty() {
            return Err(Skipped::EmptyDelete);
        }
        return Ok(Decision::Delete(Box::new(ImageDeletion {
            event_id: event.id.clone(),
            registry: registry.to_owned(),
            repository: target.repository.clone(),
            stream,
            tag: target.tag.clone(),
            digest: target.digest.clone(),
            time,
            actor: event.actor.name.clone(),
        })));
    }
    if target.digest.is_empty() {
        return Err(Skipped::Digest(String::new()));
    }
    Ok(Decision::Push(Box::new(ImagePush {
        event_id: event.id.clone(),
        registry: registry.to_owned(),
        repository: target.repository.clone(),
        stream,
        tag: target.tag.clone(),
        digest: target.digest.clone(),
        media_type: target.media_type.clone(),
        size: if target.size > 0 {
            target.size
        } else {
            target.length
        },
        time,
        actor: event.actor.name.clone(),
        references: target.references.clone(),
    })))
}

#[cfg(feature = "proto")]
mod wire;

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    const HOST: &str = "registry.example.com:5000";
    const OCI: &str = "application/vnd.oci.image.manifest.v1+json";

    fn digest(c: char) -> String {
        format!("sha256:{}", c.to_string().repeat(64))
    }

    fn received() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2030-01-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    /// An event shaped like distribution 2.8's, with `patch` merged into it.
    fn event(action: &str, patch: Value) -> Value {
        let mut e = json!({
            "id": "ev-1",
            "timestamp": "2024-05-01T12:34:56.5Z",
            "action": action,
            "target": {
                "mediaType": OCI, "size": 527, "digest": digest('a'), "length": 527,
                "repository": "ns1/app", "url": "http://r/v2/ns1/app/manifests/x", "tag": "1"
            },
            "request": {"id": "r", "addr": "a", "host": "h", "method": "PUT", "useragent": "skopeo"},
            "actor": {},
            "source": {"addr": "s", "instanceID": "i"}
        });
        merge(&mut e, patch);
        e
    }

    fn merge(into: &mut Value, patch: Value) {
        match (into, patch) {
            (Value::Object(a), Value::Object(b)) => {
                for (k, v) in b {
                    if v.is_null() {
                        a.remove(&k);
                    } else {
                        merge(a.entry(k).or_insert(Value::Null), v);
                    }
                }
            }
            (slot, v) => *slot = v,
        }
    }

    fn decide(event: Value) -> Decision {
        let body = serde_json::to_vec(&json!({ "events": [event] })).unwrap();
        let envelope = parse_envelope(&body, DEFAULT_MAX_EVENTS).unwrap();
        classify(&envelope.events[0], HOST, received())
    }

    #[test]
    fn a_table_of_envelopes() {
        let untagged = json!({"target": {"tag": null}});
        let cases: Vec<(&str, Value, &str)> = vec![
            ("push manifest with tag", event("push", json!({})), "push"),
            (
                "push docker schema2 with tag",
                event(
                    "push",
                    json!({"target": {"mediaType": "application/vnd.docker.distribution.manifest.v2+json"}}),
                ),
                "push",
            ),
            (
                "push OCI index with tag",
                event(
                    "push",
                    json!({"target": {"mediaType": "application/vnd.oci.image.index.v1+json"}}),
                ),
                "push",
            ),
            (
                "push manifest list with tag",
                event(
                    "push",
                    json!({"target": {"mediaType": "application/vnd.docker.distribution.manifest.list.v2+json"}}),
                ),
                "push",
            ),
            (
                "blob push",
                event(
                    "push",
                    json!({"target": {"mediaType": "application/octet-stream", "tag": null}}),
                ),
                "ignore",
            ),
            (
                "layer push",
                event(
                    "push",
                    json!({"target": {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip"}}),
                ),
                "ignore",
            ),
            (
                "schema1 push",
                event(
                    "push",
                    json!({"target": {"mediaType": "application/vnd.docker.distribution.manifest.v1+prettyjws"}}),
                ),
                "ignore",
            ),
            ("pull", event("pull", json!({})), "ignore"),
            (
                "mount",
                event(
                    "mount",
                    json!({"target": {"mediaType": "application/octet-stream", "fromRepository": "ns0/x"}}),
                ),
                "ignore",
            ),
            ("digest-only push", event("push", untagged), "ignore"),
            ("unknown action", event("frobnicate", json!({})), "ignore"),
            (
                "delete by digest",
                event(
                    "delete",
                    json!({"target": {"mediaType": null, "tag": null, "size": null, "length": null}}),
                ),
                "delete",
            ),
            (
                "delete of a tag",
                event(
                    "delete",
                    json!({"target": {"mediaType": null, "digest": null}}),
                ),
                "delete",
            ),
            (
                "delete of a layer",
                event(
                    "delete",
                    json!({"target": {"mediaType": "application/octet-stream", "tag": null}}),
                ),
                "ignore",
            ),
            (
                "3-component repo",
                event("push", json!({"target": {"repository": "ns1/group/app"}})),
                "skip",
            ),
            (
                "1-component repo",
                event("push", json!({"target": {"repository": "app"}})),
                "skip",
            ),
            (
                "namespace not a DNS label",
                event("push", json!({"target": {"repository": "my_ns/app"}})),
                "skip",
            ),
            ("no event id", event("push", json!({"id": ""})), "skip"),
            (
                "event id with a newline",
                event("push", json!({"id": "a\r\nb"})),
                "skip",
            ),
            (
                "bad digest",
                event("push", json!({"target": {"digest": "sha256:12"}})),
                "skip",
            ),
            (
                "tagged push without digest",
                event("push", json!({"target": {"digest": null}})),
                "skip",
            ),
            (
                "delete naming nothing",
                event(
                    "delete",
                    json!({"target": {"mediaType": null, "digest": null, "tag": null}}),
                ),
                "skip",
            ),
            (
                "3-component repo pull",
                event("pull", json!({"target": {"repository": "a/b/c"}})),
                "ignore",
            ),
        ];
        for (name, event, expected) in cases {
            let decision = decide(event);
            let got = match &decision {
                Decision::Push(_) => "push",
                Decision::Delete(_) => "delete",
                Decision::Ignore(_) => "ignore",
                Decision::Skip(_) => "skip",
            };
            assert_eq!(got, expected, "{name}: {decision:?}");
        }
    }

    #[cfg(feature = "proto")]
    #[test]
    fn a_push_carries_everything_into_image_pushed() {
        let config = json!({"mediaType": "application/vnd.oci.image.config.v1+json", "size": 7, "digest": digest('c')});
        let Decision::Push(push) = decide(event(
            "push",
            json!({"actor": {"name": "alice"}, "target": {"references": [config]}}),
        )) else {
            panic!("a push")
        };
        use imagestreams_proto::v1 as proto;
        let pushed = proto::ImagePushed::from(*push);
        assert_eq!(
            pushed,
            proto::ImagePushed {
                event_id: "ev-1".into(),
                registry: HOST.into(),
                repository: "ns1/app".into(),
                tag: "1".into(),
                digest: digest('a'),
                media_type: OCI.into(),
                size: 527,
                time: Some(prost_types::Timestamp {
                    seconds: 1_714_566_896,
                    nanos: 500_000_000
                }),
                actor: "alice".into(),
                source: proto::ImageSource::RegistryNotification as i32,
                namespace: "ns1".into(),
                stream: "app".into(),
                // retired: the metadata recorder's ImageRecorded says it
                #[allow(deprecated)]
                summary: None,
                references: vec![proto::ImageLayer {
                    name: digest('c'),
                    size: 7,
                    media_type: "application/vnd.oci.image.config.v1+json".into(),
                }],
            }
        );
    }

    #[cfg(feature = "proto")]
    #[test]
    fn a_delete_becomes_image_deleted() {
        let Decision::Delete(deletion) = decide(event(
            "delete",
            json!({"target": {"mediaType": null, "tag": null}, "actor": {"name": "bob"}}),
        )) else {
            panic!("a delete")
        };
        use imagestreams_proto::v1 as proto;
        let deleted = proto::ImageDeleted::from(*deletion);
        assert_eq!(deleted.digest, digest('a'));
        assert_eq!(deleted.tag, "");
        assert_eq!(deleted.actor, "bob");
        assert_eq!(
            (deleted.namespace.as_str(), deleted.stream.as_str()),
            ("ns1", "app")
        );
    }

    #[test]
    fn missing_or_zero_timestamps_fall_back_to_receipt() {
        for ts in [
            json!(null),
            json!("0001-01-01T00:00:00Z"),
            json!("yesterday"),
        ] {
            let Decision::Push(push) = decide(event("push", json!({"timestamp": ts.clone()})))
            else {
                panic!("a push")
            };
            assert_eq!(push.time, received(), "{ts}");
        }
    }

    /// Found by the `notification_envelope` fuzz target: a leap second gave a
    /// time whose protobuf `nanos` was 1e9, which decoders refuse.
    #[test]
    fn a_leap_second_is_folded_into_the_second_before() {
        let Decision::Push(push) =
            decide(event("push", json!({"timestamp": "2024-05-01T12:35:60Z"})))
        else {
            panic!("a push")
        };
        assert_eq!(
            push.time.to_rfc3339(),
            "2024-05-01T12:35:59.999999999+00:00"
        );
    }

    #[test]
    fn size_falls_back_to_length() {
        let Decision::Push(push) = decide(event("push", json!({"target": {"size": null}}))) else {
            panic!("a push")
        };
        assert_eq!(push.size, 527);
    }

    #[test]
    fn media_types_v1_v2_and_json_are_accepted() {
        for ok in [
            Some("application/vnd.docker.distribution.events.v1+json"),
            Some("application/vnd.docker.distribution.events.v2+json"),
            Some("application/json"),
            Some("application/json; charset=utf-8"),
            Some("Application/VND.docker.distribution.events.v1+JSON"),
        ] {
            assert_eq!(check_media_type(ok), Ok(()), "{ok:?}");
        }
        for bad in [
            None,
            Some(""),
            Some("text/plain"),
            Some("application/vnd.docker.distribution.events.v3+json"),
        ] {
            let rejection = check_media_type(bad).unwrap_err();
            assert_eq!(rejection.http_status(), 415, "{bad:?}");
        }
    }

    #[test]
    fn malformed_envelopes_are_named() {
        let cases: [(&[u8], &str); 5] = [
            (b"{\"events\": [", "EOF"),
            (b"[1, 2]", "invalid type"),
            (b"{\"events\": 3}", "events"),
            (
                b"{\"events\": [{\"target\": {\"size\": \"big\"}}]}",
                "events[0].target.size",
            ),
            (b"not json", "expected"),
        ];
        for (body, needle) in cases {
            let rejection = parse_envelope(body, DEFAULT_MAX_EVENTS).unwrap_err();
            assert_eq!(rejection.http_status(), 400);
            assert!(
                rejection.to_string().contains(needle),
                "{rejection} should contain {needle:?}"
            );
        }
    }

    #[test]
    fn too_many_events_are_refused() {
        let events: Vec<Value> = (0..DEFAULT_MAX_EVENTS + 1)
            .map(|i| json!({"id": i.to_string(), "action": "pull"}))
            .collect();
        let body = serde_json::to_vec(&json!({ "events": events })).unwrap();
        let rejection = parse_envelope(&body, DEFAULT_MAX_EVENTS).unwrap_err();
        assert_eq!(
            rejection,
            Rejection::TooManyEvents {
                count: 1001,
                limit: 1000
            }
        );
        assert_eq!(rejection.http_status(), 413);
        let ok: Vec<Value> = events[..DEFAULT_MAX_EVENTS].to_vec();
        let body = serde_json::to_vec(&json!({ "events": ok })).unwrap();
        assert_eq!(
            parse_envelope(&body, DEFAULT_MAX_EVENTS)
                .unwrap()
                .events
                .len(),
            1000
        );
    }
}
