//! Tag policies in the store: a spec tag with a `policy` follows the tag its
//! policy chooses ([`imagestreams_common::model::policy`] has the rules), and
//! every write that could change the choice moves it.
//!
//! - **When.** [`apply`] runs in every write that holds the whole stream
//!   ([`crate::bucket::next_record`]): creates, updates, tags, imports, and
//!   pushes. A push reads only the tags it moves; a push to a tag that a
//!   policy of the stream may choose reads the whole stream instead
//!   ([`watched`]), so the choice is made over every tag.
//! - **What.** The policy tag gets the chosen tag's current image (its image
//!   and pull spec), stamped with the write's time and the spec tag's
//!   generation, by the history rule: so it gains a history entry only when
//!   the chosen image changes, and `TagsChanged`, triggers and the tags that
//!   follow it move with it as with any tag.
//! - **No candidate.** The policy tag stays where it was.

use imagestreams_common::model::{ImageStream, TagEvent, policy};

use crate::history::{self, Outcome};

/// Moves every policy tag of `stream` to the current image of the tag its
/// policy chooses, `now` being the write's time. Returns the outcome per
/// touched tag (policy tags and their followers).
pub fn apply(stream: &mut ImageStream, now: &str) -> Vec<(String, Outcome)> {
    let policy_tags: Vec<String> = stream
        .spec
        .tags
        .iter()
        .filter(|spec| spec.policy.is_some())
        .map(|spec| spec.name.clone())
        .collect();
    let mut outcomes = Vec::new();
    for tag in policy_tags {
        let Some(event) = chosen_image(stream, &tag, now) else {
            continue;
        };
        outcomes.extend(history::apply_image(stream, &tag, &event));
    }
    outcomes
}

/// The image the policy of spec tag `tag` chooses now, as a history event.
fn chosen_image(stream: &ImageStream, tag: &str, now: &str) -> Option<TagEvent> {
    let spec = stream.spec.tags.iter().find(|spec| spec.name == tag)?;
    // an invalid policy is refused on write; one stored before a rule
    // tightened chooses nothing
    let chosen = policy::choose_in(stream, spec)?.ok()?.chosen?;
    let current = stream.status_tag(chosen)?.latest()?;
    Some(TagEvent {
        created: now.to_owned(),
        docker_image_reference: current.docker_image_reference.clone(),
        image: current.image.clone(),
        generation: spec.generation.or(Some(stream.metadata.generation)),
    })
}

/// Whether a write moving `tags` may change what a policy of `stream`
/// chooses: then it must hold the whole stream.
pub fn watched<'a>(stream: &ImageStream, mut tags: impl Iterator<Item = &'a String>) -> bool {
    let policies: Vec<(&str, policy::Policy)> = stream
        .spec
        .tags
        .iter()
        .filter_map(|spec| Some((spec.name.as_str(), spec.policy.as_ref()?.compile().ok()?)))
        .collect();
    !policies.is_empty()
        && tags.any(|tag| {
            policies
                .iter()
                .any(|(name, policy)| name != tag && policy.may_choose(tag))
        })
}

#[cfg(test)]
mod tests {
    use imagestreams_common::model::{
        FROM_IMAGE_STREAM_TAG, ObjectReference, OrderPolicy, SemverPolicy, TagFilter, TagPolicy,
        TagReference,
    };

    use super::*;

    fn digest(n: u8) -> String {
        format!("sha256:{}", format!("{n:02x}").repeat(32))
    }

    fn push(stream: &mut ImageStream, tag: &str, n: u8) {
        history::apply_image(
            stream,
            tag,
            &TagEvent {
                created: format!("2026-01-01T00:00:{n:02}Z"),
                docker_image_reference: format!("r/ns1/app@{}", digest(n)),
                image: digest(n),
                generation: Some(1),
            },
        );
    }

    fn with_policy(name: &str, policy: TagPolicy) -> TagReference {
        TagReference {
            name: name.into(),
            generation: Some(2),
            policy: Some(policy),
            ..TagReference::default()
        }
    }

