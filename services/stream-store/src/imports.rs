//! Applying imports: the write API's `import` operation. The tag-syncer does
//! the registry work and sends an [`proto::ImportResult`]; this module
//! applies it as one compare-and-swap write (one resourceVersion bump), or
//! none at all when nothing changed.
//!
//! # The rules
//!
//! - **Success** of a tag: a history item `{created, dockerImageReference,
//!   image, generation}` by the tag-history rule ([`history::apply_image`],
//!   followers included): an unchanged digest adds nothing; the tag's
//!   conditions are cleared (a later success clears a failure).
//! - **Failure** of a tag: its `ImportSuccess=False` condition (reason,
//!   message, lastTransitionTime, generation); the history is left alone. A
//!   failure identical to the one recorded (reason, message, generation)
//!   changes nothing; another one keeps the `lastTransitionTime` of the
//!   recorded failure, since the status did not transition.
//! - **Generation** of an item or condition: the one the import answers, or,
//!   when the import sent 0, the tag's spec generation after this write (the
//!   stream's generation for tags without a spec tag), as OpenShift does.
//! - **Spec changes** of `import-image` (`--from`, `--scheduled`,
//!   `--insecure`, `--all --confirm`) are made in the same write and bump the
//!   generation as an update would; `create` makes a missing stream.
//! - **Repository check**: `status.dockerImageRepository` follows
//!   `spec.dockerImageRepository`, and the
//!   `openshift.io/image.dockerRepositoryCheck` annotation takes the time of
//!   the write, only when something else changed or it is missing: importing
//!   the same digests again writes nothing, and the resourceVersion stays.
//! - **Idempotent**: the import id is remembered in the record with the
//!   write; a redelivered import is answered from the current state.
//! - `TagsChanged` follows from the record's `change`, as for pushes.

use chrono::Utc;
use imagestreams_common::{
    error::ApiError,
    model::{
        ANNOTATION_DOCKER_REPOSITORY_CHECK, CONDITION_FALSE, IMPORT_SUCCESS, ImageStream, TagEvent,
        TagEventCondition, TagReference, is_dns1123_label, is_valid_stream_name,
    },
    reference, requests,
};
use imagestreams_proto::v1 as proto;
use imagestreams_stream_store_api::{Cause, CauseKind};
use imagestreams_tag_syncer_api::{STATUS_FAILURE, STATUS_SUCCESS, STATUS_UNCHANGED};
use prost::Message as _;
use tracing::instrument;

use crate::{
    bucket::{Bucket, Plan, next_record},
    history::{self, Outcome},
    writes,
};

fn invalid(field: &str, message: String) -> ApiError {
    ApiError::invalid(field, message)
}

/// Checks what the tag-syncer sent before anything is read.
pub fn check(result: &proto::ImportResult) -> Result<(), ApiError> {
    if result.import_id.is_empty() {
        return Err(invalid("import_id", "import_id: Required value".into()));
    }
    if !is_dns1123_label(&result.namespace) {
        return Err(invalid(
            "namespace",
            format!("namespace: Invalid value: {:?}", result.namespace),
        ));
    }
    if !is_valid_stream_name(&result.name) {
        return Err(invalid(
            "name",
            format!("name: Invalid value: {:?}", result.name),
        ));
    }
    for (i, tag) in result.tags.iter().enumerate() {
        if !reference::is_valid_tag(&tag.tag) {
            return Err(invalid(
                &format!("tags[{i}].tag"),
                format!("tags[{i}].tag: Invalid value: {:?}", tag.tag),
            ));
        }
        if tag.failed {
            if tag.reason.is_empty() {
                return Err(invalid(
                    &format!("tags[{i}].reason"),
                    format!("tags[{i}].reason: Required value"),
                ));
            }
        } else {
            reference::validate_digest(&tag.image).map_err(|e| {
                invalid(
                    &format!("tags[{i}].image"),
                    format!("tags[{i}].image: Invalid value: {:?}: {e}", tag.image),
                )
            })?;
            if tag.docker_image_reference.is_empty() {
                return Err(invalid(
                    &format!("tags[{i}].docker_image_reference"),
                    format!("tags[{i}].docker_image_reference: Required value"),
                ));
            }
        }
    }
    Ok(())
}

