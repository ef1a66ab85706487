//! The tag-history rules, as pure functions: how a new image lands in a tag's
//! history (OpenShift's `AddTagEventToImageStream`), how tags that follow
//! another tag of the same stream track it (`UpdateTrackingTags`, made
//! transitive), how a spec tag resolves inside its own stream, and which tag
//! changes one write made.
//!
//! # The rule
//!
//! A new [`TagEvent`] for a tag is compared with the tag's `items[0]`:
//!
//! - same `image` and same `dockerImageReference`: nothing is added; only
//!   `items[0].generation` takes the event's generation;
//! - otherwise the event is prepended, so the history stays newest first.
//!
//! Either way the tag's conditions are cleared: the event is a success.
//!
//! OpenShift rewrites `items[0]` in place when only one of image and reference
//! differs. Here references pin the digest (`<repository>@sha256:…`), so that
//! case only arises when the same digest arrives through another repository,
//! and the rule ("otherwise the new event is prepended") is followed:
//! the history records where the image came from.

use std::collections::{HashSet, VecDeque};

use imagestreams_common::model::{
    FROM_IMAGE_STREAM_IMAGE, FROM_IMAGE_STREAM_TAG, ImageStream, TagEvent, TagReference,
};
use imagestreams_stream_store_api::TagChange;

/// What adding one event did to one tag's history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Same image, reference and generation: the history is as it was.
    Unchanged,
    /// Same image and reference: only `items[0].generation` changed.
    GenerationUpdated,
    /// The event was prepended: the tag points somewhere new.
    Added,
}

/// Adds `event` to the history of `tag` by the rule in the module docs, and
/// clears the tag's conditions.
pub fn add_tag_event(stream: &mut ImageStream, tag: &str, event: TagEvent) -> Outcome {
    let list = stream.status_tag_mut(tag);
    list.conditions.clear();
    match list.items.first_mut() {
        Some(latest)
            if latest.image == event.image
                && latest.docker_image_reference == event.docker_image_reference =>
        {
            if latest.generation == event.generation {
                Outcome::Unchanged
            } else {
                latest.generation = event.generation;
                Outcome::GenerationUpdated
            }
        }
        _ => {
            list.items.insert(0, event);
            Outcome::Added
        }
    }
}

/// The time of a history entry's `created` (RFC 3339, with or without
/// fractional seconds); unparseable sorts oldest.
fn time_of(created: &str) -> Option<chrono::DateTime<chrono::FixedOffset>> {
    chrono::DateTime::parse_from_rfc3339(created).ok()
}

/// Adds `event`, a push older than the tag's current image, to the history
/// of `tag` behind every entry at least as new (by `created`), never in
/// front: the current image stays, and tags that follow `tag` are left
/// alone. A history without items takes it as its first.
pub fn add_older_tag_event(stream: &mut ImageStream, tag: &str, event: TagEvent) -> Outcome {
    let list = stream.status_tag_mut(tag);
    if list.items.is_empty() {
        list.conditions.clear();
        list.items.push(event);
        return Outcome::Added;
    }
    let created = time_of(&event.created);
    let at = list
        .items
        .iter()
        .skip(1)
        .position(|item| time_of(&item.created) < created)
        .map_or(list.items.len(), |i| i + 1);
    list.items.insert(at, event);
    Outcome::Added
}

/// Whether `tag`'s history already holds `event`: the same image at the same
/// `created`. For a registry push `created` is the registry's event time, to
/// the nanosecond, so this recognises a redelivered push however long after
/// it was applied, also once the record has forgotten its event id.
pub fn holds(stream: &ImageStream, tag: &str, event: &TagEvent) -> bool {
    stream.status_tag(tag).is_some_and(|list| {
        list.items
            .iter()
            .any(|item| item.image == event.image && item.created == event.created)
    })
}

/// Whether spec tag `spec` of `stream` follows `tag` of the same stream: its
/// `from` is an `ImageStreamTag` named `tag` or `<stream>:tag`, in no
/// namespace or in the stream's own.
pub fn follows(stream: &ImageStream, spec: &TagReference, tag: &str) -> bool {
    let Some(from) = &spec.from else {
        return false;
    };
    if from.kind != FROM_IMAGE_STREAM_TAG
        || !(from.namespace.is_empty() || from.namespace == stream.metadata.namespace)
    {
        return false;
    }
    match from.name.split_once(':') {
        Some((name, source)) => name == stream.metadata.name && source == tag,
        None => from.name == tag,
    }
}

