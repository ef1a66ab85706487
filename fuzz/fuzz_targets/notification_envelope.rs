//! Fuzzes the registry-watcher's pure half on arbitrary request bodies:
//! `parse_envelope` (the CNCF distribution notification envelope), then
//! `classify` of every event into the push or deletion the watcher
//! publishes. What is published must be what the module docs promise: a
//! valid event id, tag, digest and `<namespace>/<name>` stream, a subject
//! that parses back to that stream, and a time a protobuf `Timestamp` can
//! carry. (The protobuf message itself is not built here:
//! `imagestreams-proto` brings tonic.)
#![no_main]

use chrono::{DateTime, Timelike, Utc};
use imagestreams_formats::envelope::{
    ACTION_DELETE, ACTION_MOUNT, ACTION_PULL, ACTION_PUSH, Event, IMAGE_MANIFEST_MEDIA_TYPES,
};
use imagestreams_formats::model::{StreamName, is_dns1123_label, is_valid_stream_name};
use imagestreams_formats::notification::{
    DEFAULT_MAX_EVENTS, Decision, Ignored, MAX_EVENT_ID_LEN, Rejection, Skipped, check_media_type,
    classify, parse_envelope, stream_of_repository,
};
use imagestreams_formats::reference::{is_valid_tag, validate_digest};
use imagestreams_formats::subjects::Kind;
use libfuzzer_sys::fuzz_target;

const REGISTRY: &str = "image-registry.openshift-image-registry.svc:5000";

fuzz_target!(|data: &[u8]| {
    // The same bytes as a Content-Type value: never panics, and accepts
    // exactly the three media types (any case, any parameters).
    if let Ok(text) = std::str::from_utf8(data) {
        check_content_type(text);
    }

    let envelope = match parse_envelope(data, DEFAULT_MAX_EVENTS) {
        Ok(envelope) => envelope,
        Err(rejection) => {
            assert!(
                matches!(
                    rejection,
                    Rejection::Malformed(_) | Rejection::TooManyEvents { .. }
                ),
                "{rejection:?}"
            );
            assert!(matches!(rejection.http_status(), 400 | 413));
            return;
        }
    };
    assert!(envelope.events.len() <= DEFAULT_MAX_EVENTS);
    if let Some(fewer) = envelope.events.len().checked_sub(1) {
        assert_eq!(
            parse_envelope(data, fewer),
            Err(Rejection::TooManyEvents {
                count: envelope.events.len(),
                limit: fewer
            })
        );
    }

    let received = DateTime::parse_from_rfc3339("2030-01-01T00:00:00Z")
        .expect("a valid time")
        .with_timezone(&Utc);
    for event in &envelope.events {
        let decision = classify(event, REGISTRY, received);
        check_decision(event, &decision, received);
        match decision {
            Decision::Push(push) => check_published(Kind::ImagesPushed, &push.stream, push.time),
            Decision::Delete(deletion) => {
                check_published(Kind::ImagesDeleted, &deletion.stream, deletion.time)
            }
            Decision::Ignore(_) | Decision::Skip(_) => {}
        }
    }
});

fn check_content_type(text: &str) {
    let essence = text.split(';').next().unwrap_or_default().trim();
    let known = [
        "application/vnd.docker.distribution.events.v1+json",
        "application/vnd.docker.distribution.events.v2+json",
        "application/json",
    ]
    .iter()
    .any(|m| m.eq_ignore_ascii_case(essence));
    match check_media_type(Some(text)) {
        Ok(()) => assert!(known, "{text:?} accepted"),
        Err(rejection) => {
            assert!(!known, "{text:?} refused");
            assert_eq!(rejection.http_status(), 415);
        }
    }
}

fn valid_event_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_EVENT_ID_LEN && id.bytes().all(|b| b.is_ascii_graphic())
}

/// The event's time, or `received`; a leap second (second 60, which chrono
/// keeps as 1e9 nanos or more) is the last nanosecond of the second before.
fn expected_time(timestamp: &str, received: DateTime<Utc>) -> DateTime<Utc> {
    match DateTime::parse_from_rfc3339(timestamp) {
        Ok(t) if t.timestamp() > 0 => {
            let t = t.with_timezone(&Utc);
            t.with_nanosecond(t.nanosecond().min(999_999_999))
                .expect("a nanosecond below 1e9")
        }
        _ => received,
    }
}