/// Makes the spec changes of `result` on `stream`: a spec change bumps the
/// generation, and the spec tags it adds or changes take the new one.
pub fn apply_spec(stream: &mut ImageStream, result: &proto::ImportResult) {
    let mut spec = stream.spec.clone();
    if !result.set_docker_image_repository.is_empty() {
        spec.docker_image_repository = result.set_docker_image_repository.clone();
    }
    for wire in &result.set_spec_tags {
        let mut tag = TagReference::from(wire.clone());
        match spec.tags.iter_mut().find(|t| t.name == tag.name) {
            Some(existing) => {
                tag.generation = existing.generation;
                *existing = tag;
            }
            None => {
                tag.generation = None;
                spec.tags.push(tag);
            }
        }
    }
    if spec == stream.spec {
        return;
    }
    let generation = stream.metadata.generation + 1;
    for tag in &mut spec.tags {
        if stream.spec_tag(&tag.name) != Some(tag) || tag.generation.is_none() {
            tag.generation = Some(generation);
        }
    }
    stream.metadata.generation = generation;
    stream.spec = spec;
}

/// The generation an imported tag's item or condition records.
fn generation_of(stream: &ImageStream, tag: &proto::ImportedTag) -> i64 {
    if tag.generation != 0 {
        return tag.generation;
    }
    stream
        .spec_tag(&tag.tag)
        .and_then(|t| t.generation)
        .unwrap_or(stream.metadata.generation)
}