/// The spec tags of `stream` that follow `tag`, in spec order.
pub fn followers(stream: &ImageStream, tag: &str) -> Vec<String> {
    stream
        .spec
        .tags
        .iter()
        .filter(|spec| follows(stream, spec, tag))
        .map(|spec| spec.name.clone())
        .collect()
}

/// Adds `event` to `tag`, then to every tag that follows it, transitively
/// (breadth first, each tag once, so cycles end). Returns the outcome per
/// touched tag, `tag` first.
pub fn apply_image(
    stream: &mut ImageStream,
    tag: &str,
    event: &TagEvent,
) -> Vec<(String, Outcome)> {
    let mut seen = HashSet::from([tag.to_owned()]);
    let mut queue = VecDeque::from([tag.to_owned()]);
    let mut outcomes = Vec::new();
    while let Some(current) = queue.pop_front() {
        let outcome = add_tag_event(stream, &current, event.clone());
        for follower in followers(stream, &current) {
            if seen.insert(follower.clone()) {
                queue.push_back(follower);
            }
        }
        outcomes.push((current, outcome));
    }
    outcomes
}

/// The newest history entry of any tag of `stream` whose image is `digest`
/// (OpenShift's `ResolveImageID`, exact match only).
pub fn find_image<'a>(stream: &'a ImageStream, digest: &str) -> Option<&'a TagEvent> {
    stream
        .status
        .as_ref()?
        .tags
        .iter()
        .flat_map(|list| list.items.iter())
        .find(|item| item.image == digest)
}

/// What spec tag `spec` points at inside its own stream, if that is known:
/// the current image of the tag an `ImageStreamTag` follows, or the image an
/// `ImageStreamImage` (`<stream>@<digest>`) names. `created` and `generation`
/// of the result are the caller's to set.
pub fn resolve_local(stream: &ImageStream, spec: &TagReference) -> Option<TagEvent> {
    let from = spec.from.as_ref()?;
    if !(from.namespace.is_empty() || from.namespace == stream.metadata.namespace) {
        return None;
    }
    let found = match from.kind.as_str() {
        FROM_IMAGE_STREAM_TAG => {
            let source = match from.name.split_once(':') {
                Some((name, tag)) if name == stream.metadata.name => tag,
                Some(_) => return None,
                None => from.name.as_str(),
            };
            if source == spec.name {
                return None;
            }
            stream.status_tag(source)?.latest()?
        }
        FROM_IMAGE_STREAM_IMAGE => {
            let (name, digest) = from.name.split_once('@')?;
            if name != stream.metadata.name {
                return None;
            }
            find_image(stream, digest)?
        }
        _ => return None,
    };
    Some(TagEvent {
        created: String::new(),
        docker_image_reference: found.docker_image_reference.clone(),
        image: found.image.clone(),
        generation: None,
    })
}

/// Resolves every spec tag of `stream` whose generation is the stream's
/// current one (set by this write) and that points inside the stream, and
/// applies the result (with its followers). OpenShift does this when a spec
/// tag changes.
pub fn resolve_changed_spec_tags(stream: &mut ImageStream, created: &str) {
    let generation = stream.metadata.generation;
    let resolved: Vec<(String, TagEvent)> = stream
        .spec
        .tags
        .iter()
        .filter(|spec| spec.generation == Some(generation))
        .filter_map(|spec| Some((spec.name.clone(), resolve_local(stream, spec)?)))
        .collect();
    for (tag, mut event) in resolved {
        event.created = created.to_owned();
        event.generation = Some(generation);
        apply_image(stream, &tag, &event);
    }
}

/// Keeps at most `limit` (at least 1) items of every tag's history, dropping
/// the oldest, as `oc adm prune images --keep-tag-revisions` does; the
/// current image (`items[0]`) always stays. Returns how many were dropped.
pub fn prune(stream: &mut ImageStream, limit: usize) -> usize {
    let limit = limit.max(1);
    let Some(status) = stream.status.as_mut() else {
        return 0;
    };
    status
        .tags
        .iter_mut()
        .map(|list| {
            let dropped = list.items.len().saturating_sub(limit);
            list.items.truncate(limit);
            dropped
        })
        .sum()
}