    fn semver(range: &str) -> TagPolicy {
        TagPolicy {
            semver: Some(SemverPolicy {
                range: range.into(),
            }),
            ..TagPolicy::default()
        }
    }

    fn images(stream: &ImageStream, tag: &str) -> Vec<String> {
        stream
            .status_tag(tag)
            .map(|l| l.items.iter().map(|i| i.image.clone()).collect())
            .unwrap_or_default()
    }

    #[test]
    fn the_policy_tag_follows_the_chosen_tag_with_history() {
        let mut s = ImageStream::new("ns1", "app");
        s.metadata.generation = 2;
        s.spec
            .tags
            .push(with_policy("latest-1.x", semver(">=1.0 <2")));
        push(&mut s, "1.0.0", 1);
        push(&mut s, "2.0.0", 2);
        assert!(apply(&mut s, "now").iter().any(|(t, _)| t == "latest-1.x"));
        assert_eq!(images(&s, "latest-1.x"), [digest(1)]);
        let item = &s.status_tag("latest-1.x").unwrap().items[0];
        assert_eq!((item.created.as_str(), item.generation), ("now", Some(2)));

        // nothing new chosen: nothing added
        apply(&mut s, "later");
        assert_eq!(images(&s, "latest-1.x"), [digest(1)]);

        // a higher 1.x: the tag moves, newest first
        push(&mut s, "1.10.0", 3);
        apply(&mut s, "later");
        assert_eq!(images(&s, "latest-1.x"), [digest(3), digest(1)]);
        // a new image in the chosen tag moves it too
        push(&mut s, "1.10.0", 4);
        apply(&mut s, "later");
        assert_eq!(images(&s, "latest-1.x"), [digest(4), digest(3), digest(1)]);
        // a lower one does not
        push(&mut s, "1.2.0", 5);
        apply(&mut s, "later");
        assert_eq!(images(&s, "latest-1.x")[0], digest(4));
    }

    #[test]
    fn tags_following_a_policy_tag_move_with_it() {
        let mut s = ImageStream::new("ns1", "app");
        s.spec.tags.push(with_policy("newest-build", {
            TagPolicy {
                filter_tags: Some(TagFilter {
                    pattern: r"^build-(\d+)$".into(),
                    extract: "$1".into(),
                }),
                numerical: Some(OrderPolicy::default()),
                ..TagPolicy::default()
            }
        }));
        s.spec.tags.push(TagReference {
            name: "prod".into(),
            from: Some(ObjectReference {
                kind: FROM_IMAGE_STREAM_TAG.into(),
                name: "newest-build".into(),
                ..ObjectReference::default()
            }),
            ..TagReference::default()
        });
        push(&mut s, "build-9", 1);
        push(&mut s, "build-17", 2);
        apply(&mut s, "now");
        assert_eq!(images(&s, "newest-build"), [digest(2)]);
        assert_eq!(images(&s, "prod"), [digest(2)]);
    }

    #[test]
    fn policy_tags_are_never_candidates() {
        let mut s = ImageStream::new("ns1", "app");
        s.spec.tags.push(with_policy("9.9.9", semver("*")));
        push(&mut s, "1.0.0", 1);
        apply(&mut s, "now");
        assert_eq!(images(&s, "9.9.9"), [digest(1)], "not itself");
    }

    #[test]
    fn only_tags_a_policy_may_choose_need_the_whole_stream() {
        let mut s = ImageStream::new("ns1", "app");
        let tags = |names: &[&str]| names.iter().map(|t| t.to_string()).collect::<Vec<_>>();
        assert!(!watched(&s, tags(&["1.0.0"]).iter()), "no policy");
        s.spec
            .tags
            .push(with_policy("latest-1.x", semver(">=1.0 <2")));
        assert!(watched(&s, tags(&["latest", "1.3.0"]).iter()));
        assert!(!watched(&s, tags(&["latest", "2.0.0"]).iter()));
        assert!(!watched(&s, tags(&["latest-1.x"]).iter()));
    }
}