/// Records one tag's failure (see the module docs); whether anything changed.
pub fn record_failure(
    stream: &mut ImageStream,
    tag: &str,
    reason: &str,
    message: &str,
    generation: i64,
    now: &str,
) -> bool {
    let list = stream.status_tag_mut(tag);
    let previous = list
        .conditions
        .iter()
        .position(|c| c.r#type == IMPORT_SUCCESS);
    let transition = match previous.map(|i| &list.conditions[i]) {
        Some(c)
            if c.status == CONDITION_FALSE
                && c.reason == reason
                && c.message == message
                && c.generation == generation =>
        {
            return false;
        }
        Some(c) if c.status == CONDITION_FALSE && !c.last_transition_time.is_empty() => {
            c.last_transition_time.clone()
        }
        _ => now.to_owned(),
    };
    let condition = TagEventCondition {
        r#type: IMPORT_SUCCESS.to_owned(),
        status: CONDITION_FALSE.to_owned(),
        last_transition_time: transition,
        reason: reason.to_owned(),
        message: message.to_owned(),
        generation,
    };
    match previous {
        Some(i) => list.conditions[i] = condition,
        None => list.conditions.push(condition),
    }
    true
}

/// Applies the tags and the repository check of `result` to `stream` (the
/// spec changes are made first by the caller, see [`apply_spec`]); returns
/// one result per tag. `before` is the stream before this import, to tell
/// whether anything changed.
pub fn apply_tags(
    stream: &mut ImageStream,
    before: Option<&ImageStream>,
    result: &proto::ImportResult,
    now: &str,
) -> Vec<proto::TagImportResult> {
    let mut outcomes = Vec::with_capacity(result.tags.len());
    for tag in &result.tags {
        let generation = generation_of(stream, tag);
        if tag.failed {
            record_failure(stream, &tag.tag, &tag.reason, &tag.message, generation, now);
            outcomes.push(proto::TagImportResult {
                tag: tag.tag.clone(),
                status: STATUS_FAILURE.to_owned(),
                reason: tag.reason.clone(),
                message: tag.message.clone(),
                ..Default::default()
            });
            continue;
        }
        let event = TagEvent {
            created: now.to_owned(),
            docker_image_reference: tag.docker_image_reference.clone(),
            image: tag.image.clone(),
            generation: Some(generation),
        };
        let touched = history::apply_image(stream, &tag.tag, &event);
        let moved = touched
            .first()
            .is_some_and(|(_, outcome)| *outcome == Outcome::Added);
        outcomes.push(proto::TagImportResult {
            tag: tag.tag.clone(),
            status: if moved {
                STATUS_SUCCESS
            } else {
                STATUS_UNCHANGED
            }
            .to_owned(),
            image: tag.image.clone(),
            docker_image_reference: tag.docker_image_reference.clone(),
            ..Default::default()
        });
    }
    if result.repository_check {
        let repository = stream.spec.docker_image_repository.clone();
        let status = stream.status.get_or_insert_with(Default::default);
        if !repository.is_empty() && status.docker_image_repository != repository {
            status.docker_image_repository = repository;
        }
        let changed = before != Some(&*stream);
        let annotations = &mut stream.metadata.annotations;
        if changed || !annotations.contains_key(ANNOTATION_DOCKER_REPOSITORY_CHECK) {
            annotations.insert(
                ANNOTATION_DOCKER_REPOSITORY_CHECK.to_owned(),
                now.to_owned(),
            );
        }
    }
    outcomes
}

/// Applies one import to the bucket (see the module docs).
#[instrument(skip_all, fields(import_id = %result.import_id, namespace = %result.namespace, name = %result.name), err(level = "debug"))]
pub async fn apply(
    bucket: &Bucket,
    result: &proto::ImportResult,
) -> Result<proto::ImportApplied, ApiError> {
    check(result)?;
    let mut outcomes = Vec::new();
    let mut written = false;
    let stored = bucket
        .modify(&result.namespace, &result.name, |current| {
            let now = writes::timestamp(Utc::now());
            written = false;
            let (before, revision) = match current {
                Some((record, revision)) => (Some(record), Some(revision)),
                None if result.create => (None, None),
                None => return Err(ApiError::stream_not_found(&result.namespace, &result.name)),
            };
            let mut stream = match &before {
                Some(record) => record.stream.clone(),
                None => ImageStream::new(&result.namespace, &result.name),
            };
            apply_spec(&mut stream, result);
            if before.is_none() {
                let repository = stream.spec.docker_image_repository.clone();
                writes::initialize(
                    &mut stream,
                    uuid::Uuid::new_v4().to_string(),
                    &now,
                    repository,
                );
            }
            if stream.spec
                != before
                    .as_ref()
                    .map(|r| r.stream.spec.clone())
                    .unwrap_or_default()
            {
                stream.validate()?;
            }
            outcomes = apply_tags(
                &mut stream,
                before.as_ref().map(|r| &r.stream),
                result,
                &now,
            );
            match (before, revision) {
                (Some(record), Some(revision))
                    if record.has_applied(&result.import_id) || record.stream == stream =>
                {
                    Ok(Plan::Keep(record, revision))
                }
                (Some(record), Some(revision)) => {
                    let mut next = next_record(Some(&record), stream).caused_by(cause(result));
                    next.remember_applied(&result.import_id);
                    written = true;
                    Ok(Plan::Update(next, revision))
                }
                _ => {
                    let mut next = next_record(None, stream).caused_by(cause(result));
                    next.remember_applied(&result.import_id);
                    written = true;
                    Ok(Plan::Create(next))
                }
            }
        })
        .await?;
    let (record, revision) =
        stored.ok_or_else(|| ApiError::Internal("the import wrote nothing".into()))?;
    let mut stream = record.stream;
    stream.metadata.resource_version = revision.to_string();
    Ok(proto::ImportApplied {
        image_stream: Some(stream.into()),
        tags: outcomes,
        written,
    })
}

/// What made an import's change: a schedule, or whom the import acts for.
fn cause(result: &proto::ImportResult) -> Cause {
    let kind = if result.scheduled {
        CauseKind::ScheduledImport
    } else {
        CauseKind::Import
    };
    Cause::new(kind, requests::actor()).with_event(&result.import_id)
}

/// Decodes, applies and answers one `import` request.
pub async fn handle(bucket: &Bucket, payload: &[u8]) -> proto::ImportReply {
    let result = match proto::ImportResult::decode(payload) {
        Ok(result) => apply(bucket, &result).await,
        Err(e) => Err(ApiError::invalid("", format!("malformed request: {e}"))),
    };
    proto::ImportReply {
        result: Some(match result {
            Ok(applied) => proto::import_reply::Result::Applied(applied),
            Err(error) => {
                if matches!(error, ApiError::Internal(_) | ApiError::Unavailable(_)) {
                    tracing::warn!(
                        op = "import",
                        error = imagestreams_common::error::chain(&error),
                        "request failed"
                    );
                }
                proto::import_reply::Result::Error(error.into())
            }
        }),
    }
}

#[cfg(test)]
mod tests {
    use imagestreams_common::model::{FROM_DOCKER_IMAGE, ObjectReference, TagImportPolicy};

    use super::*;

    const NOW: &str = "2025-03-01T10:00:00Z";
    const LATER: &str = "2025-03-01T11:00:00Z";

    fn digest(n: u8) -> String {
        format!("sha256:{}", format!("{n:02x}").repeat(32))
    }

    fn seed() -> ImageStream {
        let mut s = ImageStream::new("default", "ruby");
        s.api_version = "v1".into();
        s.spec.docker_image_repository = "openshift/ruby-20-centos7".into();
        writes::initialize(
            &mut s,
            "uid".into(),
            NOW,
            "openshift/ruby-20-centos7".into(),
        );
        s
    }

    fn ok(tag: &str, n: u8) -> proto::ImportedTag {
        proto::ImportedTag {
            tag: tag.into(),
            image: digest(n),
            docker_image_reference: format!("openshift/ruby-20-centos7@{}", digest(n)),
            ..Default::default()
        }
    }

    fn failed(tag: &str, reason: &str, message: &str) -> proto::ImportedTag {
        proto::ImportedTag {
            tag: tag.into(),
            failed: true,
            reason: reason.into(),
            message: message.into(),
            ..Default::default()
        }
    }

    fn result(tags: Vec<proto::ImportedTag>) -> proto::ImportResult {
        proto::ImportResult {
            import_id: "i1".into(),
            namespace: "default".into(),
            name: "ruby".into(),
            tags,
            repository_check: true,
            ..Default::default()
        }
    }

    fn statuses(outcomes: &[proto::TagImportResult]) -> Vec<&str> {
        outcomes.iter().map(|o| o.status.as_str()).collect()
    }

    #[test]
    fn a_first_import_fills_the_synced_shape() {
        let before = seed();
        let mut s = before.clone();
        let out = apply_tags(
            &mut s,
            Some(&before),
            &result(vec![ok("latest", 1), ok("v0.4", 2)]),
            NOW,
        );
        assert_eq!(statuses(&out), ["Success", "Success"]);
        assert_eq!(
            s.metadata.annotations[ANNOTATION_DOCKER_REPOSITORY_CHECK],
            NOW
        );
        let latest = &s.status_tag("latest").unwrap().items[0];
        assert_eq!(latest.image, digest(1));
        assert_eq!(
            latest.docker_image_reference,
            format!("openshift/ruby-20-centos7@{}", digest(1))
        );
        assert_eq!(latest.generation, Some(1));
        assert_eq!(
            s.status.as_ref().unwrap().docker_image_repository,
            "openshift/ruby-20-centos7"
        );
    }

    #[test]
    fn the_same_digests_again_change_nothing_not_even_the_annotation() {
        let mut s = seed();
        apply_tags(&mut s, None, &result(vec![ok("latest", 1)]), NOW);
        let before = s.clone();
        let out = apply_tags(&mut s, Some(&before), &result(vec![ok("latest", 1)]), LATER);
        assert_eq!(statuses(&out), ["Unchanged"]);
        assert_eq!(s, before);
    }

    #[test]
    fn a_new_digest_is_prepended_newest_first() {
        let mut s = seed();
        apply_tags(&mut s, None, &result(vec![ok("v0.4", 1)]), NOW);
        let before = s.clone();
        let out = apply_tags(&mut s, Some(&before), &result(vec![ok("v0.4", 2)]), LATER);
        assert_eq!(statuses(&out), ["Success"]);
        let items: Vec<_> = s
            .status_tag("v0.4")
            .unwrap()
            .items
            .iter()
            .map(|i| i.image.clone())
            .collect();
        assert_eq!(items, [digest(2), digest(1)]);
        assert_eq!(
            s.metadata.annotations[ANNOTATION_DOCKER_REPOSITORY_CHECK],
            LATER
        );
    }

    #[test]
    fn failures_set_a_condition_leave_history_and_clear_on_success() {
        let mut s = seed();
        apply_tags(&mut s, None, &result(vec![ok("latest", 1)]), NOW);
        let before = s.clone();
        let out = apply_tags(
            &mut s,
            Some(&before),
            &result(vec![failed("latest", "NotFound", "gone")]),
            LATER,
        );
        assert_eq!(statuses(&out), ["Failure"]);
        let list = s.status_tag("latest").unwrap();
        assert_eq!(list.items.len(), 1, "history left alone");
        let c = list.condition(IMPORT_SUCCESS).unwrap();
        assert_eq!(
            (c.status.as_str(), c.reason.as_str(), c.message.as_str()),
            ("False", "NotFound", "gone")
        );
        assert_eq!((c.last_transition_time.as_str(), c.generation), (LATER, 1));

        // identical failure: nothing at all
        let before = s.clone();
        apply_tags(
            &mut s,
            Some(&before),
            &result(vec![failed("latest", "NotFound", "gone")]),
            "2025-03-02T00:00:00Z",
        );
        assert_eq!(s, before);

        // another failure keeps the transition time
        apply_tags(
            &mut s,
            Some(&before),
            &result(vec![failed("latest", "Timeout", "slow")]),
            "2025-03-02T00:00:00Z",
        );
        let c = s
            .status_tag("latest")
            .unwrap()
            .condition(IMPORT_SUCCESS)
            .unwrap()
            .clone();
        assert_eq!(
            (c.reason.as_str(), c.last_transition_time.as_str()),
            ("Timeout", LATER)
        );

        // a success clears it, even with the same digest
        let before = s.clone();
        apply_tags(
            &mut s,
            Some(&before),
            &result(vec![ok("latest", 1)]),
            "2025-03-03T00:00:00Z",
        );
        assert!(s.status_tag("latest").unwrap().conditions.is_empty());
        assert_eq!(s.status_tag("latest").unwrap().items.len(), 1);
    }

    #[test]
    fn a_failure_on_a_new_tag_makes_an_empty_history() {
        let mut s = seed();
        apply_tags(
            &mut s,
            None,
            &result(vec![failed("latest", "Timeout", "t")]),
            NOW,
        );
        let list = s.status_tag("latest").unwrap();
        assert!(list.items.is_empty());
        assert_eq!(list.conditions.len(), 1);
        s.validate().unwrap();
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["status"]["tags"][0]["items"], serde_json::json!([]));
    }

    #[test]
    fn spec_changes_bump_the_generation_once() {
        let mut s = seed();
        let tag = TagReference {
            name: "v1".into(),
            from: Some(ObjectReference {
                kind: FROM_DOCKER_IMAGE.into(),
                name: "quay.io/x/y:v1".into(),
                ..Default::default()
            }),
            import_policy: Some(TagImportPolicy {
                scheduled: true,
                ..Default::default()
            }),
            ..Default::default()
        };
        let mut r = result(vec![ok("v1", 3)]);
        r.set_spec_tags = vec![tag.clone().into()];
        apply_spec(&mut s, &r);
        assert_eq!(s.metadata.generation, 2);
        assert_eq!(s.spec_tag("v1").unwrap().generation, Some(2));
        apply_tags(&mut s, None, &r, NOW);
        assert_eq!(s.status_tag("v1").unwrap().items[0].generation, Some(2));
        // the same spec again: no bump
        apply_spec(&mut s, &r);
        assert_eq!(s.metadata.generation, 2);
    }

    #[test]
    fn requests_are_checked() {
        assert!(check(&result(vec![ok("latest", 1)])).is_ok());
        let mut bad = result(vec![ok("latest", 1)]);
        bad.tags[0].image = "nope".into();
        assert!(check(&bad).is_err());
        let mut bad = result(vec![failed("latest", "", "m")]);
        assert!(check(&bad).is_err());
        bad.tags[0].reason = "X".into();
        bad.import_id.clear();
        assert!(check(&bad).is_err());
    }
}