fn check_decision(event: &Event, decision: &Decision, received: DateTime<Utc>) {
    let target = &event.target;
    let is_image = IMAGE_MANIFEST_MEDIA_TYPES.contains(&target.media_type.as_str());
    match decision {
        Decision::Push(push) => {
            assert_eq!(event.action, ACTION_PUSH);
            assert!(is_image, "pushed media type {:?}", target.media_type);
            assert!(
                valid_event_id(&push.event_id),
                "event id {:?}",
                push.event_id
            );
            assert_eq!(push.event_id, event.id);
            assert_eq!(push.registry, REGISTRY);
            assert_eq!(push.repository, target.repository);
            assert_eq!(
                stream_of_repository(&push.repository).as_ref(),
                Ok(&push.stream)
            );
            assert!(
                is_dns1123_label(&push.stream.namespace),
                "{:?}",
                push.stream
            );
            assert!(is_valid_stream_name(&push.stream.name), "{:?}", push.stream);
            assert_eq!(
                format!("{}/{}", push.stream.namespace, push.stream.name),
                push.repository
            );
            assert!(is_valid_tag(&push.tag), "tag {:?}", push.tag);
            assert_eq!(push.tag, target.tag);
            assert_eq!(
                validate_digest(&push.digest),
                Ok(()),
                "digest {:?}",
                push.digest
            );
            assert_eq!(push.digest, target.digest);
            assert_eq!(push.media_type, target.media_type);
            let size = if target.size > 0 {
                target.size
            } else {
                target.length
            };
            assert_eq!(push.size, size);
            assert_eq!(push.time, expected_time(&event.timestamp, received));
            assert_eq!(push.actor, event.actor.name);
        }
        Decision::Delete(deletion) => {
            assert_eq!(event.action, ACTION_DELETE);
            assert!(target.media_type.is_empty() || is_image);
            assert!(valid_event_id(&deletion.event_id));
            assert_eq!(deletion.event_id, event.id);
            assert_eq!(
                stream_of_repository(&deletion.repository).as_ref(),
                Ok(&deletion.stream)
            );
            assert!(!deletion.tag.is_empty() || !deletion.digest.is_empty());
            assert!(deletion.tag.is_empty() || is_valid_tag(&deletion.tag));
            assert!(deletion.digest.is_empty() || validate_digest(&deletion.digest).is_ok());
            assert_eq!(
                (&deletion.tag, &deletion.digest),
                (&target.tag, &target.digest)
            );
            assert_eq!(deletion.time, expected_time(&event.timestamp, received));
        }
        Decision::Ignore(ignored) => match ignored {
            Ignored::Pull => assert_eq!(event.action, ACTION_PULL),
            Ignored::Mount => assert_eq!(event.action, ACTION_MOUNT),
            Ignored::NotAnImageManifest(media_type) => {
                assert!(event.action == ACTION_PUSH || event.action == ACTION_DELETE);
                assert_eq!(*media_type, target.media_type);
                assert!(!is_image);
            }
            Ignored::Untagged => {
                assert_eq!(event.action, ACTION_PUSH);
                assert!(target.tag.is_empty());
            }
            Ignored::UnknownAction(action) => {
                assert_eq!(*action, event.action);
                assert!(
                    ![ACTION_PUSH, ACTION_PULL, ACTION_MOUNT, ACTION_DELETE]
                        .contains(&action.as_str())
                );
            }
        },
        Decision::Skip(skipped) => {
            assert!(event.action == ACTION_PUSH || event.action == ACTION_DELETE);
            match skipped {
                Skipped::EventId(id) => assert!(!valid_event_id(id)),
                Skipped::Repository(_) => {
                    assert!(stream_of_repository(&target.repository).is_err());
                }
                Skipped::Tag(tag) => assert!(!is_valid_tag(tag)),
                Skipped::Digest(digest) => assert!(validate_digest(digest).is_err()),
                Skipped::EmptyDelete => {
                    assert_eq!(event.action, ACTION_DELETE);
                    assert!(target.tag.is_empty() && target.digest.is_empty());
                }
            }
        }
    }
}

/// What the watcher publishes for a stream: the subject of its kind parses
/// back to the stream, and the time fits a protobuf `Timestamp` (seconds > 0,
/// nanos below one second: a leap second must not give 1,000,000,000 or more).
fn check_published(kind: Kind, stream: &StreamName, time: DateTime<Utc>) {
    let subject = kind.subject(&stream.namespace, &stream.name);
    assert_eq!(
        kind.parse(&subject),
        Some((stream.namespace.clone(), stream.name.clone())),
        "subject {subject:?}"
    );
    assert!(time.timestamp() > 0, "{time:?}");
    assert!(time.timestamp_subsec_nanos() < 1_000_000_000, "{time:?}");
}