/// Drops the oldest history items, always from the tag with the longest
/// history and never a current image, until their JSON adds up to at least
/// `bytes` (commas included). Returns the bytes dropped, less than `bytes`
/// when every history is down to its current image.
pub fn trim_oldest(stream: &mut ImageStream, bytes: usize) -> usize {
    let Some(status) = stream.status.as_mut() else {
        return 0;
    };
    let mut dropped = 0;
    while dropped < bytes {
        let Some(longest) = status
            .tags
            .iter_mut()
            .filter(|list| list.items.len() > 1)
            .max_by_key(|list| list.items.len())
        else {
            break;
        };
        if let Some(item) = longest.items.pop() {
            dropped += serde_json::to_vec(&item).map_or(0, |v| v.len()) + 1;
        }
    }
    dropped
}

/// The tags whose current image (`items[0]`: image or reference) differs
/// between `before` (`None` for a new stream) and `after`, in status order:
/// one [`TagChange`] each, the source of a `TagsChanged` event.
pub fn tag_changes(before: Option<&ImageStream>, after: &ImageStream) -> Vec<TagChange> {
    let Some(status) = &after.status else {
        return Vec::new();
    };
    status
        .tags
        .iter()
        .filter_map(|list| {
            let new = list.latest()?;
            let old = before
                .and_then(|b| b.status_tag(&list.tag))
                .and_then(|l| l.latest());
            let same = old.is_some_and(|old| {
                old.image == new.image && old.docker_image_reference == new.docker_image_reference
            });
            (!same).then(|| TagChange {
                tag: list.tag.clone(),
                old_image: old.map(|o| o.image.clone()).unwrap_or_default(),
                new_image: new.image.clone(),
                docker_image_reference: new.docker_image_reference.clone(),
                generation: new.generation.unwrap_or_default(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use imagestreams_common::model::{ObjectReference, TagEventCondition};

    use super::*;

    const REPO: &str = "127.0.0.1:5000/ns1/app";

    fn digest(n: u8) -> String {
        format!("sha256:{}", format!("{n:02x}").repeat(32))
    }

    fn event(n: u8, generation: i64) -> TagEvent {
        TagEvent {
            created: format!("2025-01-01T00:00:{n:02}Z"),
            docker_image_reference: format!("{REPO}@{}", digest(n)),
            image: digest(n),
            generation: Some(generation),
        }
    }

    fn stream() -> ImageStream {
        let mut s = ImageStream::new("ns1", "app");
        s.metadata.generation = 1;
        s
    }

    fn follower(name: &str, from: &str) -> TagReference {
        TagReference {
            name: name.to_owned(),
            from: Some(ObjectReference {
                kind: FROM_IMAGE_STREAM_TAG.to_owned(),
                name: from.to_owned(),
                ..ObjectReference::default()
            }),
            generation: Some(1),
            ..TagReference::default()
        }
    }

    fn images(stream: &ImageStream, tag: &str) -> Vec<String> {
        stream
            .status_tag(tag)
            .map(|l| l.items.iter().map(|i| i.image.clone()).collect())
            .unwrap_or_default()
    }

    #[test]
    fn first_event_creates_the_history() {
        let mut s = stream();
        assert_eq!(add_tag_event(&mut s, "latest", event(1, 1)), Outcome::Added);
        assert_eq!(images(&s, "latest"), [digest(1)]);
    }

    #[test]
    fn same_image_and_reference_adds_nothing() {
        let mut s = stream();
        add_tag_event(&mut s, "latest", event(1, 1));
        let mut again = event(1, 1);
        again.created = "2030-01-01T00:00:00Z".to_owned();
        assert_eq!(add_tag_event(&mut s, "latest", again), Outcome::Unchanged);
        assert_eq!(images(&s, "latest"), [digest(1)]);
        assert_eq!(
            s.status_tag("latest").unwrap().items[0].created,
            event(1, 1).created,
            "the original entry is kept"
        );
    }

    #[test]
    fn same_image_with_a_new_generation_only_updates_the_generation() {
        let mut s = stream();
        add_tag_event(&mut s, "latest", event(1, 1));
        assert_eq!(
            add_tag_event(&mut s, "latest", event(1, 2)),
            Outcome::GenerationUpdated
        );
        let items = &s.status_tag("latest").unwrap().items;
        assert_eq!(items.len(), 1);
        assert_eq!(items[0].generation, Some(2));
    }

    #[test]
    fn new_images_are_prepended_newest_first() {
        let mut s = stream();
        for n in [1, 2, 1, 3] {
            assert_eq!(add_tag_event(&mut s, "latest", event(n, 1)), Outcome::Added);
        }
        assert_eq!(
            images(&s, "latest"),
            [digest(3), digest(1), digest(2), digest(1)]
        );
    }

    #[test]
    fn same_digest_from_another_repository_is_prepended() {
        let mut s = stream();
        add_tag_event(&mut s, "latest", event(1, 1));
        let mut elsewhere = event(1, 1);
        elsewhere.docker_image_reference = format!("quay.io/x/app@{}", digest(1));
        assert_eq!(add_tag_event(&mut s, "latest", elsewhere), Outcome::Added);
        assert_eq!(images(&s, "latest"), [digest(1), digest(1)]);
    }

    #[test]
    fn any_success_clears_the_conditions() {
        let mut s = stream();
        for outcome in [Outcome::Added, Outcome::Unchanged] {
            s.status_tag_mut("latest")
                .conditions
                .push(TagEventCondition {
                    r#type: "ImportSuccess".to_owned(),
                    status: "False".to_owned(),
                    ..TagEventCondition::default()
                });
            assert_eq!(add_tag_event(&mut s, "latest", event(1, 1)), outcome);
            assert!(s.status_tag("latest").unwrap().conditions.is_empty());
        }
    }

    #[test]
    fn tags_of_the_same_stream_follow_transitively() {
        let mut s = stream();
        s.spec.tags = vec![
            follower("latest", "3.3-ubi8"),
            follower("stable", "app:latest"),
            follower("other-stream", "web:3.3-ubi8"),
            TagReference {
                from: Some(ObjectReference {
                    namespace: "elsewhere".to_owned(),
                    ..follower("x", "3.3-ubi8").from.unwrap()
                }),
                ..follower("other-namespace", "3.3-ubi8")
            },
        ];
        let outcomes = apply_image(&mut s, "3.3-ubi8", &event(7, 1));
        let touched: Vec<&str> = outcomes.iter().map(|(t, _)| t.as_str()).collect();
        assert_eq!(touched, ["3.3-ubi8", "latest", "stable"]);
        for tag in ["3.3-ubi8", "latest", "stable"] {
            assert_eq!(images(&s, tag), [digest(7)], "{tag}");
        }
        assert!(s.status_tag("other-stream").is_none());
        assert!(s.status_tag("other-namespace").is_none());
    }

    #[test]
    fn cycles_end() {
        let mut s = stream();
        s.spec.tags = vec![follower("a", "b"), follower("b", "a"), follower("c", "c")];
        let outcomes = apply_image(&mut s, "a", &event(1, 1));
        assert_eq!(outcomes.len(), 2);
        assert_eq!(images(&s, "a"), [digest(1)]);
        assert_eq!(images(&s, "b"), [digest(1)]);
        let outcomes = apply_image(&mut s, "c", &event(2, 1));
        assert_eq!(outcomes, [("c".to_owned(), Outcome::Added)]);
    }

    #[test]
    fn local_references_resolve() {
        let mut s = stream();
        add_tag_event(&mut s, "3.3-ubi8", event(3, 1));
        let by_tag = follower("latest", "3.3-ubi8");
        assert_eq!(resolve_local(&s, &by_tag).unwrap().image, digest(3));
        let by_image = TagReference {
            from: Some(ObjectReference {
                kind: FROM_IMAGE_STREAM_IMAGE.to_owned(),
                name: format!("app@{}", digest(3)),
                ..ObjectReference::default()
            }),
            ..follower("pinned", "")
        };
        let resolved = resolve_local(&s, &by_image).unwrap();
        assert_eq!(
            resolved.docker_image_reference,
            event(3, 1).docker_image_reference
        );
        assert!(resolve_local(&s, &follower("latest", "missing")).is_none());
        assert!(resolve_local(&s, &follower("latest", "web:3.3-ubi8")).is_none());
    }

    #[test]
    fn changed_spec_tags_resolve_with_the_new_generation() {
        let mut s = stream();
        add_tag_event(&mut s, "3.3-ubi8", event(3, 1));
        s.metadata.generation = 2;
        s.spec.tags = vec![
            TagReference {
                generation: Some(2),
                ..follower("latest", "3.3-ubi8")
            },
            follower("old", "3.3-ubi8"),
        ];
        resolve_changed_spec_tags(&mut s, "2025-02-02T00:00:00Z");
        let latest = &s.status_tag("latest").unwrap().items[0];
        assert_eq!(
            (latest.image.as_str(), latest.generation),
            (digest(3).as_str(), Some(2))
        );
        assert!(
            s.status_tag("old").is_none(),
            "unchanged tags are left alone"
        );
    }

    #[test]
    fn changes_are_the_tags_whose_current_image_moved() {
        let mut before = stream();
        add_tag_event(&mut before, "a", event(1, 1));
        add_tag_event(&mut before, "b", event(2, 1));
        let mut after = before.clone();
        add_tag_event(&mut after, "a", event(1, 2));
        add_tag_event(&mut after, "b", event(3, 1));
        add_tag_event(&mut after, "c", event(4, 1));
        let changes = tag_changes(Some(&before), &after);
        assert_eq!(
            changes,
            [
                TagChange {
                    tag: "b".to_owned(),
                    old_image: digest(2),
                    new_image: digest(3),
                    docker_image_reference: event(3, 1).docker_image_reference,
                    generation: 1,
                },
                TagChange {
                    tag: "c".to_owned(),
                    old_image: String::new(),
                    new_image: digest(4),
                    docker_image_reference: event(4, 1).docker_image_reference,
                    generation: 1,
                },
            ]
        );
        assert_eq!(tag_changes(None, &after).len(), 3);
        assert!(tag_changes(Some(&after), &after).is_empty());
    }

    #[test]
    fn an_older_push_goes_behind_the_current_image() {
        let event = |n: u8, second: u8| TagEvent {
            created: format!("2025-01-01T00:00:{second:02}Z"),
            docker_image_reference: format!("r/ns1/app@{}", digest(n)),
            image: digest(n),
            generation: Some(1),
        };
        let mut s = ImageStream::new("ns1", "app");
        add_tag_event(&mut s, "latest", event(3, 30));
        add_older_tag_event(&mut s, "latest", event(1, 10));
        add_older_tag_event(&mut s, "latest", event(2, 20));
        let images: Vec<_> = s
            .status_tag("latest")
            .unwrap()
            .items
            .iter()
            .map(|i| i.image.clone())
            .collect();
        assert_eq!(images, [digest(3), digest(2), digest(1)]);
        let mut empty = ImageStream::new("ns1", "app");
        assert_eq!(
            add_older_tag_event(&mut empty, "x", event(1, 10)),
            Outcome::Added
        );
        assert_eq!(empty.status_tag("x").unwrap().items.len(), 1);
    }

    #[test]
    fn prune_keeps_the_newest_items_of_every_tag() {
        let mut s = stream();
        for n in 1..=5 {
            add_tag_event(&mut s, "a", event(n, 1));
        }
        add_tag_event(&mut s, "b", event(9, 1));
        assert_eq!(prune(&mut s, 3), 2);
        assert_eq!(images(&s, "a"), [digest(5), digest(4), digest(3)]);
        assert_eq!(images(&s, "b"), [digest(9)]);
        assert_eq!(
            prune(&mut s, 0),
            2,
            "a limit of 0 still keeps the current image"
        );
        assert_eq!(images(&s, "a"), [digest(5)]);
    }

    #[test]
    fn trim_drops_the_oldest_of_the_longest_history_and_never_a_current_image() {
        let mut s = stream();
        for n in 1..=4 {
            add_tag_event(&mut s, "a", event(n, 1));
        }
        for n in 10..=11 {
            add_tag_event(&mut s, "b", event(n, 1));
        }
        let one = serde_json::to_vec(&event(1, 1)).unwrap().len() + 1;
        assert_eq!(trim_oldest(&mut s, 1), one, "one item is enough");
        assert_eq!(images(&s, "a"), [digest(4), digest(3), digest(2)]);
        assert_eq!(trim_oldest(&mut s, usize::MAX), 3 * one);
        assert_eq!(images(&s, "a"), [digest(4)]);
        assert_eq!(images(&s, "b"), [digest(11)]);
        assert_eq!(trim_oldest(&mut s, 1), 0, "nothing left but current images");
    }
}
